// StoreGate: a give-back never waits for an allocation, allocations never
// wait for each other, a queued give-back runs before the next allocation,
// and no give-back is lost. Deterministic cases first, then threads
// allocating and giving back at random (also run under ThreadSanitizer).

#include "groove/store_gate.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "support/notification.h"
#include "support/pool_memory.h"

namespace groove {
namespace {

using testing::Notification;

// How long a thread waits for an event before the test fails instead of
// hanging.
constexpr absl::Duration kStuck = absl::Seconds(30);

// HeldAllocation is an allocation in progress on a thread of its own, from
// construction (which returns once it has begun) until End.
class HeldAllocation {
 public:
  explicit HeldAllocation(StoreGate& gate)
      : thread_([this, &gate] {
          gate.BeginAllocation();
          began_.Notify();
          ASSERT_TRUE(may_end_.WaitForNotificationWithTimeout(kStuck));
          gate.EndAllocation();
        }),
        id_(thread_.get_id()) {
    EXPECT_TRUE(began_.WaitForNotificationWithTimeout(kStuck));
  }
  ~HeldAllocation() { End(); }

  // End ends the allocation and returns once EndAllocation has returned.
  void End() {
    if (!thread_.joinable()) return;
    may_end_.Notify();
    thread_.join();
  }
  // thread_id is the id of the thread that allocates (and ends).
  std::thread::id thread_id() const { return id_; }

 private:
  Notification began_;
  Notification may_end_;
  std::thread thread_;  // after the events it uses
  std::thread::id id_;
};

struct GivenBack {
  uint64_t first;
  uint64_t count;
  std::thread::id by;
};

// RecordingGate is a gate whose give-backs record what they gave back and
// on which thread (the cases using it run one give-back at a time).
struct RecordingGate {
  std::vector<GivenBack> given;
  StoreGate gate{[this](uint64_t first, uint64_t count) {
    given.push_back({first, count, std::this_thread::get_id()});
  }};  // after `given`: its destructor may still give back
};

TEST(StoreGateTest, AnIdleStoreGivesBackOnTheCallingThread) {
  RecordingGate recording;
  StoreGate& gate = recording.gate;
  const std::vector<GivenBack>& given = recording.given;
  EXPECT_TRUE(gate.GiveBackOrDefer(3, 2));
  ASSERT_EQ(given.size(), 1u);
  EXPECT_EQ(given[0].first, 3u);
  EXPECT_EQ(given[0].count, 2u);
  EXPECT_EQ(given[0].by, std::this_thread::get_id());
  EXPECT_EQ(gate.pending_volumes(), 0u);
}

// An allocation in progress on another thread: give-backs are queued
// without waiting, and the allocation runs them as it ends, on its thread.
TEST(StoreGateTest, AnAllocationRunsTheGiveBacksQueuedDuringIt) {
  RecordingGate recording;
  StoreGate& gate = recording.gate;
  const std::vector<GivenBack>& given = recording.given;
  HeldAllocation adder(gate);
  EXPECT_FALSE(gate.GiveBackOrDefer(7, 1));  // returns without waiting
  EXPECT_FALSE(gate.GiveBackOrDefer(9, 4));
  EXPECT_EQ(gate.pending_volumes(), 5u);  // 1 + 4 volumes
  adder.End();
  EXPECT_EQ(gate.pending_volumes(), 0u);
  ASSERT_EQ(given.size(), 2u);
  uint64_t volumes = 0;
  for (const GivenBack& g : given) {
    EXPECT_EQ(g.by, adder.thread_id());
    volumes += g.count;
  }
  EXPECT_EQ(volumes, 5u);
}

// Adds never wait for each other (the kernel orders their fallocates), and
// the give-backs queued while both allocate wait for the last to end.
TEST(StoreGateTest, AllocationsOverlapAndTheLastToEndRunsTheQueue) {
  std::atomic<int> given{0};
  StoreGate gate([&](uint64_t, uint64_t) { given.fetch_add(1); });
  HeldAllocation first(gate);
  auto second = std::async(std::launch::async, [&] {
    gate.BeginAllocation();
    EXPECT_FALSE(gate.GiveBackOrDefer(1, 1));
    gate.EndAllocation();  // `first` still allocates: not run yet
    return given.load();
  });
  const bool returned = second.wait_for(absl::ToChronoSeconds(kStuck)) ==
                        std::future_status::ready;
  EXPECT_TRUE(returned) << "an allocation waited for another one";
  if (returned) {
    EXPECT_EQ(second.get(), 0);
  }
  EXPECT_EQ(gate.pending_volumes(), 1u);
  first.End();
  EXPECT_EQ(given.load(), 1);
  EXPECT_EQ(gate.pending_volumes(), 0u);
}

// An allocation that begins while give-backs are queued (for another one
// in progress) runs them first, on its own thread: it finds their memory,
// and overlapping allocations cannot hold them back.
TEST(StoreGateTest, AnAllocationRunsTheGiveBacksQueuedBeforeItBegins) {
  RecordingGate recording;
  StoreGate& gate = recording.gate;
  const std::vector<GivenBack>& given = recording.given;
  HeldAllocation earlier(gate);
  ASSERT_FALSE(gate.GiveBackOrDefer(5, 2));
  gate.BeginAllocation();
  EXPECT_EQ(gate.pending_volumes(), 0u);
  ASSERT_EQ(given.size(), 1u);
  EXPECT_EQ(given[0].first, 5u);
  EXPECT_EQ(given[0].by, std::this_thread::get_id());
  gate.EndAllocation();  // `earlier` still allocates: nothing to run
  earlier.End();
  EXPECT_EQ(given.size(), 1u);
}

// An allocation that begins while another one, begun before it, is still
// running the give-backs it took off the queue waits for them (as for any
// give-back in progress) before it allocates: a remove that returned
// before it began has given its memory back by then, as for hugepages the
// allocation needs. Without the wait it went on to allocate while the
// other add's punch had not yet reached the kernel, and on a pool whose
// hugepages were all taken failed for want of the page that punch frees.
TEST(StoreGateTest, AnAllocationWaitsForTheGiveBacksAnotherOneIsRunning) {
  Notification running;     // the earlier add runs the give-back (held)
  Notification may_finish;  // let it finish
  std::atomic<bool> given{false};
  StoreGate gate([&](uint64_t, uint64_t) {
    running.Notify();
    EXPECT_TRUE(may_finish.WaitForNotificationWithTimeout(kStuck));
    given.store(true);
  });
  auto finish = [&] {
    if (!may_finish.HasBeenNotified()) may_finish.Notify();
  };
  // Called by the add below only when it blocks for the give-back in
  // progress: let that give-back finish then.
  gate.SetTestHookForTesting(finish);
  HeldAllocation allocating(gate);
  ASSERT_FALSE(gate.GiveBackOrDefer(1, 1));  // a remove, returned
  std::thread earlier_add([&] {
    gate.BeginAllocation();  // runs the queued give-back, held in it
    gate.EndAllocation();
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(kStuck));
  gate.BeginAllocation();  // an add that began after the remove returned
  EXPECT_TRUE(given.load())
      << "an allocation began while a give-back queued before it was still "
         "being run by another add";
  finish();
  gate.EndAllocation();
  earlier_add.join();
  allocating.End();
  EXPECT_EQ(gate.pending_volumes(), 0u);
}

// Finisher calls FinishGiveBacks on a thread of its own. The gate's test
// hook holds it just before it would block, until Proceed, so that the
// test can act while it is known to be there.
class Finisher {
 public:
  explicit Finisher(StoreGate& gate) {
    gate.SetTestHookForTesting([this] {
      Settle();
      EXPECT_TRUE(proceed_.WaitForNotificationWithTimeout(kStuck));
    });
    thread_ = std::thread([this, &gate] {
      gate.FinishGiveBacks();
      returned_.Notify();
      Settle();
    });
  }
  ~Finisher() {
    if (!proceed_.HasBeenNotified()) proceed_.Notify();
    thread_.join();
  }

  // WaitUntilAboutToBlock: true once FinishGiveBacks is held just before
  // it would block; false if it returned without blocking, or did neither
  // within kStuck.
  bool WaitUntilAboutToBlock() {
    return settled_.WaitForNotificationWithTimeout(kStuck) &&
           !returned_.HasBeenNotified();
  }
  // Proceed lets FinishGiveBacks go on (and block). Once only.
  void Proceed() { proceed_.Notify(); }
  // WaitUntilReturned: true once FinishGiveBacks has returned (false after
  // kStuck: it still waits).
  bool WaitUntilReturned() {
    return returned_.WaitForNotificationWithTimeout(kStuck);
  }

 private:
  // Settle: about to block or returned, whichever comes first.
  void Settle() {
    if (!settling_.exchange(true)) settled_.Notify();
  }

  std::atomic<bool> settling_{false};
  Notification settled_;
  Notification proceed_;
  Notification returned_;
  std::thread thread_;  // after the events it uses
};

// FinishGiveBacks blocks while an allocation holds a queued give-back up,
// and returns once the allocation has ended and run it.
TEST(StoreGateTest, FinishGiveBacksReturnsOnlyOnceTheQueuedOnesAreDone) {
  std::atomic<int> given{0};
  StoreGate gate([&](uint64_t, uint64_t) { given.fetch_add(1); });
  HeldAllocation adder(gate);
  ASSERT_FALSE(gate.GiveBackOrDefer(1, 1));
  {
    Finisher finisher(gate);
    EXPECT_TRUE(finisher.WaitUntilAboutToBlock())
        << "FinishGiveBacks returned with a give-back still queued";
    EXPECT_EQ(given.load(), 0);
    finisher.Proceed();
    adder.End();  // runs the give-back
    EXPECT_TRUE(finisher.WaitUntilReturned());
  }
  EXPECT_EQ(given.load(), 1);
  EXPECT_EQ(gate.pending_volumes(), 0u);
}

// Another add that begins runs the queued give-back (BeginAllocation):
// FinishGiveBacks returns then, while that allocation and the one that
// held the give-back up are both still in progress, not when the last
// allocation ends (which, for hugepages, is seconds per GiB later).
TEST(StoreGateTest, FinishGiveBacksReturnsOnceAnotherAddHasRunTheQueuedOnes) {
  std::atomic<int> given{0};
  StoreGate gate([&](uint64_t, uint64_t) { given.fetch_add(1); });
  gate.BeginAllocation();  // an add allocating (on this thread, so that
                           // it lasts however long the test fails for)
  ASSERT_FALSE(gate.GiveBackOrDefer(1, 1));
  {
    Finisher finisher(gate);
    ASSERT_TRUE(finisher.WaitUntilAboutToBlock());
    gate.BeginAllocation();  // another add: runs the queued give-back
    EXPECT_EQ(given.load(), 1);
    finisher.Proceed();
    EXPECT_TRUE(finisher.WaitUntilReturned())
        << "FinishGiveBacks still waits, its give-back done, for the "
           "allocations in progress";
    gate.EndAllocation();
    gate.EndAllocation();
  }
  EXPECT_EQ(given.load(), 1);
  EXPECT_EQ(gate.pending_volumes(), 0u);
}

// FinishGiveBacks waits for the give-backs queued before it, not for one
// a remove queues after it began: once another add has run the earlier
// one, it returns, though the later one is held up by the allocations in
// progress (for hugepages, seconds per GiB). It used to wait until no
// give-back at all was pending, so an add waiting for room waited for
// every allocation in progress whenever removes kept queueing.
TEST(StoreGateTest, FinishGiveBacksDoesNotWaitForGiveBacksQueuedAfterIt) {
  std::atomic<int> given{0};
  StoreGate gate([&](uint64_t, uint64_t) { given.fetch_add(1); });
  gate.BeginAllocation();  // an add allocating (on this thread)
  ASSERT_FALSE(gate.GiveBackOrDefer(1, 1));
  {
    Finisher finisher(gate);
    ASSERT_TRUE(finisher.WaitUntilAboutToBlock());
    gate.BeginAllocation();  // another add: runs the queued give-back
    EXPECT_EQ(given.load(), 1);
    ASSERT_FALSE(gate.GiveBackOrDefer(2, 1));  // a remove after the call
    finisher.Proceed();
    EXPECT_TRUE(finisher.WaitUntilReturned())
        << "FinishGiveBacks waits for a give-back queued after it began";
    EXPECT_EQ(given.load(), 1);
    gate.EndAllocation();
    gate.EndAllocation();  // runs the later give-back
  }
  EXPECT_EQ(given.load(), 2);
  EXPECT_EQ(gate.pending_volumes(), 0u);
}

#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kGiveBacksPerThread = 2'000;
#else
constexpr uint64_t kGiveBacksPerThread = 50'000;
#endif

// Threads that allocate race threads that give back (the removes): a
// give-back on a giver's thread (its own punch, or queued ones it runs)
// never overlaps an allocation or another give-back, every give-back runs
// exactly once, and none is left queued when all have returned. Queued
// give-backs that an allocator runs as it begins may overlap the other
// allocator's allocation: the kernel orders those, and neither is a remove.
TEST(StoreGateTest, RacingGiveBacksRunExactlyOnceAndARemoveNeverWaits) {
  constexpr int kAllocators = 2;
  constexpr int kGivers = 3;
  std::vector<std::atomic<int>> runs(kGivers * kGiveBacksPerThread);
  std::atomic<int> allocating{0};
  std::atomic<int> giving_back{0};        // on any thread
  std::atomic<int> giver_giving_back{0};  // on a giver's thread
  std::atomic<int> overlaps{0};
  thread_local bool allocator_thread = false;
  StoreGate gate([&](uint64_t first, uint64_t count) {
    const bool by_giver = !allocator_thread;
    if (by_giver) giver_giving_back.fetch_add(1);
    if (giving_back.fetch_add(1) != 0 && by_giver) overlaps.fetch_add(1);
    if (by_giver && allocating.load() != 0) overlaps.fetch_add(1);
    for (uint64_t i = first; i < first + count; ++i) runs[i].fetch_add(1);
    giving_back.fetch_sub(1);
    if (by_giver) giver_giving_back.fetch_sub(1);
  });
  std::atomic<int> givers_running{kGivers};
  std::atomic<uint64_t> deferred{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kAllocators; ++t) {
    threads.emplace_back([&] {
      allocator_thread = true;
      while (givers_running.load() > 0) {
        gate.BeginAllocation();
        allocating.fetch_add(1);
        if (giver_giving_back.load() != 0) overlaps.fetch_add(1);
        allocating.fetch_sub(1);
        gate.EndAllocation();
      }
    });
  }
  const uint64_t seed = testing::TestSeed();
  for (int t = 0; t < kGivers; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      const uint64_t base = t * kGiveBacksPerThread;
      for (uint64_t i = 0; i < kGiveBacksPerThread;) {
        const uint64_t count =
            std::min<uint64_t>(1 + rng() % 3, kGiveBacksPerThread - i);
        if (!gate.GiveBackOrDefer(base + i, count)) deferred.fetch_add(1);
        i += count;
      }
      givers_running.fetch_sub(1);
    });
  }
  for (std::thread& t : threads) t.join();
  std::printf("%llu give-backs queued for an allocation or a give-back\n",
              static_cast<unsigned long long>(deferred.load()));
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(gate.pending_volumes(), 0u);
  for (size_t i = 0; i < runs.size(); ++i) {
    ASSERT_EQ(runs[i].load(), 1) << "give-back of " << i;
  }
}

}  // namespace
}  // namespace groove
