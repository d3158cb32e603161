// groove/volume_store.h: the memory behind a pool's volumes.
//
// A volume store is one file (a tmpfs or hugetlbfs file, a hugetlb memfd or
// a regular file) in which volume `i` lives at offset `i * footprint`. The
// file is sized to the whole index range up front; memory is only taken
// when a range is allocated (fallocate) and given back when it is
// deallocated (punch a hole).
//
// `VolumeStore` is the seam through which tests inject faults (ENOSPC in
// the middle of a batch, a stall inside an allocation); `FdVolumeStore` is
// the real thing.

#ifndef GROOVE_VOLUME_STORE_H_
#define GROOVE_VOLUME_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace groove {

class VolumeStore {
 public:
  virtual ~VolumeStore() = default;

  // Allocate takes the memory of [offset, offset + length). On failure no
  // page of the range stays allocated: hugetlbfs and tmpfs keep the pages
  // a failed fallocate took, so the range is punched again before
  // returning. Errors: RESOURCE_EXHAUSTED (ENOSPC, ENOMEM: not enough
  // pages or space), INTERNAL (anything else), with the errno text.
  // Thread safety: safe to call concurrently on disjoint ranges; blocks the
  // calling thread for as long as the kernel takes (seconds for 1 GiB of
  // hugepages), never other callers.
  virtual absl::Status Allocate(uint64_t offset, uint64_t length) = 0;

  // Deallocate gives the memory of [offset, offset + length) back to the
  // kernel (punch a hole); reading the range afterwards yields zeros.
  // Deallocating an unallocated range succeeds. Thread safety: as Allocate.
  virtual absl::Status Deallocate(uint64_t offset, uint64_t length) = 0;

  // MapFixed maps [offset, offset + length) of the store read-write and
  // shared at `address`, replacing whatever was mapped there.
  // REQUIRES: address and length are multiples of page_bytes().
  virtual absl::Status MapFixed(void* address, uint64_t offset,
                                uint64_t length) = 0;

  // Read copies [offset, offset + size) of the store into `out` without
  // mapping it (pread): a hole reads as zeros and stays a hole, on tmpfs
  // and hugetlbfs alike. Errors: INTERNAL with the errno text (or a short
  // read past the end of the store). Thread safety: safe to call
  // concurrently with everything; the bytes of a range another party
  // writes meanwhile may be a mix of old and new.
  virtual absl::Status Read(uint64_t offset, void* out,
                            uint64_t size) const = 0;

  // Write copies `size` bytes from `bytes` into the store at `offset`.
  // REQUIRES: the range is allocated (a write into a hole would allocate
  // it; on hugetlbfs it can fail with SIGBUS). Errors: RESOURCE_EXHAUSTED,
  // INTERNAL. Thread safety: safe to call concurrently on disjoint ranges.
  virtual absl::Status Write(uint64_t offset, const void* bytes,
                             uint64_t size) = 0;

  // AllocatedBytes returns how many bytes of memory the store holds now.
  virtual absl::StatusOr<uint64_t> AllocatedBytes() const = 0;

  // page_bytes is the page size the store maps with.
  virtual uint64_t page_bytes() const = 0;
};

// FdVolumeStore is a VolumeStore over an open file descriptor, which it
// owns (closes on destruction).
class FdVolumeStore final : public VolumeStore {
 public:
  // `description` names the store in error messages (a path, or "hugetlb
  // memfd"). `advise_hugepages` asks for transparent hugepages on
  // mappings (normal backing).
  FdVolumeStore(int fd, uint64_t page_bytes, std::string description,
                bool advise_hugepages);
  ~FdVolumeStore() override;
  FdVolumeStore(const FdVolumeStore&) = delete;
  FdVolumeStore& operator=(const FdVolumeStore&) = delete;

  absl::Status Allocate(uint64_t offset, uint64_t length) override;
  absl::Status Deallocate(uint64_t offset, uint64_t length) override;
  absl::Status MapFixed(void* address, uint64_t offset,
                        uint64_t length) override;
  absl::Status Read(uint64_t offset, void* out,
                    uint64_t size) const override;
  // Write is pwrite, except on hugetlbfs, which has no write(2): there it
  // copies through a shared mapping of the whole store that the first
  // Write makes (MAP_NORESERVE; kept until destruction). That mapping's
  // page-table entries are zapped when the range is punched, as any
  // mapping's are.
  absl::Status Write(uint64_t offset, const void* bytes,
                     uint64_t size) override;
  absl::StatusOr<uint64_t> AllocatedBytes() const override;
  uint64_t page_bytes() const override { return page_bytes_; }

  int fd() const { return fd_; }

 private:
  // WriteMapping returns the whole-store mapping Write uses on hugetlbfs,
  // making it on first use (lock-free: a racing second mapping is undone).
  absl::StatusOr<std::byte*> WriteMapping();

  int fd_;
  uint64_t page_bytes_;
  std::string description_;
  bool advise_hugepages_;
  bool hugetlbfs_;  // the file is on hugetlbfs (or a hugetlb memfd)
  std::atomic<std::byte*> write_mapping_{nullptr};
  std::atomic<uint64_t> write_mapping_bytes_{0};  // set before it
};

// PrepareStoreDirectory readies `dir` to hold volume stores in a shared,
// world-writable place (/dev/shm, where `normal` pools keep their stores
// when the data directory is not a tmpfs). Another local user could create
// such a directory first, or put a symlink there, and so read every volume
// or steer the owner's writes. So: a missing `dir` is created 0700 (its
// parent must exist); an existing one must be a directory, not a symlink,
// owned by this process's effective uid, and loses any access for group
// and others (0755 becomes 0700; it is ours to narrow). Returns OK, or
// FAILED_PRECONDITION naming the problem and what to do (e.g. "is owned by
// uid 1000, not this server's uid 0: another user created it; remove it"),
// or PERMISSION_DENIED / INTERNAL with the errno text of a failed system
// call. Thread safety: safe to call concurrently on the same `dir`.
absl::Status PrepareStoreDirectory(const std::string& dir);

}  // namespace groove

#endif  // GROOVE_VOLUME_STORE_H_
