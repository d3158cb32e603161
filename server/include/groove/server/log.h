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

#ifndef GROOVE_SERVER_LOG_H_
#define GROOVE_SERVER_LOG_H_

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
void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields = {});

}  // namespace groove::server

#endif  // GROOVE_SERVER_LOG_H_
