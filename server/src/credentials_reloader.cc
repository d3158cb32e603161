#include "groove/server/credentials_reloader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "groove/server/log.h"

namespace groove::server {

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
      last_tls_(options_.tls_files) {}

CredentialsReloader::~CredentialsReloader() { Stop(); }

void CredentialsReloader::Stop() {
  if (!thread_.joinable()) return;
  stop_.Notify();
  thread_.join();
}

void CredentialsReloader::Run() {
  while (!stop_.WaitForNotificationWithTimeout(options_.interval)) {
    if (!options_.auth_tokens_file.empty()) CheckTokens();
    if (options_.tls.has_value()) CheckTls();
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
  absl::StatusOr<TlsFiles> read = ReadTlsFiles(tls);
  if (read == last_tls_) return;
  last_tls_ = read;
  absl::Status check = read.ok() ? CheckTlsFiles(tls, *read) : read.status();
  metrics_->RecordCredentialsReload(Credentials::kTls, check.ok());
  if (check.ok()) {
    Log(LogLevel::kInfo, "credentials_reloaded",
        {{"what", "tls"},
         {"cert_file", tls.cert_file()},
         {"key_file", tls.key_file()},
         {"client_ca_file", tls.client_ca_file()}});
    return;
  }
  // What gRPC does with the same files is its own (docs/SERVER.md section
  // 10;
  // ServerCredentialsReloadTest.BadTlsFilesAreLoggedCountedAndWhatGrpcDoes):
  // gRPC 1.51 keeps serving the files it read last when one cannot be
  // read, but it takes a certificate and key that do not match, or that
  // are not PEM, and then fails every new handshake until they are fixed
  // (connections already open stay).
  Log(LogLevel::kError, "credentials_reload_failed",
      {{"what", "tls"}, {"reason", check.message()}});
}

}  // namespace groove::server
