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

#include "groove/named_pool.h"
#include "gtest/gtest.h"
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

INSTANTIATE_TEST_SUITE_P(
    Steps, CrashRecoveryTest,
    ::testing::Values(
        // An add dies before its batch is committed: rolled back whole.
        CrashCase{"add:claimed", true, kBaseline, 3, 0, 0},
        CrashCase{"add:allocated", true, kBaseline, 3, 0, 0},
        CrashCase{"add:formatted", true, kBaseline, 3, 0, 0},
        // After the commit: rolled forward, the unpushed volumes pushed.
        CrashCase{"add:committed", true, kBaseline + 3, 0, 0, 3},
        CrashCase{"add:pushed", true, kBaseline + 3, 0, 0, 2},
        // A remove dies after popping: the removal is finished.
        CrashCase{"remove:popped", false, kBaseline - 1, 0, 1, 0},
        CrashCase{"remove:marked", false, kBaseline - 1, 0, 1, 0},
        CrashCase{"remove:deallocated", false, kBaseline - 2, 0, 2, 0}),
    [](const auto& info) {
      std::string name = info.param.step;
      for (char& ch : name) {
        if (ch == ':') ch = '_';
      }
      return name;
    });

}  // namespace
}  // namespace groove
