// RequestJournal on its own, one thread: when an entry may be reused,
// Verify against damaged files, then a seeded randomized run against a
// model of every entry, with the journal closed and opened again (a crash
// of its owner) at random points and Verify after every step. The journal
// inside a pool, across real crashes, is in named_pool_test.cc
// (RequestJournalTest) and recovery_test.cc (KeyedAdd*).

#include "groove/request_journal.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "support/pool_memory.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::TempDir;

constexpr uint64_t kMaxVolumes = 2048;
constexpr RequestJournal::Identity kIdentity{0x1234, 0x5678};
constexpr uint64_t kEntries = RequestJournal::kEntries;

// Open with no PENDING entry expected: any `committed` question fails the
// test.
std::unique_ptr<RequestJournal> OpenQuiet(
    const std::string& path, RequestJournal::OpenReport* report = nullptr,
    std::vector<RecordedAdd>* recorded = nullptr) {
  auto journal = RequestJournal::Open(
      path, kIdentity, kMaxVolumes, RequestJournal::kAnyBatch,
      [](uint64_t batch, std::span<const uint64_t>) {
        ADD_FAILURE() << "asked about batch " << batch
                      << ", but no entry is PENDING";
        return false;
      },
      report, recorded);
  EXPECT_TRUE(journal.ok()) << journal.status();
  return journal.ok() ? std::move(*journal) : nullptr;
}

// One finished add of one volume (index = batch % kMaxVolumes).
uint64_t AddOne(RequestJournal& journal, uint64_t batch) {
  const uint64_t index = batch % kMaxVolumes;
  absl::StatusOr<uint64_t> entry = journal.Begin(RequestKey{0, batch}, batch, 1,
                                                 std::nullopt, "", {&index, 1});
  EXPECT_TRUE(entry.ok()) << entry.status();
  if (!entry.ok()) return kEntries;
  journal.Commit(*entry, batch);
  journal.Finish(*entry, batch);
  return *entry;
}

void WriteWord(const std::string& path, uint64_t offset, uint64_t word) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, &word, sizeof(word), static_cast<off_t>(offset)),
            static_cast<ssize_t>(sizeof(word)));
  close(fd);
}

uint64_t ReadWord(const std::string& path, uint64_t offset) {
  uint64_t word = 0;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(pread(fd, &word, sizeof(word), static_cast<off_t>(offset)),
            static_cast<ssize_t>(sizeof(word)));
  close(fd);
  return word;
}

// The file offset of entry `entry`'s state word (its first field).
uint64_t StateOffset(uint64_t entry) {
  return testing::kJournalEntryOffset + entry * testing::kJournalEntryBytes;
}

TEST(RequestJournalEntryTest, ACommittedAddIsNotReusedBeforeItFinishes) {
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  auto journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  // Add A (batch 1) commits in entry 0; its push has not returned, and may
  // yet fail.
  const uint64_t a_index = 7;
  absl::StatusOr<uint64_t> a = journal->Begin(RequestKey{0xa, 0xa}, 1, 1,
                                              std::nullopt, "A", {&a_index, 1});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(*a, 0u);
  journal->Commit(*a, 1);
  // Every other entry is used by a finished add; the ring comes back to 0.
  for (uint64_t batch = 2; batch <= kEntries; ++batch) {
    ASSERT_EQ(AddOne(*journal, batch), batch - 1);
  }
  EXPECT_EQ(AddOne(*journal, kEntries + 1), 1u)
      << "a newer add took the entry of an add whose push may still fail";
  // A's push fails: its entry is uncommitted and freed, touching no other.
  journal->Uncommit(*a, 1);
  journal->Forget(*a);
  absl::StatusOr<uint64_t> verified = journal->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, kEntries - 1);

  journal.reset();
  std::vector<RecordedAdd> recorded;
  journal = OpenQuiet(path, nullptr, &recorded);
  ASSERT_NE(journal, nullptr);
  ASSERT_EQ(recorded.size(), kEntries - 1);
  EXPECT_EQ(recorded.front().batch, 3u);  // 1 failed, 2's entry was reused
  EXPECT_EQ(recorded.back().batch, kEntries + 1);
}

// An entry of a batch at or above the pool's next one records an add the
// pool never made (a host crash kept the journal's page and lost the
// metadata's): Open drops it as invalid.
// The header records where Begin claimed last, and Open goes on there;
// but an earlier build keeps no such record, so after it added to the
// journal (a downgrade, then an upgrade) the record is stale, and entries
// hold batches above the largest it names: Open then goes on after the
// newest batch's entry instead (the stale record would reuse the earlier
// build's adds, the newest, first), and records that.
TEST(RequestJournalEntryTest, AStaleClaimRecordIsNotFollowed) {
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  const uint64_t record = testing::kJournalNextClaimOffset;
  auto journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  for (uint64_t batch = 1; batch <= 3; ++batch) {
    EXPECT_EQ(AddOne(*journal, batch), batch - 1);
  }
  journal.reset();
  const uint64_t next_claim = ReadWord(path, record);
  const uint64_t claimed_batch_max = ReadWord(path, record + 8);
  EXPECT_EQ(next_claim, 3u);
  EXPECT_EQ(claimed_batch_max, 3u);
  journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  EXPECT_EQ(AddOne(*journal, 4), 3u);
  EXPECT_EQ(AddOne(*journal, 5), 4u);
  journal.reset();
  ASSERT_NO_FATAL_FAILURE(WriteWord(path, record, next_claim));
  ASSERT_NO_FATAL_FAILURE(WriteWord(path, record + 8, claimed_batch_max));
  journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  EXPECT_EQ(ReadWord(path, record + 8), 5u);
  EXPECT_EQ(AddOne(*journal, 6), 5u);
  absl::StatusOr<uint64_t> verified = journal->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, 6u);
}

TEST(RequestJournalEntryTest, AnEntryOfABatchThePoolNeverMadeIsDropped) {
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  {
    auto journal = OpenQuiet(path);
    ASSERT_NE(journal, nullptr);
    for (uint64_t batch = 1; batch <= 3; ++batch) AddOne(*journal, batch);
  }
  RequestJournal::OpenReport report;
  std::vector<RecordedAdd> recorded;
  auto journal = RequestJournal::Open(
      path, kIdentity, kMaxVolumes, /*next_batch=*/3,
      [](uint64_t, std::span<const uint64_t>) { return true; }, &report,
      &recorded);
  ASSERT_TRUE(journal.ok()) << journal.status();
  EXPECT_EQ(report.committed, 2u);
  EXPECT_EQ(report.dropped_invalid, 1u);
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0].batch, 1u);
  EXPECT_EQ(recorded[1].batch, 2u);
  absl::StatusOr<uint64_t> verified = (*journal)->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, 2u);
}

TEST(RequestJournalEntryTest, VerifyCountsTheCommittedEntriesOfANewJournal) {
  TempDir dir;
  auto journal = OpenQuiet(dir.path() + "/p.requests");
  ASSERT_NE(journal, nullptr);
  absl::StatusOr<uint64_t> verified = journal->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, 0u);
  AddOne(*journal, 1);
  AddOne(*journal, 2);
  verified = journal->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(*verified, 2u);
}

TEST(RequestJournalEntryTest, VerifyNamesAStateTheFileAndMemoryDisagreeOn) {
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  auto journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  AddOne(*journal, 1);
  AddOne(*journal, 2);
  // Entry 1 (batch 2) reads FREE in the file: 0 is FREE of batch 0.
  WriteWord(path, StateOffset(1), 0);
  const absl::Status status = journal->Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(),
            "request journal entry 1: is FREE of batch 0 in the file but "
            "COMMITTED of batch 2 in memory");
}

TEST(RequestJournalEntryTest, VerifyNamesAnEntryThatRecordsNoAdd) {
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  auto journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  AddOne(*journal, 1);
  WriteWord(path, StateOffset(0) + testing::kJournalEntryCountOffset, 0);
  const absl::Status status = journal->Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(),
            "request journal entry 0: records no add: its count is 0, not in "
            "[1, 1024]");
}

TEST(RequestJournalEntryTest, VerifyNamesTwoEntriesOfOneBatch) {
  TempDir dir;
  auto journal = OpenQuiet(dir.path() + "/p.requests");
  ASSERT_NE(journal, nullptr);
  AddOne(*journal, 5);
  AddOne(*journal, 5);  // a caller that broke Begin's contract
  const absl::Status status = journal->Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(),
            "request journal entries 0 and 1 both record batch 5");
}

TEST(RequestJournalEntryTest, VerifyNamesAHeaderOfAnotherPool) {
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  auto journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  // The header's pool_id_high is its fifth word.
  WriteWord(path, 4 * sizeof(uint64_t), kIdentity.high + 1);
  const absl::Status status = journal->Verify().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(),
            "request journal: the header names another pool than the one it "
            "was opened for");
}

// ---- The seed's randomized run against a model ---------------------------

// Where an entry's add is, as the model sees it. In the file, kBegun and
// kUncommitted are PENDING; kCommitted and kFinished are COMMITTED.
enum class Phase { kFree, kBegun, kCommitted, kUncommitted, kFinished };

struct ModelEntry {
  Phase phase = Phase::kFree;
  RecordedAdd add;  // what Begin was given (recorded_unix_ns unset)
};

class JournalModel {
 public:
  explicit JournalModel(uint64_t seed) : rng_(seed) {}

  std::mt19937_64& rng() { return rng_; }
  std::vector<ModelEntry>& entries() { return entries_; }

  // The entry Begin must take: the first from the cursor, in ring order,
  // whose add is not in flight. The cursor moves past every entry looked
  // at, as the journal's does.
  std::optional<uint64_t> NextEntry() {
    for (uint64_t scanned = 0; scanned < kEntries; ++scanned) {
      const uint64_t i = cursor_++ % kEntries;
      if (entries_[i].phase == Phase::kFree ||
          entries_[i].phase == Phase::kFinished) {
        return i;
      }
    }
    return std::nullopt;
  }

  // After a crash: the adds that had drawn a batch and not yet begun are
  // gone. (The cursor stays: an Open goes on after the entry Begin took
  // last, whatever its batch.)
  void Crash() { held_.clear(); }

  // The entries in `phases`.
  std::vector<uint64_t> In(std::initializer_list<Phase> phases) const {
    std::vector<uint64_t> found;
    for (uint64_t i = 0; i < kEntries; ++i) {
      if (std::find(phases.begin(), phases.end(), entries_[i].phase) !=
          phases.end()) {
        found.push_back(i);
      }
    }
    return found;
  }

  // A random add of a new batch, with arguments within Begin's REQUIRES.
  // Sometimes of a batch drawn earlier, as a slow add's: an add draws its
  // batch when it starts and begins its entry when it commits, so entries
  // are not taken in batch order.
  RecordedAdd RandomAdd() {
    RecordedAdd add;
    if (!held_.empty() && rng_() % 2 == 0) {
      add.batch = held_.back();
      held_.pop_back();
    } else {
      add.batch = ++batch_;
    }
    if (rng_() % 8 == 0) held_.push_back(++batch_);  // a slow add starts
    add.key = RequestKey{rng_(), rng_()};
    add.count = rng_() % 10 == 0
                    ? 1 + rng_() % RequestJournal::kMaxVolumesPerAdd
                    : 1 + rng_() % 8;
    if (rng_() % 2 == 0) {
      const uint64_t first = rng_() % (kMaxVolumes - add.count + 1);
      add.first_index = first;
      for (uint64_t k = 0; k < add.count; ++k) add.indices.push_back(first + k);
    } else {
      std::set<uint64_t> picked;
      while (picked.size() < add.count) picked.insert(rng_() % kMaxVolumes);
      add.indices.assign(picked.begin(), picked.end());
    }
    add.info.resize(rng_() % (RequestJournal::kMaxInfoBytes + 1));
    for (char& c : add.info) c = static_cast<char>(rng_());
    return add;
  }

  // The batch the next RandomAdd takes: the pool's next_batch.
  uint64_t next_batch() const { return batch_ + 1; }

  uint64_t CommittedInFile() const {
    return In({Phase::kCommitted, Phase::kFinished}).size();
  }

 private:
  std::mt19937_64 rng_;
  std::vector<ModelEntry> entries_ = std::vector<ModelEntry>(kEntries);
  uint64_t cursor_ = 0;
  uint64_t batch_ = 0;
  std::vector<uint64_t> held_;  // batches of adds started, not yet begun
};

void ExpectSameAdd(const RecordedAdd& got, const RecordedAdd& want) {
  EXPECT_EQ(got.batch, want.batch);
  EXPECT_EQ(got.key, want.key) << "batch " << want.batch;
  EXPECT_EQ(got.count, want.count) << "batch " << want.batch;
  EXPECT_EQ(got.first_index, want.first_index) << "batch " << want.batch;
  EXPECT_EQ(got.info, want.info) << "batch " << want.batch;
  EXPECT_EQ(got.indices, want.indices) << "batch " << want.batch;
  EXPECT_GT(got.recorded_unix_ns, 0) << "batch " << want.batch;
}

// Closes `journal` as a crash of its owner would leave it (its stores are
// in the file), sometimes with one begun add stopped while writing its
// entry, opens it again and checks what Open resolved against the model.
void CrashAndReopen(const std::string& path, JournalModel& model,
                    std::unique_ptr<RequestJournal>& journal) {
  journal.reset();
  std::vector<ModelEntry>& entries = model.entries();
  // A begun add killed while writing its entry: WRITING in the file.
  std::optional<uint64_t> writing;
  const std::vector<uint64_t> begun = model.In({Phase::kBegun});
  if (!begun.empty() && model.rng()() % 2 == 0) {
    writing = begun[model.rng()() % begun.size()];
    const uint64_t writing_word = 1 | entries[*writing].add.batch << 2;
    ASSERT_NO_FATAL_FAILURE(
        WriteWord(path, StateOffset(*writing), writing_word));
  }
  // Open asks about each PENDING entry once; the model answers at random
  // (recovery rolled the add forward or back) and remembers the answer.
  std::set<uint64_t> asked;
  uint64_t rolled_forward = 0, rolled_back = 0;
  RequestJournal::OpenReport report;
  std::vector<RecordedAdd> recorded;
  // The pool's next batch: every add the model made is below it.
  auto reopened = RequestJournal::Open(
      path, kIdentity, kMaxVolumes, model.next_batch(),
      [&](uint64_t batch, std::span<const uint64_t> indices) {
        auto it = std::find_if(entries.begin(), entries.end(),
                               [&](const ModelEntry& e) {
                                 return (e.phase == Phase::kBegun ||
                                         e.phase == Phase::kUncommitted) &&
                                        e.add.batch == batch;
                               });
        EXPECT_NE(it, entries.end()) << "asked about batch " << batch
                                     << ", which no PENDING entry holds";
        if (it == entries.end()) return false;
        EXPECT_EQ(std::vector<uint64_t>(indices.begin(), indices.end()),
                  it->add.indices);
        EXPECT_TRUE(asked.insert(batch).second) << "asked twice: " << batch;
        const bool forward = model.rng()() % 2 == 0;
        it->phase = forward ? Phase::kFinished : Phase::kFree;
        ++(forward ? rolled_forward : rolled_back);
        return forward;
      },
      &report, &recorded);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  journal = std::move(*reopened);
  // What was not asked about: committed adds stay, the WRITING one goes.
  uint64_t freed_writing = 0;
  for (uint64_t i = 0; i < kEntries; ++i) {
    ModelEntry& e = entries[i];
    if (writing == i) {
      EXPECT_EQ(e.phase, Phase::kBegun) << "asked about a WRITING entry";
      e.phase = Phase::kFree;
      ++freed_writing;
    } else if (e.phase == Phase::kCommitted) {
      e.phase = Phase::kFinished;
    } else {
      EXPECT_TRUE(e.phase == Phase::kFree || e.phase == Phase::kFinished)
          << "entry " << i << " was PENDING and Open did not ask about it";
    }
  }
  EXPECT_FALSE(report.created);
  EXPECT_EQ(report.reset_reason, "");
  EXPECT_EQ(report.resolved_committed, rolled_forward);
  EXPECT_EQ(report.resolved_failed, rolled_back + freed_writing);
  EXPECT_EQ(report.dropped_invalid, 0u);
  std::vector<RecordedAdd> want;
  for (const uint64_t i : model.In({Phase::kFinished})) {
    want.push_back(entries[i].add);
  }
  std::sort(want.begin(), want.end(),
            [](const RecordedAdd& a, const RecordedAdd& b) {
              return a.batch < b.batch;
            });
  EXPECT_EQ(report.committed, want.size());
  ASSERT_EQ(recorded.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) ExpectSameAdd(recorded[k], want[k]);
  model.Crash();
}

TEST(RequestJournalRandomizedTest, EveryStepMatchesTheModel) {
  constexpr int kSteps = 20000;
  constexpr size_t kMaxInFlight = 8;
  TempDir dir;
  const std::string path = dir.path() + "/p.requests";
  JournalModel model(testing::TestSeed());
  std::mt19937_64& rng = model.rng();
  std::vector<ModelEntry>& entries = model.entries();
  auto journal = OpenQuiet(path);
  ASSERT_NE(journal, nullptr);
  int reopens = 0, reuses = 0;
  for (int step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(step);
    const std::vector<uint64_t> begun = model.In({Phase::kBegun});
    const std::vector<uint64_t> committed = model.In({Phase::kCommitted});
    const std::vector<uint64_t> forgettable =
        model.In({Phase::kBegun, Phase::kUncommitted});
    const size_t in_flight =
        model.In({Phase::kBegun, Phase::kCommitted, Phase::kUncommitted})
            .size();
    const auto pick = [&](const std::vector<uint64_t>& from) {
      return from[rng() % from.size()];
    };
    switch (rng() % 12) {
      case 0:
      case 1:
      case 2:
      case 3: {  // Begin
        if (in_flight >= kMaxInFlight) break;
        RecordedAdd add = model.RandomAdd();
        const std::optional<uint64_t> want = model.NextEntry();
        ASSERT_TRUE(want.has_value());
        absl::StatusOr<uint64_t> got =
            journal->Begin(add.key, add.batch, add.count, add.first_index,
                           add.info, add.indices);
        ASSERT_TRUE(got.ok()) << got.status();
        ASSERT_EQ(*got, *want) << "Begin took another entry than the oldest";
        reuses += entries[*want].phase == Phase::kFinished;
        entries[*want] = ModelEntry{Phase::kBegun, std::move(add)};
        break;
      }
      case 4:
      case 5:
        if (begun.empty()) break;
        {
          const uint64_t i = pick(begun);
          journal->Commit(i, entries[i].add.batch);
          entries[i].phase = Phase::kCommitted;
        }
        break;
      case 6:
      case 7:
        if (committed.empty()) break;
        {
          const uint64_t i = pick(committed);
          journal->Finish(i, entries[i].add.batch);
          entries[i].phase = Phase::kFinished;
        }
        break;
      case 8:
        if (committed.empty()) break;
        {
          const uint64_t i = pick(committed);
          journal->Uncommit(i, entries[i].add.batch);
          entries[i].phase = Phase::kUncommitted;
        }
        break;
      case 9:
      case 10:
        if (forgettable.empty()) break;
        {
          const uint64_t i = pick(forgettable);
          journal->Forget(i);
          entries[i].phase = Phase::kFree;
        }
        break;
      case 11:
        if (rng() % 40 != 0) break;
        ASSERT_NO_FATAL_FAILURE(CrashAndReopen(path, model, journal));
        ++reopens;
        break;
    }
    absl::StatusOr<uint64_t> verified = journal->Verify();
    ASSERT_TRUE(verified.ok()) << verified.status();
    ASSERT_EQ(*verified, model.CommittedInFile());
  }
  ASSERT_NO_FATAL_FAILURE(CrashAndReopen(path, model, journal));
  // The run went round the ring and through crashes, or it tested little.
  EXPECT_GT(reuses, 1000);
  EXPECT_GT(reopens, 10);
}

}  // namespace
}  // namespace groove
