// groove/backing.h: what memory a pool's volumes live in, and what the
// host offers.
//
// A pool's backing is one of
//   gigantic   1 GiB hugetlb pages
//   huge       2 MiB hugetlb pages
//   normal     4 KiB pages on tmpfs (transparent hugepages advised)
//   file:PATH  a regular file, e.g. on NVMe/SSD
//   auto       gigantic, then huge, then normal: the first that can hold
//              one volume now
// Hugetlb backings use a hugetlbfs mount of the right page size when one is
// listed in /proc/mounts (named files that outlive the server), and an
// anonymous memfd_create(MFD_HUGETLB) otherwise (which does not).
//
// Example:
//   absl::StatusOr<groove::Backing> b = groove::ParseBacking("file:/nvme/p");
//   groove::BackingToString(*b);  // "file:/nvme/p"

#ifndef GROOVE_BACKING_H_
#define GROOVE_BACKING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace groove {

// The numbers are stored in pool metadata: never renumber.
enum class BackingKind : uint64_t {
  kAuto = 0,
  kGigantic = 1,
  kHuge = 2,
  kNormal = 3,
  kFile = 4,
};

inline constexpr uint64_t kGiganticPageBytes = uint64_t{1} << 30;
inline constexpr uint64_t kHugePageBytes = uint64_t{2} << 20;
inline constexpr uint64_t kNormalPageBytes = 4096;

struct Backing {
  BackingKind kind = BackingKind::kAuto;
  std::string file_path;  // kFile only: absolute path of the volume store
  bool operator==(const Backing&) const = default;
};

// ParseBacking parses "auto", "gigantic", "huge", "normal" or "file:PATH"
// (PATH absolute). INVALID_ARGUMENT names the accepted forms.
absl::StatusOr<Backing> ParseBacking(absl::string_view text);

// BackingToString is ParseBacking's inverse.
std::string BackingToString(const Backing& backing);

// BackingKindName returns "auto", "gigantic", "huge", "normal" or "file".
absl::string_view BackingKindName(BackingKind kind);

// BackingPageBytes returns the page size a backing kind maps with (4 KiB
// for normal and file, 0 for auto).
uint64_t BackingPageBytes(BackingKind kind);

// PathIsWithin returns whether `path` is `dir` or lies below it, comparing
// whole components as text: "/x/huge/a" is within "/x/huge", "/x/huge-data"
// is not. Neither path is normalised (no symlinks resolved, no "..");
// a trailing '/' on `dir` is ignored. Cost: O(length).
bool PathIsWithin(absl::string_view path, absl::string_view dir);

// HugetlbMount is one hugetlbfs mount point and the page size it serves.
struct HugetlbMount {
  std::string path;
  uint64_t page_bytes = 0;
};

// HugepagePool is the host's reservation of one hugepage size, from
// /sys/kernel/mm/hugepages/hugepages-<kB>kB/.
struct HugepagePool {
  uint64_t page_bytes = 0;
  uint64_t total = 0;     // nr_hugepages
  uint64_t free = 0;      // free_hugepages
  uint64_t reserved = 0;  // resv_hugepages (promised, not yet faulted)
  // The sysfs file an operator raises to reserve more pages.
  std::string nr_hugepages_path;
};

// HostMemory reads what the host offers. The root paths are injectable so
// tests can present a fake /proc and /sys.
class HostMemory {
 public:
  HostMemory() = default;
  HostMemory(std::string proc_mounts_path, std::string sys_hugepages_dir)
      : proc_mounts_(std::move(proc_mounts_path)),
        sys_hugepages_(std::move(sys_hugepages_dir)) {}

  // HugetlbMounts lists the hugetlbfs mounts in /proc/mounts, with their
  // page size (the pagesize= option, else the default hugepage size).
  std::vector<HugetlbMount> HugetlbMounts() const;

  // FindHugetlbMount returns a mount serving `page_bytes`, preferring one
  // that contains `preferred_dir`; nullopt when there is none.
  std::optional<HugetlbMount> FindHugetlbMount(
      uint64_t page_bytes, absl::string_view preferred_dir) const;

  // Hugepages returns the reservation for `page_bytes`; NOT_FOUND when the
  // kernel offers no such page size (no sysfs directory).
  absl::StatusOr<HugepagePool> Hugepages(uint64_t page_bytes) const;

  // NrHugepagesPath returns the sysfs file that reserves `page_bytes` pages.
  std::string NrHugepagesPath(uint64_t page_bytes) const;

 private:
  std::string proc_mounts_ = "/proc/mounts";
  std::string sys_hugepages_ = "/sys/kernel/mm/hugepages";
};

}  // namespace groove

#endif  // GROOVE_BACKING_H_
