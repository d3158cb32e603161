// groove-volumed's security and resource limits, against the real binary
// on loopback: TLS and mutual TLS with certificates made at test time,
// bearer tokens and their roles (codes, logs, metrics, tokens never in the
// log), certificates, client CAs and tokens rotated while the server
// serves (--credentials-refresh), reflection on and off, the request size
// limit, keepalive enforcement, idle connections, and 1,000 connections held at
// once with bounded memory. The bad flags (PEM and token files, the loopback
// rule, the limits) are in server_api_test's table.

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/build_expectation.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/test_pki.h"

#ifndef GROOVE_BUF_BIN
#error "GROOVE_BUF_BIN must name the buf binary (script/bootstrap installs it)"
#endif

namespace groove::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> OnePool(const TempDir& dir) {
  return {"--data-dir=" + dir.path() + "/data",
          "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16"};
}

// WithToken returns a context with a deadline and, unless `token` is
// empty, `authorization: Bearer TOKEN`.
std::unique_ptr<grpc::ClientContext> WithToken(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  SetDeadline(context.get());
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

grpc::Status ListPoolsWith(const std::shared_ptr<grpc::Channel>& channel,
                           const std::string& token = "") {
  auto stub = v1::VolumePoolService::NewStub(channel);
  v1::ListPoolsResponse response;
  return stub->ListPools(WithToken(token).get(), v1::ListPoolsRequest(),
                         &response);
}

// CounterValue returns the value of the sample of `name` whose labels
// include every one of `labels` (`key="value"`), or -1 when none does.
double CounterValue(const std::string& scrape, const std::string& name,
                    const std::vector<std::string>& labels) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (!absl::StartsWith(line, name + "{")) continue;
    bool all = true;
    for (const std::string& label : labels) {
      all = all && absl::StrContains(line, label);
    }
    double value = 0;
    if (all && absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) {
      return value;
    }
  }
  return -1;
}

// ---- TLS
// ----------------------------------------------------------------------

// StartTlsServer makes the test PKI (test_pki.h) in `dir` and starts a
// server of one pool there on TLS with its server certificate, plus
// `more_args`. Start's health checks go over TLS, trusting the test CA.
// Null, with a test failure, when the PKI cannot be made or the server
// does not start.
std::unique_ptr<ServerProcess> StartTlsServer(
    const TempDir& dir, const std::vector<std::string>& more_args = {}) {
  const absl::Status pki = MakeTestPki(dir.path());
  EXPECT_TRUE(pki.ok()) << pki;
  if (!pki.ok()) return nullptr;
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--tls-cert=" + dir.path() + "/server.pem");
  args.push_back("--tls-key=" + dir.path() + "/server.key");
  args.insert(args.end(), more_args.begin(), more_args.end());
  return ServerProcess::Start(args, absl::Seconds(30),
                              TlsClient(dir.path(), "ca.pem"),
                              TlsChannelArgs());
}

// ListPoolsInPlaintext calls ListPools on `server` without TLS.
grpc::Status ListPoolsInPlaintext(const ServerProcess& server) {
  return ListPoolsWith(grpc::CreateChannel(server.grpc_address(),
                                           grpc::InsecureChannelCredentials()));
}

TEST(ServerTlsTest, TlsClientWithTheCaSucceedsAndOthersFail) {
  TempDir dir;
  auto server = StartTlsServer(dir);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "tls=on"}), 1u);
  EXPECT_TRUE(ListPoolsWith(server->channel()).ok());

  // Plaintext: the handshake fails, no RPC gets through.
  const grpc::Status plaintext = ListPoolsInPlaintext(*server);
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE)
      << plaintext.error_message();
  // A client that trusts another CA refuses the server's certificate.
  const grpc::Status untrusted = ListPoolsWith(grpc::CreateCustomChannel(
      server->grpc_address(), TlsClient(dir.path(), "other_ca.pem"),
      TlsChannelArgs()));
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE)
      << untrusted.error_message();
  EXPECT_EQ(server->Stop(), 0);
}

// gRPC's own lines (gpr_log) reach the log as logfmt lines, not in gRPC's
// format ("E1127 12:00:00.000 ... Handshake failed ..."): a plaintext
// client at a TLS port makes gRPC log one per connection.
TEST(ServerTlsTest, GrpcsHandshakeErrorIsLoggedAsOneLogfmtLine) {
  TempDir dir;
  auto server = StartTlsServer(dir);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(ListPoolsInPlaintext(*server).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // In either format the line names the failed handshake.
  const std::optional<std::string> line =
      server->WaitForLog("Handshake failed");
  ASSERT_TRUE(line.has_value()) << server->LogText();
  const auto fields = LogfmtFields(*line);
  ASSERT_TRUE(fields.has_value()) << *line;
  using Field = std::pair<std::string, std::string>;
  ASSERT_EQ(fields->size(), 5u) << *line;
  EXPECT_EQ((*fields)[1], Field("level", "warn"));
  EXPECT_EQ((*fields)[2], Field("event", "grpc_log"));
  EXPECT_EQ((*fields)[3].first, "source");
  EXPECT_THAT((*fields)[3].second,
              ::testing::MatchesRegex(".*ssl_transport_security\\.cc:[0-9]+"));
  EXPECT_EQ((*fields)[4].first, "message");
  EXPECT_THAT((*fields)[4].second, HasSubstr("Handshake failed"));

  EXPECT_EQ(server->Stop(), 0);
  for (const std::string& each : server->LogLines()) {
    EXPECT_TRUE(LogfmtFields(each).has_value()) << "not logfmt: " << each;
  }
}

TEST(ServerTlsTest, MutualTlsNeedsAClientCertificateOfTheCa) {
  TempDir dir;
  ASSERT_TRUE(MakeTestPki(dir.path()).ok()) << MakeTestPki(dir.path());
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--tls-cert=" + dir.path() + "/server.pem");
  args.push_back("--tls-key=" + dir.path() + "/server.key");
  args.push_back("--tls-client-ca=" + dir.path() + "/ca.pem");
  auto server = ServerProcess::Start(args, absl::Seconds(30),
                                     TlsClient(dir.path(), "ca.pem", "client"),
                                     TlsChannelArgs());
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "tls=mutual"}), 1u);
  EXPECT_TRUE(ListPoolsWith(server->channel()).ok());

  const auto channel = [&](const std::string& client) {
    return grpc::CreateCustomChannel(server->grpc_address(),
                                     TlsClient(dir.path(), "ca.pem", client),
                                     TlsChannelArgs());
  };
  const grpc::Status no_cert = ListPoolsWith(channel(""));
  EXPECT_EQ(no_cert.error_code(), grpc::StatusCode::UNAVAILABLE)
      << no_cert.error_message();
  const grpc::Status other_ca = ListPoolsWith(channel("other_client"));
  EXPECT_EQ(other_ca.error_code(), grpc::StatusCode::UNAVAILABLE)
      << other_ca.error_message();
  // The same CA's client again, on a fresh connection: still accepted.
  EXPECT_TRUE(ListPoolsWith(channel("client")).ok());
  EXPECT_EQ(server->Stop(), 0);
}

// A TLS key others may read is as good as leaked: the server refuses it
// at start-up by the token files' rule (groove/v1/token_file.h), exit 2
// (server_api_test's table: 0644, 0660). These are the modes it takes:
// owner-only, and group read on a root-owned file (a Kubernetes Secret
// under the pod's fsGroup, 0440).
TEST(ServerTlsTest, AKeyOnlyItsOwnerOrARootGroupMayReadIsServed) {
  TempDir dir;
  ASSERT_TRUE(MakeTestPki(dir.path()).ok()) << MakeTestPki(dir.path());
  const std::string key = ReadTextFile(dir.path() + "/server.key");
  for (const mode_t mode : {0600, 0400, 0440}) {
    SCOPED_TRACE(absl::StrFormat("mode %04o", mode));
    const std::string path = WriteTextFile(
        absl::StrFormat("%s/key-%04o.pem", dir.path(), mode), key, mode);
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    // Group read is accepted only on a root-owned file.
    if ((mode & 040) != 0) {
      ASSERT_EQ(chown(path.c_str(), 0, st.st_gid), 0)
          << "making the file root-owned needs root: " << strerror(errno);
    }
    TempDir data;
    std::vector<std::string> args = OnePool(data);
    args.push_back("--tls-cert=" + dir.path() + "/server.pem");
    args.push_back("--tls-key=" + path);
    auto server =
        ServerProcess::Start(args, absl::Seconds(30),
                             TlsClient(dir.path(), "ca.pem"), TlsChannelArgs());
    ASSERT_NE(server, nullptr);
    EXPECT_TRUE(ListPoolsWith(server->channel()).ok());
    EXPECT_EQ(server->Stop(), 0);
  }
}

// ---- Tokens
// -------------------------------------------------------------------

TEST(ServerAuthTest, TokensGateEachRpcByRoleAndNeverReachTheLog) {
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteTextFile(tokens, absl::StrCat("# test tokens\n", kAdminToken,
                                     " admin\n\n", kReaderToken, "\treader\n"));
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + tokens);
  // Start's health checks carry no token: health stays open.
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "auth_tokens=2"}), 1u);
  auto stub = server->Stub();

  struct Call {
    std::string name;
    std::function<grpc::Status(grpc::ClientContext*)> run;
    bool admin_only;
    // What an admin gets: past the token check, the call's own answer.
    grpc::StatusCode admin_code = grpc::StatusCode::OK;
  };
  const std::vector<Call> calls = {
      {"ListPools",
       [&](grpc::ClientContext* c) {
         v1::ListPoolsResponse r;
         return stub->ListPools(c, v1::ListPoolsRequest(), &r);
       },
       false},
      {"Inspect",
       [&](grpc::ClientContext* c) {
         v1::InspectRequest q;
         q.set_pool("a");
         v1::InspectResponse r;
         return stub->Inspect(c, q, &r);
       },
       false},
      {"AddVolume",
       [&](grpc::ClientContext* c) {
         v1::AddVolumeResponse r;
         return stub->AddVolume(c, AddRequest("a", 1), &r);
       },
       true},
      {"RemoveVolume",
       [&](grpc::ClientContext* c) {
         v1::RemoveVolumeRequest q;
         q.set_pool("a");
         q.set_count(1);
         v1::RemoveVolumeResponse r;
         return stub->RemoveVolume(c, q, &r);
       },
       true},
      // Index 0 is free again after the remove: an admin's reclaim gets past
      // the token check to the pool's FAILED_PRECONDITION.
      {"ReclaimVolume",
       [&](grpc::ClientContext* c) {
         v1::ReclaimVolumeResponse r;
         v1::ReclaimVolumeRequest q;
         q.set_pool("a");
         q.set_index(0);
         return stub->ReclaimVolume(c, q, &r);
       },
       true, grpc::StatusCode::FAILED_PRECONDITION},
  };
  for (const Call& call : calls) {
    SCOPED_TRACE(call.name);
    // No token, an unknown one, a malformed header: UNAUTHENTICATED.
    grpc::Status s = call.run(WithToken("").get());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << s.error_message();
    s = call.run(WithToken(kUnknownToken).get());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << s.error_message();
    auto basic = WithToken("");
    basic->AddMetadata("authorization", std::string("Basic ") + kAdminToken);
    s = call.run(basic.get());
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << s.error_message();
    // A reader may read only.
    s = call.run(WithToken(kReaderToken).get());
    if (call.admin_only) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << s.error_message();
      EXPECT_THAT(s.error_message(),
                  HasSubstr(call.name + " needs role admin; this token has "
                                        "role reader"));
    } else {
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    // An admin may do everything (the add comes before the remove).
    s = call.run(WithToken(kAdminToken).get());
    EXPECT_EQ(s.error_code(), call.admin_code) << s.error_message();
  }
  // An unauthenticated caller does not learn the pool names.
  v1::InspectRequest unknown_pool;
  unknown_pool.set_pool("nope");
  v1::InspectResponse inspected;
  const grpc::Status hidden =
      stub->Inspect(WithToken("").get(), unknown_pool, &inspected);
  EXPECT_EQ(hidden.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(hidden.error_message(), Not(HasSubstr("pools a")));

  // Each failure is logged with method, code and peer, and counted. The
  // server writes the line before it answers, but the test reads the
  // server's output on a thread of its own: wait for the lines, then check
  // there are no more.
  const std::vector<std::string> unauthenticated_adds = {
      "event=rpc_error", "code=UNAUTHENTICATED", "method=AddVolume",
      "peer=ipv4:127.0.0.1"};
  const std::vector<std::string> denied = {"event=rpc_error",
                                           "code=PERMISSION_DENIED"};
  EXPECT_TRUE(server->WaitForLogCount(unauthenticated_adds, 3));
  EXPECT_TRUE(server->WaitForLogCount(denied, 3));
  EXPECT_EQ(server->LogCount(unauthenticated_adds), 3u);
  EXPECT_EQ(server->LogCount(denied), 3u);
  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(CounterValue(
                *scrape, "grpc_server_handled_total",
                {"grpc_method=\"Inspect\"", "grpc_code=\"UNAUTHENTICATED\""}),
            4);
  EXPECT_EQ(CounterValue(*scrape, "grpc_server_handled_total",
                         {"grpc_method=\"RemoveVolume\"",
                          "grpc_code=\"PERMISSION_DENIED\""}),
            1);
  EXPECT_EQ(CounterValue(*scrape, "grpc_server_handled_total",
                         {"grpc_method=\"ReclaimVolume\"",
                          "grpc_code=\"PERMISSION_DENIED\""}),
            1);
  EXPECT_EQ(server->Stop(), 0);
  // No token, accepted or refused, ever reached the log.
  const std::string log = server->LogText();
  for (const char* token : {kAdminToken, kReaderToken, kUnknownToken}) {
    EXPECT_THAT(log, Not(HasSubstr(token)));
    EXPECT_THAT(log, Not(HasSubstr(std::string(token).substr(0, 10))));
  }
}

// BufCurl runs `buf curl` (plaintext HTTP/2) against the server with
// `args`.
CommandResult BufCurl(const ServerProcess& server,
                      std::vector<std::string> args) {
  std::vector<std::string> argv = {
      GROOVE_BUF_BIN, "curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "--timeout",    "20s"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(absl::StrCat("http://", server.grpc_address()));
  return RunCommand(argv, "", absl::Seconds(60));
}

// A client looping on a wrong token (UNAUTHENTICATED, before any pool is
// looked up) cannot flood the log: its refusals are lines only up to the
// refusal line budget (default 100 a second), the rest counted.
TEST(ServerAuthTest, WrongTokenRefusalsAreLinesOnlyUpToTheirBudget) {
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteTextFile(tokens, absl::StrCat(kAdminToken, " admin\n"));
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + tokens);
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  constexpr uint64_t kRefusals = 1000;
  const std::string metrics =
      RunRefusalBurst(*server, kRefusals, 100, [&](uint64_t) {
        ASSERT_EQ(ListPoolsWith(server->channel(), kUnknownToken).error_code(),
                  grpc::StatusCode::UNAUTHENTICATED);
      });
  EXPECT_EQ(CounterValue(
                metrics, "grpc_server_handled_total",
                {"grpc_method=\"ListPools\"", "grpc_code=\"UNAUTHENTICATED\""}),
            kRefusals);
}

// ListPools tells its callers which build answers (server_build), so with
// tokens a reader learns it, while a caller without a token, or with an
// unknown one, is refused before (UNAUTHENTICATED) and learns nothing of it
// (docs/SECURITY.md).
TEST(ServerAuthTest, TheBuildIsToldToReadersNotToCallersWithoutAToken) {
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteTextFile(tokens, absl::StrCat(kReaderToken, " reader\n"));
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + tokens);
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  for (const std::string token : {"", kUnknownToken}) {
    SCOPED_TRACE(token.empty() ? "no token" : "an unknown token");
    v1::ListPoolsResponse refused;
    EXPECT_EQ(stub->ListPools(WithToken(token).get(), v1::ListPoolsRequest(),
                              &refused)
                  .error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_FALSE(refused.has_server_build());
  }
  v1::ListPoolsResponse told;
  ASSERT_TRUE(stub->ListPools(WithToken(kReaderToken).get(),
                              v1::ListPoolsRequest(), &told)
                  .ok());
  EXPECT_EQ(told.server_build().version(), kExpectedVersion);
  EXPECT_THAT(AcceptedRevisions(), Contains(told.server_build().revision()));
  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerAuthTest, ReflectionNeedsNoTokenAndFollowsItsFlag) {
  ASSERT_EQ(access(GROOVE_BUF_BIN, X_OK), 0)
      << GROOVE_BUF_BIN << " is missing: run script/bootstrap";
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteTextFile(tokens, absl::StrCat(kAdminToken, " admin\n"));
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + tokens);
  {
    auto server = ServerProcess::Start(args);
    ASSERT_NE(server, nullptr);
    const CommandResult listed = BufCurl(*server, {"--list-services"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    EXPECT_THAT(listed.out, HasSubstr("groove.v1.VolumePoolService"));
    EXPECT_EQ(server->Stop(), 0);
  }
  args.push_back("--reflection=false");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "reflection=off"}), 1u);
  const CommandResult refused = BufCurl(*server, {"--list-services"});
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_THAT(refused.out + refused.err, HasSubstr("unimplemented"));
}

// ---- Credential reloads
// -------------------------------------------------------

// SecretVolume writes files the way the kubelet updates a Secret volume:
// each version in a directory of its own, `..data` a symlink to the
// current one, swapped by rename(2) (atomic: a reader sees the old files
// or the new ones, never half of each), and each file a symlink
// `NAME -> ..data/NAME`. A file missing from a version is a dangling
// symlink.
class SecretVolume {
 public:
  explicit SecretVolume(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }

  // Write makes `files` (name, text) the volume's content, each file of
  // `mode` from its creation on (the kubelet's defaultMode). The default,
  // owner-only, is what the server wants of a token file and a TLS key.
  void Write(const std::vector<std::pair<std::string, std::string>>& files,
             mode_t mode = 0600) {
    const std::string version = absl::StrCat("..v", ++versions_);
    std::filesystem::create_directory(dir_ + "/" + version);
    for (const auto& [name, text] : files) {
      WriteTextFile(dir_ + "/" + version + "/" + name, text, mode);
    }
    const std::string tmp = dir_ + "/..data_tmp";
    std::filesystem::create_directory_symlink(version, tmp);
    std::filesystem::rename(tmp, dir_ + "/..data");
    for (const auto& [name, text] : files) {
      std::error_code ec;
      if (!std::filesystem::is_symlink(path(name), ec)) {
        std::filesystem::create_symlink("..data/" + name, path(name));
      }
    }
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
  int versions_ = 0;
};

// PollUntil calls `done` until it returns true (then true) or `timeout`
// passes (then false).
bool PollUntil(const std::function<bool()>& done,
               absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

// FreshTlsChannel returns a channel with a connection of its own (a local
// subchannel pool: no connection shared with an earlier channel) that
// trusts `pki`/`ca_file` and, with `client`, presents that certificate.
std::shared_ptr<grpc::Channel> FreshTlsChannel(const ServerProcess& server,
                                               const std::string& pki,
                                               const std::string& ca_file,
                                               const std::string& client = "") {
  grpc::ChannelArguments args = TlsChannelArgs();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(server.grpc_address(),
                                   TlsClient(pki, ca_file, client), args);
}

std::string ReloadsSeries(const std::string& what, const std::string& result) {
  return absl::StrCat("groove_credentials_reloads_total{result=\"", result,
                      "\",what=\"", what, "\"}");
}

// ReloadCount returns groove_credentials_reloads_total{what,result} as the
// server's /metrics shows it now ("" when absent).
std::string ReloadCount(const ServerProcess& server, const std::string& what,
                        const std::string& result) {
  absl::StatusOr<std::string> scrape =
      HttpGet(server.metrics_address(), "/metrics");
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  return scrape.ok() ? MetricValue(*scrape, ReloadsSeries(what, result)) : "";
}

// ReloadFailing returns groove_credentials_reload_failing{what} as the
// server's /metrics shows it now ("" when absent).
std::string ReloadFailing(const ServerProcess& server,
                          const std::string& what) {
  absl::StatusOr<std::string> scrape =
      HttpGet(server.metrics_address(), "/metrics");
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  return scrape.ok()
             ? MetricValue(
                   *scrape,
                   absl::StrCat("groove_credentials_reload_failing{what=\"",
                                what, "\"}"))
             : "";
}

TEST(ServerCredentialsReloadTest,
     ARotatedTokenFileTakesEffectAndABadOneIsKept) {
  TempDir dir;
  SecretVolume secret(dir.path() + "/tokens");
  secret.Write({{"tokens", absl::StrCat(kAdminToken, " admin\n")}});
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + secret.path("tokens"));
  args.push_back("--credentials-refresh=100ms");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "auth_tokens=1",
                              "credentials_refresh=100ms"}),
            1u);
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "ok"), "0");
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "failed"), "0");
  EXPECT_EQ(ReloadFailing(*server, "auth_tokens"), "0");
  EXPECT_TRUE(ListPoolsWith(server->channel(), kAdminToken).ok());

  // Rotated: the new token is accepted once the server has read it, and
  // from then on the old one is refused.
  secret.Write({{"tokens", absl::StrCat(kReaderToken, " reader\n")}});
  EXPECT_TRUE(PollUntil(
      [&] { return ListPoolsWith(server->channel(), kReaderToken).ok(); }));
  EXPECT_EQ(ListPoolsWith(server->channel(), kAdminToken).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=auth_tokens",
                               "tokens=1", "reader=1"},
                              1));
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "ok"), "1");

  // A malformed file (its fields swapped, so the token is where the role
  // should be): the tokens in use stay, the failure is logged, naming the
  // line and never the token, and counted once however many intervals it
  // stays.
  secret.Write({{"tokens", absl::StrCat("admin ", kAdminToken, "\n")}});
  ASSERT_TRUE(server->WaitForLogCount(
      {"level=error", "event=credentials_reload_failed", "what=auth_tokens",
       "line 1: the role is neither"},
      1));
  EXPECT_EQ(ReloadFailing(*server, "auth_tokens"), "1");
  EXPECT_TRUE(ListPoolsWith(server->channel(), kReaderToken).ok());
  EXPECT_EQ(ListPoolsWith(server->channel(), kAdminToken).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A later change (an empty file: no token) is a failure of its own.
  secret.Write({{"tokens", "# nothing yet\n"}});
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=credentials_reload_failed", "what=auth_tokens", "holds no token"},
      1));
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "failed"), "2");
  EXPECT_EQ(server->LogCount({"event=credentials_reload_failed"}), 2u);
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "ok"), "1");
  EXPECT_TRUE(ListPoolsWith(server->channel(), kReaderToken).ok());
  EXPECT_EQ(ReloadFailing(*server, "auth_tokens"), "1");
  EXPECT_EQ(ReloadFailing(*server, "tls"), "0");
  // Fixed: installed, and no longer failing.
  secret.Write({{"tokens", absl::StrCat(kAdminToken, " admin\n")}});
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=credentials_reloaded", "what=auth_tokens"}, 2));
  EXPECT_EQ(ReloadFailing(*server, "auth_tokens"), "0");
  EXPECT_TRUE(ListPoolsWith(server->channel(), kAdminToken).ok());
  EXPECT_EQ(server->Stop(), 0);
  const std::string log = server->LogText();
  for (const char* token : {kAdminToken, kReaderToken}) {
    EXPECT_THAT(log, Not(HasSubstr(std::string(token).substr(0, 10))));
  }
}

// A token that starts with '#' can only be a comment in the server's
// token file, so its client is refused (UNAUTHENTICATED) with no clue. The
// server says so when it reads such a file, at start-up and at each
// reload: a comment that reads as a whole `TOKEN ROLE` line is named (by
// line, never by token). A plain comment, or a token line commented out
// with '# ' (a space), is not.
TEST(ServerCredentialsReloadTest, ACommentThatReadsAsATokenLineIsNamed) {
  TempDir dir;
  const std::string hash_token = absl::StrCat("#", kUnknownToken);
  SecretVolume secret(dir.path() + "/tokens");
  secret.Write({{"tokens", absl::StrCat("# test tokens\n", kAdminToken,
                                        " admin\n", hash_token, " reader\n# ",
                                        kReaderToken, " reader\n")}});
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + secret.path("tokens"));
  args.push_back("--credentials-refresh=100ms");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "auth_tokens=1"}), 1u);
  EXPECT_EQ(ListPoolsWith(server->channel(), hash_token).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const std::vector<std::string> named = {
      "level=warn", "event=auth_tokens_comment_reads_as_token",
      "file=" + secret.path("tokens"), "lines=3 "};
  EXPECT_EQ(server->LogCount(named), 1u) << server->LogText();
  // A reload names them again, from the new file.
  secret.Write({{"tokens", absl::StrCat(hash_token, " admin\n", kAdminToken,
                                        " admin\n")}});
  EXPECT_TRUE(server->WaitForLogCount(
      {"event=credentials_reloaded", "what=auth_tokens", "tokens=1"}, 1));
  EXPECT_EQ(server->LogCount({"level=warn",
                              "event=auth_tokens_comment_reads_as_token",
                              "lines=1 "}),
            1u)
      << server->LogText();
  EXPECT_EQ(server->Stop(), 0);
  EXPECT_THAT(server->LogText(), Not(HasSubstr(kUnknownToken)));
  EXPECT_THAT(server->LogText(), Not(HasSubstr(kReaderToken)));
}

TEST(ServerCredentialsReloadTest, RefreshZeroKeepsTheStartUpTokens) {
  TempDir dir;
  SecretVolume secret(dir.path() + "/tokens");
  secret.Write({{"tokens", absl::StrCat(kAdminToken, " admin\n")}});
  // Both servers read a config that asks for a 100 ms refresh; the first
  // one's flag turns it off. Were the flag ignored, it would reload as
  // the second one does.
  const std::string config = dir.path() + "/groove.textproto";
  std::ofstream(config) << "credentials_refresh { nanos: 100000000 }\n";
  std::vector<std::string> args = {"--config=" + config,
                                   "--auth-tokens=" + secret.path("tokens")};
  std::vector<std::string> fixed_args = args;
  fixed_args.push_back("--data-dir=" + dir.path() + "/fixed");
  fixed_args.push_back("--pool=name=a,backing=normal,volume_size=4KiB");
  fixed_args.push_back("--credentials-refresh=0s");
  args.push_back("--data-dir=" + dir.path() + "/reloading");
  args.push_back("--pool=name=a,backing=normal,volume_size=4KiB");
  auto fixed = ServerProcess::Start(fixed_args);
  ASSERT_NE(fixed, nullptr);
  auto reloading = ServerProcess::Start(args);
  ASSERT_NE(reloading, nullptr);
  EXPECT_EQ(fixed->LogCount({"event=listening", "credentials_refresh=off"}),
            1u);
  EXPECT_EQ(
      reloading->LogCount({"event=listening", "credentials_refresh=100ms"}),
      1u);

  // Two rotations, each picked up by the reloading server: the fixed one
  // had as long to see them, and did not.
  secret.Write({{"tokens", absl::StrCat(kReaderToken, " reader\n")}});
  EXPECT_TRUE(PollUntil(
      [&] { return ListPoolsWith(reloading->channel(), kReaderToken).ok(); }));
  secret.Write({{"tokens", absl::StrCat(kUnknownToken, " admin\n")}});
  EXPECT_TRUE(PollUntil(
      [&] { return ListPoolsWith(reloading->channel(), kUnknownToken).ok(); }));
  EXPECT_TRUE(ListPoolsWith(fixed->channel(), kAdminToken).ok());
  for (const char* token : {kReaderToken, kUnknownToken}) {
    EXPECT_EQ(ListPoolsWith(fixed->channel(), token).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(fixed->LogCount({"event=credentials_reload"}), 0u);
  EXPECT_EQ(ReloadCount(*fixed, "auth_tokens", "ok"), "0");
  EXPECT_EQ(ReloadCount(*reloading, "auth_tokens", "ok"), "2");
  EXPECT_EQ(fixed->Stop(), 0);
  EXPECT_EQ(reloading->Stop(), 0);
}

TEST(ServerCredentialsReloadTest, StopDoesNotWaitForTheRefreshInterval) {
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteTextFile(tokens, absl::StrCat(kAdminToken, " admin\n"));
  auto server = StartTlsServer(
      dir, {"--auth-tokens=" + tokens, "--credentials-refresh=24h"});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "credentials_refresh=24h"}),
            1u);
  // The reloader waits on a notification, not a 24-hour sleep.
  const absl::Time start = absl::Now();
  EXPECT_EQ(server->Stop(absl::Seconds(20)), 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

// SIGHUP reads the credential files at once, whatever the interval (24 h
// here), and stops nothing: the server serves on and stops cleanly on the
// next SIGTERM. (Its default action killed the server.)
TEST(ServerCredentialsReloadTest, SighupReadsTheTokenFileAtOnce) {
  TempDir dir;
  SecretVolume secret(dir.path() + "/tokens");
  secret.Write({{"tokens", absl::StrCat(kAdminToken, " admin\n")}});
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--auth-tokens=" + secret.path("tokens"));
  args.push_back("--credentials-refresh=24h");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(ListPoolsWith(server->channel(), kAdminToken).ok());

  secret.Write({{"tokens", absl::StrCat(kReaderToken, " reader\n")}});
  server->Signal(SIGHUP);
  ASSERT_TRUE(
      server->WaitForLogCount({"event=signal", "signal=SIGHUP", "phase=serving",
                               "action=reload_credentials"},
                              1));
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=credentials_reloaded", "what=auth_tokens", "reader=1"}, 1));
  EXPECT_TRUE(ListPoolsWith(server->channel(), kReaderToken).ok());
  EXPECT_EQ(ListPoolsWith(server->channel(), kAdminToken).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "ok"), "1");

  // A second SIGHUP with the file unchanged reads it and changes nothing.
  server->Signal(SIGHUP);
  ASSERT_TRUE(server->WaitForLogCount({"event=signal", "signal=SIGHUP"}, 2));
  EXPECT_TRUE(ListPoolsWith(server->channel(), kReaderToken).ok());
  EXPECT_EQ(server->LogCount({"event=draining"}), 0u);
  EXPECT_EQ(server->Stop(), 0);
  EXPECT_EQ(server->LogCount({"event=credentials_reloaded"}), 1u);
  EXPECT_EQ(server->LogCount({"event=signal", "signal=SIGTERM"}), 1u);
}

// A SIGHUP to a server with nothing to read again (no TLS and no tokens,
// or --credentials-refresh=0s) is logged as doing nothing, and the server
// serves on.
TEST(ServerCredentialsReloadTest, SighupWithNothingToReloadChangesNothing) {
  TempDir dir;
  const std::string tokens = dir.path() + "/tokens";
  WriteTextFile(tokens, absl::StrCat(kAdminToken, " admin\n"));
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{},
        std::vector<std::string>{"--auth-tokens=" + tokens,
                                 "--credentials-refresh=0s"}}) {
    SCOPED_TRACE(absl::StrJoin(extra, " "));
    TempDir data;
    std::vector<std::string> args = OnePool(data);
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = ServerProcess::Start(args);
    ASSERT_NE(server, nullptr);
    server->Signal(SIGHUP);
    ASSERT_TRUE(server->WaitForLogCount(
        {"event=signal", "signal=SIGHUP", "phase=serving", "action=none"}, 1));
    EXPECT_TRUE(
        ListPoolsWith(server->channel(), extra.empty() ? "" : kAdminToken)
            .ok());
    EXPECT_EQ(server->LogCount({"event=credentials_reload"}), 0u);
    EXPECT_EQ(server->Stop(), 0);
  }
}

// TlsSecret returns the (name, text) pairs of a kubernetes.io/tls Secret
// holding `pki`/`cert`.pem and `pki`/`key`.key.
std::vector<std::pair<std::string, std::string>> TlsSecret(
    const std::string& pki, const std::string& cert, const std::string& key) {
  return {{"tls.crt", ReadTextFile(pki + "/" + cert + ".pem")},
          {"tls.key", ReadTextFile(pki + "/" + key + ".key")}};
}

// MakePki makes the test PKI (test_pki.h) in DIR/pki and returns that
// path, or "" with a test failure.
std::string MakePki(const TempDir& dir) {
  const std::string pki = dir.path() + "/pki";
  std::filesystem::create_directory(pki);
  const absl::Status made = MakeTestPki(pki);
  EXPECT_TRUE(made.ok()) << made;
  return made.ok() ? pki : "";
}

// StartReloadingTls starts a server of one pool in `dir` with the TLS
// flags `tls_args`, reading its credentials again every 100 ms; its own
// client trusts `pki`/ca.pem (and presents `pki`/`client`.pem when
// `client` is not empty).
std::unique_ptr<ServerProcess> StartReloadingTls(
    const TempDir& dir, const std::string& pki,
    const std::vector<std::string>& tls_args, const std::string& client = "") {
  std::vector<std::string> args = OnePool(dir);
  args.insert(args.end(), tls_args.begin(), tls_args.end());
  args.push_back("--credentials-refresh=100ms");
  return ServerProcess::Start(args, absl::Seconds(30),
                              TlsClient(pki, "ca.pem", client),
                              TlsChannelArgs());
}

// StartOnTlsSecret writes `pki`'s server certificate and key into
// `secret` (tls.crt, tls.key) and starts a server of one pool in `dir`
// that reads its TLS files from there every 100 ms (StartReloadingTls).
std::unique_ptr<ServerProcess> StartOnTlsSecret(const TempDir& dir,
                                                const std::string& pki,
                                                SecretVolume& secret) {
  secret.Write(TlsSecret(pki, "server", "server"));
  return StartReloadingTls(dir, pki,
                           {"--tls-cert=" + secret.path("tls.crt"),
                            "--tls-key=" + secret.path("tls.key")});
}

TEST(ServerCredentialsReloadTest, ARotatedCertificateServesNewConnections) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  SecretVolume secret(dir.path() + "/tls");
  auto server = StartOnTlsSecret(dir, pki, secret);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(ListPoolsWith(FreshTlsChannel(*server, pki, "ca.pem")).ok());
  EXPECT_EQ(
      ListPoolsWith(FreshTlsChannel(*server, pki, "other_ca.pem")).error_code(),
      grpc::StatusCode::UNAVAILABLE);

  // Rotated to a certificate of the other CA (gRPC reads the files every
  // second): new connections get it, so a client trusting only the first
  // CA can no longer connect.
  secret.Write(TlsSecret(pki, "other_server", "other_server"));
  EXPECT_TRUE(PollUntil([&] {
    return ListPoolsWith(FreshTlsChannel(*server, pki, "other_ca.pem")).ok();
  }));
  EXPECT_EQ(ListPoolsWith(FreshTlsChannel(*server, pki, "ca.pem")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=tls"}, 1));
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "1");
  EXPECT_EQ(ReloadCount(*server, "tls", "failed"), "0");
  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerCredentialsReloadTest, ARotatedClientCaDecidesWhichClientsConnect) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  SecretVolume secret(dir.path() + "/ca");
  secret.Write({{"ca.crt", ReadTextFile(pki + "/ca.pem")}});
  auto server = StartReloadingTls(
      dir, pki,
      {"--tls-cert=" + pki + "/server.pem", "--tls-key=" + pki + "/server.key",
       "--tls-client-ca=" + secret.path("ca.crt")},
      "client");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=listening", "tls=mutual"}), 1u);
  const auto with_client = [&](const std::string& client) {
    return ListPoolsWith(FreshTlsChannel(*server, pki, "ca.pem", client));
  };
  EXPECT_TRUE(with_client("client").ok());
  EXPECT_EQ(with_client("other_client").error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(with_client("").error_code(), grpc::StatusCode::UNAVAILABLE);

  secret.Write({{"ca.crt", ReadTextFile(pki + "/other_ca.pem")}});
  EXPECT_TRUE(PollUntil([&] { return with_client("other_client").ok(); }));
  EXPECT_EQ(with_client("client").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(with_client("").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=tls"}, 1));
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "1");
  EXPECT_EQ(server->Stop(), 0);
}

// ServedTlsFile returns what the server process `pid` serves as its TLS
// file `name` ("key", "cert"): the content of its memfd
// "groove-tls-NAME" (ServedTlsFiles), which gRPC reads; "" if none.
std::string ServedTlsFile(pid_t pid, const std::string& name) {
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  const std::string want =
      absl::StrCat("/memfd:groove-tls-", name, " (deleted)");
  for (const auto& fd : std::filesystem::directory_iterator(fds)) {
    std::error_code ec;
    if (std::filesystem::read_symlink(fd.path(), ec).string() == want) {
      return ReadTextFile(fd.path().string());
    }
  }
  return "";
}

// Bad TLS files never reach gRPC: the server checks each change as it
// checks the files at start-up and copies only files that pass to what
// gRPC reads (ServedTlsFiles), so gRPC keeps serving the last good ones.
// (Given the configured files, gRPC 1.51's FileWatcherCertificateProvider
// takes a certificate and key that do not match and then refuses every new
// handshake, logging "Update handshaker factory failed", until the files
// are fixed.) Each failure is logged and counted.
TEST(ServerCredentialsReloadTest, BadTlsFilesAreNeverServed) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  SecretVolume secret(dir.path() + "/tls");
  auto server = StartOnTlsSecret(dir, pki, secret);
  ASSERT_NE(server, nullptr);
  const auto trusting = [&](const std::string& ca) {
    return ListPoolsWith(FreshTlsChannel(*server, pki, ca));
  };
  const std::string key = ReadTextFile(pki + "/server.key");
  const std::string cert = ReadTextFile(pki + "/server.pem");
  ASSERT_EQ(ServedTlsFile(server->pid(), "key"), key);
  ASSERT_EQ(ServedTlsFile(server->pid(), "cert"), cert);

  // The key is missing: kept.
  secret.Write({{"tls.crt", ReadTextFile(pki + "/server.pem")}});
  EXPECT_TRUE(server->WaitForLogCount(
      {"level=error", "event=credentials_reload_failed", "what=tls",
       "tls.key: cannot read: No such file or directory",
       "kept=\"the certificates in use\""},
      1));
  EXPECT_EQ(ServedTlsFile(server->pid(), "key"), key);
  EXPECT_TRUE(trusting("ca.pem").ok());
  EXPECT_EQ(ReloadFailing(*server, "tls"), "1");

  // A certificate and a key that do not match: kept.
  secret.Write(TlsSecret(pki, "other_server", "server"));
  EXPECT_TRUE(server->WaitForLogCount(
      {"event=credentials_reload_failed", "what=tls",
       "is not the key of the certificate in --tls-cert"},
      1));
  EXPECT_EQ(ServedTlsFile(server->pid(), "key"), key);
  EXPECT_EQ(ServedTlsFile(server->pid(), "cert"), cert);
  EXPECT_TRUE(trusting("ca.pem").ok());

  // Fixed: served from gRPC's next read.
  secret.Write(TlsSecret(pki, "other_server", "other_server"));
  EXPECT_TRUE(PollUntil([&] { return trusting("other_ca.pem").ok(); }));
  EXPECT_EQ(ServedTlsFile(server->pid(), "cert"),
            ReadTextFile(pki + "/other_server.pem"));
  EXPECT_EQ(trusting("ca.pem").error_code(), grpc::StatusCode::UNAVAILABLE);
  // Counted before it is logged.
  EXPECT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=tls"}, 1));
  EXPECT_EQ(ReloadCount(*server, "tls", "failed"), "2");
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "1");
  EXPECT_EQ(ReloadFailing(*server, "tls"), "0");
  // gRPC never read a missing or mismatched file.
  EXPECT_EQ(server->LogCount({"Update handshaker factory failed"}), 0u);
  EXPECT_EQ(server->LogCount({"All retry attempts failed"}), 0u);
  EXPECT_EQ(server->Stop(), 0);
}

// Replace puts a new file at `path` the way an atomic writer does: made
// beside it with `text` and `mode`, then renamed over it.
void Replace(const std::string& path, const std::string& text, mode_t mode) {
  WriteTextFile(path + ".new", text, mode);
  std::filesystem::rename(path + ".new", path);
}

// ReplaceWithFifo renames a FIFO, which nobody writes to, over `path`.
void ReplaceWithFifo(const std::string& path) {
  ASSERT_EQ(mkfifo((path + ".fifo").c_str(), 0600), 0) << strerror(errno);
  std::filesystem::rename(path + ".fifo", path);
}

// A credential file replaced by something other than a regular file (a
// FIFO, whose open waits for a writer that never comes; a device such as
// /dev/zero, whose read never ends), or by a token file others may read,
// is refused like one that does not parse: logged and counted, with the
// credentials in use kept, and the next good file is taken. (The reloader
// used to open a FIFO and wait in the open for good: no later rotation was
// read, and SIGTERM could no longer stop the server, whose shutdown joins
// the reloader's thread.)
TEST(ServerCredentialsReloadTest,
     AFifoOrATokenFileOthersMayReadIsRefusedAndTheNextGoodFileTaken) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  const std::string tokens = WriteTextFile(
      dir.path() + "/tokens", absl::StrCat(kAdminToken, " admin\n"));
  const std::string cert = WriteTextFile(dir.path() + "/cert.pem",
                                         ReadTextFile(pki + "/server.pem"));
  auto server = StartReloadingTls(
      dir, pki,
      {"--tls-cert=" + cert, "--tls-key=" + pki + "/server.key",
       "--auth-tokens=" + tokens});
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(ListPoolsWith(server->channel(), kAdminToken).ok());

  ReplaceWithFifo(tokens);
  ReplaceWithFifo(cert);
  EXPECT_TRUE(server->WaitForLogCount(
      {"level=error", "event=credentials_reload_failed", "what=auth_tokens",
       "--auth-tokens=" + tokens + ": cannot read: it is not a regular file",
       "kept=\"the tokens in use\""},
      1));
  EXPECT_TRUE(server->WaitForLogCount(
      {"level=error", "event=credentials_reload_failed", "what=tls",
       "--tls-cert (tls.cert_file) " + cert +
           ": cannot read: it is not a regular file",
       "kept=\"the certificates in use\""},
      1));
  EXPECT_TRUE(ListPoolsWith(server->channel(), kAdminToken).ok());
  EXPECT_TRUE(
      ListPoolsWith(FreshTlsChannel(*server, pki, "ca.pem"), kAdminToken).ok());

  // A token file that others may read: refused (its tokens are as good as
  // leaked), the tokens in use kept. Owner-only again, it is taken.
  Replace(tokens, absl::StrCat(kReaderToken, " reader\n"), 0644);
  EXPECT_TRUE(server->WaitForLogCount(
      {"event=credentials_reload_failed", "what=auth_tokens",
       "--auth-tokens=" + tokens + ": is accessible to others (mode 0644); " +
           "chmod 600 " + tokens},
      1));
  EXPECT_EQ(ListPoolsWith(server->channel(), kReaderToken).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ListPoolsWith(server->channel(), kAdminToken).ok());
  ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
  EXPECT_TRUE(PollUntil(
      [&] { return ListPoolsWith(server->channel(), kReaderToken).ok(); }));
  EXPECT_EQ(ListPoolsWith(server->channel(), kAdminToken).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // The certificate is back: taken too.
  Replace(cert, ReadTextFile(pki + "/server.pem"), 0644);
  EXPECT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=tls"}, 1));
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "failed"), "2");
  EXPECT_EQ(ReloadCount(*server, "auth_tokens", "ok"), "1");
  EXPECT_EQ(ReloadCount(*server, "tls", "failed"), "1");
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "1");
  // Nothing is stuck: SIGTERM stops the server at once.
  EXPECT_EQ(server->Stop(absl::Seconds(20)), 0);
}

// A rotated TLS key that others may read is refused like any bad TLS
// file: logged, counted, and the certificates in use kept; made
// owner-only, the same files are taken.
TEST(ServerCredentialsReloadTest, ARotatedKeyOthersMayReadIsRefused) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  SecretVolume secret(dir.path() + "/tls");
  auto server = StartOnTlsSecret(dir, pki, secret);
  ASSERT_NE(server, nullptr);
  const std::string key = ReadTextFile(pki + "/server.key");
  ASSERT_EQ(ServedTlsFile(server->pid(), "key"), key);

  // The next version's files are 0644.
  secret.Write(TlsSecret(pki, "other_server", "other_server"), 0644);
  const std::string key_file = secret.path("tls.key");
  EXPECT_TRUE(server->WaitForLogCount(
      {"level=error", "event=credentials_reload_failed", "what=tls",
       "--tls-key (tls.key_file) " + key_file +
           ": is accessible to others (mode 0644); chmod 600 " + key_file,
       "kept=\"the certificates in use\""},
      1));
  EXPECT_EQ(ReloadCount(*server, "tls", "failed"), "1");
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "0");
  EXPECT_EQ(ReloadFailing(*server, "tls"), "1");
  EXPECT_EQ(ServedTlsFile(server->pid(), "key"), key);
  EXPECT_TRUE(ListPoolsWith(FreshTlsChannel(*server, pki, "ca.pem")).ok());

  // Owner-only: taken.
  ASSERT_EQ(chmod(key_file.c_str(), 0600), 0) << strerror(errno);
  EXPECT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=tls"}, 1));
  EXPECT_EQ(ServedTlsFile(server->pid(), "key"),
            ReadTextFile(pki + "/other_server.key"));
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "1");
  EXPECT_EQ(ReloadFailing(*server, "tls"), "0");
  EXPECT_TRUE(PollUntil([&] {
    return ListPoolsWith(FreshTlsChannel(*server, pki, "other_ca.pem")).ok();
  }));
  EXPECT_EQ(server->Stop(), 0);
}

// ---- Certificate validity
// -----------------------------------------------------

// An expired or not yet valid certificate does not stop the server or a
// reload (clients decide; docs/SERVER.md §10, "Certificate validity"): it
// is logged at error, one soon to expire at warn, once per load, and the
// dates of the certificate in use are exported. The dates the tests expect
// are those `openssl x509` reads from the files.

using Fields = std::vector<std::pair<std::string, std::string>>;

// CertificateTime formats a certificate date as the server's lines do:
// RFC 3339, UTC, whole seconds.
std::string CertificateTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", time, absl::UTCTimeZone());
}

// CertificateFields returns the fields, after `time`, of the line the
// server logs at `level` as `event` for the first certificate of the PEM
// file `pem` of subject `subject`, configured as `file` of `what`, ending
// with `last` (reason, or days_left; none for tls_certificate_valid).
Fields CertificateFields(const std::string& level, const std::string& event,
                         const std::string& what, const std::string& file,
                         const std::string& pem, const std::string& subject) {
  return {{"level", level},
          {"event", event},
          {"what", what},
          {"file", file},
          {"subject", subject},
          {"not_before", CertificateTime(CertificateDate(pem, "startdate"))},
          {"not_after", CertificateTime(CertificateDate(pem, "enddate"))}};
}
Fields CertificateFields(const std::string& level, const std::string& event,
                         const std::string& what, const std::string& file,
                         const std::string& pem, const std::string& subject,
                         const std::pair<std::string, std::string>& last) {
  Fields fields = CertificateFields(level, event, what, file, pem, subject);
  fields.push_back(last);
  return fields;
}

// EventLines returns the fields, after `time`, of every line of `event`
// in the server's log so far.
std::vector<Fields> EventLines(ServerProcess& server,
                               const std::string& event) {
  std::vector<Fields> lines;
  for (const std::string& line : server.LogLines()) {
    std::optional<Fields> fields = LogfmtFields(line);
    if (!fields.has_value() || (*fields)[2].second != event) continue;
    fields->erase(fields->begin());  // time
    lines.push_back(*std::move(fields));
  }
  return lines;
}

// TlsDates is what /metrics says of the certificate dates of `what`:
// each series' subject, and the dates of `subject` (-1 when absent).
struct TlsDates {
  std::vector<std::string> subjects;  // of not_after's series
  int64_t not_before = -1;
  int64_t not_after = -1;
};

TlsDates ScrapeTlsDates(const ServerProcess& server, const std::string& what,
                        const std::string& subject) {
  TlsDates dates;
  absl::StatusOr<std::string> scrape =
      HttpGet(server.metrics_address(), "/metrics");
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  if (!scrape.ok()) return dates;
  // Labels are exposed sorted by name: subject, then what.
  const std::string of_what = absl::StrCat("\",what=\"", what, "\"}");
  for (absl::string_view line : absl::StrSplit(*scrape, '\n')) {
    if (absl::ConsumePrefix(
            &line, "groove_tls_certificate_not_after_seconds{subject=\"") &&
        absl::StrContains(line, of_what)) {
      dates.subjects.emplace_back(line.substr(0, line.find('"')));
    }
  }
  const std::string labels = absl::StrCat("{subject=\"", subject, of_what);
  for (auto [bound, value] : {std::pair{"before", &dates.not_before},
                              std::pair{"after", &dates.not_after}}) {
    double seconds = 0;
    if (absl::SimpleAtod(
            MetricValue(*scrape, absl::StrCat("groove_tls_certificate_not_",
                                              bound, "_seconds", labels)),
            &seconds)) {
      *value = static_cast<int64_t>(seconds);
    }
  }
  return dates;
}

// UnixSeconds returns the date `which` ("startdate", "enddate") of `pem`
// as openssl reads it, in UNIX seconds.
int64_t UnixSeconds(const std::string& pem, const std::string& which) {
  return absl::ToUnixSeconds(CertificateDate(pem, which));
}

// ExpectTlsDates checks that the server's /metrics has one series of the
// certificate dates of `what`, that of `subject`, holding the dates
// `openssl x509` reads from `pem`.
void ExpectTlsDates(const ServerProcess& server, const std::string& what,
                    const std::string& subject, const std::string& pem) {
  const TlsDates dates = ScrapeTlsDates(server, what, subject);
  EXPECT_THAT(dates.subjects, ::testing::ElementsAre(subject)) << what;
  EXPECT_EQ(dates.not_after, UnixSeconds(pem, "enddate")) << what;
  EXPECT_EQ(dates.not_before, UnixSeconds(pem, "startdate")) << what;
}

constexpr char kCaExtensions[] =
    "basicConstraints=critical,CA:TRUE\n"
    "keyUsage=critical,keyCertSign,cRLSign";

TEST(ServerTlsValidityTest,
     AnExpiredOrNotYetValidCertificateIsServedAndLogged) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  const absl::Time now = absl::Now();
  struct Case {
    std::string name;
    absl::Time not_before;
    absl::Time not_after;
  };
  for (const Case& c :
       {Case{"expired", now - absl::Hours(30 * 24), now - absl::Hours(24)},
        Case{"not_yet_valid", now + absl::Hours(24),
             now + absl::Hours(30 * 24)}}) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(MakeDatedCertificate(pki, c.name, "ca", "groove-" + c.name,
                                     c.not_before, c.not_after)
                    .ok());
    const std::string pem = pki + "/" + c.name + ".pem";
    const std::string subject = "CN=groove-" + c.name;
    TempDir data;
    std::vector<std::string> args = OnePool(data);
    args.push_back("--tls-cert=" + pem);
    args.push_back("--tls-key=" + pki + "/" + c.name + ".key");
    // It serves: Start's health checks come from a client that does not
    // check dates.
    auto server = ServerProcess::Start(args, absl::Seconds(30),
                                       DateBlindTlsClient(pki, "ca.pem"),
                                       TlsChannelArgs());
    ASSERT_NE(server, nullptr);
    EXPECT_TRUE(ListPoolsWith(server->channel()).ok());
    // A client that checks refuses the certificate.
    EXPECT_EQ(
        ListPoolsWith(FreshTlsChannel(*server, pki, "ca.pem")).error_code(),
        grpc::StatusCode::UNAVAILABLE);
    // Logged once (before `listening`, which Start waited for).
    EXPECT_THAT(EventLines(*server, "tls_certificate_invalid"),
                ::testing::ElementsAre(CertificateFields(
                    "error", "tls_certificate_invalid", "cert", pem, pem,
                    subject, {"reason", c.name})));
    EXPECT_THAT(EventLines(*server, "tls_certificate_expiring"),
                ::testing::IsEmpty());
    ExpectTlsDates(*server, "cert", subject, pem);
    EXPECT_EQ(server->Stop(), 0);
  }
}

// Within 14 days of its end a certificate is a warning, with the whole
// days left; further away, nothing is logged, but its dates are exported.
TEST(ServerTlsValidityTest,
     ACertificateNearItsEndIsAWarningAndOneFarFromItNot) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  const absl::Time now = absl::Now();
  ASSERT_TRUE(MakeDatedCertificate(pki, "fortnight", "ca", "groove-fortnight",
                                   now - absl::Hours(1),
                                   now + absl::Hours(13 * 24 + 12))
                  .ok());
  ASSERT_TRUE(MakeDatedCertificate(pki, "month", "ca", "groove-month",
                                   now - absl::Hours(1),
                                   now + absl::Hours(30 * 24))
                  .ok());
  struct Case {
    std::string name;       // NAME.pem, NAME.key
    std::string subject;    // its subject
    std::string days_left;  // "" when no line is due
  };
  // server.pem (MakeTestPki) is valid for one day: 0 whole days left.
  for (const Case& c : {Case{"server", "CN=localhost", "0"},
                        Case{"fortnight", "CN=groove-fortnight", "13"},
                        Case{"month", "CN=groove-month", ""}}) {
    SCOPED_TRACE(c.name);
    const std::string pem = pki + "/" + c.name + ".pem";
    TempDir data;
    std::vector<std::string> args = OnePool(data);
    args.push_back("--tls-cert=" + pem);
    args.push_back("--tls-key=" + pki + "/" + c.name + ".key");
    auto server = ServerProcess::Start(
        args, absl::Seconds(30), TlsClient(pki, "ca.pem"), TlsChannelArgs());
    ASSERT_NE(server, nullptr);
    std::vector<Fields> expected;
    if (!c.days_left.empty()) {
      expected.push_back(CertificateFields("warn", "tls_certificate_expiring",
                                           "cert", pem, pem, c.subject,
                                           {"days_left", c.days_left}));
    }
    EXPECT_EQ(EventLines(*server, "tls_certificate_expiring"), expected);
    EXPECT_THAT(EventLines(*server, "tls_certificate_invalid"),
                ::testing::IsEmpty());
    ExpectTlsDates(*server, "cert", c.subject, pem);
    EXPECT_EQ(server->Stop(), 0);
  }
}

// Every certificate of the --tls-client-ca bundle is judged; the metrics
// show the one that expires first (one series, however large the bundle).
TEST(ServerTlsValidityTest, EveryClientCaIsJudgedAndTheFirstToExpireExported) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  const absl::Time now = absl::Now();
  ASSERT_TRUE(MakeDatedCertificate(pki, "old_ca", "ca", "groove-old-ca",
                                   now - absl::Hours(60 * 24),
                                   now - absl::Hours(2 * 24), kCaExtensions)
                  .ok());
  ASSERT_TRUE(MakeDatedCertificate(pki, "long_ca", "ca", "groove-long-ca",
                                   now - absl::Hours(1),
                                   now + absl::Hours(365 * 24), kCaExtensions)
                  .ok());
  // The test CA (one day left), the expired one, the long one.
  const std::string bundle =
      WriteTextFile(dir.path() + "/client_cas.pem",
                    absl::StrCat(ReadTextFile(pki + "/ca.pem"),
                                 ReadTextFile(pki + "/old_ca.pem"),
                                 ReadTextFile(pki + "/long_ca.pem")));
  const std::string cert = pki + "/server.pem";
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--tls-cert=" + cert);
  args.push_back("--tls-key=" + pki + "/server.key");
  args.push_back("--tls-client-ca=" + bundle);
  auto server = ServerProcess::Start(args, absl::Seconds(30),
                                     TlsClient(pki, "ca.pem", "client"),
                                     TlsChannelArgs());
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(ListPoolsWith(server->channel()).ok());
  EXPECT_THAT(
      EventLines(*server, "tls_certificate_invalid"),
      ::testing::ElementsAre(CertificateFields(
          "error", "tls_certificate_invalid", "client_ca", bundle,
          pki + "/old_ca.pem", "CN=groove-old-ca", {"reason", "expired"})));
  EXPECT_THAT(
      EventLines(*server, "tls_certificate_expiring"),
      ::testing::ElementsAre(
          CertificateFields("warn", "tls_certificate_expiring", "cert", cert,
                            cert, "CN=localhost", {"days_left", "0"}),
          CertificateFields("warn", "tls_certificate_expiring", "client_ca",
                            bundle, pki + "/ca.pem", "CN=groove-test-ca",
                            {"days_left", "0"})));
  ExpectTlsDates(*server, "client_ca", "CN=groove-old-ca", pki + "/old_ca.pem");
  ExpectTlsDates(*server, "cert", "CN=localhost", cert);
  EXPECT_EQ(server->Stop(), 0);
}

// A rotation to an expired certificate is served (the rotation is not
// refused), logged once however many intervals the files stay, and its
// dates replace the old certificate's: the old subject's series goes.
TEST(ServerTlsValidityTest, ARotationToAnExpiredCertificateIsLoggedOnce) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  const absl::Time now = absl::Now();
  ASSERT_TRUE(MakeDatedCertificate(pki, "expired", "ca", "groove-expired",
                                   now - absl::Hours(30 * 24),
                                   now - absl::Hours(24))
                  .ok());
  SecretVolume secret(dir.path() + "/tls");
  auto server = StartOnTlsSecret(dir, pki, secret);
  const std::string file = secret.path("tls.crt");
  ASSERT_NE(server, nullptr);
  ExpectTlsDates(*server, "cert", "CN=localhost", pki + "/server.pem");

  secret.Write(TlsSecret(pki, "expired", "expired"));
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=tls_certificate_invalid", "reason=expired"}, 1));
  EXPECT_THAT(
      EventLines(*server, "tls_certificate_invalid"),
      ::testing::ElementsAre(CertificateFields(
          "error", "tls_certificate_invalid", "cert", file,
          pki + "/expired.pem", "CN=groove-expired", {"reason", "expired"})));
  // Installed, not refused.
  EXPECT_EQ(ReloadCount(*server, "tls", "ok"), "1");
  EXPECT_EQ(ReloadFailing(*server, "tls"), "0");
  EXPECT_EQ(ServedTlsFile(server->pid(), "cert"),
            ReadTextFile(pki + "/expired.pem"));
  ExpectTlsDates(*server, "cert", "CN=groove-expired", pki + "/expired.pem");

  // The next rotation, to a good certificate, comes many 100 ms intervals
  // later: the expired one was logged once all the same.
  secret.Write(TlsSecret(pki, "other_server", "other_server"));
  ASSERT_TRUE(
      server->WaitForLogCount({"event=credentials_reloaded", "what=tls"}, 2));
  EXPECT_EQ(server->LogCount({"event=tls_certificate_invalid"}), 1u);
  ExpectTlsDates(*server, "cert", "CN=localhost", pki + "/other_server.pem");
  EXPECT_EQ(server->Stop(), 0);
}

// Files that stay the same are judged again against the clock every
// round of the reloader: a certificate that becomes valid, comes within
// 14 days of its end, loses a day of the 14, or expires while it is
// served is logged then, once, not only when its file is loaded. One
// server, its client CA bundle holding one CA for each of the four (and
// the test CA its client's certificate needs), all crossing at the same
// whole second, 12 s after the PKI is made: time for openssl and a
// start-up under the sanitizers, so that the start-up sees each before
// its crossing (checked). Until the nineteenth session only a load logged
// (helper-57's note): nothing was said when a served certificate expired.
TEST(ServerTlsValidityTest, ServedCertificatesAreJudgedAgainAsTimePasses) {
  TempDir dir;
  const std::string pki = MakePki(dir);
  ASSERT_NE(pki, "");
  const absl::Time now = absl::Now();
  // Whole seconds, as certificates keep their dates.
  const absl::Time crossing =
      absl::FromUnixSeconds(absl::ToUnixSeconds(now) + 12);
  const absl::Duration day = absl::Hours(24);
  struct Line {
    std::string level;
    std::string event;
    std::optional<std::pair<std::string, std::string>> last;
  };
  struct Case {
    std::string name;
    absl::Time not_before;
    absl::Time not_after;
    std::optional<Line> at_start_up;
    Line at_crossing;
  };
  const std::vector<Case> cases = {
      {"becomes_valid", crossing, crossing + 30 * day,
       Line{"error", "tls_certificate_invalid",
            std::pair{"reason", "not_yet_valid"}},
       Line{"info", "tls_certificate_valid", std::nullopt}},
      {"comes_near_its_end", now - absl::Hours(1), crossing + 14 * day,
       std::nullopt,
       Line{"warn", "tls_certificate_expiring", std::pair{"days_left", "13"}}},
      {"loses_a_day", now - absl::Hours(1), crossing + day,
       Line{"warn", "tls_certificate_expiring", std::pair{"days_left", "1"}},
       Line{"warn", "tls_certificate_expiring", std::pair{"days_left", "0"}}},
      {"expires", now - absl::Hours(1), crossing,
       Line{"warn", "tls_certificate_expiring", std::pair{"days_left", "0"}},
       Line{"error", "tls_certificate_invalid",
            std::pair{"reason", "expired"}}},
  };
  std::string bundle_text = ReadTextFile(pki + "/ca.pem");
  for (const Case& c : cases) {
    ASSERT_TRUE(MakeDatedCertificate(pki, c.name, "ca", "groove-" + c.name,
                                     c.not_before, c.not_after, kCaExtensions)
                    .ok());
    bundle_text += ReadTextFile(pki + "/" + c.name + ".pem");
  }
  const std::string bundle =
      WriteTextFile(dir.path() + "/client_cas.pem", bundle_text);
  const std::string cert = pki + "/server.pem";
  auto server = StartReloadingTls(
      dir, pki,
      {"--tls-cert=" + cert, "--tls-key=" + pki + "/server.key",
       "--tls-client-ca=" + bundle},
      "client");
  ASSERT_NE(server, nullptr);
  ASSERT_LT(absl::Now(), crossing)
      << "the set-up took longer than the 12 s before the crossing";

  // What each event's lines should be: the start-up's (the server's
  // certificate and the test CA have a day of life: 0 days left, all
  // along), then the crossing's, in the bundle's order.
  std::map<std::string, std::vector<Fields>> expected;
  const auto line = [&](const Line& l, const std::string& what,
                        const std::string& file, const std::string& name,
                        const std::string& subject) {
    Fields fields = CertificateFields(l.level, l.event, what, file,
                                      pki + "/" + name + ".pem", subject);
    if (l.last.has_value()) fields.push_back(*l.last);
    expected[l.event].push_back(std::move(fields));
  };
  const Line zero_days_left{"warn", "tls_certificate_expiring",
                            std::pair{"days_left", "0"}};
  line(zero_days_left, "cert", cert, "server", "CN=localhost");
  line(zero_days_left, "client_ca", bundle, "ca", "CN=groove-test-ca");
  for (const Case& c : cases) {
    if (c.at_start_up.has_value()) {
      line(*c.at_start_up, "client_ca", bundle, c.name, "CN=groove-" + c.name);
    }
  }
  for (const auto& [event, lines] : expected) {
    EXPECT_EQ(EventLines(*server, event), lines) << "at start-up: " << event;
  }
  EXPECT_THAT(EventLines(*server, "tls_certificate_valid"),
              ::testing::IsEmpty());
  for (const Case& c : cases) {
    line(c.at_crossing, "client_ca", bundle, c.name, "CN=groove-" + c.name);
  }
  for (const auto& [event, lines] : expected) {
    ASSERT_TRUE(server->WaitForLogCount({"event=" + event}, lines.size(),
                                        absl::Seconds(60)))
        << event << "\n"
        << server->LogText();
  }
  EXPECT_EQ(server->Stop(), 0);
  // Each once: ~120 rounds ran before the crossing, and the ones after it
  // until the stop, with nothing more to say.
  for (const auto& [event, lines] : expected) {
    EXPECT_EQ(EventLines(*server, event), lines) << event;
  }
}

// ---- Resource limits
// ----------------------------------------------------------

TEST(ServerLimitsTest, OversizedRequestIsResourceExhausted) {
  TempDir dir;
  auto server = ServerProcess::Start(OnePool(dir));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  // Under the 64 KiB limit, the handler sees the request (and refuses its
  // info, which is over 480 bytes); over it, gRPC refuses it first.
  const grpc::Status under =
      Add(*stub, AddRequest("a", 1, std::string(60 << 10, 'x')), &added);
  EXPECT_EQ(under.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << under.error_message();
  const grpc::Status over =
      Add(*stub, AddRequest("a", 1, std::string(64 << 10, 'x')), &added);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << over.error_message();
  // The connection survives it.
  EXPECT_TRUE(ListPoolsWith(server->channel()).ok());
  EXPECT_EQ(server->Stop(), 0);
}

// PingingChannel returns a channel to `address` with its own connection
// whose client pings every 100 ms, with or without calls.
std::shared_ptr<grpc::Channel> PingingChannel(const std::string& address) {
  grpc::ChannelArguments pinging;
  pinging.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 100);
  pinging.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  pinging.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  pinging.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  pinging.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   pinging);
}

TEST(ServerLimitsTest, ClientThatPingsTooOftenIsDisconnected) {
  TempDir strict_dir;
  TempDir lenient_dir;
  std::vector<std::string> strict_args = OnePool(strict_dir);
  strict_args.push_back("--keepalive_min_ping_interval=60s");
  std::vector<std::string> lenient_args = OnePool(lenient_dir);
  lenient_args.push_back("--keepalive_min_ping_interval=10ms");
  auto strict = ServerProcess::Start(strict_args);
  ASSERT_NE(strict, nullptr);
  auto lenient = ServerProcess::Start(lenient_args);
  ASSERT_NE(lenient, nullptr);
  auto to_strict = PingingChannel(strict->grpc_address());
  auto to_lenient = PingingChannel(lenient->grpc_address());
  ASSERT_TRUE(ListPoolsWith(to_strict).ok());
  ASSERT_TRUE(ListPoolsWith(to_lenient).ok());
  ASSERT_EQ(to_strict->GetState(false), GRPC_CHANNEL_READY);
  const absl::Time start = absl::Now();
  // The strict server answers the third early ping with GOAWAY
  // (too_many_pings): the channel leaves READY by itself.
  EXPECT_TRUE(to_strict->WaitForStateChange(
      GRPC_CHANNEL_READY, absl::ToChronoTime(start + absl::Seconds(10))))
      << "the server did not close the connection of a client that pings "
         "every 100 ms, with --keepalive_min_ping_interval=60s";
  // The lenient one, pinged as often by the same kind of client since the
  // same moment (and without calls in flight), keeps the connection for
  // that long again, twice what the strict one took: the flag, and
  // permitting pings without calls, are what the server applies. (An
  // absence can only be checked over a window; this one is scaled to the
  // time the strict server needed.)
  const absl::Duration strict_took = absl::Now() - start;
  EXPECT_FALSE(to_lenient->WaitForStateChange(
      GRPC_CHANNEL_READY,
      absl::ToChronoTime(absl::Now() +
                         std::max(absl::Seconds(1), strict_took))))
      << "the server closed the connection of a client that pings every "
         "100 ms, with --keepalive_min_ping_interval=10ms";
  EXPECT_EQ(to_lenient->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_EQ(strict->Stop(), 0);
  EXPECT_EQ(lenient->Stop(), 0);
}

TEST(ServerLimitsTest, IdleConnectionIsClosed) {
  TempDir dir;
  std::vector<std::string> args = OnePool(dir);
  args.push_back("--max_connection_idle=200ms");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  grpc::ChannelArguments own_connection;
  own_connection.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(server->grpc_address(),
                                           grpc::InsecureChannelCredentials(),
                                           own_connection);
  ASSERT_TRUE(ListPoolsWith(channel).ok());
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // GOAWAY after 200 ms without calls: the channel goes IDLE by itself
  // (the client's own idle timeout is 30 minutes).
  EXPECT_TRUE(channel->WaitForStateChange(
      GRPC_CHANNEL_READY, absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_READY);
  // The next call reconnects.
  EXPECT_TRUE(ListPoolsWith(channel).ok());
  EXPECT_EQ(server->Stop(), 0);
}

// RssKib returns VmRSS of process `pid` in KiB (-1 when unreadable).
int64_t RssKib(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      int64_t kib = -1;
      std::vector<absl::string_view> parts =
          absl::StrSplit(rest, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) return kib;
    }
  }
  return -1;
}

// SocketCount returns how many sockets process `pid` has open.
int SocketCount(pid_t pid) {
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  DIR* dir = opendir(fds.c_str());
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    char target[64] = {};
    const std::string path = fds + "/" + entry->d_name;
    if (readlink(path.c_str(), target, sizeof(target) - 1) > 0 &&
        absl::StartsWith(target, "socket:")) {
      ++count;
    }
  }
  closedir(dir);
  return count;
}

// The documented bound (docs/SERVER.md §10) on the server's RSS growth
// for 1,000 idle connections: 64 KiB per connection. Under ThreadSanitizer
// (tsan preset) every byte the server touches also costs shadow memory and
// TSan's own allocator metadata (documented at 5-10x; measured 182 KiB per
// connection), so there the bound is 8x: it still catches per-connection
// growth gone wrong, while the uninstrumented presets hold the real bound.
constexpr int kConnections = 1000;
constexpr int64_t kMaxRssGrowthKib = 64 * kConnections;
// Under a sanitizer (the asan and tsan presets) every allocation carries
// redzones, a quarantine or shadow memory, so the server's RSS says nothing
// about the product's: the bound is checked by the default preset's run.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kRssIsTheProducts = false;
#else
constexpr bool kRssIsTheProducts = true;
#endif

// The server raises its soft limit of open files to the hard one at
// start-up, so a low inherited soft limit (1024 is the usual) does not
// refuse clients the hard limit allows: the `starting` line and
// process_max_fds say the limit in force. (Run in its own process, as
// each test is: lowering this process's soft limit touches no other.)
TEST(ServerLimitsTest, RaisesItsOpenFilesLimitToTheHardLimit) {
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  constexpr rlim_t kLowSoftLimit = 256;
  ASSERT_GT(files.rlim_max, kLowSoftLimit)
      << "the hard RLIMIT_NOFILE is too low to show a raise";
  rlimit low = files;
  low.rlim_cur = kLowSoftLimit;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  TempDir dir;
  auto server = ServerProcess::Start(OnePool(dir));
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &files), 0);  // this process's again
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(
      server->LogCount({"event=starting",
                        absl::StrCat("max_open_files=", files.rlim_max, " ")}),
      1u);
  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(MetricValue(*scrape, "process_max_fds"),
            absl::StrCat(files.rlim_max));
  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerLimitsTest, HoldsAThousandConnectionsWithBoundedMemory) {
  // Each connection is a socket on both sides (this process and the
  // server, which inherits the limit): raise the soft limit.
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  const rlim_t needed = 2 * kConnections + 512;
  ASSERT_GE(files.rlim_max, needed)
      << "the hard RLIMIT_NOFILE (" << files.rlim_max
      << ") is below what 1,000 connections need; raise it (ulimit -Hn)";
  if (files.rlim_cur < needed) {
    files.rlim_cur = needed;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &files), 0);
  }
  TempDir dir;
  auto server = ServerProcess::Start(OnePool(dir));
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(ListPoolsWith(server->channel()).ok());
  const int sockets_before = SocketCount(server->pid());
  const int64_t rss_before = RssKib(server->pid());
  ASSERT_GT(rss_before, 0);

  // 1,000 channels, each with its own connection (a local subchannel
  // pool: otherwise equal channels share one), each doing an RPC.
  grpc::ChannelArguments own_connection;
  own_connection.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kConnections; ++i) {
    channels.push_back(grpc::CreateCustomChannel(
        server->grpc_address(), grpc::InsecureChannelCredentials(),
        own_connection));
    const grpc::Status s = ListPoolsWith(channels.back());
    ASSERT_TRUE(s.ok()) << "connection " << i << ": " << s.error_message();
  }
  const absl::Duration connecting = absl::Now() - start;
  // Every connection is still open on the server's side, and still works.
  const int sockets_after = SocketCount(server->pid());
  EXPECT_GE(sockets_after - sockets_before, kConnections);
  int not_ready = 0;
  for (const auto& channel : channels) {
    not_ready += channel->GetState(false) == GRPC_CHANNEL_READY ? 0 : 1;
    const grpc::Status s = ListPoolsWith(channel);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(not_ready, 0);
  const int64_t rss_after = RssKib(server->pid());
  std::printf(
      "%d connections in %s; server sockets %d -> %d; server VmRSS %lld -> "
      "%lld KiB (+%lld KiB, %lld bytes per connection; bound %lld KiB)\n",
      kConnections, absl::FormatDuration(connecting).c_str(), sockets_before,
      sockets_after, static_cast<long long>(rss_before),
      static_cast<long long>(rss_after),
      static_cast<long long>(rss_after - rss_before),
      static_cast<long long>((rss_after - rss_before) * 1024 / kConnections),
      static_cast<long long>(kMaxRssGrowthKib));
  if (kRssIsTheProducts) {
    EXPECT_LT(rss_after - rss_before, kMaxRssGrowthKib);
  } else {
    std::printf("sanitizer build: the RSS bound is the default preset's\n");
  }
  // A new client is still served.
  EXPECT_TRUE(
      ListPoolsWith(grpc::CreateCustomChannel(
                        server->grpc_address(),
                        grpc::InsecureChannelCredentials(), own_connection))
          .ok());
  channels.clear();
  EXPECT_EQ(server->Stop(), 0);
}

}  // namespace
}  // namespace groove::testing
