// VolumePool under N threads (2..8, oversubscribed on purpose on a 2-core
// machine) doing random Acquire/Release/Add/Remove on one pool, with one
// extra thread running Verify (the pause-everyone maintenance call) now and
// then. Afterwards every volume is accounted for exactly once and the
// counters are exact. Then the counter shards under threads that come and
// go: more at once than there are shards, wave after wave.

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/pool_workload.h"

namespace groove {
namespace {

using testing::PoolMemory;
using testing::PoolWorker;
using testing::WorkerTally;

// Operations per worker thread. ThreadSanitizer slows every atomic access
// by an order of magnitude, so it gets fewer.
#if defined(__SANITIZE_THREAD__)
constexpr int kStepsPerThread = 300'000;
#else
constexpr int kStepsPerThread = 1'000'000;
#endif

constexpr uint64_t kMaxVolumes = 64;
constexpr uint64_t kInitialVolumes = 32;

class VolumePoolStressTest : public ::testing::TestWithParam<int> {};

TEST_P(VolumePoolStressTest, EveryVolumeIsAccountedForExactlyOnce) {
  const int thread_count = GetParam();
  PoolMemory memory(kMaxVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kInitialVolumes, "initial"), PoolError::kSuccess);
  const uint64_t seed = testing::TestSeed();

  // The indices never added start out owned by the workers, round-robin.
  std::vector<std::vector<uint64_t>> owned(thread_count);
  for (uint64_t i = kInitialVolumes; i < kMaxVolumes; ++i) {
    owned[i % thread_count].push_back(i);
  }
  std::vector<PoolWorker> workers;
  for (int t = 0; t < thread_count; ++t) {
    workers.emplace_back(memory.JoinAt(memory.mapping()), t, seed + t,
                         owned[t]);
  }

  std::atomic<int> running{thread_count};
  std::atomic<uint64_t> verified{0};   // walks that found the stack still
  std::atomic<uint64_t> overtaken{0};  // ABORTED: the stack kept moving
  std::atomic<uint64_t> verify_failures{0};
  std::string first_verify_failure;
  // The verifier walks beside the workers (it pauses nobody); it keeps
  // going until the last worker is done.
  std::thread verifier([&] {
    while (running.load(std::memory_order_acquire) > 0) {
      const absl::Status status = pool.Verify().status();
      if (status.ok()) {
        verified.fetch_add(1);
      } else if (status.code() == absl::StatusCode::kAborted) {
        overtaken.fetch_add(1);
      } else if (verify_failures.fetch_add(1) == 0) {
        first_verify_failure = status.ToString();
      }
      std::this_thread::yield();  // let workers run between verifications
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < thread_count; ++t) {
    threads.emplace_back([&, t] {
      for (int step = 0; step < kStepsPerThread; ++step) workers[t].Step();
      running.fetch_sub(1, std::memory_order_release);
    });
  }
  for (std::thread& t : threads) t.join();
  verifier.join();

  EXPECT_EQ(verify_failures.load(), 0u) << first_verify_failure;
  EXPECT_GT(verified.load() + overtaken.load(), 0u);
  std::printf(
      "verifies beside the workers: %llu found the stack still, "
      "%llu overtaken on every walk\n",
      static_cast<unsigned long long>(verified.load()),
      static_cast<unsigned long long>(overtaken.load()));

  // Quiescent now. Every index is on the stack, held or owned: once.
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  std::vector<int> seen(kMaxVolumes, 0);
  for (uint64_t i : testing::StackIndices(pool)) ++seen[i];
  WorkerTally total;
  uint64_t held = 0;
  for (const PoolWorker& w : workers) {
    EXPECT_EQ(w.tally().failures, 0u) << w.tally().first_failure;
    for (const VolumeHeader* v : w.held()) ++seen[pool.IndexOf(v)];
    for (uint64_t i : w.owned()) ++seen[i];
    held += w.held().size();
    total.adds += w.tally().adds;
    total.removes += w.tally().removes;
    total.acquires += w.tally().acquires;
    total.releases += w.tally().releases;
  }
  for (uint64_t i = 0; i < kMaxVolumes; ++i) {
    EXPECT_EQ(seen[i], 1) << "volume " << i;
  }

  // The counters are exact when nothing is in flight.
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, kInitialVolumes + total.adds);
  EXPECT_EQ(counts.volumes_removed, total.removes);
  EXPECT_EQ(counts.acquires, total.acquires);
  EXPECT_EQ(counts.releases, total.releases);
  EXPECT_EQ(counts.volumes_quarantined, 0u);
  EXPECT_EQ(counts.empty_volumes, report->empty_volumes);
  EXPECT_EQ(total.acquires - total.releases, held);
  // The workload really did contend: each kind of operation happened.
  EXPECT_GT(total.acquires, 0u);
  EXPECT_GT(total.removes, 0u);
  EXPECT_GT(total.adds, 0u);

  // Finishing puts every volume back on the stack.
  for (PoolWorker& w : workers) w.Finish();
  report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kMaxVolumes);
  EXPECT_EQ(pool.Counts().empty_volumes, kMaxVolumes);
}

// ---- Counter shards ---------------------------------------------------------

#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kPairsPerWaveThread = 500;
#else
constexpr uint64_t kPairsPerWaveThread = 5'000;
#endif

// OwnerTokens returns the owner of every owned shard, by shard index.
std::vector<uint64_t> OwnerTokens(const PoolHeader& header) {
  std::vector<uint64_t> owners(kCounterShards);
  for (uint64_t i = 0; i < kCounterShards; ++i) {
    owners[i] = header.stats.shards[i].owner.load();
  }
  return owners;
}

// Waves of kCounterShards + 3 threads: each thread counts once, then waits
// until every thread of its wave has (a barrier), so the whole wave holds
// thread slots at once and the threads that find every shard taken count in
// the fallback shard 0. Then each runs its pairs (and a remove + add now and
// then) and exits; the next wave's threads take over the exited threads'
// slots and, with them, their shards.
TEST(CounterShardsTest, CountersStayExactWhileThreadsComeAndGo) {
  constexpr int kThreadsPerWave = static_cast<int>(kCounterShards) + 3;
  constexpr int kWaves = 3;
  PoolMemory memory(kMaxVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kMaxVolumes, "waves"), PoolError::kSuccess);
  const PoolHeader& header = *memory.header();
  const CounterValues& fallback = header.stats.shards[0].counts;

  // This thread (the test's) holds one shard; kCounterShards - 2 are free.
  std::vector<uint64_t> owners = OwnerTokens(header);
  const auto main_shard = static_cast<uint64_t>(
      std::find_if(owners.begin(), owners.end(),
                   [](uint64_t owner) { return owner != 0; }) -
      owners.begin());
  ASSERT_LT(main_shard, kCounterShards);
  ASSERT_EQ(std::count(owners.begin(), owners.end(), 0u),
            static_cast<long>(kCounterShards) - 1);
  const uint64_t shardless_threads = kThreadsPerWave - (kCounterShards - 2);

  uint64_t pairs = 0;
  uint64_t removes = 0;
  std::vector<uint64_t> first_wave_owners;
  for (int wave = 0; wave < kWaves; ++wave) {
    std::vector<uint64_t> acquires_before(kCounterShards);
    for (uint64_t i = 0; i < kCounterShards; ++i) {
      acquires_before[i] = header.stats.shards[i].counts.acquires.load();
    }
    std::barrier all_counted(kThreadsPerWave);
    std::atomic<uint64_t> failures{0};
    std::atomic<uint64_t> wave_removes{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreadsPerWave; ++t) {
      threads.emplace_back([&] {
        const VolumePool join = memory.JoinAt(memory.mapping());
        auto pair = [&] {
          VolumeHeader* v = nullptr;
          if (join.Acquire(&v) != PoolError::kSuccess ||
              join.Release(v) != PoolError::kSuccess) {
            failures.fetch_add(1);
          }
        };
        pair();
        all_counted.arrive_and_wait();
        for (uint64_t i = 1; i < kPairsPerWaveThread; ++i) {
          pair();
          if (i % 16 == 0) {
            VolumeHeader* v = nullptr;
            if (join.Remove(&v) != PoolError::kSuccess ||
                join.Add(join.IndexOf(v), 1, "again") != PoolError::kSuccess) {
              failures.fetch_add(1);
            } else {
              wave_removes.fetch_add(1);
            }
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    ASSERT_EQ(failures.load(), 0u);
    pairs += kThreadsPerWave * kPairsPerWaveThread;
    removes += wave_removes.load();

    // Exact, with every thread of every wave gone.
    const PoolCounts counts = pool.Counts();
    EXPECT_EQ(counts.acquires, pairs) << "wave " << wave;
    EXPECT_EQ(counts.releases, pairs) << "wave " << wave;
    EXPECT_EQ(counts.volumes_removed, removes) << "wave " << wave;
    EXPECT_EQ(counts.volumes_added, kMaxVolumes + removes) << "wave " << wave;
    EXPECT_EQ(counts.volumes_quarantined, 0u);
    EXPECT_EQ(counts.empty_volumes, kMaxVolumes);
    absl::StatusOr<VerifyReport> report = pool.Verify();
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->empty_volumes, kMaxVolumes);

    // Every shard is taken, and the threads left without one counted all
    // their pairs in the fallback shard.
    owners = OwnerTokens(header);
    EXPECT_EQ(owners[0], 0u);
    EXPECT_EQ(std::count(owners.begin() + 1, owners.end(), 0u), 0)
        << "wave " << wave;
    EXPECT_EQ(fallback.acquires.load() - acquires_before[0],
              shardless_threads * kPairsPerWaveThread)
        << "wave " << wave;
    if (wave == 0) {
      first_wave_owners = owners;
      continue;
    }
    // Later waves claimed no shard: they took over the shards of the wave
    // before, each of which counted this wave's pairs.
    EXPECT_EQ(owners, first_wave_owners) << "wave " << wave;
    for (uint64_t i = 1; i < kCounterShards; ++i) {
      if (i == main_shard) continue;
      EXPECT_EQ(
          header.stats.shards[i].counts.acquires.load() - acquires_before[i],
          kPairsPerWaveThread)
          << "wave " << wave << ", shard " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, VolumePoolStressTest,
                         ::testing::Values(2, 3, 4, 8),
                         [](const auto& info) {
                           return std::to_string(info.param) + "Threads";
                         });

}  // namespace
}  // namespace groove
