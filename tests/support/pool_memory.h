// tests/support/pool_memory.h: memory for a pool under test.
//
// PoolMemory creates a memfd holding a pool header page followed by a volume
// span of `max_volumes * footprint_bytes` bytes, and maps it. The memfd
// lets forked processes map the same pool again at another address
// (MapAgain), as data-plane processes do with a real pool. Pages are only
// allocated when touched, so a span of 1 GiB volumes costs only the headers
// a test writes.

#ifndef GROOVE_TESTS_SUPPORT_POOL_MEMORY_H_
#define GROOVE_TESTS_SUPPORT_POOL_MEMORY_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "groove/volume_pool.h"

namespace groove::testing {

class PoolMemory {
 public:
  // Mapping is one local view of the pool memory.
  struct Mapping {
    std::byte* base = nullptr;
    PoolHeader* header() const { return reinterpret_cast<PoolHeader*>(base); }
    std::byte* volume0() const { return base + kHeaderBytes; }
  };

  PoolMemory(uint64_t max_volumes, uint64_t footprint_bytes)
      : max_volumes_(max_volumes),
        footprint_(footprint_bytes),
        bytes_(kHeaderBytes + max_volumes * footprint_bytes) {
    fd_ = memfd_create("groove-test-pool", MFD_CLOEXEC);
    if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(bytes_)) != 0) {
      std::perror("PoolMemory: memfd_create/ftruncate");
      std::abort();
    }
    mapping_ = MapAgain();
  }
  ~PoolMemory() {
    munmap(mapping_.base, bytes_);
    close(fd_);
  }
  PoolMemory(const PoolMemory&) = delete;
  PoolMemory& operator=(const PoolMemory&) = delete;

  // MapAgain maps the same memory at a new address (never unmapped: for
  // forked children, which exit).
  Mapping MapAgain() const {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE, fd_, 0);
    if (p == MAP_FAILED) {
      std::perror("PoolMemory: mmap");
      std::abort();
    }
    return Mapping{static_cast<std::byte*>(p)};
  }

  const Mapping& mapping() const { return mapping_; }
  PoolHeader* header() const { return mapping_.header(); }
  std::byte* volume0() const { return mapping_.volume0(); }
  uint64_t max_volumes() const { return max_volumes_; }
  uint64_t footprint_bytes() const { return footprint_; }

  // FormatAndJoin formats the pool and returns a join (aborts on error).
  VolumePool FormatAndJoin() const {
    VolumePool::Format(header());
    return JoinAt(mapping_);
  }
  VolumePool JoinAt(const Mapping& m) const {
    absl::StatusOr<VolumePool> pool =
        VolumePool::Join(m.header(), m.volume0(), max_volumes_, footprint_);
    if (!pool.ok()) {
      std::fprintf(stderr, "PoolMemory: %s\n",
                   pool.status().ToString().c_str());
      std::abort();
    }
    return *pool;
  }

  // The page before the volume span, holding the pool header.
  static constexpr uint64_t kHeaderBytes = 4096;
  static_assert(sizeof(PoolHeader) <= kHeaderBytes);

 private:
  uint64_t max_volumes_;
  uint64_t footprint_;
  uint64_t bytes_;
  int fd_ = -1;
  Mapping mapping_;
};

// TestSeed returns GROOVE_TEST_SEED if set, else a random seed, and prints
// it so that a failing randomized run can be replayed.
inline uint64_t TestSeed() {
  uint64_t seed;
  if (const char* env = std::getenv("GROOVE_TEST_SEED")) {
    seed = std::strtoull(env, nullptr, 0);
  } else {
    seed = std::random_device{}();
  }
  std::printf("seed: GROOVE_TEST_SEED=%llu\n",
              static_cast<unsigned long long>(seed));
  return seed;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_POOL_MEMORY_H_
