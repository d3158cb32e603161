// groove/volume_pool.h: a lock-free pool of empty groove volumes.
//
// A volume pool is two pieces of memory that may be shared between
// processes, each process mapping them at its own address:
//
//   - the pool header (`PoolHeader`, 1536 bytes, 128-byte aligned): a magic
//     number, the versioned top of a Treiber stack of empty volumes, and
//     operation counters sharded per thread, each shard on a cache line of
//     its own (see PoolStats);
//   - the volume span: `max_volumes * footprint_bytes` bytes starting at
//     `volume0`, in which volume `idx` lives at `volume0 + idx * footprint`.
//     Only the volumes that were added need to be backed by memory.
//
// A `VolumePool` is one process's join: a small value holding the local
// addresses of both pieces. Joins are cheap to copy; all state lives in the
// shared memory. Many joins (threads, processes) may use one pool at once.
//
// Volume life cycle (the header's magic):
//
//   not a volume (0) --Add--> empty, on the stack (~kVolumeMagic)
//   empty --Acquire--> in use (kVolumeMagic) --Release--> empty
//   empty --Remove--> not a volume (memory handed to the caller)
//
// Progress guarantee: Add, Remove, Acquire, Release, Peek and Verify are
// lock-free: a thread stopped at any instant (even inside an operation)
// never prevents the others from completing theirs. The one exception is
// the maintenance lock: while the owner's recovery holds Lock() (and
// Reset), blocking operations spin and non-blocking ones return kAgain.
// The lock is never taken on the hot path, nor by Verify. Under contention,
// Acquire, Release, Remove and untagged pushes wait a bounded, growing number
// of pause instructions after each lost CAS (CasBackoff); the owner's
// RemoveAnnounced and PushRangeTagged retry at once, so a busy data plane
// cannot starve them.
//
// Example:
//
//   alignas(groove::kPoolAlign) groove::PoolHeader header;
//   groove::VolumePool::Format(&header);
//   auto pool = groove::VolumePool::Join(&header, span, 16, 1 << 20);
//   if (!pool.ok()) return pool.status();
//   pool->Add(/*first_index=*/0, /*count=*/4, "scratch");
//   groove::VolumeHeader* v = nullptr;
//   if (pool->Acquire(&v) == groove::PoolError::kSuccess) {
//     ... use groove::VolumeData(v) ...
//     pool->Release(v);
//   }

#ifndef GROOVE_VOLUME_POOL_H_
#define GROOVE_VOLUME_POOL_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "groove/pool_error.h"
#include "groove/volume.h"

namespace groove {

// kPoolMagic marks a formatted pool header (the seed's volume-pool magic).
inline constexpr uint64_t kPoolMagic = 0xfd67007e70190010ULL;
inline constexpr uint64_t kPoolAlign = 128;

// The versioned top of the stack packs `version << kIndexBits | index`.
// The index is 34 bits wide; the all-ones index is the null index (empty
// stack / bottom of the stack), so a pool holds at most kMaxVolumes
// volumes. The version is the remaining 30 bits: its lowest bit is the
// maintenance lock, the next marks an announced pop (RemoveAnnounced), and
// every successful push or pop, and every lock and unlock pair, adds
// kTopVersionStep (a 28-bit counter above the two flags).
inline constexpr int kIndexBits = 34;
inline constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;
inline constexpr uint64_t kNullIndex = kIndexMask;
inline constexpr uint64_t kMaxVolumes = kNullIndex;  // indices 0..2^34-2
inline constexpr int kVersionBits = 64 - kIndexBits;
inline constexpr uint64_t kTopVersionStep = 4;

// kUnpushedLink is the link-table value (see VolumePool::Join) of a volume
// that was formatted and never pushed since: no stack link is >= 2^34.
inline constexpr uint64_t kUnpushedLink = uint64_t{1} << 63;

// A tagged link (written by PushRangeTagged) is `kTaggedLink | tag << 34 |
// next`: the stack link `next` in the low 34 bits, plus a 28-bit tag that
// the pusher chose, which the first pops of that volume hand to the join's
// TaggedPopHook (see PushRangeTagged for why).
inline constexpr uint64_t kTaggedLink = uint64_t{1} << 62;
inline constexpr int kLinkTagBits = 28;
inline constexpr uint64_t kLinkTagMask = (uint64_t{1} << kLinkTagBits) - 1;

// TaggedLink returns the link of a tagged push: `tag` (taken modulo
// 2^28) and `next` (REQUIRES: next <= kIndexMask).
constexpr uint64_t TaggedLink(uint64_t next, uint64_t tag) {
  return kTaggedLink | ((tag & kLinkTagMask) << kIndexBits) | next;
}
// IsTaggedLink returns true when `link` was written by a tagged push.
constexpr bool IsTaggedLink(uint64_t link) {
  return (link & kTaggedLink) != 0;
}
// LinkTag returns the tag of a tagged link.
constexpr uint64_t LinkTag(uint64_t link) {
  return (link >> kIndexBits) & kLinkTagMask;
}
// LinkNext returns the stack index a link-table value points to: an
// untagged link is the index itself; a tagged one loses its tag but keeps
// kUnpushedLink, so that a value no push writes stays out of range.
constexpr uint64_t LinkNext(uint64_t link) {
  return IsTaggedLink(link) ? link & (kIndexMask | kUnpushedLink) : link;
}

// PackTop returns the versioned top for `version` (taken modulo 2^30) and
// `index` (REQUIRES: index <= kIndexMask).
constexpr uint64_t PackTop(uint64_t version, uint64_t index) {
  return (version << kIndexBits) | index;
}
// TopVersion returns the 30-bit version of a versioned top.
constexpr uint64_t TopVersion(uint64_t ver_top) {
  return ver_top >> kIndexBits;
}
// TopIndex returns the index of a versioned top (kNullIndex when empty).
constexpr uint64_t TopIndex(uint64_t ver_top) { return ver_top & kIndexMask; }
// TopIsLocked returns true when the version's lock bit is set.
constexpr bool TopIsLocked(uint64_t ver_top) {
  return (TopVersion(ver_top) & 1) != 0;
}
// TopIsPopAnnounced returns true when the top volume's pop was announced
// by RemoveAnnounced and is not complete yet.
constexpr bool TopIsPopAnnounced(uint64_t ver_top) {
  return (TopVersion(ver_top) & 2) != 0;
}

// ---- Counters ---------------------------------------------------------------
//
// The pool counts volumes added, removed, acquired, released and quarantined,
// in the shared header, so that every process's operations show up in every
// other's Counts() (a data-plane process's acquires in the server's
// metrics). Counting must not cost the hot path an atomic read-modify-write
// or a shared contended cache line, so the counters are sharded:
//
//   - A thread that counts in a pool claims a shard once (CAS `owner` from 0
//     to its token) and caches the claim in a small thread-local table keyed
//     by the header's address. From then on it is the shard's only writer
//     and adds with a relaxed load and a relaxed store: no lock prefix, and
//     the line stays in its core's cache. Each operation re-reads `owner` (a
//     load from that same line) so that a stale claim (the pool was formatted
//     again, or another pool was mapped at the same address) is noticed and
//     the thread claims again.
//   - A token is `pid << 42 | generation << 10 | thread slot`: the pid
//     (unique among live processes of a pid namespace, and what
//     ReclaimDeadCounterShards checks), a random 32-bit generation drawn once
//     per process (so that equal pids in different pid namespaces almost
//     never collide), and a process-local thread slot. A forked child makes
//     new tokens and forgets its parent's claims, so it never writes its
//     parent's shards. A thread takes the lowest free slot on its first
//     count and frees it when it exits; the next thread to take that slot
//     inherits the shards its previous holder claimed (slot hand-over is a
//     release/acquire pair, so it sees their counts). So a process holds at
//     most as many shards per pool as it has counting threads alive at
//     once, however many threads come and go, and a thread exit never
//     writes to pool memory (which its caller may have unmapped already).
//   - Shard 0 is the shared fallback, counted with relaxed fetch_add, for a
//     thread that found no free shard (more threads at once than shards, or
//     shards still held by processes that exited without giving them back).
//     Such a thread tries to claim a shard again every few thousand counts.
//   - Shards are given back (`owner` = 0, counts kept: the next owner adds to
//     them) by ReturnCounterShards(), which a process calls before it unmaps
//     the header, by ReclaimDeadCounterShards() for processes that died (or
//     exited without returning them), and by Format(). Until then their
//     counts are still summed; if the shards run out, counting falls back to
//     shard 0: slower, never wrong.
//   - Counts() sums the shards and subtracts `baseline`, which only
//     RestartCountsLocked() and Reset() write (under the maintenance lock),
//     so they never write a shard that its owner is writing.
//
// Counters are statistics, not for synchronization: relaxed everywhere. A
// count is exact whenever no operation is in flight, approximate otherwise.

// kCounterShards is the number of counter shards in a pool header: shard 0,
// the shared fallback, and kCounterShards - 1 shards for threads. Sized so
// that the whole header stays within 1536 bytes (the named pool's metadata
// page also holds its configuration after the header).
inline constexpr uint64_t kCounterShards = 21;

// CounterValues are the five operation counters, as they appear both in a
// shard (counts since the pool was formatted) and in the baseline.
struct CounterValues {
  std::atomic<uint64_t> volumes_added;        // pushed by Add/PushRange
  std::atomic<uint64_t> volumes_removed;      // popped by Remove, header good
  std::atomic<uint64_t> acquires;             // popped by Acquire, header good
  std::atomic<uint64_t> releases;             // pushed by Release
  std::atomic<uint64_t> volumes_quarantined;  // popped with a bad header
};
static_assert(sizeof(CounterValues) == 40);

// CounterShard is one cache line of counters with at most one writer.
struct alignas(64) CounterShard {
  // 0: free. Otherwise the token (pid << 42 | generation << 10 | thread
  // slot) of the one thread that writes `counts`. Shard 0 (the fallback)
  // is never owned: its owner stays 0.
  std::atomic<uint64_t> owner;
  // Only ever increase (modulo 2^64); only the sum over the shards means
  // anything.
  CounterValues counts;
  unsigned char reserved[64 - 8 - sizeof(CounterValues)];
};
static_assert(sizeof(CounterShard) == 64);
static_assert(offsetof(CounterShard, counts) == 8);

// CounterBaseline is what Counts() subtracts from the shard sums: the sums
// at the last restart. Written only under the maintenance lock.
struct alignas(64) CounterBaseline {
  CounterValues counts;
  // The volumes_added a restart declared (RestartCountsLocked's argument).
  std::atomic<uint64_t> added_at_restart;
  unsigned char reserved[64 - sizeof(CounterValues) - 8];
};
static_assert(sizeof(CounterBaseline) == 64);

// PoolStats is the counter part of the pool header: the baseline, then the
// shards, each on a 64-byte line of its own.
struct alignas(64) PoolStats {
  CounterBaseline baseline;
  CounterShard shards[kCounterShards];  // [0] is the shared fallback
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(offsetof(PoolStats, baseline) == 0);
static_assert(offsetof(PoolStats, shards) == 64);
static_assert(sizeof(PoolStats) == 64 + 64 * kCounterShards);

// PoolHeader is the pool's shared header. Its first 128 bytes are the facts
// file's layout ({magic, ver_top} in a 128-byte aligned block, the rest
// reserved); the counters follow at offset 128, the baseline first and the
// shards from offset 192. Format() writes magic last; code that tears a
// pool down clears magic first.
struct alignas(kPoolAlign) PoolHeader {
  std::atomic<uint64_t> magic;    // kPoolMagic once formatted
  std::atomic<uint64_t> ver_top;  // PackTop(version, index of top or null)
  unsigned char reserved[kPoolAlign - 16];
  PoolStats stats;
};
static_assert(std::is_standard_layout_v<PoolHeader>);
static_assert(offsetof(PoolHeader, magic) == 0);
static_assert(offsetof(PoolHeader, ver_top) == 8);
static_assert(offsetof(PoolHeader, reserved) == 16);
static_assert(offsetof(PoolHeader, stats) == 128);
static_assert(offsetof(PoolHeader, stats) + offsetof(PoolStats, shards) == 192);
static_assert(sizeof(PoolHeader) == 1536);
static_assert(alignof(PoolHeader) == 128);

// PoolCounts is a snapshot of the counters (shard sums minus the baseline)
// plus the derived empty count.
struct PoolCounts {
  uint64_t volumes_added = 0;
  uint64_t volumes_removed = 0;
  uint64_t acquires = 0;
  uint64_t releases = 0;
  uint64_t volumes_quarantined = 0;
  // Volumes on the stack: pushes minus pops, clamped at 0 (a pop can be
  // counted before the push it took, while an Add is still counting).
  uint64_t empty_volumes = 0;
};

// VerifyReport is what a successful Verify found.
struct VerifyReport {
  uint64_t empty_volumes = 0;  // volumes on the stack, counted by walking it
  // walks is how many walks Verify made: 1 when the stack stayed still
  // during the first; each walk that saw the stack move was discarded.
  uint64_t walks = 0;
};

// kVerifyWalks is how many times Verify walks the stack before it gives
// up because pool users kept moving it (ABORTED).
inline constexpr uint64_t kVerifyWalks = 64;

// Wait says what an operation does when the pool is locked for maintenance:
// kBlock spins until the lock is released; kNoBlock returns kAgain at once.
enum class Wait { kBlock, kNoBlock };

class VolumePool {
 public:
  // TestHook, when set on a join, is called by that join's operations in
  // the windows a stalled thread can sit in (TestPoint): kBeforeCas
  // between reading the stack top (and writing or reading the link) and
  // the CAS of a push or pop; kAnnounced in RemoveAnnounced between its
  // announce and its own completion of the pop; kVerifyStep in Verify after
  // each volume its walk checked; kLockedWait each time a blocking push or
  // pop finds the maintenance lock held, before it spins once. Tests use
  // it to stop a thread mid-operation, or to know where it is. Null (the
  // default) costs one predictable branch.
  enum class TestPoint { kBeforeCas, kAnnounced, kVerifyStep, kLockedWait };
  using TestHook = void (*)(void* arg, TestPoint point);

  // TaggedPopHook, when set on a join, is called by that join's pops with
  // the index and tag of a volume pushed by PushRangeTagged or
  // PushChainTagged, before the
  // pop's CAS and only once the pop has seen that volume stay on top of the
  // stack since it read its link (so the tagged push's CAS has happened).
  // It may run several times for one push (pops that lose their CAS call it
  // too) and must be idempotent and lock-free.
  using TaggedPopHook = void (*)(void* arg, uint64_t index, uint64_t tag);

  // AnnouncedPopHook, when set on a join, is called by whichever party
  // completes a pop announced by RemoveAnnounced (the announcer, or any
  // other operation that finds the announce in the stack top and helps),
  // with the announced volume's index and the announced top word, before
  // the completing CAS. It may run several times for one announce, also
  // after the pop completed (a helper that lost the race): it must be
  // idempotent, lock-free, and act only while the top still equals
  // `announced_top` (see NamedPool::RecordAnnouncedPop).
  using AnnouncedPopHook = void (*)(void* arg, uint64_t index,
                                    uint64_t announced_top);

  // QuarantinedPopHook, when set on a join, is called by that join's pops
  // (Acquire, Remove, RemoveAnnounced) that took a volume whose header was
  // bad (the kCorrupt with a popped volume: quarantined, counted in
  // volumes_quarantined), with its index, after the pop's CAS and before
  // the pop returns: the volume is off the stack and the caller's, and
  // nobody else will take it. Never called on a pop that succeeds (the
  // Acquire+Release pair pays nothing for it). NamedPool records the
  // quarantine in the volume's slot (NamedPool::RecordQuarantine), so
  // that the owner can tell such a volume from one in use and free it
  // (NamedPool::ReclaimVolume). It must be lock-free; it runs once per
  // quarantine.
  using QuarantinedPopHook = void (*)(void* arg, uint64_t index);

  // ReadHeaderHook and WriteHeaderHook are how a join that does not map
  // its volumes (Join with a null volume0) reaches their headers: the
  // owner of a NamedPool reads and writes them with pread and pwrite on
  // the volume store, so that it never has a page-table entry for a volume
  // and giving a volume back costs it no TLB shootdown (docs/
  // ARCHITECTURE.md §9, "Volume memory"). A join that maps its volumes
  // may set ReadHeaderHook too: Verify's walk, which reads the headers of
  // volumes on the stack that another party may be removing and giving
  // back at that instant, then reads through it (a NamedPool data-plane
  // join: pread, which reads a hole as zeros where a load through the
  // mapping would fault a page back into the store), while its pops and
  // pushes keep reading and writing in place. ReadHeaderHook copies volume
  // `index`'s 512-byte header into *out; WriteHeaderHook writes `size`
  // bytes from `bytes` at byte `offset` of that header. Each returns false
  // when the I/O failed, which the pool treats like a corrupt header
  // (kCorrupt). The pool writes only headers of volumes it owns at that
  // instant (being formatted, pushed, or just popped with a sound header),
  // so a write never lands where the caller did not allocate; a read may
  // (a pop through a corrupt link) and must then give zeros, as pread of a
  // hole does, or fail. Called on the operations' paths, so they must not
  // block for long (a pwrite to a local file holds its inode lock for
  // microseconds).
  using ReadHeaderHook = bool (*)(void* arg, uint64_t index,
                                  VolumeHeader* out);
  using WriteHeaderHook = bool (*)(void* arg, uint64_t index,
                                   uint64_t offset, const void* bytes,
                                   uint64_t size);

  // Hooks are a join's TaggedPopHook, AnnouncedPopHook and
  // QuarantinedPopHook, its header I/O
  // (both needed by a join without volume0; on a join with volume0
  // read_header, if set, serves Verify's walk only, and write_header is
  // ignored), with their argument.
  // A pool that is ever pushed with PushRangeTagged or popped with
  // RemoveAnnounced needs the same pop hooks on every join.
  //
  // `volume_states`, when set on a join with volume0, is an array of
  // max_volumes words shared like the header, one per volume, whose low
  // kVolumeStateBits bits are a state the caller defines (NamedPool: its
  // slot table), and `releasable_states` the set of those states (bit s
  // for state s) in which a volume may be held by a data-plane user.
  // Release reads the word before anything of the volume and refuses
  // (kInvalid) one in another state without touching its memory: a
  // volume released twice after the owner removed it, or an index never
  // added, has no memory behind it, and a read of its header through the
  // mapping would fault memory into the store (tmpfs: a page nobody
  // accounts for; hugetlbfs: a hugepage, or SIGBUS when none is free).
  static constexpr int kVolumeStateBits = 3;
  struct Hooks {
    TaggedPopHook on_tagged_pop = nullptr;
    AnnouncedPopHook on_announced_pop = nullptr;
    QuarantinedPopHook on_quarantined_pop = nullptr;
    ReadHeaderHook read_header = nullptr;
    WriteHeaderHook write_header = nullptr;
    void* arg = nullptr;
    const std::atomic<uint64_t>* volume_states = nullptr;
    uint64_t releasable_states = 0;
  };

  // Format writes an empty pool into `header`: an empty stack (version 0,
  // unlocked), zero counters with every shard free, then the magic (release
  // store, so a joiner that sees the magic sees the rest).
  // REQUIRES: `header` is valid memory, 128-byte aligned, and no process
  // is using it as a pool. Thread safety: none (it creates the pool).
  // Cost: O(1).
  static void Format(PoolHeader* header);

  // Join returns a join of the pool whose header is `header` and whose
  // volume span starts at `volume0` in this process's address space.
  // `max_volumes` (1..kMaxVolumes) and `footprint_bytes` (a power of two,
  // at least kVolumeMinFootprint) must be those every other join uses; the
  // span `max_volumes * footprint_bytes` must fit in the address space.
  // Errors: FAILED_PRECONDITION when `header` is not a formatted pool,
  // INVALID_ARGUMENT for a null/misaligned pointer or a bad geometry.
  // Joining changes nothing in shared memory. Cost: O(1).
  //
  // `links`, when not null, is an array of max_volumes atomics, shared like
  // the header, that holds the stack's links: pop then reads the link of
  // the stack top there instead of in the volume's header, so it never
  // touches the memory of a volume it has not popped (which another party
  // may be removing and giving back to the kernel at that instant). Push
  // writes both, so the header's `next` stays what the facts file says.
  // Every join of one pool must agree on whether links are used.
  // `hooks` are the join's (see Hooks); the overload without has none.
  // PushRangeTagged needs links.
  //
  // A join with volume0 may have a read_header hook alone (for Verify's
  // walk, see ReadHeaderHook); a write_header hook without a read_header
  // one is INVALID_ARGUMENT.
  // `volume0` may be null when `hooks` has both header I/O hooks and
  // `links` is set: the join then never touches volume memory itself. Such
  // a join can Add, FormatRange, PushRange(Tagged), RemoveAnnounced, Lock,
  // PushLocked, Verify and Counts; Acquire, Release and Remove return
  // kInvalid (they hand out addresses), and VolumeAt must not be used.
  static absl::StatusOr<VolumePool> Join(PoolHeader* header, void* volume0,
                                         uint64_t max_volumes,
                                         uint64_t footprint_bytes,
                                         std::atomic<uint64_t>* links,
                                         Hooks hooks);
  static absl::StatusOr<VolumePool> Join(PoolHeader* header, void* volume0,
                                         uint64_t max_volumes,
                                         uint64_t footprint_bytes,
                                         std::atomic<uint64_t>* links =
                                             nullptr) {
    return Join(header, volume0, max_volumes, footprint_bytes, links,
                Hooks());
  }

  // Add formats the volumes [first_index, first_index + count) as empty
  // volumes carrying `info` and pushes them, highest index first, so the
  // lowest index is handed out first: FormatRange then PushRange. Info
  // longer than kVolumeInfoMax is clamped to kVolumeInfoMax bytes (the
  // seed's behaviour; the RPC layer rejects it instead); bytes past info_sz
  // are zeroed.
  // REQUIRES: the range's memory is mapped and owned by the caller (no
  // other party reads or writes those volumes while Add formats them).
  // Returns kSuccess; kInvalid (count 0, or the range is not inside
  // [0, max_volumes)) or kKey (a volume in the range already carries the
  // empty or in-use magic) with nothing changed; kCorrupt when the stack
  // top is out of range, in which case the volumes pushed before the
  // corruption was seen stay on the stack and the rest are not volumes.
  // Thread safety: lock-free with respect to every other operation; spins
  // while the maintenance lock is held. Cost: O(count).
  PoolError Add(uint64_t first_index, uint64_t count,
                absl::string_view info) const;

  // kNoTopHint is FormatRange's and PushRange's `top_hint` when the caller
  // makes no guess (no index is that large).
  static constexpr uint64_t kNoTopHint = ~uint64_t{0};

  // FormatRange is Add's first half: it checks the range as Add does and
  // writes each header (idx, info_sz, info, zero padding, then the empty
  // magic) without pushing. A caller that must not expose part of a batch
  // (crash-consistent multi-range adds) formats every range first, records
  // that, then pushes. Returns kSuccess; kInvalid or kKey with nothing
  // written; or, on a join without volume0 only, kCorrupt when a header
  // hook fails: a read (nothing written yet) or a write, after the headers
  // before it in the range were written (formatted, not pushed) and with
  // the failing one's perhaps half written. The range is still the
  // caller's: it must not push it, and must give its memory back (a
  // punch reads as zeros, not a volume) or mark each header not a volume
  // before anyone may add it again (NamedPool rolls its add back).
  // Cost: O(count).
  //
  // `top_hint` saves the push a header write (a system call on a join
  // without volume0): given the top index the caller expects the range's
  // push to find (PeekTop(), or the index it will push just before this
  // range), each header's `next` is written as the push will need it if
  // nothing else moves the top meanwhile (the index above it, and
  // `top_hint` for the highest, which is pushed first). Pass the same hint
  // to the PushRange of exactly this range. kNoTopHint: no guess; `next`
  // is written 0 through the hook and left alone in memory.
  PoolError FormatRange(uint64_t first_index, uint64_t count,
                        absl::string_view info,
                        uint64_t top_hint = kNoTopHint) const;

  // PushRange is Add's second half: it pushes the volumes [first_index,
  // first_index + count), highest index first, and counts them as added.
  // REQUIRES: FormatRange succeeded on them and none is on the stack; a
  // `top_hint` other than kNoTopHint is the one given to the FormatRange
  // of exactly this range (then a volume whose header already links the
  // top the push finds is pushed without writing its header again).
  // Returns kSuccess, kInvalid (bad range, nothing pushed) or kCorrupt (as
  // Add; the unpushed ones are marked not a volume).
  // Thread safety: lock-free; spins while locked. Cost: O(count).
  PoolError PushRange(uint64_t first_index, uint64_t count,
                      uint64_t top_hint = kNoTopHint) const;

  // PushRangeTagged is PushRange for an owner that must be able to tell,
  // after being killed at any instant, whether its push happened. It
  // writes TaggedLink(next, tag) into each volume's link (the header's
  // `next` stays the plain index) and, like PushRange, counts the volumes
  // as added. Every pop that takes one of these volumes while its link
  // still carries the tag first calls the join's TaggedPopHook with
  // (index, tag). So a caller that records "volume i is being pushed with
  // tag t" before the push, and clears the record after the push and in
  // its hook, knows from a record still standing that the volume was not
  // popped since: if it is off the stack, the push's CAS never happened
  // and it can be pushed again. (An untagged push killed after writing its
  // link leaves a volume that looks exactly like one a Release in flight
  // is about to push.)
  // REQUIRES: as PushRange (`top_hint` included); the join has links
  // (Join's `links`).
  // Returns as PushRange. Thread safety: lock-free; spins while locked.
  // Cost: O(count).
  PoolError PushRangeTagged(uint64_t first_index, uint64_t count, uint64_t tag,
                            uint64_t top_hint = kNoTopHint) const;

  // PutBackTagged pushes volume `index`, which RemoveAnnounced popped,
  // back onto the stack as if that pop had not happened: tagged as
  // PushRangeTagged pushes (its TaggedPopHook runs on its next pop), and
  // not counted as added (RemoveAnnounced counted no remove). For a remove
  // that fails part way and puts back the volumes it popped, so that the
  // counters keep meaning what they say (PoolCounts: added by adds,
  // removed by removes that took effect).
  // REQUIRES: the caller popped `index` with RemoveAnnounced on this pool
  // and has not put it back yet; its header is as the pop left it (an
  // empty volume's); the join has links.
  // Returns as PushRangeTagged (on failure nothing is pushed or counted,
  // and the header is marked not a volume). Thread safety: lock-free;
  // spins while locked. Cost: O(1).
  PoolError PutBackTagged(uint64_t index, uint64_t tag,
                          uint64_t top_hint = kNoTopHint) const;

  // PushChainTagged pushes the volumes indices[0], ..., indices[n - 1]
  // (distinct, in any order) with one CAS, as a chain: indices[0] ends on
  // top, each links the next, and the last links the top the push found.
  // So the batch enters the stack whole or not at all: when it fails,
  // nothing was pushed (the volumes are as formatted and the caller still
  // owns them, e.g. to roll its add back). Links are tagged as
  // PushRangeTagged's (each pop of one of them calls the TaggedPopHook),
  // and the volumes are counted as added.
  // REQUIRES: every volume was formatted (FormatRange) and none is on the
  // stack; a `top_hint` other than kNoTopHint was given to their
  // FormatRange calls as the chain needs it (indices[k + 1] for
  // indices[k], `top_hint` for the last one: then only the last one's
  // header is written again, and only if the top moved); the join has
  // links.
  // Returns kSuccess; kInvalid (no volume, an index out of range, no links;
  // nothing written); kCorrupt, nothing pushed, when the stack is corrupt
  // (its top, or an announced pop's link, out of range) or a header write
  // (a hook: an I/O error) failed; *header_write_failed, when given, is
  // set to true in the second case only.
  // Thread safety: lock-free; spins while locked. Cost: O(n) link stores
  // (and header writes without a hint), one CAS (retried while others
  // move the top).
  PoolError PushChainTagged(std::span<const uint64_t> indices, uint64_t tag,
                            uint64_t top_hint = kNoTopHint,
                            bool* header_write_failed = nullptr) const;

  // Remove pops one empty volume, checks its header (empty magic, idx
  // matching its address, info_sz <= kVolumeInfoMax), marks it not a
  // volume and stores its address in *volume. The caller then owns the
  // volume's memory (e.g. to give it back to the kernel) and may read its
  // idx and info.
  // Returns kSuccess; kEmpty (no empty volume at some point during the
  // call, *volume = nullptr); kAgain (kNoBlock and the pool was locked);
  // kCorrupt, either with *volume = nullptr (the stack top or its next is
  // out of range, nothing popped) or with *volume set to a popped volume
  // whose header was bad: it is off the stack, quarantined, owned by the
  // caller and left untouched for inspection.
  // Thread safety: lock-free. Cost: O(1).
  PoolError Remove(VolumeHeader** volume, Wait wait = Wait::kBlock) const;

  // RemoveAnnounced is Remove for an owner that may be killed at any
  // instant and must be able to tell, afterwards, which volume it took.
  // A plain pop's CAS leaves no trace of who made it: an owner killed just
  // after it leaves an empty volume off the stack, exactly as a data-plane
  // Acquire or Release in flight does. So this pop takes two steps: it
  // announces the pop in the stack top (the top's version gets its
  // announce flag: from then on the top volume is the announcer's), then
  // completes it: calls the join's AnnouncedPopHook and moves the top on.
  // Any other operation that finds an announce in the top completes it the
  // same way before its own, so a stopped announcer holds nobody up
  // (lock-free), and a hook that records the pop (NamedPool: the slot turns
  // REMOVING) has always run before the volume leaves the stack.
  // Returns as Remove. Thread safety: lock-free. Cost: O(1).
  // The popped volume is reported by index, with a copy of its header as
  // the pop found it in *popped, so that it works on a join without
  // volume0: *index is the popped volume (also on kCorrupt with a bad
  // header, as Remove's *volume), or kNullIndex when nothing was popped.
  // Unlike Remove, it leaves the header as it was (still the empty magic):
  // the caller's own record (the hook) says the volume is no longer the
  // pool's, and giving the memory back clears the header, so a mark would
  // cost a header write (a system call without volume0) for nothing. A
  // caller that keeps the volume instead can push it back as it is.
  // Unlike Remove, it counts nothing: the caller counts the volumes whose
  // remove took effect with CountRemoved, so that volumes_removed, a
  // Prometheus counter, never goes down when a remove puts volumes back.
  // REQUIRES: popped is not null.
  PoolError RemoveAnnounced(uint64_t* index, VolumeHeader* popped,
                            Wait wait = Wait::kBlock) const;

  // CountRemoved adds `count` to volumes_removed: for the caller of
  // RemoveAnnounced, once `count` of its pops took effect. Thread safety:
  // wait-free (this thread's counter shard). Cost: O(1).
  void CountRemoved(uint64_t count) const;

  // Acquire pops one empty volume for a data-plane user, checks its header
  // as Remove does and marks it in use (kVolumeMagic). Returns as Remove.
  // Thread safety: lock-free; backs off after a lost CAS (CasBackoff).
  // Cost: O(1).
  PoolError Acquire(VolumeHeader** volume, Wait wait = Wait::kBlock) const;

  // Release marks an in-use volume empty and pushes it back.
  // REQUIRES: the caller acquired `volume` from this pool (any join:
  // Acquire returned kSuccess; never a volume it returned with kCorrupt,
  // which is quarantined and which the pool's owner may free) and no
  // longer touches it. Returns kSuccess; kInvalid when `volume` is not a
  // volume address of this pool or is not in use (e.g. a double release),
  // with nothing changed; kAgain (kNoBlock and locked); kCorrupt when the
  // stack top is out of range. A join with volume states (Hooks) refuses a
  // volume whose state is not releasable before it reads its header, so a
  // release of a removed or never-added volume touches none of its memory
  // (a NamedPool join has them); without, the header is read in place.
  // Thread safety: lock-free; backs off after a lost CAS (CasBackoff).
  // Cost: O(1).
  PoolError Release(VolumeHeader* volume, Wait wait = Wait::kBlock) const;

  // PeekTop returns the index of the volume on top of the stack, or
  // kNullIndex when it is empty. A hint only: it may change at once.
  // Thread safety: wait-free. Cost: O(1).
  uint64_t PeekTop() const;

  // Lock sets the maintenance lock. kBlock spins until it is had; kNoBlock
  // returns kAgain when another party holds it. It first completes an
  // announced pop (RemoveAnnounced), so a locked pool has none in flight
  // unless its link was corrupt (then VerifyLocked reports it). While
  // locked, push and pop do not proceed (see Wait). The lock is not owned
  // by a thread or a process: whoever holds it must Unlock(). It is for the
  // owner's recovery, which takes over a lock a dead owner left: a
  // data-plane join must never lock. Thread safety: lock-free acquisition
  // of a lock; cost O(1) uncontended.
  PoolError Lock(Wait wait = Wait::kBlock) const;

  // Unlock releases the maintenance lock.
  // REQUIRES: the caller holds it (Lock returned kSuccess). Cost: O(1).
  void Unlock() const;

  // IsLocked returns true when the maintenance lock is held (a hint).
  bool IsLocked() const;

  // Reset empties the stack (the volumes on it are forgotten: their headers
  // and memory are untouched) and restarts the counters at zero
  // (RestartCountsLocked(0)).
  // REQUIRES: the caller holds the maintenance lock; it stays held.
  // Cost: O(kCounterShards).
  void Reset() const;

  // PushLocked links the formatted empty volume `index` on top of the
  // stack without counting it. Recovery uses it to push volumes while it
  // holds the lock, so that no other party can see them half-pushed.
  // REQUIRES: the caller holds the maintenance lock; index < max_volumes;
  // the volume is formatted empty and not on the stack. Cost: O(1).
  void PushLocked(uint64_t index) const;

  // RestartCountsLocked restarts the counters as if `empty_volumes`
  // volumes had just been added to an unused pool: Counts() then reads
  // volumes_added = empty_volumes, every other counter 0. Recovery calls it
  // with the number of volumes it found on the stack, so that counts that a
  // crashed process left half-updated do not skew the empty count forever.
  // It records the current shard sums as the baseline and writes no shard
  // (their owners may be writing them). An operation that took effect
  // before the lock but had not counted yet when the sums were read is
  // counted after the restart, as an operation in flight always may be.
  // REQUIRES: the caller holds the maintenance lock. Cost: O(kCounterShards).
  void RestartCountsLocked(uint64_t empty_volumes) const;

  // StackCheck is a caller's own check of the stack, run by Verify inside
  // the window in which it walks the stack (see Verify): it gets the top
  // word the walk started from (TopIndex gives the top volume) and returns
  // DATA_LOSS naming what it found wrong. It may read anything the stack
  // leads to, and may stop early once TopMovedSince(ver_top) says the walk
  // is void anyway (its result is then ignored).
  using StackCheck = absl::FunctionRef<absl::Status(uint64_t ver_top)>;

  // StopCheck is a Verify caller's own reason to give up (its RPC's
  // deadline passed, its client went away): Verify asks it before each
  // walk and every kVerifyStopCheckSteps volumes of a walk, and once it
  // returns true Verify returns CANCELLED at once. It must be cheap and,
  // once true, stay true.
  using StopCheck = absl::FunctionRef<bool()>;
  static constexpr uint64_t kVerifyStopCheckSteps = 1024;

  // Verify checks the pool without pausing anyone: it takes no lock, so
  // pushes and pops (Acquire, Release, Add, Remove) by other threads and
  // processes go on while it walks. The one thing it may write is the
  // completion of a pop the owner announced, which every operation helps
  // with.
  // Checks: the pool magic; the stack walked from the top ends at the null
  // index within max_volumes steps (no cycle), every index on it is in
  // range and every header on it has the empty magic, its own idx, info_sz
  // <= kVolumeInfoMax, zeros past info_sz and the same `next` as the link
  // table; then `also_check`, if given, in the same window.
  // A walk counts only if the stack's top word did not change from its
  // start to its end (no push, pop, announce or lock came between, so the
  // walk saw one stack as it was), and a problem is reported only from such
  // a walk. A walk that saw the top move is discarded and walked again,
  // after a short back-off, up to kVerifyWalks walks. A pop announced
  // when a walk starts is completed first, as every operation does.
  // Returns the report; DATA_LOSS naming the first problem found; ABORTED
  // when pool users (or a recovery holding the maintenance lock) moved the
  // stack during every walk: nothing was found wrong, retry when the pool
  // is quieter; CANCELLED as soon as `stop` says so (see StopCheck),
  // naming how far the walk got: nothing was found wrong on the way.
  // `also_check` may ask `stop` too and, when it says stop, return OK
  // early: Verify asks `stop` again after it.
  // Headers are read through the join's read hook when it has one (see
  // ReadHeaderHook), in place otherwise.
  // Thread safety: lock-free, never blocks other pool users; safe from any
  // join. Cost: O(empty volumes * kVolumeInfoMax) per walk (and a read
  // hook call per volume, when set), at most kVerifyWalks walks (a moved
  // walk stops at its next step).
  absl::StatusOr<VerifyReport> Verify() const;
  absl::StatusOr<VerifyReport> Verify(StackCheck also_check,
                                      StopCheck stop) const;

  // TopMovedSince returns true when the stack's top word is no longer
  // `ver_top`: a push, pop, announce or lock happened since it was read.
  // Reads made before the call are ordered before its read of the top (a
  // release read-modify-write that adds 0), so a StackCheck that sees
  // false after its reads read a still stack. Thread safety: wait-free.
  // Cost: one atomic read-modify-write of the top's cache line.
  bool TopMovedSince(uint64_t ver_top) const;

  // VerifyLocked makes Verify's checks (but not `also_check`) in one walk
  // from the current top, for a caller that holds the maintenance lock
  // (recovery), so the stack cannot move. REQUIRES: the caller holds it.
  // Returns the report (walks = 1) or DATA_LOSS naming the first problem.
  absl::StatusOr<VerifyReport> VerifyLocked() const;

  // Counts returns a snapshot of the shared counters (see PoolStats): the
  // sum over all shards minus the baseline, each clamped at 0. Exact when no
  // operation (and no restart) is in flight; otherwise each counter may miss
  // operations still in flight and the snapshot is not atomic as a whole.
  // Thread safety: wait-free; never writes. Cost: O(kCounterShards).
  PoolCounts Counts() const;

  // ReturnCounterShards gives back every counter shard of this pool that a
  // thread of this process holds (owner = 0; the counts stay in the shard
  // and its next owner adds to them), so that processes which come and go
  // do not use up the shards. Call it after this process's last operation
  // on the pool and before unmapping the header; a thread that counts again
  // afterwards simply claims a shard again.
  // REQUIRES: no thread of this process is inside an operation on this
  // pool (through any join), and the caller has synchronized with every
  // thread of this process that operated on it (e.g. joined them), so that
  // the next owner sees their final counts.
  // Thread safety: lock-free; safe while other processes use the pool.
  // Cost: O(kCounterShards).
  void ReturnCounterShards() const;

  // ReclaimDeadCounterShards gives back the counter shards whose owning
  // process no longer exists (kill(pid, 0) fails with ESRCH), e.g. after a
  // crash; their counts stay. Returns how many it gave back. Recovery (an
  // owner restarting after a crash) should call it, so that processes that
  // crash over and over do not use up the shards.
  // A dead owner whose pid was reused looks alive: its shard stays taken.
  // REQUIRES: every process that uses the pool runs in the caller's pid
  // namespace. A live process of another namespace can look dead; its
  // shard would then get a second writer and lose counts (never memory).
  // Thread safety: lock-free; safe while others use the pool (a shard is
  // freed by a CAS from the dead owner's token). Cost: O(kCounterShards)
  // system calls.
  uint64_t ReclaimDeadCounterShards() const;

  // VolumeAt returns the local address of volume `index`.
  // REQUIRES: index < max_volumes(); the join has a volume0 (maps its
  // volumes). Cost: O(1), no memory access.
  VolumeHeader* VolumeAt(uint64_t index) const {
    return reinterpret_cast<VolumeHeader*>(volume0_ +
                                           (index << footprint_shift_));
  }

  // IndexOf returns the index of the volume at local address `volume`, or
  // kNullIndex when `volume` is not the start of a volume of this pool.
  uint64_t IndexOf(const VolumeHeader* volume) const;

  PoolHeader* header() const { return header_; }
  std::byte* volume0() const { return volume0_; }
  uint64_t max_volumes() const { return max_volumes_; }
  uint64_t footprint_bytes() const { return footprint_; }

  // SetTestHookForTesting installs `hook` (may be null) on this join only.
  void SetTestHookForTesting(TestHook hook, void* arg) {
    test_hook_ = hook;
    test_hook_arg_ = arg;
  }

 private:
  VolumePool(PoolHeader* header, std::byte* volume0, uint64_t max_volumes,
             uint64_t footprint_bytes)
      : header_(header),
        volume0_(volume0),
        max_volumes_(max_volumes),
        footprint_(footprint_bytes),
        footprint_shift_(std::countr_zero(footprint_bytes)) {}

  // kUntagged is Push's `tag` for a plain push (tags are 28 bits).
  static constexpr uint64_t kUntagged = ~uint64_t{0};

  // Push links volume `index` on top of the stack; with a tag (not
  // kUntagged) its link is TaggedLink(next, tag). `next_in_header` is the
  // `next` the volume's header holds already (FormatRange's hint), or
  // kNoTopHint: Push writes the header's `next` only when it differs from
  // the top the CAS expects. `new_top` is the index the CAS puts on top:
  // `index`, or the head of a chain that ends with `index`
  // (PushChainTagged), linked already. When it returns kCorrupt because
  // the header could not be written, it sets *header_write_failed (if not
  // null).
  PoolError Push(uint64_t index, Wait wait, uint64_t tag,
                 uint64_t next_in_header, uint64_t new_top,
                 bool* header_write_failed = nullptr) const;
  // PushRangeWithTag is PushRange, PushRangeTagged and PutBackTagged; it
  // counts the volumes it pushes as added when `count_added`.
  PoolError PushRangeWithTag(uint64_t first_index, uint64_t count, uint64_t tag,
                             uint64_t top_hint, bool count_added) const;
  // HintedNext is the `next` FormatRange writes into volume `index` of the
  // range ending before `end` (PushRange pushes index + 1 just before it),
  // or kNoTopHint when the caller gave no hint.
  static uint64_t HintedNext(uint64_t index, uint64_t end, uint64_t top_hint) {
    if (top_hint == kNoTopHint) return kNoTopHint;
    return index + 1 < end ? index + 1 : top_hint;
  }
  // Pop unlinks the top of the stack into *index; with `announce`, in two
  // steps (RemoveAnnounced).
  PoolError Pop(uint64_t* index, Wait wait, bool announce) const;
  // WaitOutFlags handles a top whose lock or announce flag is set, for a
  // push or pop: while locked, kAgain for kNoBlock, else one back-off
  // (SpinOnce); an announced pop is completed (CompleteAnnouncedPop).
  // kSuccess: re-read the top and try again.
  PoolError WaitOutFlags(uint64_t ver_top, Wait wait, int* spins) const;
  // SpinOnce backs off once while locked; *spins counts from 0.
  static void SpinOnce(int* spins);
  // CompleteAnnouncedPop completes the pop announced in `announced_top`
  // (calls the AnnouncedPopHook, then CASes the top on; a lost CAS means
  // another party completed it). kCorrupt when the announced volume's link
  // is out of range (the announce stays); else kSuccess.
  PoolError CompleteAnnouncedPop(uint64_t announced_top) const;
  // ConfirmTaggedPush calls the TaggedPopHook for `top`, whose tagged link
  // `link` a pop just read, once *ver_top (the top the pop read before it)
  // is seen unchanged. Returns false, with *ver_top the new top, when it
  // moved meanwhile.
  [[gnu::noinline]] bool ConfirmTaggedPush(uint64_t* ver_top, uint64_t top,
                                           uint64_t link) const;
  // IsRange returns true when [first_index, first_index + count) is a
  // nonempty range inside [0, max_volumes).
  bool IsRange(uint64_t first_index, uint64_t count) const;
  // PopChecked pops into *index and checks the header; on success sets its
  // magic to `new_magic`, if given. *popped, when not null, receives a copy
  // of the header as popped (it must not be null on a join without
  // volume0). Shared by Remove, RemoveAnnounced and Acquire.
  PoolError PopChecked(uint64_t* index, VolumeHeader* popped, Wait wait,
                       std::optional<uint64_t> new_magic, bool announce) const;
  // Quarantine counts volume `index`, just popped by this thread with a bad
  // header, as quarantined and calls the QuarantinedPopHook. Out of line:
  // PopChecked is inlined into Acquire, and this is its cold branch.
  [[gnu::noinline]] void Quarantine(uint64_t index) const;
  // PopMapped is PopChecked for the calls that hand out an address
  // (Acquire, Remove): kInvalid on a join without volume0.
  PoolError PopMapped(VolumeHeader** volume, Wait wait,
                      uint64_t new_magic) const;
  // WalkStack makes Verify's checks of the pool magic and of the stack
  // headed by `ver_top`, walking it once. With stop_when_moved it calls the
  // test hook (kVerifyStep) before each step and returns what it has when
  // the top moved (the caller discards that walk). It asks `stop` every
  // kVerifyStopCheckSteps steps and returns CANCELLED when it says so.
  absl::StatusOr<VerifyReport> WalkStack(uint64_t ver_top, bool stop_when_moved,
                                         StopCheck stop) const;

  // HeaderToRead returns where to read volume `index`'s header: in place
  // on a join with volume0; else `scratch`, filled by the read hook, or
  // null when the hook failed.
  const VolumeHeader* HeaderToRead(uint64_t index,
                                   VolumeHeader* scratch) const;
  // HeaderToWalk is HeaderToRead for Verify's walk, which reads headers of
  // volumes it has not popped: through the read hook whenever the join has
  // one (volume0 or not), so that it never faults in the page of a volume
  // that is being given back; in place otherwise.
  const VolumeHeader* HeaderToWalk(uint64_t index, VolumeHeader* scratch) const;
  // HeaderWord names a header field the pool writes alone, by its offset.
  enum class HeaderWord : uint64_t {
    kMagic = offsetof(VolumeHeader, magic),
    kNext = offsetof(VolumeHeader, next),
  };
  // WriteHeaderWord stores `value` into that field of volume `index`'s
  // header (a relaxed store, or the write hook); false when the hook failed.
  bool WriteHeaderWord(uint64_t index, HeaderWord word, uint64_t value) const;
  // WriteFormatted writes a whole empty header (idx, info_sz, info, zero
  // padding, the empty magic, and `next`, unless it is kNoTopHint: then 0
  // through the hook, untouched in memory); false when the hook failed.
  bool WriteFormatted(uint64_t index, absl::string_view info,
                      uint64_t next) const;
  // CallTestHook calls the test hook, if any, at `point`.
  void CallTestHook(TestPoint point) const {
    if (test_hook_ != nullptr) test_hook_(test_hook_arg_, point);
  }

  // Link returns where volume `index`'s stack link is read from.
  std::atomic<uint64_t>& Link(uint64_t index) const {
    return links_ != nullptr ? links_[index] : VolumeAt(index)->next;
  }

  PoolHeader* header_;
  std::byte* volume0_;
  uint64_t max_volumes_;
  uint64_t footprint_;  // a power of two (Join checks)
  // log2(footprint_): a volume's address and index convert by a shift, not
  // by a multiplication and a division (the division was two thirds of
  // Release's time; docs/PERFORMANCE.md section 9).
  int footprint_shift_;
  std::atomic<uint64_t>* links_ = nullptr;  // see Join
  Hooks hooks_;  // see Join
  TestHook test_hook_ = nullptr;
  void* test_hook_arg_ = nullptr;
};

}  // namespace groove

#endif  // GROOVE_VOLUME_POOL_H_
