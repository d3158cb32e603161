#include "groove/server/worker_pool.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

namespace groove::server {

WorkerPool::WorkerPool(std::string name, size_t threads, size_t max_queued)
    : max_queued_(max_queued) {
  const std::string thread_name = name.substr(0, 15);
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) {
    threads_.emplace_back([this] { Run(); });
    pthread_setname_np(threads_.back().native_handle(), thread_name.c_str());
  }
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::TrySchedule(absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || queue_.size() >= max_queued_) return false;
  queue_.push_back(std::move(task));
  return true;
}

void WorkerPool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

size_t WorkerPool::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

bool WorkerPool::HasWorkOrStopping() const {
  return stopping_ || !queue_.empty();
}

void WorkerPool::Run() {
  for (;;) {
    absl::AnyInvocable<void() &&> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WorkerPool::HasWorkOrStopping));
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    // Run without the lock: a task may take seconds.
    std::move(task)();
  }
}

}  // namespace groove::server
