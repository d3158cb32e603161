// The server's shared request-path structures under concurrency (also run
// under ThreadSanitizer): AddVolume's request_id log and the add queue.
//
//   - Exactly one of many concurrent calls with the same new id runs it.
//   - Under random churn on one bucket (every id collides), no two calls
//     with one id ever run at once, and a replay returns that id's own
//     response, never another's from a reused record.
//   - Lock-freedom shown: a thread stopped inside Start, between reading
//     the bucket and publishing its id, keeps no other thread from
//     completing thousands of calls on the same bucket.
//   - The add queue loses no task and runs none twice, with producers
//     racing each other and Stop.
//   - The log's line budget: refusals counted while other threads take
//     them are each taken exactly once, and its total never goes back.
//   - The futex semaphore its workers sleep on loses no wake-up: every
//     permit released is taken, by sleeping and spinning takers alike, and
//     a task given to a pool of sleeping workers always runs.
//   (A lost wake-up shows as a hang: the test binary's CTest timeout.)

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "groove/server/futex_semaphore.h"
#include "groove/server/log.h"
#include "groove/server/request_log.h"
#include "groove/server/worker_pool.h"
#include "gtest/gtest.h"
#include "support/stall.h"

namespace groove::server {
namespace {

using groove::testing::Stall;

#if defined(__SANITIZE_THREAD__)
constexpr int kScale = 1;
#else
constexpr int kScale = 10;
#endif

v1::AddVolumeRequest Request(uint64_t id, uint64_t count = 1) {
  v1::AddVolumeRequest request;
  request.set_pool("main");
  request.set_count(count);
  request.set_request_id(absl::StrCat("00000000-0000-4000-8000-",
                                      absl::Hex(id, absl::kZeroPad12)));
  return request;
}

// SpinBarrier releases `parties` threads together (no sleeps: each spins on
// an atomic until the last one arrives).
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties) : parties_(parties) {}
  void ArriveAndWait() {
    const int generation = generation_.load();
    if (arrived_.fetch_add(1) + 1 == parties_) {
      arrived_.store(0);
      generation_.fetch_add(1);
      generation_.notify_all();
    } else {
      generation_.wait(generation);
    }
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

TEST(RequestLogConcurrencyTest, ConcurrentStartsOfANewIdRunItExactlyOnce) {
  constexpr int kThreads = 4;
  const int rounds = 200 * kScale;
  RequestLog log(4);
  SpinBarrier barrier(kThreads);
  std::atomic<int> runs{0}, in_progress{0}, replays{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < rounds; ++round) {
        barrier.ArriveAndWait();  // all start the same new id together
        const v1::AddVolumeRequest request = Request(round);
        RequestLog::Claim claim = log.Start(request);
        switch (claim.outcome) {
          case RequestLog::Outcome::kRun: {
            runs.fetch_add(1);
            v1::AddVolumeResponse response;
            response.add_volume_indices(round);
            log.Succeeded(claim.ticket, response);
            break;
          }
          case RequestLog::Outcome::kInProgress:
            in_progress.fetch_add(1);
            break;
          case RequestLog::Outcome::kReplay:
            EXPECT_EQ(claim.response.volume_indices(0),
                      static_cast<uint64_t>(round));
            replays.fetch_add(1);
            break;
          default:
            ADD_FAILURE() << "unexpected outcome "
                          << static_cast<int>(claim.outcome);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(runs.load(), rounds);
  EXPECT_EQ(runs.load() + in_progress.load() + replays.load(),
            rounds * kThreads);
}

TEST(RequestLogConcurrencyTest, ChurnOnOneBucketNeverRunsAnIdTwiceAtOnce) {
  constexpr int kThreads = 4;
  constexpr uint64_t kIds = 8;  // more ids than the bucket holds
  const int operations = 5'000 * kScale;
  RequestLog log(1);  // one bucket: every id collides
  std::atomic<int> running[kIds] = {};
  std::atomic<uint64_t> runs{0}, replays{0}, busy{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(1234 + t);
      for (int i = 0; i < operations; ++i) {
        const uint64_t id = random() % kIds;
        RequestLog::Claim claim = log.Start(Request(id));
        if (claim.outcome == RequestLog::Outcome::kRun) {
          runs.fetch_add(1);
          EXPECT_EQ(running[id].fetch_add(1), 0) << "id " << id << " twice";
          std::this_thread::yield();  // widen the window another run could hit
          const bool succeed = random() % 4 != 0;
          running[id].fetch_sub(1);
          if (succeed) {
            v1::AddVolumeResponse response;
            response.add_volume_indices(id);
            log.Succeeded(claim.ticket, response);
          } else {
            log.Failed(claim.ticket);
          }
        } else if (claim.outcome == RequestLog::Outcome::kReplay) {
          replays.fetch_add(1);
          ASSERT_EQ(claim.response.volume_indices_size(), 1);
          EXPECT_EQ(claim.response.volume_indices(0), id)
              << "a replay returned another id's response";
        } else if (claim.outcome == RequestLog::Outcome::kBusy) {
          busy.fetch_add(1);
        } else {
          EXPECT_EQ(claim.outcome, RequestLog::Outcome::kInProgress);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // The churn exercised every path, not only one.
  EXPECT_GT(runs.load(), 0u);
  EXPECT_GT(replays.load(), 0u);
  std::printf("runs=%llu replays=%llu busy=%llu\n",
              static_cast<unsigned long long>(runs.load()),
              static_cast<unsigned long long>(replays.load()),
              static_cast<unsigned long long>(busy.load()));
}

TEST(RequestLogConcurrencyTest, AThreadStoppedInsideStartBlocksNoOne) {
  RequestLog log(1);  // one bucket: the stopped thread's bucket is theirs
  Stall stall;
  log.set_test_hook(&Stall::Hook, &stall);
  RequestLog::Claim stopped_claim;
  std::thread stopped([&] { stopped_claim = log.Start(Request(1000)); });
  stall.WaitUntilStalled();  // it read the bucket and has not published

  // Two others: at most two ids are in progress at once, so the bucket
  // always has an entry to replace and none of them is ever kBusy.
  constexpr int kOthers = 2;
  const int calls_per_thread = 2'000 * kScale;
  std::atomic<int> completed{0};
  std::vector<std::thread> others;
  for (int t = 0; t < kOthers; ++t) {
    others.emplace_back([&, t] {
      for (int i = 0; i < calls_per_thread; ++i) {
        RequestLog::Claim claim = log.Start(Request(t * 1'000'000 + i));
        if (claim.outcome != RequestLog::Outcome::kRun) continue;
        log.Succeeded(claim.ticket, v1::AddVolumeResponse());
        completed.fetch_add(1);
      }
    });
  }
  for (std::thread& t : others) t.join();
  // Everyone else finished every call while it stayed stopped.
  EXPECT_EQ(completed.load(), kOthers * calls_per_thread);
  EXPECT_GT(stall.calls(), kOthers * calls_per_thread);

  stall.Resume();
  stopped.join();
  // Its CAS failed (the bucket moved on); it retried and published.
  EXPECT_EQ(stopped_claim.outcome, RequestLog::Outcome::kRun);
  log.Succeeded(stopped_claim.ticket, v1::AddVolumeResponse());
  EXPECT_EQ(log.Start(Request(1000)).outcome, RequestLog::Outcome::kReplay);
}

TEST(WorkerPoolConcurrencyTest, RacingProducersAndStopLoseNoTask) {
  constexpr int kProducers = 4;
  const int tasks_per_producer = 5'000 * kScale;
  std::atomic<int> accepted{0}, ran{0}, producers_done{0};
  WorkerPool pool("test", /*threads=*/2, /*max_queued=*/64);
  ASSERT_TRUE(pool.is_lock_free());
  SpinBarrier barrier(kProducers + 1);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&] {
      barrier.ArriveAndWait();
      for (int i = 0; i < tasks_per_producer; ++i) {
        if (pool.TrySchedule([&] { ran.fetch_add(1); })) accepted.fetch_add(1);
      }
      producers_done.fetch_add(1);
    });
  }
  barrier.ArriveAndWait();
  // Stop while the producers are still scheduling: every task it accepted
  // runs, exactly once; afterwards it accepts none. On a loaded machine
  // the workers may not run until the producers are done, so that only
  // max_queued (64) tasks are ever accepted: stop waiting then too, or
  // this loop never ends.
  while (accepted.load() < 100 && producers_done.load() < kProducers) {
    std::this_thread::yield();
  }
  pool.Stop();
  for (std::thread& t : producers) t.join();
  EXPECT_EQ(ran.load(), accepted.load());
  EXPECT_EQ(pool.queued(), 0u);
  EXPECT_FALSE(pool.TrySchedule([] {}));
}

// Two threads (the flusher and a Log, in the server) each count a refused
// line and take what is refused, at once, many times: the takes add up to
// the refusals, none taken twice, and a reader of the total (a scrape)
// never sees it go back. The rounds line the two up (a barrier) so that
// one's load of the count falls between the other's load and its update:
// a take that stored the total it loaded (an exchange, not the CAS up to
// it) reported 2-134 lines twice in each of 10 runs of 100,000 rounds on
// the machine it was written on.
TEST(LineBudgetConcurrencyTest, RacingTakersTakeEachRefusalOnce) {
  LineBudget budget(1);
  ASSERT_TRUE(budget.Admit(7));  // the second's one line: the rest refused
  constexpr int kRounds = 10000 * kScale;
  std::barrier<> both(2);
  std::atomic<uint64_t> taken{0};
  std::atomic<bool> total_went_back{false};
  auto run = [&] {
    uint64_t last_total = 0;
    for (int r = 0; r < kRounds; ++r) {
      both.arrive_and_wait();
      EXPECT_FALSE(budget.Admit(7));
      taken.fetch_add(budget.TakeSuppressed());
      const uint64_t total = budget.suppressed_total();
      if (total < last_total) total_went_back.store(true);
      last_total = total;
    }
  };
  std::thread other(run);
  run();
  other.join();
  EXPECT_EQ(budget.suppressed_total(), 2u * kRounds);
  EXPECT_EQ(taken.load() + budget.TakeSuppressed(), 2u * kRounds);
  EXPECT_FALSE(total_went_back.load());
}

TEST(FutexSemaphoreTest, EveryReleasedPermitIsTakenBySomeWaiter) {
  constexpr int kTakers = 4;
  constexpr int kGivers = 2;
  const int permits_per_giver = 20'000 * kScale;
  const int total = kGivers * permits_per_giver;
  FutexSemaphore permits;
  std::atomic<int> taken{0};
  std::vector<std::thread> takers;
  for (int t = 0; t < kTakers; ++t) {
    takers.emplace_back([&] {
      // Each taker takes until the total is reached; a permit per taker
      // more is released at the end to let them all leave.
      for (;;) {
        permits.Acquire();
        if (taken.fetch_add(1) >= total) return;
      }
    });
  }
  std::vector<std::thread> givers;
  for (int g = 0; g < kGivers; ++g) {
    givers.emplace_back([&, g] {
      // Singles and batches: Release(n) must wake up to n sleepers.
      for (int i = 0; i < permits_per_giver;) {
        const int n = (g == 0 || i + 3 > permits_per_giver) ? 1 : 3;
        permits.Release(n);
        i += n;
      }
    });
  }
  for (std::thread& t : givers) t.join();
  permits.Release(kTakers);
  for (std::thread& t : takers) t.join();
  EXPECT_EQ(taken.load(), total + kTakers);
  EXPECT_FALSE(permits.TryAcquire());
}

TEST(WorkerPoolConcurrencyTest, ATaskGivenToSleepingWorkersAlwaysRuns) {
  // One task at a time, each scheduled when the workers have nothing to
  // do (so they are asleep, or about to be): each must be woken for.
  WorkerPool pool("test", /*threads=*/3, /*max_queued=*/4);
  std::atomic<int> ran{0};
  const int tasks = 2'000 * kScale;
  for (int i = 0; i < tasks; ++i) {
    ASSERT_TRUE(pool.TrySchedule([&] { ran.fetch_add(1); }));
    while (ran.load() != i + 1) std::this_thread::yield();
  }
  pool.Stop();
  EXPECT_EQ(ran.load(), tasks);
}

}  // namespace
}  // namespace groove::server
