// tests/integration/server_test_util.h: small helpers shared by the
// groove-volumed integration tests: RPC calls with deadlines and pool
// snapshots to compare.

#ifndef GROOVE_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_
#define GROOVE_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "groove/v1/volume_pool.grpc.pb.h"
#include "gtest/gtest.h"
#include "support/server_process.h"
#include "support/subprocess.h"

namespace groove::testing {

using Stub = v1::VolumePoolService::Stub;

// kRpcTimeout bounds every RPC of the tests: far above what any call
// needs on loopback, so a hang fails the test instead of the suite.
inline constexpr absl::Duration kRpcTimeout = absl::Seconds(20);

inline void SetDeadline(grpc::ClientContext* context,
                        absl::Duration timeout = kRpcTimeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

inline grpc::Status ListPools(Stub& stub, v1::ListPoolsResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  return stub.ListPools(&context, v1::ListPoolsRequest(), response);
}

inline grpc::Status Add(Stub& stub, const v1::AddVolumeRequest& request,
                        v1::AddVolumeResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  return stub.AddVolume(&context, request, response);
}

inline v1::AddVolumeRequest AddRequest(const std::string& pool, uint64_t count,
                                       const std::string& info = "") {
  v1::AddVolumeRequest request;
  request.set_pool(pool);
  request.set_count(count);
  request.set_info(info);
  return request;
}

inline grpc::Status Remove(Stub& stub, const std::string& pool, uint64_t count,
                           v1::RemoveVolumeResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::RemoveVolumeRequest request;
  request.set_pool(pool);
  request.set_count(count);
  return stub.RemoveVolume(&context, request, response);
}

// Reclaim calls ReclaimVolume; `index` unset sends no index.
inline grpc::Status Reclaim(Stub& stub, const std::string& pool,
                            std::optional<uint64_t> index,
                            v1::ReclaimVolumeResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ReclaimVolumeRequest request;
  request.set_pool(pool);
  if (index.has_value()) request.set_index(*index);
  return stub.ReclaimVolume(&context, request, response);
}

inline grpc::Status Inspect(Stub& stub, const v1::InspectRequest& request,
                            v1::InspectResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context);
  return stub.Inspect(&context, request, response);
}

// Snapshot is what Inspect says of a pool: its summary and every volume.
struct Snapshot {
  v1::PoolSummary summary;
  std::vector<v1::Volume> volumes;

  bool operator==(const Snapshot& other) const {
    if (!google::protobuf::util::MessageDifferencer::Equals(summary,
                                                            other.summary) ||
        volumes.size() != other.volumes.size()) {
      return false;
    }
    for (size_t i = 0; i < volumes.size(); ++i) {
      if (!google::protobuf::util::MessageDifferencer::Equals(
              volumes[i], other.volumes[i])) {
        return false;
      }
    }
    return true;
  }
  std::string DebugString() const {
    std::string s = summary.ShortDebugString();
    for (const v1::Volume& v : volumes) s += "\n  " + v.ShortDebugString();
    return s;
  }
};

// TakeSnapshot reads every volume of `pool`, following page tokens.
inline Snapshot TakeSnapshot(Stub& stub, const std::string& pool) {
  Snapshot snapshot;
  v1::InspectRequest request;
  request.set_pool(pool);
  request.set_include_volumes(true);
  request.set_page_size(1000);
  for (int page = 0; page < 100; ++page) {
    v1::InspectResponse response;
    const grpc::Status status = Inspect(stub, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (!status.ok()) break;
    if (page == 0) snapshot.summary = response.summary();
    for (const v1::Volume& v : response.volumes()) {
      snapshot.volumes.push_back(v);
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return snapshot;
}

// ExpectPoolVerifies runs Inspect with verify on `pool` and expects it to
// pass, with `empty_volumes` volumes on the stack.
inline void ExpectPoolVerifies(Stub& stub, const std::string& pool,
                               uint64_t empty_volumes) {
  v1::InspectRequest verify;
  verify.set_pool(pool);
  verify.set_verify(true);
  v1::InspectResponse verified;
  const grpc::Status status = Inspect(stub, verify, &verified);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(verified.verify_result().ok())
      << verified.verify_result().message();
  EXPECT_EQ(verified.verify_result().empty_volumes_walked(), empty_volumes);
}

// MetricValue returns the value of the sample `series` (name and labels
// exactly as exposed) in a text exposition, or "" when absent.
inline std::string MetricValue(const std::string& text,
                               const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, series) && absl::ConsumePrefix(&line, " ")) {
      return std::string(line.substr(0, line.find(' ')));
    }
  }
  return "";
}

// HandledSeries is the grpc_server_handled_total series of `method` of
// groove.v1.VolumePoolService ("AddVolume") and status `code`
// ("DEADLINE_EXCEEDED"), as the server exposes it, for MetricValue.
inline std::string HandledSeries(absl::string_view method,
                                 absl::string_view code) {
  return absl::StrCat("grpc_server_handled_total{grpc_code=\"", code,
                      "\",grpc_method=\"", method,
                      "\",grpc_service=\"groove.v1.VolumePoolService\"}");
}

// HandledNow scrapes `server`'s /metrics and returns the value of
// HandledSeries(method, code) ("" when the scrape or the series is
// missing, with a test failure for the scrape).
inline std::string HandledNow(const ServerProcess& server,
                              absl::string_view method,
                              absl::string_view code) {
  absl::StatusOr<std::string> metrics =
      HttpGet(server.metrics_address(), "/metrics");
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics.ok() ? MetricValue(*metrics, HandledSeries(method, code))
                      : std::string();
}

// CorruptMagic overwrites the magic of 4 KiB volume `index` of pool `pool`
// (normal backing, its store in the data directory `data_dir`, a tmpfs)
// with "GARBAGE!", as a data-plane process writing past its volume might:
// the next pop of it quarantines it.
inline void CorruptMagic(const std::string& data_dir, const std::string& pool,
                         uint64_t index) {
  std::fstream store(data_dir + "/" + pool + ".volumes",
                     std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(store.is_open());
  // The magic is the header's first word (groove/volume.h; these tests
  // need no core code for it).
  store.seekp(static_cast<std::streamoff>(index * 4096));
  store.write("GARBAGE!", 8);
  ASSERT_TRUE(store.good());
}

// kGarbageMagic is "GARBAGE!" read as a little-endian uint64_t, as the
// server's messages print a bad magic.
inline constexpr char kGarbageMagic[] = "0x2145474142524147";

// Indices returns the indices of a snapshot's volumes.
inline std::vector<uint64_t> Indices(const Snapshot& snapshot) {
  std::vector<uint64_t> indices;
  for (const v1::Volume& v : snapshot.volumes) indices.push_back(v.index());
  return indices;
}

// LogTally is what a server's log says about refused calls and
// suppressed lines (docs/SERVER.md §7), from TallyLog.
struct LogTally {
  // rpc_error lines at level=warn (refusals, not server faults).
  uint64_t refusal_lines = 0;
  // Of them, how many fall in each second of their `time`
  // ("2026-11-27T19:55:01").
  std::map<std::string, uint64_t> refusal_lines_per_second;
  // rpc_error lines at level=error (server faults).
  uint64_t fault_lines = 0;
  // The counts of the log_lines_suppressed lines, summed by their `kind`
  // ("routine", "refusal"), and how many such lines there are.
  std::map<std::string, uint64_t> suppressed;
  std::map<std::string, uint64_t> suppressed_lines;
};

// TallyLog tallies `lines`, a server's log; a log_lines_suppressed line
// without a numeric count fails the test.
inline LogTally TallyLog(const std::vector<std::string>& lines) {
  LogTally tally;
  for (const std::string& line : lines) {
    if (absl::StrContains(line, " event=rpc_error ")) {
      if (absl::StrContains(line, " level=error ")) {
        ++tally.fault_lines;
      } else {
        ++tally.refusal_lines;
        // time=YYYY-MM-DDTHH:MM:SS.ffffffZ: the second is its first 19.
        ++tally.refusal_lines_per_second[LogValue(line, "time").substr(0, 19)];
      }
    } else if (absl::StrContains(line, " event=log_lines_suppressed ")) {
      EXPECT_TRUE(absl::StrContains(line, " level=warn ")) << line;
      uint64_t count = 0;
      EXPECT_TRUE(absl::SimpleAtoi(LogValue(line, "count"), &count)) << line;
      tally.suppressed[LogValue(line, "kind")] += count;
      ++tally.suppressed_lines[LogValue(line, "kind")];
    }
  }
  return tally;
}

// ExpectRefusalLinesWithinBudget checks the log `lines` of a stopped
// server that refused `refusals` calls of the client's doing, made one
// after another between `start` and `end` (the client's clock), under a
// refusal line budget of `per_second` (0: none), and `metrics`, a scrape
// taken after the calls: each second of the log holds at most the budget
// of rpc_error lines at warn; those lines and the counts of the
// log_lines_suppressed kind=refusal lines add up to the calls, and the
// metric of suppressed refusal lines equals the counts. Holds whatever
// seconds the calls straddle; with a budget, at least the calls beyond
// `per_second` times the seconds spanned were suppressed.
inline void ExpectRefusalLinesWithinBudget(
    const std::vector<std::string>& lines, uint64_t refusals,
    uint64_t per_second, absl::Time start, absl::Time end,
    const std::string& metrics) {
  const LogTally tally = TallyLog(lines);
  const uint64_t seconds = static_cast<uint64_t>(absl::ToUnixSeconds(end) -
                                                 absl::ToUnixSeconds(start)) +
                           1;
  const uint64_t suppressed =
      tally.suppressed.count("refusal") ? tally.suppressed.at("refusal") : 0;
  EXPECT_EQ(tally.refusal_lines + suppressed, refusals)
      << "rpc_error lines " << tally.refusal_lines << ", suppressed "
      << suppressed;
  if (per_second == 0) {
    EXPECT_EQ(tally.refusal_lines, refusals);
    EXPECT_EQ(tally.suppressed_lines.count("refusal"), 0u);
  } else {
    EXPECT_LE(tally.refusal_lines, per_second * seconds)
        << refusals << " refusals in " << seconds << " seconds";
    for (const auto& [second, count] : tally.refusal_lines_per_second) {
      EXPECT_LE(count, per_second) << "in " << second;
    }
    EXPECT_GE(suppressed, refusals - std::min(refusals, per_second * seconds));
  }
  EXPECT_EQ(MetricValue(metrics,
                        R"(groove_log_lines_suppressed_total{kind="refusal"})"),
            absl::StrCat(suppressed));
}

// RunRefusalBurst makes `refusals` refused calls of the client's doing
// against `server`, one after another (`call(i)` makes call i and checks
// its code), scrapes its metrics, stops it and checks its log with
// ExpectRefusalLinesWithinBudget under `per_second`. Returns the scrape
// for the caller's own checks ("" when a step failed, with a failure
// recorded).
inline std::string RunRefusalBurst(ServerProcess& server, uint64_t refusals,
                                   uint64_t per_second,
                                   const std::function<void(uint64_t)>& call) {
  const absl::Time start = absl::Now();
  for (uint64_t i = 0; i < refusals && !::testing::Test::HasFatalFailure();
       ++i) {
    call(i);
  }
  const absl::Time end = absl::Now();
  if (::testing::Test::HasFatalFailure()) return "";
  // Every call is done: the metrics already count every call and every
  // refused line.
  absl::StatusOr<std::string> metrics =
      HttpGet(server.metrics_address(), "/metrics");
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(server.Stop(), 0);
  EXPECT_TRUE(server.WaitForLog("event=stopped").has_value());
  if (!metrics.ok()) return "";
  ExpectRefusalLinesWithinBudget(server.LogLines(), refusals, per_second, start,
                                 end, *metrics);
  return *std::move(metrics);
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_
