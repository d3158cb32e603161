// The facts-file constants and layout, checked at run time as well as by the
// headers' static assertions (so a reader of the test sees them stated).

#include <cstddef>

#include "gtest/gtest.h"
#include "groove/pool_error.h"
#include "groove/volume.h"
#include "groove/volume_pool.h"

namespace groove {
namespace {

TEST(VolumeLayoutTest, ConstantsMatchTheFactsFile) {
  EXPECT_EQ(kVolumeMagic, 0xfd67007e701c3300ULL);
  EXPECT_EQ(kVolumeEmptyMagic, ~0xfd67007e701c3300ULL);
  EXPECT_EQ(kVolumeAlign, 4096u);
  EXPECT_EQ(kVolumeDefaultFootprint, uint64_t{1} << 30);
  EXPECT_EQ(kVolumeInfoMax, 480u);
  EXPECT_EQ(kVolumeDefaultDataMax, (uint64_t{1} << 30) - 512);
  EXPECT_EQ(kPoolMagic, 0xfd67007e70190010ULL);
}

TEST(VolumeLayoutTest, HeaderFieldsSitAtTheirOffsets) {
  EXPECT_EQ(sizeof(VolumeHeader), 512u);
  EXPECT_EQ(offsetof(VolumeHeader, magic), 0u);
  EXPECT_EQ(offsetof(VolumeHeader, idx), 8u);
  EXPECT_EQ(offsetof(VolumeHeader, next), 16u);
  EXPECT_EQ(offsetof(VolumeHeader, info_sz), 24u);
  EXPECT_EQ(offsetof(VolumeHeader, info), 32u);
}

TEST(VolumeLayoutTest, DefaultVolumeIsOneAlignedGibibyte) {
  EXPECT_EQ(alignof(DefaultVolume), 4096u);
  EXPECT_EQ(sizeof(DefaultVolume), uint64_t{1} << 30);
  EXPECT_EQ(offsetof(DefaultVolume, data), 512u);
}

TEST(VolumeLayoutTest, PoolHeaderStartsWithMagicThenVersionedTop) {
  EXPECT_EQ(alignof(PoolHeader), 128u);
  EXPECT_EQ(offsetof(PoolHeader, magic), 0u);
  EXPECT_EQ(offsetof(PoolHeader, ver_top), 8u);
  EXPECT_EQ(offsetof(PoolHeader, reserved), 16u);
  EXPECT_EQ(offsetof(PoolHeader, stats), 128u);
}

TEST(VolumeLayoutTest, CountersAreABaselineThenOneCacheLinePerShard) {
  EXPECT_EQ(kCounterShards, 21u);
  EXPECT_EQ(sizeof(PoolHeader), 1536u);
  EXPECT_EQ(sizeof(PoolStats), 64u + 64u * kCounterShards);
  EXPECT_EQ(offsetof(PoolHeader, stats) + offsetof(PoolStats, baseline), 128u);
  EXPECT_EQ(offsetof(PoolHeader, stats) + offsetof(PoolStats, shards), 192u);
  EXPECT_EQ(sizeof(CounterShard), 64u);
  EXPECT_EQ(alignof(CounterShard), 64u);
  EXPECT_EQ(offsetof(CounterShard, owner), 0u);
  EXPECT_EQ(offsetof(CounterShard, counts), 8u);
  EXPECT_EQ(sizeof(CounterBaseline), 64u);
  EXPECT_EQ(offsetof(CounterBaseline, counts), 0u);
  EXPECT_EQ(offsetof(CounterBaseline, added_at_restart), 40u);
  EXPECT_EQ(offsetof(CounterValues, volumes_added), 0u);
  EXPECT_EQ(offsetof(CounterValues, volumes_removed), 8u);
  EXPECT_EQ(offsetof(CounterValues, acquires), 16u);
  EXPECT_EQ(offsetof(CounterValues, releases), 24u);
  EXPECT_EQ(offsetof(CounterValues, volumes_quarantined), 32u);
}

TEST(VolumeLayoutTest, VersionedTopPacksVersionAboveA34BitIndex) {
  EXPECT_EQ(kIndexBits, 34);
  EXPECT_EQ(kNullIndex, (uint64_t{1} << 34) - 1);
  const uint64_t top = PackTop(5, 123);
  EXPECT_EQ(top, (uint64_t{5} << 34) | 123);
  EXPECT_EQ(TopVersion(top), 5u);
  EXPECT_EQ(TopIndex(top), 123u);
  EXPECT_TRUE(TopIsLocked(top));
  EXPECT_FALSE(TopIsLocked(PackTop(4, 123)));
  // The version is 30 bits: it wraps without touching the index.
  const uint64_t max_version = (uint64_t{1} << 30) - 1;
  EXPECT_EQ(TopVersion(PackTop(max_version, kNullIndex)), max_version);
  EXPECT_EQ(TopIndex(PackTop(max_version, kNullIndex)), kNullIndex);
}

TEST(PoolErrorTest, CodesFollowTheSeedFamily) {
  EXPECT_EQ(static_cast<int>(PoolError::kSuccess), 0);
  EXPECT_EQ(static_cast<int>(PoolError::kInvalid), -1);
  EXPECT_EQ(static_cast<int>(PoolError::kAgain), -2);
  EXPECT_EQ(static_cast<int>(PoolError::kCorrupt), -3);
  EXPECT_EQ(static_cast<int>(PoolError::kEmpty), -4);
  EXPECT_EQ(static_cast<int>(PoolError::kFull), -5);
  EXPECT_EQ(static_cast<int>(PoolError::kKey), -6);
}

TEST(PoolErrorTest, StatusCarriesTheSpecificCodeAndTheOperation) {
  EXPECT_TRUE(PoolErrorToStatus(PoolError::kSuccess, "x").ok());
  const struct {
    PoolError error;
    absl::StatusCode code;
  } cases[] = {
      {PoolError::kInvalid, absl::StatusCode::kInvalidArgument},
      {PoolError::kAgain, absl::StatusCode::kUnavailable},
      {PoolError::kCorrupt, absl::StatusCode::kDataLoss},
      {PoolError::kEmpty, absl::StatusCode::kFailedPrecondition},
      {PoolError::kFull, absl::StatusCode::kResourceExhausted},
      {PoolError::kKey, absl::StatusCode::kAlreadyExists},
  };
  for (const auto& c : cases) {
    const absl::Status status =
        PoolErrorToStatus(c.error, "remove a volume from pool 'main'");
    EXPECT_EQ(status.code(), c.code) << PoolErrorName(c.error);
    EXPECT_NE(status.message().find("remove a volume from pool 'main'"),
              absl::string_view::npos)
        << status;
    EXPECT_NE(status.message().find(PoolErrorName(c.error)),
              absl::string_view::npos)
        << status;
  }
}

}  // namespace
}  // namespace groove
