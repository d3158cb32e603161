// tests/support/temp_dir.h: a scratch directory removed when done, and
// WriteTextFile, which puts a file with a chosen mode in it.

#ifndef GROOVE_TESTS_SUPPORT_TEMP_DIR_H_
#define GROOVE_TESTS_SUPPORT_TEMP_DIR_H_

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

// WriteTextFile writes `text` to `path` (created or truncated) and gives
// it `mode`; returns `path`. The default, owner-only, is what token files
// need: the server and the clients refuse one others may read.
inline std::string WriteTextFile(const std::string& path,
                                 const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
  return path;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_TEMP_DIR_H_
