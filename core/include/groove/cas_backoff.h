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
// docs/PERFORMANCE.md §1: on 2 cores, 2 to 8 threads doing
// Acquire+Release went from 15-18 M to 34-40 M pairs per second (one
// thread alone: 43-47 M).
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
// at most kMaxPauses pause instructions (3.4 us on the Xeon of
// PERFORMANCE §11, 4.9 us on the EPYC), and by about 64,000 pauses in all
// (kMaxBackedOffLosses).
//
// The price is fairness: the gain is one thread running a streak while
// the other waits, so under a tight loop a thread that keeps losing would
// wait until the winner is interrupted. So one operation backs off for at
// most kMaxBackedOffLosses lost CASes, then retries at once. Measured on
// 2 cores (PERFORMANCE §1, BM_PairLatency_Groove): p99 of a pair 1.2 us ->
// 0.25-0.37 us, p999 1.5-8.4 us -> 0.7-1.1 us, the longest pair
// 0.07-1.5 ms -> 0.95-2.3 ms (1-17 ms without the bound). Backing off only for
// the first few losses restores the maximum and loses the whole gain.
// The cap and the bound trade against each other at the same budget in
// all: 256 x 256 gives 8-11% more pairs at 2-8 threads than 64 x 1024,
// with a better p99 and p999 and the same longest pair (PERFORMANCE §11).
//
// No random jitter: the deterministic doubling gave the gain measured, so
// a random number on the hot path was not tried.
class CasBackoff {
 public:
  // kFirstPauses is the first wait, after the first lost CAS.
  static constexpr int kFirstPauses = 1;
  // kMaxPauses is the cap of one wait. Below 32 the measured gain
  // vanished (16: none); 256 gave 8-17% more than 64 (docs/PERFORMANCE.md
  // §1 on the EPYC, §11 on the Xeon), 512 no more than 256.
  static constexpr int kMaxPauses = 256;
  // kMaxBackedOffLosses bounds how long one operation backs off in all:
  // after that many lost CASes (about 64,000 pauses: 0.8 ms on the Xeon,
  // 1.2 ms on the EPYC) it retries at once, as without back-off, so a
  // thread that keeps losing against a tight loop competes again instead
  // of waiting for the winner to be interrupted (measured: the longest
  // pair 1-17 ms without the bound, 0.95-2.3 ms with it, at the same
  // throughput; PERFORMANCE §1). It was 1024 with a cap of 64, the same
  // budget of pauses.
  static constexpr int kMaxBackedOffLosses = 256;

  // AfterLostCas waits pauses() pause instructions, then doubles pauses()
  // up to kMaxPauses; once kMaxBackedOffLosses losses were waited out it
  // returns at once. Cost: pauses() x CpuPause.
  void AfterLostCas() {
    if (losses_ == kMaxBackedOffLosses) return;
    ++losses_;
    for (int i = 0; i < pauses_; ++i) CpuPause();
    if (pauses_ < kMaxPauses) pauses_ *= 2;
  }

  // pauses is how many pause instructions the next AfterLostCas waits: 0
  // once kMaxBackedOffLosses CASes were lost.
  int pauses() const { return losses_ < kMaxBackedOffLosses ? pauses_ : 0; }

 private:
  int pauses_ = kFirstPauses;  // in [kFirstPauses, kMaxPauses], a power of 2
  int losses_ = 0;             // in [0, kMaxBackedOffLosses]
};

}  // namespace groove

#endif  // GROOVE_CAS_BACKOFF_H_
