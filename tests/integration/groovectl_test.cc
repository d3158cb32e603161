// groovectl_test: every groovectl command against the real groove-volumed
// on loopback, checking the table and JSON output and the exit codes: 0
// ok, 1 server error, 2 usage error, 3 unreachable, 4 outcome unknown.
// NOT_SERVING comes from an in-process gRPC server whose health status the test
// sets (the real server is NOT_SERVING only in the instant before it refuses
// calls).

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/build_expectation.h"
#include "support/cut_proxy.h"
#include "support/fake_server.h"
#include "support/notification.h"
#include "support/server_process.h"
#include "support/stall_fifo.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace groove::testing {
namespace {

using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

CommandResult Ctl(std::vector<std::string> args) {
  args.insert(args.begin(), GROOVECTL_BIN);
  return RunCommand(args, "", absl::Seconds(30));
}

class GroovectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServerProcess::Start(
        {"--data-dir=" + dir_.path(),
         "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16,"
         "initial_volumes=2",
         "--pool=name=b,backing=normal,volume_size=64KiB,max_volumes=4"});
    ASSERT_NE(server_, nullptr);
  }
  // Run runs groovectl against the server.
  CommandResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), "--addr=" + server_->grpc_address());
    return Ctl(args);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST(GroovectlUsageTest, UsageErrorsExit2WithUsage) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"add", "a"},
                                             {"add", "a", "many"},
                                             {"remove", "a", "1", "2"},
                                             {"reclaim", "a"},
                                             {"reclaim", "a", "-1"},
                                             {"--output", "xml", "pools"},
                                             {"inspect", "a", "--bogus"},
                                             {"pools", "--volumes"},
                                             {"watch", "a", "--interval", "0s"},
                                             {"--timeout"}}) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr("error: ")) << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, HasSubstr("usage: groovectl"))
        << absl::StrJoin(args, " ");
    EXPECT_EQ(r.out, "");
  }
  // The usage shown is the command's when the command is known.
  EXPECT_THAT(Ctl({"add", "a"}).err, HasSubstr("add POOL COUNT"));
  EXPECT_THAT(Ctl({"reclaim", "a"}).err, HasSubstr("reclaim POOL INDEX"));
}

// A COUNT below 1 is a usage error naming COUNT, before any call: "-1"
// is not taken for a flag, and "0" does not go to the server (which would
// refuse it: exit 1).
TEST(GroovectlUsageTest, CountBelowOneIsAUsageError) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"add", "a", "-1"},
                                             {"add", "a", "0"},
                                             {"remove", "a", "-1"},
                                             {"remove", "a", "0"}}) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat(
                           "error: COUNT must be a positive integer, got '",
                           args[2], "'")))
        << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat("usage: groovectl")));
    EXPECT_EQ(r.out, "");
  }
}

TEST(GroovectlUsageTest, HelpOnEveryCommand) {
  CommandResult r = Ctl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"pools", "add", "remove", "reclaim", "inspect",
                              "health", "watch", "version"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  ", command)));
    CommandResult c = Ctl({command, "--help"});
    EXPECT_EQ(c.exit_code, 0) << command;
    EXPECT_THAT(c.out,
                HasSubstr(absl::StrCat("[--timeout DURATION] ", command)));
  }
  EXPECT_THAT(Ctl({"add", "--help"}).out, HasSubstr("--first-index N"));
  EXPECT_THAT(Ctl({"inspect", "-h"}).out, HasSubstr("--verify"));
}

TEST(GroovectlUnreachableTest, Exits3WhenNoServerListens) {
  RefusingLoopbackPort nobody;  // nobody listens there, nor can bind it
  ASSERT_NE(nobody.port(), 0);
  const std::string addr = "--addr=" + nobody.address();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {addr, "--timeout=3s", "health"},
           {addr, "--timeout=3s", "pools"},
           {addr, "--timeout=3s", "remove", "a", "1"},
           {addr, "--timeout=3s", "reclaim", "a", "0"},
           {addr, "--timeout=3s", "--output=json", "inspect", "a"}}) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 3) << absl::StrJoin(args, " ") << "\n" << r.err;
    // Each refused connection is UNAVAILABLE, but the client retries until
    // its deadline: an attempt that a loaded machine delays past the
    // deadline ends DEADLINE_EXCEEDED without a connection, which is as
    // unreachable (seen once in six loaded runs). Any other code is wrong.
    EXPECT_THAT(r.err, AnyOf(HasSubstr("error: UNAVAILABLE: "),
                             HasSubstr("error: DEADLINE_EXCEEDED: ")))
        << r.err;
    EXPECT_THAT(r.err, HasSubstr("cannot reach groove-volumed"));
  }
}

// A server that answers UNAVAILABLE (here: draining, during its
// --drain_grace) was reached: groovectl still exits 3, as for any
// UNAVAILABLE, but says the server answered, not that it cannot be
// reached.
TEST(GroovectlUnreachableTest,
     UnavailableFromAServerThatAnsweredIsNotUnreachable) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(), "--drain_grace=10m",
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4"});
  ASSERT_NE(server, nullptr);
  server->Signal(SIGTERM);
  ASSERT_TRUE(server->WaitForLog("event=drain_grace"));
  const CommandResult r =
      Ctl({"--addr=" + server->grpc_address(), "--timeout=5s", "pools"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err,
              HasSubstr("error: UNAVAILABLE: groove-volumed is shutting down"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("error: groove-volumed at ",
                                            server->grpc_address(),
                                            " answered but cannot serve the "
                                            "call now")));
  EXPECT_THAT(r.err, Not(HasSubstr("cannot reach")));
  EXPECT_THAT(r.err, Not(HasSubstr("TLS handshake")));
  server->Signal(SIGTERM);  // ends the grace
  EXPECT_EQ(server->WaitForExit(), 0);
}

// ---- version --------------------------------------------------------------

// ExpectThisTreesBuild checks a build line's fields against what this
// tree's build must say (support/build_expectation.h).
void ExpectThisTreesBuild(const BuildLineParts& build,
                          const std::string& program) {
  EXPECT_EQ(build.program, program);
  EXPECT_EQ(build.version, kExpectedVersion);
  EXPECT_THAT(AcceptedRevisions(), Contains(build.revision));
  EXPECT_EQ(build.build_type, kExpectedBuildType);
  EXPECT_EQ(build.grpc_version, kExpectedGrpcVersion);
}

// --version prints groovectl's build and exits 0, calling no server (here
// none listens: a call would exit 3), even after a command. (Before, it
// was "unknown flag", exit 2.)
TEST(GroovectlVersionTest, VersionFlagPrintsTheClientsBuildAndExitsZero) {
  RefusingLoopbackPort nobody;
  ASSERT_NE(nobody.port(), 0);
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"--version"},
           {"--addr=" + nobody.address(), "pools", "--version"}}) {
    const CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_EQ(r.err, "");
    const std::optional<BuildLineParts> build = ParseBuildLine(r.out);
    ASSERT_TRUE(build.has_value()) << "not one build line: '" << r.out << "'";
    ExpectThisTreesBuild(*build, "groovectl");
  }
}

// `version` against a live server shows both builds: groovectl's, and the
// server's as ListPools reports it, in a table and in JSON.
TEST_F(GroovectlTest, VersionShowsTheClientsAndTheServersBuild) {
  const CommandResult r = Run({"version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << r.out;
  absl::string_view client = lines[0];
  absl::string_view server = lines[1];
  ASSERT_TRUE(absl::ConsumePrefix(&client, "client: ")) << r.out;
  ASSERT_TRUE(absl::ConsumePrefix(&server, "server: ")) << r.out;
  ASSERT_TRUE(absl::ConsumeSuffix(
      &server, absl::StrCat(" at ", server_->grpc_address())))
      << r.out;
  const std::optional<BuildLineParts> client_build = ParseBuildLine(client);
  const std::optional<BuildLineParts> server_build = ParseBuildLine(server);
  ASSERT_TRUE(client_build.has_value()) << r.out;
  ASSERT_TRUE(server_build.has_value()) << r.out;
  ExpectThisTreesBuild(*client_build, "groovectl");
  ExpectThisTreesBuild(*server_build, "groove-volumed");

  const CommandResult json = Run({"--output=json", "version"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  // One object; each side a groove.v1.BuildInfo in the proto3 JSON
  // mapping (fields in their numbers' order).
  EXPECT_EQ(std::count(json.out.begin(), json.out.end(), '\n'), 1);
  for (const auto& [side, build] : {std::pair{"{\"client\"", *client_build},
                                    std::pair{",\"server\"", *server_build}}) {
    EXPECT_THAT(json.out, HasSubstr(absl::StrCat(
                              side, ":{\"version\":\"", build.version,
                              "\",\"revision\":\"", build.revision,
                              "\",\"build_type\":\"", build.build_type, "\",")))
        << json.out;
  }
}

// `version` without a server still prints groovectl's build, says the
// server's is unknown, and exits 3 as every command does when the server
// cannot be reached; in JSON the server is null.
TEST(GroovectlVersionTest, AnUnreachableServersBuildIsUnknownAndExits3) {
  RefusingLoopbackPort nobody;
  ASSERT_NE(nobody.port(), 0);
  const std::string addr = "--addr=" + nobody.address();
  const CommandResult r = Ctl({addr, "--timeout=3s", "version"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot reach groove-volumed"));
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << r.out;
  absl::string_view client = lines[0];
  ASSERT_TRUE(absl::ConsumePrefix(&client, "client: ")) << r.out;
  const std::optional<BuildLineParts> build = ParseBuildLine(client);
  ASSERT_TRUE(build.has_value()) << r.out;
  ExpectThisTreesBuild(*build, "groovectl");
  EXPECT_EQ(lines[1], "server: unknown");

  const CommandResult json =
      Ctl({addr, "--timeout=3s", "--output=json", "version"});
  EXPECT_EQ(json.exit_code, 3) << json.err;
  EXPECT_THAT(json.out, HasSubstr(R"("client":{"version":")"));
  EXPECT_THAT(json.out, HasSubstr(R"(,"server":null})"));
}

// reclaim frees quarantined volumes (table and JSON output, exit 0), shows
// what was wrong with each, and exits 1 with the server's code and message
// for an index that holds no quarantined volume (a repeat included), an
// index out of range and an unknown pool; inspect counts the volumes in
// quarantine.
TEST_F(GroovectlTest, ReclaimFreesQuarantinedVolumesAndExitsByTheTable) {
  // Pool a holds volumes 0 (the top of the stack) and 1: each remove pops
  // one, finds its header bad, quarantines it and fails (DATA_LOSS).
  CorruptMagic(dir_.path(), "a", 0);
  CorruptMagic(dir_.path(), "a", 1);
  for (int i = 0; i < 2; ++i) {
    const CommandResult r = Run({"remove", "a", "1"});
    ASSERT_EQ(r.exit_code, 1) << r.err;
    ASSERT_THAT(r.err, HasSubstr("error: DATA_LOSS: "));
  }
  CommandResult r = Run({"inspect", "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 volumes quarantined now"));

  r = Run({"reclaim", "a", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         "reclaimed volume 0 of a: its header was bad "
                         "(header magic is ",
                         kGarbageMagic)));
  EXPECT_THAT(r.out, HasSubstr("its memory is given back and its index freed"));
  EXPECT_THAT(r.out, HasSubstr("1 of 16 mapped"));
  EXPECT_THAT(r.out, HasSubstr("1 volume quarantined now"));
  EXPECT_THAT(r.out, HasSubstr("1 reclaimed since creation"));
  EXPECT_EQ(r.err, "");

  r = Run({"--output=json", "reclaim", "a", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out,
              HasSubstr(R"({"index":"1","corruption":"header magic is )"));
  EXPECT_THAT(r.out, HasSubstr(R"("volumes_in_quarantine":"0")"));
  EXPECT_THAT(r.out, HasSubstr(R"("volumes_reclaimed":"2")"));

  r = Run({"reclaim", "a", "1"});  // again: harmless
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: FAILED_PRECONDITION: reclaim volume 1 "
                               "of pool 'a': index 1 holds no volume"));
  EXPECT_EQ(r.out, "");
  r = Run({"reclaim", "a", "16"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: OUT_OF_RANGE: "));
  r = Run({"reclaim", "nope", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: no pool named 'nope'"));

  r = Run({"inspect", "a", "--volumes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("0 of 16 mapped"));
  EXPECT_THAT(r.out, HasSubstr("0 volumes quarantined now"));
}

TEST_F(GroovectlTest, PoolsTableAndJson) {
  CommandResult r = Run({"pools"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 3u) << r.out;
  EXPECT_THAT(lines[0], HasSubstr("POOL"));
  EXPECT_THAT(lines[0], HasSubstr("CAPACITY"));
  // a: 2 of 16 volumes of 4 KiB, both empty: 2 cells of 20 ('=').
  EXPECT_THAT(lines[1], HasSubstr("a "));
  EXPECT_THAT(lines[1], HasSubstr("normal"));
  EXPECT_THAT(lines[1], HasSubstr("4 KiB"));
  EXPECT_THAT(lines[1], HasSubstr("2/16"));
  EXPECT_THAT(lines[1], HasSubstr("8 KiB"));
  EXPECT_THAT(lines[1], HasSubstr("[===.................] 12%"));
  EXPECT_THAT(lines[2], HasSubstr("64 KiB"));
  EXPECT_THAT(lines[2], HasSubstr("0/4"));

  r = Run({"--output", "json", "pools"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(R"("name":"a")"));
  EXPECT_THAT(r.out, HasSubstr(R"("volumes_mapped":"2")"));
  EXPECT_THAT(r.out, HasSubstr(R"("backing_in_use":"BACKING_NORMAL")"));
  EXPECT_THAT(r.out, HasSubstr(R"("name":"b")"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
}

TEST_F(GroovectlTest, AddInspectRemoveTableAndJson) {
  const std::string info_file = dir_.path() + "/info.txt";
  std::ofstream(info_file) << "from-file";
  CommandResult r = Run({"add", "a", "3", "--info", "tenant=x"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("added 3 volumes to a: indices 2, 3, 4"));
  EXPECT_THAT(r.out, HasSubstr("5 of 16 mapped"));
  EXPECT_THAT(r.err, Not(HasSubstr("adding")));  // stderr is no terminal

  r = Run({"--output=json", "add", "a", "1", "--first-index", "10", "--info",
           "@" + info_file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(R"("volume_indices":["10"])"));
  EXPECT_EQ(r.err, "");

  r = Run({"inspect", "a", "--volumes", "--verify"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("6 of 16 mapped: 6 empty, 0 in use"));
  EXPECT_THAT(r.out, HasSubstr("24 KiB (24 KiB empty)"));
  EXPECT_THAT(r.out, HasSubstr("ok (6 empty volumes on the stack)"));
  EXPECT_THAT(r.out, HasSubstr("INDEX"));
  EXPECT_THAT(r.out, HasSubstr("tenant=x"));
  EXPECT_THAT(r.out, HasSubstr("from-file"));

  r = Run({"--output=json", "inspect", "a", "--volumes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(R"("index":"10")"));
  EXPECT_THAT(r.out, HasSubstr(R"("info":"ZnJvbS1maWxl")"));  // base64
  EXPECT_THAT(r.out, HasSubstr(R"("state":"VOLUME_STATE_EMPTY")"));

  r = Run({"remove", "a", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("removed 2 volumes from a"));
  EXPECT_THAT(r.out, HasSubstr("4 of 16 mapped"));
  r = Run({"--output", "json", "remove", "a", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(R"("volumes":[{"index":)"));
  EXPECT_THAT(r.out, HasSubstr(R"("volumes_mapped":"3")"));
}

// The same add with the same --request-id is answered with the first
// one's volumes, not made again.
TEST_F(GroovectlTest, AddWithTheSameRequestIdIsAnsweredNotMadeAgain) {
  const std::vector<std::string> add = {"add", "a", "2", "--request-id",
                                        "123e4567-e89b-42d3-a456-426614174000"};
  CommandResult r = Run(add);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("added 2 volumes to a: indices 2, 3"));
  r = Run(add);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("added 2 volumes to a: indices 2, 3"));
  r = Run({"inspect", "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("4 of 16 mapped"));
}

// An add cut off after it reached the server (here the server dies in the
// add's allocation) may have been made. groovectl repeats it with its
// request_id until --timeout runs out (the server never comes back, on a
// unix socket of its own that nothing else can take meanwhile): exit 4,
// not 3's "retry later", with the request_id to repeat it with.
TEST(GroovectlOutcomeTest, AnAddCutOffUntilItsTimeoutRunsOutExits4) {
  TempDir dir;
  StallFifo fifo(dir);
  const std::string address = "unix:" + dir.path() + "/grpc.sock";
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(), "--testonly_stall_add_fifo=" + fifo.path(),
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4",
       "--listen=" + address});
  ASSERT_NE(server, nullptr);
  CommandResult r;
  std::jthread ctl([&] {
    r = Ctl({"--addr=" + address, "--timeout=5s", "add", "a", "1",
             "--request-id", "123e4567-e89b-42d3-a456-426614174000"});
  });
  ASSERT_TRUE(server->WaitForLog("event=testonly_stall_add_wait").has_value())
      << "the add never reached the stalled allocation";
  server->Kill();
  ctl.join();
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, HasSubstr("its outcome is unknown"));
  EXPECT_THAT(r.err, HasSubstr("may have made the change"));
  EXPECT_THAT(r.err, HasSubstr("repeat this add with --request-id "
                               "123e4567-e89b-42d3-a456-426614174000"));
  EXPECT_THAT(r.err, Not(HasSubstr("retry later")));
  EXPECT_THAT(r.err, Not(HasSubstr("cannot reach")));
}

// GroovectlCutOffTest's server parks adds on a FIFO (StallFifo) until the
// test releases them, and groovectl reaches it through a CutProxy, so
// that a test can cut an add's connection while the server makes it.
class GroovectlCutOffTest : public ::testing::Test {
 protected:
  static constexpr char kPool[] =
      "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4";

  void SetUp() override {
    server_ = ServerProcess::Start({"--data-dir=" + dir_.path(),
                                    "--testonly_stall_add_fifo=" + fifo_.path(),
                                    kPool});
    ASSERT_NE(server_, nullptr);
    proxy_ = std::make_unique<CutProxy>(server_->grpc_address());
    ASSERT_NE(proxy_->address(), "");
  }

  // StartAdd runs `groovectl --addr=PROXY --timeout=TIMEOUT add a COUNT`
  // on ctl_ (its result in result_) and returns once the server has
  // parked the add in its allocation.
  void StartAdd(const std::string& timeout, const std::string& count) {
    ctl_ = std::jthread([this, timeout, count] {
      result_ = Ctl({"--addr=" + proxy_->address(), "--timeout=" + timeout,
                     "add", "a", count});
    });
    ASSERT_TRUE(
        server_->WaitForLog("event=testonly_stall_add_wait").has_value())
        << "the add never reached the stalled allocation";
  }

  TempDir dir_;
  StallFifo fifo_{dir_};
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<CutProxy> proxy_;
  CommandResult result_;  // groovectl's, once ctl_ is joined
  std::jthread ctl_;      // last: joined before the rest goes
};

// An add whose answer was lost (its connection cut while the add was in
// its allocation, which then completed; the server then killed and
// restarted on the same data directory, behind a proxy that groovectl
// reaches it through) is repeated by groovectl with its request_id: the
// restarted server answers with the volumes the first attempt added, and
// groovectl exits 0. The pool holds them once.
TEST_F(GroovectlCutOffTest, AnAddWhoseAnswerWasLostIsRepeatedAndExits0) {
  // --timeout 60s: the time the restart below may take (groovectl repeats
  // the add until its deadline).
  ASSERT_NO_FATAL_FAILURE(StartAdd("60s", "2"));
  // Once Cut returns, no answer can reach groovectl through the old
  // connection: let the add complete.
  proxy_->Cut();
  fifo_.Release(1);
  ASSERT_TRUE(server_->WaitForLog("event=add ").has_value())
      << "the first attempt's add was not made";
  server_->Kill();
  server_ = ServerProcess::Start({"--data-dir=" + dir_.path(), kPool});
  ASSERT_NE(server_, nullptr);
  proxy_->Resume(server_->grpc_address());
  ctl_.join();
  ASSERT_EQ(result_.exit_code, 0) << result_.err;
  EXPECT_THAT(result_.out, HasSubstr("added 2 volumes to a: indices 0, 1"));
  EXPECT_TRUE(server_->WaitForLog("event=add_replayed").has_value())
      << server_->LogText();
  const CommandResult r =
      Ctl({"--addr=" + server_->grpc_address(), "inspect", "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 of 4 mapped"));
}

// An add cut off while the server still makes it is repeated with its
// request_id, which the server answers ABORTED ("still in progress")
// until the first is done: groovectl waits for that as long as its
// deadline (--timeout, plus 8 s per GiB) lasts. It gave up after the
// client's default 10 attempts instead (their backoffs ~11 s), exit 4,
// though its deadline had most of its time left and the add went on: the
// deadline it had grown for the work was cut short by any connection
// lost on the way. Here the first attempt's connection is cut while it is
// parked; it is released once 10 repeats were refused ABORTED.
TEST_F(GroovectlCutOffTest, AnAddStillRunningIsWaitedForUntilItsDeadline) {
  ASSERT_NO_FATAL_FAILURE(StartAdd("120s", "1"));
  proxy_->Cut();
  proxy_->Resume(server_->grpc_address());
  const bool refused = server_->WaitForLogCount(
      {"event=rpc_error", "method=AddVolume", "code=ABORTED"}, 10,
      absl::Seconds(45));
  fifo_.Release(1);
  ctl_.join();
  EXPECT_TRUE(refused) << "groovectl stopped repeating the add; its "
                          "stderr:\n"
                       << result_.err;
  EXPECT_EQ(result_.exit_code, 0) << result_.err;
  EXPECT_THAT(result_.out, HasSubstr("added 1 volume to a: indices 0"));
}

// `--info @FILE` with FILE a directory once stored empty info and exited
// 0 (the ifstream opened it, and its failed read went unnoticed). A FILE
// that is not a readable regular file is a usage error naming it, before
// any volume is added.
TEST_F(GroovectlTest, AddInfoFromAFileThatCannotBeReadExits2NamingIt) {
  const std::string missing = dir_.path() + "/no-such-info.txt";
  for (const auto& [path, problem] :
       std::vector<std::pair<std::string, std::string>>{
           {dir_.path(), "is not a regular file"},
           {missing, "cannot read: No such file or directory"}}) {
    CommandResult r = Run({"add", "a", "1", "--info", "@" + path});
    EXPECT_EQ(r.exit_code, 2) << path << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat("error: --info file ", path, ": ",
                                              problem)));
    EXPECT_EQ(r.out, "");
  }
  CommandResult r = Run({"inspect", "a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 of 16 mapped"));  // the initial 2 only
}

TEST_F(GroovectlTest, ServerErrorsExit1WithCodeAndMessage) {
  CommandResult r = Run({"inspect", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: "));
  EXPECT_THAT(r.err, HasSubstr("nope"));
  r = Run({"remove", "b", "1"});  // b has no volume
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: FAILED_PRECONDITION: "));
  r = Run({"add", "a", "1", "--first-index", "16"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: OUT_OF_RANGE: "));
  // Over the server's limit per call (a COUNT of 0 is groovectl's own
  // usage error, CountBelowOneIsAUsageError).
  r = Run({"add", "a", "1025"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("count 1025 is outside [1, 1024]"));
  r = Run({"--output=json", "add", "nope", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: "));
  r = Run({"health", "--service", "no.such.Service"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: "));
}

TEST_F(GroovectlTest, HealthServing) {
  CommandResult r = Run({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Run(
      {"--output=json", "health", "--service", "groove.v1.VolumePoolService"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"status\":\"SERVING\"}\n");
}

// A server on a unix socket is as local as loopback: groovectl sends it a
// token without TLS, and the server checks the token's role.
TEST(GroovectlUnixSocketTest, TokensGoToAUnixSocketWithoutTls) {
  TempDir dir;
  const std::string admin_token(32, 'a');
  const std::string reader_token(32, 'r');
  WriteTextFile(dir.path() + "/tokens",
                admin_token + " admin\n" + reader_token + " reader\n");
  WriteTextFile(dir.path() + "/admin.token", admin_token + "\n");
  WriteTextFile(dir.path() + "/reader.token", reader_token + "\n");
  const std::string address = "unix:" + dir.path() + "/grpc.sock";
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path() + "/data", "--listen=" + address,
       "--auth-tokens=" + dir.path() + "/tokens",
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4"});
  ASSERT_NE(server, nullptr);
  const std::string addr = "--addr=" + address;
  CommandResult r = Ctl(
      {addr, "--token-file=" + dir.path() + "/admin.token", "add", "a", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl(
      {addr, "--token-file=" + dir.path() + "/reader.token", "add", "a", "1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: PERMISSION_DENIED: "));
  r = Ctl({addr, "--token-file=" + dir.path() + "/reader.token", "--output",
           "json", "inspect", "a"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(R"("volumes_mapped":"1")"));
}

TEST(GroovectlHealthTest, NotServingExits1) {
  grpc::EnableDefaultHealthCheckService(true);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  // A sync service, so that the server has a thread to answer with (every
  // RPC of it is unimplemented; only health is asked).
  v1::VolumePoolService::Service unimplemented;
  builder.RegisterService(&unimplemented);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->GetHealthCheckService()->SetServingStatus(false);
  CommandResult r = Ctl({absl::StrCat("--addr=127.0.0.1:", port), "health"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "NOT_SERVING\n");
  server->Shutdown();
}

TEST_F(GroovectlTest, WatchRedrawsCountTimes) {
  CommandResult r = Run({"watch", "a", "--interval", "10ms", "--count", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  size_t redraws = 0;
  for (size_t at = r.out.find("every 10ms: a"); at != std::string::npos;
       at = r.out.find("every 10ms: a", at + 1)) {
    ++redraws;
  }
  EXPECT_EQ(redraws, 3u) << r.out;
  EXPECT_THAT(r.out, HasSubstr("2 of 16 mapped"));
  r = Run({"--output", "json", "watch", "a", "--interval=1ms", "--count=2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_THAT(lines[1], HasSubstr(R"("name":"a")"));
  r = Run({"watch", "nope", "--count", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: "));
}

// CtlInBackground runs groovectl with `args` in the background, its
// stdout on a pipe the test reads (stderr inherited), for the tests that
// signal it while it runs. The destructor kills it (SIGKILL) if it still
// runs, and reaps it.
class CtlInBackground {
 public:
  explicit CtlInBackground(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {GROOVECTL_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    ExecArgv exec_argv(argv);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      execv(exec_argv.path(), exec_argv.get());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
  }
  CtlInBackground(const CtlInBackground&) = delete;
  CtlInBackground& operator=(const CtlInBackground&) = delete;
  ~CtlInBackground() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }

  bool started() const { return pid_ > 0 && out_ >= 0; }
  void Signal(int sig) { kill(pid_, sig); }

  // ReadUntil reads stdout until what was read so far contains `needle`
  // (blocking: no sleep) and returns it; false on EOF first.
  bool ReadUntil(const std::string& needle) {
    char buf[4096];
    while (out_text_.find(needle) == std::string::npos) {
      const ssize_t n = read(out_, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      out_text_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  // WaitForExit reads stdout to its end (groovectl exited) within
  // `timeout` and returns the exit status (waitpid's), or nullopt when
  // groovectl still runs at the timeout.
  std::optional<int> WaitForExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    char buf[4096];
    for (;;) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return std::nullopt;
      pollfd readable{.fd = out_, .events = POLLIN, .revents = 0};
      const int ready =
          poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(left)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return std::nullopt;
      const ssize_t n = read(out_, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EOF: groovectl (its last writer) exited
      out_text_.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) return std::nullopt;
    reaped_ = true;
    return status;
  }

  const std::string& out() const { return out_text_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;  // the read end of groovectl's stdout
  bool reaped_ = false;
  std::string out_text_;  // what was read from stdout so far
};

// watch stops cleanly on SIGINT: it is started with a long interval, the
// test waits for its first redraw on the pipe, then interrupts it.
TEST_F(GroovectlTest, WatchStopsOnSigint) {
  CtlInBackground ctl(
      {"--addr=" + server_->grpc_address(), "watch", "a", "--interval", "1h"});
  ASSERT_TRUE(ctl.started());
  ASSERT_TRUE(ctl.ReadUntil("locked")) << ctl.out();
  ctl.Signal(SIGINT);
  const std::optional<int> status = ctl.WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(status.has_value()) << "still running after SIGINT";
  ASSERT_TRUE(WIFEXITED(*status)) << "killed by the signal";
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_THAT(ctl.out(), HasSubstr("every 1h: a"));
}

// AnswersOnceThenHangs is a VolumePoolService whose Inspect answers its
// first call (pool "a") and holds every later one until `release` (a
// server that stopped answering: the fault), notifying `held` when the
// second call arrives.
class AnswersOnceThenHangs final : public v1::VolumePoolService::Service {
 public:
  grpc::Status Inspect(grpc::ServerContext*, const v1::InspectRequest*,
                       v1::InspectResponse* response) override {
    if (calls_.fetch_add(1) == 0) {
      response->mutable_summary()->set_name("a");
      return grpc::Status::OK;
    }
    held.Notify();
    release.WaitForNotificationWithTimeout(absl::Minutes(2));
    return grpc::Status::OK;
  }
  Notification held;
  Notification release;

 private:
  std::atomic<int> calls_{0};
};

// watch stops on SIGINT or SIGTERM also while a redraw's call waits for a
// server that does not answer. It once blocked the signals and looked for
// them only between redraws, so a Ctrl-C went unheeded for the whole
// --timeout (here a minute), after which watch exited 1 (the call's
// DEADLINE_EXCEEDED) instead of 0.
TEST(GroovectlWatchTest, StopsOnASignalWhileTheServerDoesNotAnswer) {
  for (const int sig : {SIGINT, SIGTERM}) {
    AnswersOnceThenHangs service;
    std::string address;
    std::unique_ptr<grpc::Server> server = StartFakeServer(&service, &address);
    ASSERT_NE(server, nullptr);
    CtlInBackground ctl({"--addr=" + address, "--timeout=60s", "--output=json",
                         "watch", "a", "--interval=1ms"});
    ASSERT_TRUE(ctl.started());
    ASSERT_TRUE(service.held.WaitForNotificationWithTimeout(absl::Seconds(30)))
        << "the second redraw's call never came";
    ctl.Signal(sig);
    const std::optional<int> status = ctl.WaitForExit(absl::Seconds(20));
    service.release.Notify();
    server->Shutdown();
    ASSERT_TRUE(status.has_value())
        << strsignal(sig) << " did not stop watch within 20 s while its call "
        << "waited for the server";
    ASSERT_TRUE(WIFEXITED(*status)) << "killed by " << strsignal(sig);
    EXPECT_EQ(WEXITSTATUS(*status), 0) << strsignal(sig);
    // The first redraw, whole.
    EXPECT_EQ(ctl.out().find('\n'), ctl.out().size() - 1) << ctl.out();
    EXPECT_THAT(ctl.out(), HasSubstr(R"("name":"a")"));
  }
}

// A command whose output cannot be written (a full disk: /dev/full) once
// exited 0, its output lost: a script took the missing JSON for success.
// It is an error (exit 1; 4 for a change, which was made) saying so; the
// call's own failure keeps its code.
TEST_F(GroovectlTest, OutputThatCannotBeWrittenIsAnError) {
  const std::string addr = "--addr=" + server_->grpc_address();
  for (const std::string& command :
       {std::string("pools"), std::string("--output=json inspect a --volumes"),
        std::string("--help")}) {
    CommandResult r =
        RunCommand({"/bin/sh", "-c",
                    absl::StrCat("exec ", GROOVECTL_BIN, " ", addr, " ",
                                 command, " >/dev/full")});
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr("error: cannot write the output: No space "
                                 "left on device"))
        << command;
  }
  CommandResult r = RunCommand({"/bin/sh", "-c",
                                absl::StrCat("exec ", GROOVECTL_BIN, " ", addr,
                                             " inspect nope >/dev/full")});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: NOT_FOUND: "));
  // A change made whose answer is lost is exit 4, as one cut off: look
  // before repeating it (a script's repeat on exit 1 would add again).
  r = RunCommand({"/bin/sh", "-c",
                  absl::StrCat("exec ", GROOVECTL_BIN, " ", addr,
                               " --output=json add a 1 >/dev/full")});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, HasSubstr("error: cannot write the output: No space "
                               "left on device"));
  EXPECT_THAT(r.err, HasSubstr("error: the add was made; only its answer "
                               "is lost: look (groovectl inspect a "
                               "--volumes) before repeating it"));
  r = Run({"inspect", "a"});
  EXPECT_THAT(r.out, HasSubstr("3 of 16 mapped"));
}

// watch piped into a reader that goes away (`| head -1`) under an ignored
// SIGPIPE (a shell's `trap '' PIPE`, a CI runner's default) once redrew
// into the broken pipe for ever, asking the server every interval. Its
// writes fail with EPIPE: it stops, exit 1, saying so.
TEST_F(GroovectlTest, WatchStopsWhenItsOutputIsGone) {
  CommandResult r = RunCommand(
      {"/bin/sh", "-c",
       absl::StrCat("trap '' PIPE; (", GROOVECTL_BIN,
                    " --addr=", server_->grpc_address(),
                    " --output=json watch a --interval=1ms; "
                    "echo \"groovectl exit $?\" >&2) | head -c 1 >/dev/null")},
      "", absl::Seconds(20));
  EXPECT_FALSE(r.timed_out) << "watch still redraws into a broken pipe";
  EXPECT_THAT(r.err, HasSubstr("error: cannot write the output: Broken pipe"));
  EXPECT_THAT(r.err, HasSubstr("groovectl exit 1"));
}

// RunOnTerminal runs groovectl with its stderr on a pseudo-terminal and
// returns what it wrote there; its exit code goes to *exit_code.
std::string RunOnTerminal(const std::vector<std::string>& args,
                          int* exit_code) {
  int master = -1, slave = -1;
  if (openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) return "";
  std::vector<std::string> argv = {GROOVECTL_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  ExecArgv exec_argv(argv);
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(slave, 2);
    close(master);
    execv(exec_argv.path(), exec_argv.get());
    _exit(127);
  }
  close(slave);
  std::string text;
  char buf[4096];
  for (;;) {  // until the child closes the terminal (EIO on Linux)
    const ssize_t n = read(master, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return text;
}

TEST_F(GroovectlTest, AddShowsProgressOnATerminalOnly) {
  const std::string addr = "--addr=" + server_->grpc_address();
  int code = -1;
  std::string err = RunOnTerminal({addr, "add", "a", "2"}, &code);
  EXPECT_EQ(code, 0) << err;
  EXPECT_THAT(err, HasSubstr("adding 2 x 4 KiB to a"));
  EXPECT_THAT(err, HasSubstr("\r\033[K"));  // the line is erased at the end
  err = RunOnTerminal({addr, "--output=json", "add", "a", "1"}, &code);
  EXPECT_EQ(code, 0) << err;
  EXPECT_EQ(err, "");
}

}  // namespace
}  // namespace groove::testing
