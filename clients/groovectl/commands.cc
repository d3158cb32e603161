// groovectl/commands.cc: see commands.h.

#include "commands.h"

#include <google/protobuf/util/json_util.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "groove/build_info.h"
#include "groove/client/client_security.h"
#include "groove/client/inspect_pages.h"
#include "groove/client/volume_pool_client.h"
#include "read_whole_file.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace groove::ctl {
namespace {

using Row = std::vector<std::string>;

// PrintTable prints rows with columns padded to their widest cell; the
// last column is not padded.
void PrintTable(std::ostream& out, const std::vector<Row>& rows) {
  std::vector<size_t> widths;
  for (const Row& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options)
           .ok()) {
    return "{}";
  }
  return json;
}

std::string BackingName(v1::Backing backing) {
  return absl::AsciiStrToLower(
      absl::StripPrefix(v1::Backing_Name(backing), "BACKING_"));
}

std::string StateName(v1::VolumeState state) {
  std::string name = absl::AsciiStrToLower(
      absl::StripPrefix(v1::VolumeState_Name(state), "VOLUME_STATE_"));
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

std::string Percent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "0%";
  return absl::StrCat(part * 100 / whole, "%");
}

// ReportError prints `status` and returns its exit code (ReportCallError)
// for a call made through `client`.
int ReportError(const absl::Status& status, const VolumePoolClient& client,
                std::ostream& err) {
  CallTarget target;
  target.address = client.options().address;
  target.connected = client.channel()->GetState(false) == GRPC_CHANNEL_READY;
  target.tls = !client.options().security.tls_ca_file.empty();
  target.client_certificate = !client.options().security.tls_cert_file.empty();
  target.token = !client.options().security.token_file.empty();
  return ReportCallError(status, target, err);
}

}  // namespace

int ReportCallError(const absl::Status& status, const CallTarget& target,
                    std::ostream& err) {
  err << "error: " << absl::StatusCodeToString(status.code()) << ": "
      << status.message() << "\n";
  if (OutcomeUnknown(status)) {
    err << "error: the call was cut off after it may have reached "
           "groove-volumed at "
        << target.address
        << ", which may have made the change: look (groovectl inspect POOL "
           "--volumes) before repeating it\n";
    return kExitOutcomeUnknown;
  }
  if (absl::IsCancelled(status)) {
    // groovectl never cancels its own calls, so the server (or the
    // connection to it) ended this one: a server stopping or restarting
    // (gRPC 1.51 answers CANCELLED to a call that races its shutdown,
    // docs/SERVER.md §5). Retrying later is the answer, as for UNAVAILABLE.
    err << "error: groove-volumed at " << target.address
        << " answered but cannot serve the call now (it ended the call: "
           "shutting down or restarting?); retry later\n";
    return kExitUnreachable;
  }
  if (absl::IsUnavailable(status) && target.connected) {
    // The server answered: it is reachable, but refused the call for now.
    err << "error: groove-volumed at " << target.address
        << " answered but cannot serve the call now; retry later\n";
    return kExitUnreachable;
  }
  if (absl::IsUnavailable(status) ||
      (absl::IsDeadlineExceeded(status) && !target.connected)) {
    err << "error: cannot reach groove-volumed at " << target.address << "\n";
    const std::string message = absl::AsciiStrToLower(status.message());
    // The hint names the credential gRPC's message blames. Against a
    // mutual-TLS server, a client without an accepted certificate sees
    // only the connection closed.
    if (absl::StrContains(message, "certificate verify failed")) {
      err << "error: the TLS handshake failed: the server's certificate is "
             "not signed by a CA of --tls-ca (or is expired or not yet "
             "valid)\n";
    } else if (absl::StrContains(message, "is not in peer certificate")) {
      err << "error: the TLS handshake failed: the server's certificate "
             "does not carry the name groovectl checked: give "
             "--tls-server-name with a name it carries (else the host of "
             "--addr is checked)\n";
    } else if (absl::StrContains(message, "ssl") ||
               absl::StrContains(message, "handshake") ||
               absl::StrContains(message, "certificate") ||
               (target.tls && absl::StrContains(message, "socket closed"))) {
      err << "error: the TLS handshake failed: "
          << (target.client_certificate
                  ? "the server may not accept the client certificate of "
                    "--tls-cert (a server with --tls-client-ca accepts only "
                    "certificates its CAs signed), or may not speak TLS"
                  : "the server may require a client certificate (mutual "
                    "TLS): give --tls-cert and --tls-key; or it may not "
                    "speak TLS")
          << "\n";
    }
    return kExitUnreachable;
  }
  if (absl::IsUnauthenticated(status) && !target.token) {
    err << "error: the server requires a bearer token: give --token-file\n";
  }
  return kExitServerError;
}

void PrintPools(const v1::ListPoolsResponse& response, std::ostream& out) {
  std::vector<Row> rows = {{"POOL", "BACKING", "VOLUME", "MAPPED/MAX", "EMPTY",
                            "IN USE", "CAPACITY", "FILL"}};
  for (const v1::PoolSummary& p : response.pools()) {
    rows.push_back(
        {p.name(), BackingName(p.backing_in_use()),
         HumanBytes(p.volume_size_bytes()),
         absl::StrCat(p.volumes_mapped(), "/", p.max_volumes()),
         absl::StrCat(p.volumes_empty()), absl::StrCat(p.volumes_in_use()),
         HumanBytes(p.capacity_bytes()),
         absl::StrCat(FillBar(p.volumes_in_use(), p.volumes_empty(),
                              p.max_volumes(), 20),
                      " ", Percent(p.volumes_mapped(), p.max_volumes()))});
  }
  PrintTable(out, rows);
  // Pools the server found corrupt at start and does not serve.
  for (const v1::QuarantinedPool& q : response.quarantined_pools()) {
    out << "QUARANTINED " << q.name() << ": " << q.reason() << "\n";
  }
}

void PrintSummary(const v1::PoolSummary& p, std::ostream& out,
                  const std::vector<Row>& extra) {
  const v1::PoolCounters& c = p.counters();
  std::vector<Row> rows = {
      {"pool", p.name()},
      {"backing", absl::StrCat(BackingName(p.backing_in_use()), " (requested ",
                               BackingName(p.backing_requested()), "), ",
                               HumanBytes(p.page_size_bytes()), " pages")},
      {"volume size", HumanBytes(p.volume_size_bytes())},
      {"volumes", absl::StrCat(p.volumes_mapped(), " of ", p.max_volumes(),
                               " mapped: ", p.volumes_empty(), " empty, ",
                               p.volumes_in_use(), " in use")},
      {"fill", absl::StrCat(FillBar(p.volumes_in_use(), p.volumes_empty(),
                                    p.max_volumes(), 40),
                            " ", Percent(p.volumes_mapped(), p.max_volumes()),
                            " (# in use, = empty, . unused)")},
      {"capacity",
       absl::StrCat(HumanBytes(p.capacity_bytes()), " (",
                    HumanBytes(p.empty_bytes()), " empty",
                    p.releasing_bytes() == 0
                        ? ""
                        : absl::StrCat("; ", HumanBytes(p.releasing_bytes()),
                                       " of removed volumes still being "
                                       "given back"),
                    ")")},
      {"quarantine",
       absl::StrCat(p.volumes_in_quarantine(),
                    p.volumes_in_quarantine() == 1 ? " volume" : " volumes",
                    " quarantined now (counted in use), ",
                    p.volumes_reclaimed(), " reclaimed since creation")},
      {"counters", absl::StrCat("added ", c.volumes_added(), ", removed ",
                                c.volumes_removed(), ", acquires ",
                                c.acquires(), ", releases ", c.releases(),
                                ", quarantined ", c.volumes_quarantined())},
      {"locked", p.locked() ? "yes (recovery running)" : "no"},
  };
  // Only when there are some: a failed punch is rare, and a row of zeros
  // on every inspect would be noise.
  if (p.volumes_not_given_back() != 0) {
    rows.push_back(
        {"give-back failed",
         absl::StrCat(p.volumes_not_given_back(),
                      p.volumes_not_given_back() == 1 ? " volume" : " volumes",
                      " since the server started: memory still allocated "
                      "until the index is added again")});
  }
  rows.insert(rows.end(), extra.begin(), extra.end());
  PrintTable(out, rows);
}

namespace {

void PrintVolumeIndices(absl::string_view verb,
                        const std::vector<uint64_t>& indices,
                        absl::string_view pool, std::ostream& out) {
  out << verb << " " << indices.size()
      << (indices.size() == 1 ? " volume" : " volumes") << " "
      << (verb == "added" ? "to" : "from") << " " << pool << ": indices "
      << absl::StrJoin(indices, ", ") << "\n";
}

// Progress prints "<spinner> adding ... <elapsed>" on stderr every 100 ms
// until destroyed, then erases the line. For terminals only.
class Progress {
 public:
  // The first frame is drawn before the constructor returns, so that even
  // an add that finishes at once shows (and then erases) the line: the
  // output does not depend on thread scheduling.
  Progress(std::ostream& err, std::string what)
      : err_(err), what_(std::move(what)), start_(absl::Now()) {
    Draw(0);
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      for (int n = 1;; ++n) {
        if (cv_.wait_for(lock, std::chrono::milliseconds(100),
                         [this] { return done_; })) {
          break;
        }
        Draw(n);
      }
      err_ << "\r\033[K" << std::flush;
    });
  }
  ~Progress() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Draw(int n) {
    static constexpr char kSpin[] = {'|', '/', '-', '\\'};
    err_ << "\r" << kSpin[n % 4] << " " << what_ << " "
         << absl::StrFormat("%.1fs",
                            absl::ToDoubleSeconds(absl::Now() - start_))
         << std::flush;
  }

  std::ostream& err_;
  const std::string what_;
  const absl::Time start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::thread thread_;
};

int RunPools(const Invocation& inv, const VolumePoolClient& client,
             std::ostream& out, std::ostream& err) {
  absl::StatusOr<v1::ListPoolsResponse> r = client.ListPools();
  if (!r.ok()) return ReportError(r.status(), client, err);
  if (inv.output == OutputFormat::kJson) {
    out << ToJson(*r) << "\n";
  } else {
    PrintPools(*r, out);
  }
  return kExitOk;
}

int RunAdd(const Invocation& inv, const VolumePoolClient& client,
           std::ostream& out, std::ostream& err, Terminal terminal) {
  v1::AddVolumeRequest request;
  request.set_pool(inv.pool);
  request.set_count(inv.count);
  if (inv.first_index.has_value()) request.set_first_index(*inv.first_index);
  if (absl::StartsWith(inv.info, "@")) {
    const std::string path = inv.info.substr(1);
    absl::StatusOr<std::string> content =
        ReadWholeFile(path, absl::StrCat("--info file ", path));
    if (!content.ok()) {
      err << "error: " << content.status().message() << "\n";
      return kExitUsage;
    }
    request.set_info(*std::move(content));
  } else {
    request.set_info(inv.info);
  }
  // The deadline fits the work: the server zeroes hugepages at 0.5 to 4 s
  // per GiB, so allow 8 s per GiB on top of --timeout. The volume size
  // comes from an Inspect (which also reports an unknown pool cheaply).
  absl::StatusOr<v1::InspectResponse> pool = client.Inspect([&] {
    v1::InspectRequest r;
    r.set_pool(inv.pool);
    return r;
  }());
  if (!pool.ok()) return ReportError(pool.status(), client, err);
  const uint64_t size = pool->summary().volume_size_bytes();
  const double gib = static_cast<double>(size) *
                     static_cast<double>(inv.count) / double(uint64_t{1} << 30);
  CallOptions call;
  call.timeout =
      absl::Ceil(inv.timeout + absl::Seconds(8) * gib, absl::Milliseconds(1));
  // The deadline, not a count of attempts, ends the repeats: an add cut
  // off while the server still makes it is answered ABORTED ("still in
  // progress") until the first attempt is done, which may take most of
  // that deadline; the client's default 10 attempts (~11 s of backoffs)
  // would give up on it long before. Attempts are bounded all the same:
  // one per backoff, and backoffs grow to 2 s.
  call.max_attempts = std::numeric_limits<int>::max();
  // An id of our own rather than generate_request_id: the hint below
  // names it.
  request.set_request_id(inv.request_id.empty() ? NewRequestId()
                                                : inv.request_id);
  absl::StatusOr<v1::AddVolumeResponse> r;
  {
    std::unique_ptr<Progress> progress;
    if (terminal.err && inv.output == OutputFormat::kTable) {
      progress = std::make_unique<Progress>(
          err, absl::StrCat("adding ", inv.count, " x ", HumanBytes(size),
                            " to ", inv.pool));
    }
    r = client.AddVolume(request, call);
  }
  if (!r.ok()) {
    const int exit_code = ReportError(r.status(), client, err);
    if (exit_code == kExitOutcomeUnknown) {
      err << "error: or repeat this add with --request-id "
          << request.request_id()
          << ": the server answers what the first did instead of adding "
             "again, also after a restart\n";
    }
    return exit_code;
  }
  if (inv.output == OutputFormat::kJson) {
    out << ToJson(*r) << "\n";
    return kExitOk;
  }
  PrintVolumeIndices("added",
                     {r->volume_indices().begin(), r->volume_indices().end()},
                     inv.pool, out);
  PrintSummary(r->summary(), out);
  return kExitOk;
}

// PrintChanged prints the answer `r` of a remove or a reclaim and returns
// the exit code: the error (ReportError), or the response as JSON, or
// what `describe` says of it and the pool's summary after it.
template <typename Response>
int PrintChanged(const absl::StatusOr<Response>& r, const Invocation& inv,
                 const VolumePoolClient& client, std::ostream& out,
                 std::ostream& err,
                 const std::function<void(const Response&)>& describe) {
  if (!r.ok()) return ReportError(r.status(), client, err);
  if (inv.output == OutputFormat::kJson) {
    out << ToJson(*r) << "\n";
    return kExitOk;
  }
  describe(*r);
  PrintSummary(r->summary(), out);
  return kExitOk;
}

int RunRemove(const Invocation& inv, const VolumePoolClient& client,
              std::ostream& out, std::ostream& err) {
  v1::RemoveVolumeRequest request;
  request.set_pool(inv.pool);
  request.set_count(inv.count);
  CallOptions call;
  call.timeout = inv.timeout;
  return PrintChanged<v1::RemoveVolumeResponse>(
      client.RemoveVolume(request, call), inv, client, out, err,
      [&](const v1::RemoveVolumeResponse& r) {
        std::vector<uint64_t> indices;
        for (const v1::RemovedVolume& v : r.volumes()) {
          indices.push_back(v.index());
        }
        PrintVolumeIndices("removed", indices, inv.pool, out);
      });
}

int RunReclaim(const Invocation& inv, const VolumePoolClient& client,
               std::ostream& out, std::ostream& err) {
  v1::ReclaimVolumeRequest request;
  request.set_pool(inv.pool);
  request.set_index(inv.index);
  CallOptions call;
  call.timeout = inv.timeout;
  return PrintChanged<v1::ReclaimVolumeResponse>(
      client.ReclaimVolume(request, call), inv, client, out, err,
      [&](const v1::ReclaimVolumeResponse& r) {
        out << "reclaimed volume " << r.index() << " of " << inv.pool
            << ": its header was bad (" << r.corruption()
            << "); its memory is given back and its index freed (while an "
               "add of the pool allocates: once that allocation ends)\n";
      });
}

int RunInspect(const Invocation& inv, const VolumePoolClient& client,
               std::ostream& out, std::ostream& err) {
  v1::InspectRequest request;
  request.set_pool(inv.pool);
  request.set_include_volumes(inv.volumes);
  request.set_page_size(1000);
  request.set_verify(inv.verify);
  v1::InspectResponse all;
  InspectPageGuard guard(inv.pool);
  // Follow the pages; verify only on the first (one walk is enough).
  for (int page = 0;; ++page) {
    absl::StatusOr<v1::InspectResponse> r = client.Inspect(request);
    if (!r.ok()) return ReportError(r.status(), client, err);
    if (inv.volumes) {
      if (absl::Status s = guard.Check(request.page_token(), *r); !s.ok()) {
        return ReportError(s, client, err);
      }
    }
    if (page == 0) {
      all = *r;
    } else {
      for (const v1::Volume& v : r->volumes()) *all.add_volumes() = v;
    }
    if (!inv.volumes || r->next_page_token().empty()) break;
    request.set_page_token(r->next_page_token());
    request.set_verify(false);
  }
  all.clear_next_page_token();
  const bool verify_failed = inv.verify && !all.verify_result().ok();
  if (inv.output == OutputFormat::kJson) {
    out << ToJson(all) << "\n";
  } else {
    std::vector<Row> extra;
    if (inv.verify) {
      const v1::VerifyResult& v = all.verify_result();
      extra.push_back(
          {"verify", v.ok() ? absl::StrCat("ok (", v.empty_volumes_walked(),
                                           " empty volumes on the stack)")
                            : absl::StrCat("FAILED: ", v.message())});
    }
    PrintSummary(all.summary(), out, extra);
    if (inv.volumes) {
      std::vector<Row> rows = {{"INDEX", "STATE", "INFO"}};
      for (const v1::Volume& v : all.volumes()) {
        rows.push_back({absl::StrCat(v.index()), StateName(v.state()),
                        v.state() == v1::VOLUME_STATE_CORRUPT
                            ? v.corruption()
                            : absl::CHexEscape(v.info())});
      }
      out << "\n";
      PrintTable(out, rows);
    }
  }
  if (verify_failed) {
    err << "error: DATA_LOSS: verify of pool '" << inv.pool
        << "' failed: " << all.verify_result().message() << "\n";
    return kExitServerError;
  }
  return kExitOk;
}

int RunHealth(const Invocation& inv, const VolumePoolClient& client,
              std::ostream& out, std::ostream& err) {
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> r =
      client.Health(inv.service);
  if (!r.ok()) return ReportError(r.status(), client, err);
  grpc::health::v1::HealthCheckResponse response;
  response.set_status(*r);
  if (inv.output == OutputFormat::kJson) {
    out << ToJson(response) << "\n";
  } else {
    out << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*r)
        << "\n";
  }
  return *r == grpc::health::v1::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitServerError;
}

// WatchStop is what watch's signal thread and its redraw loop share
// (RunWatch): whether a stop signal came, and whether the loop waits for
// a call's answer. std::mutex, not absl::Mutex: ThreadSanitizer must see
// the lock (Debian's Abseil is not instrumented).
struct WatchStop {
  std::mutex mu;
  std::condition_variable cv;  // signalled when `stopped` is set
  bool stopped = false;        // guarded by mu
  bool in_call = false;        // guarded by mu
};

int RunWatch(const Invocation& inv, const VolumePoolClient& client,
             const sigset_t& stop_signals, std::ostream& out, std::ostream& err,
             Terminal terminal) {
  // The signals are blocked in every thread (Run), so sigwait here takes
  // them. A call cannot be stopped: a signal that comes while the loop
  // waits for one ends the process here (the loop prints nothing
  // meanwhile); else the loop sees `stopped` and returns. Detached, and
  // sharing `stop`: it outlives RunWatch until the process ends.
  auto stop = std::make_shared<WatchStop>();
  std::thread([stop, stop_signals] {
    int sig = 0;
    if (sigwait(&stop_signals, &sig) != 0) return;  // EINVAL: cannot be
    std::lock_guard<std::mutex> lock(stop->mu);
    stop->stopped = true;
    if (stop->in_call) ExitNow(kExitOk);  // SIGINT or SIGTERM: a normal stop
    stop->cv.notify_all();
  }).detach();
  v1::InspectRequest request;
  request.set_pool(inv.pool);
  for (uint64_t n = 1;; ++n) {
    {
      std::lock_guard<std::mutex> lock(stop->mu);
      if (stop->stopped) return kExitOk;
      stop->in_call = true;
    }
    absl::StatusOr<v1::InspectResponse> r = client.Inspect(request);
    {
      std::lock_guard<std::mutex> lock(stop->mu);
      stop->in_call = false;
      if (stop->stopped) return kExitOk;
    }
    if (!r.ok()) return ReportError(r.status(), client, err);
    if (inv.output == OutputFormat::kJson) {
      out << ToJson(r->summary()) << "\n";
    } else {
      if (terminal.out) out << "\033[H\033[2J";  // home, clear screen
      out << "every " << absl::FormatDuration(inv.interval) << ": " << inv.pool
          << " at " << inv.address << " ("
          << absl::FormatTime("%H:%M:%S", absl::Now(), absl::LocalTimeZone())
          << ")\n";
      PrintSummary(r->summary(), out);
      out << "\n";
    }
    // A reader gone (`| head` under an ignored SIGPIPE) or a full disk:
    // redrawing on would ask the server for ever, for nobody.
    if (!FlushOutput(out, err)) return kExitServerError;
    if (inv.watch_count.has_value() && n >= *inv.watch_count) return kExitOk;
    // In steps of at most a day: a condition variable's wait_for of an
    // --interval of centuries would overflow its clock.
    const absl::Time next = absl::Now() + inv.interval;
    std::unique_lock<std::mutex> lock(stop->mu);
    for (absl::Duration left = inv.interval;
         !stop->stopped && left > absl::ZeroDuration();
         left = next - absl::Now()) {
      stop->cv.wait_for(
          lock, absl::ToChronoNanoseconds(std::min(left, absl::Hours(24))));
    }
    if (stop->stopped) return kExitOk;  // SIGINT or SIGTERM: a normal stop
  }
}

// RunVersion prints groovectl's build, then the server's (ListPools'
// server_build), and returns the call's exit code (ReportError) when the
// server's cannot be learnt. The client's line is printed (and flushed)
// before the call, so it shows even while an unreachable server makes the
// call wait out --timeout.
int RunVersion(const Invocation& inv, const VolumePoolClient& client,
               std::ostream& out, std::ostream& err) {
  if (inv.output == OutputFormat::kTable) {
    out << "client: " << ClientBuildLine() << "\n" << std::flush;
  }
  const absl::StatusOr<v1::ListPoolsResponse> r = client.ListPools();
  const int exit_code = r.ok() ? kExitOk : ReportError(r.status(), client, err);
  const v1::BuildInfo* server =
      r.ok() && r->has_server_build() ? &r->server_build() : nullptr;
  if (inv.output == OutputFormat::kJson) {
    out << "{\"client\":" << ToJson(ThisBuild())
        << ",\"server\":" << (server != nullptr ? ToJson(*server) : "null")
        << "}\n";
  } else if (server != nullptr) {
    out << "server: " << BuildLine("groove-volumed", *server) << " at "
        << inv.address << "\n";
  } else {
    out << "server: unknown"
        << (r.ok() ? absl::StrCat(" (groove-volumed at ", inv.address,
                                  " answered without its build: a server "
                                  "older than ListPoolsResponse.server_build)")
                   : "")
        << "\n";
  }
  return exit_code;
}

// Dispatch runs the command of `inv` through `client`.
int Dispatch(const Invocation& inv, const VolumePoolClient& client,
             std::ostream& out, std::ostream& err, Terminal terminal,
             const sigset_t& stop_signals) {
  switch (*inv.command) {
    case Command::kPools:
      return RunPools(inv, client, out, err);
    case Command::kAdd:
      return RunAdd(inv, client, out, err, terminal);
    case Command::kRemove:
      return RunRemove(inv, client, out, err);
    case Command::kReclaim:
      return RunReclaim(inv, client, out, err);
    case Command::kInspect:
      return RunInspect(inv, client, out, err);
    case Command::kHealth:
      return RunHealth(inv, client, out, err);
    case Command::kWatch:
      return RunWatch(inv, client, stop_signals, out, err, terminal);
    case Command::kVersion:
      return RunVersion(inv, client, out, err);
  }
  return kExitUsage;
}

}  // namespace

bool FlushOutput(std::ostream& out, std::ostream& err) {
  errno = 0;
  if (out.flush()) return true;
  // The failed write's errno (stdio's, under std::cout) is still set.
  const int error = errno;
  err << "error: cannot write the output: "
      << (error != 0 ? std::strerror(error) : "write failed") << "\n";
  return false;
}

void ExitNow(int code) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);  // std::cout writes through C's stdout buffer
#if defined(__SANITIZE_ADDRESS__)
  // LeakSanitizer checks from an atexit handler, which std::_Exit skips.
  __lsan_do_leak_check();
#endif
  std::_Exit(code);
}

std::string ClientBuildLine() { return BuildLine("groovectl", ThisBuild()); }

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B",   "KiB", "MiB",
                                           "GiB", "TiB", "PiB"};
  int unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  const std::string text = absl::StrFormat("%.1f", value);
  return absl::StrCat(absl::StripSuffix(text, ".0"), " ", kUnits[unit]);
}

std::string FillBar(uint64_t in_use, uint64_t empty, uint64_t max_volumes,
                    int width) {
  std::string bar = "[";
  const uint64_t w = static_cast<uint64_t>(width);
  // Round the mapped part up, so that one volume of many still shows.
  auto cells = [&](uint64_t n) {
    return max_volumes == 0
               ? 0
               : std::min(w, (n * w + max_volumes - 1) / max_volumes);
  };
  const uint64_t used_cells = cells(in_use);
  const uint64_t mapped_cells = std::max(used_cells, cells(in_use + empty));
  bar += std::string(used_cells, '#');
  bar += std::string(mapped_cells - used_cells, '=');
  bar += std::string(w - mapped_cells, '.');
  bar += "]";
  return bar;
}

int Run(const Invocation& inv, std::ostream& out, std::ostream& err,
        Terminal terminal) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  if (inv.command == Command::kWatch) {
    // Before the client exists: gRPC's threads inherit the mask, so the
    // signals stay pending for sigtimedwait instead of killing us.
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  }
  ClientOptions options;
  options.address = inv.address;
  options.timeout = inv.timeout;
  options.security.tls_ca_file = inv.tls_ca;
  options.security.tls_cert_file = inv.tls_cert;
  options.security.tls_key_file = inv.tls_key;
  options.security.tls_server_name = inv.tls_server_name;
  options.security.token_file = inv.token_file;
  // groovectl has no switch for a token in plaintext beyond loopback: it
  // refuses that itself (below, after Create has checked the files), in
  // its own words, rather than the library's, which names
  // allow_plaintext_token.
  options.security.allow_plaintext_token = true;
  absl::StatusOr<std::unique_ptr<VolumePoolClient>> client =
      VolumePoolClient::Create(options);
  if (!client.ok()) {
    err << "error: " << client.status().message() << "\n";
    return kExitUsage;
  }
  if (!inv.token_file.empty() && inv.tls_ca.empty() &&
      !IsLoopbackTarget(inv.address)) {
    err << "error: refusing to send the bearer token in plaintext to "
        << inv.address
        << ", which is not a loopback address: give --tls-ca for TLS "
           "(groovectl sends a token without TLS only to 127.0.0.0/8, [::1], "
           "localhost or unix:)\n";
    return kExitUsage;
  }
  const int code = Dispatch(inv, **client, out, err, terminal, stop_signals);
  // A command that succeeded but whose answer did not reach its reader
  // failed: a script would take the missing output for success. (A failed
  // one keeps its code; ExitNow flushes what it printed.)
  if (code != kExitOk || FlushOutput(out, err)) return code;
  if (inv.command == Command::kAdd || inv.command == Command::kRemove ||
      inv.command == Command::kReclaim) {
    // Made, its answer lost: to the script as one cut off (exit 4), whose
    // advice fits; exit 1 says nothing changed, and a repeat would add or
    // remove again.
    err << "error: the " << CommandName(*inv.command)
        << " was made; only its answer is lost: look (groovectl inspect "
        << inv.pool << " --volumes) before repeating it\n";
    return kExitOutcomeUnknown;
  }
  return kExitServerError;
}

}  // namespace groove::ctl
