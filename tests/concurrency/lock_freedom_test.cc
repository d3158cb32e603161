// Lock-freedom shown, not claimed: a thread is stopped inside a pop (and
// inside a push), between reading the stack top and its CAS, through the
// join's test hook. While it is stopped, other threads complete hundreds of
// thousands of operations on the same pool. When it resumes, its CAS fails
// (the version moved), it retries and completes, and the pool is intact.
//
// Likewise for an owner's two-step pop (RemoveAnnounced) stopped between
// its two steps: the others finish it for it.
//
// Verify takes no lock either: stopped in the middle of its walk, it holds
// nobody up; the walk the stack moved under is discarded and walked again.
//
// By contrast, the maintenance lock (recovery's) does stop others: a
// blocking Acquire cannot finish while another party holds Lock(), which
// is why the lock is kept off the hot path and out of Verify.

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/pool_workload.h"
#include "support/stall.h"

namespace groove {
namespace {

using testing::PoolMemory;
using testing::Stall;

#if defined(__SANITIZE_THREAD__)
constexpr int kPairsPerThread = 20'000;
#else
constexpr int kPairsPerThread = 200'000;
#endif
constexpr int kOtherThreads = 3;
constexpr uint64_t kVolumes = 32;

// Runs kOtherThreads threads of acquire/release pairs to completion and
// returns how many pairs completed; sets *handed (when given) if any of
// them was handed volume `watched`.
uint64_t RunOthersToCompletion(const PoolMemory& memory,
                               uint64_t watched = kNullIndex,
                               std::atomic<bool>* handed = nullptr,
                               Wait wait = Wait::kBlock) {
  std::atomic<uint64_t> completed{0};
  std::vector<std::thread> others;
  for (int t = 0; t < kOtherThreads; ++t) {
    others.emplace_back([&] {
      VolumePool pool = memory.JoinAt(memory.mapping());
      for (int i = 0; i < kPairsPerThread; ++i) {
        VolumeHeader* v = nullptr;
        if (pool.Acquire(&v, wait) != PoolError::kSuccess) continue;
        if (handed != nullptr && pool.IndexOf(v) == watched) {
          handed->store(true);
        }
        if (pool.Release(v, wait) != PoolError::kSuccess) continue;
        completed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& t : others) t.join();
  return completed.load();
}

TEST(LockFreedomTest, OthersCompleteWhileAPopIsStoppedBeforeItsCas) {
  PoolMemory memory(kVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kVolumes, ""), PoolError::kSuccess);

  Stall stall;
  VolumePool stalled_join = memory.JoinAt(memory.mapping());
  stalled_join.SetTestHookForTesting(
      &testing::StallAt<VolumePool::TestPoint::kBeforeCas>, &stall);
  VolumeHeader* stalled_volume = nullptr;
  PoolError stalled_result = PoolError::kInvalid;
  std::thread stalled([&] {
    stalled_result = stalled_join.Acquire(&stalled_volume);
  });
  stall.WaitUntilStalled();
  const uint64_t version_before =
      TopVersion(memory.header()->ver_top.load());

  // The stopped thread holds no lock: everyone else finishes everything.
  EXPECT_EQ(RunOthersToCompletion(memory),
            uint64_t{kOtherThreads} * kPairsPerThread);
  EXPECT_NE(TopVersion(memory.header()->ver_top.load()), version_before);

  stall.Resume();
  stalled.join();
  EXPECT_EQ(stalled_result, PoolError::kSuccess);
  EXPECT_GE(stall.calls(), 2) << "its first CAS should have failed";
  ASSERT_NE(stalled_volume, nullptr);
  EXPECT_EQ(stalled_volume->magic.load(), kVolumeMagic);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kVolumes - 1);
  EXPECT_EQ(pool.Release(stalled_volume), PoolError::kSuccess);
  EXPECT_EQ(pool.Verify()->empty_volumes, kVolumes);
}

TEST(LockFreedomTest, OthersCompleteWhileAPushIsStoppedBeforeItsCas) {
  PoolMemory memory(kVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kVolumes, ""), PoolError::kSuccess);
  VolumeHeader* held = nullptr;
  ASSERT_EQ(pool.Acquire(&held), PoolError::kSuccess);

  Stall stall;
  VolumePool stalled_join = memory.JoinAt(memory.mapping());
  stalled_join.SetTestHookForTesting(
      &testing::StallAt<VolumePool::TestPoint::kBeforeCas>, &stall);
  PoolError stalled_result = PoolError::kInvalid;
  std::thread stalled([&] { stalled_result = stalled_join.Release(held); });
  stall.WaitUntilStalled();

  EXPECT_EQ(RunOthersToCompletion(memory),
            uint64_t{kOtherThreads} * kPairsPerThread);

  stall.Resume();
  stalled.join();
  EXPECT_EQ(stalled_result, PoolError::kSuccess);
  EXPECT_GE(stall.calls(), 2) << "its first CAS should have failed";
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kVolumes);
  EXPECT_EQ(pool.Counts().empty_volumes, kVolumes);
}

// An owner's announced pop (RemoveAnnounced) stopped between its announce
// and its own completion: the others complete it for it (each operation
// that finds the announce in the top finishes it first), so they are not
// held up, and the announced volume is the announcer's: no one else is
// ever handed it.
TEST(LockFreedomTest, OthersCompleteAnAnnouncedPopWhoseAnnouncerIsStopped) {
  PoolMemory memory(kVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kVolumes, ""), PoolError::kSuccess);
  const uint64_t announced = pool.PeekTop();

  Stall stall;
  VolumePool stalled_join = memory.JoinAt(memory.mapping());
  stalled_join.SetTestHookForTesting(
      &testing::StallAt<VolumePool::TestPoint::kAnnounced>, &stall);
  uint64_t removed = kNullIndex;
  VolumeHeader popped;
  PoolError stalled_result = PoolError::kInvalid;
  std::thread stalled([&] {
    stalled_result = stalled_join.RemoveAnnounced(&removed, &popped);
  });
  stall.WaitUntilStalled();
  EXPECT_TRUE(TopIsPopAnnounced(memory.header()->ver_top.load()));

  std::atomic<bool> handed_the_announced{false};
  EXPECT_EQ(RunOthersToCompletion(memory, announced, &handed_the_announced),
            uint64_t{kOtherThreads} * kPairsPerThread);
  EXPECT_FALSE(handed_the_announced.load());
  EXPECT_FALSE(TopIsPopAnnounced(memory.header()->ver_top.load()));

  stall.Resume();
  stalled.join();
  EXPECT_EQ(stalled_result, PoolError::kSuccess);
  EXPECT_EQ(removed, announced);
  // The copy is of the announced volume, as the pop found it (and left
  // it, for the owner to give back).
  EXPECT_EQ(popped.idx.load(), announced);
  EXPECT_EQ(popped.magic.load(), kVolumeEmptyMagic);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kVolumes - 1);
  pool.CountRemoved(1);  // as the owner does once its remove takes effect
  EXPECT_EQ(pool.Counts().empty_volumes, kVolumes - 1);
}

TEST(LockFreedomTest, OthersCompleteWhileAVerifyIsStoppedMidWalk) {
  PoolMemory memory(kVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kVolumes, ""), PoolError::kSuccess);

  Stall stall;
  VolumePool stalled_join = memory.JoinAt(memory.mapping());
  stalled_join.SetTestHookForTesting(
      &testing::StallAt<VolumePool::TestPoint::kVerifyStep>, &stall);
  absl::StatusOr<VerifyReport> stalled_report = absl::UnknownError("not run");
  std::thread stalled([&] { stalled_report = stalled_join.Verify(); });
  stall.WaitUntilStalled();

  // Non-blocking acquires and releases: had the verify locked the pool,
  // every one of them would return kAgain.
  EXPECT_EQ(RunOthersToCompletion(memory, kNullIndex, nullptr, Wait::kNoBlock),
            uint64_t{kOtherThreads} * kPairsPerThread);

  stall.Resume();
  stalled.join();
  ASSERT_TRUE(stalled_report.ok()) << stalled_report.status();
  EXPECT_EQ(stalled_report->empty_volumes, kVolumes);
  // The walk the others moved the stack under was thrown away.
  EXPECT_GE(stalled_report->walks, 2u);
  EXPECT_GT(stall.calls(), static_cast<int>(kVolumes))
      << "the second walk checks every volume again";
}

// What a walk reads while the stack moves is not believed: a verify whose
// every walk is overtaken by a push and a pop gives up with ABORTED, and
// reports no corruption.
TEST(LockFreedomTest, AVerifyOvertakenOnEveryWalkIsAborted) {
  PoolMemory memory(kVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kVolumes, ""), PoolError::kSuccess);

  struct Mover {
    VolumePool* pool;
    int moves = 0;
  } mover{&pool};
  VolumePool verifier = memory.JoinAt(memory.mapping());
  verifier.SetTestHookForTesting(
      [](void* arg, VolumePool::TestPoint point) {
        if (point != VolumePool::TestPoint::kVerifyStep) return;
        auto* m = static_cast<Mover*>(arg);
        VolumeHeader* v = nullptr;
        // The top volume leaves and comes back: the stack looks the same,
        // but its version moved, so the walk cannot know that what it
        // read was one stack.
        ASSERT_EQ(m->pool->Acquire(&v), PoolError::kSuccess);
        ASSERT_EQ(m->pool->Release(v), PoolError::kSuccess);
        ++m->moves;
      },
      &mover);
  absl::StatusOr<VerifyReport> report = verifier.Verify();
  EXPECT_EQ(report.status().code(), absl::StatusCode::kAborted)
      << report.status();
  EXPECT_THAT(std::string(report.status().message()),
              ::testing::HasSubstr(
                  absl::StrCat("during each of ", kVerifyWalks, " walks")));
  EXPECT_EQ(mover.moves, static_cast<int>(kVerifyWalks));

  // Once the stack is still, the same join verifies it in one walk.
  verifier.SetTestHookForTesting(nullptr, nullptr);
  absl::StatusOr<VerifyReport> still = verifier.Verify();
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->empty_volumes, kVolumes);
  EXPECT_EQ(still->walks, 1u);
}

TEST(LockFreedomTest, TheMaintenanceLockDoesStopOthers) {
  PoolMemory memory(kVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kVolumes, ""), PoolError::kSuccess);
  ASSERT_EQ(pool.Lock(), PoolError::kSuccess);

  // 0: not there yet; 1: the blocking Acquire met the lock and spins;
  // 2: it acquired.
  std::atomic<int> progress{0};
  std::thread blocked([&] {
    VolumePool join = memory.JoinAt(memory.mapping());
    join.SetTestHookForTesting(
        [](void* arg, VolumePool::TestPoint point) {
          if (point != VolumePool::TestPoint::kLockedWait) return;
          auto* p = static_cast<std::atomic<int>*>(arg);
          int expected = 0;
          if (p->compare_exchange_strong(expected, 1)) p->notify_all();
        },
        &progress);
    VolumeHeader* v = nullptr;
    // Non-blocking attempts are refused while the lock is held...
    EXPECT_EQ(join.Acquire(&v, Wait::kNoBlock), PoolError::kAgain);
    // ...and a blocking one waits for Unlock.
    EXPECT_EQ(join.Acquire(&v, Wait::kBlock), PoolError::kSuccess);
    progress.store(2);
    progress.notify_all();
  });
  progress.wait(0);
  // The blocking Acquire has met the lock (had it ignored the lock, it
  // would have popped instead, and progress would be 2).
  EXPECT_EQ(progress.load(), 1);
  EXPECT_TRUE(TopIsLocked(memory.header()->ver_top.load()));
  EXPECT_EQ(TopIndex(memory.header()->ver_top.load()), 0u);
  pool.Unlock();
  blocked.join();
  EXPECT_EQ(progress.load(), 2);
  EXPECT_EQ(pool.Counts().acquires, 1u);
}

}  // namespace
}  // namespace groove
