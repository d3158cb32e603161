// groovectl_cli_test: groovectl's command line parser (clients/groovectl/
// cli.h) and its size and fill-bar formats (commands.h).

#include <sstream>

#include "absl/strings/str_cat.h"
#include "cli.h"
#include "commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace groove::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusCode CodeOf(const std::vector<std::string>& args) {
  return ParseCommandLine(args).status().code();
}

TEST(GroovectlCliTest, ParsesGlobalFlagsAnywhere) {
  auto inv = ParseCommandLine({"--addr", "h:1", "inspect", "p", "--output=json",
                               "--timeout", "2s", "--volumes", "--verify"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->address, "h:1");
  EXPECT_EQ(inv->output, OutputFormat::kJson);
  EXPECT_EQ(inv->timeout, absl::Seconds(2));
  EXPECT_EQ(inv->command, Command::kInspect);
  EXPECT_EQ(inv->pool, "p");
  EXPECT_TRUE(inv->volumes);
  EXPECT_TRUE(inv->verify);
}

TEST(GroovectlCliTest, ParsesAddAndWatch) {
  auto add = ParseCommandLine(
      {"add", "p", "12", "--first-index=3", "--info", "@f.txt"});
  ASSERT_TRUE(add.ok()) << add.status();
  EXPECT_EQ(add->count, 12u);
  EXPECT_EQ(add->first_index, 3u);
  EXPECT_EQ(add->info, "@f.txt");
  auto watch =
      ParseCommandLine({"watch", "p", "--interval", "250ms", "--count", "4"});
  ASSERT_TRUE(watch.ok()) << watch.status();
  EXPECT_EQ(watch->interval, absl::Milliseconds(250));
  EXPECT_EQ(watch->watch_count, 4u);
  auto defaults = ParseCommandLine({"pools"});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->address, "127.0.0.1:50051");
  EXPECT_EQ(defaults->output, OutputFormat::kTable);
}

// INDEX is a number, 0 included (unlike COUNT); the server judges its
// range.
TEST(GroovectlCliTest, ParsesReclaimWithIndexZero) {
  auto inv = ParseCommandLine({"reclaim", "p", "0"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->command, Command::kReclaim);
  EXPECT_EQ(inv->pool, "p");
  EXPECT_EQ(inv->index, 0u);
  inv = ParseCommandLine({"reclaim", "p", "17"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->index, 17u);
  auto missing = ParseCommandLine({"reclaim", "p"});
  EXPECT_EQ(missing.status().message(),
            "'reclaim' needs POOL INDEX, got 1 argument(s)");
  auto negative = ParseCommandLine({"reclaim", "p", "-1"});
  EXPECT_EQ(negative.status().message(),
            "INDEX must be a non-negative integer, got '-1'");
  EXPECT_EQ(CodeOf({"reclaim", "p", "1x"}), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeOf({"reclaim", "p", "1", "2"}),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Usage(Command::kReclaim), HasSubstr("reclaim POOL INDEX"));
}

TEST(GroovectlCliTest, ParsesSecurityFlags) {
  auto inv = ParseCommandLine(
      {"--tls-ca", "ca.pem", "pools", "--tls-cert=c.pem", "--tls-key", "c.key",
       "--tls-server-name=volumes.internal", "--token-file", "t"});
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->tls_ca, "ca.pem");
  EXPECT_EQ(inv->tls_cert, "c.pem");
  EXPECT_EQ(inv->tls_key, "c.key");
  EXPECT_EQ(inv->tls_server_name, "volumes.internal");
  EXPECT_EQ(inv->token_file, "t");
  EXPECT_EQ(CodeOf({"--token-file=", "pools"}),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeOf({"pools", "--tls-ca"}), absl::StatusCode::kInvalidArgument);
  // No --token: a token on the command line is visible in ps.
  EXPECT_EQ(CodeOf({"--token=abc", "pools"}),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Usage(std::nullopt), HasSubstr("--token-file FILE"));
}

TEST(GroovectlCliTest, RejectsBadCommandLines) {
  const absl::StatusCode kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(CodeOf({}), kBad);                            // no command
  EXPECT_EQ(CodeOf({"nope"}), kBad);                      // unknown command
  EXPECT_EQ(CodeOf({"add", "p"}), kBad);                  // missing COUNT
  EXPECT_EQ(CodeOf({"add", "p", "-1"}), kBad);            // negative COUNT
  EXPECT_EQ(CodeOf({"add", "p", "1x"}), kBad);            // not a number
  EXPECT_EQ(CodeOf({"pools", "extra"}), kBad);            // extra argument
  EXPECT_EQ(CodeOf({"pools", "--verify"}), kBad);         // other's flag
  EXPECT_EQ(CodeOf({"--verify", "inspect", "p"}), kBad);  // before command
  EXPECT_EQ(CodeOf({"inspect", "p", "--volumes=yes"}), kBad);
  EXPECT_EQ(CodeOf({"--output", "yaml", "pools"}), kBad);
  EXPECT_EQ(CodeOf({"--timeout", "0s", "pools"}), kBad);
  EXPECT_EQ(CodeOf({"--timeout", "soon", "pools"}), kBad);
  EXPECT_EQ(CodeOf({"pools", "--addr"}), kBad);  // missing value
  EXPECT_EQ(CodeOf({"watch", "p", "--count", "0"}), kBad);
  EXPECT_THAT(ParseCommandLine({"add", "p"}).status().message(),
              HasSubstr("POOL COUNT"));
}

// COUNT is at least 1 (the server refuses 0): "-1" and "0" are usage
// errors naming COUNT, not an unknown flag "-1" or a call the server
// refuses.
TEST(GroovectlCliTest, CountMustBePositive) {
  for (const char* command : {"add", "remove"}) {
    for (const char* count : {"-1", "0", "-0"}) {
      SCOPED_TRACE(absl::StrCat(command, " p ", count));
      const auto inv = ParseCommandLine({command, "p", count});
      EXPECT_EQ(inv.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(
          inv.status().message(),
          absl::StrCat("COUNT must be a positive integer, got '", count, "'"));
    }
  }
  auto one = ParseCommandLine({"remove", "p", "1"});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->count, 1u);
}

// A number beyond 64 bits (COUNT, INDEX, --first-index, --count) is out
// of range, and the message says so: it once said "COUNT must be a
// positive integer" of 18446744073709551616, which is one.
TEST(GroovectlCliTest, NumbersBeyond64BitsAreOutOfRange) {
  constexpr char kTooLarge[] = "18446744073709551616";  // 2^64
  for (const auto& [args, what] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"add", "p", kTooLarge}, "COUNT"},
           {{"remove", "p", kTooLarge}, "COUNT"},
           {{"reclaim", "p", kTooLarge}, "INDEX"},
           {{"add", "p", "1", "--first-index", kTooLarge}, "--first-index"},
           {{"watch", "p", "--count", kTooLarge}, "--count"}}) {
    SCOPED_TRACE(args[0]);
    const auto inv = ParseCommandLine(args);
    EXPECT_EQ(inv.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(inv.status().message()),
              absl::StrCat(what,
                           " is out of range (above 18446744073709551615), "
                           "got '",
                           kTooLarge, "'"));
  }
  auto largest = ParseCommandLine({"reclaim", "p", "18446744073709551615"});
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->index, ~uint64_t{0});
}

// Exit codes of failed calls (clients/README.md's table).
TEST(GroovectlExitCodeTest, CancelledByTheServerIsRetryLater) {
  CallTarget target;
  target.address = "127.0.0.1:50051";
  for (bool connected : {true, false}) {
    target.connected = connected;
    std::ostringstream err;
    EXPECT_EQ(ReportCallError(absl::CancelledError("CANCELLED"), target, err),
              kExitUnreachable)
        << connected;
    EXPECT_THAT(err.str(), HasSubstr("error: CANCELLED: CANCELLED\n"));
    EXPECT_THAT(err.str(),
                HasSubstr("error: groove-volumed at 127.0.0.1:50051 answered "
                          "but cannot serve the call now"));
  }
}

TEST(GroovectlExitCodeTest, EachCodeHasItsExitCode) {
  CallTarget connected;
  connected.address = "h:1";
  connected.connected = true;
  CallTarget unreachable = connected;
  unreachable.connected = false;
  CallTarget tls = unreachable;
  tls.tls = true;
  CallTarget mutual_tls = tls;
  mutual_tls.client_certificate = true;
  struct Case {
    absl::Status status;
    const CallTarget& target;
    int exit_code;
    const char* says;
  };
  const Case cases[] = {
      {absl::UnavailableError("draining"), connected, kExitUnreachable,
       "answered but cannot serve the call now; retry later"},
      {absl::UnavailableError("connect failed"), unreachable, kExitUnreachable,
       "cannot reach groove-volumed at h:1"},
      {absl::DeadlineExceededError("x"), unreachable, kExitUnreachable,
       "cannot reach groove-volumed at h:1"},
      {absl::DeadlineExceededError("x"), connected, kExitServerError,
       "error: DEADLINE_EXCEEDED: x"},
      {absl::InvalidArgumentError("x"), connected, kExitServerError,
       "error: INVALID_ARGUMENT: x"},
      {absl::UnauthenticatedError("x"), connected, kExitServerError,
       "give --token-file"},
      // A failed TLS handshake: the hint names the credential gRPC's
      // message blames (these are gRPC 1.51's words).
      {absl::UnavailableError(
           "failed to connect to all addresses; last error: UNKNOWN: "
           "ipv4:127.0.0.1:1: Ssl handshake failed: SSL_ERROR_SSL: "
           "error:0A000086:SSL routines::certificate verify failed"),
       tls, kExitUnreachable,
       "the server's certificate is not signed by a CA of --tls-ca"},
      {absl::UnavailableError("last error: UNKNOWN: ipv4:127.0.0.1:1: Peer "
                              "name foo is not in peer certificate"),
       tls, kExitUnreachable, "give --tls-server-name"},
      {absl::UnavailableError("last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
                              "Socket closed"),
       tls, kExitUnreachable,
       "the server may require a client certificate (mutual TLS): give "
       "--tls-cert and --tls-key"},
      {absl::UnavailableError("last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
                              "Socket closed"),
       mutual_tls, kExitUnreachable,
       "the server may not accept the client certificate of --tls-cert"},
  };
  for (const Case& c : cases) {
    std::ostringstream err;
    EXPECT_EQ(ReportCallError(c.status, c.target, err), c.exit_code)
        << c.status;
    EXPECT_THAT(err.str(), HasSubstr(c.says)) << c.status;
  }
}

TEST(GroovectlCliTest, HelpNeedsNothingElse) {
  auto general = ParseCommandLine({"--help"});
  ASSERT_TRUE(general.ok());
  EXPECT_TRUE(general->help);
  EXPECT_FALSE(general->command.has_value());
  auto add = ParseCommandLine({"add", "-h"});
  ASSERT_TRUE(add.ok());
  EXPECT_TRUE(add->help);
  EXPECT_EQ(add->command, Command::kAdd);
  EXPECT_THAT(Usage(Command::kAdd), HasSubstr("--first-index N"));
  EXPECT_THAT(Usage(std::nullopt), HasSubstr("exit codes"));
}

// --version, like --help, needs no command and no argument, and wins over
// a command's missing ones; `version` is a command of no arguments.
TEST(GroovectlCliTest, VersionFlagNeedsNothingElseAndVersionIsACommand) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"--version"}, {"add", "--version"}, {"--addr=h:1", "--version"}}) {
    auto inv = ParseCommandLine(args);
    ASSERT_TRUE(inv.ok()) << inv.status();
    EXPECT_TRUE(inv->version);
    EXPECT_FALSE(inv->help);
  }
  auto version = ParseCommandLine({"version", "--output=json"});
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_FALSE(version->version);
  EXPECT_EQ(version->command, Command::kVersion);
  EXPECT_EQ(version->output, OutputFormat::kJson);
  EXPECT_EQ(CodeOf({"version", "extra"}), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Usage(std::nullopt), HasSubstr("--version"));
  EXPECT_THAT(Usage(std::nullopt), HasSubstr("  version\n"));
}

TEST(GroovectlFormatTest, HumanBytesUsesBinaryUnits) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(4096), "4 KiB");
  EXPECT_EQ(HumanBytes(uint64_t{3} << 19), "1.5 MiB");
  EXPECT_EQ(HumanBytes(uint64_t{1} << 30), "1 GiB");
  EXPECT_EQ(HumanBytes(uint64_t{64} << 30), "64 GiB");
}

TEST(GroovectlFormatTest, FillBarShowsInUseEmptyAndUnused) {
  EXPECT_EQ(FillBar(0, 0, 16, 8), "[........]");
  EXPECT_EQ(FillBar(4, 4, 16, 8), "[##==....]");
  EXPECT_EQ(FillBar(16, 0, 16, 8), "[########]");
  EXPECT_EQ(FillBar(0, 1, 1000, 8), "[=.......]");  // one volume still shows
  EXPECT_EQ(FillBar(0, 0, 0, 4), "[....]");
}

TEST(GroovectlFormatTest, PoolsTableNamesQuarantinedPools) {
  v1::ListPoolsResponse response;
  v1::PoolSummary* a = response.add_pools();
  a->set_name("a");
  a->set_max_volumes(16);
  v1::QuarantinedPool* b = response.add_quarantined_pools();
  b->set_name("b");
  b->set_reason("magic 0x7878 is not a groove-volumed pool's");
  std::ostringstream out;
  PrintPools(response, out);
  EXPECT_THAT(out.str(), HasSubstr("POOL"));
  EXPECT_THAT(out.str(),
              HasSubstr("QUARANTINED b: magic 0x7878 is not a groove-volumed "
                        "pool's\n"));
}

TEST(GroovectlFormatTest, SummaryNamesMemoryStillBeingGivenBack) {
  v1::PoolSummary p;
  p.set_name("slow");
  p.set_max_volumes(4);
  p.set_capacity_bytes(8192);
  p.set_empty_bytes(8192);
  std::ostringstream idle;
  PrintSummary(p, idle);
  EXPECT_THAT(idle.str(), HasSubstr("8 KiB (8 KiB empty)\n"));
  EXPECT_THAT(idle.str(), Not(HasSubstr("given back")));

  p.set_releasing_bytes(4096);
  std::ostringstream releasing;
  PrintSummary(p, releasing, {{"verify", "ok"}});
  EXPECT_THAT(releasing.str(),
              HasSubstr("8 KiB (8 KiB empty; 4 KiB of removed volumes still "
                        "being given back)\n"));
  EXPECT_THAT(releasing.str(), HasSubstr("verify"));
}

TEST(GroovectlFormatTest, SummaryNamesVolumesNotGivenBackOnlyWhenThereAreSome) {
  v1::PoolSummary p;
  p.set_name("leaky");
  std::ostringstream none;
  PrintSummary(p, none);
  EXPECT_THAT(none.str(), Not(HasSubstr("give-back failed")));

  p.set_volumes_not_given_back(2);
  std::ostringstream some;
  PrintSummary(p, some);
  EXPECT_THAT(some.str(),
              HasSubstr("give-back failed  2 volumes since the server "
                        "started: memory still allocated until the index is "
                        "added again\n"));
}

}  // namespace
}  // namespace groove::ctl
