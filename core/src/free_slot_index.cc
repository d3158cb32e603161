#include "groove/free_slot_index.h"

#include <bit>

namespace groove {
namespace {

uint64_t Bit(uint64_t i) { return uint64_t{1} << (i % 64); }

}  // namespace

FreeSlotIndex::FreeSlotIndex(uint64_t size)
    : size_(size),
      word_count_((size + kBits - 1) / kBits),
      summary_count_((word_count_ + kBits - 1) / kBits),
      words_(new std::atomic<uint64_t>[word_count_]),
      summary_(new std::atomic<uint64_t>[summary_count_]) {
  for (uint64_t w = 0; w < word_count_; ++w) {
    words_[w].store(0, std::memory_order_relaxed);
  }
  for (uint64_t s = 0; s < summary_count_; ++s) {
    summary_[s].store(0, std::memory_order_relaxed);
  }
}

// Seq_cst throughout: the summary's clear-then-recheck (MarkTaken) against
// a MarkFree's set-word-then-set-summary must not be reordered, and these
// run once per slot change, beside a CAS on the slot anyway.

void FreeSlotIndex::MarkFree(uint64_t i) {
  const uint64_t w = i / kBits;
  words_[w].fetch_or(Bit(i));
  summary_[w / kBits].fetch_or(Bit(w));
}

void FreeSlotIndex::MarkTaken(uint64_t i) {
  const uint64_t w = i / kBits;
  if ((words_[w].fetch_and(~Bit(i)) & ~Bit(i)) != 0) return;
  // The word looked empty: clear its summary bit, then put it back if a
  // MarkFree set a word bit meanwhile (its own summary OR may have come
  // before our AND).
  summary_[w / kBits].fetch_and(~Bit(w));
  if (words_[w].load() != 0) summary_[w / kBits].fetch_or(Bit(w));
}

uint64_t FreeSlotIndex::FindFrom(uint64_t from) const {
  if (from >= size_) return size_;
  uint64_t w = from / kBits;
  // Bits of word w at or after `from`; later words count whole.
  uint64_t below = Bit(from) - 1;
  for (uint64_t s = w / kBits; s < summary_count_; ++s) {
    uint64_t marked = summary_[s].load();
    if (s == w / kBits) marked &= ~(Bit(w) - 1);  // words before w: skip
    while (marked != 0) {
      const uint64_t word = s * kBits + std::countr_zero(marked);
      marked &= marked - 1;
      uint64_t bits = words_[word].load();
      if (word == w) bits &= ~below;
      if (bits != 0) {
        const uint64_t i = word * kBits + std::countr_zero(bits);
        return i < size_ ? i : size_;
      }
    }
  }
  return size_;
}

}  // namespace groove
