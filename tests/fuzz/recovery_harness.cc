// recovery_fuzzer's harness: a compact pool image written out as a pool's
// metadata object and volume store, then joined, opened (recovered) and
// used. See fuzz_harness.h for the image format.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "fuzz_harness.h"
#include "groove/named_pool.h"
#include "groove/volume.h"
#include "groove/volume_pool.h"

// GCC 12 with -fsanitize=address reports a false -Wrestrict inside
// std::string's assignment from a literal (GCC bug 105329).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

namespace groove::fuzz {
namespace {

// The metadata object's layout (core/src/named_pool.cc, struct
// NamedPool::Metadata): the fields after kMetaPrefixBytes are the three
// strings the harness owns, then the slot table at kSlotTableOffset.
// tests/unit/fuzz_regression_test.cc checks these offsets against a real
// pool (EncodeRecoveryImage round trip).
constexpr size_t kMaxVolumesOffset = 1560;
constexpr size_t kNameOffset = 1632;
constexpr size_t kNameBytes = 72;
constexpr size_t kBackingFilePathOffset = kNameOffset + kNameBytes;
constexpr size_t kPathBytes = 1024;
constexpr size_t kStorePathOffset = kBackingFilePathOffset + kPathBytes;
constexpr size_t kSlotTableOffset = 4096;
static_assert(kStorePathOffset + kPathBytes <= kSlotTableOffset);
static_assert(kMetaPrefixBytes == kNameOffset);

uint64_t MetadataFileBytes(uint64_t max_volumes) {
  const uint64_t bytes = kSlotTableOffset + 2 * 8 * max_volumes;
  return (bytes + 4095) / 4096 * 4096;
}

std::string MetaPath(const std::string& dir) {
  return absl::StrCat(dir, "/", kRecoveryPoolName, ".pool");
}
std::string StorePath(const std::string& dir) {
  return absl::StrCat(dir, "/", kRecoveryPoolName, ".volumes");
}

bool ReadAll(const std::string& path, std::string* out) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return false;
  }
  out->assign(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out->size()) {
    const ssize_t n = pread(fd, out->data() + done, out->size() - done,
                            static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  return done == out->size();
}

// Reader hands out consecutive pieces of the input, zeros past its end.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  void Take(void* out, size_t n) {
    std::memset(out, 0, n);
    const size_t have = std::min(n, data_.size());
    std::memcpy(out, data_.data(), have);
    data_.remove_prefix(have);
  }

 private:
  absl::string_view data_;
};

// WriteImage writes the pool files for `data`. Returns false when the
// scratch directory cannot be written (an environment failure).
bool WriteImage(const std::string& dir, absl::string_view data,
                const RecoveryGeometry& g) {
  const uint64_t n = g.max_volumes;
  Reader in(data.empty() ? data : data.substr(1));
  std::string meta(g.truncate_metadata ? 4096 : MetadataFileBytes(n), '\0');
  std::string whole(MetadataFileBytes(n), '\0');
  in.Take(whole.data(), kMetaPrefixBytes);
  const std::string name = kRecoveryPoolName;
  const std::string store = StorePath(dir);
  std::memcpy(whole.data() + kNameOffset, name.data(), name.size());
  std::memcpy(whole.data() + kStorePathOffset, store.data(),
              std::min(store.size(), kPathBytes - 1));
  in.Take(whole.data() + kSlotTableOffset, 2 * 8 * n);
  std::memcpy(meta.data(), whole.data(), meta.size());

  unlink(MetaPath(dir).c_str());
  unlink(store.c_str());
  const int meta_fd =
      open(MetaPath(dir).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (meta_fd < 0) return false;
  const bool meta_ok = WriteAll(meta_fd, meta.data(), meta.size(), 0);
  close(meta_fd);
  if (!meta_ok) return false;
  if (g.no_store) return true;
  const int store_fd =
      open(store.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (store_fd < 0) return false;
  bool ok =
      ftruncate(store_fd, static_cast<off_t>(n * g.volume_size_bytes)) == 0;
  for (uint64_t i = 0; ok && i < n; ++i) {
    char header[kVolumeHeaderPrefix];
    in.Take(header, sizeof(header));
    // Leave never-written volumes as holes, as a real store has them.
    if (std::any_of(header, header + sizeof(header),
                    [](char c) { return c != 0; })) {
      ok = WriteAll(store_fd, header, sizeof(header), i * g.volume_size_bytes);
    }
  }
  close(store_fd);
  return ok;
}

// Exercise drives a pool that opened: the operations a server and a data
// plane perform after a restart. Returns a violation or "".
std::string Exercise(NamedPool& pool, const absl::Status& first_verify) {
  const uint64_t n = pool.config().max_volumes;
  uint64_t next = 0;
  std::vector<VolumeEntry> entries = pool.ListVolumes(0, n, &next);
  if (next > n) return absl::StrCat("ListVolumes next_index ", next, " > ", n);
  const PoolSummary summary = pool.Summary();
  if (summary.volumes_mapped > n ||
      summary.volumes_empty > summary.volumes_mapped) {
    return absl::StrCat("summary out of range: mapped ", summary.volumes_mapped,
                        " empty ", summary.volumes_empty, " of ", n);
  }
  (void)pool.AllocatedBytes();
  (void)pool.AddVolumes(1, std::nullopt, "fuzz");
  const VolumePool& p = pool.pool();
  VolumeHeader* v = nullptr;
  if (p.Acquire(&v, Wait::kNoBlock) == PoolError::kSuccess) {
    std::memset(VolumeData(v), 0xa5, 64);  // a data plane writes its volume
    if (p.Release(v, Wait::kNoBlock) != PoolError::kSuccess) {
      return "Release of a just-acquired volume failed";
    }
  }
  (void)pool.RemoveVolumes(1);
  (void)pool.AddVolumes(2, 0, "");
  (void)pool.RemoveVolumes(n);
  entries = pool.ListVolumes(0, n, &next);
  // Every quarantined volume is listed (as corrupt) and can be reclaimed,
  // but for one whose header reads as a sound empty volume's now, which is
  // refused; the pool's
  // figure counts exactly those: nothing is in flight.
  const uint64_t in_quarantine = pool.Summary().volumes_in_quarantine;
  uint64_t reclaimed = 0;
  uint64_t refused_sound = 0;
  for (const VolumeEntry& e : entries) {
    if (e.status != VolumeStatus::kCorrupt) continue;
    absl::StatusOr<ReclaimedVolume> r = pool.ReclaimVolume(e.index);
    if (r.ok()) {
      ++reclaimed;
    } else if (r.status().code() != absl::StatusCode::kFailedPrecondition) {
      return absl::StrCat("ReclaimVolume of listed corrupt volume ", e.index,
                          ": ", r.status().ToString());
    } else if (absl::StrContains(r.status().message(),
                                 "now reads as a sound")) {
      ++refused_sound;
    }
  }
  if (reclaimed + refused_sound != in_quarantine ||
      pool.Summary().volumes_in_quarantine != refused_sound) {
    return absl::StrCat("volumes_in_quarantine was ", in_quarantine, ", ",
                        reclaimed, " volumes were reclaimed and ",
                        refused_sound, " refused as sound, ",
                        pool.Summary().volumes_in_quarantine, " left");
  }
  for (uint64_t i = 0; i < n; ++i) {
    if (pool.ReclaimVolume(i).ok()) {
      return absl::StrCat("volume ", i,
                          " was reclaimed but not listed as corrupt");
    }
  }
  absl::StatusOr<VerifyReport> verify = pool.Verify();
  if (first_verify.ok() && !verify.ok()) {
    return absl::StrCat("a sound pool went corrupt through the API: ",
                        verify.status().ToString());
  }
  return "";
}

}  // namespace

RecoveryGeometry DecodeGeometry(uint8_t g) {
  RecoveryGeometry out;
  out.max_volumes = 1 + (g & 15);
  out.volume_size_bytes = uint64_t{4096} << ((g >> 4) & 1);
  out.truncate_metadata = (g & 0x20) != 0;
  out.no_store = (g & 0x40) != 0;
  out.join_first = (g & 0x80) != 0;
  return out;
}

uint8_t EncodeGeometry(const RecoveryGeometry& g) {
  uint8_t out = static_cast<uint8_t>((g.max_volumes - 1) & 15);
  if (g.volume_size_bytes == 8192) out |= 0x10;
  if (g.truncate_metadata) out |= 0x20;
  if (g.no_store) out |= 0x40;
  if (g.join_first) out |= 0x80;
  return out;
}

RecoveryOutcome RunRecoveryInput(absl::string_view data) {
  RecoveryOutcome out;
  const RecoveryGeometry g =
      DecodeGeometry(data.empty() ? 0 : static_cast<uint8_t>(data[0]));
  const std::string& dir = ScratchDir("recovery");
  if (!WriteImage(dir, data, g)) {
    out.violation = absl::StrCat("cannot write the scratch pool in ", dir);
    return out;
  }
  if (g.join_first) {
    absl::StatusOr<std::unique_ptr<NamedPool>> join =
        NamedPool::Join(dir, kRecoveryPoolName);
    out.join = join.status();
    if (join.ok()) {
      NamedPool& pool = **join;
      uint64_t next = 0;
      (void)pool.Summary();
      (void)pool.ListVolumes(0, 64, &next);
      VolumeHeader* v = nullptr;
      if (pool.pool().Acquire(&v, Wait::kNoBlock) == PoolError::kSuccess) {
        pool.pool().Release(v, Wait::kNoBlock);
      }
    }
  }
  PoolConfig config;
  config.name = kRecoveryPoolName;
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = g.volume_size_bytes;
  config.max_volumes = g.max_volumes;
  absl::StatusOr<std::unique_ptr<NamedPool>> pool =
      NamedPool::Open(dir, config);
  out.open = pool.status();
  if (!pool.ok()) return out;
  out.report = (*pool)->recovery();
  if (out.report.volumes_in_quarantine !=
      (*pool)->Summary().volumes_in_quarantine) {
    out.violation =
        absl::StrCat("recovery counted ", out.report.volumes_in_quarantine,
                     " volumes in quarantine, the summary says ",
                     (*pool)->Summary().volumes_in_quarantine);
    return out;
  }
  absl::StatusOr<VerifyReport> verify = (*pool)->Verify();
  out.verify = verify.status();
  if (!verify.ok()) {
    out.violation = absl::StrCat(
        "recovery accepted a pool that Verify "
        "rejects: ",
        verify.status().ToString());
    return out;
  }
  out.violation = Exercise(**pool, out.verify);
  return out;
}

absl::StatusOr<std::string> EncodeRecoveryImage(const std::string& dir,
                                                const RecoveryGeometry& g) {
  std::string meta, store;
  if (!ReadAll(MetaPath(dir), &meta) || !ReadAll(StorePath(dir), &store)) {
    return absl::NotFoundError(
        absl::StrCat("no pool '", kRecoveryPoolName, "' in ", dir));
  }
  const uint64_t n = g.max_volumes;
  if (meta.size() < MetadataFileBytes(n) ||
      store.size() < n * g.volume_size_bytes) {
    return absl::FailedPreconditionError("pool smaller than its geometry");
  }
  uint64_t recorded_max = 0;
  std::memcpy(&recorded_max, meta.data() + kMaxVolumesOffset, 8);
  if (recorded_max != n) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pool records max_volumes ", recorded_max, ", geometry says ", n));
  }
  std::string out(1, static_cast<char>(EncodeGeometry(g)));
  out.append(meta, 0, kMetaPrefixBytes);
  out.append(meta, kSlotTableOffset, 2 * 8 * n);
  for (uint64_t i = 0; i < n; ++i) {
    out.append(store, i * g.volume_size_bytes, kVolumeHeaderPrefix);
  }
  // Trailing zeros are implied: the fuzzer starts from shorter seeds.
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

}  // namespace groove::fuzz
