// tests/support/hugepage_reservation.h: reserve real hugepages of one size
// through sysfs for a test or benchmark, and give them back.
//
//   HugepageReservation reservation(uint64_t{2} << 20, 4);
//   if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
//
// nr_hugepages is machine-wide: tests that use this must not run beside
// each other (CTest: RESOURCE_LOCK hugepages).

#ifndef GROOVE_TESTS_SUPPORT_HUGEPAGE_RESERVATION_H_
#define GROOVE_TESTS_SUPPORT_HUGEPAGE_RESERVATION_H_

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace groove::testing {

// HugepageSysfsDir is the sysfs directory of pages of `page_bytes`, e.g.
// /sys/kernel/mm/hugepages/hugepages-2048kB. It exists only when the CPU
// and kernel offer that page size.
inline std::string HugepageSysfsDir(uint64_t page_bytes) {
  return "/sys/kernel/mm/hugepages/hugepages-" +
         std::to_string(page_bytes >> 10) + "kB";
}

// ReadHugepageCount reads one counter of that directory (nr_hugepages,
// free_hugepages, ...); 0 when it cannot be read.
inline uint64_t ReadHugepageCount(uint64_t page_bytes, const char* counter) {
  std::ifstream in(HugepageSysfsDir(page_bytes) + "/" + counter);
  uint64_t value = 0;
  in >> value;
  return value;
}

inline uint64_t FreeHugepages(uint64_t page_bytes) {
  return ReadHugepageCount(page_bytes, "free_hugepages");
}

// HugepageReservation raises nr_hugepages so that `pages` more pages of
// `page_bytes` are free, and when destroyed restores the nr_hugepages it
// found (so other users' reservations are kept). `ok()` is false, and
// `reason()` says why, when the process is not root, the page size does
// not exist, or the kernel gave fewer pages (memory too fragmented).
// Not thread-safe; one reservation per page size at a time.
class HugepageReservation {
 public:
  HugepageReservation(uint64_t page_bytes, uint64_t pages)
      : path_(HugepageSysfsDir(page_bytes) + "/nr_hugepages") {
    if (geteuid() != 0) {
      reason_ = "not root: cannot reserve hugepages through " + path_;
      return;
    }
    if (access(path_.c_str(), W_OK) != 0) {
      reason_ = "this kernel offers no " + std::to_string(page_bytes >> 20) +
                " MiB hugepages (" + path_ +
                " is missing; grep pdpe1gb /proc/cpuinfo for 1 GiB pages)";
      return;
    }
    previous_ = ReadHugepageCount(page_bytes, "nr_hugepages");
    reserved_ = true;
    if (!Write(previous_ + pages) || FreeHugepages(page_bytes) < pages) {
      reason_ = "the kernel could reserve only " +
                std::to_string(FreeHugepages(page_bytes)) + " of " +
                std::to_string(pages) + " free " +
                std::to_string(page_bytes >> 20) +
                " MiB hugepages (memory too fragmented?)";
    }
  }
  ~HugepageReservation() {
    if (reserved_) Write(previous_);
  }
  HugepageReservation(const HugepageReservation&) = delete;
  HugepageReservation& operator=(const HugepageReservation&) = delete;

  bool ok() const { return reason_.empty(); }
  const std::string& reason() const { return reason_; }

 private:
  bool Write(uint64_t value) {
    std::ofstream out(path_);
    out << value << "\n";
    out.close();
    return static_cast<bool>(out);
  }

  std::string path_;
  std::string reason_;
  uint64_t previous_ = 0;
  bool reserved_ = false;
};

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_HUGEPAGE_RESERVATION_H_
