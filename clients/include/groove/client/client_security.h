// groove/client/client_security.h: how a groove-volumed client secures its
// channel (TLS, mutual TLS) and authenticates (a bearer token), from file
// names, without hand-building gRPC credentials. Every file is read and
// checked here, in LoadClientSecurity, once, when the client is created:
// a bad file fails Create with a message naming the option (and the
// groovectl flag) and the file, before any connection is tried.
//
// Example (mutual TLS and an admin token):
//   groove::ClientOptions options;
//   options.address = "volumes.internal:50051";
//   options.security.tls_ca_file = "/etc/groove/ca.pem";
//   options.security.tls_cert_file = "/etc/groove/client.pem";
//   options.security.tls_key_file = "/etc/groove/client.key";
//   options.security.token_file = "/etc/groove/admin.token";  // mode 0600
//   // (or root:GROUP 0440, as a Kubernetes Secret under fsGroup)
//   auto client = groove::VolumePoolClient::Create(options);
//
// How the token travels, and why: VolumePoolClient adds
// `authorization: Bearer TOKEN` to the ClientContext of every
// VolumePoolService call (per-call metadata), not through
// grpc::MetadataCredentialsPlugin. gRPC refuses call credentials on an
// insecure channel (the call fails UNAUTHENTICATED without reaching the
// server), while the server accepts tokens over plaintext on loopback (a
// development setup, logged `event=plaintext_listen` at warn); per-call
// metadata works over both, in one code path, and keeps the token out of
// gRPC's credential machinery. Health checks (VolumePoolClient::Health)
// carry no token: the server never asks for one there, and a probe needs
// none.
//
// Plaintext tokens: a token without TLS is sent only to a loopback
// address (127.0.0.0/8, [::1], localhost, unix: sockets), where it does
// not cross a network. To any other address Create refuses it
// (INVALID_ARGUMENT) unless allow_plaintext_token is set (e.g. a
// service mesh that encrypts the hop): a token read in cleartext off the
// wire is an admin's token.

#ifndef GROOVE_CLIENT_CLIENT_SECURITY_H_
#define GROOVE_CLIENT_CLIENT_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace groove {

// ClientSecurity names the files that secure a client. All empty (the
// default) means plaintext without a token.
struct ClientSecurity {
  // tls_ca_file: PEM certificates of the CAs that may sign the server's
  // certificate. Non-empty turns TLS on. (groovectl --tls-ca)
  std::string tls_ca_file;
  // tls_cert_file and tls_key_file: the client's PEM certificate chain and
  // its unencrypted PEM private key, for servers that require mutual TLS
  // (--tls-client-ca). Both or neither; REQUIRES tls_ca_file.
  // (groovectl --tls-cert, --tls-key)
  std::string tls_cert_file;
  std::string tls_key_file;
  // tls_server_name: the name the server's certificate must carry, when it
  // differs from the address's host (e.g. dialing 10.0.0.7 whose
  // certificate says volumes.internal). REQUIRES tls_ca_file.
  // (groovectl --tls-server-name)
  std::string tls_server_name;
  // token_file: a file whose first line is the bearer token (16 to 256
  // printable ASCII characters, the server's rule; surrounding whitespace
  // ignored). Its mode must give others nothing and its group nothing but
  // read: 0600 or 0400, or, for a file owned by root, also 0640 or 0440.
  // A readable token is a leaked one, as ssh insists for private keys; but
  // a root-owned file readable by its group is one an administrator (or
  // the kubelet) shared deliberately, as PostgreSQL allows for its key
  // files: a Kubernetes Secret volume under the pod's fsGroup is exactly
  // that (root:fsGroup, 0440), and the only way a non-root container can
  // read a Secret. A user's own group-readable file is usually a loose
  // umask, and refused. (groovectl --token-file)
  std::string token_file;
  // token: the token itself, for callers that hold it already (from a
  // secret store). At most one of token and token_file.
  std::string token;
  // allow_plaintext_token: send the token without TLS to a non-loopback
  // address too. Default false (see the file comment).
  bool allow_plaintext_token = false;
};

// LoadedSecurity is what LoadClientSecurity built.
struct LoadedSecurity {
  // credentials: grpc::SslCredentials with the files' contents, or
  // grpc::InsecureChannelCredentials() without TLS. Never null.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // tls_server_name: as in ClientSecurity ("" for none); the channel sets
  // it as GRPC_SSL_TARGET_NAME_OVERRIDE_ARG.
  std::string tls_server_name;
  // authorization: "Bearer TOKEN", or "" without a token.
  std::string authorization;
  bool tls = false;
};

// LoadClientSecurity reads and checks every file `security` names, for a
// client of `address` (a gRPC target, used for the plaintext-token rule).
// Checks that each PEM file holds a PEM block of the right kind
// (CERTIFICATE; PRIVATE KEY), that cert and key come together and only
// with a CA, and the token file's mode and contents; OpenSSL's full checks
// (does the key match the certificate?) happen in the handshake, whose
// failure the first call reports as UNAVAILABLE.
// Errors: INVALID_ARGUMENT with a message naming the option, its groovectl
// flag and the file, e.g. "tls_key_file (--tls-key) /x/client.key: cannot
// read: No such file or directory", "token_file (--token-file) /x/t: is
// accessible to others (mode 0644); chmod 600 /x/t". Messages
// never contain the token. Thread safety: reads files only; safe
// concurrently. Cost: the size of the files.
absl::StatusOr<LoadedSecurity> LoadClientSecurity(
    const ClientSecurity& security, absl::string_view address);

// IsLoopbackTarget reports whether gRPC target `address` ("host:port",
// "ipv4:HOST:PORT", "dns:///host:port", "unix:PATH", ...) names this host:
// a 127.0.0.0/8 or ::1 address, "localhost", or a unix socket.
bool IsLoopbackTarget(absl::string_view address);

}  // namespace groove

#endif  // GROOVE_CLIENT_CLIENT_SECURITY_H_
