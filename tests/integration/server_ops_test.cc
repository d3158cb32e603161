// groove-volumed as operators and tools see it, against the real binary:
// `buf curl` through server reflection (no proto files), the /metrics
// endpoint checked by `promtool check metrics` and scraped by a real
// Prometheus server, restarts (clean and SIGKILL) on the same data
// directory, two servers with their own data directories and a pool of
// the same name, and volumes quarantined by a remove and freed again by
// ReclaimVolume.

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "groove/named_pool.h"
#include "groove/pool_error.h"
#include "groove/server/server.h"
#include "groove/volume.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

#ifndef GROOVE_BUF_BIN
#error "GROOVE_BUF_BIN must name the buf binary (script/bootstrap installs it)"
#endif
#ifndef GROOVE_PROMETHEUS_BIN
#error "GROOVE_PROMETHEUS_BIN must name the prometheus binary"
#endif
#ifndef GROOVE_PROMTOOL_BIN
#error "GROOVE_PROMTOOL_BIN must name the promtool binary"
#endif

namespace groove::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> TwoPools(const TempDir& dir) {
  return {"--data-dir=" + dir.path(),
          "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16",
          "--pool=name=b,backing=normal,volume_size=64KiB,max_volumes=8"};
}

// CorruptPoolMagic overwrites the metadata magic of pool `pool` in `dir`
// (after the 1536-byte pool header): the next start quarantines the pool,
// and every call naming it fails with DATA_LOSS.
void CorruptPoolMagic(const TempDir& dir, const std::string& pool) {
  std::fstream file(dir.path() + "/" + pool + ".pool",
                    std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.is_open());
  file.seekp(1536);
  file.write("garbage!", 8);
  ASSERT_TRUE(file.good());
}

bool Executable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

// BufCurl runs `buf curl` with the gRPC protocol over plaintext HTTP/2
// against the server, with `args` before the URL.
CommandResult BufCurl(const ServerProcess& server,
                      std::vector<std::string> args,
                      const std::string& path = "") {
  std::vector<std::string> argv = {
      GROOVE_BUF_BIN, "curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "--timeout",    "20s"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(absl::StrCat("http://", server.grpc_address(), path));
  return RunCommand(argv, "", absl::Seconds(60));
}

TEST(ServerToolsTest, BufCurlWorksThroughReflection) {
  ASSERT_TRUE(Executable(GROOVE_BUF_BIN))
      << GROOVE_BUF_BIN << " is missing: run script/bootstrap";
  TempDir dir;
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);

  // Reflection lists the service and describes the health service too.
  const CommandResult services = BufCurl(*server, {"--list-services"});
  ASSERT_EQ(services.exit_code, 0) << services.err;
  EXPECT_THAT(services.out, HasSubstr("groove.v1.VolumePoolService"));
  EXPECT_THAT(services.out, HasSubstr("grpc.health.v1.Health"));
  const CommandResult methods = BufCurl(*server, {"--list-methods"});
  ASSERT_EQ(methods.exit_code, 0) << methods.err;
  for (const char* method :
       {"ListPools", "AddVolume", "RemoveVolume", "Inspect", "ReclaimVolume"}) {
    EXPECT_THAT(methods.out, HasSubstr(absl::StrCat(
                                 "groove.v1.VolumePoolService/", method)));
  }

  // The health service's schema comes from reflection as well.
  const CommandResult health =
      BufCurl(*server, {"-d", "{}"}, "/grpc.health.v1.Health/Check");
  ASSERT_EQ(health.exit_code, 0) << health.err;
  EXPECT_THAT(health.out, HasSubstr("\"status\": \"SERVING\""));

  // AddVolume with JSON (bytes are base64: "aGk=" is "hi").
  const CommandResult added =
      BufCurl(*server, {"-d", R"({"pool": "a", "count": 2, "info": "aGk="})"},
              "/groove.v1.VolumePoolService/AddVolume");
  ASSERT_EQ(added.exit_code, 0) << added.err;
  EXPECT_THAT(added.out, HasSubstr("\"volumeIndices\""));
  EXPECT_THAT(added.out, HasSubstr("\"volumesMapped\": \"2\""));

  // Inspect sees them, with their info.
  const CommandResult inspected =
      BufCurl(*server, {"-d", R"({"pool": "a", "includeVolumes": true})"},
              "/groove.v1.VolumePoolService/Inspect");
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_THAT(inspected.out, HasSubstr("\"volumesMapped\": \"2\""));
  EXPECT_THAT(inspected.out, HasSubstr("\"info\": \"aGk=\""));

  // An error arrives with its code.
  const CommandResult missing = BufCurl(*server, {"-d", R"({"pool": "nope"})"},
                                        "/groove.v1.VolumePoolService/Inspect");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.out + missing.err, HasSubstr("not_found"));

  // And the stubs agree that buf curl really added the volumes.
  auto stub = server->Stub();
  const Snapshot a = TakeSnapshot(*stub, "a");
  EXPECT_THAT(Indices(a), ElementsAre(0, 1));
  EXPECT_EQ(a.volumes[0].info(), "hi");
}

TEST(ServerToolsTest, MetricsPassPromtoolAndCountEverything) {
  ASSERT_TRUE(Executable(GROOVE_PROMTOOL_BIN))
      << "promtool is missing: run script/bootstrap";
  TempDir dir;
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 3), &added).ok());
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(*stub, "a", 1, &removed).ok());
  EXPECT_EQ(Add(*stub, AddRequest("a", 0), &added).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Add(*stub, AddRequest("nope", 1), &added).error_code(),
            grpc::StatusCode::NOT_FOUND);

  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();

  const CommandResult lint =
      RunCommand({GROOVE_PROMTOOL_BIN, "check", "metrics"}, *scrape);
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err << "\n" << *scrape;
  EXPECT_EQ(lint.out + lint.err, "") << "promtool found problems";

  // Pool gauges, read from the pool at scrape time.
  const std::string& m = *scrape;
  EXPECT_EQ(MetricValue(m, R"(groove_pool_volumes{pool="a",state="empty"})"),
            "2");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_volumes{pool="a",state="in_use"})"),
            "0");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_volumes{pool="b",state="empty"})"),
            "0");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_max_volumes{pool="a"})"), "16");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_volume_size_bytes{pool="b"})"),
            "65536");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_capacity_bytes{pool="a"})"), "8192");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_empty_bytes{pool="a"})"), "8192");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_volumes_added_total{pool="a"})"),
            "3");
  EXPECT_EQ(MetricValue(m, R"(groove_pool_volumes_removed_total{pool="a"})"),
            "1");
  // The remove's punch worked: nothing is held back.
  EXPECT_EQ(
      MetricValue(m, R"(groove_pool_volumes_not_given_back_total{pool="a"})"),
      "0");
  EXPECT_EQ(
      MetricValue(
          m,
          R"(groove_pool_info{backing="normal",page_size_bytes="4096",pool="a"})"),
      "1");
  // Errors by pool, op and code; the unknown pool has no pool series.
  EXPECT_EQ(
      MetricValue(
          m,
          R"(groove_pool_errors_total{code="INVALID_ARGUMENT",op="add",pool="a"})"),
      "1");
  EXPECT_EQ(
      MetricValue(
          m, R"(groove_pool_errors_total{code="NOT_FOUND",op="add",pool="a"})"),
      "0");
  // Per RPC: counts by code, and the latency histogram.
  auto series = [](const char* code, const char* method) {
    return HandledSeries(method, code);
  };
  EXPECT_EQ(MetricValue(m, series("OK", "AddVolume")), "1");
  EXPECT_EQ(MetricValue(m, series("INVALID_ARGUMENT", "AddVolume")), "1");
  EXPECT_EQ(MetricValue(m, series("NOT_FOUND", "AddVolume")), "1");
  EXPECT_EQ(MetricValue(m, series("OK", "RemoveVolume")), "1");
  EXPECT_EQ(MetricValue(m, series("OK", "Inspect")), "0");
  EXPECT_EQ(
      MetricValue(
          m,
          R"(grpc_server_handling_seconds_count{grpc_method="AddVolume",grpc_service="groove.v1.VolumePoolService"})"),
      "3");
  EXPECT_THAT(
      m,
      HasSubstr(
          R"(grpc_server_handling_seconds_bucket{grpc_method="AddVolume",grpc_service="groove.v1.VolumePoolService",le="+Inf"} 3)"));
  // The process.
  for (const char* name : {"process_resident_memory_bytes ",
                           "process_cpu_seconds_total ", "process_open_fds ",
                           "process_max_fds ", "process_start_time_seconds "}) {
    EXPECT_THAT(m, HasSubstr(absl::StrCat("\n", name))) << name;
  }
  double fds = 0;
  ASSERT_TRUE(absl::SimpleAtod(MetricValue(m, "process_open_fds"), &fds));
  EXPECT_GT(fds, 3);
}

// PrometheusValue returns the first sample value of an instant query's
// result ("" when the result is empty or the query failed).
std::string PrometheusValue(const std::string& address,
                            const std::string& query_escaped) {
  absl::StatusOr<std::string> body =
      HttpGet(address, "/api/v1/query?query=" + query_escaped);
  if (!body.ok()) return "";
  static const std::regex value(R"re("value":\[[0-9.e+]+,"([^"]*)"\])re");
  std::smatch match;
  if (!std::regex_search(*body, match, value)) return "";
  return match[1];
}

// ConnectAndStall opens a connection to the IPv4 `host_port` and sends
// the start of a request it never finishes. Returns the socket (reads time
// out after `timeout`), or an error.
absl::StatusOr<int> ConnectAndStall(const std::string& host_port,
                                    absl::Duration timeout) {
  absl::StatusOr<int> fd = ConnectIpv4(host_port, timeout);
  if (!fd.ok()) return fd;
  const char partial[] = "GET /metrics HTTP/1.1\r\n";
  if (send(*fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL) !=
      static_cast<ssize_t>(sizeof(partial) - 1)) {
    const std::string error = std::strerror(errno);
    close(*fd);
    return absl::UnavailableError(absl::StrCat("send: ", error));
  }
  return fd;
}

// Clients that connect to /metrics and stall (a half-open peer, a port
// scanner, a slow client) each hold one of the endpoint's threads until
// its request timeout drops them. With every thread held and one more
// stalled connection queued ahead of it, a scrape still completes within
// Prometheus' default scrape timeout, 10 s (deploy/prometheus's too);
// with CivetWeb's default request timeout (30 s) it failed, and the
// target read as down.
TEST(ServerToolsTest, StalledMetricsConnectionsDoNotFailAScrape) {
  TempDir dir;
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  constexpr absl::Duration kScrapeTimeout = absl::Seconds(10);
  static_assert(server::VolumeServer::kMetricsRequestTimeout < kScrapeTimeout);
  std::vector<int> stalled;
  for (int i = 0; i < server::VolumeServer::kMetricsThreads + 1; ++i) {
    absl::StatusOr<int> fd =
        ConnectAndStall(server->metrics_address(), 2 * kScrapeTimeout);
    ASSERT_TRUE(fd.ok()) << fd.status();
    stalled.push_back(*fd);
  }
  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics", kScrapeTimeout);
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_THAT(scrape.value_or(""), HasSubstr("groove_pool_volumes{"));
  // Each stalled connection was dropped by the server (end of file, or a
  // response refusing it), not left open.
  for (int fd : stalled) {
    char buf[512];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    }
    EXPECT_EQ(n, 0) << "still open: " << std::strerror(errno);
    close(fd);
  }
  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerToolsTest, PrometheusScrapesPoolVolumes) {
  ASSERT_TRUE(Executable(GROOVE_PROMETHEUS_BIN))
      << "prometheus is missing: run script/bootstrap";
  TempDir dir;
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 5), &added).ok());

  const std::string config = dir.path() + "/prometheus.yml";
  std::ofstream(config) << "global:\n"
                           "  scrape_interval: 1s\n"
                           "  evaluation_interval: 1s\n"
                           "scrape_configs:\n"
                           "  - job_name: groove\n"
                           "    static_configs:\n"
                           "      - targets: ['"
                        << server->metrics_address() << "']\n";
  // Prometheus cannot report a port it picked: take a free one.
  const std::string web = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  BackgroundProcess prometheus(
      {GROOVE_PROMETHEUS_BIN, "--config.file=" + config,
       "--storage.tsdb.path=" + dir.path() + "/tsdb",
       "--web.listen-address=" + web, "--log.level=warn"},
      dir.path() + "/prometheus.log");

  // Prometheus scrapes on its own schedule and offers no event to wait
  // on: poll its query API (every 200 ms, for at most 60 s).
  const std::string query =
      "groove_pool_volumes%7Bpool%3D%22a%22%2Cstate%3D%22empty%22%7D";
  std::string value;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline && prometheus.Running()) {
    value = PrometheusValue(web, query);
    if (value == "5") break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  std::ifstream log(prometheus.log_path());
  std::string log_text((std::istreambuf_iterator<char>(log)),
                       std::istreambuf_iterator<char>());
  ASSERT_EQ(value, "5") << "prometheus log:\n" << log_text;

  // A change shows up at a later scrape.
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(*stub, "a", 2, &removed).ok());
  while (absl::Now() < deadline && value != "3") {
    absl::SleepFor(absl::Milliseconds(200));
    value = PrometheusValue(web, query);
  }
  EXPECT_EQ(value, "3");
  EXPECT_EQ(PrometheusValue(web, "up%7Bjob%3D%22groove%22%7D"), "1");
}

// Restart: the pools and their volumes come back.

void ExpectSameVolumes(const Snapshot& before, const Snapshot& after) {
  EXPECT_EQ(after.summary.volumes_mapped(), before.summary.volumes_mapped());
  EXPECT_EQ(after.summary.volumes_empty(), before.summary.volumes_empty());
  EXPECT_EQ(after.summary.capacity_bytes(), before.summary.capacity_bytes());
  ASSERT_EQ(after.volumes.size(), before.volumes.size())
      << "before " << before.DebugString() << "\nafter " << after.DebugString();
  for (size_t i = 0; i < before.volumes.size(); ++i) {
    EXPECT_EQ(after.volumes[i].index(), before.volumes[i].index());
    EXPECT_EQ(after.volumes[i].state(), before.volumes[i].state());
    EXPECT_EQ(after.volumes[i].info(), before.volumes[i].info());
  }
}

// Populate gives pool a volumes {0, 1, 2, 10} and pool b volume {0}.
void Populate(Stub& stub) {
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(stub, AddRequest("a", 3, "keep-me"), &added).ok());
  v1::AddVolumeRequest at_nine = AddRequest("a", 2, "nine");
  at_nine.set_first_index(9);
  ASSERT_TRUE(Add(stub, at_nine, &added).ok());
  ASSERT_TRUE(Add(stub, AddRequest("b", 1, "bee"), &added).ok());
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(stub, "a", 1, &removed).ok());  // 9, the top
  ASSERT_EQ(removed.volumes(0).index(), 9u);
}

// A flood of adds and removes is logged up to the budget and counted
// beyond it: the log's add and remove lines plus the counts of its
// log_lines_suppressed lines are the calls made, whatever seconds they
// fell in.
TEST(ServerLogTest, AddsBeyondTheLineBudgetAreCountedNotLost) {
  TempDir dir;
  std::vector<std::string> args = TwoPools(dir);
  args.push_back("--log_routine_lines_per_second=2");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  constexpr uint64_t kPairs = 20;  // pool a holds 16 volumes at most
  v1::AddVolumeResponse added;
  v1::RemoveVolumeResponse removed;
  for (uint64_t i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(Add(*stub, AddRequest("a", 1), &added).ok()) << i;
    ASSERT_TRUE(Remove(*stub, "a", 1, &removed).ok()) << i;
  }
  // Every call is done: the metric already counts every refused line.
  absl::StatusOr<std::string> metrics =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(server->Stop(), 0);
  ASSERT_TRUE(server->WaitForLog("event=stopped").has_value());
  const uint64_t written =
      server->LogCount({"event=add "}) + server->LogCount({"event=remove "});
  const LogTally tally = TallyLog(server->LogLines());
  const uint64_t suppressed = tally.suppressed.count("routine") != 0
                                  ? tally.suppressed.at("routine")
                                  : 0;
  EXPECT_GE(written, 1u) << server->LogText();
  EXPECT_GT(suppressed, 0u) << server->LogText();
  EXPECT_EQ(written + suppressed, 2 * kPairs) << server->LogText();
  EXPECT_EQ(MetricValue(*metrics,
                        R"(groove_log_lines_suppressed_total{kind="routine"})"),
            absl::StrCat(suppressed));
}

// A client that loops on calls refused for its own doing (a pool that does
// not exist, a missing argument) gets a line per call only up to
// --log_refusal_lines_per_second (default 100) in each second: the rest are
// counted, in log_lines_suppressed kind=refusal lines and in the metric,
// while the call metrics count every call. The server faults among them
// (DATA_LOSS: a quarantined pool) are never suppressed. Holds whatever
// seconds the burst straddles (ExpectRefusalLinesWithinBudget).
TEST(ServerLogTest, RefusalsBeyondTheirBudgetAreCountedNotWritten) {
  TempDir dir;
  {
    auto first = ServerProcess::Start(TwoPools(dir));
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first->Stop(), 0);
  }
  ASSERT_NO_FATAL_FAILURE(CorruptPoolMagic(dir, "b"));
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->WaitForLog("event=pool_quarantined pool=b").has_value());
  auto stub = server->Stub();
  constexpr uint64_t kRefusals = 1000;  // >> the default budget of 100
  constexpr uint64_t kFaultEvery = 50;
  uint64_t faults = 0;
  v1::InspectRequest missing;
  missing.set_pool("no-such-pool");
  v1::InspectRequest quarantined;
  quarantined.set_pool("b");
  v1::InspectResponse inspected;
  v1::ReclaimVolumeResponse reclaimed;
  const std::string metrics =
      RunRefusalBurst(*server, kRefusals, 100, [&](uint64_t i) {
        if (i % kFaultEvery == kFaultEvery / 2) {
          ASSERT_EQ(Inspect(*stub, quarantined, &inspected).error_code(),
                    grpc::StatusCode::DATA_LOSS);
          ++faults;
        }
        if (i % 2 == 0) {
          ASSERT_EQ(Inspect(*stub, missing, &inspected).error_code(),
                    grpc::StatusCode::NOT_FOUND);
        } else {
          // No index: refused before the pool is touched.
          ASSERT_EQ(Reclaim(*stub, "a", std::nullopt, &reclaimed).error_code(),
                    grpc::StatusCode::INVALID_ARGUMENT);
        }
      });
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(TallyLog(server->LogLines()).fault_lines, faults)
      << server->LogText();
  EXPECT_EQ(server->LogCount(
                {"level=error", "event=rpc_error", "code=DATA_LOSS", "pool=-"}),
            faults);
  auto handled = [&](const char* code, const char* method) {
    return MetricValue(metrics, HandledSeries(method, code));
  };
  EXPECT_EQ(handled("NOT_FOUND", "Inspect"), absl::StrCat(kRefusals / 2));
  EXPECT_EQ(handled("INVALID_ARGUMENT", "ReclaimVolume"),
            absl::StrCat(kRefusals / 2));
  EXPECT_EQ(handled("DATA_LOSS", "Inspect"), absl::StrCat(faults));
  EXPECT_EQ(
      MetricValue(
          metrics,
          R"(groove_pool_errors_total{code="INVALID_ARGUMENT",op="reclaim",pool="a"})"),
      absl::StrCat(kRefusals / 2));
}

// With --log_refusal_lines_per_second=0 every refusal has its line, and
// nothing is counted as suppressed.
TEST(ServerLogTest, ARefusalBudgetOfZeroWritesEveryLine) {
  TempDir dir;
  std::vector<std::string> args = TwoPools(dir);
  args.push_back("--log_refusal_lines_per_second=0");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::InspectRequest missing;
  missing.set_pool("no-such-pool");
  v1::InspectResponse inspected;
  RunRefusalBurst(*server, 300, 0, [&](uint64_t) {
    ASSERT_EQ(Inspect(*stub, missing, &inspected).error_code(),
              grpc::StatusCode::NOT_FOUND);
  });
}

// With --log_flush_interval=0 (no batching) the counts of suppressed
// lines still reach the log within a second of a burst that ends in
// silence. Before, nothing wrote them until the next line of the log,
// here the shutdown's: the log said nothing of the burst's last second
// for as long as the server stayed quiet.
TEST(ServerLogTest, SuppressedLinesAreReportedWithoutBatchingToo) {
  TempDir dir;
  std::vector<std::string> args = TwoPools(dir);
  args.push_back("--log_flush_interval=0");
  args.push_back("--log_refusal_lines_per_second=5");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::InspectRequest missing;
  missing.set_pool("no-such-pool");
  v1::InspectResponse inspected;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(Inspect(*stub, missing, &inspected).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  // Every call is done: the metric counts every suppressed line.
  absl::StatusOr<std::string> metrics =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  uint64_t suppressed = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      MetricValue(*metrics,
                  R"(groove_log_lines_suppressed_total{kind="refusal"})"),
      &suppressed));
  ASSERT_GT(suppressed, 0u);  // 100 calls, at most 5 lines a second
  // The server is quiet from here on, until the test stops it.
  EXPECT_TRUE(server->WaitForLogLines(
      [&](const std::vector<std::string>& lines) {
        const LogTally tally = TallyLog(lines);
        return tally.suppressed.count("refusal") > 0 &&
               tally.suppressed.at("refusal") == suppressed;
      },
      absl::Seconds(10)))
      << "suppressed " << suppressed << "\n"
      << server->LogText();
  EXPECT_EQ(server->Stop(), 0);
}

// ---- A volume quarantined by RemoveVolume -----------------------------------

// StartWithCorruptVolume1 starts a server whose pool "a" holds volumes 0,
// 1 and 2 (0 on top of the stack, then 1) with volume 1's magic corrupt.
std::unique_ptr<ServerProcess> StartWithCorruptVolume1(const TempDir& dir) {
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16"});
  if (server == nullptr) return nullptr;
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  EXPECT_TRUE(Add(*stub, AddRequest("a", 3), &added).ok());
  EXPECT_THAT(added.volume_indices(), ::testing::ElementsAre(0, 1, 2));
  CorruptMagic(dir.path(), "a", 1);
  return server;
}

// CorruptVolume1Test runs each test against StartWithCorruptVolume1's
// server, in dir_.
class CorruptVolume1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartWithCorruptVolume1(dir_);
    ASSERT_NE(server_, nullptr);
    stub_ = server_->Stub();
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Stub> stub_;
};

class ServerQuarantineTest : public CorruptVolume1Test {};
class ServerReclaimTest : public CorruptVolume1Test {};

// A RemoveVolume that meets a corrupt header puts back the volume it
// popped before it: the counters (Inspect and /metrics) then say exactly
// what they said before, but for the one quarantined volume. (Before the
// fix the put-back counted as an add, after the pop counted a remove.)
TEST_F(ServerQuarantineTest, AFailedRemoveChangesNoCounterButQuarantined) {
  const v1::PoolCounters before = TakeSnapshot(*stub_, "a").summary.counters();
  EXPECT_EQ(before.volumes_added(), 3u);

  v1::RemoveVolumeResponse removed;
  const grpc::Status status = Remove(*stub_, "a", 3, &removed);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS)
      << status.error_message();

  const Snapshot after = TakeSnapshot(*stub_, "a");
  v1::PoolCounters expected = before;
  expected.set_volumes_quarantined(1);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      after.summary.counters(), expected))
      << after.summary.counters().ShortDebugString();
  EXPECT_EQ(after.summary.volumes_empty(), 2u);  // 0 and 2
  EXPECT_EQ(after.summary.volumes_mapped(), 3u);
  absl::StatusOr<std::string> m =
      HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(MetricValue(*m, R"(groove_pool_volumes_added_total{pool="a"})"),
            "3");
  EXPECT_EQ(MetricValue(*m, R"(groove_pool_volumes_removed_total{pool="a"})"),
            "0");
  EXPECT_EQ(
      MetricValue(*m, R"(groove_pool_volumes_quarantined_total{pool="a"})"),
      "1");
  EXPECT_EQ(MetricValue(*m, R"(groove_pool_volumes{pool="a",state="empty"})"),
            "2");
  EXPECT_EQ(server_->Stop(), 0);
}

// The DATA_LOSS of a remove that meets a corrupt header names the volume
// and the header field, as Inspect does; once only the quarantined volume
// is left, FAILED_PRECONDITION counts it apart from volumes in use (which a
// release could bring back), and does not tell the caller to release it.
TEST_F(ServerQuarantineTest, RemoveSaysWhatIsWrongAndCountsQuarantinedApart) {
  v1::RemoveVolumeResponse removed;
  grpc::Status status = Remove(*stub_, "a", 3, &removed);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat(
                  "remove volumes from pool 'a': volume 1, popped off the "
                  "stack, is not a sound empty volume (header magic is ",
                  kGarbageMagic, ", want 0x")));
  EXPECT_THAT(status.error_message(),
              HasSubstr("it is quarantined: off the stack, counted in "
                        "volumes_in_quarantine and left as found, for "
                        "inspection; ReclaimVolume of index 1 frees it"));
  EXPECT_THAT(status.error_message(),
              HasSubstr("the 1 volume popped before it was put back"));
  const Snapshot after = TakeSnapshot(*stub_, "a");
  ASSERT_EQ(after.volumes.size(), 3u);
  EXPECT_EQ(after.volumes[1].state(), v1::VOLUME_STATE_CORRUPT);
  EXPECT_THAT(after.volumes[1].corruption(),
              HasSubstr(absl::StrCat("header magic is ", kGarbageMagic)));

  ASSERT_TRUE(Remove(*stub_, "a", 5, &removed).ok());  // 0 and 2
  EXPECT_EQ(removed.volumes_size(), 2);
  status = Remove(*stub_, "a", 5, &removed);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(),
              HasSubstr("pool 'a' has no empty volume to remove (1 mapped: 0 "
                        "in use, 1 quarantined"));
  EXPECT_THAT(
      status.error_message(),
      ::testing::EndsWith("; reclaim the quarantined ones or add more"));
  EXPECT_THAT(status.error_message(),
              ::testing::Not(HasSubstr("release volumes")));
  EXPECT_EQ(server_->Stop(), 0);
}

// CallWithItsDeadlinePassed sends `request` to `method` (its path,
// "/groove.v1.VolumePoolService/RemoveVolume") of the server at
// `address` (plaintext HTTP/2) as a call whose deadline passes as it
// arrives: `grpc-timeout: 0n`, sent with nghttp (Debian nghttp2-client),
// since gRPC's own clients fail such a call before sending it. gRPC sets
// the call's deadline to its arrival and still hands the call to its
// handler. Returns the grpc-status the client received (gRPC answers its
// own DEADLINE_EXCEEDED, whatever the handler did), or an error carrying
// nghttp's output when it printed none.
inline absl::StatusOr<int> CallWithItsDeadlinePassed(
    const std::string& address, absl::string_view method,
    const google::protobuf::Message& request) {
  const std::string message = request.SerializeAsString();
  std::string framed(5, '\0');  // not compressed, then the length (BE)
  for (int i = 0; i < 4; ++i) {
    framed[1 + i] = static_cast<char>((message.size() >> (8 * (3 - i))) & 0xff);
  }
  framed += message;
  const CommandResult r = RunCommand(
      {GROOVE_NGHTTP_BIN, "-v", "-H", ":method: POST", "-H",
       "content-type: application/grpc", "-H", "te: trailers", "-H",
       "grpc-timeout: 0n", "-d", "-", absl::StrCat("http://", address, method)},
      framed, absl::Seconds(30));
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    const size_t at = line.find("grpc-status: ");
    int code = 0;
    if (at != absl::string_view::npos &&
        absl::SimpleAtoi(line.substr(at + 13), &code)) {
      return code;
    }
  }
  return absl::InternalError(
      absl::StrCat("nghttp printed no grpc-status (exit ", r.exit_code,
                   "): ", r.out, r.err));
}

// ---- ReclaimVolume: freeing a quarantined volume ----------------------------

// QuarantineVolume1 has a RemoveVolume of pool "a" (as StartWithCorruptVolume1
// left it) pop volume 0, then the corrupt volume 1: volume 1 is quarantined,
// 0 and 2 are empty.
void QuarantineVolume1(Stub& stub) {
  v1::RemoveVolumeResponse removed;
  const grpc::Status status = Remove(stub, "a", 3, &removed);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS)
      << status.error_message();
  const Snapshot quarantined = TakeSnapshot(stub, "a");
  ASSERT_EQ(quarantined.summary.volumes_in_quarantine(), 1u);
  ASSERT_EQ(quarantined.volumes.size(), 3u);
  ASSERT_EQ(quarantined.volumes[1].state(), v1::VOLUME_STATE_CORRUPT);
}

// A reclaimed volume leaves the pool (Inspect, volumes_in_quarantine,
// volumes_mapped) and its index can be added again; nothing else changes,
// and a repeat of the reclaim is refused, changing nothing.
TEST_F(ServerReclaimTest, AReclaimedVolumeLeavesThePoolAndItsIndexIsFree) {
  ASSERT_NO_FATAL_FAILURE(QuarantineVolume1(*stub_));
  const Snapshot before = TakeSnapshot(*stub_, "a");

  v1::ReclaimVolumeResponse reclaimed;
  const grpc::Status status = Reclaim(*stub_, "a", 1, &reclaimed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reclaimed.index(), 1u);
  EXPECT_THAT(reclaimed.corruption(),
              HasSubstr(absl::StrCat("header magic is ", kGarbageMagic)));
  EXPECT_EQ(reclaimed.summary().volumes_in_quarantine(), 0u);
  EXPECT_EQ(reclaimed.summary().volumes_reclaimed(), 1u);
  EXPECT_EQ(reclaimed.summary().volumes_mapped(), 2u);

  const Snapshot after = TakeSnapshot(*stub_, "a");
  EXPECT_THAT(Indices(after), ElementsAre(0, 2)) << after.DebugString();
  EXPECT_EQ(after.summary.volumes_in_quarantine(), 0u);
  EXPECT_EQ(after.summary.volumes_in_use(), 0u);
  EXPECT_EQ(after.summary.volumes_empty(), 2u);
  EXPECT_EQ(after.summary.capacity_bytes(), 2u * 4096);
  // Neither an add nor a remove: the operation counters are as they were.
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      after.summary.counters(), before.summary.counters()))
      << after.summary.counters().ShortDebugString();

  // Again: the index is free now, so the repeat is refused and harmless.
  v1::ReclaimVolumeResponse again;
  const grpc::Status repeat = Reclaim(*stub_, "a", 1, &again);
  EXPECT_EQ(repeat.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << repeat.error_message();
  EXPECT_THAT(repeat.error_message(), HasSubstr("index 1 holds no volume"));
  EXPECT_EQ(TakeSnapshot(*stub_, "a"), after);

  // The index can be added again, and the pool is sound.
  v1::AddVolumeRequest at_one = AddRequest("a", 1, "again");
  at_one.set_first_index(1);
  v1::AddVolumeResponse added;
  const grpc::Status add = Add(*stub_, at_one, &added);
  ASSERT_TRUE(add.ok()) << add.error_message();
  EXPECT_THAT(added.volume_indices(), ElementsAre(1));
  const Snapshot readded = TakeSnapshot(*stub_, "a");
  ASSERT_EQ(readded.volumes.size(), 3u);
  EXPECT_EQ(readded.volumes[1].state(), v1::VOLUME_STATE_EMPTY);
  EXPECT_EQ(readded.volumes[1].info(), "again");
  ExpectPoolVerifies(*stub_, "a", 3);
  EXPECT_EQ(server_->Stop(), 0);
}

// /metrics shows the quarantine and the reclaim: the gauge of volumes in
// quarantine falls from 1 to 0 and the reclaim counter rises from 0 to 1;
// the log has one warn line naming pool, index and corruption.
TEST_F(ServerReclaimTest, MetricsAndTheLogShowTheReclaim) {
  const std::string in_quarantine =
      R"(groove_pool_volumes_in_quarantine{pool="a"})";
  const std::string reclaimed_total =
      R"(groove_pool_volumes_reclaimed_total{pool="a"})";
  const std::string handled_ok =
      R"(grpc_server_handled_total{grpc_code="OK",grpc_method="ReclaimVolume",grpc_service="groove.v1.VolumePoolService"})";
  absl::StatusOr<std::string> m =
      HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(MetricValue(*m, in_quarantine), "0");
  EXPECT_EQ(MetricValue(*m, reclaimed_total), "0");
  EXPECT_EQ(MetricValue(*m, handled_ok), "0");

  ASSERT_NO_FATAL_FAILURE(QuarantineVolume1(*stub_));
  m = HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(MetricValue(*m, in_quarantine), "1");
  EXPECT_EQ(MetricValue(*m, reclaimed_total), "0");

  v1::ReclaimVolumeResponse reclaimed;
  ASSERT_TRUE(Reclaim(*stub_, "a", 1, &reclaimed).ok());
  m = HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(MetricValue(*m, in_quarantine), "0");
  EXPECT_EQ(MetricValue(*m, reclaimed_total), "1");
  EXPECT_EQ(MetricValue(*m, handled_ok), "1");
  EXPECT_EQ(MetricValue(*m, R"(groove_pool_volumes{pool="a",state="in_use"})"),
            "0");

  const std::optional<std::string> line = server_->WaitForLog("event=reclaim ");
  ASSERT_TRUE(line.has_value()) << server_->LogText();
  EXPECT_THAT(*line, HasSubstr("level=warn "));
  EXPECT_THAT(*line, HasSubstr(" pool=a index=1 corruption="));
  EXPECT_THAT(*line, HasSubstr(kGarbageMagic));
  EXPECT_EQ(server_->Stop(), 0);
  EXPECT_EQ(server_->LogCount({"event=reclaim "}), 1u);
}

// Every refused reclaim answers its code, names the pool and the index
// where it has them, and leaves the pool exactly as it was: an unknown
// pool, an index out of range, no index, and indices that hold no
// quarantined volume (free, empty, in use).
TEST_F(ServerReclaimTest, RefusedReclaimsChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(QuarantineVolume1(*stub_));
  // A data-plane process holds volume 0 (the top of the stack).
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir_.path(), "a");
  ASSERT_TRUE(join.ok()) << join.status();
  VolumeHeader* held = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&held), PoolError::kSuccess);
  const Snapshot before = TakeSnapshot(*stub_, "a");
  ASSERT_EQ(before.volumes[0].state(), v1::VOLUME_STATE_IN_USE);
  ASSERT_EQ(before.volumes[2].state(), v1::VOLUME_STATE_EMPTY);

  struct Refusal {
    std::string pool;
    std::optional<uint64_t> index;
    grpc::StatusCode code;
    std::vector<std::string> message_has;
  };
  const std::vector<Refusal> refusals = {
      {"nope", 1, grpc::StatusCode::NOT_FOUND, {"no pool named 'nope'"}},
      {"a",
       16,
       grpc::StatusCode::OUT_OF_RANGE,
       {"reclaim volume 16 of pool 'a': index 16 is not below max_volumes 16"}},
      {"a",
       std::nullopt,
       grpc::StatusCode::INVALID_ARGUMENT,
       {"pool 'a'", "index is unset"}},
      {"a",
       5,
       grpc::StatusCode::FAILED_PRECONDITION,
       {"reclaim volume 5 of pool 'a': index 5 holds no volume"}},
      {"a",
       2,
       grpc::StatusCode::FAILED_PRECONDITION,
       {"reclaim volume 2 of pool 'a': index 2 holds an empty volume"}},
      {"a",
       0,
       grpc::StatusCode::FAILED_PRECONDITION,
       {"reclaim volume 0 of pool 'a': index 0 holds a volume in use"}},
  };
  for (const Refusal& r : refusals) {
    SCOPED_TRACE(absl::StrCat(r.pool, " ", r.index.value_or(999)));
    v1::ReclaimVolumeResponse response;
    const grpc::Status status = Reclaim(*stub_, r.pool, r.index, &response);
    EXPECT_EQ(status.error_code(), r.code) << status.error_message();
    for (const std::string& part : r.message_has) {
      EXPECT_THAT(status.error_message(), HasSubstr(part));
    }
    const Snapshot after = TakeSnapshot(*stub_, "a");
    EXPECT_EQ(after, before) << "before " << before.DebugString() << "\nafter "
                             << after.DebugString();
  }
  EXPECT_EQ((*join)->pool().Release(held), PoolError::kSuccess);
  EXPECT_EQ(server_->Stop(), 0);
}

// A RemoveVolume, ReclaimVolume or AddVolume whose deadline has passed
// when the server comes to start it changes nothing: its answer can reach
// nobody, so the volumes it removed (their info with them) or the quarantine it
// lifted would be lost to every client. It is refused with
// DEADLINE_EXCEEDED, saying nothing was changed, logged and counted as
// such, and the pool is exactly as it was. (Until the nineteenth session
// each such call ran and was counted OK while its client saw
// DEADLINE_EXCEEDED: the pool lost a volume per remove.) gRPC hands every
// call whose request arrived with its headers to its handler; one it
// dropped before (a request read apart from its headers) reaches no
// handler, changing nothing either, so the counts below are the calls the
// handlers refused, at least one.
TEST_F(ServerReclaimTest,
       ChangesWhoseDeadlinePassedBeforeTheyStartChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(QuarantineVolume1(*stub_));
  const Snapshot before = TakeSnapshot(*stub_, "a");
  ASSERT_EQ(before.summary.volumes_empty(), 2u);
  v1::RemoveVolumeRequest remove;
  remove.set_pool("a");
  remove.set_count(1);
  v1::ReclaimVolumeRequest reclaim;
  reclaim.set_pool("a");
  reclaim.set_index(1);
  const v1::AddVolumeRequest add = AddRequest("a", 1, "late");
  const std::vector<std::pair<std::string, const google::protobuf::Message*>>
      calls = {{"RemoveVolume", &remove},
               {"ReclaimVolume", &reclaim},
               {"AddVolume", &add}};
  constexpr int kCalls = 5;
  for (int i = 0; i < kCalls; ++i) {
    for (const auto& [method, request] : calls) {
      absl::StatusOr<int> code = CallWithItsDeadlinePassed(
          server_->grpc_address(),
          absl::StrCat("/groove.v1.VolumePoolService/", method), *request);
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, grpc::StatusCode::DEADLINE_EXCEEDED) << method;
    }
  }
  const Snapshot after = TakeSnapshot(*stub_, "a");
  EXPECT_EQ(after, before) << "before " << before.DebugString() << "\nafter "
                           << after.DebugString();

  absl::StatusOr<std::string> m =
      HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(server_->Stop(), 0);
  for (const auto& [method, request] : calls) {
    SCOPED_TRACE(method);
    // It arrived with its deadline passed, or with less than gRPC's
    // millisecond granularity left: the message says which, and how long
    // it waited here.
    const size_t refused = server_->LogCount(
        {"event=rpc_error", absl::StrCat("method=", method),
         "code=DEADLINE_EXCEEDED",
         "its deadline passed before the server started it (it arrived ",
         " and waited ", "nothing was changed"});
    EXPECT_GE(refused, 1u) << server_->LogText();
    EXPECT_LE(refused, static_cast<size_t>(kCalls));
    EXPECT_EQ(MetricValue(*m, HandledSeries(method, "DEADLINE_EXCEEDED")),
              absl::StrCat(refused));
  }
  EXPECT_EQ(server_->LogCount({"event=reclaim "}), 0u);
  EXPECT_EQ(server_->LogCount({"event=remove "}), 0u);
  EXPECT_EQ(server_->LogCount({"event=add ", "count=1 "}), 0u);  // 3: setup
}

// A quarantine is kept across a restart of the server (volumes_in_quarantine
// is counted from the slots, not from the counters recovery resets), the
// volume can be reclaimed after it, and the reclaim is kept across the next.
TEST_F(ServerReclaimTest, AQuarantineSurvivesARestartAndIsStillReclaimable) {
  ASSERT_NO_FATAL_FAILURE(QuarantineVolume1(*stub_));
  // A clean restart on the same data directory.
  const auto restart = [&] {
    EXPECT_EQ(server_->Stop(), 0);
    server_ = ServerProcess::Start(
        {"--data-dir=" + dir_.path(),
         "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16"});
    ASSERT_NE(server_, nullptr);
    stub_ = server_->Stub();
  };
  ASSERT_NO_FATAL_FAILURE(restart());
  const Snapshot restarted = TakeSnapshot(*stub_, "a");
  EXPECT_EQ(restarted.summary.volumes_in_quarantine(), 1u)
      << restarted.DebugString();
  ASSERT_EQ(restarted.volumes.size(), 3u);
  EXPECT_EQ(restarted.volumes[1].state(), v1::VOLUME_STATE_CORRUPT);
  v1::ReclaimVolumeResponse reclaimed;
  const grpc::Status status = Reclaim(*stub_, "a", 1, &reclaimed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(reclaimed.corruption(), HasSubstr(kGarbageMagic));
  EXPECT_THAT(Indices(TakeSnapshot(*stub_, "a")), ElementsAre(0, 2));

  ASSERT_NO_FATAL_FAILURE(restart());
  const Snapshot after = TakeSnapshot(*stub_, "a");
  EXPECT_THAT(Indices(after), ElementsAre(0, 2));
  EXPECT_EQ(after.summary.volumes_in_quarantine(), 0u);
  EXPECT_EQ(after.summary.volumes_reclaimed(), 1u);
}

TEST(ServerRestartTest, PoolsAndVolumesSurviveACleanRestart) {
  TempDir dir;
  Snapshot a, b;
  {
    // Routine lines are batched; with the longest interval none is due
    // before the shutdown, which must still write every one of them, and
    // before the lines that follow them (the signal's).
    std::vector<std::string> args = TwoPools(dir);
    args.push_back("--log_flush_interval=10s");
    auto server = ServerProcess::Start(args);
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    ASSERT_NO_FATAL_FAILURE(Populate(*stub));
    a = TakeSnapshot(*stub, "a");
    b = TakeSnapshot(*stub, "b");
    EXPECT_THAT(Indices(a), ElementsAre(0, 1, 2, 10));
    EXPECT_EQ(server->Stop(), 0);
    EXPECT_TRUE(server->WaitForLog("event=stopped").has_value());
    EXPECT_EQ(server->LogCount({"event=add "}), 3u) << server->LogText();
    EXPECT_EQ(server->LogCount({"event=remove "}), 1u);
    const std::string log = server->LogText();
    EXPECT_LT(log.rfind("event=add "), log.find("event=signal"));
    EXPECT_LT(log.rfind("event=remove "), log.find("event=signal"));
  }
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->WaitForLog("event=pool_recovered pool=a")
                  .value_or("")
                  .find("volumes_recovered=4") != std::string::npos)
      << server->LogText();
  auto stub = server->Stub();
  ExpectSameVolumes(a, TakeSnapshot(*stub, "a"));
  ExpectSameVolumes(b, TakeSnapshot(*stub, "b"));
  // The restarted server goes on where the last one stopped.
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 1), &added).ok());
  EXPECT_THAT(added.volume_indices(), ElementsAre(3));
  // With the default interval, its line is written while the server runs.
  EXPECT_TRUE(server->WaitForLog("event=add pool=a").has_value())
      << server->LogText();
  ExpectPoolVerifies(*stub, "a", 5);
}

// HealthOf returns the health status the server reports for `service`.
grpc::health::v1::HealthCheckResponse::ServingStatus HealthOf(
    const ServerProcess& server, const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(server.channel());
  grpc::ClientContext context;
  SetDeadline(&context, kRpcTimeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_TRUE(health->Check(&context, request, &response).ok()) << service;
  return response.status();
}

TEST(ServerRestartTest, ACorruptPoolIsQuarantinedAndTheOthersServe) {
  TempDir dir;
  Snapshot a;
  {
    auto server = ServerProcess::Start(TwoPools(dir));
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    ASSERT_NO_FATAL_FAILURE(Populate(*stub));
    a = TakeSnapshot(*stub, "a");
    EXPECT_EQ(server->Stop(), 0);
  }
  ASSERT_NO_FATAL_FAILURE(CorruptPoolMagic(dir, "b"));
  const std::string b_path = dir.path() + "/b.pool";
  std::ifstream before_in(b_path, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(before_in)),
                           std::istreambuf_iterator<char>());

  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr) << "one corrupt pool must not stop the server";
  const std::string logged =
      server->WaitForLog("event=pool_quarantined pool=b").value_or("");
  EXPECT_THAT(logged, HasSubstr("level=error"));
  EXPECT_THAT(logged, HasSubstr("is not a groove-volumed pool"));
  auto stub = server->Stub();

  // Pool a serves as before.
  ExpectSameVolumes(a, TakeSnapshot(*stub, "a"));
  v1::AddVolumeResponse added;
  EXPECT_TRUE(Add(*stub, AddRequest("a", 1), &added).ok());
  // Pool b answers DATA_LOSS, saying it is quarantined and why.
  v1::InspectRequest inspect_b;
  inspect_b.set_pool("b");
  v1::InspectResponse inspected;
  const grpc::Status b_status = Inspect(*stub, inspect_b, &inspected);
  EXPECT_EQ(b_status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(b_status.error_message(), HasSubstr("quarantined"));
  EXPECT_THAT(b_status.error_message(), HasSubstr("move the file aside"));
  v1::AddVolumeResponse not_added;
  EXPECT_EQ(Add(*stub, AddRequest("b", 1), &not_added).error_code(),
            grpc::StatusCode::DATA_LOSS);
  // ListPools serves a and names b as quarantined.
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  ASSERT_EQ(pools.pools_size(), 1);
  EXPECT_EQ(pools.pools(0).name(), "a");
  ASSERT_EQ(pools.quarantined_pools_size(), 1);
  EXPECT_EQ(pools.quarantined_pools(0).name(), "b");
  EXPECT_THAT(pools.quarantined_pools(0).reason(),
              HasSubstr("is not a groove-volumed pool"));
  // Health: the server and pool a serve; pool b does not.
  using Status = grpc::health::v1::HealthCheckResponse;
  EXPECT_EQ(HealthOf(*server, ""), Status::SERVING);
  EXPECT_EQ(HealthOf(*server, "groove.v1.VolumePoolService/a"),
            Status::SERVING);
  EXPECT_EQ(HealthOf(*server, "groove.v1.VolumePoolService/b"),
            Status::NOT_SERVING);
  // Metrics say so.
  absl::StatusOr<std::string> metrics =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("groove_pool_quarantined{pool=\"b\"} 1"));
  // The served pool has the series too, at 0: every configured pool does.
  EXPECT_THAT(*metrics, HasSubstr("groove_pool_quarantined{pool=\"a\"} 0"));
  EXPECT_EQ(server->Stop(), 0);
  // The quarantined pool's file is left exactly as found, for repair.
  std::ifstream after_in(b_path, std::ios::binary);
  const std::string after((std::istreambuf_iterator<char>(after_in)),
                          std::istreambuf_iterator<char>());
  EXPECT_EQ(after, before);
}

TEST(ServerRestartTest, PoolsAndVolumesSurviveSigkill) {
  TempDir dir;
  Snapshot a;
  {
    auto server = ServerProcess::Start(TwoPools(dir));
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    ASSERT_NO_FATAL_FAILURE(Populate(*stub));
    a = TakeSnapshot(*stub, "a");
    server->Kill();
  }
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  ExpectSameVolumes(a, TakeSnapshot(*stub, "a"));
  EXPECT_THAT(server->LogText(), HasSubstr("event=pool_recovered pool=b"));
  EXPECT_THAT(server->LogText(), Not(HasSubstr("event=pool_created")));
}

// A request id is answered after a restart as before it, whether the
// server stopped cleanly or was killed: each add with an id is in its
// pool's request journal, which the next server reads. Before the journal,
// ids lived in memory only and a repeat across a restart added again.
TEST(ServerRestartTest, RequestIdsAreAnsweredAcrossRestartsAndKills) {
  TempDir dir;
  v1::AddVolumeRequest before_stop = AddRequest("a", 2, "before the stop");
  before_stop.set_request_id("123e4567-e89b-42d3-a456-426614174000");
  v1::AddVolumeRequest before_kill = AddRequest("a", 1, "before the kill");
  before_kill.set_request_id("00000000-0000-4000-8000-0000000000aa");
  v1::AddVolumeResponse response;
  {
    auto server = ServerProcess::Start(TwoPools(dir));
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    ASSERT_TRUE(Add(*stub, before_stop, &response).ok());
    EXPECT_THAT(response.volume_indices(), ElementsAre(0, 1));
    EXPECT_EQ(server->Stop(), 0);
  }
  {
    auto server = ServerProcess::Start(TwoPools(dir));
    ASSERT_NE(server, nullptr);
    EXPECT_THAT(server->WaitForLog("event=pool_recovered pool=a").value_or(""),
                HasSubstr("request_ids_recorded=1"))
        << server->LogText();
    auto stub = server->Stub();
    ASSERT_TRUE(Add(*stub, before_stop, &response).ok());
    EXPECT_THAT(response.volume_indices(), ElementsAre(0, 1));
    ASSERT_TRUE(Add(*stub, before_kill, &response).ok());
    EXPECT_THAT(response.volume_indices(), ElementsAre(2));
    EXPECT_EQ(TakeSnapshot(*stub, "a").summary.volumes_mapped(), 3u);
    server->Kill();
  }
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(
      server->WaitForLog("event=request_ids_remembered ids=2 adds_recorded=2")
          .has_value())
      << server->LogText();
  auto stub = server->Stub();
  // Both repeats (one with its hex digits in upper case) are answered,
  // and nothing is added.
  before_stop.set_request_id("123E4567-E89B-42D3-A456-426614174000");
  ASSERT_TRUE(Add(*stub, before_stop, &response).ok());
  EXPECT_THAT(response.volume_indices(), ElementsAre(0, 1));
  ASSERT_TRUE(Add(*stub, before_kill, &response).ok());
  EXPECT_THAT(response.volume_indices(), ElementsAre(2));
  EXPECT_EQ(response.summary().volumes_mapped(), 3u);
  EXPECT_EQ(TakeSnapshot(*stub, "a").summary.volumes_mapped(), 3u);
  // The id with other arguments is refused, naming the first call's.
  before_kill.set_count(2);
  const grpc::Status conflict = Add(*stub, before_kill, &response);
  EXPECT_EQ(conflict.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(conflict.error_message(), HasSubstr("count was 1, is 2 now"));
  // And in another pool: ids are the server's, not a pool's.
  before_kill.set_count(1);
  before_kill.set_pool("b");
  EXPECT_EQ(Add(*stub, before_kill, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(TakeSnapshot(*stub, "a").summary.volumes_mapped(), 3u);
  EXPECT_EQ(TakeSnapshot(*stub, "b").summary.volumes_mapped(), 0u);
}

// A pool that has made adds but whose request journal is gone forgets the
// ids of those adds: a repeat adds again. That is what a container restart
// does to a pool whose data directory is a hugetlbfs mount (a Kubernetes
// hostPath, a docker bind mount) when nothing keeps the journal, which
// then lives in the container's own /dev/shm (docs/DEPLOY.md §3). The
// server used to take the missing file for a new pool's and say nothing;
// it warns now, naming what was lost. A pool without adds (b) has nothing
// to lose and is not warned about.
TEST(ServerRestartTest, AMissingRequestJournalOfAPoolWithAddsIsWarnedAbout) {
  TempDir dir;
  v1::AddVolumeRequest add = AddRequest("a", 1, "before the restart");
  add.set_request_id("00000000-0000-4000-8000-0000000000bb");
  if (auto first = ServerProcess::Start(TwoPools(dir)); first != nullptr) {
    v1::AddVolumeResponse response;
    ASSERT_TRUE(Add(*first->Stub(), add, &response).ok());
    EXPECT_EQ(first->Stop(), 0);
  } else {
    FAIL() << "the first server did not start";
  }
  const std::string journal = dir.path() + "/a.requests";
  ASSERT_EQ(unlink(journal.c_str()), 0) << journal << ": " << strerror(errno);
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  const std::string a =
      server->WaitForLog("event=pool_recovered pool=a").value_or("");
  EXPECT_THAT(a, HasSubstr("level=warn")) << server->LogText();
  EXPECT_THAT(a, HasSubstr("request_ids_recorded=0"));
  EXPECT_THAT(a, HasSubstr("request_journal_reset=\"it was missing"));
  EXPECT_THAT(a, HasSubstr(journal));
  const std::string b =
      server->WaitForLog("event=pool_recovered pool=b").value_or("");
  EXPECT_THAT(b, HasSubstr("level=info")) << server->LogText();
  EXPECT_THAT(b, HasSubstr("request_journal_reset=\"\""));
  EXPECT_EQ(server->Stop(), 0);
}

// A pool dropped from the configuration keeps its files, and with them
// its memory: the server names it at start-up (event=pool_not_configured,
// its files and the bytes they hold) and /metrics exports those bytes
// until the files are deleted. Put back in the configuration, it is served
// with its volumes, and nothing is reported. Before, nothing said so.
TEST(ServerRestartTest,
     APoolDroppedFromTheConfigurationIsReportedWithItsMemory) {
  TempDir dir;
  if (auto first = ServerProcess::Start(TwoPools(dir)); first != nullptr) {
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*first->Stub(), AddRequest("b", 3, "kept"), &added).ok());
    EXPECT_EQ(first->Stop(), 0);
  } else {
    FAIL() << "the first server did not start";
  }
  std::vector<std::string> only_a = TwoPools(dir);
  only_a.pop_back();  // pool b
  auto server = ServerProcess::Start(only_a);
  ASSERT_NE(server, nullptr);
  const std::optional<std::string> line =
      server->WaitForLog("event=pool_not_configured");
  ASSERT_TRUE(line.has_value()) << server->LogText();
  EXPECT_THAT(*line, HasSubstr("level=warn"));
  EXPECT_EQ(LogValue(*line, "pool"), "b") << *line;
  EXPECT_EQ(LogValue(*line, "volumes_mapped"), "3") << *line;
  const std::string store = dir.path() + "/b.volumes";
  EXPECT_EQ(LogValue(*line, "files"),
            absl::StrCat(dir.path(), "/b.pool,", store, ",", dir.path(),
                         "/b.requests"))
      << *line;
  // At least the three 64 KiB volumes' memory.
  uint64_t held = 0;
  ASSERT_TRUE(absl::SimpleAtoi(LogValue(*line, "held_bytes"), &held)) << *line;
  EXPECT_GE(held, 3u * 65536) << *line;
  EXPECT_EQ(server->LogCount({"event=pool_not_configured"}), 1u);
  const std::string series = R"(groove_unconfigured_pool_bytes{pool="b"})";
  absl::StatusOr<std::string> metrics =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(MetricValue(*metrics, series), absl::StrCat(held));
  // Its files deleted, the series leaves at the next scrape.
  for (const char* suffix : {".pool", ".volumes", ".requests"}) {
    const std::string path = absl::StrCat(dir.path(), "/b", suffix);
    ASSERT_EQ(unlink(path.c_str()), 0) << path << ": " << strerror(errno);
  }
  metrics = HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, Not(HasSubstr("groove_unconfigured_pool_bytes{")));
  EXPECT_EQ(server->Stop(), 0);
}

// A pool in the configuration again is served, with its volumes, and not
// reported.
TEST(ServerRestartTest, APoolBackInTheConfigurationIsServedNotReported) {
  TempDir dir;
  std::vector<std::string> only_a = TwoPools(dir);
  only_a.pop_back();
  if (auto first = ServerProcess::Start(TwoPools(dir)); first != nullptr) {
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*first->Stub(), AddRequest("b", 2, "kept"), &added).ok());
    EXPECT_EQ(first->Stop(), 0);
  } else {
    FAIL() << "the first server did not start";
  }
  if (auto without_b = ServerProcess::Start(only_a); without_b != nullptr) {
    EXPECT_TRUE(without_b->WaitForLog("event=pool_not_configured pool=b"))
        << without_b->LogText();
    EXPECT_EQ(without_b->Stop(), 0);
  } else {
    FAIL() << "the server without pool b did not start";
  }
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(TakeSnapshot(*server->Stub(), "b").summary.volumes_mapped(), 2u);
  EXPECT_EQ(server->Stop(), 0);
  EXPECT_EQ(server->LogCount({"event=pool_not_configured"}), 0u)
      << server->LogText();
}

// Two servers with their own data directories (not tmpfs, so `normal`
// stores go to /dev/shm/groove-volumed, which they share) and a pool of
// the same name: the second's start used to cut the first's store to its
// own size, and the first then found its volumes gone.
TEST(ServerRestartTest, ServersWithOtherDataDirectoriesKeepTheirPoolsApart) {
  TempDir first_dir("/tmp");
  TempDir second_dir("/tmp");
  const std::string name = absl::StrCat("samename", getpid());
  struct RemoveStores {
    std::string prefix;
    ~RemoveStores() {
      std::error_code ec;
      for (const auto& entry :
           std::filesystem::directory_iterator("/dev/shm/groove-volumed", ec)) {
        if (entry.path().filename().string().rfind(prefix, 0) == 0) {
          std::filesystem::remove(entry.path(), ec);
        }
      }
    }
  } remove_stores{name + "@"};
  auto args = [&](const TempDir& dir, int max_volumes) {
    return std::vector<std::string>{
        "--data-dir=" + dir.path(),
        absl::StrCat(
            "--pool=name=", name,
            ",backing=normal,volume_size=4KiB,max_volumes=", max_volumes)};
  };
  // The store a pool_created/pool_recovered line names (store=PATH).
  auto store_of = [&](ServerProcess& server, const std::string& event) {
    const std::string line =
        server.WaitForLog(absl::StrCat("event=", event, " pool=", name))
            .value_or("");
    const size_t at = line.find(" store=");
    if (at == std::string::npos) return std::string();
    const size_t from = at + 7;
    return line.substr(from, line.find(' ', from) - from);
  };

  Snapshot first_pool;
  std::string first_store;
  {
    auto first = ServerProcess::Start(args(first_dir, 16));
    ASSERT_NE(first, nullptr);
    first_store = store_of(*first, "pool_created");
    EXPECT_THAT(first_store,
                HasSubstr(absl::StrCat("/dev/shm/groove-volumed/", name, "@")));
    EXPECT_TRUE(std::filesystem::exists(first_store)) << first_store;
    auto stub = first->Stub();
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*stub, AddRequest(name, 3, "first"), &added).ok());
    first_pool = TakeSnapshot(*stub, name);

    // The second starts (creating its pool) while the first runs.
    auto second = ServerProcess::Start(args(second_dir, 32));
    ASSERT_NE(second, nullptr) << "the second server did not start";
    const std::string second_store = store_of(*second, "pool_created");
    EXPECT_THAT(second_store,
                HasSubstr(absl::StrCat("/dev/shm/groove-volumed/", name, "@")));
    EXPECT_NE(second_store, first_store);
    auto second_stub = second->Stub();
    ASSERT_TRUE(Add(*second_stub, AddRequest(name, 1, "second"), &added).ok());
    ExpectPoolVerifies(*second_stub, name, 1);
    EXPECT_EQ(second->Stop(), 0);

    ExpectPoolVerifies(*stub, name, 3);
    ExpectSameVolumes(first_pool, TakeSnapshot(*stub, name));
    EXPECT_EQ(first->Stop(), 0);
  }
  // The first restarts: its pool is recovered, not quarantined.
  auto first = ServerProcess::Start(args(first_dir, 16));
  ASSERT_NE(first, nullptr);
  EXPECT_TRUE(first->WaitForLog("event=pool_recovered pool=" + name)
                  .value_or("")
                  .find("volumes_recovered=3") != std::string::npos)
      << first->LogText();
  EXPECT_EQ(store_of(*first, "pool_recovered"), first_store);
  auto stub = first->Stub();
  ExpectSameVolumes(first_pool, TakeSnapshot(*stub, name));
  ExpectPoolVerifies(*stub, name, 3);
}

}  // namespace
}  // namespace groove::testing
