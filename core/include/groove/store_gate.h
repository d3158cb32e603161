// groove/store_gate.h: who may change a volume store's memory when, so that
// giving memory back never waits for taking it.
//
// The kernel serialises every change to one file's memory on the file's
// inode lock: `fallocate` (allocating and punching) on tmpfs and hugetlbfs
// holds it for the whole call, and an allocation of hugepages takes 0.5 to
// 4 s per GiB. A RemoveVolume that punched while an AddVolume of the same
// pool allocated would wait that long, on the gRPC thread that serves it
// (measured: a 4 KiB punch took 329 ms beside a 2 GiB tmpfs allocation,
// 0.017 ms alone; docs/PERFORMANCE.md §8).
//
// StoreGate makes the allocations in progress visible before the kernel
// call. Adds announce theirs (BeginAllocation ... EndAllocation; any number
// at once: they queue on the inode lock in the kernel, as before). A remove
// punches only when no allocation and no other punch is in progress
// (GiveBackOrDefer); otherwise it queues its punch and returns at once. The
// next add to begin runs the queued punches before it allocates, and so
// does the last allocation to end, or the punch in progress, whichever
// comes first. An add waits for the punches in progress before it
// allocates (a remove's, or those the last allocation to end or an add
// that began before it is running: it would wait for them in the kernel
// anyway), never for another add's allocation in user space; the punches
// it runs may wait in the kernel for the allocations in progress, as its
// own fallocate would.
//
// So an add that begins after a remove returned finds the memory the
// remove gave back (for hugepages: the pages, in the kernel's free count),
// and allocations that keep overlapping cannot hold a queued punch back:
// it waits at most for the allocations in progress when it was queued.
//
// Example (the owner's NamedPool):
//
//   StoreGate gate([this](uint64_t first, uint64_t count) {
//     Punch(first, count);  // fallocate(PUNCH_HOLE), free the slots
//   });
//   // An add, its slots claimed:
//   gate.BeginAllocation();
//   ... fallocate ...
//   gate.EndAllocation();
//   // A remove, after taking the volumes off the stack:
//   gate.GiveBackOrDefer(first, count);

#ifndef GROOVE_STORE_GATE_H_
#define GROOVE_STORE_GATE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>

namespace groove {

class StoreGate {
 public:
  // GiveBackFn gives the memory of volumes [first, first + count) back to
  // the kernel, on whichever thread runs it, so it must not call back into
  // the gate. A remove's own punch (GiveBackOrDefer returning true) runs
  // while no allocation and no other give-back is in progress; a queued
  // one may run beside allocations, never beside another give-back.
  using GiveBackFn = std::function<void(uint64_t first, uint64_t count)>;

  explicit StoreGate(GiveBackFn give_back);
  // ~StoreGate runs whatever give-back is still queued (none when every
  // BeginAllocation was matched by an EndAllocation and every
  // GiveBackOrDefer returned).
  // REQUIRES: no thread is using the gate.
  ~StoreGate();
  StoreGate(const StoreGate&) = delete;
  StoreGate& operator=(const StoreGate&) = delete;

  // BeginAllocation announces an allocation (or an add's rollback punch),
  // which the caller then makes, and EndAllocation ends it. From the
  // announcement until the end, removes queue their punches instead of
  // making them. BeginAllocation first waits for the give-backs in
  // progress (a remove's own, or queued ones that the last allocation to
  // end or another add's BeginAllocation is running), then runs, on the
  // calling thread, the give-backs still queued, as a give-back in
  // progress: an add that begins meanwhile waits for them in turn. So
  // every give-back queued before the call is done when it returns.
  // Thread safety: BeginAllocation blocks its caller while a give-back
  // runs (as long as the kernel's punch; another add's allocation never
  // holds it up in user space), and the queued give-backs it runs may wait
  // in the kernel for the allocations in progress (the inode lock, which
  // the caller's own fallocate would wait for too). EndAllocation never
  // waits: the last allocation to end runs the give-backs queued
  // meanwhile, on its own thread. Only the owner's adds call them; never
  // on a path that must not wait.
  void BeginAllocation();
  void EndAllocation();

  // GiveBackOrDefer gives back [first, first + count) now, on the calling
  // thread, when no allocation and no give-back is in progress; otherwise
  // it queues the give-back and returns. Returns true when the memory was
  // given back before the call returned, false when it was queued.
  // Thread safety: never waits for another thread: a CAS, a lock-free push
  // of the queued give-back, and the kernel call of its own punch, made
  // only while no other change to the store is in progress. Allocates one
  // node when it queues.
  bool GiveBackOrDefer(uint64_t first, uint64_t count);

  // FinishGiveBacks returns once every give-back queued before the call
  // is done, running them itself when it can: as soon as their runner
  // (another add's BeginAllocation, the last allocation to end, or a
  // give-back in progress) has run them, even while allocations are still
  // in progress and hold up give-backs queued after the call (it may wait
  // for one of those only when it was queued within the instant between
  // the call and its first look at the queue, or while a run that began
  // before the call had not yet taken the queue). Thread safety: blocks
  // while allocations in progress hold the queued give-backs up (seconds,
  // for a hugepage allocation), and while another thread runs them (as
  // long as its punches).
  void FinishGiveBacks();

  // pending_volumes is the number of volumes whose give-back
  // GiveBackOrDefer queued and which are not yet given back (queued, or
  // being given back). A volume queued by a GiveBackOrDefer that returned
  // before this call began is counted until its give-back is done
  // (acquire; the count is published before GiveBackOrDefer returns, its
  // decrement after the give-back ran), so 0 means no finished remove's
  // punch is pending.
  uint64_t pending_volumes() const {
    return pending_volumes_.load(std::memory_order_acquire);
  }

  // SetTestHookForTesting installs `before_wait` (may be empty), which
  // FinishGiveBacks calls each time it has found give-backs pending that it
  // cannot run, and BeginAllocation each time it finds a give-back in
  // progress, just before it blocks: a test can hold it there while it
  // lets another party run them. REQUIRES: no thread is using the gate.
  void SetTestHookForTesting(std::function<void()> before_wait) {
    before_wait_ = std::move(before_wait);
  }

 private:
  // A queued give-back. Pushed by GiveBackOrDefer, taken all at once by
  // whoever runs them: a list only ever pushed to and swapped out whole
  // has no ABA problem.
  struct Pending {
    uint64_t first;
    uint64_t count;
    Pending* next;
  };

  // kGivingBack is state_'s give-back bit; each allocation in progress
  // adds kAllocation.
  static constexpr uint32_t kGivingBack = 1;
  static constexpr uint32_t kAllocation = 2;

  // TryStartGivingBack sets kGivingBack if state_ is 0 (no allocation, no
  // give-back). Never waits.
  bool TryStartGivingBack();
  // StopGivingBack clears kGivingBack and wakes the adds waiting for it.
  void StopGivingBack();
  // RunQueued runs and frees every queued give-back.
  // REQUIRES: kGivingBack is ours (so no remove punches inline meanwhile,
  // and an add that begins waits for what we run), or no thread uses the
  // gate (the destructor).
  void RunQueued();
  // RunQueuedWhileFree runs queued give-backs for as long as some are
  // queued and the give-back bit can be taken; it returns once the queue
  // is empty or the store is busy (whoever makes it busy runs them when it
  // is done).
  void RunQueuedWhileFree();

  GiveBackFn give_back_;
  // Allocations in progress * kAllocation | kGivingBack. Every operation
  // on it and on pending_ is seq_cst: a remove that queues and then finds
  // the store busy, and an allocation or give-back that ends and then
  // finds the queue empty, cannot both be right (the Dekker pattern), so
  // no queued give-back is left without a runner. (An allocation that
  // begins also runs the queue: a further runner, never the only one.)
  std::atomic<uint32_t> state_{0};
  std::atomic<Pending*> pending_{nullptr};  // newest first
  // Volumes queued and not yet given back: see pending_volumes.
  std::atomic<uint64_t> pending_volumes_{0};
  // Queued give-backs done so far, and runs ended (wrapping): RunQueued
  // adds one after each give-back's decrement of pending_volumes_ and
  // after each run, and wakes FinishGiveBacks, which waits on it (a
  // futex-sized word: no proxy).
  std::atomic<uint32_t> give_backs_done_{0};
  // Runs of the queue (RunQueued calls) begun and ended (wrapping). Runs
  // hold kGivingBack, so they are made one at a time: run n has ended
  // once runs_ended_ reaches n, and FinishGiveBacks waits for the first
  // run counted after its call, not for the queue to be empty.
  std::atomic<uint32_t> runs_begun_{0};
  std::atomic<uint32_t> runs_ended_{0};
  std::function<void()> before_wait_;  // tests: SetTestHookForTesting
};

}  // namespace groove

#endif  // GROOVE_STORE_GATE_H_
