// FreeSlotIndex: finds the lowest free index at or after a point, across
// word and summary boundaries, agrees with a plain set under a random
// sequence of changes, and keeps every free index findable when threads
// change indices of the same word at once.

#include "groove/free_slot_index.h"

#include <atomic>
#include <barrier>
#include <cstdint>
#include <random>
#include <set>
#include <thread>

#include "gtest/gtest.h"

namespace groove {
namespace {

// Three summary words and a partial last word: 64 * 64 * 2 + 64 * 3 + 5.
constexpr uint64_t kSize = 8389;

TEST(FreeSlotIndexTest, AnIndexWithNothingFreeFindsNothing) {
  FreeSlotIndex index(kSize);
  EXPECT_EQ(index.FindFrom(0), kSize);
  EXPECT_EQ(index.FindFrom(kSize - 1), kSize);
  EXPECT_EQ(index.FindFrom(kSize + 10), kSize);
}

TEST(FreeSlotIndexTest, FindsTheLowestFreeIndexAtOrAfterAPoint) {
  FreeSlotIndex index(kSize);
  // In word 0, at a word's last bit, in the second summary word, and the
  // very last index.
  for (uint64_t i :
       {uint64_t{3}, uint64_t{127}, uint64_t{4096 + 70}, kSize - 1}) {
    index.MarkFree(i);
  }
  EXPECT_EQ(index.FindFrom(0), 3u);
  EXPECT_EQ(index.FindFrom(3), 3u);
  EXPECT_EQ(index.FindFrom(4), 127u);
  EXPECT_EQ(index.FindFrom(127), 127u);
  EXPECT_EQ(index.FindFrom(128), 4096u + 70);
  EXPECT_EQ(index.FindFrom(4096 + 71), kSize - 1);
  EXPECT_EQ(index.FindFrom(kSize - 1), kSize - 1);
}

TEST(FreeSlotIndexTest, ATakenIndexIsNotFoundAndItsWordNeighboursStill) {
  FreeSlotIndex index(kSize);
  index.MarkFree(64);
  index.MarkFree(65);
  index.MarkTaken(64);
  EXPECT_EQ(index.FindFrom(0), 65u);
  index.MarkTaken(65);  // the word is empty now: its summary bit goes
  EXPECT_EQ(index.FindFrom(0), kSize);
  index.MarkFree(65);  // and comes back
  EXPECT_EQ(index.FindFrom(0), 65u);
}

TEST(FreeSlotIndexTest, AgreesWithAPlainSetUnderRandomChanges) {
  FreeSlotIndex index(kSize);
  std::set<uint64_t> free;
  std::mt19937_64 random(7);
  // Clustered indices, so words and summary words fill and empty.
  std::uniform_int_distribution<uint64_t> pick(0, 700);
  for (int step = 0; step < 20000; ++step) {
    const uint64_t i = (pick(random) * 12) % kSize;
    if (free.count(i) != 0) {
      free.erase(i);
      index.MarkTaken(i);
    } else {
      free.insert(i);
      index.MarkFree(i);
    }
    const uint64_t from = pick(random) * 12 % kSize;
    const auto expected = free.lower_bound(from);
    ASSERT_EQ(index.FindFrom(from), expected == free.end() ? kSize : *expected)
        << "step " << step << ", from " << from;
  }
}

// The race that could lose a word's summary bit: one thread takes the last
// free index of a word (MarkTaken sees the word empty and clears the
// summary bit) while another frees a second index of that word. Both go at
// once, between two barriers, many times; after each round the freed index
// must be findable, or every add would pass over that word from then on.
TEST(FreeSlotIndexTest, TakingAWordsLastIndexBesideAFreeInItKeepsItFindable) {
  FreeSlotIndex index(128);
  constexpr int kRounds = 30000;
  std::barrier<> both(2);
  std::atomic<int> lost{0};
  // Round r: index a is taken and index b freed, where (a, b) alternate
  // between (0, 1) and (1, 0); before it, a is the word's only free index.
  index.MarkFree(0);
  auto run = [&](uint64_t mine) {
    for (int r = 0; r < kRounds; ++r) {
      const uint64_t taken = r % 2 == 0 ? 0 : 1;
      both.arrive_and_wait();
      if (mine == taken) {
        index.MarkTaken(mine);
      } else {
        index.MarkFree(mine);
      }
      both.arrive_and_wait();
      const uint64_t freed = 1 - taken;
      if (mine == 0 && index.FindFrom(0) != freed) lost.fetch_add(1);
    }
  };
  std::thread other(run, 1);
  run(0);
  other.join();
  EXPECT_EQ(lost.load(), 0) << "rounds whose freed index could not be found";
}

}  // namespace
}  // namespace groove
