// NamedPool under concurrent adders, removers and data-plane threads: slot
// claims are CAS, so two adds never take one index and never wait on each
// other; afterwards every volume is accounted for exactly once and no memory
// is held beyond the volumes that exist.

#include <atomic>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "groove/named_pool.h"
#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::TempDir;

#if defined(__SANITIZE_THREAD__)
constexpr int kOpsPerThread = 1'500;
#else
constexpr int kOpsPerThread = 10'000;
#endif
constexpr uint64_t kVolumeBytes = 16 << 10;
constexpr uint64_t kMaxVolumes = 64;

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
      std::mt19937_64 rng(seed + t);
      for (int op = 0; op < kOpsPerThread; ++op) {
        const uint64_t count = 1 + rng() % 4;
        if (rng() % 2 == 0) {
          auto added = pool.AddVolumes(count, std::nullopt, "c");
          if (added.ok()) {
            for (uint64_t i : *added) ++balance[t][i];
          } else if (added.status().code() !=
                     absl::StatusCode::kResourceExhausted) {
            unexpected.fetch_add(1);
          }
        } else {
          auto removed = pool.RemoveVolumes(count);
          if (removed.ok()) {
            for (const RemovedVolume& r : *removed) --balance[t][r.index];
          } else if (removed.status().code() !=
                     absl::StatusCode::kFailedPrecondition) {
            unexpected.fetch_add(1);
          }
        }
      }
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

  // Sum every thread's adds minus removes per index: 0 or 1, never more.
  std::map<uint64_t, int64_t> total;
  for (const auto& b : balance) {
    for (const auto& [index, n] : b) total[index] += n;
  }
  uint64_t expected_present = 0;
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool.ListVolumes(0, kMaxVolumes, &next);
  std::map<uint64_t, bool> present;
  for (const VolumeEntry& e : listed) present[e.index] = true;
  for (const auto& [index, n] : total) {
    ASSERT_TRUE(n == 0 || n == 1) << "index " << index << " balance " << n;
    EXPECT_EQ(present.count(index) == 1, n == 1) << "index " << index;
    expected_present += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(listed.size(), expected_present);
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, expected_present);
  EXPECT_EQ(pool.Summary().volumes_mapped, expected_present);
  EXPECT_EQ(*pool.AllocatedBytes(), expected_present * kVolumeBytes);
  std::printf("%llu volumes present, %llu data-plane pairs\n",
              static_cast<unsigned long long>(expected_present),
              static_cast<unsigned long long>(pairs.load()));
}

}  // namespace
}  // namespace groove
