// tests/support/subprocess.h: run a command to completion, fetch a URL over
// plain HTTP, find a free loopback port or hold one where nobody listens.
// For integration tests that drive real binaries (buf, promtool,
// prometheus) on loopback.
//
// A child that needs variables of its own (LD_PRELOAD, a log path) gets
// them as EnvironmentAdditions, never through setenv in the test process:
// setenv would reach every child started until the matching unsetenv, by
// this test or by a library's thread, and is not thread-safe against them.

#ifndef GROOVE_TESTS_SUPPORT_SUBPROCESS_H_
#define GROOVE_TESTS_SUPPORT_SUBPROCESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace groove::testing {

// ExecArgv is argv for execv, built before fork (the child may only make
// async-signal-safe calls).
class ExecArgv {
 public:
  explicit ExecArgv(const std::vector<std::string>& args) : args_(args) {
    for (std::string& a : args_) ptrs_.push_back(a.data());
    ptrs_.push_back(nullptr);
  }
  char* const* get() { return ptrs_.data(); }
  const char* path() const { return args_[0].c_str(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

// EnvironmentAdditions are variables one child process gets on top of the
// environment it would otherwise inherit: NAME to VALUE, each replacing a
// variable of the same NAME in the test process's environment, the others
// inherited as they are. They reach that child (and what it starts) only:
// the test process's own environment is not changed. Empty: the child
// inherits the test process's environment unchanged.
using EnvironmentAdditions = std::map<std::string, std::string>;

// ExecEnv is envp for execve: the test process's environment as it is when
// the ExecEnv is built, with `additions` applied (EnvironmentAdditions).
// Built before fork, as ExecArgv is.
class ExecEnv {
 public:
  explicit ExecEnv(const EnvironmentAdditions& additions) {
    for (char** e = environ; *e != nullptr; ++e) {
      const absl::string_view entry = *e;
      if (!additions.contains(std::string(entry.substr(0, entry.find('='))))) {
        entries_.emplace_back(entry);
      }
    }
    for (const auto& [name, value] : additions) {
      entries_.push_back(absl::StrCat(name, "=", value));
    }
    for (std::string& e : entries_) ptrs_.push_back(e.data());
    ptrs_.push_back(nullptr);
  }
  char* const* get() { return ptrs_.data(); }

 private:
  std::vector<std::string> entries_;  // NAME=VALUE
  std::vector<char*> ptrs_;           // into entries_, then null
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  bool timed_out = false;  // killed (SIGKILL) by RunCommand at the timeout
  int term_signal = 0;     // the signal that ended it (SIGSEGV...), or 0
  std::string out;         // stdout
  std::string err;         // stderr
};

// RunCommand runs argv[0] (an absolute path) with `args`, feeding `input`
// on stdin, and returns its exit code and output. Kills it (SIGKILL) after
// `timeout`. The command's environment is the test process's with `env`
// added (EnvironmentAdditions).
inline CommandResult RunCommand(const std::vector<std::string>& argv,
                                absl::string_view input = "",
                                absl::Duration timeout = absl::Seconds(30),
                                const EnvironmentAdditions& env = {}) {
  CommandResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = absl::StrCat("pipe: ", std::strerror(errno));
    return result;
  }
  ExecArgv exec_argv(argv);
  ExecEnv exec_env(env);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execve(exec_argv.path(), exec_argv.get(), exec_env.get());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  // Small inputs fit the pipe; write before reading.
  signal(SIGPIPE, SIG_IGN);
  const char* p = input.data();
  size_t left = input.size();
  while (left > 0) {
    const ssize_t n = write(in_pipe[1], p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
  close(in_pipe[1]);
  const absl::Time deadline = absl::Now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (wait_ms <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(wait_ms)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && !result.timed_out) {
    result.exit_code = WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

// BackgroundProcess runs a command until the object is destroyed (SIGTERM,
// then SIGKILL after 10 s), with stdout and stderr going to `log_path`.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv,
                    const std::string& log_path)
      : log_path_(log_path) {
    ExecArgv exec_argv(argv);
    const int log =
        open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      const int null = open("/dev/null", O_RDONLY);
      dup2(null, 0);
      dup2(log, 1);
      dup2(log, 2);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      execv(exec_argv.path(), exec_argv.get());
      _exit(127);
    }
    if (log >= 0) close(log);
  }
  ~BackgroundProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    int status = 0;
    // Bounded wait for a process we asked to stop: poll at 10 ms.
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // Running returns false once the process has exited.
  bool Running() {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  const std::string& log_path() const { return log_path_; }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

// BindLoopbackPort binds a new TCP socket to 127.0.0.1 port 0 (the kernel
// picks a free port), without listening. Returns the socket (the caller
// closes it) and sets *port, or returns -1 when socket, bind or
// getsockname fails.
inline int BindLoopbackPort(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// FreeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment
// ago, or 0 on failure, for programs that must bind it themselves and
// cannot report a port they picked (prometheus). The port is free again
// when it returns, so another program binding port 0 could take it before
// the test's program binds it (then that program fails to start, and the
// test with it). For "a port where nobody listens" use
// RefusingLoopbackPort, which keeps the port.
inline int FreeLoopbackPort() {
  int port = 0;
  const int fd = BindLoopbackPort(&port);
  if (fd < 0) return 0;
  close(fd);
  return port;
}

// RefusingLoopbackPort is a TCP port on 127.0.0.1 where nobody listens,
// for tests of a client that cannot reach its server: while it lives it
// holds a socket bound to the port but not listening, so the kernel
// refuses every connection to it (ECONNREFUSED) and no other program can
// bind it (a test running in parallel that binds port 0 gets another).
//
// Example:
//   RefusingLoopbackPort nobody;
//   ASSERT_NE(nobody.port(), 0);
//   Ctl({"--addr=" + nobody.address(), "pools"});  // connection refused
class RefusingLoopbackPort {
 public:
  RefusingLoopbackPort() : fd_(BindLoopbackPort(&port_)) {}
  ~RefusingLoopbackPort() {
    if (fd_ >= 0) close(fd_);
  }
  RefusingLoopbackPort(const RefusingLoopbackPort&) = delete;
  RefusingLoopbackPort& operator=(const RefusingLoopbackPort&) = delete;

  // port is the port, or 0 when no socket could be bound.
  int port() const { return fd_ >= 0 ? port_ : 0; }
  // address is "127.0.0.1:PORT".
  std::string address() const { return absl::StrCat("127.0.0.1:", port()); }

 private:
  int port_ = 0;  // before fd_: fd_'s initializer sets it
  int fd_;        // bound to 127.0.0.1:port_, never listening; -1 on failure
};

// ConnectIpv4 connects to the IPv4 "HOST:PORT" and returns the socket,
// whose sends and receives time out after `timeout`. Errors:
// INVALID_ARGUMENT (not HOST:PORT), UNAVAILABLE (connect failed).
inline absl::StatusOr<int> ConnectIpv4(absl::string_view host_port,
                                       absl::Duration timeout) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("bad address ", host_port));
  }
  const std::string host(host_port.substr(0, colon));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("bad host ", host));
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{};
  tv.tv_sec = absl::ToInt64Seconds(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const std::string error = std::strerror(errno);
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect ", host_port, ": ", error));
  }
  return fd;
}

// HttpGet fetches http://HOST:PORT/PATH (IPv4 host) with HTTP/1.0 and
// returns the body of a 200 response. Errors: UNAVAILABLE (connect or read
// failed), FAILED_PRECONDITION (another status; the message holds it).
inline absl::StatusOr<std::string> HttpGet(
    absl::string_view host_port, absl::string_view path,
    absl::Duration timeout = absl::Seconds(10)) {
  absl::StatusOr<int> connected = ConnectIpv4(host_port, timeout);
  if (!connected.ok()) return connected.status();
  const int fd = *connected;
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host_port,
                   "\r\nConnection: close\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return absl::UnavailableError(
          absl::StrCat("read ", host_port, path, ": ", std::strerror(errno)));
    }
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    return absl::UnavailableError("no HTTP header in the response");
  }
  const std::string head = response.substr(0, header_end);
  std::string body = response.substr(header_end + 4);
  if (!absl::StartsWith(head, "HTTP/1.1 200") &&
      !absl::StartsWith(head, "HTTP/1.0 200")) {
    return absl::FailedPreconditionError(
        absl::StrCat(head.substr(0, head.find("\r\n")), "\n", body));
  }
  if (absl::StrContains(absl::AsciiStrToLower(head),
                        "transfer-encoding: chunked")) {
    std::string decoded;
    size_t pos = 0;
    for (;;) {
      const size_t line_end = body.find("\r\n", pos);
      if (line_end == std::string::npos) break;
      size_t chunk = 0;
      if (!absl::SimpleHexAtoi(body.substr(pos, line_end - pos), &chunk) ||
          chunk == 0) {
        break;
      }
      decoded.append(body, line_end + 2, chunk);
      pos = line_end + 2 + chunk + 2;
    }
    body = std::move(decoded);
  }
  return body;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_SUBPROCESS_H_
