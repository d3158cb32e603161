// groove/server/credentials_reloader.h: picks up rotated bearer tokens and
// TLS files while the server serves, without a restart
// (`--credentials-refresh`, docs/SERVER.md section 10).
//
// One thread, started by VolumeServer::Start when the refresh interval is
// above zero and tokens or TLS are configured, wakes every interval (or at
// once when ReloadNow asks: SIGHUP, stop_signals.h) and reads the files
// again:
//   - the --auth-tokens file: when its text differs from the last text
//     (or read error) it saw, it parses it; a table that parses is
//     installed in the LiveTokenTable (security.h), which the next RPC
//     reads, and logged `event=credentials_reloaded what=auth_tokens
//     tokens=N`; a file that cannot be read (a FIFO or device included:
//     ReadTokenFile refuses them without waiting), that others may access,
//     or that does not parse, keeps the table in use and is logged
//     `level=error
//     event=credentials_reload_failed what=auth_tokens reason=...` (the
//     reason names the line, never a token).
//   - the TLS files: it reads them and runs the start-up checks
//     (CheckTlsFiles) on each change. Files that pass are copied into the
//     ServedTlsFiles below, which gRPC's FileWatcherCertificateProvider
//     re-reads on its own thread (server.cc), and logged
//     `event=credentials_reloaded what=tls`, after the certificates'
//     validity (ReportTlsCertificates, security.h: the date metrics set,
//     an expired, not yet valid or soon expiring certificate logged);
//     Every round also judges the served certificates again against the
//     clock (ReportTlsValidityChanges): one that expires, becomes valid,
//     or comes within 14 days of its end while its files stay the same is
//     logged then, and an expiring one once a day after;
//     files that do not (a key that is not the certificate's, a key
//     others may read, a file that is not PEM, one missing) are
//     logged `level=error event=credentials_reload_failed what=tls` with
//     the start-up check's message, and gRPC keeps serving the last good
//     ones. (Watching the configured files itself, gRPC 1.51 would take a
//     certificate and key that do not match and then fail every new
//     handshake: ServerCredentialsReloadTest.BadTlsFilesAreNeverServed.)
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

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "groove/server/metrics.h"
#include "groove/server/security.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

// ServedTlsFiles are the TLS files gRPC serves: checked copies of the
// configured ones, in three memfds (key, certificate chain, client CAs)
// that gRPC's FileWatcherCertificateProvider reads through their
// /proc/self/fd/N paths. Only files that passed CheckTlsFiles are ever
// written to them, so gRPC never sees a bad pair; the copies live in this
// process's memory only (memfds die with it: no key is left behind on a
// file system after a crash), each sealed against change once written.
class ServedTlsFiles {
 public:
  // Create copies `files` (already checked) into new memfds.
  // Errors: INTERNAL or RESOURCE_EXHAUSTED (memfd_create, write, fcntl),
  // naming the call.
  static absl::StatusOr<std::unique_ptr<ServedTlsFiles>> Create(
      const TlsFiles& files);
  ~ServedTlsFiles();  // closes the memfds
  ServedTlsFiles(const ServedTlsFiles&) = delete;
  ServedTlsFiles& operator=(const ServedTlsFiles&) = delete;

  // The paths to give gRPC: "/proc/self/fd/N", valid while this object
  // lives (REQUIRES: it outlives the gRPC server that reads them).
  // client_ca_path is "" when the files have no client CAs.
  const std::string& key_path() const { return key_path_; }
  const std::string& cert_path() const { return cert_path_; }
  const std::string& client_ca_path() const { return client_ca_path_; }

  // Replace makes the paths name copies of `files` (checked; with client
  // CAs exactly when the files given to Create had them): each file is
  // written to a new memfd, which then takes the old one's descriptor
  // number (dup3: atomic per file), so a reader opens a whole old file or
  // a whole new one. The key goes first; a read between two of the three
  // swaps can see a new key with the old certificate, which gRPC then
  // rejects until its next read (the same window a Kubernetes Secret's
  // symlink swap leaves between gRPC's two file reads).
  // Errors: as Create; the paths then still name complete files, possibly
  // some old and some new. Thread safety: call from one thread (the
  // reloader's); gRPC may read the paths meanwhile.
  absl::Status Replace(const TlsFiles& files);

 private:
  ServedTlsFiles() = default;
  int key_fd_ = -1, cert_fd_ = -1, client_ca_fd_ = -1;
  std::string key_path_, cert_path_, client_ca_path_;
};

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
    // start-up (the baseline), and the copies gRPC serves, which this
    // thread replaces with files that pass the checks. Unset: TLS is not
    // watched; `served_tls` may then be null.
    std::optional<v1::TlsConfig> tls;
    TlsFiles tls_files;
    ServedTlsFiles* served_tls = nullptr;
  };

  // Start starts the thread. REQUIRES: options.interval > 0; `metrics`,
  // options.tokens (when auth_tokens_file is set) and options.served_tls
  // (when tls is set) outlive the reloader.
  // The thread's first read is one interval from now.
  static std::unique_ptr<CredentialsReloader> Start(Options options,
                                                    ServerMetrics* metrics);

  // Stops and joins the thread (Stop).
  ~CredentialsReloader();

  CredentialsReloader(const CredentialsReloader&) = delete;
  CredentialsReloader& operator=(const CredentialsReloader&) = delete;

  // ReloadNow wakes the thread for a round of reads at once (SIGHUP,
  // stop_signals.h), as if the interval had passed; the next round is one
  // interval after it. A request made while a round runs starts another
  // when it ends; requests made meanwhile are one. Returns false (and does
  // nothing) once Stop began. Thread safety: any thread; returns without
  // waiting for the round (it takes the mutex the thread holds only to
  // wait).
  bool ReloadNow();

  // Stop wakes the thread and joins it: it returns as soon as a round of
  // reads in progress ends (the thread waits on a condition variable, not
  // a sleep, so shutdown never waits for the rest of an interval).
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
  // The certificates gRPC serves (CheckTlsFiles of the files installed
  // last, or of the start-up files) and what each was when last reported:
  // every round judges them again (ReportTlsValidityChanges), so that a
  // certificate that expires while its files stay the same is logged.
  std::vector<TlsCertificate> tls_certificates_;
  std::vector<TlsValidity> tls_validity_;
  // std::mutex, not absl::Mutex: Debian's Abseil is not instrumented for
  // ThreadSanitizer, which would not see it order the two flags.
  std::mutex mu_;
  std::condition_variable wake_;   // notified by ReloadNow and Stop
  bool stopping_ = false;          // guarded by mu_
  bool reload_requested_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_CREDENTIALS_RELOADER_H_
