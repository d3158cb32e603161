#include "groove/volume_store.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace groove {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOSPC || err == ENOMEM) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace

FdVolumeStore::FdVolumeStore(int fd, uint64_t page_bytes,
                             std::string description, bool advise_hugepages)
    : fd_(fd),
      page_bytes_(page_bytes),
      description_(std::move(description)),
      advise_hugepages_(advise_hugepages),
      hugetlbfs_([fd] {
        struct statfs fs;
        return fstatfs(fd, &fs) == 0 &&
               static_cast<uint64_t>(fs.f_type) == HUGETLBFS_MAGIC;
      }()) {}

FdVolumeStore::~FdVolumeStore() {
  if (std::byte* mapping = write_mapping_.load(std::memory_order_relaxed)) {
    munmap(mapping, write_mapping_bytes_.load(std::memory_order_relaxed));
  }
  close(fd_);
}

absl::Status FdVolumeStore::Read(uint64_t offset, void* out,
                                 uint64_t size) const {
  auto* to = static_cast<std::byte*>(out);
  while (size > 0) {
    const ssize_t n = pread(fd_, to, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return n < 0 ? ErrnoStatus(errno, absl::StrCat("read ", size,
                                                     " bytes at ", offset,
                                                     " of ", description_))
                   : absl::InternalError(absl::StrCat(
                         "read at ", offset, " of ", description_,
                         ": past the end of the store"));
    }
    to += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status FdVolumeStore::Write(uint64_t offset, const void* bytes,
                                  uint64_t size) {
  if (hugetlbfs_) {
    absl::StatusOr<std::byte*> mapping = WriteMapping();
    if (!mapping.ok()) return mapping.status();
    // Relaxed: ordered by WriteMapping's acquire.
    const uint64_t bytes_mapped =
        write_mapping_bytes_.load(std::memory_order_relaxed);
    if (offset > bytes_mapped || size > bytes_mapped - offset) {
      return absl::InternalError(absl::StrCat(
          "write at ", offset, " of ", description_,
          ": past the end of the store"));
    }
    std::memcpy(*mapping + offset, bytes, size);
    return absl::OkStatus();
  }
  const auto* from = static_cast<const std::byte*>(bytes);
  while (size > 0) {
    const ssize_t n = pwrite(fd_, from, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return ErrnoStatus(errno, absl::StrCat("write ", size, " bytes at ",
                                             offset, " of ", description_));
    }
    from += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::byte*> FdVolumeStore::WriteMapping() {
  // Acquire: pairs with the release CAS that published the mapping (and
  // write_mapping_bytes_ before it).
  if (std::byte* mapping = write_mapping_.load(std::memory_order_acquire)) {
    return mapping;
  }
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat ", description_));
  }
  const uint64_t bytes = static_cast<uint64_t>(st.st_size);
  void* made = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_NORESERVE, fd_, 0);
  if (made == MAP_FAILED) {
    return ErrnoStatus(errno, absl::StrCat("map ", bytes, " bytes of ",
                                           description_));
  }
  // Every racer stores the same size (the store's size does not change
  // while it is open).
  write_mapping_bytes_.store(bytes, std::memory_order_relaxed);
  std::byte* expected = nullptr;
  if (write_mapping_.compare_exchange_strong(
          expected, static_cast<std::byte*>(made), std::memory_order_acq_rel,
          std::memory_order_acquire)) {
    return static_cast<std::byte*>(made);
  }
  munmap(made, bytes);  // another Write mapped it first
  return expected;
}

absl::Status FdVolumeStore::Allocate(uint64_t offset, uint64_t length) {
  if (fallocate(fd_, 0, static_cast<off_t>(offset),
                static_cast<off_t>(length)) == 0) {
    return absl::OkStatus();
  }
  const int err = errno;
  // A failed fallocate keeps the pages it took before failing: give them
  // back or they leak until the file is gone.
  fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            static_cast<off_t>(offset), static_cast<off_t>(length));
  return ErrnoStatus(err, absl::StrCat("allocate ", length, " bytes at ",
                                       offset, " of ", description_));
}

absl::Status FdVolumeStore::Deallocate(uint64_t offset, uint64_t length) {
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) {
    return absl::OkStatus();
  }
  return ErrnoStatus(errno, absl::StrCat("deallocate ", length, " bytes at ",
                                         offset, " of ", description_));
}

absl::Status FdVolumeStore::MapFixed(void* address, uint64_t offset,
                                     uint64_t length) {
  void* mapped = mmap(address, length, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_FIXED | MAP_NORESERVE, fd_,
                      static_cast<off_t>(offset));
  if (mapped == MAP_FAILED) {
    return ErrnoStatus(errno, absl::StrCat("map ", length, " bytes at ", offset,
                                           " of ", description_));
  }
  if (advise_hugepages_) madvise(mapped, length, MADV_HUGEPAGE);  // a hint
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FdVolumeStore::AllocatedBytes() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat ", description_));
  }
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

absl::Status PrepareStoreDirectory(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    const int err = errno;
    const std::string what = absl::StrCat("create directory ", dir);
    return err == EACCES || err == EPERM || err == EROFS
               ? absl::PermissionDeniedError(
                     absl::StrCat(what, ": ", std::strerror(err)))
               : ErrnoStatus(err, what);
  }
  // Opened without following a symlink, then checked and narrowed through
  // the descriptor: what is checked is what is changed.
  const int fd =
      open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ELOOP || err == ENOTDIR) {
      // (O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR.)
      struct stat link;
      const bool symlink =
          lstat(dir.c_str(), &link) == 0 && S_ISLNK(link.st_mode);
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " is not a directory (",
          symlink ? "a symlink" : "another kind of file",
          "): volume stores are kept only in a directory of this server's "
          "own; remove it, or give the pool a data directory on a tmpfs"));
    }
    return ErrnoStatus(err, absl::StrCat("open directory ", dir));
  }
  struct stat st;
  absl::Status status;
  if (fstat(fd, &st) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("stat ", dir));
  } else if (st.st_uid != geteuid()) {
    status = absl::FailedPreconditionError(absl::StrCat(
        dir, " is owned by uid ", st.st_uid, ", not this server's uid ",
        geteuid(),
        ": another user created it and could read or replace "
        "the volume stores in it; remove it, or give the pool a data "
        "directory on a tmpfs"));
  } else if ((st.st_mode & 077) != 0 && fchmod(fd, 0700) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("chmod 0700 ", dir));
  }
  close(fd);
  return status;
}

}  // namespace groove
