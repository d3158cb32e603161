// groove/free_slot_index.h: where the free indices of a pool are, so that
// an add finds the lowest ones without reading the whole slot table.
//
// The owner's slot table (named_pool.cc) says of each index whether it is
// free; an add takes the `count` lowest free ones. Reading the table from
// index 0 cost an add O(max_volumes): adding and removing one volume took
// 1.35 ms in a pool of 1,000,000 volumes against 0.24 ms in one of 1,024
// (docs/PERFORMANCE.md section 9). FreeSlotIndex is a two-level bitmap
// kept beside the table: one bit per index (set: free), and one summary
// bit per word of 64 indices (set: that word may have a free bit). Finding
// the lowest free index at or after `from` reads at most max_volumes / 4096
// summary words and one word per set summary bit it passes.
//
// The slot table stays the truth: a claim is still a CAS on the slot, and
// the index is a hint the owner keeps exact. It is not shared memory: the
// owner builds it from the table at open (after recovery) and updates it
// after each change of a slot to or from free.
//
// Example:
//   FreeSlotIndex free(max_volumes);          // every index taken
//   free.MarkFree(7);                         // after slot 7 became free
//   for (uint64_t i = free.FindFrom(0); i < max_volumes;
//        i = free.FindFrom(i + 1)) {
//     if (claim slot i) free.MarkTaken(i);
//   }

#ifndef GROOVE_FREE_SLOT_INDEX_H_
#define GROOVE_FREE_SLOT_INDEX_H_

#include <atomic>
#include <cstdint>
#include <memory>

namespace groove {

class FreeSlotIndex {
 public:
  // Creates the index of `size` indices, all taken (no bit set). Cost:
  // size / 8 bytes, zeroed.
  explicit FreeSlotIndex(uint64_t size);

  FreeSlotIndex(const FreeSlotIndex&) = delete;
  FreeSlotIndex& operator=(const FreeSlotIndex&) = delete;

  uint64_t size() const { return size_; }

  // MarkFree records that index `i` became free. Call it after the slot's
  // store of "free", so that a finder that sees the bit and CASes the slot
  // finds it free. REQUIRES: i < size().
  // Thread safety: lock-free (two atomic ORs); safe with every other call.
  void MarkFree(uint64_t i);

  // MarkTaken records that index `i` is no longer free. Call it after a
  // successful claim of the slot, before anything can free it again.
  // REQUIRES: i < size().
  // Thread safety: lock-free; safe with every other call. A MarkFree of
  // another index of the same word that races it keeps its summary bit.
  void MarkTaken(uint64_t i);

  // FindFrom returns the lowest index >= `from` whose bit is set, or size()
  // when there is none. A hint: the index may be taken by the time the
  // caller CASes its slot (then look again from i + 1), and an index freed
  // during the call may be missed.
  // Thread safety: lock-free (loads only). Cost: O(size / 4096) loads at
  // most, plus one per stale summary bit.
  uint64_t FindFrom(uint64_t from) const;

 private:
  static constexpr uint64_t kBits = 64;

  uint64_t size_;
  uint64_t word_count_;     // size_ / 64, rounded up
  uint64_t summary_count_;  // word_count_ / 64, rounded up
  // Bit i % 64 of words_[i / 64]: index i is free.
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
  // Bit w % 64 of summary_[w / 64]: words_[w] may be non-zero. Set after
  // the word's bit, cleared only when the word was seen zero and set again
  // if it is non-zero after the clear, so a set word bit always has its
  // summary bit once the calls that touched the word have returned.
  std::unique_ptr<std::atomic<uint64_t>[]> summary_;
};

}  // namespace groove

#endif  // GROOVE_FREE_SLOT_INDEX_H_
