// client_security_test: the clients' side of docs/SERVER.md §10 against the
// real groove-volumed on loopback: groovectl's --tls-ca, --tls-cert,
// --tls-key, --tls-server-name and --token-file, the same through
// groove::VolumePoolClient's ClientOptions::security and the same flags of
// the Python example (clients/python/groove_example.py), over TLS and mutual
// TLS (certificates made with openssl at test time, test_pki.h), with
// admin and reader tokens. Each refusal is checked against a success of
// the same client setup minus the one thing that is wrong, so that a
// refusal for another reason would not pass.

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "groove/client/volume_pool_client.h"
#include "gtest/gtest.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/test_pki.h"

namespace groove::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// CleanupProbeEnv is the environment of a child that runs with
// openssl_cleanup_probe preloaded, logging its OPENSSL_cleanup calls to
// `log`.
EnvironmentAdditions CleanupProbeEnv(const std::string& log) {
  return {{"LD_PRELOAD", GROOVE_OPENSSL_CLEANUP_PROBE},
          {"GROOVE_OPENSSL_CLEANUP_LOG", log}};
}

// SecureServer runs groove-volumed with TLS (mutual TLS when `mutual`) and
// the admin and reader tokens, and writes the token files the clients use.
class SecureServer {
 public:
  // With `cleanup_probe_log`, the server (and no other child) runs with
  // openssl_cleanup_probe preloaded, logging to that file.
  explicit SecureServer(bool mutual,
                        const std::string& cleanup_probe_log = "") {
    const std::string d = dir_.path();
    pki_ok_ = MakeTestPki(d).ok();
    if (!pki_ok_) return;
    WriteTextFile(d + "/tokens", absl::StrCat(kAdminToken, " admin\n",
                                              kReaderToken, " reader\n"));
    WriteTextFile(d + "/admin.token", absl::StrCat(kAdminToken, "\n"));
    WriteTextFile(d + "/reader.token", absl::StrCat(kReaderToken, "\n"));
    std::vector<std::string> args = {
        "--data-dir=" + d + "/data",
        "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16",
        "--tls-cert=" + d + "/server.pem", "--tls-key=" + d + "/server.key",
        "--auth-tokens=" + d + "/tokens"};
    if (mutual) args.push_back("--tls-client-ca=" + d + "/ca.pem");
    const EnvironmentAdditions env = cleanup_probe_log.empty()
                                         ? EnvironmentAdditions{}
                                         : CleanupProbeEnv(cleanup_probe_log);
    server_ = ServerProcess::Start(
        args, absl::Seconds(30), TlsClient(d, "ca.pem", mutual ? "client" : ""),
        TlsChannelArgs(), env);
  }
  bool ok() const { return pki_ok_ && server_ != nullptr; }
  std::string path(const std::string& file) const {
    return dir_.path() + "/" + file;
  }
  const ServerProcess& server() const { return *server_; }
  ServerProcess& server() { return *server_; }

  // Ctl runs groovectl against the server with `args`.
  CommandResult Ctl(std::vector<std::string> args) const {
    args.insert(
        args.begin(),
        {GROOVECTL_BIN, "--addr=" + server_->grpc_address(), "--timeout=5s"});
    return RunCommand(args, "", absl::Seconds(30));
  }

  // Client returns a VolumePoolClient of the server with `security`, or
  // the error of Create.
  absl::StatusOr<std::unique_ptr<VolumePoolClient>> Client(
      ClientSecurity security) const {
    ClientOptions options;
    options.address = server_->grpc_address();
    options.timeout = absl::Seconds(5);
    options.security = std::move(security);
    return VolumePoolClient::Create(std::move(options));
  }

 private:
  TempDir dir_;
  bool pki_ok_ = false;
  std::unique_ptr<ServerProcess> server_;
};

std::string Show(const CommandResult& r) {
  // exit_code is -1 both when the command was killed by a signal and when
  // RunCommand killed it at its timeout: say which.
  const std::string how =
      r.timed_out          ? " (timed out)"
      : r.term_signal != 0 ? absl::StrCat(" (killed by signal ", r.term_signal,
                                          ", ", strsignal(r.term_signal), ")")
                           : "";
  return absl::StrCat("exit ", r.exit_code, how, "\nstdout: ", r.out,
                      "\nstderr: ", r.err);
}

// ---- groovectl
// -----------------------------------------------------------------

TEST(GroovectlSecurityTest, TlsWithTokensSucceedsAndEachMistakeFails) {
  const SecureServer s(/*mutual=*/false);
  ASSERT_TRUE(s.ok());
  const std::string ca = "--tls-ca=" + s.path("ca.pem");
  const std::string admin = "--token-file=" + s.path("admin.token");
  const std::string reader = "--token-file=" + s.path("reader.token");

  // The admin token over TLS may add; health needs no token.
  CommandResult r = s.Ctl({ca, admin, "add", "a", "1"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  r = s.Ctl({ca, "health"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("SERVING"));
  // --tls-server-name is the name checked: the certificate's name passes,
  // another fails the handshake.
  r = s.Ctl({ca, "--tls-server-name=localhost", reader, "pools"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  r = s.Ctl({ca, "--tls-server-name=volumes.example", reader, "pools"});
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed"));
  // The hint names the credential that failed, and only that one.
  EXPECT_THAT(r.err, HasSubstr("does not carry the name groovectl checked: "
                               "give --tls-server-name"))
      << Show(r);
  EXPECT_THAT(r.err, Not(HasSubstr("--tls-ca"))) << Show(r);

  // No CA (plaintext against a TLS port), or another CA: no connection.
  r = s.Ctl({reader, "pools"});
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("cannot reach groove-volumed"));
  r = s.Ctl({"--tls-ca=" + s.path("other_ca.pem"), reader, "pools"});
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed"));
  EXPECT_THAT(r.err, HasSubstr("the server's certificate is not signed by a "
                               "CA of --tls-ca"))
      << Show(r);
  EXPECT_THAT(r.err, Not(HasSubstr("--tls-server-name"))) << Show(r);
  EXPECT_THAT(r.err, Not(HasSubstr("--tls-cert"))) << Show(r);

  // No token: UNAUTHENTICATED, exit 1, with the flag to use.
  r = s.Ctl({ca, "pools"});
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("error: UNAUTHENTICATED: "));
  EXPECT_THAT(r.err, HasSubstr("--token-file"));
  // A reader token reads, but may neither add nor verify.
  r = s.Ctl({ca, reader, "inspect", "a"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  r = s.Ctl({ca, reader, "add", "a", "1"});
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("error: PERMISSION_DENIED: AddVolume needs "
                               "role admin; this token has role reader"));
  r = s.Ctl({ca, reader, "inspect", "a", "--verify"});
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("PERMISSION_DENIED: Inspect with verify=true "
                               "needs role admin"));
  r = s.Ctl({ca, admin, "inspect", "a", "--verify"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  // Exactly one volume was added: the reader's add did not happen.
  r = s.Ctl({ca, reader, "--output=json", "inspect", "a"});
  EXPECT_THAT(r.out, HasSubstr("\"volumes_mapped\":\"1\"")) << Show(r);
  // No token ever reaches the output.
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(kReaderToken)));
}

TEST(GroovectlSecurityTest, BadSecurityFilesAreUsageErrors) {
  const SecureServer s(/*mutual=*/false);
  ASSERT_TRUE(s.ok());
  const std::string ca = "--tls-ca=" + s.path("ca.pem");
  const std::string loose =
      WriteTextFile(s.path("loose.token"), kAdminToken, 0644);
  const std::string short_token = WriteTextFile(s.path("short.token"), "abc\n");
  // A line copied from the server's token file: `TOKEN ROLE`.
  const std::string server_line = WriteTextFile(
      s.path("server_line.token"), absl::StrCat(kAdminToken, " admin\n"));
  // A token no server can accept: its line in the server's file would be a
  // comment.
  const std::string hash =
      WriteTextFile(s.path("hash.token"), absl::StrCat("#", kAdminToken, "\n"));
  // The client's own key, readable by anyone: whoever reads it can pose
  // as this client.
  const std::string loose_key = WriteTextFile(
      s.path("loose.key"), ReadTextFile(s.path("client.key")), 0644);
  // A certificate given as the key, in a file only its owner may read.
  const std::string not_a_key = WriteTextFile(
      s.path("not_a_key.pem"), ReadTextFile(s.path("client.pem")));
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{ca, "--tls-cert=" + s.path("client.pem"), "--tls-key=" + loose_key},
       "tls_key_file (--tls-key) " + loose_key +
           ": is accessible to others (mode 0644); chmod 600 " + loose_key},
      {{ca, "--token-file=" + hash},
       "token_file (--token-file) " + hash +
           ": the token starts with '#', which makes its line in the "
           "server's token file a comment: no server can accept it; "
           "generate another (e.g. openssl rand -hex 32)"},
      {{ca, "--token-file=" + s.path("missing.token")},
       "token_file (--token-file) " + s.path("missing.token") +
           ": cannot read: No such file or directory"},
      {{ca, "--token-file=" + loose},
       "is accessible to others (mode 0644); chmod 600"},
      {{ca, "--token-file=" + s.path("data")}, "is not a regular file"},
      {{ca, "--token-file=" + short_token}, "the token is 3 bytes"},
      {{ca, "--token-file=" + server_line},
       "token_file (--token-file) " + server_line + ": byte " +
           std::to_string(std::string(kAdminToken).size() + 1) +
           " of the token is a space or tab: the first line must hold the "
           "token alone (not `TOKEN ROLE`, the server's format)"},
      {{"--tls-ca=" + s.path("missing.pem")}, "tls_ca_file (--tls-ca)"},
      {{"--tls-ca=" + s.path("server.key")}, "holds no PEM CERTIFICATE"},
      {{ca, "--tls-cert=" + s.path("client.pem")},
       "needs both tls_cert_file (--tls-cert) and tls_key_file (--tls-key)"},
      {{ca, "--tls-cert=" + s.path("client.pem"), "--tls-key=" + not_a_key},
       "tls_key_file (--tls-key) " + not_a_key + ": holds no PEM PRIVATE KEY"},
      {{"--tls-server-name=localhost"}, "needs TLS: also give"},
      {{"--tls-key=" + s.path("client.key")}, "needs TLS"},
      {{"--addr=192.0.2.1:50051", "--token-file=" + s.path("admin.token")},
       "refusing to send the bearer token in plaintext to 192.0.2.1:50051, "
       "which is not a loopback address: give --tls-ca for TLS"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.args;
    args.push_back("pools");
    const CommandResult r = s.Ctl(args);
    SCOPED_TRACE(absl::StrJoin(args, " "));
    EXPECT_EQ(r.exit_code, 2) << Show(r);
    EXPECT_THAT(r.err, HasSubstr(c.message)) << Show(r);
    // Only the library has allow_plaintext_token: groovectl never
    // advises it.
    EXPECT_THAT(r.err, Not(HasSubstr("allow_plaintext_token"))) << Show(r);
    EXPECT_EQ(r.out, "");
  }
  // The same token in a 0600 file is accepted.
  chmod(loose.c_str(), 0600);
  const CommandResult fixed = s.Ctl({ca, "--token-file=" + loose, "pools"});
  EXPECT_EQ(fixed.exit_code, 0) << Show(fixed);
  // So is the same key in a 0600 file (this server does not ask for a
  // client certificate: the call goes through with it offered).
  chmod(loose_key.c_str(), 0600);
  const CommandResult key_fixed =
      s.Ctl({ca, "--tls-cert=" + s.path("client.pem"), "--tls-key=" + loose_key,
             "--token-file=" + s.path("admin.token"), "pools"});
  EXPECT_EQ(key_fixed.exit_code, 0) << Show(key_fixed);
}

// A Kubernetes Secret mounted for a non-root client under the pod's
// fsGroup: kubelet makes each key a symlink into ..data/ whose file is
// root:fsGroup 0440. Group read on a root-owned file is accepted; a group
// that may write, any access for others, and group read on a file that is
// not root's are still refused (docs/SECURITY.md).
TEST(GroovectlSecurityTest, TokenFileModesFollowTheSecretVolumeRule) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root, to make root-owned and other-owned files";
  }
  const SecureServer s(/*mutual=*/false);
  ASSERT_TRUE(s.ok());
  const std::string ca = "--tls-ca=" + s.path("ca.pem");
  constexpr gid_t kFsGroup = 10002;
  constexpr uid_t kNobody = 65534;
  ASSERT_EQ(mkdir(s.path("secret").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(s.path("secret/..data").c_str(), 0755), 0);
  const std::string data = WriteTextFile(s.path("secret/..data/token"),
                                         absl::StrCat(kAdminToken, "\n"), 0440);
  ASSERT_EQ(chown(data.c_str(), 0, kFsGroup), 0);
  const std::string token = s.path("secret/token");
  ASSERT_EQ(symlink("..data/token", token.c_str()), 0);

  CommandResult r = s.Ctl({ca, "--token-file=" + token, "pools"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  absl::StatusOr<std::unique_ptr<VolumePoolClient>> client = s.Client([&] {
    ClientSecurity security;
    security.tls_ca_file = s.path("ca.pem");
    security.token_file = token;
    return security;
  }());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->ListPools().ok());

  struct Case {
    mode_t mode;
    uid_t owner;
    std::string message;
  };
  const std::vector<Case> cases = {
      {0640, 0, ""},  // accepted: root-owned, group read only
      {0460, 0, "is writable or executable by its group (mode 0460)"},
      {0660, 0, "is writable or executable by its group (mode 0660)"},
      {0444, 0, "is accessible to others (mode 0444)"},
      {0404, 0, "is accessible to others (mode 0404)"},
      {0440, kNobody,
       "is readable by its group and not owned by root (group read is "
       "accepted only on a root-owned file, such as a Kubernetes Secret "
       "under fsGroup) (mode 0440); chmod 600"},
      {0640, kNobody, "is readable by its group and not owned by root"},
  };
  for (const Case& c : cases) {
    ASSERT_EQ(chmod(data.c_str(), c.mode), 0);
    ASSERT_EQ(chown(data.c_str(), c.owner, kFsGroup), 0);
    r = s.Ctl({ca, "--token-file=" + token, "pools"});
    SCOPED_TRACE(absl::StrCat("mode 0", c.mode >> 6, (c.mode >> 3) & 7,
                              c.mode & 7, " owner ", c.owner));
    if (c.message.empty()) {
      EXPECT_EQ(r.exit_code, 0) << Show(r);
      continue;
    }
    EXPECT_EQ(r.exit_code, 2) << Show(r);
    EXPECT_THAT(r.err, HasSubstr("token_file (--token-file) " + token + ": " +
                                 c.message))
        << Show(r);
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(kAdminToken)));
  }
}

TEST(GroovectlSecurityTest, MutualTlsNeedsTheClientCertificate) {
  const SecureServer s(/*mutual=*/true);
  ASSERT_TRUE(s.ok());
  const std::string ca = "--tls-ca=" + s.path("ca.pem");
  const std::string token = "--token-file=" + s.path("admin.token");
  const auto with_cert = [&](const std::string& name) {
    return std::vector<std::string>{ca, "--tls-cert=" + s.path(name + ".pem"),
                                    "--tls-key=" + s.path(name + ".key"), token,
                                    "pools"};
  };
  CommandResult r = s.Ctl(with_cert("client"));
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  // Without a certificate the server closes the connection during the
  // handshake, and the client sees only "Socket closed": the TLS hint
  // still names the flags.
  r = s.Ctl({ca, token, "pools"});
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("cannot reach groove-volumed"));
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed")) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("the server may require a client certificate "
                               "(mutual TLS): give --tls-cert and --tls-key"))
      << Show(r);
  EXPECT_THAT(r.err, Not(HasSubstr("--tls-server-name"))) << Show(r);
  // A certificate of another CA: the server refuses that certificate.
  r = s.Ctl(with_cert("other_client"));
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed")) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("the server may not accept the client "
                               "certificate of --tls-cert"))
      << Show(r);
  EXPECT_THAT(r.err, Not(HasSubstr("--tls-server-name"))) << Show(r);
}

// groovectl ends without OpenSSL's atexit cleanup (OPENSSL_cleanup), which
// frees OpenSSL's locks while gRPC's detached EventEngine threads may still
// be running OpenSSL's per-thread destructors: under load that crashed
// groovectl (SIGSEGV in pthread_rwlock_wrlock) after it had printed its
// answer, as exit -1 in TlsWithTokensSucceedsAndEachMistakeFails (wrong
// --tls-server-name) and MutualTlsNeedsTheClientCertificate (no client
// certificate); see ExitNow in clients/groovectl/main.cc. The race needs a
// thread descheduled at the wrong instant, so the test checks what rules
// it out instead: a preloaded probe records every OPENSSL_cleanup call.
TEST(GroovectlSecurityTest, ExitRunsNoOpenSslCleanup) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the probe is an LD_PRELOAD library, which AddressSanitizer "
                  "refuses ahead of its runtime; the exit path is the same "
                  "code in every build";
#endif
  const SecureServer s(/*mutual=*/false);
  ASSERT_TRUE(s.ok());
  const std::string log = s.path("openssl_cleanup.log");
  const auto with_probe = [&](const std::vector<std::string>& args) {
    return RunCommand(args, "", absl::Seconds(30), CleanupProbeEnv(log));
  };
  // The probe sees the cleanup of a program that runs it: openssl's own.
  CommandResult r = with_probe({GROOVE_OPENSSL_BIN, "version"});
  ASSERT_EQ(r.exit_code, 0) << Show(r);
  ASSERT_EQ(ReadTextFile(log), "OPENSSL_cleanup\n");
  ASSERT_EQ(unlink(log.c_str()), 0);

  const std::vector<std::string> ctl = {
      GROOVECTL_BIN, "--addr=" + s.server().grpc_address(), "--timeout=5s",
      "--tls-ca=" + s.path("ca.pem"), "--token-file=" + s.path("reader.token")};
  // Every handshake fails; gRPC retries them on its own threads.
  std::vector<std::string> args = ctl;
  args.insert(args.end(), {"--tls-server-name=volumes.example", "pools"});
  r = with_probe(args);
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("TLS handshake failed")) << Show(r);
  EXPECT_EQ(ReadTextFile(log), "") << "groovectl ran OPENSSL_cleanup at exit";
  // A call that succeeds, with its output complete.
  args = ctl;
  args.insert(args.end(), {"--output=json", "pools"});
  r = with_probe(args);
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("\"name\":\"a\"")) << Show(r);
  EXPECT_EQ(ReadTextFile(log), "") << "groovectl ran OPENSSL_cleanup at exit";
}

// groove-volumed asks OpenSSL not to clean up at exit, for the reason
// groovectl skips exit-time teardown (clients/groovectl/main.cc): gRPC's
// detached threads may still be in OpenSSL when main returns.
TEST(ServerTlsExitTest, StopRunsNoOpenSslCleanup) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the probe is an LD_PRELOAD library, which AddressSanitizer "
                  "refuses ahead of its runtime; the exit path is the same "
                  "code in every build";
#endif
  TempDir dir;
  const std::string log = dir.path() + "/openssl_cleanup.log";
  SecureServer s(/*mutual=*/false, log);
  ASSERT_TRUE(s.ok());
  // Handshakes that succeed and one that fails, on the server's threads.
  CommandResult r = s.Ctl({"--tls-ca=" + s.path("ca.pem"),
                           "--token-file=" + s.path("reader.token"), "pools"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  r = s.Ctl({"--tls-ca=" + s.path("ca.pem"),
             "--tls-server-name=volumes.example", "pools"});
  EXPECT_EQ(r.exit_code, 3) << Show(r);
  EXPECT_EQ(s.server().Stop(), 0);
  EXPECT_EQ(ReadTextFile(log), "")
      << "groove-volumed ran OPENSSL_cleanup at exit";
}

TEST(GroovectlSecurityTest, TokenWithoutTlsGoesToLoopbackOnly) {
  TempDir dir;
  const std::string d = dir.path();
  WriteTextFile(d + "/tokens", absl::StrCat(kAdminToken, " admin\n"));
  const std::string token =
      "--token-file=" + WriteTextFile(d + "/admin.token", kAdminToken);
  // Tokens without TLS: the server allows it on loopback (with a warning).
  auto server = ServerProcess::Start(
      {"--data-dir=" + d + "/data",
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16",
       "--auth-tokens=" + d + "/tokens"});
  ASSERT_NE(server, nullptr);
  const auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {GROOVECTL_BIN, "--timeout=5s"});
    return RunCommand(args, "", absl::Seconds(30));
  };
  const std::string addr = "--addr=" + server->grpc_address();
  CommandResult r = ctl({addr, token, "add", "a", "1"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  r = ctl({addr, "add", "a", "1"});
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED"));
  // The same over "localhost" (a name, not an address) is loopback too.
  const std::string port =
      server->grpc_address().substr(server->grpc_address().rfind(':') + 1);
  r = ctl({"--addr=localhost:" + port, token, "pools"});
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_EQ(server->Stop(), 0);
}

// ---- The client library
// --------------------------------------------------------

ClientSecurity Tls(const SecureServer& s, const std::string& token_file) {
  ClientSecurity security;
  security.tls_ca_file = s.path("ca.pem");
  security.token_file = token_file.empty() ? "" : s.path(token_file);
  return security;
}

TEST(ClientSecurityTest, TlsAndTokensThroughClientOptions) {
  const SecureServer s(/*mutual=*/false);
  ASSERT_TRUE(s.ok());
  v1::AddVolumeRequest add;
  add.set_pool("a");
  add.set_count(1);

  auto admin = s.Client(Tls(s, "admin.token"));
  ASSERT_TRUE(admin.ok()) << admin.status();
  absl::StatusOr<v1::AddVolumeResponse> added = (*admin)->AddVolume(add);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->summary().volumes_mapped(), 1u);
  // Health carries no token, and needs none.
  auto anonymous = s.Client(Tls(s, ""));
  ASSERT_TRUE(anonymous.ok()) << anonymous.status();
  EXPECT_EQ((*anonymous)
                ->Health()
                .value_or(grpc::health::v1::HealthCheckResponse::UNKNOWN),
            grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ((*admin)->Health().value_or(
                grpc::health::v1::HealthCheckResponse::UNKNOWN),
            grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ((*anonymous)->ListPools().status().code(),
            absl::StatusCode::kUnauthenticated);

  // The token given directly works like the file.
  ClientSecurity direct = Tls(s, "");
  direct.token = kReaderToken;
  auto reader = s.Client(direct);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_TRUE((*reader)->ListPools().ok());
  const absl::Status denied = (*reader)->AddVolume(add).status();
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied) << denied;
  v1::InspectRequest verify;
  verify.set_pool("a");
  verify.set_verify(true);
  const absl::Status verify_denied = (*reader)->Inspect(verify).status();
  EXPECT_EQ(verify_denied.code(), absl::StatusCode::kPermissionDenied)
      << verify_denied;
  EXPECT_THAT(verify_denied.message(), HasSubstr("verify"));
  EXPECT_TRUE((*admin)->Inspect(verify).ok());

  // Another CA, or plaintext: UNAVAILABLE (no connection).
  ClientSecurity other_ca = Tls(s, "admin.token");
  other_ca.tls_ca_file = s.path("other_ca.pem");
  auto untrusting = s.Client(other_ca);
  ASSERT_TRUE(untrusting.ok()) << untrusting.status();
  EXPECT_EQ((*untrusting)->ListPools().status().code(),
            absl::StatusCode::kUnavailable);
  ClientSecurity plaintext;
  plaintext.token_file = s.path("admin.token");  // loopback: allowed
  auto plain = s.Client(plaintext);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->ListPools().status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(ClientSecurityTest, MutualTlsThroughClientOptions) {
  const SecureServer s(/*mutual=*/true);
  ASSERT_TRUE(s.ok());
  ClientSecurity mutual = Tls(s, "admin.token");
  mutual.tls_cert_file = s.path("client.pem");
  mutual.tls_key_file = s.path("client.key");
  mutual.tls_server_name = "localhost";
  auto client = s.Client(mutual);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->ListPools().ok());
  auto no_cert = s.Client(Tls(s, "admin.token"));
  ASSERT_TRUE(no_cert.ok()) << no_cert.status();
  EXPECT_EQ((*no_cert)->ListPools().status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(ClientSecurityTest, CreateRefusesBadSecurityNamingTheFile) {
  TempDir dir;
  const std::string loose = WriteTextFile(
      dir.path() + "/loose", std::string(kAdminToken) + "\n", 0640);
  // Group read is refused on a file that is not root's (it is accepted on
  // a root-owned one: TokenFileModesFollowTheSecretVolumeRule).
  if (geteuid() == 0) {
    ASSERT_EQ(chown(loose.c_str(), 65534, 65534), 0);
  }
  const std::string good =
      WriteTextFile(dir.path() + "/good", std::string(kAdminToken) + "\n");
  const auto create = [](const std::string& address, ClientSecurity security,
                         std::shared_ptr<grpc::ChannelCredentials> creds =
                             nullptr) {
    ClientOptions options;
    options.address = address;
    options.security = std::move(security);
    options.credentials = std::move(creds);
    return VolumePoolClient::Create(std::move(options)).status();
  };
  ClientSecurity s;
  s.token_file = loose;
  absl::Status status = create("127.0.0.1:1", s);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("token_file (--token-file) " + loose +
                        ": is readable by its group and not owned by root"));
  EXPECT_THAT(status.message(), HasSubstr("(mode 0640); chmod 600 " + loose));
  s.token_file = good;
  s.token = kAdminToken;
  EXPECT_EQ(create("127.0.0.1:1", s).code(),
            absl::StatusCode::kInvalidArgument);
  // A token given directly is held to the same rule as one in a file: one
  // that starts with '#' can never be in a server's token file.
  s.token_file.clear();
  s.token = absl::StrCat("#", kAdminToken);
  status = create("127.0.0.1:1", s);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("token: the token starts with '#'"));
  EXPECT_THAT(status.message(), Not(HasSubstr(kAdminToken)));
  s.token_file = good;
  s.token.clear();
  // A plaintext token goes to loopback addresses only, unless allowed.
  for (const char* address :
       {"127.0.0.1:1", "localhost:1", "[::1]:1", "dns:///localhost:1",
        "ipv4:127.0.0.2:1", "unix:/tmp/groove.sock"}) {
    EXPECT_TRUE(create(address, s).ok()) << address;
  }
  for (const char* address :
       {"192.0.2.1:50051", "volumes.internal:50051", "[2001:db8::1]:1",
        "dns:///volumes.internal:50051", "0.0.0.0:1"}) {
    status = create(address, s);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(status.message(), HasSubstr("in plaintext")) << address;
  }
  s.allow_plaintext_token = true;
  EXPECT_TRUE(create("192.0.2.1:50051", s).ok());
  // With hand-built credentials the caller decides what is encrypted.
  s.allow_plaintext_token = false;
  EXPECT_TRUE(
      create("192.0.2.1:50051", s, grpc::InsecureChannelCredentials()).ok());
  // TLS files together with hand-built credentials: which one?
  ClientSecurity tls;
  tls.tls_ca_file = good;
  status = create("127.0.0.1:1", tls, grpc::InsecureChannelCredentials());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not both"));
}

// Any TLS option of `security` beside hand-built credentials is refused
// as "both", since the header says the TLS part must then be empty. A
// --tls-server-name (or a client certificate) alone was refused with
// "needs TLS: also give tls_ca_file (--tls-ca)", advice that Create then
// refuses ("not both").
TEST(ClientSecurityTest, ATlsOptionBesideHandBuiltCredentialsIsRefusedAsBoth) {
  TempDir dir;
  const std::string pem = WriteTextFile(dir.path() + "/x.pem", "x\n");
  ClientSecurity name;
  name.tls_server_name = "volumes.internal";
  ClientSecurity client_certificate;
  client_certificate.tls_cert_file = pem;
  client_certificate.tls_key_file = pem;
  for (const ClientSecurity& security : {name, client_certificate}) {
    ClientOptions options;
    options.address = "127.0.0.1:1";
    options.security = security;
    options.credentials = grpc::SslCredentials(grpc::SslCredentialsOptions());
    const absl::Status status =
        VolumePoolClient::Create(std::move(options)).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("not both"));
    EXPECT_THAT(std::string(status.message()),
                Not(HasSubstr("also give tls_ca_file")));
  }
}

// ---- The Python example
// ----------------------------------------------------------

// Python runs clients/python/groove_example.py against the server with
// `args` after --addr, on pool "a".
CommandResult Python(const SecureServer& s, std::vector<std::string> args) {
  args.insert(
      args.begin(),
      {GROOVE_PYTHON3, GROOVE_SOURCE_DIR "/clients/python/groove_example.py",
       "--addr", s.server().grpc_address(), "--pool", "a", "--count", "2",
       "--timeout", "10"});
  return RunCommand(args, "", absl::Seconds(60));
}

// MutualTls is the Python example's flags for mutual TLS, and with a
// non-empty `token_file` (of the server's directory) that token.
std::vector<std::string> MutualTls(const SecureServer& s,
                                   const std::string& token_file) {
  std::vector<std::string> args = {"--tls-ca",   s.path("ca.pem"),
                                   "--tls-cert", s.path("client.pem"),
                                   "--tls-key",  s.path("client.key")};
  if (!token_file.empty()) {
    args.insert(args.end(), {"--token-file", s.path(token_file)});
  }
  return args;
}

TEST(PythonExampleSecurityTest, RunsWithMutualTlsAndAnAdminToken) {
  const SecureServer s(/*mutual=*/true);
  ASSERT_TRUE(s.ok());
  std::vector<std::string> args = MutualTls(s, "admin.token");
  args.insert(args.end(), {"--tls-server-name", "localhost"});
  const CommandResult r = Python(s, args);
  EXPECT_EQ(r.exit_code, 0) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("pool a: 0/16 volumes of 4096 bytes"));
  EXPECT_THAT(r.out, HasSubstr("added indices [0, 1]"));
  EXPECT_THAT(r.out, HasSubstr("python example ok"));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(kAdminToken)));
  // It removed what it added.
  const CommandResult pools = s.Ctl({"--tls-ca=" + s.path("ca.pem"),
                                     "--tls-cert=" + s.path("client.pem"),
                                     "--tls-key=" + s.path("client.key"),
                                     "--token-file=" + s.path("reader.token"),
                                     "--output=json", "inspect", "a"});
  EXPECT_THAT(pools.out, HasSubstr("\"volumes_mapped\":\"0\"")) << Show(pools);
}

// The run above minus the right token: an unknown token, or none, is
// refused by the server (exit 1). UNAUTHENTICATED rather than UNAVAILABLE
// shows the handshake (TLS, client certificate) succeeded.
TEST(PythonExampleSecurityTest, AnUnknownOrMissingTokenIsUnauthenticated) {
  const SecureServer s(/*mutual=*/true);
  ASSERT_TRUE(s.ok());
  WriteTextFile(s.path("unknown.token"), absl::StrCat(kUnknownToken, "\n"));
  CommandResult r = Python(s, MutualTls(s, "unknown.token"));
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("error: UNAUTHENTICATED: ")) << Show(r);
  EXPECT_THAT(r.out, Not(HasSubstr("python example ok")));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(kUnknownToken)));
  r = Python(s, MutualTls(s, ""));
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("error: UNAUTHENTICATED: ")) << Show(r);
}

// --tls-server-name reaches the handshake: the server's certificate
// carries 127.0.0.1 and localhost, so only a name it lacks can show it.
// The same against the mutual TLS server without a client certificate.
// No connection is UNAVAILABLE, exit 1.
TEST(PythonExampleSecurityTest, AWrongServerNameOrNoClientCertificateFails) {
  const SecureServer s(/*mutual=*/true);
  ASSERT_TRUE(s.ok());
  std::vector<std::string> args = MutualTls(s, "admin.token");
  args.insert(args.end(), {"--tls-server-name", "volumes.example"});
  CommandResult r = Python(s, args);
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE: ")) << Show(r);
  r = Python(
      s, {"--tls-ca", s.path("ca.pem"), "--token-file", s.path("admin.token")});
  EXPECT_EQ(r.exit_code, 1) << Show(r);
  EXPECT_THAT(r.err, HasSubstr("error: UNAVAILABLE: ")) << Show(r);
}

// Bad combinations and bad files are usage errors (exit 2) naming the
// flag, found before any connection is tried (192.0.2.1 is never dialed).
TEST(PythonExampleSecurityTest, BadSecurityOptionsAreUsageErrors) {
  const SecureServer s(/*mutual=*/true);
  ASSERT_TRUE(s.ok());
  const std::string loose =
      WriteTextFile(s.path("loose.token"), kAdminToken, 0644);
  const std::string server_line = WriteTextFile(
      s.path("server_line.token"), absl::StrCat(kAdminToken, "\tadmin\n"));
  const std::string hash =
      WriteTextFile(s.path("hash.token"), absl::StrCat("#", kAdminToken, "\n"));
  const std::string loose_key = WriteTextFile(
      s.path("loose.key"), ReadTextFile(s.path("client.key")), 0644);
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls-ca", s.path("ca.pem"), "--tls-cert", s.path("client.pem"),
        "--tls-key", loose_key},
       "error: --tls-key " + loose_key +
           ": is accessible to others (mode 0644); chmod 600 " + loose_key},
      {{"--tls-ca", s.path("ca.pem"), "--token-file", hash},
       "error: --token-file " + hash +
           ": the token starts with '#', which makes its line in the "
           "server's token file a comment: no server can accept it; "
           "generate another (e.g. openssl rand -hex 32)"},
      {{"--tls-ca", s.path("ca.pem"), "--token-file", server_line},
       "error: --token-file " + server_line + ": byte " +
           std::to_string(std::string(kAdminToken).size() + 1) +
           " of the token is a space or tab: the first line must hold the "
           "token alone (not `TOKEN ROLE`, the server's format)"},
      {{"--tls-ca", s.path("ca.pem"), "--tls-cert", s.path("client.pem")},
       "error: mutual TLS needs both --tls-cert and --tls-key"},
      {{"--tls-ca", s.path("ca.pem"), "--tls-key", s.path("client.key")},
       "error: mutual TLS needs both --tls-cert and --tls-key"},
      {{"--tls-cert", s.path("client.pem"), "--tls-key", s.path("client.key")},
       "error: --tls-cert needs TLS: also give --tls-ca"},
      {{"--tls-server-name", "localhost"},
       "error: --tls-server-name needs TLS: also give --tls-ca"},
      {{"--tls-ca", s.path("server.key")},
       "error: --tls-ca " + s.path("server.key") +
           ": holds no PEM CERTIFICATE"},
      {{"--tls-ca", s.path("ca.pem"), "--token-file", s.path("missing.token")},
       "error: --token-file " + s.path("missing.token") +
           ": cannot read: No such file or directory"},
      {{"--tls-ca", s.path("ca.pem"), "--token-file", loose},
       "error: --token-file " + loose +
           ": is accessible to others (mode 0644); chmod 600 " + loose},
      {{"--addr", "192.0.2.1:50051", "--token-file", s.path("admin.token")},
       "error: refusing to send the bearer token in plaintext to "
       "192.0.2.1:50051, which is not a loopback address: give --tls-ca"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    const CommandResult r = Python(s, c.args);
    EXPECT_EQ(r.exit_code, 2) << Show(r);
    EXPECT_THAT(r.err, HasSubstr(c.message)) << Show(r);
    EXPECT_EQ(r.out, "") << Show(r);
    EXPECT_THAT(r.err, Not(HasSubstr(kAdminToken)));
  }
}

}  // namespace
}  // namespace groove::testing
