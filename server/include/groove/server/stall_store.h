// groove/server/stall_store.h: test-only faults in a pool's volume store,
// so that tests can hold adds in flight for as long as they like
// (--testonly_stall_add_fifo) and make hole punches fail
// (--testonly_fail_punch_pools), against the real server binary.
//
// With a hook on, the server wraps the VolumeStore of each chosen pool
// (NamedPool::OpenOptions::wrap_store) in a TestonlyVolumeStore:
// - with a StallGate, its Allocate first logs `event=testonly_stall_add_wait
//   pool=NAME`, then blocks until it can read one byte from a FIFO, then
//   logs `event=testonly_stall_add_released` and allocates. A test writes
//   one byte to the FIFO per allocation it releases: no sleeps, the test
//   decides. The server keeps the FIFO open for reading and writing, so
//   opening it never blocks either side and a reader never sees
//   end-of-file.
// - with stall_punches (--testonly_stall_punch_pools, on the same FIFO),
//   its Deallocate waits likewise (`event=testonly_stall_punch_wait`), so
//   that a remove can be held inside its hole punch;
// - with fail_punches, its Deallocate punches nothing and fails as a
//   failing file system would (INTERNAL, "Input/output error"), so the
//   pool takes the path of a failed give-back (volumes_not_given_back).
//
// Never enable these in production: every add of a stalled pool waits for
// someone to write to the FIFO, and a pool whose punches fail never gives
// memory back.
//
// Example:
//   absl::StatusOr<std::shared_ptr<StallGate>> gate = StallGate::Open(path);
//   options.wrap_store = [gate = *gate, name](auto store) {
//     return std::make_unique<TestonlyVolumeStore>(
//         std::move(store), TestonlyVolumeStore::Faults{gate, false}, name);
//   };

#ifndef GROOVE_SERVER_STALL_STORE_H_
#define GROOVE_SERVER_STALL_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "groove/volume_store.h"

namespace groove::server {

// StallGate is the FIFO that stalled allocations wait on.
class StallGate {
 public:
  // Open opens the FIFO at `path` (which must exist and be a FIFO: the test
  // creates it with mkfifo). Errors: INVALID_ARGUMENT (not a FIFO),
  // NOT_FOUND / INTERNAL (open failed).
  static absl::StatusOr<std::shared_ptr<StallGate>> Open(
      const std::string& path);

  ~StallGate();
  StallGate(const StallGate&) = delete;
  StallGate& operator=(const StallGate&) = delete;

  // Wait blocks until it reads one byte from the FIFO, or returns at once
  // once ReleaseAll was called. Thread safety: any number of threads may
  // wait; each byte written releases exactly one of them.
  void Wait();

  // ReleaseAll lets every current and future Wait return. The server calls
  // it when its shutdown deadline passes, so a stalled add cannot hold the
  // server up forever. Thread safety: safe from any thread; idempotent.
  void ReleaseAll();

 private:
  explicit StallGate(int fd) : fd_(fd) {}

  const int fd_;  // the FIFO, O_RDWR
  std::atomic<bool> released_{false};
};

// TestonlyVolumeStore is a VolumeStore with the faults above; everything
// else goes straight to the wrapped store.
class TestonlyVolumeStore final : public VolumeStore {
 public:
  struct Faults {
    // Non-null: each Allocate waits on this gate first.
    std::shared_ptr<StallGate> stall_allocations;
    // Each Deallocate fails (INTERNAL, EIO's message) and punches nothing.
    bool fail_punches = false;
    // Non-null: each Deallocate waits on this gate first (a punch slow in
    // the kernel), logging event=testonly_stall_punch_wait and
    // testonly_stall_punch_released as Allocate does for adds.
    std::shared_ptr<StallGate> stall_punches;
  };

  TestonlyVolumeStore(std::unique_ptr<VolumeStore> store, Faults faults,
                      std::string pool_name);

  absl::Status Allocate(uint64_t offset, uint64_t length) override;
  absl::Status Deallocate(uint64_t offset, uint64_t length) override;
  absl::Status MapFixed(void* address, uint64_t offset,
                        uint64_t length) override {
    return store_->MapFixed(address, offset, length);
  }
  absl::Status Read(uint64_t offset, void* out,
                    uint64_t size) const override {
    return store_->Read(offset, out, size);
  }
  absl::Status Write(uint64_t offset, const void* bytes,
                     uint64_t size) override {
    return store_->Write(offset, bytes, size);
  }
  absl::StatusOr<uint64_t> AllocatedBytes() const override {
    return store_->AllocatedBytes();
  }
  uint64_t page_bytes() const override { return store_->page_bytes(); }

 private:
  std::unique_ptr<VolumeStore> store_;
  Faults faults_;
  std::string pool_name_;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_STALL_STORE_H_
