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

}  // namespace groove::fuzz
