#include "groove/volume.h"

#include <cstring>

namespace groove {
namespace {

constexpr size_t kInfoWords = kVolumeInfoMax / 8;

std::atomic_ref<uint64_t> InfoWord(const VolumeHeader& volume, size_t word) {
  // The info field is 8-byte aligned (static_assert in volume.h) and only
  // ever accessed through these atomic references.
  auto* words = reinterpret_cast<uint64_t*>(
      const_cast<unsigned char*>(volume.info));
  return std::atomic_ref<uint64_t>(words[word]);
}

}  // namespace

void StoreVolumeInfo(VolumeHeader* volume, absl::string_view info) {
  for (size_t word = 0; word < kInfoWords; ++word) {
    uint64_t value = 0;
    const size_t offset = word * 8;
    if (offset < info.size()) {
      std::memcpy(&value, info.data() + offset,
                  std::min<size_t>(8, info.size() - offset));
    }
    // Relaxed: published by the release that follows (the push's CAS or a
    // slot-table store).
    InfoWord(*volume, word).store(value, std::memory_order_relaxed);
  }
}

void LoadVolumeInfo(const VolumeHeader& volume,
                    unsigned char (&out)[kVolumeInfoMax]) {
  for (size_t word = 0; word < kInfoWords; ++word) {
    // Relaxed: see the contract; consistency is the caller's re-check.
    const uint64_t value =
        InfoWord(volume, word).load(std::memory_order_relaxed);
    std::memcpy(out + word * 8, &value, 8);
  }
}

void CopyVolumeHeader(const VolumeHeader& from, VolumeHeader* to) {
  // Relaxed: see the contract.
  for (std::atomic<uint64_t> VolumeHeader::*field :
       {&VolumeHeader::magic, &VolumeHeader::idx, &VolumeHeader::next,
        &VolumeHeader::info_sz}) {
    (to->*field).store((from.*field).load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
  }
  unsigned char info[kVolumeInfoMax];
  LoadVolumeInfo(from, info);
  StoreVolumeInfo(to, absl::string_view(reinterpret_cast<const char*>(info),
                                        kVolumeInfoMax));
}

}  // namespace groove
