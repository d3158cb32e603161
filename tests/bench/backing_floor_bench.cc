// tests/bench/backing_floor_bench.cc: AddVolume/RemoveVolume through the
// core's NamedPool on `normal` (tmpfs), `huge` (2 MiB hugetlb) and
// `gigantic` (1 GiB hugetlb) backing, against the kernel floor measured
// side by side in the same process.
//
// The floor is what adding a volume cannot avoid (clients/load/
// kernel_floor.h): on a hugetlb memfd (what a `huge` or `gigantic` pool
// uses when no hugetlbfs mount serves its page size, as on this project's
// machines), fallocate the volume's range, mmap it and write one 512-byte
// header; on `normal` (a 4 KiB volume, as in the RPC benchmarks), fallocate
// and pwrite the header. Removing is punching the range's hole.
// The pool does that plus its own work (slot claim, header format and
// push through pread/pwrite, as the owner maps no volume; pop, header
// check, slot marks), but no mmap of its own: on hugetlbfs its first
// header write maps the whole store once.
//
// Floor and pool iterations alternate, and so does which of the two goes
// first in an iteration (freed hugepages are handed out last-freed-first,
// so a fixed order gives one side the cache-warm pages), so both see the
// same machine load and the same pages; each reports the median
// per-volume time and the ratio pool/floor is the figure (goal: <= 1.1x).
// Rows: normal 4 KiB; huge 2 MiB (one page) and 32 MiB (16 pages: page
// zeroing dominates); gigantic 1 GiB (one page, --gigantic_iterations).
//
// Hugepages: as root it raises nr_hugepages of the page size by what it
// needs and restores it at the end (tests/support/hugepage_reservation.h).
// Without root, without the page size (1 GiB pages need a CPU with
// pdpe1gb; `script/bench gigantic` runs this program in a VM whose
// emulated CPU has them, tests/vm/run_in_vm), or when the kernel will not
// give the pages, the row says why ("NOT MEASURED") and the exit status
// stays 0; a failure of the floor or the pool prints "ERROR" and exits 1.
//
// Usage: backing_floor_bench [--iterations=N] [--gigantic_iterations=N]
//                            [--rows=normal,huge,gigantic]
//   --iterations           normal and huge rows (default 200)
//   --gigantic_iterations  the gigantic row; each add zeroes 1 GiB
//                          (default 10)
//   --rows                 which backings to measure (default all three)
//   ctest runs `--iterations=3 --gigantic_iterations=1` as a smoke run
//   (label `bench`).

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "groove/named_pool.h"
#include "load/kernel_floor.h"
#include "support/hugepage_reservation.h"

namespace groove {
namespace {

using testing::HugepageReservation;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Result {
  double floor_add_us, pool_add_us, floor_remove_us, pool_remove_us;
};

// Measure alternates floor and pool adds and removes of one volume of
// `size` bytes, `iterations` times each.
bool Measure(BackingKind kind, uint64_t size, int iterations, Result* out,
             std::string* error) {
  const std::string dir =
      (std::filesystem::temp_directory_path() /
       absl::StrCat("groove-floor-", getpid()))
          .string();
  std::filesystem::remove_all(dir);
  KernelFloor floor;
  if (!floor.Open(kind, size, 4)) {
    *error = absl::StrCat("memfd_create: ", std::strerror(errno));
    return false;
  }
  PoolConfig config;
  config.name = "floor";
  config.backing.kind = kind;
  config.volume_size_bytes = size;
  config.max_volumes = 4;
  bool ok = true;
  std::string store;  // the pool's store, when outside `dir`
  {
    absl::StatusOr<std::unique_ptr<NamedPool>> pool =
        NamedPool::Open(dir, config);
    if (!pool.ok()) {
      *error = pool.status().ToString();
      std::filesystem::remove_all(dir);
      return false;
    }
    store = (*pool)->StorePath();
    std::vector<double> fa, pa, fr, pr;
    // Each side's add and remove, timed. The order alternates every
    // iteration: hugepages are handed out last freed, first taken, so the
    // side that adds first gets the pages the other side freed last, which
    // are still partly in the cache and zero faster (measured: a fixed
    // order made the pool's fallocate zero 20% slower than the floor's).
    auto floor_add = [&] {
      const int64_t t = NowNs();
      if (!floor.Add(0, 1)) {
        *error = absl::StrCat("floor fallocate/mmap: ", std::strerror(errno));
        return false;
      }
      fa.push_back((NowNs() - t) / 1e3);
      return true;
    };
    auto pool_add = [&] {
      const int64_t t = NowNs();
      absl::StatusOr<std::vector<uint64_t>> added =
          (*pool)->AddVolumes(1, std::nullopt, "");
      pa.push_back((NowNs() - t) / 1e3);
      if (!added.ok()) *error = added.status().ToString();
      return added.ok();
    };
    auto floor_remove = [&] {
      const int64_t t = NowNs();
      floor.Remove(0, 1);
      fr.push_back((NowNs() - t) / 1e3);
    };
    auto pool_remove = [&] {
      const int64_t t = NowNs();
      absl::StatusOr<std::vector<RemovedVolume>> removed =
          (*pool)->RemoveVolumes(1);
      pr.push_back((NowNs() - t) / 1e3);
      if (!removed.ok()) *error = removed.status().ToString();
      return removed.ok();
    };
    for (int i = 0; i < iterations && ok; ++i) {
      const bool floor_first = i % 2 == 0;
      if (floor_first) {
        if (!floor_add()) { ok = false; break; }
        if (!pool_add()) { floor_remove(); ok = false; break; }
        floor_remove();
        ok = pool_remove();
      } else {
        if (!pool_add()) { ok = false; break; }
        if (!floor_add()) { pool_remove(); ok = false; break; }
        ok = pool_remove();
        floor_remove();
      }
    }
    *out = {Median(fa), Median(pa), Median(fr), Median(pr)};
  }
  std::filesystem::remove_all(dir);
  // A store in a shared directory (named per pool, with a tag) outlives
  // the data directory: each run would leave one behind.
  if (!store.empty()) std::filesystem::remove(store);
  return ok;
}

// RowSet: the backings chosen with --rows.
struct RowSet {
  bool normal = true, huge = true, gigantic = true;
};

bool ParseRows(absl::string_view list, RowSet* rows) {
  *rows = RowSet{false, false, false};
  for (absl::string_view row : absl::StrSplit(list, ',')) {
    if (row == "normal") {
      rows->normal = true;
    } else if (row == "huge") {
      rows->huge = true;
    } else if (row == "gigantic") {
      rows->gigantic = true;
    } else {
      return false;
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  int iterations = 200;
  int gigantic_iterations = 10;
  RowSet rows;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--iterations=") &&
        absl::SimpleAtoi(a, &iterations) && iterations > 0) {
      continue;
    }
    a = argv[i];
    if (absl::ConsumePrefix(&a, "--gigantic_iterations=") &&
        absl::SimpleAtoi(a, &gigantic_iterations) && gigantic_iterations > 0) {
      continue;
    }
    a = argv[i];
    if (absl::ConsumePrefix(&a, "--rows=") && ParseRows(a, &rows)) continue;
    std::fprintf(stderr,
                 "usage: %s [--iterations=N] [--gigantic_iterations=N] "
                 "[--rows=normal,huge,gigantic]\n",
                 argv[0]);
    return 2;
  }
  std::printf(
      "backing_floor_bench: NamedPool AddVolumes(1)/RemoveVolumes(1) "
      "vs fallocate + header write / punch-hole, %d alternating "
      "iterations (gigantic: %d), medians\n",
      iterations, gigantic_iterations);
  std::printf("%-13s %14s %14s %9s %16s %16s %9s\n", "size", "floor_add_us",
              "pool_add_us", "add_x", "floor_remove_us", "pool_remove_us",
              "remove_x");
  int status = 0;
  auto measure_row = [&](BackingKind kind, uint64_t size, int n) {
    const std::string label = absl::StrCat(
        BackingKindName(kind), " ",
        size >= (uint64_t{1} << 30)   ? absl::StrCat(size >> 30, "GiB")
        : size >= (uint64_t{1} << 20) ? absl::StrCat(size >> 20, "MiB")
                                      : absl::StrCat(size >> 10, "KiB"));
    Result r{};
    std::string error;
    if (!Measure(kind, size, n, &r, &error)) {
      std::printf("%s: ERROR: %s\n", label.c_str(), error.c_str());
      status = 1;
      return;
    }
    std::printf("%-13s %14.1f %14.1f %9.3f %16.1f %16.1f %9.3f\n",
                label.c_str(), r.floor_add_us, r.pool_add_us,
                r.pool_add_us / r.floor_add_us, r.floor_remove_us,
                r.pool_remove_us, r.pool_remove_us / r.floor_remove_us);
  };
  // measure_page_rows reserves `pages` pages of `page_bytes` for the rows
  // of `sizes` and gives them back after. The floor and the pool each hold
  // one volume at a time: twice the largest volume's pages.
  auto measure_page_rows = [&](BackingKind kind, uint64_t page_bytes,
                               const std::vector<uint64_t>& sizes, int n) {
    HugepageReservation reservation(page_bytes,
                                    2 * (sizes.back() / page_bytes));
    if (!reservation.ok()) {
      std::printf("%s: NOT MEASURED: %s%s\n",
                  std::string(BackingKindName(kind)).c_str(),
                  reservation.reason().c_str(),
                  kind == BackingKind::kGigantic
                      ? " (`script/bench gigantic` measures it in a VM "
                        "whose emulated CPU has 1 GiB pages)"
                      : "");
      return;
    }
    for (uint64_t size : sizes) measure_row(kind, size, n);
  };
  // What the RPC benchmarks' pools use (docs/PERFORMANCE.md section 2).
  if (rows.normal) {
    measure_row(BackingKind::kNormal, uint64_t{4} << 10, iterations);
  }
  if (rows.huge) {
    measure_page_rows(BackingKind::kHuge, uint64_t{2} << 20,
                      {uint64_t{2} << 20, uint64_t{32} << 20}, iterations);
  }
  if (rows.gigantic) {
    measure_page_rows(BackingKind::kGigantic, uint64_t{1} << 30,
                      {uint64_t{1} << 30}, gigantic_iterations);
  }
  return status;
}

}  // namespace
}  // namespace groove

int main(int argc, char** argv) { return groove::Main(argc, argv); }
