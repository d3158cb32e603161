// The server's building blocks, one at a time, without gRPC traffic: flag
// and size parsing, configuration checks, page tokens, request_id
// deduplication, the log line format, the add worker pool, and the
// security parts (token files, constant-time token lookup, authorization,
// the loopback rule). The
// integration tests (tests/integration/server_*_test.cc) drive the whole
// binary.

#include <fcntl.h>
#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "groove/server/config.h"
#include "groove/server/log.h"
#include "groove/server/page_token.h"
#include "groove/server/request_log.h"
#include "groove/server/security.h"
#include "groove/server/server.h"
#include "groove/server/service.h"
#include "groove/server/worker_pool.h"
#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/temp_dir.h"

namespace groove::server {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;

TEST(ParseByteSizeTest, AcceptsBytesAndBinaryUnits) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("4096B"), 4096u);
  EXPECT_EQ(*ParseByteSize("64KiB"), 64u << 10);
  EXPECT_EQ(*ParseByteSize("2mib"), 2u << 20);
  EXPECT_EQ(*ParseByteSize("1GiB"), uint64_t{1} << 30);
  EXPECT_EQ(*ParseByteSize("3TiB"), uint64_t{3} << 40);
}

TEST(ParseByteSizeTest, RejectsOtherForms) {
  for (const char* bad : {"", "GiB", "1GB", "1 GiB", "1.5GiB", "-1", "1K",
                          "18446744073709551616", "16777216TiB"}) {
    absl::StatusOr<uint64_t> size = ParseByteSize(bad);
    EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument)
        << "'" << bad << "'";
  }
}

TEST(ParsePoolFlagTest, ReadsEveryKey) {
  absl::StatusOr<v1::PoolConfig> pool = ParsePoolFlag(
      "name=main,backing=huge,volume_size=2MiB,max_volumes=64,"
      "initial_volumes=4");
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->name(), "main");
  EXPECT_EQ(pool->backing(), v1::BACKING_HUGE);
  EXPECT_EQ(pool->volume_size_bytes(), 2u << 20);
  EXPECT_EQ(pool->max_volumes(), 64u);
  EXPECT_EQ(pool->initial_volumes(), 4u);
  pool = ParsePoolFlag("name=f,backing=file:/nvme/groove");
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->backing(), v1::BACKING_FILE);
  EXPECT_EQ(pool->file_path(), "/nvme/groove");
}

TEST(ParsePoolFlagTest, NamesTheBadKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"backing=normal", "name: required"},
      {"name=a,size=1GiB", "size: unknown key"},
      {"name=a,backing=file:", "backing: 'file:'"},
      {"name=a,max_volumes=-1", "max_volumes: '-1'"},
      {"name=a,initial_volumes=", "initial_volumes: ''"},
      {"name=a,,max_volumes=1", "expected key=value"},
      {"name=a,name=a", "name: given more than once"},
  };
  for (const auto& [text, part] : cases) {
    absl::StatusOr<v1::PoolConfig> pool = ParsePoolFlag(text);
    EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(pool.status().message(), HasSubstr(part)) << text;
  }
}

TEST(LoadServerConfigTest, FillsDefaults) {
  CommandLine command_line;
  command_line.data_dir = "/tmp/groove-test-defaults";
  command_line.pools = {"name=a,backing=file:relative.volumes"};
  absl::StatusOr<v1::ServerConfig> config = LoadServerConfig(command_line);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen_address(), kDefaultListenAddress);
  EXPECT_EQ(config->metrics_listen_address(), kDefaultMetricsListenAddress);
  ASSERT_EQ(config->pools_size(), 1);
  const v1::PoolConfig& pool = config->pools(0);
  EXPECT_EQ(pool.volume_size_bytes(), kDefaultVolumeSizeBytes);
  EXPECT_EQ(pool.max_volumes(), kDefaultMaxVolumes);
  EXPECT_EQ(pool.file_path(), "/tmp/groove-test-defaults/relative.volumes");
  EXPECT_TRUE(ValidateServerConfig(*config).ok());
}

TEST(LoadServerConfigTest, DefaultPoolOnlyWithoutConfigAndPools) {
  CommandLine command_line;
  command_line.data_dir = "/tmp/groove-test-defaults";
  absl::StatusOr<v1::ServerConfig> config = LoadServerConfig(command_line);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->pools_size(), 1);
  EXPECT_EQ(config->pools(0).name(), kDefaultPoolName);
  EXPECT_EQ(config->pools(0).backing(), v1::BACKING_AUTO);
  EXPECT_EQ(config->pools(0).initial_volumes(), 0u);
}

TEST(ValidateServerConfigTest, NamesTheFirstBadField) {
  v1::ServerConfig good;
  good.set_listen_address("[::1]:0");
  good.set_metrics_listen_address("[::1]:0");
  good.set_data_dir("/x");
  v1::PoolConfig* pool = good.add_pools();
  pool->set_name("a");
  pool->set_backing(v1::BACKING_NORMAL);
  pool->set_volume_size_bytes(4096);
  pool->set_max_volumes(8);
  ASSERT_TRUE(ValidateServerConfig(good).ok());

  v1::ServerConfig bad = good;
  bad.set_listen_address("::1:5000");  // unbracketed IPv6
  EXPECT_THAT(ValidateServerConfig(bad).message(),
              HasSubstr("listen_address: '::1:5000'"));
  bad = good;
  bad.mutable_pools(0)->set_backing(static_cast<v1::Backing>(42));
  EXPECT_THAT(ValidateServerConfig(bad).message(),
              HasSubstr("pools[0].backing: 42"));
  bad = good;
  bad.mutable_pools(0)->set_backing(v1::BACKING_GIGANTIC);
  EXPECT_THAT(ValidateServerConfig(bad).message(),
              HasSubstr("pools[0].volume_size_bytes: 4096 is not a multiple"));
  bad = good;
  *bad.add_pools() = good.pools(0);
  EXPECT_THAT(ValidateServerConfig(bad).message(),
              HasSubstr("pools[1].name: 'a' is already the name of pools[0]"));
}

TEST(CommandLineTest, ExtractsRepeatedFlagsAndNormalizesNames) {
  std::vector<std::string> args = {"--pool=name=a", "--listen=x:1",  "-pool",
                                   "name=b",        "--data-dir=/d", "--",
                                   "--pool=name=c"};
  absl::StatusOr<std::vector<std::string>> pools =
      ExtractRepeatedFlag(&args, "pool");
  ASSERT_TRUE(pools.ok());
  EXPECT_THAT(*pools, ElementsAre("name=a", "name=b"));
  NormalizeFlagNames(&args);
  EXPECT_THAT(args, ElementsAre("--listen=x:1", "--data_dir=/d", "--",
                                "--pool=name=c"));
}

TEST(PageTokenTest, RoundTripsForItsPoolOnly) {
  const PoolId id{0x0123456789abcdefULL, 0xfedcba9876543211ULL};
  const std::string token = EncodePageToken("main", id, 100);
  EXPECT_EQ(token.size(), 34u) << token;
  EXPECT_EQ(*DecodePageToken(token, "main", id, 1024), 100u);
  EXPECT_EQ(DecodePageToken(token, "other", id, 1024).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodePageToken(token, "main", id, 99).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (const std::string& bad :
       {std::string("x"), token + "A", token.substr(1), std::string(34, 'A'),
        token + "=", token + "\n"}) {
    const absl::Status status = DecodePageToken(bad, "main", id, 1024).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(),
                HasSubstr("not a next_page_token that Inspect returned for "
                          "pool 'main'"))
        << bad;
  }
}

// A token of the pool's name and another pool_id (the pool re-created
// since), or of version 1 (which named the pool only), is refused saying
// so, not as a token Inspect never returned.
TEST(PageTokenTest, ATokenOfAnotherPoolIdOrOfVersion1SaysWhy) {
  const PoolId id{1, 3};
  const absl::Status recreated =
      DecodePageToken(EncodePageToken("main", PoolId{1, 5}, 2), "main", id,
                      1024)
          .status();
  EXPECT_EQ(recreated.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(recreated.message(), HasSubstr("pool 'main' before it was "
                                             "re-created"));
  EXPECT_THAT(recreated.message(), HasSubstr("empty page_token"));
  // Version 1: the unpadded web-safe base64 of (1, index 2, FNV-1a of the
  // key, "main", NUL and the index), as servers before pool_id made it.
  char raw[17] = {1, 2};
  uint64_t hash = 0xcbf29ce484222325ULL;
  const std::string hashed = std::string("groove.v1.Inspect/page/main") + '\0' +
                             std::string(raw + 1, 8);
  for (unsigned char c : hashed) hash = (hash ^ c) * 0x100000001b3ULL;
  for (int k = 0; k < 8; ++k) raw[9 + k] = static_cast<char>(hash >> (8 * k));
  const std::string v1 = absl::WebSafeBase64Escape(absl::string_view(raw, 17));
  ASSERT_EQ(v1.size(), 23u);
  const absl::Status older = DecodePageToken(v1, "main", id, 1024).status();
  EXPECT_EQ(older.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(older.message(), HasSubstr("from an older server"));
  EXPECT_THAT(older.message(), HasSubstr("re-created"));
  EXPECT_THAT(older.message(), HasSubstr("empty page_token"));
  // The same bytes for another pool name: just not a token of "main".
  EXPECT_THAT(DecodePageToken(v1, "other", id, 1024).status().message(),
              HasSubstr("not a next_page_token"));
}

// Inspect's summary carries the volumes whose memory could not be given
// back (the core's count, kept outside the shared counters).
TEST(ToProtoSummaryTest, CarriesTheVolumesNotGivenBack) {
  PoolSummary s;
  s.name = "a";
  s.volumes_not_given_back = 3;
  s.counts.volumes_removed = 5;
  const v1::PoolSummary out = ToProtoSummary(s);
  EXPECT_EQ(out.volumes_not_given_back(), 3u);
  EXPECT_EQ(out.counters().volumes_removed(), 5u);
}

TEST(RequestIdTest, AcceptsUuidsOnly) {
  EXPECT_TRUE(ValidateRequestId("").ok());
  EXPECT_TRUE(ValidateRequestId("123e4567-e89b-42d3-a456-426614174000").ok());
  EXPECT_TRUE(ValidateRequestId("123E4567-E89B-42D3-A456-426614174000").ok());
  for (const char* bad : {"x", "123e4567e89b42d3a456426614174000",
                          "123e4567-e89b-42d3-a456-42661417400",
                          "{23e4567-e89b-42d3-a456-426614174000"}) {
    EXPECT_EQ(ValidateRequestId(bad).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

// Request makes an AddVolume request whose id is the UUID with last group
// `suffix` (12 hex digits, zero-padded).
v1::AddVolumeRequest Request(uint64_t suffix, uint64_t count) {
  v1::AddVolumeRequest request;
  request.set_pool("a");
  request.set_count(count);
  request.set_request_id(
      absl::StrCat("123e4567-e89b-42d3-a456-", absl::Hex(suffix, absl::kZeroPad12)));
  return request;
}

TEST(RequestLogTest, RunsReplaysAbortsAndConflicts) {
  RequestLog log(1);
  const v1::AddVolumeRequest first = Request(0xabc, 1);
  RequestLog::Claim run = log.Start(first);
  ASSERT_EQ(run.outcome, RequestLog::Outcome::kRun);
  EXPECT_EQ(log.Start(first).outcome, RequestLog::Outcome::kInProgress);
  v1::AddVolumeRequest other_arguments = Request(0xabc, 2);
  EXPECT_EQ(log.Start(other_arguments).outcome,
            RequestLog::Outcome::kConflict);
  v1::AddVolumeResponse response;
  response.add_volume_indices(7);
  log.Succeeded(run.ticket, response);
  // Ids compare as numbers: upper-case hex is the same id.
  v1::AddVolumeRequest upper = first;
  upper.set_request_id(absl::AsciiStrToUpper(first.request_id()));
  RequestLog::Claim replay = log.Start(upper);
  EXPECT_EQ(replay.outcome, RequestLog::Outcome::kReplay);
  EXPECT_THAT(replay.response.volume_indices(), ElementsAre(7));
  EXPECT_EQ(log.Start(other_arguments).outcome,
            RequestLog::Outcome::kConflict);
}

TEST(RequestLogTest, ConflictNamesTheFirstDifferingArgumentWithBothValues) {
  RequestLog log(1);
  v1::AddVolumeRequest first = Request(0xabc, 2);
  first.set_info("tenant=a");
  RequestLog::Claim run = log.Start(first);
  ASSERT_EQ(run.outcome, RequestLog::Outcome::kRun);
  auto conflict = [&](const v1::AddVolumeRequest& request) {
    RequestLog::Claim claim = log.Start(request);
    EXPECT_EQ(claim.outcome, RequestLog::Outcome::kConflict);
    return claim.conflict;
  };
  v1::AddVolumeRequest other = first;
  other.set_pool("b");
  other.set_count(3);  // pool comes first
  EXPECT_EQ(conflict(other), "pool was 'a', is 'b' now");
  other = first;
  other.set_count(3);
  EXPECT_EQ(conflict(other), "count was 2, is 3 now");
  other = first;
  other.set_first_index(5);
  EXPECT_EQ(conflict(other), "first_index was unset, is 5 now");
  other = first;
  other.set_info(std::string(100, 'x'));
  EXPECT_EQ(conflict(other),
            absl::StrCat("info was 'tenant=a', is '", std::string(64, 'x'),
                         "'... (100 bytes) now"));
  other.set_info("tenant=\"b\"\n");
  EXPECT_EQ(conflict(other),
            "info was 'tenant=a', is 'tenant=\\\"b\\\"\\n' now");
  log.Failed(run.ticket);
}

TEST(RequestLogTest, ForgetsFailuresAndTheOldestSuccess) {
  RequestLog log(1);  // one bucket: kWays ids in all
  ASSERT_EQ(log.remembered_capacity(), RequestLog::kWays);
  const v1::AddVolumeRequest failed = Request(0xf, 1);
  RequestLog::Claim claim = log.Start(failed);
  ASSERT_EQ(claim.outcome, RequestLog::Outcome::kRun);
  log.Failed(claim.ticket);
  claim = log.Start(failed);
  EXPECT_EQ(claim.outcome, RequestLog::Outcome::kRun);
  log.Failed(claim.ticket);
  for (uint64_t id = 1; id <= RequestLog::kWays + 1; ++id) {
    claim = log.Start(Request(id, 1));
    ASSERT_EQ(claim.outcome, RequestLog::Outcome::kRun) << id;
    log.Succeeded(claim.ticket, v1::AddVolumeResponse());
  }
  // Id 1 (the oldest) was replaced; the newer ones are remembered.
  for (uint64_t id = 2; id <= RequestLog::kWays + 1; ++id) {
    EXPECT_EQ(log.Start(Request(id, 1)).outcome, RequestLog::Outcome::kReplay)
        << id;
  }
  EXPECT_EQ(log.Start(Request(1, 1)).outcome, RequestLog::Outcome::kRun);
}

TEST(RequestLogTest, NeverForgetsAnIdInProgress) {
  RequestLog log(1);
  std::vector<RequestLog::Claim> running;
  for (uint64_t id = 1; id <= RequestLog::kWays; ++id) {
    running.push_back(log.Start(Request(id, 1)));
    ASSERT_EQ(running.back().outcome, RequestLog::Outcome::kRun);
  }
  // Every entry is in progress: a new id is refused, none is replaced.
  EXPECT_EQ(log.Start(Request(99, 1)).outcome, RequestLog::Outcome::kBusy);
  for (uint64_t id = 1; id <= RequestLog::kWays; ++id) {
    EXPECT_EQ(log.Start(Request(id, 1)).outcome,
              RequestLog::Outcome::kInProgress);
  }
  log.Succeeded(running[0].ticket, v1::AddVolumeResponse());
  RequestLog::Claim next = log.Start(Request(99, 1));
  ASSERT_EQ(next.outcome, RequestLog::Outcome::kRun);
  log.Succeeded(next.ticket, v1::AddVolumeResponse());
  // Id 1, the only completed one, was the one replaced: it runs again.
  EXPECT_EQ(log.Start(Request(1, 1)).outcome, RequestLog::Outcome::kRun);
}

TEST(RequestLogTest, VerifyCountsTheIdsRememberedAndInProgress) {
  RequestLog log(4);
  RequestLog::Claim done = log.Start(Request(1, 1));
  ASSERT_EQ(done.outcome, RequestLog::Outcome::kRun);
  log.Succeeded(done.ticket, v1::AddVolumeResponse());
  RequestLog::Claim running = log.Start(Request(2, 1));
  ASSERT_EQ(running.outcome, RequestLog::Outcome::kRun);
  absl::StatusOr<RequestLog::Contents> contents = log.Verify();
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->remembered, 1u);
  EXPECT_EQ(contents->in_progress, 1u);
  log.Failed(running.ticket);
  contents = log.Verify();
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->remembered, 1u);
  EXPECT_EQ(contents->in_progress, 0u);
}

// ---- The seed's randomized run against a model of one bucket -------------

// One id as the model of a one-bucket log holds it.
struct ModelId {
  uint64_t id = 0;
  v1::AddVolumeRequest request;  // the first call's
  bool done = false;
  v1::AddVolumeResponse response;  // done only
  uint64_t sequence = 0;           // done only: when it succeeded
  RequestLog::Ticket ticket;       // in progress only
};

TEST(RequestLogRandomizedTest, EveryStepMatchesTheModelOfOneBucket) {
  constexpr int kSteps = 100000;
  constexpr uint64_t kIds = 7;  // more than kWays: ids are forgotten
  RequestLog log(1);
  std::vector<ModelId> bucket;  // at most kWays
  uint64_t sequence = 0;
  std::mt19937_64 rng(groove::testing::TestSeed());
  int replays = 0, conflicts = 0, busy = 0, evictions = 0;
  const auto random_request = [&](uint64_t id) {
    v1::AddVolumeRequest request = Request(id, 1 + rng() % 2);
    if (rng() % 4 == 0) request.set_pool("b");
    if (rng() % 4 == 0) request.set_first_index(rng() % 2);
    if (rng() % 4 == 0) request.set_info("x");
    // Ids compare as numbers: the upper-case form is the same id.
    if (rng() % 2 == 0) {
      request.set_request_id(absl::AsciiStrToUpper(request.request_id()));
    }
    return request;
  };
  const auto random_response = [&] {
    v1::AddVolumeResponse response;
    for (uint64_t k = rng() % 3; k > 0; --k) {
      response.add_volume_indices(rng() % 100);
    }
    return response;
  };
  const auto same_arguments = [](const v1::AddVolumeRequest& a,
                                 const v1::AddVolumeRequest& b) {
    return a.pool() == b.pool() && a.count() == b.count() &&
           a.has_first_index() == b.has_first_index() &&
           a.first_index() == b.first_index() && a.info() == b.info();
  };
  // Admits a new id to the model as the log must: into an empty way, else
  // in place of the oldest succeeded id; false (the log is busy) when every
  // id it holds is in progress.
  const auto admit = [&](ModelId id) -> bool {
    if (bucket.size() == RequestLog::kWays) {
      auto oldest = bucket.end();
      for (auto it = bucket.begin(); it != bucket.end(); ++it) {
        if (it->done &&
            (oldest == bucket.end() || it->sequence < oldest->sequence)) {
          oldest = it;
        }
      }
      if (oldest == bucket.end()) return false;
      bucket.erase(oldest);
      ++evictions;
    }
    bucket.push_back(std::move(id));
    return true;
  };
  for (int step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(step);
    std::vector<size_t> running;
    for (size_t k = 0; k < bucket.size(); ++k) {
      if (!bucket[k].done) running.push_back(k);
    }
    switch (rng() % 5) {
      case 0:
      case 1: {  // Start
        const uint64_t id = rng() % kIds;
        v1::AddVolumeRequest request = random_request(id);
        RequestLog::Claim claim = log.Start(request);
        auto known = std::find_if(bucket.begin(), bucket.end(),
                                  [&](const ModelId& m) { return m.id == id; });
        if (known != bucket.end()) {
          if (!same_arguments(known->request, request)) {
            ASSERT_EQ(claim.outcome, RequestLog::Outcome::kConflict);
            ++conflicts;
          } else if (!known->done) {
            ASSERT_EQ(claim.outcome, RequestLog::Outcome::kInProgress);
          } else {
            ASSERT_EQ(claim.outcome, RequestLog::Outcome::kReplay);
            ASSERT_EQ(claim.response.SerializeAsString(),
                      known->response.SerializeAsString());
            ++replays;
          }
          break;
        }
        ModelId fresh;
        fresh.id = id;
        fresh.request = request;
        fresh.ticket = claim.ticket;
        if (!admit(std::move(fresh))) {
          ASSERT_EQ(claim.outcome, RequestLog::Outcome::kBusy);
          ++busy;
          break;
        }
        ASSERT_EQ(claim.outcome, RequestLog::Outcome::kRun);
        break;
      }
      case 2:  // the call of an id in progress succeeds
        if (running.empty()) break;
        {
          ModelId& m = bucket[running[rng() % running.size()]];
          m.response = random_response();
          log.Succeeded(m.ticket, m.response);
          m.done = true;
          m.sequence = ++sequence;
        }
        break;
      case 3:  // or fails, and is forgotten
        if (running.empty()) break;
        {
          const size_t k = running[rng() % running.size()];
          log.Failed(bucket[k].ticket);
          bucket.erase(bucket.begin() + static_cast<ptrdiff_t>(k));
        }
        break;
      case 4: {  // an add from a journal, at start-up
        const uint64_t id = rng() % kIds;
        v1::AddVolumeRequest request = random_request(id);
        const v1::AddVolumeResponse response = random_response();
        const bool remembered = log.Remember(request, response);
        if (std::any_of(bucket.begin(), bucket.end(),
                        [&](const ModelId& m) { return m.id == id; })) {
          ASSERT_FALSE(remembered) << "an id the log holds was replaced";
          break;
        }
        ModelId fresh;
        fresh.id = id;
        fresh.request = request;
        fresh.done = true;
        fresh.response = response;
        fresh.sequence = sequence + 1;
        const bool admitted = admit(std::move(fresh));
        ASSERT_EQ(remembered, admitted);
        if (admitted) ++sequence;
        break;
      }
    }
    absl::StatusOr<RequestLog::Contents> contents = log.Verify();
    ASSERT_TRUE(contents.ok()) << contents.status();
    size_t in_progress = 0;
    for (const ModelId& m : bucket) in_progress += m.done ? 0 : 1;
    ASSERT_EQ(contents->in_progress, in_progress);
    ASSERT_EQ(contents->remembered, bucket.size() - in_progress);
  }
  // Every outcome came up, or the run tested little.
  EXPECT_GT(replays, 1000);
  EXPECT_GT(conflicts, 1000);
  EXPECT_GT(busy, 100);
  EXPECT_GT(evictions, 1000);
}

TEST(LogTest, FormatsLogfmtAndEscapesValues) {
  const std::string line = FormatLogLine(
      absl::FromUnixMicros(1'700'000'000'123'456), LogLevel::kWarn, "add",
      {{"pool", "main"},
       {"count", 3},
       {"info", "a b\"c\\\n\x01"},
       {"empty", ""}});
  EXPECT_EQ(line,
            "time=2023-11-14T22:13:20.123456Z level=warn event=add pool=main "
            "count=3 info=\"a b\\\"c\\\\\\n\\x01\" empty=\"\"\n");
}

// StderrToFile sends fd 2 to a fresh temporary file until destroyed;
// Text() is what was written to it so far.
class StderrToFile {
 public:
  StderrToFile() {
    char path[] = "/tmp/groove-log-test-XXXXXX";
    file_ = mkstemp(path);
    unlink(path);
    saved_ = dup(STDERR_FILENO);
    dup2(file_, STDERR_FILENO);
  }
  ~StderrToFile() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    close(file_);
  }
  std::string Text() const {
    std::string text(lseek(file_, 0, SEEK_END), '\0');
    EXPECT_EQ(pread(file_, text.data(), text.size(), 0),
              static_cast<ssize_t>(text.size()));
    return text;
  }
  size_t Lines() const {
    const std::string text = Text();
    return std::count(text.begin(), text.end(), '\n');
  }

 private:
  int file_ = -1;
  int saved_ = -1;
};

// BatchingOn turns log batching on for a scope (off again even when an
// assertion ends the test early).
struct BatchingOn {
  explicit BatchingOn(absl::Duration interval) { StartLogBatching(interval); }
  ~BatchingOn() { StopLogBatching(); }
};

TEST(LogBatchingTest, DeferredLinesWaitForAFlushAndStayBeforeLaterLines) {
  StderrToFile err;
  // An interval no test outlasts: only Log and StopLogBatching write.
  BatchingOn batching(absl::Hours(1));
  LogDeferred(LogLevel::kInfo, "add", {{"n", 1}});
  LogDeferred(LogLevel::kInfo, "add", {{"n", 2}});
  EXPECT_EQ(err.Text(), "");
  Log(LogLevel::kWarn, "rpc_error", {{"n", 3}});
  const std::vector<std::string> lines =
      absl::StrSplit(err.Text(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << err.Text();
  EXPECT_THAT(lines[0], HasSubstr("event=add n=1"));
  EXPECT_THAT(lines[1], HasSubstr("event=add n=2"));
  EXPECT_THAT(lines[2], HasSubstr("event=rpc_error n=3"));
  LogDeferred(LogLevel::kInfo, "remove", {{"n", 4}});
  EXPECT_EQ(err.Lines(), 3u);
  StopLogBatching();  // writes what is queued
  EXPECT_EQ(err.Lines(), 4u);
  EXPECT_THAT(err.Text(), HasSubstr("event=remove n=4"));
  // Off: written at once.
  LogDeferred(LogLevel::kInfo, "remove", {{"n", 5}});
  EXPECT_EQ(err.Lines(), 5u);
}

TEST(LogBatchingTest, AFullQueueWritesAtOnce) {
  StderrToFile err;
  BatchingOn batching(absl::Hours(1));
  for (size_t i = 0; i < kLogQueueLines; ++i) {
    LogDeferred(LogLevel::kInfo, "add", {{"i", i}});
  }
  EXPECT_EQ(err.Lines(), 0u);
  // No room: this line is written at once, after every queued one.
  LogDeferred(LogLevel::kInfo, "add", {{"i", "last"}});
  EXPECT_EQ(err.Lines(), kLogQueueLines + 1);
  EXPECT_THAT(err.Text(), EndsWith("event=add i=last\n"));
  StopLogBatching();
  EXPECT_EQ(err.Lines(), kLogQueueLines + 1);  // nothing was left queued
}

TEST(LineBudgetTest, AdmitsThePerSecondCountThenCountsTheRest) {
  LineBudget budget(3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(budget.Admit(100)) << i;
  EXPECT_FALSE(budget.Admit(100));
  EXPECT_FALSE(budget.Admit(100));
  // A line of an earlier second (another thread's, late) counts against
  // the newest second.
  EXPECT_FALSE(budget.Admit(99));
  EXPECT_EQ(budget.TakeSuppressed(), 3u);
  EXPECT_EQ(budget.TakeSuppressed(), 0u);  // taken: counting starts again
  // A new second admits three more.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(budget.Admit(101)) << i;
  EXPECT_FALSE(budget.Admit(101));
  EXPECT_EQ(budget.TakeSuppressed(), 1u);
  // The total counts every refusal, taken or not: a counter for metrics.
  EXPECT_FALSE(budget.Admit(101));
  EXPECT_EQ(budget.suppressed_total(), 5u);
  EXPECT_EQ(budget.TakeSuppressed(), 1u);
  EXPECT_EQ(budget.suppressed_total(), 5u);
}

TEST(LineBudgetTest, ZeroAdmitsEveryLineAndCountsNone) {
  LineBudget budget(0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(budget.Admit(100)) << i;
  EXPECT_EQ(budget.TakeSuppressed(), 0u);
  EXPECT_EQ(budget.suppressed_total(), 0u);
}

TEST(LineBudgetTest, ResetStartsANewBudgetWithEveryCountAtZero) {
  LineBudget budget(1);
  EXPECT_TRUE(budget.Admit(100));
  EXPECT_FALSE(budget.Admit(100));
  EXPECT_FALSE(budget.Admit(100));
  budget.Reset(2);
  EXPECT_EQ(budget.suppressed_total(), 0u);
  EXPECT_EQ(budget.TakeSuppressed(), 0u);
  // The same second again: the new budget's count starts at zero.
  EXPECT_TRUE(budget.Admit(100));
  EXPECT_TRUE(budget.Admit(100));
  EXPECT_FALSE(budget.Admit(100));
  EXPECT_EQ(budget.TakeSuppressed(), 1u);
  budget.Reset(0);  // no limit
  EXPECT_TRUE(budget.Admit(100));
  EXPECT_EQ(budget.suppressed_total(), 0u);
}

TEST(LineBudgetTest, RoutineLinesSuppressedTotalFollowsTheBudgetInUse) {
  SetRoutineLineBudget(0);
  EXPECT_EQ(RoutineLinesSuppressedTotal(), 0u);
  StderrToFile err;
  SetRoutineLineBudget(1);
  for (int i = 0; i < 10; ++i) LogDeferred(LogLevel::kInfo, "add", {{"i", i}});
  const uint64_t refused = RoutineLinesSuppressedTotal();
  // All ten fall in one or two seconds: one or two are written.
  EXPECT_GE(refused, 8u);
  EXPECT_LE(refused, 9u);
  Log(LogLevel::kInfo, "flush");  // reports them, and the total stays
  EXPECT_EQ(RoutineLinesSuppressedTotal(), refused);
  SetRoutineLineBudget(0);
  EXPECT_EQ(RoutineLinesSuppressedTotal(), 0u);
}

// LogRefusal's budget is its own: a flood of routine lines that spends
// the routine budget leaves the refusal budget whole, and the reason
// each kind's lines are refused is counted and reported apart.
TEST(LineBudgetTest, RefusalLinesHaveABudgetOfTheirOwn) {
  StderrToFile err;
  SetRoutineLineBudget(1);
  SetRefusalLineBudget(1);
  constexpr uint64_t kLines = 10;
  for (uint64_t i = 0; i < kLines; ++i) {
    LogDeferred(LogLevel::kInfo, "add", {{"i", i}});
  }
  for (uint64_t i = 0; i < kLines; ++i) {
    LogRefusal(LogLevel::kWarn, "rpc_error", {{"i", i}});
  }
  // All ten of each fall in one or two seconds: one or two are written.
  EXPECT_GE(RefusalLinesSuppressedTotal(), kLines - 2);
  EXPECT_LE(RefusalLinesSuppressedTotal(), kLines - 1);
  Log(LogLevel::kInfo, "flush");  // reports both kinds
  SetRoutineLineBudget(0);        // no limit again, for the other tests
  SetRefusalLineBudget(0);
  EXPECT_EQ(RefusalLinesSuppressedTotal(), 0u);
  uint64_t written[2] = {0, 0};     // add, rpc_error
  uint64_t suppressed[2] = {0, 0};  // kind=routine, kind=refusal
  for (absl::string_view line :
       absl::StrSplit(err.Text(), '\n', absl::SkipEmpty())) {
    if (absl::StrContains(line, "event=add ")) ++written[0];
    if (absl::StrContains(line, "event=rpc_error ")) ++written[1];
    if (!absl::StrContains(line, "event=log_lines_suppressed ")) continue;
    const bool refusal = absl::StrContains(line, " kind=refusal ");
    EXPECT_TRUE(refusal || absl::StrContains(line, " kind=routine ")) << line;
    EXPECT_THAT(line, HasSubstr(refusal ? "--log_refusal_lines_per_second"
                                        : "--log_routine_lines_per_second"));
    const size_t at = line.find("count=");
    ASSERT_NE(at, absl::string_view::npos) << line;
    suppressed[refusal ? 1 : 0] +=
        std::stoull(std::string(line.substr(at + 6)));
  }
  for (int kind = 0; kind < 2; ++kind) {
    EXPECT_GE(written[kind], 1u) << kind << "\n" << err.Text();
    EXPECT_EQ(written[kind] + suppressed[kind], kLines) << kind << "\n"
                                                        << err.Text();
  }
}

// The budget in LogDeferred: one line a second is written, the others of
// that second are counted, and the next write of the log reports them in
// one line before its own. The lines go out in well under a second, so at
// most the second's turn lets a second one through.
TEST(LogBatchingTest, LinesOverTheBudgetAreCountedInOneLine) {
  StderrToFile err;
  SetRoutineLineBudget(1);
  constexpr int kLines = 50;
  for (int i = 0; i < kLines; ++i) {
    LogDeferred(LogLevel::kInfo, "add", {{"i", i}});
  }
  Log(LogLevel::kWarn, "rpc_error", {{"n", 1}});
  SetRoutineLineBudget(0);  // no limit again, for the other tests
  const std::vector<std::string> lines =
      absl::StrSplit(err.Text(), '\n', absl::SkipEmpty());
  int written = 0;
  uint64_t suppressed = 0;
  for (const std::string& line : lines) {
    if (absl::StrContains(line, "event=add ")) ++written;
    if (absl::StrContains(line, "event=log_lines_suppressed")) {
      EXPECT_THAT(line, HasSubstr("level=warn"));
      const size_t at = line.find("count=");
      ASSERT_NE(at, std::string::npos) << line;
      suppressed += std::stoull(line.substr(at + 6));
    }
  }
  EXPECT_GE(written, 1) << err.Text();
  EXPECT_LE(written, 2) << err.Text();
  EXPECT_EQ(written + suppressed, static_cast<uint64_t>(kLines)) << err.Text();
  EXPECT_THAT(lines.back(), HasSubstr("event=rpc_error n=1"));
}

TEST(LogBatchingTest, TheFlusherWritesQueuedLinesOnItsOwn) {
  // stderr is a pipe here, so the test wakes when the line is written.
  int ends[2];
  ASSERT_EQ(pipe(ends), 0);
  const int saved = dup(STDERR_FILENO);
  dup2(ends[1], STDERR_FILENO);
  int ready = 0;
  std::string text(4096, '\0');
  {
    BatchingOn batching(absl::Milliseconds(5));
    LogDeferred(LogLevel::kInfo, "add", {{"n", 1}});
    // No Log and no stop: only the flusher can write it.
    pollfd readable = {ends[0], POLLIN, 0};
    ready = poll(&readable, 1, /*timeout_ms=*/20000);
    const ssize_t n = ready == 1 ? read(ends[0], text.data(), text.size()) : 0;
    text.resize(n > 0 ? n : 0);
  }
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(ends[0]);
  close(ends[1]);
  EXPECT_EQ(ready, 1);
  EXPECT_THAT(text, EndsWith("event=add n=1\n"));
}

// gRPC's lines (RouteGrpcLogs): ERROR ones are written at once as
// level=warn (gRPC may abort right after one), INFO ones are queued as
// routine lines, and both count against the routine line budget.
TEST(GrpcLogTest, ErrorLinesAreWrittenAtOnceAndAllCountAgainstTheBudget) {
  StderrToFile err;
  RouteGrpcLogs();
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_INFO);  // whatever GRPC_VERBOSITY
  {
    BatchingOn batching(absl::Hours(1));
    gpr_log(GPR_INFO, "queued %d", 1);
    EXPECT_EQ(err.Text(), "");
    gpr_log(GPR_ERROR, "Handshake failed %d", 2);
    const std::vector<std::string> lines =
        absl::StrSplit(err.Text(), '\n', absl::SkipEmpty());
    ASSERT_EQ(lines.size(), 2u) << err.Text();
    EXPECT_THAT(lines[0], HasSubstr("level=info event=grpc_log source="));
    EXPECT_THAT(lines[0], EndsWith(" message=\"queued 1\""));
    EXPECT_THAT(lines[1], HasSubstr("level=warn event=grpc_log source="));
    EXPECT_THAT(lines[1], HasSubstr("server_parts_test.cc:"));
    EXPECT_THAT(lines[1], EndsWith(" message=\"Handshake failed 2\""));
  }
  SetRoutineLineBudget(1);
  for (int i = 0; i < 10; ++i) gpr_log(GPR_ERROR, "refused %d", i);
  // All ten fall in one or two seconds: one or two are written.
  EXPECT_GE(RoutineLinesSuppressedTotal(), 8u);
  EXPECT_LE(RoutineLinesSuppressedTotal(), 9u);
  SetRoutineLineBudget(0);
  gpr_set_log_function(nullptr);  // gRPC's own again, for the other tests
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
}

// ---- Logging while the process exits ----------------------------------------
//
// gRPC's threads and libprotobuf log at any time, after main returns too,
// while static destructors run (gRPC 1.51 can finish its shutdown on a
// thread of its own). LogWhileExiting is such an exit: threads log in a
// tight loop through every route into this log (gpr_log into
// RouteGrpcLogs's function, ERROR lines written at once and INFO ones
// queued; GOOGLE_LOG into RouteProtobufLogs's handler; LogDeferred), under
// a budget, with batching never started, stopped or on; the main thread
// calls std::exit while they do, and once the static destructors have run
// waits until each has logged again. It never returns. The process exits
// 0 unless a line used state that the exit destroyed: a heap-use-after-free
// under ASan (whose report then shows in the test's output), a crash or
// std::terminate without it. Under ASan, LeakSanitizer's check at that
// exit also finds every line still queued reachable.

// Where batching stands when the process exits.
enum class BatchingAtExit {
  kNeverStarted,  // only the budget is at stake
  kStopped,       // as main leaves it: StopLogBatching, then return
  kOn,            // std::exit from anywhere while the flusher runs
};

// log_rounds_done[t] counts the rounds logger t has finished (every route
// once). A global, trivially destructible, as the loggers outlive the
// function that starts them and run on through the exit.
constexpr int kExitLoggers = 3;
std::atomic<uint64_t> log_rounds_done[kExitLoggers];

// WaitUntilEachLoggerLogsAgain returns once every logger has finished a
// round it had not when called (so each is running, past this point).
void WaitUntilEachLoggerLogsAgain() {
  uint64_t seen[kExitLoggers];
  for (int t = 0; t < kExitLoggers; ++t) {
    seen[t] = log_rounds_done[t].load(std::memory_order_acquire);
  }
  for (int t = 0; t < kExitLoggers; ++t) {
    while (log_rounds_done[t].load(std::memory_order_acquire) == seen[t]) {
      std::this_thread::yield();
    }
  }
}

// Set by LogWhileExiting just before it exits.
std::atomic<bool> loggers_outlive_static_destructors{false};

// WaitForTheLoggersAfterStaticDestructors runs as the process exits, after
// every static destructor of this binary, log.cc's included (exit runs the
// destructors registered with __cxa_atexit, last registered first, before
// _dl_fini runs the .fini_array functions, this one among them), and
// before LeakSanitizer's check (libasan's own fini, later). It waits until
// each logger has logged again, so each uses the log's state after
// whatever of it static destruction would destroy.
__attribute__((destructor)) void WaitForTheLoggersAfterStaticDestructors() {
  if (loggers_outlive_static_destructors.load(std::memory_order_acquire)) {
    WaitUntilEachLoggerLogsAgain();
  }
}

[[noreturn]] void LogWhileExiting(BatchingAtExit batching_at_exit) {
  // A watchdog, not a synchronisation: should the exit hang, SIGALRM ends
  // it and the test fails. (An ASan report on a logger racing LeakSanitizer's
  // check at exit can deadlock the two; seen with the state this test was
  // written for.) A sound exit takes well under a second, even under ASan.
  alarm(20);
  // As main sets it up. The budget admits every line, so each one reaches
  // the queue or a write rather than stopping at the count.
  SetRoutineLineBudget(uint64_t{1} << 40);
  RouteProtobufLogs();
  RouteGrpcLogs();
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_INFO);
  // The lines go to /dev/null until just before the exit, so that a
  // failure shows the sanitizer's report, not megabytes of lines.
  const int saved_stderr = dup(STDERR_FILENO);
  const int dev_null = open("/dev/null", O_WRONLY);
  dup2(dev_null, STDERR_FILENO);
  close(dev_null);
  if (batching_at_exit != BatchingAtExit::kNeverStarted) {
    StartLogBatching(absl::Milliseconds(1));  // the flusher writes too
  }
  for (int t = 0; t < kExitLoggers; ++t) {
    std::thread([t] {
      for (uint64_t round = 1;; ++round) {
        gpr_log(GPR_ERROR, "an error of logger %d", t);
        gpr_log(GPR_INFO, "an info line of logger %d", t);
        GOOGLE_LOG(WARNING) << "a warning of logger " << t;
        LogDeferred(LogLevel::kInfo, "add", {{"logger", t}});
        log_rounds_done[t].store(round, std::memory_order_release);
      }
    }).detach();  // a joinable std::thread destroyed at exit would abort
  }
  WaitUntilEachLoggerLogsAgain();
  if (batching_at_exit == BatchingAtExit::kStopped) {
    StopLogBatching();
    WaitUntilEachLoggerLogsAgain();  // lines written at once now
  }
  dup2(saved_stderr, STDERR_FILENO);
  loggers_outlive_static_destructors.store(true, std::memory_order_release);
  std::exit(0);
}

// A line still queued when the process ends is lost, but is no leak: under
// ASan, LeakSanitizer checks at this exit that the never-freed queue, and
// every line in it, is reachable (with no suppression).
TEST(LogAtExitTest, LinesStillQueuedAtExitAreNoLeak) {
  ASSERT_EXIT(
      {
        SetRoutineLineBudget(0);
        StartLogBatching(absl::Hours(1));  // only a stop would write them
        for (int i = 0; i < 100; ++i) {
          LogDeferred(LogLevel::kInfo, "add", {{"i", i}});
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Each exit has the loggers log after the static destructors (and race
// them while they run). With the state this replaced (a budget and a queue
// destroyed at exit), each test failed at its first exit in every run:
// under ASan, a heap-use-after-free of the budget or the queue's nodes;
// without it, SIGSEGV (batching stopped) or std::terminate (batching on: a
// joinable flusher destroyed), but for the budget alone, whose freed
// memory is read without a crash. The further exits vary the races.
constexpr int kExitsPerTest = 20;

// ExitsCleanlyEveryTime runs kExitsPerTest exits of LogWhileExiting with
// `batching`, each of which must end with status 0.
void ExitsCleanlyEveryTime(BatchingAtExit batching) {
  for (int exit = 0; exit < kExitsPerTest; ++exit) {
    ASSERT_EXIT(LogWhileExiting(batching), ::testing::ExitedWithCode(0), "")
        << "exit " << exit;
  }
}

TEST(LogAtExitTest, LinesLoggedWhileTheProcessExitsWithoutBatching) {
  ASSERT_NO_FATAL_FAILURE(ExitsCleanlyEveryTime(BatchingAtExit::kNeverStarted));
}

TEST(LogAtExitTest, LinesLoggedWhileTheProcessExitsAfterBatchingStopped) {
  ASSERT_NO_FATAL_FAILURE(ExitsCleanlyEveryTime(BatchingAtExit::kStopped));
}

TEST(LogAtExitTest, LinesLoggedWhileTheProcessExitsWithBatchingOn) {
  ASSERT_NO_FATAL_FAILURE(ExitsCleanlyEveryTime(BatchingAtExit::kOn));
}

TEST(WorkerPoolTest, RefusesBeyondItsQueueAndRunsWhatItTook) {
  absl::Notification release;
  absl::Notification started;
  std::atomic<int> ran{0};
  WorkerPool pool("test", /*threads=*/1, /*max_queued=*/2);
  ASSERT_TRUE(pool.TrySchedule([&] {
    started.Notify();
    release.WaitForNotification();
    ++ran;
  }));
  started.WaitForNotification();  // the worker is busy; the queue is empty
  EXPECT_TRUE(pool.TrySchedule([&] { ++ran; }));
  EXPECT_TRUE(pool.TrySchedule([&] { ++ran; }));
  EXPECT_FALSE(pool.TrySchedule([&] { ++ran; }));  // queue full
  EXPECT_FALSE(pool.stopping());                   // full, not shutting down
  EXPECT_EQ(pool.queued(), 2u);
  EXPECT_EQ(pool.max_queued(), 2u);
  EXPECT_EQ(pool.threads(), 1u);
  EXPECT_TRUE(pool.is_lock_free());
  release.Notify();
  pool.Stop();  // runs the queued tasks, then joins
  EXPECT_EQ(ran.load(), 3);
  EXPECT_FALSE(pool.TrySchedule([&] { ++ran; }));  // stopped
  EXPECT_TRUE(pool.stopping());
}

// The queue's nodes are one fixed-size array with 16-bit indices: the
// largest queue, kMaxQueued, is made (boost would throw for one node
// more), holds exactly that many tasks while its worker is busy, and runs
// them all.
TEST(WorkerPoolTest, TheLargestQueueHoldsKMaxQueuedTasks) {
  absl::Notification release;
  absl::Notification started;
  std::atomic<size_t> ran{0};
  WorkerPool pool("test", /*threads=*/1, WorkerPool::kMaxQueued);
  EXPECT_EQ(pool.max_queued(), WorkerPool::kMaxQueued);
  ASSERT_TRUE(pool.TrySchedule([&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  for (size_t i = 0; i < WorkerPool::kMaxQueued; ++i) {
    ASSERT_TRUE(pool.TrySchedule([&] { ++ran; })) << "task " << i;
  }
  EXPECT_FALSE(pool.TrySchedule([&] { ++ran; }));  // full
  release.Notify();
  pool.Stop();
  EXPECT_EQ(ran.load(), WorkerPool::kMaxQueued);
}

// A queue larger than a fixed-size queue can be is refused when the server
// is created, before any pool is opened, with a message that says why.
TEST(WorkerPoolTest, TheServerRefusesAnAddQueueAboveKMaxQueued) {
  VolumeServer::Options options;
  options.add_queue_per_pool = WorkerPool::kMaxQueued + 1;
  absl::StatusOr<std::unique_ptr<VolumeServer>> server =
      VolumeServer::Create(std::move(options));
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(),
              ::testing::HasSubstr("add_queue_per_pool: 65535 is above 65534"));
}

// ---- Security
// -----------------------------------------------------------------

// Tokens of the tests: 32 hex characters, and variants of the first.
constexpr char kAdminToken[] = "0123456789abcdef0123456789abcdef";
constexpr char kReaderToken[] = "fedcba9876543210fedcba9876543210";

TokenTable TwoTokens() {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(
      absl::StrCat("# operators\n\n  ", kAdminToken, "\tadmin  \r\n",
                   "   # dashboards\n", kReaderToken, " reader\n"),
      "test");
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : TokenTable();
}

TEST(TokenTableTest, ParsesPairsCommentsBlankLinesAndCrLf) {
  const TokenTable table = TwoTokens();
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.RoleCount(Role::kAdmin), 1u);
  EXPECT_EQ(table.RoleCount(Role::kReader), 1u);
  EXPECT_EQ(table.Lookup(kAdminToken), Role::kAdmin);
  EXPECT_EQ(table.Lookup(kReaderToken), Role::kReader);
  // The longest token there may be is found too.
  const std::string longest(kMaxTokenBytes, 'z');
  absl::StatusOr<TokenTable> one =
      TokenTable::Parse(absl::StrCat(longest, " admin"), "test");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->Lookup(longest), Role::kAdmin);
}

// A comment stays a comment, but one that reads as a whole `TOKEN ROLE`
// line ('#' then a valid token and role) is listed: it may be a token
// that starts with '#', which no client can use. Not listed: a plain
// comment, a token line commented out with '# ', or '#' then a line that
// would not parse.
TEST(TokenTableTest, CommentsThatReadAsTokenLinesAreListed) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(
      absl::StrCat("# operators\n#", kReaderToken, " reader\n", kAdminToken,
                   " admin\n# ", kReaderToken, " reader\n  #", kReaderToken,
                   "\tadmin\r\n#short admin\n#", kReaderToken, " root\n"),
      "test");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 1u);
  EXPECT_EQ(table->Lookup(absl::StrCat("#", kReaderToken)), Role::kNone);
  EXPECT_THAT(table->token_like_comments(), ::testing::ElementsAre(2, 5));
  EXPECT_THAT(TwoTokens().token_like_comments(), ::testing::IsEmpty());
}

TEST(TokenTableTest, LookupMatchesOnlyTheWholeToken) {
  const TokenTable table = TwoTokens();
  const std::string admin = kAdminToken;
  std::string last_byte = admin;
  last_byte.back() = 'X';
  std::string first_byte = admin;
  first_byte.front() = 'X';
  for (const std::string& other :
       {std::string(), admin.substr(0, admin.size() - 1),  // a prefix
        admin + "0",                                       // one byte more
        admin + std::string(1, '\0'),  // padding is not part of a token
        last_byte, first_byte, absl::AsciiStrToUpper(admin),
        std::string(kMaxTokenBytes, 'a'),
        std::string(kMaxTokenBytes + 1, 'a') /* over the limit */}) {
    SCOPED_TRACE(absl::StrCat("token of ", other.size(), " bytes"));
    EXPECT_EQ(table.Lookup(other), Role::kNone);
  }
}

TEST(TokenTableTest, BadLinesNameTheLineAndNeverTheToken) {
  const std::string secret = "s3cr3t-t0ken-v4lue-0123456789";
  struct Case {
    std::string text;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"# only comments\n\n", "holds no token"},
      {"\n" + secret + "\n",
       "line 2: expected `TOKEN ROLE` (2 fields), "
       "found 1"},
      {"# c\n" + secret + " admin extra\n", "line 2: expected"},
      {secret + " root\n", "line 1: the role is neither"},
      {"admin " + secret + "\n", "line 1: the role is neither"},
      {"short admin\n", "line 1: the token is 5 bytes; tokens are 16 to 256"},
      {std::string(kMaxTokenBytes + 1, 'a') + " reader\n",
       "line 1: the token is 257 bytes"},
      {secret + "\x01 admin\n", "line 1: byte 30 of the token is not"},
      {"s3cr3t-\xc3\xa9-t0ken-v4lue-0123 reader\n", "line 1: byte 8 of"},
      {secret + " reader\n\n" + secret + " admin\n",
       "line 3: the token is already on line 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message_part);
    absl::StatusOr<TokenTable> table = TokenTable::Parse(c.text, "FILE");
    ASSERT_FALSE(table.ok());
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(table.status().message(), HasSubstr("FILE: "));
    EXPECT_THAT(table.status().message(), HasSubstr(c.message_part));
    EXPECT_THAT(table.status().message(),
                ::testing::Not(HasSubstr(secret.substr(0, 8))));
  }
}

TEST(TokenTableTest, LoadNamesTheFlagAndFile) {
  absl::StatusOr<TokenTable> missing =
      TokenTable::Load("/nonexistent/groove-tokens");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("--auth-tokens=/nonexistent/groove-tokens: cannot "
                        "read"));
}

// The token file's mode is the clients' rule: others nothing, the group at
// most read, and group read only on a root-owned file (a Kubernetes Secret
// under fsGroup). The files here are the test's own, so 0640 is accepted
// exactly when the test runs as root.
TEST(TokenTableTest, LoadRefusesAFileOthersMayAccess) {
  const groove::testing::TempDir dir;
  const std::string path = dir.path() + "/tokens";
  const std::string text = absl::StrCat(kAdminToken, " admin\n");
  const bool root_owned = geteuid() == 0;
  struct Case {
    mode_t mode;
    std::string problem;  // "" when accepted
  };
  const std::vector<Case> cases = {
      {0600, ""},
      {0400, ""},
      {0640,
       root_owned ? "" : "is readable by its group and not owned by root"},
      {0644, "is accessible to others (mode 0644); chmod 600 " + path},
      {0604, "is accessible to others (mode 0604)"},
      {0601, "is accessible to others (mode 0601)"},
      {0620, "is writable or executable by its group (mode 0620)"},
      {0610, "is writable or executable by its group (mode 0610)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(
        absl::StrCat("mode 0", c.mode >> 6, (c.mode >> 3) & 7, c.mode & 7));
    groove::testing::WriteTextFile(path, text, c.mode);
    absl::StatusOr<TokenTable> table = TokenTable::Load(path);
    if (c.problem.empty()) {
      ASSERT_TRUE(table.ok()) << table.status();
      EXPECT_EQ(table->Lookup(kAdminToken), Role::kAdmin);
      continue;
    }
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(table.status().message(),
                HasSubstr("--auth-tokens=" + path + ": " + c.problem));
    EXPECT_THAT(table.status().message(),
                ::testing::Not(HasSubstr(kAdminToken)));
  }
}

TEST(AuthorizeTest, ChecksTheBearerTokenAndItsRole) {
  const TokenTable table = TwoTokens();
  using V = std::vector<absl::string_view>;
  const std::string admin = absl::StrCat("Bearer ", kAdminToken);
  const std::string reader = absl::StrCat("bearer ", kReaderToken);
  for (RpcMethod method :
       {RpcMethod::kListPools, RpcMethod::kAddVolume, RpcMethod::kRemoveVolume,
        RpcMethod::kInspect, RpcMethod::kReclaimVolume}) {
    SCOPED_TRACE(RpcMethodName(method));
    EXPECT_TRUE(Authorize(table, V{admin}, method).ok());
    const absl::Status as_reader = Authorize(table, V{reader}, method);
    if (RequiredRole(method) == Role::kReader) {
      EXPECT_TRUE(as_reader.ok()) << as_reader;
    } else {
      EXPECT_EQ(as_reader.code(), absl::StatusCode::kPermissionDenied);
      EXPECT_THAT(as_reader.message(),
                  HasSubstr("needs role admin; this token has role reader"));
      EXPECT_THAT(as_reader.message(), ::testing::Not(HasSubstr(kReaderToken)));
    }
    const std::string unknown = absl::StrCat("Bearer ", kAdminToken, "0");
    for (const V& bad :
         {V{}, V{admin, admin}, V{kAdminToken}, V{"Basic YWxhZGRpbg=="},
          V{"Bearer "}, V{"Bearer"}, V{unknown}}) {
      const absl::Status s = Authorize(table, bad, method);
      EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
      EXPECT_THAT(s.message(), ::testing::Not(HasSubstr(kAdminToken)));
    }
  }
}

TEST(AuthorizeTest, InspectWithVerifyNeedsAdmin) {
  const TokenTable table = TwoTokens();
  using V = std::vector<absl::string_view>;
  const std::string admin = absl::StrCat("Bearer ", kAdminToken);
  const std::string reader = absl::StrCat("Bearer ", kReaderToken);
  EXPECT_EQ(RequiredRole(RpcMethod::kInspect, /*verify=*/false), Role::kReader);
  EXPECT_EQ(RequiredRole(RpcMethod::kInspect, /*verify=*/true), Role::kAdmin);
  EXPECT_TRUE(Authorize(table, V{reader}, RpcMethod::kInspect, false).ok());
  EXPECT_TRUE(Authorize(table, V{admin}, RpcMethod::kInspect, true).ok());
  const absl::Status denied =
      Authorize(table, V{reader}, RpcMethod::kInspect, true);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(),
              HasSubstr("Inspect with verify=true needs role admin; this "
                        "token has role reader (verify reads the header of "
                        "every empty volume"));
  // verify means nothing to the other methods.
  EXPECT_TRUE(Authorize(table, V{reader}, RpcMethod::kListPools, true).ok());
}

TEST(AuthorizeTest, ReclaimVolumeNeedsAdmin) {
  const TokenTable table = TwoTokens();
  using V = std::vector<absl::string_view>;
  EXPECT_EQ(RequiredRole(RpcMethod::kReclaimVolume), Role::kAdmin);
  EXPECT_TRUE(Authorize(table, V{absl::StrCat("Bearer ", kAdminToken)},
                        RpcMethod::kReclaimVolume)
                  .ok());
  const absl::Status denied =
      Authorize(table, V{absl::StrCat("Bearer ", kReaderToken)},
                RpcMethod::kReclaimVolume);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.message(),
            "ReclaimVolume needs role admin; this token has role reader");
}

TEST(LoopbackTest, OnlyLoopbackHostsAndUnixSocketsAre) {
  for (const char* address :
       {"127.0.0.1:50051", "127.1.2.3:0", "[::1]:50051", "localhost:1",
        "[::ffff:127.0.0.1]:5", "unix:/run/groove-volumed/grpc.sock"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address :
       {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051", "128.0.0.1:1",
        "example.com:50051", "[::2]:1", "[::ffff:10.0.0.1]:5", "nonsense",
        "127.0.0.1.example.com:1", "unixhost:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST(ValidateServerConfigTest, NonLoopbackNeedsTlsTokensOrInsecure) {
  CommandLine command_line;
  command_line.data_dir = "/tmp/groove-test-defaults";
  command_line.listen_address = "0.0.0.0:50051";
  absl::StatusOr<v1::ServerConfig> refused = LoadServerConfig(command_line);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
      << refused.status();
  EXPECT_THAT(refused.status().message(),
              HasSubstr("--listen: listen_address: '0.0.0.0:50051' is not a "
                        "loopback address"));
  for (const char* flag :
       {"--tls-cert=FILE --tls-key=FILE", "--auth-tokens=FILE", "--insecure"}) {
    EXPECT_THAT(refused.status().message(), HasSubstr(flag));
  }
  CommandLine insecure = command_line;
  insecure.insecure = true;
  EXPECT_TRUE(LoadServerConfig(insecure).ok());
  CommandLine tokens = command_line;
  tokens.auth_tokens = "/etc/groove/tokens";
  EXPECT_TRUE(LoadServerConfig(tokens).ok());
  CommandLine tls = command_line;
  tls.tls_cert = "/etc/groove/cert.pem";
  tls.tls_key = "/etc/groove/key.pem";
  absl::StatusOr<v1::ServerConfig> with_tls = LoadServerConfig(tls);
  ASSERT_TRUE(with_tls.ok()) << with_tls.status();
  EXPECT_EQ(with_tls->tls().cert_file(), "/etc/groove/cert.pem");
  CommandLine half = command_line;
  half.tls_client_ca = "/etc/groove/ca.pem";
  EXPECT_THAT(LoadServerConfig(half).status().message(),
              HasSubstr("tls.cert_file: TLS needs both"));
}

// RecordedIn is an add of one volume at `index` from pool `pool`'s
// journal, recorded at `unix_ns`, with the id `id`.
RecordedPoolAdd RecordedIn(const std::string& pool, const std::string& id,
                           uint64_t index, int64_t unix_ns) {
  RecordedPoolAdd r;
  r.pool = pool;
  r.add.key = ParseRequestId(id);
  r.add.count = 1;
  r.add.info = "x";
  r.add.indices = {index};
  r.add.recorded_unix_ns = unix_ns;
  return r;
}

v1::AddVolumeRequest RepeatOf(const std::string& pool, const std::string& id) {
  v1::AddVolumeRequest request;
  request.set_pool(pool);
  request.set_count(1);
  request.set_info("x");
  request.set_request_id(id);
  return request;
}

// An id the in-memory log had forgotten may have been used again, in the
// same pool or in another, so the journals can hold it twice: after a
// restart it must be answered as it was last, whichever pool's journal
// comes first and in whatever order the adds are given.
TEST(RememberNewestTest, AnIdRecordedTwiceIsAnsweredWithItsNewestAdd) {
  const std::string again = "00000000-0000-4000-8000-000000000001";
  const std::string moved = "00000000-0000-4000-8000-000000000002";
  const std::string once = "00000000-0000-4000-8000-000000000003";
  RequestLog log;
  EXPECT_EQ(RememberNewest(
                {RecordedIn("a", again, 7, 300), RecordedIn("a", moved, 1, 100),
                 RecordedIn("b", once, 4, 150), RecordedIn("a", again, 3, 200),
                 RecordedIn("b", moved, 2, 250)},
                log),
            3u);
  RequestLog::Claim claim = log.Start(RepeatOf("a", again));
  ASSERT_EQ(claim.outcome, RequestLog::Outcome::kReplay);
  EXPECT_THAT(claim.response.volume_indices(), ElementsAre(7));
  // Used last for pool b: answered there, refused for pool a.
  claim = log.Start(RepeatOf("b", moved));
  ASSERT_EQ(claim.outcome, RequestLog::Outcome::kReplay);
  EXPECT_THAT(claim.response.volume_indices(), ElementsAre(2));
  claim = log.Start(RepeatOf("a", moved));
  EXPECT_EQ(claim.outcome, RequestLog::Outcome::kConflict);
  EXPECT_THAT(claim.conflict, HasSubstr("pool was 'b', is 'a' now"));
  claim = log.Start(RepeatOf("b", once));
  ASSERT_EQ(claim.outcome, RequestLog::Outcome::kReplay);
  EXPECT_THAT(claim.response.volume_indices(), ElementsAre(4));
}

TEST(RequestIdTest, FormatIsParsesInverseInLowerCase) {
  const RequestKey key = ParseRequestId("123E4567-e89b-42D3-A456-426614174000");
  EXPECT_EQ(key.high, 0x123e4567e89b42d3u);
  EXPECT_EQ(key.low, 0xa456426614174000u);
  EXPECT_EQ(FormatRequestId(key), "123e4567-e89b-42d3-a456-426614174000");
  EXPECT_EQ(FormatRequestId(RequestKey{0, 1}),
            "00000000-0000-0000-0000-000000000001");
}

}  // namespace
}  // namespace groove::server
