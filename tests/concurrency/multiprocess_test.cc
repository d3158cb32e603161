// VolumePool shared between processes: the pool header and volumes live in a
// memfd that forked children map again at their own (different) base
// addresses, as data-plane processes join a real pool. Children and the
// parent hammer the pool at once; then the parent verifies it and accounts
// for every volume.

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/pool_workload.h"

namespace groove {
namespace {

using testing::PoolMemory;
using testing::PoolWorker;
using testing::WorkerTally;

#if defined(__SANITIZE_THREAD__)
constexpr int kStepsPerProcess = 50'000;
#else
constexpr int kStepsPerProcess = 500'000;
#endif
constexpr int kChildren = 3;
constexpr uint64_t kMaxVolumes = 64;
constexpr uint64_t kInitialVolumes = 40;

// ChildMain runs in a forked child: it maps the pool at a fresh address,
// unmaps the parent's view (so a stray use of a parent address would
// crash), hammers the pool, gives everything back (volumes and counter
// shards) and reports its tally through `tally`, in memory shared with the
// parent.
[[noreturn]] void ChildMain(const PoolMemory& memory, int child,
                            uint64_t seed, std::vector<uint64_t> owned,
                            WorkerTally* tally) {
  const PoolMemory::Mapping own = memory.MapAgain();
  const bool moved = own.base != memory.mapping().base;
  munmap(memory.mapping().base,
         PoolMemory::kHeaderBytes + kMaxVolumes * memory.footprint_bytes());
  const VolumePool pool = memory.JoinAt(own);
  PoolWorker worker(pool, child + 1, seed, std::move(owned));
  for (int step = 0; step < kStepsPerProcess; ++step) worker.Step();
  worker.Finish();
  pool.ReturnCounterShards();  // as a data-plane process does before exiting
  *tally = worker.tally();
  if (!moved) {
    ++tally->failures;
    std::snprintf(tally->first_failure, sizeof(tally->first_failure),
                  "child %d mapped the pool at the parent's address", child);
  }
  _exit(0);
}

TEST(MultiProcessTest, ForkedProcessesShareOnePoolAtDifferentAddresses) {
  PoolMemory memory(kMaxVolumes, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, kInitialVolumes, "shared"), PoolError::kSuccess);
  const uint64_t seed = testing::TestSeed();

  // One tally per child, in anonymous shared memory.
  void* shared = mmap(nullptr, sizeof(WorkerTally) * kChildren,
                      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                      0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* tallies = new (shared) WorkerTally[kChildren];

  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    std::vector<uint64_t> owned;
    for (uint64_t i = kInitialVolumes + c; i < kMaxVolumes; i += kChildren) {
      owned.push_back(i);
    }
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) ChildMain(memory, c, seed + c + 1, owned, &tallies[c]);
    children.push_back(pid);
  }

  // The parent hammers too, with the indices nobody owns.
  PoolWorker parent(pool, 0, seed, {});
  for (int step = 0; step < kStepsPerProcess; ++step) parent.Step();
  parent.Finish();

  WorkerTally total = parent.tally();
  EXPECT_EQ(total.failures, 0u) << total.first_failure;
  for (int c = 0; c < kChildren; ++c) {
    int status = 0;
    ASSERT_EQ(waitpid(children[c], &status, 0), children[c]);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "child " << c << " status " << status;
    EXPECT_EQ(tallies[c].failures, 0u) << tallies[c].first_failure;
    EXPECT_GT(tallies[c].acquires, 0u);
    total.adds += tallies[c].adds;
    total.removes += tallies[c].removes;
    total.acquires += tallies[c].acquires;
    total.releases += tallies[c].releases;
  }

  // Everyone gave everything back: all volumes are on the stack, once.
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kMaxVolumes);
  std::vector<int> seen(kMaxVolumes, 0);
  for (uint64_t i : testing::StackIndices(pool)) ++seen[i];
  for (uint64_t i = 0; i < kMaxVolumes; ++i) EXPECT_EQ(seen[i], 1) << i;

  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, kInitialVolumes + total.adds);
  EXPECT_EQ(counts.volumes_removed, total.removes);
  EXPECT_EQ(counts.acquires, total.acquires);
  EXPECT_EQ(counts.releases, total.releases);
  EXPECT_EQ(counts.empty_volumes, kMaxVolumes);
  // The children gave their counter shards back; the parent's thread still
  // holds its one.
  int owned_shards = 0;
  for (const CounterShard& shard : memory.header()->stats.shards) {
    if (shard.owner.load() != 0) ++owned_shards;
  }
  EXPECT_EQ(owned_shards, 1);
  munmap(shared, sizeof(WorkerTally) * kChildren);
}

// A forked child inherits its parent's memory, thread-local caches
// included, but must never write the shard its parent's thread owns (two
// writers of a shard lose counts): it counts in a shard of its own.
TEST(MultiProcessTest, ForkedChildCountsInAShardOfItsOwn) {
  PoolMemory memory(4, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, 4, "fork"), PoolError::kSuccess);  // claims a shard
  const CounterShard* shards = memory.header()->stats.shards;
  uint64_t parent_shard = kCounterShards;
  for (uint64_t i = 0; i < kCounterShards; ++i) {
    if (shards[i].owner.load() != 0) parent_shard = i;
  }
  ASSERT_LT(parent_shard, kCounterShards);

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Same address, same join, same thread-local state as the parent.
    VolumeHeader* v = nullptr;
    const bool ok = pool.Acquire(&v) == PoolError::kSuccess &&
                    pool.Release(v) == PoolError::kSuccess;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  EXPECT_EQ(shards[parent_shard].counts.acquires.load(), 0u);
  EXPECT_EQ(shards[parent_shard].counts.volumes_added.load(), 4u);
  uint64_t child_shard = kCounterShards;
  for (uint64_t i = 0; i < kCounterShards; ++i) {
    if (i != parent_shard && shards[i].owner.load() != 0) child_shard = i;
  }
  ASSERT_LT(child_shard, kCounterShards) << "the child claimed no shard";
  EXPECT_NE(shards[child_shard].owner.load(),
            shards[parent_shard].owner.load());
  EXPECT_EQ(shards[child_shard].counts.acquires.load(), 1u);
  EXPECT_EQ(shards[child_shard].counts.releases.load(), 1u);
  const PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.acquires, 1u);
  EXPECT_EQ(counts.empty_volumes, 4u);
}

// A process that dies without returning its shard (a crash, or _exit)
// keeps it taken until ReclaimDeadCounterShards finds its pid gone; the
// counts stay, and live processes' shards (ours, a live child's) are left
// alone.
TEST(MultiProcessTest, ReclaimDeadCounterShardsFreesOnlyTheDeadsShards) {
  PoolMemory memory(4, 4096);
  VolumePool pool = memory.FormatAndJoin();
  ASSERT_EQ(pool.Add(0, 4, "reclaim"), PoolError::kSuccess);  // our shard
  // Each child counts one pair; `live` then reports it counted and waits
  // on `hold` until we close it.
  auto count_one_pair = [&pool] {
    VolumeHeader* v = nullptr;
    return pool.Acquire(&v) == PoolError::kSuccess &&
           pool.Release(v) == PoolError::kSuccess;
  };
  int counted[2];
  int hold[2];
  ASSERT_EQ(pipe(counted), 0);
  ASSERT_EQ(pipe(hold), 0);
  const pid_t live = fork();
  ASSERT_GE(live, 0);
  if (live == 0) {
    close(counted[0]);
    close(hold[1]);
    const char ok = count_one_pair() ? 1 : 0;
    if (write(counted[1], &ok, 1) != 1) _exit(2);
    char byte;
    while (read(hold[0], &byte, 1) > 0) {
    }
    _exit(0);  // EOF: the parent is done
  }
  close(counted[1]);
  close(hold[0]);
  char live_ok = 0;
  ASSERT_EQ(read(counted[0], &live_ok, 1), 1);
  ASSERT_EQ(live_ok, 1);

  const pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) {
    _exit(count_one_pair() ? 0 : 1);  // no ReturnCounterShards: a crash
  }
  int status = 0;
  ASSERT_EQ(waitpid(dead, &status, 0), dead);  // reaped: its pid is gone
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto owned_shards = [&] {
    int owned = 0;
    for (const CounterShard& shard : memory.header()->stats.shards) {
      if (shard.owner.load() != 0) ++owned;
    }
    return owned;
  };
  ASSERT_EQ(owned_shards(), 3);  // ours, the live child's, the dead one's

  EXPECT_EQ(pool.ReclaimDeadCounterShards(), 1u);
  EXPECT_EQ(owned_shards(), 2);
  EXPECT_EQ(pool.ReclaimDeadCounterShards(), 0u);
  PoolCounts counts = pool.Counts();
  EXPECT_EQ(counts.volumes_added, 4u);
  EXPECT_EQ(counts.acquires, 2u);
  EXPECT_EQ(counts.releases, 2u);

  close(hold[1]);  // lets the live child exit
  close(counted[0]);
  ASSERT_EQ(waitpid(live, &status, 0), live);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(pool.ReclaimDeadCounterShards(), 1u);  // now it is gone too
  EXPECT_EQ(owned_shards(), 1);
  // We still count in our own shard.
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(owned_shards(), 1);
  EXPECT_EQ(pool.Counts().acquires, 3u);
}

}  // namespace
}  // namespace groove
