// NamedPool, one thread at a time: a seeded randomized run of adds (with
// and without keys, at the lowest free indices or at a given range, good
// and bad), removes, a data-plane join's acquires and releases, volumes
// whose header is scribbled and then quarantined by a remove or an
// acquire, reclaims (good and bad), and the owner closed and opened
// again, against a model of the pool's slots, its
// stack and its request journal, with Verify and every observable after
// each step (docs/STYLE.md point 12; VolumePoolRandomizedTest does the
// same for the bare pool).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "groove/named_pool.h"
#include "groove/request_journal.h"
#include "support/pool_memory.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::TempDir;

constexpr uint64_t kMaxVolumes = 24;
constexpr uint64_t kVolumeBytes = 4096;

PoolConfig ModelConfig() {
  PoolConfig config;
  config.name = "model";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = kVolumeBytes;
  config.max_volumes = kMaxVolumes;
  return config;
}

// What the pool must hold.
struct PoolModel {
  std::map<uint64_t, std::string> mapped;  // index -> info
  std::vector<uint64_t> stack;             // empty volumes, top last
  std::vector<uint64_t> held;              // acquired by the data plane
  // Quarantined volumes (off the stack, held by nobody), with what
  // ListVolumes and ReclaimVolume say is wrong with their header.
  std::map<uint64_t, std::string> quarantined;
  uint64_t reclaimed = 0;                  // volumes ReclaimVolume freed
  std::deque<RecordedAdd> journal;         // adds with keys, oldest first

  bool IsMapped(uint64_t index) const { return mapped.count(index) != 0; }
  bool IsHeld(uint64_t index) const {
    return std::find(held.begin(), held.end(), index) != held.end();
  }
};

// Checks every observable of `pool` against `model`, and Verifies the pool
// and its request journal.
void ExpectMatches(const NamedPool& pool, const PoolModel& model) {
  absl::StatusOr<VerifyReport> verified = pool.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, model.stack.size());
  const PoolSummary summary = pool.Summary();
  EXPECT_EQ(summary.volumes_mapped, model.mapped.size());
  EXPECT_EQ(summary.volumes_empty, model.stack.size());
  EXPECT_EQ(summary.volumes_in_use,
            model.held.size() + model.quarantined.size());
  EXPECT_EQ(summary.volumes_in_quarantine, model.quarantined.size());
  EXPECT_EQ(summary.volumes_reclaimed, model.reclaimed);
  EXPECT_EQ(*pool.AllocatedBytes(), model.mapped.size() * kVolumeBytes);
  absl::StatusOr<uint64_t> journaled = pool.VerifyRequestJournal();
  ASSERT_TRUE(journaled.ok()) << journaled.status();
  EXPECT_EQ(*journaled, model.journal.size());
  uint64_t next = 0;
  const std::vector<VolumeEntry> listed =
      pool.ListVolumes(0, kMaxVolumes, &next);
  EXPECT_EQ(next, kMaxVolumes);
  ASSERT_EQ(listed.size(), model.mapped.size());
  auto want = model.mapped.begin();
  for (const VolumeEntry& got : listed) {
    EXPECT_EQ(got.index, want->first);
    EXPECT_EQ(got.info, want->second) << "volume " << got.index;
    const auto quarantined = model.quarantined.find(got.index);
    if (quarantined != model.quarantined.end()) {
      EXPECT_EQ(got.status, VolumeStatus::kCorrupt) << "volume " << got.index;
      EXPECT_EQ(got.corruption, quarantined->second);
    } else {
      EXPECT_EQ(got.status, model.IsHeld(got.index) ? VolumeStatus::kInUse
                                                    : VolumeStatus::kEmpty)
          << "volume " << got.index;
    }
    ++want;
  }
}

class NamedPoolModelRun {
 public:
  NamedPoolModelRun(const std::string& dir, uint64_t seed)
      : dir_(dir), rng_(seed) {}

  void Open() {
    absl::StatusOr<std::unique_ptr<NamedPool>> pool =
        NamedPool::Open(dir_, ModelConfig());
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
    if (join_ == nullptr) {
      absl::StatusOr<std::unique_ptr<NamedPool>> join =
          NamedPool::Join(dir_, ModelConfig().name);
      ASSERT_TRUE(join.ok()) << join.status();
      join_ = std::move(*join);
    }
  }

  // One random add (with a key when `with_key`, else at random): its
  // arguments, and the outcome the model predicts.
  void Add(bool with_key = false) {
    uint64_t count = 1 + rng_() % 4;
    std::optional<uint64_t> first_index;
    if (rng_() % 3 == 0) first_index = rng_() % kMaxVolumes;
    std::string info(rng_() % (kVolumeInfoMax + 1), '\0');
    for (char& c : info) c = static_cast<char>('a' + rng_() % 26);
    std::optional<RequestKey> key;
    if (with_key || rng_() % 4 != 0) key = RequestKey{rng_(), rng_()};
    // Now and then an argument the pool must refuse, changing nothing.
    absl::StatusCode want_code = absl::StatusCode::kOk;
    switch (rng_() % 20) {
      case 0:
        count = 0;
        want_code = absl::StatusCode::kInvalidArgument;
        break;
      case 1:
        info.resize(kVolumeInfoMax + 1, 'x');
        want_code = absl::StatusCode::kInvalidArgument;
        break;
      default:
        break;
    }
    std::vector<uint64_t> want_indices;
    if (want_code == absl::StatusCode::kOk && first_index.has_value()) {
      if (*first_index + count > kMaxVolumes) {
        want_code = absl::StatusCode::kOutOfRange;
      } else {
        for (uint64_t i = *first_index; i < *first_index + count; ++i) {
          if (model_.IsMapped(i)) want_code = absl::StatusCode::kAlreadyExists;
          want_indices.push_back(i);
        }
      }
    } else if (want_code == absl::StatusCode::kOk) {
      for (uint64_t i = 0; i < kMaxVolumes && want_indices.size() < count;
           ++i) {
        if (!model_.IsMapped(i)) want_indices.push_back(i);
      }
      if (want_indices.size() < count) {
        want_code = absl::StatusCode::kResourceExhausted;
      }
    }
    absl::StatusOr<std::vector<uint64_t>> added =
        pool_->AddVolumes(count, first_index, info, key);
    ASSERT_EQ(added.status().code(), want_code) << added.status();
    if (!added.ok()) return;
    ASSERT_EQ(*added, want_indices);
    // One chain, the lowest index on top.
    for (auto it = want_indices.rbegin(); it != want_indices.rend(); ++it) {
      model_.mapped[*it] = info;
      model_.stack.push_back(*it);
    }
    if (key.has_value()) {
      RecordedAdd add;
      add.key = *key;
      add.count = count;
      add.first_index = first_index;
      add.info = info;
      add.indices = want_indices;
      model_.journal.push_back(std::move(add));
      if (model_.journal.size() > RequestJournal::kEntries) {
        model_.journal.pop_front();
      }
      ++keyed_adds_;
    }
    ++adds_;
  }

  void Remove() {
    const uint64_t count = 1 + rng_() % 4;
    absl::StatusOr<std::vector<RemovedVolume>> removed =
        pool_->RemoveVolumes(count);
    if (model_.stack.empty()) {
      ASSERT_EQ(removed.status().code(), absl::StatusCode::kFailedPrecondition)
          << removed.status();
      return;
    }
    ASSERT_TRUE(removed.ok()) << removed.status();
    // The top `count` of the stack, listed ascending by index.
    std::vector<uint64_t> want;
    while (want.size() < count && !model_.stack.empty()) {
      want.push_back(model_.stack.back());
      model_.stack.pop_back();
    }
    std::sort(want.begin(), want.end());
    ASSERT_EQ(removed->size(), want.size());
    for (size_t k = 0; k < want.size(); ++k) {
      EXPECT_EQ((*removed)[k].index, want[k]) << "not the volumes on top";
      EXPECT_EQ((*removed)[k].info, model_.mapped[want[k]]);
      model_.mapped.erase(want[k]);
    }
    ++removes_;
  }

  // The data plane takes the volume on top, or gives one it holds back.
  void AcquireOrRelease() {
    if (rng_() % 2 == 0 || model_.held.empty()) {
      VolumeHeader* v = nullptr;
      const PoolError err = join_->pool().Acquire(&v);
      if (model_.stack.empty()) {
        ASSERT_EQ(err, PoolError::kEmpty);
        return;
      }
      ASSERT_EQ(err, PoolError::kSuccess);
      ASSERT_EQ(v->idx.load(), model_.stack.back());
      model_.held.push_back(model_.stack.back());
      model_.stack.pop_back();
      held_headers_.push_back(v);
      return;
    }
    const size_t k = rng_() % model_.held.size();
    ASSERT_EQ(join_->pool().Release(held_headers_[k]), PoolError::kSuccess);
    model_.stack.push_back(model_.held[k]);
    model_.held.erase(model_.held.begin() + static_cast<ptrdiff_t>(k));
    held_headers_.erase(held_headers_.begin() + static_cast<ptrdiff_t>(k));
  }

  // A volume on the stack has its header scribbled (through the data
  // plane's mapping) and is popped at once, by the data plane's Acquire
  // (on top) or by a remove that pops the good ones above it first and
  // puts them back: quarantined either way. (Between steps a bad header
  // cannot stay on the stack: Verify would report it.)
  void Quarantine() {
    if (model_.stack.empty()) return;
    const size_t depth = rng_() % std::min<size_t>(model_.stack.size(), 4);
    const uint64_t index = model_.stack[model_.stack.size() - 1 - depth];
    VolumeHeader* v = join_->pool().VolumeAt(index);
    std::string fault;
    switch (rng_() % 4) {
      case 0: {
        const uint64_t magic = 0x1234 + rng_() % 1000;
        v->magic.store(magic);
        fault =
            absl::StrCat("header magic is 0x", absl::Hex(magic), ", want 0x",
                         absl::Hex(kVolumeEmptyMagic), " (empty)");
        break;
      }
      case 1:
        v->magic.store(kVolumeMagic);
        fault = absl::StrCat("header magic is 0x", absl::Hex(kVolumeMagic),
                             " (in use), want 0x", absl::Hex(kVolumeEmptyMagic),
                             " (empty)");
        break;
      case 2: {
        const uint64_t idx = index + 1 + rng_() % 100;
        v->idx.store(idx);
        fault = absl::StrCat("header idx is ", idx, ", want ", index);
        break;
      }
      default: {
        const uint64_t info_sz = kVolumeInfoMax + 1 + rng_() % 1000;
        v->info_sz.store(info_sz);
        fault = absl::StrCat("header info_sz is ", info_sz, ", want at most ",
                             kVolumeInfoMax);
        // Listed with its info clamped to the whole field: zeros past it.
        model_.mapped[index].resize(kVolumeInfoMax, '\0');
        break;
      }
    }
    if (depth == 0 && rng_() % 2 == 0) {
      VolumeHeader* popped = nullptr;
      ASSERT_EQ(join_->pool().Acquire(&popped), PoolError::kCorrupt);
      ASSERT_EQ(popped, v);
      model_.stack.pop_back();
    } else {
      const uint64_t count = depth + 1 + rng_() % 2;
      const absl::Status s = pool_->RemoveVolumes(count).status();
      ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
      ASSERT_NE(s.message().find(absl::StrCat("volume ", index, ",")),
                std::string::npos)
          << s;
      // The good ones go back in the order they were popped: the last
      // popped ends on top.
      std::vector<uint64_t> popped;
      for (size_t k = 0; k < depth; ++k) {
        popped.push_back(model_.stack.back());
        model_.stack.pop_back();
      }
      model_.stack.pop_back();  // the bad one
      for (const uint64_t i : popped) model_.stack.push_back(i);
    }
    model_.quarantined[index] = fault;
    ++quarantines_;
  }

  // A reclaim of a quarantined volume, or of any index (refused unless it
  // is quarantined, naming what is there).
  void Reclaim() {
    uint64_t index = rng_() % (kMaxVolumes + 2);
    if (!model_.quarantined.empty() && rng_() % 2 == 0) {
      auto it = model_.quarantined.begin();
      std::advance(it, rng_() % model_.quarantined.size());
      index = it->first;
    }
    absl::StatusOr<ReclaimedVolume> reclaimed = pool_->ReclaimVolume(index);
    const auto quarantined = model_.quarantined.find(index);
    if (quarantined != model_.quarantined.end()) {
      ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
      EXPECT_EQ(reclaimed->index, index);
      EXPECT_EQ(reclaimed->corruption, quarantined->second);
      model_.quarantined.erase(quarantined);
      model_.mapped.erase(index);
      ++model_.reclaimed;
      return;
    }
    const absl::StatusCode want_code =
        index >= kMaxVolumes ? absl::StatusCode::kOutOfRange
                             : absl::StatusCode::kFailedPrecondition;
    ASSERT_EQ(reclaimed.status().code(), want_code) << reclaimed.status();
    if (index >= kMaxVolumes) return;
    const std::string says = !model_.IsMapped(index) ? "holds no volume"
                             : model_.IsHeld(index)  ? "holds a volume in use"
                                                     : "holds an empty volume";
    EXPECT_NE(reclaimed.status().message().find(says), std::string::npos)
        << reclaimed.status();
  }

  // The owner closes and opens again: everything stays, and the journal
  // lists the adds with keys of its window, oldest first.
  void Reopen() {
    pool_.reset();
    ASSERT_NO_FATAL_FAILURE(Open());
    const RecoveryReport& r = pool_->recovery();
    EXPECT_FALSE(r.created);
    EXPECT_EQ(r.volumes_recovered, model_.mapped.size());
    EXPECT_EQ(r.volumes_in_quarantine, model_.quarantined.size());
    EXPECT_EQ(r.adds_rolled_back, 0u);
    EXPECT_EQ(r.request_journal_error, "");
    const std::vector<RecordedAdd> recorded = pool_->TakeRecordedAdds();
    ASSERT_EQ(recorded.size(), model_.journal.size());
    for (size_t k = 0; k < recorded.size(); ++k) {
      const RecordedAdd& want = model_.journal[k];
      EXPECT_EQ(recorded[k].key, want.key) << k;
      EXPECT_EQ(recorded[k].count, want.count) << k;
      EXPECT_EQ(recorded[k].first_index, want.first_index) << k;
      EXPECT_EQ(recorded[k].info, want.info) << k;
      EXPECT_EQ(recorded[k].indices, want.indices) << k;
    }
    ++reopens_;
  }

  void Check() { ExpectMatches(*pool_, model_); }
  std::mt19937_64& rng() { return rng_; }
  int adds() const { return adds_; }
  int removes() const { return removes_; }
  int reopens() const { return reopens_; }
  int quarantines() const { return quarantines_; }
  uint64_t keyed_adds() const { return keyed_adds_; }
  const PoolModel& model() const { return model_; }

 private:
  std::string dir_;
  std::mt19937_64 rng_;
  std::unique_ptr<NamedPool> join_;  // a data-plane process's view
  std::unique_ptr<NamedPool> pool_;  // the owner's (opened after the join's
                                     // first Open, closed before it)
  std::vector<VolumeHeader*> held_headers_;  // model_.held's, in order
  PoolModel model_;
  int adds_ = 0, removes_ = 0, reopens_ = 0, quarantines_ = 0;
  uint64_t keyed_adds_ = 0;
};

TEST(NamedPoolRandomizedTest, EveryStepMatchesTheModel) {
  constexpr int kSteps = 8000;
  TempDir dir;
  NamedPoolModelRun run(dir.path(), testing::TestSeed());
  ASSERT_NO_FATAL_FAILURE(run.Open());
  for (int step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(step);
    switch (run.rng()() % 12) {
      case 0:
      case 1:
      case 2:
      case 3:
        ASSERT_NO_FATAL_FAILURE(run.Add());
        break;
      case 4:
      case 5:
      case 6:
        ASSERT_NO_FATAL_FAILURE(run.Remove());
        break;
      case 7:
      case 8:
        ASSERT_NO_FATAL_FAILURE(run.AcquireOrRelease());
        break;
      case 9:
        if (run.rng()() % 20 == 0) {
          ASSERT_NO_FATAL_FAILURE(run.Reopen());
        }
        break;
      case 10:
        if (run.rng()() % 3 == 0) {
          ASSERT_NO_FATAL_FAILURE(run.Quarantine());
        }
        break;
      case 11:
        ASSERT_NO_FATAL_FAILURE(run.Reclaim());
        break;
    }
    ASSERT_NO_FATAL_FAILURE(run.Check());
  }
  // More adds with keys than the journal holds, with no reopen between
  // them: entries are reused as their adds finish.
  const uint64_t keyed_target = run.keyed_adds() + RequestJournal::kEntries + 8;
  for (int round = 0; run.keyed_adds() < keyed_target; ++round) {
    ASSERT_LT(round, 20 * static_cast<int>(RequestJournal::kEntries));
    ASSERT_NO_FATAL_FAILURE(run.Add(/*with_key=*/true));
    ASSERT_NO_FATAL_FAILURE(run.Remove());
    ASSERT_NO_FATAL_FAILURE(run.Check());
  }
  ASSERT_NO_FATAL_FAILURE(run.Reopen());
  ASSERT_NO_FATAL_FAILURE(run.Check());
  // The run filled the pool, emptied it and reused journal entries, or it
  // tested little.
  EXPECT_GT(run.adds(), 1000);
  EXPECT_GT(run.removes(), 1000);
  EXPECT_GT(run.reopens(), 10);
  EXPECT_GT(run.quarantines(), 100);
  EXPECT_GT(run.model().reclaimed, 100u);
  EXPECT_GT(run.keyed_adds(), RequestJournal::kEntries);
}

}  // namespace
}  // namespace groove
