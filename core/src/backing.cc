#include "groove/backing.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace groove {

absl::StatusOr<Backing> ParseBacking(absl::string_view text) {
  Backing backing;
  if (text == "auto") {
    backing.kind = BackingKind::kAuto;
  } else if (text == "gigantic") {
    backing.kind = BackingKind::kGigantic;
  } else if (text == "huge") {
    backing.kind = BackingKind::kHuge;
  } else if (text == "normal") {
    backing.kind = BackingKind::kNormal;
  } else if (absl::ConsumePrefix(&text, "file:")) {
    if (text.empty() || text[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "backing 'file:", text, "': the path must be absolute"));
    }
    backing.kind = BackingKind::kFile;
    backing.file_path = std::string(text);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("backing '", text,
                     "' is not one of auto, gigantic, huge, normal, "
                     "file:/ABSOLUTE/PATH"));
  }
  return backing;
}

std::string BackingToString(const Backing& backing) {
  if (backing.kind == BackingKind::kFile) {
    return absl::StrCat("file:", backing.file_path);
  }
  return std::string(BackingKindName(backing.kind));
}

absl::string_view BackingKindName(BackingKind kind) {
  switch (kind) {
    case BackingKind::kAuto:
      return "auto";
    case BackingKind::kGigantic:
      return "gigantic";
    case BackingKind::kHuge:
      return "huge";
    case BackingKind::kNormal:
      return "normal";
    case BackingKind::kFile:
      return "file";
  }
  return "unknown";
}

uint64_t BackingPageBytes(BackingKind kind) {
  switch (kind) {
    case BackingKind::kGigantic:
      return kGiganticPageBytes;
    case BackingKind::kHuge:
      return kHugePageBytes;
    case BackingKind::kNormal:
    case BackingKind::kFile:
      return kNormalPageBytes;
    case BackingKind::kAuto:
      return 0;
  }
  return 0;
}

namespace {

// ParseSize parses "2M", "1G", "2048k" (the hugetlbfs pagesize= forms).
std::optional<uint64_t> ParseSize(absl::string_view text) {
  uint64_t scale = 1;
  if (!text.empty()) {
    switch (absl::ascii_tolower(text.back())) {
      case 'k':
        scale = uint64_t{1} << 10;
        break;
      case 'm':
        scale = uint64_t{1} << 20;
        break;
      case 'g':
        scale = uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (scale != 1) text.remove_suffix(1);
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) return std::nullopt;
  return value * scale;
}

// ReadNumber reads one unsigned number from a sysfs file.
std::optional<uint64_t> ReadNumber(const std::string& path) {
  std::ifstream in(path);
  uint64_t value = 0;
  if (!(in >> value)) return std::nullopt;
  return value;
}

// DefaultHugepageBytes reads Hugepagesize from /proc/meminfo (2 MiB on
// x86-64 unless the kernel command line says otherwise).
uint64_t DefaultHugepageBytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "Hugepagesize:")) {
      rest = absl::StripAsciiWhitespace(rest);
      uint64_t kib = 0;
      if (absl::SimpleAtoi(absl::StripSuffix(rest, " kB"), &kib)) {
        return kib << 10;
      }
    }
  }
  return kHugePageBytes;
}

}  // namespace

bool PathIsWithin(absl::string_view path, absl::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir == "/") return absl::StartsWith(path, "/");
  return absl::StartsWith(path, dir) &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}

std::vector<HugetlbMount> HostMemory::HugetlbMounts() const {
  std::vector<HugetlbMount> mounts;
  std::ifstream in(proc_mounts_);
  std::string line;
  while (std::getline(in, line)) {
    // device mountpoint fstype options dump pass
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 4 || fields[2] != "hugetlbfs") continue;
    HugetlbMount mount;
    mount.path = std::string(fields[1]);
    for (absl::string_view option : absl::StrSplit(fields[3], ',')) {
      if (absl::ConsumePrefix(&option, "pagesize=")) {
        if (std::optional<uint64_t> size = ParseSize(option)) {
          mount.page_bytes = *size;
        }
      }
    }
    if (mount.page_bytes == 0) mount.page_bytes = DefaultHugepageBytes();
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

std::optional<HugetlbMount> HostMemory::FindHugetlbMount(
    uint64_t page_bytes, absl::string_view preferred_dir) const {
  std::optional<HugetlbMount> found;
  for (HugetlbMount& mount : HugetlbMounts()) {
    if (mount.page_bytes != page_bytes) continue;
    if (PathIsWithin(preferred_dir, mount.path)) return mount;
    if (!found) found = std::move(mount);
  }
  return found;
}

std::string HostMemory::NrHugepagesPath(uint64_t page_bytes) const {
  return absl::StrCat(sys_hugepages_, "/hugepages-", page_bytes >> 10,
                      "kB/nr_hugepages");
}

absl::StatusOr<HugepagePool> HostMemory::Hugepages(uint64_t page_bytes) const {
  const std::string dir =
      absl::StrCat(sys_hugepages_, "/hugepages-", page_bytes >> 10, "kB");
  std::optional<uint64_t> total = ReadNumber(dir + "/nr_hugepages");
  if (!total) {
    return absl::NotFoundError(absl::StrCat(
        "this kernel offers no ", page_bytes >> 20, " MiB hugepages (", dir,
        " does not exist)"));
  }
  HugepagePool pool;
  pool.page_bytes = page_bytes;
  pool.total = *total;
  pool.free = ReadNumber(dir + "/free_hugepages").value_or(0);
  pool.reserved = ReadNumber(dir + "/resv_hugepages").value_or(0);
  pool.nr_hugepages_path = dir + "/nr_hugepages";
  return pool;
}

}  // namespace groove
