// client_test: groove::VolumePoolClient against the real groove-volumed,
// stopped and restarted mid-test on the same unix socket and data directory
// (retries, deadlines, idempotent adds), or killed and restarted behind a
// proxy that cuts the client's connection (keyed adds whose answer was
// lost), or behind a proxy that holds back the server's answers and then
// cuts (removes and reclaims whose answer was lost); the data-plane example
// beside a server that adds and removes; the Python example. No sleeps: the
// tests wait on the client's retry events, on the server's log, on health
// and on process exits.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "groove/client/volume_pool_client.h"
#include "groove/v1/call_metadata.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/cut_proxy.h"
#include "support/fake_server.h"
#include "support/notification.h"
#include "support/server_process.h"
#include "support/stall_fifo.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace groove::testing {
namespace {

using ::testing::AnyOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

constexpr char kPool[] =
    "--pool=name=a,backing=normal,volume_size=4KiB,"
    "max_volumes=64";

// Retries counts the client's retry events and lets a test wait for them.
// std::mutex, not absl::Mutex: ThreadSanitizer must see the lock (Debian's
// Abseil is not instrumented; support/notification.h).
class Retries {
 public:
  void Record(const RetryEvent& event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(event);
    cv_.notify_all();
  }
  // WaitFor waits until at least `n` retries happened.
  bool WaitFor(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return events_.size() >= n; });
  }
  std::vector<RetryEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;  // signalled on each event
  std::vector<RetryEvent> events_;  // guarded by mu_
};

// PatientClient is a client of `address` for the stall tests: it retries
// every 20-100 ms, up to 1000 attempts within 60 s, recording each retry.
absl::StatusOr<std::unique_ptr<VolumePoolClient>> PatientClient(
    const std::string& address, Retries* retries) {
  ClientOptions options;
  options.address = address;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(100);
  options.max_attempts = 1000;
  options.timeout = absl::Seconds(60);
  options.on_retry = [retries](const RetryEvent& e) { retries->Record(e); };
  return VolumePoolClient::Create(options);
}

// ClientStallTest's server parks adds or verifies on a FIFO until the
// test releases them (StallFifo); its client is patient (PatientClient).
class ClientStallTest : public ::testing::Test {
 protected:
  // Start starts the server, with `stall_flag`
  // (--testonly_stall_add_fifo or --testonly_stall_verify_fifo) naming
  // fifo_, and client_.
  void Start(const std::string& stall_flag) {
    server_ = ServerProcess::Start(
        {"--data-dir=" + dir_.path(), kPool, stall_flag + "=" + fifo_.path()});
    ASSERT_NE(server_, nullptr);
    auto client = PatientClient(server_->grpc_address(), &retries_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  TempDir dir_;
  StallFifo fifo_{dir_};
  std::unique_ptr<ServerProcess> server_;
  Retries retries_;
  std::unique_ptr<VolumePoolClient> client_;
};

v1::AddVolumeRequest AddOf(uint64_t count) {
  v1::AddVolumeRequest request;
  request.set_pool("a");
  request.set_count(count);
  return request;
}

// ClientCutOffTest's client reaches the server through a CutProxy, so that
// a test can lose a change's answer after the server received it: an
// add's, which its server parks on a FIFO (StallFifo) until the test
// releases it, or a remove's or a reclaim's, which no hook parks, by
// holding the proxy's answers (LoseTheAnswerOf). The server can be killed
// and restarted on the same data directory behind the proxy. The proxy is
// cut before a server is killed and resumed towards the next one, so that
// no retry can reach whatever binds a dead server's port.
class ClientCutOffTest : public ::testing::Test {
 protected:
  // Start starts the server (again, after KillAndRestart's kill), parking adds
  // when `stalled`, and on the first start the proxy and the client.
  void Start(bool stalled) {
    std::vector<std::string> args = {"--data-dir=" + dir_.path(), kPool};
    if (stalled) args.push_back("--testonly_stall_add_fifo=" + fifo_.path());
    server_ = ServerProcess::Start(args);
    ASSERT_NE(server_, nullptr);
    if (proxy_ == nullptr) {
      proxy_ = std::make_unique<CutProxy>(server_->grpc_address());
      ASSERT_NE(proxy_->address(), "");
      auto client = PatientClient(proxy_->address(), &retries_);
      ASSERT_TRUE(client.ok()) << client.status();
      client_ = std::move(*client);
    }
  }

  // KillAndRestart kills the server, starts it again (without the stall)
  // on the same data directory and resumes the proxy towards it. REQUIRES:
  // the proxy is cut.
  void KillAndRestart() {
    server_->Kill();
    ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/false));
    proxy_->Resume(server_->grpc_address());
  }

  // CutAKeyedAddInItsAllocation starts an add of 2 volumes with a new
  // request_id on `caller`, writing its result to `added`; waits until the
  // server has parked it in its stalled allocation, then cuts the proxy and
  // waits until the client has seen its attempt cut off (its first retry
  // event; the retries meanwhile are refused by the cut proxy: not sent).
  // REQUIRES: started stalled; `added` outlives `caller`.
  void CutAKeyedAddInItsAllocation(
      std::jthread& caller, absl::StatusOr<v1::AddVolumeResponse>& added) {
    keyed_add_ = AddOf(2);
    keyed_add_.set_request_id(NewRequestId());
    caller = std::jthread([&] { added = client_->AddVolume(keyed_add_); });
    ASSERT_TRUE(
        server_->WaitForLog("event=testonly_stall_add_wait").has_value())
        << "the add never reached the stalled allocation";
    proxy_->Cut();
    ASSERT_TRUE(retries_.WaitFor(1));
  }

  // LoseTheAnswerOf loses the answer of `change`, a call of client_ that
  // the server finishes at once, after the server made it: it makes
  // client_'s channel READY (a Health call through the proxy), holds the
  // proxy's answers, runs `change` on a thread of its own, waits until the
  // server logs a line containing `made` (the change's event), then cuts
  // the proxy and resumes it towards the server, so that a retry (which
  // must not come) would reach the server and make the change again.
  // Returns once `change` has returned.
  // READY first, because the held answers must not be needed to send the
  // change: over a channel that is not READY the client sends a change only
  // after a Health probe is answered, and a new connection is READY only
  // once the server's SETTINGS arrive. Over a READY one it goes out at
  // once, and only its answer is held. No sleep: WaitForLog wakes on each
  // line; a remove's line is batched (written by the next flush, within
  // --log_flush_interval, 100 ms), which its 20 s wait covers.
  // REQUIRES: started; no line so far contains `made`.
  void LoseTheAnswerOf(const std::function<void()>& change,
                       const std::string& made) {
    const auto health = client_->Health();
    ASSERT_TRUE(health.ok()) << health.status();
    ASSERT_EQ(client_->channel()->GetState(/*try_to_connect=*/false),
              GRPC_CHANNEL_READY);
    proxy_->HoldAnswers();
    std::jthread caller(change);
    const bool was_made = server_->WaitForLog(made).has_value();
    // Cut even when it was not made: the call would wait for its answer
    // until its deadline.
    proxy_->Cut();
    proxy_->Resume(server_->grpc_address());
    caller.join();
    ASSERT_TRUE(was_made) << "the server did not log `" << made << "`";
  }

  // DirectClient is a client of the server itself, not through the proxy
  // (to set up and to look), whose retries are not counted in retries_.
  std::unique_ptr<VolumePoolClient> DirectClient() {
    ClientOptions options;
    options.address = server_->grpc_address();
    auto client = VolumePoolClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // PoolIndices returns the indices of pool a's volumes, Inspected through
  // the client.
  std::vector<uint64_t> PoolIndices() {
    v1::InspectRequest inspect;
    inspect.set_pool("a");
    inspect.set_include_volumes(true);
    auto pool = client_->Inspect(inspect);
    EXPECT_TRUE(pool.ok()) << pool.status();
    std::vector<uint64_t> indices;
    if (!pool.ok()) return indices;
    for (const v1::Volume& v : pool->volumes()) indices.push_back(v.index());
    EXPECT_EQ(pool->summary().volumes_mapped(), indices.size());
    return indices;
  }

  TempDir dir_;
  StallFifo fifo_{dir_};
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<CutProxy> proxy_;
  Retries retries_;
  std::unique_ptr<VolumePoolClient> client_;
  v1::AddVolumeRequest keyed_add_;  // CutAKeyedAddInItsAllocation's
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = ServerProcess::Start({"--data-dir=" + dir_.path(), kPool});
    ASSERT_NE(server_, nullptr);
    address_ = server_->grpc_address();
  }

  // Client is a client of the server (or of `address`, when given).
  std::unique_ptr<VolumePoolClient> Client(int max_attempts,
                                           absl::Duration timeout,
                                           const std::string& address = "") {
    ClientOptions options;
    options.address = address.empty() ? address_ : address;
    options.max_attempts = max_attempts;
    options.timeout = timeout;
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(200);
    options.on_retry = [this](const RetryEvent& e) { retries_.Record(e); };
    auto client = VolumePoolClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  uint64_t Mapped(const VolumePoolClient& client) {
    v1::InspectRequest request;
    request.set_pool("a");
    auto r = client.Inspect(request);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->summary().volumes_mapped() : ~uint64_t{0};
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::string address_;
  Retries retries_;
};

// ClientRestartTest's server listens on a unix socket of its own, so that
// a restart finds its address free: a TCP port given up by the stopped
// server could be taken by another test before the restart binds it.
class ClientRestartTest : public ClientTest {
 protected:
  void SetUp() override {
    address_ = "unix:" + sockets_.path() + "/grpc.sock";
    Restart();
  }

  // Restart starts the server (again) on address_ and the data directory.
  void Restart() {
    server_ = ServerProcess::Start(
        {"--data-dir=" + dir_.path(), kPool, "--listen=" + address_});
    ASSERT_NE(server_, nullptr);
    ASSERT_EQ(server_->grpc_address(), address_);
  }

  TempDir sockets_;
};

TEST(ClientOptionsTest, CreateRejectsBadOptions) {
  ClientOptions o;
  o.address = "";
  EXPECT_EQ(VolumePoolClient::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = ClientOptions();
  o.max_attempts = 0;
  EXPECT_EQ(VolumePoolClient::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = ClientOptions();
  o.initial_backoff = absl::Seconds(3);  // above max_backoff (2 s)
  EXPECT_EQ(VolumePoolClient::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = ClientOptions();
  o.jitter = 1.0;
  EXPECT_EQ(VolumePoolClient::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(VolumePoolClient::Create(ClientOptions()).ok());
}

TEST(ClientOptionsTest, NewRequestIdIsARandomUuidV4) {
  const std::string a = NewRequestId();
  EXPECT_THAT(a, MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                              "[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_NE(a, NewRequestId());
}

// A process forked after its parent made a request_id makes other ids
// than the parent: the ids came from a per-thread generator, copied by
// fork, so a parent and its forked workers made the same ids, and the
// server took the second process's add for a repeat of the first's (its
// volumes answered twice, added once).
TEST(ClientOptionsTest, NewRequestIdDiffersAcrossFork) {
  const std::string before_fork = NewRequestId();
  int ids[2];
  ASSERT_EQ(pipe(ids), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string id = NewRequestId();
    const ssize_t written = write(ids[1], id.data(), id.size());
    _exit(written == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  close(ids[1]);
  const std::string parent = NewRequestId();
  std::string child(36, '\0');
  size_t got = 0;
  while (got < child.size()) {
    const ssize_t n = read(ids[0], child.data() + got, child.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(ids[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(got, child.size());
  EXPECT_NE(child, parent) << "the forked child made its parent's next id";
  EXPECT_NE(child, before_fork);
}

TEST_F(ClientTest, CallsReturnTheServersStatusCodes) {
  auto client = Client(3, absl::Seconds(10));
  v1::InspectRequest request;
  request.set_pool("nope");
  auto r = client->Inspect(request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("nope"));
  auto pools = client->ListPools();
  ASSERT_TRUE(pools.ok()) << pools.status();
  ASSERT_EQ(pools->pools_size(), 1);
  EXPECT_EQ(pools->pools(0).name(), "a");
  auto health = client->Health("groove.v1.VolumePoolService");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  // A reclaim of a free index: the pool's refusal, not retried.
  v1::ReclaimVolumeRequest reclaim;
  reclaim.set_pool("a");
  reclaim.set_index(0);
  auto reclaimed = client->ReclaimVolume(reclaim);
  EXPECT_EQ(reclaimed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reclaimed.status().message(),
              HasSubstr("reclaim volume 0 of pool 'a': index 0 holds no "
                        "volume"));
  EXPECT_FALSE(OutcomeUnknown(reclaimed.status()));
  EXPECT_TRUE(retries_.events().empty());
}

TEST_F(ClientRestartTest, InspectRetriesUntilTheServerIsBack) {
  auto client = Client(1000, absl::Seconds(30));
  auto added = client->AddVolume(AddOf(3));
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(server_->Stop(), 0);

  absl::StatusOr<v1::InspectResponse> inspected;
  // A jthread: a failed ASSERT below still joins it (a joinable std::thread
  // would end the whole test binary).
  std::jthread caller([&] {
    v1::InspectRequest request;
    request.set_pool("a");
    inspected = client->Inspect(request);
  });
  // The first attempt failed on the stopped server: bring it back.
  ASSERT_TRUE(retries_.WaitFor(1));
  Restart();
  caller.join();
  ASSERT_TRUE(inspected.ok()) << inspected.status();
  // The pool survived the restart, and the answer came from the new server.
  EXPECT_EQ(inspected->summary().volumes_mapped(), 3u);
  const std::vector<RetryEvent> events = retries_.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].method, "Inspect");
  EXPECT_EQ(events[0].attempt, 1);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kUnavailable);
}

// A change is sent only over a connection (a Health call finds one
// first), so one that found none changed nothing and is retried, with or
// without a request_id; a read is retried alike.
TEST_F(ClientTest, ChangesThatWereNeverSentAreRetried) {
  RefusingLoopbackPort nobody;  // nobody listens there, nor can bind it
  ASSERT_NE(nobody.port(), 0);
  auto client = Client(50, absl::Seconds(10), nobody.address());
  CallOptions call;
  call.max_attempts = 3;
  v1::RemoveVolumeRequest remove;
  remove.set_pool("a");
  remove.set_count(1);
  const absl::Status removed = client->RemoveVolume(remove, call).status();
  EXPECT_EQ(removed.code(), absl::StatusCode::kUnavailable) << removed;
  EXPECT_THAT(removed.message(), HasSubstr("the request was not sent"));
  EXPECT_THAT(removed.message(), HasSubstr("gave up after 3 attempts"));
  EXPECT_FALSE(OutcomeUnknown(removed));
  const absl::Status added = client->AddVolume(AddOf(1), call).status();
  EXPECT_EQ(added.code(), absl::StatusCode::kUnavailable) << added;
  EXPECT_FALSE(OutcomeUnknown(added));
  v1::InspectRequest inspect;
  inspect.set_pool("a");
  EXPECT_EQ(client->Inspect(inspect, call).status().code(),
            absl::StatusCode::kUnavailable);
  std::vector<std::string> methods;
  for (const RetryEvent& e : retries_.events()) methods.push_back(e.method);
  EXPECT_THAT(methods, ::testing::ElementsAre("RemoveVolume", "RemoveVolume",
                                              "AddVolume", "AddVolume",
                                              "Inspect", "Inspect"));
}

// An add without a request_id whose connection is cut after it reached
// the server may have been made (here it had not: the server died in its
// allocation, and recovery rolls it back; a server stopping gracefully
// would have finished it): it is not retried, even by a patient client,
// since a repeat could add again. The status says so.
TEST_F(ClientStallTest, AnAddWithoutRequestIdCutOffAfterItWasSentIsNotRetried) {
  ASSERT_NO_FATAL_FAILURE(Start("--testonly_stall_add_fifo"));
  absl::StatusOr<v1::AddVolumeResponse> added;
  std::jthread caller([&] { added = client_->AddVolume(AddOf(1)); });
  ASSERT_TRUE(server_->WaitForLog("event=testonly_stall_add_wait").has_value())
      << "the add never reached the stalled allocation";
  server_->Kill();
  caller.join();
  EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable)
      << added.status();
  EXPECT_TRUE(OutcomeUnknown(added.status())) << added.status();
  EXPECT_THAT(added.status().message(), HasSubstr("outcome is unknown"));
  EXPECT_THAT(added.status().message(), Not(HasSubstr("request_id")));
  EXPECT_TRUE(retries_.events().empty());
}

// A keyed add whose first attempt the server made but whose answer was
// lost (the connection cut while the add was in its allocation, which then
// completed) is retried with its request_id, here by a server killed and
// restarted meanwhile: the retry is answered from the pool's request
// journal with the first attempt's volumes, and nothing is added again.
TEST_F(ClientCutOffTest, AKeyedAddWhoseAnswerWasLostReturnsTheVolumesItAdded) {
  ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/true));
  absl::StatusOr<v1::AddVolumeResponse> added;
  std::jthread caller;
  ASSERT_NO_FATAL_FAILURE(CutAKeyedAddInItsAllocation(caller, added));
  fifo_.Release(1);
  const std::optional<std::string> made = server_->WaitForLog("event=add ");
  ASSERT_TRUE(made.has_value()) << "the first attempt's add was not made";
  const std::string made_indices = LogValue(*made, "indices");
  EXPECT_EQ(made_indices, "0,1");
  ASSERT_NO_FATAL_FAILURE(KillAndRestart());
  caller.join();
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(absl::StrJoin(added->volume_indices(), ","), made_indices);
  // Answered from the journal, not made again: the pool holds exactly
  // the first attempt's two volumes.
  EXPECT_TRUE(server_->WaitForLog("event=add_replayed").has_value())
      << server_->LogText();
  EXPECT_EQ(server_->LogCount({"event=add "}), 0u) << server_->LogText();
  EXPECT_EQ(absl::StrJoin(PoolIndices(), ","), made_indices);
  // The retry was for the unknown outcome of attempt 1.
  const std::vector<RetryEvent> events = retries_.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].method, "AddVolume");
  EXPECT_EQ(events[0].attempt, 1);
  EXPECT_EQ(events[0].status.code(), absl::StatusCode::kUnavailable)
      << events[0].status;
  EXPECT_TRUE(OutcomeUnknown(events[0].status)) << events[0].status;
  EXPECT_THAT(events[0].status.message(),
              HasSubstr("attempt 1's outcome is unknown"));
}

// A keyed add cut off while the server dies in its allocation was not
// made (recovery rolls it back): its retry, after the restart, makes it,
// once.
TEST_F(ClientCutOffTest, AKeyedAddKilledInItsAllocationIsMadeOnceByItsRetry) {
  ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/true));
  absl::StatusOr<v1::AddVolumeResponse> added;
  std::jthread caller;
  ASSERT_NO_FATAL_FAILURE(CutAKeyedAddInItsAllocation(caller, added));
  ASSERT_NO_FATAL_FAILURE(KillAndRestart());
  caller.join();
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_TRUE(server_->WaitForLog("event=add ").has_value())
      << "the restarted server did not make the add";
  EXPECT_EQ(absl::StrJoin(PoolIndices(), ","),
            absl::StrJoin(added->volume_indices(), ","));
  EXPECT_EQ(added->volume_indices_size(), 2);
  ASSERT_FALSE(retries_.events().empty());
  EXPECT_TRUE(OutcomeUnknown(retries_.events()[0].status))
      << retries_.events()[0].status;
}

// When the attempts run out after a keyed add was cut off (the server
// killed in the add, never back), the outcome is still unknown, whatever
// the last attempt saw (here: no connection): the status says so, how
// many attempts were made, and ends with the id to repeat it with.
TEST_F(ClientCutOffTest, AKeyedAddWhoseAttemptsRunOutIsStillOutcomeUnknown) {
  ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/true));
  v1::AddVolumeRequest request = AddOf(1);
  request.set_request_id(NewRequestId());
  CallOptions call;
  call.max_attempts = 4;
  absl::StatusOr<v1::AddVolumeResponse> added;
  std::jthread caller([&] { added = client_->AddVolume(request, call); });
  ASSERT_TRUE(server_->WaitForLog("event=testonly_stall_add_wait").has_value())
      << "the add never reached the stalled allocation";
  proxy_->Cut();  // and never resumed
  server_->Kill();
  caller.join();
  EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable)
      << added.status();
  EXPECT_TRUE(OutcomeUnknown(added.status())) << added.status();
  EXPECT_THAT(added.status().message(),
              HasSubstr("gave up after 4 attempts; its outcome is unknown: "
                        "attempt 1 may have reached the server"));
  EXPECT_THAT(std::string(added.status().message()),
              EndsWith("; request_id " + request.request_id()));
  const std::vector<RetryEvent> events = retries_.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_TRUE(OutcomeUnknown(events[0].status)) << events[0].status;
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].attempt, static_cast<int>(i) + 1);
    EXPECT_FALSE(OutcomeUnknown(events[i].status)) << events[i].status;
    EXPECT_THAT(events[i].status.message(),
                HasSubstr("the request was not sent"));
  }
}

// A RemoveVolume whose answer was lost after the server removed a volume
// (the proxy held the answer back, then cut the connection) is not
// retried, even by a patient client with the proxy open again: a repeat
// would remove a second volume. The status says the outcome is unknown;
// the pool lost one volume, not two.
TEST_F(ClientCutOffTest, ARemoveCutOffAfterItWasSentIsNotRetried) {
  ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/false));
  std::unique_ptr<VolumePoolClient> direct = DirectClient();
  ASSERT_NE(direct, nullptr);
  const auto added = direct->AddVolume(AddOf(3));
  ASSERT_TRUE(added.ok()) << added.status();
  v1::RemoveVolumeRequest remove;
  remove.set_pool("a");
  remove.set_count(1);
  absl::StatusOr<v1::RemoveVolumeResponse> removed;
  ASSERT_NO_FATAL_FAILURE(LoseTheAnswerOf(
      [&] { removed = client_->RemoveVolume(remove); }, "event=remove "));
  EXPECT_EQ(removed.status().code(), absl::StatusCode::kUnavailable)
      << removed.status();
  EXPECT_TRUE(OutcomeUnknown(removed.status())) << removed.status();
  EXPECT_THAT(std::string(removed.status().message()),
              HasSubstr("(RemoveVolume: its outcome is unknown"));
  EXPECT_TRUE(retries_.events().empty());
  v1::InspectRequest inspect;
  inspect.set_pool("a");
  const auto pool = direct->Inspect(inspect);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->summary().volumes_mapped(), 2u);
  EXPECT_EQ(pool->summary().volumes_empty(), 2u);
  EXPECT_EQ(pool->summary().counters().volumes_removed(), 1u);
}

// A ReclaimVolume whose answer was lost after the server freed the
// quarantined volume is not retried either: the repeat would be refused
// with FAILED_PRECONDITION ("holds no volume"), which would hide that the
// first attempt freed it. The call returns the cut-off attempt's
// UNAVAILABLE, marked OutcomeUnknown, and the server reclaimed once.
TEST_F(ClientCutOffTest, AReclaimCutOffAfterItWasSentIsNotRetried) {
  ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/false));
  std::unique_ptr<VolumePoolClient> direct = DirectClient();
  ASSERT_NE(direct, nullptr);
  // Volume 0, its header's magic overwritten, is quarantined by the remove
  // that pops it.
  const auto added = direct->AddVolume(AddOf(1));
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_NO_FATAL_FAILURE(CorruptMagic(dir_.path(), "a", 0));
  v1::RemoveVolumeRequest remove;
  remove.set_pool("a");
  remove.set_count(1);
  const absl::Status quarantining = direct->RemoveVolume(remove).status();
  ASSERT_EQ(quarantining.code(), absl::StatusCode::kDataLoss) << quarantining;
  v1::InspectRequest inspect;
  inspect.set_pool("a");
  auto pool = direct->Inspect(inspect);
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_EQ(pool->summary().volumes_in_quarantine(), 1u);

  v1::ReclaimVolumeRequest reclaim;
  reclaim.set_pool("a");
  reclaim.set_index(0);
  absl::StatusOr<v1::ReclaimVolumeResponse> reclaimed;
  ASSERT_NO_FATAL_FAILURE(LoseTheAnswerOf(
      [&] { reclaimed = client_->ReclaimVolume(reclaim); }, "event=reclaim "));
  EXPECT_EQ(reclaimed.status().code(), absl::StatusCode::kUnavailable)
      << reclaimed.status();
  EXPECT_TRUE(OutcomeUnknown(reclaimed.status())) << reclaimed.status();
  EXPECT_THAT(std::string(reclaimed.status().message()),
              HasSubstr("(ReclaimVolume: its outcome is unknown"));
  EXPECT_TRUE(retries_.events().empty());
  pool = direct->Inspect(inspect);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->summary().volumes_in_quarantine(), 0u);
  EXPECT_EQ(pool->summary().volumes_reclaimed(), 1u);
  EXPECT_EQ(pool->summary().volumes_mapped(), 0u);
  // A reclaim's line is written at once (never batched).
  EXPECT_EQ(server_->LogCount({"event=reclaim "}), 1u) << server_->LogText();
}

// A server that answers UNAVAILABLE itself (here: draining, during its
// --drain_grace) marks it groove-not-applied: it changed nothing, so even
// a remove, which is never repeated on a doubt, is retried.
TEST(ClientDrainTest, ChangesTheServerRefusedAreRetried) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(), kPool, "--drain_grace=10m"});
  ASSERT_NE(server, nullptr);
  server->Signal(SIGTERM);
  ASSERT_TRUE(server->WaitForLog("event=drain_grace"));

  // The protocol: the trailing metadata.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::RemoveVolumeRequest remove;
  remove.set_pool("a");
  remove.set_count(1);
  v1::RemoveVolumeResponse response;
  const grpc::Status refused =
      server->Stub()->RemoveVolume(&context, remove, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto& trailers = context.GetServerTrailingMetadata();
  const auto marker = trailers.find(v1::kNotAppliedKey);
  ASSERT_NE(marker, trailers.end());
  EXPECT_EQ(marker->second, v1::kNotAppliedValue);

  // The client: retried.
  Retries retries;
  auto client = PatientClient(server->grpc_address(), &retries);
  ASSERT_TRUE(client.ok());
  CallOptions call;
  call.max_attempts = 2;
  const absl::Status removed = (*client)->RemoveVolume(remove, call).status();
  EXPECT_EQ(removed.code(), absl::StatusCode::kUnavailable) << removed;
  EXPECT_THAT(removed.message(), HasSubstr("shutting down"));
  EXPECT_THAT(removed.message(), HasSubstr("gave up after 2 attempts"));
  EXPECT_FALSE(OutcomeUnknown(removed));
  ASSERT_EQ(retries.events().size(), 1u);
  EXPECT_EQ(retries.events()[0].method, "RemoveVolume");
  // ReclaimVolume follows the same rule.
  v1::ReclaimVolumeRequest reclaim;
  reclaim.set_pool("a");
  reclaim.set_index(0);
  const absl::Status reclaimed =
      (*client)->ReclaimVolume(reclaim, call).status();
  EXPECT_EQ(reclaimed.code(), absl::StatusCode::kUnavailable) << reclaimed;
  EXPECT_THAT(reclaimed.message(), HasSubstr("gave up after 2 attempts"));
  EXPECT_FALSE(OutcomeUnknown(reclaimed));
  ASSERT_EQ(retries.events().size(), 2u);
  EXPECT_EQ(retries.events()[1].method, "ReclaimVolume");
  server->Signal(SIGTERM);  // ends the grace
  EXPECT_EQ(server->WaitForExit(), 0);
}

// An add made while the server is down was never sent (the client found
// no connection): it is retried until the server is back, and made once.
TEST_F(ClientRestartTest, AnAddWhileTheServerIsDownIsRetriedAndMadeOnce) {
  auto client = Client(1000, absl::Seconds(30));
  ASSERT_EQ(server_->Stop(), 0);
  v1::AddVolumeRequest request = AddOf(2);
  request.set_request_id(NewRequestId());
  absl::StatusOr<v1::AddVolumeResponse> added;
  std::jthread caller([&] { added = client->AddVolume(request); });
  ASSERT_TRUE(retries_.WaitFor(1));
  Restart();
  caller.join();
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->volume_indices_size(), 2);
  EXPECT_EQ(retries_.events()[0].method, "AddVolume");
  // Sending the same request again answers the first call's result and
  // adds nothing: the retried add happened exactly once.
  auto again = client->AddVolume(request);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->volume_indices(0), added->volume_indices(0));
  EXPECT_EQ(Mapped(*client), 2u);
}

// Without jitter the waits between attempts are exactly the documented
// sequence: initial_backoff times the multiplier per retry, up to
// max_backoff.
TEST_F(ClientTest, BackoffGrowsByItsMultiplierUpToItsMaximum) {
  RefusingLoopbackPort nobody;  // nobody listens there, nor can bind it
  ASSERT_NE(nobody.port(), 0);
  ClientOptions options;
  options.address = nobody.address();
  options.max_attempts = 5;
  options.timeout = absl::Seconds(30);
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(40);
  options.backoff_multiplier = 2.0;
  options.jitter = 0;
  options.on_retry = [this](const RetryEvent& e) { retries_.Record(e); };
  auto client = VolumePoolClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  v1::InspectRequest request;
  request.set_pool("a");
  EXPECT_EQ((*client)->Inspect(request).status().code(),
            absl::StatusCode::kUnavailable);
  std::vector<absl::Duration> waits;
  for (const RetryEvent& e : retries_.events()) waits.push_back(e.backoff);
  EXPECT_THAT(waits, ::testing::ElementsAre(
                         absl::Milliseconds(10), absl::Milliseconds(20),
                         absl::Milliseconds(40), absl::Milliseconds(40)));
}

// A slow on_retry (logging to a slow sink, a call of its own) does not
// carry a call past its deadline: the client once slept the whole backoff
// after it, though the deadline had passed meanwhile, and then made an
// attempt that could only expire. It returns once on_retry does, saying
// no time was left. (on_retry sleeps: it is the slow callback under test,
// not a wait for the client.)
TEST_F(ClientTest, ASlowOnRetryDoesNotCarryTheCallPastItsDeadline) {
  RefusingLoopbackPort nobody;  // nobody listens there, nor can bind it
  ASSERT_NE(nobody.port(), 0);
  ClientOptions options;
  options.address = nobody.address();
  options.timeout = absl::Seconds(1);
  options.initial_backoff = absl::Milliseconds(900);
  options.max_backoff = absl::Milliseconds(900);
  options.jitter = 0;
  options.on_retry = [](const RetryEvent&) {
    absl::SleepFor(absl::Milliseconds(300));
  };
  auto client = VolumePoolClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  const absl::Status status = (*client)->ListPools().status();
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(1)) << status;
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("no time left for another before the 1s deadline"));
}

// A generated request_id is given back in a failed call's message, for
// the caller to repeat the add with it.
TEST_F(ClientTest, AFailedAddNamesItsGeneratedRequestId) {
  RefusingLoopbackPort nobody;  // nobody listens there, nor can bind it
  ASSERT_NE(nobody.port(), 0);
  auto client = Client(1, absl::Seconds(10), nobody.address());
  CallOptions call;
  call.generate_request_id = true;
  auto added = client->AddVolume(AddOf(1), call);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(
      std::string(added.status().message()),
      MatchesRegex(".*; request_id [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                   "[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
}

// DrainingThenHanging is a VolumePoolService whose ListPools answers its
// first call UNAVAILABLE, as a draining groove-volumed does, and holds
// every later call until `release` (a server that stopped answering: the
// fault).
class DrainingThenHanging final : public v1::VolumePoolService::Service {
 public:
  grpc::Status ListPools(grpc::ServerContext*, const v1::ListPoolsRequest*,
                         v1::ListPoolsResponse*) override {
    if (calls_.fetch_add(1) == 0) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "groove-volumed is shutting down; retry with "
                          "backoff");
    }
    release.WaitForNotificationWithTimeout(absl::Minutes(1));
    return grpc::Status::OK;
  }
  Notification release;

 private:
  std::atomic<int> calls_{0};
};

// A read whose retry runs into the deadline returns what the server
// answered before (UNAVAILABLE: draining), saying the last attempt was cut
// off, not a bare DEADLINE_EXCEEDED: groovectl then says the server
// answered (exit 3) instead of a server error (exit 1), which a loaded
// machine made GroovectlUnreachableTest.UnavailableFromAServerThatAnswered
// IsNotUnreachable see once under TSan.
TEST(ClientDeadlineTest, AReadCutOffAfterARetryReturnsTheServersAnswer) {
  DrainingThenHanging service;
  ClientOptions options;
  std::unique_ptr<grpc::Server> server =
      StartFakeServer(&service, &options.address);
  ASSERT_NE(server, nullptr);
  options.timeout = absl::Seconds(2);
  options.initial_backoff = absl::Milliseconds(10);
  absl::StatusOr<std::unique_ptr<VolumePoolClient>> client =
      VolumePoolClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::StatusOr<v1::ListPoolsResponse> r = (*client)->ListPools();
  service.release.Notify();
  server->Shutdown();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(),
              HasSubstr("groove-volumed is shutting down"));
  EXPECT_THAT(r.status().message(),
              HasSubstr("(ListPools: 2 attempts, the last cut off by the 2s "
                        "deadline)"));
}

TEST_F(ClientTest, DeadlineBoundsEveryAttemptAndBackoff) {
  RefusingLoopbackPort nobody;  // nobody listens there, nor can bind it
  ASSERT_NE(nobody.port(), 0);
  auto client = Client(100000, absl::Milliseconds(500), nobody.address());
  v1::InspectRequest request;
  request.set_pool("a");
  auto r = client->Inspect(request);
  // Either the backoff loop saw no time left for another attempt (and says
  // so), or the last attempt ran into the call's deadline (after retries,
  // the last retried failure is returned, saying so; a first attempt's is
  // DEADLINE_EXCEEDED); never "gave up after N attempts": the deadline,
  // not max_attempts, ended it.
  if (absl::IsUnavailable(r.status())) {
    EXPECT_THAT(r.status().message(),
                AnyOf(HasSubstr("no time left for another before the 500ms "
                                "deadline"),
                      HasSubstr("the last cut off by the 500ms deadline")));
  } else {
    EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  }
  EXPECT_THAT(r.status().message(), Not(HasSubstr("gave up after")));
  // Far fewer than 100,000 attempts, and the waits between them fit in the
  // deadline: the client never slept past it.
  EXPECT_GE(retries_.events().size(), 1u);
  EXPECT_LT(retries_.events().size(), 100u);
  absl::Duration slept;
  for (const RetryEvent& e : retries_.events()) slept += e.backoff;
  EXPECT_LT(slept, absl::Milliseconds(500));
}

// A client gives up on an add that is stalled in the backing; the add
// still completes on the server, and a retry with its request_id waits
// (ABORTED while the first runs, retried) and then learns its result.
// Giving up is a cancellation from the client (ClientContext::TryCancel)
// once the server logs that the add reached the stalled allocation: the
// server sees it as it sees an expired deadline (both cancel the call),
// without a deadline that would have to outlast the call's trip to the
// stall (a short one let a slow server drop the call before it ran).
TEST_F(ClientStallTest, AbandonedAddIsLearnedByRetryingItsRequestId) {
  ASSERT_NO_FATAL_FAILURE(Start("--testonly_stall_add_fifo"));
  v1::AddVolumeRequest request = AddOf(1);
  request.set_request_id(NewRequestId());

  // The first call, on a stub of its own so that the test can cancel it.
  auto stub = server_->Stub();
  grpc::ClientContext first_context;
  first_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  v1::AddVolumeResponse first_response;
  grpc::Status first_status;
  Notification first_done;
  stub->async()->AddVolume(&first_context, &request, &first_response,
                           [&](grpc::Status s) {
                             first_status = std::move(s);
                             first_done.Notify();
                           });
  const bool stalled =
      server_->WaitForLog("event=testonly_stall_add_wait").has_value();
  first_context.TryCancel();
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  ASSERT_TRUE(stalled) << "the add never reached the stalled allocation";
  EXPECT_EQ(first_status.error_code(), grpc::StatusCode::CANCELLED)
      << first_status.error_message();

  absl::StatusOr<v1::AddVolumeResponse> learned;
  std::jthread caller([&] { learned = client_->AddVolume(request); });
  ASSERT_TRUE(retries_.WaitFor(1));  // ABORTED: the first call still runs
  EXPECT_EQ(retries_.events()[0].status.code(), absl::StatusCode::kAborted);
  fifo_.Release(1);  // let the stalled allocation proceed
  caller.join();
  ASSERT_TRUE(learned.ok()) << learned.status();
  // The retry was answered from the first call's result, not run again:
  // the pool holds the one volume it names.
  EXPECT_TRUE(server_->WaitForLog("event=add_replayed").has_value());
  v1::InspectRequest inspect;
  inspect.set_pool("a");
  inspect.set_include_volumes(true);
  auto pool = client_->Inspect(inspect);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->summary().volumes_mapped(), 1u);
  ASSERT_EQ(pool->volumes_size(), 1);
  EXPECT_THAT(learned->volume_indices(),
              ::testing::ElementsAre(pool->volumes(0).index()));
}

// An Inspect with verify refused because another verify of the pool runs
// (ABORTED) is retried, until the other has finished: it is read-only.
TEST_F(ClientStallTest, InspectWithVerifyIsRetriedWhileAnotherVerifyRuns) {
  ASSERT_NO_FATAL_FAILURE(Start("--testonly_stall_verify_fifo"));
  v1::InspectRequest verify;
  verify.set_pool("a");
  verify.set_verify(true);

  absl::StatusOr<v1::InspectResponse> held;
  std::jthread holder([&] { held = client_->Inspect(verify); });
  ASSERT_TRUE(
      server_->WaitForLog("event=testonly_stall_verify_wait").has_value())
      << "the first verify never reached its walk";
  absl::StatusOr<v1::InspectResponse> second;
  std::jthread caller([&] { second = client_->Inspect(verify); });
  ASSERT_TRUE(retries_.WaitFor(1));
  EXPECT_EQ(retries_.events()[0].method, "Inspect");
  EXPECT_EQ(retries_.events()[0].status.code(), absl::StatusCode::kAborted);
  // One byte for the held walk, one for the retried verify's walk.
  fifo_.Release(2);
  holder.join();
  caller.join();
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE(held->verify_result().ok());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->verify_result().ok());
}

// The data-plane example joins the pool and acquires, writes, checks and
// releases volumes while this test adds and removes them through the
// server; it stops after 2,000 acquires and must report no mismatch.
TEST_F(ClientTest, DataPlaneExampleRunsWhileTheServerAddsAndRemoves) {
  auto client = Client(3, absl::Seconds(20));
  // The pool starts empty: every volume the example acquires was added
  // after it joined.
  const std::string log = dir_.path() + "/data_plane.log";
  BackgroundProcess data_plane(
      {GROOVE_DATA_PLANE_BIN, "--data-dir", dir_.path(), "--pool", "a",
       "--hold", "3", "--bytes", "3584", "--acquires", "2000"},
      log);
  int cycles = 0;
  while (data_plane.Running()) {
    auto added = client->AddVolume(AddOf(4));
    ASSERT_TRUE(added.ok()) << added.status();
    v1::RemoveVolumeRequest remove;
    remove.set_pool("a");
    remove.set_count(2);
    auto removed = client->RemoveVolume(remove);
    // Every empty volume may be held by the example at that instant.
    ASSERT_TRUE(removed.ok() || absl::IsFailedPrecondition(removed.status()))
        << removed.status();
    ++cycles;
    if (Mapped(*client) > 48) {
      remove.set_count(40);
      (void)client->RemoveVolume(remove);
    }
    ASSERT_LT(cycles, 20000) << "the data plane did not finish";
  }
  std::string out;
  {
    std::ifstream in(log);
    std::stringstream s;
    s << in.rdbuf();
    out = s.str();
  }
  EXPECT_THAT(out, HasSubstr("acquired=2000 "));
  EXPECT_THAT(out, HasSubstr("mismatches=0 errors=0"));
  EXPECT_GE(cycles, 1);
  v1::InspectRequest verify;
  verify.set_pool("a");
  verify.set_verify(true);
  auto verified = client->Inspect(verify);
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->verify_result().ok())
      << verified->verify_result().message();
  EXPECT_EQ(verified->summary().volumes_in_use(), 0u);
}

// The Python example repeats a keyed add whose connection was cut after
// the server had it: the repeats, through the proxy again, find the first
// call still running (ABORTED), then are answered with its result once it
// completes; the example goes on and exits 0. Without the repeat it
// exits 1 on the cut's UNAVAILABLE.
TEST_F(ClientCutOffTest, ThePythonExampleRepeatsAKeyedAddCutOffAfterItWasSent) {
  ASSERT_NO_FATAL_FAILURE(Start(/*stalled=*/true));
  CommandResult r;
  std::jthread example([&] {
    r = RunCommand(
        {GROOVE_PYTHON3, GROOVE_SOURCE_DIR "/clients/python/groove_example.py",
         "--addr", proxy_->address(), "--pool", "a", "--count", "2",
         "--timeout", "30"},
        "", absl::Seconds(60));
  });
  ASSERT_TRUE(server_->WaitForLog("event=testonly_stall_add_wait").has_value())
      << "the example's add never reached the stalled allocation";
  // The answer can no longer reach the example: its attempt fails.
  proxy_->Cut();
  proxy_->Resume(server_->grpc_address());
  fifo_.Release(1);
  example.join();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("AddVolume attempt 1: UNAVAILABLE"));
  EXPECT_THAT(r.out, HasSubstr("added indices [0, 1]"));
  EXPECT_THAT(r.out, HasSubstr("python example ok"));
  // The repeat was answered with the first call's volumes, not made again.
  EXPECT_TRUE(server_->WaitForLog("event=add_replayed").has_value())
      << server_->LogText();
  EXPECT_TRUE(PoolIndices().empty());  // it removed what it added
}

TEST_F(ClientTest, PythonExampleTalksToTheServer) {
  CommandResult r = RunCommand(
      {GROOVE_PYTHON3, GROOVE_SOURCE_DIR "/clients/python/groove_example.py",
       "--addr", address_, "--pool", "a", "--count", "2"},
      "", absl::Seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("pool a: 0/64 volumes of 4096 bytes"));
  EXPECT_THAT(r.out, HasSubstr("added indices [0, 1]"));
  EXPECT_THAT(r.out, HasSubstr("python example ok"));
  auto client = Client(1, absl::Seconds(10));
  EXPECT_EQ(Mapped(*client), 0u);  // it removed what it added
}

}  // namespace
}  // namespace groove::testing
