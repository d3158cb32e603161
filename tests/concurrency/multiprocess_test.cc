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
// crash), hammers the pool, gives everything back and reports its tally
// through `tally`, in memory shared with the parent.
[[noreturn]] void ChildMain(const PoolMemory& memory, int child,
                            uint64_t seed, std::vector<uint64_t> owned,
                            WorkerTally* tally) {
  const PoolMemory::Mapping own = memory.MapAgain();
  const bool moved = own.base != memory.mapping().base;
  munmap(memory.mapping().base,
         PoolMemory::kHeaderBytes + kMaxVolumes * memory.footprint_bytes());
  PoolWorker worker(memory.JoinAt(own), child + 1, seed, std::move(owned));
  for (int step = 0; step < kStepsPerProcess; ++step) worker.Step();
  worker.Finish();
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
  munmap(shared, sizeof(WorkerTally) * kChildren);
}

}  // namespace
}  // namespace groove
