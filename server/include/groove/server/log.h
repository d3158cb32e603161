// groove/server/log.h: the server's event log, one line per event on
// stderr.
//
// Abseil 20220623 has no absl/log, and the server needs little: a line per
// event (start, stop, recovery, every RPC error, every change to a pool)
// that a person can read and a program can parse. Each line is logfmt:
//
//   time=2024-05-01T12:00:00.123456Z level=info event=add pool=main count=4
//
// `time` is UTC with microseconds, `level` is info, warn or error, `event`
// names what happened, and the event's fields follow in the order given.
// A value that is empty or holds anything but [A-Za-z0-9_.:/@+,\[\]-] is
// quoted, with " and \ backslash-escaped, newline as \n and other bytes
// outside printable ASCII as \xNN ("tenant a", "a\"b", "\x01"), so
// user-controlled text (pool names from requests, info bytes) can never
// forge a field or a line.
//
// Example:
//   groove::server::Log(groove::server::LogLevel::kWarn, "rpc_error",
//                       {{"method", "AddVolume"}, {"code", "NOT_FOUND"}});
//
// Lifetime: Log, LogDeferred, LogRefusal, RoutineLinesSuppressedTotal,
// RefusalLinesSuppressedTotal and the lines
// routed by RouteGrpcLogs and RouteProtobufLogs are safe from any thread
// until the process ends, static destruction included. They have to be:
// gRPC's threads and libprotobuf log at any time, after main returns too
// (gRPC 1.51 can finish its shutdown on a thread of its own). So the state
// behind them is never destroyed: the routine and refusal line budgets are
// constant-initialized, trivially destructible globals, and the batching
// queue and its flusher are made once and never freed, yet stay reachable
// from a global, so LeakSanitizer reports no leak without a suppression
// (log.cc, Batching). Tested by LogAtExitTest in
// tests/unit/server_parts_test.cc (threads logging through every route
// while the process exits, under ASan too).

#ifndef GROOVE_SERVER_LOG_H_
#define GROOVE_SERVER_LOG_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace groove::server {

enum class LogLevel { kInfo, kWarn, kError };

// LogField is one key=value pair of a line. The value is anything
// absl::StrCat takes (strings, integers, floating point); it is copied, so
// temporaries are fine.
struct LogField {
  LogField(absl::string_view key_in, const absl::AlphaNum& value_in)
      : key(key_in), value(value_in.Piece()) {}
  absl::string_view key;  // a literal: never user-controlled
  std::string value;
};

// FormatLogLine returns the line Log writes for an event at `time`,
// newline included. Exposed for tests. Cost: O(line length).
std::string FormatLogLine(absl::Time time, LogLevel level,
                          absl::string_view event,
                          std::initializer_list<LogField> fields);

// Log writes one line for `event` to stderr (fd 2).
// Thread safety: safe from any thread; the line is built first and written
// with a single write(2), so concurrent lines do not interleave (a write of
// at most PIPE_BUF = 4096 bytes to a pipe is atomic). Takes no lock.
// Errors: a failed write is ignored (there is nowhere else to report it).
// If batching is on (below), Log first writes every line queued by
// LogDeferred, so its own line follows them.
void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields = {});

// ---- Batching: the lines of routine events --------------------------------
//
// One write(2) per line costs a system call per pool change, a fifth of
// the system calls an AddVolume/RemoveVolume pair makes beyond a
// Health/Check (docs/PERFORMANCE.md §8). So the lines of routine,
// per-request events (an add, a remove) are batched the way access logs
// commonly are: LogDeferred queues its line (lock-free, no system call),
// and a flusher thread writes whatever is queued once per interval, in
// writes of at most PIPE_BUF bytes that end at line ends (so a pipe reader
// never sees half a line, whatever the other threads write). Every other
// line goes through Log, at once, after the queued ones.
//
// What it gives up: a process that ends without StopLogBatching (SIGKILL,
// a crash, a std::exit) loses the routine lines of at most the last
// interval; the slot tables, not the log, are what recovery relies on.
// Lines of events on different threads may appear out of time order by up
// to one interval (each line carries its own `time`).

// StartLogBatching starts the flusher, writing every `interval`. The first
// call makes the queue (kLogQueueLines lines, about 0.5 MiB), which is
// never freed; later calls reuse it. Should the process end with batching
// on, the flusher runs on to the end, and the lines still queued are lost.
// `interval` 0: no line is queued (LogDeferred writes at once), and the
// thread wakes once a second only to write the counts of suppressed lines
// (the budgets below), which a quiet log would otherwise hold back until
// its next line.
// REQUIRES: interval >= 0; batching is off. Call from one thread (main).
void StartLogBatching(absl::Duration interval);

// StopLogBatching stops the flusher and writes every queued line; from then
// on LogDeferred writes at once. No-op when batching is off. Call from the
// thread that started it, before the process exits (main does on every
// return), or the last interval's lines are lost.
void StopLogBatching();

// LogDeferred is Log for a routine event: with batching on, the line is
// queued and written by the flusher within one interval; with it off, or
// with the queue full (kLogQueueLines lines), it is written at once as Log
// does. Thread safety: safe from any thread, until the process ends
// ("Lifetime", above); takes no lock and, when queued, makes no system
// call.
void LogDeferred(LogLevel level, absl::string_view event,
                 std::initializer_list<LogField> fields = {});

// kLogQueueLines bounds the lines LogDeferred can queue between flushes.
inline constexpr size_t kLogQueueLines = 8192;

// ---- A budget for the lines of routine events -----------------------------
//
// Every add and remove is logged, which is the audit trail an operator
// reads at the rates a pool of large volumes sees (a few changes a second).
// Under a flood (a load test, a client in a retry loop: 40,000 calls a
// second here) the same lines cost 6-15% of the add/remove throughput, a
// fifth of its p99 and 4 MB of log a second (docs/PERFORMANCE.md section
// 9). So LogDeferred writes at
// most a budget of lines per second of the wall clock; it counts the rest,
// and the next write of the log (any Log's, or the flusher's, which reports
// counts at most once a second) starts with
//
//   time=... level=warn event=log_lines_suppressed kind=routine count=N
//
// for the lines refused since the last such line. The exact number of
// adds and removes stays in the metrics (groove_pool_volumes_added_total
// and the rest), and so does the number of lines refused
// (groove_log_lines_suppressed_total{kind="routine"}, from
// RoutineLinesSuppressedTotal).

// LineBudget admits at most `per_second` lines in each second, give or
// take the lines of threads that race the turn of a second (each may be
// admitted against the old second's count), and counts the rest;
// `per_second` 0 admits every line and counts none (no limit).
// Thread safety: lock-free; Admit and TakeSuppressed are safe from any
// thread. Cost: one relaxed load with no limit, three or four relaxed
// atomic operations with one.
// Lifetime: constexpr-constructible and trivially destructible, so a
// global one is constant-initialized and never destroyed (the routine
// budget, below, is one).
class LineBudget {
 public:
  constexpr explicit LineBudget(uint64_t per_second)
      : per_second_(per_second) {}

  // Admit says whether a line of `unix_second` may be written; false
  // counts it as suppressed. Seconds may arrive out of order (threads):
  // a line of an earlier second than the newest seen counts against the
  // newest.
  bool Admit(int64_t unix_second);

  // TakeSuppressed returns how many lines were refused and not yet
  // returned by an earlier call. Callers racing each other split the
  // refused lines between them: each line is returned by exactly one call.
  uint64_t TakeSuppressed();

  // suppressed_total returns every line refused since construction or
  // the last Reset. It never decreases but by a Reset (a Prometheus
  // counter), whatever TakeSuppressed takes.
  uint64_t suppressed_total() const {
    return suppressed_.load(std::memory_order_relaxed);
  }

  // Reset makes this a new budget of `per_second` lines a second: every
  // count starts again at zero, suppressed_total() included.
  // Thread safety: no data race with the other members (every field is an
  // atomic), but a line racing it may be counted under either budget, and
  // the counts of racing callers are then approximate: call it before
  // lines are logged. Cost: five relaxed stores.
  void Reset(uint64_t per_second);

 private:
  std::atomic<uint64_t> per_second_;     // 0: no limit
  std::atomic<int64_t> second_{0};       // the newest second seen
  std::atomic<uint64_t> admitted_{0};    // lines admitted in second_
  std::atomic<uint64_t> suppressed_{0};  // every line refused
  std::atomic<uint64_t> reported_{0};    // of them, taken by TakeSuppressed
};

// SetRoutineLineBudget limits LogDeferred to `per_second` lines a second
// (0: no limit, the default). A new budget starts its count of refused
// lines at zero. It may be called again (tests do); it resets the one
// budget in place (LineBudget::Reset), which is never destroyed.
// REQUIRES: called before any LogDeferred and before any
// RoutineLinesSuppressedTotal (main, at start-up): lines racing it are no
// data race, but may be counted under either budget.
void SetRoutineLineBudget(uint64_t per_second);

// RoutineLinesSuppressedTotal returns how many lines LogDeferred has
// refused under the budget (0 with no budget). Never decreases.
// Thread safety: lock-free; safe from any thread (a metrics scrape).
uint64_t RoutineLinesSuppressedTotal();

// ---- A budget for the lines of refused calls
// ---------------------------------
//
// Every RPC that fails is logged (event=rpc_error), which is what an
// operator reads to see who is refused and why. But a client can fail
// every call of its own doing, in a loop: a wrong token (UNAUTHENTICATED,
// before any pool is looked up), a pool that does not exist, a bad
// argument, at tens of thousands of calls a second. A line each would
// flood the log (and the journal or disk behind it) and bury the line an
// operator needs. So the lines of those refusals (the service decides
// which: IsClientFault in service.cc) have a budget of their own,
// separate from the routine one, so that neither flood can silence the
// other: LogRefusal writes at most a budget of lines per second of the
// wall clock; it counts the rest, and the next write of the log (any
// Log's, an admitted LogRefusal's, or the flusher's, at most once a
// second) starts with
//
//   time=... level=warn event=log_lines_suppressed kind=refusal count=N
//
// for the lines refused since the last such line (the routine budget's
// line says kind=routine). The exact number of calls stays in the metrics
// (grpc_server_handled_total, groove_pool_errors_total), and so does the
// number of lines refused (groove_log_lines_suppressed_total{kind=
// "refusal"}, from RefusalLinesSuppressedTotal). The lines of server
// faults are never budgeted: the service writes them with Log.

// SetRefusalLineBudget limits LogRefusal to `per_second` lines a second
// (0: no limit, the default). As SetRoutineLineBudget: a new budget starts
// its count of refused lines at zero, and it may be called again (tests
// do).
// REQUIRES: called before any LogRefusal and before any
// RefusalLinesSuppressedTotal (main, at start-up): lines racing it are no
// data race, but may be counted under either budget.
void SetRefusalLineBudget(uint64_t per_second);

// RefusalLinesSuppressedTotal returns how many lines LogRefusal has
// refused under the budget (0 with no budget). Never decreases.
// Thread safety: lock-free; safe from any thread (a metrics scrape).
uint64_t RefusalLinesSuppressedTotal();

// LogRefusal is Log for the line of a call refused for its client's own
// doing: written at once (after the queued lines), as Log writes, if the
// refusal budget admits it; else only counted.
// Thread safety: safe from any thread, until the process ends
// ("Lifetime", above). Takes no lock: a line over the budget costs a
// clock read and the budget's relaxed atomics (LineBudget::Admit); it is
// neither formatted nor written.
void LogRefusal(LogLevel level, absl::string_view event,
                std::initializer_list<LogField> fields = {});

// ---- libprotobuf's own messages ---------------------------------------------
//
// libprotobuf writes its messages ("[libprotobuf ERROR ...] String field
// ... contains invalid UTF-8", one per malformed request a peer sends) to
// stderr in a format of its own. RouteProtobufLogs sends them through this
// log instead, as
//
//   time=... level=warn event=protobuf_log source=FILE:LINE message="..."
//
// (level info, warn or error as libprotobuf's), written as routine lines
// (LogDeferred): a peer can cause one per request, so they count against
// the routine line budget rather than flood the log. FATAL messages are
// written at once (libprotobuf aborts after them). The handler is a plain
// function that captures nothing: libprotobuf may call it from any thread
// until the process ends ("Lifetime", above); it takes no lock.
// REQUIRES: called once, from main, before the server serves.
void RouteProtobufLogs();

// ---- gRPC's own lines -------------------------------------------------------
//
// gRPC writes its own lines (gpr_log: "E1127 12:00:00.000 ... Handshake
// failed ...", one per connection a plaintext client opens to a TLS port)
// to stderr in a format of its own. RouteGrpcLogs sends them through this
// log instead, as
//
//   time=... level=warn event=grpc_log source=FILE:LINE message="..."
//
// Which lines: those gRPC itself lets through, by GRPC_VERBOSITY (DEBUG,
// INFO or ERROR; unset: ERROR, gRPC's default, so only ERROR lines);
// RouteGrpcLogs never changes it. Levels: gRPC's ERROR is `warn` (on a
// server nearly all are about one peer's connection; gRPC failures that
// matter to the server reach events of its own, e.g. start_failed), INFO
// and DEBUG are `info`. A peer can cause one per connection, so every line
// counts against the routine line budget, as protobuf_log's do; ERROR
// lines are written at once (gRPC may abort right after one, as
// GPR_ASSERT does), INFO and DEBUG are queued as LogDeferred's.
//
// Secrets: at the default verbosity gRPC logs no metadata and no key
// material. GRPC_TRACE (with GRPC_VERBOSITY=INFO or DEBUG) can: the
// `chttp2_hpack_parser` tracer (and `all`) logs every request header,
// `authorization: Bearer ...` included, `tcp` the bytes read; these lines
// are written as gRPC gives them. So when GRPC_TRACE is set, RouteGrpcLogs
// says so first, in a `level=warn event=grpc_trace_on` line
// (docs/SERVER.md §7).
// REQUIRES: called once, from main, before anything starts gRPC (a
// grpc::ServerBuilder, a channel); before that gRPC's lines go to stderr
// as gRPC writes them.
// Thread safety: gRPC calls the installed function (a plain function that
// captures nothing) from any of its threads, until the process ends
// ("Lifetime", above); it takes no lock, as LogDeferred.
void RouteGrpcLogs();

}  // namespace groove::server

#endif  // GROOVE_SERVER_LOG_H_
