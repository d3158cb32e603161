// groovectl: the command line tool of groove-volumed. main only parses the
// command line (cli.h), runs the command (commands.h) and exits through
// ExitNow; `groovectl --help` prints the usage, `groovectl --version` the
// build.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace {

// ExitNow flushes stdout and stderr and ends the process with `code`
// without running atexit handlers or static destructors (std::_Exit).
//
// Why not return from main: gRPC 1.51's EventEngine pool threads are
// detached, and grpc_shutdown (run when the last channel goes) waits only
// until each has counted itself out of the pool, not until it has exited.
// A pool thread that made a TLS handshake (a reconnection after a failed
// one runs there: a wrong --tls-server-name, or no --tls-cert for a mutual
// TLS server) still has OpenSSL's per-thread destructor to run. If it is
// descheduled at that point (a loaded machine), exit() runs OpenSSL's
// atexit cleanup (OPENSSL_cleanup, which frees and clears OpenSSL's locks)
// concurrently with it, and the thread dies on a NULL or freed lock:
// SIGSEGV in pthread_rwlock_wrlock, after groovectl had printed its whole
// answer. OpenSSL requires that no other thread use it during
// OPENSSL_cleanup; a process cannot join gRPC's detached threads, so
// groovectl runs no exit-time teardown at all. It needs none: its output
// is flushed here, and it holds no other state that outlives the process.
[[noreturn]] void ExitNow(int code) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);  // std::cout writes through C's stdout buffer
#if defined(__SANITIZE_ADDRESS__)
  // LeakSanitizer checks from an atexit handler, which std::_Exit skips.
  __lsan_do_leak_check();
#endif
  std::_Exit(code);
}

int Main(const std::vector<std::string>& args) {
  using namespace groove::ctl;
  absl::StatusOr<Invocation> inv = ParseCommandLine(args);
  if (!inv.ok()) {
    // Show the usage of the command when it was recognised.
    std::optional<Command> command;
    for (const std::string& a : args) {
      for (Command c : kAllCommands) {
        if (a == CommandName(c) && !command.has_value()) command = c;
      }
    }
    std::cerr << "error: " << inv.status().message() << "\n\n"
              << Usage(command);
    return kExitUsage;
  }
  if (inv->help) {
    std::cout << Usage(inv->command);
    return kExitOk;
  }
  if (inv->version) {
    std::cout << ClientBuildLine() << "\n";
    return kExitOk;
  }
  return Run(*inv, std::cout, std::cerr,
             Terminal{.out = isatty(STDOUT_FILENO) == 1,
                      .err = isatty(STDERR_FILENO) == 1});
}

}  // namespace

int main(int argc, char** argv) {
  ExitNow(Main(std::vector<std::string>(argv + 1, argv + argc)));
}
