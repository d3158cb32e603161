// tests/support/server_process.h: the real groove-volumed binary as a
// child process of a test, on loopback.
//
// Start runs the binary with the test's flags plus --listen and
// --metrics-listen on 127.0.0.1 port 0 (unless the test gives them), reads
// its stderr on a thread, waits for its `event=listening grpc=... metrics=...`
// line to learn the ports, then waits on gRPC health checking (SERVING for
// "" and for groove.v1.VolumePoolService): no sleeps. The process dies with
// the test (PR_SET_PDEATHSIG), and its log is printed when the test failed.
//
// Environment: the server inherits the test process's environment, plus
// the EnvironmentAdditions (subprocess.h) that Start, Launch or RunToExit
// is given, for that server alone: nothing is set in the test process, so
// no other child sees them (a test must not setenv around a Start).
//
// Sanitizer reports fail the test: when the server exits (Stop, Kill,
// WaitForExit, or the destructor) and its output holds a ThreadSanitizer,
// AddressSanitizer, LeakSanitizer or UBSan report, the test fails with the
// report, whatever exit code the test expected (a report can come from a
// server that a test kills, or from one that must exit non-zero anyway).
// RunToExit checks its output likewise.
//
// The log lines are guarded by a std::mutex, not an absl::Mutex: Debian's
// Abseil is not built with -fsanitize=thread, so ThreadSanitizer would not
// see an absl::Mutex order the reader thread's writes before the test's
// reads (and would report a race in the tsan preset).
//
// Example:
//   TempDir dir;
//   auto server = ServerProcess::Start({"--data-dir=" + dir.path(),
//       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16"});
//   ASSERT_NE(server, nullptr);
//   auto stub = server->Stub();
//   ...
//   EXPECT_EQ(server->Stop(), 0);

#ifndef GROOVE_TESTS_SUPPORT_SERVER_PROCESS_H_
#define GROOVE_TESTS_SUPPORT_SERVER_PROCESS_H_

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "groove/v1/volume_pool.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "support/subprocess.h"

#ifndef GROOVE_VOLUMED_BIN
#error "GROOVE_VOLUMED_BIN must name the groove-volumed binary"
#endif

namespace groove::testing {

// An idle gRPC client reads its connection only when its channel's backup
// poller runs, every 5 s by default; a server shutting down waits for its
// clients to see the GOAWAY and close, so every Stop() of a server with a
// connected test client would take 5 s. Poll every 50 ms in tests instead.
// Set before main (grpc reads it at grpc_init); a value already in the
// environment wins.
inline const bool kFastClientBackupPoll =
    setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50", 0) == 0;

// LogValue returns the value of `key` in a logfmt line (unquoted values
// only), or "" when absent.
inline std::string LogValue(absl::string_view line, absl::string_view key) {
  for (absl::string_view field : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&field, key) && absl::ConsumePrefix(&field, "=")) {
      return std::string(field);
    }
  }
  return "";
}

// LogfmtFields returns the key=value pairs of `line` if it is a line of
// groove-volumed's log (server/include/groove/server/log.h): `time`,
// `level` and `event` first, then fields, keys of [A-Za-z0-9_], values
// bare or quoted with \", \\, \n and \xNN escapes (returned unescaped);
// nullopt for any other line (gRPC's or libprotobuf's own format, a
// sanitizer report, a half line).
inline std::optional<std::vector<std::pair<std::string, std::string>>>
LogfmtFields(absl::string_view line) {
  std::vector<std::pair<std::string, std::string>> fields;
  const auto is_key_char = [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  size_t i = 0;
  while (i < line.size()) {
    if (!fields.empty() && line[i++] != ' ') return std::nullopt;
    const size_t key_start = i;
    while (i < line.size() && is_key_char(line[i])) ++i;
    if (i == key_start || i == line.size() || line[i] != '=') {
      return std::nullopt;
    }
    std::string key(line.substr(key_start, i - key_start));
    std::string value;
    ++i;  // '='
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) return std::nullopt;  // unterminated
        if (line[i] == '"') break;
        if (line[i] != '\\') {
          value.push_back(line[i]);
          continue;
        }
        if (++i >= line.size()) return std::nullopt;
        if (line[i] == 'n') {
          value.push_back('\n');
        } else if (line[i] == '"' || line[i] == '\\') {
          value.push_back(line[i]);
        } else if (line[i] == 'x' && i + 2 < line.size() &&
                   absl::ascii_isxdigit(
                       static_cast<unsigned char>(line[i + 1])) &&
                   absl::ascii_isxdigit(
                       static_cast<unsigned char>(line[i + 2]))) {
          value.push_back(static_cast<char>(
              std::stoi(std::string(line.substr(i + 1, 2)), nullptr, 16)));
          i += 2;
        } else {
          return std::nullopt;
        }
      }
      ++i;  // the closing '"'
    } else {
      while (i < line.size() && line[i] != ' ' &&
             (absl::ascii_isalnum(static_cast<unsigned char>(line[i])) ||
              absl::StrContains("_.:/@+,[]-", line[i]))) {
        value.push_back(line[i++]);
      }
      if (value.empty()) return std::nullopt;
    }
    fields.emplace_back(std::move(key), std::move(value));
  }
  if (fields.size() < 3 || fields[0].first != "time" ||
      fields[1].first != "level" || fields[2].first != "event") {
    return std::nullopt;
  }
  return fields;
}

// SanitizerReportLine returns the first line of `output` that belongs to a
// sanitizer's report (ThreadSanitizer, AddressSanitizer, LeakSanitizer,
// UndefinedBehaviorSanitizer), or "" when there is none. groove-volumed
// never logs these words itself.
inline std::string SanitizerReportLine(absl::string_view output) {
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    for (absl::string_view marker :
         {"ThreadSanitizer", "AddressSanitizer", "LeakSanitizer",
          "UndefinedBehaviorSanitizer", ": runtime error: "}) {
      if (absl::StrContains(line, marker)) return std::string(line);
    }
  }
  return "";
}

// ExpectNoSanitizerReport records a test failure, with `output`, when
// `output` (of the process `what`) holds a sanitizer report.
inline void ExpectNoSanitizerReport(absl::string_view what,
                                    absl::string_view output) {
  const std::string line = SanitizerReportLine(output);
  EXPECT_EQ(line, "") << what << " reported a sanitizer error; its output:\n"
                      << output;
}

class ServerProcess {
 public:
  // Start runs groove-volumed with `args`; returns null (with a test
  // failure recorded) when it exits or does not become SERVING within
  // `timeout`. channel() (and so the health checks) connects with
  // `credentials` (default: plaintext) and `channel_args`, e.g. TLS
  // credentials and GRPC_SSL_TARGET_NAME_OVERRIDE_ARG for a server
  // started with --tls-cert. The server's environment is the test
  // process's with `env` added (see the file comment).
  static std::unique_ptr<ServerProcess> Start(
      std::vector<std::string> args, absl::Duration timeout = absl::Seconds(30),
      std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
      const grpc::ChannelArguments& channel_args = grpc::ChannelArguments(),
      const EnvironmentAdditions& env = {}) {
    std::unique_ptr<ServerProcess> server = Launch(std::move(args), env);
    std::optional<std::string> line =
        server->WaitForLog("event=listening", timeout);
    if (!line.has_value()) {
      ADD_FAILURE() << "groove-volumed did not report `event=listening` "
                       "within "
                    << timeout << "; its log:\n"
                    << server->LogText();
      server->Kill();
      return nullptr;
    }
    server->grpc_address_ = LogValue(*line, "grpc");
    server->metrics_address_ = LogValue(*line, "metrics");
    server->channel_ = grpc::CreateCustomChannel(
        server->grpc_address_,
        credentials != nullptr ? credentials
                               : grpc::InsecureChannelCredentials(),
        channel_args);
    for (const char* service : {"", "groove.v1.VolumePoolService"}) {
      if (server->HealthCheck(service, timeout) !=
          grpc::health::v1::HealthCheckResponse::SERVING) {
        ADD_FAILURE() << "groove-volumed is not SERVING '" << service
                      << "'; its log:\n"
                      << server->LogText();
        server->Kill();
        return nullptr;
      }
    }
    return server;
  }

  // Launch runs groove-volumed with `args` (plus --listen and
  // --metrics-listen on 127.0.0.1 port 0 unless given) and returns at once,
  // without waiting for it to listen: for tests that kill it while it
  // starts (WaitForLog tells how far it got). grpc_address(), channel() and
  // Stub() are only set by Start. `env` as for Start.
  static std::unique_ptr<ServerProcess> Launch(
      std::vector<std::string> args, const EnvironmentAdditions& env = {}) {
    auto has = [&](absl::string_view prefix) {
      for (const std::string& a : args) {
        if (absl::StartsWith(a, prefix)) return true;
      }
      return false;
    };
    if (!has("--listen")) args.push_back("--listen=127.0.0.1:0");
    if (!has("--metrics-listen")) {
      args.push_back("--metrics-listen=127.0.0.1:0");
    }
    std::unique_ptr<ServerProcess> server(new ServerProcess());
    server->Spawn(args, env);
    return server;
  }

  // RunToExit runs groove-volumed with `args` and waits for it to exit
  // (for flags that must be refused). The output is stdout and stderr.
  // `env` as for Start.
  static CommandResult RunToExit(std::vector<std::string> args,
                                 absl::Duration timeout = absl::Seconds(20),
                                 const EnvironmentAdditions& env = {}) {
    args.insert(args.begin(), GROOVE_VOLUMED_BIN);
    CommandResult result = RunCommand(args, "", timeout, env);
    ExpectNoSanitizerReport("groove-volumed",
                            absl::StrCat(result.out, result.err));
    return result;
  }

  ~ServerProcess() {
    if (pid_ > 0) Stop();
    if (reader_.joinable()) reader_.join();
    if (::testing::Test::HasFailure()) {
      std::fprintf(stderr, "---- groove-volumed log ----\n%s----\n",
                   LogText().c_str());
    }
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::unique_ptr<v1::VolumePoolService::Stub> Stub() const {
    return v1::VolumePoolService::NewStub(channel_);
  }
  pid_t pid() const { return pid_; }

  // HealthCheck returns the status grpc.health.v1.Health/Check reports for
  // `service`, or UNKNOWN when the call fails.
  grpc::health::v1::HealthCheckResponse::ServingStatus HealthCheck(
      const std::string& service,
      absl::Duration timeout = absl::Seconds(10)) const {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    if (!stub->Check(&context, request, &response).ok()) {
      return grpc::health::v1::HealthCheckResponse::UNKNOWN;
    }
    return response.status();
  }

  // WaitForLogCount waits until at least `count` log lines contain every
  // one of `needles`; returns whether they did within `timeout`. Wakes on
  // each new line (no polling).
  bool WaitForLogCount(std::vector<std::string> needles, size_t count,
                       absl::Duration timeout = absl::Seconds(20)) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
      return CountLocked(needles) >= count || eof_;
    });
    return CountLocked(needles) >= count;
  }

  // WaitForLogLines waits until `done` holds of every line so far (called
  // with mu_ held, on each new line: it must not call back into this
  // object); returns whether it did within `timeout`.
  bool WaitForLogLines(
      const std::function<bool(const std::vector<std::string>&)>& done,
      absl::Duration timeout = absl::Seconds(20)) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                 [&] { return done(lines_) || eof_; });
    return done(lines_);
  }

  // WaitForLog waits for the first line that contains `needle`.
  std::optional<std::string> WaitForLog(
      absl::string_view needle, absl::Duration timeout = absl::Seconds(20)) {
    if (!WaitForLogCount({std::string(needle)}, 1, timeout)) {
      return std::nullopt;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& line : lines_) {
      if (absl::StrContains(line, needle)) return line;
    }
    return std::nullopt;
  }

  // LogCount returns how many lines so far contain every one of `needles`.
  size_t LogCount(std::vector<std::string> needles) {
    std::lock_guard<std::mutex> lock(mu_);
    return CountLocked(needles);
  }

  // LogLines returns every line so far.
  std::vector<std::string> LogLines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

  std::string LogText() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrCat(absl::StrJoin(lines_, "\n"), "\n");
  }

  // Signal sends `sig` to the server.
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }

  // WaitForExit waits for the server to exit (its stderr to close) and
  // returns its exit code; -1 when it was killed by a signal; kills it
  // and returns -2 when it is still running after `timeout`. A sanitizer
  // report in its output fails the test (see the file comment).
  int WaitForExit(absl::Duration timeout = absl::Seconds(40)) {
    if (pid_ <= 0) return exit_code_;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return eof_; })) {
        kill(pid_, SIGKILL);
        exit_code_ = -2;
      }
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    if (exit_code_ != -2) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    pid_ = -1;
    // The reader has seen end-of-file, or the process is dead: its whole
    // output is in (or about to be in) lines_; join to be sure.
    if (reader_.joinable()) reader_.join();
    ExpectNoSanitizerReport("groove-volumed", LogText());
    return exit_code_;
  }

  // Stop sends SIGTERM and waits for the exit code (see WaitForExit).
  int Stop(absl::Duration timeout = absl::Seconds(40)) {
    Signal(SIGTERM);
    return WaitForExit(timeout);
  }

  // Kill sends SIGKILL and reaps the process.
  void Kill() {
    Signal(SIGKILL);
    WaitForExit();
  }

 private:
  ServerProcess() = default;

  void Spawn(const std::vector<std::string>& args,
             const EnvironmentAdditions& env) {
    std::vector<std::string> argv = {GROOVE_VOLUMED_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    ExecArgv exec_argv(argv);
    ExecEnv exec_env(env);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2 failed";
      return;
    }
    const pid_t pid = fork();
    if (pid == 0) {
      const int null = open("/dev/null", O_RDONLY);
      dup2(null, 0);
      dup2(out[1], 1);
      dup2(out[1], 2);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      execve(exec_argv.path(), exec_argv.get(), exec_env.get());
      _exit(127);
    }
    close(out[1]);
    pid_ = pid;
    const bool echo = std::getenv("GROOVE_TEST_SERVER_LOG") != nullptr;
    reader_ = std::thread([this, fd = out[0], echo] {
      std::string partial;
      char buf[4096];
      for (;;) {
        const ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (echo) fwrite(buf, 1, static_cast<size_t>(n), stderr);
        partial.append(buf, static_cast<size_t>(n));
        std::lock_guard<std::mutex> lock(mu_);
        size_t newline;
        while ((newline = partial.find('\n')) != std::string::npos) {
          lines_.push_back(partial.substr(0, newline));
          partial.erase(0, newline + 1);
        }
        cv_.notify_all();
      }
      close(fd);
      std::lock_guard<std::mutex> lock(mu_);
      if (!partial.empty()) lines_.push_back(partial);
      eof_ = true;
      cv_.notify_all();
    });
  }

  // REQUIRES: mu_ held.
  size_t CountLocked(const std::vector<std::string>& needles) const {
    size_t count = 0;
    for (const std::string& line : lines_) {
      bool all = true;
      for (const std::string& needle : needles) {
        all = all && absl::StrContains(line, needle);
      }
      count += all ? 1 : 0;
    }
    return count;
  }

  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;  // signalled on each new line and at EOF
  std::vector<std::string> lines_;  // guarded by mu_
  bool eof_ = false;                // guarded by mu_
  std::string grpc_address_;
  std::string metrics_address_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_SERVER_PROCESS_H_
