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
// Example:
//   WorkerPool workers("add:main", /*threads=*/4, /*max_queued=*/256);
//   if (!workers.TrySchedule([] { ... })) { ... refuse ... }
//   workers.Stop();  // runs what is queued, joins the threads

#ifndef GROOVE_SERVER_WORKER_POOL_H_
#define GROOVE_SERVER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace groove::server {

class WorkerPool {
 public:
  // Starts `threads` threads (at least 1) named `name` (truncated to the
  // 15 characters Linux keeps) that run queued tasks in FIFO order.
  WorkerPool(std::string name, size_t threads, size_t max_queued);

  // Stops the pool (see Stop).
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // TrySchedule queues `task` to run on a worker thread. Returns false,
  // and drops `task` without running it, when max_queued tasks are already
  // waiting or Stop was called.
  // Thread safety: safe from any thread. Holds the queue's mutex for an
  // O(1) push; never waits for a worker or a task. Tasks must not call
  // Stop.
  bool TrySchedule(absl::AnyInvocable<void() &&> task);

  // Stop refuses new tasks, lets the workers run every task already
  // queued, and joins them. Blocks until the running tasks return.
  // Idempotent. Thread safety: call from one thread, not from a task.
  void Stop();

  // queued returns how many tasks wait for a worker (a hint).
  size_t queued() const;

 private:
  void Run();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // joined by Stop
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_WORKER_POOL_H_
