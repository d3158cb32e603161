// tests/bench/volume_pool_bench.cc: push+pop pair throughput of the groove
// volume pool, side by side with boost::lockfree::stack and a mutex-guarded
// std::vector, on the same workload.
//
// What is measured: one iteration is one "push+pop pair": take one element
// off a shared free stack of kElementCount elements and put it straight
// back. Each contender runs it uncontended (threads:1) and contended
// (threads:2, 4, 8), all threads hammering one structure built once per run.
// Times are wall-clock (real_time) and items_per_second counts pairs per
// second summed over all threads, so the rows of one thread count compare
// directly. The machine's core count matters: with more threads than cores
// a thread can be descheduled inside the mutex's critical section (and the
// mutex contender then pays for it), but never "inside" a lock-free
// operation in a way that stops the others.
//
// Two throughputs are reported, because Google Benchmark (1.7) divides by
// the *mean* of the threads' timers and each thread's timer stops when that
// thread finishes its share of iterations. With more threads than cores the
// scheduler lets some threads finish early, the mean is shorter than the
// run, and items_per_second overstates throughput (by 10-30% for 4 and 8
// threads on a 2-core machine). wall_pairs_per_s divides all pairs by the
// wall time from the last thread's start to the last thread's end; it is
// slightly conservative (it includes waking from the framework's barriers)
// and is the number to compare across thread counts. With one thread, or
// as many threads as idle cores, the two agree.
//
// Read the CPU column too. Contended rows are only contended when the
// threads really run at once: CPU/Time close to min(threads, idle cores).
// When other work holds a core, the threads are time-sliced on the rest, no
// cache line moves between cores, and a contended row reads like threads:1
// (CPU/Time near 1 on a 2-core machine). Run on an otherwise idle machine
// and use repetitions; the contended rows are bimodal otherwise.
//
//   BM_PushPopPair_Groove          VolumePool::Acquire then Release on a
//                                  pool of 1024 volumes of 4096 bytes in an
//                                  anonymous mmap (what the data plane does)
//   BM_RemoveAddPair_Groove        the owner's pair on the same pool:
//                                  VolumePool::Remove (pop, header marked
//                                  not a volume) then FormatRange +
//                                  PushRange of that index (what
//                                  RemoveVolume/AddVolume do in the core,
//                                  without the memory and slot work)
//   BM_PushPopPair_BoostLockfree   boost::lockfree::stack<uint64_t,
//                                  capacity<1024>>: pop then push
//   BM_PushPopPair_MutexVector     std::mutex + std::vector<uint64_t>:
//                                  lock/pop_back/unlock, lock/push_back/unlock
//   BM_PushPopPair_CasCeiling      no stack at all: two CASes on one shared
//                                  word per pair, with the pool's back-off
//                                  (CasBackoff). Any structure whose pushes
//                                  and pops all move one top word pays at
//                                  least this, so it bounds what the pool
//                                  can reach at each thread count; the
//                                  pool's own work is the gap to it
//   BM_PairLatency_Groove,         the Acquire+Release pair and the mutex
//   BM_PairLatency_MutexVector     pair again, 1 and 2 threads, timing one
//                                  pair in 64: counters p50_ns, p99_ns,
//                                  p999_ns, max_ns (all threads' samples)
//
// With 1024 elements and at most 8 threads, at most 8 elements are ever off
// the stack, so a pop never finds it empty: any error (reported through
// SkipWithError) means a broken structure, not a busy one. After each run
// the last thread out checks that all 1024 elements are back.
//
// How to run (after `cmake --preset default && cmake --build --preset
// default`):
//
//   build/default/bin/volume_pool_bench
//   build/default/bin/volume_pool_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true --benchmark_min_time=0.5
//       (one command line)
//   build/default/bin/volume_pool_bench --benchmark_filter='threads:8$'
//
// ctest runs a tiny smoke run of it under the label `bench`.

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "boost/lockfree/stack.hpp"
#include "groove/cas_backoff.h"
#include "groove/pool_error.h"
#include "groove/volume.h"
#include "groove/volume_pool.h"

namespace groove {
namespace {

// kElementCount is the number of elements on every contender's stack: the
// pool's volumes, or the indices held by the other two.
constexpr uint64_t kElementCount = 1024;

// ---- Shared set-up ---------------------------------------------------------

// SharedContender<Contender> holds the one Contender that all threads of a
// benchmark run share. Google Benchmark starts every thread of a run at
// once, so:
//   - thread 0 builds the contender and publishes it (release store of
//     phase_); the other threads wait for it (acquire load) before touching
//     it. The framework's own start barrier would also order this, but an
//     explicit publication does not depend on when that barrier runs.
//   - the last thread to leave destroys it (acq_rel count of users_), not
//     thread 0: a thread that stops early on an error leaves its loop
//     without waiting for the others, and thread 0 may be that thread.
//   - it also reports wall_pairs_per_s (see the file comment): each thread
//     records when it starts and ends and how many pairs it ran; the last
//     thread out divides.
// Runs of one benchmark never overlap (each run's threads are joined before
// the next run starts), so one instance per Contender type serves them all.
template <typename Contender>
class SharedContender {
 public:
  // Enter returns the run's contender, building it when called from thread
  // 0. On a build failure every thread gets null and has called
  // SkipWithError. Every thread that calls Enter must call Leave.
  Contender* Enter(benchmark::State& state) {
    int phase;
    if (state.thread_index() == 0) {
      absl::StatusOr<std::unique_ptr<Contender>> built = Contender::Create();
      // Relaxed: published by the release store of phase_ below.
      users_.store(state.threads(), std::memory_order_relaxed);
      if (built.ok()) {
        contender_ = *std::move(built);
        phase = kReady;
      } else {
        error_ = built.status().ToString();
        phase = kFailed;
      }
      // Release: a thread that sees kReady/kFailed sees the contender.
      phase_.store(phase, std::memory_order_release);
    } else {
      // Acquire: pairs with thread 0's release store above.
      while ((phase = phase_.load(std::memory_order_acquire)) == kBuilding) {
        std::this_thread::yield();
      }
    }
    if (phase == kFailed) {
      state.SkipWithError(error_.c_str());
      return nullptr;
    }
    // The framework releases all threads together once the last of them
    // reaches the loop, so the latest of these stamps is the run's start.
    StoreMax(latest_start_ns_, NowNs());
    return contender_.get();
  }

  // Ran records that this thread's timed loop is over, with its pairs and
  // the latencies it sampled (none for the throughput benchmarks).
  void Ran(benchmark::State& state,
           const std::vector<int64_t>& latency_samples_ns) {
    StoreMax(latest_end_ns_, NowNs());
    // Relaxed: read by the last thread out, after Leave's acq_rel count.
    total_pairs_.fetch_add(state.iterations(), std::memory_order_relaxed);
    // Off the timed loop; the lock only orders the threads' appends.
    std::lock_guard<std::mutex> lock(samples_mu_);
    samples_ns_.insert(samples_ns_.end(), latency_samples_ns.begin(),
                       latency_samples_ns.end());
  }

  // Leave marks this thread done with the contender. The last thread out
  // checks that every element is back (a broken structure loses or
  // duplicates some), destroys the contender and rearms for the next run.
  void Leave(benchmark::State& state) {
    // Acq_rel: the last thread out sees every other thread's operations
    // before it checks and destroys the contender.
    if (users_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (contender_ != nullptr && !state.error_occurred()) {
      const absl::Status status = contender_->CheckAllElementsBack();
      if (!status.ok()) state.SkipWithError(status.ToString().c_str());
      // Relaxed: ordered by the acq_rel count above.
      const int64_t wall_ns = latest_end_ns_.load(std::memory_order_relaxed) -
                              latest_start_ns_.load(std::memory_order_relaxed);
      // Counters are summed over threads; only this thread sets it.
      if (wall_ns > 0) {
        state.counters["wall_pairs_per_s"] = benchmark::Counter(
            static_cast<double>(total_pairs_.load(std::memory_order_relaxed)) *
            1e9 / static_cast<double>(wall_ns));
      }
      ReportLatencies(state);
    }
    contender_.reset();
    error_.clear();
    latest_start_ns_.store(0, std::memory_order_relaxed);
    latest_end_ns_.store(0, std::memory_order_relaxed);
    total_pairs_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(samples_mu_);
      samples_ns_.clear();
    }
    // Relaxed: the next run's threads are started after this run's threads
    // are joined, which orders this store before their loads.
    phase_.store(kBuilding, std::memory_order_relaxed);
  }

 private:
  enum Phase : int { kBuilding = 0, kReady = 1, kFailed = 2 };

  static int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // StoreMax raises `target` to `value`. Relaxed: a statistic, read by the
  // last thread out after Leave's acq_rel count.
  static void StoreMax(std::atomic<int64_t>& target, int64_t value) {
    int64_t seen = target.load(std::memory_order_relaxed);
    while (seen < value && !target.compare_exchange_weak(
                               seen, value, std::memory_order_relaxed)) {
    }
  }

  // ReportLatencies sets the p50/p99/p999/max counters (ns per pair) from
  // every thread's samples, if any were taken.
  void ReportLatencies(benchmark::State& state) {
    std::lock_guard<std::mutex> lock(samples_mu_);
    if (samples_ns_.empty()) return;
    std::sort(samples_ns_.begin(), samples_ns_.end());
    const auto at = [this](double quantile) {
      const size_t rank = static_cast<size_t>(
          quantile * static_cast<double>(samples_ns_.size() - 1));
      return benchmark::Counter(static_cast<double>(samples_ns_[rank]));
    };
    state.counters["p50_ns"] = at(0.5);
    state.counters["p99_ns"] = at(0.99);
    state.counters["p999_ns"] = at(0.999);
    state.counters["max_ns"] = at(1.0);
    state.counters["samples"] =
        benchmark::Counter(static_cast<double>(samples_ns_.size()));
  }

  std::atomic<int> phase_{kBuilding};
  std::atomic<int> users_{0};  // threads of this run that have not left
  std::unique_ptr<Contender> contender_;     // set while phase_ is kReady
  std::string error_;                        // set while phase_ is kFailed
  std::atomic<int64_t> latest_start_ns_{0};  // steady clock, max of threads
  std::atomic<int64_t> latest_end_ns_{0};    // steady clock, max of threads
  std::atomic<uint64_t> total_pairs_{0};     // iterations of all threads
  std::mutex samples_mu_;
  std::vector<int64_t> samples_ns_;  // latency samples of all threads
};

// NoMeter times nothing: the throughput benchmarks' loops.
class NoMeter {
 public:
  void Begin() {}
  void End() {}
  const std::vector<int64_t>& samples_ns() const { return samples_ns_; }

 private:
  std::vector<int64_t> samples_ns_;  // always empty
};

// SampledMeter times one pair in kEvery with the steady clock (a vDSO
// call, ~25 ns here, so timing every pair would change what is timed) and
// keeps the samples for SharedContender to merge.
class SampledMeter {
 public:
  static constexpr uint64_t kEvery = 64;
  SampledMeter() { samples_ns_.reserve(1 << 20); }
  void Begin() {
    sampled_ = (++pairs_ % kEvery) == 0;
    if (sampled_) start_ = std::chrono::steady_clock::now();
  }
  void End() {
    if (!sampled_) return;
    samples_ns_.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now() - start_)
                              .count());
  }
  const std::vector<int64_t>& samples_ns() const { return samples_ns_; }

 private:
  uint64_t pairs_ = 0;
  bool sampled_ = false;
  std::chrono::steady_clock::time_point start_;
  std::vector<int64_t> samples_ns_;
};

// RunPushPopPair is the body every benchmark shares: join the run's
// contender, run pairs in the timed loop (timing a sample of them with
// SampledMeter), report pairs as items.
template <typename Contender, typename Meter = NoMeter>
void RunPushPopPair(benchmark::State& state) {
  static SharedContender<Contender> shared;
  Meter meter;
  Contender* contender = shared.Enter(state);
  if (contender != nullptr) {
    contender->RunPairs(state, meter);
  } else {
    // Skipped: the loop runs zero iterations, but every thread still meets
    // the framework's start and stop barriers.
    for (auto _ : state) {
    }
  }
  shared.Ran(state, meter.samples_ns());
  state.SetItemsProcessed(state.iterations());
  shared.Leave(state);
}

// ---- Contenders ----------------------------------------------------------
//
// Each contender has:
//   static absl::StatusOr<std::unique_ptr<X>> Create();  // kElementCount in
//   template <typename Meter>  // the timed loop, one pair per iteration,
//   void RunPairs(benchmark::State&, Meter&);  // meter.Begin/End around it
//   absl::Status CheckAllElementsBack();  // REQUIRES: no thread running

// GrooveContender: a VolumePool of kElementCount volumes of the smallest
// footprint, laid out as a data-plane process maps one: a 4096-byte page
// holding the pool header, then the volume span. kOwnerPair: each pair is
// Remove + FormatRange + PushRange (the owner's pop and re-add) instead of
// Acquire + Release (the data plane's).
template <bool kOwnerPair>
class GrooveContender {
 public:
  static constexpr uint64_t kHeaderBytes = 4096;
  static constexpr uint64_t kFootprintBytes = kVolumeMinFootprint;

  static absl::StatusOr<std::unique_ptr<GrooveContender>> Create() {
    const size_t bytes = kHeaderBytes + kElementCount * kFootprintBytes;
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "mmap ", bytes, " bytes for the pool: ", std::strerror(errno)));
    }
    // The contender owns the mapping from here on, failure or not.
    std::unique_ptr<GrooveContender> contender(
        new GrooveContender(static_cast<std::byte*>(base), bytes));
    auto* header = reinterpret_cast<PoolHeader*>(contender->base_);
    VolumePool::Format(header);
    absl::StatusOr<VolumePool> pool =
        VolumePool::Join(header, contender->base_ + kHeaderBytes, kElementCount,
                         kFootprintBytes);
    if (!pool.ok()) return pool.status();
    const PoolError err = pool->Add(0, kElementCount, "");
    if (err != PoolError::kSuccess) {
      return PoolErrorToStatus(err, "add the benchmark's volumes");
    }
    contender->pool_ = *pool;
    return contender;
  }

  ~GrooveContender() { munmap(base_, bytes_); }
  GrooveContender(const GrooveContender&) = delete;
  GrooveContender& operator=(const GrooveContender&) = delete;

  template <typename Meter>
  void RunPairs(benchmark::State& state, Meter& meter) const {
    // Each thread uses its own copy of the join, as each data-plane
    // process (or thread) does.
    const VolumePool pool = *pool_;
    if constexpr (kOwnerPair) {
      for (auto _ : state) {
        meter.Begin();
        VolumeHeader* volume = nullptr;
        PoolError err = pool.Remove(&volume);
        if (err != PoolError::kSuccess) {
          state.SkipWithError(
              PoolErrorToStatus(err, "remove").ToString().c_str());
          break;
        }
        const uint64_t index = pool.IndexOf(volume);
        err = pool.FormatRange(index, 1, "");
        if (err == PoolError::kSuccess) err = pool.PushRange(index, 1);
        if (err != PoolError::kSuccess) {
          state.SkipWithError(
              PoolErrorToStatus(err, "re-add").ToString().c_str());
          break;
        }
        meter.End();
      }
      return;
    }
    for (auto _ : state) {
      meter.Begin();
      VolumeHeader* volume = nullptr;
      PoolError err = pool.Acquire(&volume);
      if (err != PoolError::kSuccess) {
        state.SkipWithError(
            PoolErrorToStatus(err, "acquire").ToString().c_str());
        break;
      }
      err = pool.Release(volume);
      if (err != PoolError::kSuccess) {
        state.SkipWithError(
            PoolErrorToStatus(err, "release").ToString().c_str());
        break;
      }
      meter.End();
    }
  }

  absl::Status CheckAllElementsBack() const {
    absl::StatusOr<VerifyReport> report = pool_->Verify();
    if (!report.ok()) return report.status();
    if (report->empty_volumes != kElementCount) {
      return absl::DataLossError(
          absl::StrCat("groove pool holds ", report->empty_volumes, "/",
                       kElementCount, " volumes after the run"));
    }
    return absl::OkStatus();
  }

 private:
  GrooveContender(std::byte* base, size_t bytes) : base_(base), bytes_(bytes) {}

  std::byte* base_;  // the mapping: pool header page, then the volume span
  size_t bytes_;
  std::optional<VolumePool> pool_;  // set once Create has added the volumes
};

// BoostLockfreeContender: boost's fixed-capacity lock-free stack (a Treiber
// stack of tagged node indices plus a lock-free freelist of nodes), holding
// the indices 0..kElementCount-1. A pop frees a node and a push takes one,
// so each pair is four CASes, and with kElementCount nodes a push never
// finds the freelist empty.
class BoostLockfreeContender {
 public:
  using Stack =
      boost::lockfree::stack<uint64_t,
                             boost::lockfree::capacity<kElementCount>>;

  static absl::StatusOr<std::unique_ptr<BoostLockfreeContender>> Create() {
    auto contender = std::make_unique<BoostLockfreeContender>();
    if (!contender->stack_.is_lock_free()) {
      return absl::FailedPreconditionError(
          "boost::lockfree::stack is not lock-free on this platform; the "
          "comparison would be meaningless");
    }
    // Highest index first, so the lowest is popped first, as in the pool.
    for (uint64_t i = kElementCount; i-- > 0;) {
      if (!contender->stack_.push(i)) {
        return absl::ResourceExhaustedError(
            absl::StrCat("boost stack refused element ", kElementCount - i,
                         " of ", kElementCount));
      }
    }
    return contender;
  }

  template <typename Meter>
  void RunPairs(benchmark::State& state, Meter& meter) {
    for (auto _ : state) {
      meter.Begin();
      uint64_t index;
      if (!stack_.pop(index)) {
        state.SkipWithError("boost stack: pop found the stack empty");
        break;
      }
      if (!stack_.push(index)) {
        state.SkipWithError("boost stack: push found no free node");
        break;
      }
      meter.End();
    }
  }

  absl::Status CheckAllElementsBack() {
    // Quiescent (REQUIRES), so consume_all sees every element.
    uint64_t count = 0;
    stack_.consume_all([&count](uint64_t) { ++count; });
    if (count != kElementCount) {
      return absl::DataLossError(absl::StrCat("boost stack holds ", count, "/",
                                              kElementCount,
                                              " elements after the run"));
    }
    return absl::OkStatus();
  }

 private:
  Stack stack_;
};

// MutexVectorContender: the baseline a lock-free pool must beat: a vector
// of indices under one std::mutex, locked once for the pop and once for the
// push. Capacity is reserved up front, so push_back never allocates.
class MutexVectorContender {
 public:
  static absl::StatusOr<std::unique_ptr<MutexVectorContender>> Create() {
    auto contender = std::make_unique<MutexVectorContender>();
    contender->free_.reserve(kElementCount);
    for (uint64_t i = kElementCount; i-- > 0;) contender->free_.push_back(i);
    return contender;
  }

  template <typename Meter>
  void RunPairs(benchmark::State& state, Meter& meter) {
    for (auto _ : state) {
      meter.Begin();
      uint64_t index;
      bool popped = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!free_.empty()) {
          index = free_.back();
          free_.pop_back();
          popped = true;
        }
      }
      if (!popped) {
        state.SkipWithError("mutex vector: pop found the vector empty");
        break;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        free_.push_back(index);
      }
      meter.End();
    }
  }

  absl::Status CheckAllElementsBack() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.size() != kElementCount) {
      return absl::DataLossError(absl::StrCat("mutex vector holds ",
                                              free_.size(), "/", kElementCount,
                                              " elements after the run"));
    }
    return absl::OkStatus();
  }

 private:
  std::mutex mutex_;
  std::vector<uint64_t> free_;  // guarded by mutex_
};

// CasCeilingContender: the top word alone. Each pair is two CASes of one
// 64-bit word (seen -> seen + 1), retried after the pool's back-off when
// lost, as VolumePool's data-plane pop and push retry theirs; nothing is
// read through it and no element moves. Its elements "back" check is that
// the word counts two per pair begun, so an odd word means a pair was cut.
class CasCeilingContender {
 public:
  static absl::StatusOr<std::unique_ptr<CasCeilingContender>> Create() {
    return std::make_unique<CasCeilingContender>();
  }

  template <typename Meter>
  void RunPairs(benchmark::State& state, Meter& meter) {
    for (auto _ : state) {
      meter.Begin();
      Move();  // the pop's CAS
      Move();  // the push's CAS
      meter.End();
    }
  }

  absl::Status CheckAllElementsBack() {
    const uint64_t moves = top_.load(std::memory_order_relaxed);
    if (moves % 2 != 0) {
      return absl::DataLossError(
          absl::StrCat("the top word moved ", moves, " times: not 2 per pair"));
    }
    return absl::OkStatus();
  }

 private:
  void Move() {
    CasBackoff backoff;
    // Acquire/release as the pool's pop and push use on their top word.
    uint64_t seen = top_.load(std::memory_order_acquire);
    while (!top_.compare_exchange_weak(
        seen, seen + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      backoff.AfterLostCas();
    }
  }

  alignas(64) std::atomic<uint64_t> top_{0};
};

// ---- Registration --------------------------------------------------------

// PairThreads: uncontended, then contended; wall-clock time throughout so
// that items_per_second is total pairs per second of the run.
void PairThreads(benchmark::internal::Benchmark* b) {
  b->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseRealTime();
}

void BM_PushPopPair_Groove(benchmark::State& state) {
  RunPushPopPair<GrooveContender<false>>(state);
}
BENCHMARK(BM_PushPopPair_Groove)->Apply(PairThreads);

void BM_RemoveAddPair_Groove(benchmark::State& state) {
  RunPushPopPair<GrooveContender<true>>(state);
}
BENCHMARK(BM_RemoveAddPair_Groove)->Apply(PairThreads);

void BM_PushPopPair_BoostLockfree(benchmark::State& state) {
  RunPushPopPair<BoostLockfreeContender>(state);
}
BENCHMARK(BM_PushPopPair_BoostLockfree)->Apply(PairThreads);

void BM_PushPopPair_MutexVector(benchmark::State& state) {
  RunPushPopPair<MutexVectorContender>(state);
}
BENCHMARK(BM_PushPopPair_MutexVector)->Apply(PairThreads);

void BM_PushPopPair_CasCeiling(benchmark::State& state) {
  RunPushPopPair<CasCeilingContender>(state);
}
BENCHMARK(BM_PushPopPair_CasCeiling)->Apply(PairThreads);

// The latency of one pair, sampled (SampledMeter), for the data plane's
// pair against the mutex: what the back-off after a lost CAS (CasBackoff)
// costs one operation, beside what it gains in throughput. One and two
// threads only: with more threads than this machine's 2 cores, both tails
// would be the scheduler's time slice.
void LatencyThreads(benchmark::internal::Benchmark* b) {
  b->Threads(1)->Threads(2)->UseRealTime();
}

void BM_PairLatency_Groove(benchmark::State& state) {
  RunPushPopPair<GrooveContender<false>, SampledMeter>(state);
}
BENCHMARK(BM_PairLatency_Groove)->Apply(LatencyThreads);

void BM_PairLatency_MutexVector(benchmark::State& state) {
  RunPushPopPair<MutexVectorContender, SampledMeter>(state);
}
BENCHMARK(BM_PairLatency_MutexVector)->Apply(LatencyThreads);

}  // namespace
}  // namespace groove

BENCHMARK_MAIN();
