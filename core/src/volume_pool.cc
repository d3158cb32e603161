#include "groove/volume_pool.h"

#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "groove/cas_backoff.h"

namespace groove {
namespace {

// One step of the version, above its two flag bits (the lock, the
// announced pop), which a step leaves untouched.
constexpr uint64_t kVersionStep = kTopVersionStep << kIndexBits;
// The flags, in place in a versioned top.
constexpr uint64_t kLockBit = uint64_t{1} << kIndexBits;
constexpr uint64_t kAnnouncedBit = uint64_t{2} << kIndexBits;
constexpr uint64_t kFlagBits = kLockBit | kAnnouncedBit;
static_assert(kVersionStep == kAnnouncedBit << 1);

// NextTop returns the top that follows `ver_top` after a push or pop that
// leaves `index` on top: the announce flag cleared, the version advanced by
// one step (modulo 2^30, by unsigned wrap-around), the index replaced.
constexpr uint64_t NextTop(uint64_t ver_top, uint64_t index) {
  return ((ver_top & ~(kIndexMask | kAnnouncedBit)) + kVersionStep) | index;
}

}  // namespace

// SpinOnce backs off once while the maintenance lock is held (*spins
// counts the caller's spins so far, from 0): a pause instruction for the
// first spins, then yielding the CPU so that the lock holder (maybe
// descheduled on an oversubscribed machine) can finish.
void VolumePool::SpinOnce(int* spins) {
  if (++*spins < 64) {
    CpuPause();
  } else {
    std::this_thread::yield();
  }
}

namespace {

// ---- Counter shards ---------------------------------------------------------
//
// The shared layout and the design are described at PoolStats (header). This
// is the process-local half: the token prefix, the table of thread slots
// and each thread's cache of the shards it holds.

// Counter names one of the five counters, in a shard or in the baseline.
using Counter = std::atomic<uint64_t> CounterValues::*;
constexpr Counter kCounters[] = {
    &CounterValues::volumes_added, &CounterValues::volumes_removed,
    &CounterValues::acquires, &CounterValues::releases,
    &CounterValues::volumes_quarantined};

// A token is `pid << 42 | generation << 10 | slot`: the pid (22 bits,
// Linux's PID_MAX_LIMIT) so that ReclaimDeadCounterShards can tell a dead
// owner and so that live processes of one pid namespace never share a
// token; a random 32-bit generation so that processes of different pid
// namespaces with equal pids almost never do; the process-local thread slot.
// Never 0 (0 means free), since no process has pid 0.
constexpr int kSlotBits = 10;
constexpr int kPidShift = 42;
constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;
constexpr uint64_t kPidMask = (uint64_t{1} << (64 - kPidShift)) - 1;
// kThreadSlots bounds the threads of one process that count at once; a
// thread beyond it counts in the fallback shard.
constexpr uint32_t kThreadSlots = 1024;
static_assert(kThreadSlots == (uint64_t{1} << kSlotBits));
// kShardCacheEntries is how many pools a thread keeps its claim for without
// searching the shards again.
constexpr int kShardCacheEntries = 4;
// kFallbackRetryCounts is how many counts a thread makes in the fallback
// shard before it looks for a free shard again.
constexpr uint32_t kFallbackRetryCounts = 4096;

// The process's token prefix (`pid << 42 | generation << 10`): 0 until a
// thread first needs a token; reset in a forked child, whose pid differs.
std::atomic<uint64_t> process_prefix{0};
// The thread slots in use in this process, one bit each.
std::atomic<uint64_t> slot_words[kThreadSlots / 64];

// ShardCacheEntry remembers the shard a thread counts in for one pool.
struct ShardCacheEntry {
  const PoolHeader* header;  // null: entry unused
  uint32_t shard;            // 1..kCounterShards-1, or 0 for the fallback
  uint32_t fallback_left;    // shard 0: counts left before trying again
};

// ThreadCounters is a thread's counting state. Trivially constructible and
// destructible, so the hot path reaches it without a TLS init guard.
struct ThreadCounters {
  uint64_t token;  // 0 until the thread takes a slot
  uint32_t slot;   // valid when token != 0
  bool exited;     // set at thread exit: count in the fallback from then on
  uint32_t next_victim;
  ShardCacheEntry entries[kShardCacheEntries];
};
constinit thread_local ThreadCounters thread_counters{};

// ThreadExit frees the thread's slot when the thread exits. It touches
// process-local memory only, never a pool: the pool may be unmapped by then.
struct ThreadExit {
  bool armed = false;
  ~ThreadExit() {
    ThreadCounters& t = thread_counters;
    if (t.token != 0) {
      // Release: the next thread to take this slot (acquire CAS in
      // TakeThreadSlot) inherits our shards and must see our counts.
      slot_words[t.slot / 64].fetch_and(~(uint64_t{1} << (t.slot % 64)),
                                        std::memory_order_release);
    }
    t = ThreadCounters{};
    t.exited = true;
  }
};
thread_local ThreadExit thread_exit;

// TokenPid returns the pid a token (or prefix) was made by.
pid_t TokenPid(uint64_t token) {
  return static_cast<pid_t>(token >> kPidShift);
}

// NewPrefix returns this process's token prefix, with a fresh generation.
uint64_t NewPrefix() {
  uint32_t generation = 0;
  if (getrandom(&generation, sizeof(generation), GRND_NONBLOCK) !=
      static_cast<ssize_t>(sizeof(generation))) {
    // No entropy yet (early boot): the time and an ASLR address will do;
    // the pid already keeps tokens apart within a pid namespace.
    const uint64_t mix =
        (static_cast<uint64_t>(
             std::chrono::steady_clock::now().time_since_epoch().count()) ^
         reinterpret_cast<uintptr_t>(&generation)) *
        0x9e3779b97f4a7c15ULL;
    generation = static_cast<uint32_t>(mix >> 32);
  }
  const uint64_t pid = static_cast<uint64_t>(getpid()) & kPidMask;
  return (pid << kPidShift) | (uint64_t{generation} << kSlotBits);
}

// ProcessPrefix returns this process's token prefix, making it on first use.
uint64_t ProcessPrefix() {
  // Relaxed: the prefix is a value, nothing is published through it.
  uint64_t prefix = process_prefix.load(std::memory_order_relaxed);
  if (prefix != 0) return prefix;
  const uint64_t fresh = NewPrefix();
  if (process_prefix.compare_exchange_strong(prefix, fresh,
                                             std::memory_order_relaxed)) {
    return fresh;
  }
  return prefix;  // another thread made it first
}

// OnForkChild runs in a forked child, in its only thread: new prefix, no
// slot taken, nothing cached, so that the child never writes a shard that
// its parent's thread still owns. Relaxed: single-threaded here.
void OnForkChild() {
  process_prefix.store(0, std::memory_order_relaxed);
  for (std::atomic<uint64_t>& word : slot_words) {
    word.store(0, std::memory_order_relaxed);
  }
  const bool exited = thread_counters.exited;
  thread_counters = ThreadCounters{};
  thread_counters.exited = exited;
}

// TakeThreadSlot takes the lowest free thread slot into *slot; false when
// all are taken.
bool TakeThreadSlot(uint32_t* slot) {
  for (uint32_t w = 0; w < kThreadSlots / 64; ++w) {
    // Relaxed: the CAS below re-checks the value.
    uint64_t bits = slot_words[w].load(std::memory_order_relaxed);
    while (bits != ~uint64_t{0}) {
      const int bit = std::countr_one(bits);
      // Acquire on success: pairs with the release fetch_and of the slot's
      // previous holder, whose shards (and counts) we inherit.
      if (slot_words[w].compare_exchange_weak(bits, bits | (uint64_t{1} << bit),
                                              std::memory_order_acquire,
                                              std::memory_order_relaxed)) {
        *slot = w * 64 + static_cast<uint32_t>(bit);
        return true;
      }
    }
  }
  return false;
}

// EnsureToken gives the calling thread a token (taking a slot) if it has
// none. Returns false when it cannot: no slot free, fork handler not
// registered, or the thread is exiting.
bool EnsureToken(ThreadCounters& t) {
  if (t.token != 0) return true;
  if (t.exited) return false;
  // Registered before this process's first token, so no fork can copy a
  // token into a child unnoticed.
  static const bool fork_handler_registered =
      pthread_atfork(nullptr, nullptr, &OnForkChild) == 0;
  if (!fork_handler_registered) return false;
  uint32_t slot = 0;
  if (!TakeThreadSlot(&slot)) return false;
  thread_exit.armed = true;  // registers ThreadExit's destructor
  t.slot = slot;
  t.token = ProcessPrefix() | slot;
  return true;
}

// ClaimShard returns the index of the shard the calling thread counts in
// for the pool at `header` (0: the fallback) and caches it: the shard this
// thread's slot already owns there, else a free one.
uint32_t ClaimShard(PoolHeader* header) {
  ThreadCounters& t = thread_counters;
  uint32_t found = 0;
  if (EnsureToken(t)) {
    CounterShard* shards = header->stats.shards;
    // Relaxed: a shard owned by our token was claimed by this thread or by
    // a previous holder of our slot, ordered before us by the slot's
    // release/acquire hand-over.
    for (uint32_t i = 1; i < kCounterShards && found == 0; ++i) {
      if (shards[i].owner.load(std::memory_order_relaxed) == t.token) {
        found = i;
      }
    }
    // Odd shards first: each starts a 128-byte pair of lines, so the first
    // (kCounterShards - 1) / 2 threads do not share a pair (adjacent-line
    // prefetchers move lines in pairs).
    for (uint32_t first : {1u, 2u}) {
      for (uint32_t i = first; i < kCounterShards && found == 0; i += 2) {
        uint64_t expected = 0;
        // Relaxed pre-check: skip owned shards without a locked CAS.
        // Acquire on success: pairs with the release that gave the shard
        // back, so we add to its final counts.
        if (shards[i].owner.load(std::memory_order_relaxed) == 0 &&
            shards[i].owner.compare_exchange_strong(
                expected, t.token, std::memory_order_acquire,
                std::memory_order_relaxed)) {
          found = i;
        }
      }
    }
  }
  if (t.exited) return found;  // no caching while the thread exits
  ShardCacheEntry* entry = nullptr;
  for (ShardCacheEntry& e : t.entries) {
    if (e.header == header) entry = &e;
  }
  for (ShardCacheEntry& e : t.entries) {
    if (entry == nullptr && e.header == nullptr) entry = &e;
  }
  if (entry == nullptr) {
    entry = &t.entries[t.next_victim++ % kShardCacheEntries];
  }
  *entry = ShardCacheEntry{header, found, kFallbackRetryCounts};
  return found;
}

// AddToOwned adds `n` to `counter` of a shard the calling thread owns: a
// plain load and store, since nobody else writes it. Relaxed: statistics
// only.
void AddToOwned(CounterShard& shard, Counter counter, uint64_t n) {
  std::atomic<uint64_t>& value = shard.counts.*counter;
  value.store(value.load(std::memory_order_relaxed) + n,
              std::memory_order_relaxed);
}

// AddToFallback adds `n` to `counter` of the shared fallback shard.
// Relaxed: statistics only.
void AddToFallback(PoolHeader* header, Counter counter, uint64_t n) {
  (header->stats.shards[0].counts.*counter)
      .fetch_add(n, std::memory_order_relaxed);
}

// CountSlow is Count's path when the thread's cached claim for `header` is
// missing, stale or a fallback whose retry is due.
[[gnu::noinline]] void CountSlow(PoolHeader* header, Counter counter,
                                 uint64_t n) {
  const uint32_t shard = ClaimShard(header);
  if (shard == 0) {
    AddToFallback(header, counter, n);
  } else {
    AddToOwned(header->stats.shards[shard], counter, n);
  }
}

// Count adds `n` to `counter` for the pool at `header`: into the calling
// thread's own shard (no read-modify-write) when its cached claim holds.
inline void Count(PoolHeader* header, Counter counter, uint64_t n) {
  ThreadCounters& t = thread_counters;
  for (ShardCacheEntry& e : t.entries) {
    if (e.header != header) continue;
    if (e.shard != 0) {
      CounterShard& shard = header->stats.shards[e.shard];
      // Relaxed: our own claim, or a Format/other pool at this address
      // (then it differs and we claim again).
      if (shard.owner.load(std::memory_order_relaxed) == t.token) {
        AddToOwned(shard, counter, n);
        return;
      }
    } else if (--e.fallback_left != 0) {
      AddToFallback(header, counter, n);
      return;
    }
    break;
  }
  CountSlow(header, counter, n);
}

// SumShards returns the sum of `counter` over all shards.
uint64_t SumShards(const PoolHeader* header, Counter counter) {
  uint64_t sum = 0;
  for (const CounterShard& shard : header->stats.shards) {
    // Relaxed: statistics only.
    sum += (shard.counts.*counter).load(std::memory_order_relaxed);
  }
  return sum;
}

// VerifyStopped is Verify's answer when its caller's StopCheck said stop,
// `volumes_walked` into the walk it stopped.
absl::Status VerifyStopped(uint64_t volumes_walked) {
  return absl::CancelledError(
      absl::StrCat("verify pool: stopped at its caller's request ",
                   volumes_walked == 0
                       ? std::string("before it read the stack's headers")
                       : absl::StrCat("after reading the headers of ",
                                      volumes_walked, " volumes of the stack"),
                   "; nothing wrong was found on the way"));
}

}  // namespace

void VolumePool::Format(PoolHeader* header) {
  // Relaxed stores: the release store of magic below publishes them.
  header->ver_top.store(PackTop(0, kNullIndex), std::memory_order_relaxed);
  std::memset(header->reserved, 0, sizeof(header->reserved));
  PoolStats& stats = header->stats;
  for (Counter counter : kCounters) {
    (stats.baseline.counts.*counter).store(0, std::memory_order_relaxed);
  }
  stats.baseline.added_at_restart.store(0, std::memory_order_relaxed);
  std::memset(stats.baseline.reserved, 0, sizeof(stats.baseline.reserved));
  for (CounterShard& shard : stats.shards) {
    shard.owner.store(0, std::memory_order_relaxed);
    for (Counter counter : kCounters) {
      (shard.counts.*counter).store(0, std::memory_order_relaxed);
    }
    std::memset(shard.reserved, 0, sizeof(shard.reserved));
  }
  // Release: a joiner that acquires the magic sees the formatted header.
  header->magic.store(kPoolMagic, std::memory_order_release);
}

absl::StatusOr<VolumePool> VolumePool::Join(PoolHeader* header,
                                            void* volume0,
                                            uint64_t max_volumes,
                                            uint64_t footprint_bytes,
                                            std::atomic<uint64_t>* links,
                                            Hooks hooks) {
  const bool header_io =
      hooks.read_header != nullptr && hooks.write_header != nullptr;
  if (header == nullptr || (volume0 == nullptr && !header_io)) {
    return absl::InvalidArgumentError(
        "join a volume pool: the pool header and volume0 must not be null "
        "(volume0 may be null only with both header I/O hooks)");
  }
  if (volume0 == nullptr && links == nullptr) {
    return absl::InvalidArgumentError(
        "join a volume pool: a join without volume0 needs a link table");
  }
  // A read hook alone serves a mapped join's Verify; a write hook is for a
  // join without volume0, which needs both.
  if (hooks.write_header != nullptr && hooks.read_header == nullptr) {
    return absl::InvalidArgumentError(
        "join a volume pool: a header write hook needs a read hook");
  }
  if (reinterpret_cast<uintptr_t>(header) % kPoolAlign != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "join a volume pool: the pool header must be ", kPoolAlign,
        "-byte aligned"));
  }
  if (reinterpret_cast<uintptr_t>(volume0) % kVolumeAlign != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "join a volume pool: volume0 must be ", kVolumeAlign,
        "-byte aligned"));
  }
  if (!IsPowerOfTwo(footprint_bytes) ||
      footprint_bytes < kVolumeMinFootprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        "join a volume pool: footprint ", footprint_bytes,
        " bytes is not a power of two of at least ", kVolumeMinFootprint));
  }
  if (max_volumes == 0 || max_volumes > kMaxVolumes) {
    return absl::InvalidArgumentError(
        absl::StrCat("join a volume pool: max_volumes ", max_volumes,
                     " is outside [1, ", kMaxVolumes, "]"));
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(volume0);
  if (volume0 != nullptr &&
      max_volumes > (UINTPTR_MAX - base) / footprint_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "join a volume pool: ", max_volumes, " volumes of ", footprint_bytes,
        " bytes do not fit in the address space after volume0"));
  }
  // Acquire: pairs with Format's release store of the magic.
  const uint64_t magic = header->magic.load(std::memory_order_acquire);
  if (magic != kPoolMagic) {
    return absl::FailedPreconditionError(absl::StrCat(
        "join a volume pool: header magic is 0x", absl::Hex(magic),
        ", not 0x", absl::Hex(kPoolMagic), "; format the pool first"));
  }
  VolumePool pool(header, static_cast<std::byte*>(volume0), max_volumes,
                  footprint_bytes);
  pool.links_ = links;
  pool.hooks_ = hooks;
  return pool;
}

PoolError VolumePool::WaitOutFlags(uint64_t ver_top, Wait wait,
                                   int* spins) const {
  if (TopIsLocked(ver_top)) {
    if (wait == Wait::kNoBlock) return PoolError::kAgain;
    CallTestHook(TestPoint::kLockedWait);
    SpinOnce(spins);
    return PoolError::kSuccess;
  }
  // The top volume is an owner's already: finish taking it off first.
  return CompleteAnnouncedPop(ver_top);
}

const VolumeHeader* VolumePool::HeaderToRead(uint64_t index,
                                              VolumeHeader* scratch) const {
  // A join has volume0 or header hooks (Join): branch on the pointer the
  // mapped path loads anyway.
  if (volume0_ != nullptr) [[likely]] return VolumeAt(index);
  return hooks_.read_header(hooks_.arg, index, scratch) ? scratch : nullptr;
}

const VolumeHeader* VolumePool::HeaderToWalk(uint64_t index,
                                             VolumeHeader* scratch) const {
  // Verify's walk reads headers of volumes nobody has popped for it: a
  // read in place of one that is being removed (popped and punched since
  // the walk read the top) would fault its page back into the store. A
  // read hook (pread) reads a hole as zeros and allocates nothing.
  if (hooks_.read_header != nullptr) {
    return hooks_.read_header(hooks_.arg, index, scratch) ? scratch : nullptr;
  }
  return VolumeAt(index);
}

bool VolumePool::WriteHeaderWord(uint64_t index, HeaderWord word,
                                 uint64_t value) const {
  if (volume0_ != nullptr) [[likely]] {
    VolumeHeader* volume = VolumeAt(index);
    // Relaxed: every caller owns the volume, and publishes it with a
    // release that follows (a push's CAS) if at all.
    (word == HeaderWord::kMagic ? volume->magic : volume->next)
        .store(value, std::memory_order_relaxed);
    return true;
  }
  return hooks_.write_header(hooks_.arg, index,
                             static_cast<uint64_t>(word), &value,
                             sizeof(value));
}

bool VolumePool::WriteFormatted(uint64_t index, absl::string_view info,
                                uint64_t next) const {
  if (volume0_ != nullptr) {
    VolumeHeader* volume = VolumeAt(index);
    // Relaxed stores: the push's release CAS publishes the whole header.
    volume->idx.store(index, std::memory_order_relaxed);
    if (next != kNoTopHint) volume->next.store(next, std::memory_order_relaxed);
    volume->info_sz.store(info.size(), std::memory_order_relaxed);
    StoreVolumeInfo(volume, info);
    volume->magic.store(kVolumeEmptyMagic, std::memory_order_relaxed);
    return true;
  }
  VolumeHeader image;
  image.magic.store(kVolumeEmptyMagic, std::memory_order_relaxed);
  image.idx.store(index, std::memory_order_relaxed);
  image.next.store(next == kNoTopHint ? 0 : next, std::memory_order_relaxed);
  image.info_sz.store(info.size(), std::memory_order_relaxed);
  StoreVolumeInfo(&image, info);
  return hooks_.write_header(hooks_.arg, index, 0, &image, sizeof(image));
}

// Push, Pop, PopChecked and PopMapped are inlined into their callers in
// this file (Acquire, Release, Remove...): as calls, their prologues,
// epilogues and argument spills cost the Acquire+Release pair 5-6% of its
// throughput, uncontended and at 2-8 threads (docs/PERFORMANCE.md §11).
// They are private and called from this file only.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline PoolError VolumePool::Push(
    uint64_t index, Wait wait, uint64_t tag, uint64_t next_in_header,
    uint64_t new_top_index, bool* header_write_failed) const {
  // Relaxed: the CAS below re-checks the value; the release CAS publishes
  // our writes to the volume's header.
  uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  int spins = 0;
  // The header's `next` as formatted, then as this push last wrote it
  // (kNoTopHint: unknown, no index is that large). Only this push writes
  // the header of the volume it pushes.
  uint64_t next_written = next_in_header;
  CasBackoff backoff;
  for (;;) {
    if ((ver_top & kFlagBits) != 0) [[unlikely]] {
      if (PoolError err = WaitOutFlags(ver_top, wait, &spins);
          err != PoolError::kSuccess) {
        return err;
      }
      ver_top = header_->ver_top.load(std::memory_order_relaxed);
      continue;
    }
    const uint64_t top = TopIndex(ver_top);
    if (top != kNullIndex && top >= max_volumes_) return PoolError::kCorrupt;
    // `next` is published by the release CAS; a racing popper that reads a
    // stale value fails its own CAS because the version moved. Nothing is
    // linked yet when the header cannot be written.
    if (top != next_written) {
      if (!WriteHeaderWord(index, HeaderWord::kNext, top)) {
        if (header_write_failed != nullptr) *header_write_failed = true;
        return PoolError::kCorrupt;
      }
      next_written = top;
      if (volume0_ == nullptr) [[unlikely]] {
        // The write was a system call (a header hook), long enough for
        // others to move the top many times: CAS against a fresh top,
        // reusing the write if the same index is on top. Otherwise a push
        // racing a busy data plane would almost never win its CAS.
        ver_top = header_->ver_top.load(std::memory_order_relaxed);
        continue;
      }
    }
    if (links_ != nullptr) {
      links_[index].store(tag == kUntagged ? top : TaggedLink(top, tag),
                          std::memory_order_relaxed);
    }
    CallTestHook(TestPoint::kBeforeCas);
    const uint64_t new_top = NextTop(ver_top, new_top_index);
    // Release on success: a popper that acquires this top sees the header
    // (and the rest of a chain: its headers and links).
    // Relaxed on failure: we only re-read the top and try again.
    if (header_->ver_top.compare_exchange_weak(ver_top, new_top,
                                               std::memory_order_release,
                                               std::memory_order_relaxed)) {
      return PoolError::kSuccess;
    }
    // The owner's tagged pushes retry at once (see CasBackoff).
    if (tag == kUntagged) backoff.AfterLostCas();
  }
}

bool VolumePool::ConfirmTaggedPush(uint64_t* ver_top, uint64_t top,
                                   uint64_t link) const {
  // Tell the tagged pusher its push happened (see PushRangeTagged), but only
  // once the top is seen unchanged after the link was read: then `top` has
  // been on the stack since before that read, so the link is the one its
  // last push wrote and that push's CAS is done.
  const uint64_t again = header_->ver_top.load(std::memory_order_acquire);
  if (again != *ver_top) {
    *ver_top = again;
    return false;
  }
  hooks_.on_tagged_pop(hooks_.arg, top, LinkTag(link));
  return true;
}

PoolError VolumePool::CompleteAnnouncedPop(uint64_t announced_top) const {
  const uint64_t top = TopIndex(announced_top);
  if (top >= max_volumes_) return PoolError::kCorrupt;
  // Relaxed: nobody writes the link of a volume on the stack; the announcer
  // read (and range-checked) this same value before announcing. A helper
  // that is late reads whatever, but then its CAS below fails.
  const uint64_t next = LinkNext(Link(top).load(std::memory_order_relaxed));
  if (next != kNullIndex && next >= max_volumes_) {
    // Late (the pop was completed and the link rewritten since) or corrupt.
    return header_->ver_top.load(std::memory_order_acquire) == announced_top
               ? PoolError::kCorrupt
               : PoolError::kSuccess;
  }
  if (hooks_.on_announced_pop != nullptr) {
    hooks_.on_announced_pop(hooks_.arg, top, announced_top);
  }
  uint64_t expected = announced_top;
  // Release on success: the hook's record (and, for the announcer, the
  // pop) is visible to whoever sees the volume off the stack; acquire: the
  // next pop of `next` sees its pusher's header. A failure means another
  // party completed this pop.
  header_->ver_top.compare_exchange_strong(expected,
                                           NextTop(announced_top, next),
                                           std::memory_order_acq_rel,
                                           std::memory_order_relaxed);
  return PoolError::kSuccess;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline PoolError VolumePool::Pop(
    uint64_t* index, Wait wait, bool announce) const {
  // Acquire: pairs with the release CAS of the push that made this top, so
  // the `next` read below is at least as new as that push's.
  uint64_t ver_top = header_->ver_top.load(std::memory_order_acquire);
  int spins = 0;
  CasBackoff backoff;
  for (;;) {
    if ((ver_top & kFlagBits) != 0) [[unlikely]] {
      if (PoolError err = WaitOutFlags(ver_top, wait, &spins);
          err != PoolError::kSuccess) {
        return err;
      }
      ver_top = header_->ver_top.load(std::memory_order_acquire);
      continue;
    }
    const uint64_t top = TopIndex(ver_top);
    if (top == kNullIndex) return PoolError::kEmpty;
    if (top >= max_volumes_) return PoolError::kCorrupt;
    // If another party popped `top` since we read ver_top, this value may be
    // stale, but then the version moved and our CAS fails. Acquire (a plain
    // load on x86): ConfirmTaggedPush's re-read of the top must not be
    // hoisted above it.
    const uint64_t link = Link(top).load(std::memory_order_acquire);
    if (IsTaggedLink(link) && hooks_.on_tagged_pop != nullptr) [[unlikely]] {
      if (!ConfirmTaggedPush(&ver_top, top, link)) continue;
    }
    const uint64_t next = LinkNext(link);
    if (next != kNullIndex && next >= max_volumes_) {
      // Re-read before blaming the pool: a racing pop and re-use of `top`
      // can show a torn view of a healthy stack.
      const uint64_t again = header_->ver_top.load(std::memory_order_acquire);
      if (again == ver_top) return PoolError::kCorrupt;
      ver_top = again;
      continue;
    }
    CallTestHook(TestPoint::kBeforeCas);
    if (announce) [[unlikely]] {
      // Announce: from a successful CAS on, `top` is ours, whoever
      // completes the pop. Acquire on success: we own volume `top` and must
      // see what its pusher wrote; release: the hooks' records before it.
      // Acquire on failure: the returned top is the one we read next round.
      if (header_->ver_top.compare_exchange_weak(
              ver_top, ver_top | kAnnouncedBit, std::memory_order_acq_rel,
              std::memory_order_acquire)) {
        CallTestHook(TestPoint::kAnnounced);
        // Cannot fail: the link was range-checked above and nobody writes
        // the link of a volume on the stack.
        CompleteAnnouncedPop(ver_top | kAnnouncedBit);
        *index = top;
        return PoolError::kSuccess;
      }
      continue;  // the owner retries at once (see CasBackoff)
    }
    const uint64_t new_top = NextTop(ver_top, next);
    // Acquire on success: we now own volume `top` and must see everything
    // the pusher wrote to it; release: the tagged-pop hook's record is seen
    // by whoever sees the volume off the stack. Acquire on failure: the
    // returned top is the one whose link we read next round.
    if (header_->ver_top.compare_exchange_weak(ver_top, new_top,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      *index = top;
      return PoolError::kSuccess;
    }
    backoff.AfterLostCas();
  }
}

PoolError VolumePool::Add(uint64_t first_index, uint64_t count,
                          absl::string_view info) const {
  // The top now is the best guess of the top the push will find.
  const uint64_t top_hint = PeekTop();
  const PoolError err = FormatRange(first_index, count, info, top_hint);
  if (err != PoolError::kSuccess) return err;
  return PushRange(first_index, count, top_hint);
}

bool VolumePool::IsRange(uint64_t first_index, uint64_t count) const {
  return count != 0 && first_index < max_volumes_ &&
         count <= max_volumes_ - first_index;
}

PoolError VolumePool::FormatRange(uint64_t first_index, uint64_t count,
                                  absl::string_view info,
                                  uint64_t top_hint) const {
  if (!IsRange(first_index, count)) return PoolError::kInvalid;
  const uint64_t end = first_index + count;
  // Refuse to format over a live volume. Relaxed: the caller owns the
  // range (REQUIRES), this only catches a caller's bookkeeping bug.
  for (uint64_t i = first_index; i < end; ++i) {
    VolumeHeader scratch;
    const VolumeHeader* volume = HeaderToRead(i, &scratch);
    if (volume == nullptr) return PoolError::kCorrupt;
    const uint64_t magic = volume->magic.load(std::memory_order_relaxed);
    if (magic == kVolumeMagic || magic == kVolumeEmptyMagic) {
      return PoolError::kKey;
    }
  }
  const size_t info_size =
      info.size() > kVolumeInfoMax ? kVolumeInfoMax : info.size();
  for (uint64_t i = first_index; i < end; ++i) {
    if (!WriteFormatted(i, info.substr(0, info_size),
                        HintedNext(i, end, top_hint))) {
      return PoolError::kCorrupt;
    }
    if (links_ != nullptr) {
      links_[i].store(kUnpushedLink, std::memory_order_relaxed);
    }
  }
  return PoolError::kSuccess;
}

PoolError VolumePool::PushRange(uint64_t first_index, uint64_t count,
                                uint64_t top_hint) const {
  return PushRangeWithTag(first_index, count, kUntagged, top_hint,
                          /*count_added=*/true);
}

PoolError VolumePool::PushRangeTagged(uint64_t first_index, uint64_t count,
                                      uint64_t tag, uint64_t top_hint) const {
  if (links_ == nullptr) return PoolError::kInvalid;
  return PushRangeWithTag(first_index, count, tag & kLinkTagMask, top_hint,
                          /*count_added=*/true);
}

PoolError VolumePool::PutBackTagged(uint64_t index, uint64_t tag,
                                    uint64_t top_hint) const {
  if (links_ == nullptr) return PoolError::kInvalid;
  return PushRangeWithTag(index, 1, tag & kLinkTagMask, top_hint,
                          /*count_added=*/false);
}

void VolumePool::CountRemoved(uint64_t count) const {
  Count(header_, &CounterValues::volumes_removed, count);
}

PoolError VolumePool::PushRangeWithTag(uint64_t first_index, uint64_t count,
                                       uint64_t tag, uint64_t top_hint,
                                       bool count_added) const {
  if (!IsRange(first_index, count)) return PoolError::kInvalid;
  const uint64_t end = first_index + count;
  for (uint64_t i = end; i-- > first_index;) {
    const PoolError err =
        Push(i, Wait::kBlock, tag, HintedNext(i, end, top_hint), i);
    if (err != PoolError::kSuccess) {
      // Only kCorrupt can happen with kBlock. Volumes from first_index to i
      // were formatted but not pushed: they are not volumes.
      for (uint64_t j = first_index; j <= i; ++j) {
        // Best effort: a header that cannot be written is not a volume's.
        WriteHeaderWord(j, HeaderWord::kMagic, kVolumeNotAVolume);
      }
      if (count_added && i + 1 != end) {
        Count(header_, &CounterValues::volumes_added, end - 1 - i);
      }
      return err;
    }
  }
  if (count_added) Count(header_, &CounterValues::volumes_added, count);
  return PoolError::kSuccess;
}

PoolError VolumePool::PushChainTagged(std::span<const uint64_t> indices,
                                      uint64_t tag, uint64_t top_hint,
                                      bool* header_write_failed) const {
  if (links_ == nullptr || indices.empty()) return PoolError::kInvalid;
  for (const uint64_t i : indices) {
    if (i >= max_volumes_) return PoolError::kInvalid;
  }
  tag &= kLinkTagMask;
  const size_t last = indices.size() - 1;
  // Link the chain. Nobody reads these links or headers before the CAS
  // that puts indices[0] on top publishes them (release).
  for (size_t k = 0; k < last; ++k) {
    if (top_hint == kNoTopHint &&
        !WriteHeaderWord(indices[k], HeaderWord::kNext, indices[k + 1])) {
      if (header_write_failed != nullptr) *header_write_failed = true;
      return PoolError::kCorrupt;
    }
    links_[indices[k]].store(TaggedLink(indices[k + 1], tag),
                             std::memory_order_relaxed);
  }
  // Then the last onto the top, with the CAS that pushes them all. Only
  // kCorrupt can fail it (kBlock), before the CAS: nothing is pushed.
  const PoolError err = Push(indices[last], Wait::kBlock, tag, top_hint,
                             indices[0], header_write_failed);
  if (err != PoolError::kSuccess) return err;
  Count(header_, &CounterValues::volumes_added, indices.size());
  return PoolError::kSuccess;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline PoolError VolumePool::PopChecked(
    uint64_t* index, VolumeHeader* popped, Wait wait,
    std::optional<uint64_t> new_magic, bool announce) const {
  *index = kNullIndex;
  uint64_t top = kNullIndex;
  const PoolError err = Pop(&top, wait, announce);
  if (err != PoolError::kSuccess) return err;
  *index = top;
  // Relaxed loads (or a read hook): the pop's acquire CAS made the header
  // visible and the volume is ours now.
  const VolumeHeader* header = HeaderToRead(top, popped);
  if (header != nullptr && header != popped && popped != nullptr) {
    CopyVolumeHeader(*header, popped);
  }
  if (header == nullptr ||
      header->magic.load(std::memory_order_relaxed) != kVolumeEmptyMagic ||
      header->idx.load(std::memory_order_relaxed) != top ||
      header->info_sz.load(std::memory_order_relaxed) > kVolumeInfoMax ||
      // The new owner is this thread; whoever it hands the volume to
      // synchronizes through its own means (or a later release push).
      (new_magic.has_value() &&
       !WriteHeaderWord(top, HeaderWord::kMagic, *new_magic))) {
    Quarantine(top);
    return PoolError::kCorrupt;
  }
  return PoolError::kSuccess;
}

void VolumePool::Quarantine(uint64_t index) const {
  Count(header_, &CounterValues::volumes_quarantined, 1);
  if (hooks_.on_quarantined_pop != nullptr) {
    hooks_.on_quarantined_pop(hooks_.arg, index);
  }
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline PoolError VolumePool::PopMapped(
    VolumeHeader** volume, Wait wait, uint64_t new_magic) const {
  *volume = nullptr;
  if (volume0_ == nullptr) return PoolError::kInvalid;
  uint64_t index = kNullIndex;
  const PoolError err =
      PopChecked(&index, nullptr, wait, new_magic, /*announce=*/false);
  if (index != kNullIndex) *volume = VolumeAt(index);
  return err;
}

PoolError VolumePool::Remove(VolumeHeader** volume, Wait wait) const {
  const PoolError err = PopMapped(volume, wait, kVolumeNotAVolume);
  if (err == PoolError::kSuccess) {
    Count(header_, &CounterValues::volumes_removed, 1);
  }
  return err;
}

PoolError VolumePool::RemoveAnnounced(uint64_t* index, VolumeHeader* popped,
                                      Wait wait) const {
  // Not counted here: the caller counts the removes that take effect
  // (CountRemoved), so that a put-back never makes the counter go down.
  return PopChecked(index, popped, wait, /*new_magic=*/std::nullopt,
                    /*announce=*/true);
}

PoolError VolumePool::Acquire(VolumeHeader** volume, Wait wait) const {
  const PoolError err = PopMapped(volume, wait, kVolumeMagic);
  if (err == PoolError::kSuccess) {
    Count(header_, &CounterValues::acquires, 1);
  }
  return err;
}

PoolError VolumePool::Release(VolumeHeader* volume, Wait wait) const {
  if (volume0_ == nullptr) return PoolError::kInvalid;
  const uint64_t index = IndexOf(volume);
  if (index == kNullIndex) return PoolError::kInvalid;
  // Relaxed: the state only says whether the volume has memory behind it;
  // the header checks below decide, as they always did (see Hooks).
  if (hooks_.volume_states != nullptr &&
      ((hooks_.releasable_states >>
        (hooks_.volume_states[index].load(std::memory_order_relaxed) &
         ((uint64_t{1} << kVolumeStateBits) - 1))) &
       1) == 0) [[unlikely]] {
    return PoolError::kInvalid;
  }
  if (volume->idx.load(std::memory_order_relaxed) != index ||
      volume->magic.load(std::memory_order_relaxed) != kVolumeMagic) {
    return PoolError::kInvalid;
  }
  // Relaxed: the push's release CAS publishes it (and the caller's writes
  // to the data region) to the next acquirer.
  volume->magic.store(kVolumeEmptyMagic, std::memory_order_relaxed);
  // Relaxed: the volume is ours, so its `next` is what we or its last
  // pusher wrote. Passing it spares Push the store when the top is the
  // same (always, for a volume released right after it was acquired and
  // nobody else moved the top).
  const PoolError err =
      Push(index, wait, kUntagged, volume->next.load(std::memory_order_relaxed),
           index);
  if (err != PoolError::kSuccess) {
    // Not pushed: the caller still holds it in use.
    volume->magic.store(kVolumeMagic, std::memory_order_relaxed);
    return err;
  }
  Count(header_, &CounterValues::releases, 1);
  return PoolError::kSuccess;
}

uint64_t VolumePool::PeekTop() const {
  // Relaxed: a hint, nothing is read through it.
  return TopIndex(header_->ver_top.load(std::memory_order_relaxed));
}

PoolError VolumePool::Lock(Wait wait) const {
  uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  int spins = 0;
  for (;;) {
    if (TopIsLocked(ver_top)) {
      if (wait == Wait::kNoBlock) return PoolError::kAgain;
      SpinOnce(&spins);
      ver_top = header_->ver_top.load(std::memory_order_relaxed);
      continue;
    }
    if (TopIsPopAnnounced(ver_top) &&
        CompleteAnnouncedPop(ver_top) == PoolError::kSuccess) {
      // Completed (by us or another party): lock what follows. A corrupt
      // announced volume is locked as it is, for Verify to report.
      ver_top = header_->ver_top.load(std::memory_order_relaxed);
      continue;
    }
    // Acquire on success: the maintenance section sees every push and pop
    // that came before. Relaxed on failure: only re-read.
    if (header_->ver_top.compare_exchange_weak(ver_top, ver_top | kLockBit,
                                               std::memory_order_acquire,
                                               std::memory_order_relaxed)) {
      return PoolError::kSuccess;
    }
  }
}

void VolumePool::Unlock() const {
  // Adding kVersionStep - kLockBit clears the lock bit and carries past the
  // announce flag (unchanged) into the version, so lock+unlock moves the
  // version by one step like any other change. Release: the next push/pop
  // sees what the maintenance section wrote.
  header_->ver_top.fetch_add(kVersionStep - kLockBit,
                             std::memory_order_release);
}

bool VolumePool::IsLocked() const {
  return TopIsLocked(header_->ver_top.load(std::memory_order_relaxed));
}

void VolumePool::PushLocked(uint64_t index) const {
  // The lock is ours: no push or pop races. Relaxed: Unlock() publishes.
  const uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  const uint64_t top = TopIndex(ver_top);
  // A header that cannot be written keeps its old `next`; the link table
  // is what pops follow, and Verify reports the difference.
  WriteHeaderWord(index, HeaderWord::kNext, top);
  if (links_ != nullptr) links_[index].store(top, std::memory_order_relaxed);
  header_->ver_top.store(NextTop(ver_top, index), std::memory_order_relaxed);
}

void VolumePool::Reset() const {
  // The lock is ours, so no push or pop races this store. Keep the version
  // (with its lock bit) and drop the stack (and a pop announced on it).
  // Relaxed: Unlock() publishes.
  const uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  header_->ver_top.store(
      (ver_top & ~(kIndexMask | kAnnouncedBit)) | kNullIndex,
      std::memory_order_relaxed);
  RestartCountsLocked(0);
}

void VolumePool::RestartCountsLocked(uint64_t empty_volumes) const {
  // The shards belong to their owners: record their sums as the baseline
  // instead of zeroing them. Relaxed: statistics only (see PoolStats); the
  // maintenance lock orders restarts among themselves.
  CounterBaseline& baseline = header_->stats.baseline;
  for (Counter counter : kCounters) {
    (baseline.counts.*counter)
        .store(SumShards(header_, counter), std::memory_order_relaxed);
  }
  baseline.added_at_restart.store(empty_volumes, std::memory_order_relaxed);
}

absl::StatusOr<VerifyReport> VolumePool::Verify() const {
  return Verify([](uint64_t) { return absl::OkStatus(); },
                [] { return false; });
}

absl::StatusOr<VerifyReport> VolumePool::Verify(StackCheck also_check,
                                                StopCheck stop) const {
  bool locked = false;
  CasBackoff backoff;
  for (uint64_t walk = 1; walk <= kVerifyWalks; ++walk) {
    if (stop()) return VerifyStopped(0);
    if (walk > 1) backoff.AfterLostCas();
    // Acquire: the walk reads each header on the stack as the push that
    // put it there published it.
    const uint64_t ver_top = header_->ver_top.load(std::memory_order_acquire);
    locked = TopIsLocked(ver_top);
    if (locked) continue;  // a recovery moves the stack: wait it out
    if (TopIsPopAnnounced(ver_top)) {
      // Help, as every operation does; the next walk starts after it.
      if (CompleteAnnouncedPop(ver_top) == PoolError::kSuccess ||
          TopMovedSince(ver_top)) {
        continue;
      }
      return absl::DataLossError(absl::StrCat(
          "verify pool: a pop of volume ", TopIndex(ver_top),
          " was announced and cannot complete: its link is out of range"));
    }
    absl::Status also = also_check(ver_top);
    if (stop()) return VerifyStopped(0);
    absl::StatusOr<VerifyReport> report =
        also.ok() ? WalkStack(ver_top, /*stop_when_moved=*/true, stop) : also;
    if (report.status().code() == absl::StatusCode::kCancelled) {
      return report;  // stopped (VerifyStopped)
    }
    // A walk the stack moved under may have read anything: only a still
    // one is believed, problems included.
    if (TopMovedSince(ver_top)) continue;
    if (report.ok()) report->walks = walk;
    return report;
  }
  return absl::AbortedError(
      locked ? absl::StrCat("verify pool: the pool stayed locked for "
                            "maintenance (a recovery is running) through ",
                            kVerifyWalks, " tries; retry in a moment")
             : absl::StrCat("verify pool: pool users pushed or popped "
                            "volumes during each of ",
                            kVerifyWalks,
                            " walks of the stack, so it could not be "
                            "checked (nothing wrong was found on the way); "
                            "retry when the pool is quieter"));
}

bool VolumePool::TopMovedSince(uint64_t ver_top) const {
  // The reader's side of a sequence lock, as a read-don't-modify-write
  // (Boehm, "Can seqlocks get along with programming language memory
  // models?"; not a fence, which ThreadSanitizer cannot model): adding 0
  // with release order reads the latest top and keeps the reads made
  // before it (a walk's) before it. A pop whose later writes (the in-use
  // magic) a walk read has its CAS (acquire) before this in the top's
  // modification order, or this release would synchronize with it and the
  // walk could not have read them: so an unchanged top means the walk read
  // the stack this top word heads. It writes the top's cache line once per
  // walk, and changes no value, so no CAS of another party fails for it.
  return header_->ver_top.fetch_add(0, std::memory_order_release) != ver_top;
}

absl::StatusOr<VerifyReport> VolumePool::VerifyLocked() const {
  // The lock (held by the caller, acquired with acquire order) keeps the
  // stack still; relaxed loads suffice.
  const uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  if (TopIsPopAnnounced(ver_top)) {
    // Lock completes an announced pop unless it cannot (see Lock).
    return absl::DataLossError(absl::StrCat(
        "verify pool: a pop of volume ", TopIndex(ver_top),
        " was announced and cannot complete: its link is out of range"));
  }
  absl::StatusOr<VerifyReport> report =
      WalkStack(ver_top, /*stop_when_moved=*/false, [] { return false; });
  if (report.ok()) report->walks = 1;
  return report;
}

absl::StatusOr<VerifyReport> VolumePool::WalkStack(uint64_t ver_top,
                                                   bool stop_when_moved,
                                                   StopCheck stop) const {
  const uint64_t magic = header_->magic.load(std::memory_order_relaxed);
  if (magic != kPoolMagic) {
    return absl::DataLossError(absl::StrCat("verify pool: header magic is 0x",
                                            absl::Hex(magic), ", not 0x",
                                            absl::Hex(kPoolMagic)));
  }
  VerifyReport report;
  uint64_t index = TopIndex(ver_top);
  while (index != kNullIndex) {
    if (report.empty_volumes % kVerifyStopCheckSteps ==
            kVerifyStopCheckSteps - 1 &&
        stop()) {
      return VerifyStopped(report.empty_volumes);
    }
    if (stop_when_moved) {
      CallTestHook(TestPoint::kVerifyStep);
      // Relaxed: only a hint to stop early; Verify's own check decides.
      if (header_->ver_top.load(std::memory_order_relaxed) != ver_top) {
        return report;
      }
    }
    if (index >= max_volumes_) {
      return absl::DataLossError(absl::StrCat(
          "verify pool: stack entry ", report.empty_volumes, " is index ",
          index, ", outside [0, ", max_volumes_, ")"));
    }
    if (report.empty_volumes == max_volumes_) {
      return absl::DataLossError(absl::StrCat(
          "verify pool: the stack has a cycle: more than max_volumes=",
          max_volumes_, " entries (last index ", index, ")"));
    }
    VolumeHeader scratch;
    const VolumeHeader* volume = HeaderToWalk(index, &scratch);
    if (volume == nullptr) {
      return absl::DataLossError(absl::StrCat(
          "verify pool: the header of volume ", index,
          " on the stack cannot be read"));
    }
    const uint64_t volume_magic = volume->magic.load(std::memory_order_relaxed);
    const uint64_t volume_idx = volume->idx.load(std::memory_order_relaxed);
    const uint64_t info_sz = volume->info_sz.load(std::memory_order_relaxed);
    if (volume_magic != kVolumeEmptyMagic) {
      return absl::DataLossError(absl::StrCat(
          "verify pool: volume ", index, " is on the stack but its magic is 0x",
          absl::Hex(volume_magic), ", not the empty magic"));
    }
    if (volume_idx != index) {
      return absl::DataLossError(absl::StrCat("verify pool: volume ", index,
                                              " records idx ", volume_idx));
    }
    if (info_sz > kVolumeInfoMax) {
      return absl::DataLossError(
          absl::StrCat("verify pool: volume ", index, " has info_sz ",
                       info_sz, " > ", kVolumeInfoMax));
    }
    // Atomic loads (LoadVolumeInfo): without the lock a pusher may be
    // formatting this header again, if the walk is overtaken.
    unsigned char info[kVolumeInfoMax];
    LoadVolumeInfo(*volume, info);
    for (uint64_t i = info_sz; i < kVolumeInfoMax; ++i) {
      if (info[i] != 0) {
        return absl::DataLossError(
            absl::StrCat("verify pool: volume ", index, " has info byte ", i,
                         " nonzero past info_sz ", info_sz));
      }
    }
    ++report.empty_volumes;
    const uint64_t next = volume->next.load(std::memory_order_relaxed);
    if (links_ != nullptr &&
        LinkNext(links_[index].load(std::memory_order_relaxed)) != next) {
      return absl::DataLossError(absl::StrCat(
          "verify pool: volume ", index, " links to ",
          links_[index].load(std::memory_order_relaxed),
          " in the link table but to ", next, " in its header"));
    }
    index = next;
  }
  return report;
}

PoolCounts VolumePool::Counts() const {
  // Relaxed: statistics only (see PoolStats). Each counter is its shard sum
  // minus the baseline, clamped at 0: a restart racing this read can leave
  // a baseline newer than the sums read.
  const CounterBaseline& baseline = header_->stats.baseline;
  auto count = [&](Counter counter) {
    const uint64_t sum = SumShards(header_, counter);
    const uint64_t base =
        (baseline.counts.*counter).load(std::memory_order_relaxed);
    return sum > base ? sum - base : 0;
  };
  PoolCounts counts;
  counts.volumes_added =
      count(&CounterValues::volumes_added) +
      baseline.added_at_restart.load(std::memory_order_relaxed);
  counts.volumes_removed = count(&CounterValues::volumes_removed);
  counts.acquires = count(&CounterValues::acquires);
  counts.releases = count(&CounterValues::releases);
  counts.volumes_quarantined = count(&CounterValues::volumes_quarantined);
  const uint64_t pushes = counts.volumes_added + counts.releases;
  const uint64_t pops = counts.volumes_removed + counts.acquires +
                        counts.volumes_quarantined;
  counts.empty_volumes = pushes > pops ? pushes - pops : 0;
  return counts;
}

void VolumePool::ReturnCounterShards() const {
  // Relaxed: the prefix is a value. 0: no thread of this process has a
  // token, so none holds a shard.
  const uint64_t prefix = process_prefix.load(std::memory_order_relaxed);
  if (prefix == 0) return;
  for (uint64_t i = 1; i < kCounterShards; ++i) {
    std::atomic<uint64_t>& owner = header_->stats.shards[i].owner;
    // Relaxed: the CAS below re-checks the value.
    uint64_t token = owner.load(std::memory_order_relaxed);
    if ((token & ~kSlotMask) != prefix) continue;
    // Release on success: the next owner's acquire CAS sees the counts
    // (ours, and through the caller's synchronization, our threads').
    owner.compare_exchange_strong(token, 0, std::memory_order_release,
                                  std::memory_order_relaxed);
  }
}

uint64_t VolumePool::ReclaimDeadCounterShards() const {
  const pid_t self = getpid();
  uint64_t reclaimed = 0;
  for (uint64_t i = 1; i < kCounterShards; ++i) {
    std::atomic<uint64_t>& owner = header_->stats.shards[i].owner;
    // Relaxed: the CAS below re-checks the value.
    uint64_t token = owner.load(std::memory_order_relaxed);
    if (token == 0) continue;
    const pid_t pid = TokenPid(token);
    // Only ESRCH means gone: EPERM is a live process of another user.
    if (pid == self || kill(pid, 0) == 0 || errno != ESRCH) continue;
    // Relaxed: the dead owner publishes nothing (its last counts are in
    // the shard already); the CAS only keeps us from freeing a shard that
    // was reclaimed and claimed again meanwhile.
    if (owner.compare_exchange_strong(token, 0, std::memory_order_relaxed)) {
      ++reclaimed;
    }
  }
  return reclaimed;
}

uint64_t VolumePool::IndexOf(const VolumeHeader* volume) const {
  const auto* address = reinterpret_cast<const std::byte*>(volume);
  if (volume0_ == nullptr || address < volume0_) return kNullIndex;
  const uint64_t offset = static_cast<uint64_t>(address - volume0_);
  if ((offset & (footprint_ - 1)) != 0) return kNullIndex;
  const uint64_t index = offset >> footprint_shift_;
  return index < max_volumes_ ? index : kNullIndex;
}

}  // namespace groove
