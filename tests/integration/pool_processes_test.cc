// Named pools across processes, as deployed: an owner process adds and
// removes volumes while data-plane processes join the pool by directory and
// name and acquire and release volumes; and the owner is killed with
// SIGKILL at random instants and restarted on the same data directory,
// over and over, while a data-plane process keeps its join.
//
// GROOVE_TORTURE_ITERATIONS (default 100) sets how many times the owner is
// killed; script/torture-style longer runs just raise it.

#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "groove/named_pool.h"
#include "gtest/gtest.h"
#include "support/pool_memory.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::TempDir;

constexpr uint64_t kVolumeBytes = 16 << 10;
constexpr uint64_t kMaxVolumes = 48;

PoolConfig Config() {
  PoolConfig config;
  config.name = "shared";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = kVolumeBytes;
  config.max_volumes = kMaxVolumes;
  return config;
}

// Shared is the test's own memory shared by all its processes: the owner's
// log of acknowledged operations, progress counters, and failure reports.
struct Shared {
  // acked[i] is 1 when the last acknowledged operation left volume i
  // present (added and not removed since), else 0.
  std::atomic<uint8_t> acked[kMaxVolumes];
  // The owner's operation in flight: 0 none, 1 add, 2 remove; and its count.
  std::atomic<int> in_flight_op;
  std::atomic<uint64_t> in_flight_count;
  std::atomic<uint64_t> owner_ops;        // operations completed, all owners
  std::atomic<uint64_t> data_plane_ops;   // acquire/release pairs done
  std::atomic<int> stop;                  // data-plane processes: finish
  std::atomic<uint64_t> verifies_ok;      // owners' verifies after recovery
  std::atomic<uint64_t> verifies_overtaken;  // ... that were ABORTED
  std::atomic<int> failures;
  char first_failure[256];

  void Fail(const std::string& what) {
    if (failures.fetch_add(1) == 0) {
      std::snprintf(first_failure, sizeof(first_failure), "%s", what.c_str());
    }
  }
};

Shared* MapShared() {
  void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  return new (p) Shared();
}

std::set<uint64_t> PresentIndices(const NamedPool& pool, Shared* shared) {
  std::set<uint64_t> present;
  uint64_t next = 0;
  for (const VolumeEntry& e : pool.ListVolumes(0, kMaxVolumes, &next)) {
    if (e.status == VolumeStatus::kCorrupt) {
      shared->Fail("volume " + std::to_string(e.index) + " is corrupt");
    }
    present.insert(e.index);
  }
  return present;
}

// CheckAgainstLog compares the recovered pool with the log of acknowledged
// operations (allowing the one operation in flight to have happened or
// not), then makes the log agree with the pool.
void CheckAgainstLog(const NamedPool& pool, Shared* shared) {
  const std::set<uint64_t> present = PresentIndices(pool, shared);
  std::set<uint64_t> acked;
  for (uint64_t i = 0; i < kMaxVolumes; ++i) {
    if (shared->acked[i].load()) acked.insert(i);
  }
  const int op = shared->in_flight_op.load();
  const uint64_t count = shared->in_flight_count.load();
  uint64_t gained = 0, lost = 0;
  for (uint64_t i : present) gained += !acked.count(i);
  for (uint64_t i : acked) lost += !present.count(i);
  const bool ok = (op == 0 && gained == 0 && lost == 0) ||
                  (op == 1 && lost == 0 && gained <= count) ||
                  (op == 2 && gained == 0 && lost <= count);
  if (!ok) {
    shared->Fail("after recovery: op " + std::to_string(op) + " count " +
                 std::to_string(count) + " gained " + std::to_string(gained) +
                 " lost " + std::to_string(lost));
  }
  // The data planes go on acquiring while this verify walks (it pauses
  // nobody); when they kept the stack moving through every walk it is
  // ABORTED, which finds nothing wrong: the quiescent check at the end
  // verifies for sure.
  absl::StatusOr<VerifyReport> report = pool.Verify();
  if (report.ok()) {
    shared->verifies_ok.fetch_add(1);
  } else if (report.status().code() == absl::StatusCode::kAborted) {
    shared->verifies_overtaken.fetch_add(1);
  } else {
    shared->Fail(std::string(report.status().message()));
  }
  for (uint64_t i = 0; i < kMaxVolumes; ++i) {
    shared->acked[i].store(present.count(i) ? 1 : 0);
  }
  shared->in_flight_op.store(0);
}

// OwnerMain: open (recover) the pool, check it against the log, then add
// and remove at random until killed (or `max_ops` operations).
[[noreturn]] void OwnerMain(const std::string& dir, Shared* shared,
                            uint64_t seed, uint64_t max_ops) {
  auto pool = NamedPool::Open(dir, Config());
  if (!pool.ok()) {
    shared->Fail("owner open: " + pool.status().ToString());
    _exit(1);
  }
  CheckAgainstLog(**pool, shared);
  std::mt19937_64 rng(seed);
  for (uint64_t n = 0; n < max_ops; ++n) {
    const bool add = rng() % 2 == 0;
    const uint64_t count = 1 + rng() % 3;
    shared->in_flight_count.store(count);
    shared->in_flight_op.store(add ? 1 : 2);
    if (add) {
      auto added = (*pool)->AddVolumes(count, std::nullopt, "torture");
      if (added.ok()) {
        for (uint64_t i : *added) shared->acked[i].store(1);
      } else if (added.status().code() !=
                 absl::StatusCode::kResourceExhausted) {
        shared->Fail("add: " + added.status().ToString());
      }
    } else {
      auto removed = (*pool)->RemoveVolumes(count);
      if (removed.ok()) {
        for (const RemovedVolume& r : *removed) shared->acked[r.index] = 0;
      } else if (removed.status().code() !=
                 absl::StatusCode::kFailedPrecondition) {
        shared->Fail("remove: " + removed.status().ToString());
      }
    }
    shared->in_flight_op.store(0);
    shared->owner_ops.fetch_add(1);
  }
  _exit(0);
}

// DataPlaneMain: join the pool and acquire/release until told to stop,
// stamping each held volume's data and checking the stamp on release (a
// volume freed or handed to someone else under us would fail it).
[[noreturn]] void DataPlaneMain(const std::string& dir, Shared* shared,
                                int id, uint64_t seed) {
  auto join = NamedPool::Join(dir, Config().name);
  if (!join.ok()) {
    shared->Fail("join: " + join.status().ToString());
    _exit(1);
  }
  const VolumePool& pool = (*join)->pool();
  std::mt19937_64 rng(seed);
  std::vector<VolumeHeader*> held;
  uint64_t sequence = 0;
  auto release_one = [&](size_t pick) {
    VolumeHeader* v = held[pick];
    uint64_t stamp[2];
    std::memcpy(stamp, VolumeData(v), sizeof(stamp));
    if (stamp[0] != static_cast<uint64_t>(id)) {
      shared->Fail("data plane " + std::to_string(id) +
                   ": a held volume's data changed under it");
    }
    const PoolError err = pool.Release(v);
    if (err != PoolError::kSuccess) {
      shared->Fail("release: " + std::string(PoolErrorName(err)));
    }
    held[pick] = held.back();
    held.pop_back();
  };
  while (!shared->stop.load(std::memory_order_relaxed)) {
    if (held.size() < 4 && rng() % 2 == 0) {
      VolumeHeader* v = nullptr;
      const PoolError err = pool.Acquire(&v);
      if (err == PoolError::kSuccess) {
        const uint64_t stamp[2] = {static_cast<uint64_t>(id), ++sequence};
        std::memcpy(VolumeData(v), stamp, sizeof(stamp));
        held.push_back(v);
      } else if (err != PoolError::kEmpty) {
        shared->Fail("acquire: " + std::string(PoolErrorName(err)));
      }
    } else if (!held.empty()) {
      release_one(rng() % held.size());
      shared->data_plane_ops.fetch_add(1, std::memory_order_relaxed);
    }
  }
  while (!held.empty()) release_one(held.size() - 1);
  _exit(0);
}

// Spawn runs `body` in a child process that dies with the test (so a
// failed assertion never leaves a data-plane process spinning).
pid_t Spawn(const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    body();
    _exit(0);
  }
  return pid;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Waits (yielding the CPU, bounded in time) until `counter` reaches
// `target` or `owner` has exited on its own. Returns false on timeout.
bool WaitForProgress(const std::atomic<uint64_t>& counter, uint64_t target,
                     pid_t owner) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (counter.load() < target) {
    if (waitpid(owner, nullptr, WNOHANG) == owner) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    sched_yield();
  }
  return true;
}

uint64_t Iterations() {
  const char* env = std::getenv("GROOVE_TORTURE_ITERATIONS");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 100;
}

// Checks the quiescent pool: every volume present exactly once and empty
// on the stack; then removes everything and checks no memory is left.
void ExpectQuiescentAndDrain(const std::string& dir, Shared* shared) {
  auto pool = NamedPool::Open(dir, Config());
  ASSERT_TRUE(pool.ok()) << pool.status();
  CheckAgainstLog(**pool, shared);
  const PoolSummary s = (*pool)->Summary();
  absl::StatusOr<VerifyReport> report = (*pool)->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, s.volumes_mapped);
  EXPECT_EQ((*pool)->recovery().volumes_unresolved, 0u);
  EXPECT_EQ(*(*pool)->AllocatedBytes(), s.volumes_mapped * kVolumeBytes);
  if (s.volumes_mapped > 0) {
    auto removed = (*pool)->RemoveVolumes(s.volumes_mapped);
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_EQ(removed->size(), s.volumes_mapped);
  }
  EXPECT_EQ(*(*pool)->AllocatedBytes(), 0u) << "memory leaked";
}

TEST(PoolProcessesTest, OwnerAddsAndRemovesWhileDataPlanesAcquire) {
  TempDir dir;
  Shared* shared = MapShared();
  { ASSERT_TRUE(NamedPool::Open(dir.path(), Config()).ok()); }
  const uint64_t seed = testing::TestSeed();
  std::vector<pid_t> data_planes;
  for (int id = 1; id <= 2; ++id) {
    data_planes.push_back(Spawn([&, id] {
      DataPlaneMain(dir.path(), shared, id, seed + id);
    }));
  }
  const pid_t owner =
      Spawn([&] { OwnerMain(dir.path(), shared, seed, 3000); });
  const int owner_status = WaitExit(owner);
  EXPECT_TRUE(WIFEXITED(owner_status) && WEXITSTATUS(owner_status) == 0);
  shared->stop.store(1);
  for (pid_t pid : data_planes) {
    const int status = WaitExit(pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_EQ(shared->failures.load(), 0) << shared->first_failure;
  EXPECT_EQ(shared->owner_ops.load(), 3000u);
  EXPECT_GT(shared->data_plane_ops.load(), 0u);
  ExpectQuiescentAndDrain(dir.path(), shared);
  EXPECT_EQ(shared->failures.load(), 0) << shared->first_failure;
}

TEST(PoolProcessesTest, OwnerKilledAtRandomInstantsRecoversEveryTime) {
  TempDir dir;
  Shared* shared = MapShared();
  { ASSERT_TRUE(NamedPool::Open(dir.path(), Config()).ok()); }
  const uint64_t seed = testing::TestSeed();
  std::mt19937_64 rng(seed);
  const pid_t data_plane = Spawn([&] {
    DataPlaneMain(dir.path(), shared, 1, seed + 1);
  });
  const uint64_t iterations = Iterations();
  uint64_t kills = 0;
  for (uint64_t it = 0; it < iterations; ++it) {
    const uint64_t start = shared->owner_ops.load();
    // Sometimes kill during recovery itself (target = start).
    const uint64_t target = start + (rng() % 8 == 0 ? 0 : rng() % 40);
    const pid_t owner = Spawn([&] {
      OwnerMain(dir.path(), shared, seed + 100 + it, 1'000'000);
    });
    ASSERT_TRUE(WaitForProgress(shared->owner_ops, target, owner))
        << "owner made no progress in 30 s";
    kill(owner, SIGKILL);
    const int status = WaitExit(owner);
    if (WIFSIGNALED(status)) ++kills;
    ASSERT_EQ(shared->failures.load(), 0)
        << "iteration " << it << ": " << shared->first_failure;
  }
  {
    // The last owner may have died holding the maintenance lock: a new
    // owner's recovery releases it, so the data plane can give its volumes
    // back and finish.
    auto owner = NamedPool::Open(dir.path(), Config());
    ASSERT_TRUE(owner.ok()) << owner.status();
    CheckAgainstLog(**owner, shared);
    shared->stop.store(1);
    const int status = WaitExit(data_plane);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  std::printf(
      "owner killed %llu times, %llu owner operations, %llu "
      "data-plane pairs; verifies beside the data plane: %llu ok, "
      "%llu overtaken\n",
      static_cast<unsigned long long>(kills),
      static_cast<unsigned long long>(shared->owner_ops.load()),
      static_cast<unsigned long long>(shared->data_plane_ops.load()),
      static_cast<unsigned long long>(shared->verifies_ok.load()),
      static_cast<unsigned long long>(shared->verifies_overtaken.load()));
  EXPECT_EQ(kills, iterations);
  ExpectQuiescentAndDrain(dir.path(), shared);
  EXPECT_EQ(shared->failures.load(), 0) << shared->first_failure;
}

}  // namespace
}  // namespace groove
