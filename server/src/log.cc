#include "groove/server/log.h"

#include <unistd.h>

#include <cerrno>

#include "absl/time/clock.h"

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

void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields) {
  const std::string line = FormatLogLine(absl::Now(), level, event, fields);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace groove::server
