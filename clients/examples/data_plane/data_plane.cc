// data_plane: an example data-plane process. It joins a pool that a
// groove-volumed server owns, in the server's data directory, with the
// core library alone (groove/named_pool.h: no gRPC), and in rounds
// acquires volumes, writes a pattern over the start of each one's data
// region, reads it back, and releases them, lock-free, while the server
// adds and removes volumes. See clients/README.md for how to run it beside
// script/server.
//
//   data_plane --data-dir DIR --pool NAME [--hold N] [--bytes N]
//              [--acquires N] [--max-rounds N]
//
//   --hold N        volumes held at once per round (default 4)
//   --bytes N       bytes written and checked per volume (default 64 KiB,
//                   capped at the data region's size)
//   --acquires N    stop after N successful acquires in total (default
//                   1000): the program's progress decides when it stops,
//                   not a clock
//   --max-rounds N  also stop after N rounds (default 10,000,000)
//
// Prints one line, `data_plane: rounds=R acquired=A empty_pool=E
// mismatches=M errors=X`, and exits 0 when no pattern mismatched and no
// pool operation failed, 1 otherwise, 2 on bad arguments or a failed join.

#include <sched.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "groove/named_pool.h"
#include "groove/volume.h"

namespace {

// Pattern is the byte at `offset` of the volume `index` in round `round`:
// different per volume and per round, so a stale or foreign write shows.
inline unsigned char Pattern(uint64_t index, uint64_t round, uint64_t offset) {
  return static_cast<unsigned char>((index * 131 + round * 31 + offset * 7) ^
                                    (offset >> 8));
}

int Usage(const char* message) {
  std::fprintf(stderr,
               "data_plane: %s\nusage: data_plane --data-dir DIR --pool NAME "
               "[--hold N] [--bytes N] [--acquires N] [--max-rounds N]\n",
               message);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data_dir, pool_name;
  uint64_t hold = 4, bytes = 64 << 10, acquires = 1000, max_rounds = 10000000;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view flag = argv[i];
    if (i + 1 >= argc) return Usage("every flag takes a value");
    const char* value = argv[++i];
    bool ok = true;
    if (flag == "--data-dir") {
      data_dir = value;
    } else if (flag == "--pool") {
      pool_name = value;
    } else if (flag == "--hold") {
      ok = absl::SimpleAtoi(value, &hold) && hold > 0;
    } else if (flag == "--bytes") {
      ok = absl::SimpleAtoi(value, &bytes);
    } else if (flag == "--acquires") {
      ok = absl::SimpleAtoi(value, &acquires);
    } else if (flag == "--max-rounds") {
      ok = absl::SimpleAtoi(value, &max_rounds);
    } else {
      return Usage("unknown flag");
    }
    if (!ok) return Usage("bad number");
  }
  if (data_dir.empty() || pool_name.empty()) {
    return Usage("--data-dir and --pool are required");
  }

  absl::StatusOr<std::unique_ptr<groove::NamedPool>> join =
      groove::NamedPool::Join(data_dir, pool_name);
  if (!join.ok()) {
    std::fprintf(stderr, "data_plane: join %s/%s: %s\n", data_dir.c_str(),
                 pool_name.c_str(), join.status().ToString().c_str());
    return 2;
  }
  const groove::VolumePool& pool = (*join)->pool();
  const uint64_t data_bytes = std::min<uint64_t>(
      bytes, pool.footprint_bytes() - groove::kVolumeHeaderBytes);

  uint64_t rounds = 0, acquired = 0, empty_pool = 0, mismatches = 0, errors = 0;
  std::vector<groove::VolumeHeader*> held;
  while (acquired < acquires && rounds < max_rounds) {
    ++rounds;
    // Acquire up to `hold` volumes: lock-free, never waits on the server.
    held.clear();
    while (held.size() < hold && acquired < acquires) {
      groove::VolumeHeader* volume = nullptr;
      const groove::PoolError e = pool.Acquire(&volume);
      if (e == groove::PoolError::kEmpty) {
        ++empty_pool;
        break;
      }
      if (e != groove::PoolError::kSuccess) {
        std::fprintf(stderr, "data_plane: acquire failed: %d\n",
                     static_cast<int>(e));
        ++errors;
        break;
      }
      held.push_back(volume);
      ++acquired;
    }
    // Write every held volume, then check them all: a volume given to two
    // holders at once, or taken away while held, would show a mismatch.
    for (groove::VolumeHeader* v : held) {
      const uint64_t index = pool.IndexOf(v);
      auto* data = reinterpret_cast<unsigned char*>(groove::VolumeData(v));
      for (uint64_t i = 0; i < data_bytes; ++i) {
        data[i] = Pattern(index, rounds, i);
      }
    }
    for (groove::VolumeHeader* v : held) {
      const uint64_t index = pool.IndexOf(v);
      const auto* data =
          reinterpret_cast<const unsigned char*>(groove::VolumeData(v));
      for (uint64_t i = 0; i < data_bytes; ++i) {
        if (data[i] != Pattern(index, rounds, i)) {
          ++mismatches;
          break;
        }
      }
      if (pool.Release(v) != groove::PoolError::kSuccess) ++errors;
    }
    // Nothing to do until the server adds volumes: let it run.
    if (held.empty()) sched_yield();
  }
  std::printf(
      "data_plane: rounds=%llu acquired=%llu empty_pool=%llu mismatches=%llu "
      "errors=%llu\n",
      static_cast<unsigned long long>(rounds),
      static_cast<unsigned long long>(acquired),
      static_cast<unsigned long long>(empty_pool),
      static_cast<unsigned long long>(mismatches),
      static_cast<unsigned long long>(errors));
  return mismatches == 0 && errors == 0 ? 0 : 1;
}
