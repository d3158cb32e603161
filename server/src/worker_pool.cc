#include "groove/server/worker_pool.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

namespace groove::server {

WorkerPool::WorkerPool(std::string name, size_t threads, size_t max_queued)
    : max_queued_(std::clamp<size_t>(max_queued, 1, kMaxQueued)),
      // max_queued_ + 1 nodes: boost adds the queue's dummy node itself.
      queue_(max_queued_) {
  const std::string thread_name = name.substr(0, 15);
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) {
    threads_.emplace_back([this] { Run(); });
    pthread_setname_np(threads_.back().native_handle(), thread_name.c_str());
  }
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::TrySchedule(absl::AnyInvocable<void() &&> task) {
  // Seq_cst (this increment, then the load of stopping_) against Stop's
  // seq_cst store of stopping_ then load of scheduling_: either we see
  // stopping_, or Stop sees us and waits until we have pushed.
  scheduling_.fetch_add(1, std::memory_order_seq_cst);
  auto leave = [this] {
    // Release: our push happens before Stop's last wake-up.
    scheduling_.fetch_sub(1, std::memory_order_release);
  };
  if (stopping_.load(std::memory_order_seq_cst)) {
    leave();
    return false;
  }
  size_t queued = queued_.load(std::memory_order_relaxed);
  do {
    if (queued >= max_queued_) {
      leave();
      return false;
    }
  } while (!queued_.compare_exchange_weak(queued, queued + 1,
                                          std::memory_order_relaxed));
  auto* boxed = new Task(std::move(task));
  if (!queue_.bounded_push(boxed)) {  // cannot happen: queued_ bounds it
    delete boxed;
    queued_.fetch_sub(1, std::memory_order_relaxed);
    leave();
    return false;
  }
  permits_.Release(1);
  leave();
  return true;
}

void WorkerPool::Stop() {
  // Seq_cst: see TrySchedule.
  if (!stopping_.exchange(true, std::memory_order_seq_cst)) {
    // Acquire: every push that began before stopping_ is in the queue.
    while (scheduling_.load(std::memory_order_acquire) != 0) {
      std::this_thread::yield();
    }
    permits_.Release(static_cast<int32_t>(threads_.size()));
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::Run() {
  for (;;) {
    permits_.Acquire();
    Task* task = nullptr;
    if (queue_.pop(task)) {
      running_.fetch_add(1, std::memory_order_relaxed);
      queued_.fetch_sub(1, std::memory_order_relaxed);
      // A task may take seconds: nothing is held while it runs.
      std::move (*task)();
      delete task;
      running_.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    // No task for this permit: it was one of Stop's, and since no push can
    // follow Stop, the queue stays empty.
    if (stopping_.load(std::memory_order_acquire)) return;
  }
}

}  // namespace groove::server
