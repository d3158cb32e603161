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
// TokenTable::Parse reads it once at start-up into an immutable table;
// every RPC then calls Authorize, a pure function of the table and the
// call's `authorization` metadata, which compares the presented token with
// every token of the table in constant time (TokenTable::Lookup). Nothing
// on the request path takes a lock (docs/SERVER.md, "No blocking"), and no
// function here ever puts a token (presented or configured) in a message
// or a log line.
//
// Roles: kReader may call ListPools and Inspect without verify; kAdmin
// may call every RPC of groove.v1.VolumePoolService, Inspect with
// verify=true included (it reads every empty volume's header, O(empty
// volumes) of the server's time: not for a reader). Health checking never
// needs a token.
//
// TLS. LoadTlsCredentials reads and checks the PEM files of a
// `groove.v1.TlsConfig` (parses every certificate and the key with
// OpenSSL, checks that the key belongs to the certificate) and returns
// the options for grpc::SslServerCredentials, so that a bad file stops the
// server before it binds anything, with a message naming the flag and the
// file.
//
// Example (what main.cc and server.cc do):
//   absl::StatusOr<TokenTable> tokens = TokenTable::Load(path);
//   ...
//   // per RPC, on any thread:
//   absl::Status s = Authorize(*tokens, AuthorizationValues(context),
//                              RpcMethod::kAddVolume);

#ifndef GROOVE_SERVER_SECURITY_H_
#define GROOVE_SERVER_SECURITY_H_

#include <grpcpp/security/server_credentials.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "groove/server/metrics.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

// Role is what a token allows. The values are ordered: a role allows what
// every lower role allows.
enum class Role : uint8_t {
  kNone = 0,    // no token, or an unknown one: nothing
  kReader = 1,  // ListPools, Inspect (without verify)
  kAdmin = 2,   // also AddVolume, RemoveVolume, Inspect with verify
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
// number of threads without synchronization.
class TokenTable {
 public:
  // Parse reads a token file's text. Lines: `TOKEN ROLE`, separated by
  // spaces or tabs; `#` as the first non-blank character makes a comment
  // line; blank lines are skipped. TOKEN: kMinTokenBytes to kMaxTokenBytes
  // printable ASCII characters other than space (so it is a valid HTTP
  // header value); ROLE: `reader` or `admin`. Tokens must be unique.
  // Errors: INVALID_ARGUMENT "<source>: line N: <problem>" for the first
  // bad line (a wrong field count, a bad role, a token of the wrong length
  // or with a forbidden byte, a token already on line M), and for a file
  // without any token. No message contains a token or part of one.
  // Cost: O(text size).
  static absl::StatusOr<TokenTable> Parse(absl::string_view text,
                                          absl::string_view source);

  // Load reads the file at `path` and parses it (Parse, with source
  // "--auth-tokens=PATH"). Errors: as Parse; NOT_FOUND, PERMISSION_DENIED
  // or INVALID_ARGUMENT when the file cannot be read (the message names
  // the flag, the file and the reason).
  static absl::StatusOr<TokenTable> Load(const std::string& path);

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

// LoadTlsCredentials reads the PEM files named by `tls` and returns the
// options of grpc::SslServerCredentials: the certificate chain and its
// key, and with `client_ca_file` the client CAs and
// GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY (else
// GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE). Checks, with OpenSSL, that
// every file holds what it should: at least one certificate (cert_file,
// client_ca_file), an unencrypted private key (key_file) that matches the
// first certificate of cert_file.
// Errors: INVALID_ARGUMENT "--tls-cert (tls.cert_file) PATH: <problem>"
// (likewise --tls-key, --tls-client-ca) when cert_file or key_file is
// empty, a file cannot be read (the reason from the system) or does not
// hold valid PEM, or the key does not match. Reads the files; changes
// nothing.
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
