// The fuzz targets' inputs as regression tests, in every preset: each
// checked-in corpus file (tests/fuzz/corpus/<target>/: the seeds and every
// crash the fuzzers ever found) goes through the same harness function as
// in the fuzzer (tests/fuzz/fuzz_harness.h) and must not break an
// invariant; each crash also has a test of its own below that says what
// the fixed code answers instead.

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_harness.h"
#include "groove/named_pool.h"
#include "groove/request_journal.h"
#include "gtest/gtest.h"
#include "support/temp_dir.h"

namespace groove::fuzz {
namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// CorpusFiles lists tests/fuzz/corpus/<target>/, sorted.
std::vector<std::filesystem::path> CorpusFiles(const std::string& target) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(GROOVE_FUZZ_CORPUS_DIR) / target)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string Corpus(const std::string& target, const std::string& name) {
  return ReadFile(std::filesystem::path(GROOVE_FUZZ_CORPUS_DIR) / target /
                  name);
}

TEST(FuzzCorpusTest, ConfigCorpusKeepsInvariants) {
  const auto files = CorpusFiles("config_fuzzer");
  ASSERT_FALSE(files.empty());
  for (const auto& file : files) {
    EXPECT_EQ(RunConfigInput(ReadFile(file)).violation, "") << file;
  }
}

TEST(FuzzCorpusTest, RecoveryCorpusKeepsInvariants) {
  const auto files = CorpusFiles("recovery_fuzzer");
  ASSERT_FALSE(files.empty());
  for (const auto& file : files) {
    EXPECT_EQ(RunRecoveryInput(ReadFile(file)).violation, "") << file;
  }
}

TEST(FuzzCorpusTest, JournalCorpusKeepsInvariants) {
  const auto files = CorpusFiles("journal_fuzzer");
  ASSERT_FALSE(files.empty());
  for (const auto& file : files) {
    EXPECT_EQ(RunJournalInput(ReadFile(file)).violation, "") << file;
  }
}

TEST(FuzzCorpusTest, RequestCorpusKeepsInvariants) {
  const auto files = CorpusFiles("request_fuzzer");
  ASSERT_FALSE(files.empty());
  for (const auto& file : files) {
    EXPECT_EQ(RunRequestInput(ReadFile(file)).violation, "") << file;
  }
}

// The recovery harness writes pool files by the metadata layout's offsets
// (recovery_harness.cc): a real pool, encoded and written back, must open
// with its volumes, or the fuzzer would only ever see broken pools.
TEST(RecoveryImageTest, RealPoolRoundTripsThroughTheImage) {
  groove::testing::TempDir dir;
  RecoveryGeometry g;
  g.max_volumes = 8;
  PoolConfig config;
  config.name = kRecoveryPoolName;
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = g.volume_size_bytes;
  config.max_volumes = g.max_volumes;
  {
    auto pool = NamedPool::Open(dir.path(), config);
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE((*pool)->AddVolumes(3, std::nullopt, "tenant=a").ok());
  }
  absl::StatusOr<std::string> image = EncodeRecoveryImage(dir.path(), g);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(DecodeGeometry(static_cast<uint8_t>((*image)[0])).max_volumes, 8u);
  const RecoveryOutcome out = RunRecoveryInput(*image);
  EXPECT_TRUE(out.open.ok()) << out.open;
  EXPECT_TRUE(out.verify.ok()) << out.verify;
  EXPECT_EQ(out.violation, "");
}

TEST(RecoveryImageTest, GeometryByteRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(EncodeGeometry(DecodeGeometry(static_cast<uint8_t>(b))), b);
  }
}

// The journal harness writes the file by the header's and the entries'
// layout (journal_harness.cc, with the magic and layout version it cannot
// static_assert): a real journal, read into an image and written back,
// must be kept with its adds, or the fuzzer would only ever see emptied
// journals.
TEST(JournalImageTest, RealJournalRoundTripsThroughTheImage) {
  groove::testing::TempDir dir;
  const std::string path = dir.path() + "/j.requests";
  constexpr uint8_t kM = 15;  // max_volumes 16
  {
    auto journal = RequestJournal::Open(
        path, kJournalIdentity, JournalMaxVolumes(0, kM),
        RequestJournal::kAnyBatch,
        [](uint64_t, std::span<const uint64_t>) { return true; }, nullptr,
        nullptr);
    ASSERT_TRUE(journal.ok()) << journal.status();
    const std::vector<uint64_t> a = {1, 2}, b = {5, 9}, c = {15};
    for (const auto& [batch, indices] :
         {std::pair{7, a}, std::pair{8, b}, std::pair{9, c}}) {
      auto entry = (*journal)->Begin(RequestKey{1, 2}, batch, indices.size(),
                                     std::nullopt, "info", indices);
      ASSERT_TRUE(entry.ok()) << entry.status();
      if (batch == 9) break;  // left PENDING
      (*journal)->Commit(*entry, batch);
      (*journal)->Finish(*entry, batch);
    }
  }
  // Batch 9 (PENDING) is answered "rolled forward" by bit 9 % 8 = 1.
  absl::StatusOr<JournalImage> image = ReadJournalImage(path, 0, kM, 0x02);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->records.size(), 3u);
  EXPECT_EQ(DecodeJournalInput(EncodeJournalInput(*image)), *image);
  const JournalOutcome out = RunJournalInput(EncodeJournalInput(*image));
  EXPECT_TRUE(out.open.ok()) << out.open;
  EXPECT_TRUE(out.verify.ok()) << out.verify;
  EXPECT_EQ(out.report.reset_reason, "");
  EXPECT_EQ(out.report.committed, 3u);
  EXPECT_EQ(out.report.resolved_committed, 1u);
  ASSERT_EQ(out.recorded.size(), 3u);
  EXPECT_EQ(out.recorded[0].indices, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(out.recorded[2].batch, 9u);
  EXPECT_TRUE(out.added);
  EXPECT_TRUE(out.reopen.ok()) << out.reopen;
  EXPECT_EQ(out.violation, "");
}

TEST(JournalImageTest, InputRoundTrips) {
  JournalImage image;
  image.flags = kJournalLargePool | kJournalOtherPool;
  image.max_volumes_byte = 200;
  image.answers = 0x81;
  image.next_batch_byte = 9;
  JournalRecord r;
  r.entry = 1023;
  r.state_word = 3 | 77 << 2;
  r.key = {~uint64_t{0}, 5};
  r.count = 1024;
  r.first_index = 12;
  r.info_size = 480;
  r.recorded_unix_ns = -1;
  r.info = std::string(255, 'i');
  r.indices = {12};
  r.continue_indices = true;
  image.records.push_back(r);
  r.entry = 0;
  r.info = "";
  r.indices = {9, 3};
  r.continue_indices = false;
  image.records.push_back(r);
  EXPECT_EQ(DecodeJournalInput(EncodeJournalInput(image)), image);
  EXPECT_EQ(JournalMaxVolumes(kJournalLargePool, 255), uint64_t{1} << 30);
  EXPECT_EQ(JournalMaxVolumes(0, 0), 1u);
  EXPECT_EQ(JournalNextBatch(0), RequestJournal::kAnyBatch);
  EXPECT_EQ(JournalNextBatch(1), 0u);
  EXPECT_EQ(JournalNextBatch(255), 254u);
}

// recovery_fuzzer, crash 1: a committed add (slot PUSHING) whose volume
// header is corrupt (idx 2^59 + 1 for volume 2). Recovery pushed it
// without looking, so Open succeeded and the very next Verify reported
// DATA_LOSS: an Acquire would have been handed a corrupt volume. Now
// recovery leaves it off the stack, quarantined.
TEST(FuzzCrashTest, RecoveryDoesNotPushACorruptCommittedVolume) {
  const RecoveryOutcome out = RunRecoveryInput(
      Corpus("recovery_fuzzer", "crash_recovery_pushed_corrupt_header"));
  EXPECT_TRUE(out.open.ok()) << out.open;
  EXPECT_TRUE(out.verify.ok()) << out.verify;
  EXPECT_EQ(out.report.volumes_quarantined, 1u);
  EXPECT_EQ(out.violation, "");
}

// recovery_fuzzer, crash 2: metadata whose recorded page size does not
// fit its backing (here not a power of two, and the volume size no
// multiple of it; 0 divided by zero: UBSan, SIGFPE in a release build). The
// owner aligned its reservation to it (RoundUp) before anything checked it.
// Now Open refuses it as corrupt (DATA_LOSS: the server quarantines the
// pool) and a data-plane Join as bad metadata.
TEST(FuzzCrashTest, OpenRefusesARecordedPageSizeThatIsNotTheBackings) {
  const std::string image = Corpus("recovery_fuzzer", "crash_zero_page_size");
  const RecoveryOutcome out = RunRecoveryInput(image);
  EXPECT_EQ(out.open.code(), absl::StatusCode::kDataLoss) << out.open;
  EXPECT_EQ(out.violation, "");
  std::string joined = image;
  joined[0] = static_cast<char>(static_cast<uint8_t>(joined[0]) | 0x80);
  const RecoveryOutcome join = RunRecoveryInput(joined);
  EXPECT_EQ(join.join.code(), absl::StatusCode::kFailedPrecondition)
      << join.join;
  EXPECT_EQ(join.violation, "");
}

// recovery_fuzzer, crash 3: a data-plane Join of a pool whose metadata
// records a bigger span than its volume store file holds (8 KiB volumes,
// a store sized for 4 KiB ones). Join mapped the whole span and the first
// ListVolumes read past the file's end: SIGBUS in the data-plane process.
// The owner read volume headers the same way during recovery. Now both
// check the store's size: Join fails with FAILED_PRECONDITION, Open with
// DATA_LOSS.
TEST(FuzzCrashTest, JoinRefusesAStoreShorterThanThePoolsSpan) {
  const RecoveryOutcome out = RunRecoveryInput(
      Corpus("recovery_fuzzer", "crash_join_store_shorter_than_span"));
  EXPECT_EQ(out.join.code(), absl::StatusCode::kFailedPrecondition) << out.join;
  EXPECT_EQ(out.violation, "");
}

TEST(FuzzCrashTest, OpenRefusesAStoreShorterThanThePoolsSpan) {
  groove::testing::TempDir dir;
  PoolConfig config;
  config.name = "short";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = 4096;
  config.max_volumes = 4;
  {
    auto pool = NamedPool::Open(dir.path(), config);
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE((*pool)->AddVolumes(4, std::nullopt, "").ok());
  }
  ASSERT_EQ(truncate((dir.path() + "/short.volumes").c_str(), 4096), 0);
  auto pool = NamedPool::Open(dir.path(), config);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kDataLoss) << pool.status();
}

// journal_fuzzer, crash 1: two entries (0 and 21) that both record a
// committed add of batch 9, each valid on its own (a batch is one add's:
// a damaged file, or one whose pages a host crash kept from two times).
// Open kept both, and its own Verify then rejected the journal
// (DATA_LOSS: "entries 0 and 21 both record batch 9"); the server would
// have answered a key with an add that may not be the batch's. Open must
// keep one of them at most.
TEST(FuzzCrashTest, JournalOpenKeepsNoTwoEntriesOfOneBatch) {
  const JournalOutcome out = RunJournalInput(
      Corpus("journal_fuzzer", "crash_two_entries_of_one_batch"));
  EXPECT_TRUE(out.open.ok()) << out.open;
  EXPECT_TRUE(out.verify.ok()) << out.verify;
  EXPECT_EQ(out.violation, "");
}

// The same, written plainly: batch 9 COMMITTED in entries 0 and 21, batch
// 8 in entry 5 (kept), and batch 9 PENDING in entry 7 and COMMITTED in
// entry 8 of a second image.
TEST(FuzzCrashTest, JournalOpenKeepsNoTwoEntriesOfOneBatchAmongOthers) {
  JournalRecord r;
  r.state_word = 3 | 9 << 2;  // COMMITTED, batch 9
  r.count = 1;
  r.indices = {3};
  JournalImage image;
  image.max_volumes_byte = 15;
  image.answers = 0xff;  // every PENDING batch rolled forward
  for (const uint16_t entry : {0, 21}) {
    r.entry = entry;
    image.records.push_back(r);
  }
  r.entry = 5;
  r.state_word = 3 | 8 << 2;
  image.records.push_back(r);
  JournalOutcome out = RunJournalInput(EncodeJournalInput(image));
  EXPECT_TRUE(out.verify.ok()) << out.verify;
  EXPECT_EQ(out.violation, "");

  image.records.clear();
  r.entry = 7;
  r.state_word = 2 | 9 << 2;  // PENDING, batch 9
  image.records.push_back(r);
  r.entry = 8;
  r.state_word = 3 | 9 << 2;
  image.records.push_back(r);
  out = RunJournalInput(EncodeJournalInput(image));
  EXPECT_TRUE(out.verify.ok()) << out.verify;
  EXPECT_EQ(out.violation, "");
}

}  // namespace
}  // namespace groove::fuzz
