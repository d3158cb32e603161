#include "groove/server/futex_semaphore.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>

namespace groove::server {
namespace {

static_assert(std::atomic<int32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<int32_t>) == sizeof(int32_t),
              "the futex word is the atomic itself");

// FUTEX_WAIT returns at once (EAGAIN) unless *word == expected, checked
// atomically with going to sleep: a Release between our load and the call
// is never missed. Spurious returns (EINTR) are fine: the caller re-checks.
void FutexWait(std::atomic<int32_t>* word, int32_t expected) {
  syscall(SYS_futex, reinterpret_cast<int32_t*>(word), FUTEX_WAIT_PRIVATE,
          expected, nullptr, nullptr, 0);
}

void FutexWake(std::atomic<int32_t>* word, int32_t n) {
  syscall(SYS_futex, reinterpret_cast<int32_t*>(word), FUTEX_WAKE_PRIVATE, n,
          nullptr, nullptr, 0);
}

}  // namespace

void FutexSemaphore::Release(int32_t n) {
  // Seq_cst (this add, then the load of sleepers_) against Acquire's
  // seq_cst add to sleepers_ then load of permits_: either we see the
  // sleeper and wake it, or it sees our permits and does not sleep. The
  // add is also a release: it publishes what the caller did before.
  permits_.fetch_add(n, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) FutexWake(&permits_, n);
}

bool FutexSemaphore::TryAcquire() {
  int32_t p = permits_.load(std::memory_order_relaxed);
  while (p > 0) {
    // Acquire on success: pairs with Release's add (see Release).
    if (permits_.compare_exchange_weak(p, p - 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void FutexSemaphore::Acquire() {
  for (;;) {
    if (TryAcquire()) return;
    // Seq_cst: see Release.
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (permits_.load(std::memory_order_seq_cst) == 0) FutexWait(&permits_, 0);
    // Relaxed: only Release's decision to wake reads it, and a stale
    // positive value costs one unneeded wake.
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace groove::server
