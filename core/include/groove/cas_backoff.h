// groove/cas_backoff.h: bounded exponential back-off after a lost
// compare-and-swap on a contended word, and the CPU's spin-wait hint.
//
// The pool's push and pop retry their CAS on the stack's top word when
// another party moved it. Retrying at once keeps the top's cache line
// moving between cores on every attempt, so two threads that both push and
// pop in a loop get about a third of what one thread alone gets. After each
// lost CAS the loser waits a little longer (1, 2, 4 ... kMaxPauses pause
// instructions) before it re-reads the top; meanwhile the winner runs
// several operations with the line in its own cache. Measured in
// docs/PERFORMANCE.md §1: on 2 cores, 2 to 8 threads doing Acquire+Release
// went from 16-18 M to 37-40 M pairs per second (one thread alone: 46 M).
//
// Who backs off (VolumePool): data-plane operations (Acquire, Release,
// Remove, untagged pushes). The owner's announced pops and tagged pushes
// retry at once: they are rare, an RPC waits on each, and the push makes a
// system call between reading the top and its CAS, so against a data plane
// that moves the top every 50 ns waiting longer only lengthens each retry
// (docs/ARCHITECTURE.md §3 has the measurement).
//
// Example:
//
//   groove::CasBackoff backoff;
//   uint64_t seen = word.load(std::memory_order_relaxed);
//   while (!word.compare_exchange_weak(seen, Next(seen),
//                                      std::memory_order_release,
//                                      std::memory_order_relaxed)) {
//     backoff.AfterLostCas();
//   }

#ifndef GROOVE_CAS_BACKOFF_H_
#define GROOVE_CAS_BACKOFF_H_

namespace groove {

// CpuPause executes the CPU's spin-wait hint once (`pause` on x86, `yield`
// on Arm; nothing elsewhere). It tells the core that the thread is waiting
// for another one, saving power and the pipeline flush a plain spin costs
// when the awaited line changes. About 19 ns on the EPYC this project is
// measured on; 5 to 40 ns on other x86 cores.
inline void CpuPause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// CasBackoff is the back-off state of one operation: make one on the stack
// of each push or pop and call AfterLostCas after every CAS it loses.
//
// Thread safety: one instance per thread and operation; it is never
// shared. It neither yields, sleeps nor takes a lock, so the loop it is
// used in keeps its progress guarantee: a lost CAS means another party's
// operation completed, and the loser only delays its own next attempt, by
// at most kMaxPauses pause instructions (about 1.2 us here).
//
// The price is fairness: the gain is one thread running a streak while
// the other waits, so under a tight loop a thread that keeps losing can
// wait until the winner is interrupted. Measured on 2 cores (PERFORMANCE
// §1, BM_PairLatency_Groove): p99 of a pair 1.2 us -> 0.3-0.4 us, p999
// 1.6-8 us -> 0.6-1.2 us, but the longest pair 0.07-1.5 ms -> 3-13 ms.
// Backing off only for the first few losses restores the maximum and
// loses the whole gain.
//
// No random jitter: the deterministic doubling gave the gain measured, so
// a random number on the hot path was not tried.
class CasBackoff {
 public:
  // kMaxPauses is the cap of one wait. Below 32 the measured gain
  // vanished (16: none); 64 kept 85-90% of what 256 gave with a quarter
  // of its longest wait (docs/PERFORMANCE.md §1).
  static constexpr int kFirstPauses = 1;
  static constexpr int kMaxPauses = 64;

  // AfterLostCas waits pauses() pause instructions, then doubles pauses()
  // up to kMaxPauses. Cost: pauses() x CpuPause.
  void AfterLostCas() {
    for (int i = 0; i < pauses_; ++i) CpuPause();
    if (pauses_ < kMaxPauses) pauses_ *= 2;
  }

  // pauses is how many pause instructions the next AfterLostCas waits.
  int pauses() const { return pauses_; }

 private:
  int pauses_ = kFirstPauses;  // in [kFirstPauses, kMaxPauses], a power of 2
};

}  // namespace groove

#endif  // GROOVE_CAS_BACKOFF_H_
