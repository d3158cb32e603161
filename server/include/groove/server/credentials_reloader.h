// groove/server/credentials_reloader.h: picks up rotated bearer tokens and
// TLS files while the server serves, without a restart
// (`--credentials-refresh`, docs/SERVER.md section 10).
//
// One thread, started by VolumeServer::Start when the refresh interval is
// above zero and tokens or TLS are configured, wakes every interval and
// reads the files again:
//   - the --auth-tokens file: when its text differs from the last text
//     (or read error) it saw, it parses it; a table that parses is
//     installed in the LiveTokenTable (security.h), which the next RPC
//     reads, and logged `event=credentials_reloaded what=auth_tokens
//     tokens=N`; a file that cannot be read, or does not parse, keeps the
//     table in use and is logged `level=error
//     event=credentials_reload_failed what=auth_tokens reason=...` (the
//     reason names the line, never a token).
//   - the TLS files: gRPC itself serves them, through its
//     FileWatcherCertificateProvider (server.cc), which re-reads them on
//     its own thread. This thread only watches the same files on the same
//     interval and runs the start-up checks (CheckTlsFiles) on each
//     change, so that a change is logged (`what=tls`) and counted, and a
//     bad one (a key that is not the certificate's, a file that is not
//     PEM) is reported with the start-up check's message.
// Each change counts once in groove_credentials_reloads_total{what,result}
// (metrics.h), however many intervals it stays.
//
// Nothing here is on the RPC path: the only thing RPCs see is the
// LiveTokenTable's atomic pointer.
//
// Example (what server.cc does):
//   CredentialsReloader::Options options;
//   options.interval = absl::Seconds(60);
//   options.auth_tokens_file = config.auth_tokens_file();
//   options.tokens = live_tokens.get();
//   options.tokens_text = text_read_at_start_up;
//   auto reloader = CredentialsReloader::Start(std::move(options), metrics);
//   ...
//   reloader->Stop();  // at shutdown; returns within one file read

#ifndef GROOVE_SERVER_CREDENTIALS_RELOADER_H_
#define GROOVE_SERVER_CREDENTIALS_RELOADER_H_

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "groove/server/metrics.h"
#include "groove/server/security.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

class CredentialsReloader {
 public:
  struct Options {
    // How often the files are read. REQUIRES: > 0.
    absl::Duration interval;
    // The --auth-tokens file, its live table and the text the table came
    // from (the baseline: the first change is a change of this text).
    // Empty path: tokens are not watched; `tokens` may then be null.
    std::string auth_tokens_file;
    LiveTokenTable* tokens = nullptr;
    std::string tokens_text;
    // The TLS files and what they held when the server read them at
    // start-up (the baseline). Unset: TLS is not watched.
    std::optional<v1::TlsConfig> tls;
    TlsFiles tls_files;
  };

  // Start starts the thread. REQUIRES: options.interval > 0; `metrics`,
  // options.tokens (when auth_tokens_file is set) outlive the reloader.
  // The thread's first read is one interval from now.
  static std::unique_ptr<CredentialsReloader> Start(Options options,
                                                    ServerMetrics* metrics);

  // Stops and joins the thread (Stop).
  ~CredentialsReloader();

  CredentialsReloader(const CredentialsReloader&) = delete;
  CredentialsReloader& operator=(const CredentialsReloader&) = delete;

  // Stop wakes the thread and joins it: it returns as soon as a round of
  // reads in progress ends (the thread waits on a Notification, not a
  // sleep, so shutdown never waits for the rest of an interval).
  // Idempotent. Thread safety: call from one thread (the server's
  // shutdown).
  void Stop();

 private:
  CredentialsReloader(Options options, ServerMetrics* metrics);

  void Run();
  void CheckTokens();
  void CheckTls();

  // Set at construction; then only the thread reads and writes what
  // follows, until Stop's join.
  Options options_;
  ServerMetrics* metrics_;
  // What the last read of the token file returned: its text, or the
  // error. A round whose result equals this one does nothing.
  absl::StatusOr<std::string> last_tokens_;
  // Likewise for the TLS files.
  absl::StatusOr<TlsFiles> last_tls_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_CREDENTIALS_RELOADER_H_
