// clients/load/kernel_floor.h: the kernel floor of adding and removing
// volumes, what no volume pool can avoid: one memfd like a pool's store,
// volume i at byte offset i * volume_size. Benchmarks time it beside the
// pool's own AddVolume/RemoveVolume (tests/bench/backing_floor_bench.cc,
// groove-load --scale) so that both see the same machine at the same time.
//
// Adding volumes [first, first + count) is one fallocate of their range and
// one 512-byte header write per volume: with pwrite on `normal` (tmpfs,
// 4 KiB pages: mapping a small volume costs more than the write), through
// one mapping of the range on `huge` and `gigantic` (hugetlb, which has no
// write()). Removing them is punching the range's hole (and unmapping what
// the add mapped).
//
// Example:
//   groove::KernelFloor floor;
//   if (!floor.Open(groove::BackingKind::kNormal, 4096, 1024)) ...errno...
//   floor.Add(0, 1024);     // time this
//   floor.Remove(0, 1024);  // and this
//
// Not thread-safe: one thread uses one KernelFloor. At most one range is
// added (mapped) at a time on hugetlb.

#ifndef GROOVE_CLIENTS_LOAD_KERNEL_FLOOR_H_
#define GROOVE_CLIENTS_LOAD_KERNEL_FLOOR_H_

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "groove/backing.h"
#include "groove/volume.h"

namespace groove {

class KernelFloor {
 public:
  KernelFloor() = default;
  KernelFloor(const KernelFloor&) = delete;
  KernelFloor& operator=(const KernelFloor&) = delete;
  ~KernelFloor() {
    Unmap();
    if (fd_ >= 0) close(fd_);
  }

  // Open creates the memfd for `slots` volumes of `volume_size` bytes:
  // hugetlb with 2 MiB pages for kHuge, 1 GiB pages for kGigantic, shmem
  // otherwise. REQUIRES: not open yet; volume_size a multiple of the page
  // size. Returns false (errno set) on failure.
  bool Open(BackingKind kind, uint64_t volume_size, uint64_t slots) {
    kind_ = kind;
    volume_size_ = volume_size;
    unsigned flags = MFD_CLOEXEC;
    if (kind == BackingKind::kHuge) flags |= MFD_HUGETLB | MFD_HUGE_2MB;
    if (kind == BackingKind::kGigantic) flags |= MFD_HUGETLB | MFD_HUGE_1GB;
    fd_ = memfd_create("groove-floor", flags);
    if (fd_ < 0) return false;
    return ftruncate(fd_, static_cast<off_t>(volume_size * slots)) == 0;
  }

  // Add allocates volumes [first, first + count) and writes each one's
  // header (kVolumeHeaderBytes). REQUIRES: the range is within Open's
  // slots and not added. Returns false (errno set) on failure.
  bool Add(uint64_t first, uint64_t count) {
    const off_t off = static_cast<off_t>(first * volume_size_);
    const size_t len = count * volume_size_;
    if (fallocate(fd_, 0, off, static_cast<off_t>(len)) != 0) return false;
    char header[kVolumeHeaderBytes];
    std::memset(header, 0x5a, sizeof(header));
    if (kind_ != BackingKind::kHuge && kind_ != BackingKind::kGigantic) {
      for (uint64_t i = 0; i < count; ++i) {
        if (pwrite(fd_, header, sizeof(header),
                   off + static_cast<off_t>(i * volume_size_)) !=
            static_cast<ssize_t>(sizeof(header))) {
          return false;
        }
      }
      return true;
    }
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE, fd_, off);
    if (p == MAP_FAILED) return false;
    mapped_ = static_cast<char*>(p);
    mapped_len_ = len;
    for (uint64_t i = 0; i < count; ++i) {
      std::memcpy(mapped_ + i * volume_size_, header, sizeof(header));
    }
    return true;
  }

  // Remove punches the hole of volumes [first, first + count) and unmaps
  // what Add mapped. Returns false (errno set) when the punch fails.
  bool Remove(uint64_t first, uint64_t count) {
    const bool punched =
        fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(first * volume_size_),
                  static_cast<off_t>(count * volume_size_)) == 0;
    Unmap();
    return punched;
  }

 private:
  void Unmap() {
    if (mapped_ != nullptr) munmap(mapped_, mapped_len_);
    mapped_ = nullptr;
    mapped_len_ = 0;
  }

  BackingKind kind_ = BackingKind::kNormal;
  int fd_ = -1;
  uint64_t volume_size_ = 0;
  char* mapped_ = nullptr;
  size_t mapped_len_ = 0;
};

}  // namespace groove

#endif  // GROOVE_CLIENTS_LOAD_KERNEL_FLOOR_H_
