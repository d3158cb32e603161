// Crash recovery, deterministically: a child process opens a pool as its
// owner and is killed with SIGKILL right after one chosen step of an add or
// a remove (through the pool's step hook). The parent then opens the pool
// again and checks that recovery rolled the operation back or forward as
// the slot table's record of intent says, that the pool verifies, and that
// no memory is left behind.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

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

// MakeBaseline creates the pool with volumes 0..kBaseline-1.
void MakeBaseline(const std::string& dir) {
  auto pool = NamedPool::Open(dir, Config());
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_TRUE((*pool)->AddVolumes(kBaseline, std::nullopt, "base").ok());
}

// KillOwnerAt forks an owner that adds 3 volumes (`add`, with `key` if
// set) or removes 2 and is killed with SIGKILL at `step` (see
// OpenOptions::step_hook).
void KillOwnerAt(const std::string& dir, const std::string& step, bool add,
                 std::optional<RequestKey> key = std::nullopt) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    NamedPool::OpenOptions options;
    options.step_hook = [&step](absl::string_view at) {
      if (at == step) raise(SIGKILL);
    };
    auto pool = NamedPool::Open(dir, Config(), options);
    if (!pool.ok()) _exit(2);
    if (add) {
      (void)(*pool)->AddVolumes(3, std::nullopt, "new", key);
    } else {
      (void)(*pool)->RemoveVolumes(2);
    }
    _exit(3);  // the step never came: the test is wrong
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child did not die at step " << step << ", status " << status;
}

// ExpectAllThereThenRemoveAll checks that `pool` holds `count` volumes, all
// empty and on the stack exactly once, with exactly their memory, and
// that removing them all leaves no memory behind.
void ExpectAllThereThenRemoveAll(NamedPool& pool, uint64_t count) {
  absl::StatusOr<VerifyReport> report = pool.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, count);
  EXPECT_EQ(MappedIndices(pool).size(), count);
  EXPECT_EQ(pool.Summary().volumes_mapped, count);
  EXPECT_EQ(pool.Summary().volumes_empty, count);
  EXPECT_EQ(*pool.AllocatedBytes(), count * kVolumeBytes);
  absl::StatusOr<std::vector<RemovedVolume>> all = pool.RemoveVolumes(count);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), count);
  EXPECT_EQ(*pool.AllocatedBytes(), 0u);
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
  MakeBaseline(dir.path());
  KillOwnerAt(dir.path(), c.step, c.add);

  auto reopened = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  const RecoveryReport& r = (*reopened)->recovery();
  EXPECT_EQ(r.adds_rolled_back, c.rolled_back);
  EXPECT_EQ(r.removes_finished, c.finished);
  EXPECT_EQ(r.volumes_repushed, c.repushed);
  EXPECT_EQ(r.volumes_unresolved, 0u);
  EXPECT_EQ(r.volumes_recovered, c.expected_mapped);
  ExpectAllThereThenRemoveAll(**reopened, c.expected_mapped);
}

// StoppedRelease is a data-plane process's join that acquires the top
// volume and starts releasing it on a thread that it stops between the
// release's link store and its CAS: an empty volume off the stack, which
// the release will push.
class StoppedRelease {
 public:
  explicit StoppedRelease(const std::string& dir) {
    auto joined = NamedPool::Join(dir, Config().name);
    EXPECT_TRUE(joined.ok()) << joined.status();
    if (!joined.ok()) std::abort();  // reported above; nothing to test
    pool_ = std::move(*joined);
    join_.emplace(pool_->pool());
    EXPECT_EQ(join_->Acquire(&volume_), PoolError::kSuccess);
    join_->SetTestHookForTesting(
        &testing::StallAt<VolumePool::TestPoint::kBeforeCas>, &stall_);
    releaser_ = std::thread([this] { released_ = join_->Release(volume_); });
    stall_.WaitUntilStalled();
  }
  ~StoppedRelease() {
    if (releaser_.joinable()) Finish();
  }
  uint64_t index() const { return join_->IndexOf(volume_); }
  // Finish lets the release complete and returns its result.
  PoolError Finish() {
    stall_.Resume();
    releaser_.join();
    return released_;
  }

 private:
  std::unique_ptr<NamedPool> pool_;
  std::optional<VolumePool> join_;
  VolumeHeader* volume_ = nullptr;
  testing::Stall stall_;
  PoolError released_ = PoolError::kInvalid;
  std::thread releaser_;
};

// The owner dies after its push's CAS (one for the whole batch), before
// marking the slots MAPPED; a data-plane process then acquires the top
// volume of the batch and is stopped in the middle of releasing it while
// a new owner recovers. The volume is empty and off the stack, as one
// whose push never happened looks; but the acquire's pop marked its slot
// MAPPED, so recovery leaves it to the release instead of pushing it a
// second time.
TEST(CrashRecoveryHelpTest, AVolumePoppedAfterTheOwnersPushIsNotPushedAgain) {
  TempDir dir;
  MakeBaseline(dir.path());
  KillOwnerAt(dir.path(), "add:pushed", /*add=*/true);
  {
    StoppedRelease release(dir.path());
    EXPECT_EQ(release.index(), kBaseline);  // the batch's lowest is on top
    auto owner = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(owner.ok()) << owner.status();
    const RecoveryReport& r = (*owner)->recovery();
    EXPECT_EQ(r.volumes_repushed, 0u);    // the add pushed them all
    EXPECT_EQ(r.volumes_unresolved, 1u);  // the one being released
    EXPECT_EQ(r.volumes_recovered, kBaseline + 3);
    owner->reset();
    EXPECT_EQ(release.Finish(), PoolError::kSuccess);
  }
  auto owner = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ((*owner)->recovery().volumes_unresolved, 0u);
  ExpectAllThereThenRemoveAll(**owner, kBaseline + 3);
}

// The owner dies inside a remove's pop, before its CAS, with the top
// volume as its target; a data-plane process then acquires that very
// volume and is stopped in the middle of releasing it while a new owner
// recovers. The volume is empty and off the stack, and it was the dead
// owner's target; but the owner never took it (an owner's pop turns the
// slot REMOVING before the volume leaves the stack), so recovery must
// leave it to the release, not free memory about to be pushed.
TEST(CrashRecoveryHelpTest, AVolumeTheOwnerFailedToPopIsLeftToItsUser) {
  TempDir dir;
  MakeBaseline(dir.path());
  KillOwnerAt(dir.path(), "stack:linked", /*add=*/false);
  {
    StoppedRelease release(dir.path());
    EXPECT_EQ(release.index(), 0u);  // the top, the remove's target
    auto owner = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(owner.ok()) << owner.status();
    const RecoveryReport& r = (*owner)->recovery();
    EXPECT_EQ(r.removes_finished, 0u);
    EXPECT_EQ(r.volumes_unresolved, 1u);  // the one being released
    EXPECT_EQ(r.volumes_recovered, kBaseline);
    owner->reset();
    EXPECT_EQ(release.Finish(), PoolError::kSuccess);
  }
  auto owner = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ((*owner)->recovery().volumes_unresolved, 0u);
  ExpectAllThereThenRemoveAll(**owner, kBaseline);
}

// An add with a request key, killed at each of its steps: the reopened
// pool's journal lists the add if and only if its volumes were added, with
// the arguments and indices of the add, and keeps saying so.
struct KeyedCrashCase {
  const char* step;
  bool added;
  bool recorded_pending;  // the entry was PENDING: settled by recovery
};

class KeyedAddCrashTest : public ::testing::TestWithParam<KeyedCrashCase> {};

TEST_P(KeyedAddCrashTest, TheJournalListsTheAddExactlyWhenItHappened) {
  const KeyedCrashCase& c = GetParam();
  const RequestKey key{0x123e4567e89b42d3, 0xa456426614174000};
  TempDir dir;
  MakeBaseline(dir.path());
  KillOwnerAt(dir.path(), c.step, /*add=*/true, key);

  for (int open = 0; open < 2; ++open) {
    SCOPED_TRACE(open == 0 ? "first open after the crash" : "second open");
    auto reopened = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    const RequestJournal::OpenReport& journal =
        (*reopened)->recovery().request_journal;
    EXPECT_FALSE(journal.created);
    EXPECT_EQ(journal.reset_reason, "");
    EXPECT_EQ(journal.dropped_invalid, 0u);
    const bool settled_now = open == 0 && c.recorded_pending;
    EXPECT_EQ(journal.resolved_committed, settled_now && c.added ? 1u : 0u);
    EXPECT_EQ(journal.resolved_failed, settled_now && !c.added ? 1u : 0u);
    const std::vector<RecordedAdd> recorded = (*reopened)->TakeRecordedAdds();
    EXPECT_TRUE((*reopened)->TakeRecordedAdds().empty());
    EXPECT_EQ(MappedIndices(**reopened).size(), kBaseline + (c.added ? 3 : 0));
    if (!c.added) {
      EXPECT_TRUE(recorded.empty());
      continue;
    }
    ASSERT_EQ(recorded.size(), 1u);
    EXPECT_EQ(recorded[0].key, key);
    EXPECT_EQ(recorded[0].count, 3u);
    EXPECT_FALSE(recorded[0].first_index.has_value());
    EXPECT_EQ(recorded[0].info, "new");
    EXPECT_EQ(recorded[0].indices,
              (std::vector<uint64_t>{kBaseline, kBaseline + 1, kBaseline + 2}));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Steps, KeyedAddCrashTest,
    ::testing::Values(
        // Before its journal entry: no entry at all.
        KeyedCrashCase{"add:claimed", false, false},
        KeyedCrashCase{"add:formatted", false, false},
        // Its entry PENDING, the batch uncommitted: rolled back, forgotten.
        KeyedCrashCase{"add:recorded", false, true},
        // The batch committed, the entry still PENDING: rolled forward,
        // the entry committed by recovery.
        KeyedCrashCase{"add:committed", true, true},
        // The entry committed before the push: in the push, and after it.
        KeyedCrashCase{"stack:linked", true, false},
        KeyedCrashCase{"add:pushed", true, false}),
    [](const auto& info) {
      std::string name = info.param.step;
      for (char& ch : name) {
        if (ch == ':') ch = '_';
      }
      return name;
    });

INSTANTIATE_TEST_SUITE_P(
    Steps, CrashRecoveryTest,
    ::testing::Values(
        // An add dies before its batch is committed: rolled back whole.
        CrashCase{"add:claimed", true, kBaseline, 3, 0, 0},
        CrashCase{"add:allocated", true, kBaseline, 3, 0, 0},
        CrashCase{"add:formatted", true, kBaseline, 3, 0, 0},
        // After the commit: rolled forward, the unpushed volumes pushed.
        CrashCase{"add:committed", true, kBaseline + 3, 0, 0, 3},
        // Inside the push (one CAS for the batch), the links written and
        // the CAS not done: the volumes are empty and off the stack, as
        // ones a data-plane Release is about to push look; their slots
        // (PUSHING) say they were never pushed, so they are pushed, not
        // leaked.
        CrashCase{"stack:linked", true, kBaseline + 3, 0, 0, 3},
        // After the push, before the slots are marked MAPPED: all pushed.
        CrashCase{"add:pushed", true, kBaseline + 3, 0, 0, 0},
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
