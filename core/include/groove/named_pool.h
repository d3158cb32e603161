// groove/named_pool.h: a volume pool that lives in a data directory as
// named objects, survives its processes and can be joined by others.
//
// A pool NAME in data directory DIR is two objects, and the owner's journal:
//
//   DIR/NAME.pool      the metadata object, mapped shared by every join:
//                      the pool header (facts-file layout at offset 0), the
//                      pool's configuration, and a slot table with one
//                      atomic word per index (FREE, ADDING, PUSHING,
//                      MAPPED, REMOVING, QUARANTINED) that records intent
//                      before each step of an add or remove, so recovery
//                      is deterministic.
//   the volume store   a file in which volume i lives at i * volume_size:
//                      DIR/NAME.volumes (normal backing, DIR on tmpfs, or
//                      huge/gigantic, DIR on hugetlbfs), a file in a
//                      directory servers share when DIR is not on the right
//                      filesystem (/dev/shm/groove-volumed/NAME@TAG.volumes,
//                      HUGETLBFS/groove-volumed.NAME@TAG.volumes: TAG is
//                      drawn at random when the pool is created, so pools
//                      of one name in two data directories never share a
//                      store), the PATH of file:PATH, or a hugetlb memfd
//                      when no hugetlbfs mount serves the page size (joined
//                      through /proc/PID/fd/N; it dies with the owner).
//   DIR/NAME.requests  the owner's request journal: the recent adds made
//                      with a caller's key, so that a repeat returns the
//                      first add's volumes across the owner's restarts and
//                      crashes (RequestJournal; data planes never open it).
//                      When DIR is a hugetlbfs, where it would take whole
//                      huge pages, it is /dev/shm/groove-volumed/
//                      NAME@ID.requests (ID: the pool's random id).
//
// Two roles join a pool:
//   - the owner (the server; one at a time, enforced by an flock on the
//     metadata object, and another on the volume store taken before the
//     store is sized or punched) opens or creates it, recovers it, and adds
//     and removes volumes;
//   - data-plane processes join it by directory and name and acquire and
//     release volumes through pool(), lock-free, while the owner adds and
//     removes, and across restarts of the owner.
//
// Volume memory: a data-plane join maps the whole store at once, aligned
// to the page size (MAP_NORESERVE), because it cannot see the owner's adds
// happen; a volume is at volume0 + idx * volume_size. The owner maps no
// volume: it reads and writes headers with pread and pwrite on the store
// (through VolumePool's header hooks), so it never faults a page in, a
// read of a volume being removed reads zeros instead of allocating, and
// giving memory back zaps no page-table entry of the server's (no TLB
// shootdown per remove). hugetlbfs has no write(2): there the store writes
// headers through a mapping of its own (FdVolumeStore::Write).
//
// Example (owner):
//   groove::PoolConfig config{.name = "main", .max_volumes = 64};
//   auto pool = groove::NamedPool::Open("/dev/shm/groove-volumed", config);
//   if (!pool.ok()) return pool.status();
//   auto added = (*pool)->AddVolumes(4, std::nullopt, "tenant=a");
// Example (data plane):
//   auto join = groove::NamedPool::Join("/dev/shm/groove-volumed", "main");
//   groove::VolumeHeader* v = nullptr;
//   if ((*join)->pool().Acquire(&v) == groove::PoolError::kSuccess) ...

#ifndef GROOVE_NAMED_POOL_H_
#define GROOVE_NAMED_POOL_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "groove/backing.h"
#include "groove/free_slot_index.h"
#include "groove/request_journal.h"
#include "groove/store_gate.h"
#include "groove/volume_pool.h"
#include "groove/volume_store.h"

namespace groove {

// PoolConfig is what a pool is created with. Every field but
// initial_volumes is recorded in the metadata object and must match when
// the pool is opened again.
struct PoolConfig {
  std::string name;  // [A-Za-z0-9_.-]{1,64}
  Backing backing;   // what was asked for; see BackingKind
  uint64_t volume_size_bytes = kVolumeDefaultFootprint;  // power of two
  uint64_t max_volumes = 1024;
};

// kMaxStorePathBytes is the longest path the metadata records for a volume
// store: a file:PATH backing's PATH, or DATA_DIR/NAME.volumes. Open refuses
// longer ones (INVALID_ARGUMENT) rather than record a path cut short.
inline constexpr size_t kMaxStorePathBytes = 1023;

// ValidatePoolName returns INVALID_ARGUMENT unless `name` matches
// [A-Za-z0-9_.-]{1,64} and is not "." or "..", so that it cannot escape the
// data directory.
absl::Status ValidatePoolName(absl::string_view name);

// CheckOwnerMemfd checks the file a data-plane Join opened as the store of
// pool `pool_name`, a hugetlb memfd of its owner, through
// /proc/`owner_pid`/fd/`memfd`: once the owner is dead its pid can belong
// to another process, whose fd `memfd` is then some other file. OK only
// when the file is on hugetlbfs (`fs_type`, fstatfs's f_type, is
// HUGETLBFS_MAGIC) and its /proc link name (`link_name`) is the one the
// owner's memfd_create gives it: "/memfd:groove-NAME (deleted)". Else
// FAILED_PRECONDITION saying the owner is gone (start it again). Join calls
// it with what fstatfs and readlink of /proc/self/fd/FD say of the fd it
// opened; it is public so that it can be tested without hugepages.
// Thread safety: a pure function. Cost: O(1).
absl::Status CheckOwnerMemfd(absl::string_view pool_name, int64_t owner_pid,
                             int64_t memfd, uint64_t fs_type,
                             absl::string_view link_name);

// PoolFiles is what the files of a pool in a data directory say of it,
// read without opening, joining or locking the pool
// (NamedPool::FindPools): which
// files it has and how much memory each holds now.
struct PoolFiles {
  std::string name;  // NAME of DATA_DIR/NAME.pool
  // A file of the pool and the bytes it holds (its allocated blocks, not
  // its size: stores and journals are sparse).
  struct File {
    std::string path;
    uint64_t bytes = 0;
  };
  // The metadata object, then the volume store the metadata records and
  // the request journal, each if it exists. A memfd store (hugepages
  // without a hugetlbfs mount) is no file: it died with its owner.
  std::vector<File> files;
  uint64_t volumes_mapped = 0;  // as the metadata last counted them
  // Not empty when the metadata could not be read as a pool's (cut short,
  // another layout version, unreadable): then `files` holds the metadata
  // object alone, and this says why.
  std::string unreadable;
  // held_bytes is the memory all of `files` hold.
  uint64_t held_bytes() const;
};

// VolumeStatus is a mapped volume's state as its header says.
enum class VolumeStatus { kEmpty, kInUse, kCorrupt };

struct VolumeEntry {
  uint64_t index = 0;
  VolumeStatus status = VolumeStatus::kEmpty;
  std::string info;
  // kCorrupt only: the first wrong header field, with the value found and
  // the value wanted (e.g. "header idx is 18, want 17"), or why the header
  // could not be read ("header cannot be read: <the store's error>").
  std::string corruption;
};

struct RemovedVolume {
  uint64_t index = 0;
  std::string info;
};

// ReclaimedVolume is a quarantined volume that ReclaimVolume freed.
struct ReclaimedVolume {
  uint64_t index = 0;
  // What was wrong with its header as it was reclaimed, in the words of
  // ListVolumes' kCorrupt entries (VolumeEntry::corruption): the first bad
  // field with the value found and the value wanted, why it could not be
  // read, or, when the header reads sound now, that it was bad when a pop
  // quarantined it.
  std::string corruption;
};

// PoolSummary is a snapshot of a pool; the counts are approximate while
// operations are in flight (see PoolStats).
struct PoolSummary {
  std::string name;
  uint64_t volume_size_bytes = 0;
  Backing backing_requested;
  BackingKind backing_in_use = BackingKind::kAuto;
  uint64_t page_size_bytes = 0;
  uint64_t max_volumes = 0;
  uint64_t volumes_mapped = 0;  // added and not removed
  uint64_t volumes_empty = 0;   // on the stack
  uint64_t volumes_in_use = 0;  // mapped - empty
  uint64_t capacity_bytes = 0;  // volumes_mapped * volume_size_bytes
  uint64_t empty_bytes = 0;     // volumes_empty * volume_size_bytes
  // Memory of removed volumes not yet given back: their punch waits for an
  // add's allocation in progress (StoreGate). The owner's view; 0 in a
  // data-plane join.
  uint64_t releasing_bytes = 0;
  // Volumes quarantined now: popped with a bad header (by a remove or a
  // data-plane Acquire) since quarantines were recorded (slot QUARANTINED),
  // and not reclaimed (ReclaimVolume). Counted in volumes_mapped and
  // volumes_in_use. Exact when no quarantine or reclaim is in flight, and
  // across restarts (recovery counts the slots). Volumes quarantined by a
  // build before this one stay MAPPED and are not counted (nor
  // reclaimable).
  uint64_t volumes_in_quarantine = 0;
  // Volumes ReclaimVolume freed since the pool was created (kept in the
  // metadata: survives restarts; a re-created pool starts at 0). Only
  // grows. A reclaim whose owner died after it claimed the slot and before
  // it counted is finished by recovery as a remove
  // (RecoveryReport::removes_finished) and not counted here: the slot word
  // REMOVING does not say whose it was.
  uint64_t volumes_reclaimed = 0;
  // Volumes whose memory this process could not give back to the backing
  // since it opened the pool: each volume of a failed punch (GiveBack's
  // fallocate) counts once, whatever freed it (a remove, a reclaim, a
  // failed add's rollback, or recovery while opening). Their indices were
  // freed anyway, their headers marked not a volume; the memory stays
  // allocated in the store, unaccounted for (not in capacity_bytes nor
  // releasing_bytes), until an add takes the index again (its allocation
  // finds the memory there) or the pool's store is re-created. Kept in
  // this process only, not in the shared header: a restart starts it at
  // 0 without giving the memory back (except for a hugetlb memfd store,
  // which dies with its owner). Only grows; relaxed, not for
  // synchronization. The owner's view: 0 in a data-plane join, which
  // never punches.
  uint64_t volumes_not_given_back = 0;
  PoolCounts counts;
  bool locked = false;
  bool store_survives_restart = true;  // false for a hugetlb memfd
};

// RecoveryReport says what opening a pool found and did.
struct RecoveryReport {
  bool created = false;            // a new pool was formatted
  bool lock_was_held = false;      // the previous owner died holding it
  // The volume store was gone (a memfd with its owner, a removed store
  // file, a cleared /dev/shm): the pool was replaced by an empty one, in a
  // new metadata object; joins made before keep the old one.
  bool store_lost = false;
  uint64_t volumes_recovered = 0;  // mapped volumes kept
  // Slots of adds freed: ADDING ones (and their batch's), and committed
  // ones off the stack whose header is not a volume (never pushed, and
  // nothing to push).
  uint64_t adds_rolled_back = 0;
  uint64_t removes_finished = 0;   // half-removed volumes freed
  uint64_t volumes_repushed = 0;   // committed adds pushed by recovery
  // Empty volumes off the stack, left alone: a data-plane Release in
  // flight will push them, or an Acquire in flight has just popped them
  // (or a data-plane process died there). Never a volume an owner's add or
  // remove was working on: their slots say what became of those.
  uint64_t volumes_unresolved = 0;
  // Committed adds recovery would have pushed but whose header is not a
  // sound empty volume's (corrupt): left off the stack, quarantined (slot
  // QUARANTINED: ListVolumes shows them as corrupt, ReclaimVolume frees
  // them), never handed out.
  uint64_t volumes_quarantined = 0;
  // Slots QUARANTINED after recovery (volumes_quarantined included): the
  // pool's volumes_in_quarantine, recounted.
  uint64_t volumes_in_quarantine = 0;
  // Volumes on the stack whose slot said QUARANTINED: a volume quarantined
  // by a pop and then pushed back (a data-plane process released a volume
  // its Acquire returned as corrupt, against Release's contract). Being on
  // the stack, it is the pool's again: its slot is made MAPPED. (A bad
  // header on the stack fails recovery, DATA_LOSS, whatever its slot.)
  // Verify reports such a volume (DATA_LOSS) until recovery.
  uint64_t quarantines_on_stack = 0;
  // Volumes off the stack whose slot said QUARANTINED but whose header
  // reads as a sound empty volume's (mended after the quarantine: nobody
  // holds a volume whose magic says empty; ReclaimVolume refuses them):
  // pushed back and made MAPPED, the pool's again.
  uint64_t quarantines_mended = 0;
  // What opening the request journal found and resolved: adds with keys
  // that were in flight are judged by the slots above (rolled forward:
  // committed; rolled back: forgotten).
  RequestJournal::OpenReport request_journal;
  // Why the request journal could not be opened (a full or unwritable
  // data directory or /dev/shm), or empty. The pool is then served without
  // one: adds with keys are remembered in memory only, until a restart.
  std::string request_journal_error;
};

class NamedPool {
 public:
  struct OpenOptions {
    // Delete and re-create the pool if its metadata does not match the
    // configuration (never done silently).
    bool recreate = false;
    // Tests: wraps the real store (fault injection). Null: the real store.
    std::function<std::unique_ptr<VolumeStore>(std::unique_ptr<VolumeStore>)>
        wrap_store;
    // Tests: where to read /proc/mounts and /sys/kernel/mm/hugepages.
    HostMemory host;
    // Tests: called between the steps of AddVolumes and RemoveVolumes with
    // the step just completed ("add:claimed", "add:allocated",
    // "add:formatted", "add:recorded" (an add with a key: its journal
    // entry written, PENDING), "add:committed" (slots PUSHING; the journal
    // entry still PENDING), "add:uncommitting" (a failed push has sent the
    // batch's first slot back to ADDING, not the others), "add:pushed",
    // "recover:freed-run" (recovery freed one run of slots), "remove:popped",
    // "remove:deallocated", "remove:deferred": the punch was queued for
    // the allocation in progress; "reclaim:claimed": a reclaim's slot is
    // REMOVING, nothing else done; "reclaim:deferred": its punch was
    // queued), when an add's claim finds no room ("add:claim-refused",
    // before it looks for queued punches), before an add waits for the
    // punches removes queued ("add:store-busy": its claim found no room,
    // or it is about to allocate and runs them first), and from
    // inside the owner's pushes and pops
    // (VolumePool's TestHook) with "stack:linked" (a volume's stack link
    // written or read, the CAS not done) and "stack:announced" (a remove's
    // pop announced, not completed), so a crash test can kill the process
    // at each point deterministically; and "verify:walk" at the start of
    // each walk of Verify, inside its window (the stack's top word read).
    std::function<void(absl::string_view step)> step_hook;
    // Told of each failed punch (GiveBack): the volumes [first, first +
    // count) whose memory stays allocated, and the store's error (errno
    // and what it tried). Called after volumes_not_given_back counted
    // them, on the thread that punched: a remove's or a reclaim's, an
    // add's that ran a deferred punch, a failed add's rollback, or Open's
    // recovery (before Open returns). Null: only the count says so.
    // REQUIRES: safe from any thread, several at once; quick, since an add
    // that waits for the punches may wait for it too; must not call back
    // into this pool.
    std::function<void(uint64_t first, uint64_t count,
                       const absl::Status& error)>
        on_give_back_failed;
  };

  // Open opens the pool `config.name` in `data_dir` as its owner, creating
  // the directory (0700) and the pool when they do not exist, and recovers
  // it (see RecoveryReport): in-flight adds are rolled back, half-removed
  // volumes freed, empty volumes that were off the stack pushed again.
  // Then it opens the request journal (DIR/NAME.requests, created when
  // missing, emptied when it belongs to an earlier pool of this name) and
  // settles the adds with keys that were in flight by what recovery did
  // with their slots; TakeRecordedAdds hands out what it holds.
  // Errors: INVALID_ARGUMENT (bad name or geometry: volume_size not a power
  // of two of at least 4096, max_volumes outside [1, 2^30], or more than
  // 2^63 - 1 bytes in max_volumes * volume_size), FAILED_PRECONDITION
  // (metadata of another layout or configuration: says to pass recreate;
  // an explicit backing this host cannot provide: says how to fix it),
  // ALREADY_EXISTS (another owner has it open, or holds the volume store
  // its metadata names: says to stop that owner or re-create one of the
  // two pools), DATA_LOSS (the metadata magic or the pool header's is not
  // a pool's, or the metadata magic is 0 while the slot table holds
  // volumes; the metadata object is cut short: not whole 4 KiB pages, or
  // shorter than its max_volumes needs; it is empty, missing or was never
  // completed while the store its creation would reuse in place holds
  // data (RefuseToCreateOverAStore); the stack or slot table is corrupt;
  // the recorded backing or page size cannot be the pool's; the volume
  // store is shorter than max_volumes * volume_size), INVALID_ARGUMENT
  // also for a file:PATH or DATA_DIR/NAME.volumes longer than
  // kMaxStorePathBytes, INTERNAL/PERMISSION_DENIED (system calls),
  // (A request journal that cannot be opened does not fail Open:
  // RecoveryReport::request_journal_error.) With
  // options.recreate, every DATA_LOSS and FAILED_PRECONDITION of the
  // metadata re-creates the pool instead, emptying its store.
  // Thread safety: call once per pool per process. Cost: O(max_volumes).
  static absl::StatusOr<std::unique_ptr<NamedPool>> Open(
      const std::string& data_dir, const PoolConfig& config,
      OpenOptions options);
  static absl::StatusOr<std::unique_ptr<NamedPool>> Open(
      const std::string& data_dir, const PoolConfig& config) {
    return Open(data_dir, config, OpenOptions());
  }

  // FindPools lists the pools in `data_dir` (every DATA_DIR/NAME.pool whose
  // NAME is a valid pool name), in name order, with their files
  // (PoolFiles): a server lists those it does not serve, whose files keep
  // their memory (hugepages included) until they are deleted. It reads the
  // metadata with pread and stats the files; it never maps, locks or
  // changes anything, so it is safe beside the pools' owners and joins
  // (a pool being created may show as unreadable). Errors: the data
  // directory cannot be listed (NOT_FOUND when it does not exist).
  // With `wanted`, only the pools whose name it accepts are read (the
  // others are not listed). Thread safety: any thread. Cost: a directory
  // listing, then O(1) system calls per pool read.
  static absl::StatusOr<std::vector<PoolFiles>> FindPools(
      const std::string& data_dir);
  static absl::StatusOr<std::vector<PoolFiles>> FindPools(
      const std::string& data_dir,
      absl::FunctionRef<bool(absl::string_view name)> wanted);

  // Join joins an existing pool as a data-plane process: it maps the
  // metadata and the whole volume store and never adds, removes, locks or
  // recovers. Errors: NOT_FOUND (no such pool), FAILED_PRECONDITION (bad
  // metadata: incomplete, a pool its owner is creating, or whose creation
  // never finished: says to join again once the owner serves it; of
  // another layout version than this build's (an owner of another
  // version: says to run a data plane of the owner's
  // version), recording another pool name than `name` (a renamed or copied
  // file: names the recorded one), or a geometry, backing or page size no
  // pool has; a volume store shorter than the pool; a memfd store whose
  // owner is gone: /proc/PID/fd/N cannot be opened, or is no longer the
  // owner's hugetlb memfd because the pid was reused, CheckOwnerMemfd; a
  // store file that is gone: deleted under its owner, or its directory
  // cleared, says to restart the owner), UNAVAILABLE (the owner re-created
  // the pool, or replaced its lost store, as this call joined it: the
  // metadata it opened is the old pool's, which must not be paired with
  // the store it found, perhaps the new pool's; join again),
  // PERMISSION_DENIED (this process may not open the metadata or the store:
  // a pool's files are its owner's, a 0700 directory and objects 0600;
  // names the owner's uid and says to join as it), INTERNAL (other system
  // calls). A refusal changes nothing in the pool.
  // Thread safety: safe to call from any thread. Cost: O(1) system calls
  // (the mappings are made lazily by the kernel).
  static absl::StatusOr<std::unique_ptr<NamedPool>> Join(
      const std::string& data_dir, absl::string_view name);

  // ~NamedPool unmaps the pool (the owner also drops its lock). It first
  // gives back the counter shards this process's threads hold in the pool
  // (VolumePool::ReturnCounterShards).
  // REQUIRES: no thread of this process is operating on the pool, through
  // this object or another one open on the same pool in this process, and
  // the caller has synchronized with the threads that did (joined them).
  ~NamedPool();
  NamedPool(const NamedPool&) = delete;
  NamedPool& operator=(const NamedPool&) = delete;

  // AddVolumes adds `count` volumes carrying `info`: at the lowest free
  // indices, or at [*first_index, *first_index + count). All or nothing:
  // slots are claimed (CAS FREE -> ADDING), memory allocated,
  // headers formatted, the batch committed (slots PUSHING), and only then
  // are the volumes pushed, all with one CAS (VolumePool::PushChainTagged;
  // each slot turns MAPPED once its volume is on the stack); any failure
  // undoes every step and leaves the pool as it was (a push that fails
  // pushed nothing). A crash after the commit is rolled forward by
  // recovery, before it rolled back.
  // Returns the indices added, ascending.
  // With a `key`, the add is recorded in the request journal before it
  // commits, and its record commits with it (RequestJournal): after a
  // restart or a crash of this process at any instant, TakeRecordedAdds of
  // the next Open lists it if and only if its volumes were added (unless
  // the journal could not be opened: RecoveryReport::request_journal_error,
  // or newer adds with keys reused its entry).
  // Errors: INVALID_ARGUMENT (count 0, info over 480 bytes; with a key,
  // count above RequestJournal::kMaxVolumesPerAdd), RESOURCE_EXHAUSTED
  // also when a key's journal entry finds no room (RequestJournal::Begin),
  // OUT_OF_RANGE (range beyond max_volumes), ALREADY_EXISTS (an index in
  // the range is taken), RESOURCE_EXHAUSTED (more than max_volumes asked
  // for without first_index, refused before claiming anything; pool at
  // max_volumes; or no memory: names the sysfs file or mount to grow),
  // FAILED_PRECONDITION
  // (called on a data-plane join), DATA_LOSS
  // (the stack is corrupt), INTERNAL (a header cannot be written to the
  // volume store: says the add was rolled back).
  // Thread safety: safe to call concurrently with every other operation.
  // Blocks its own caller while the kernel allocates (seconds per GiB of
  // hugepages; the kernel also makes it wait for another add's allocation
  // of this pool, on the store's inode lock), and before it allocates,
  // while a remove's punch runs (StoreGate::BeginAllocation). When its
  // claim finds no room while removes' punches are queued, it waits for
  // those and claims again. The last add to end its allocation runs the
  // punches removes queued meanwhile.
  // Cost: O(max_volumes) to find free slots, plus the allocation: one
  // fallocate per run of consecutive indices (a batch at the lowest free
  // indices of a pool without holes is one run), then a read and a write
  // of each header (format), and one more write when the top moved before
  // the push.
  absl::StatusOr<std::vector<uint64_t>> AddVolumes(
      uint64_t count, std::optional<uint64_t> first_index,
      absl::string_view info, std::optional<RequestKey> key = std::nullopt);

  // TakeRecordedAdds returns the adds with keys that the request journal
  // held when Open ran, committed ones only, oldest first (at most
  // RequestJournal::kEntries), and forgets them: a second call returns
  // none. The server seeds its in-memory request log with them, so that a
  // caller repeating an add across a restart gets the first add's answer.
  // The volumes an add lists may have been removed since.
  // Thread safety: call from one thread. Cost: moves a vector.
  std::vector<RecordedAdd> TakeRecordedAdds();

  // VerifyRequestJournal runs the request journal's Verify
  // (RequestJournal::Verify): it returns the number of adds with keys the
  // journal holds as committed. FAILED_PRECONDITION when the pool has no
  // journal (a data-plane join, or RecoveryReport::request_journal_error).
  // REQUIRES: no AddVolumes of this pool runs meanwhile (tests).
  // Thread safety: none with adds. Cost: as RequestJournal::Verify.
  absl::StatusOr<uint64_t> VerifyRequestJournal() const;

  // CheckAddArguments returns the error AddVolumes would return for these
  // arguments whatever the pool holds, or OK: INVALID_ARGUMENT (count 0,
  // info over 480 bytes), RESOURCE_EXHAUSTED (first_index unset and count
  // above max_volumes), OUT_OF_RANGE (first_index set and [first_index,
  // first_index + count) not within [0, max_volumes)), each with the
  // message AddVolumes gives. AddVolumes checks through it; a server calls
  // it to refuse such a request at once instead of queueing it behind
  // slow adds.
  // Thread safety: reads only the configuration; safe from any thread,
  // concurrently with everything. Cost: O(1).
  absl::Status CheckAddArguments(uint64_t count,
                                 std::optional<uint64_t> first_index,
                                 absl::string_view info) const;

  // CheckRangeNotMapped returns ALREADY_EXISTS, with AddVolumes's message,
  // when an index of [first_index, first_index + count) holds a volume
  // (its slot MAPPED: added and not removed; or QUARANTINED, the message
  // then saying to reclaim it) as its slot is read; else OK.
  // A hint for failing fast: a remove may free the index the next instant,
  // and indices being added or removed are not reported (a remove that has
  // returned may have left its punch to an add in progress, and
  // AddVolumes waits for that instead of failing); AddVolumes's claim
  // decides. OK for a range CheckAddArguments refuses.
  // Thread safety: lock-free loads; safe concurrently with everything.
  // Cost: O(count) loads.
  absl::Status CheckRangeNotMapped(uint64_t first_index, uint64_t count) const;

  // RemoveVolumes pops up to `count` empty volumes, gives their memory back
  // and frees their slots. Returns the removed volumes (index and info):
  // the top `count` of the stack (or all of it), ascending by index.
  // Errors: INVALID_ARGUMENT (count 0), FAILED_PRECONDITION (no empty
  // volume at all: says whether the pool has no volumes or how many are
  // mapped, in use and quarantined (volumes_in_quarantine), and that
  // ReclaimVolume frees the quarantined ones; or a data-plane join),
  // DATA_LOSS (a corrupt volume was
  // popped: the message names it and its bad header field, value found and
  // value wanted; it is quarantined (off the stack, slot QUARANTINED,
  // header left as found; ReclaimVolume frees it: the message says so),
  // the good ones popped by this call are put back
  // (VolumePool::PutBackTagged: no counter changes but
  // volumes_quarantined), and the pool is otherwise unchanged, but for a
  // good one whose put-back fails (a header write: an I/O error), which is
  // given back as if removed; or the stack is corrupt).
  // The memory is given back one run of consecutive indices at a time
  // (punched out of the store): before it returns, unless an add of this
  // pool is allocating or another punch runs; then the punch is queued and
  // the last allocation to end runs it, the volumes' indices staying taken
  // until then (an add that needs them waits for the punch). The volumes
  // leave the stack, ListVolumes and volumes_mapped before it returns
  // either way.
  // Thread safety: safe to call concurrently with every other operation;
  // never waits for another add or remove: pops are lock-free, and the
  // punch is made only when nothing else changes the store's memory
  // (StoreGate::GiveBackOrDefer).
  // Cost: O(count log count), plus one read of each header and one punch
  // per run of consecutive indices.
  absl::StatusOr<std::vector<RemovedVolume>> RemoveVolumes(uint64_t count);

  // ReclaimVolume frees the quarantined volume at `index` (its slot
  // QUARANTINED: a pop, by a remove or a data-plane Acquire, found its
  // header bad and left it off the stack): it gives its memory back as
  // RemoveVolumes does (punched out of the store, or the punch queued for
  // an add's allocation in progress: StoreGate::GiveBackOrDefer; the index
  // stays taken until the punch) and frees its slot, so that an AddVolumes
  // may use the index again. Returns the index and what was wrong with its
  // header (ReclaimedVolume::corruption). The volume leaves volumes_mapped,
  // volumes_in_quarantine and ListVolumes before it returns;
  // volumes_reclaimed counts it.
  // REQUIRES: the caller (an admin) vouches that no data-plane process
  // still reads or writes the volume: the pool cannot tell (a quarantined
  // volume is held by no groove party, but a process that popped it with a
  // bad header may still use the memory it was handed).
  // Errors: FAILED_PRECONDITION on a data-plane join; OUT_OF_RANGE for
  // index >= max_volumes; FAILED_PRECONDITION when the volume at `index`
  // is not quarantined, the message saying what is there instead: no
  // volume; a volume being added; a volume being removed (or reclaimed);
  // an empty or in-use volume; or a volume mapped with a bad header that
  // was quarantined before quarantines were recorded (a build before this
  // one, or an old pool), which cannot be reclaimed: re-create the pool to
  // free it. FAILED_PRECONDITION also for a quarantined volume whose header
  // reads as a sound empty volume's now: written after its quarantine, most
  // likely by a data-plane Release that pushed it back (against Release's
  // contract), it may be on the stack, so it is not freed
  // (SoundQuarantineError; the header is read before the slot's CAS, and
  // a write between the two is the admin's to rule out, as is a volume
  // pushed back and then acquired again, whose header reads in use).
  // Nothing is changed by an error.
  // Thread safety: lock-free (one CAS of the slot, QUARANTINED ->
  // REMOVING), safe concurrently with every other operation; of two
  // concurrent reclaims of one index exactly one succeeds. A crash after
  // the CAS is finished by the next Open's recovery (a REMOVING slot is
  // punched and freed).
  // Cost: one header pread, and one punch unless it is queued.
  absl::StatusOr<ReclaimedVolume> ReclaimVolume(uint64_t index);

  // Summary returns a snapshot. Thread safety: wait-free reads.
  PoolSummary Summary() const;

  // StorePath returns the file that holds the pool's volumes, as its
  // metadata records it: "" for a hugetlb memfd (it dies with its owner).
  // A store in a shared directory (/dev/shm/groove-volumed, a hugetlbfs
  // mount) outlives the data directory: whoever deletes a data directory
  // by hand removes it too. Thread safety: safe from any thread (the field
  // is written only while the owner opens the pool). Cost: O(1).
  std::string StorePath() const;

  // pool_id returns the pool's identity: 128 random bits drawn when it is
  // created (or, for a pool made before ids existed, by the first owner
  // that opens it) and kept in its metadata across restarts. A pool
  // re-created under the same name (--recreate, a lost store, files
  // removed by hand) has another, so what is bound to it (the request
  // journal, Inspect's page tokens) is not taken for the new pool's. Never
  // all zeros once an owner has opened the pool (a data-plane join of a
  // pool no owner has opened since may read zeros). Thread safety: safe
  // from any thread (the owner writes it only while it opens the pool).
  // Cost: O(1).
  RequestJournal::Identity pool_id() const;

  // StoreDeleted reports whether the owner's volume store file was deleted
  // (or replaced by another file) under it: StorePath() is gone or names
  // another file than the one the owner opened. Its volumes then live only
  // as long as this process and the data-plane joins that map them: new
  // joins fail, and the owner's next start finds the store lost and the
  // pool empty (RecoveryReport::store_lost). False in data-plane joins and
  // for a hugetlb memfd (which has no name). Thread safety: safe from any
  // thread. Cost: one stat(2).
  bool StoreDeleted() const;

  // kListMaxSlotsScanned is the most slots one ListVolumes call looks at:
  // 64 Ki slot loads, tens of microseconds, so that a page of a sparse pool
  // (max_volumes up to 2^30) costs a bounded amount of work, not a scan of
  // the whole slot table (a reader may list at will).
  static constexpr uint64_t kListMaxSlotsScanned = uint64_t{1} << 16;

  // ListVolumes returns up to `max_entries` mapped volumes with index in
  // [start_index, start_index + kListMaxSlotsScanned), ascending, and sets
  // *next_index to the index to resume from (max_volumes, or start_index
  // when it is not below max_volumes, when the listing is complete). So a
  // call may return fewer than `max_entries` volumes, none even, while
  // more follow: the listing is complete only when *next_index reaches
  // max_volumes. A call that returns `max_entries` volumes resumes right
  // after the last of them, unless no volume follows: it reads on, slot
  // words only and within the same scan bound, and when no slot up to
  // max_volumes is listed, the listing is complete (*next_index is
  // max_volumes). When the bound comes first, it resumes after its last
  // volume all the same, and the next call may return no volume and
  // complete the listing. Volumes in the middle of being added or removed
  // are skipped (and a volume being removed may make a full page resume
  // when none follows). A quarantined volume (slot QUARANTINED) is listed as
  // kCorrupt whatever its header says now: its corruption names the bad field
  // as ReclaimVolume will, or says the header was bad when popped. A mapped
  // volume whose header cannot be read (an I/O error, a store cut short) is
  // listed as kCorrupt, its corruption saying why, never left out. Thread
  // safety: lock-free reads. Cost: O(min( kListMaxSlotsScanned, max_volumes))
  // slot loads, plus one pread per window of small volumes or per larger volume
  // listed (one per volume when a window cannot be read).
  std::vector<VolumeEntry> ListVolumes(uint64_t start_index,
                                       size_t max_entries,
                                       uint64_t* next_index) const;

  // Verify runs the pool's Verify (VolumePool::Verify: lock-free, pausing
  // nobody; ABORTED when pool users kept the stack moving through every
  // walk) and, in the same still window, checks that every volume on the
  // stack has a MAPPED slot (or a PUSHING one: an add has pushed it and not
  // yet marked it MAPPED): DATA_LOSS otherwise, naming a QUARANTINED one (a
  // volume an Acquire returned as corrupt, released anyway: it must not be
  // reclaimed; the owner's next recovery makes it MAPPED). Safe from the
  // owner and from data-plane joins.
  // Every join reads the headers with pread on the store, a data-plane
  // join too (its Acquire and Release use its mapping): a walk overtaken
  // by a remove may read the header of a volume the owner has just punched,
  // and a read through the mapping would fault that page back into the
  // store (tmpfs: memory held; hugetlbfs: a hugepage taken, or SIGBUS);
  // pread reads the hole as zeros and allocates nothing.
  // Cost: O(empty volumes) header preads per walk.
  // With `stop` (VolumePool::StopCheck), asked before each walk and every
  // VolumePool::kVerifyStopCheckSteps volumes of each, Verify returns
  // CANCELLED as soon as it says stop: how long it runs is then the
  // caller's to bound (a walk of a million empty volumes takes about a
  // second).
  absl::StatusOr<VerifyReport> Verify() const;
  absl::StatusOr<VerifyReport> Verify(VolumePool::StopCheck stop) const;

  // pool is the lock-free pool, for Acquire/Release.
  const VolumePool& pool() const { return *pool_; }
  const PoolConfig& config() const { return config_; }
  const RecoveryReport& recovery() const { return recovery_; }
  bool is_owner() const { return owner_; }
  // AllocatedBytes is the memory the volume store holds now.
  absl::StatusOr<uint64_t> AllocatedBytes() const {
    return store_->AllocatedBytes();
  }

 private:
  struct Metadata;  // the layout of the metadata object (named_pool.cc)

  NamedPool(const std::string& data_dir, const PoolConfig& config,
            bool owner);

  absl::Status Map(const std::string& meta_path, bool owner,
                   const OpenOptions* options);
  absl::Status CreateStore(const OpenOptions& options);
  // OpenStore opens the store the metadata records. The owner sets
  // recovery_.store_lost, opening nothing, when it is gone (a hugetlb
  // memfd always is, once its owner has exited).
  // A data-plane join's store is what the path its metadata records names
  // when it opens it: the joined object's own store, or, when the pool is
  // being re-created and the path is reused in place, the new pool's. So
  // it is refused (UNAVAILABLE) once the object is marked replaced
  // (ReplaceMetadata), or when it is gone (FAILED_PRECONDITION).
  absl::Status OpenStore(bool owner, const OpenOptions* options);
  // CheckNotReplaced returns UNAVAILABLE (join again) when an owner
  // re-creating the pool marked the metadata object this join mapped as
  // replaced, else OK. REQUIRES: meta_ mapped. Cost: one load.
  absl::Status CheckNotReplaced() const;
  // IncompleteJoinMessage is a join's FAILED_PRECONDITION message for the
  // metadata object `meta_path`, which `what` says is not complete yet:
  // its owner is creating the pool (or died doing so).
  std::string IncompleteJoinMessage(const std::string& meta_path,
                                    absl::string_view what) const;
  // ReplaceMetadata replaces a pool whose object has content (its store
  // lost, or re-created: --recreate, a creation that never finished) with
  // a new, empty one of config_: a new metadata object (written beside the
  // old one, locked, then renamed over `meta_path`) with a new store
  // (CreateStore, after UnlinkStoresReusedInPlace: a new file even where
  // the path is the same). Data-plane joins made before keep the old
  // metadata and the old store, a pair no owner changes again: the volumes
  // they hold and release never reach the new pool's stack. Releases a
  // maintenance lock the dead owner held on the old pool, if it is one
  // (lock_was_held). REQUIRES: the owner's Map, meta_ the old object
  // mapped whole (flock held), `block` its filesystem's block size.
  absl::Status ReplaceMetadata(const std::string& meta_path, uint64_t block,
                               const OpenOptions& options);
  // CheckStorePath: DATA_LOSS unless `store_path` (from the metadata) is
  // where CreateStore would put this pool's store: the configured
  // file:PATH, DATA_DIR/NAME.volumes, /dev/shm/groove-volumed/NAME@TAG.volumes
  // (normal) or HUGETLBFS/groove-volumed.NAME@TAG.volumes (hugepages), or,
  // as servers before the tag named them, the last two without @TAG.
  absl::Status CheckStorePath(const std::string& store_path) const;
  // StoresReusedInPlace are the files a creation of this pool would open
  // and size in place: DATA_DIR/NAME.volumes, and the file of file:PATH.
  std::vector<std::string> StoresReusedInPlace() const;
  // UnlinkStoresReusedInPlace removes those that exist, so that the
  // creation makes new files, not reformat ones older joins map.
  // ALREADY_EXISTS when another owner holds one (it is left).
  absl::Status UnlinkStoresReusedInPlace() const;
  // RefuseToCreateOverAStore returns DATA_LOSS, naming the files and what
  // to do, when a store this pool's creation would reuse in place
  // (DATA_DIR/NAME.volumes, the file of file:PATH) holds data: the metadata
  // that should record its volumes was lost or cut short, and creating the
  // pool would empty the store; ALREADY_EXISTS when another owner holds
  // that store. Reads only (the store is locked for an instant).
  absl::Status RefuseToCreateOverAStore(const std::string& meta_path) const;
  // CreateTaggedStore creates a new store file NAME@TAG.volumes (after
  // `prefix`) in `dir`, a directory other data directories' servers share:
  // TAG is 16 random hex digits, the file is created with O_EXCL (never one
  // that exists) and locked (flock) as every owner's store is. The path is
  // recorded in the metadata before the file is created. Returns its fd.
  absl::StatusOr<int> CreateTaggedStore(const std::string& dir,
                                        absl::string_view prefix,
                                        std::string* path);
  // IsTaggedStorePath: `store_path` is a name CreateTaggedStore gives this
  // pool (in /dev/shm/groove-volumed or on a hugetlbfs mount).
  bool IsTaggedStorePath(const std::string& store_path) const;
  // RemoveAbandonedStore unlinks `old_path`, the store of the pool this
  // Open re-created, if CreateTaggedStore named it (a name no other pool
  // records), it is not the new store, and no owner holds it. Stores of
  // other names are left: in a shared directory they may be another data
  // directory's.
  void RemoveAbandonedStore(const std::string& old_path);
  absl::Status Recover();
  // WalkStack walks the stack from volume `top` through the link table,
  // checking that each index on it has a MAPPED or PUSHING slot, and marks
  // (*on_stack)[i] for each unless on_stack is null. Returns DATA_LOSS for
  // an index out of range, a cycle or a slot that is not mapped; a
  // QUARANTINED slot is that too, unless on_stack is given (recovery, which
  // makes it MAPPED again). REQUIRES:
  // the maintenance lock is held, or the caller believes the result only
  // if the stack stayed still (VolumePool::Verify's StackCheck: then
  // `still_top` is the top word the walk started from, and the walk stops
  // early, OK, once it sees the top moved, or once `stop`, if given, says
  // stop: Verify asks it again).
  absl::Status WalkStack(uint64_t top, std::vector<bool>* on_stack,
                         std::optional<uint64_t> still_top = {},
                         const VolumePool::StopCheck* stop = nullptr) const;
  // ClaimSlots claims `count` FREE slots (CAS to `slot_value`): those of
  // [*first, *first + count), or the lowest free ones, appending them to
  // *out; on failure it frees what it claimed. ALREADY_EXISTS (an index of
  // the range is taken), RESOURCE_EXHAUSTED (fewer free slots than count).
  // REQUIRES: CheckAddArguments(count, first, ...) is OK.
  absl::Status ClaimSlots(uint64_t count, std::optional<uint64_t> first,
                          uint64_t slot_value, std::vector<uint64_t>* out);
  // IndexTakenError is the ALREADY_EXISTS of an add over index `index`,
  // whose slot word is `slot` (as read by the failed claim): a
  // quarantined volume is named as such, with the way to free it.
  absl::Status IndexTakenError(uint64_t index, uint64_t slot) const;
  void ReleaseClaims(const std::vector<uint64_t>& indices, size_t allocated);
  // FreeSlot turns slot `index` free (release) and tells free_slots_.
  void FreeSlot(uint64_t index);
  // IndexFreeSlots builds free_slots_ from the slot table. REQUIRES: the
  // owner's Open, after recovery, before the pool is used.
  void IndexFreeSlots();
  // SlotRun is a run [first, first + count) of slot indices.
  struct SlotRun {
    uint64_t first;
    uint64_t count;
  };
  // SlotRunsWithData returns, ascending, the runs of indices in
  // [0, end) whose slot words the metadata file holds data for. Every
  // other slot of the range lies in a hole of the file, so it is FREE (0),
  // known without reading it: a read through the mapping would allocate a
  // page of a tmpfs for every 512 slots, 8 bytes of memory per slot of an
  // empty pool. Where the filesystem cannot tell (no SEEK_DATA), the whole
  // range is one run. Thread safety: a snapshot; a slot that gains data
  // meanwhile was FREE when it was taken. Cost: two lseek(2) per run, and
  // on tmpfs a SEEK_HOLE walks every page up to the next hole: for Open's
  // scans only (ListVolumes asks written_slot_pages_).
  std::vector<SlotRun> SlotRunsWithData(uint64_t end) const;
  // The owner's record of which 4 KiB pages of the slot table (512 slots
  // each) hold data, one bit each: built by IndexFreeSlots from the
  // file, set by ClaimSlots before its first write to a page (only a claim
  // writes a slot that was FREE, and so a page that was a hole; pages are
  // never punched again). ListVolumes skips the pages whose bit is clear
  // without a system call. Null in data-plane joins.
  std::unique_ptr<std::atomic<uint64_t>[]> written_slot_pages_;
  void MarkSlotPageWritten(uint64_t index);
  // SlotPageWritten: the page of slot `index` may hold a non-FREE slot
  // (always true without the record). Acquire: pairs with the release of
  // MarkSlotPageWritten, which precedes every write to the page.
  bool SlotPageWritten(uint64_t index) const;
  // GiveBack punches the memory of volumes [first, first + count) out of
  // the store: one fallocate, which also clears their headers (a hole
  // reads as zeros: not a volume). If the punch fails, it marks each
  // header not a volume instead and adds `count` to
  // volumes_not_given_back_ (PoolSummary::volumes_not_given_back) and
  // reports the error to OpenOptions::on_give_back_failed: the caller is
  // not told, since the punch may run on another thread than the remove
  // that asked for it (StoreGate defers it to an add).
  // Thread safety: the store gate orders it against allocations; the
  // count is one relaxed fetch_add (lock-free).
  void GiveBack(uint64_t first, uint64_t count);
  // GiveBackAndFree gives back volumes [first, first + count) (GiveBack),
  // whose slots are REMOVING, and frees their slots: the store gate's
  // give-back. REQUIRES: run by store_gate_ (no allocation and no other
  // give-back in progress).
  void GiveBackAndFree(uint64_t first, uint64_t count);
  // MarkNotAVolume writes kVolumeNotAVolume into volume `index`'s magic
  // (best effort: an I/O error is ignored).
  void MarkNotAVolume(uint64_t index);
  // ReadVolumeHeader copies volume `index`'s header from the store (pread:
  // a hole reads as zeros and stays a hole); false on an I/O error.
  bool ReadVolumeHeader(uint64_t index, VolumeHeader* out) const;
  // ReadHeaderHook and WriteHeaderHook are the owner's VolumePool header
  // hooks (`self` is the NamedPool): the store's Read and Write. A
  // data-plane join has ReadHeaderHook only, for Verify's walk.
  static bool ReadHeaderHook(void* self, uint64_t index, VolumeHeader* out);
  static bool WriteHeaderHook(void* self, uint64_t index, uint64_t offset,
                              const void* bytes, uint64_t size);
  absl::Status WithRemedy(absl::Status status) const;
  // PushCommitted pushes volume `index` of the committed batch `batch`
  // (slot PUSHING) with its link tagged with the batch: a remove's put-back
  // of a volume it popped (an add pushes its batch with one CAS instead),
  // through VolumePool::PutBackTagged, so that the counters show neither
  // the pop nor the push.
  // DATA_LOSS when the stack is corrupt or the header cannot be written
  // (then nothing was pushed and the header is marked not a volume).
  // `top_hint` is the one its FormatRange was given, or kNoTopHint.
  absl::Status PushCommitted(uint64_t index, uint64_t batch, uint64_t top_hint);
  // MarkPushed turns the slot of a volume PushCommitted pushed from
  // PUSHING of `batch` to MAPPED, unless a pop did so already.
  void MarkPushed(uint64_t index, uint64_t batch);
  // ConfirmPushed is every join's VolumePool::TaggedPopHook (`self` is the
  // NamedPool): a pop is about to take volume `index`, pushed with `tag`
  // (the low bits of its add's batch), so its slot turns from PUSHING of
  // that batch to MAPPED before the volume leaves the stack. Recovery
  // relies on it: a PUSHING volume off the stack was never pushed.
  static void ConfirmPushed(void* self, uint64_t index, uint64_t tag);
  // RecordAnnouncedPop is every join's VolumePool::AnnouncedPopHook: the
  // owner's RemoveVolumes announced the pop of volume `index` and some
  // party is completing it, so its slot turns REMOVING (from PUSHING or
  // MAPPED, or QUARANTINED: a quarantined volume pushed back onto the stack
  // against Release's contract, which is then no longer counted in
  // volumes_in_quarantine) before the volume leaves the stack, as long as
  // the top still reads `announced_top`. So a volume the owner took is
  // never MAPPED (or QUARANTINED) off the stack, whenever the owner dies.
  static void RecordAnnouncedPop(void* self, uint64_t index,
                                 uint64_t announced_top);
  // UncountQuarantine takes one off volumes_in_quarantine, stopping at 0
  // rather than wrap. Thread safety: lock-free (a CAS loop on a statistic).
  void UncountQuarantine() const;
  // RecordQuarantine is every join's VolumePool::QuarantinedPopHook: a pop
  // of this join took volume `index` with a bad header, so its slot turns
  // QUARANTINED (keeping its batch) from MAPPED (or PUSHING: a pop marks a
  // tagged volume MAPPED before it takes it, ConfirmPushed, so only in
  // theory) and volumes_in_quarantine counts it. A REMOVING slot is left:
  // the owner's RemoveVolumes popped it (announced) and records the
  // quarantine itself. A data-plane join records nothing while the pool's
  // owner is a build that does not know the state (Metadata::
  // quarantine_owner_pid is not owner_pid): that owner's recovery would
  // refuse the pool (DATA_LOSS), so the slot stays MAPPED as before.
  // The slot CAS is a release, so the owner's reclaim (an acquire CAS of
  // the slot) gives back memory this pop last touched only after it.
  static void RecordQuarantine(void* self, uint64_t index);
  // SoundQuarantineError is ReclaimVolume's FAILED_PRECONDITION for the
  // quarantined volume `index` whose header reads as a sound empty
  // volume's now, as recovery would push one (SoundEmptyHeader): written
  // after its quarantine, it may be on the stack; the next Open's recovery
  // makes it an ordinary volume (RecoveryReport::quarantines_on_stack or
  // quarantines_mended).
  absl::Status SoundQuarantineError(uint64_t index) const;
  // NotQuarantinedError is ReclaimVolume's FAILED_PRECONDITION for index
  // `index`, whose slot word `slot` is not QUARANTINED: says what is there.
  absl::Status NotQuarantinedError(uint64_t index, uint64_t slot) const;
  // QuarantineFault says what is wrong with the header of quarantined
  // volume `index` now, as ListVolumes' kCorrupt entries say it (the
  // header `v`, or `read`, the error that kept it from being read); when
  // the header reads sound, that it was bad when a pop quarantined it.
  static std::string QuarantineFault(uint64_t index, const VolumeHeader& v,
                                     const absl::Status& read);
  void Step(absl::string_view step) const {
    if (step_hook_) step_hook_(step);
  }
  std::atomic<uint64_t>& Slot(uint64_t index) const;
  // FirstListedSlot returns the lowest index in [from, to) whose slot
  // word ListVolumes lists (MAPPED or QUARANTINED), or `to` when there is
  // none: slot words only, the pages no claim wrote skipped unread.
  // ListVolumes asks it whether a volume follows a full page. Thread
  // safety: lock-free reads. Cost: O(to - from) slot loads at most.
  uint64_t FirstListedSlot(uint64_t from, uint64_t to) const;
  // FirstUsedSlot returns the lowest index whose slot is not FREE in the
  // metadata object mapped at meta_ (`file_bytes` long), or kNoSlot. The
  // table read is the recorded max_volumes' if it is one, else the
  // configured one's. REQUIRES: the owner's Map, before creating.
  static constexpr uint64_t kNoSlot = ~uint64_t{0};
  uint64_t FirstUsedSlot(uint64_t file_bytes) const;

  std::string data_dir_;
  PoolConfig config_;
  bool owner_;
  Metadata* meta_ = nullptr;
  uint64_t meta_bytes_ = 0;
  int meta_fd_ = -1;
  // Data-plane joins: the address space the store is mapped into.
  std::byte* reservation_ = nullptr;  // start of the reservation
  uint64_t reservation_bytes_ = 0;    // including alignment slack
  std::byte* volume0_ = nullptr;      // null for the owner
  std::unique_ptr<VolumeStore> store_;
  // The file the owner opened as its store (StoreDeleted), from
  // RememberStoreFile when the store is opened or created.
  struct FileIdentity {
    dev_t device;
    ino_t inode;
  };
  std::optional<FileIdentity> store_file_;
  void RememberStoreFile(int fd);
  // Orders the owner's allocations and punches of store_ so that a remove
  // never waits for an allocation (StoreGate). Reset first in the
  // destructor.
  std::optional<StoreGate> store_gate_;
  // Volumes of failed punches in this process (GiveBack). Only grows.
  // Relaxed everywhere: a statistic, not for synchronization.
  std::atomic<uint64_t> volumes_not_given_back_{0};
  std::optional<VolumePool> pool_;  // set once mapped
  // The owner's index of free slots, so that an add finds the lowest free
  // indices without reading the whole slot table (FreeSlotIndex).
  std::unique_ptr<FreeSlotIndex> free_slots_;
  RecoveryReport recovery_;
  // The owner's request journal (null in data-plane joins), and the
  // committed adds it held at Open, until TakeRecordedAdds.
  std::unique_ptr<RequestJournal> journal_;
  std::vector<RecordedAdd> recorded_adds_;
  // OpenJournal opens journal_ after Recover (Open's last step).
  absl::Status OpenJournal();
  // DataDirIsHugetlbfs: the data directory is on a hugetlbfs (false when
  // it cannot be told).
  bool DataDirIsHugetlbfs() const;
  // SharedJournalPath is the journal of the pool `pool_id` in the shared
  // tmpfs directory, where it goes when the data directory is a hugetlbfs:
  // /dev/shm/groove-volumed/NAME@ID.requests (ID: 32 hex digits).
  std::string SharedJournalPath(const RequestJournal::Identity& pool_id) const;
  HostMemory host_;
  std::function<void(absl::string_view)> step_hook_;
  std::function<void(uint64_t, uint64_t, const absl::Status&)>
      on_give_back_failed_;
};

// Layout facts of the metadata object, for tests that corrupt it on purpose
// (tests/integration/server_faults_test.cc) and must find its fields
// without copying magic numbers. Not an API: the layout is private to
// named_pool.cc, which static_asserts that these match it.
namespace testing {
// The metadata magic (a uint64_t) follows the pool header.
inline constexpr uint64_t kMetadataMagicOffset = sizeof(PoolHeader);
// The recorded geometry (uint64_t each), which a data-plane join takes from
// the metadata.
inline constexpr uint64_t kVolumeSizeOffset = kMetadataMagicOffset + 16;
inline constexpr uint64_t kMaxVolumesOffset = kMetadataMagicOffset + 24;
// The layout version (a uint64_t), and the one this build reads and writes.
inline constexpr uint64_t kLayoutVersionOffset = kMetadataMagicOffset + 8;
inline constexpr uint64_t kLayoutVersion = 3;
// The backing in use (a uint64_t BackingKind) and its page size (uint64_t).
inline constexpr uint64_t kBackingInUseOffset = kMetadataMagicOffset + 40;
inline constexpr uint64_t kPageSizeOffset = kMetadataMagicOffset + 48;
// The owner's pid and the number of its hugetlb memfd (int64_t each), which
// a data-plane join of a memfd store opens as /proc/PID/fd/N.
inline constexpr uint64_t kOwnerPidOffset = kMetadataMagicOffset + 56;
inline constexpr uint64_t kStoreMemfdOffset = kMetadataMagicOffset + 64;
// The pool's name (NUL-padded), and the store's path (NUL-padded; all
// zeros for a hugetlb memfd).
inline constexpr uint64_t kNameOffset = kMetadataMagicOffset + 96;
inline constexpr uint64_t kStorePathOffset = kNameOffset + 72 + 1024;
inline constexpr uint64_t kStorePathBytes = 1024;
// volumes_in_quarantine as the metadata keeps it (a uint64_t), after the
// pool's 16-byte id.
inline constexpr uint64_t kVolumesInQuarantineOffset =
    kStorePathOffset + kStorePathBytes + 16;
// The slot table: one uint64_t slot word per index from here. The link
// table (one uint64_t stack link per index) follows it, at
// kSlotTableOffset + 8 * max_volumes.
inline constexpr uint64_t kSlotTableOffset = 4096;
// A slot word whose state (its low 3 bits) is none of the slot states.
inline constexpr uint64_t kInvalidSlotWord = 7;
// The state QUARANTINED (a slot word's low 3 bits): a volume a pop found
// with a bad header, off the stack, which ReclaimVolume frees.
inline constexpr uint64_t kQuarantinedSlotState = 5;
// The number of bits of a slot word's state: a word is state | batch <<
// kSlotStateBits.
inline constexpr int kSlotStateBits = 3;
// The slot word of an add of batch 0 in flight (ADDING), which recovery
// rolls back.
inline constexpr uint64_t kAddingSlotWord = 1;
// The slot word of a committed add of batch 0 (PUSHING), which recovery
// rolls forward.
inline constexpr uint64_t kPushingSlotWord = 2;
}  // namespace testing

}  // namespace groove

#endif  // GROOVE_NAMED_POOL_H_
