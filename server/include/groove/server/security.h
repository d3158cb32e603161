// groove/server/security.h: who may reach groove-volumed's gRPC port and
// what they may do there: bearer tokens and their roles, TLS files, and
// the loopback rule for plaintext listeners.
//
// Tokens. `--auth-tokens=FILE` names a file of `TOKEN ROLE` lines:
//
//   # operators
//   3b1f0c9e6a2d4f7b8c5e1a9d0f2b4c6e admin
//   9c7e5a3b1d0f2e4a6c8b0d2f4e6a8c0b reader
//
// TokenTable::Parse reads it into an immutable table. LiveTokenTable holds
// the table in use: read at start-up, replaced when the file changes
// (CredentialsReloader, credentials_reloader.h). Every RPC calls
// Authorize, a pure function of the current table and the call's
// `authorization` metadata, which compares the presented token with every
// token of the table in constant time (TokenTable::Lookup). Nothing on
// the request path takes a lock (docs/SERVER.md, "No blocking"): the
// current table is one acquire load. No function here ever puts a token
// (presented or configured) in a message or a log line.
//
// Roles: kReader may call ListPools and Inspect without verify; kAdmin
// may call every RPC of groove.v1.VolumePoolService, Inspect with
// verify=true included (it reads every empty volume's header, O(empty
// volumes) of the server's time: not for a reader). Health checking never
// needs a token.
//
// TLS. LoadTlsCredentials reads and checks the PEM files of a
// `groove.v1.TlsConfig` (ReadTlsFiles, then CheckTlsFiles: parses every
// certificate and the key with OpenSSL, checks that the key belongs to
// the certificate) and returns their text, so that a bad file stops the
// server before it binds anything, with a message naming the flag and the
// file. While it serves, the reloader (credentials_reloader.h) runs the
// same checks on each change and copies only files that pass to what
// gRPC's FileWatcherCertificateProvider re-reads (ServedTlsFiles).
//
// Example (what main.cc and server.cc do):
//   std::string text;
//   absl::StatusOr<TokenTable> table = TokenTable::Load(path, &text);
//   LiveTokenTable tokens(*std::move(table));
//   ...
//   // per RPC, on any thread:
//   absl::Status s = Authorize(tokens.Current(), AuthorizationValues(context),
//                              RpcMethod::kAddVolume);

#ifndef GROOVE_SERVER_SECURITY_H_
#define GROOVE_SERVER_SECURITY_H_

#include <grpcpp/security/server_credentials.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "groove/server/metrics.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

// Role is what a token allows. The values are ordered: a role allows what
// every lower role allows.
enum class Role : uint8_t {
  kNone = 0,    // no token, or an unknown one: nothing
  kReader = 1,  // ListPools, Inspect (without verify)
  kAdmin = 2,   // also AddVolume, RemoveVolume, ReclaimVolume, Inspect
                // with verify
};

// RoleName returns "none", "reader" or "admin".
absl::string_view RoleName(Role role);

// RequiredRole returns the least role that may call `method`; `verify` is
// Inspect's verify field (ignored for the other methods).
Role RequiredRole(RpcMethod method, bool verify = false);

// Token length limits, in bytes. The lower bound keeps guessable tokens
// out (16 random base64 characters are 96 bits); the upper bound is the
// fixed width every comparison covers, so that a comparison's time does not
// depend on the length of either token.
inline constexpr size_t kMinTokenBytes = 16;
inline constexpr size_t kMaxTokenBytes = 256;

// TokenTable is the immutable set of bearer tokens and their roles.
// Built once (Parse, Load), then only read: safe to share between any
// number of threads without synchronization (LiveTokenTable publishes
// each new one with a release store).
class TokenTable {
 public:
  // Parse reads a token file's text. Lines: `TOKEN ROLE`, separated by
  // spaces or tabs; `#` as the first non-blank character makes a comment
  // line (so no token can start with '#': token_like_comments() lists the
  // comments that read as such a line); blank lines are skipped. TOKEN:
  // kMinTokenBytes to kMaxTokenBytes printable ASCII characters other than
  // space (so it is a valid HTTP header value); ROLE: `reader` or `admin`.
  // Tokens must be unique. Errors: INVALID_ARGUMENT "<source>: line N:
  // <problem>" for the first bad line (a wrong field count, a bad role, a token
  // of the wrong length or with a forbidden byte, a token already on line M),
  // and for a file without any token. No message contains a token or part of
  // one. Cost: O(text size).
  static absl::StatusOr<TokenTable> Parse(absl::string_view text,
                                          absl::string_view source);

  // Load reads the file at `path` (ReadTokenFile) and parses it (Parse,
  // with source "--auth-tokens=PATH"). When `text` is not null and the
  // file parses, *text receives the file's text (the reloader's baseline:
  // a later change is a change of this text). Errors: as ReadTokenFile,
  // then as Parse.
  static absl::StatusOr<TokenTable> Load(const std::string& path,
                                         std::string* text = nullptr);

  // Lookup returns the role of `token`, or kNone when it is not in the
  // table. Constant time: it compares all kMaxTokenBytes bytes of every
  // entry with the presented token (zero-padded), without branching on
  // the data, so its duration depends only on the table's size, not on
  // which token matched, on how long a common prefix is, or on either
  // token's length (a presented token longer than kMaxTokenBytes is
  // refused at once: that length is public). Thread safety: a pure read;
  // any number of threads. Cost: O(size() * kMaxTokenBytes).
  Role Lookup(absl::string_view token) const;

  // size returns the number of tokens.
  size_t size() const { return entries_.size(); }
  // token_like_comments returns the numbers (from 1, ascending) of the
  // comment lines that read as whole `TOKEN ROLE` lines (`#` then a valid
  // token and role, no blank between): a token that starts with '#'
  // (v1::kTokenFileComment) would be one, and is never accepted. Such a
  // line is a comment all the same (it may be a token commented out).
  const std::vector<int>& token_like_comments() const {
    return token_like_comments_;
  }
  // RoleCount returns how many tokens have `role`.
  size_t RoleCount(Role role) const;

 private:
  struct Entry {
    // bytes holds the token, zero-padded; length is its length in bytes,
    // in [kMinTokenBytes, kMaxTokenBytes].
    std::array<uint8_t, kMaxTokenBytes> bytes{};
    uint32_t length = 0;
    Role role = Role::kNone;  // never kNone once parsed
  };
  std::vector<Entry> entries_;
  std::vector<int> token_like_comments_;
};

// LogTokenLikeComments writes one `level=warn
// event=auth_tokens_comment_reads_as_token file=PATH lines=N,M note=...`
// line when `table` (read from `path`) has token_like_comments(), so that
// a token starting with '#', which the file can only hold as a comment,
// is seen rather than refused in silence; nothing otherwise. The line
// never holds a token. Thread safety: as Log.
void LogTokenLikeComments(const TokenTable& table, const std::string& path);

// ReadTokenFile returns the whole text of the token file at `path`, which
// must be a regular file (after symlinks) that others may not access: its
// mode gives others nothing and its group at most read, and group read
// only when root owns it (0600, 0400; root-owned 0640, 0440: a Kubernetes
// Secret under the pod's fsGroup), the clients' rule for their token
// files. Both are judged on the file opened, before it is read: a FIFO or
// device is refused at once, never waited on or read without end.
// Errors: NOT_FOUND (missing), PERMISSION_DENIED (not readable by the
// server) or INVALID_ARGUMENT (a directory, a FIFO, socket or device,
// another failure) with "--auth-tokens=PATH: cannot read: REASON";
// INVALID_ARGUMENT "--auth-tokens=PATH: is accessible to others (mode
// 0644); chmod 600 PATH" (likewise a group that may write, or group read
// on a file root does not own). Never puts any of the file's text in a
// message. Cost: the file's size.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// ReadNamedFile reads the whole of a file an operator named (the --config
// file, and under ReadTokenFile and ReadTlsFiles the credential files),
// after symlinks, and returns its status as opened in `*opened` when that
// is not null. A directory, FIFO, socket or device is refused without
// waiting on it or reading it (v1::ReadRegularFile). Why: the server reads
// these files before it handles signals and, in the reloader, every
// interval; a FIFO's open would wait for a writer forever (at start-up
// past SIGTERM; in the reloader blocking every later read and the
// shutdown that joins it), and a device such as /dev/zero never ends.
// Errors: NOT_FOUND (missing), PERMISSION_DENIED (not readable by the
// server) or INVALID_ARGUMENT (anything else), with "WHAT: cannot read:
// REASON". Thread safety: reads the file only. Cost: its size.
absl::StatusOr<std::string> ReadNamedFile(const std::string& path,
                                          absl::string_view what,
                                          struct stat* opened = nullptr);

// LiveTokenTable is the token table in use, replaceable while RPCs read
// it: the server's start-up table, then each table the reloader installs
// when the token file changes (credentials_reloader.h).
//
// Current() is one acquire load of an atomic pointer: wait-free, no lock,
// safe from any number of threads. Install() builds nothing on the RPC
// path: it moves an already parsed table to the heap and publishes it
// with a release store, so a reader that sees the new pointer sees the
// whole table.
//
// Memory: no table is freed before the LiveTokenTable. A reader may still
// be comparing a token with the table it loaded when the next one is
// installed, and nothing on the RPC path says when it is done (that would
// take hazard pointers or an epoch scheme; a per-table reader count is
// racy without one), so every table installed is kept until shutdown: one
// table per change of the file that parsed, about 264 bytes per token
// (10 tokens rotated daily: 2.6 KB a day, under 1 MB a year).
// tables_held() tells how many there are.
class LiveTokenTable {
 public:
  explicit LiveTokenTable(TokenTable initial);

  LiveTokenTable(const LiveTokenTable&) = delete;
  LiveTokenTable& operator=(const LiveTokenTable&) = delete;

  // Current returns the table in use. The reference stays valid until
  // this object is destroyed, even after later Installs. Thread safety:
  // wait-free (one acquire load); any thread. Cost: O(1).
  const TokenTable& Current() const {
    // Acquire: pairs with Install's release store, so every byte of the
    // table the pointer names is visible here.
    return *current_.load(std::memory_order_acquire);
  }

  // Install makes `next` the table in use for every Authorize that loads
  // it from now on; calls already past their load finish with the old one.
  // REQUIRES: one thread at a time calls Install (the reloader's).
  // Thread safety: safe concurrently with any number of Current() calls.
  // Cost: one allocation, O(1) otherwise.
  void Install(TokenTable next);

  // tables_held returns how many tables this object keeps (1 + the
  // Installs so far). REQUIRES: called by the thread that calls Install.
  size_t tables_held() const { return tables_.size(); }

 private:
  static_assert(std::atomic<const TokenTable*>::is_always_lock_free);
  // Every table ever installed, oldest first; tables_.back() is the one
  // current_ names. Only the installing thread touches the vector; readers
  // touch only the tables, which never move (unique_ptr).
  std::vector<std::unique_ptr<const TokenTable>> tables_;
  // Never null: names tables_.back().
  std::atomic<const TokenTable*> current_;
};

// Authorize decides whether a call of `method` whose `authorization`
// metadata values are `authorization` (normally zero or one) may proceed:
//   OK                 one value `Bearer TOKEN` (scheme case-insensitive)
//                      whose token's role allows `method`;
//   UNAUTHENTICATED    no value, several, one that is not `Bearer TOKEN`,
//                      or a token not in `tokens`;
//   PERMISSION_DENIED  a known token whose role is below
//                      RequiredRole(method, verify) (the message names both
//                      roles, and for verify why it needs admin).
// Messages never contain the token. Thread safety: a pure function.
// Cost: one TokenTable::Lookup.
absl::Status Authorize(const TokenTable& tokens,
                       absl::Span<const absl::string_view> authorization,
                       RpcMethod method, bool verify = false);

// TlsFiles is the text of the PEM files a TlsConfig names.
struct TlsFiles {
  std::string cert_chain;   // cert_file
  std::string private_key;  // key_file
  std::string client_ca;    // client_ca_file; "" when it is not set
  bool operator==(const TlsFiles&) const = default;
};

// ReadTlsFiles reads the files `tls` names, as they are now. Each must be
// a regular file (after symlinks): a FIFO or device is refused without
// waiting on it or reading it. The private key (key_file) must also be a
// file others may not read, by the rule of token files (ReadTokenFile,
// groove/v1/token_file.h: 0600, 0400, root-owned 0640 or 0440): whoever
// reads it can pose as the server.
// Errors: INVALID_ARGUMENT "TLS needs both --tls-cert ..." when cert_file
// or key_file is empty; INVALID_ARGUMENT "--tls-cert (tls.cert_file)
// PATH: cannot read: REASON" (likewise --tls-key, --tls-client-ca) when a
// file cannot be read or is not a regular file; INVALID_ARGUMENT
// "--tls-key (tls.key_file) PATH: is accessible to others (mode 0644);
// chmod 600 PATH" (likewise the rule's other problems). Never puts the
// key's text in a message. Changes nothing.
absl::StatusOr<TlsFiles> ReadTlsFiles(const v1::TlsConfig& tls);

// TlsCertificate is who a certificate of the TLS files names and when it
// is valid: what ReportTlsCertificates reports.
struct TlsCertificate {
  TlsCertificateFile what = TlsCertificateFile::kCert;  // the file it is in
  std::string subject;    // RFC 2253, e.g. "CN=localhost,O=Example"
  absl::Time not_before;  // not valid before (UTC, whole seconds)
  absl::Time not_after;   // not valid after
};

// CheckTlsFiles checks, with OpenSSL, that `files` (read from the paths of
// `tls`) hold what they should: at least one certificate (cert_file,
// client_ca_file), every PEM certificate valid with dates OpenSSL can
// read, an unencrypted private key (key_file) that matches the first
// certificate of cert_file. It does not judge the dates against the
// clock: an expired or not yet valid certificate passes (reported by
// ReportTlsCertificates). Returns the certificates whose validity the
// server reports: the first of cert_file (the server's own; the rest of
// the chain is its issuers'), then every one of client_ca_file, in order.
// Errors: INVALID_ARGUMENT "--tls-key (tls.key_file) PATH: <problem>"
// (likewise --tls-cert, --tls-client-ca). Thread safety: pure (OpenSSL's
// error queue is per thread). Cost: parses every certificate.
absl::StatusOr<std::vector<TlsCertificate>> CheckTlsFiles(
    const v1::TlsConfig& tls, const TlsFiles& files);

// kTlsExpiryWarning: a certificate that expires within this time of a
// load is logged at warn (ReportTlsCertificates); the alert
// GrooveTlsCertificateExpiresSoon (deploy/prometheus) uses the same 14
// days: time for a renewal that failed on its own to be noticed and made
// by hand (cert-manager renews at two thirds of a 90-day life, 30 days
// before the end).
inline constexpr absl::Duration kTlsExpiryWarning = absl::Hours(14 * 24);

// TlsValidity is what a certificate is at a given time, as the server
// reports it (JudgeTlsCertificate).
struct TlsValidity {
  enum Kind {
    kValid,        // valid, and not within kTlsExpiryWarning of its end
    kExpiring,     // valid, and within kTlsExpiryWarning of its end
    kExpired,      // past not_after
    kNotYetValid,  // before not_before
  };
  Kind kind = kValid;
  int64_t days_left = 0;  // kExpiring: whole days left, rounded down
  bool operator==(const TlsValidity&) const = default;
};

// JudgeTlsCertificate says what `cert` is at `now`. X.509 validity is
// inclusive at both ends (RFC 5280 4.1.2.5). Pure.
TlsValidity JudgeTlsCertificate(const TlsCertificate& cert, absl::Time now);

// ReportTlsCertificates tells the operator about the validity of
// `certificates` (CheckTlsFiles' result for `tls`) at `now`: the files
// were just loaded, at start-up or by a reload that installs a change.
// Each certificate that is not valid at `now` is logged
//   level=error event=tls_certificate_invalid what=cert|client_ca
//     file=PATH subject=... not_before=RFC3339 not_after=RFC3339
//     reason=expired|not_yet_valid
// and each that expires within kTlsExpiryWarning
//   level=warn event=tls_certificate_expiring what file subject
//     not_before not_after days_left=N   (whole days, rounded down)
// Nothing is logged for the others. The server still serves such files
// (docs/SERVER.md §10, "Certificate validity": clients decide, and
// refusing them would turn a late renewal into an outage). It also sets
// the metrics (ServerMetrics::SetTlsCertificate) of the cert file's
// certificate and of the client CA that expires first. Returns what each
// certificate is at `now` (JudgeTlsCertificate), in order: the baseline
// of ReportTlsValidityChanges.
// REQUIRES: the caller is the one thread that sets the TLS metrics
// (start-up, then the reloader's). Cost: O(certificates).
std::vector<TlsValidity> ReportTlsCertificates(
    const v1::TlsConfig& tls, const std::vector<TlsCertificate>& certificates,
    absl::Time now, ServerMetrics* metrics);

// ReportTlsValidityChanges tells the operator what the passing of time
// did to `certificates`, served since ReportTlsCertificates reported them
// (the same vector): each whose validity at `now` differs from
// `*judged` (what the last report found, in the same order) is logged as
// ReportTlsCertificates would log it now (an expiring one once a day, as
// its days_left falls; one that expired, once, at error), and one that
// became valid (its not_before passed) at info:
//   level=info event=tls_certificate_valid what file subject not_before
//     not_after
// `*judged` is updated. So files that stay unchanged for weeks are still
// heard of when they expire, not only by the metrics' alerts.
// REQUIRES: judged->size() == certificates.size(); one thread (the
// reloader's). Cost: O(certificates), no I/O unless a line is due.
void ReportTlsValidityChanges(const v1::TlsConfig& tls,
                              const std::vector<TlsCertificate>& certificates,
                              absl::Time now, std::vector<TlsValidity>* judged);

// LoadTlsCredentials reads (ReadTlsFiles) and checks (CheckTlsFiles) the
// PEM files named by `tls` and returns the options of
// grpc::SslServerCredentials: the certificate chain and its key, and with
// `client_ca_file` the client CAs and
// GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY (else
// GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE). The server builds its TLS
// credentials from them (server.cc) and uses their text as the
// reloader's baseline. Errors: as ReadTlsFiles, then as CheckTlsFiles.
// Reads the files; changes nothing.
absl::StatusOr<grpc::SslServerCredentialsOptions> LoadTlsCredentials(
    const v1::TlsConfig& tls);

// IsLoopbackAddress reports whether the host of "host:port" or
// "[v6]:port" is a loopback address: 127.0.0.0/8, ::1 (also as
// ::ffff:127.x.y.z) or the name "localhost", or whether the address is a
// unix socket ("unix:PATH"): reachable from this host only, like
// loopback. Any other host, names and wildcards (0.0.0.0, [::]) included,
// is not.
bool IsLoopbackAddress(absl::string_view address);

}  // namespace groove::server

#endif  // GROOVE_SERVER_SECURITY_H_
