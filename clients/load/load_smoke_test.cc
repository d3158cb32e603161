// clients/load/load_smoke_test.cc: groove-load against the real server on
// loopback, ~1 s per mix. Checks that each run completed and reported a
// non-zero operation count and no failed RPC; never how fast (benchmarks
// are not timed tests: the numbers come from script/bench). And, without a
// server, its command line: --help, bad flags and their exit statuses.

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

#ifndef GROOVE_LOAD_BIN
#error "GROOVE_LOAD_BIN must name the groove-load binary"
#endif

namespace groove::testing {
namespace {

constexpr char kPoolFlag[] =
    "--pool=name=load,backing=normal,volume_size=4KiB,max_volumes=4096";

// NumberAfter returns the number following the first `"key":` in `json`,
// or -1.
double NumberAfter(const std::string& json, const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\":");
  const size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  const size_t start = at + needle.size();
  const size_t end = json.find_first_of(",}", start);
  double value = -1;
  if (!absl::SimpleAtod(json.substr(start, end - start), &value)) return -1;
  return value;
}

// ParseReport parses groove-load's --output=json into a Struct (empty on a
// parse error, which the caller's field checks then report).
google::protobuf::Struct ParseReport(const std::string& json) {
  google::protobuf::Struct report;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &report).ok())
      << json;
  return report;
}

// Field returns report[key] as a number (0 when absent).
double Field(const google::protobuf::Struct& s, const std::string& key) {
  const auto it = s.fields().find(key);
  return it == s.fields().end() ? 0 : it->second.number_value();
}

// ThroughputsOf returns the "throughput" of each element of report[key].
std::vector<double> ThroughputsOf(const google::protobuf::Struct& report,
                                  const std::string& key) {
  std::vector<double> out;
  const auto it = report.fields().find(key);
  if (it == report.fields().end()) return out;
  for (const auto& round : it->second.list_value().values()) {
    out.push_back(Field(round.struct_value(), "throughput"));
  }
  return out;
}

// MedianThroughput returns report[key]["throughput"].
double MedianThroughput(const google::protobuf::Struct& report,
                        const std::string& key) {
  const auto it = report.fields().find(key);
  return it == report.fields().end()
             ? 0
             : Field(it->second.struct_value(), "throughput");
}

class LoadSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServerProcess::Start({"--data-dir=" + dir_.path(), kPoolFlag});
    ASSERT_NE(server_, nullptr);
  }

  // Run runs groove-load with `flags` (plus the address, 1 s, JSON) and
  // returns its stdout, checking its exit status is 0 (it exits 1 when a
  // run counted no operation or saw a failed RPC).
  std::string Run(std::vector<std::string> flags) {
    std::vector<std::string> argv = {
        GROOVE_LOAD_BIN, "--addr=" + server_->grpc_address(), "--pool=load",
        "--duration=1s", "--warmup=100ms", "--connections=2", "--in_flight=4",
        "--output=json"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const CommandResult r = RunCommand(argv, "", absl::Seconds(40));
    EXPECT_EQ(r.exit_code, 0) << "stdout: " << r.out << "\nstderr: " << r.err;
    return r.out;
  }

  void ExpectSaneRun(const std::string& mix) {
    const std::string out = Run({"--mix=" + mix});
    EXPECT_TRUE(absl::StrContains(out, absl::StrCat("\"mix\":\"", mix, "\"")))
        << out;
    EXPECT_GT(NumberAfter(out, "ops"), 0) << out;
    EXPECT_EQ(NumberAfter(out, "errors"), 0) << out;
    EXPECT_GT(NumberAfter(out, "p99_us"), 0) << out;
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

// --help and -h print the help on stdout and exit 0: the usage, every one
// of groove-load's flags with its default (Abseil's own help listed only
// the flags of files it took for the program's: none), and nothing else.
TEST(LoadHelpTest, HelpListsEveryFlagAndExitsZero) {
  for (const char* help : {"--help", "-h"}) {
    SCOPED_TRACE(help);
    const CommandResult r =
        RunCommand({GROOVE_LOAD_BIN, help}, "", absl::Seconds(20));
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_TRUE(absl::StartsWith(r.out, "usage: groove-load --addr=HOST:PORT"))
        << r.out;
    EXPECT_TRUE(absl::StrContains(r.out,
                                  "  --addr (default 127.0.0.1:50051)\n"
                                  "      host:port of the server\n"))
        << r.out;
    for (const char* flag :
         {"addr", "compare", "connections", "contend_dir", "duration",
          "in_flight", "mix", "output", "pool", "rounds", "scale", "server_pid",
          "warmup", "write_request"}) {
      EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("\n  --", flag, " (")))
          << flag << " is not listed:\n"
          << r.out;
    }
    // Only groove-load's own flags: not Abseil's built-ins.
    EXPECT_FALSE(absl::StrContains(r.out, "--flagfile")) << r.out;
  }
}

// A bad command line exits 2 before anything runs (no server is given:
// a run would fail with 1), with the error and the help on stderr and
// nothing on stdout.
TEST(LoadHelpTest, BadFlagsExitTwoWithTheErrorAndTheHelp) {
  const struct {
    std::vector<std::string> args;
    std::string error;
  } cases[] = {
      {{"--no_such_flag=1"}, "unknown flag '--no_such_flag=1'"},
      {{"--flagfile=/dev/null"}, "unknown flag '--flagfile=/dev/null'"},
      {{"--nomix"}, "unknown flag '--nomix'"},
      {{"--connections=many"}, "--connections='many': "},
      {{"--compare=maybe"}, "--compare='maybe': "},
      {{"--duration=5"}, "--duration='5': "},
      {{"--addr"}, "flag --addr needs a value"},
      {{"health"}, "unexpected argument 'health'"},
      {{"--compare", "false"}, "unexpected argument 'false'"},
      {{"--mix=nope"}, "--mix='nope' is not one of health, "},
      {{"--output=yaml"}, "--output='yaml' is not table or json"},
      {{"--connections=0"}, "--connections must be at least 1"},
      {{"--rounds=0"}, "--rounds must be at least 1"},
      {{"--warmup=-1s"}, "--warmup must not be negative"},
      // The error wins over a --help beside it.
      {{"--help", "--no_such_flag"}, "unknown flag '--no_such_flag'"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {GROOVE_LOAD_BIN,
                                     "--addr=127.0.0.1:1"};  // never reached
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    SCOPED_TRACE(absl::StrJoin(argv, " "));
    const CommandResult r = RunCommand(argv, "", absl::Seconds(20));
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(absl::StartsWith(r.err, absl::StrCat("error: ", c.error)))
        << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "\n  --connections (default 4)\n"))
        << r.err;
  }
}

// The spellings Abseil accepts still set the flags: --NAME VALUE, one
// dash, --noNAME; --write_request runs without a server and writes the
// request of --mix (a 5-byte gRPC frame header and the message).
TEST(LoadHelpTest, FlagSpellingsSetTheFlags) {
  TempDir dir;
  const std::string out = dir.path() + "/request";
  const CommandResult r =
      RunCommand({GROOVE_LOAD_BIN, "-mix", "inspect_summary", "--nocompare",
                  "--pool", "abc", "--write_request=" + out},
                 "", absl::Seconds(20));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::ifstream in(out, std::ios::binary);
  const std::string frame((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  ASSERT_GT(frame.size(), 5u);
  v1::InspectRequest request;
  ASSERT_TRUE(request.ParseFromString(frame.substr(5)));
  EXPECT_EQ(request.pool(), "abc");
}

TEST_F(LoadSmokeTest, HealthReportsOperations) { ExpectSaneRun("health"); }

TEST_F(LoadSmokeTest, InspectSummaryReportsOperations) {
  ExpectSaneRun("inspect_summary");
}

TEST_F(LoadSmokeTest, InspectPageReportsOperations) {
  ExpectSaneRun("inspect_page");
}

TEST_F(LoadSmokeTest, AddRemoveReportsOperationsAndLeavesPoolEmpty) {
  ExpectSaneRun("add_remove");
  auto stub = server_->Stub();
  grpc::ClientContext ctx;
  v1::InspectRequest req;
  req.set_pool("load");
  v1::InspectResponse resp;
  ASSERT_TRUE(stub->Inspect(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.summary().volumes_mapped(), 0u);
}

TEST_F(LoadSmokeTest, CompareReportsRatiosAgainstHealth) {
  const std::string out = Run({"--mix=inspect_summary", "--compare"});
  EXPECT_TRUE(absl::StrContains(out, "\"mode\":\"compare\"")) << out;
  EXPECT_GT(NumberAfter(out, "throughput"), 0) << out;
}

TEST_F(LoadSmokeTest, ReportsCpuPerOperationOfItselfAndOfTheServer) {
  const google::protobuf::Struct with_server = ParseReport(
      Run({"--mix=health", "--server_pid=" + std::to_string(server_->pid())}));
  EXPECT_GT(Field(with_server, "client_cpu_us_per_op"), 0);
  EXPECT_GT(Field(with_server, "server_cpu_us_per_op"), 0);
  // Without the server's pid its CPU is unknown: null, not 0.
  const google::protobuf::Struct alone = ParseReport(Run({"--mix=health"}));
  EXPECT_GT(Field(alone, "client_cpu_us_per_op"), 0);
  ASSERT_TRUE(alone.fields().contains("server_cpu_us_per_op"));
  EXPECT_EQ(alone.fields().at("server_cpu_us_per_op").kind_case(),
            google::protobuf::Value::kNullValue);
}

TEST_F(LoadSmokeTest, CompareInRoundsReportsEachRoundAndTheirMedian) {
  const google::protobuf::Struct report =
      ParseReport(Run({"--mix=inspect_summary", "--compare", "--rounds=3",
                       "--duration=300ms", "--warmup=50ms"}));
  EXPECT_EQ(Field(report, "rounds"), 3);
  std::vector<double> rounds = ThroughputsOf(report, "round_ratios");
  ASSERT_EQ(rounds.size(), 3u);
  for (double r : rounds) EXPECT_GT(r, 0);
  std::sort(rounds.begin(), rounds.end());
  EXPECT_DOUBLE_EQ(MedianThroughput(report, "ratios"), rounds[1]);
  // Each arm's row is its three rounds together.
  EXPECT_DOUBLE_EQ(Field(report.fields().at("mix").struct_value(), "seconds"),
                   0.9);
  EXPECT_DOUBLE_EQ(
      Field(report.fields().at("health").struct_value(), "seconds"), 0.9);
}

TEST_F(LoadSmokeTest, ContendRunsADataPlaneChild) {
  // The data plane needs volumes to acquire.
  auto stub = server_->Stub();
  grpc::ClientContext ctx;
  v1::AddVolumeRequest req;
  req.set_pool("load");
  req.set_count(16);
  v1::AddVolumeResponse resp;
  ASSERT_TRUE(stub->AddVolume(&ctx, req, &resp).ok());
  // Three arms (alone, busy loop, data plane), two rounds: shorter runs.
  const std::string out =
      Run({"--mix=inspect_summary", "--duration=300ms", "--warmup=50ms",
           "--rounds=2", "--contend_dir=" + dir_.path()});
  EXPECT_GT(NumberAfter(out, "dataplane_pairs_per_s"), 0) << out;
  const google::protobuf::Struct report = ParseReport(out);
  std::vector<double> rounds = ThroughputsOf(report, "round_ratios");
  ASSERT_EQ(rounds.size(), 2u) << out;
  // The mean of the middle two; each figure is printed to 3 decimals.
  EXPECT_NEAR(MedianThroughput(report, "ratios"), (rounds[0] + rounds[1]) / 2,
              0.001);
  EXPECT_EQ(ThroughputsOf(report, "round_ratios_vs_control").size(), 2u);
}

// Filled to its max_volumes, as script/bench's pool of 1,000,000 is: every
// measurement at the last point must still succeed (the single-volume pair
// once added first and failed there), and the removal of all follows.
TEST_F(LoadSmokeTest, ScaleRunsOnASmallPoolFilledToItsMax) {
  const std::string out = Run({"--scale=4096"});
  EXPECT_TRUE(absl::StrContains(out, "\"ok\":true")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"first_error\":\"\"")) << out;
  EXPECT_EQ(NumberAfter(out, "volumes"), 4096) << out;
  EXPECT_GT(NumberAfter(out, "add1_remove1_us"), 0) << out;
  EXPECT_EQ(NumberAfter(out, "remove_batches"), 4) << out;
  // The summary's flatness is summary/health at each point against the
  // first point's (the columns it is computed from are printed too).
  const google::protobuf::Struct report = ParseReport(out);
  const auto points = report.fields().find("points");
  ASSERT_NE(points, report.fields().end()) << out;
  ASSERT_EQ(points->second.list_value().values_size(), 2) << out;
  const google::protobuf::Struct& first =
      points->second.list_value().values(0).struct_value();
  const google::protobuf::Struct& last =
      points->second.list_value().values(1).struct_value();
  EXPECT_EQ(Field(first, "summary_per_health_vs_1k"), 1.0) << out;
  const double expected =
      (Field(last, "summary_us") / Field(last, "health_us")) /
      (Field(first, "summary_us") / Field(first, "health_us"));
  // Inputs printed to 0.1 us (~100 us each) and the ratio to 0.001.
  EXPECT_NEAR(Field(last, "summary_per_health_vs_1k"), expected, 0.004) << out;
  // On `normal` backing each batch is timed beside the kernel floor of the
  // same work, and its per-floor ratio is computed from those columns.
  for (const char* side : {"add", "remove"}) {
    const std::string batch = absl::StrCat(side, "_batch_us");
    const std::string floor = absl::StrCat("floor_", side, "_batch_us");
    const std::string ratio = absl::StrCat(side, "_batch_per_floor_vs_1k");
    ASSERT_GT(Field(first, floor), 0) << out;
    ASSERT_GT(Field(last, floor), 0) << out;
    EXPECT_EQ(Field(first, ratio), 1.0) << out;
    const double per_floor = (Field(last, batch) / Field(last, floor)) /
                             (Field(first, batch) / Field(first, floor));
    // Inputs printed to 0.1 us (hundreds of us each), the ratio to 0.001.
    EXPECT_NEAR(Field(last, ratio), per_floor, 0.004) << side << ": " << out;
  }
}

}  // namespace
}  // namespace groove::testing
