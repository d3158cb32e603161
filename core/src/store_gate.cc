#include "groove/store_gate.h"

#include <utility>

namespace groove {

static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<void*>::is_always_lock_free);

StoreGate::StoreGate(GiveBackFn give_back) : give_back_(std::move(give_back)) {}

StoreGate::~StoreGate() {
  // Nothing is queued unless a thread died between queueing and running;
  // giving back late is better than keeping the memory taken.
  RunQueued();
}

bool StoreGate::TryStartGivingBack() {
  uint32_t idle = 0;
  // seq_cst on failure too: a failed try that read "busy" is ordered
  // before the change that makes the store idle again (see state_).
  return state_.compare_exchange_strong(
      idle, kGivingBack, std::memory_order_seq_cst, std::memory_order_seq_cst);
}

void StoreGate::StopGivingBack() {
  state_.fetch_and(~kGivingBack, std::memory_order_seq_cst);
  // A system call only when a thread waits (libstdc++ counts waiters).
  state_.notify_all();
}

void StoreGate::BeginAllocation() {
  uint32_t state =
      state_.fetch_add(kAllocation, std::memory_order_seq_cst) + kAllocation;
  // Counted first, so no remove punches inline from here on. Then wait for
  // the give-back in progress, if any (a remove's punch, or the queue run
  // by the last allocation to end or by an add that began before us), and
  // run, here, before we allocate, the give-backs queued before us (see
  // the header). We run them holding kGivingBack, so that an add that
  // begins meanwhile waits for them as it waits for any give-back: it
  // found the queue empty because we took it, and without the bit it
  // allocated before our punches reached the kernel (for hugepages: with
  // the pages they free still taken).
  for (;;) {
    if ((state & kGivingBack) != 0) {
      if (before_wait_) before_wait_();
      state_.wait(state, std::memory_order_seq_cst);
      state = state_.load(std::memory_order_seq_cst);
      continue;
    }
    // A load first: most adds find nothing queued, and an exchange would
    // take the cache line for nothing (we are an extra runner, never the
    // only one, so a miss is harmless).
    if (pending_.load(std::memory_order_seq_cst) == nullptr) {
      // Empty, maybe because another add took the queue since our look
      // at the state: it set kGivingBack before its exchange, so a look
      // after ours at the queue sees the bit until it is done.
      state = state_.load(std::memory_order_seq_cst);
      if ((state & kGivingBack) == 0) return;
      continue;
    }
    // seq_cst: the bit is set before our exchange of the queue (above).
    if (state_.compare_exchange_weak(state, state | kGivingBack,
                                     std::memory_order_seq_cst,
                                     std::memory_order_seq_cst)) {
      break;
    }
  }
  RunQueued();
  // Our allocation is still counted: a give-back queued from here on is
  // run by an add that begins or by the last allocation to end.
  StopGivingBack();
}

void StoreGate::EndAllocation() {
  const uint32_t state =
      state_.fetch_sub(kAllocation, std::memory_order_seq_cst) - kAllocation;
  if (state != 0) return;  // another allocation, or a give-back, runs them
  RunQueuedWhileFree();
}

bool StoreGate::GiveBackOrDefer(uint64_t first, uint64_t count) {
  if (TryStartGivingBack()) {
    give_back_(first, count);
    RunQueued();
    StopGivingBack();
    RunQueuedWhileFree();
    return true;
  }
  auto* node = new Pending{first, count, nullptr};
  // Release: counted before the remove that queued it returns.
  pending_volumes_.fetch_add(count, std::memory_order_release);
  node->next = pending_.load(std::memory_order_seq_cst);
  while (!pending_.compare_exchange_weak(
      node->next, node, std::memory_order_seq_cst, std::memory_order_seq_cst)) {
  }
  // The store may have gone idle between our try and the push, its last
  // user having looked at the queue before the push: then nobody else
  // will run it.
  RunQueuedWhileFree();
  return false;
}

void StoreGate::FinishGiveBacks() {
  if (pending_volumes() == 0) return;
  // Runs of the queue are made one at a time (each holds kGivingBack) and
  // each takes everything queued, so every give-back queued before this
  // call is done once the first run to begin after it has ended: run
  // `target` (runs_begun_ counts before the exchange). Or sooner: once the
  // runs that had begun when we see the queue empty have ended, since
  // they took what had been queued before that look. Waiting instead
  // until nothing at all is pending also waited for give-backs queued
  // after the call, which the allocations in progress hold up.
  uint32_t target = runs_begun_.load(std::memory_order_seq_cst) + 1;
  auto ended = [&] {
    // Wrapping counts: run `target` has ended.
    return static_cast<int32_t>(runs_ended_.load(std::memory_order_seq_cst) -
                                target) >= 0;
  };
  for (;;) {
    // The count of give-backs done first, then the checks: a run that
    // ends after this load bumps the count past `done`, so the wait below
    // cannot miss it (and one that ended before it shows in the checks:
    // RunQueued decrements and counts the run, then bumps).
    const uint32_t done = give_backs_done_.load(std::memory_order_seq_cst);
    if (pending_volumes() == 0) return;
    if (pending_.load(std::memory_order_seq_cst) == nullptr) {
      const uint32_t begun = runs_begun_.load(std::memory_order_seq_cst);
      if (static_cast<int32_t>(begun - target) < 0) target = begun;
    }
    if (ended()) return;
    RunQueuedWhileFree();
    if (pending_volumes() == 0 || ended()) return;
    // Held up by allocations, or being run elsewhere: whoever runs them
    // wakes us as each is done (RunQueued), be it an add that begins, the
    // last allocation to end or a give-back in progress; no queued
    // give-back is left without a runner (see state_).
    if (before_wait_) before_wait_();
    give_backs_done_.wait(done, std::memory_order_seq_cst);
  }
}

void StoreGate::RunQueued() {
  // Nothing queued: no run (a remove's own punch mostly finds none, and
  // the counts below would cost it three more atomic writes). We hold
  // kGivingBack, so nobody takes the queue between this look and our
  // exchange below.
  if (pending_.load(std::memory_order_seq_cst) == nullptr) return;
  // Counted before the exchange: a run counted after FinishGiveBacks
  // looked takes everything queued before that look.
  runs_begun_.fetch_add(1, std::memory_order_seq_cst);
  Pending* list = pending_.exchange(nullptr, std::memory_order_seq_cst);
  while (list != nullptr) {
    give_back_(list->first, list->count);
    // Release: whoever reads the lower count sees the give-back done.
    pending_volumes_.fetch_sub(list->count, std::memory_order_release);
    // Then wake FinishGiveBacks (a system call only when a thread waits).
    give_backs_done_.fetch_add(1, std::memory_order_seq_cst);
    give_backs_done_.notify_all();
    Pending* done = list;
    list = list->next;
    delete done;
  }
  // The whole run is done: wake FinishGiveBacks, which may wait for it.
  runs_ended_.fetch_add(1, std::memory_order_seq_cst);
  give_backs_done_.fetch_add(1, std::memory_order_seq_cst);
  give_backs_done_.notify_all();
}

void StoreGate::RunQueuedWhileFree() {
  // Each pass either empties the queue or finds the store busy; whoever
  // made it busy after our look runs what we saw when it is done.
  while (pending_.load(std::memory_order_seq_cst) != nullptr &&
         TryStartGivingBack()) {
    RunQueued();
    StopGivingBack();
  }
}

}  // namespace groove
