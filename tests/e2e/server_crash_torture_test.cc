// The crash torture of groove-volumed, end to end: the real binary on
// loopback, real gRPC clients adding, removing and inspecting, and real
// data-plane processes (clients/examples/data_plane: NamedPool::Join, then
// Acquire / write / check / Release) working on the pool, while the server
// is killed with SIGKILL at random instants and restarted on the same data
// directory (on new ports, read from its `event=listening` line).
//
// After every restart, with the clients paused (the data planes keep
// running), the test checks:
//   - recovery completed (`event=pool_recovered pool=t` logged) and
//     Inspect(verify=true) passes;
//   - the server's volumes agree with what the clients were told (the
//     Ledger below): every volume whose add was acknowledged and whose
//     removal was not is there, exactly once, and nothing else is; an add
//     whose answer was lost to the kill either happened whole or not at all;
//   - the volume store holds exactly the memory of the volumes it has
//     (st_blocks of the store file), so no kill leaks a page.
// At the end the data planes finish, everything is removed, and the store
// file holds no block.
//
// Every add carries a unique `info`, which is how the checker learns
// whether a lost add happened, and a request_id. A client whose add was
// lost to a kill repeats it, with the same id, as its first call to the
// next server: request ids survive restarts and kills (the pool's request
// journal, docs/SERVER.md §3), so the repeat must be answered with the
// volumes the lost add made if it happened (the ones the check found with
// its info), must make them if it did not, and must never add twice.
//
// GROOVE_TORTURE_ITERATIONS (default 100) sets how many times the server is
// killed; GROOVE_TEST_SEED replays a run (the seed is printed).

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "integration/server_test_util.h"
#include "support/pool_memory.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/tmpfs_mount.h"

#ifndef GROOVE_DATA_PLANE_BIN
#error "GROOVE_DATA_PLANE_BIN must name the data_plane example binary"
#endif

namespace groove::testing {
namespace {

constexpr char kPool[] = "t";
constexpr uint64_t kVolumeBytes = 16 << 10;
constexpr uint64_t kMaxVolumes = 64;
constexpr int kClients = 3;
constexpr int kDataPlanes = 2;
// Each RPC's deadline: far above what a call needs, so only a kill (or a
// hang, which then fails the test) ends one early.
constexpr absl::Duration kTortureRpcTimeout = absl::Seconds(15);

std::vector<std::string> ServerArgs(const std::string& dir) {
  return {"--data-dir=" + dir,
          absl::StrCat(
              "--pool=name=", kPool,
              ",backing=normal,volume_size=16KiB,max_volumes=", kMaxVolumes)};
}

uint64_t Iterations() {
  const char* env = std::getenv("GROOVE_TORTURE_ITERATIONS");
  uint64_t n = 100;
  if (env != nullptr && !absl::SimpleAtoi(env, &n)) n = 100;
  return n;
}

// Ledger is what the clients were told since the last check, and what the
// server held at the last check. Thread safety: every member under mu_.
class Ledger {
 public:
  // Counts over the whole run, for the report.
  struct Totals {
    uint64_t adds_acked = 0, adds_failed = 0, adds_unknown = 0;
    uint64_t removes_acked = 0, removes_lost = 0, inspects = 0;
    uint64_t volumes_checked = 0, lost_adds_happened = 0;
    uint64_t repeats_replayed = 0, repeats_added = 0;
  };

  void AddAcked(const std::string& info, uint64_t count,
                std::vector<uint64_t> indices) {
    absl::MutexLock lock(&mu_);
    adds_[info] = {count, Outcome::kAcked, std::move(indices)};
    ++totals_.adds_acked;
  }
  // An add the server refused (nothing added).
  void AddFailed(const std::string& info, uint64_t count) {
    absl::MutexLock lock(&mu_);
    adds_[info] = {count, Outcome::kFailed, {}};
    ++totals_.adds_failed;
  }
  // An add whose answer was lost: it may have happened (whole) or not.
  void AddUnknown(const std::string& info, uint64_t count) {
    absl::MutexLock lock(&mu_);
    adds_[info] = {count, Outcome::kUnknown, {}};
    ++totals_.adds_unknown;
  }
  // The repeat of a lost add (same id, same info) was answered with
  // `indices`. If the check after the kill found the add had happened, the
  // answer must name the volumes it found (a replay); if not, they are new
  // (the add ran now). Either way, no volume with its info may exist
  // outside the answer at the next check (nothing added twice).
  void AddRepeated(const std::string& info, uint64_t count,
                   std::vector<uint64_t> indices,
                   std::vector<std::string>* failures) {
    absl::MutexLock lock(&mu_);
    auto settled = settled_.find(info);
    if (settled != settled_.end() && !settled->second.empty()) {
      for (uint64_t index : settled->second) {
        if (std::find(indices.begin(), indices.end(), index) == indices.end()) {
          failures->push_back(absl::StrCat(
              "the repeat of lost add '", info, "' was not answered with ",
              "volume ", index, ", which the lost add made"));
        }
      }
      ++totals_.repeats_replayed;
    } else {
      ++totals_.repeats_added;
    }
    if (settled != settled_.end()) settled_.erase(settled);
    adds_[info] = {count, Outcome::kRepeated, std::move(indices)};
  }
  void RemoveAcked(const v1::RemoveVolumeResponse& response,
                   std::vector<std::string>* failures) {
    absl::MutexLock lock(&mu_);
    for (const v1::RemovedVolume& v : response.volumes()) {
      if (!removed_.insert({v.index(), v.info()}).second) {
        failures->push_back(absl::StrCat("volume ", v.index(), " (", v.info(),
                                         ") removed twice"));
      }
    }
    ++totals_.removes_acked;
  }
  // A remove whose answer was lost: up to `count` volumes may be gone.
  void RemoveLost(uint64_t count) {
    absl::MutexLock lock(&mu_);
    lost_remove_budget_ += count;
    ++totals_.removes_lost;
  }
  void Inspected() {
    absl::MutexLock lock(&mu_);
    ++totals_.inspects;
  }

  // Check compares the server's volumes (index -> info), read with no RPC
  // in flight, with the ledger, appends what disagrees to *failures, and
  // starts a new period from `server`.
  void Check(const std::map<uint64_t, std::string>& server,
             std::vector<std::string>* failures) {
    absl::MutexLock lock(&mu_);
    auto fail = [&](auto&&... parts) {
      failures->push_back(absl::StrCat(parts...));
    };
    auto on_server = [&](uint64_t index, const std::string& info) {
      auto it = server.find(index);
      return it != server.end() && it->second == info;
    };
    std::map<std::string, std::vector<uint64_t>> by_info;
    for (const auto& [index, info] : server) by_info[info].push_back(index);
    std::map<std::string, uint64_t> removed_by_info;
    for (const auto& [index, info] : removed_) ++removed_by_info[info];
    // Volumes that must be there but are not: only a lost remove may
    // explain them, one volume per volume it asked for. `gone` names them
    // (with what the server has at the index) for the failure message.
    uint64_t missing = 0;
    std::vector<std::string> gone;
    auto note_gone = [&](uint64_t index, const std::string& info,
                         absl::string_view why) {
      auto it = server.find(index);
      gone.push_back(
          absl::StrCat(index, " (", info, ", ", why, "; the server has ",
                       it == server.end() ? std::string("no volume")
                                          : absl::StrCat("'", it->second, "'"),
                       " there)"));
    };

    for (const auto& [index, info] : known_) {
      if (removed_.count({index, info})) {
        if (on_server(index, info)) {
          fail("volume ", index, " (", info, ") is back after its removal");
        }
      } else if (!on_server(index, info)) {
        ++missing;
        note_gone(index, info, "there at the last check");
      }
    }
    for (const auto& [info, add] : adds_) {
      const std::vector<uint64_t>& present = by_info[info];
      const uint64_t removed = removed_by_info[info];
      switch (add.outcome) {
        case Outcome::kAcked:
          for (uint64_t index : present) {
            if (std::find(add.indices.begin(), add.indices.end(), index) ==
                add.indices.end()) {
              fail("add '", info, "' was answered with other indices than ",
                   index);
            }
          }
          for (uint64_t index : add.indices) {
            if (removed_.count({index, info})) {
              if (on_server(index, info)) {
                fail("volume ", index, " (", info, ") is back after removal");
              }
            } else if (!on_server(index, info)) {
              ++missing;
              note_gone(index, info, "an acknowledged add's");
            }
          }
          break;
        case Outcome::kFailed:
          if (!present.empty() || removed > 0) {
            fail("add '", info, "' failed but ", present.size() + removed,
                 " of its volumes exist");
          }
          break;
        case Outcome::kUnknown: {
          const uint64_t seen = present.size() + removed;
          if (seen > add.count) {
            fail("add '", info, "' of ", add.count, " volumes left ", seen,
                 " (duplicated)");
          } else if (seen > 0) {
            ++totals_.lost_adds_happened;
            missing += add.count - seen;  // happened whole; some removed
            if (seen < add.count) {
              gone.push_back(absl::StrCat("lost add '", info, "' left ", seen,
                                          " of its ", add.count, " volumes"));
            }
          }
          // What its repeat must be answered with (AddRepeated).
          settled_[info] = present;
          for (const auto& [index, removed_info] : removed_) {
            if (removed_info == info) settled_[info].push_back(index);
          }
          break;
        }
        case Outcome::kRepeated: {
          // The volumes with its info are among those the repeat named:
          // a repeat that added again would leave others. (Some of the
          // named ones may be gone: removed before the kill whose answer
          // was lost.)
          for (uint64_t index : present) {
            if (std::find(add.indices.begin(), add.indices.end(), index) ==
                add.indices.end()) {
              fail("lost add '", info, "' was repeated and volume ", index,
                   " with its info is not in the repeat's answer (added "
                   "twice)");
            }
          }
          if (present.size() + removed > add.count) {
            fail("lost add '", info, "' of ", add.count,
                 " volumes was repeated and left ", present.size() + removed,
                 " (duplicated)");
          }
          // Those still there are known from now on (known_ = server).
          break;
        }
      }
    }
    for (const auto& [index, info] : server) {
      auto known = known_.find(index);
      if (known != known_.end() && known->second == info) continue;
      if (adds_.count(info) == 0) {
        fail("volume ", index, " (", info, ") was never added");
      }
    }
    for (const auto& [index, info] : removed_) {
      auto known = known_.find(index);
      const bool was_known = known != known_.end() && known->second == info;
      if (!was_known && adds_.count(info) == 0) {
        fail("removed volume ", index, " (", info, ") was never added");
      }
    }
    if (missing > lost_remove_budget_) {
      fail(missing,
           " acknowledged volumes are gone, but lost removes asked "
           "for only ",
           lost_remove_budget_, ": ", absl::StrJoin(gone, ", "),
           " (removes acknowledged since the last check: ", removed_.size(),
           ")");
    }
    totals_.volumes_checked += server.size();
    known_ = server;
    adds_.clear();
    removed_.clear();
    lost_remove_budget_ = 0;
  }

  Totals totals() {
    absl::MutexLock lock(&mu_);
    return totals_;
  }

 private:
  enum class Outcome { kAcked, kFailed, kUnknown, kRepeated };
  struct Add {
    uint64_t count = 0;
    Outcome outcome = Outcome::kUnknown;
    std::vector<uint64_t> indices;  // kAcked
  };

  absl::Mutex mu_;
  std::map<uint64_t, std::string> known_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Add> adds_ ABSL_GUARDED_BY(mu_);  // by info
  // Lost adds the last check settled, by info: the indices it found with
  // their info (present or removed), empty if the add had not happened.
  std::map<std::string, std::vector<uint64_t>> settled_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<uint64_t, std::string>> removed_ ABSL_GUARDED_BY(mu_);
  uint64_t lost_remove_budget_ ABSL_GUARDED_BY(mu_) = 0;
  Totals totals_ ABSL_GUARDED_BY(mu_);
};

// A status that a kill explains: the connection went away mid-call or the
// server was not there. Every other code is a finding.
bool LostToTheKill(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return true;
    default:
      return false;
  }
}

std::string NewRequestId(std::mt19937_64& rng) {
  const uint64_t a = rng(), b = rng();
  return absl::StrFormat("%08x-%04x-4%03x-8%03x-%012x", a >> 32,
                         (a >> 16) & 0xffff, a & 0xfff, b >> 52,
                         b & 0xffffffffffffULL);
}

// Clients runs kClients threads, each doing one RPC after another against
// the current server. Between servers the controller pauses them and waits
// for every call in flight to end. A client whose call was lost to a kill
// waits for the next server instead of hammering a dead port.
class Clients {
 public:
  Clients(Ledger* ledger, uint64_t seed) : ledger_(ledger) {
    for (int id = 0; id < kClients; ++id) {
      threads_.emplace_back([this, id, seed] { Run(id, seed + 1000 + id); });
    }
  }
  ~Clients() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      cv_.SignalAll();
    }
    for (std::thread& t : threads_) t.join();
  }

  // Resume lets the clients call the server behind `channel`.
  void Resume(std::shared_ptr<grpc::Channel> channel) {
    absl::MutexLock lock(&mu_);
    channel_ = std::move(channel);
    ++epoch_;
    lost_ = 0;
    running_ = true;
    cv_.SignalAll();
  }
  // Hold stops the clients from starting new calls; the calls in flight
  // go on (the test kills the server under them).
  void Hold() {
    absl::MutexLock lock(&mu_);
    running_ = false;
  }
  // WaitIdle waits until no call is in flight.
  void WaitIdle() {
    absl::MutexLock lock(&mu_);
    while (in_flight_ > 0) cv_.Wait(&mu_);
  }
  // WaitForOps waits until `target` calls have completed in total, or a
  // call to the current server was lost; false after `timeout`.
  bool WaitForOps(uint64_t target, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (ops_ < target && lost_ == 0) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) return false;
    }
    return true;
  }
  // lost is how many calls to the current server were lost (the server
  // went away under them). Before the test kills it, that is a finding.
  int lost() {
    absl::MutexLock lock(&mu_);
    return lost_;
  }
  uint64_t ops() {
    absl::MutexLock lock(&mu_);
    return ops_;
  }
  std::vector<std::string> TakeFailures() {
    absl::MutexLock lock(&mu_);
    return std::exchange(failures_, {});
  }

 private:
  void Run(int id, uint64_t seed) {
    std::mt19937_64 rng(seed);
    uint64_t sequence = 0;
    std::optional<v1::AddVolumeRequest> lost_add;  // to repeat first
    uint64_t parked_epoch = 0;  // the server this client lost a call to
    for (;;) {
      std::shared_ptr<grpc::Channel> channel;
      uint64_t epoch = 0;
      {
        absl::MutexLock lock(&mu_);
        while (!stop_ && !(running_ && epoch_ != parked_epoch)) {
          cv_.Wait(&mu_);
        }
        if (stop_) return;
        channel = channel_;
        epoch = epoch_;
        ++in_flight_;
      }
      std::vector<std::string> failures;
      const bool lost =
          lost_add.has_value()
              ? RepeatLostAdd(channel, &lost_add, &failures)
              : OneCall(channel, id, &sequence, rng, &lost_add, &failures);
      absl::MutexLock lock(&mu_);
      --in_flight_;
      ++ops_;
      if (lost) {
        parked_epoch = epoch;  // wait for the next server
        if (epoch == epoch_) ++lost_;
      }
      for (std::string& f : failures) failures_.push_back(std::move(f));
      cv_.SignalAll();
    }
  }

  // RepeatLostAdd sends *lost_add (an add lost to a kill) again, with its
  // request_id, and records the answer; clears *lost_add once answered.
  // Returns true when the repeat was lost to a kill too.
  bool RepeatLostAdd(const std::shared_ptr<grpc::Channel>& channel,
                     std::optional<v1::AddVolumeRequest>* lost_add,
                     std::vector<std::string>* failures) {
    auto stub = v1::VolumePoolService::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(&context, kTortureRpcTimeout);
    const v1::AddVolumeRequest request = **lost_add;
    v1::AddVolumeResponse response;
    const grpc::Status s = stub->AddVolume(&context, request, &response);
    if (LostToTheKill(s)) {
      ledger_->AddUnknown(request.info(), request.count());
      return true;
    }
    lost_add->reset();
    if (s.ok()) {
      ledger_->AddRepeated(
          request.info(), request.count(),
          {response.volume_indices().begin(), response.volume_indices().end()},
          failures);
    } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      // Not remembered, so it had not happened, and the pool is full now.
      ledger_->AddFailed(request.info(), request.count());
    } else {
      ledger_->AddUnknown(request.info(), request.count());
      failures->push_back(absl::StrCat("repeated add: ", s.error_code(), " ",
                                       s.error_message()));
    }
    return false;
  }

  // OneCall makes one random call and records it; returns true when the
  // call was lost to a kill (an add so lost is left in *lost_add).
  bool OneCall(const std::shared_ptr<grpc::Channel>& channel, int id,
               uint64_t* sequence, std::mt19937_64& rng,
               std::optional<v1::AddVolumeRequest>* lost_add,
               std::vector<std::string>* failures) {
    auto stub = v1::VolumePoolService::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(&context, kTortureRpcTimeout);
    // 40% adds of 1-4 volumes, 40% removes of 1-4, 20% inspects (half of
    // them verifying, without a lock: ABORTED when the others kept the
    // stack moving through every walk).
    const uint64_t pick = rng() % 10;
    if (pick < 4) {
      v1::AddVolumeRequest request = AddRequest(kPool, 1 + rng() % 4);
      const std::string info = absl::StrCat("c", id, "-", ++*sequence);
      request.set_info(info);
      request.set_request_id(NewRequestId(rng));
      v1::AddVolumeResponse response;
      const grpc::Status s = stub->AddVolume(&context, request, &response);
      if (s.ok()) {
        std::vector<uint64_t> indices(response.volume_indices().begin(),
                                      response.volume_indices().end());
        if (indices.size() != request.count()) {
          failures->push_back(absl::StrCat("add '", info, "' of ",
                                           request.count(), " returned ",
                                           indices.size(), " indices"));
        }
        ledger_->AddAcked(info, request.count(), std::move(indices));
      } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ledger_->AddFailed(info, request.count());  // the pool is full
      } else if (LostToTheKill(s)) {
        ledger_->AddUnknown(info, request.count());
        *lost_add = request;
        return true;
      } else {
        ledger_->AddUnknown(info, request.count());
        failures->push_back(
            absl::StrCat("add: ", s.error_code(), " ", s.error_message()));
      }
    } else if (pick < 8) {
      v1::RemoveVolumeRequest request;
      request.set_pool(kPool);
      request.set_count(1 + rng() % 4);
      v1::RemoveVolumeResponse response;
      const grpc::Status s = stub->RemoveVolume(&context, request, &response);
      if (s.ok()) {
        ledger_->RemoveAcked(response, failures);
      } else if (LostToTheKill(s)) {
        ledger_->RemoveLost(request.count());
        return true;
      } else if (s.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
        // FAILED_PRECONDITION: no empty volume (all in use or none added).
        ledger_->RemoveLost(request.count());
        failures->push_back(
            absl::StrCat("remove: ", s.error_code(), " ", s.error_message()));
      }
    } else {
      v1::InspectRequest request;
      request.set_pool(kPool);
      request.set_include_volumes(rng() % 2 == 0);
      request.set_verify(rng() % 2 == 0);
      v1::InspectResponse response;
      const grpc::Status s = stub->Inspect(&context, request, &response);
      if (s.ok()) {
        ledger_->Inspected();
        if (request.verify() && !response.verify_result().ok()) {
          failures->push_back(absl::StrCat("verify failed: ",
                                           response.verify_result().message()));
        }
        for (const v1::Volume& v : response.volumes()) {
          if (!v.corruption().empty()) {
            failures->push_back(absl::StrCat("volume ", v.index(),
                                             " corrupt: ", v.corruption()));
          }
        }
      } else if (LostToTheKill(s)) {
        return true;
      } else if (!(request.verify() &&
                   s.error_code() == grpc::StatusCode::ABORTED)) {
        failures->push_back(
            absl::StrCat("inspect: ", s.error_code(), " ", s.error_message()));
      }
    }
    return false;
  }

  Ledger* ledger_;
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int lost_ ABSL_GUARDED_BY(mu_) = 0;  // calls lost to this server
  uint64_t ops_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
};

// DataPlanes keeps kDataPlanes data_plane processes running on the pool:
// each runs until it has acquired (and written, checked and released) a
// fixed number of volumes, and is then started again, so joins happen
// across restarts as well as before them. Finish stops starting new ones
// and waits for the running ones to end on their own (a killed data plane
// would take the volumes it holds with it: the pool has no leases).
class DataPlanes {
 public:
  explicit DataPlanes(const std::string& dir) {
    for (int id = 0; id < kDataPlanes; ++id) {
      threads_.emplace_back([this, dir] { Run(dir); });
    }
  }
  ~DataPlanes() { Finish(); }

  void Finish() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  uint64_t runs() const { return runs_.load(); }
  uint64_t acquires() const { return acquires_.load(); }
  std::vector<std::string> TakeFailures() {
    absl::MutexLock lock(&mu_);
    return std::exchange(failures_, {});
  }

 private:
  void Run(const std::string& dir) {
    while (!stop_.load()) {
      const CommandResult r =
          RunCommand({GROOVE_DATA_PLANE_BIN, "--data-dir", dir, "--pool", kPool,
                      "--hold", "2", "--bytes", "4096", "--acquires", "400"},
                     "", absl::Seconds(120));
      ++runs_;
      const std::string out = r.out + r.err;
      const size_t at = out.find("acquired=");
      uint64_t acquired = 0;
      if (at != std::string::npos) {
        (void)absl::SimpleAtoi(out.substr(at + 9, out.find(' ', at) - at - 9),
                               &acquired);
      }
      acquires_ += acquired;
      if (r.exit_code != 0) {
        absl::MutexLock lock(&mu_);
        failures_.push_back(absl::StrCat("data_plane exited ", r.exit_code,
                                         r.timed_out ? " (timed out)" : "",
                                         ": ", out));
        return;
      }
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> runs_{0};
  std::atomic<uint64_t> acquires_{0};
  absl::Mutex mu_;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
};

// ServerVolumes reads every volume of the pool (index -> info), failing
// the test on a corrupt one.
std::map<uint64_t, std::string> ServerVolumes(Stub& stub,
                                              v1::PoolSummary* summary) {
  const Snapshot snapshot = TakeSnapshot(stub, kPool);
  *summary = snapshot.summary;
  std::map<uint64_t, std::string> volumes;
  for (const v1::Volume& v : snapshot.volumes) {
    EXPECT_EQ(v.corruption(), "") << "volume " << v.index();
    EXPECT_TRUE(volumes.emplace(v.index(), v.info()).second)
        << "index " << v.index() << " listed twice";
  }
  return volumes;
}

// CheckRecovered runs the checks of a freshly restarted server: recovery
// logged, verify passes, the volumes agree with the ledger, the store
// holds exactly their memory.
void CheckRecovered(ServerProcess& server, const std::string& store_path,
                    Ledger* ledger, uint64_t iteration) {
  SCOPED_TRACE(absl::StrCat("after restart ", iteration));
  EXPECT_EQ(server.LogCount({"event=pool_recovered", "pool=t"}) +
                server.LogCount({"event=pool_created", "pool=t"}),
            1u)
      << "no recovery logged";
  auto stub = server.Stub();
  v1::InspectRequest verify;
  verify.set_pool(kPool);
  verify.set_verify(true);
  v1::InspectResponse verified;
  // The data planes keep acquiring: a verify they overtake on every walk is
  // ABORTED (it found nothing wrong) and is asked again.
  grpc::Status s;
  for (int tries = 0; tries < 100; ++tries) {
    s = Inspect(*stub, verify, &verified);
    if (s.error_code() != grpc::StatusCode::ABORTED) break;
  }
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(verified.verify_result().ok())
      << verified.verify_result().message();
  v1::PoolSummary summary;
  const std::map<uint64_t, std::string> volumes =
      ServerVolumes(*stub, &summary);
  EXPECT_EQ(summary.volumes_mapped(), volumes.size());
  std::vector<std::string> failures;
  ledger->Check(volumes, &failures);
  for (const std::string& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(AllocatedBytes(store_path),
            static_cast<int64_t>(volumes.size() * kVolumeBytes))
      << "the volume store holds memory no volume accounts for";
}

TEST(ServerCrashTortureTest, KilledAtRandomInstantsLosesAndLeaksNothing) {
  TempDir dir;
  const std::string store_path =
      absl::StrCat(dir.path(), "/", kPool, ".volumes");
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  const uint64_t iterations = Iterations();
  Ledger ledger;
  const absl::Time began = absl::Now();

  // The first server creates the pool; the data planes join it.
  auto server = ServerProcess::Start(ServerArgs(dir.path()));
  ASSERT_NE(server, nullptr);
  ASSERT_NO_FATAL_FAILURE(CheckRecovered(*server, store_path, &ledger, 0));
  DataPlanes data_planes(dir.path());
  Clients clients(&ledger, seed);

  uint64_t kills = 0, kills_while_starting = 0;
  for (uint64_t it = 1; it <= iterations; ++it) {
    if (server == nullptr) {
      // Sometimes kill a server while it opens and recovers the pool,
      // before it listens: at its first log line, or after recovery.
      if (rng() % 10 == 0) {
        auto starting = ServerProcess::Launch(ServerArgs(dir.path()));
        const char* at =
            rng() % 2 == 0 ? "event=starting" : "event=pool_recovered";
        ASSERT_TRUE(starting->WaitForLog(at, absl::Seconds(30)).has_value())
            << starting->LogText();
        starting->Kill();
        ++kills;
        ++kills_while_starting;
      }
      server = ServerProcess::Start(ServerArgs(dir.path()));
      ASSERT_NE(server, nullptr) << "restart " << it;
      ASSERT_NO_FATAL_FAILURE(CheckRecovered(*server, store_path, &ledger, it));
      if (::testing::Test::HasFailure()) break;
    }
    // Let the clients run, then kill the server after a random number of
    // calls (sometimes none: right as it starts serving).
    const uint64_t start = clients.ops();
    clients.Resume(server->channel());
    const uint64_t target = start + (rng() % 8 == 0 ? 0 : rng() % 24);
    ASSERT_TRUE(clients.WaitForOps(target, absl::Seconds(60)))
        << "clients made no progress in 60 s (iteration " << it << ")";
    EXPECT_EQ(clients.lost(), 0)
        << "calls failed while the server was up (iteration " << it << ")";
    // New calls would only fail against a dead server and blur what the
    // kill interrupted: hold them, and kill under the calls in flight.
    clients.Hold();
    server->Signal(SIGKILL);
    EXPECT_EQ(server->WaitForExit(), -1) << "the server exited on its own";
    ++kills;
    server.reset();
    clients.WaitIdle();
    for (const std::string& f : clients.TakeFailures()) {
      ADD_FAILURE() << "iteration " << it << ": " << f;
    }
    for (const std::string& f : data_planes.TakeFailures()) {
      ADD_FAILURE() << "iteration " << it << ": " << f;
    }
    if (::testing::Test::HasFailure()) break;
  }
  ASSERT_FALSE(::testing::Test::HasFailure());

  // The last restart: check it, give the data planes volumes to finish
  // with, and wait for them (the previous server may have died holding
  // the pool's lock; recovery released it).
  server = ServerProcess::Start(ServerArgs(dir.path()));
  ASSERT_NE(server, nullptr);
  ASSERT_NO_FATAL_FAILURE(
      CheckRecovered(*server, store_path, &ledger, iterations + 1));
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  const grpc::Status s = Add(*stub, AddRequest(kPool, 2, "final"), &added);
  if (s.ok()) {
    ledger.AddAcked(
        "final", 2,
        {added.volume_indices().begin(), added.volume_indices().end()});
  } else {
    // Full: there are volumes to acquire anyway.
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << s.error_message();
  }
  data_planes.Finish();
  for (const std::string& f : data_planes.TakeFailures()) ADD_FAILURE() << f;

  // Remove everything; then nothing may be left, in the pool or the store.
  v1::PoolSummary summary;
  for (int round = 0; round < 10; ++round) {
    v1::RemoveVolumeResponse removed;
    const grpc::Status r = Remove(*stub, kPool, kMaxVolumes, &removed);
    if (r.error_code() == grpc::StatusCode::FAILED_PRECONDITION) break;
    ASSERT_TRUE(r.ok()) << r.error_message();
    std::vector<std::string> failures;
    ledger.RemoveAcked(removed, &failures);
    for (const std::string& f : failures) ADD_FAILURE() << f;
  }
  const std::map<uint64_t, std::string> left = ServerVolumes(*stub, &summary);
  std::vector<std::string> failures;
  ledger.Check(left, &failures);
  for (const std::string& f : failures) ADD_FAILURE() << f;
  EXPECT_TRUE(left.empty()) << left.size() << " volumes are left, "
                            << summary.volumes_in_use() << " in use";
  EXPECT_EQ(summary.volumes_mapped(), 0u);
  EXPECT_EQ(AllocatedBytes(store_path), 0) << "the store leaked blocks";
  EXPECT_EQ(server->Stop(), 0);

  const Ledger::Totals t = ledger.totals();
  std::printf(
      "torture: %llu iterations, %llu SIGKILLs (%llu while starting) in "
      "%.1f s; client calls %llu: adds acked %llu, refused %llu, lost %llu "
      "(%llu of them had happened), repeated with their request_id: "
      "%llu answered with the lost add's volumes, %llu added then; "
      "removes acked %llu, lost %llu; "
      "inspects %llu; volumes checked %llu; data-plane runs %llu, "
      "acquires %llu\n",
      static_cast<unsigned long long>(iterations),
      static_cast<unsigned long long>(kills),
      static_cast<unsigned long long>(kills_while_starting),
      absl::ToDoubleSeconds(absl::Now() - began),
      static_cast<unsigned long long>(clients.ops()),
      static_cast<unsigned long long>(t.adds_acked),
      static_cast<unsigned long long>(t.adds_failed),
      static_cast<unsigned long long>(t.adds_unknown),
      static_cast<unsigned long long>(t.lost_adds_happened),
      static_cast<unsigned long long>(t.repeats_replayed),
      static_cast<unsigned long long>(t.repeats_added),
      static_cast<unsigned long long>(t.removes_acked),
      static_cast<unsigned long long>(t.removes_lost),
      static_cast<unsigned long long>(t.inspects),
      static_cast<unsigned long long>(t.volumes_checked),
      static_cast<unsigned long long>(data_planes.runs()),
      static_cast<unsigned long long>(data_planes.acquires()));
  EXPECT_GE(kills, iterations);
  EXPECT_GT(t.adds_acked, 0u);
  EXPECT_GT(t.removes_acked, 0u);
  EXPECT_GT(data_planes.acquires(), 0u);
  // A run of the default length loses dozens of adds to kills, about half
  // of them after they happened: their repeats must have been answered
  // (a shorter run, GROOVE_TORTURE_ITERATIONS, may lose none).
  if (iterations >= 50) {
    EXPECT_GT(t.repeats_replayed, 0u);
    EXPECT_GT(t.repeats_added, 0u);
  }
}

}  // namespace
}  // namespace groove::testing
