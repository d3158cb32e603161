// Crash recovery, deterministically: a child process opens a pool as its
// owner and is killed with SIGKILL right after one chosen step of an add or
// a remove (through the pool's step hook). The parent then opens the pool
// again and checks that recovery rolled the operation back or forward as
// the slot table's record of intent says, that the pool verifies, and that
// no memory is left behind.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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
#include "support/fault_store.h"
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

// ExpectKilledAt waits for forked `child`, which must have died of SIGKILL
// at `step` (its step hook raised it).
void ExpectKilledAt(pid_t child, const std::string& step) {
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child did not die at step " << step << ", status " << status;
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
  ExpectKilledAt(child, step);
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

// KillAddWhosePushFailsAt forks an owner of a pool holding volumes 1, 3
// and 5 that adds 5 volumes with a key (0, 2, 4, 6, 7) whose push fails
// (a data-plane Acquire moves the top, and the header write the push then
// needs fails, as in AHeaderWriteFailureAfterTheCommitRollsBackTheWholeBatch)
// and is killed at `step`; with add = false it only opens (recovers) the
// pool, killed at `step`.
void KillAddWhosePushFailsAt(const std::string& dir, const char* step,
                             bool add) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto control = std::make_shared<testing::FaultStore::Control>();
    std::unique_ptr<NamedPool> data_plane;
    VolumeHeader* held = nullptr;
    bool armed = false;
    NamedPool::OpenOptions options;
    options.wrap_store = [control](std::unique_ptr<VolumeStore> real) {
      return std::make_unique<testing::FaultStore>(std::move(real), control);
    };
    options.step_hook = [&](absl::string_view at) {
      if (at == step) raise(SIGKILL);
      if (at != "add:committed" || !armed) return;
      armed = false;
      if (data_plane->pool().Acquire(&held) != PoolError::kSuccess) _exit(6);
      control->fail_write_in = 1;
    };
    auto pool = NamedPool::Open(dir, Config(), std::move(options));
    if (!pool.ok()) _exit(2);
    if (add) {
      auto join = NamedPool::Join(dir, Config().name);
      if (!join.ok()) _exit(4);
      data_plane = std::move(*join);
      armed = true;
      (void)(*pool)->AddVolumes(5, std::nullopt, "batch", RequestKey{1, 2});
    }
    _exit(3);  // the step never came: the test is wrong
  }
  ExpectKilledAt(child, step);
}

// A failed push sends its batch's slots back to ADDING, lowest first, and
// recovery frees a rolled-back batch in runs, lowest first. Killed in the
// first, then the recovery killed between two runs: the batch must still
// be rolled back whole, and its journal entry forgotten. (Recovery used to
// leave only the batch's PUSHING slots, which the next one judged
// committed: part of the add came back, and the journal listed all of it.)
TEST(KeyedAddRecoveryTest, ARolledBackAddStaysRolledBackWhenItsRecoveryDies) {
  TempDir dir;
  {
    auto pool = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(pool.ok()) << pool.status();
    for (uint64_t i : {1, 3, 5}) {
      ASSERT_TRUE((*pool)->AddVolumes(1, i, "before").ok());
    }
  }
  KillAddWhosePushFailsAt(dir.path(), "add:uncommitting", /*add=*/true);
  KillAddWhosePushFailsAt(dir.path(), "recover:freed-run", /*add=*/false);
  auto pool = NamedPool::Open(dir.path(), Config());
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(MappedIndices(**pool), (std::set<uint64_t>{1, 3, 5}));
  EXPECT_TRUE((*pool)->TakeRecordedAdds().empty());
  absl::StatusOr<VerifyReport> verified = (*pool)->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*(*pool)->AllocatedBytes(), 3 * kVolumeBytes);
}

// An entry's state goes to the file, then to the in-memory copy that adds
// claim entries by. Add A is stopped between the two stores of its Commit
// while the other adds go round the ring; add B, arriving at A's entry,
// must not take it, or A's late store would stamp A's commit over B's
// record. B is killed before its commit: the journal must list A (whose
// add happened) and not B. (Stored the other way round, it listed B, with
// A's volume, and lost A.)
std::atomic<bool> a_stopped{false}, a_go{false}, a_done{false};
std::atomic<bool> b_armed{false};
thread_local bool is_a = false;

void StopACommit(uint64_t, uint64_t word) {
  if (!is_a || (word & 3) != 3) return;  // thread A's COMMITTED only
  a_stopped.store(true);
  while (!a_go.load()) std::this_thread::yield();
}

TEST(KeyedAddRecoveryTest, AnEntryIsNotClaimedBeforeItsLastUserStoredItsState) {
  TempDir dir;
  const RequestKey ka{0xa, 0xa}, kb{0xb, 0xb};
  PoolConfig config = Config();
  config.max_volumes = 64;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    NamedPool::OpenOptions options;
    options.step_hook = [](absl::string_view step) {
      if (is_a && step == "stack:linked") {
        a_done.store(true);  // A's Commit has returned
        for (;;) pause();
      }
      if (!is_a && b_armed.load() && step == "add:recorded") {
        a_go.store(true);
        while (!a_done.load()) std::this_thread::yield();
        raise(SIGKILL);
      }
    };
    auto pool = NamedPool::Open(dir.path(), config, options);
    if (!pool.ok()) _exit(2);
    testing::journal_store_state_hook.store(&StopACommit);
    std::thread a([&] {
      is_a = true;
      (void)(*pool)->AddVolumes(1, std::nullopt, "A", ka);
    });
    while (!a_stopped.load()) std::this_thread::yield();
    // The other entries, each used once: the next Begin reaches A's.
    for (uint64_t k = 1; k < RequestJournal::kEntries; ++k) {
      if (!(*pool)->AddVolumes(1, std::nullopt, "", RequestKey{0, k}).ok()) {
        _exit(4);
      }
      if (!(*pool)->RemoveVolumes(1).ok()) _exit(5);
    }
    b_armed.store(true);
    (void)(*pool)->AddVolumes(1, std::nullopt, "B", kb);
    _exit(3);
  }
  ASSERT_NO_FATAL_FAILURE(ExpectKilledAt(child, "B's add:recorded"));

  auto pool = NamedPool::Open(dir.path(), config);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(MappedIndices(**pool).size(), 1u);  // A's add happened
  bool listed_a = false, listed_b = false;
  for (const RecordedAdd& add : (*pool)->TakeRecordedAdds()) {
    listed_a |= add.key == ka;
    listed_b |= add.key == kb;
  }
  EXPECT_TRUE(listed_a) << "A's add happened but the journal lost it";
  EXPECT_FALSE(listed_b) << "B's add never happened but is listed";
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
