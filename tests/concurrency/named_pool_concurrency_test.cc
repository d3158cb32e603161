// NamedPool under concurrent adders, removers and data-plane threads: slot
// claims are CAS, so two adds never take one index; afterwards every volume
// is accounted for exactly once and no memory is held beyond the volumes
// that exist (every punch a remove left to an add was run). And a remove
// never waits for an add's allocation, which the kernel would make it do on
// the store's inode lock (StoreGate).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "groove/named_pool.h"
#include "gtest/gtest.h"
#include "support/fault_store.h"
#include "support/notification.h"
#include "support/pool_memory.h"
#include "support/stall.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::FaultStore;
using testing::Notification;
using testing::TempDir;

#if defined(__SANITIZE_THREAD__)
constexpr int kOpsPerThread = 1'500;
#else
constexpr int kOpsPerThread = 10'000;
#endif
constexpr uint64_t kVolumeBytes = 16 << 10;
constexpr uint64_t kMaxVolumes = 64;

// ExpectPresentAsBalanced checks `pool` once its threads are done, every
// volume released: summed over `balance` (each thread's adds minus its
// removes and reclaims, per index), an index is 0 or 1, listed (empty)
// iff 1, and Verify, volumes_mapped and the store's memory agree. Sets
// *present to how many are.
void ExpectPresentAsBalanced(
    const NamedPool& pool,
    const std::vector<std::map<uint64_t, int64_t>>& balance,
    uint64_t* present) {
  std::map<uint64_t, int64_t> total;
  for (const auto& b : balance) {
    for (const auto& [index, n] : b) total[index] += n;
  }
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool.ListVolumes(0, kMaxVolumes, &next);
  std::map<uint64_t, bool> listed_index;
  for (const VolumeEntry& e : listed) {
    listed_index[e.index] = true;
    EXPECT_EQ(e.status, VolumeStatus::kEmpty) << e.index << " " << e.corruption;
  }
  *present = 0;
  for (const auto& [index, n] : total) {
    ASSERT_TRUE(n == 0 || n == 1) << "index " << index << " balance " << n;
    EXPECT_EQ(listed_index.count(index) == 1, n == 1) << "index " << index;
    *present += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(listed.size(), *present);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, *present);
  EXPECT_EQ(pool.Summary().volumes_mapped, *present);
  EXPECT_EQ(*pool.AllocatedBytes(), *present * kVolumeBytes);
}

// AddAndRemoveAtRandom is an admin thread: `ops` adds and removes of 1 to
// `max_count` volumes at random (seeded with `seed`), each index added
// counted up in *balance and each removed counted down. Counts in
// *quarantines a remove that popped a corrupt volume (DATA_LOSS; without
// quarantines, unexpected), and in *unexpected any other error but a
// full pool for an add or an empty stack for a remove.
void AddAndRemoveAtRandom(NamedPool& pool, uint64_t seed, int ops,
                          uint64_t max_count,
                          std::map<uint64_t, int64_t>* balance,
                          std::atomic<int>* unexpected,
                          std::atomic<uint64_t>* quarantines) {
  std::mt19937_64 rng(seed);
  for (int op = 0; op < ops; ++op) {
    const uint64_t count = 1 + rng() % max_count;
    if (rng() % 2 == 0) {
      auto added = pool.AddVolumes(count, std::nullopt, "c");
      if (added.ok()) {
        for (uint64_t i : *added) ++(*balance)[i];
      } else if (added.status().code() !=
                 absl::StatusCode::kResourceExhausted) {
        unexpected->fetch_add(1);
      }
      continue;
    }
    auto removed = pool.RemoveVolumes(count);
    if (removed.ok()) {
      for (const RemovedVolume& r : *removed) --(*balance)[r.index];
    } else if (removed.status().code() == absl::StatusCode::kDataLoss &&
               quarantines != nullptr) {
      quarantines->fetch_add(1);
    } else if (removed.status().code() !=
               absl::StatusCode::kFailedPrecondition) {
      unexpected->fetch_add(1);
    }
  }
}

TEST(NamedPoolConcurrencyTest, ConcurrentAddsNeverShareAnIndex) {
  TempDir dir;
  PoolConfig config;
  config.name = "race";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = kVolumeBytes;
  config.max_volumes = kMaxVolumes;
  auto opened = NamedPool::Open(dir.path(), config);
  ASSERT_TRUE(opened.ok()) << opened.status();
  NamedPool& pool = **opened;
  // The data-plane threads go through a join, as a data-plane process does:
  // the owner maps no volume and hands out no address.
  auto joined = NamedPool::Join(dir.path(), config.name);
  ASSERT_TRUE(joined.ok()) << joined.status();
  const VolumePool& plane = (*joined)->pool();
  const uint64_t seed = testing::TestSeed();

  constexpr int kAdmins = 3;      // add and remove
  constexpr int kDataPlane = 2;   // acquire and release
  // Each admin thread records which indices it added and removed; an index
  // is present at the end iff its adds outnumber its removes by one.
  std::vector<std::map<uint64_t, int64_t>> balance(kAdmins);
  std::atomic<int> unexpected{0};
  std::atomic<int> admins_running{kAdmins};
  std::vector<std::thread> threads;
  for (int t = 0; t < kAdmins; ++t) {
    threads.emplace_back([&, t] {
      AddAndRemoveAtRandom(pool, seed + t, kOpsPerThread, 4, &balance[t],
                           &unexpected, /*quarantines=*/nullptr);
      admins_running.fetch_sub(1);
    });
  }
  std::atomic<uint64_t> pairs{0};
  for (int t = 0; t < kDataPlane; ++t) {
    threads.emplace_back([&] {
      while (admins_running.load() > 0) {
        VolumeHeader* v = nullptr;
        const PoolError err = plane.Acquire(&v);
        if (err == PoolError::kEmpty) continue;
        if (err != PoolError::kSuccess) {
          unexpected.fetch_add(1);
          continue;
        }
        VolumeData(v)[0] = std::byte{7};
        if (plane.Release(v) != PoolError::kSuccess) {
          unexpected.fetch_add(1);
        }
        pairs.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);

  uint64_t expected_present = 0;
  ASSERT_NO_FATAL_FAILURE(
      ExpectPresentAsBalanced(pool, balance, &expected_present));
  std::printf("%llu volumes present, %llu data-plane pairs\n",
              static_cast<unsigned long long>(expected_present),
              static_cast<unsigned long long>(pairs.load()));
}

// OpenHeld opens a pool of `max_volumes` whose store is a FaultStore: its
// Allocate and Deallocate share one lock, as the kernel's fallocate holds
// the file's inode lock, and `control` can hold either inside it. Steps
// (OpenOptions::step_hook) go to `on_step`, from any thread.
// HeldConfig is the configuration of OpenHeld's pool.
PoolConfig HeldConfig(uint64_t max_volumes) {
  PoolConfig config;
  config.name = "held";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = kVolumeBytes;
  config.max_volumes = max_volumes;
  return config;
}

std::unique_ptr<NamedPool> OpenHeld(
    const TempDir& dir, uint64_t max_volumes,
    std::shared_ptr<FaultStore::Control> control,
    std::function<void(absl::string_view)> on_step) {
  const PoolConfig config = HeldConfig(max_volumes);
  NamedPool::OpenOptions options;
  options.wrap_store = [control](std::unique_ptr<VolumeStore> real) {
    return std::make_unique<FaultStore>(std::move(real), control);
  };
  options.step_hook = std::move(on_step);
  auto opened = NamedPool::Open(dir.path(), config, std::move(options));
  EXPECT_TRUE(opened.ok()) << opened.status();
  return opened.ok() ? std::move(*opened) : nullptr;
}

// How long a call that must not wait gets before the test calls it stuck.
// Generous: it fails a remove that waits for an allocation held forever,
// not a slow machine.
constexpr absl::Duration kStuck = absl::Seconds(30);

// HeldAdd is an AddVolumes(1) on a thread of its own, held inside its
// allocation (and the store's lock) from construction, which returns once
// it is there, until Finish. REQUIRES: no other add allocates until it is
// there.
class HeldAdd {
 public:
  HeldAdd(NamedPool& pool, FaultStore::Control& control) : control_(control) {
    control_.during_allocate = [this] {
      if (held_.exchange(true)) return;  // only this add's allocation
      allocating_.Notify();
      ASSERT_TRUE(may_finish_.WaitForNotificationWithTimeout(kStuck));
    };
    thread_ = std::thread([this, &pool] {
      absl::StatusOr<std::vector<uint64_t>> added =
          pool.AddVolumes(1, std::nullopt, "held");
      EXPECT_TRUE(added.ok()) << added.status();
    });
    EXPECT_TRUE(allocating_.WaitForNotificationWithTimeout(kStuck));
  }
  ~HeldAdd() { Finish(); }

  // Finish lets the allocation end and returns once the add has returned.
  void Finish() {
    if (!thread_.joinable()) return;
    may_finish_.Notify();
    thread_.join();
    // Under the store's lock, which Allocate reads it under: another add
    // may be allocating by now.
    std::lock_guard<std::mutex> inode(control_.inode_lock);
    control_.during_allocate = nullptr;
  }

 private:
  FaultStore::Control& control_;
  std::atomic<bool> held_{false};
  Notification allocating_;
  Notification may_finish_;
  std::thread thread_;
};

// OpenHeldWithTwo opens OpenHeld's pool of 8 with 2 volumes added,
// counting in *steps each step `counted` it makes.
std::unique_ptr<NamedPool> OpenHeldWithTwo(
    const TempDir& dir, std::shared_ptr<FaultStore::Control> control,
    absl::string_view counted, std::atomic<int>* steps) {
  auto pool = OpenHeld(dir, 8, std::move(control),
                       [counted, steps](absl::string_view step) {
                         if (step == counted) steps->fetch_add(1);
                       });
  if (pool != nullptr) {
    EXPECT_TRUE(pool->AddVolumes(2, std::nullopt, "x").ok());
  }
  return pool;
}

// ReadyBeforeStuck: `call` is ready within kStuck.
template <typename T>
bool ReadyBeforeStuck(std::future<T>& call) {
  return call.wait_for(absl::ToChronoSeconds(kStuck)) ==
         std::future_status::ready;
}

// An add holds the store's lock inside its allocation (as a hugepage
// allocation does for seconds): a remove of the same pool returns at once,
// having left its punch to the add, which runs it when its allocation is
// done.
TEST(NamedPoolConcurrencyTest, ARemoveDoesNotWaitForAnAddThatIsAllocating) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  std::atomic<int> deferred{0};
  auto pool = OpenHeldWithTwo(dir, control, "remove:deferred", &deferred);
  ASSERT_NE(pool, nullptr);
  HeldAdd adder(*pool, *control);
  auto removing =
      std::async(std::launch::async, [&] { return pool->RemoveVolumes(1); });
  const bool returned = ReadyBeforeStuck(removing);
  EXPECT_TRUE(returned) << "RemoveVolumes waited for the add's allocation";
  uint64_t removed_index = 0;
  if (returned) {
    absl::StatusOr<std::vector<RemovedVolume>> removed = removing.get();
    ASSERT_TRUE(removed.ok()) << removed.status();
    ASSERT_EQ(removed->size(), 1u);
    removed_index = (*removed)[0].index;
    // Out of the pool at once; its memory not yet given back.
    EXPECT_EQ(deferred.load(), 1);
    EXPECT_EQ(control->deallocates.load(), 0);
    EXPECT_EQ(pool->Summary().volumes_mapped, 1u);
    uint64_t next = 0;
    for (const VolumeEntry& e : pool->ListVolumes(0, 8, &next)) {
      EXPECT_NE(e.index, removed_index);
    }
  }
  adder.Finish();
  if (!returned) return;  // removing's destructor waits for the remove
  // The add ran the punch as it let go of the store.
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(*pool->AllocatedBytes(), 2 * kVolumeBytes);
  EXPECT_EQ(pool->Summary().volumes_mapped, 2u);
  absl::StatusOr<std::vector<uint64_t>> again =
      pool->AddVolumes(1, removed_index, "again");
  EXPECT_TRUE(again.ok()) << again.status();
  absl::StatusOr<VerifyReport> report = pool->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 3u);
}

// A remove of a full pool returned with its punch left to the add that is
// allocating: a third add, which finds no free index, waits for that punch
// instead of failing for want of room, and takes the index it frees.
TEST(NamedPoolConcurrencyTest, AnAddAfterARemoveWaitsForItsQueuedPunch) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  Notification add_waits;
  auto pool = OpenHeld(dir, 2, control, [&](absl::string_view step) {
    if (step == "add:store-busy") add_waits.Notify();
  });
  ASSERT_NE(pool, nullptr);
  absl::StatusOr<std::vector<uint64_t>> first =
      pool->AddVolumes(1, std::nullopt, "first");
  ASSERT_TRUE(first.ok()) << first.status();
  HeldAdd allocator(*pool, *control);
  // Both indices are taken now: the first volume's, and the second's
  // (claimed, allocating). The remove takes the first and queues its punch.
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ((*removed)[0].index, (*first)[0]);
  EXPECT_EQ(control->deallocates.load(), 0);
  auto adding = std::async(std::launch::async, [&] {
    return pool->AddVolumes(1, std::nullopt, "third");
  });
  EXPECT_TRUE(add_waits.WaitForNotificationWithTimeout(kStuck))
      << "the add did not wait for the queued punch";
  allocator.Finish();
  absl::StatusOr<std::vector<uint64_t>> third = adding.get();
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(*third, *first);
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(pool->Summary().volumes_mapped, 2u);
  EXPECT_EQ(*pool->AllocatedBytes(), 2 * kVolumeBytes);
}

// As AnAddAfterARemoveWaitsForItsQueuedPunch, the add asking for the
// removed volume's index: its claim finds the slot still REMOVING, and the
// queued punch is done (the slot freed, nothing left queued) before the
// add looks for queued punches. The remove returned before the add began,
// so the add claims again and takes the index, instead of failing with
// ALREADY_EXISTS for an index that is free.
TEST(NamedPoolConcurrencyTest, AnAddWhoseClaimRacesTheQueuedPunchClaimsAgain) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  std::unique_ptr<HeldAdd> allocator;
  std::atomic<bool> refused{false};
  auto pool = OpenHeld(dir, 2, control, [&](absl::string_view step) {
    // The first refused claim: the allocator ends and runs the punch.
    if (step == "add:claim-refused" && !refused.exchange(true)) {
      allocator->Finish();
    }
  });
  ASSERT_NE(pool, nullptr);
  absl::StatusOr<std::vector<uint64_t>> first =
      pool->AddVolumes(1, std::nullopt, "first");
  ASSERT_TRUE(first.ok()) << first.status();
  allocator = std::make_unique<HeldAdd>(*pool, *control);
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ(control->deallocates.load(), 0);  // queued for the allocator
  absl::StatusOr<std::vector<uint64_t>> again =
      pool->AddVolumes(1, (*first)[0], "again");
  EXPECT_TRUE(refused.load());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(pool->Summary().volumes_mapped, 2u);
  EXPECT_EQ(*pool->AllocatedBytes(), 2 * kVolumeBytes);
}

// The store holds at most 3 volumes' memory, as a hugepage pool holds what
// nr_hugepages allows. While an add allocates the third, a remove queues
// its punch; an add called after the remove returned runs that punch
// before it allocates (waiting on the store's lock, as in the kernel, for
// the allocation in progress) and so finds the memory the remove gave
// back, instead of failing for want of it. Left to the last allocation to
// end, the punch would come after this add's allocation, and adds that
// kept overlapping would hold it back indefinitely.
TEST(NamedPoolConcurrencyTest, AnAddAfterARemoveFindsTheMemoryItGaveBack) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  control->capacity_bytes = 3 * kVolumeBytes;
  Notification add_waits;
  auto pool = OpenHeld(dir, 8, control, [&](absl::string_view step) {
    if (step == "add:store-busy") add_waits.Notify();
  });
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "x").ok());
  HeldAdd allocator(*pool, *control);  // takes the last of the capacity
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(control->deallocates.load(), 0);  // queued for the allocator
  auto adding = std::async(std::launch::async, [&] {
    return pool->AddVolumes(1, std::nullopt, "after the remove");
  });
  EXPECT_TRUE(add_waits.WaitForNotificationWithTimeout(kStuck))
      << "the add did not wait for the queued punch";
  allocator.Finish();
  absl::StatusOr<std::vector<uint64_t>> after = adding.get();
  EXPECT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(pool->Summary().volumes_mapped, 3u);
  EXPECT_EQ(*pool->AllocatedBytes(), 3 * kVolumeBytes);
  absl::StatusOr<VerifyReport> report = pool->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 3u);
}

// A keyed add stopped with its request journal entry PENDING (written,
// the add not yet committed) keeps no other add, keyed or not, and no
// remove from completing: entries are claimed lock-free, one per add, and
// the others go round the whole ring past the stopped one's. It then
// completes, and is in the journal when the pool is opened again, beside
// the newest of the others (the oldest were reused).
TEST(NamedPoolConcurrencyTest, AKeyedAddStoppedInItsJournalEntryBlocksNoOne) {
  TempDir dir;
  testing::Stall stall;
  constexpr int kOthers = 2;
  // Together more keyed adds than the journal has entries.
  constexpr uint64_t kAddsEach = RequestJournal::kEntries / kOthers + 8;
  {
    auto pool =
        OpenHeld(dir, kMaxVolumes, std::make_shared<FaultStore::Control>(),
                 [&stall](absl::string_view step) {
                   if (step == "add:recorded") {
                     testing::Stall::Hook(&stall);
                   }
                 });
    ASSERT_NE(pool, nullptr);
    std::thread stopped([&] {
      EXPECT_TRUE(
          pool->AddVolumes(1, std::nullopt, "stopped", RequestKey{9, 9}).ok());
    });
    stall.WaitUntilStalled();
    std::vector<std::thread> others;
    for (int t = 0; t < kOthers; ++t) {
      others.emplace_back([&, t] {
        for (uint64_t k = 0; k < kAddsEach; ++k) {
          EXPECT_TRUE(
              pool->AddVolumes(1, std::nullopt, "", RequestKey{uint64_t(t), k})
                  .ok());
          EXPECT_TRUE(pool->RemoveVolumes(1).ok());
        }
      });
    }
    // Joined while the stopped add still waits: nothing waited for it.
    for (std::thread& t : others) t.join();
    EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
    stall.Resume();
    stopped.join();
  }
  auto reopened = NamedPool::Open(dir.path(), HeldConfig(kMaxVolumes));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  const std::vector<RecordedAdd> recorded = (*reopened)->TakeRecordedAdds();
  EXPECT_EQ(recorded.size(), RequestJournal::kEntries);
  EXPECT_TRUE(
      std::any_of(recorded.begin(), recorded.end(), [](const RecordedAdd& add) {
        return add.key == RequestKey{9, 9};
      }));
}

// QuarantineTop has the data plane `plane` acquire the volume on top of
// the stack after scribbling its info_sz: quarantined. Returns its index.
uint64_t QuarantineTop(const NamedPool& pool, const VolumePool& plane) {
  const uint64_t top = pool.pool().PeekTop();
  EXPECT_NE(top, kNullIndex);
  if (top == kNullIndex) return top;
  plane.VolumeAt(top)->info_sz.store(kVolumeInfoMax + 1);
  VolumeHeader* v = nullptr;
  EXPECT_EQ(plane.Acquire(&v), PoolError::kCorrupt);
  return top;
}

// Two admins reclaim one quarantined volume at once: one CAS of its slot
// wins, the other is told the volume is being removed or gone, and the
// volume is freed once.
TEST(NamedPoolConcurrencyTest, OfTwoReclaimsOfOneVolumeExactlyOneWins) {
  TempDir dir;
  auto opened = NamedPool::Open(dir.path(), HeldConfig(8));
  ASSERT_TRUE(opened.ok()) << opened.status();
  NamedPool& pool = **opened;
  auto joined = NamedPool::Join(dir.path(), pool.config().name);
  ASSERT_TRUE(joined.ok()) << joined.status();
  ASSERT_TRUE(pool.AddVolumes(4, std::nullopt, "r").ok());
#if defined(__SANITIZE_THREAD__)
  constexpr int kRounds = 100;
#else
  constexpr int kRounds = 200;
#endif
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    const uint64_t index = QuarantineTop(pool, (*joined)->pool());
    ASSERT_EQ(pool.Summary().volumes_in_quarantine, 1u);
    std::atomic<int> ready{0};
    absl::StatusOr<ReclaimedVolume> results[2] = {absl::UnknownError(""),
                                                  absl::UnknownError("")};
    std::vector<std::thread> admins;
    for (int t = 0; t < 2; ++t) {
      admins.emplace_back([&, t] {
        // Both start together: each waits until the other is there.
        ready.fetch_add(1);
        while (ready.load() < 2) {
        }
        results[t] = pool.ReclaimVolume(index);
      });
    }
    for (std::thread& t : admins) t.join();
    ASSERT_NE(results[0].ok(), results[1].ok())
        << results[0].status() << " / " << results[1].status();
    const absl::Status& lost =
        results[0].ok() ? results[1].status() : results[0].status();
    EXPECT_EQ(lost.code(), absl::StatusCode::kFailedPrecondition) << lost;
    EXPECT_EQ((results[0].ok() ? *results[0] : *results[1]).index, index);
    const PoolSummary s = pool.Summary();
    ASSERT_EQ(s.volumes_in_quarantine, 0u);
    ASSERT_EQ(s.volumes_mapped, 3u);
    ASSERT_EQ(s.volumes_reclaimed, static_cast<uint64_t>(round) + 1);
    ASSERT_EQ(*pool.AllocatedBytes(), 3 * kVolumeBytes);
    ASSERT_TRUE(pool.AddVolumes(1, index, "again").ok());
  }
  ASSERT_TRUE(pool.Verify().ok());
}

// A reclaim, like a remove, never waits for an add's allocation: it
// returns at once with its punch left to the add, the volume out of the
// pool meanwhile (its memory counted as releasing), and the add runs the
// punch as it lets go of the store.
TEST(NamedPoolConcurrencyTest, AReclaimDoesNotWaitForAnAddThatIsAllocating) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  std::atomic<int> deferred{0};
  auto pool = OpenHeldWithTwo(dir, control, "reclaim:deferred", &deferred);
  ASSERT_NE(pool, nullptr);
  auto joined = NamedPool::Join(dir.path(), pool->config().name);
  ASSERT_TRUE(joined.ok()) << joined.status();
  const uint64_t index = QuarantineTop(*pool, (*joined)->pool());
  HeldAdd adder(*pool, *control);
  auto reclaiming = std::async(std::launch::async,
                               [&] { return pool->ReclaimVolume(index); });
  const bool returned = ReadyBeforeStuck(reclaiming);
  EXPECT_TRUE(returned) << "ReclaimVolume waited for the add's allocation";
  if (returned) {
    absl::StatusOr<ReclaimedVolume> reclaimed = reclaiming.get();
    ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
    EXPECT_EQ(deferred.load(), 1);
    EXPECT_EQ(control->deallocates.load(), 0);
    const PoolSummary s = pool->Summary();
    EXPECT_EQ(s.volumes_mapped, 1u);
    EXPECT_EQ(s.volumes_in_quarantine, 0u);
    EXPECT_EQ(s.releasing_bytes, kVolumeBytes);
  }
  adder.Finish();
  if (!returned) return;  // reclaiming's destructor waits for the reclaim
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(*pool->AllocatedBytes(), 2 * kVolumeBytes);  // 1 and the add's
  EXPECT_TRUE(pool->AddVolumes(1, index, "again").ok());
  absl::StatusOr<VerifyReport> report = pool->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 3u);
}

// Quarantines and reclaims race adds, removes, acquires and releases of
// other volumes: a data-plane thread now and then releases a volume with
// a bad info_sz (which the next pop quarantines: a remove's DATA_LOSS or
// an acquire's kCorrupt), and a reclaimer frees what ListVolumes shows
// as corrupt, while trying indices that are not quarantined, which must
// be refused. Afterwards every quarantine is either reclaimed or still
// counted, every index is present iff its adds outnumber its removes and
// reclaims, and Verify is clean.
TEST(NamedPoolConcurrencyTest, ReclaimsRacingEverythingElseLeaveThePoolSound) {
  TempDir dir;
  PoolConfig config = HeldConfig(kMaxVolumes);
  config.name = "reclaim";
  auto opened = NamedPool::Open(dir.path(), config);
  ASSERT_TRUE(opened.ok()) << opened.status();
  NamedPool& pool = **opened;
  auto joined = NamedPool::Join(dir.path(), config.name);
  ASSERT_TRUE(joined.ok()) << joined.status();
  const VolumePool& plane = (*joined)->pool();
  const uint64_t seed = testing::TestSeed();

  constexpr int kAdmins = 2;
  // Per thread: adds minus removes (admins) or reclaims (the reclaimer,
  // last) of each index, and the quarantines each thread's pops made.
  std::vector<std::map<uint64_t, int64_t>> balance(kAdmins + 1);
  std::atomic<uint64_t> quarantines{0};
  std::atomic<int> unexpected{0};
  std::atomic<int> admins_running{kAdmins};
  std::vector<std::thread> threads;
  for (int t = 0; t < kAdmins; ++t) {
    threads.emplace_back([&, t] {
      AddAndRemoveAtRandom(pool, seed + t, kOpsPerThread / 2, 3, &balance[t],
                           &unexpected, &quarantines);
      admins_running.fetch_sub(1);
    });
  }
  threads.emplace_back([&] {  // the data plane, scribbling now and then
    std::mt19937_64 rng(seed + 100);
    while (admins_running.load() > 0) {
      VolumeHeader* v = nullptr;
      const PoolError err = plane.Acquire(&v);
      if (err == PoolError::kEmpty) continue;
      if (err == PoolError::kCorrupt && v != nullptr) {
        quarantines.fetch_add(1);
        continue;
      }
      if (err != PoolError::kSuccess) {
        unexpected.fetch_add(1);
        continue;
      }
      VolumeData(v)[0] = std::byte{7};
      if (rng() % 16 == 0) v->info_sz.store(kVolumeInfoMax + 1 + rng() % 64);
      if (plane.Release(v) != PoolError::kSuccess) unexpected.fetch_add(1);
    }
  });
  threads.emplace_back([&] {  // the reclaimer
    std::mt19937_64 rng(seed + 200);
    std::map<uint64_t, int64_t>& reclaimed = balance[kAdmins];
    while (admins_running.load() > 0) {
      uint64_t next = 0;
      for (const VolumeEntry& e : pool.ListVolumes(0, kMaxVolumes, &next)) {
        if (e.status != VolumeStatus::kCorrupt) continue;
        absl::StatusOr<ReclaimedVolume> r = pool.ReclaimVolume(e.index);
        if (r.ok()) {
          --reclaimed[e.index];
        } else if (r.status().code() != absl::StatusCode::kFailedPrecondition) {
          unexpected.fetch_add(1);  // listed while in use with a bad header
        }
      }
      // Any index: refused unless quarantined (then it is freed).
      const uint64_t index = rng() % kMaxVolumes;
      absl::StatusOr<ReclaimedVolume> r = pool.ReclaimVolume(index);
      if (r.ok()) {
        --reclaimed[index];
      } else if (r.status().code() != absl::StatusCode::kFailedPrecondition) {
        unexpected.fetch_add(1);
      }
    }
  });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  // A volume released with a bad info_sz may still be on the stack: the
  // data plane takes every volume once, which quarantines those, and
  // gives the good ones back.
  std::vector<VolumeHeader*> taken;
  for (;;) {
    VolumeHeader* v = nullptr;
    const PoolError err = plane.Acquire(&v);
    if (err == PoolError::kEmpty) break;
    if (err == PoolError::kCorrupt && v != nullptr) {
      quarantines.fetch_add(1);
      continue;
    }
    ASSERT_EQ(err, PoolError::kSuccess);
    taken.push_back(v);
  }
  for (VolumeHeader* v : taken)
    ASSERT_EQ(plane.Release(v), PoolError::kSuccess);

  // Every quarantine is counted, or was reclaimed.
  uint64_t reclaims = 0;
  for (const auto& [index, n] : balance[kAdmins]) {
    reclaims += static_cast<uint64_t>(-n);
  }
  const PoolSummary s = pool.Summary();
  EXPECT_EQ(s.volumes_in_quarantine + reclaims, quarantines.load());
  EXPECT_EQ(s.volumes_reclaimed, reclaims);
  EXPECT_EQ(s.counts.volumes_quarantined, quarantines.load());
  // The rest, one at a time now.
  uint64_t next = 0;
  for (const VolumeEntry& e : pool.ListVolumes(0, kMaxVolumes, &next)) {
    if (e.status != VolumeStatus::kCorrupt) continue;
    absl::StatusOr<ReclaimedVolume> r = pool.ReclaimVolume(e.index);
    ASSERT_TRUE(r.ok()) << r.status();
    --balance[kAdmins][e.index];
  }
  EXPECT_EQ(pool.Summary().volumes_in_quarantine, 0u);

  uint64_t expected_present = 0;
  ASSERT_NO_FATAL_FAILURE(
      ExpectPresentAsBalanced(pool, balance, &expected_present));
  std::printf("%llu quarantined, %llu reclaimed while racing\n",
              static_cast<unsigned long long>(quarantines.load()),
              static_cast<unsigned long long>(reclaims));
}

}  // namespace
}  // namespace groove
