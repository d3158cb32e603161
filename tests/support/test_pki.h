// tests/support/test_pki.h: certificates for the TLS tests, made with the
// `openssl` command at test time (Debian package openssl; script/bootstrap
// installs it) into a directory of the test's: nothing is checked in, and
// nothing expires between runs.
//
// MakeTestPki writes, with P-256 keys, valid for one day:
//   ca.pem, ca.key                the test CA
//   server.pem, server.key        signed by ca; CN and DNS SAN localhost,
//                                 IP SAN 127.0.0.1; serverAuth
//   client.pem, client.key        signed by ca; clientAuth
//   other_ca.pem                  another CA
//   other_server.pem, .key        signed by other_ca; the names of server
//                                 (a rotation to another CA)
//   other_client.pem, .key        signed by other_ca; clientAuth
//
// It also holds the bearer tokens the auth tests give the server in an
// --auth-tokens file (kAdminToken, kReaderToken) and one it never knows
// (kUnknownToken): long and distinctive, so that a test can search the
// logs for them.
//
// Example:
//   TempDir dir;
//   ASSERT_TRUE(MakeTestPki(dir.path()).ok());
//   auto creds = TlsClient(dir.path(), "ca.pem", "client");

#ifndef GROOVE_TESTS_SUPPORT_TEST_PKI_H_
#define GROOVE_TESTS_SUPPORT_TEST_PKI_H_

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "support/subprocess.h"

#ifndef GROOVE_OPENSSL_BIN
#error "GROOVE_OPENSSL_BIN must name the openssl binary"
#endif

namespace groove::testing {

inline constexpr char kAdminToken[] = "adm1n-T0KEN-for-groove-tests-4f9a1c";
inline constexpr char kReaderToken[] = "re4der-T0KEN-for-groove-tests-7b2e0d";
inline constexpr char kUnknownToken[] = "unkn0wn-T0KEN-for-groove-tests-000";

// MakeTestPki writes the files above into `dir`. Errors: INTERNAL with
// openssl's output.
inline absl::Status MakeTestPki(const std::string& dir) {
  const std::string openssl = GROOVE_OPENSSL_BIN;
  // One shell script: ~10 openssl runs, well under a second.
  const std::string script =
      absl::StrCat("set -e\ncd '", dir, "'\n", "o='", openssl, "'\n", R"sh(
key() { "$o" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
ca() {
  key "$1.key"
  "$o" req -x509 -new -key "$1.key" -out "$1.pem" -days 1 -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() {  # leaf NAME CA CN EXTENSIONS
  key "$1.key"
  "$o" req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3"
  printf '%s\n' "$4" > "$1.ext"
  "$o" x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$("$o" rand -hex 8)" \
    -days 1 -out "$1.pem" -extfile "$1.ext"
}
ca ca groove-test-ca
ca other_ca groove-other-ca
leaf server ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf other_server other_ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client ca groove-test-client "extendedKeyUsage=clientAuth"
leaf other_client other_ca groove-other-client "extendedKeyUsage=clientAuth"
)sh");
  const CommandResult result =
      RunCommand({"/bin/sh", "-c", script}, "", absl::Seconds(60));
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat(
        "openssl failed (", result.exit_code, "): ", result.out, result.err));
  }
  return absl::OkStatus();
}

// ReadTextFile returns a file's contents ("" when it cannot be read).
inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// TlsClient returns TLS channel credentials that trust `dir`/`ca_file`
// and, when `client` is not empty, present `dir`/`client`.pem with its
// key.
inline std::shared_ptr<grpc::ChannelCredentials> TlsClient(
    const std::string& dir, const std::string& ca_file,
    const std::string& client = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadTextFile(dir + "/" + ca_file);
  if (!client.empty()) {
    options.pem_cert_chain = ReadTextFile(dir + "/" + client + ".pem");
    options.pem_private_key = ReadTextFile(dir + "/" + client + ".key");
  }
  return grpc::SslCredentials(options);
}

// TlsChannelArgs names the server "localhost" (its certificate's name)
// whatever address the channel dials.
inline grpc::ChannelArguments TlsChannelArgs() {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  return args;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_TEST_PKI_H_
