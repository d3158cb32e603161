// groove/request_journal.h: the adds a pool's owner made under a caller's
// request key, recorded so that they survive the owner's restart and crash.
//
// A caller that may lose an add's answer (a broken connection, a server
// killed or restarted during the call) gives the add a 128-bit key (the
// server's AddVolumeRequest.request_id). Repeating the add with the same
// key must then return the first add's volumes instead of adding again,
// also after the owner restarted. The owner keeps the keys of its recent
// adds in memory (the server's RequestLog); this journal is what survives
// it: DIR/NAME.requests beside the pool's metadata object (in
// /dev/shm/groove-volumed when DIR is a hugetlbfs: NamedPool::JournalPath),
// a sparse file of kEntries fixed-size entries, each one add: its key, its
// arguments, its batch and the indices it claimed.
//
// An entry is tied to its add's commit (NamedPool::AddVolumes, and
// docs/ARCHITECTURE.md §9, "The request journal"):
//
//   FREE --Begin--> WRITING --(fields written)--> PENDING
//   PENDING --Commit--> COMMITTED        (after the slots turn PUSHING,
//                                          before the push)
//   COMMITTED --Uncommit--> PENDING      (the push failed; before the
//                                          slots go back to ADDING)
//   PENDING/WRITING --Forget--> FREE     (the add failed and is undone)
//   COMMITTED --Begin of a newer add--> WRITING (the oldest is reused,
//                                          once its add has Finished)
//
// Those are the file's states. An entry belongs to its add from Begin to
// Finish (the push done) or Forget: until then no other add may take it,
// even COMMITTED, since a push that fails after the commit still writes to
// it (Uncommit, Forget).
//
// So a COMMITTED entry's add happened; a PENDING one's happened if and only
// if recovery rolled its batch forward, which the pool's slots say after
// recovery (its indices MAPPED with its batch): Open asks the caller. A
// WRITING entry's add had not committed (the entry is written before the
// commit). The journal is written through a shared mapping: a killed
// process's stores are in the page cache, in program order. Like the
// metadata object, it is not synced to disk: a host crash keeps what the
// file system kept.
//
// Identity. The journal records the id of the pool it belongs to (128
// random bits the pool's metadata object holds, NamedPool draws them). A
// pool re-created (--recreate, a lost store, a metadata object removed by
// hand) has a new id, and its old journal, naming the old one, is emptied
// when opened: its entries name volumes of a pool that is gone. (A file's
// device and inode would not do: a disk file system hands a freed inode
// number to the next file at once.)
//
// Example (the owner; NamedPool does this):
//   auto journal = RequestJournal::Open(path, identity, max_volumes,
//                                       committed, &report, &recorded);
//   auto entry = (*journal)->Begin(key, batch, count, first, info, indices);
//   ... slots PUSHING ...  (*journal)->Commit(*entry, batch);  ... push ...
//   (*journal)->Finish(*entry, batch);    // or, the push failed:
//   (*journal)->Uncommit(*entry, batch);  ... slots ADDING, freed ...
//   (*journal)->Forget(*entry);

#ifndef GROOVE_REQUEST_JOURNAL_H_
#define GROOVE_REQUEST_JOURNAL_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace groove {

// RequestKey is a caller's 128-bit key for one add. All zeros is a key like
// any other; an add without a key is not journaled at all.
struct RequestKey {
  uint64_t high = 0;
  uint64_t low = 0;
  bool operator==(const RequestKey&) const = default;
};

// RecordedAdd is a committed add that carried a key, as the journal holds
// it: the arguments it was called with and the volumes it added.
struct RecordedAdd {
  RequestKey key;
  uint64_t count = 0;
  std::optional<uint64_t> first_index;
  std::string info;
  std::vector<uint64_t> indices;  // ascending, `count` of them
  uint64_t batch = 0;             // the add's batch: later adds, larger
  // When it was recorded (CLOCK_REALTIME), to order the adds of several
  // pools' journals (a server keeps the newest of an id).
  int64_t recorded_unix_ns = 0;
};

class RequestJournal {
 public:
  // Entries in a journal: the adds with keys it remembers, per pool. A new
  // add reuses the entry of the oldest committed one.
  static constexpr uint64_t kEntries = 1024;
  // The most volumes one journaled add may claim (the server's per-request
  // maximum is the same number).
  static constexpr uint64_t kMaxVolumesPerAdd = 1024;
  // The longest info an entry holds (a volume header's).
  static constexpr uint64_t kMaxInfoBytes = 480;
  // The largest index an entry holds: indices are stored in 32 bits (a
  // pool has at most 2^30 volumes).
  static constexpr uint64_t kMaxIndex = 0xffffffffu;

  // The pool a journal belongs to: its random id (NamedPool::pool_id).
  struct Identity {
    uint64_t high = 0;
    uint64_t low = 0;
    friend bool operator==(const Identity&, const Identity&) = default;
  };

  // OpenReport says what Open found.
  struct OpenReport {
    bool created = false;  // there was no journal: a new, empty one
    // Why an existing journal was emptied: of another size or layout, its
    // creation not completed, or another metadata object's (a re-created
    // pool). Empty when it was kept (or created). NamedPool::Open also
    // sets it when the journal was missing (created) for a pool that had
    // made adds: their ids are lost the same way.
    std::string reset_reason;
    uint64_t committed = 0;           // adds found committed (kept)
    uint64_t resolved_committed = 0;  // of them, PENDING ones rolled forward
    uint64_t resolved_failed = 0;     // PENDING/WRITING ones freed
    uint64_t dropped_invalid = 0;     // entries that are no add's, or of one
                                      // batch with another: freed
  };

  // Committed answers, for a PENDING entry of `batch` that claimed
  // `indices`, whether recovery rolled that add forward.
  using Committed =
      std::function<bool(uint64_t batch, std::span<const uint64_t> indices)>;

  // Open opens the journal at `path` (creating it, mode 0600, as a sparse
  // file: an entry's pages are allocated when it is first used; a path
  // that is a symbolic link or not a regular file is refused), empties
  // it when it is not this pool's (see Identity) or not a journal,
  // resolves its PENDING entries with `committed`, and frees its WRITING
  // ones, the ones that are no add's (a count outside
  // [1, kMaxVolumesPerAdd], indices not ascending or at or above
  // `max_volumes`, an info longer than kMaxInfoBytes, a batch at or above
  // `next_batch`: the pool's next, so an add it never made, which a host
  // crash can leave when the journal's page outlived the metadata's) and,
  // counted with
  // those, every entry it would keep whose batch another one it would keep
  // also records (a damaged file: which is the batch's add cannot be told;
  // found by the journal fuzzer). Begin then goes on after the entry
  // claimed last, as the header records it (after the newest batch's when
  // it records none, or when an entry holds a batch above the largest it
  // says was claimed: an earlier build's, which keeps no record; the
  // header then records that). `report` (optional) says what it found;
  // `recorded` (optional) receives the committed adds, oldest (lowest
  // batch) first.
  // REQUIRES: the caller owns the pool (holds its lock) and has recovered
  // it, no other journal object is open on `path`, and `path` is not on a
  // hugetlbfs (which has no sparse files and no write(2)).
  // Errors: FAILED_PRECONDITION (not a regular file),
  // INTERNAL/PERMISSION_DENIED/RESOURCE_EXHAUSTED (system calls: open,
  // fstat, ftruncate, pwrite of the header's page, pread, mmap; the message
  // names the file).
  // Thread safety: call once, before any other method. Cost: one read of
  // the file (kEntries entries, about 4.5 MiB: holes read as zeros and
  // stay holes).
  static absl::StatusOr<std::unique_ptr<RequestJournal>> Open(
      const std::string& path, const Identity& identity, uint64_t max_volumes,
      uint64_t next_batch, const Committed& committed, OpenReport* report,
      std::vector<RecordedAdd>* recorded);

  // kAnyBatch, as Open's next_batch, drops no entry for its batch: every
  // batch a state word holds (62 bits) is below it.
  static constexpr uint64_t kAnyBatch = uint64_t{1} << 62;

  ~RequestJournal();
  RequestJournal(const RequestJournal&) = delete;
  RequestJournal& operator=(const RequestJournal&) = delete;

  // Begin records that the add of `batch` with `key` and these arguments
  // has claimed `indices` and is about to commit: the entry is PENDING when
  // it returns, and the add's until Finish or Forget. It reuses entries in
  // ring order, skipping those of adds in flight (Begun, not yet Finished
  // or Forgotten), so the one reused is the finished add recorded longest
  // ago; the file's header records where it claimed (a reopened journal
  // goes on from there).
  // An entry's first use in this process allocates its pages (a pwrite of
  // zeros over the entry alone, so no neighbour's bytes are touched), so
  // that no store to the mapping can fault.
  // REQUIRES: indices.size() == count, in [1, kMaxVolumesPerAdd]; each
  // index <= kMaxIndex; info.size() <= kMaxInfoBytes; the slots of
  // `indices` are not yet PUSHING.
  // Returns the entry's number, for Commit, Uncommit and Forget.
  // Errors: RESOURCE_EXHAUSTED when every entry belongs to an add in
  // flight (kEntries adds with keys at once), or the file system has no
  // room for a first-used entry's pages (ENOSPC); nothing is recorded.
  // Thread safety: lock-free; safe concurrently with Begin, Commit,
  // Uncommit and Forget of other entries (entries are claimed by a CAS of
  // an in-memory copy of their state). Cost: O(count) stores plus, when
  // entries are taken, one CAS per entry skipped, plus two CAS loops on
  // the header's record.
  absl::StatusOr<uint64_t> Begin(const RequestKey& key, uint64_t batch,
                                 uint64_t count,
                                 std::optional<uint64_t> first_index,
                                 absl::string_view info,
                                 std::span<const uint64_t> indices);

  // Commit marks entry `entry` (PENDING, of `batch`) COMMITTED in the
  // file: its add happened. The entry stays the add's (Finish).
  // REQUIRES: the entry is the caller's (Begin returned it, not yet
  // Finished or Forgotten); every slot of the add is PUSHING, none pushed
  // yet.
  // Thread safety: one release store, to the file; safe concurrently with
  // every method on other entries. Cost: O(1).
  void Commit(uint64_t entry, uint64_t batch);

  // Finish gives entry `entry` (COMMITTED, of `batch`) up: its add is
  // done (pushed), and a later Begin may reuse the entry.
  // REQUIRES: the entry is the caller's and Committed.
  // Thread safety: one release store, to the in-memory state; as Commit.
  // Cost: O(1).
  void Finish(uint64_t entry, uint64_t batch);

  // Uncommit marks entry `entry` (COMMITTED, of `batch`) PENDING again in
  // the file: its add's push failed, and the add is about to be rolled
  // back. REQUIRES: the entry is the caller's and Committed, not Finished;
  // no slot of the add has gone back to ADDING yet, and the caller sends
  // them back with release stores (so that none becomes visible before
  // this one). Thread safety and cost: as Commit.
  void Uncommit(uint64_t entry, uint64_t batch);

  // Forget frees entry `entry` (PENDING: Begun, or Uncommitted): its add
  // failed and is undone (the slots it claimed are free again, or about
  // to be). REQUIRES: the entry is the caller's.
  // Thread safety: two release stores (the file's state, then the
  // in-memory one); as Commit. Cost: O(1).
  void Forget(uint64_t entry);

  // Verify checks the whole journal: the file's header is this pool's
  // journal of this build's layout; every entry's state in the file
  // matches the in-memory one (the same, or COMMITTED/PENDING in the file
  // where an add in flight has committed or uncommitted), and no entry is
  // WRITING; every entry that is not FREE records an add (a count in
  // [1, kMaxVolumesPerAdd], an info of at most kMaxInfoBytes, ascending
  // indices below the pool's max_volumes that begin at its first_index
  // when it had one), of a batch the header says was claimed, and its
  // pages are allocated; no two entries that are not FREE record one
  // batch. Returns the number of COMMITTED entries.
  // Errors: DATA_LOSS naming the entry and what is wrong.
  // REQUIRES: no other method of this journal runs meanwhile (adds may be
  // in flight between calls, as a test's single thread leaves them).
  // Thread safety: none with the journal's writers; a test's check. Cost:
  // O(kEntries + the volumes recorded); reads only the pages of entries
  // used (allocated), so it allocates none.
  absl::StatusOr<uint64_t> Verify() const;

 private:
  struct Header;
  struct Entry;

  RequestJournal(int fd, void* map, uint64_t map_bytes,
                 const Identity& identity, uint64_t max_volumes);
  Entry& EntryAt(uint64_t entry) const;
  // StoreFileState stores `word` as entry `entry`'s state in the file
  // (release), then calls testing::journal_store_state_hook.
  void StoreFileState(uint64_t entry, uint64_t word);
  // StoreState stores `word` as entry `entry`'s state, in the file, then in
  // memory (release, both): once another Begin can claim the entry from
  // the in-memory state, this thread's file store is done.
  void StoreState(uint64_t entry, uint64_t word);

  int fd_;
  void* map_;
  uint64_t map_bytes_;
  Identity identity_;     // the pool's, as the header records it
  uint64_t max_volumes_;  // the pool's: recorded indices are below it
  // Each entry's state, as Begin may claim entries by: FREE, or COMMITTED
  // once its add has Finished (the file's state then too); WRITING or
  // PENDING while its add is in flight (the file's may be PENDING or
  // COMMITTED meanwhile). Begin claims an entry by a CAS here, before it
  // touches the entry's pages in the file (which may not be allocated
  // yet).
  std::unique_ptr<std::atomic<uint64_t>[]> states_;
  // Whether the entry's pages are known to be allocated (used in this
  // process, or found holding an add by Open).
  std::unique_ptr<std::atomic<bool>[]> allocated_;
  // Where Begin looks for an entry next: entries are reused in ring order,
  // so the oldest goes first. Open sets it after the entry claimed last,
  // which the file's header records (Begin raises the record with each
  // claim): an add takes its batch when it starts and its entry when it
  // commits, so the newest batch's entry need not be the one claimed last.
  std::atomic<uint64_t> cursor_{0};
};

// Layout facts of the journal file, for tests that damage it on purpose,
// and a hook for tests that stop a thread inside it. Not an API:
// request_journal.cc static_asserts that the facts match it.
namespace testing {
// Called by every state change of an entry after its store to the file,
// before its store to the in-memory state if it has one (tests stop a
// thread there to show that no other add can claim the entry meanwhile).
// Null: no call.
inline std::atomic<void (*)(uint64_t entry, uint64_t word)>
    journal_store_state_hook{nullptr};
// The header's record of where Open goes on (a uint64_t: the cursor after
// the entry claimed last, its position + 1 not reduced modulo kEntries; 0
// for none) is at this offset, and the largest batch claimed right after.
inline constexpr uint64_t kJournalNextClaimOffset = 48;
// The first entry (entry 0: a new journal's first add) starts here.
inline constexpr uint64_t kJournalEntryOffset = 4096;
// Entry k starts kJournalEntryBytes after entry k - 1; its state word (a
// uint64_t: state | batch << 2, states FREE 0, WRITING 1, PENDING 2,
// COMMITTED 3) is its first field.
inline constexpr uint64_t kJournalEntryBytes = 4632;
// An entry's count of volumes (a uint64_t) is at this offset in it.
inline constexpr uint64_t kJournalEntryCountOffset = 24;
}  // namespace testing

}  // namespace groove

#endif  // GROOVE_REQUEST_JOURNAL_H_
