// groove-load: an asynchronous gRPC load generator for groove-volumed.
//
// Each of --connections channels (distinct channel args, so each has its
// own TCP connection) runs on its own thread with its own CompletionQueue
// and keeps --in_flight calls outstanding: when one completes, the next is
// started at once (closed loop). After --warmup, every call completing in
// the next --duration is counted and its latency (start to completion, as
// the client sees it) recorded in a log-linear histogram (3% precision).
//
// Mixes (--mix):
//   health           grpc.health.v1.Health/Check for service "": the floor,
//                    the cheapest RPC the server answers
//   inspect_summary  Inspect of --pool, summary only
//   inspect_page     Inspect of --pool with include_volumes, page_size 1000
//                    (the first page); volumes are added first until the
//                    pool holds 1000
//   add_remove       each in-flight slot alternates AddVolume(count 1) and
//                    RemoveVolume(count 1) on --pool; both RPCs count as
//                    operations (ops/s is RPCs/s), and at the end every
//                    slot's last add is removed again
//   add_remove_id    add_remove, every AddVolume with a new request_id, so
//                    the server also records it (its request log and the
//                    pool's request journal): against add_remove
//                    (--baseline=add_remove), what an id costs
//   list_pools       ListPools
//
// Modes:
//   default          run --mix once and report
//   --compare        run --mix, then --baseline (default `health`, the
//                    floor) with the same connections and in-flight count
//                    against the same server, and report both and the
//                    ratios X/baseline (throughput, p50/p99/p999)
//   --contend_dir=D  before anything else, fork a child; run --mix alone,
//                    then beside the child's busy loop (the control: it
//                    takes a core, shares nothing), then beside the child
//                    as a data plane that joins pool --pool in data
//                    directory D (NamedPool::Join) and loops
//                    Acquire+Release; report the three and the ratios
//                    dataplane/alone and dataplane/busy-loop
//   --rounds=R       (with --compare or --contend_dir) run those arms R
//                    times, interleaved: in order in odd rounds, reversed in
//                    even ones (A B, B A, A B ...), each for --warmup then
//                    --duration. Each round gives its own ratios; the
//                    headline ratios are their medians, so a change in the
//                    machine's speed during the comparison (a neighbour, a
//                    slow phase of the host) falls on both arms of a round
//                    alike instead of on whichever arm ran at the time. The
//                    rows (ops/s, latencies) are of all rounds together.
//   --scale=N        add N volumes to --pool in AddVolume batches of 1024,
//                    measure per-request costs at 1k, 100k and N volumes
//                    (batches of 1024, and one volume added then removed;
//                    ratios against the same at 1k, and against Health;
//                    the summary, which costs about what Health/Check
//                    does, is timed in turns with it and its ratio to 1k
//                    is of summary/health, column sum/hc; on a `normal`
//                    pool each batch is also timed in turns with the
//                    kernel floor of the same work, kernel_floor.h, and
//                    its ratio per floor to 1k is printed beside),
//                    page through the whole pool with Inspect, read the
//                    server's RSS (--server_pid) before and after, then
//                    remove everything in batches of 1024
//   --write_request=F  write --mix's request as a gRPC message (5-byte
//                    frame header + protobuf) to F and exit: the body for
//                    h2load -d F
//
// CPU accounting: every run reports the client's CPU time per operation
// (this process, getrusage; a --contend_dir child is another process and
// not counted) and, with --server_pid, the server's (/proc/PID/stat), both
// over the measured window only. On a machine where client and server
// share cores, they say which side saturated (docs/PERFORMANCE.md §7).
//
// Output: --output=table (default) or json (one object on stdout).
// Exit status: 0; 1 when a measured run completed no operation or had any
// failed RPC (so a smoke test can rely on it); 2 for bad flags, said with
// the help on stderr before anything is run. --help (-h) prints the help
// on stdout and exits 0. These are groovectl's conventions (ParseFlags
// tells why groove-load does not let Abseil parse its command line).

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "groove/client/inspect_pages.h"
#include "groove/named_pool.h"
#include "groove/v1/volume_pool.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kernel_floor.h"
#include "latency_histogram.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:50051", "host:port of the server");
ABSL_FLAG(int, connections, 4, "channels, each its own TCP connection");
ABSL_FLAG(int, in_flight, 8, "outstanding calls per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "measured time");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1), "unmeasured time first");
ABSL_FLAG(std::string, mix, "health",
          "health | inspect_summary | inspect_page | add_remove | list_pools");
ABSL_FLAG(std::string, pool, "default", "the pool of the pool mixes");
ABSL_FLAG(std::string, output, "table", "table | json");
ABSL_FLAG(bool, compare, false, "run --mix then --baseline; report the ratios");
ABSL_FLAG(std::string, baseline, "health",
          "the mix --compare measures --mix against (default: the floor)");
ABSL_FLAG(std::string, contend_dir, "",
          "data directory: run --mix without, then with a data-plane child "
          "acquiring and releasing on --pool; report the ratios");
ABSL_FLAG(int, rounds, 1,
          "--compare, --contend_dir: run the arms this many times, "
          "interleaved; the ratios are the medians of the rounds' ratios");
ABSL_FLAG(uint64_t, scale, 0, "scale mode: add this many volumes to --pool");
ABSL_FLAG(int, server_pid, 0,
          "the server's pid: its CPU time per operation (every mode) and "
          "its RSS (scale mode)");
ABSL_FLAG(std::string, write_request, "",
          "write --mix's request as a gRPC message to this file and exit");

namespace groove::load {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

enum class Mix {
  kHealth,
  kInspectSummary,
  kInspectPage,
  kAddRemove,
  kAddRemoveWithId,
  kListPools
};

std::optional<Mix> ParseMix(const std::string& s) {
  if (s == "health") return Mix::kHealth;
  if (s == "inspect_summary") return Mix::kInspectSummary;
  if (s == "inspect_page") return Mix::kInspectPage;
  if (s == "add_remove") return Mix::kAddRemove;
  if (s == "add_remove_id") return Mix::kAddRemoveWithId;
  if (s == "list_pools") return Mix::kListPools;
  return std::nullopt;
}

const char* MixName(Mix m) {
  switch (m) {
    case Mix::kHealth: return "health";
    case Mix::kInspectSummary: return "inspect_summary";
    case Mix::kInspectPage: return "inspect_page";
    case Mix::kAddRemove: return "add_remove";
    case Mix::kAddRemoveWithId:
      return "add_remove_id";
    case Mix::kListPools: return "list_pools";
  }
  return "?";
}

// IsPairMix: the mix alternates AddVolume and RemoveVolume per slot.
bool IsPairMix(Mix m) {
  return m == Mix::kAddRemove || m == Mix::kAddRemoveWithId;
}

// Every call groove-load makes has a deadline, so that a stuck server fails
// the run (DEADLINE_EXCEEDED, counted as a failed RPC) instead of hanging
// it. kCallTimeout is far above what any call but an add takes here
// (microseconds to milliseconds); an AddVolume of up to 1024 volumes
// zeroes their memory (0.5 to 4 s per GiB of hugepages), hence
// kAddTimeout.
constexpr std::chrono::seconds kCallTimeout{30};
constexpr std::chrono::seconds kAddTimeout{120};

// DeadlineIn returns the ClientContext deadline `timeout` from now.
std::chrono::system_clock::time_point DeadlineIn(std::chrono::seconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

// Requests, built once per run and reused by every call.
struct Requests {
  HealthCheckRequest health;
  v1::InspectRequest inspect;
  v1::AddVolumeRequest add;
  v1::RemoveVolumeRequest remove;
  v1::ListPoolsRequest list;
};

Requests MakeRequests(Mix mix, const std::string& pool) {
  Requests r;
  r.inspect.set_pool(pool);
  if (mix == Mix::kInspectPage) {
    r.inspect.set_include_volumes(true);
    r.inspect.set_page_size(1000);
  }
  r.add.set_pool(pool);
  r.add.set_count(1);
  r.remove.set_pool(pool);
  r.remove.set_count(1);
  return r;
}

// The channel of connection `i`: a channel argument unique to it keeps
// gRPC from sharing one subchannel (one TCP connection) between channels.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& addr, int i) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("groove.load.connection", i);
  return grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(),
                                   args);
}

// Result of one measured run.
struct RunResult {
  std::string mix;
  int connections = 0;
  int in_flight = 0;
  double seconds = 0;
  uint64_t ops = 0;
  uint64_t errors = 0;
  std::map<std::string, uint64_t> error_codes;  // code -> count
  std::string first_error;
  LatencyHistogram latency;
  // CPU seconds used over the measured window: this process's, and the
  // server's (negative when unknown: no --server_pid).
  double client_cpu_s = 0;
  double server_cpu_s = -1;

  double ops_per_s() const { return seconds > 0 ? ops / seconds : 0; }
  // CPU microseconds per operation; negative when unknown.
  double client_us_per_op() const {
    return ops > 0 ? client_cpu_s * 1e6 / static_cast<double>(ops) : -1;
  }
  double server_us_per_op() const {
    return ops > 0 && server_cpu_s >= 0
               ? server_cpu_s * 1e6 / static_cast<double>(ops)
               : -1;
  }
  double p_us(double q) const { return latency.Percentile(q) / 1e3; }
};

const char* CodeName(grpc::StatusCode c) {
  static const char* kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? kNames[i] : "?";
}

// One connection's closed loop: a channel, a CompletionQueue, and
// `in_flight` call slots that restart as they complete.
class Connection {
 public:
  Connection(std::shared_ptr<grpc::Channel> channel, Mix mix,
             const Requests* requests, int in_flight)
      : health_(Health::NewStub(channel)),
        pool_(v1::VolumePoolService::NewStub(channel)),
        mix_(mix),
        requests_(requests),
        slots_(static_cast<size_t>(in_flight)) {}

  // Run starts every slot, counts completions in [measure_start,
  // measure_end) and stops starting calls at measure_end; returns when
  // every call has completed.
  void Run(int64_t measure_start, int64_t measure_end, RunResult* out) {
    for (Slot& s : slots_) {
      s.next = IsPairMix(mix_) ? Op::kAdd : FirstOp();
      Start(&s);
    }
    size_t outstanding = slots_.size();
    void* tag;
    bool ok;
    while (outstanding > 0 && cq_.Next(&tag, &ok)) {
      Slot* s = static_cast<Slot*>(tag);
      const int64_t end = NowNs();
      const bool measured = end >= measure_start && end < measure_end;
      const bool failed = !ok || !s->status.ok();
      if (measured) {
        if (failed) {
          ++out->errors;
          ++out->error_codes[CodeName(s->status.error_code())];
          if (out->first_error.empty()) {
            out->first_error = absl::StrCat(
                OpName(s->op), ": ", CodeName(s->status.error_code()), ": ",
                s->status.error_message());
          }
        } else {
          ++out->ops;
          out->latency.Record(static_cast<uint64_t>(end - s->start_ns));
        }
      }
      // The pair: a successful add is followed by a remove (even after the
      // end, so the pool is left as found); anything else by an add.
      if (IsPairMix(mix_)) {
        s->next = (s->op == Op::kAdd && !failed) ? Op::kRemove : Op::kAdd;
        if (end >= measure_end && s->next != Op::kRemove) {
          --outstanding;
          continue;
        }
      } else if (end >= measure_end) {
        --outstanding;
        continue;
      }
      Start(s);
    }
    cq_.Shutdown();
    while (cq_.Next(&tag, &ok)) {
    }
  }

 private:
  enum class Op { kHealth, kInspect, kAdd, kRemove, kList };

  static const char* OpName(Op op) {
    switch (op) {
      case Op::kHealth: return "Health/Check";
      case Op::kInspect: return "Inspect";
      case Op::kAdd: return "AddVolume";
      case Op::kRemove: return "RemoveVolume";
      case Op::kList: return "ListPools";
    }
    return "?";
  }

  Op FirstOp() const {
    switch (mix_) {
      case Mix::kHealth: return Op::kHealth;
      case Mix::kInspectSummary:
      case Mix::kInspectPage: return Op::kInspect;
      case Mix::kAddRemove:
      case Mix::kAddRemoveWithId:
        return Op::kAdd;
      case Mix::kListPools: return Op::kList;
    }
    return Op::kHealth;
  }

  struct Slot {
    Op op = Op::kHealth;
    Op next = Op::kHealth;
    int64_t start_ns = 0;
    std::unique_ptr<grpc::ClientContext> context;
    grpc::Status status;
    HealthCheckResponse health;
    v1::InspectResponse inspect;
    v1::AddVolumeRequest add_request;  // add_remove_id: with its own id
    v1::AddVolumeResponse add;
    v1::RemoveVolumeResponse remove;
    v1::ListPoolsResponse list;
    std::unique_ptr<grpc::ClientAsyncResponseReader<HealthCheckResponse>>
        health_rpc;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::InspectResponse>>
        inspect_rpc;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::AddVolumeResponse>>
        add_rpc;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::RemoveVolumeResponse>>
        remove_rpc;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::ListPoolsResponse>>
        list_rpc;
  };

  void Start(Slot* s) {
    s->op = s->next;
    s->context = std::make_unique<grpc::ClientContext>();
    s->context->set_deadline(DeadlineIn(kCallTimeout));
    s->start_ns = NowNs();
    switch (s->op) {
      case Op::kHealth:
        s->health_rpc =
            health_->AsyncCheck(s->context.get(), requests_->health, &cq_);
        s->health_rpc->Finish(&s->health, &s->status, s);
        break;
      case Op::kInspect:
        s->inspect_rpc =
            pool_->AsyncInspect(s->context.get(), requests_->inspect, &cq_);
        s->inspect_rpc->Finish(&s->inspect, &s->status, s);
        break;
      case Op::kAdd:
        if (mix_ == Mix::kAddRemoveWithId) {
          s->add_request = requests_->add;
          s->add_request.set_request_id(NewRequestId());
        }
        s->add_rpc = pool_->AsyncAddVolume(
            s->context.get(),
            mix_ == Mix::kAddRemoveWithId ? s->add_request : requests_->add,
            &cq_);
        s->add_rpc->Finish(&s->add, &s->status, s);
        break;
      case Op::kRemove:
        s->remove_rpc =
            pool_->AsyncRemoveVolume(s->context.get(), requests_->remove, &cq_);
        s->remove_rpc->Finish(&s->remove, &s->status, s);
        break;
      case Op::kList:
        s->list_rpc =
            pool_->AsyncListPools(s->context.get(), requests_->list, &cq_);
        s->list_rpc->Finish(&s->list, &s->status, s);
        break;
    }
  }

  // NewRequestId returns a random (version 4) UUID for add_remove_id.
  std::string NewRequestId() {
    const uint64_t a = random_(), b = random_();
    return absl::StrFormat(
        "%08x-%04x-4%03x-%04x-%012x", a >> 32, (a >> 16) & 0xffff, a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff), b & 0xffffffffffffULL);
  }

  std::unique_ptr<Health::Stub> health_;
  std::unique_ptr<v1::VolumePoolService::Stub> pool_;
  std::mt19937_64 random_{std::random_device{}()};
  Mix mix_;
  const Requests* requests_;
  grpc::CompletionQueue cq_;
  std::vector<Slot> slots_;
};

struct LoadOptions {
  std::string addr;
  std::string pool;
  int connections = 1;
  int in_flight = 1;
  absl::Duration duration;
  absl::Duration warmup;
  int server_pid = 0;  // 0: the server's CPU is not accounted
};

// ClientCpuSeconds returns this process's user + system CPU time so far.
double ClientCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// ServerCpuSeconds returns process `pid`'s user + system CPU time so far
// (fields 14 and 15 of /proc/PID/stat), or -1 when it cannot be read.
double ServerCpuSeconds(int pid) {
  if (pid <= 0) return -1;
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(f, stat)) return -1;
  // The command name (field 2) may hold spaces: count from its ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  const std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipWhitespace());
  // fields[0] is field 3 (state), so utime (14) and stime (15) are 11, 12.
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return -1;
  }
  return static_cast<double>(utime + stime) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// PreparePool makes sure --pool holds at least `volumes` volumes (for
// inspect_page). Returns an error text, or "".
std::string PreparePool(const LoadOptions& o, uint64_t volumes) {
  auto stub = v1::VolumePoolService::NewStub(MakeChannel(o.addr, -1));
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(kCallTimeout));
    v1::InspectRequest req;
    req.set_pool(o.pool);
    v1::InspectResponse resp;
    grpc::Status st = stub->Inspect(&ctx, req, &resp);
    if (!st.ok()) return absl::StrCat("Inspect: ", st.error_message());
    const uint64_t have = resp.summary().volumes_mapped();
    if (have >= volumes) return "";
    grpc::ClientContext add_ctx;
    add_ctx.set_deadline(DeadlineIn(kAddTimeout));
    v1::AddVolumeRequest add;
    add.set_pool(o.pool);
    add.set_count(std::min<uint64_t>(1024, volumes - have));
    v1::AddVolumeResponse add_resp;
    st = stub->AddVolume(&add_ctx, add, &add_resp);
    if (!st.ok()) return absl::StrCat("AddVolume: ", st.error_message());
  }
}

RunResult RunLoad(const LoadOptions& o, Mix mix) {
  const Requests requests = MakeRequests(mix, o.pool);
  std::vector<std::unique_ptr<Connection>> connections;
  for (int i = 0; i < o.connections; ++i) {
    connections.push_back(std::make_unique<Connection>(
        MakeChannel(o.addr, i), mix, &requests, o.in_flight));
  }
  const int64_t start = NowNs();
  const int64_t measure_start = start + absl::ToInt64Nanoseconds(o.warmup);
  const int64_t measure_end =
      measure_start + absl::ToInt64Nanoseconds(o.duration);
  std::vector<RunResult> partial(connections.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < connections.size(); ++i) {
    threads.emplace_back([&, i] {
      connections[i]->Run(measure_start, measure_end, &partial[i]);
    });
  }
  // CPU over the measured window: this thread only waits for its edges
  // (the load threads run on their own clock, NowNs).
  auto sleep_until = [](int64_t t) {
    const int64_t now = NowNs();
    if (t > now) absl::SleepFor(absl::Nanoseconds(t - now));
  };
  sleep_until(measure_start);
  const double client_before = ClientCpuSeconds();
  const double server_before = ServerCpuSeconds(o.server_pid);
  sleep_until(measure_end);
  const double client_after = ClientCpuSeconds();
  const double server_after = ServerCpuSeconds(o.server_pid);
  for (std::thread& t : threads) t.join();
  RunResult r;
  r.client_cpu_s = client_after - client_before;
  r.server_cpu_s = server_before >= 0 && server_after >= 0
                       ? server_after - server_before
                       : -1;
  r.mix = MixName(mix);
  r.connections = o.connections;
  r.in_flight = o.in_flight;
  r.seconds = absl::ToDoubleSeconds(o.duration);
  for (const RunResult& p : partial) {
    r.ops += p.ops;
    r.errors += p.errors;
    for (const auto& [code, n] : p.error_codes) r.error_codes[code] += n;
    if (r.first_error.empty()) r.first_error = p.first_error;
    r.latency.Merge(p.latency);
  }
  return r;
}

// CpuText returns a CPU figure to one decimal, or `unknown` when negative.
std::string CpuText(double us, const char* unknown) {
  return us < 0 ? unknown : absl::StrFormat("%.1f", us);
}

std::string ResultJson(const RunResult& r) {
  std::string codes;
  for (const auto& [code, n] : r.error_codes) {
    absl::StrAppend(&codes, codes.empty() ? "" : ",", "\"", code, "\":", n);
  }
  return absl::StrFormat(
      "{\"mix\":\"%s\",\"connections\":%d,\"in_flight\":%d,\"seconds\":%.3f,"
      "\"ops\":%d,\"errors\":%d,\"error_codes\":{%s},\"ops_per_s\":%.1f,"
      "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
      "\"client_cpu_us_per_op\":%s,\"server_cpu_us_per_op\":%s}",
      r.mix, r.connections, r.in_flight, r.seconds, r.ops, r.errors, codes,
      r.ops_per_s(), r.p_us(0.5), r.p_us(0.99), r.p_us(0.999),
      static_cast<double>(r.latency.max()) / 1e3,
      CpuText(r.client_us_per_op(), "null"),
      CpuText(r.server_us_per_op(), "null"));
}

void PrintTableHeader() {
  std::printf("%-16s %5s %5s %8s %10s %7s %12s %9s %9s %9s %9s %10s %10s\n",
              "mix", "conns", "infl", "secs", "ops", "errors", "ops/s",
              "p50_us", "p99_us", "p999_us", "max_us", "cli_cpu_us",
              "srv_cpu_us");
}

void PrintTableRow(const RunResult& r, const std::string& label = "") {
  std::printf(
      "%-16s %5d %5d %8.2f %10lu %7lu %12.1f %9.1f %9.1f %9.1f %9.1f %10s "
      "%10s\n",
      (label.empty() ? r.mix : label).c_str(), r.connections, r.in_flight,
      r.seconds, static_cast<unsigned long>(r.ops),
      static_cast<unsigned long>(r.errors), r.ops_per_s(), r.p_us(0.5),
      r.p_us(0.99), r.p_us(0.999), static_cast<double>(r.latency.max()) / 1e3,
      CpuText(r.client_us_per_op(), "-").c_str(),
      CpuText(r.server_us_per_op(), "-").c_str());
  if (!r.first_error.empty()) {
    std::printf("  first error: %s\n", r.first_error.c_str());
  }
}

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// Ratios of one run to a baseline run: throughput, and latency at three
// percentiles.
struct Ratios {
  double throughput = 0, p50 = 0, p99 = 0, p999 = 0;
};

Ratios RatiosOf(const RunResult& x, const RunResult& base) {
  return {Ratio(x.ops_per_s(), base.ops_per_s()),
          Ratio(x.p_us(0.5), base.p_us(0.5)),
          Ratio(x.p_us(0.99), base.p_us(0.99)),
          Ratio(x.p_us(0.999), base.p_us(0.999))};
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// MedianRatios returns each field's median over `rounds` (the mean of the
// middle two for an even count; all 0 for none).
Ratios MedianRatios(const std::vector<Ratios>& rounds) {
  auto median_of = [&](double Ratios::*field) {
    std::vector<double> v;
    for (const Ratios& r : rounds) v.push_back(r.*field);
    return Median(std::move(v));
  };
  return {median_of(&Ratios::throughput), median_of(&Ratios::p50),
          median_of(&Ratios::p99), median_of(&Ratios::p999)};
}

std::string RatiosJson(const Ratios& r) {
  return absl::StrFormat(
      "{\"throughput\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f}",
      r.throughput, r.p50, r.p99, r.p999);
}

void PrintRatios(const std::string& what, const Ratios& r) {
  std::printf("ratio %s: throughput %.3f  p50 %.3f  p99 %.3f  p999 %.3f\n",
              what.c_str(), r.throughput, r.p50, r.p99, r.p999);
}

// Absorb adds one round's run to `total` (empty, or earlier rounds of the
// same arm): its operations, errors, time, latencies and CPU. The server's
// CPU stays unknown if any round's is.
void Absorb(const RunResult& round, RunResult* total) {
  const bool first = total->seconds == 0;
  total->mix = round.mix;
  total->connections = round.connections;
  total->in_flight = round.in_flight;
  total->seconds += round.seconds;
  total->ops += round.ops;
  total->errors += round.errors;
  for (const auto& [code, n] : round.error_codes) {
    total->error_codes[code] += n;
  }
  if (total->first_error.empty()) total->first_error = round.first_error;
  total->latency.Merge(round.latency);
  total->client_cpu_s += round.client_cpu_s;
  if (first || round.server_cpu_s < 0) {
    total->server_cpu_s = round.server_cpu_s;
  } else if (total->server_cpu_s >= 0) {
    total->server_cpu_s += round.server_cpu_s;
  }
}

// One arm of an interleaved comparison: `mix` run in some setting, which
// `enter` sets up before each of the arm's runs (returning "" or an error)
// and `leave` takes down after it.
struct Arm {
  Mix mix = Mix::kHealth;
  std::function<std::string()> enter = [] { return std::string(); };
  std::function<void()> leave = [] {};
};

// What RunInterleaved measured.
struct Interleaved {
  std::vector<std::vector<RunResult>> runs;  // [arm][round]
  std::vector<RunResult> merged;             // [arm]: its rounds together
  std::string error;                         // an arm's `enter` failed

  // RoundRatios returns arm `a`'s ratios to arm `base`, one per round (each
  // from two runs of the same round).
  std::vector<Ratios> RoundRatios(size_t a, size_t base) const {
    std::vector<Ratios> out;
    for (size_t r = 0; r < runs[a].size(); ++r) {
      out.push_back(RatiosOf(runs[a][r], runs[base][r]));
    }
    return out;
  }
};

// RunInterleaved runs each arm `rounds` times, a fresh RunLoad each time
// (--warmup, then --duration): the arms in order in the first round,
// reversed in the second, and so on (A B C, C B A, A B C ...), so that the
// arms of one round run next to each other and slow drift of the machine
// weighs on each arm alike. Stops at the first arm whose `enter` fails.
Interleaved RunInterleaved(const LoadOptions& o, const std::vector<Arm>& arms,
                           int rounds) {
  Interleaved result;
  result.runs.resize(arms.size());
  result.merged.resize(arms.size());
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < arms.size(); ++k) {
      const size_t a = r % 2 == 0 ? k : arms.size() - 1 - k;
      if (std::string e = arms[a].enter(); !e.empty()) {
        result.error = std::move(e);
        return result;
      }
      result.runs[a].push_back(RunLoad(o, arms[a].mix));
      arms[a].leave();
      Absorb(result.runs[a].back(), &result.merged[a]);
    }
  }
  return result;
}

// PrintRoundRatios prints arm `a`'s ratio to arm `base` for each round and
// then their median; with one round, just the ratio.
void PrintRoundRatios(const std::string& what, const Interleaved& runs,
                      size_t a, size_t base) {
  const std::vector<Ratios> rounds = runs.RoundRatios(a, base);
  if (rounds.size() == 1) {
    PrintRatios(what, rounds[0]);
    return;
  }
  for (size_t r = 0; r < rounds.size(); ++r) {
    PrintRatios(absl::StrCat(what, " round ", r + 1), rounds[r]);
  }
  PrintRatios(absl::StrCat(what, " (median of ", rounds.size(), " rounds)"),
              MedianRatios(rounds));
}

// RoundsJson returns `"ratios":{median},"round_ratios":[...]` for arm `a`
// against arm `base`, each key followed by `suffix` ("" or "_vs_control").
std::string RoundsJson(const std::string& suffix, const Interleaved& runs,
                       size_t a, size_t base) {
  const std::vector<Ratios> rounds = runs.RoundRatios(a, base);
  std::string each;
  for (const Ratios& r : rounds) {
    absl::StrAppend(&each, each.empty() ? "" : ",", RatiosJson(r));
  }
  return absl::StrCat("\"ratios", suffix,
                      "\":", RatiosJson(MedianRatios(rounds)),
                      ",\"round_ratios", suffix, "\":[", each, "]");
}

bool Sane(const RunResult& r) { return r.ops > 0 && r.errors == 0; }

// ---- Data-plane child (--contend_dir) --------------------------------------

// The child is forked before gRPC is initialised (a forked gRPC process is
// not safe). On command it runs one of two loops until told to stop:
//   'g'  the data plane: joins the pool (once) and loops Acquire+Release;
//   'b'  the control: the same busy loop on a local counter, never touching
//        the pool. On a machine with few cores a spinning data plane takes
//        a core away from the server; the control takes the same core
//        without sharing anything, so data-plane/control isolates what the
//        pool itself costs the server from what the lost core costs.
// Control is a shared anonymous page and two pipes: no sleeps.
struct DataPlaneShared {
  std::atomic<int> stop{0};
  std::atomic<uint64_t> loops{0};
};

class DataPlaneChild {
 public:
  // Fork forks the child. Call before any gRPC use.
  static std::unique_ptr<DataPlaneChild> Fork(const std::string& dir,
                                              const std::string& pool) {
    auto c = std::unique_ptr<DataPlaneChild>(new DataPlaneChild());
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return nullptr;
    c->shared_ = new (page) DataPlaneShared();
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return nullptr;
    c->pid_ = fork();
    if (c->pid_ == 0) {
      close(to_child[1]);
      close(from_child[0]);
      ChildMain(dir, pool, c->shared_, to_child[0], from_child[1]);
      _exit(0);
    }
    close(to_child[0]);
    close(from_child[1]);
    c->to_child_ = to_child[1];
    c->from_child_ = from_child[0];
    return c;
  }

  ~DataPlaneChild() {
    if (to_child_ >= 0) close(to_child_);  // the child exits on EOF
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }

  // Start tells the child to run loop `command` ('g' or 'b'); returns ""
  // once it runs, or its error.
  std::string Start(char command) {
    if (write(to_child_, &command, 1) != 1) return "write to the child";
    return Reply() == "R" ? "" : last_reply_;
  }

  // Stop stops the running loop and returns the loops it ran.
  uint64_t Stop() {
    // Relaxed: the child's reply through the pipe orders `loops`.
    shared_->stop.store(1, std::memory_order_relaxed);
    Reply();
    shared_->stop.store(0, std::memory_order_relaxed);
    return shared_->loops.load(std::memory_order_relaxed);
  }

 private:
  DataPlaneChild() = default;

  const std::string& Reply() {
    char buf[512];
    const ssize_t n = read(from_child_, buf, sizeof(buf));
    last_reply_ = n > 0 ? std::string(buf, static_cast<size_t>(n))
                        : "the data-plane child died";
    return last_reply_;
  }

  static void ChildMain(const std::string& dir, const std::string& name,
                        DataPlaneShared* shared, int in, int out) {
    std::unique_ptr<NamedPool> join;
    char command;
    while (read(in, &command, 1) == 1) {
      if (command == 'g' && join == nullptr) {
        absl::StatusOr<std::unique_ptr<NamedPool>> j =
            NamedPool::Join(dir, name);
        if (!j.ok()) {
          const std::string e = j.status().ToString();
          (void)!write(out, e.data(), e.size());
          continue;
        }
        join = *std::move(j);
      }
      (void)!write(out, "R", 1);
      uint64_t loops = 0;
      // Relaxed: a stop flag, no data passes through it.
      if (command == 'g') {
        const VolumePool& pool = join->pool();
        while (shared->stop.load(std::memory_order_relaxed) == 0) {
          VolumeHeader* v = nullptr;
          if (pool.Acquire(&v) == PoolError::kSuccess) {
            pool.Release(v);
            ++loops;
          }
        }
      } else {
        // The atomic load each round keeps the loop (and its core busy).
        while (shared->stop.load(std::memory_order_relaxed) == 0) ++loops;
      }
      shared->loops.store(loops, std::memory_order_relaxed);
      (void)!write(out, "D", 1);
    }
  }

  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string last_reply_;
  DataPlaneShared* shared_ = nullptr;
};

// ---- Scale mode (--scale) ---------------------------------------------------

// Volumes per AddVolume/RemoveVolume in scale mode: to fill, to empty, and
// the batch whose cost is measured at each point.
constexpr uint64_t kScaleBatch = 1024;

struct Rss {
  uint64_t total_kb = 0, anon_kb = 0, file_kb = 0, shmem_kb = 0;
};

Rss ReadRss(int pid) {
  Rss r;
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  auto value = [](const std::string& l) {
    uint64_t v = 0;
    std::vector<std::string> parts =
        absl::StrSplit(l, ' ', absl::SkipWhitespace());
    if (parts.size() >= 2) (void)absl::SimpleAtoi(parts[1], &v);
    return v;
  };
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) r.total_kb = value(line);
    if (line.rfind("RssAnon:", 0) == 0) r.anon_kb = value(line);
    if (line.rfind("RssFile:", 0) == 0) r.file_kb = value(line);
    if (line.rfind("RssShmem:", 0) == 0) r.shmem_kb = value(line);
  }
  return r;
}

// TimedUs runs `call` (which returns false on error, then *ok = false)
// once and returns its wall time in us.
template <typename F>
double TimedUs(F call, bool* ok) {
  const int64_t start = NowNs();
  if (!call()) *ok = false;
  return static_cast<double>(NowNs() - start) / 1e3;
}

// Median wall time (us) of `n` runs of `call`.
template <typename F>
double MedianUs(int n, F call, bool* ok) {
  std::vector<double> t;
  for (int i = 0; i < n; ++i) t.push_back(TimedUs(call, ok));
  return Median(std::move(t));
}

// MedianUsInterleaved times `n` rounds of `a` then `b` and returns each
// one's median wall time (us). Calls that cost about the same as a
// trivial RPC move with the machine's wake-up latency (2-3x between
// phases of the same run on a VM); taken in turns, both see the same
// phases, so their ratio does not.
template <typename A, typename B>
std::pair<double, double> MedianUsInterleaved(int n, A a, B b, bool* ok) {
  std::vector<double> ta, tb;
  for (int i = 0; i < n; ++i) {
    ta.push_back(TimedUs(a, ok));
    tb.push_back(TimedUs(b, ok));
  }
  return {Median(std::move(ta)), Median(std::move(tb))};
}

int RunScale(const LoadOptions& o, uint64_t target, int server_pid,
             bool json) {
  auto channel = MakeChannel(o.addr, 0);
  auto stub = v1::VolumePoolService::NewStub(channel);
  auto health = Health::NewStub(channel);
  bool ok = true;
  std::string first_error;
  auto note = [&](const grpc::Status& st, const char* what) {
    if (st.ok()) return true;
    ok = false;
    if (first_error.empty()) {
      first_error = absl::StrCat(what, ": ", st.error_message());
    }
    return false;
  };
  // call makes one RPC, `rpc(&ctx)`, with a deadline `timeout` away;
  // false when it failed. Once a call (or the kernel floor) has failed,
  // later calls fail at once without reaching the server: the run has
  // failed already (exit 1), and measure() makes hundreds of calls, each
  // of which would otherwise wait out its deadline on a stuck server.
  auto call = [&](std::chrono::seconds timeout, const char* what, auto rpc) {
    if (!ok) return false;
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(timeout));
    return note(rpc(&ctx), what);
  };
  auto add = [&](uint64_t count) {
    v1::AddVolumeRequest req;
    req.set_pool(o.pool);
    req.set_count(count);
    v1::AddVolumeResponse resp;
    return call(kAddTimeout, "AddVolume", [&](grpc::ClientContext* ctx) {
      return stub->AddVolume(ctx, req, &resp);
    });
  };
  auto remove = [&](uint64_t count) {
    v1::RemoveVolumeRequest req;
    req.set_pool(o.pool);
    req.set_count(count);
    v1::RemoveVolumeResponse resp;
    return call(kCallTimeout, "RemoveVolume", [&](grpc::ClientContext* ctx) {
      return stub->RemoveVolume(ctx, req, &resp);
    });
  };
  // inspect makes one Inspect: a page at `token` when `page`; with a
  // `guard`, the page is checked as the next of its listing (a server whose
  // pages would never end fails the run).
  auto inspect = [&](bool page, const std::string& token, std::string* next,
                     v1::PoolSummary* summary,
                     groove::InspectPageGuard* guard = nullptr) {
    v1::InspectRequest req;
    req.set_pool(o.pool);
    if (page) {
      req.set_include_volumes(true);
      req.set_page_size(1000);
      req.set_page_token(token);
    }
    v1::InspectResponse resp;
    const bool good =
        call(kCallTimeout, "Inspect", [&](grpc::ClientContext* ctx) {
          return stub->Inspect(ctx, req, &resp);
        });
    // Checked before *next is written: `next` may be `&token`.
    if (good && guard != nullptr) {
      if (absl::Status checked = guard->Check(token, resp); !checked.ok()) {
        return note(grpc::Status(grpc::StatusCode::INTERNAL,
                                 std::string(checked.message())),
                    "Inspect");
      }
    }
    if (next != nullptr) *next = resp.next_page_token();
    if (summary != nullptr) *summary = resp.summary();
    return good;
  };
  auto check = [&] {
    HealthCheckRequest req;
    HealthCheckResponse resp;
    return call(kCallTimeout, "Health/Check", [&](grpc::ClientContext* ctx) {
      return health->Check(ctx, req, &resp);
    });
  };
  v1::PoolSummary summary;
  if (!inspect(false, "", nullptr, &summary)) {
    std::fprintf(stderr, "groove-load: --scale: %s\n", first_error.c_str());
    return 1;
  }
  const uint64_t mapped = summary.volumes_mapped();
  if (mapped != 0) {
    std::fprintf(stderr, "groove-load: --scale needs an empty pool; '%s' "
                 "holds %lu volumes\n", o.pool.c_str(),
                 static_cast<unsigned long>(mapped));
    return 1;
  }
  const Rss before = server_pid > 0 ? ReadRss(server_pid) : Rss{};

  // Per-request costs at a pool size: median of repeated calls, the
  // add/remove batch cost (remove 1024 then add 1024 back, 5 times), and
  // the single-volume cost (remove 1 then add 1 back, 200 times: the add
  // takes the lowest free index, the one just freed past the volumes
  // already there, so it shows whether finding it costs more in a fuller
  // pool). Removing first keeps both measurements possible in a pool
  // filled to max_volumes, as script/bench's 1M point is.
  //
  // On `normal` backing the batches are timed in turns with the kernel
  // floor of the same work (KernelFloor: one fallocate and 1024 header
  // writes on tmpfs; one punch), so that when a batch's ratio to 1k jumps,
  // its ratio per floor says whether the kernel's cost jumped with it. On
  // a VM the first write to a page its host no longer backs costs ~16 us
  // instead of well under 1, and only some allocations get such pages
  // (docs/PERFORMANCE.md §12).
  struct Point {
    uint64_t volumes;
    double health_us, summary_us, page_us, add_batch_us, remove_batch_us,
        pair1_us, floor_add_us, floor_remove_us;
  };
  KernelFloor floor;
  auto floor_note = [&](bool good, const char* what) {
    if (good) return true;
    ok = false;
    if (first_error.empty()) {
      first_error =
          absl::StrCat("kernel floor ", what, ": ", std::strerror(errno));
    }
    return false;
  };
  const bool with_floor =
      summary.backing_in_use() == v1::BACKING_NORMAL &&
      floor_note(floor.Open(BackingKind::kNormal, summary.volume_size_bytes(),
                            kScaleBatch) &&
                     floor.Add(0, kScaleBatch),
                 "memfd");
  std::vector<Point> points;
  auto measure = [&](uint64_t volumes) {
    Point p{volumes, 0, 0, 0, 0, 0, 0, 0, 0};
    std::tie(p.health_us, p.summary_us) = MedianUsInterleaved(
        200, check, [&] { return inspect(false, "", nullptr, nullptr); }, &ok);
    p.page_us = MedianUs(20, [&] {
      return inspect(true, "", nullptr, nullptr); }, &ok);
    std::vector<double> adds, removes, floor_adds, floor_removes;
    // One server call and, with the floor, the floor's, in the order given.
    auto in_turns = [&](bool floor_first, auto server_call, auto floor_call,
                        std::vector<double>* server_us,
                        std::vector<double>* floor_us) {
      if (with_floor && floor_first) {
        floor_us->push_back(TimedUs(floor_call, &ok));
      }
      server_us->push_back(TimedUs(server_call, &ok));
      if (with_floor && !floor_first) {
        floor_us->push_back(TimedUs(floor_call, &ok));
      }
    };
    // One round untimed first: the first batch at a point (and the
    // floor's first after it was opened) ran up to 1.5x the others.
    if (remove(kScaleBatch)) add(kScaleBatch);  // a failure clears ok
    if (with_floor) {
      floor_note(floor.Remove(0, kScaleBatch) && floor.Add(0, kScaleBatch),
                 "warm-up");
    }
    for (int i = 0; i < 5; ++i) {
      // Which side goes first alternates: the second one gets the pages
      // the first one freed last (see backing_floor_bench.cc).
      const bool floor_first = i % 2 == 1;
      in_turns(
          floor_first, [&] { return remove(kScaleBatch); },
          [&] { return floor_note(floor.Remove(0, kScaleBatch), "punch"); },
          &removes, &floor_removes);
      in_turns(
          floor_first, [&] { return add(kScaleBatch); },
          [&] {
            return floor_note(floor.Add(0, kScaleBatch), "fallocate/pwrite");
          },
          &adds, &floor_adds);
    }
    p.add_batch_us = Median(std::move(adds));
    p.remove_batch_us = Median(std::move(removes));
    p.floor_add_us = Median(std::move(floor_adds));
    p.floor_remove_us = Median(std::move(floor_removes));
    p.pair1_us = MedianUs(
        200, [&] { return remove(1) && add(1); }, &ok);
    points.push_back(p);
  };

  std::vector<uint64_t> checkpoints = {1024, 102400, target};
  std::sort(checkpoints.begin(), checkpoints.end());
  checkpoints.erase(std::unique(checkpoints.begin(), checkpoints.end()),
                    checkpoints.end());
  uint64_t have = 0;
  const int64_t add_start = NowNs();
  double add_total_us = 0;
  for (uint64_t cp : checkpoints) {
    if (cp > target) continue;
    while (have < cp && ok) {
      const uint64_t n = std::min<uint64_t>(kScaleBatch, cp - have);
      const int64_t s = NowNs();
      if (add(n)) have += n;
      add_total_us += static_cast<double>(NowNs() - s) / 1e3;
    }
    if (!ok) break;
    if (cp >= 1024) measure(cp);
  }
  const double add_wall_s = static_cast<double>(NowNs() - add_start) / 1e9;
  const Rss full = server_pid > 0 ? ReadRss(server_pid) : Rss{};

  // Full pagination.
  const int64_t page_start = NowNs();
  std::string token;
  uint64_t pages = 0;
  groove::InspectPageGuard guard(o.pool);
  do {
    if (!inspect(true, token, &token, nullptr, &guard)) break;
    ++pages;
  } while (!token.empty());
  const double pagination_s = static_cast<double>(NowNs() - page_start) / 1e9;

  // Remove everything.
  const int64_t remove_start = NowNs();
  uint64_t batches = 0;
  while (ok) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(kCallTimeout));
    v1::RemoveVolumeRequest req;
    req.set_pool(o.pool);
    req.set_count(kScaleBatch);
    v1::RemoveVolumeResponse resp;
    grpc::Status st = stub->RemoveVolume(&ctx, req, &resp);
    if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) break;
    if (!note(st, "RemoveVolume")) break;
    ++batches;
  }
  const double remove_s = static_cast<double>(NowNs() - remove_start) / 1e9;
  const Rss after = server_pid > 0 ? ReadRss(server_pid) : Rss{};

  uint64_t volume_bytes = 0;  // for the report
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(kCallTimeout));
    v1::InspectRequest req;
    req.set_pool(o.pool);
    v1::InspectResponse resp;
    if (stub->Inspect(&ctx, req, &resp).ok()) {
      volume_bytes = resp.summary().volume_size_bytes();
    }
  }
  // Server memory per volume: the whole RSS growth. The server maps no
  // volume (it reads and writes headers with pread/pwrite), so none of it
  // is the volumes' own memory.
  const double grown = (static_cast<double>(full.total_kb) -
                        static_cast<double>(before.total_kb)) * 1024.0;
  const double per_volume = have > 0 ? grown / have : 0;
  const double anon_per_volume =
      have > 0 ? (static_cast<double>(full.anon_kb) -
                  static_cast<double>(before.anon_kb)) * 1024.0 / have
               : 0;
  // The rest: file-backed and shared pages (the pool's metadata object,
  // whose slot table is 8 bytes per max_volumes slot, lives on the data
  // directory's filesystem: RssFile on a disk, RssShmem on tmpfs).
  const double shared_per_volume =
      have > 0 ? (static_cast<double>(full.shmem_kb + full.file_kb) -
                  static_cast<double>(before.shmem_kb + before.file_kb)) *
                     1024.0 / have
               : 0;

  const Point& base = points.front();
  // The summary's cost over Health's, taken in turns at the same point,
  // against the same at 1k: how much a summary costs beyond a trivial RPC
  // as the pool grows, without the machine's wake-up latency (which moves
  // both alike; see MedianUsInterleaved).
  auto summary_per_health_vs_1k = [&](const Point& p) {
    return Ratio(Ratio(p.summary_us, p.health_us),
                 Ratio(base.summary_us, base.health_us));
  };
  // A batch's cost over the kernel floor's, taken in turns at the same
  // point, against the same at 1k; `none` without the floor.
  auto per_floor_vs_1k = [&](const Point& p, double Point::*batch_us,
                             double Point::*floor_us,
                             const char* none) -> std::string {
    if (!with_floor) return none;
    return absl::StrFormat("%.3f",
                           Ratio(Ratio(p.*batch_us, p.*floor_us),
                                 Ratio(base.*batch_us, base.*floor_us)));
  };
  if (json) {
    std::string pts;
    for (const Point& p : points) {
      absl::StrAppend(
          &pts, pts.empty() ? "" : ",",
          absl::StrFormat(
              "{\"volumes\":%d,\"health_us\":%.1f,\"summary_us\":%.1f,"
              "\"page_us\":%.1f,\"add_batch_us\":%.1f,"
              "\"remove_batch_us\":%.1f,\"add1_remove1_us\":%.1f,"
              "\"floor_add_batch_us\":%.1f,\"floor_remove_batch_us\":%.1f,"
              "\"summary_vs_1k\":%.3f,\"page_vs_1k\":%.3f,"
              "\"add_batch_vs_1k\":%.3f,\"remove_batch_vs_1k\":%.3f,"
              "\"add1_remove1_vs_1k\":%.3f,\"summary_vs_health\":%.3f,"
              "\"summary_per_health_vs_1k\":%.3f,"
              "\"add_batch_per_floor_vs_1k\":%s,"
              "\"remove_batch_per_floor_vs_1k\":%s}",
              p.volumes, p.health_us, p.summary_us, p.page_us, p.add_batch_us,
              p.remove_batch_us, p.pair1_us, p.floor_add_us, p.floor_remove_us,
              Ratio(p.summary_us, base.summary_us),
              Ratio(p.page_us, base.page_us),
              Ratio(p.add_batch_us, base.add_batch_us),
              Ratio(p.remove_batch_us, base.remove_batch_us),
              Ratio(p.pair1_us, base.pair1_us),
              Ratio(p.summary_us, p.health_us), summary_per_health_vs_1k(p),
              per_floor_vs_1k(p, &Point::add_batch_us, &Point::floor_add_us,
                              "null"),
              per_floor_vs_1k(p, &Point::remove_batch_us,
                              &Point::floor_remove_us, "null")));
    }
    std::printf(
        "{\"mode\":\"scale\",\"volumes\":%lu,\"ok\":%s,\"first_error\":\"%s\","
        "\"points\":[%s],\"add_wall_s\":%.2f,\"pagination_pages\":%lu,"
        "\"pagination_s\":%.2f,\"remove_batches\":%lu,\"remove_s\":%.2f,"
        "\"rss_kb\":{\"before\":%lu,\"full\":%lu,\"after\":%lu},"
        "\"server_bytes_per_volume\":%.1f,\"anon_bytes_per_volume\":%.1f,"
        "\"shared_bytes_per_volume\":%.1f,\"goal_bytes\":64}\n",
        static_cast<unsigned long>(have), ok ? "true" : "false",
        first_error.c_str(), pts.c_str(), add_wall_s,
        static_cast<unsigned long>(pages), pagination_s,
        static_cast<unsigned long>(batches), remove_s,
        static_cast<unsigned long>(before.total_kb),
        static_cast<unsigned long>(full.total_kb),
        static_cast<unsigned long>(after.total_kb), per_volume,
        anon_per_volume, shared_per_volume);
  } else {
    std::printf("scale: %lu volumes of %lu bytes in pool '%s'%s%s\n",
                static_cast<unsigned long>(have),
                static_cast<unsigned long>(volume_bytes), o.pool.c_str(),
                ok ? "" : "  ERROR: ", first_error.c_str());
    std::printf(
        "%10s %10s %11s %10s %11s %13s %13s %13s %13s | ratios vs 1k: "
        "%7s %7s %7s %7s %7s | per floor vs 1k: %7s %7s | summary/health\n",
        "volumes", "health_us", "summary_us", "page_us", "add1024_us",
        "floor_add_us", "remove1024_us", "floor_rm_us", "add1+remove1",
        "sum/hc", "page", "add", "remove", "add1+r1", "add", "remove");
    for (const Point& p : points) {
      std::printf(
          "%10lu %10.1f %11.1f %10.1f %11.1f %13.1f %13.1f %13.1f %13.1f | "
          "%21.3f %7.3f %7.3f %7.3f %7.3f | %24s %7s | %.3f\n",
          static_cast<unsigned long>(p.volumes), p.health_us, p.summary_us,
          p.page_us, p.add_batch_us, p.floor_add_us, p.remove_batch_us,
          p.floor_remove_us, p.pair1_us, summary_per_health_vs_1k(p),
          Ratio(p.page_us, base.page_us),
          Ratio(p.add_batch_us, base.add_batch_us),
          Ratio(p.remove_batch_us, base.remove_batch_us),
          Ratio(p.pair1_us, base.pair1_us),
          per_floor_vs_1k(p, &Point::add_batch_us, &Point::floor_add_us, "-")
              .c_str(),
          per_floor_vs_1k(p, &Point::remove_batch_us, &Point::floor_remove_us,
                          "-")
              .c_str(),
          Ratio(p.summary_us, p.health_us));
    }
    std::printf("add all: %.2f s; full pagination: %lu pages in %.2f s; "
                "remove all: %lu batches in %.2f s\n", add_wall_s,
                static_cast<unsigned long>(pages), pagination_s,
                static_cast<unsigned long>(batches), remove_s);
    std::printf("server VmRSS kB: before %lu, full %lu, after remove %lu "
                "(RssAnon %lu -> %lu, RssFile %lu -> %lu, RssShmem %lu -> "
                "%lu)\n",
                static_cast<unsigned long>(before.total_kb),
                static_cast<unsigned long>(full.total_kb),
                static_cast<unsigned long>(after.total_kb),
                static_cast<unsigned long>(before.anon_kb),
                static_cast<unsigned long>(full.anon_kb),
                static_cast<unsigned long>(before.file_kb),
                static_cast<unsigned long>(full.file_kb),
                static_cast<unsigned long>(before.shmem_kb),
                static_cast<unsigned long>(full.shmem_kb));
    std::printf("server bytes per volume outside the volumes: %.1f (goal < "
                "64): anon %.1f + file/shared %.1f\n", per_volume,
                anon_per_volume, shared_per_volume);
  }
  return ok ? 0 : 1;
}

// ---- main ---------------------------------------------------------------------

int WriteRequest(Mix mix, const std::string& pool, const std::string& path) {
  const Requests r = MakeRequests(mix, pool);
  std::string body;
  switch (mix) {
    case Mix::kHealth: body = r.health.SerializeAsString(); break;
    case Mix::kInspectSummary:
    case Mix::kInspectPage: body = r.inspect.SerializeAsString(); break;
    case Mix::kAddRemove:
    case Mix::kAddRemoveWithId:
      body = r.add.SerializeAsString();
      break;
    case Mix::kListPools: body = r.list.SerializeAsString(); break;
  }
  // gRPC message framing: 1 byte "compressed" flag, 4 bytes big-endian
  // length, then the message.
  std::string frame(5, '\0');
  const uint32_t n = static_cast<uint32_t>(body.size());
  frame[1] = static_cast<char>(n >> 24);
  frame[2] = static_cast<char>(n >> 16);
  frame[3] = static_cast<char>(n >> 8);
  frame[4] = static_cast<char>(n);
  frame += body;
  std::ofstream out(path, std::ios::binary);
  out << frame;
  return out.good() ? 0 : 1;
}

// IsLoadFlagFile says whether a flag defined in `file` is one of
// groove-load's (all are defined in this file), as opposed to a flag of a
// library it links or one of Abseil's built-ins (--flagfile, --helpfull).
bool IsLoadFlagFile(absl::string_view file) {
  return absl::EndsWith(file, "clients/load/groove_load.cc");
}

// FindLoadFlag returns groove-load's flag `name`, or null when it has none
// of that name.
absl::CommandLineFlag* FindLoadFlag(absl::string_view name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr && IsLoadFlagFile(flag->Filename()) ? flag : nullptr;
}

constexpr char kUsage[] =
    "usage: groove-load --addr=HOST:PORT --mix=MIX [--compare] [--FLAG=VALUE]"
    "...\n\nasync gRPC load generator for groove-volumed "
    "(docs/PERFORMANCE.md).\n";

// Help returns the usage, every flag of groove-load's, sorted by name, with
// its help and default, and the exit statuses: what --help prints on
// stdout, and a usage error on stderr after the error.
std::string Help() {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsLoadFlagFile(flag->Filename())) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string text = absl::StrCat(
      kUsage,
      "\nflags (--NAME=VALUE or --NAME VALUE; a boolean is --NAME or "
      "--noNAME):\n");
  for (const absl::CommandLineFlag* flag : flags) {
    const std::string value = flag->DefaultValue();
    absl::StrAppend(&text, "  --", flag->Name(), " (default ",
                    value.empty() ? "none" : value, ")\n");
    // The help on the lines below, broken at spaces before column 80.
    std::string line;
    for (absl::string_view word : absl::StrSplit(flag->Help(), ' ')) {
      if (!line.empty() && 6 + line.size() + 1 + word.size() > 80) {
        absl::StrAppend(&text, "      ", line, "\n");
        line.clear();
      }
      absl::StrAppend(&line, line.empty() ? "" : " ", word);
    }
    absl::StrAppend(&text, "      ", line, "\n");
  }
  absl::StrAppend(
      &text,
      "  --help, -h (this help)\n"
      "\nexit status: 0 ok; 1 a measured run completed no operation or had a "
      "failed\nRPC, or the run could not be prepared; 2 bad flags (nothing "
      "was run).\n");
  return text;
}

// FlagsRequest is what the command line asks for, after ParseFlags.
enum class FlagsRequest { kRun, kHelp };

// ParseFlags sets groove-load's flags from argv[1, argc): --NAME=VALUE,
// --NAME VALUE, and for a boolean also --NAME (true) and --noNAME (false),
// each with one dash or two, as Abseil spells them. Returns kHelp when
// --help, -help or -h is among the arguments and all of them parse.
// Errors: INVALID_ARGUMENT naming the argument: a flag that is not
// groove-load's (Abseil's built-ins such as --flagfile and --helpfull are
// not offered), a value that does not parse or is missing, or a positional
// argument (groove-load takes none); flags before it may have been set.
//
// Why not absl::ParseCommandLine: Abseil 20220623 ends the process itself
// with exit status 1 both after --help and on a bad flag, where
// groove-load's statuses are 0 and 2, as groovectl's.
absl::StatusOr<FlagsRequest> ParseFlags(int argc, char** argv) {
  FlagsRequest request = FlagsRequest::kRun;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      request = FlagsRequest::kHelp;
      continue;
    }
    if (!absl::ConsumePrefix(&arg, "-") || arg.empty() || arg == "-") {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", argv[i],
                       "': groove-load takes only --flags"));
    }
    absl::ConsumePrefix(&arg, "-");
    absl::string_view name = arg;
    std::optional<absl::string_view> value;
    if (const size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    absl::CommandLineFlag* flag = FindLoadFlag(name);
    if (flag == nullptr && !value.has_value() &&
        absl::ConsumePrefix(&name, "no")) {
      // --noNAME, for a boolean NAME only.
      flag = FindLoadFlag(name);
      if (flag != nullptr && !flag->IsOfType<bool>()) flag = nullptr;
      value = "false";
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", argv[i], "'"));
    }
    if (!value.has_value()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", flag->Name(), " needs a value"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag->Name(), "='", *value, "': ", error));
    }
  }
  return request;
}

// CheckOptions returns a message naming the first flag whose value is out
// of its range, or "" when all are usable.
std::string CheckOptions(const LoadOptions& o) {
  const std::string mix = absl::GetFlag(FLAGS_mix);
  const std::string output = absl::GetFlag(FLAGS_output);
  for (const auto& [flag, value] :
       {std::pair{"--mix", mix},
        std::pair{"--baseline", absl::GetFlag(FLAGS_baseline)}}) {
    if (!ParseMix(value).has_value()) {
      return absl::StrCat(flag, "='", value, "' is not one of health, ",
                          "inspect_summary, inspect_page, add_remove, ",
                          "add_remove_id, list_pools");
    }
  }
  if (output != "table" && output != "json") {
    return absl::StrCat("--output='", output, "' is not table or json");
  }
  if (o.connections < 1) return "--connections must be at least 1";
  if (o.in_flight < 1) return "--in_flight must be at least 1";
  if (o.duration <= absl::ZeroDuration()) return "--duration must be positive";
  if (o.warmup < absl::ZeroDuration()) return "--warmup must not be negative";
  if (absl::GetFlag(FLAGS_rounds) < 1) return "--rounds must be at least 1";
  return "";
}

int Main(int argc, char** argv) {
  // A usage error is said before any work: exit 2, as groovectl's.
  constexpr int kExitUsage = 2;
  const auto usage_error = [](absl::string_view message) {
    std::fprintf(stderr, "error: %s\n\n%s", std::string(message).c_str(),
                 Help().c_str());
    return kExitUsage;
  };
  const absl::StatusOr<FlagsRequest> request = ParseFlags(argc, argv);
  if (!request.ok()) return usage_error(request.status().message());
  if (*request == FlagsRequest::kHelp) {
    std::fputs(Help().c_str(), stdout);
    return 0;
  }
  LoadOptions o;
  o.addr = absl::GetFlag(FLAGS_addr);
  o.pool = absl::GetFlag(FLAGS_pool);
  o.connections = absl::GetFlag(FLAGS_connections);
  o.in_flight = absl::GetFlag(FLAGS_in_flight);
  o.duration = absl::GetFlag(FLAGS_duration);
  o.warmup = absl::GetFlag(FLAGS_warmup);
  o.server_pid = absl::GetFlag(FLAGS_server_pid);
  if (const std::string error = CheckOptions(o); !error.empty()) {
    return usage_error(error);
  }
  const std::optional<Mix> mix = ParseMix(absl::GetFlag(FLAGS_mix));
  const std::string output = absl::GetFlag(FLAGS_output);
  const bool json = output == "json";
  if (!absl::GetFlag(FLAGS_write_request).empty()) {
    return WriteRequest(*mix, o.pool, absl::GetFlag(FLAGS_write_request));
  }
  // Fork the data-plane child before gRPC starts any thread.
  std::unique_ptr<DataPlaneChild> child;
  if (!absl::GetFlag(FLAGS_contend_dir).empty()) {
    child = DataPlaneChild::Fork(absl::GetFlag(FLAGS_contend_dir), o.pool);
    if (child == nullptr) {
      std::fprintf(stderr, "groove-load: cannot fork the data-plane child\n");
      return 1;
    }
  }
  if (absl::GetFlag(FLAGS_scale) > 0) {
    return RunScale(o, absl::GetFlag(FLAGS_scale),
                    absl::GetFlag(FLAGS_server_pid), json);
  }
  if (*mix == Mix::kInspectPage) {
    if (std::string e = PreparePool(o, 1000); !e.empty()) {
      std::fprintf(stderr, "groove-load: preparing pool '%s': %s\n",
                   o.pool.c_str(), e.c_str());
      return 1;
    }
  }

  const int rounds = absl::GetFlag(FLAGS_rounds);
  if (child != nullptr) {
    // Three arms: alone, beside the control (a busy loop), beside the data
    // plane. The child runs through each whole run, warmup included.
    uint64_t burn_loops = 0, pairs = 0;
    auto beside_child = [&](char command, uint64_t* loops) {
      Arm arm;
      arm.mix = *mix;
      arm.enter = [&child, command] { return child->Start(command); };
      arm.leave = [&child, loops] { *loops += child->Stop(); };
      return arm;
    };
    const std::vector<Arm> arms = {Arm{*mix}, beside_child('b', &burn_loops),
                                   beside_child('g', &pairs)};
    const Interleaved runs = RunInterleaved(o, arms, rounds);
    if (!runs.error.empty()) {
      std::fprintf(stderr, "groove-load: data-plane child: %s\n",
                   runs.error.c_str());
      return 1;
    }
    const RunResult& quiet = runs.merged[0];
    const RunResult& burn = runs.merged[1];
    const RunResult& loud = runs.merged[2];
    const double child_s =
        absl::ToDoubleSeconds(o.duration + o.warmup) * rounds;
    if (json) {
      std::printf(
          "{\"mode\":\"contend\",\"rounds\":%d,\"uncontended\":%s,"
          "\"control\":%s,\"contended\":%s,"
          "\"dataplane_pairs_per_s\":%.1f,"
          "\"control_loops_per_s\":%.1f,%s,%s}\n",
          rounds, ResultJson(quiet).c_str(), ResultJson(burn).c_str(),
          ResultJson(loud).c_str(), pairs / child_s, burn_loops / child_s,
          RoundsJson("", runs, 2, 0).c_str(),
          RoundsJson("_vs_control", runs, 2, 1).c_str());
    } else {
      PrintTableHeader();
      PrintTableRow(quiet, absl::StrCat(quiet.mix, "/alone"));
      PrintTableRow(burn, absl::StrCat(burn.mix, "/busy-loop"));
      PrintTableRow(loud, absl::StrCat(loud.mix, "/dataplane"));
      std::printf("data plane: %.0f Acquire+Release pairs/s; control: %.0f "
                  "loops/s\n", pairs / child_s, burn_loops / child_s);
      PrintRoundRatios("dataplane/alone", runs, 2, 0);
      PrintRoundRatios("dataplane/busy-loop", runs, 2, 1);
    }
    return Sane(quiet) && Sane(burn) && Sane(loud) && pairs > 0 ? 0 : 1;
  }

  if (absl::GetFlag(FLAGS_compare)) {
    const Mix baseline = *ParseMix(absl::GetFlag(FLAGS_baseline));
    const Interleaved runs =
        RunInterleaved(o, {Arm{*mix}, Arm{baseline}}, rounds);
    const RunResult& x = runs.merged[0];
    const RunResult& floor = runs.merged[1];
    if (json) {
      // The baseline's key is its mix's name ("health" by default).
      std::printf(
          "{\"mode\":\"compare\",\"rounds\":%d,\"mix\":%s,"
          "\"%s\":%s,%s}\n",
          rounds, ResultJson(x).c_str(), MixName(baseline),
          ResultJson(floor).c_str(), RoundsJson("", runs, 0, 1).c_str());
    } else {
      PrintTableHeader();
      PrintTableRow(x);
      PrintTableRow(floor);
      PrintRoundRatios(absl::StrCat(x.mix, "/", MixName(baseline)), runs, 0, 1);
    }
    return Sane(x) && Sane(floor) ? 0 : 1;
  }

  const RunResult x = RunLoad(o, *mix);
  if (json) {
    std::printf("%s\n", ResultJson(x).c_str());
  } else {
    PrintTableHeader();
    PrintTableRow(x);
  }
  return Sane(x) ? 0 : 1;
}

}  // namespace
}  // namespace groove::load

int main(int argc, char** argv) { return groove::load::Main(argc, argv); }
