// groove-volumed under concurrent clients, against the real binary: adds
// held inside the backing (the --testonly_stall_add_fifo hook) must not
// hold up any other RPC, a remove does not wait for an add's allocation in
// the kernel, and a shutdown lets them finish.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "groove/v1/call_metadata.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/notification.h"
#include "support/server_process.h"
#include "support/stall_fifo.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace groove::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// AsyncCall is one call of VolumePoolService in flight (gRPC's callback
// client API): `Method` is the stub's async method it starts.
template <typename Request, typename Response,
          void (v1::VolumePoolService::Stub::async_interface::*Method)(
              grpc::ClientContext*, const Request*, Response*,
              std::function<void(grpc::Status)>)>
struct AsyncCall {
  grpc::ClientContext context;
  Request request;
  Response response;
  grpc::Status status;
  Notification done;  // not absl's: TSan must see it (support/notification.h)

  void Start(Stub& stub, absl::Duration timeout = absl::Seconds(60)) {
    SetDeadline(&context, timeout);
    (stub.async()->*Method)(&context, &request, &response,
                            [this](grpc::Status s) {
                              status = std::move(s);
                              done.Notify();
                            });
  }
};

using AsyncAdd =
    AsyncCall<v1::AddVolumeRequest, v1::AddVolumeResponse,
              &v1::VolumePoolService::Stub::async_interface::AddVolume>;
using AsyncRemove =
    AsyncCall<v1::RemoveVolumeRequest, v1::RemoveVolumeResponse,
              &v1::VolumePoolService::Stub::async_interface::RemoveVolume>;
using AsyncReclaim =
    AsyncCall<v1::ReclaimVolumeRequest, v1::ReclaimVolumeResponse,
              &v1::VolumePoolService::Stub::async_interface::ReclaimVolume>;
using AsyncInspect =
    AsyncCall<v1::InspectRequest, v1::InspectResponse,
              &v1::VolumePoolService::Stub::async_interface::Inspect>;

// WaitForAHealthWatchToOutlive returns once a health Watch sent now with
// a deadline 200 ms beyond `timeout` has seen that deadline pass (a Watch
// stays open until then). A call with deadline `timeout` that the server
// had before this began then has its deadline behind it on the server
// too, whatever gRPC's rounding of the timeout it sent: the condition the
// deadline tests wait on, not a sleep.
void WaitForAHealthWatchToOutlive(const ServerProcess& server,
                                  absl::Duration timeout) {
  auto health = grpc::health::v1::Health::NewStub(server.channel());
  grpc::ClientContext sentinel;
  SetDeadline(&sentinel, timeout + absl::Milliseconds(200));
  auto watch = health->Watch(&sentinel, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse watched;
  while (watch->Read(&watched)) {
  }
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

// HoldPastItsDeadline starts `call` with deadline `deadline`, waits until
// the stall hook holds it (the server logs `stall_event`) and until a
// sentinel health Watch has seen the deadline pass, then checks that its
// client got DEADLINE_EXCEEDED. The call is still held on the server: the
// test releases it.
template <typename Call>
void HoldPastItsDeadline(ServerProcess& server, Stub& stub, Call* call,
                         absl::string_view stall_event,
                         absl::Duration deadline) {
  call->Start(stub, deadline);
  ASSERT_TRUE(server.WaitForLog(stall_event)) << server.LogText();
  WaitForAHealthWatchToOutlive(server, deadline);
  ASSERT_TRUE(call->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(call->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

// ExpectUnanswered waits for the line `event` (add_unanswered,
// remove_unanswered, reclaim_unanswered) of a change whose deadline passed
// while it ran, checks what every such line says (warn, `pool`, `indices`,
// reason=deadline_exceeded) and returns it ("" if it never came).
std::string ExpectUnanswered(ServerProcess& server, absl::string_view event,
                             absl::string_view pool,
                             absl::string_view indices) {
  const std::optional<std::string> line =
      server.WaitForLog(absl::StrCat("event=", event));
  EXPECT_TRUE(line.has_value()) << server.LogText();
  if (!line.has_value()) return "";
  EXPECT_THAT(*line, ::testing::HasSubstr("level=warn"));
  EXPECT_EQ(LogValue(*line, "pool"), pool) << *line;
  EXPECT_EQ(LogValue(*line, "indices"), indices) << *line;
  EXPECT_EQ(LogValue(*line, "reason"), "deadline_exceeded") << *line;
  return *line;
}

// StartWithVerifyStall starts a server whose pool "v" has 8 empty volumes
// and whose walks of Inspect with verify wait for `fifo`.
std::unique_ptr<ServerProcess> StartWithVerifyStall(const TempDir& dir,
                                                    const StallFifo& fifo) {
  return ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=v,backing=normal,volume_size=4KiB,max_volumes=64,"
       "initial_volumes=8",
       "--testonly_stall_verify_fifo=" + fifo.path()});
}

// PoolArgs are the data directory and the two pools, "slow" and "fast",
// of the stall tests (and of the restarts that check what they left).
std::vector<std::string> PoolArgs(const TempDir& dir) {
  return {"--data-dir=" + dir.path(),
          "--pool=name=slow,backing=normal,volume_size=4KiB,max_volumes=64",
          "--pool=name=fast,backing=normal,volume_size=4KiB,max_volumes=64"};
}

// StallArgs adds to PoolArgs the stall hook on pool "slow" (its adds wait
// for `fifo`) and `add_workers` add workers per pool.
std::vector<std::string> StallArgs(const TempDir& dir, const StallFifo& fifo,
                                   int add_workers = 4) {
  std::vector<std::string> args = PoolArgs(dir);
  args.insert(args.end(),
              {"--testonly_stall_add_fifo=" + fifo.path(),
               "--testonly_stall_add_pools=slow",
               absl::StrCat("--add_workers_per_pool=", add_workers)});
  return args;
}

// StartWithPunchStall starts StallArgs's server whose pool "fast" punches
// holes only once `fifo` lets them (--testonly_stall_punch_pools).
std::unique_ptr<ServerProcess> StartWithPunchStall(const TempDir& dir,
                                                   const StallFifo& fifo) {
  std::vector<std::string> args = StallArgs(dir, fifo);
  args.push_back("--testonly_stall_punch_pools=fast");
  return ServerProcess::Start(args);
}

TEST(ServerConcurrencyTest, StalledAddsDoNotHoldUpOtherRpcs) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(StallArgs(dir, fifo));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  // Three adds to pool "slow", each held inside its allocation.
  constexpr int kStalled = 3;
  std::vector<std::unique_ptr<AsyncAdd>> stalled;
  for (int i = 0; i < kStalled; ++i) {
    auto add = std::make_unique<AsyncAdd>();
    add->request = AddRequest("slow", 1, absl::StrCat("stalled-", i));
    add->request.set_request_id(
        absl::StrCat("00000000-0000-4000-8000-00000000000", i));
    add->Start(*stub);
    stalled.push_back(std::move(add));
  }
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_add_wait", "pool=slow"}, kStalled))
      << server->LogText();

  // A retry of a stalled call while it runs: ABORTED at once.
  v1::AddVolumeResponse unused;
  EXPECT_EQ(Add(*stub, stalled[0]->request, &unused).error_code(),
            grpc::StatusCode::ABORTED);

  // Meanwhile other clients add, remove and inspect to completion.
  constexpr int kClients = 4;
  constexpr int kRounds = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto client = server->Stub();  // shares the channel
      auto check = [&](const grpc::Status& status, const char* what) {
        if (!status.ok()) {
          ++failures;
          ADD_FAILURE() << "client " << c << " " << what << ": "
                        << status.error_code() << " " << status.error_message();
        }
      };
      for (int r = 0; r < kRounds; ++r) {
        v1::AddVolumeResponse added;
        check(Add(*client, AddRequest("fast", 1, "busy"), &added), "add");
        v1::InspectRequest inspect;
        inspect.set_pool("fast");
        inspect.set_include_volumes(true);
        v1::InspectResponse inspected;
        check(Inspect(*client, inspect, &inspected), "inspect fast");
        v1::RemoveVolumeResponse removed;
        check(Remove(*client, "fast", 1, &removed), "remove");
        v1::ListPoolsResponse pools;
        check(ListPools(*client, &pools), "list pools");
        inspect.set_pool("slow");
        inspect.set_verify(r % 5 == 0);
        inspected.Clear();
        const grpc::Status slow = Inspect(*client, inspect, &inspected);
        // One verify per pool at a time: another client's may be running
        // (then there is no summary to look at).
        if (inspect.verify() &&
            slow.error_code() == grpc::StatusCode::ABORTED) {
          continue;
        }
        check(slow, "inspect slow");
        // The stalled adds have not added anything yet.
        if (inspected.summary().volumes_mapped() != 0) {
          ++failures;
          ADD_FAILURE() << "slow has " << inspected.summary().volumes_mapped()
                        << " volumes while its adds are stalled";
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  // Every round finished while the stalled adds were still held: a round
  // that waited on one would never have finished at all.
  for (const auto& add : stalled) {
    EXPECT_FALSE(add->done.HasBeenNotified())
        << "a stalled add finished before it was released";
  }
  const Snapshot fast = TakeSnapshot(*stub, "fast");
  EXPECT_EQ(fast.summary.counters().volumes_added(),
            uint64_t{kClients * kRounds});
  EXPECT_EQ(fast.summary.volumes_mapped(), 0u);

  // Release them: each completes, at distinct indices.
  fifo.Release(kStalled);
  std::vector<uint64_t> indices;
  for (const auto& add : stalled) {
    ASSERT_TRUE(add->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_TRUE(add->status.ok()) << add->status.error_message();
    ASSERT_EQ(add->response.volume_indices_size(), 1);
    indices.push_back(add->response.volume_indices(0));
  }
  EXPECT_THAT(indices, UnorderedElementsAre(0, 1, 2));
  const Snapshot slow = TakeSnapshot(*stub, "slow");
  EXPECT_THAT(Indices(slow), ElementsAre(0, 1, 2));
  EXPECT_EQ(slow.summary.volumes_empty(), 3u);

  // Now the retry gets the first call's response and adds nothing.
  v1::AddVolumeResponse replayed;
  ASSERT_TRUE(Add(*stub, stalled[0]->request, &replayed).ok());
  EXPECT_THAT(replayed.volume_indices(),
              ElementsAre(stalled[0]->response.volume_indices(0)));
  EXPECT_EQ(TakeSnapshot(*stub, "slow").summary.volumes_mapped(), 3u);
  EXPECT_EQ(server->Stop(), 0);
}

// /metrics shows each pool's add queue: the adds its workers run, those
// waiting for a worker, the queue's limit and the workers. One add of
// pool "slow" (one worker) is held inside its allocation, two more wait
// behind it; pool "fast" is idle. Once the held add is let go, all three
// run and the gauges fall back to 0.
TEST(ServerConcurrencyTest, MetricsShowEachPoolsAddQueue) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(StallArgs(dir, fifo, 1));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  std::vector<std::unique_ptr<AsyncAdd>> adds;
  for (int i = 0; i < 3; ++i) {
    adds.push_back(std::make_unique<AsyncAdd>());
    adds.back()->request = AddRequest("slow", 1, absl::StrCat("add-", i));
    adds.back()->Start(*stub);
    if (i == 0) {
      ASSERT_TRUE(server->WaitForLog("event=testonly_stall_add_wait"));
    }
  }
  // Scrape returns pool `pool`'s four add queue gauges, in the order of
  // `names`.
  const std::vector<std::string> names = {
      "groove_pool_adds_running", "groove_pool_adds_queued",
      "groove_pool_add_queue_limit", "groove_pool_add_workers"};
  const auto scrape = [&](const std::string& pool) {
    std::vector<std::string> values;
    absl::StatusOr<std::string> m =
        HttpGet(server->metrics_address(), "/metrics");
    EXPECT_TRUE(m.ok()) << m.status();
    for (const std::string& name : names) {
      values.push_back(
          m.ok() ? MetricValue(*m, absl::StrCat(name, "{pool=\"", pool, "\"}"))
                 : "");
    }
    return values;
  };
  // The two later adds reach the queue when their handlers run: scraped
  // until they show (each scrape one HTTP request, bounded).
  const std::vector<std::string> busy = {"1", "2", "256", "1"};
  std::vector<std::string> seen;
  for (const absl::Time give_up = absl::Now() + absl::Seconds(20);
       (seen = scrape("slow")) != busy && absl::Now() < give_up;) {
  }
  EXPECT_EQ(seen, busy);
  EXPECT_EQ(scrape("fast"), (std::vector<std::string>{"0", "0", "256", "1"}));

  fifo.Release(3);
  for (auto& add : adds) {
    ASSERT_TRUE(add->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_TRUE(add->status.ok()) << add->status.error_message();
  }
  // A worker counts its add done after it answered it: the gauges fall
  // to 0 within an instant of the last answer.
  const std::vector<std::string> idle = {"0", "0", "256", "1"};
  for (const absl::Time give_up = absl::Now() + absl::Seconds(20);
       (seen = scrape("slow")) != idle && absl::Now() < give_up;) {
  }
  EXPECT_EQ(seen, idle);
  EXPECT_EQ(server->Stop(), 0);
}

// An add the configuration refuses is answered at once, not queued behind
// a pool's slow adds: with the pool's one add worker held inside an
// allocation, an add beyond max_volumes, out of range or over a volume
// already there gets its own code (before the fix these waited in the
// queue until their deadline: DEADLINE_EXCEEDED). A replay of the add that
// made a volume still gets that add's response, not ALREADY_EXISTS.
TEST(ServerConcurrencyTest, AddsTheConfigRefusesDoNotWaitForAStalledAdd) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(StallArgs(dir, fifo, 1));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  // Volume 5, added (its allocation released) with a request id.
  AsyncAdd first;
  first.request = AddRequest("slow", 1, "first");
  first.request.set_first_index(5);
  first.request.set_request_id("00000000-0000-4000-8000-000000000005");
  first.Start(*stub);
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_add_wait", "pool=slow"}, 1))
      << server->LogText();
  fifo.Release(1);
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();

  // The one worker held inside the next add's allocation.
  AsyncAdd stalled;
  stalled.request = AddRequest("slow", 1, "stalled");
  stalled.Start(*stub);
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_add_wait", "pool=slow"}, 2))
      << server->LogText();

  struct Refused {
    v1::AddVolumeRequest request;
    grpc::StatusCode code;
    std::string message_part;
  };
  v1::AddVolumeRequest beyond = AddRequest("slow", 1);
  beyond.set_first_index(64);
  v1::AddVolumeRequest straddling = AddRequest("slow", 2);
  straddling.set_first_index(63);
  v1::AddVolumeRequest too_many = AddRequest("slow", 65);
  v1::AddVolumeRequest too_many_with_id = too_many;
  too_many_with_id.set_request_id("00000000-0000-4000-8000-000000000065");
  v1::AddVolumeRequest over_volume = AddRequest("slow", 2);
  over_volume.set_first_index(4);
  const Refused refused[] = {
      {beyond, grpc::StatusCode::OUT_OF_RANGE,
       "pool 'slow': first_index 64 is not below max_volumes 64"},
      {straddling, grpc::StatusCode::OUT_OF_RANGE,
       "pool 'slow': indices [63, 65) go beyond max_volumes 64"},
      {too_many, grpc::StatusCode::RESOURCE_EXHAUSTED,
       "pool 'slow' holds at most max_volumes 64 volumes, asked for 65"},
      {too_many_with_id, grpc::StatusCode::RESOURCE_EXHAUSTED,
       "pool 'slow' holds at most max_volumes 64 volumes, asked for 65"},
      {over_volume, grpc::StatusCode::ALREADY_EXISTS,
       "pool 'slow': index 5 already holds a volume"},
  };
  for (const Refused& r : refused) {
    v1::AddVolumeResponse unused;
    const grpc::Status status = Add(*stub, r.request, &unused);
    EXPECT_EQ(status.error_code(), r.code)
        << r.request.ShortDebugString() << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr(r.message_part));
  }
  v1::AddVolumeResponse replayed;
  const grpc::Status replay = Add(*stub, first.request, &replayed);
  ASSERT_TRUE(replay.ok()) << replay.error_message();
  EXPECT_THAT(replayed.volume_indices(), ElementsAre(5));
  EXPECT_FALSE(stalled.done.HasBeenNotified())
      << "the stalled add finished before it was released";

  fifo.Release(1);
  ASSERT_TRUE(stalled.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(stalled.status.ok()) << stalled.status.error_message();
  EXPECT_THAT(Indices(TakeSnapshot(*stub, "slow")), ElementsAre(0, 5));
  EXPECT_EQ(server->Stop(), 0);
}

// Inspect with verify walks the pool without a lock: held in the middle of
// its walk (the --testonly_stall_verify_fifo hook), it keeps no add,
// remove or inspect of its pool waiting (a verify that locked the pool
// would make them wait until released, and this test would hang). The
// walk they overtook is walked again. A second verify of the pool
// meanwhile fails at once with ABORTED (one per pool at a time, so
// verifies cannot take every gRPC thread); once the first ends, the next
// one runs.
TEST(ServerConcurrencyTest, AVerifyInProgressHoldsNobodyUpAndRunsAlone) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = StartWithVerifyStall(dir, fifo);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  AsyncInspect first;
  first.request.set_pool("v");
  first.request.set_verify(true);
  first.Start(*stub);
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_verify_wait", "pool=v"}, 1))
      << server->LogText();

  v1::InspectRequest verify;
  verify.set_pool("v");
  verify.set_verify(true);
  v1::InspectResponse unused;
  const grpc::Status second = Inspect(*stub, verify, &unused);
  EXPECT_EQ(second.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(second.error_message(),
              ::testing::HasSubstr("one at a time per pool"));

  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("v", 4, "during"), &added).ok());
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(*stub, "v", 2, &removed).ok());
  const Snapshot during = TakeSnapshot(*stub, "v");
  EXPECT_EQ(during.summary.volumes_mapped(), 10u);
  EXPECT_FALSE(during.summary.locked());
  EXPECT_FALSE(first.done.HasBeenNotified())
      << "the held verify finished before it was released";

  // The held walk saw the stack move under it: it is thrown away and the
  // pool walked again (held once more, so two bytes).
  fifo.Release(2);
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_TRUE(first.response.verify_result().ok())
      << first.response.verify_result().message();
  EXPECT_EQ(first.response.verify_result().empty_volumes_walked(), 10u);
  // Waited for, not counted at once: the line and the answer travel apart
  // (stderr through the test's reader thread, the answer through gRPC).
  EXPECT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_verify_wait", "pool=v"}, 2));
  EXPECT_EQ(server->LogCount({"event=testonly_stall_verify_wait", "pool=v"}),
            2u);

  // Its slot is free again: the next verify runs (the byte is ready).
  fifo.Release(1);
  v1::InspectResponse third;
  const grpc::Status s = Inspect(*stub, verify, &third);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(third.verify_result().ok());
  EXPECT_EQ(server->Stop(), 0);
}

// AllocatedBytes returns the memory a file on tmpfs holds (its blocks),
// which a fallocate in progress grows page by page.
uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// The kernel holds a tmpfs file's inode lock for the whole of a fallocate,
// and a 4 GiB allocation takes it for ~0.3 s (zeroing the pages). A
// RemoveVolume of the same pool used to punch right then, and so wait in
// the kernel, with the gRPC thread serving it, until the allocation ended.
// Now it returns while the allocation is in progress and leaves the punch
// to the add (StoreGate). The allocation is held in progress with the
// stall hook (just before the kernel's fallocate), so the test does not
// depend on which of the two finishes first; then the real 4 GiB
// fallocate runs, and the add punches the removed volume on its way out.
TEST(ServerConcurrencyTest, ARemoveDoesNotWaitForAnAllocationOfItsPool) {
  constexpr uint64_t kVolume = uint64_t{4} << 30;
  TempDir dir;  // on tmpfs: the store is DIR/big.volumes
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=big,backing=normal,volume_size=4GiB,max_volumes=2",
       "--testonly_stall_add_fifo=" + fifo.path()});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  const std::string store = dir.path() + "/big.volumes";
  AsyncAdd first;
  first.request = AddRequest("big", 1, "first");
  first.Start(*stub);
  fifo.Release(1);
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_EQ(AllocatedBytes(store), kVolume);

  AsyncAdd second;
  second.request = AddRequest("big", 1, "second");
  second.Start(*stub);
  ASSERT_TRUE(server->WaitForLogCount({"event=testonly_stall_add_wait"}, 2))
      << server->LogText();

  v1::RemoveVolumeResponse removed;
  const grpc::Status status = Remove(*stub, "big", 1, &removed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(AllocatedBytes(store), kVolume)
      << "the removed volume was punched under the allocation in progress";
  EXPECT_EQ(removed.summary().releasing_bytes(), kVolume);
  ASSERT_EQ(removed.volumes_size(), 1);
  EXPECT_EQ(removed.volumes(0).index(), first.response.volume_indices(0));
  EXPECT_EQ(removed.volumes(0).info(), "first");
  EXPECT_EQ(removed.summary().volumes_mapped(), 0u);

  // The add allocates its 4 GiB and punches the removed volume on its way
  // out: only its own volume is left in the store.
  fifo.Release(1);
  ASSERT_TRUE(second.done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_EQ(AllocatedBytes(store), kVolume);
  const Snapshot big = TakeSnapshot(*stub, "big");
  EXPECT_THAT(Indices(big), ElementsAre(second.response.volume_indices(0)));
  EXPECT_EQ(big.summary.releasing_bytes(), 0u);
  EXPECT_EQ(server->Stop(), 0);
}

// The memory a remove left to an allocation in progress is visible to
// operators until that allocation ends: Inspect's releasing_bytes and the
// groove_pool_releasing_bytes gauge. The allocation is held with the
// stall hook, which stalls it inside the store, where the kernel's would
// hold the inode lock.
TEST(ServerConcurrencyTest, MemoryARemoveLeftToAnAllocationIsShownUntilGiven) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(StallArgs(dir, fifo));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  AsyncAdd first;
  first.request = AddRequest("slow", 2, "first");
  first.Start(*stub);
  fifo.Release(1);
  ASSERT_TRUE(first.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();

  AsyncAdd held;
  held.request = AddRequest("slow", 1, "held");
  held.Start(*stub);
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_add_wait", "pool=slow"}, 2))
      << server->LogText();
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(*stub, "slow", 1, &removed).ok());
  EXPECT_EQ(removed.summary().volumes_mapped(), 1u);
  EXPECT_EQ(removed.summary().capacity_bytes(), 4096u);
  EXPECT_EQ(removed.summary().releasing_bytes(), 4096u);
  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(MetricValue(*scrape, R"(groove_pool_releasing_bytes{pool="slow"})"),
            "4096");
  EXPECT_EQ(MetricValue(*scrape, R"(groove_pool_releasing_bytes{pool="fast"})"),
            "0");

  fifo.Release(1);
  ASSERT_TRUE(held.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(held.status.ok()) << held.status.error_message();
  const Snapshot slow = TakeSnapshot(*stub, "slow");
  EXPECT_EQ(slow.summary.releasing_bytes(), 0u);
  EXPECT_EQ(slow.summary.volumes_mapped(), 2u);
  scrape = HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(MetricValue(*scrape, R"(groove_pool_releasing_bytes{pool="slow"})"),
            "0");
  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerConcurrencyTest, ShutdownDrainsAndLetsInFlightAddsFinish) {
  TempDir dir;
  StallFifo fifo(dir);
  std::vector<std::string> args = StallArgs(dir, fifo);
  // Far beyond WaitForExit's timeout below: a server that waited for the
  // deadline instead of for the last RPC would be killed there (-2).
  args.push_back("--shutdown_deadline=1h");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  AsyncAdd add;
  add.request = AddRequest("slow", 1, "in flight at shutdown");
  add.Start(*stub);
  ASSERT_TRUE(server->WaitForLog("event=testonly_stall_add_wait"));

  // Watch the overall health: SERVING now.
  auto health = grpc::health::v1::Health::NewStub(server->channel());
  grpc::ClientContext watch_context;
  SetDeadline(&watch_context, absl::Seconds(30));
  grpc::health::v1::HealthCheckRequest watch_request;
  auto watch = health->Watch(&watch_context, watch_request);
  grpc::health::v1::HealthCheckResponse health_status;
  ASSERT_TRUE(watch->Read(&health_status));
  EXPECT_EQ(health_status.status(),
            grpc::health::v1::HealthCheckResponse::SERVING);

  server->Signal(SIGTERM);
  // Health goes NOT_SERVING while the add is still in flight.
  ASSERT_TRUE(watch->Read(&health_status));
  EXPECT_EQ(health_status.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  // ... and the Watch stream ends, so it does not hold the drain up.
  EXPECT_FALSE(watch->Read(&health_status));
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  ASSERT_TRUE(server->WaitForLog("event=draining"));
  // New calls are refused. Once gRPC's own Shutdown has begun, which code
  // the client sees depends on a race inside gRPC 1.51: UNAVAILABLE when
  // the client has processed the server's GOAWAY before starting the call,
  // CANCELLED when the server receives the stream and rejects it (seen in
  // about 1 run in 8 on a loaded machine). Both mean "refused". With
  // --drain_grace the service answers UNAVAILABLE itself (next test).
  v1::ListPoolsResponse pools;
  const grpc::StatusCode refused = ListPools(*stub, &pools).error_code();
  EXPECT_TRUE(refused == grpc::StatusCode::UNAVAILABLE ||
              refused == grpc::StatusCode::CANCELLED)
      << refused;
  EXPECT_FALSE(add.done.HasBeenNotified());

  // The in-flight add finishes once released, and only then the server
  // exits, cleanly, without waiting for the hour-long deadline.
  fifo.Release(1);
  ASSERT_TRUE(add.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(add.status.ok()) << add.status.error_message();
  EXPECT_THAT(add.response.volume_indices(), ElementsAre(0));
  EXPECT_EQ(server->WaitForExit(absl::Seconds(60)), 0);
  EXPECT_TRUE(server->WaitForLog("event=stopped").has_value());

  // The volume it added is there after a restart.
  auto restarted = ServerProcess::Start(PoolArgs(dir));
  ASSERT_NE(restarted, nullptr);
  auto restarted_stub = restarted->Stub();
  const Snapshot slow = TakeSnapshot(*restarted_stub, "slow");
  EXPECT_THAT(Indices(slow), ElementsAre(0));
  ASSERT_EQ(slow.volumes.size(), 1u);
  EXPECT_EQ(slow.volumes[0].info(), "in flight at shutdown");
}

TEST(ServerConcurrencyTest, DrainGraceAnswersUnavailableUntilASecondSignal) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(), "--drain_grace=10m",
       "--pool=name=main,backing=normal,volume_size=4KiB,max_volumes=8"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("main", 2, "kept"), &added).ok());

  server->Signal(SIGTERM);
  ASSERT_TRUE(server->WaitForLog("event=drain_grace"));
  // During the grace the service itself refuses, with UNAVAILABLE (never
  // gRPC's CANCELLED race), and says why; the pool is not touched.
  v1::ListPoolsResponse pools;
  grpc::Status refused = ListPools(*stub, &pools);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), ::testing::HasSubstr("shutting down"));
  v1::AddVolumeResponse not_added;
  EXPECT_EQ(Add(*stub, AddRequest("main", 1, "late"), &not_added).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // Health answers NOT_SERVING, so balancers stop sending.
  auto health = grpc::health::v1::Health::NewStub(server->channel());
  grpc::ClientContext context;
  SetDeadline(&context, kRpcTimeout);
  grpc::health::v1::HealthCheckResponse status;
  ASSERT_TRUE(health->Check(&context, {}, &status).ok());
  EXPECT_EQ(status.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  // A second signal cuts the 10-minute grace short.
  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitForExit(), 0);
  EXPECT_TRUE(server->WaitForLog("event=drain_grace_cut_short").has_value());

  auto restarted = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=main,backing=normal,volume_size=4KiB,max_volumes=8"});
  ASSERT_NE(restarted, nullptr);
  auto restarted_stub = restarted->Stub();
  EXPECT_THAT(Indices(TakeSnapshot(*restarted_stub, "main")),
              ElementsAre(0, 1));
}

// A stop signal while start-up adds initial volumes (on hugepages that can
// take minutes) is logged at once, with the phase, each signal on its own
// line; the add already under way (held inside its allocation by the
// stall hook, as a slow one in the kernel would be) completes, start-up
// stops at the next safe point (before the second pool), nothing is
// bound, and the server exits 0 (docs/SERVER.md §5). The next start finds
// the completed add's volumes.
TEST(ServerConcurrencyTest, StopSignalDuringStartUpStopsBeforeServing) {
  TempDir dir;
  StallFifo fifo(dir);
  const std::vector<std::string> pools = {
      "--data-dir=" + dir.path(),
      "--pool=name=first,backing=normal,volume_size=4KiB,max_volumes=8,"
      "initial_volumes=2",
      "--pool=name=second,backing=normal,volume_size=4KiB,max_volumes=8,"
      "initial_volumes=2"};
  std::vector<std::string> args = pools;
  args.push_back("--testonly_stall_add_fifo=" + fifo.path());
  auto server = ServerProcess::Launch(args);
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_add_wait", "pool=first"}, 1))
      << server->LogText();

  server->Signal(SIGTERM);
  EXPECT_TRUE(server->WaitForLog("event=signal signal=SIGTERM phase=starting"))
      << server->LogText();
  server->Signal(SIGINT);
  EXPECT_TRUE(server->WaitForLog("event=signal signal=SIGINT phase=starting"))
      << server->LogText();
  // Both seen while the add was still held.
  EXPECT_EQ(server->LogCount({"event=testonly_stall_add_released"}), 0u);

  fifo.Release(1);
  EXPECT_EQ(server->WaitForExit(), 0) << server->LogText();
  EXPECT_EQ(
      server->LogCount({"event=testonly_stall_add_released", "pool=first"}),
      1u);
  EXPECT_EQ(server->LogCount({"event=testonly_stall_add_wait"}), 1u)
      << server->LogText();
  EXPECT_EQ(server->LogCount({"pool=second"}), 0u) << server->LogText();
  EXPECT_EQ(server->LogCount({"event=stopped", "phase=starting"}), 1u)
      << server->LogText();
  EXPECT_EQ(server->LogCount({"event=listening"}), 0u) << server->LogText();

  auto restarted = ServerProcess::Start(pools);
  ASSERT_NE(restarted, nullptr);
  EXPECT_EQ(restarted->LogCount({"event=initial_volumes", "pool=first",
                                 "added=0", "already_there=2"}),
            1u)
      << restarted->LogText();
  EXPECT_EQ(
      restarted->LogCount({"event=initial_volumes", "pool=second", "added=2"}),
      1u)
      << restarted->LogText();
  EXPECT_EQ(restarted->Stop(), 0);
}

// An add that waits in its pool's add queue until its deadline passes is
// never started (the pool is not touched) and is answered, and counted,
// DEADLINE_EXCEEDED, while one whose client cancelled it there is
// CANCELLED, each with a message saying which: an operator must tell
// clients whose deadlines are too short for the queue (raise the deadline
// or --add_workers_per_pool) from clients that give up. The pool's one
// add worker is held inside an allocation (the stall hook) while an add
// with a short deadline and a cancelled add queue behind it. A sentinel
// call with a longer deadline (a health Watch, which ends only at its
// deadline) is sent after the server has the first add (a ListPools on
// the same connection answered in between): once its client has seen
// that deadline pass, the first add's deadline has passed on the server
// too, and the test releases the worker.
TEST(ServerConcurrencyTest, AnAddQueuedPastItsDeadlineIsDeadlineExceeded) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(StallArgs(dir, fifo, 1));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  AsyncAdd held;
  held.request = AddRequest("slow", 1, "held");
  held.Start(*stub);
  ASSERT_TRUE(server->WaitForLog("event=testonly_stall_add_wait"));

  // Queued behind it: the add whose deadline passes, ...
  constexpr absl::Duration kShort = absl::Milliseconds(400);
  AsyncAdd expired;
  expired.request = AddRequest("slow", 1, "expired");
  expired.request.set_request_id("00000000-0000-4000-8000-000000000001");
  expired.Start(*stub, kShort);
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());  // the server has `expired`
  // ... one its client cancels ...
  AsyncAdd cancelled;
  cancelled.request = AddRequest("slow", 1, "cancelled");
  cancelled.Start(*stub);
  ASSERT_TRUE(ListPools(*stub, &pools).ok());  // the server has `cancelled`
  cancelled.context.TryCancel();
  WaitForAHealthWatchToOutlive(*server, kShort);
  for (AsyncAdd* add : {&expired, &cancelled}) {
    ASSERT_TRUE(add->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }
  EXPECT_EQ(expired.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(cancelled.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_FALSE(held.done.HasBeenNotified());

  fifo.Release(1);
  ASSERT_TRUE(held.done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(held.status.ok()) << held.status.error_message();
  // The worker takes the two queued adds next, and starts neither.
  ASSERT_TRUE(
      server->WaitForLogCount({"event=rpc_error", "method=AddVolume"}, 2))
      << server->LogText();
  EXPECT_EQ(server->LogCount({"event=rpc_error", "method=AddVolume",
                              "code=DEADLINE_EXCEEDED",
                              "its deadline passed before the server "
                              "started it (it arrived with ",
                              " in the add queue behind the pool's other adds "
                              "(add workers: 1, --add_workers_per_pool)",
                              "nothing was changed"}),
            1u)
      << server->LogText();
  EXPECT_EQ(
      server->LogCount({"event=rpc_error", "method=AddVolume", "code=CANCELLED",
                        "the client cancelled the call (or its connection "
                        "closed) before the server started it"}),
      1u)
      << server->LogText();
  EXPECT_EQ(server->LogCount({"event=testonly_stall_add_wait"}), 1u)
      << server->LogText();
  const Snapshot slow = TakeSnapshot(*stub, "slow");
  ASSERT_EQ(slow.volumes.size(), 1u) << slow.DebugString();
  EXPECT_EQ(slow.volumes[0].info(), "held");
  EXPECT_EQ(slow.summary.counters().volumes_added(), 1u);

  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(
      MetricValue(
          *scrape,
          R"(groove_pool_errors_total{code="DEADLINE_EXCEEDED",op="add",pool="slow"})"),
      "1");
  EXPECT_EQ(
      MetricValue(
          *scrape,
          R"(groove_pool_errors_total{code="CANCELLED",op="add",pool="slow"})"),
      "1");

  // The expired add's request_id was forgotten: sent again, it runs.
  v1::AddVolumeResponse again;
  fifo.Release(1);
  ASSERT_TRUE(Add(*stub, expired.request, &again).ok());
  EXPECT_EQ(server->LogCount({"event=add_replayed"}), 0u);
  EXPECT_EQ(TakeSnapshot(*stub, "slow").summary.volumes_mapped(), 2u);
  EXPECT_EQ(server->Stop(), 0);
}

// An add whose deadline passes while it is inside the kernel runs to its
// end (the proto says so) and its volumes are the pool's, but its answer
// reaches nobody: the server says so, at warn, naming the volumes, why,
// and the request_id that learns them, so that an operator can match a
// client's DEADLINE_EXCEEDED to the add it made (the routine `add` line
// alone reads as answered), and /metrics counts it as its client saw it.
// The add is held inside its allocation by the
// stall hook until a sentinel health Watch, sent after the add started
// and with a longer deadline, has seen its own deadline pass.
TEST(ServerConcurrencyTest, AnAddThatOutlivesItsDeadlineIsLoggedUnanswered) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(StallArgs(dir, fifo));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  constexpr absl::Duration kDeadline = absl::Seconds(1);
  constexpr char kRequestId[] = "00000000-0000-4000-8000-000000000007";
  AsyncAdd add;
  add.request = AddRequest("slow", 2, "outlived");
  add.request.set_request_id(kRequestId);
  ASSERT_NO_FATAL_FAILURE(HoldPastItsDeadline(
      *server, *stub, &add, "event=testonly_stall_add_wait", kDeadline));

  fifo.Release(1);
  const std::string line =
      ExpectUnanswered(*server, "add_unanswered", "slow", "0,1");
  EXPECT_EQ(LogValue(line, "request_id"), kRequestId) << line;
  // Completed, whole: both volumes are the pool's, and the id learns them.
  EXPECT_THAT(Indices(TakeSnapshot(*stub, "slow")), ElementsAre(0, 1));
  v1::AddVolumeResponse learned;
  ASSERT_TRUE(Add(*stub, add.request, &learned).ok());
  EXPECT_THAT(learned.volume_indices(), ElementsAre(0, 1));
  // Counted as its client saw it (an error-rate alert must not read it as
  // served); the replay that learned it is the one OK.
  EXPECT_EQ(HandledNow(*server, "AddVolume", "DEADLINE_EXCEEDED"), "1");
  EXPECT_EQ(HandledNow(*server, "AddVolume", "OK"), "1");
  EXPECT_EQ(server->Stop(), 0);
}

// A remove whose deadline passes while it punches its volume's hole runs
// to its end (the volume is gone from the pool), but its answer, with the
// volume's info, reaches nobody: the server says so at warn, naming the
// volume, as for adds, and counts the call as its client saw it. The
// remove is held inside its punch by the stall hook
// (--testonly_stall_punch_pools) until a sentinel health Watch has seen
// the remove's deadline pass.
TEST(ServerConcurrencyTest, ARemoveThatOutlivesItsDeadlineIsLoggedUnanswered) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = StartWithPunchStall(dir, fifo);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("fast", 2, "kept"), &added).ok());

  constexpr absl::Duration kDeadline = absl::Seconds(1);
  AsyncRemove remove;
  remove.request.set_pool("fast");
  remove.request.set_count(1);
  ASSERT_NO_FATAL_FAILURE(HoldPastItsDeadline(
      *server, *stub, &remove, "event=testonly_stall_punch_wait", kDeadline));

  fifo.Release(1);
  // A batch's first is on top.
  const std::string line =
      ExpectUnanswered(*server, "remove_unanswered", "fast", "0");
  EXPECT_EQ(LogValue(line, "count"), "1") << line;
  EXPECT_THAT(line, ::testing::Not(::testing::HasSubstr("request_id=")));
  // Removed all the same: only volume 1 is left.
  EXPECT_THAT(Indices(TakeSnapshot(*stub, "fast")), ElementsAre(1));
  EXPECT_EQ(HandledNow(*server, "RemoveVolume", "DEADLINE_EXCEEDED"), "1");
  EXPECT_EQ(HandledNow(*server, "RemoveVolume", "OK"), "0");
  EXPECT_EQ(server->Stop(), 0);
}

// A reclaim whose deadline passes while it punches the volume's hole runs
// to its end (the quarantined volume leaves the pool), but its answer
// reaches nobody: logged and counted as a remove's is (reclaim_unanswered,
// besides its own event=reclaim line).
TEST(ServerConcurrencyTest, AReclaimThatOutlivesItsDeadlineIsLoggedUnanswered) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = StartWithPunchStall(dir, fifo);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("fast", 3, "kept"), &added).ok());
  CorruptMagic(dir.path(), "fast", 1);
  // Pops volume 0 (put back) and quarantines volume 1; nothing is punched.
  v1::RemoveVolumeResponse removed;
  ASSERT_EQ(Remove(*stub, "fast", 3, &removed).error_code(),
            grpc::StatusCode::DATA_LOSS);
  ASSERT_EQ(TakeSnapshot(*stub, "fast").summary.volumes_in_quarantine(), 1u);

  constexpr absl::Duration kDeadline = absl::Seconds(1);
  AsyncReclaim reclaim;
  reclaim.request.set_pool("fast");
  reclaim.request.set_index(1);
  ASSERT_NO_FATAL_FAILURE(HoldPastItsDeadline(
      *server, *stub, &reclaim, "event=testonly_stall_punch_wait", kDeadline));

  fifo.Release(1);
  ExpectUnanswered(*server, "reclaim_unanswered", "fast", "1");
  // Reclaimed all the same.
  const Snapshot after = TakeSnapshot(*stub, "fast");
  EXPECT_THAT(Indices(after), ElementsAre(0, 2));
  EXPECT_EQ(after.summary.volumes_in_quarantine(), 0u);
  EXPECT_EQ(HandledNow(*server, "ReclaimVolume", "DEADLINE_EXCEEDED"), "1");
  EXPECT_EQ(HandledNow(*server, "ReclaimVolume", "OK"), "0");
  EXPECT_EQ(server->Stop(), 0);
}

// An Inspect with verify whose deadline passes while it walks the pool's
// stack stops there (a walk of a large pool takes seconds on a gRPC
// thread) instead of walking on for an answer nobody reads: the server
// answers and counts it DEADLINE_EXCEEDED, saying what the deadline left
// it and that nothing wrong was found, and the pool's verify slot is free
// again. The walk is held by the stall hook until a sentinel health Watch
// has seen the deadline pass.
TEST(ServerConcurrencyTest, AVerifyWhoseDeadlinePassesStopsItsWalk) {
  TempDir dir;
  StallFifo fifo(dir);
  auto server = StartWithVerifyStall(dir, fifo);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  constexpr absl::Duration kDeadline = absl::Seconds(1);
  AsyncInspect late;
  late.request.set_pool("v");
  late.request.set_verify(true);
  ASSERT_NO_FATAL_FAILURE(HoldPastItsDeadline(
      *server, *stub, &late, "event=testonly_stall_verify_wait", kDeadline));

  fifo.Release(1);
  const std::optional<std::string> line = server->WaitForLog(
      "its deadline passed while the server walked the pool's stack");
  ASSERT_TRUE(line.has_value()) << server->LogText();
  EXPECT_EQ(LogValue(*line, "event"), "rpc_error") << *line;
  EXPECT_EQ(LogValue(*line, "method"), "Inspect") << *line;
  EXPECT_EQ(LogValue(*line, "code"), "DEADLINE_EXCEEDED") << *line;
  EXPECT_THAT(*line, ::testing::HasSubstr("it arrived with "));
  EXPECT_THAT(*line, ::testing::HasSubstr("nothing wrong was found"));
  EXPECT_EQ(HandledNow(*server, "Inspect", "DEADLINE_EXCEEDED"), "1");
  EXPECT_EQ(HandledNow(*server, "Inspect", "OK"), "0");

  // Its slot is free: the next verify runs to the end (the byte is ready).
  fifo.Release(1);
  v1::InspectRequest verify;
  verify.set_pool("v");
  verify.set_verify(true);
  v1::InspectResponse next;
  const grpc::Status s = Inspect(*stub, verify, &next);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(next.verify_result().ok()) << next.verify_result().message();
  EXPECT_EQ(next.verify_result().empty_volumes_walked(), 8u);
  EXPECT_EQ(server->Stop(), 0);
}

// An add held inside the backing past the shutdown deadline: the server
// releases it itself at the deadline (the stall hook stands for an
// allocation slow in the kernel) and exits 0. The add had started, so it
// runs to the end and the server answers it OK (docs/SERVER.md §5, step
// 4): nothing on the server's side can fail it (RunAdd's CANCELLED and
// UNAVAILABLE are for adds that have not started). But gRPC cancels the
// call at the same deadline, racing the release: the client sees OK, or
// gRPC's own CANCELLED or UNAVAILABLE, even though the volume was added.
// Whatever the client saw, the volume is in the pool after a restart, and
// the pool verifies.
TEST(ServerConcurrencyTest, ShutdownDeadlineReleasesStuckAdds) {
  TempDir dir;
  StallFifo fifo(dir);
  std::vector<std::string> args = StallArgs(dir, fifo);
  args.push_back("--shutdown_deadline=1s");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  AsyncAdd add;
  add.request = AddRequest("slow", 1, "stuck");
  add.Start(*stub);
  ASSERT_TRUE(server->WaitForLog("event=testonly_stall_add_wait"));
  // Nobody releases the add: the deadline does, and the server exits.
  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitForExit(absl::Seconds(20)), 0);
  ASSERT_TRUE(add.done.WaitForNotificationWithTimeout(absl::Seconds(20)));

  const grpc::StatusCode code = add.status.error_code();
  EXPECT_TRUE(code == grpc::StatusCode::OK ||
              code == grpc::StatusCode::CANCELLED ||
              code == grpc::StatusCode::UNAVAILABLE)
      << code << ": " << add.status.error_message();
  // A failure the client saw is gRPC's cancellation, not the server's
  // answer: the server completed the add and answered no AddVolume with
  // an error (each error it answers is an rpc_error line, with its
  // "add volumes to pool" message).
  EXPECT_THAT(add.status.error_message(),
              ::testing::Not(::testing::HasSubstr("add volumes to pool")));
  EXPECT_EQ(server->LogCount({"event=add ", "pool=slow", "count=1"}), 1u)
      << server->LogText();
  EXPECT_EQ(server->LogCount({"event=rpc_error", "method=AddVolume"}), 0u)
      << server->LogText();
  EXPECT_EQ(
      server->LogCount({"event=pool_closed", "pool=slow", "volumes_mapped=1 "}),
      1u)
      << server->LogText();

  // After a restart the volume is there, whatever the client saw; the
  // indices an OK reply named are the pool's.
  auto restarted = ServerProcess::Start(PoolArgs(dir));
  ASSERT_NE(restarted, nullptr);
  auto restarted_stub = restarted->Stub();
  const Snapshot pool = TakeSnapshot(*restarted_stub, "slow");
  EXPECT_EQ(pool.summary.volumes_mapped(), 1u) << pool.DebugString();
  ASSERT_EQ(pool.volumes.size(), 1u) << pool.DebugString();
  EXPECT_EQ(pool.volumes[0].info(), "stuck");
  if (add.status.ok()) {
    EXPECT_THAT(add.response.volume_indices(),
                ElementsAre(pool.volumes[0].index()));
  }
  v1::InspectRequest verify;
  verify.set_pool("slow");
  verify.set_verify(true);
  v1::InspectResponse verified;
  const grpc::Status verify_status =
      Inspect(*restarted_stub, verify, &verified);
  ASSERT_TRUE(verify_status.ok()) << verify_status.error_message();
  EXPECT_TRUE(verified.verify_result().ok())
      << verified.verify_result().message();
  EXPECT_EQ(verified.verify_result().empty_volumes_walked(), 1u);
}

// At the shutdown deadline gRPC cancels the calls left, but marks them
// cancelled asynchronously: a worker that took a queued add from its queue
// right after the deadline used to see a live call, run the add and answer
// OK (62 of 256 queued adds once did), each add of hugepages taking
// seconds past the deadline. Four adds are held in the backing (every
// worker busy) and the queue is filled behind them; nobody releases them,
// so the deadline does (the stall hook lets go of them then) and the
// workers go on to the queue. Only the four that had started may add
// anything.
TEST(ServerConcurrencyTest, ShutdownDeadlineStopsQueuedAddsFromStarting) {
  constexpr int kWorkers = 4;
  constexpr int kQueueLimit = 256;  // docs/SERVER.md §2
  constexpr int kRefused = 8;       // sent beyond the queue: the sync point
  TempDir dir;
  StallFifo fifo(dir);
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=deadline,backing=normal,volume_size=4KiB,"
       "max_volumes=1024",
       "--testonly_stall_add_fifo=" + fifo.path(),
       absl::StrCat("--add_workers_per_pool=", kWorkers),
       "--shutdown_deadline=2s",
       // Every add on the one connection in flight at once.
       "--max_concurrent_streams=1000"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  std::vector<std::unique_ptr<AsyncAdd>> started;
  for (int i = 0; i < kWorkers; ++i) {
    auto add = std::make_unique<AsyncAdd>();
    add->request = AddRequest("deadline", 1, absl::StrCat("started-", i));
    add->Start(*stub);
    started.push_back(std::move(add));
  }
  ASSERT_TRUE(server->WaitForLogCount(
      {"event=testonly_stall_add_wait", "pool=deadline"}, kWorkers))
      << server->LogText();

  // The queue fills; the calls beyond it are refused at once. Once
  // kRefused have been, every other call is in the queue (the workers are
  // all held, so nothing leaves it).
  std::atomic<int> finished_early{0};
  Notification all_refused;
  struct QueuedAdd {
    grpc::ClientContext context;
    v1::AddVolumeRequest request;
    v1::AddVolumeResponse response;
    grpc::Status status;
    Notification done;
  };
  std::vector<std::unique_ptr<QueuedAdd>> queued;
  for (int i = 0; i < kQueueLimit + kRefused; ++i) {
    auto add = std::make_unique<QueuedAdd>();
    add->request = AddRequest("deadline", 1, absl::StrCat("queued-", i));
    add->request.set_request_id(
        absl::StrFormat("00000000-0000-4000-8000-%012d", i));
    SetDeadline(&add->context, absl::Seconds(60));
    QueuedAdd* raw = add.get();
    stub->async()->AddVolume(
        &raw->context, &raw->request, &raw->response,
        [raw, &finished_early, &all_refused](grpc::Status s) {
          raw->status = std::move(s);
          const bool refused =
              raw->status.error_code() == grpc::StatusCode::UNAVAILABLE;
          // done first: once all_refused is notified, every refused call
          // shows as done (the other order let the test count 7 of 8).
          raw->done.Notify();
          if (refused && ++finished_early == kRefused) all_refused.Notify();
        });
    queued.push_back(std::move(add));
  }
  ASSERT_TRUE(all_refused.WaitForNotificationWithTimeout(absl::Seconds(60)));
  int refused_full = 0;
  for (const auto& add : queued) {
    if (add->done.HasBeenNotified()) {
      ++refused_full;
      EXPECT_EQ(add->status.error_code(), grpc::StatusCode::UNAVAILABLE);
      EXPECT_THAT(add->status.error_message(),
                  ::testing::HasSubstr(absl::StrCat(
                      "add volumes to pool 'deadline': its add queue is full (",
                      kQueueLimit, " AddVolume calls wait for its ", kWorkers,
                      " add workers")));
      // Refused before any change: marked so (groove/v1/call_metadata.h).
      const auto& trailers = add->context.GetServerTrailingMetadata();
      const auto marker = trailers.find(v1::kNotAppliedKey);
      ASSERT_NE(marker, trailers.end());
      EXPECT_EQ(marker->second, v1::kNotAppliedValue);
    }
  }
  EXPECT_EQ(refused_full, kRefused);

  server->Signal(SIGTERM);
  EXPECT_EQ(server->WaitForExit(), 0) << server->LogText();

  // No add that was still queued at the deadline succeeded...
  std::set<std::string> ok_info;
  for (const auto& add : queued) {
    ASSERT_TRUE(add->done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    EXPECT_FALSE(add->status.ok())
        << add->request.info() << " was queued at the deadline and added "
        << add->response.volume_indices_size() << " volume(s)";
    // The server's UNAVAILABLE (StopAddsAt), or gRPC's cancellation, which
    // the client usually sees first (docs/SERVER.md §5, step 4).
    const grpc::StatusCode code = add->status.error_code();
    EXPECT_TRUE(code == grpc::StatusCode::OK ||  // reported above
                code == grpc::StatusCode::UNAVAILABLE ||
                code == grpc::StatusCode::CANCELLED)
        << add->request.info() << ": " << code << " "
        << add->status.error_message();
    if (add->status.ok()) ok_info.insert(add->request.info());
  }
  // ... while the started ones completed (their clients may have seen
  // gRPC's cancellation first).
  std::set<std::string> started_info;
  for (const auto& add : started) {
    ASSERT_TRUE(add->done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    started_info.insert(add->request.info());
    if (add->status.ok()) ok_info.insert(add->request.info());
  }

  // After a restart the pool holds the started adds' volumes and nothing
  // else: every OK add among them, no queued one.
  auto restarted = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=deadline,backing=normal,volume_size=4KiB,"
       "max_volumes=1024"});
  ASSERT_NE(restarted, nullptr);
  auto restarted_stub = restarted->Stub();
  const Snapshot pool = TakeSnapshot(*restarted_stub, "deadline");
  std::set<std::string> in_pool;
  for (const v1::Volume& v : pool.volumes) in_pool.insert(v.info());
  EXPECT_EQ(in_pool, started_info);
  for (const std::string& info : ok_info) {
    EXPECT_TRUE(in_pool.contains(info)) << info << " answered OK";
  }
  EXPECT_EQ(pool.summary.volumes_mapped(), uint64_t{kWorkers});
}

}  // namespace
}  // namespace groove::testing
