#include "groove/request_journal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "absl/strings/str_cat.h"
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

// An unset first_index.
constexpr uint64_t kNoFirstIndex = ~uint64_t{0};

uint64_t RoundUp(uint64_t x, uint64_t to) { return (x + to - 1) / to * to; }

}  // namespace

// Header is the file's first page. Fields are written once, when the file
// is created or emptied; `magic` last.
struct RequestJournal::Header {
  uint64_t magic;           // kJournalMagic once the rest is written
  uint64_t layout_version;  // kJournalLayoutVersion
  uint64_t entry_count;     // kEntries
  uint64_t entry_bytes;     // sizeof(Entry)
  uint64_t pool_device;     // Identity of the metadata object
  uint64_t pool_inode;
};

// Entry is one add. Only `state` is shared between threads: the thread
// whose CAS takes the entry to WRITING owns the other fields until it
// publishes them with the release store of PENDING; they are read only by
// Open and CommittedAdds, when no add runs.
struct RequestJournal::Entry {
  std::atomic<uint64_t> state;  // StateWord(state, batch)
  uint64_t key_high;
  uint64_t key_low;
  uint64_t count;        // in [1, kMaxVolumesPerAdd]
  uint64_t first_index;  // or kNoFirstIndex
  uint64_t info_size;    // <= kMaxInfoBytes
  char info[kMaxInfoBytes];
  uint32_t indices[kMaxVolumesPerAdd];  // the first `count`, ascending
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);

RequestJournal::RequestJournal(int fd, void* map, uint64_t map_bytes)
    : fd_(fd), map_(map), map_bytes_(map_bytes) {
  static_assert(std::is_standard_layout_v<Entry>);
  static_assert(sizeof(Header) <= kHeaderBytes);
  static_assert(offsetof(Entry, state) == 0);
  static_assert(sizeof(Entry) % alignof(Entry) == 0);
  static_assert(sizeof(Entry) == 48 + kMaxInfoBytes + 4 * kMaxVolumesPerAdd);
  static_assert(testing::kJournalEntryOffset == kHeaderBytes);
  static_assert(testing::kJournalEntryCountOffset == offsetof(Entry, count));
}

RequestJournal::~RequestJournal() {
  munmap(map_, map_bytes_);
  close(fd_);
}

RequestJournal::Entry& RequestJournal::EntryAt(uint64_t entry) const {
  return reinterpret_cast<Entry*>(static_cast<std::byte*>(map_) +
                                  kHeaderBytes)[entry];
}

absl::StatusOr<std::unique_ptr<RequestJournal>> RequestJournal::Open(
    const std::string& path, const Identity& identity, uint64_t max_volumes,
    const Committed& committed, OpenReport* report) {
  OpenReport local;
  OpenReport& r = report != nullptr ? *report : local;
  r = OpenReport();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(absl::StrCat("open request journal ", path));
  auto fail = [&](absl::string_view what) {
    absl::Status s = ErrnoError(absl::StrCat(what, " request journal ", path));
    close(fd);
    return s;
  };
  struct stat st;
  struct statfs fs;
  if (fstat(fd, &st) != 0 || fstatfs(fd, &fs) != 0) return fail("stat");
  // Whole blocks: a file system of huge pages (hugetlbfs) sizes files in
  // them.
  const uint64_t block = std::max<uint64_t>(fs.f_bsize, 4096);
  const uint64_t bytes =
      RoundUp(kHeaderBytes + kEntries * sizeof(Entry), block);

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
    } else if (h.pool_device != identity.device ||
               h.pool_inode != identity.inode) {
      reset_reason =
          "it belongs to an earlier pool of this name (the pool "
          "was re-created)";
    }
  }
  const bool fresh = r.created || !reset_reason.empty();
  if (fresh) {
    // Empty it, then size and allocate it whole, then write the header,
    // the magic last: a crash meanwhile leaves a file without the magic,
    // which the next Open empties again.
    if (ftruncate(fd, 0) != 0 ||
        ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      return fail("size");
    }
    if (const int err = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
        err != 0) {
      errno = err;
      return fail("allocate");
    }
  }
  void* map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return fail("map");
  std::unique_ptr<RequestJournal> journal(new RequestJournal(fd, map, bytes));
  Header& header = *static_cast<Header*>(map);
  if (fresh) {
    header.layout_version = kJournalLayoutVersion;
    header.entry_count = kEntries;
    header.entry_bytes = sizeof(Entry);
    header.pool_device = identity.device;
    header.pool_inode = identity.inode;
    std::atomic_ref<uint64_t>(header.magic)
        .store(kJournalMagic, std::memory_order_release);
    r.reset_reason = std::move(reset_reason);
    return journal;
  }

  // Resolve what the last owner left in flight, and drop what is no add.
  uint64_t newest_batch = 0;
  uint64_t newest_entry = kEntries - 1;  // so the cursor starts at 0
  std::vector<uint64_t> indices;
  for (uint64_t i = 0; i < kEntries; ++i) {
    Entry& e = journal->EntryAt(i);
    // Relaxed: no other thread runs (the owner's lock is held).
    const uint64_t word = e.state.load(std::memory_order_relaxed);
    const EntryState state = StateOf(word);
    if (state == kFree) continue;
    if (state == kWriting) {
      e.state.store(kFree, std::memory_order_relaxed);
      ++r.resolved_failed;
      continue;
    }
    bool valid = e.count >= 1 && e.count <= kMaxVolumesPerAdd &&
                 e.info_size <= kMaxInfoBytes;
    indices.clear();
    for (uint64_t k = 0; valid && k < e.count; ++k) {
      // Ascending, in the pool, and the asked-for range when there was one.
      valid =
          e.indices[k] < max_volumes &&
          (k == 0 || e.indices[k] > e.indices[k - 1]) &&
          (e.first_index == kNoFirstIndex || e.indices[k] == e.first_index + k);
      indices.push_back(e.indices[k]);
    }
    if (!valid) {
      e.state.store(kFree, std::memory_order_relaxed);
      ++r.dropped_invalid;
      continue;
    }
    if (state == kPending) {
      if (!committed(BatchOf(word), indices)) {
        e.state.store(kFree, std::memory_order_relaxed);
        ++r.resolved_failed;
        continue;
      }
      e.state.store(StateWord(kCommitted, BatchOf(word)),
                    std::memory_order_relaxed);
      ++r.resolved_committed;
    }
    ++r.committed;
    if (BatchOf(word) >= newest_batch) {
      newest_batch = BatchOf(word);
      newest_entry = i;
    }
  }
  journal->cursor_.store((newest_entry + 1) % kEntries,
                         std::memory_order_relaxed);
  return journal;
}

std::vector<RecordedAdd> RequestJournal::CommittedAdds() const {
  std::vector<RecordedAdd> adds;
  for (uint64_t i = 0; i < kEntries; ++i) {
    const Entry& e = EntryAt(i);
    // Acquire: pairs with Commit's release (fields written before it).
    const uint64_t word = e.state.load(std::memory_order_acquire);
    if (StateOf(word) != kCommitted) continue;
    RecordedAdd add;
    add.key = RequestKey{e.key_high, e.key_low};
    add.count = e.count;
    if (e.first_index != kNoFirstIndex) add.first_index = e.first_index;
    add.info.assign(e.info, e.info_size);
    add.indices.assign(e.indices, e.indices + e.count);
    add.batch = BatchOf(word);
    adds.push_back(std::move(add));
  }
  std::sort(adds.begin(), adds.end(),
            [](const RecordedAdd& a, const RecordedAdd& b) {
              return a.batch < b.batch;
            });
  return adds;
}

absl::StatusOr<uint64_t> RequestJournal::Begin(
    const RequestKey& key, uint64_t batch, uint64_t count,
    std::optional<uint64_t> first_index, absl::string_view info,
    std::span<const uint64_t> indices) {
  for (uint64_t scanned = 0; scanned < kEntries; ++scanned) {
    // Relaxed: the cursor only spreads entries in ring order; the CAS
    // decides.
    const uint64_t i =
        cursor_.fetch_add(1, std::memory_order_relaxed) % kEntries;
    Entry& e = EntryAt(i);
    uint64_t word = e.state.load(std::memory_order_relaxed);
    const EntryState state = StateOf(word);
    if (state != kFree && state != kCommitted) continue;  // an add in flight
    // Acquire: the entry's last user's writes (published by its release
    // store of COMMITTED or FREE) happen before ours. The fields are this
    // thread's from here; a crash reads WRITING as free, and the release
    // store of PENDING publishes them.
    if (!e.state.compare_exchange_strong(word, StateWord(kWriting, batch),
                                         std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      continue;
    }
    e.key_high = key.high;
    e.key_low = key.low;
    e.count = count;
    e.first_index = first_index.value_or(kNoFirstIndex);
    e.info_size = info.size();
    std::memcpy(e.info, info.data(), info.size());
    std::memset(e.info + info.size(), 0, kMaxInfoBytes - info.size());
    for (uint64_t k = 0; k < count; ++k) {
      e.indices[k] = static_cast<uint32_t>(indices[k]);
    }
    // Release: an entry read as PENDING has its fields (Open after a
    // crash reads the page cache, which holds every store made before).
    e.state.store(StateWord(kPending, batch), std::memory_order_release);
    return i;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "every one of the ", kEntries,
      " request journal entries belongs to an add in flight; retry"));
}

void RequestJournal::Commit(uint64_t entry, uint64_t batch) {
  // Release: ordered after the slots' PUSHING stores (program order on
  // this thread; release keeps the compiler from sinking them below).
  EntryAt(entry).state.store(StateWord(kCommitted, batch),
                             std::memory_order_release);
}

void RequestJournal::Uncommit(uint64_t entry, uint64_t batch) {
  // Relaxed: the caller's stores that must follow it (the slots going
  // back to ADDING) are release stores, which nothing before them passes.
  EntryAt(entry).state.store(StateWord(kPending, batch),
                             std::memory_order_relaxed);
}

void RequestJournal::Forget(uint64_t entry) {
  // Release: the entry's last use happens before its next owner's writes.
  EntryAt(entry).state.store(kFree, std::memory_order_release);
}

}  // namespace groove
