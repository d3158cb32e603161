#include "groove/request_journal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "groove/pool_error.h"

namespace groove {
namespace {

// "groovej1" little-endian: a request journal of layout 1.
constexpr uint64_t kJournalMagic = 0x316a65766f6f7267ull;
constexpr uint64_t kJournalLayoutVersion = 1;
constexpr uint64_t kHeaderBytes = 4096;

// An entry's state word is `state | batch << kStateBits`.
enum EntryState : uint64_t {
  kFree = 0,
  kWriting = 1,    // taken by Begin; its fields are being written
  kPending = 2,    // written; its add has not (or not yet) committed
  kCommitted = 3,  // its add committed
};
constexpr uint64_t kStateBits = 2;
constexpr uint64_t kStateMask = (uint64_t{1} << kStateBits) - 1;
constexpr uint64_t StateWord(EntryState state, uint64_t batch) {
  return state | batch << kStateBits;
}
constexpr EntryState StateOf(uint64_t word) {
  return static_cast<EntryState>(word & kStateMask);
}
constexpr uint64_t BatchOf(uint64_t word) { return word >> kStateBits; }
constexpr absl::string_view StateName(EntryState state) {
  switch (state) {
    case kFree:
      return "FREE";
    case kWriting:
      return "WRITING";
    case kPending:
      return "PENDING";
    case kCommitted:
      return "COMMITTED";
  }
  return "?";
}

// WriteZeros writes `bytes` zeros at `offset` of `fd`, allocating the
// pages under them; false (errno set) when it cannot.
bool WriteZeros(int fd, uint64_t offset, uint64_t bytes) {
  static constexpr char kZeros[4096] = {};
  while (bytes > 0) {
    const size_t n = std::min<uint64_t>(bytes, sizeof(kZeros));
    const ssize_t done = pwrite(fd, kZeros, n, static_cast<off_t>(offset));
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) {
      if (done == 0) errno = EIO;
      return false;
    }
    offset += static_cast<uint64_t>(done);
    bytes -= static_cast<uint64_t>(done);
  }
  return true;
}

// An unset first_index.
constexpr uint64_t kNoFirstIndex = ~uint64_t{0};

// RaiseTo stores `value` in `word` (in the file) unless it holds a larger
// one already: concurrent Begins may raise it in any order.
void RaiseTo(uint64_t& word, uint64_t value) {
  std::atomic_ref<uint64_t> ref(word);
  // Relaxed load: the CAS re-checks it. Release: before the entry's state
  // changes in the file.
  uint64_t now = ref.load(std::memory_order_relaxed);
  while (now < value &&
         !ref.compare_exchange_weak(now, value, std::memory_order_release,
                                    std::memory_order_relaxed)) {
  }
}

}  // namespace

// Header is the file's first page. Fields are written once, when the file
// is created or emptied, `magic` last; but for the claim record, which
// Begin raises and Open may set.
struct RequestJournal::Header {
  uint64_t magic;           // kJournalMagic once the rest is written
  uint64_t layout_version;  // kJournalLayoutVersion
  uint64_t entry_count;     // kEntries
  uint64_t entry_bytes;     // sizeof(Entry)
  uint64_t pool_id_high;    // Identity of the pool
  uint64_t pool_id_low;
  // Where Open goes on: the cursor after the entry claimed last (its
  // position + 1, not reduced modulo kEntries) and the largest batch
  // claimed, each raised by Begin before it writes its entry. 0: none
  // recorded (a new file, or one an earlier build wrote). An add takes its
  // batch when it starts and its entry when it commits, so the newest
  // batch's entry need not be the one claimed last.
  uint64_t next_claim;
  uint64_t claimed_batch_max;
};

// Entry is one add, as the file holds it. Its fields are written by the
// thread that claimed it (RequestJournal::states_) and read only by Open,
// when no add runs; `state` is stored last, through std::atomic_ref, so a
// crash that finds it PENDING finds the fields.
struct RequestJournal::Entry {
  uint64_t state;  // StateWord(state, batch)
  uint64_t key_high;
  uint64_t key_low;
  uint64_t count;        // in [1, kMaxVolumesPerAdd]
  uint64_t first_index;  // or kNoFirstIndex
  uint64_t info_size;    // <= kMaxInfoBytes
  int64_t recorded_unix_ns;  // CLOCK_REALTIME when Begin wrote it
  char info[kMaxInfoBytes];
  uint32_t indices[kMaxVolumesPerAdd];  // the first `count`, ascending

  // Problem says why this entry records no add of a pool of `max_volumes`
  // volumes (its count, info size or indices are out of their ranges), or
  // returns "" when it records one.
  std::string Problem(uint64_t max_volumes) const {
    if (count < 1 || count > kMaxVolumesPerAdd) {
      return absl::StrCat("its count is ", count, ", not in [1, ",
                          kMaxVolumesPerAdd, "]");
    }
    if (info_size > kMaxInfoBytes) {
      return absl::StrCat("its info is ", info_size, " bytes, more than ",
                          kMaxInfoBytes);
    }
    for (uint64_t k = 0; k < count; ++k) {
      if (indices[k] >= max_volumes) {
        return absl::StrCat("its index ", indices[k], " is not below ",
                            max_volumes);
      }
      if (k > 0 && indices[k] <= indices[k - 1]) {
        return absl::StrCat("its indices are not ascending at ", k);
      }
      if (first_index != kNoFirstIndex && indices[k] != first_index + k) {
        return absl::StrCat("its index ", k, " is ", indices[k],
                            ", not first_index + ", k);
      }
    }
    return "";
  }
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);

RequestJournal::RequestJournal(int fd, void* map, uint64_t map_bytes,
                               const Identity& identity, uint64_t max_volumes)
    : fd_(fd),
      map_(map),
      map_bytes_(map_bytes),
      identity_(identity),
      max_volumes_(max_volumes),
      states_(new std::atomic<uint64_t>[kEntries]),
      allocated_(new std::atomic<bool>[kEntries]) {
  static_assert(std::is_standard_layout_v<Entry>);
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(offsetof(Entry, state) == 0);
  static_assert(sizeof(Entry) % alignof(Entry) == 0);
  static_assert(sizeof(Entry) == 56 + kMaxInfoBytes + 4 * kMaxVolumesPerAdd);
  static_assert(testing::kJournalEntryOffset == kHeaderBytes);
  static_assert(testing::kJournalNextClaimOffset ==
                offsetof(Header, next_claim));
  static_assert(offsetof(Header, claimed_batch_max) ==
                offsetof(Header, next_claim) + sizeof(uint64_t));
  static_assert(testing::kJournalEntryCountOffset == offsetof(Entry, count));
  static_assert(testing::kJournalEntryBytes == sizeof(Entry));
  static_assert(kWriting == 1 && kCommitted == 3 && kStateBits == 2);
  for (uint64_t i = 0; i < kEntries; ++i) {
    states_[i].store(kFree, std::memory_order_relaxed);
    allocated_[i].store(false, std::memory_order_relaxed);
  }
}

RequestJournal::~RequestJournal() {
  munmap(map_, map_bytes_);
  close(fd_);
}

RequestJournal::Entry& RequestJournal::EntryAt(uint64_t entry) const {
  return reinterpret_cast<Entry*>(static_cast<std::byte*>(map_) +
                                  kHeaderBytes)[entry];
}

void RequestJournal::StoreFileState(uint64_t entry, uint64_t word) {
  // Release: the entry's fields, and the caller's earlier stores to the
  // pool's slots, are in the file before the state that makes them count.
  std::atomic_ref<uint64_t>(EntryAt(entry).state)
      .store(word, std::memory_order_release);
  // Relaxed: a test's function, set before the pool is used.
  if (auto hook =
          testing::journal_store_state_hook.load(std::memory_order_relaxed)) {
    hook(entry, word);
  }
}

void RequestJournal::StoreState(uint64_t entry, uint64_t word) {
  StoreFileState(entry, word);
  // Release, and after the file's: a Begin that claims the entry from this
  // state (acquire) writes the file after this thread has.
  states_[entry].store(word, std::memory_order_release);
}

absl::StatusOr<std::unique_ptr<RequestJournal>> RequestJournal::Open(
    const std::string& path, const Identity& identity, uint64_t max_volumes,
    uint64_t next_batch, const Committed& committed, OpenReport* report,
    std::vector<RecordedAdd>* recorded) {
  OpenReport local;
  OpenReport& r = report != nullptr ? *report : local;
  r = OpenReport();
  if (recorded != nullptr) recorded->clear();
  const int fd =
      open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(absl::StrCat("open request journal ", path));
  auto fail = [&](absl::string_view what) {
    absl::Status s = ErrnoError(absl::StrCat(what, " request journal ", path));
    close(fd);
    return s;
  };
  struct stat st;
  if (fstat(fd, &st) != 0) return fail("stat");
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat(
        "request journal ", path, " is not a regular file; move it aside"));
  }
  const uint64_t bytes = kHeaderBytes + kEntries * sizeof(Entry);

  // Judge the file as found; empty it unless it is this pool's journal.
  std::string reset_reason;
  if (st.st_size == 0) {
    r.created = true;
  } else if (static_cast<uint64_t>(st.st_size) != bytes) {
    reset_reason = absl::StrCat("it is ", st.st_size, " bytes, not ", bytes);
  } else {
    Header h;
    if (pread(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h))) {
      return fail("read");
    }
    if (h.magic != kJournalMagic) {
      reset_reason = "its creation never finished, or it is not a journal";
    } else if (h.layout_version != kJournalLayoutVersion ||
               h.entry_count != kEntries || h.entry_bytes != sizeof(Entry)) {
      reset_reason =
          absl::StrCat("it has layout ", h.layout_version,
                       ", this build writes ", kJournalLayoutVersion);
    } else if (h.pool_id_high != identity.high ||
               h.pool_id_low != identity.low) {
      reset_reason =
          "it belongs to an earlier pool of this name (the pool "
          "was re-created)";
    }
  }
  const bool fresh = r.created || !reset_reason.empty();
  if (fresh) {
    // Empty it, size it (a sparse file: an entry's pages are allocated
    // when it is first used, Begin), allocate the header's page, then
    // write the header, the magic last: a crash meanwhile leaves a file
    // without the magic, which the next Open empties again.
    if (ftruncate(fd, 0) != 0 ||
        ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      return fail("size");
    }
    if (!WriteZeros(fd, 0, kHeaderBytes)) return fail("allocate");
  }
  // Read every entry with one pread: holes read as zeros (FREE) and stay
  // holes, where a read through the mapping would allocate their pages on
  // tmpfs (or, on a full one, raise SIGBUS).
  std::vector<Entry> found;
  if (!fresh) {
    found.resize(kEntries);
    const size_t want = kEntries * sizeof(Entry);
    if (pread(fd, found.data(), want, kHeaderBytes) !=
        static_cast<ssize_t>(want)) {
      return fail("read");
    }
  }
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return fail("map");
  std::unique_ptr<RequestJournal> journal(
      new RequestJournal(fd, map, bytes, identity, max_volumes));
  if (fresh) {
    Header& header = *static_cast<Header*>(map);
    header.layout_version = kJournalLayoutVersion;
    header.entry_count = kEntries;
    header.entry_bytes = sizeof(Entry);
    header.pool_id_high = identity.high;
    header.pool_id_low = identity.low;
    std::atomic_ref<uint64_t>(header.magic)
        .store(kJournalMagic, std::memory_order_release);
    r.reset_reason = std::move(reset_reason);
    return journal;
  }

  // Resolve what the last owner left in flight, and drop what is no add.
  // Only entries that are not FREE are written to (their pages hold data).
  uint64_t newest_batch = 0;
  uint64_t newest_entry = kEntries - 1;  // so the cursor starts at 0
  std::vector<uint64_t> indices;
  // (batch, entry, was PENDING) of every entry kept.
  std::vector<std::tuple<uint64_t, uint64_t, bool>> kept;
  for (uint64_t i = 0; i < kEntries; ++i) {
    const Entry& e = found[i];
    const EntryState state = StateOf(e.state);
    if (state == kFree) continue;
    // Its pages were allocated when it was first used.
    journal->allocated_[i].store(true, std::memory_order_relaxed);
    if (state == kWriting) {
      journal->StoreState(i, kFree);
      ++r.resolved_failed;
      continue;
    }
    // A batch the pool has not handed out is an add it never made.
    if (!e.Problem(max_volumes).empty() || BatchOf(e.state) >= next_batch) {
      journal->StoreState(i, kFree);
      ++r.dropped_invalid;
      continue;
    }
    indices.assign(e.indices, e.indices + e.count);
    const uint64_t batch = BatchOf(e.state);
    if (state == kPending) {
      if (!committed(batch, indices)) {
        journal->StoreState(i, kFree);
        ++r.resolved_failed;
        continue;
      }
      ++r.resolved_committed;
    }
    journal->StoreState(i, StateWord(kCommitted, batch));
    kept.emplace_back(batch, i, state == kPending);
    ++r.committed;
    if (batch >= newest_batch) {
      newest_batch = batch;
      newest_entry = i;
    }
    if (recorded != nullptr) {
      RecordedAdd add;
      add.key = RequestKey{e.key_high, e.key_low};
      add.count = e.count;
      if (e.first_index != kNoFirstIndex) add.first_index = e.first_index;
      add.info.assign(e.info, e.info_size);
      add.indices = indices;
      add.batch = batch;
      add.recorded_unix_ns = e.recorded_unix_ns;
      recorded->push_back(std::move(add));
    }
  }
  // A batch is one add's: two entries of one batch are a damaged file (or
  // pages a host crash kept from two times), and which of them is the
  // batch's add cannot be told. Keep neither (Verify allows one at most).
  std::sort(kept.begin(), kept.end());
  for (size_t k = 0; k < kept.size(); ++k) {
    const auto& [batch, i, pending] = kept[k];
    if ((k == 0 || std::get<0>(kept[k - 1]) != batch) &&
        (k + 1 == kept.size() || std::get<0>(kept[k + 1]) != batch)) {
      continue;
    }
    journal->StoreState(i, kFree);
    --r.committed;
    if (pending) --r.resolved_committed;
    ++r.dropped_invalid;
    if (recorded != nullptr) {
      std::erase_if(*recorded,
                    [b = batch](const RecordedAdd& a) { return a.batch == b; });
    }
  }
  if (recorded != nullptr) {
    std::sort(recorded->begin(), recorded->end(),
              [](const RecordedAdd& a, const RecordedAdd& b) {
                return a.batch < b.batch;
              });
  }
  // Go on after the entry claimed last, as the header records it, unless
  // an entry holds a batch claimed after the header's record (by an
  // earlier build, which keeps none): then after the newest batch's, and
  // the header says so from now on.
  Header& header = *static_cast<Header*>(map);
  uint64_t cursor = header.next_claim % kEntries;
  if (header.next_claim == 0 || newest_batch > header.claimed_batch_max) {
    cursor = (newest_entry + 1) % kEntries;
    header.claimed_batch_max = newest_batch;
  }
  // Recorded in [1, kEntries] (0 is none): far from wrapping however many
  // claims follow, whatever a damaged header held.
  header.next_claim = cursor == 0 ? kEntries : cursor;
  journal->cursor_.store(header.next_claim, std::memory_order_relaxed);
  return journal;
}

absl::StatusOr<uint64_t> RequestJournal::Begin(
    const RequestKey& key, uint64_t batch, uint64_t count,
    std::optional<uint64_t> first_index, absl::string_view info,
    std::span<const uint64_t> indices) {
  for (uint64_t scanned = 0; scanned < kEntries; ++scanned) {
    // Relaxed: the cursor only spreads entries in ring order; the CAS
    // decides.
    const uint64_t claim = cursor_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t i = claim % kEntries;
    uint64_t word = states_[i].load(std::memory_order_relaxed);
    const EntryState state = StateOf(word);
    if (state != kFree && state != kCommitted) continue;  // an add in flight
    // Acquire: the entry's last user's writes (published by its release
    // store of COMMITTED or FREE) happen before ours. The entry is this
    // thread's from here.
    if (!states_[i].compare_exchange_strong(word, StateWord(kWriting, batch),
                                            std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
      continue;
    }
    const uint64_t offset = kHeaderBytes + i * sizeof(Entry);
    if (!allocated_[i].load(std::memory_order_relaxed)) {
      // First use in this process: give the entry its pages now, so that
      // no store to the mapping can fault on a full file system. Zeros
      // written over this entry alone (posix_fallocate's fallback, where
      // the file system has no fallocate, would write to the neighbours'
      // bytes too, which their adds may be writing).
      if (!WriteZeros(fd_, offset, sizeof(Entry))) {
        const absl::Status s = ErrnoError(
            "allocate an entry of the request journal (is its file system "
            "full?)");
        states_[i].store(word, std::memory_order_release);  // as it was
        return s;
      }
      allocated_[i].store(true, std::memory_order_relaxed);
    }
    // The claim in the header first: no entry records a claim it lacks.
    Header& header = *static_cast<Header*>(map_);
    RaiseTo(header.next_claim, claim + 1);
    RaiseTo(header.claimed_batch_max, batch);
    Entry& e = EntryAt(i);
    // WRITING in the file first, by an exchange whose acquire keeps the
    // field stores below from passing it (ThreadSanitizer models no
    // fence): a crash from here reads the entry as free, whatever it held
    // before.
    std::atomic_ref<uint64_t>(e.state).exchange(StateWord(kWriting, batch),
                                                std::memory_order_acq_rel);
    e.key_high = key.high;
    e.key_low = key.low;
    e.count = count;
    e.first_index = first_index.value_or(kNoFirstIndex);
    e.info_size = info.size();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    e.recorded_unix_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
    std::memcpy(e.info, info.data(), info.size());
    std::memset(e.info + info.size(), 0, kMaxInfoBytes - info.size());
    for (uint64_t k = 0; k < count; ++k) {
      e.indices[k] = static_cast<uint32_t>(indices[k]);
    }
    StoreState(i, StateWord(kPending, batch));
    return i;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "every one of the ", kEntries,
      " request journal entries belongs to an add in flight; retry"));
}

void RequestJournal::Commit(uint64_t entry, uint64_t batch) {
  // Release (StoreFileState): after the slots' PUSHING stores. The
  // in-memory state stays PENDING: the entry is the add's until Finish,
  // since a failed push still writes to it.
  StoreFileState(entry, StateWord(kCommitted, batch));
}

void RequestJournal::Finish(uint64_t entry, uint64_t batch) {
  // Release: a Begin that claims the entry (acquire) writes the file after
  // this add's Commit has.
  states_[entry].store(StateWord(kCommitted, batch), std::memory_order_release);
}

void RequestJournal::Uncommit(uint64_t entry, uint64_t batch) {
  // The caller's stores that must follow it (the slots going back to
  // ADDING) are release stores, which nothing before them passes.
  StoreFileState(entry, StateWord(kPending, batch));
}

void RequestJournal::Forget(uint64_t entry) { StoreState(entry, kFree); }

absl::StatusOr<uint64_t> RequestJournal::Verify() const {
  const Header& h = *static_cast<const Header*>(map_);
  if (h.magic != kJournalMagic || h.layout_version != kJournalLayoutVersion ||
      h.entry_count != kEntries || h.entry_bytes != sizeof(Entry)) {
    return absl::DataLossError(
        absl::StrCat("request journal: the header is not one of layout ",
                     kJournalLayoutVersion, " (magic ", absl::Hex(h.magic),
                     ", layout ", h.layout_version, ", ", h.entry_count,
                     " entries of ", h.entry_bytes, " bytes)"));
  }
  if (h.pool_id_high != identity_.high || h.pool_id_low != identity_.low) {
    return absl::DataLossError(
        "request journal: the header names another pool than the one it "
        "was opened for");
  }
  uint64_t committed = 0;
  std::vector<std::pair<uint64_t, uint64_t>> batches;  // (batch, entry)
  for (uint64_t i = 0; i < kEntries; ++i) {
    const auto bad = [i](auto&&... what) {
      return absl::DataLossError(
          absl::StrCat("request journal entry ", i, ": ", what...));
    };
    // Acquire: the store that set it was the last to touch the entry.
    const uint64_t memory = states_[i].load(std::memory_order_acquire);
    const EntryState memory_state = StateOf(memory);
    if (memory_state == kWriting) {
      return bad("is WRITING: a Begin runs or stopped in it");
    }
    if (!allocated_[i].load(std::memory_order_relaxed)) {
      // Never used since Open found it FREE: its pages may be a hole, and
      // reading them through the mapping would allocate them.
      if (memory_state != kFree) {
        return bad("is ", StateName(memory_state),
                   " but its pages were never allocated");
      }
      continue;
    }
    const Entry& e = EntryAt(i);
    // Acquire: the fields stored before it (REQUIRES: no writer runs).
    const uint64_t file = std::atomic_ref<uint64_t>(EntryAt(i).state)
                              .load(std::memory_order_acquire);
    const EntryState file_state = StateOf(file);
    const bool matches = file == memory || (memory_state == kPending &&
                                            BatchOf(file) == BatchOf(memory) &&
                                            file_state == kCommitted);
    if (!matches) {
      return bad("is ", StateName(file_state), " of batch ", BatchOf(file),
                 " in the file but ", StateName(memory_state), " of batch ",
                 BatchOf(memory), " in memory");
    }
    if (file_state == kFree) continue;
    if (const std::string problem = e.Problem(max_volumes_); !problem.empty()) {
      return bad("records no add: ", problem);
    }
    if (BatchOf(file) > h.claimed_batch_max) {
      return bad("records batch ", BatchOf(file),
                 ", above the largest the header says was claimed, ",
                 h.claimed_batch_max);
    }
    batches.emplace_back(BatchOf(file), i);
    if (file_state == kCommitted) ++committed;
  }
  std::sort(batches.begin(), batches.end());
  for (size_t k = 1; k < batches.size(); ++k) {
    if (batches[k].first == batches[k - 1].first) {
      return absl::DataLossError(absl::StrCat(
          "request journal entries ", batches[k - 1].second, " and ",
          batches[k].second, " both record batch ", batches[k].first));
    }
  }
  return committed;
}

}  // namespace groove
