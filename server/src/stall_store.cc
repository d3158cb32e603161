#include "groove/server/stall_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "groove/server/log.h"

namespace groove::server {

absl::StatusOr<std::shared_ptr<StallGate>> StallGate::Open(
    const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("--testonly_stall_add_fifo=", path,
                                            ": ", std::strerror(errno)));
  }
  if (!S_ISFIFO(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--testonly_stall_add_fifo=", path, ": not a FIFO (mkfifo it)"));
  }
  // O_RDWR: opening does not wait for a writer, and reads never see EOF.
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("--testonly_stall_add_fifo=", path,
                                            ": open: ", std::strerror(errno)));
  }
  return std::shared_ptr<StallGate>(new StallGate(fd));
}

StallGate::~StallGate() { close(fd_); }

void StallGate::Wait() {
  // seq_cst pairs with ReleaseAll's store: a waiter that misses the flag
  // is blocked in read() before ReleaseAll writes its bytes.
  if (released_.load()) return;
  char byte;
  for (;;) {
    const ssize_t n = read(fd_, &byte, 1);
    if (n == 1) return;
    if (n < 0 && errno == EINTR) continue;
    return;  // an error: do not stall forever
  }
}

void StallGate::ReleaseAll() {
  if (released_.exchange(true)) return;
  // Wake every blocked reader: one byte each. A pipe holds 64 KiB, far
  // more than the worker threads that can be waiting; a reader that comes
  // later sees released_ and does not read.
  const char bytes[256] = {};
  const int flags = fcntl(fd_, F_GETFL);
  fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  while (write(fd_, bytes, sizeof(bytes)) < 0 && errno == EINTR) {
  }
}

TestonlyVolumeStore::TestonlyVolumeStore(std::unique_ptr<VolumeStore> store,
                                         Faults faults, std::string pool_name)
    : store_(std::move(store)),
      faults_(std::move(faults)),
      pool_name_(std::move(pool_name)) {}

absl::Status TestonlyVolumeStore::Allocate(uint64_t offset, uint64_t length) {
  if (faults_.stall_allocations != nullptr) {
    Log(LogLevel::kInfo, "testonly_stall_add_wait",
        {{"pool", pool_name_}, {"offset", offset}});
    faults_.stall_allocations->Wait();
    Log(LogLevel::kInfo, "testonly_stall_add_released",
        {{"pool", pool_name_}, {"offset", offset}});
  }
  return store_->Allocate(offset, length);
}

absl::Status TestonlyVolumeStore::Deallocate(uint64_t offset, uint64_t length) {
  if (faults_.stall_punches != nullptr) {
    Log(LogLevel::kInfo, "testonly_stall_punch_wait",
        {{"pool", pool_name_}, {"offset", offset}});
    faults_.stall_punches->Wait();
    Log(LogLevel::kInfo, "testonly_stall_punch_released",
        {{"pool", pool_name_}, {"offset", offset}});
  }
  if (faults_.fail_punches) {
    return absl::InternalError(absl::StrCat(
        "deallocate ", length, " bytes at ", offset, " of pool '", pool_name_,
        "': ", std::strerror(EIO), " (--testonly_fail_punch_pools)"));
  }
  return store_->Deallocate(offset, length);
}

}  // namespace groove::server
