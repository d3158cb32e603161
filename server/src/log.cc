#include "groove/server/log.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <thread>
#include <type_traits>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "boost/lockfree/queue.hpp"

namespace groove::server {
namespace {

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

bool IsBareValueChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
         c == '/' || c == '@' || c == '+' || c == ',' || c == '[' || c == ']' ||
         c == '-';
}

void AppendValue(std::string* line, absl::string_view value) {
  bool bare = !value.empty();
  for (char c : value) bare = bare && IsBareValueChar(c);
  if (bare) {
    line->append(value.data(), value.size());
    return;
  }
  line->push_back('"');
  for (unsigned char c : value) {
    if (c == '"' || c == '\\') {
      line->push_back('\\');
      line->push_back(static_cast<char>(c));
    } else if (c == '\n') {
      line->append("\\n");
    } else if (c < 0x20 || c >= 0x7f) {
      absl::StrAppend(line, "\\x", absl::Hex(c, absl::kZeroPad2));
    } else {
      line->push_back(static_cast<char>(c));
    }
  }
  line->push_back('"');
}

}  // namespace

std::string FormatLogLine(absl::Time time, LogLevel level,
                          absl::string_view event,
                          std::initializer_list<LogField> fields) {
  std::string line = absl::StrCat(
      "time=",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone()),
      " level=", LevelName(level), " event=");
  AppendValue(&line, event);
  for (const LogField& field : fields) {
    absl::StrAppend(&line, " ", field.key, "=");
    AppendValue(&line, field.value);
  }
  line.push_back('\n');
  return line;
}

namespace {

// WriteAll writes `bytes` to stderr, resuming short writes; an error drops
// the rest (there is nowhere else to report it).
void WriteAll(absl::string_view bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// Batching is the state behind StartLogBatching, made by the first one
// and never destroyed (log.h, "Lifetime"): gRPC's threads may queue and
// drain lines while static destructors run, after main returns, and with
// batching on the flusher runs until the process ends. A line queued by a
// thread racing StopLogBatching is written by the next Log; one still
// queued when the process ends is lost.
//
// Never freed, yet no leak to LeakSanitizer, with no suppression: the
// Batching is reached from started_batching (a global), and the queue is
// fixed_sized, so its nodes are one array (boost/lockfree/detail/
// freelist.hpp: runtime_sized_freelist_storage's `T* nodes_`, a plain
// pointer, allocated by the queue's constructor) linked by 16-bit indices
// with their ABA tags (tagged_index), not by pointers. LeakSanitizer
// follows nodes_ to the array and, in it, the std::string* of every queued
// line. The default, node-based queue links its nodes by tagged pointers
// (on x86-64 and arm64 the tag is in a pointer's top 16 bits,
// BOOST_LOCKFREE_PTR_COMPRESSION), which LeakSanitizer cannot follow:
// never destroyed, it reads as some 8,000 leaked nodes and every line in
// them (LogAtExitTest.LinesStillQueuedAtExitAreNoLeak, under ASan).
struct Batching {
  // kLogQueueLines + 1 nodes (one is the queue's dummy), all made here:
  // bounded_push takes a free one, or fails when the queue is full, and
  // never allocates (a fixed_sized queue has no allocation but this one).
  boost::lockfree::queue<std::string*, boost::lockfree::fixed_sized<true>>
      queue{kLogQueueLines};
  std::atomic<bool> on{false};
  // Touched only by StartLogBatching and StopLogBatching (one thread).
  std::thread flusher;
  std::unique_ptr<absl::Notification> stop;
};
// A fixed_sized queue's node indices are 16 bits, the last one its null
// (its constructor throws beyond 65535 nodes).
static_assert(kLogQueueLines + 1 <= 65535);

// The Batching, made by the first StartLogBatching and never deleted;
// null before, so a process that never batches (tools, fuzzers) allocates
// no queue. Constant-initialized and trivially destructible: usable until
// the process ends.
constinit std::atomic<Batching*> started_batching{nullptr};
static_assert(std::is_trivially_destructible_v<std::atomic<Batching*>>);

// The budget of routine lines (per second 0: no limit). Constant-
// initialized and trivially destructible, so never destroyed:
// SetRoutineLineBudget resets it in place rather than replacing it.
constinit LineBudget routine_budget(0);
static_assert(std::is_trivially_destructible_v<LineBudget>);

// The budget of refused calls' lines, likewise (log.h, "A budget for the
// lines of refused calls").
constinit LineBudget refusal_budget(0);

// AppendSuppressed has `append` the log_lines_suppressed line of `budget`
// (of `kind`, its flag `flag`) when it refused lines not yet reported.
template <typename Append>
void AppendSuppressed(LineBudget& budget, absl::string_view kind,
                      absl::string_view flag, const Append& append) {
  if (const uint64_t n = budget.TakeSuppressed(); n > 0) {
    append(FormatLogLine(absl::Now(), LogLevel::kWarn, "log_lines_suppressed",
                         {{"kind", kind},
                          {"count", n},
                          {"reason", absl::StrCat("over ", flag)}}));
  }
}

// WriteQueuedThen writes every queued line, then `last` (may be empty), in
// writes of at most PIPE_BUF bytes that end at line ends (a longer line
// is written alone). Two threads draining at once each write the lines
// they took. With `report_suppressed`, the log_lines_suppressed line of
// each budget with refused lines not yet reported comes first.
void WriteQueuedThen(absl::string_view last, bool report_suppressed = true) {
  Batching* const batching = started_batching.load(std::memory_order_acquire);
  std::string out;
  const auto append = [&](absl::string_view line) {
    if (!out.empty() && out.size() + line.size() > PIPE_BUF) {
      WriteAll(out);
      out.clear();
    }
    out.append(line.data(), line.size());
  };
  if (report_suppressed) {
    AppendSuppressed(routine_budget, "routine",
                     "--log_routine_lines_per_second", append);
    AppendSuppressed(refusal_budget, "refusal",
                     "--log_refusal_lines_per_second", append);
  }
  std::string* queued = nullptr;
  while (batching != nullptr && batching->queue.pop(queued)) {
    append(*queued);
    delete queued;
  }
  if (out.empty()) {
    WriteAll(last);  // nothing was queued: no copy of the line
    return;
  }
  append(last);
  WriteAll(out);
}

}  // namespace

void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields) {
  WriteQueuedThen(FormatLogLine(absl::Now(), level, event, fields));
}

void RouteProtobufLogs() {
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel level,
                                     const char* filename, int line,
                                     const std::string& message) {
    const std::string source = absl::StrCat(filename, ":", line);
    switch (level) {
      case google::protobuf::LOGLEVEL_INFO:
        LogDeferred(LogLevel::kInfo, "protobuf_log",
                    {{"source", source}, {"message", message}});
        break;
      case google::protobuf::LOGLEVEL_WARNING:
      case google::protobuf::LOGLEVEL_ERROR:
        LogDeferred(LogLevel::kWarn, "protobuf_log",
                    {{"source", source}, {"message", message}});
        break;
      case google::protobuf::LOGLEVEL_FATAL:
        Log(LogLevel::kError, "protobuf_log",
            {{"source", source}, {"message", message}});
        break;
    }
  });
}

namespace {

// LogBudgeted writes a line under `budget`: once admitted, queued as
// LogDeferred's when `may_queue`, else at once (after the queued lines).
void LogBudgeted(LineBudget& budget, bool may_queue, LogLevel level,
                 absl::string_view event,
                 std::initializer_list<LogField> fields) {
  const absl::Time now = absl::Now();
  if (!budget.Admit(absl::ToUnixSeconds(now))) {
    return;  // counted; reported by the next write of the log
  }
  Batching* const batching = started_batching.load(std::memory_order_acquire);
  auto line =
      std::make_unique<std::string>(FormatLogLine(now, level, event, fields));
  // Relaxed: a line queued just after the flusher stopped is written by
  // the next Log (see Batching).
  if (may_queue && batching != nullptr &&
      batching->on.load(std::memory_order_relaxed) &&
      batching->queue.bounded_push(line.get())) {
    line.release();  // the queue owns it now
    return;
  }
  WriteQueuedThen(*line);
}

}  // namespace

void LogDeferred(LogLevel level, absl::string_view event,
                 std::initializer_list<LogField> fields) {
  LogBudgeted(routine_budget, /*may_queue=*/true, level, event, fields);
}

void LogRefusal(LogLevel level, absl::string_view event,
                std::initializer_list<LogField> fields) {
  LogBudgeted(refusal_budget, /*may_queue=*/false, level, event, fields);
}

void RouteGrpcLogs() {
  if (const char* trace = std::getenv("GRPC_TRACE");
      trace != nullptr && trace[0] != '\0') {
    const char* verbosity = std::getenv("GRPC_VERBOSITY");
    Log(LogLevel::kWarn, "grpc_trace_on",
        {{"grpc_trace", trace},
         {"grpc_verbosity", verbosity != nullptr ? verbosity : ""},
         {"note",
          "gRPC's tracers can log request headers (bearer tokens) and "
          "decrypted bytes; never in production"}});
  }
  // gRPC filters by GRPC_VERBOSITY before calling the function; reading
  // it now (grpc_init would, later) applies it to lines logged before.
  gpr_log_verbosity_init();
  gpr_set_log_function([](gpr_log_func_args* args) {
    const std::string source =
        absl::StrCat(args->file != nullptr ? args->file : "", ":", args->line);
    const absl::string_view message =
        args->message != nullptr ? args->message : "";
    if (args->severity == GPR_LOG_SEVERITY_ERROR) {
      LogBudgeted(routine_budget, /*may_queue=*/false, LogLevel::kWarn,
                  "grpc_log", {{"source", source}, {"message", message}});
    } else {
      LogBudgeted(routine_budget, /*may_queue=*/true, LogLevel::kInfo,
                  "grpc_log", {{"source", source}, {"message", message}});
    }
  });
}

bool LineBudget::Admit(int64_t unix_second) {
  // Relaxed, all: a limit and counts, not publications.
  const uint64_t per_second = per_second_.load(std::memory_order_relaxed);
  if (per_second == 0) return true;  // no limit
  int64_t seen = second_.load(std::memory_order_relaxed);
  if (unix_second > seen && second_.compare_exchange_strong(
                                seen, unix_second, std::memory_order_relaxed)) {
    admitted_.store(0, std::memory_order_relaxed);
  }
  // Over budget, a load spares every further line of the second an RMW
  // on this shared line.
  if (admitted_.load(std::memory_order_relaxed) < per_second &&
      admitted_.fetch_add(1, std::memory_order_relaxed) < per_second) {
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

uint64_t LineBudget::TakeSuppressed() {
  // Relaxed: counts, not publications. reported_ only moves up, to a total
  // some caller loaded, so racing callers take disjoint ranges of lines.
  const uint64_t total = suppressed_.load(std::memory_order_relaxed);
  uint64_t reported = reported_.load(std::memory_order_relaxed);
  while (reported < total && !reported_.compare_exchange_weak(
                                 reported, total, std::memory_order_relaxed)) {
  }
  return reported < total ? total - reported : 0;
}

void LineBudget::Reset(uint64_t per_second) {
  // Relaxed: a limit and counts, not publications (see the contract).
  per_second_.store(per_second, std::memory_order_relaxed);
  second_.store(0, std::memory_order_relaxed);
  admitted_.store(0, std::memory_order_relaxed);
  suppressed_.store(0, std::memory_order_relaxed);
  reported_.store(0, std::memory_order_relaxed);
}

uint64_t RoutineLinesSuppressedTotal() {
  return routine_budget.suppressed_total();
}

void SetRoutineLineBudget(uint64_t per_second) {
  routine_budget.Reset(per_second);
}

uint64_t RefusalLinesSuppressedTotal() {
  return refusal_budget.suppressed_total();
}

void SetRefusalLineBudget(uint64_t per_second) {
  refusal_budget.Reset(per_second);
}

void StartLogBatching(absl::Duration interval) {
  // Relaxed: only this function, on this one thread, stores it.
  Batching* batching = started_batching.load(std::memory_order_relaxed);
  if (batching == nullptr) batching = new Batching;  // never deleted
  batching->stop = std::make_unique<absl::Notification>();
  // Without batching (interval 0) the thread only reports the counts of
  // suppressed lines, once a second: nothing else would write them while
  // the log is quiet.
  const absl::Duration wake =
      interval > absl::ZeroDuration() ? interval : absl::Seconds(1);
  batching->flusher = std::thread([wake, stop = batching->stop.get()] {
    // The counts of suppressed lines at most once a second from here:
    // under a flood every flush would have some (ten lines a second at
    // the default interval), and once a second says as much. Any other
    // write still reports what is pending, so the count is never lost.
    absl::Time last_report = absl::InfinitePast();
    while (!stop->WaitForNotificationWithTimeout(wake)) {
      const absl::Time now = absl::Now();
      const bool report = now - last_report >= absl::Seconds(1);
      if (report) last_report = now;
      WriteQueuedThen("", report);
    }
  });
  batching->on.store(interval > absl::ZeroDuration(),
                     std::memory_order_relaxed);
  // Release: whoever finds the pointer finds the queue constructed.
  started_batching.store(batching, std::memory_order_release);
}

void StopLogBatching() {
  Batching* const batching = started_batching.load(std::memory_order_acquire);
  if (batching == nullptr || !batching->flusher.joinable()) return;
  batching->on.store(false, std::memory_order_relaxed);
  batching->stop->Notify();
  batching->flusher.join();
  batching->stop.reset();
  WriteQueuedThen("");
}

}  // namespace groove::server
