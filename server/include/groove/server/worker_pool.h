// groove/server/worker_pool.h: a small fixed set of threads that run slow
// work off gRPC's threads.
//
// AddVolume's core call takes memory from the kernel, which for hugepages
// takes 0.5 to 4 seconds per GiB while the kernel zeroes the pages. The
// server's RPC handlers run on gRPC's callback threads, which also serve
// every other RPC; a handler that waited for the kernel would starve them.
// So AddVolume hands its core call to its pool's WorkerPool and returns at
// once; a worker runs the call and finishes the RPC (docs/SERVER.md).
//
// The queue is bounded: TrySchedule refuses work when `max_queued` tasks
// already wait, so a flood of adds costs bounded memory and the caller can
// fail fast (UNAVAILABLE) rather than queue for minutes.
//
// Scheduling never takes a lock (docs/SERVER.md, "No blocking"): the queue
// is a fixed-size `boost::lockfree::queue` of task pointers (its nodes one
// array, allocated up front: at most kMaxQueued tasks), the bound is a CAS
// on a counter, and idle workers sleep on a
// FutexSemaphore that TrySchedule releases once per task (an atomic add,
// and a futex wake of one worker only when a worker sleeps; not
// std::counting_semaphore, which wakes every sleeping worker and spins with
// sched_yield: futex_semaphore.h).
//
// Example:
//   WorkerPool workers("add:main", /*threads=*/4, /*max_queued=*/256);
//   if (!workers.TrySchedule([] { ... })) { ... refuse ... }
//   workers.Stop();  // runs what is queued, joins the threads

#ifndef GROOVE_SERVER_WORKER_POOL_H_
#define GROOVE_SERVER_WORKER_POOL_H_

#include <atomic>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "boost/lockfree/queue.hpp"
#include "groove/server/futex_semaphore.h"

namespace groove::server {

class WorkerPool {
 public:
  // kMaxQueued is the largest max_queued: a fixed-size queue indexes its
  // nodes with 16 bits, so it has at most 65,535, one of them its dummy.
  static constexpr size_t kMaxQueued = 65534;

  // Starts `threads` threads (at least 1) named `name` (truncated to the
  // 15 characters Linux keeps) that run queued tasks in FIFO order, and
  // allocates the queue's nodes for `max_queued` tasks.
  // REQUIRES: max_queued <= kMaxQueued (a larger value is taken as
  // kMaxQueued; callers with a configured value refuse it first, as
  // VolumeServer::Create does). 0 is taken as 1.
  WorkerPool(std::string name, size_t threads, size_t max_queued);

  // Stops the pool (see Stop).
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // TrySchedule queues `task` to run on a worker thread. Returns false,
  // and drops `task` without running it, when max_queued tasks are already
  // waiting or Stop was called.
  // Thread safety: lock-free; safe from any thread, including tasks. Never
  // waits for a worker, a task or another caller. Cost: O(1) plus one heap
  // allocation for the task.
  bool TrySchedule(absl::AnyInvocable<void() &&> task);

  // Stop refuses new tasks, lets the workers run every task already
  // queued, and joins them. Blocks until the running tasks return (and
  // spins, yielding, while a TrySchedule that began before it finishes its
  // O(1) push). Idempotent. Thread safety: call from one thread, not from a
  // task.
  void Stop();

  // stopping says whether Stop has been called: after TrySchedule returned
  // false, it tells a pool that is shutting down from one that is full.
  // Thread safety: wait-free.
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  // max_queued and threads are the limits given to the constructor (at
  // least 1 each), for messages.
  size_t max_queued() const { return max_queued_; }
  size_t threads() const { return threads_.size(); }

  // queued returns how many tasks wait for a worker (a hint: it changes
  // while it is read). Thread safety: wait-free.
  size_t queued() const { return queued_.load(std::memory_order_relaxed); }

  // running returns how many tasks workers run now (a hint, as queued).
  // Thread safety: wait-free.
  size_t running() const { return running_.load(std::memory_order_relaxed); }

  // is_lock_free says whether the queue is lock-free on this platform
  // (boost::lockfree falls back to locks where it has no CAS of its
  // tagged 32-bit node handles). Tests assert it.
  bool is_lock_free() const { return queue_.is_lock_free(); }

 private:
  using Task = absl::AnyInvocable<void() &&>;

  void Run();

  const size_t max_queued_;
  // Tasks waiting for a worker. Fixed-size: max_queued_ + 1 nodes (one is
  // the queue's dummy) in one array, made by the constructor; pushes take a
  // free one and never allocate. The array is reached through a plain
  // pointer and its nodes are linked by 16-bit indices, so LeakSanitizer
  // follows it to every queued task of a pool that is never destroyed; a
  // node-based queue links its nodes by tagged pointers (the tag in a
  // pointer's top bits), which it cannot follow (log.cc says the same of
  // the log's queue).
  boost::lockfree::queue<Task*, boost::lockfree::fixed_sized<true>> queue_;
  // Tasks queued or being pushed: the bound. Relaxed: a count, not a
  // publication (the queue and the semaphore order the task itself).
  std::atomic<size_t> queued_{0};
  // Tasks a worker runs now (relaxed: a statistic, for the metrics).
  std::atomic<size_t> running_{0};
  // TrySchedule calls between their check of stopping_ and their last use
  // of the queue: Stop waits for them to leave before it wakes the workers
  // for the last time.
  std::atomic<size_t> scheduling_{0};
  std::atomic<bool> stopping_{false};
  // One permit per queued task, plus one per worker when stopping.
  FutexSemaphore permits_;
  std::vector<std::thread> threads_;  // joined by Stop
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_WORKER_POOL_H_
