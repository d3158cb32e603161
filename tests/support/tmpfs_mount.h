// tests/support/tmpfs_mount.h: a real, small tmpfs mounted for one test,
// for faults only a real filesystem gives: running out of space (ENOSPC)
// and a read-only filesystem (EROFS; root bypasses file modes, so mode bits
// alone cannot make a directory unwritable for the server).
//
// Mounting needs CAP_SYS_ADMIN. CI runs the tests as root, so a failure to
// mount is a test failure with the reason, never a skip.
//
// Example:
//   TmpfsMount tmpfs("256k");
//   ASSERT_TRUE(tmpfs.ok()) << tmpfs.error();
//   ... use tmpfs.path() ...
//   ASSERT_TRUE(tmpfs.RemountReadOnly().ok());
//   // the destructor unmounts it and removes the mount point

#ifndef GROOVE_TESTS_SUPPORT_TMPFS_MOUNT_H_
#define GROOVE_TESTS_SUPPORT_TMPFS_MOUNT_H_

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace groove::testing {

class TmpfsMount {
 public:
  // Mounts a tmpfs of `size` (a tmpfs size= option: "256k", "1m") with
  // mode 0700 on a fresh directory under /tmp. Check ok().
  explicit TmpfsMount(const std::string& size) {
    std::string pattern = "/tmp/groove-tmpfs-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      error_ = absl::StrCat("mkdtemp: ", std::strerror(errno));
      return;
    }
    path_ = pattern;
    const std::string options = absl::StrCat("size=", size, ",mode=0700");
    if (mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              options.c_str()) != 0) {
      error_ = absl::StrCat("mount -t tmpfs -o ", options, " tmpfs ", path_,
                            ": ", std::strerror(errno),
                            " (the fault tests mount filesystems: run them "
                            "as root, as CI does)");
      rmdir(path_.c_str());
      path_.clear();
      return;
    }
    mounted_ = true;
  }
  ~TmpfsMount() {
    if (mounted_ && umount(path_.c_str()) != 0) {
      // Something (a crashed server's mapping) still holds it: detach it
      // so the test does not leave a mount behind.
      std::fprintf(stderr, "TmpfsMount: umount %s: %s; detaching\n",
                   path_.c_str(), std::strerror(errno));
      umount2(path_.c_str(), MNT_DETACH);
    }
    if (!path_.empty()) rmdir(path_.c_str());
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

  // RemountReadOnly makes the filesystem read-only (EROFS for everyone,
  // root included).
  absl::Status RemountReadOnly() {
    if (mount(nullptr, path_.c_str(), nullptr,
              MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
      return absl::InternalError(absl::StrCat("mount -o remount,ro ", path_,
                                              ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  // FreeBytes is what statvfs says is free on the filesystem.
  uint64_t FreeBytes() const {
    struct statvfs fs;
    if (statvfs(path_.c_str(), &fs) != 0) return 0;
    return static_cast<uint64_t>(fs.f_bfree) * fs.f_frsize;
  }

 private:
  std::string path_;
  std::string error_;
  bool mounted_ = false;
};

// AllocatedBytes returns the bytes a file holds on its filesystem
// (st_blocks * 512), or -1 when it cannot be stat'ed.
inline int64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_TMPFS_MOUNT_H_
