// tests/support/temp_dir.h: a scratch directory removed when done.

#ifndef GROOVE_TESTS_SUPPORT_TEMP_DIR_H_
#define GROOVE_TESTS_SUPPORT_TEMP_DIR_H_

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace groove::testing {

class TempDir {
 public:
  // Creates a fresh directory under `parent` (default /dev/shm, a tmpfs,
  // where pools with the normal backing keep their volume store).
  explicit TempDir(const std::string& parent = "/dev/shm") {
    std::string pattern = parent + "/groove-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("TempDir: mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_TEMP_DIR_H_
