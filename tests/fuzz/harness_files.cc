// The files the fuzz harnesses share: scratch directories and whole writes.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fuzz_harness.h"

namespace groove::fuzz {

const std::string& ScratchDir(absl::string_view kind) {
  // Never destroyed: the exit handler below reads it after static
  // destructors may have run.
  static auto* dirs = new std::map<std::string, std::string, std::less<>>;
  if (auto it = dirs->find(kind); it != dirs->end()) return it->second;
  if (dirs->empty()) {
    std::atexit([] {
      for (const auto& [name, dir] : *dirs) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    });
  }
  std::string dir = absl::StrCat("/dev/shm/groove-fuzz-", kind, "-", getpid());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir);
  return dirs->emplace(std::string(kind), std::move(dir)).first->second;
}

bool WriteAll(int fd, const void* data, size_t size, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace groove::fuzz
