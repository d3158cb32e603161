// The fuzz targets' inputs as regression tests, in every preset: each
// checked-in corpus file (tests/fuzz/corpus/<target>/: the seeds and every
// crash the fuzzers ever found) goes through the same harness function as
// in the fuzzer (tests/fuzz/fuzz_harness.h) and must not break an
// invariant; each crash also has a test of its own below that says what
// the fixed code answers instead.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_harness.h"
#include "groove/named_pool.h"
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

}  // namespace
}  // namespace groove::fuzz
