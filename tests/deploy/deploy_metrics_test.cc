// The Grafana dashboard and the Prometheus alerting rules query only
// metrics that groove-volumed exports: every metric name in their PromQL is
// compared with a live /metrics scrape of the real binary, after an add, a
// remove and a failed call, so every series exists.
//
// The names are read from PromQL by MetricNames (below): it drops string
// literals, label matchers, ranges, grouping lists and $variables, and keeps
// the identifiers that are neither functions nor keywords. The last tests
// show it finds a misspelt metric and that a broken dashboard is rejected.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/server_test_util.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/test_pki.h"
#include "support/tmpfs_mount.h"

#ifndef GROOVE_SOURCE_DIR
#error "GROOVE_SOURCE_DIR must name the source tree"
#endif

namespace groove::testing {
namespace {

using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::IsSupersetOf;

const std::string kDashboard =
    std::string(GROOVE_SOURCE_DIR) + "/deploy/grafana/groove-volumed.json";
const std::string kRules = std::string(GROOVE_SOURCE_DIR) +
                           "/deploy/prometheus/groove-volumed.rules.yml";

// Series that Prometheus itself adds to every target, not the server.
const std::set<std::string> kPrometheusSeries = {"up"};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// MetricNames returns the metric names a PromQL expression selects. A
// Grafana `label_values(SELECTOR, LABEL)` query counts as SELECTOR.
std::set<std::string> MetricNames(std::string expr) {
  static const std::set<std::string> kKeywords = {
      "by",   "without", "on",   "ignoring", "group_left", "group_right",
      "bool", "and",     "or",   "unless",   "offset",     "inf",
      "nan",  "atan2",   "topk", "bottomk"};
  auto erase = [&](const char* pattern) {
    expr = std::regex_replace(expr, std::regex(pattern), " ");
  };
  expr = std::regex_replace(
      expr,
      std::regex(R"(label_values\s*\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\))"),
      "$1");
  erase(R"("(\\.|[^"\\])*")");  // strings (label values)
  erase(R"(\{[^}]*\})");        // label matchers
  erase(R"(\[[^\]]*\])");       // ranges and subqueries
  erase(R"(\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))");
  erase(R"(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)");  // Grafana variables
  std::set<std::string> names;
  auto word = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  for (size_t i = 0; i < expr.size();) {
    const char c = expr[i];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      while (i < expr.size() && (word(expr[i]) || expr[i] == '.')) ++i;
      continue;  // a number (0.99, 1e3)
    }
    if (!word(c)) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < expr.size() && word(expr[end])) ++end;
    const std::string name = expr.substr(i, end - i);
    size_t next = end;
    while (next < expr.size() &&
           std::isspace(static_cast<unsigned char>(expr[next]))) {
      ++next;
    }
    const bool call = next < expr.size() && expr[next] == '(';
    if (!call && !kKeywords.count(name)) names.insert(name);
    i = end;
  }
  return names;
}

// DashboardQueries returns every PromQL query of a Grafana dashboard: each
// "expr" anywhere in it, and the queries of its `query` variables. Fails
// the test when the text is not JSON.
std::vector<std::string> DashboardQueries(const std::string& json) {
  google::protobuf::Struct dashboard;
  const auto status =
      google::protobuf::util::JsonStringToMessage(json, &dashboard);
  EXPECT_TRUE(status.ok()) << "not valid JSON: " << status.ToString();
  std::vector<std::string> queries;
  std::function<void(const google::protobuf::Value&)> walk =
      [&](const google::protobuf::Value& v) {
        if (v.has_struct_value()) {
          const auto& fields = v.struct_value().fields();
          for (const auto& [key, value] : fields) {
            if (key == "expr" && value.has_string_value()) {
              queries.push_back(value.string_value());
            }
            walk(value);
          }
          auto type = fields.find("type");
          auto query = fields.find("query");
          if (type != fields.end() && type->second.string_value() == "query" &&
              query != fields.end()) {
            const auto& q = query->second;
            if (q.has_string_value()) queries.push_back(q.string_value());
            if (q.has_struct_value() &&
                q.struct_value().fields().count("query")) {
              queries.push_back(
                  q.struct_value().fields().at("query").string_value());
            }
          }
        } else if (v.has_list_value()) {
          for (const auto& e : v.list_value().values()) walk(e);
        }
      };
  google::protobuf::Value root;
  *root.mutable_struct_value() = dashboard;
  walk(root);
  return queries;
}

// RuleExpressions returns the `expr` of every rule of a Prometheus rules
// file (plain and block scalars).
std::vector<std::string> RuleExpressions(const std::string& yaml) {
  std::vector<std::string> lines = absl::StrSplit(yaml, '\n');
  std::vector<std::string> exprs;
  static const std::regex kExpr(R"(^(\s*)expr:\s*(.*)$)");
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    if (!std::regex_match(lines[i], m, kExpr)) continue;
    const size_t indent = m[1].length();
    std::string value = m[2];
    if (value == "|" || value == ">" || value == "|-" || value == ">-") {
      value.clear();
      while (i + 1 < lines.size()) {
        const std::string& next = lines[i + 1];
        const size_t first = next.find_first_not_of(' ');
        if (first != std::string::npos && first <= indent) break;
        value += next + "\n";
        ++i;
      }
    }
    exprs.push_back(value);
  }
  return exprs;
}

// ExportedNames returns the sample names of a text exposition.
std::set<std::string> ExportedNames(const std::string& scrape) {
  std::set<std::string> names;
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(std::string(line.substr(0, line.find_first_of("{ "))));
  }
  return names;
}

// Unexported returns the names `queries` select that `exported` lacks.
std::vector<std::string> Unexported(const std::vector<std::string>& queries,
                                    const std::set<std::string>& exported) {
  std::vector<std::string> missing;
  for (const std::string& q : queries) {
    for (const std::string& name : MetricNames(q)) {
      if (!exported.count(name) && !kPrometheusSeries.count(name)) {
        missing.push_back(name + " (in: " + q + ")");
      }
    }
  }
  return missing;
}

// A live scrape of a server whose pool has had an add, a remove and an
// error, shared by the tests below (one server start for the file). It
// serves mutual TLS (test_pki.h), so that the TLS certificate series
// (cert and client_ca) are exported too, and its data directory holds a
// pool of an earlier configuration (groove_unconfigured_pool_bytes).
class DeployMetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const absl::Status pki = MakeTestPki(dir_->path());
    ASSERT_TRUE(pki.ok()) << pki;
    {
      auto earlier = ServerProcess::Start(
          {"--data-dir=" + dir_->path() + "/data",
           "--pool=name=old,backing=normal,volume_size=4KiB,max_volumes=4,"
           "initial_volumes=1"});
      ASSERT_NE(earlier, nullptr);
      EXPECT_EQ(earlier->Stop(), 0);
    }
    server_ = ServerProcess::Start(
                  {"--data-dir=" + dir_->path() + "/data",
                   "--pool=name=a,backing=normal,volume_size=4KiB,"
                   "max_volumes=16",
                   "--tls-cert=" + dir_->path() + "/server.pem",
                   "--tls-key=" + dir_->path() + "/server.key",
                   "--tls-client-ca=" + dir_->path() + "/ca.pem"},
                  absl::Seconds(30),
                  TlsClient(dir_->path(), "ca.pem", "client"), TlsChannelArgs())
                  .release();
    if (server_ == nullptr) return;
    auto stub = server_->Stub();
    v1::AddVolumeResponse added;
    EXPECT_TRUE(Add(*stub, AddRequest("a", 3), &added).ok());
    v1::RemoveVolumeResponse removed;
    EXPECT_TRUE(Remove(*stub, "a", 1, &removed).ok());
    EXPECT_EQ(Add(*stub, AddRequest("a", 0), &added).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    absl::StatusOr<std::string> scrape =
        HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_TRUE(scrape.ok()) << scrape.status();
    if (scrape.ok()) scrape_ = new std::string(*scrape);
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Stop(), 0);
    }
    delete server_;
    delete scrape_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_NE(scrape_, nullptr) << "no /metrics scrape of groove-volumed";
  }

  static TempDir* dir_;
  static ServerProcess* server_;
  static std::string* scrape_;
};
TempDir* DeployMetricsTest::dir_ = nullptr;
ServerProcess* DeployMetricsTest::server_ = nullptr;
std::string* DeployMetricsTest::scrape_ = nullptr;

TEST_F(DeployMetricsTest, DashboardQueriesOnlyExportedMetrics) {
  const std::vector<std::string> queries =
      DashboardQueries(ReadFile(kDashboard));
  ASSERT_GE(queries.size(), 20u) << kDashboard << " has too few queries";
  EXPECT_THAT(Unexported(queries, ExportedNames(*scrape_)), IsEmpty())
      << "the dashboard queries metrics groove-volumed does not export";
}

TEST_F(DeployMetricsTest, DashboardShowsWhatOperatorsNeed) {
  std::set<std::string> used;
  bool quantiles = false;
  for (const std::string& q : DashboardQueries(ReadFile(kDashboard))) {
    for (const std::string& name : MetricNames(q)) used.insert(name);
    quantiles = quantiles || absl::StrContains(q, "histogram_quantile(0.99");
  }
  EXPECT_THAT(
      used,
      IsSupersetOf(
          {"groove_pool_capacity_bytes", "groove_pool_empty_bytes",
           "groove_pool_volumes", "groove_pool_max_volumes",
           "groove_pool_volumes_added_total",
           "groove_pool_volumes_removed_total", "groove_pool_errors_total",
           "grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
           "process_resident_memory_bytes", "groove_build_info",
           "groove_pool_adds_queued", "up"}));
  EXPECT_TRUE(quantiles) << "no p99 latency (histogram_quantile) panel";
}

TEST_F(DeployMetricsTest, AlertRulesQueryOnlyExportedMetrics) {
  const std::string rules = ReadFile(kRules);
  const std::vector<std::string> exprs = RuleExpressions(rules);
  // One expression per alert: the reader missed none.
  size_t alerts = 0;
  for (absl::string_view line : absl::StrSplit(rules, '\n')) {
    alerts += absl::StrContains(line, "- alert:") ? 1 : 0;
  }
  ASSERT_GT(alerts, 0u);
  ASSERT_EQ(exprs.size(), alerts);
  EXPECT_THAT(Unexported(exprs, ExportedNames(*scrape_)), IsEmpty())
      << "the alerting rules query metrics groove-volumed does not export";
}

// LatencyBuckets returns the cumulative bucket counts of
// grpc_server_handling_seconds for `method` in a text exposition, by upper
// bound (+Inf left out).
std::map<double, double> LatencyBuckets(const std::string& scrape,
                                        const std::string& method) {
  std::map<double, double> buckets;
  const std::string prefix =
      absl::StrCat("grpc_server_handling_seconds_bucket{grpc_method=\"", method,
                   "\",grpc_service=\"groove.v1.VolumePoolService\",le=\"");
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (!absl::ConsumePrefix(&line, prefix)) continue;
    const size_t quote = line.find('"');
    double le = 0;
    double count = 0;
    if (quote == absl::string_view::npos ||
        !absl::SimpleAtod(line.substr(0, quote), &le) ||
        !absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &count) ||
        std::isinf(le)) {
      continue;
    }
    buckets[le] = count;
  }
  return buckets;
}

// The dashboard's latency quantiles come from these buckets: a handler of
// about a microsecond (ListPools) must land below 100 us, in buckets that
// resolve it, not all in one first bucket whose quantiles
// histogram_quantile() can only interpolate (50/90/99 us whatever the real
// latency). Asserted loosely: at least one of 200 calls under 50 us.
TEST_F(DeployMetricsTest, FastRpcsLandInBucketsBelow100Microseconds) {
  auto stub = server_->Stub();
  constexpr int kCalls = 200;
  for (int i = 0; i < kCalls; ++i) {
    v1::ListPoolsResponse pools;
    ASSERT_TRUE(ListPools(*stub, &pools).ok());
  }
  absl::StatusOr<std::string> scrape =
      HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  const std::map<double, double> buckets = LatencyBuckets(*scrape, "ListPools");
  std::vector<double> below_100us;
  for (const auto& [le, count] : buckets) {
    if (le < 0.0001) below_100us.push_back(le);
  }
  EXPECT_THAT(below_100us,
              ElementsAre(DoubleEq(1e-6), DoubleEq(2.5e-6), DoubleEq(5e-6),
                          DoubleEq(1e-5), DoubleEq(2.5e-5), DoubleEq(5e-5)))
      << *scrape;
  ASSERT_EQ(buckets.count(5e-5), 1u) << *scrape;
  EXPECT_GT(buckets.at(5e-5), 0) << "no ListPools call under 50 us:\n"
                                 << *scrape;
  EXPECT_EQ(MetricValue(*scrape,
                        "grpc_server_handling_seconds_count{grpc_method="
                        "\"ListPools\",grpc_service=\"groove.v1."
                        "VolumePoolService\"}"),
            absl::StrCat(kCalls));
}

// GroovePoolAddsRefusedForMemory (deploy/prometheus) rests on what the
// server exports when the memory behind a pool runs out below max_volumes
// (a pod's hugepage limit; here a full tmpfs, the same refusal):
// groove_pool_errors_total{op="add",code="RESOURCE_EXHAUSTED"} rises while
// the pool's volumes stay under groove_pool_max_volumes, so that
// GroovePoolAtMaxVolumes stays silent. The rules' unit test feeds exactly
// these series to the alert.
TEST(DeployAlertPremiseTest, AddsRefusedForMemoryCountAsAddResourceExhausted) {
  TmpfsMount tmpfs("256k");
  ASSERT_TRUE(tmpfs.ok()) << tmpfs.error();
  auto server = ServerProcess::Start(
      {"--data-dir=" + tmpfs.path() + "/data",
       "--pool=name=m,backing=normal,volume_size=64KiB,max_volumes=64"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  // 256 KiB hold fewer than 4 volumes of 64 KiB beside the metadata.
  v1::AddVolumeResponse added;
  const grpc::Status refused = Add(*stub, AddRequest("m", 4), &added);
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(MetricValue(*scrape,
                        "groove_pool_errors_total{code=\"RESOURCE_"
                        "EXHAUSTED\",op=\"add\",pool=\"m\"}"),
            "1")
      << *scrape;
  int64_t volumes = 0;
  for (const char* state : {"empty", "in_use"}) {
    int64_t n = -1;
    ASSERT_TRUE(absl::SimpleAtoi(
        MetricValue(*scrape, absl::StrCat("groove_pool_volumes{pool=\"m\","
                                          "state=\"",
                                          state, "\"}")),
        &n))
        << *scrape;
    volumes += n;
  }
  EXPECT_LT(volumes, 64) << *scrape;
  EXPECT_EQ(MetricValue(*scrape, "groove_pool_max_volumes{pool=\"m\"}"), "64")
      << *scrape;
  EXPECT_EQ(server->Stop(), 0);
}

// The checks above would catch a wrong dashboard: the reader finds the
// names (and only the names) of typical queries, a misspelt metric is
// reported, and a broken file is not JSON.
TEST(MetricNamesTest, FindsMetricNamesOnly) {
  EXPECT_THAT(
      MetricNames("histogram_quantile(0.99, sum by (grpc_method, le) "
                  "(rate(grpc_server_handling_seconds_bucket{instance=~\""
                  "$instance\"}[$__rate_interval])))"),
      ElementsAre("grpc_server_handling_seconds_bucket"));
  EXPECT_THAT(MetricNames("sum without (state) (groove_pool_volumes{state="
                          "\"empty\"}) < 0.1 * sum without (state) "
                          "(groove_pool_volumes) and on(pool) up == 1e3"),
              ElementsAre("groove_pool_volumes", "up"));
  EXPECT_THAT(MetricNames("label_values(groove_pool_info{instance=~"
                          "\"$instance\"}, pool)"),
              ElementsAre("groove_pool_info"));
  EXPECT_THAT(MetricNames("time() - process_start_time_seconds"),
              ElementsAre("process_start_time_seconds"));
}

TEST_F(DeployMetricsTest, AMisspeltMetricIsReported) {
  EXPECT_THAT(
      Unexported({"rate(groove_pool_volumes_addded_total{pool=~\"$pool\"}"
                  "[$__rate_interval])",
                  "groove_pool_volumes{state=\"empty\"}"},
                 ExportedNames(*scrape_)),
      ElementsAre("groove_pool_volumes_addded_total (in: "
                  "rate(groove_pool_volumes_addded_total{pool=~\"$pool\"}"
                  "[$__rate_interval]))"));
}

TEST(DashboardJsonTest, BrokenJsonIsRejected) {
  google::protobuf::Struct parsed;
  std::string text = ReadFile(kDashboard);
  ASSERT_FALSE(text.empty()) << kDashboard;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &parsed).ok());
  text.insert(text.find("\"panels\""), "\"dangling\": ,");
  EXPECT_FALSE(google::protobuf::util::JsonStringToMessage(text, &parsed).ok());
}

}  // namespace
}  // namespace groove::testing
