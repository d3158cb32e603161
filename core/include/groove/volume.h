// groove/volume.h: the layout of one groove volume.
//
// A volume is a fixed-size, 4096-aligned block of memory (its footprint,
// 1 GiB by default) whose first 512 bytes are a `VolumeHeader` and whose
// remainder is the volume's data region. The header layout is byte-for-byte
// the one of Firedancer's groove volumes (see docs/ARCHITECTURE.md), so a
// pool in shared memory reads the same to any implementation of that format:
//
//   offset  size  field    meaning
//   0       8     magic    kVolumeMagic (in use), ~kVolumeMagic (empty, owned
//                          by the pool), 0 (not a volume)
//   8       8     idx      the volume lives at volume0 + idx * footprint
//   16      8     next     pool-managed: next empty volume on the free stack
//   24      8     info_sz  bytes of user info, 0..kVolumeInfoMax
//   32      480   info     user info; bytes past info_sz are zero
//   512     ...   data     footprint - 512 bytes of data
//
// Example:
//
//   groove::VolumeHeader* v = ...;   // from VolumePool::Acquire
//   std::byte* data = groove::VolumeData(v);
//   absl::string_view info = groove::VolumeInfo(*v);

#ifndef GROOVE_VOLUME_H_
#define GROOVE_VOLUME_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "absl/strings/string_view.h"

namespace groove {

// kVolumeMagic marks a volume that holds data allocations (in use). Its
// bitwise complement marks an empty volume owned by the pool; 0 marks memory
// that is not (or no longer) a groove volume.
inline constexpr uint64_t kVolumeMagic = 0xfd67007e701c3300ULL;
inline constexpr uint64_t kVolumeEmptyMagic = ~kVolumeMagic;
inline constexpr uint64_t kVolumeNotAVolume = 0;

// Alignment of every volume, of the header and of the pool's volume0.
inline constexpr uint64_t kVolumeAlign = 4096;
// Size of the header; the data region starts here and is 512-byte aligned.
inline constexpr uint64_t kVolumeHeaderBytes = 512;
// Bytes of user info a header holds (one 512-byte block minus 32 bytes).
inline constexpr uint64_t kVolumeInfoMax = 480;
// Smallest footprint a pool accepts (one normal page).
inline constexpr uint64_t kVolumeMinFootprint = 4096;
// Default footprint: 1 GiB, one gigantic page.
inline constexpr uint64_t kVolumeDefaultFootprint = uint64_t{1} << 30;
// Data bytes of a default-footprint volume.
inline constexpr uint64_t kVolumeDefaultDataMax =
    kVolumeDefaultFootprint - kVolumeHeaderBytes;

// VolumeHeader is the first 512 bytes of a volume. `magic` and `next` are
// atomics because other threads and processes read them while the owner
// writes them (a popper reads `next` of the stack top racing with a pusher;
// Inspect reads `magic`). `idx` and `info_sz` are atomics so that a reader
// in another process never performs a data race on a header it does not
// own; they are written only while the volume is owned by one party (being
// formatted, or popped). `info` is plain bytes, published by the release
// store of `magic` / the pool's release CAS that follows every write to it.
//
// Every atomic here is std::atomic<uint64_t>, which is lock-free and
// address-free on every platform we build for, so the header may live in
// memory that processes map at different addresses.
struct VolumeHeader {
  std::atomic<uint64_t> magic;    // see kVolumeMagic
  std::atomic<uint64_t> idx;      // index of this volume in its pool
  std::atomic<uint64_t> next;     // pool-managed free-stack link
  std::atomic<uint64_t> info_sz;  // in [0, kVolumeInfoMax]
  unsigned char info[kVolumeInfoMax];  // zero past info_sz
};

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free to be address-free");
static_assert(sizeof(std::atomic<uint64_t>) == 8);
static_assert(std::is_standard_layout_v<VolumeHeader>);
static_assert(sizeof(VolumeHeader) == kVolumeHeaderBytes);
static_assert(offsetof(VolumeHeader, magic) == 0);
static_assert(offsetof(VolumeHeader, idx) == 8);
static_assert(offsetof(VolumeHeader, next) == 16);
static_assert(offsetof(VolumeHeader, info_sz) == 24);
static_assert(offsetof(VolumeHeader, info) == 32);
static_assert(kVolumeHeaderBytes % 512 == 0, "data must be block aligned");
static_assert(offsetof(VolumeHeader, info) % 8 == 0 && kVolumeInfoMax % 8 == 0,
              "info is copied as 8-byte words");

// Volume<kFootprint> is a whole volume of a compile-time footprint. Pools
// use a run-time footprint and address volumes through VolumeHeader*; this
// type exists to pin the facts-file layout of the default volume.
template <uint64_t kFootprint>
struct alignas(kVolumeAlign) Volume {
  static_assert(kFootprint >= kVolumeMinFootprint &&
                (kFootprint & (kFootprint - 1)) == 0);
  VolumeHeader header;
  unsigned char data[kFootprint - kVolumeHeaderBytes];
};

using DefaultVolume = Volume<kVolumeDefaultFootprint>;
static_assert(alignof(DefaultVolume) == 4096);
static_assert(sizeof(DefaultVolume) == kVolumeDefaultFootprint);
static_assert(offsetof(DefaultVolume, data) == 512);
static_assert(sizeof(DefaultVolume::data) == kVolumeDefaultDataMax);

// VolumeData returns the first byte of `volume`'s data region.
inline std::byte* VolumeData(VolumeHeader* volume) {
  return reinterpret_cast<std::byte*>(volume) + kVolumeHeaderBytes;
}

// VolumeInfo returns the user info of a volume the caller owns (or one whose
// header is not being written concurrently). info_sz is clamped to
// kVolumeInfoMax so a corrupt header never yields an out-of-bounds view.
inline absl::string_view VolumeInfo(const VolumeHeader& volume) {
  uint64_t size = volume.info_sz.load(std::memory_order_relaxed);
  if (size > kVolumeInfoMax) size = kVolumeInfoMax;
  return absl::string_view(reinterpret_cast<const char*>(volume.info), size);
}

// StoreVolumeInfo writes `info` (REQUIRES: info.size() <= kVolumeInfoMax)
// into volume->info and zeroes the rest, as 8-byte relaxed atomic stores,
// so that a reader in another thread or process that copies the info with
// LoadVolumeInfo (e.g. an Inspect racing a re-add) never performs a data
// race. It does not touch info_sz. Cost: 60 stores.
void StoreVolumeInfo(VolumeHeader* volume, absl::string_view info);

// LoadVolumeInfo copies the whole info field (kVolumeInfoMax bytes) into
// `out` with 8-byte relaxed atomic loads. The copy is consistent only if
// the header did not change meanwhile: callers re-check their own record of
// the volume (e.g. a slot table) after copying.
void LoadVolumeInfo(const VolumeHeader& volume,
                    unsigned char (&out)[kVolumeInfoMax]);

// CopyVolumeHeader copies every field of `from` into *to with relaxed
// atomic loads and stores (LoadVolumeInfo for the info), so that copying a
// header another party may be writing is no data race. Consistent only
// under the same condition as LoadVolumeInfo.
void CopyVolumeHeader(const VolumeHeader& from, VolumeHeader* to);

// IsPowerOfTwo returns true when `x` is a nonzero power of two.
constexpr bool IsPowerOfTwo(uint64_t x) { return x && !(x & (x - 1)); }

}  // namespace groove

#endif  // GROOVE_VOLUME_H_
