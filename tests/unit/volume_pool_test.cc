// VolumePool, one thread: bad arguments first, then the seed's randomized
// add/remove rounds against a simple model, then corruption handling.

#include "groove/volume_pool.h"

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "groove/cas_backoff.h"
#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/pool_workload.h"

namespace groove {
namespace {

using testing::PoolMemory;

constexpr uint64_t kSmallFootprint = 4096;

class VolumePoolTest : public ::testing::Test {
 protected:
  VolumePoolTest() : memory_(16, kSmallFootprint) {}
  VolumePool Pool() { return memory_.FormatAndJoin(); }
  PoolMemory memory_;
};

// ---- Join ----------------------------------------------------------------

TEST_F(VolumePoolTest, JoinRejectsNullPointers) {
  VolumePool::Format(memory_.header());
  EXPECT_EQ(VolumePool::Join(nullptr, memory_.volume0(), 16, kSmallFootprint)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VolumePool::Join(memory_.header(), nullptr, 16, kSmallFootprint)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VolumePoolTest, JoinRejectsMisalignedRegions) {
  VolumePool::Format(memory_.header());
  EXPECT_EQ(VolumePool::Join(memory_.header(), memory_.volume0() + 512, 15,
                             kSmallFootprint)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  auto* misaligned_header = reinterpret_cast<PoolHeader*>(
      reinterpret_cast<std::byte*>(memory_.header()) + 64);
  EXPECT_EQ(VolumePool::Join(misaligned_header, memory_.volume0(), 16,
                             kSmallFootprint)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VolumePoolTest, JoinRejectsBadFootprints) {
  VolumePool::Format(memory_.header());
  for (uint64_t footprint : {uint64_t{0}, uint64_t{2048}, uint64_t{4096 + 1},
                             uint64_t{3 * 4096}}) {
    EXPECT_EQ(VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                               footprint)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << footprint;
  }
}

TEST_F(VolumePoolTest, JoinRejectsBadVolumeCounts) {
  VolumePool::Format(memory_.header());
  EXPECT_EQ(
      VolumePool::Join(memory_.header(), memory_.volume0(), 0, kSmallFootprint)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VolumePool::Join(memory_.header(), memory_.volume0(),
                             kMaxVolumes + 1, kSmallFootprint)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // A span that would wrap around the address space.
  EXPECT_EQ(VolumePool::Join(memory_.header(), memory_.volume0(), kMaxVolumes,
                             uint64_t{1} << 40)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VolumePoolTest, JoinRefusesAnUnformattedHeader) {
  memory_.header()->magic.store(0);  // never formatted
  const absl::Status status =
      VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                       kSmallFootprint)
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("format the pool first"),
            absl::string_view::npos);
}

TEST_F(VolumePoolTest, FormatLeavesAnEmptyUnlockedPool) {
  VolumePool pool = Pool();
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
  EXPECT_FALSE(pool.IsLocked());
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 0u);
  EXPECT_EQ(pool.Counts().empty_volumes, 0u);
}

// ---- Add: bad arguments ------------------------------------------------------

TEST_F(VolumePoolTest, AddRejectsZeroCount) {
  VolumePool pool = Pool();
  EXPECT_EQ(pool.Add(0, 0, "x"), PoolError::kInvalid);
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
}

TEST_F(VolumePoolTest, AddRejectsRangesOutsideThePool) {
  VolumePool pool = Pool();
  EXPECT_EQ(pool.Add(16, 1, ""), PoolError::kInvalid);
  EXPECT_EQ(pool.Add(15, 2, ""), PoolError::kInvalid);
  EXPECT_EQ(pool.Add(0, 17, ""), PoolError::kInvalid);
  // first_index + count overflows 64 bits.
  EXPECT_EQ(pool.Add(1, UINT64_MAX, ""), PoolError::kInvalid);
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
  EXPECT_EQ(pool.Counts().volumes_added, 0u);
  // Nothing was formatted either.
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_EQ(pool.VolumeAt(i)->magic.load(), kVolumeNotAVolume);
  }
}

TEST_F(VolumePoolTest, AddRefusesToFormatOverALiveVolume) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(4, 2, "a"), PoolError::kSuccess);
  VolumeHeader* in_use = nullptr;
  ASSERT_EQ(pool.Acquire(&in_use), PoolError::kSuccess);  // index 4
  // Overlaps the empty volume 5: nothing of [2, 6) is formatted.
  EXPECT_EQ(pool.Add(2, 4, "b"), PoolError::kKey);
  // Overlaps the in-use volume 4.
  EXPECT_EQ(pool.Add(4, 1, "b"), PoolError::kKey);
  EXPECT_EQ(pool.VolumeAt(2)->magic.load(), kVolumeNotAVolume);
  EXPECT_EQ(pool.VolumeAt(3)->magic.load(), kVolumeNotAVolume);
  EXPECT_EQ(pool.Counts().volumes_added, 2u);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 1u);
}

TEST_F(VolumePoolTest, AddPushesHighestFirstSoLowestIsTakenFirst) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(3, 4, "info"), PoolError::kSuccess);
  EXPECT_EQ(pool.PeekTop(), 3u);
  for (uint64_t expected = 3; expected < 7; ++expected) {
    VolumeHeader* v = nullptr;
    ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
    EXPECT_EQ(pool.IndexOf(v), expected);
    EXPECT_EQ(v->idx.load(), expected);
    EXPECT_EQ(v->magic.load(), kVolumeMagic);
  }
}

TEST_F(VolumePoolTest, AddClampsInfoLongerThanTheMaximum) {
  VolumePool pool = Pool();
  const std::string info(700, 'z');
  ASSERT_EQ(pool.Add(0, 1, info), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Remove(&v), PoolError::kSuccess);
  EXPECT_EQ(v->info_sz.load(), kVolumeInfoMax);
  EXPECT_EQ(VolumeInfo(*v), info.substr(0, kVolumeInfoMax));
}

TEST_F(VolumePoolTest, AddZeroesInfoPastItsSize) {
  VolumePool pool = Pool();
  std::memset(pool.VolumeAt(0)->info, 0xab, kVolumeInfoMax);  // stale bytes
  ASSERT_EQ(pool.Add(0, 1, "abc"), PoolError::kSuccess);
  const VolumeHeader* v = pool.VolumeAt(0);
  EXPECT_EQ(VolumeInfo(*v), "abc");
  for (uint64_t i = 3; i < kVolumeInfoMax; ++i) ASSERT_EQ(v->info[i], 0) << i;
}

// ---- Remove / Acquire / Release ---------------------------------------------

TEST_F(VolumePoolTest, RemoveFromAnEmptyPoolReturnsEmpty) {
  VolumePool pool = Pool();
  VolumeHeader* v = reinterpret_cast<VolumeHeader*>(0x1);
  EXPECT_EQ(pool.Remove(&v), PoolError::kEmpty);
  EXPECT_EQ(v, nullptr);
  EXPECT_EQ(pool.Acquire(&v), PoolError::kEmpty);
}

TEST_F(VolumePoolTest, RemoveMarksTheVolumeNotAVolume) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(2, 1, "keep"), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Remove(&v), PoolError::kSuccess);
  EXPECT_EQ(v, pool.VolumeAt(2));
  EXPECT_EQ(v->magic.load(), kVolumeNotAVolume);
  EXPECT_EQ(VolumeInfo(*v), "keep");
  EXPECT_EQ(pool.Counts().volumes_removed, 1u);
  EXPECT_EQ(pool.Counts().empty_volumes, 0u);
  // Its index can be added again.
  EXPECT_EQ(pool.Add(2, 1, "again"), PoolError::kSuccess);
}

TEST_F(VolumePoolTest, ReleasePutsTheVolumeBackOnTop) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 3, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  std::memset(VolumeData(v), 0x5a, kSmallFootprint - kVolumeHeaderBytes);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  EXPECT_EQ(v->magic.load(), kVolumeEmptyMagic);
  EXPECT_EQ(pool.PeekTop(), 0u);
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.acquires, 1u);
  EXPECT_EQ(counts.releases, 1u);
  EXPECT_EQ(counts.empty_volumes, 3u);
}

// Release reuses the header's `next` when it is already the top it links
// to; here it is stale every time (the top moved since each acquire), so
// every release must rewrite it.
TEST_F(VolumePoolTest, ReleaseRelinksAVolumeWhoseNextIsStale) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 3, ""), PoolError::kSuccess);  // stack: 0 1 2
  VolumeHeader* first = nullptr;
  VolumeHeader* second = nullptr;
  ASSERT_EQ(pool.Acquire(&first), PoolError::kSuccess);   // 0, next 1
  ASSERT_EQ(pool.Acquire(&second), PoolError::kSuccess);  // 1, next 2
  ASSERT_EQ(pool.Release(first), PoolError::kSuccess);    // stack: 0 2
  EXPECT_EQ(first->next.load(), 2u);
  ASSERT_EQ(pool.Release(second), PoolError::kSuccess);  // stack: 1 0 2
  EXPECT_EQ(second->next.load(), 0u);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 3u);
  std::vector<uint64_t> order;
  VolumeHeader* v = nullptr;
  while (pool.Acquire(&v) == PoolError::kSuccess) order.push_back(v->idx);
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 0, 2}));
}

TEST_F(VolumePoolTest, ReleaseRejectsADoubleRelease) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  EXPECT_EQ(pool.Release(v), PoolError::kInvalid);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 2u);
}

TEST_F(VolumePoolTest, ReleaseRejectsAddressesThatAreNotVolumesOfThePool) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 1, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  auto* inside = reinterpret_cast<VolumeHeader*>(
      reinterpret_cast<std::byte*>(v) + 512);
  EXPECT_EQ(pool.Release(inside), PoolError::kInvalid);
  auto* past_end = reinterpret_cast<VolumeHeader*>(
      memory_.volume0() + 16 * kSmallFootprint);
  EXPECT_EQ(pool.Release(past_end), PoolError::kInvalid);
  EXPECT_EQ(pool.Release(reinterpret_cast<VolumeHeader*>(memory_.header())),
            PoolError::kInvalid);
  // A never-added index.
  EXPECT_EQ(pool.Release(pool.VolumeAt(7)), PoolError::kInvalid);
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
  EXPECT_EQ(pool.Release(v), PoolError::kSuccess);
}

// ---- Lock, Reset ---------------------------------------------------------

TEST_F(VolumePoolTest, LockMakesNonBlockingOperationsReturnAgain) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  VolumeHeader* held = nullptr;
  ASSERT_EQ(pool.Acquire(&held), PoolError::kSuccess);
  ASSERT_EQ(pool.Lock(Wait::kNoBlock), PoolError::kSuccess);
  EXPECT_TRUE(pool.IsLocked());
  EXPECT_EQ(pool.Lock(Wait::kNoBlock), PoolError::kAgain);
  VolumeHeader* v = nullptr;
  EXPECT_EQ(pool.Acquire(&v, Wait::kNoBlock), PoolError::kAgain);
  EXPECT_EQ(pool.Remove(&v, Wait::kNoBlock), PoolError::kAgain);
  EXPECT_EQ(pool.Release(held, Wait::kNoBlock), PoolError::kAgain);
  // A refused release leaves the volume in use, with its owner.
  EXPECT_EQ(held->magic.load(), kVolumeMagic);
  pool.Unlock();
  EXPECT_FALSE(pool.IsLocked());
  EXPECT_EQ(pool.Release(held, Wait::kNoBlock), PoolError::kSuccess);
  EXPECT_EQ(pool.Acquire(&v, Wait::kNoBlock), PoolError::kSuccess);
}

TEST_F(VolumePoolTest, LockAndUnlockAdvanceTheVersionByOneStep) {
  VolumePool pool = Pool();
  const uint64_t before = memory_.header()->ver_top.load();
  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);
  EXPECT_EQ(TopVersion(memory_.header()->ver_top.load()),
            TopVersion(before) + 1);
  pool.Unlock();
  const uint64_t after = memory_.header()->ver_top.load();
  EXPECT_EQ(TopVersion(after), TopVersion(before) + kTopVersionStep);
  EXPECT_EQ(TopIndex(after), TopIndex(before));
}

TEST_F(VolumePoolTest, ResetEmptiesTheStackAndZeroesCounters) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 5, ""), PoolError::kSuccess);
  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);
  pool.Reset();
  EXPECT_TRUE(pool.IsLocked());
  pool.Unlock();
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
  EXPECT_EQ(pool.Counts().volumes_added, 0u);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 0u);
}

TEST_F(VolumePoolTest, FormatRangeDoesNotPushUntilPushRange) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.FormatRange(2, 3, "batch"), PoolError::kSuccess);
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
  EXPECT_EQ(pool.VolumeAt(2)->magic.load(), kVolumeEmptyMagic);
  EXPECT_EQ(pool.Counts().volumes_added, 0u);
  // Formatted volumes are live: formatting them again is refused.
  EXPECT_EQ(pool.FormatRange(4, 1, ""), PoolError::kKey);
  ASSERT_EQ(pool.PushRange(2, 3), PoolError::kSuccess);
  EXPECT_EQ(pool.PeekTop(), 2u);
  EXPECT_EQ(pool.Counts().volumes_added, 3u);
  EXPECT_EQ(pool.PushRange(15, 2), PoolError::kInvalid);
  EXPECT_EQ(pool.Verify()->empty_volumes, 3u);
}

// HookCalls records what a join's TaggedPopHook and AnnouncedPopHook were
// called with: (index, tag) and (index, announced top).
struct HookCalls {
  static void Tagged(void* arg, uint64_t index, uint64_t tag) {
    static_cast<HookCalls*>(arg)->tagged.push_back({index, tag});
  }
  static void Announced(void* arg, uint64_t index, uint64_t announced_top) {
    static_cast<HookCalls*>(arg)->announced.push_back({index, announced_top});
  }
  VolumePool::Hooks Hooks() {
    VolumePool::Hooks hooks;
    hooks.on_tagged_pop = &Tagged;
    hooks.on_announced_pop = &Announced;
    hooks.arg = this;
    return hooks;
  }
  std::vector<std::pair<uint64_t, uint64_t>> tagged;
  std::vector<std::pair<uint64_t, uint64_t>> announced;
};

// HeaderFile is a join's header I/O (VolumePool::Hooks::read_header,
// write_header) over the test's own volume memory, as NamedPool's owner
// does over its store with pread and pwrite; it counts the calls and fails
// them on demand.
struct HeaderFile {
  static bool Read(void* arg, uint64_t index, VolumeHeader* out) {
    auto* file = static_cast<HeaderFile*>(arg);
    ++file->reads;
    if (file->fail_reads) return false;
    std::memcpy(static_cast<void*>(out), file->Header(index), sizeof(*out));
    return true;
  }
  static bool Write(void* arg, uint64_t index, uint64_t offset,
                    const void* bytes, uint64_t size) {
    auto* file = static_cast<HeaderFile*>(arg);
    ++file->writes;
    if (file->fail_writes) return false;
    std::memcpy(file->Header(index) + offset, bytes, size);
    if (file->during_write) file->during_write(offset);
    return true;
  }
  std::byte* Header(uint64_t index) const {
    return volume0 + index * kSmallFootprint;
  }
  VolumePool::Hooks Hooks() {
    VolumePool::Hooks hooks;
    hooks.read_header = &Read;
    hooks.write_header = &Write;
    hooks.arg = this;
    return hooks;
  }
  std::byte* volume0 = nullptr;
  int reads = 0;
  int writes = 0;
  bool fail_reads = false;
  bool fail_writes = false;
  // Called after each write with its offset in the header: what others
  // do while a system call is in flight.
  std::function<void(uint64_t offset)> during_write;
};

// A mapped join with a read hook (a NamedPool data-plane join's pread)
// walks Verify through it, so the walk never touches the memory of a
// volume it has not popped, while its pops and pushes stay in place.
TEST_F(VolumePoolTest, AMappedJoinWithAReadHookVerifiesThroughItOnly) {
  VolumePool::Format(memory_.header());
  std::atomic<uint64_t> links[16] = {};
  HeaderFile file;
  file.volume0 = memory_.volume0();
  VolumePool::Hooks read_only;
  read_only.read_header = &HeaderFile::Read;
  read_only.arg = &file;
  const VolumePool join =
      *VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                        kSmallFootprint, links, read_only);
  ASSERT_EQ(join.Add(0, 3, "in place"), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(join.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(join.Release(v), PoolError::kSuccess);
  EXPECT_EQ(file.reads, 0);
  absl::StatusOr<VerifyReport> verified = join.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 3u);
  EXPECT_EQ(file.reads, 3);
  // The walk believes the hook, not the mapping: a read that fails is a
  // header that cannot be read.
  file.fail_reads = true;
  verified = join.Verify();
  EXPECT_EQ(verified.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(verified.status().message()),
              ::testing::HasSubstr("cannot be read"));
  file.fail_reads = false;
  // A write hook without a read hook is refused.
  VolumePool::Hooks write_only;
  write_only.write_header = &HeaderFile::Write;
  write_only.arg = &file;
  EXPECT_EQ(VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                             kSmallFootprint, links, write_only)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(VolumePoolTest, AJoinWithoutVolume0ReachesHeadersOnlyThroughItsHooks) {
  VolumePool::Format(memory_.header());
  std::atomic<uint64_t> links[16] = {};
  HeaderFile file;
  file.volume0 = memory_.volume0();
  // Without a link table it could not pop without reading headers.
  EXPECT_EQ(VolumePool::Join(memory_.header(), nullptr, 16, kSmallFootprint,
                             nullptr, file.Hooks())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  const VolumePool hooked = *VolumePool::Join(
      memory_.header(), nullptr, 16, kSmallFootprint, links, file.Hooks());
  const VolumePool mapped = *VolumePool::Join(
      memory_.header(), memory_.volume0(), 16, kSmallFootprint, links);

  // Add: per volume, a read (the live-volume check) and one write (the
  // header, formatted with the `next` its push finds: nothing else moves
  // the top here). A mapped join sees the result.
  ASSERT_EQ(hooked.Add(0, 3, "io"), PoolError::kSuccess);
  EXPECT_EQ(file.reads, 3);
  EXPECT_EQ(file.writes, 3);
  EXPECT_EQ(mapped.VolumeAt(1)->magic.load(), kVolumeEmptyMagic);
  EXPECT_EQ(mapped.VolumeAt(1)->idx.load(), 1u);
  EXPECT_EQ(mapped.VolumeAt(1)->next.load(), 2u);
  EXPECT_EQ(VolumeInfo(*mapped.VolumeAt(1)), "io");
  EXPECT_EQ(mapped.Verify()->empty_volumes, 3u);

  // It hands out no address.
  VolumeHeader* v = mapped.VolumeAt(0);
  EXPECT_EQ(hooked.Acquire(&v), PoolError::kInvalid);
  EXPECT_EQ(v, nullptr);
  EXPECT_EQ(hooked.Remove(&v), PoolError::kInvalid);
  EXPECT_EQ(hooked.Release(mapped.VolumeAt(0)), PoolError::kInvalid);

  // RemoveAnnounced reports the index and a copy of the header.
  uint64_t index = kNullIndex;
  VolumeHeader popped;
  ASSERT_EQ(hooked.RemoveAnnounced(&index, &popped), PoolError::kSuccess);
  EXPECT_EQ(index, 0u);
  EXPECT_EQ(VolumeInfo(popped), "io");
  // A read, and no write: the header is left for the caller's punch.
  EXPECT_EQ(file.reads, 4);
  EXPECT_EQ(file.writes, 3);
  EXPECT_EQ(mapped.VolumeAt(0)->magic.load(), kVolumeEmptyMagic);
  absl::StatusOr<VerifyReport> verified = hooked.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 2u);

  // A header that cannot be written: the format fails, nothing is pushed.
  file.fail_writes = true;
  EXPECT_EQ(hooked.FormatRange(5, 1, "x"), PoolError::kCorrupt);
  EXPECT_EQ(hooked.PeekTop(), 1u);
  file.fail_writes = false;
  // A header that cannot be read: the popped volume is reported, as a
  // corrupt one is, and counted as quarantined.
  file.fail_reads = true;
  EXPECT_EQ(hooked.RemoveAnnounced(&index, &popped), PoolError::kCorrupt);
  EXPECT_EQ(index, 1u);
  EXPECT_EQ(hooked.Counts().volumes_quarantined, 1u);
  EXPECT_EQ(mapped.VolumeAt(1)->magic.load(), kVolumeEmptyMagic);  // untouched
}

// HookedJoinTest: a formatted pool joined twice over one link table:
// `hooked_` reaches headers only through file_'s hooks (as the NamedPool
// owner does), `plane_` maps them (as a data plane does).
class HookedJoinTest : public VolumePoolTest {
 protected:
  static PoolHeader* Formatted(PoolMemory& memory) {
    VolumePool::Format(memory.header());
    return memory.header();
  }
  std::atomic<uint64_t> links_[16] = {};
  HeaderFile file_ = [this] {
    HeaderFile file;
    file.volume0 = memory_.volume0();
    return file;
  }();
  const VolumePool hooked_ = *VolumePool::Join(
      Formatted(memory_), nullptr, 16, kSmallFootprint, links_, file_.Hooks());
  const VolumePool plane_ = *VolumePool::Join(
      memory_.header(), memory_.volume0(), 16, kSmallFootprint, links_);
};

// A header write through a hook is a system call, during which a busy
// data plane moves the top many times. The push must then CAS against a
// fresh top, and need not write `next` again while the same index is on
// top (else it would retry its write forever beside a data plane).
TEST_F(HookedJoinTest, AHookedPushReusesItsWriteWhileTheSameIndexIsOnTop) {
  ASSERT_EQ(plane_.Add(0, 2, ""), PoolError::kSuccess);  // 0 on top, then 1
  ASSERT_EQ(hooked_.FormatRange(5, 1, "late"), PoolError::kSuccess);
  const uint64_t next_offset = offsetof(VolumeHeader, next);

  // While the push writes `next` = 0, the data plane acquires and releases
  // volume 0: the version moves, the same index is on top again.
  int moves = 0;
  file_.during_write = [&](uint64_t offset) {
    if (offset != next_offset || moves++ > 0) return;
    VolumeHeader* v = nullptr;
    ASSERT_EQ(plane_.Acquire(&v), PoolError::kSuccess);
    ASSERT_EQ(plane_.Release(v), PoolError::kSuccess);
  };
  file_.writes = 0;
  ASSERT_EQ(hooked_.PushRange(5, 1), PoolError::kSuccess);
  EXPECT_EQ(file_.writes, 1);  // one write of `next`, reused
  EXPECT_EQ(plane_.VolumeAt(5)->next.load(), 0u);

  // While it writes `next` = 5, the data plane takes volume 5 for good:
  // another index (0) is on top, so `next` is written again, and the
  // header agrees with the link table.
  ASSERT_EQ(hooked_.FormatRange(6, 1, "later"), PoolError::kSuccess);
  VolumeHeader* held = nullptr;
  moves = 0;
  file_.during_write = [&](uint64_t offset) {
    if (offset != next_offset || moves++ > 0) return;
    ASSERT_EQ(plane_.Acquire(&held), PoolError::kSuccess);
  };
  file_.writes = 0;
  ASSERT_EQ(hooked_.PushRange(6, 1), PoolError::kSuccess);
  EXPECT_EQ(file_.writes, 2);
  EXPECT_EQ(plane_.IndexOf(held), 5u);
  EXPECT_EQ(plane_.VolumeAt(6)->next.load(), 0u);
  EXPECT_EQ(LinkNext(links_[6].load()), 0u);
  ASSERT_EQ(plane_.Release(held), PoolError::kSuccess);
  absl::StatusOr<VerifyReport> verified = plane_.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 4u);
}

TEST_F(HookedJoinTest, AFormatHintSavesThePushAWriteUnlessTheTopMoves) {
  ASSERT_EQ(plane_.Add(0, 2, ""), PoolError::kSuccess);  // 0 on top, then 1

  // The top stays 0: the formatted headers already link 6 -> 0 and
  // 5 -> 6, and the push writes nothing.
  uint64_t hint = hooked_.PeekTop();
  file_.writes = 0;
  ASSERT_EQ(hooked_.FormatRange(5, 2, "h", hint), PoolError::kSuccess);
  EXPECT_EQ(file_.writes, 2);
  ASSERT_EQ(hooked_.PushRange(5, 2, hint), PoolError::kSuccess);
  EXPECT_EQ(file_.writes, 2);
  EXPECT_EQ(hooked_.PeekTop(), 5u);
  EXPECT_EQ(plane_.VolumeAt(5)->next.load(), 6u);
  EXPECT_EQ(plane_.VolumeAt(6)->next.load(), 0u);
  EXPECT_EQ(LinkNext(links_[5].load()), 6u);
  EXPECT_EQ(LinkNext(links_[6].load()), 0u);

  // The top moves between the format and the push (a data plane takes
  // volume 5): the push writes `next` again, and header and link agree.
  hint = hooked_.PeekTop();
  ASSERT_EQ(hooked_.FormatRange(8, 1, "m", hint), PoolError::kSuccess);
  VolumeHeader* held = nullptr;
  ASSERT_EQ(plane_.Acquire(&held), PoolError::kSuccess);
  EXPECT_EQ(plane_.IndexOf(held), 5u);
  file_.writes = 0;
  ASSERT_EQ(hooked_.PushRange(8, 1, hint), PoolError::kSuccess);
  EXPECT_EQ(file_.writes, 1);
  EXPECT_EQ(plane_.VolumeAt(8)->next.load(), 6u);
  EXPECT_EQ(LinkNext(links_[8].load()), 6u);
  ASSERT_EQ(plane_.Release(held), PoolError::kSuccess);
  absl::StatusOr<VerifyReport> verified = plane_.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 5u);
}

// A chain push that fails on a corrupt stack (its top out of range) says
// so: the caller must not report it as a failed header write (an I/O
// error) but as corruption.
TEST_F(HookedJoinTest, AChainPushOntoACorruptTopIsNoHeaderWriteFailure) {
  ASSERT_EQ(plane_.Add(0, 1, ""), PoolError::kSuccess);
  ASSERT_EQ(hooked_.FormatRange(5, 1, "c"), PoolError::kSuccess);
  std::atomic<uint64_t>& top = plane_.header()->ver_top;
  const uint64_t sound = top.load();
  top.store((sound & ~kIndexMask) | (plane_.max_volumes() + 3));
  const std::vector<uint64_t> chain = {5};
  bool header_write_failed = false;
  EXPECT_EQ(hooked_.PushChainTagged(chain, 3, VolumePool::kNoTopHint,
                                    &header_write_failed),
            PoolError::kCorrupt);
  EXPECT_FALSE(header_write_failed);
  top.store(sound);
  EXPECT_EQ(plane_.Verify()->empty_volumes, 1u);
}

// PushChainTagged puts a batch of any indices on the stack with one CAS,
// the first on top: when the last one's `next` must be written again (the
// top moved since the format) and that write fails, nothing is pushed.
TEST_F(HookedJoinTest, AChainIsPushedWholeWithOneCasOrNotAtAll) {
  ASSERT_EQ(plane_.Add(0, 2, ""), PoolError::kSuccess);  // 0 on top, then 1
  const std::vector<uint64_t> chain = {5, 9, 7};
  const uint64_t hint = hooked_.PeekTop();
  ASSERT_EQ(hooked_.FormatRange(5, 1, "c", 9), PoolError::kSuccess);
  ASSERT_EQ(hooked_.FormatRange(9, 1, "c", 7), PoolError::kSuccess);
  ASSERT_EQ(hooked_.FormatRange(7, 1, "c", hint), PoolError::kSuccess);
  VolumeHeader* held = nullptr;
  ASSERT_EQ(plane_.Acquire(&held), PoolError::kSuccess);  // 1 on top now
  const uint64_t top_before = plane_.header()->ver_top.load();

  file_.fail_writes = true;
  bool header_write_failed = false;
  EXPECT_EQ(hooked_.PushChainTagged(chain, 3, hint, &header_write_failed),
            PoolError::kCorrupt);
  EXPECT_TRUE(header_write_failed);
  EXPECT_EQ(plane_.header()->ver_top.load(), top_before);
  EXPECT_EQ(plane_.Counts().volumes_added, 2u);
  ASSERT_EQ(plane_.Verify()->empty_volumes, 1u);

  file_.fail_writes = false;
  file_.writes = 0;
  const uint64_t top_unlocked = plane_.header()->ver_top.load();
  ASSERT_EQ(hooked_.PushChainTagged(chain, 3, hint), PoolError::kSuccess);
  EXPECT_EQ(file_.writes, 1);  // 7's `next`, now 1
  const uint64_t top_after = plane_.header()->ver_top.load();
  EXPECT_EQ(TopIndex(top_after), 5u);
  EXPECT_EQ(TopVersion(top_after), TopVersion(top_unlocked) + kTopVersionStep);
  EXPECT_EQ(links_[5].load(), TaggedLink(9, 3));
  EXPECT_EQ(links_[9].load(), TaggedLink(7, 3));
  EXPECT_EQ(links_[7].load(), TaggedLink(1, 3));
  EXPECT_EQ(plane_.Counts().volumes_added, 5u);
  absl::StatusOr<VerifyReport> verified = plane_.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 4u);
  for (uint64_t want : {5, 9, 7, 1}) {
    VolumeHeader* v = nullptr;
    ASSERT_EQ(plane_.Acquire(&v), PoolError::kSuccess);
    EXPECT_EQ(plane_.IndexOf(v), want);
  }
  ASSERT_EQ(plane_.Release(held), PoolError::kSuccess);
}

TEST_F(VolumePoolTest, PushChainTaggedRejectsAnEmptyChainOrOneOutOfRange) {
  VolumePool::Format(memory_.header());
  std::atomic<uint64_t> links[16] = {};
  const VolumePool pool = *VolumePool::Join(memory_.header(), memory_.volume0(),
                                            16, kSmallFootprint, links);
  ASSERT_EQ(pool.FormatRange(0, 1, ""), PoolError::kSuccess);
  EXPECT_EQ(pool.PushChainTagged({}, 1), PoolError::kInvalid);
  const std::vector<uint64_t> beyond = {0, 16};
  EXPECT_EQ(pool.PushChainTagged(beyond, 1), PoolError::kInvalid);
  EXPECT_EQ(Pool().PushChainTagged(std::vector<uint64_t>{0}, 1),
            PoolError::kInvalid);  // no link table
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
}

TEST_F(VolumePoolTest, PushRangeTaggedNeedsALinkTable) {
  VolumePool pool = Pool();  // no links
  ASSERT_EQ(pool.FormatRange(0, 1, ""), PoolError::kSuccess);
  EXPECT_EQ(pool.PushRangeTagged(0, 1, 7), PoolError::kInvalid);
  EXPECT_EQ(pool.PeekTop(), kNullIndex);
}

TEST_F(VolumePoolTest, PopsOfATaggedPushReportItsTagUntilItIsPushedAgain) {
  VolumePool::Format(memory_.header());
  std::atomic<uint64_t> links[16] = {};
  HookCalls pops;
  absl::StatusOr<VolumePool> joined =
      VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                       kSmallFootprint, links, pops.Hooks());
  ASSERT_TRUE(joined.ok()) << joined.status();
  const VolumePool& pool = *joined;
  ASSERT_EQ(pool.FormatRange(2, 3, "t"), PoolError::kSuccess);
  // The tag is taken modulo 2^28.
  ASSERT_EQ(pool.PushRangeTagged(2, 3, (uint64_t{1} << kLinkTagBits) + 5),
            PoolError::kSuccess);
  EXPECT_EQ(pool.Counts().volumes_added, 3u);
  EXPECT_EQ(links[2].load(), TaggedLink(3, 5));
  EXPECT_EQ(pool.VolumeAt(2)->next.load(), 3u);  // the header: plain
  ASSERT_EQ(pool.Verify()->empty_volumes, 3u);
  EXPECT_TRUE(pops.tagged.empty());

  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(pool.IndexOf(v), 2u);
  ASSERT_EQ(pops.tagged.size(), 1u);
  EXPECT_EQ(pops.tagged[0], std::make_pair(uint64_t{2}, uint64_t{5}));
  // A Release pushes untagged: its next pop reports nothing.
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  EXPECT_EQ(links[2].load(), 3u);
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(pool.IndexOf(v), 2u);
  EXPECT_EQ(pops.tagged.size(), 1u);
  // Remove reports as Acquire does.
  ASSERT_EQ(pool.Remove(&v), PoolError::kSuccess);
  EXPECT_EQ(pool.IndexOf(v), 3u);
  ASSERT_EQ(pops.tagged.size(), 2u);
  EXPECT_EQ(pops.tagged[1], std::make_pair(uint64_t{3}, uint64_t{5}));
  EXPECT_EQ(pool.Verify()->empty_volumes, 1u);
}

TEST_F(VolumePoolTest, PutBackTaggedLeavesTheCountersAsBeforeThePop) {
  VolumePool::Format(memory_.header());
  std::atomic<uint64_t> links[16] = {};
  HookCalls pops;
  const VolumePool pool =
      *VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                        kSmallFootprint, links, pops.Hooks());
  ASSERT_EQ(pool.FormatRange(0, 2, "x"), PoolError::kSuccess);
  ASSERT_EQ(pool.PushRangeTagged(0, 2, 3), PoolError::kSuccess);
  uint64_t index = kNullIndex;
  VolumeHeader popped;
  ASSERT_EQ(pool.RemoveAnnounced(&index, &popped), PoolError::kSuccess);
  // Counted only once the remove takes effect (CountRemoved): a scrape in
  // between never sees the counter go down.
  ASSERT_EQ(pool.Counts().volumes_removed, 0u);
  ASSERT_EQ(pool.PutBackTagged(index, 4), PoolError::kSuccess);
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 2u);
  EXPECT_EQ(counts.volumes_removed, 0u);
  EXPECT_EQ(counts.empty_volumes, 2u);
  EXPECT_EQ(links[index].load(), TaggedLink(1, 4));
  EXPECT_EQ(pool.Verify()->empty_volumes, 2u);
  EXPECT_EQ(pool.PeekTop(), index);
}

TEST_F(VolumePoolTest, RemoveAnnouncedRemovesTheTopAndCallsTheHookFirst) {
  VolumePool::Format(memory_.header());
  HookCalls pops;
  const VolumePool pool = *VolumePool::Join(
      memory_.header(), memory_.volume0(), 16, kSmallFootprint, nullptr,
      pops.Hooks());
  ASSERT_EQ(pool.Add(0, 3, "x"), PoolError::kSuccess);
  const uint64_t before = memory_.header()->ver_top.load();
  uint64_t index = kNullIndex;
  VolumeHeader popped;
  ASSERT_EQ(pool.RemoveAnnounced(&index, &popped), PoolError::kSuccess);
  EXPECT_EQ(index, 0u);
  // The copy is the header as popped, which is left as it was (the
  // caller's hook records the pop; giving the memory back clears it).
  EXPECT_EQ(popped.magic.load(), kVolumeEmptyMagic);
  EXPECT_EQ(VolumeInfo(popped), "x");
  EXPECT_EQ(pool.VolumeAt(0)->magic.load(), kVolumeEmptyMagic);
  ASSERT_EQ(pops.announced.size(), 1u);
  EXPECT_EQ(pops.announced[0].first, 0u);
  // The hook saw the announce: the old top with its announce flag.
  EXPECT_TRUE(TopIsPopAnnounced(pops.announced[0].second));
  EXPECT_EQ(TopIndex(pops.announced[0].second), 0u);
  EXPECT_EQ(TopVersion(pops.announced[0].second), TopVersion(before) | 2);
  // Completed: flag cleared, one version step, the next volume on top.
  const uint64_t after = memory_.header()->ver_top.load();
  EXPECT_FALSE(TopIsPopAnnounced(after));
  EXPECT_EQ(TopVersion(after), TopVersion(before) + kTopVersionStep);
  EXPECT_EQ(TopIndex(after), 1u);
  // The caller counts the remove once it takes effect.
  EXPECT_EQ(pool.Counts().volumes_removed, 0u);
  pool.CountRemoved(1);
  EXPECT_EQ(pool.Counts().volumes_removed, 1u);
  EXPECT_EQ(pool.Verify()->empty_volumes, 2u);
  // Plain pops do not call it.
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Remove(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(pops.announced.size(), 1u);
}

TEST_F(VolumePoolTest, LockCompletesAnAnnouncedPopBeforeLocking) {
  VolumePool::Format(memory_.header());
  HookCalls pops;
  const VolumePool pool = *VolumePool::Join(
      memory_.header(), memory_.volume0(), 16, kSmallFootprint, nullptr,
      pops.Hooks());
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  // An announce left in the top, as by an announcer killed right after it.
  std::atomic<uint64_t>& top = memory_.header()->ver_top;
  top.store(top.load() | (uint64_t{2} << kIndexBits));
  ASSERT_TRUE(TopIsPopAnnounced(top.load()));
  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);
  ASSERT_EQ(pops.announced.size(), 1u);
  EXPECT_EQ(pops.announced[0].first, 0u);
  EXPECT_FALSE(TopIsPopAnnounced(top.load()));
  EXPECT_EQ(TopIndex(top.load()), 1u);
  absl::StatusOr<VerifyReport> report = pool.VerifyLocked();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 1u);
  pool.Unlock();
  EXPECT_FALSE(TopIsLocked(top.load()));
  EXPECT_FALSE(TopIsPopAnnounced(top.load()));
}

TEST_F(VolumePoolTest, AnAnnouncedPopThatCannotCompleteIsCorrupt) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  pool.VolumeAt(0)->next.store(99);  // out of range
  std::atomic<uint64_t>& top = memory_.header()->ver_top;
  top.store(top.load() | (uint64_t{2} << kIndexBits));
  VolumeHeader* v = nullptr;
  EXPECT_EQ(pool.Acquire(&v), PoolError::kCorrupt);
  EXPECT_EQ(pool.Release(pool.VolumeAt(1)), PoolError::kInvalid);  // not in use
  // Lock takes the lock anyway, so that Verify can say what is wrong.
  absl::StatusOr<VerifyReport> report = pool.Verify();
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(report.status().message()),
              ::testing::HasSubstr("a pop of volume 0 was announced"));
  EXPECT_TRUE(TopIsPopAnnounced(top.load()));
  EXPECT_FALSE(TopIsLocked(top.load()));
}

TEST_F(VolumePoolTest, ATaggedLinkOutOfRangeIsStillCorrupt) {
  VolumePool::Format(memory_.header());
  std::atomic<uint64_t> links[16] = {};
  HookCalls pops;
  const VolumePool pool =
      *VolumePool::Join(memory_.header(), memory_.volume0(), 16,
                        kSmallFootprint, links, pops.Hooks());
  ASSERT_EQ(pool.Add(0, 1, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  for (uint64_t bad : {TaggedLink(16, 1), kTaggedLink | kUnpushedLink}) {
    links[0].store(bad);
    EXPECT_EQ(pool.Acquire(&v), PoolError::kCorrupt) << bad;
    EXPECT_EQ(v, nullptr);
    EXPECT_EQ(pool.PeekTop(), 0u);  // nothing popped
  }
}

TEST_F(VolumePoolTest, RestartCountsLockedMakesTheEmptyCountExact) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 6, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);
  pool.RestartCountsLocked(5);
  pool.Unlock();
  PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 5u);
  EXPECT_EQ(counts.acquires, 0u);
  EXPECT_EQ(counts.empty_volumes, 5u);
  // The volume in use comes back through Release as usual.
  EXPECT_EQ(pool.Release(v), PoolError::kSuccess);
  EXPECT_EQ(pool.Counts().empty_volumes, 6u);
}

// ---- Counter shards (one thread; many threads: tests/concurrency) -----------

// OwnedShards returns the indices of the shards some thread owns.
std::vector<uint64_t> OwnedShards(const PoolHeader& header) {
  std::vector<uint64_t> owned;
  for (uint64_t i = 0; i < kCounterShards; ++i) {
    if (header.stats.shards[i].owner.load() != 0) owned.push_back(i);
  }
  return owned;
}

// ThisThreadToken returns the owner token this thread writes into the
// shards it claims, learned from a scratch pool.
uint64_t ThisThreadToken() {
  PoolMemory scratch(1, kSmallFootprint);
  VolumePool pool = scratch.FormatAndJoin();
  EXPECT_EQ(pool.Add(0, 1, ""), PoolError::kSuccess);
  const std::vector<uint64_t> owned = OwnedShards(*scratch.header());
  EXPECT_EQ(owned.size(), 1u);
  return owned.empty() ? 0
                       : scratch.header()->stats.shards[owned[0]].owner.load();
}

// ForeignToken returns a token that is not this thread's: another process's
// (its nonce differs).
uint64_t ForeignToken() { return ThisThreadToken() ^ (uint64_t{1} << 40); }

TEST_F(VolumePoolTest, AThreadCountsInOneShardOfItsOwn) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 3, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  ASSERT_EQ(pool.Remove(&v), PoolError::kSuccess);

  const std::vector<uint64_t> owned = OwnedShards(*memory_.header());
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_NE(owned[0], 0u);  // shard 0 is the fallback, never owned
  EXPECT_EQ(memory_.header()->stats.shards[owned[0]].owner.load(),
            ThisThreadToken());
  const CounterValues& mine = memory_.header()->stats.shards[owned[0]].counts;
  EXPECT_EQ(mine.volumes_added.load(), 3u);
  EXPECT_EQ(mine.acquires.load(), 1u);
  EXPECT_EQ(mine.releases.load(), 1u);
  EXPECT_EQ(mine.volumes_removed.load(), 1u);
  const CounterValues& fallback = memory_.header()->stats.shards[0].counts;
  EXPECT_EQ(fallback.volumes_added.load() + fallback.acquires.load() +
                fallback.releases.load() + fallback.volumes_removed.load(),
            0u);
}

TEST_F(VolumePoolTest, CountsSumTheShardsOfOtherProcesses) {
  const uint64_t foreign = ForeignToken();
  VolumePool pool = Pool();
  // Another process's thread counted 10 adds, 7 acquires and 4 releases.
  CounterShard& other = memory_.header()->stats.shards[5];
  other.owner.store(foreign);
  other.counts.volumes_added.store(10);
  other.counts.acquires.store(7);
  other.counts.releases.store(4);
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);

  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 12u);
  EXPECT_EQ(counts.acquires, 8u);
  EXPECT_EQ(counts.releases, 4u);
  EXPECT_EQ(counts.empty_volumes, 12u + 4u - 8u);
  // This thread claimed a shard of its own and left the other one alone.
  EXPECT_EQ(other.owner.load(), foreign);
  EXPECT_EQ(other.counts.acquires.load(), 7u);
  EXPECT_EQ(OwnedShards(*memory_.header()).size(), 2u);
}

TEST_F(VolumePoolTest, CountingFallsBackToShardZeroWhileEveryShardIsTaken) {
  const uint64_t foreign = ForeignToken();
  VolumePool pool = Pool();
  PoolStats& stats = memory_.header()->stats;
  for (uint64_t i = 1; i < kCounterShards; ++i) {
    stats.shards[i].owner.store(foreign + i);  // other threads' shards
  }
  ASSERT_EQ(pool.Add(0, 4, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  EXPECT_EQ(stats.shards[0].counts.volumes_added.load(), 4u);
  EXPECT_EQ(stats.shards[0].counts.acquires.load(), 1u);
  EXPECT_EQ(stats.shards[0].counts.releases.load(), 1u);
  EXPECT_EQ(pool.Counts().empty_volumes, 4u);

  // A shard is given back: the thread finds it on a later retry (after at
  // most a few thousand counts) and counts there from then on.
  stats.shards[7].owner.store(0);
  constexpr uint64_t kPairs = 5000;
  for (uint64_t i = 0; i < kPairs; ++i) {
    ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
    ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  }
  EXPECT_EQ(stats.shards[7].owner.load(), ThisThreadToken());
  EXPECT_GT(stats.shards[7].counts.acquires.load(), 0u);
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.acquires, kPairs + 1);
  EXPECT_EQ(counts.releases, kPairs + 1);
  EXPECT_EQ(counts.empty_volumes, 4u);
}

TEST_F(VolumePoolTest, FormattingAgainAtTheSameAddressClaimsAFreshShard) {
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  ASSERT_EQ(OwnedShards(*memory_.header()).size(), 1u);
  // A new pool in the same memory: this thread's cached claim is stale.
  // (Format leaves the volumes alone: 0 and 1 still carry the empty magic.)
  pool = Pool();
  EXPECT_TRUE(OwnedShards(*memory_.header()).empty());
  ASSERT_EQ(pool.Add(2, 1, ""), PoolError::kSuccess);
  const std::vector<uint64_t> owned = OwnedShards(*memory_.header());
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(
      memory_.header()->stats.shards[owned[0]].counts.volumes_added.load(), 1u);
  EXPECT_EQ(pool.Counts().volumes_added, 1u);
}

TEST_F(VolumePoolTest, ReturnCounterShardsFreesOurShardsAndKeepsTheCounts) {
  const uint64_t foreign = ForeignToken();
  VolumePool pool = Pool();
  memory_.header()->stats.shards[9].owner.store(foreign);
  ASSERT_EQ(pool.Add(0, 3, ""), PoolError::kSuccess);
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  std::vector<uint64_t> owned = OwnedShards(*memory_.header());
  ASSERT_EQ(owned.size(), 2u);  // ours and the other process's (9)

  pool.ReturnCounterShards();
  owned = OwnedShards(*memory_.header());
  EXPECT_EQ(owned, std::vector<uint64_t>{9});  // other processes keep theirs
  PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 3u);
  EXPECT_EQ(counts.acquires, 1u);
  EXPECT_EQ(counts.releases, 1u);
  EXPECT_EQ(counts.empty_volumes, 3u);

  // Counting again claims a shard again and adds to the totals.
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(OwnedShards(*memory_.header()).size(), 2u);
  counts = pool.Counts();
  EXPECT_EQ(counts.acquires, 2u);
  EXPECT_EQ(counts.empty_volumes, 2u);
}

TEST_F(VolumePoolTest, RestartCountsLockedIsExactOverEveryShard) {
  const uint64_t foreign = ForeignToken();
  VolumePool pool = Pool();
  PoolStats& stats = memory_.header()->stats;
  // Counts left by another process (say, one that crashed mid-operation)...
  CounterShard& other = stats.shards[3];
  other.owner.store(foreign);
  other.counts.volumes_added.store(9);
  other.counts.volumes_removed.store(2);
  other.counts.acquires.store(30);
  other.counts.releases.store(20);
  other.counts.volumes_quarantined.store(1);
  // ...by threads that found no free shard...
  stats.shards[0].counts.acquires.store(5);
  stats.shards[0].counts.releases.store(4);
  // ...and by this thread.
  ASSERT_EQ(pool.Add(0, 6, ""), PoolError::kSuccess);
  VolumeHeader* held = nullptr;
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&held), PoolError::kSuccess);
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  ASSERT_NE(pool.Counts().empty_volumes, 5u);  // skewed by the crash

  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);
  pool.RestartCountsLocked(5);  // recovery found 5 volumes on the stack
  pool.Unlock();
  PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 5u);
  EXPECT_EQ(counts.volumes_removed, 0u);
  EXPECT_EQ(counts.acquires, 0u);
  EXPECT_EQ(counts.releases, 0u);
  EXPECT_EQ(counts.volumes_quarantined, 0u);
  EXPECT_EQ(counts.empty_volumes, 5u);
  // The restart wrote no shard: their owners may be writing them.
  EXPECT_EQ(other.counts.acquires.load(), 30u);
  EXPECT_EQ(stats.shards[0].counts.acquires.load(), 5u);

  // Counting goes on from the restart.
  ASSERT_EQ(pool.Release(held), PoolError::kSuccess);
  EXPECT_EQ(pool.Counts().empty_volumes, 6u);
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  counts = pool.Counts();
  EXPECT_EQ(counts.acquires, 1u);
  EXPECT_EQ(counts.releases, 1u);
  EXPECT_EQ(counts.empty_volumes, 5u);

  // Reset restarts at zero.
  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);
  pool.Reset();
  pool.Unlock();
  counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 0u);
  EXPECT_EQ(counts.acquires, 0u);
  EXPECT_EQ(counts.empty_volumes, 0u);
}

TEST_F(VolumePoolTest, CountsClampACounterBelowItsBaselineAtZero) {
  // What a Counts() racing a restart can see: a baseline above the sums.
  VolumePool pool = Pool();
  ASSERT_EQ(pool.Add(0, 2, ""), PoolError::kSuccess);
  memory_.header()->stats.baseline.counts.acquires.store(100);
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.acquires, 0u);
  EXPECT_EQ(counts.empty_volumes, 2u);
}

TEST(VolumeInfoTest, StoreAndLoadRoundTripWithZeroPadding) {
  PoolMemory memory(1, kSmallFootprint);
  VolumeHeader* v = reinterpret_cast<VolumeHeader*>(memory.volume0());
  std::memset(v->info, 0xee, kVolumeInfoMax);
  StoreVolumeInfo(v, "0123456789abc");  // not a multiple of 8
  unsigned char copy[kVolumeInfoMax];
  LoadVolumeInfo(*v, copy);
  EXPECT_EQ(std::memcmp(copy, "0123456789abc", 13), 0);
  for (size_t i = 13; i < kVolumeInfoMax; ++i) ASSERT_EQ(copy[i], 0) << i;
}

// ---- Default (1 GiB) volumes -------------------------------------------------

TEST(VolumePoolDefaultFootprintTest, VolumesAreOneGibibyteApart) {
  // 4 GiB of address space; only the touched header pages are allocated.
  PoolMemory memory(4, kVolumeDefaultFootprint);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, 4, "big"), PoolError::kSuccess);
  for (uint64_t i = 0; i < 4; ++i) {
    VolumeHeader* v = nullptr;
    ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
    EXPECT_EQ(reinterpret_cast<std::byte*>(v),
              memory.volume0() + i * (uint64_t{1} << 30));
    auto* volume = reinterpret_cast<DefaultVolume*>(v);
    EXPECT_EQ(reinterpret_cast<std::byte*>(volume->data), VolumeData(v));
    volume->data[kVolumeDefaultDataMax - 1] = 1;  // last byte is ours
  }
}

// ---- The seed's randomized rounds -----------------------------------------

// Checks a removed volume's header against what Add was given.
void ExpectRemovedVolume(const VolumeHeader& v, uint64_t index,
                         const std::string& info) {
  const size_t expected_size = std::min<size_t>(info.size(), kVolumeInfoMax);
  ASSERT_EQ(v.magic.load(), kVolumeNotAVolume);
  ASSERT_EQ(v.idx.load(), index);
  ASSERT_EQ(v.info_sz.load(), expected_size);
  ASSERT_EQ(std::memcmp(v.info, info.data(), expected_size), 0);
  for (size_t i = expected_size; i < kVolumeInfoMax; ++i) {
    ASSERT_EQ(v.info[i], 0) << "padding byte " << i;
  }
}

TEST(VolumePoolRandomizedTest, AddThenRemoveRoundsMatchTheModel) {
  constexpr uint64_t kMaxVolumes = 16;
  constexpr int kRounds = 100000;
  PoolMemory memory(kMaxVolumes, kSmallFootprint);
  VolumePool pool = memory.FormatAndJoin();
  std::mt19937_64 rng(testing::TestSeed());
  uint64_t added = 0;
  for (int round = 0; round < kRounds; ++round) {
    uint64_t first = rng() % kMaxVolumes;
    uint64_t last = rng() % kMaxVolumes;
    if (first > last) std::swap(first, last);
    const uint64_t count = last - first + 1;
    // Info: none a quarter of the time, longer than the maximum a quarter.
    std::string info;
    switch (rng() % 4) {
      case 0:
        break;
      case 1:
        info.resize(kVolumeInfoMax + 1 + rng() % 100);
        break;
      default:
        info.resize(rng() % (kVolumeInfoMax + 1));
    }
    for (char& c : info) c = static_cast<char>(rng());
    ASSERT_EQ(pool.Add(first, count, info), PoolError::kSuccess) << round;
    added += count;
    absl::StatusOr<VerifyReport> report = pool.Verify();
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_EQ(report->empty_volumes, count);
    for (uint64_t index = first; index <= last; ++index) {
      VolumeHeader* v = nullptr;
      ASSERT_EQ(pool.Remove(&v), PoolError::kSuccess) << round;
      ASSERT_EQ(v, pool.VolumeAt(index)) << round;
      ExpectRemovedVolume(*v, index, info);
      report = pool.Verify();
      ASSERT_TRUE(report.ok()) << report.status();
      ASSERT_EQ(report->empty_volumes, last - index);
    }
    VolumeHeader* v = nullptr;
    ASSERT_EQ(pool.Remove(&v), PoolError::kEmpty);
    ASSERT_EQ(v, nullptr);
  }
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, added);
  EXPECT_EQ(counts.volumes_removed, added);
  EXPECT_EQ(counts.empty_volumes, 0u);
}

// ---- Corruption: detected, never followed into a crash or a loop ------------

class VolumePoolCorruptionTest : public VolumePoolTest {
 protected:
  // A pool holding volumes 0, 1, 2 on its stack (0 on top).
  VolumePool ThreeVolumePool() {
    VolumePool pool = Pool();
    EXPECT_EQ(pool.Add(0, 3, "c"), PoolError::kSuccess);
    return pool;
  }
  void SetTopIndex(uint64_t index) {
    const uint64_t top = memory_.header()->ver_top.load();
    memory_.header()->ver_top.store(PackTop(TopVersion(top), index));
  }
};

TEST_F(VolumePoolCorruptionTest, VerifyDetectsACycle) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(2)->next.store(0);  // 0 -> 1 -> 2 -> 0 -> ...
  const absl::Status status = pool.Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("cycle"), absl::string_view::npos)
      << status;
  EXPECT_FALSE(pool.IsLocked());  // Verify gave the lock back
}

TEST_F(VolumePoolCorruptionTest, PoppingThroughACycleQuarantinesNotLoops) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(2)->next.store(0);
  VolumeHeader* v = nullptr;
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  }
  // The top is volume 0 again, which is in use: popped, found bad.
  EXPECT_EQ(pool.Acquire(&v), PoolError::kCorrupt);
  EXPECT_EQ(v, pool.VolumeAt(0));
  EXPECT_EQ(pool.Counts().volumes_quarantined, 1u);
}

TEST_F(VolumePoolCorruptionTest, OutOfRangeNextIsCorrupt) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(0)->next.store(16 + 5);
  VolumeHeader* v = reinterpret_cast<VolumeHeader*>(0x1);
  EXPECT_EQ(pool.Acquire(&v), PoolError::kCorrupt);
  EXPECT_EQ(v, nullptr);
  EXPECT_EQ(pool.Remove(&v), PoolError::kCorrupt);
  EXPECT_EQ(pool.PeekTop(), 0u);  // nothing was popped
  const absl::Status status = pool.Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("index 21"), absl::string_view::npos)
      << status;
}

TEST_F(VolumePoolCorruptionTest, OutOfRangeTopIsCorrupt) {
  VolumePool pool = ThreeVolumePool();
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  SetTopIndex(16);
  VolumeHeader* other = nullptr;
  EXPECT_EQ(pool.Acquire(&other), PoolError::kCorrupt);
  EXPECT_EQ(pool.Release(v), PoolError::kCorrupt);
  EXPECT_EQ(v->magic.load(), kVolumeMagic);  // still the caller's
  EXPECT_EQ(pool.Add(5, 1, ""), PoolError::kCorrupt);
  EXPECT_EQ(pool.VolumeAt(5)->magic.load(), kVolumeNotAVolume);
  EXPECT_EQ(pool.Verify().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(VolumePoolCorruptionTest, BadMagicOnTheStackIsQuarantined) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(0)->magic.store(0x1234);
  const absl::Status status = pool.Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("magic"), absl::string_view::npos);
  VolumeHeader* v = nullptr;
  EXPECT_EQ(pool.Remove(&v), PoolError::kCorrupt);
  EXPECT_EQ(v, pool.VolumeAt(0));
  EXPECT_EQ(v->magic.load(), 0x1234u);  // left untouched for inspection
  // The rest of the pool is healthy again.
  ASSERT_TRUE(pool.Verify().ok());
  EXPECT_EQ(pool.Remove(&v), PoolError::kSuccess);
  EXPECT_EQ(pool.IndexOf(v), 1u);
}

TEST_F(VolumePoolCorruptionTest, MismatchedIdxIsQuarantined) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(0)->idx.store(9);
  EXPECT_EQ(pool.Verify().status().code(), absl::StatusCode::kDataLoss);
  VolumeHeader* v = nullptr;
  EXPECT_EQ(pool.Acquire(&v), PoolError::kCorrupt);
  EXPECT_EQ(pool.IndexOf(v), 0u);
}

TEST_F(VolumePoolCorruptionTest, OversizedInfoIsCorrupt) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(0)->info_sz.store(kVolumeInfoMax + 1);
  EXPECT_EQ(pool.Verify().status().code(), absl::StatusCode::kDataLoss);
  VolumeHeader* v = nullptr;
  EXPECT_EQ(pool.Remove(&v), PoolError::kCorrupt);
}

TEST_F(VolumePoolCorruptionTest, NonzeroInfoPaddingFailsVerify) {
  VolumePool pool = ThreeVolumePool();
  pool.VolumeAt(1)->info[kVolumeInfoMax - 1] = 7;
  const absl::Status status = pool.Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("volume 1"), absl::string_view::npos)
      << status;
}

TEST_F(VolumePoolCorruptionTest, WrongPoolMagicFailsVerify) {
  VolumePool pool = ThreeVolumePool();
  memory_.header()->magic.store(0);
  EXPECT_EQ(pool.Verify().status().code(), absl::StatusCode::kDataLoss);
}

// The push's and pop's back-off after a lost CAS grows, so that the
// loser leaves the winner a run of operations, and stops growing, so that
// no attempt waits more than kMaxPauses pauses (docs/PERFORMANCE.md §1).
TEST(CasBackoffTest, DoublesFromOnePauseUpToTheCap) {
  CasBackoff backoff;
  EXPECT_EQ(backoff.pauses(), 1);
  std::vector<int> waits;
  for (int lost = 0; lost < 11; ++lost) {
    waits.push_back(backoff.pauses());
    backoff.AfterLostCas();
  }
  EXPECT_THAT(waits, ::testing::ElementsAre(1, 2, 4, 8, 16, 32, 64, 128, 256,
                                            256, 256));
}

// An operation backs off for a bounded number of losses (about 64,000
// pauses in all), then retries at once, so a thread that keeps losing
// against a tight loop competes again.
TEST(CasBackoffTest, StopsWaitingAfterItsBudgetOfLosses) {
  CasBackoff backoff;
  for (int lost = 1; lost < CasBackoff::kMaxBackedOffLosses; ++lost) {
    backoff.AfterLostCas();
  }
  EXPECT_EQ(backoff.pauses(), CasBackoff::kMaxPauses);
  backoff.AfterLostCas();
  EXPECT_EQ(backoff.pauses(), 0);
  backoff.AfterLostCas();
  EXPECT_EQ(backoff.pauses(), 0);
}

}  // namespace
}  // namespace groove
