// NamedPool, one thread at a time: a seeded randomized run of adds (with
// and without keys, at the lowest free indices or at a given range, good
// and bad), removes, a data-plane join's acquires and releases, volumes
// whose header is scribbled and then quarantined by a remove or an
// acquire, the data plane releasing a volume its Acquire returned as
// corrupt (against Release's contract: as it is, or with its header
// mended), which pushes a quarantined volume back onto the stack, reclaims
// (good and bad), and the owner closed and opened again, against a model
// of the pool's slots, its stack and its request journal, with Verify and
// every observable after each step (docs/STYLE.md point 12;
// VolumePoolRandomizedTest does the same for the bare pool).

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
#include "absl/strings/string_view.h"
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
  // Volumes whose slot says QUARANTINED (volumes_in_quarantine), with what
  // ListVolumes and ReclaimVolume say about their header. Off the stack
  // and held by nobody, but for those a data-plane Release pushed back
  // onto the stack (PushBackQuarantined): on the stack (Verify reports
  // them, ReclaimVolume refuses them, a remove's pop or a reopen makes them
  // ordinary), or acquired again (held: the documented hole, a reclaim
  // frees them under their user).
  std::map<uint64_t, std::string> quarantined;
  uint64_t reclaimed = 0;                  // volumes ReclaimVolume freed
  std::deque<RecordedAdd> journal;         // adds with keys, oldest first

  bool IsMapped(uint64_t index) const { return mapped.count(index) != 0; }
  bool IsHeld(uint64_t index) const {
    return std::find(held.begin(), held.end(), index) != held.end();
  }
  bool IsOnStack(uint64_t index) const {
    return std::find(stack.begin(), stack.end(), index) != stack.end();
  }
  bool IsQuarantined(uint64_t index) const {
    return quarantined.count(index) != 0;
  }
  // The quarantined volume on the stack nearest its top, which Verify's
  // walk from the top names, if any.
  std::optional<uint64_t> QuarantinedOnStack() const {
    for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
      if (IsQuarantined(*it)) return *it;
    }
    return std::nullopt;
  }
};

// What ListVolumes and ReclaimVolume say of a quarantined volume whose
// header reads as a sound empty volume's (one a Release pushed back).
constexpr absl::string_view kSoundNowFault =
    "header reads sound now, but was bad when a pop quarantined it";

// What they say of a quarantined volume whose header reads in use (one a
// Release pushed back, then acquired again; or scribbled so).
std::string InUseFault() {
  return absl::StrCat("header magic is 0x", absl::Hex(kVolumeMagic),
                      " (in use), want 0x", absl::Hex(kVolumeEmptyMagic),
                      " (empty)");
}

// Checks every observable of `pool` against `model`, and Verifies the pool
// (DATA_LOSS while a quarantined volume is on the stack, naming the one
// nearest the top) and its request journal.
void ExpectMatches(const NamedPool& pool, const PoolModel& model) {
  absl::StatusOr<VerifyReport> verified = pool.Verify();
  if (const std::optional<uint64_t> flagged = model.QuarantinedOnStack()) {
    ASSERT_EQ(verified.status().code(), absl::StatusCode::kDataLoss)
        << verified.status();
    EXPECT_NE(verified.status().message().find(absl::StrCat(
                  "volume ", *flagged,
                  " is on the stack but its slot says it is quarantined")),
              std::string::npos)
        << verified.status();
  } else {
    ASSERT_TRUE(verified.ok()) << verified.status();
    EXPECT_EQ(verified->empty_volumes, model.stack.size());
  }
  // In use: held, or quarantined and idle (off the stack, held by nobody).
  uint64_t idle_quarantines = 0;
  for (const auto& [index, fault] : model.quarantined) {
    if (!model.IsOnStack(index) && !model.IsHeld(index)) ++idle_quarantines;
  }
  const PoolSummary summary = pool.Summary();
  EXPECT_EQ(summary.volumes_mapped, model.mapped.size());
  EXPECT_EQ(summary.volumes_empty, model.stack.size());
  EXPECT_EQ(summary.volumes_in_use, model.held.size() + idle_quarantines);
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
      // A quarantined volume pushed back is taken as any empty one, and
      // leaves volumes_in_quarantine.
      if (model_.quarantined.erase(want[k]) != 0) ++pushed_back_removed_;
    }
    ++removes_;
  }

  // The data plane takes the volume on top, or gives one it holds back.
  // A quarantined volume pushed back is handed out as any empty one (its
  // header is sound), its slot still QUARANTINED: listed as corrupt, its
  // header now reading in use, and pushed back again by its Release (this
  // time within the contract: its Acquire returned kSuccess).
  void AcquireOrRelease() {
    if (rng_() % 2 == 0 || model_.held.empty()) {
      VolumeHeader* v = nullptr;
      const PoolError err = join_->pool().Acquire(&v);
      if (model_.stack.empty()) {
        ASSERT_EQ(err, PoolError::kEmpty);
        return;
      }
      ASSERT_EQ(err, PoolError::kSuccess);
      const uint64_t index = model_.stack.back();
      ASSERT_EQ(v->idx.load(), index);
      model_.held.push_back(index);
      model_.stack.pop_back();
      held_headers_.push_back(v);
      if (model_.IsQuarantined(index)) {
        model_.quarantined[index] = InUseFault();
      }
      return;
    }
    const size_t k = rng_() % model_.held.size();
    ASSERT_EQ(join_->pool().Release(held_headers_[k]), PoolError::kSuccess);
    if (model_.IsQuarantined(model_.held[k])) {
      model_.quarantined[model_.held[k]] = std::string(kSoundNowFault);
    }
    model_.stack.push_back(model_.held[k]);
    model_.held.erase(model_.held.begin() + static_cast<ptrdiff_t>(k));
    held_headers_.erase(held_headers_.begin() + static_cast<ptrdiff_t>(k));
  }

  // A volume on the stack has its header scribbled (through the data
  // plane's mapping) and is popped at once, by the data plane's Acquire
  // (on top) or by a remove that pops the good ones above it first and
  // puts them back: quarantined either way. (Between steps a bad header
  // cannot stay on the stack: Verify would report it.) The scribbled
  // volume may be a quarantined one pushed back: quarantined again (and
  // still counted once). A quarantined one pushed back among the good ones
  // the remove puts back is put back as an ordinary empty volume: its pop
  // took it out of quarantine.
  void Quarantine() {
    if (model_.stack.empty()) return;
    // By the data plane's Acquire (of the top) a third of the time, so that
    // PushBackQuarantined finds such volumes before reclaims free them.
    const bool by_acquire = rng_() % 3 == 0;
    const size_t depth =
        by_acquire ? 0 : rng_() % std::min<size_t>(model_.stack.size(), 4);
    const uint64_t index = model_.stack[model_.stack.size() - 1 - depth];
    VolumeHeader* v = join_->pool().VolumeAt(index);
    std::string fault;
    const uint64_t scribble = rng_() % 4;
    switch (scribble) {
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
    if (by_acquire) {
      VolumeHeader* popped = nullptr;
      ASSERT_EQ(join_->pool().Acquire(&popped), PoolError::kCorrupt);
      ASSERT_EQ(popped, v);
      model_.stack.pop_back();
      // Its magic scribbled to "in use" (case 1) is the one header
      // Release takes as it is.
      acquired_corrupt_[index] = scribble == 1;
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
      for (const uint64_t i : popped) {
        model_.stack.push_back(i);
        model_.quarantined.erase(i);
      }
    }
    model_.quarantined[index] = fault;
    ++quarantines_;
  }

  // The data plane Releases a volume its Acquire returned as corrupt,
  // against Release's contract: as it is (Release refuses it, changing
  // nothing, unless its magic reads in use), or with its header mended as
  // a user of a volume in use leaves it (magic in use, its own idx, info_sz
  // within bounds). Release then writes the empty magic and pushes it: a
  // QUARANTINED slot on the stack, still counted in volumes_in_quarantine,
  // listed as corrupt (its header reading sound now), which Verify reports
  // (DATA_LOSS) and ReclaimVolume refuses until a remove's pop or a reopen
  // makes it an ordinary volume, or an Acquire hands it out again.
  void PushBackQuarantined() {
    if (acquired_corrupt_.empty()) return;
    auto it = acquired_corrupt_.begin();
    std::advance(it, rng_() % acquired_corrupt_.size());
    const uint64_t index = it->first;
    VolumeHeader* v = join_->pool().VolumeAt(index);
    if (rng_() % 2 == 0) {
      const PoolError err = join_->pool().Release(v);
      if (!it->second) {
        ASSERT_EQ(err, PoolError::kInvalid);
        return;
      }
      ASSERT_EQ(err, PoolError::kSuccess);
    } else {
      v->magic.store(kVolumeMagic);
      v->idx.store(index);
      if (v->info_sz.load() > kVolumeInfoMax) v->info_sz.store(kVolumeInfoMax);
      ASSERT_EQ(join_->pool().Release(v), PoolError::kSuccess);
    }
    acquired_corrupt_.erase(it);
    model_.stack.push_back(index);
    model_.quarantined[index] = std::string(kSoundNowFault);
    ++pushed_back_;
  }

  // A reclaim of a quarantined volume, or of any index (refused unless it
  // is quarantined, naming what is there). A quarantined volume pushed
  // back onto the stack is refused, its header reading sound; one pushed
  // back and acquired again is freed under its user (the documented hole:
  // its header reads in use, which a reclaim does not refuse), and the
  // data plane, told by its admin, forgets it.
  void Reclaim() {
    uint64_t index = rng_() % (kMaxVolumes + 2);
    if (!model_.quarantined.empty() && rng_() % 2 == 0) {
      auto it = model_.quarantined.begin();
      std::advance(it, rng_() % model_.quarantined.size());
      index = it->first;
    }
    absl::StatusOr<ReclaimedVolume> reclaimed = pool_->ReclaimVolume(index);
    const auto quarantined = model_.quarantined.find(index);
    if (quarantined != model_.quarantined.end() && model_.IsOnStack(index)) {
      ASSERT_EQ(reclaimed.status().code(),
                absl::StatusCode::kFailedPrecondition)
          << reclaimed.status();
      EXPECT_NE(reclaimed.status().message().find(
                    "its header now reads as a sound empty volume's"),
                std::string::npos)
          << reclaimed.status();
      return;
    }
    if (quarantined != model_.quarantined.end()) {
      ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
      EXPECT_EQ(reclaimed->index, index);
      EXPECT_EQ(reclaimed->corruption, quarantined->second);
      model_.quarantined.erase(quarantined);
      model_.mapped.erase(index);
      acquired_corrupt_.erase(index);
      const auto held =
          std::find(model_.held.begin(), model_.held.end(), index);
      if (held != model_.held.end()) {
        const ptrdiff_t k = held - model_.held.begin();
        model_.held.erase(held);
        held_headers_.erase(held_headers_.begin() + k);
      }
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

  // The owner closes and opens again: everything stays, but for the
  // quarantined volumes pushed back onto the stack, whose slots recovery
  // makes MAPPED (ordinary empty volumes), and the journal lists the adds
  // with keys of its window, oldest first.
  void Reopen() {
    pool_.reset();
    ASSERT_NO_FATAL_FAILURE(Open());
    uint64_t on_stack = 0;
    for (auto it = model_.quarantined.begin();
         it != model_.quarantined.end();) {
      if (model_.IsOnStack(it->first)) {
        it = model_.quarantined.erase(it);
        ++on_stack;
      } else {
        ++it;
      }
    }
    pushed_back_reopened_ += static_cast<int>(on_stack);
    const RecoveryReport& r = pool_->recovery();
    EXPECT_FALSE(r.created);
    EXPECT_EQ(r.volumes_recovered, model_.mapped.size());
    EXPECT_EQ(r.volumes_in_quarantine, model_.quarantined.size());
    EXPECT_EQ(r.quarantines_on_stack, on_stack);
    EXPECT_EQ(r.quarantines_mended, 0u);
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
  int pushed_back() const { return pushed_back_; }
  int pushed_back_removed() const { return pushed_back_removed_; }
  int pushed_back_reopened() const { return pushed_back_reopened_; }
  uint64_t keyed_adds() const { return keyed_adds_; }
  const PoolModel& model() const { return model_; }

 private:
  std::string dir_;
  std::mt19937_64 rng_;
  std::unique_ptr<NamedPool> join_;  // a data-plane process's view
  std::unique_ptr<NamedPool> pool_;  // the owner's (opened after the join's
                                     // first Open, closed before it)
  std::vector<VolumeHeader*> held_headers_;  // model_.held's, in order
  // Volumes the data plane's Acquire returned as corrupt (kCorrupt), still
  // quarantined off the stack: whether Release takes the header as it is.
  std::map<uint64_t, bool> acquired_corrupt_;
  PoolModel model_;
  int adds_ = 0, removes_ = 0, reopens_ = 0, quarantines_ = 0;
  // Quarantined volumes pushed back; of them, removed, and mapped by a
  // reopen.
  int pushed_back_ = 0, pushed_back_removed_ = 0, pushed_back_reopened_ = 0;
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
        // More often while a quarantined volume pushed back is on the
        // stack, for recovery to map it in most runs.
        if (run.rng()() % 20 == 0 ||
            (run.model().QuarantinedOnStack().has_value() &&
             run.rng()() % 4 == 0)) {
          ASSERT_NO_FATAL_FAILURE(run.Reopen());
        }
        break;
      case 10:
        switch (run.rng()() % 6) {
          case 0:
          case 1:
            ASSERT_NO_FATAL_FAILURE(run.Quarantine());
            break;
          case 2:
          case 3:
          case 4:
            ASSERT_NO_FATAL_FAILURE(run.PushBackQuarantined());
            break;
          default:
            break;
        }
        break;
      case 11:
        ASSERT_NO_FATAL_FAILURE(run.Reclaim());
        break;
    }
    ASSERT_NO_FATAL_FAILURE(run.Check());
    // Stop at the first step where the pool and the model disagree: the
    // checks are EXPECTs, and a lasting difference would be reported
    // again at every later step.
    ASSERT_FALSE(::testing::Test::HasFailure())
        << "the pool and the model disagree from step " << step;
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
  // A quarantined volume pushed back onto the stack, for the last reopen
  // to map in every run (Reclaim keeps quarantines from filling the pool).
  for (int round = 0; !run.model().QuarantinedOnStack().has_value(); ++round) {
    ASSERT_LT(round, 200);
    ASSERT_NO_FATAL_FAILURE(run.Add());
    ASSERT_NO_FATAL_FAILURE(run.Quarantine());
    ASSERT_NO_FATAL_FAILURE(run.PushBackQuarantined());
    ASSERT_NO_FATAL_FAILURE(run.Reclaim());
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
  EXPECT_GT(run.pushed_back(), 5);
  EXPECT_GT(run.pushed_back_removed(), 3);
  EXPECT_GT(run.pushed_back_reopened(), 0);
  EXPECT_GT(run.model().reclaimed, 100u);
  EXPECT_GT(run.keyed_adds(), RequestJournal::kEntries);
}

}  // namespace
}  // namespace groove
