// tests/support/fault_store.h: a VolumeStore that fails on command.
//
// FaultStore wraps the real store of a NamedPool (OpenOptions::wrap_store)
// and, when armed, makes one Allocate fail after the real one succeeded,
// as a kernel that runs out of pages in the middle of a batch would (and,
// like the kernel, it keeps the pages: the pool must give them back); or
// makes one Read, Write or Deallocate fail (an I/O error); or runs a
// test's hook right after one Read (after_read); or
// makes one MapFixed fail with ENOMEM before mapping, as mmap does when the
// process is out of memory or mappings (vm.max_map_count); or limits the
// memory the store may hold, as nr_hugepages does (capacity_bytes).
//
// Like the kernel, it serialises Allocate and Deallocate on one lock (tmpfs
// and hugetlbfs hold the file's inode lock for a whole fallocate), and a
// test can hold an Allocate inside that lock (during_allocate) to stand for
// an allocation of hugepages that takes seconds.

#ifndef GROOVE_TESTS_SUPPORT_FAULT_STORE_H_
#define GROOVE_TESTS_SUPPORT_FAULT_STORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "groove/volume_store.h"

namespace groove::testing {

class FaultStore final : public VolumeStore {
 public:
  // Shared state, so the test keeps control after the pool owns the store.
  struct Control {
    std::atomic<int> fail_allocate_in{0};  // fail the Nth next Allocate
    std::atomic<int> fail_write_in{0};     // fail the Nth next Write
    std::atomic<int> fail_deallocate_in{0};  // fail the Nth next Deallocate
    std::atomic<int> fail_read_in{0};        // fail the Nth next Read
    // When not 0: an Allocate that would leave the store holding more
    // bytes than this fails before allocating, as fallocate does when the
    // kernel has no free hugepages left (nr_hugepages).
    std::atomic<uint64_t> capacity_bytes{0};
    std::atomic<int> allocates{0};    // Allocate calls
    std::atomic<int> deallocates{0};  // Deallocate calls
    std::atomic<int> maps{0};         // MapFixed calls
    std::atomic<int> reads{0};        // Read calls
    std::atomic<int> writes{0};       // Write calls
    // Called inside Allocate, holding the store's lock (the stand-in for
    // the inode lock), before the real call. Set it while no other thread
    // uses the pool.
    std::function<void()> during_allocate;
    // Called once, after the next Read at offset `after_read_at` and
    // before that Read returns (cleared first), as a thread stalled just
    // after its read would let others run. Set it while no other thread
    // uses the pool.
    uint64_t after_read_at = 0;
    std::function<void()> after_read;
    std::mutex inode_lock;
  };

  FaultStore(std::unique_ptr<VolumeStore> real,
             std::shared_ptr<Control> control)
      : real_(std::move(real)), control_(std::move(control)) {}

  absl::Status Allocate(uint64_t offset, uint64_t length) override {
    std::lock_guard<std::mutex> inode(control_->inode_lock);
    control_->allocates.fetch_add(1);
    if (control_->during_allocate) control_->during_allocate();
    if (const uint64_t capacity = control_->capacity_bytes.load();
        capacity != 0) {
      absl::StatusOr<uint64_t> held = real_->AllocatedBytes();
      if (!held.ok()) return held.status();
      if (*held + length > capacity) {
        return absl::ResourceExhaustedError(
            "injected: no space left on device (capacity)");
      }
    }
    absl::Status s = real_->Allocate(offset, length);
    if (s.ok() && control_->fail_allocate_in.load() > 0 &&
        control_->fail_allocate_in.fetch_sub(1) == 1) {
      // The real allocation happened and is left in place.
      return absl::ResourceExhaustedError("injected: no space left on device");
    }
    return s;
  }
  absl::Status Deallocate(uint64_t offset, uint64_t length) override {
    std::lock_guard<std::mutex> inode(control_->inode_lock);
    control_->deallocates.fetch_add(1);
    if (control_->fail_deallocate_in.load() > 0 &&
        control_->fail_deallocate_in.fetch_sub(1) == 1) {
      // Nothing is punched: the memory and the headers stay as they were.
      return absl::InternalError("injected: punching a hole failed");
    }
    return real_->Deallocate(offset, length);
  }
  absl::Status MapFixed(void* address, uint64_t offset,
                        uint64_t length) override {
    control_->maps.fetch_add(1);
    return real_->MapFixed(address, offset, length);
  }
  absl::Status Read(uint64_t offset, void* out,
                    uint64_t size) const override {
    control_->reads.fetch_add(1);
    if (control_->fail_read_in.load() > 0 &&
        control_->fail_read_in.fetch_sub(1) == 1) {
      return absl::InternalError("injected: read: Input/output error");
    }
    absl::Status read = real_->Read(offset, out, size);
    if (control_->after_read && offset == control_->after_read_at) {
      std::function<void()> hook = std::move(control_->after_read);
      control_->after_read = nullptr;
      hook();
    }
    return read;
  }
  absl::Status Write(uint64_t offset, const void* bytes,
                     uint64_t size) override {
    control_->writes.fetch_add(1);
    if (control_->fail_write_in.load() > 0 &&
        control_->fail_write_in.fetch_sub(1) == 1) {
      return absl::InternalError("injected: write: Input/output error");
    }
    return real_->Write(offset, bytes, size);
  }
  absl::StatusOr<uint64_t> AllocatedBytes() const override {
    return real_->AllocatedBytes();
  }
  uint64_t page_bytes() const override { return real_->page_bytes(); }

 private:
  std::unique_ptr<VolumeStore> real_;
  std::shared_ptr<Control> control_;
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_FAULT_STORE_H_
