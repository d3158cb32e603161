#include "groove/server/credentials_reloader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "groove/pool_error.h"
#include "groove/server/log.h"

namespace groove::server {
namespace {

// SealedCopy returns a new memfd named `name` holding `text`, sealed
// against any change (so what gRPC reads through it is what was checked).
absl::StatusOr<int> SealedCopy(const char* name, const std::string& text) {
  const int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoError(absl::StrCat("memfd_create ", name));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = ErrnoError(absl::StrCat("write ", name));
      close(fd);
      return s;
    }
    written += static_cast<size_t>(n);
  }
  if (fcntl(fd, F_ADD_SEALS,
            F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0) {
    absl::Status s = ErrnoError(absl::StrCat("seal ", name));
    close(fd);
    return s;
  }
  return fd;
}

// Swap makes descriptor `*fd` (or a new one, when -1) read `text`.
absl::Status Swap(const char* name, const std::string& text, int* fd) {
  absl::StatusOr<int> copy = SealedCopy(name, text);
  if (!copy.ok()) return copy.status();
  if (*fd < 0) {
    *fd = *copy;
    return absl::OkStatus();
  }
  // dup3 replaces the descriptor atomically: an open of /proc/self/fd/N
  // finds the old file or the new one, never none.
  if (dup3(*copy, *fd, O_CLOEXEC) < 0) {
    absl::Status s = ErrnoError(absl::StrCat("dup3 ", name));
    close(*copy);
    return s;
  }
  close(*copy);
  return absl::OkStatus();
}

std::string FdPath(int fd) { return absl::StrCat("/proc/self/fd/", fd); }

}  // namespace

absl::StatusOr<std::unique_ptr<ServedTlsFiles>> ServedTlsFiles::Create(
    const TlsFiles& files) {
  std::unique_ptr<ServedTlsFiles> served(new ServedTlsFiles());
  absl::Status s = served->Replace(files);
  if (!s.ok()) return s;
  served->key_path_ = FdPath(served->key_fd_);
  served->cert_path_ = FdPath(served->cert_fd_);
  if (served->client_ca_fd_ >= 0) {
    served->client_ca_path_ = FdPath(served->client_ca_fd_);
  }
  return served;
}

ServedTlsFiles::~ServedTlsFiles() {
  for (int fd : {key_fd_, cert_fd_, client_ca_fd_}) {
    if (fd >= 0) close(fd);
  }
}

absl::Status ServedTlsFiles::Replace(const TlsFiles& files) {
  absl::Status s = Swap("groove-tls-key", files.private_key, &key_fd_);
  if (s.ok()) s = Swap("groove-tls-cert", files.cert_chain, &cert_fd_);
  if (s.ok() && !files.client_ca.empty()) {
    s = Swap("groove-tls-client-ca", files.client_ca, &client_ca_fd_);
  }
  return s;
}

std::unique_ptr<CredentialsReloader> CredentialsReloader::Start(
    Options options, ServerMetrics* metrics) {
  std::unique_ptr<CredentialsReloader> reloader(
      new CredentialsReloader(std::move(options), metrics));
  // The thread starts last: everything it reads is set before.
  reloader->thread_ = std::thread([r = reloader.get()] { r->Run(); });
  return reloader;
}

CredentialsReloader::CredentialsReloader(Options options,
                                         ServerMetrics* metrics)
    : options_(std::move(options)),
      metrics_(metrics),
      last_tokens_(options_.tokens_text),
      last_tls_(options_.tls_files) {
  if (!options_.tls.has_value()) return;
  // The start-up files passed CheckTlsFiles (main), and the server
  // reported them a moment ago: judged again now, they are the baseline.
  absl::StatusOr<std::vector<TlsCertificate>> certificates =
      CheckTlsFiles(*options_.tls, options_.tls_files);
  if (!certificates.ok()) return;
  const absl::Time now = absl::Now();
  for (const TlsCertificate& cert : *certificates) {
    tls_validity_.push_back(JudgeTlsCertificate(cert, now));
  }
  tls_certificates_ = *std::move(certificates);
}

CredentialsReloader::~CredentialsReloader() { Stop(); }

bool CredentialsReloader::ReloadNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    reload_requested_ = true;
  }
  wake_.notify_one();
  return true;
}

void CredentialsReloader::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void CredentialsReloader::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.interval),
                   [this] { return stopping_ || reload_requested_; });
    if (stopping_) return;
    reload_requested_ = false;
    lock.unlock();
    if (!options_.auth_tokens_file.empty()) CheckTokens();
    if (options_.tls.has_value()) CheckTls();
    lock.lock();
  }
}

void CredentialsReloader::CheckTokens() {
  absl::StatusOr<std::string> read = ReadTokenFile(options_.auth_tokens_file);
  // The same text, or the same error, as last time: nothing changed (an
  // error is logged and counted once, not once an interval).
  if (read == last_tokens_) return;
  last_tokens_ = read;
  absl::Status failure;
  if (read.ok()) {
    absl::StatusOr<TokenTable> table = TokenTable::Parse(
        *read, absl::StrCat("--auth-tokens=", options_.auth_tokens_file));
    if (table.ok()) {
      LogTokenLikeComments(*table, options_.auth_tokens_file);
      const size_t tokens = table->size();
      const size_t admins = table->RoleCount(Role::kAdmin);
      options_.tokens->Install(*std::move(table));
      metrics_->RecordCredentialsReload(Credentials::kAuthTokens, true);
      Log(LogLevel::kInfo, "credentials_reloaded",
          {{"what", "auth_tokens"},
           {"file", options_.auth_tokens_file},
           {"tokens", tokens},
           {"admin", admins},
           {"reader", tokens - admins},
           {"tables_held", options_.tokens->tables_held()}});
      return;
    }
    failure = table.status();
  } else {
    failure = read.status();
  }
  // Parse and ReadTokenFile never put a token in a message.
  metrics_->RecordCredentialsReload(Credentials::kAuthTokens, false);
  Log(LogLevel::kError, "credentials_reload_failed",
      {{"what", "auth_tokens"},
       {"file", options_.auth_tokens_file},
       {"reason", failure.message()},
       {"kept", "the tokens in use"},
       {"tokens", options_.tokens->Current().size()}});
}

void CredentialsReloader::CheckTls() {
  const v1::TlsConfig& tls = *options_.tls;
  // What the clock did to the certificates served (before any change
  // below replaces them, which reports its own).
  ReportTlsValidityChanges(tls, tls_certificates_, absl::Now(), &tls_validity_);
  absl::StatusOr<TlsFiles> read = ReadTlsFiles(tls);
  if (read == last_tls_) return;
  last_tls_ = read;
  absl::StatusOr<std::vector<TlsCertificate>> certificates =
      read.ok() ? CheckTlsFiles(tls, *read) : read.status();
  absl::Status check = certificates.status();
  // Only files that pass reach gRPC (ServedTlsFiles): it serves the last
  // good ones meanwhile.
  if (check.ok()) {
    check = options_.served_tls->Replace(*read);
    // Not served (a system call failed): try the same files again next
    // round.
    if (!check.ok()) last_tls_ = check;
  }
  metrics_->RecordCredentialsReload(Credentials::kTls, check.ok());
  if (check.ok()) {
    // Once per change that is installed: the dates of what is served
    // now, set and logged before the line that says it is served.
    tls_validity_ =
        ReportTlsCertificates(tls, *certificates, absl::Now(), metrics_);
    tls_certificates_ = *std::move(certificates);
    Log(LogLevel::kInfo, "credentials_reloaded",
        {{"what", "tls"},
         {"cert_file", tls.cert_file()},
         {"key_file", tls.key_file()},
         {"client_ca_file", tls.client_ca_file()}});
    return;
  }
  Log(LogLevel::kError, "credentials_reload_failed",
      {{"what", "tls"},
       {"reason", check.message()},
       {"kept", "the certificates in use"}});
}

}  // namespace groove::server
