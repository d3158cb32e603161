#include "groove/volume_pool.h"

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace groove {
namespace {

// One step of the version: a push or a pop adds 2 so the lock bit (the
// version's lowest bit) is untouched.
constexpr uint64_t kVersionStep = uint64_t{2} << kIndexBits;
// The lock bit, in place in a versioned top.
constexpr uint64_t kLockBit = uint64_t{1} << kIndexBits;

// NextTop returns the top that follows `ver_top` after a push or pop that
// leaves `index` on top: the version advanced by 2 (modulo 2^30, by
// unsigned wrap-around), the index replaced.
constexpr uint64_t NextTop(uint64_t ver_top, uint64_t index) {
  return ((ver_top & ~kIndexMask) + kVersionStep) | index;
}

// SpinWait backs off while the maintenance lock is held: a pause
// instruction for the first spins, then yielding the CPU so that the lock
// holder (maybe descheduled on an oversubscribed machine) can finish.
class SpinWait {
 public:
  void Once() {
    if (++spins_ < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }

 private:
  int spins_ = 0;
};

}  // namespace

void VolumePool::Format(PoolHeader* header) {
  // Relaxed stores: the release store of magic below publishes them.
  header->ver_top.store(PackTop(0, kNullIndex), std::memory_order_relaxed);
  std::memset(header->reserved, 0, sizeof(header->reserved));
  PoolStats& stats = header->stats;
  stats.volumes_added.store(0, std::memory_order_relaxed);
  stats.volumes_removed.store(0, std::memory_order_relaxed);
  stats.acquires.store(0, std::memory_order_relaxed);
  stats.releases.store(0, std::memory_order_relaxed);
  stats.volumes_quarantined.store(0, std::memory_order_relaxed);
  std::memset(stats.reserved, 0, sizeof(stats.reserved));
  // Release: a joiner that acquires the magic sees the formatted header.
  header->magic.store(kPoolMagic, std::memory_order_release);
}

absl::StatusOr<VolumePool> VolumePool::Join(PoolHeader* header,
                                            void* volume0,
                                            uint64_t max_volumes,
                                            uint64_t footprint_bytes,
                                            std::atomic<uint64_t>* links) {
  if (header == nullptr || volume0 == nullptr) {
    return absl::InvalidArgumentError(
        "join a volume pool: the pool header and volume0 must not be null");
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
  if (max_volumes > (UINTPTR_MAX - base) / footprint_bytes) {
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
  return pool;
}

PoolError VolumePool::Push(uint64_t index, Wait wait) const {
  VolumeHeader* volume = VolumeAt(index);
  // Relaxed: the CAS below re-checks the value; the release CAS publishes
  // our writes to the volume's header.
  uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  SpinWait spin;
  for (;;) {
    if (TopIsLocked(ver_top)) {
      if (wait == Wait::kNoBlock) return PoolError::kAgain;
      spin.Once();
      ver_top = header_->ver_top.load(std::memory_order_relaxed);
      continue;
    }
    const uint64_t top = TopIndex(ver_top);
    if (top != kNullIndex && top >= max_volumes_) return PoolError::kCorrupt;
    // Relaxed: `next` is published by the release CAS; a racing popper that
    // reads a stale value fails its own CAS because the version moved.
    volume->next.store(top, std::memory_order_relaxed);
    if (links_ != nullptr) links_[index].store(top, std::memory_order_relaxed);
    if (test_hook_ != nullptr) test_hook_(test_hook_arg_);
    const uint64_t new_top = NextTop(ver_top, index);
    // Release on success: a popper that acquires this top sees the header.
    // Relaxed on failure: we only re-read the top and try again.
    if (header_->ver_top.compare_exchange_weak(ver_top, new_top,
                                               std::memory_order_release,
                                               std::memory_order_relaxed)) {
      return PoolError::kSuccess;
    }
  }
}

PoolError VolumePool::Pop(uint64_t* index, Wait wait,
                          std::atomic<uint64_t>* pop_intent) const {
  // Acquire: pairs with the release CAS of the push that made this top, so
  // the `next` read below is at least as new as that push's.
  uint64_t ver_top = header_->ver_top.load(std::memory_order_acquire);
  SpinWait spin;
  for (;;) {
    if (TopIsLocked(ver_top)) {
      if (wait == Wait::kNoBlock) return PoolError::kAgain;
      spin.Once();
      ver_top = header_->ver_top.load(std::memory_order_acquire);
      continue;
    }
    const uint64_t top = TopIndex(ver_top);
    if (top == kNullIndex) return PoolError::kEmpty;
    if (top >= max_volumes_) return PoolError::kCorrupt;
    // Relaxed: if another party popped `top` since we read ver_top, this
    // value may be stale, but then the version moved and our CAS fails.
    const uint64_t next = Link(top).load(std::memory_order_relaxed);
    if (next != kNullIndex && next >= max_volumes_) {
      // Re-read before blaming the pool: a racing pop and re-use of `top`
      // can show a torn view of a healthy stack.
      const uint64_t again = header_->ver_top.load(std::memory_order_acquire);
      if (again == ver_top) return PoolError::kCorrupt;
      ver_top = again;
      continue;
    }
    // Relaxed: ordered before the CAS by the CAS's release half.
    if (pop_intent != nullptr) pop_intent->store(top, std::memory_order_relaxed);
    if (test_hook_ != nullptr) test_hook_(test_hook_arg_);
    const uint64_t new_top = NextTop(ver_top, next);
    // Acquire on success: we now own volume `top` and must see everything
    // the pusher wrote to it; release so that a pop-intent record is never
    // seen after the pop itself. Acquire on failure: the returned top is
    // the one whose link we read next round.
    if (header_->ver_top.compare_exchange_weak(ver_top, new_top,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      *index = top;
      return PoolError::kSuccess;
    }
  }
}

PoolError VolumePool::Add(uint64_t first_index, uint64_t count,
                          absl::string_view info) const {
  const PoolError err = FormatRange(first_index, count, info);
  if (err != PoolError::kSuccess) return err;
  return PushRange(first_index, count);
}

bool VolumePool::IsRange(uint64_t first_index, uint64_t count) const {
  return count != 0 && first_index < max_volumes_ &&
         count <= max_volumes_ - first_index;
}

PoolError VolumePool::FormatRange(uint64_t first_index, uint64_t count,
                                  absl::string_view info) const {
  if (!IsRange(first_index, count)) return PoolError::kInvalid;
  const uint64_t end = first_index + count;
  // Refuse to format over a live volume. Relaxed: the caller owns the
  // range (REQUIRES), this only catches a caller's bookkeeping bug.
  for (uint64_t i = first_index; i < end; ++i) {
    const uint64_t magic = VolumeAt(i)->magic.load(std::memory_order_relaxed);
    if (magic == kVolumeMagic || magic == kVolumeEmptyMagic) {
      return PoolError::kKey;
    }
  }
  const size_t info_size =
      info.size() > kVolumeInfoMax ? kVolumeInfoMax : info.size();
  for (uint64_t i = first_index; i < end; ++i) {
    VolumeHeader* volume = VolumeAt(i);
    // Relaxed stores: the push's release CAS publishes the whole header.
    volume->idx.store(i, std::memory_order_relaxed);
    volume->info_sz.store(info_size, std::memory_order_relaxed);
    StoreVolumeInfo(volume, info.substr(0, info_size));
    volume->magic.store(kVolumeEmptyMagic, std::memory_order_relaxed);
    if (links_ != nullptr) {
      links_[i].store(kUnpushedLink, std::memory_order_relaxed);
    }
  }
  return PoolError::kSuccess;
}

PoolError VolumePool::PushRange(uint64_t first_index, uint64_t count) const {
  if (!IsRange(first_index, count)) return PoolError::kInvalid;
  const uint64_t end = first_index + count;
  for (uint64_t i = end; i-- > first_index;) {
    const PoolError err = Push(i, Wait::kBlock);
    if (err != PoolError::kSuccess) {
      // Only kCorrupt can happen with kBlock. Volumes from first_index to i
      // were formatted but not pushed: they are not volumes.
      for (uint64_t j = first_index; j <= i; ++j) {
        VolumeAt(j)->magic.store(kVolumeNotAVolume,
                                 std::memory_order_relaxed);
      }
      header_->stats.volumes_added.fetch_add(end - 1 - i,
                                             std::memory_order_relaxed);
      return err;
    }
  }
  // Relaxed: statistics only (see PoolStats).
  header_->stats.volumes_added.fetch_add(count, std::memory_order_relaxed);
  return PoolError::kSuccess;
}

PoolError VolumePool::PopChecked(VolumeHeader** volume, Wait wait,
                                 uint64_t new_magic,
                                 std::atomic<uint64_t>* pop_intent) const {
  *volume = nullptr;
  uint64_t index = kNullIndex;
  const PoolError err = Pop(&index, wait, pop_intent);
  if (err != PoolError::kSuccess) return err;
  VolumeHeader* popped = VolumeAt(index);
  *volume = popped;
  // Relaxed loads: the pop's acquire CAS made the header visible and the
  // volume is ours now.
  if (popped->magic.load(std::memory_order_relaxed) != kVolumeEmptyMagic ||
      popped->idx.load(std::memory_order_relaxed) != index ||
      popped->info_sz.load(std::memory_order_relaxed) > kVolumeInfoMax) {
    header_->stats.volumes_quarantined.fetch_add(1,
                                                 std::memory_order_relaxed);
    return PoolError::kCorrupt;
  }
  // Relaxed: the new owner is this thread; whoever it hands the volume to
  // synchronizes through its own means (or a later release push).
  popped->magic.store(new_magic, std::memory_order_relaxed);
  return PoolError::kSuccess;
}

PoolError VolumePool::Remove(VolumeHeader** volume, Wait wait,
                             std::atomic<uint64_t>* pop_intent) const {
  const PoolError err =
      PopChecked(volume, wait, kVolumeNotAVolume, pop_intent);
  if (err == PoolError::kSuccess) {
    header_->stats.volumes_removed.fetch_add(1, std::memory_order_relaxed);
  }
  return err;
}

PoolError VolumePool::Acquire(VolumeHeader** volume, Wait wait) const {
  const PoolError err = PopChecked(volume, wait, kVolumeMagic, nullptr);
  if (err == PoolError::kSuccess) {
    header_->stats.acquires.fetch_add(1, std::memory_order_relaxed);
  }
  return err;
}

PoolError VolumePool::Release(VolumeHeader* volume, Wait wait) const {
  const uint64_t index = IndexOf(volume);
  if (index == kNullIndex ||
      volume->idx.load(std::memory_order_relaxed) != index ||
      volume->magic.load(std::memory_order_relaxed) != kVolumeMagic) {
    return PoolError::kInvalid;
  }
  // Relaxed: the push's release CAS publishes it (and the caller's writes
  // to the data region) to the next acquirer.
  volume->magic.store(kVolumeEmptyMagic, std::memory_order_relaxed);
  const PoolError err = Push(index, wait);
  if (err != PoolError::kSuccess) {
    // Not pushed: the caller still holds it in use.
    volume->magic.store(kVolumeMagic, std::memory_order_relaxed);
    return err;
  }
  header_->stats.releases.fetch_add(1, std::memory_order_relaxed);
  return PoolError::kSuccess;
}

uint64_t VolumePool::PeekTop() const {
  // Relaxed: a hint, nothing is read through it.
  return TopIndex(header_->ver_top.load(std::memory_order_relaxed));
}

PoolError VolumePool::Lock(Wait wait) const {
  uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  SpinWait spin;
  for (;;) {
    if (TopIsLocked(ver_top)) {
      if (wait == Wait::kNoBlock) return PoolError::kAgain;
      spin.Once();
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
  // Adding the lock bit again clears it and carries into the version, so
  // lock+unlock moves the version by 2 like any other change. Release: the
  // next push/pop sees what the maintenance section wrote.
  header_->ver_top.fetch_add(kLockBit, std::memory_order_release);
}

bool VolumePool::IsLocked() const {
  return TopIsLocked(header_->ver_top.load(std::memory_order_relaxed));
}

void VolumePool::PushLocked(uint64_t index) const {
  // The lock is ours: no push or pop races. Relaxed: Unlock() publishes.
  const uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  const uint64_t top = TopIndex(ver_top);
  VolumeAt(index)->next.store(top, std::memory_order_relaxed);
  if (links_ != nullptr) links_[index].store(top, std::memory_order_relaxed);
  header_->ver_top.store(NextTop(ver_top, index), std::memory_order_relaxed);
}

void VolumePool::Reset() const {
  // The lock is ours, so no push or pop races this store. Keep the version
  // (with its lock bit) and drop the stack. Relaxed: Unlock() publishes.
  const uint64_t ver_top = header_->ver_top.load(std::memory_order_relaxed);
  header_->ver_top.store((ver_top & ~kIndexMask) | kNullIndex,
                         std::memory_order_relaxed);
  RestartCountsLocked(0);
}

void VolumePool::RestartCountsLocked(uint64_t empty_volumes) const {
  // Relaxed: statistics only (see PoolStats).
  PoolStats& stats = header_->stats;
  stats.volumes_added.store(empty_volumes, std::memory_order_relaxed);
  stats.volumes_removed.store(0, std::memory_order_relaxed);
  stats.acquires.store(0, std::memory_order_relaxed);
  stats.releases.store(0, std::memory_order_relaxed);
  stats.volumes_quarantined.store(0, std::memory_order_relaxed);
}

absl::StatusOr<VerifyReport> VolumePool::Verify() const {
  Lock(Wait::kBlock);
  absl::StatusOr<VerifyReport> report = VerifyLocked();
  Unlock();
  return report;
}

absl::StatusOr<VerifyReport> VolumePool::VerifyLocked() const {
  const uint64_t magic = header_->magic.load(std::memory_order_relaxed);
  if (magic != kPoolMagic) {
    return absl::DataLossError(absl::StrCat(
        "verify pool: header magic is 0x", absl::Hex(magic), ", not 0x",
        absl::Hex(kPoolMagic)));
  }
  // The lock (held by the caller, acquired with acquire order) keeps the
  // stack still; relaxed loads suffice.
  VerifyReport report;
  uint64_t index = TopIndex(header_->ver_top.load(std::memory_order_relaxed));
  while (index != kNullIndex) {
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
    const VolumeHeader* volume = VolumeAt(index);
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
    for (uint64_t i = info_sz; i < kVolumeInfoMax; ++i) {
      if (volume->info[i] != 0) {
        return absl::DataLossError(
            absl::StrCat("verify pool: volume ", index, " has info byte ", i,
                         " nonzero past info_sz ", info_sz));
      }
    }
    ++report.empty_volumes;
    const uint64_t next = volume->next.load(std::memory_order_relaxed);
    if (links_ != nullptr &&
        links_[index].load(std::memory_order_relaxed) != next) {
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
  // Relaxed: statistics only (see PoolStats).
  const PoolStats& stats = header_->stats;
  PoolCounts counts;
  counts.volumes_added = stats.volumes_added.load(std::memory_order_relaxed);
  counts.volumes_removed =
      stats.volumes_removed.load(std::memory_order_relaxed);
  counts.acquires = stats.acquires.load(std::memory_order_relaxed);
  counts.releases = stats.releases.load(std::memory_order_relaxed);
  counts.volumes_quarantined =
      stats.volumes_quarantined.load(std::memory_order_relaxed);
  const uint64_t pushes = counts.volumes_added + counts.releases;
  const uint64_t pops = counts.volumes_removed + counts.acquires +
                        counts.volumes_quarantined;
  counts.empty_volumes = pushes > pops ? pushes - pops : 0;
  return counts;
}

uint64_t VolumePool::IndexOf(const VolumeHeader* volume) const {
  const auto* address = reinterpret_cast<const std::byte*>(volume);
  if (address < volume0_) return kNullIndex;
  const uint64_t offset = static_cast<uint64_t>(address - volume0_);
  if (offset % footprint_ != 0) return kNullIndex;
  const uint64_t index = offset / footprint_;
  return index < max_volumes_ ? index : kNullIndex;
}

}  // namespace groove
