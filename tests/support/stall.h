// tests/support/stall.h: parks a thread inside a test hook, to show that
// others are not blocked while it is stopped there.
//
// Example:
//   Stall stall;
//   pool.set_test_hook(&Stall::Hook, &stall);
//   std::thread stopped([&] { pool.Acquire(&v); });  // parks in the hook
//   stall.WaitUntilStalled();
//   ... other threads run to completion ...
//   stall.Resume();
//   stopped.join();

#ifndef GROOVE_TESTS_SUPPORT_STALL_H_
#define GROOVE_TESTS_SUPPORT_STALL_H_

#include <atomic>

#include "groove/volume_pool.h"

namespace groove::testing {

// Stall parks the first thread that enters the hook until Resume().
class Stall {
 public:
  static void Hook(void* arg) {
    auto* self = static_cast<Stall*>(arg);
    self->calls_.fetch_add(1, std::memory_order_relaxed);
    int expected = kNotYet;
    if (self->state_.compare_exchange_strong(expected, kStalled)) {
      self->state_.notify_all();
      self->state_.wait(kStalled);  // until Resume()
    }
  }
  void WaitUntilStalled() {
    for (int s = state_.load(); s == kNotYet; s = state_.load()) {
      state_.wait(s);
    }
  }
  void Resume() {
    state_.store(kResumed);
    state_.notify_all();
  }
  int calls() const { return calls_.load(); }

 private:
  static constexpr int kNotYet = 0, kStalled = 1, kResumed = 2;
  std::atomic<int> state_{kNotYet};
  std::atomic<int> calls_{0};
};

// StallAt is a VolumePool::TestHook that parks like Stall::Hook, only at
// `kPoint` (the Stall is its argument):
//   join.SetTestHookForTesting(&StallAt<VolumePool::TestPoint::kBeforeCas>,
//                              &stall);
template <VolumePool::TestPoint kPoint>
void StallAt(void* stall, VolumePool::TestPoint point) {
  if (point == kPoint) Stall::Hook(stall);
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_STALL_H_
