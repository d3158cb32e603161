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
// MakeDatedCertificate adds a certificate of chosen dates (expired, not
// yet valid, about to expire), signed by one of those CAs, and
// CertificateDate reads a certificate's dates back with `openssl x509`, so
// that a test compares what the server says with what openssl says.
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
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "support/subprocess.h"

#ifndef GROOVE_OPENSSL_BIN
#error "GROOVE_OPENSSL_BIN must name the openssl binary"
#endif

namespace groove::testing {

inline constexpr char kAdminToken[] = "adm1n-T0KEN-for-groove-tests-4f9a1c";
inline constexpr char kReaderToken[] = "re4der-T0KEN-for-groove-tests-7b2e0d";
inline constexpr char kUnknownToken[] = "unkn0wn-T0KEN-for-groove-tests-000";

// kServerExtensions: the X.509v3 extensions of server.pem, as openssl
// config lines: the names a test client dials (TlsChannelArgs), for a
// server.
inline constexpr char kServerExtensions[] =
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "extendedKeyUsage=serverAuth";

// RunPkiScript runs the shell script `body` in `dir`, where `$o` is the
// openssl binary and `key FILE` writes a new P-256 private key to FILE
// (owner-only: openssl makes private key files 0600). Errors: INTERNAL
// with openssl's output.
inline absl::Status RunPkiScript(const std::string& dir,
                                 const std::string& body) {
  const std::string script = absl::StrCat("set -e\ncd '", dir, "'\n", "o='",
                                          GROOVE_OPENSSL_BIN, "'\n", R"sh(
key() { "$o" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
)sh",
                                          body);
  const CommandResult result =
      RunCommand({"/bin/sh", "-c", script}, "", absl::Seconds(60));
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat(
        "openssl failed (", result.exit_code, "): ", result.out, result.err));
  }
  return absl::OkStatus();
}

// MakeTestPki writes the files above into `dir`. Errors: INTERNAL with
// openssl's output.
inline absl::Status MakeTestPki(const std::string& dir) {
  // One shell script: ~10 openssl runs, well under a second.
  return RunPkiScript(dir, absl::StrCat(R"sh(
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
leaf server ca localhost ")sh",
                                        kServerExtensions, R"sh("
leaf other_server other_ca localhost ")sh",
                                        kServerExtensions, R"sh("
leaf client ca groove-test-client "extendedKeyUsage=clientAuth"
leaf other_client other_ca groove-other-client "extendedKeyUsage=clientAuth"
)sh"));
}

// MakeDatedCertificate writes `dir`/NAME.pem, a certificate for the common
// name `cn` valid from `not_before` to `not_after` (UTC, whole seconds),
// signed by `dir`/ISSUER.pem with ISSUER.key (a CA of MakeTestPki), with
// `extensions` (openssl config lines; kServerExtensions: a server of the
// names of server.pem), and its key NAME.key (0600). The dates may lie in
// the past or the future: it signs with `openssl ca -startdate -enddate`
// (a minimal CA database in `dir`/NAME.ca/), because OpenSSL 3.0's `req`
// and `x509` have no -not_before, and their -days cannot reach back.
// Errors: INTERNAL with openssl's output.
inline absl::Status MakeDatedCertificate(
    const std::string& dir, const std::string& name, const std::string& issuer,
    const std::string& cn, absl::Time not_before, absl::Time not_after,
    const std::string& extensions = kServerExtensions) {
  const auto date = [](absl::Time t) {
    return absl::FormatTime("%Y%m%d%H%M%SZ", t, absl::UTCTimeZone());
  };
  return RunPkiScript(
      dir, absl::StrCat("n='", name, "'\ni='", issuer, "'\ncn='", cn,
                        "'\nstart='", date(not_before), "'\nend='",
                        date(not_after), "'\next='", extensions, "'\n", R"sh(
mkdir "$n.ca"
: > "$n.ca/index.txt"
"$o" rand -hex 8 > "$n.ca/serial"
printf '%s\n' '[ca]' 'default_ca = dated' '[dated]' \
  "database = $n.ca/index.txt" "new_certs_dir = $n.ca" "serial = $n.ca/serial" \
  'default_md = sha256' 'policy = any' 'unique_subject = no' \
  '[any]' 'commonName = supplied' > "$n.ca/ca.cnf"
printf '%s\n' "$ext" > "$n.ca/ext"
key "$n.key"
"$o" req -new -key "$n.key" -out "$n.ca/csr" -subj "/CN=$cn"
"$o" ca -batch -notext -config "$n.ca/ca.cnf" -cert "$i.pem" -keyfile "$i.key" \
  -in "$n.ca/csr" -out "$n.pem" -startdate "$start" -enddate "$end" \
  -extfile "$n.ca/ext" 2>&1
)sh"));
}

// CertificateDate returns the notBefore (`which` "startdate") or notAfter
// ("enddate") of the first certificate of the PEM file `path`, as
// `openssl x509` reads it; InfinitePast, with a test failure, when it
// cannot.
inline absl::Time CertificateDate(const std::string& path,
                                  const std::string& which) {
  const CommandResult result =
      RunCommand({GROOVE_OPENSSL_BIN, "x509", "-noout", "-in", path,
                  "-" + which, "-dateopt", "iso_8601"},
                 "", absl::Seconds(60));
  // e.g. "notAfter=2020-02-01 00:00:00Z"
  const absl::string_view text = absl::StripAsciiWhitespace(result.out);
  const size_t equals = text.find('=');
  absl::Time time = absl::InfinitePast();
  std::string error;
  if (result.exit_code != 0 || equals == absl::string_view::npos ||
      !absl::ParseTime("%Y-%m-%d %H:%M:%SZ",
                       std::string(text.substr(equals + 1)),
                       absl::UTCTimeZone(), &time, &error)) {
    ADD_FAILURE() << "openssl x509 -" << which << " " << path << ": "
                  << result.out << result.err << error;
    return absl::InfinitePast();
  }
  return time;
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

// DateBlindTlsClient returns TLS channel credentials that take any server
// certificate, `dir`/`ca_file` as the roots they would otherwise check it
// against: no chain, date or name check (a client that pins the server's
// key another way, or does not check at all). For tests of a server whose
// certificate a checking client refuses: expired, or not yet valid.
inline std::shared_ptr<grpc::ChannelCredentials> DateBlindTlsClient(
    const std::string& dir, const std::string& ca_file) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(
      std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
          ReadTextFile(dir + "/" + ca_file)));
  options.watch_root_certs();
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
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
