// groove/server/futex_semaphore.h: a counting semaphore whose waiters sleep
// on a futex at once and whose Release wakes only as many as it frees.
//
// Why not std::counting_semaphore: libstdc++ 12's (bits/semaphore_base.h,
// atomic_wait.h) spins 16 times before it sleeps, the last 4 with
// sched_yield, and its release wakes *every* sleeping thread
// (FUTEX_WAKE with INT_MAX; its own comment: "FIXME - Figure out why this
// does not wake a waiting thread" for the wake-one call). For WorkerPool
// that meant each AddVolume woke all of its pool's workers: one took the
// task, the others yielded four times and went back to sleep, a scheduler
// round trip each (docs/PERFORMANCE.md §8). std::atomic<T>::wait is built
// on the same spin loop. This one is a direct futex: Acquire sleeps without
// spinning, Release(n) wakes at most n sleepers and makes no system call
// when nobody sleeps.
//
// Example:
//   FutexSemaphore permits;
//   // producer:            // consumer:
//   push(task);             permits.Acquire();
//   permits.Release(1);     pop(task);
//
// Linux only (futex(2)). Process-private: the futex is FUTEX_PRIVATE.

#ifndef GROOVE_SERVER_FUTEX_SEMAPHORE_H_
#define GROOVE_SERVER_FUTEX_SEMAPHORE_H_

#include <atomic>
#include <cstdint>

namespace groove::server {

class FutexSemaphore {
 public:
  // Starts with no permits.
  FutexSemaphore() = default;
  FutexSemaphore(const FutexSemaphore&) = delete;
  FutexSemaphore& operator=(const FutexSemaphore&) = delete;

  // Release adds `n` permits and wakes up to `n` threads sleeping in
  // Acquire. Everything the caller did before Release happens before what
  // the thread that takes one of these permits does after its Acquire.
  // REQUIRES: n >= 1; the permits held never exceed INT32_MAX.
  // Thread safety: lock-free; never waits. Cost: one atomic add and one
  // load; plus one futex(FUTEX_WAKE) system call only when a thread sleeps.
  void Release(int32_t n = 1);

  // Acquire takes one permit, sleeping (futex, no spinning, no
  // sched_yield) while there is none. Thread safety: safe from any number
  // of threads. Blocks by design: call it only from a thread whose job is
  // to wait (a worker), never on an RPC path.
  void Acquire();

  // TryAcquire takes one permit if one is there. Returns whether it did.
  // Thread safety: lock-free.
  bool TryAcquire();

 private:
  // Free permits; the futex word. Invariant: >= 0.
  std::atomic<int32_t> permits_{0};
  // Threads in Acquire that may sleep (registered before their last check
  // of permits_). Seq_cst with permits_ (see Release/Acquire): a Release
  // either sees a sleeper registered, or the sleeper sees its permit.
  std::atomic<int32_t> sleepers_{0};
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_FUTEX_SEMAPHORE_H_
