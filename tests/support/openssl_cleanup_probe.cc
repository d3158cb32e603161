// tests/support/openssl_cleanup_probe.cc: an LD_PRELOAD library that tells
// whether a program ran OpenSSL's exit-time cleanup. It replaces
// OPENSSL_cleanup (which libcrypto registers with atexit on first use):
// each call appends "OPENSSL_cleanup\n" to the file named by the
// environment variable GROOVE_OPENSSL_CLEANUP_LOG, then runs the real one.
//
// For GroovectlSecurityTest.ExitRunsNoOpenSslCleanup and
// ServerTlsExitTest.StopRunsNoOpenSslCleanup: groovectl and groove-volumed
// must not run that cleanup while gRPC's threads may still be using
// OpenSSL (clients/groovectl/main.cc, ExitNow; server/src/main.cc).
//
// Example (the probe in that child's environment only):
//   RunCommand({program, ...}, "", absl::Seconds(30),
//              {{"LD_PRELOAD", GROOVE_OPENSSL_CLEANUP_PROBE},
//               {"GROOVE_OPENSSL_CLEANUP_LOG", log}});
//   // ReadTextFile(log) is "" unless the program ran OPENSSL_cleanup.

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

extern "C" void OPENSSL_cleanup(void) {
  if (const char* path = std::getenv("GROOVE_OPENSSL_CLEANUP_LOG")) {
    const int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      constexpr char kLine[] = "OPENSSL_cleanup\n";
      // A short write only shortens the line; the test reads any text as
      // "it ran".
      if (write(fd, kLine, sizeof(kLine) - 1) < 0) {
      }
      close(fd);
    }
  }
  using Cleanup = void (*)();
  if (auto real =
          reinterpret_cast<Cleanup>(dlsym(RTLD_NEXT, "OPENSSL_cleanup"))) {
    real();
  }
}
