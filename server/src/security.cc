#include "groove/server/security.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "groove/server/log.h"
#include "groove/v1/regular_file.h"
#include "groove/v1/token_file.h"

namespace groove::server {
namespace {

// CannotRead returns "WHAT: cannot read: PROBLEM": NOT_FOUND for a missing
// file (ENOENT), PERMISSION_DENIED when it may not be read (EACCES),
// INVALID_ARGUMENT otherwise.
absl::Status CannotRead(absl::string_view what, int err,
                        absl::string_view problem) {
  std::string message = absl::StrCat(what, ": cannot read: ", problem);
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == EACCES) return absl::PermissionDeniedError(message);
  return absl::InvalidArgumentError(message);
}

// ReadSecretFile is ReadNamedFile for a file that holds a secret (the token
// file, the TLS private key): after reading it, it refuses one that others
// may read by the one rule of such files, v1::TokenFileModeProblem (its
// status as opened, so nothing can be swapped in between). Errors: as
// ReadNamedFile; INVALID_ARGUMENT "WHAT: is accessible to others (mode 0644);
// chmod 600 PATH" (and the rule's other problems). Never puts any of the
// file's text in a message.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path,
                                           absl::string_view what) {
  struct stat st {};
  absl::StatusOr<std::string> text = ReadNamedFile(path, what, &st);
  if (!text.ok()) return text.status();
  if (std::string refusal = v1::SecretFileModeRefusal(st, path);
      !refusal.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", refusal));
  }
  return text;
}

// IsTokenByte: printable ASCII other than space (an HTTP header value's
// visible characters).
bool IsTokenByte(char c) { return c > ' ' && c < 0x7f; }

// OpenSSL handles, freed on scope exit.
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// OpenSslReason returns the reason of OpenSSL's latest error and clears the
// error queue ("" when there is none).
std::string OpenSslReason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "";
  const char* reason = ERR_reason_error_string(code);
  return reason == nullptr ? "" : absl::StrCat(" (", reason, ")");
}

// NoPassphrase refuses to decrypt: the server cannot ask for one.
int NoPassphrase(char*, int, int, void*) { return 0; }

// ParseCertificates returns every PEM certificate of `pem` (in order), or
// an error naming `what` when there is none or one is malformed.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& pem,
                                                       absl::string_view what) {
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
    if (cert == nullptr) break;
    certs.push_back(std::move(cert));
  }
  // The loop ends at the end of the data (PEM_R_NO_START_LINE) or at a
  // block that is not a valid certificate.
  const unsigned long last = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM &&
                         ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (last != 0 && !clean_end) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": certificate ", certs.size() + 1,
                     " is not a valid PEM certificate", OpenSslReason()));
  }
  ERR_clear_error();
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kNone:
      return "none";
    case Role::kReader:
      return "reader";
    case Role::kAdmin:
      return "admin";
  }
  return "none";
}

Role RequiredRole(RpcMethod method, bool verify) {
  switch (method) {
    case RpcMethod::kListPools:
      return Role::kReader;
    case RpcMethod::kInspect:
      return verify ? Role::kAdmin : Role::kReader;
    case RpcMethod::kAddVolume:
    case RpcMethod::kRemoveVolume:
    // An operator's override of a quarantine, on their word that nobody
    // holds the volume.
    case RpcMethod::kReclaimVolume:
      return Role::kAdmin;
  }
  return Role::kAdmin;
}

namespace {

// TokenLine is a `TOKEN ROLE` line's fields.
struct TokenLine {
  absl::string_view token;
  Role role = Role::kNone;
};

// ParseTokenLine reads `content` (a line, stripped, not blank) as `TOKEN
// ROLE`; on failure, *problem says why, never holding the token.
std::optional<TokenLine> ParseTokenLine(absl::string_view content,
                                        std::string* problem) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(content, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 2) {
    *problem = absl::StrCat("expected `TOKEN ROLE` (2 fields), found ",
                            fields.size(), " fields");
    return std::nullopt;
  }
  TokenLine line{fields[0]};
  const absl::string_view role_name = fields[1];
  if (role_name == "reader") {
    line.role = Role::kReader;
  } else if (role_name == "admin") {
    line.role = Role::kAdmin;
  } else {
    // The role field is not secret, but a line whose fields were swapped
    // would put the token here: name neither.
    *problem = "the role is neither `reader` nor `admin`";
    return std::nullopt;
  }
  if (line.token.size() < kMinTokenBytes ||
      line.token.size() > kMaxTokenBytes) {
    *problem =
        absl::StrCat("the token is ", line.token.size(), " bytes; tokens are ",
                     kMinTokenBytes, " to ", kMaxTokenBytes,
                     " bytes (e.g. `openssl rand -hex 32`)");
    return std::nullopt;
  }
  for (size_t i = 0; i < line.token.size(); ++i) {
    if (!IsTokenByte(line.token[i])) {
      *problem =
          absl::StrCat("byte ", i + 1, " of the token is not printable ASCII");
      return std::nullopt;
    }
  }
  return line;
}

}  // namespace

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text,
                                             absl::string_view source) {
  TokenTable table;
  // Which line each token came from, to name duplicates. The key is the
  // token itself, but only line numbers ever reach a message.
  absl::flat_hash_map<std::string, int> first_line;
  int line_number = 0;
  std::string problem;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    const absl::string_view content = absl::StripAsciiWhitespace(line);
    if (content.empty()) continue;
    if (content.front() == v1::kTokenFileComment) {
      // A comment, always; but one that reads as a whole `TOKEN ROLE`
      // line may be a token that starts with '#', which no client can
      // use: say so (the clients refuse such tokens, v1::TokenStartProblem).
      if (ParseTokenLine(content, &problem).has_value()) {
        table.token_like_comments_.push_back(line_number);
      }
      continue;
    }
    std::optional<TokenLine> parsed = ParseTokenLine(content, &problem);
    if (!parsed.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": line ", line_number, ": ", problem));
    }
    auto [it, inserted] =
        first_line.emplace(std::string(parsed->token), line_number);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": line ", line_number, ": the token is already on line ",
          it->second, "; each token has one role"));
    }
    Entry entry;
    std::memcpy(entry.bytes.data(), parsed->token.data(), parsed->token.size());
    entry.length = static_cast<uint32_t>(parsed->token.size());
    entry.role = parsed->role;
    table.entries_.push_back(entry);
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source,
                     ": holds no token; write one `TOKEN ROLE` line "
                     "per client (roles: reader, admin)"));
  }
  return table;
}

void LogTokenLikeComments(const TokenTable& table, const std::string& path) {
  if (table.token_like_comments().empty()) return;
  Log(LogLevel::kWarn, "auth_tokens_comment_reads_as_token",
      {{"file", path},
       {"lines", absl::StrJoin(table.token_like_comments(), ",")},
       {"note",
        "these lines start with '#', so they are comments, yet read as "
        "`TOKEN ROLE` lines: a token that starts with '#' is never "
        "accepted; give its client another token (e.g. openssl rand -hex "
        "32), or write '# ' (a space after the '#') to keep a "
        "commented-out token line without this warning"}});
}

absl::StatusOr<std::string> ReadNamedFile(const std::string& path,
                                          absl::string_view what,
                                          struct stat* opened) {
  v1::RegularFile file = v1::ReadRegularFile(path);
  if (file.error != 0) {
    return CannotRead(what, file.error, std::strerror(file.error));
  }
  if (!file.regular()) {
    return CannotRead(what, 0,
                      S_ISDIR(file.opened.st_mode)
                          ? "it is a directory"
                          : "it is not a regular file (a FIFO, socket or "
                            "device); name the file itself");
  }
  if (opened != nullptr) *opened = file.opened;
  return std::move(file.text);
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  // Whoever can read this file holds every client's token, admins'
  // included: the clients' rule for their own token files.
  return ReadSecretFile(path, absl::StrCat("--auth-tokens=", path));
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path,
                                            std::string* text) {
  absl::StatusOr<std::string> read = ReadTokenFile(path);
  if (!read.ok()) return read.status();
  absl::StatusOr<TokenTable> table =
      Parse(*read, absl::StrCat("--auth-tokens=", path));
  if (table.ok() && text != nullptr) *text = *std::move(read);
  return table;
}

LiveTokenTable::LiveTokenTable(TokenTable initial) {
  tables_.push_back(std::make_unique<const TokenTable>(std::move(initial)));
  // Relaxed: the constructor finishes before any reader can reach this
  // object (the server publishes it by starting its threads).
  current_.store(tables_.back().get(), std::memory_order_relaxed);
}

void LiveTokenTable::Install(TokenTable next) {
  tables_.push_back(std::make_unique<const TokenTable>(std::move(next)));
  // Release: a reader that loads this pointer (acquire) sees the table
  // fully built.
  current_.store(tables_.back().get(), std::memory_order_release);
}

Role TokenTable::Lookup(absl::string_view token) const {
  if (token.size() > kMaxTokenBytes) return Role::kNone;
  std::array<uint8_t, kMaxTokenBytes> presented{};
  std::memcpy(presented.data(), token.data(), token.size());
  const uint32_t length = static_cast<uint32_t>(token.size());
  uint8_t role = 0;
  for (const Entry& entry : entries_) {
    // diff is 0 exactly when the lengths and all kMaxTokenBytes bytes
    // (padding included) are equal. Every byte is visited, whatever the
    // data: no early exit.
    uint32_t diff = entry.length ^ length;
    for (size_t i = 0; i < kMaxTokenBytes; ++i) {
      diff |= static_cast<uint32_t>(entry.bytes[i] ^ presented[i]);
    }
    // An empty asm that "may change" diff: the compiler can no longer
    // reason about its value, so it cannot turn the loop above into one
    // that stops at the first difference.
    __asm__ __volatile__("" : "+r"(diff));
    // match is 0xff when diff == 0, else 0, without a branch: diff - 1
    // underflows (sets bit 32 of the 64-bit value) only for diff == 0.
    const uint8_t match = static_cast<uint8_t>(
        0 - static_cast<uint8_t>((static_cast<uint64_t>(diff) - 1) >> 32 & 1));
    // Tokens are unique, so at most one entry matches.
    role |= match & static_cast<uint8_t>(entry.role);
  }
  return static_cast<Role>(role);
}

size_t TokenTable::RoleCount(Role role) const {
  size_t count = 0;
  for (const Entry& entry : entries_) count += entry.role == role ? 1 : 0;
  return count;
}

absl::Status Authorize(const TokenTable& tokens,
                       absl::Span<const absl::string_view> authorization,
                       RpcMethod method, bool verify) {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        RpcMethodName(method),
        " needs a token: send the metadata `authorization: Bearer TOKEN`"));
  }
  if (authorization.size() > 1) {
    return absl::UnauthenticatedError(
        absl::StrCat(RpcMethodName(method), ": ", authorization.size(),
                     " `authorization` metadata values; send exactly one"));
  }
  absl::string_view value = authorization.front();
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        absl::StrCat(RpcMethodName(method),
                     ": the `authorization` metadata is not `Bearer TOKEN`"));
  }
  value.remove_prefix(kScheme.size());
  const Role role = tokens.Lookup(absl::StripAsciiWhitespace(value));
  if (role == Role::kNone) {
    return absl::UnauthenticatedError(
        absl::StrCat(RpcMethodName(method),
                     ": the bearer token is not one of this server's tokens"));
  }
  const Role required = RequiredRole(method, verify);
  if (static_cast<uint8_t>(role) < static_cast<uint8_t>(required)) {
    const bool for_verify = verify && method == RpcMethod::kInspect;
    return absl::PermissionDeniedError(absl::StrCat(
        RpcMethodName(method), for_verify ? " with verify=true" : "",
        " needs role ", RoleName(required), "; this token has role ",
        RoleName(role),
        for_verify ? " (verify reads the header of every empty volume of "
                     "the pool; inspect without verify needs only reader)"
                   : ""));
  }
  return absl::OkStatus();
}

namespace {

// TlsWhat names each TLS file in messages: the flag, the config field and
// the path.
struct TlsWhat {
  explicit TlsWhat(const v1::TlsConfig& tls)
      : cert(absl::StrCat("--tls-cert (tls.cert_file) ", tls.cert_file())),
        key(absl::StrCat("--tls-key (tls.key_file) ", tls.key_file())),
        ca(absl::StrCat("--tls-client-ca (tls.client_ca_file) ",
                        tls.client_ca_file())) {}
  std::string cert;
  std::string key;
  std::string ca;
};

}  // namespace

absl::StatusOr<TlsFiles> ReadTlsFiles(const v1::TlsConfig& tls) {
  if (tls.cert_file().empty() || tls.key_file().empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls-cert (tls.cert_file) and --tls-key "
        "(tls.key_file)");
  }
  const TlsWhat what(tls);
  // Errors of reading are INVALID_ARGUMENT whatever errno says: all of
  // them are a bad flag to the operator (exit status 2).
  // The private key is a secret: whoever can read it can pose as the
  // server, so it must be a file others may not read, by the token
  // files' rule (ReadSecretFile); the certificates are public.
  auto read = [](const std::string& path, absl::string_view what, bool secret,
                 std::string* out) -> absl::Status {
    absl::StatusOr<std::string> text =
        secret ? ReadSecretFile(path, what) : ReadNamedFile(path, what);
    if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
    *out = *std::move(text);
    return absl::OkStatus();
  };
  TlsFiles files;
  if (absl::Status s =
          read(tls.cert_file(), what.cert, /*secret=*/false, &files.cert_chain);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          read(tls.key_file(), what.key, /*secret=*/true, &files.private_key);
      !s.ok()) {
    return s;
  }
  if (!tls.client_ca_file().empty()) {
    if (absl::Status s = read(tls.client_ca_file(), what.ca, /*secret=*/false,
                              &files.client_ca);
        !s.ok()) {
      return s;
    }
  }
  return files;
}

namespace {

// AsnTime returns an ASN.1 time of a certificate as an absl::Time, or
// nullopt when OpenSSL cannot read it.
std::optional<absl::Time> AsnTime(const ASN1_TIME* time) {
  struct tm utc {};
  if (time == nullptr || ASN1_TIME_to_tm(time, &utc) != 1) return std::nullopt;
  return absl::FromCivil(
      absl::CivilSecond(utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                        utc.tm_hour, utc.tm_min, utc.tm_sec),
      absl::UTCTimeZone());
}

// Describe returns the subject and dates of `cert` (certificate `number`,
// from 1, of the file `what_file` names as `what`), or INVALID_ARGUMENT
// when its dates cannot be read.
absl::StatusOr<TlsCertificate> Describe(X509* cert, size_t number,
                                        TlsCertificateFile what_file,
                                        absl::string_view what) {
  TlsCertificate described;
  described.what = what_file;
  const std::optional<absl::Time> not_before =
      AsnTime(X509_get0_notBefore(cert));
  const std::optional<absl::Time> not_after = AsnTime(X509_get0_notAfter(cert));
  if (!not_before.has_value() || !not_after.has_value()) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": certificate ", number,
                     " has validity dates (notBefore, notAfter) that are not "
                     "valid ASN.1 times"));
  }
  described.not_before = *not_before;
  described.not_after = *not_after;
  // RFC 2253, non-ASCII escaped: one printable line.
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio != nullptr &&
      X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0,
                         XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    if (size > 0) described.subject.assign(data, static_cast<size_t>(size));
  }
  ERR_clear_error();
  return described;
}

// FormatCertificateTime: RFC 3339 in UTC, whole seconds
// ("2026-01-31T00:00:00Z"), as certificates keep their dates.
std::string FormatCertificateTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", time, absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<std::vector<TlsCertificate>> CheckTlsFiles(
    const v1::TlsConfig& tls, const TlsFiles& files) {
  const TlsWhat what(tls);
  std::vector<TlsCertificate> reported;
  absl::StatusOr<std::vector<X509Ptr>> chain =
      ParseCertificates(files.cert_chain, what.cert);
  if (!chain.ok()) return chain.status();
  for (size_t i = 0; i < chain->size(); ++i) {
    absl::StatusOr<TlsCertificate> described = Describe(
        (*chain)[i].get(), i + 1, TlsCertificateFile::kCert, what.cert);
    if (!described.ok()) return described.status();
    // The server's own certificate only: the rest are its issuers', which
    // clients judge with their own trust store.
    if (i == 0) reported.push_back(*std::move(described));
  }
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(files.private_key.data(),
                             static_cast<int>(files.private_key.size())));
  PkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        what.key,
        ": holds no unencrypted PEM private key (-----BEGIN PRIVATE "
        "KEY-----)",
        OpenSslReason()));
  }
  if (X509_check_private_key(chain->front().get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(what.key, ": is not the key of the certificate in ",
                     what.cert, OpenSslReason()));
  }
  if (!tls.client_ca_file().empty()) {
    absl::StatusOr<std::vector<X509Ptr>> cas =
        ParseCertificates(files.client_ca, what.ca);
    if (!cas.ok()) return cas.status();
    for (size_t i = 0; i < cas->size(); ++i) {
      absl::StatusOr<TlsCertificate> described = Describe(
          (*cas)[i].get(), i + 1, TlsCertificateFile::kClientCa, what.ca);
      if (!described.ok()) return described.status();
      reported.push_back(*std::move(described));
    }
  }
  return reported;
}

TlsValidity JudgeTlsCertificate(const TlsCertificate& cert, absl::Time now) {
  if (now < cert.not_before) return {TlsValidity::kNotYetValid};
  if (now > cert.not_after) return {TlsValidity::kExpired};
  if (cert.not_after - now >= kTlsExpiryWarning) return {TlsValidity::kValid};
  return {TlsValidity::kExpiring,
          absl::ToInt64Hours(cert.not_after - now) / 24};
}

namespace {

// LogTlsValidity writes the line that says `cert` (of a file of `tls`)
// is `validity` (ReportTlsCertificates, ReportTlsValidityChanges).
void LogTlsValidity(const v1::TlsConfig& tls, const TlsCertificate& cert,
                    const TlsValidity& validity) {
  const LogField what("what", TlsCertificateFileName(cert.what));
  const LogField file("file", cert.what == TlsCertificateFile::kCert
                                  ? tls.cert_file()
                                  : tls.client_ca_file());
  const LogField subject("subject", cert.subject);
  const LogField not_before("not_before",
                            FormatCertificateTime(cert.not_before));
  const LogField not_after("not_after", FormatCertificateTime(cert.not_after));
  switch (validity.kind) {
    case TlsValidity::kValid:
      Log(LogLevel::kInfo, "tls_certificate_valid",
          {what, file, subject, not_before, not_after});
      return;
    case TlsValidity::kExpiring:
      Log(LogLevel::kWarn, "tls_certificate_expiring",
          {what,
           file,
           subject,
           not_before,
           not_after,
           {"days_left", validity.days_left}});
      return;
    case TlsValidity::kExpired:
    case TlsValidity::kNotYetValid:
      Log(LogLevel::kError, "tls_certificate_invalid",
          {what,
           file,
           subject,
           not_before,
           not_after,
           {"reason", validity.kind == TlsValidity::kExpired
                          ? "expired"
                          : "not_yet_valid"}});
      return;
  }
}

}  // namespace

std::vector<TlsValidity> ReportTlsCertificates(
    const v1::TlsConfig& tls, const std::vector<TlsCertificate>& certificates,
    absl::Time now, ServerMetrics* metrics) {
  // The certificate each file's metrics show: cert's own, and the client
  // CA that expires first (the first such in the file): one series per
  // file whatever the bundle's size, and the one an alert must see first.
  std::array<const TlsCertificate*, kTlsCertificateFileCount> shown{};
  for (const TlsCertificate& cert : certificates) {
    const TlsCertificate*& first = shown[static_cast<int>(cert.what)];
    if (first == nullptr || cert.not_after < first->not_after) first = &cert;
  }
  // The metrics first, then the lines: whoever has read a line scrapes
  // what it tells of.
  for (const TlsCertificate* cert : shown) {
    if (cert == nullptr) continue;
    metrics->SetTlsCertificate(cert->what, cert->subject, cert->not_before,
                               cert->not_after);
  }
  std::vector<TlsValidity> judged;
  for (const TlsCertificate& cert : certificates) {
    judged.push_back(JudgeTlsCertificate(cert, now));
    if (judged.back().kind != TlsValidity::kValid) {
      LogTlsValidity(tls, cert, judged.back());
    }
  }
  return judged;
}

void ReportTlsValidityChanges(const v1::TlsConfig& tls,
                              const std::vector<TlsCertificate>& certificates,
                              absl::Time now,
                              std::vector<TlsValidity>* judged) {
  for (size_t i = 0; i < certificates.size(); ++i) {
    const TlsValidity validity = JudgeTlsCertificate(certificates[i], now);
    if (validity == (*judged)[i]) continue;
    (*judged)[i] = validity;
    LogTlsValidity(tls, certificates[i], validity);
  }
}

absl::StatusOr<grpc::SslServerCredentialsOptions> LoadTlsCredentials(
    const v1::TlsConfig& tls) {
  absl::StatusOr<TlsFiles> files = ReadTlsFiles(tls);
  if (!files.ok()) return files.status();
  if (absl::StatusOr<std::vector<TlsCertificate>> checked =
          CheckTlsFiles(tls, *files);
      !checked.ok()) {
    return checked.status();
  }
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({files->private_key, files->cert_chain});
  if (!tls.client_ca_file().empty()) {
    options.pem_root_certs = files->client_ca;
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return options;
}

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:")) return true;
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = address.substr(0, colon);
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  if (absl::ConsumePrefix(&host, "[")) {
    if (!absl::ConsumeSuffix(&host, "]")) return false;
    in6_addr v6{};
    const std::string text(host);
    if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    // ::ffff:127.x.y.z, an IPv4 loopback address in IPv6 form.
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  in_addr v4{};
  const std::string text(host);
  if (inet_pton(AF_INET, text.c_str(), &v4) != 1) return false;
  return (ntohl(v4.s_addr) >> 24) == 127;
}

}  // namespace groove::server
