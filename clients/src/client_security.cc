// groove/client/client_security.cc: see the header.

#include "groove/client/client_security.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "groove/v1/token_file.h"
#include "read_whole_file.h"

namespace groove {
namespace {

// The server's token rule (server/include/groove/server/security.h).
constexpr size_t kMinTokenBytes = 16;
constexpr size_t kMaxTokenBytes = 256;

absl::Status Bad(absl::string_view what, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", problem));
}

// ReadSecretFile reads a file that holds a secret (the token file, the
// TLS private key) and refuses it when others may read it, judged on the
// file as opened by the one rule of such files, the server's too
// (v1::TokenFileModeProblem): "WHAT: is accessible to others (mode 0644);
// chmod 600 PATH". Never puts the file's text in a message.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path,
                                           absl::string_view what) {
  struct stat st {};
  absl::StatusOr<std::string> text = ReadWholeFile(path, what, &st);
  if (!text.ok()) return text.status();
  if (std::string refusal = v1::SecretFileModeRefusal(st, path);
      !refusal.empty()) {
    return Bad(what, refusal);
  }
  return text;
}

// ReadPem reads a PEM file that must hold a block of `kind`
// ("CERTIFICATE", "PRIVATE KEY": "-----BEGIN EC PRIVATE KEY-----" counts).
// A private key is a secret (ReadSecretFile): whoever reads it can pose
// as this client.
absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view what,
                                    absl::string_view kind) {
  absl::StatusOr<std::string> text = kind == "PRIVATE KEY"
                                         ? ReadSecretFile(path, what)
                                         : ReadWholeFile(path, what);
  if (!text.ok()) return text.status();
  if (!absl::StrContains(*text, "-----BEGIN ") ||
      !absl::StrContains(*text, absl::StrCat(kind, "-----"))) {
    return Bad(what, absl::StrCat("holds no PEM ", kind, " (-----BEGIN ", kind,
                                  "-----)"));
  }
  if (kind == "PRIVATE KEY" && absl::StrContains(*text, "ENCRYPTED")) {
    return Bad(what, "is encrypted; give the unencrypted key (openssl pkey)");
  }
  return text;
}

// ReadTokenFile returns the first line of the token file, stripped.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path,
                                          absl::string_view what) {
  absl::StatusOr<std::string> text = ReadSecretFile(path, what);
  if (!text.ok()) return text.status();
  absl::string_view first = *text;
  first = first.substr(0, first.find('\n'));
  return std::string(absl::StripAsciiWhitespace(first));
}

// CheckToken checks the server's token rule: kMinTokenBytes to
// kMaxTokenBytes printable ASCII characters other than space, not
// starting with '#' (v1::TokenStartProblem: the server's file can only
// hold such a token as a comment). `from_file`: the token is a token
// file's first line, where a space or tab most often means a line copied
// from the server's `TOKEN ROLE` file: say so.
absl::Status CheckToken(absl::string_view token, absl::string_view what,
                        bool from_file) {
  if (const char* problem =
          v1::TokenStartProblem(std::string_view(token.data(), token.size()));
      *problem != '\0') {
    return Bad(what, problem);
  }
  if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes) {
    return Bad(
        what, absl::StrCat("the token is ", token.size(), " bytes; tokens are ",
                           kMinTokenBytes, " to ", kMaxTokenBytes, " bytes"));
  }
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == ' ' || token[i] == '\t') {
      return Bad(what,
                 absl::StrCat("byte ", i + 1, " of the token is a space or tab",
                              from_file ? ": the first line must hold "
                                          "the token alone (not `TOKEN "
                                          "ROLE`, the server's format)"
                                        : ""));
    }
    if (token[i] < ' ' || token[i] >= 0x7f) {
      return Bad(what, absl::StrCat("byte ", i + 1,
                                    " of the token is not printable ASCII"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackTarget(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") ||
      absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  // Schemes: "ipv4:", "ipv6:", "dns:///", "dns://AUTHORITY/".
  absl::string_view host = address;
  if (absl::ConsumePrefix(&host, "dns:")) {
    if (absl::ConsumePrefix(&host, "//"))
      host = host.substr(host.find('/') + 1);
  } else if (!absl::ConsumePrefix(&host, "ipv4:")) {
    absl::ConsumePrefix(&host, "ipv6:");
  }
  if (host.empty()) return false;
  const size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos && colon > 0 &&
      (host.front() != '[' || host[colon - 1] == ']')) {
    host = host.substr(0, colon);
  }
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  const std::string text(absl::StripSuffix(absl::StripPrefix(host, "["), "]"));
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) ||
           (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  in_addr v4{};
  return inet_pton(AF_INET, text.c_str(), &v4) == 1 &&
         (ntohl(v4.s_addr) >> 24) == 127;
}

absl::StatusOr<LoadedSecurity> LoadClientSecurity(
    const ClientSecurity& security, absl::string_view address) {
  const auto what = [](absl::string_view option, absl::string_view flag,
                       absl::string_view file) {
    return absl::StrCat(option, " (", flag, ") ", file);
  };
  LoadedSecurity loaded;
  loaded.tls = !security.tls_ca_file.empty();
  if (!loaded.tls) {
    for (const auto& [value, name] :
         {std::pair{&security.tls_cert_file, "tls_cert_file (--tls-cert)"},
          std::pair{&security.tls_key_file, "tls_key_file (--tls-key)"},
          std::pair{&security.tls_server_name,
                    "tls_server_name (--tls-server-name)"}}) {
      if (!value->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name,
                         " needs TLS: also give tls_ca_file (--tls-ca), the CA "
                         "that signed the server's certificate"));
      }
    }
  }
  if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS needs both tls_cert_file (--tls-cert) and tls_key_file "
        "(--tls-key)");
  }
  if (loaded.tls) {
    grpc::SslCredentialsOptions ssl;
    absl::StatusOr<std::string> ca = ReadPem(
        security.tls_ca_file,
        what("tls_ca_file", "--tls-ca", security.tls_ca_file), "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    if (!security.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert =
          ReadPem(security.tls_cert_file,
                  what("tls_cert_file", "--tls-cert", security.tls_cert_file),
                  "CERTIFICATE");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key =
          ReadPem(security.tls_key_file,
                  what("tls_key_file", "--tls-key", security.tls_key_file),
                  "PRIVATE KEY");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    loaded.credentials = grpc::SslCredentials(ssl);
    loaded.tls_server_name = security.tls_server_name;
  } else {
    loaded.credentials = grpc::InsecureChannelCredentials();
  }

  if (!security.token.empty() && !security.token_file.empty()) {
    return absl::InvalidArgumentError(
        "give the token either directly (token) or in a file (token_file, "
        "--token-file), not both");
  }
  std::string token = security.token;
  if (!security.token_file.empty()) {
    const std::string token_what =
        what("token_file", "--token-file", security.token_file);
    absl::StatusOr<std::string> read =
        ReadTokenFile(security.token_file, token_what);
    if (!read.ok()) return read.status();
    if (absl::Status s = CheckToken(*read, token_what, /*from_file=*/true);
        !s.ok())
      return s;
    token = *std::move(read);
  } else if (!token.empty()) {
    if (absl::Status s = CheckToken(token, "token", /*from_file=*/false);
        !s.ok())
      return s;
  }
  if (!token.empty()) {
    if (!loaded.tls && !security.allow_plaintext_token &&
        !IsLoopbackTarget(address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "refusing to send the bearer token in plaintext to ", address,
          ", which is not a loopback address: give tls_ca_file (--tls-ca) "
          "for TLS, or set allow_plaintext_token if something else "
          "encrypts the connection"));
    }
    loaded.authorization = absl::StrCat("Bearer ", token);
  }
  return loaded;
}

}  // namespace groove
