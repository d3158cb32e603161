// tests/support/pool_workload.h: one party's random use of a shared pool.
//
// PoolWorker plays a thread or a process that uses a pool the way the
// product does: it acquires and releases volumes (stamping each acquired
// volume's data region with its own id and checking the stamp on release,
// so two parties holding one volume at once is caught), removes volumes
// (which it then owns, as "not a volume") and adds the volumes it owns back.
// Every outcome other than success or kEmpty is recorded as a failure.
// It tallies what it did so a test can compare the pool's counters.

#ifndef GROOVE_TESTS_SUPPORT_POOL_WORKLOAD_H_
#define GROOVE_TESTS_SUPPORT_POOL_WORKLOAD_H_

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "groove/volume_pool.h"

namespace groove::testing {

// WorkerTally counts a worker's successful operations.
struct WorkerTally {
  uint64_t adds = 0;
  uint64_t removes = 0;
  uint64_t acquires = 0;
  uint64_t releases = 0;
  uint64_t failures = 0;  // unexpected results; 0 in a passing run
  char first_failure[160] = {};
};

class PoolWorker {
 public:
  // `owned` are indices this worker starts out owning (not volumes).
  PoolWorker(VolumePool pool, uint64_t worker_id, uint64_t seed,
             std::vector<uint64_t> owned)
      : pool_(pool), id_(worker_id), rng_(seed), owned_(std::move(owned)) {}

  // Step performs one random operation.
  void Step() {
    const uint64_t dice = rng_() % 100;
    if (dice < 40) {
      AcquireOne();
    } else if (dice < 80) {
      ReleaseOne();
    } else if (dice < 90) {
      RemoveOne();
    } else {
      AddOne();
    }
  }

  // Finish releases every volume held and adds back every volume owned, so
  // that a quiescent pool holds every volume on its stack.
  void Finish() {
    while (!held_.empty()) ReleaseOne();
    while (!owned_.empty()) AddOne();
  }

  const WorkerTally& tally() const { return tally_; }
  const std::vector<VolumeHeader*>& held() const { return held_; }
  const std::vector<uint64_t>& owned() const { return owned_; }

 private:
  struct Stamp {
    uint64_t worker_id;
    uint64_t sequence;
  };

  void Fail(const char* what, PoolError err) {
    if (tally_.failures++ == 0) {
      std::snprintf(tally_.first_failure, sizeof(tally_.first_failure),
                    "worker %llu: %s: %s",
                    static_cast<unsigned long long>(id_), what,
                    std::string(PoolErrorName(err)).c_str());
    }
  }

  void AcquireOne() {
    VolumeHeader* v = nullptr;
    const PoolError err = pool_.Acquire(&v);
    if (err == PoolError::kEmpty) return;
    if (err != PoolError::kSuccess) return Fail("acquire", err);
    if (v->magic.load(std::memory_order_relaxed) != kVolumeMagic) {
      return Fail("acquired volume is not marked in use", err);
    }
    const Stamp stamp{id_, ++sequence_};
    std::memcpy(VolumeData(v), &stamp, sizeof(stamp));
    held_.push_back(v);
    ++tally_.acquires;
  }

  void ReleaseOne() {
    if (held_.empty()) return;
    const size_t pick = rng_() % held_.size();
    VolumeHeader* v = held_[pick];
    Stamp stamp;
    std::memcpy(&stamp, VolumeData(v), sizeof(stamp));
    if (stamp.worker_id != id_) {
      return Fail("a held volume was written by another party",
                  PoolError::kCorrupt);
    }
    const PoolError err = pool_.Release(v);
    if (err != PoolError::kSuccess) return Fail("release", err);
    held_[pick] = held_.back();
    held_.pop_back();
    ++tally_.releases;
  }

  void RemoveOne() {
    VolumeHeader* v = nullptr;
    const PoolError err = pool_.Remove(&v);
    if (err == PoolError::kEmpty) return;
    if (err != PoolError::kSuccess) return Fail("remove", err);
    const uint64_t index = pool_.IndexOf(v);
    if (v->magic.load(std::memory_order_relaxed) != kVolumeNotAVolume ||
        v->idx.load(std::memory_order_relaxed) != index) {
      return Fail("removed volume header", PoolError::kCorrupt);
    }
    owned_.push_back(index);
    ++tally_.removes;
  }

  void AddOne() {
    if (owned_.empty()) return;
    const size_t pick = rng_() % owned_.size();
    const uint64_t index = owned_[pick];
    const std::string info = "worker " + std::to_string(id_);
    const PoolError err = pool_.Add(index, 1, info);
    if (err != PoolError::kSuccess) return Fail("add", err);
    owned_[pick] = owned_.back();
    owned_.pop_back();
    ++tally_.adds;
  }

  VolumePool pool_;
  uint64_t id_;
  std::mt19937_64 rng_;
  std::vector<uint64_t> owned_;
  std::vector<VolumeHeader*> held_;
  uint64_t sequence_ = 0;
  WorkerTally tally_;
};

// StackIndices walks the stack of a quiescent (or locked) pool and returns
// its indices, top first. REQUIRES: Verify passed.
inline std::vector<uint64_t> StackIndices(const VolumePool& pool) {
  std::vector<uint64_t> indices;
  for (uint64_t i = pool.PeekTop(); i != kNullIndex;
       i = pool.VolumeAt(i)->next.load(std::memory_order_relaxed)) {
    indices.push_back(i);
  }
  return indices;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_POOL_WORKLOAD_H_
