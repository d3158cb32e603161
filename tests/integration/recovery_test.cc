// Crash recovery, deterministically: a child process opens a pool as its
// owner and is killed with SIGKILL right after one chosen step of an add or
// a remove (through the pool's step hook). The parent then opens the pool
// again and checks that recovery rolled the operation back or forward as
// the slot table's record of intent says, that the pool verifies, and that
// no memory is left behind.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "groove/named_pool.h"
#include "gtest/gtest.h"
#include "support/stall.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::TempDir;

constexpr uint64_t kVolumeBytes = 64 << 10;
constexpr uint64_t kBaseline = 4;  // volumes 0..3 exist before the crash

PoolConfig Config() {
  PoolConfig config;
  config.name = "crash";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = kVolumeBytes;
  config.max_volumes = 16;
  return config;
}

std::set<uint64_t> MappedIndices(const NamedPool& pool) {
  std::set<uint64_t> indices;
  uint64_t next = 0;
  for (const VolumeEntry& e : pool.ListVolumes(0, 1000, &next)) {
    indices.insert(e.index);
  }
  return indices;
}

struct CrashCase {
  const char* step;      // the step after which the owner dies
  bool add;              // AddVolumes(3) or RemoveVolumes(2)
  uint64_t expected_mapped;
  uint64_t rolled_back;  // RecoveryReport::adds_rolled_back
  uint64_t finished;     // RecoveryReport::removes_finished
  uint64_t repushed;     // RecoveryReport::volumes_repushed
};

class CrashRecoveryTest : public ::testing::TestWithParam<CrashCase> {};

TEST_P(CrashRecoveryTest, RecoveryRollsTheInFlightOperationBackOrForward) {
  const CrashCase& c = GetParam();
  TempDir dir;
  {
    auto pool = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE((*pool)->AddVolumes(kBaseline, std::nullopt, "base").ok());
  }

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    NamedPool::OpenOptions options;
    const std::string target = c.step;
    options.step_hook = [&target](absl::string_view step) {
      if (step == target) raise(SIGKILL);
    };
    auto pool = NamedPool::Open(dir.path(), Config(), options);
    if (!pool.ok()) _exit(2);
    if (c.add) {
      (void)(*pool)->AddVolumes(3, std::nullopt, "new");
    } else {
      (void)(*pool)->RemoveVolumes(2);
    }
    _exit(3);  // the step never came: the test is wrong
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child did not die at step " << c.step << ", status " << status;

  auto reopened = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  NamedPool& pool = **reopened;
  const RecoveryReport& r = pool.recovery();
  EXPECT_EQ(r.adds_rolled_back, c.rolled_back);
  EXPECT_EQ(r.removes_finished, c.finished);
  EXPECT_EQ(r.volumes_repushed, c.repushed);
  EXPECT_EQ(r.volumes_unresolved, 0u);
  EXPECT_EQ(r.volumes_recovered, c.expected_mapped);

  // Every volume that exists is empty and on the stack exactly once, and
  // the memory held is exactly theirs.
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, c.expected_mapped);
  EXPECT_EQ(MappedIndices(pool).size(), c.expected_mapped);
  EXPECT_EQ(pool.Summary().volumes_mapped, c.expected_mapped);
  EXPECT_EQ(pool.Summary().volumes_empty, c.expected_mapped);
  EXPECT_EQ(*pool.AllocatedBytes(), c.expected_mapped * kVolumeBytes);

  // And everything can be removed, leaving no memory behind.
  absl::StatusOr<std::vector<RemovedVolume>> all =
      pool.RemoveVolumes(c.expected_mapped);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), c.expected_mapped);
  EXPECT_EQ(*pool.AllocatedBytes(), 0u);
}

// KillOwnerAfterFirstPush forks an owner that adds 3 volumes (indices
// kBaseline.. kBaseline + 2) and is killed right after pushing the first
// (the highest index), before marking its slot MAPPED.
void KillOwnerAfterFirstPush(const std::string& dir) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    NamedPool::OpenOptions options;
    options.step_hook = [](absl::string_view step) {
      if (step == "add:pushed") raise(SIGKILL);
    };
    auto pool = NamedPool::Open(dir, Config(), options);
    if (!pool.ok()) _exit(2);
    (void)(*pool)->AddVolumes(3, std::nullopt, "new");
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
}

// The owner dies after its push's CAS, before marking the slot MAPPED; a
// data-plane process then acquires that volume and is stopped in the
// middle of releasing it (link written, CAS not done) while a new owner
// recovers. The volume is empty and off the stack, as one whose push never
// happened looks; but the acquire's pop marked its slot MAPPED, so
// recovery leaves it to the release instead of pushing it a second time.
TEST(CrashRecoveryHelpTest, AVolumePoppedAfterTheOwnersPushIsNotPushedAgain) {
  TempDir dir;
  {
    auto pool = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE((*pool)->AddVolumes(kBaseline, std::nullopt, "base").ok());
  }
  KillOwnerAfterFirstPush(dir.path());

  auto data_plane = NamedPool::Join(dir.path(), Config().name);
  ASSERT_TRUE(data_plane.ok()) << data_plane.status();
  VolumePool join = (*data_plane)->pool();
  VolumeHeader* volume = nullptr;
  ASSERT_EQ(join.Acquire(&volume), PoolError::kSuccess);
  const uint64_t pushed = kBaseline + 2;  // the add pushes highest first
  ASSERT_EQ(join.IndexOf(volume), pushed);

  testing::Stall stall;
  join.SetTestHookForTesting(
      &testing::StallAt<VolumePool::TestPoint::kBeforeCas>, &stall);
  PoolError released = PoolError::kInvalid;
  std::thread releaser([&] { released = join.Release(volume); });
  stall.WaitUntilStalled();
  {
    auto owner = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(owner.ok()) << owner.status();
    const RecoveryReport& r = (*owner)->recovery();
    EXPECT_EQ(r.volumes_repushed, 2u);    // the two the add never pushed
    EXPECT_EQ(r.volumes_unresolved, 1u);  // the one being released
    EXPECT_EQ(r.volumes_recovered, kBaseline + 3);
  }
  stall.Resume();
  releaser.join();
  EXPECT_EQ(released, PoolError::kSuccess);

  auto owner = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ((*owner)->recovery().volumes_unresolved, 0u);
  absl::StatusOr<VerifyReport> report = (*owner)->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kBaseline + 3);
  absl::StatusOr<std::vector<RemovedVolume>> all =
      (*owner)->RemoveVolumes(kBaseline + 3);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), kBaseline + 3);
  EXPECT_EQ(*(*owner)->AllocatedBytes(), 0u);
}

// The owner dies inside a remove's pop, before its CAS, with the top
// volume as its target; a data-plane process then acquires that very
// volume and is stopped in the middle of releasing it while a new owner
// recovers. The volume is empty and off the stack, with the dead owner's
// last target as its index; but the owner never took it (an owner's pop
// turns the slot REMOVING before the volume leaves the stack), so recovery
// must leave it to the release, not free memory about to be pushed.
TEST(CrashRecoveryHelpTest, AVolumeTheOwnerFailedToPopIsLeftToItsUser) {
  TempDir dir;
  {
    auto pool = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE((*pool)->AddVolumes(kBaseline, std::nullopt, "base").ok());
  }
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    NamedPool::OpenOptions options;
    options.step_hook = [](absl::string_view step) {
      if (step == "stack:linked") raise(SIGKILL);
    };
    auto pool = NamedPool::Open(dir.path(), Config(), options);
    if (!pool.ok()) _exit(2);
    (void)(*pool)->RemoveVolumes(1);
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  auto data_plane = NamedPool::Join(dir.path(), Config().name);
  ASSERT_TRUE(data_plane.ok()) << data_plane.status();
  VolumePool join = (*data_plane)->pool();
  VolumeHeader* volume = nullptr;
  ASSERT_EQ(join.Acquire(&volume), PoolError::kSuccess);
  ASSERT_EQ(join.IndexOf(volume), 0u);  // the top, the remove's target

  testing::Stall stall;
  join.SetTestHookForTesting(
      &testing::StallAt<VolumePool::TestPoint::kBeforeCas>, &stall);
  PoolError released = PoolError::kInvalid;
  std::thread releaser([&] { released = join.Release(volume); });
  stall.WaitUntilStalled();
  {
    auto owner = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(owner.ok()) << owner.status();
    const RecoveryReport& r = (*owner)->recovery();
    EXPECT_EQ(r.removes_finished, 0u);
    EXPECT_EQ(r.volumes_unresolved, 1u);  // the one being released
    EXPECT_EQ(r.volumes_recovered, kBaseline);
  }
  stall.Resume();
  releaser.join();
  EXPECT_EQ(released, PoolError::kSuccess);

  auto owner = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ((*owner)->recovery().volumes_unresolved, 0u);
  absl::StatusOr<VerifyReport> report = (*owner)->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, kBaseline);
  EXPECT_EQ(*(*owner)->AllocatedBytes(), kBaseline * kVolumeBytes);
  absl::StatusOr<std::vector<RemovedVolume>> all =
      (*owner)->RemoveVolumes(kBaseline);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), kBaseline);
  EXPECT_EQ(*(*owner)->AllocatedBytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Steps, CrashRecoveryTest,
    ::testing::Values(
        // An add dies before its batch is committed: rolled back whole.
        CrashCase{"add:claimed", true, kBaseline, 3, 0, 0},
        CrashCase{"add:allocated", true, kBaseline, 3, 0, 0},
        CrashCase{"add:formatted", true, kBaseline, 3, 0, 0},
        // After the commit: rolled forward, the unpushed volumes pushed.
        CrashCase{"add:committed", true, kBaseline + 3, 0, 0, 3},
        // Inside the first push, its link written and its CAS not done: the
        // volume is empty and off the stack, as one a data-plane Release
        // is about to push looks; its slot (PUSHING) says it was never
        // pushed, so it is pushed, not leaked.
        CrashCase{"stack:linked", true, kBaseline + 3, 0, 0, 3},
        CrashCase{"add:pushed", true, kBaseline + 3, 0, 0, 2},
        // A remove dies inside its first pop, before the CAS: nothing was
        // popped.
        CrashCase{"stack:linked", false, kBaseline, 0, 0, 0},
        // A remove dies with its pop announced, not completed: recovery
        // completes it (the volume is the dead owner's) and finishes the
        // removal.
        CrashCase{"stack:announced", false, kBaseline - 1, 0, 1, 0},
        // A remove dies after popping: the removal is finished.
        CrashCase{"remove:popped", false, kBaseline - 1, 0, 1, 0},
        CrashCase{"remove:deallocated", false, kBaseline - 2, 0, 2, 0}),
    [](const auto& info) {
      std::string name = info.param.step;
      if (absl::StartsWith(name, "stack:")) {
        name = absl::StrCat(info.param.add ? "add_" : "remove_", name);
      }
      for (char& ch : name) {
        if (ch == ':') ch = '_';
      }
      return name;
    });

}  // namespace
}  // namespace groove
