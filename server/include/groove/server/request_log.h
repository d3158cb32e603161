// groove/server/request_log.h: AddVolume's request_id deduplication, without
// locks.
//
// A client that sets AddVolumeRequest.request_id may retry a call whose
// response it lost. The RequestLog remembers, per id:
//   - while the first call runs: that it is in progress (a repeat gets
//     ABORTED);
//   - after it succeeded: its arguments and its response (a repeat with the
//     same arguments gets that response again and adds nothing; one with
//     other arguments gets INVALID_ARGUMENT naming the first argument that
//     differs, with both values: the log keeps the whole first request).
// A failed call is forgotten, so its retry runs afresh.
//
// The window. Ids hash into buckets of kWays entries; a new id that lands in
// a full bucket replaces the bucket's oldest completed id. So a completed id
// is remembered at least until kWays newer ids have landed in its bucket:
// with the default 2,048 buckets that is, on average, about 6,000 newer ids
// across all pools (docs/SERVER.md). An id in progress is never forgotten;
// when every entry of its bucket is in progress, a new id gets kBusy
// (UNAVAILABLE: retry). Ids are compared as 128-bit numbers, so case does
// not matter.
//
// Restarts. This log is memory only; what survives a restart (or a crash)
// is each pool's request journal (groove/request_journal.h), in which the
// core records every add with an id as part of the add's commit. At
// start-up the server gives the log the adds the journals hold
// (RememberNewest), so a repeat after a restart is answered like one
// before it (from the journal's window: the last RequestJournal::kEntries
// adds with ids per pool).
//
// Why lock-free: every AddVolume with an id passes through this one
// server-wide object, and no request may wait on a lock another request
// holds (docs/SERVER.md, "No blocking"). Each bucket is one atomic word
// holding a version and the handles of up to kWays records; records live in
// a fixed arena and are reference-counted. Start reads the bucket, compares
// ids, and inserts a new record with one CAS of the bucket word, so two
// concurrent calls with the same new id cannot both run: only one CAS from
// the word that lacked the id succeeds. The bucket's version makes that CAS
// fail whenever the bucket changed in between (ABA would need 2^16 changes
// of one bucket during one Start). Records are reused only when their
// count drops to zero, so a reader holding a reference can copy a replayed
// response while other threads evict it.
//
// Example:
//   RequestLog::Claim claim = log.Start(request);
//   switch (claim.outcome) { case RequestLog::Outcome::kRun: ... }
//   ...
//   log.Succeeded(claim.ticket, response);   // or log.Failed(claim.ticket)

#ifndef GROOVE_SERVER_REQUEST_LOG_H_
#define GROOVE_SERVER_REQUEST_LOG_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "groove/request_journal.h"
#include "groove/v1/volume_pool.pb.h"

namespace groove::server {

// ValidateRequestId returns OK for "" (no deduplication) and for a UUID in
// its 36-character text form (8-4-4-4-12 hex digits, any case), else
// INVALID_ARGUMENT with an example of the right form.
absl::Status ValidateRequestId(absl::string_view request_id);

// ParseRequestId returns the 128 bits of a UUID: its 32 hex digits, the
// first 16 in `high`. REQUIRES: request_id passed ValidateRequestId and is
// not empty.
RequestKey ParseRequestId(absl::string_view request_id);

// FormatRequestId is ParseRequestId's inverse: the UUID's text form, in
// lower case ("123e4567-e89b-42d3-a456-426614174000").
std::string FormatRequestId(const RequestKey& key);

class RequestLog;

// RecordedPoolAdd is an add from a pool's request journal
// (NamedPool::TakeRecordedAdds), with its pool's name and the summary to
// answer a repeat with.
struct RecordedPoolAdd {
  std::string pool;
  RecordedAdd add;
  v1::PoolSummary summary;
};

// RememberNewest gives `log` the adds of `adds` (every pool's, at start-up)
// as calls that succeeded (RequestLog::Remember), keeping for each request
// id only the newest add (by RecordedAdd::recorded_unix_ns): an id the
// log had forgotten may have been used again, in the same pool or another,
// and the answer after the restart must be the one given last. Remembered
// oldest first, so the log forgets the oldest first. Returns how many it
// remembered. REQUIRES: no call in flight on `log` (start-up).
size_t RememberNewest(std::vector<RecordedPoolAdd> adds, RequestLog& log);

class RequestLog {
 public:
  static constexpr size_t kWays = 3;                 // entries per bucket
  static constexpr size_t kDefaultBuckets = 2048;    // 6,144 ids in all
  static constexpr size_t kMaxBuckets = 10000;       // handles fit 16 bits

  enum class Outcome {
    kRun,         // new id (now in progress): run the call, then report it
    kReplay,      // done before with the same arguments: return `response`
    kInProgress,  // the first call with this id still runs: ABORTED
    kConflict,    // seen with other arguments: INVALID_ARGUMENT
    kBusy,        // every entry of the id's bucket is in progress: UNAVAILABLE
  };
  // Ticket names the entry a kRun claim created; pass it to exactly one of
  // Succeeded or Failed.
  struct Ticket {
    uint32_t bucket = 0;
    uint32_t record = 0;
  };
  struct Claim {
    Outcome outcome = Outcome::kRun;
    Ticket ticket;                   // kRun only
    v1::AddVolumeResponse response;  // kReplay only
    // kConflict only: the first argument (pool, count, first_index, info,
    // in that order) that differs from the first call's, with both values:
    // "count was 2, is 3 now" (text cut to 64 bytes, escaped).
    std::string conflict;
  };

  // TestHook is called inside Start after it has read the bucket and
  // before it publishes a new id (tests stop a thread there to show that
  // others are not blocked).
  using TestHook = void (*)(void* arg);

  // `buckets` in [1, kMaxBuckets]: the log remembers up to kWays * buckets
  // ids.
  explicit RequestLog(size_t buckets = kDefaultBuckets);
  // REQUIRES: no call in flight.
  ~RequestLog();

  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  // Start looks `request`'s id up and, when it is new, records it as in
  // progress (kRun) with a copy of the request's arguments.
  // REQUIRES: request.request_id() passed ValidateRequestId and is not
  // empty. After kRun the caller must call exactly one of Succeeded or
  // Failed with claim.ticket.
  // Thread safety: lock-free: safe to call concurrently with every other
  // method; a thread stopped anywhere inside it never keeps another from
  // completing. Cost: O(kWays) plus copying the request (new id) or the
  // response (replay); a retry loop runs again only when another thread
  // changed the same bucket meanwhile.
  Claim Start(const v1::AddVolumeRequest& request);

  // Succeeded remembers `response` for the ticket's id: later Starts with
  // the same id and arguments replay it. Thread safety: lock-free (one
  // release store and one atomic decrement). Cost: copying `response`.
  void Succeeded(const Ticket& ticket, const v1::AddVolumeResponse& response);

  // Remember records a call that succeeded before this log existed (an add
  // from a pool's request journal, at start-up) as if it had run here:
  // Start, then Succeeded. Returns false, remembering nothing, when the id
  // is known already (another journal's add with the same id: the first
  // remembered stays) or its bucket is full of calls in progress.
  // REQUIRES: as Start. Thread safety and cost: as Start and Succeeded.
  bool Remember(const v1::AddVolumeRequest& request,
                const v1::AddVolumeResponse& response);

  // Failed forgets the ticket's id, so that its retry runs afresh.
  // Thread safety: lock-free. Cost: O(1) plus retries of one CAS.
  void Failed(const Ticket& ticket);

  // remembered_capacity is kWays * buckets.
  size_t remembered_capacity() const { return kWays * bucket_count_; }

  // Contents counts the ids a log holds.
  struct Contents {
    size_t remembered = 0;   // succeeded: a repeat is replayed
    size_t in_progress = 0;  // started, not yet Succeeded or Failed
  };
  // Verify checks the whole log: each bucket names distinct records, in
  // range, whose ids are distinct and hash to that bucket, each with its
  // first request; a record's references are its bucket's plus, while its
  // id is in progress, the runner's, and a record no bucket names has
  // none (a leaked reference would keep it from ever being reused); a
  // completed record has a response and a completion sequence already
  // handed out, one in progress neither.
  // Errors: INTERNAL naming the bucket or record and what is wrong.
  // REQUIRES: no other call on this log runs meanwhile (ids may be in
  // progress between calls). Thread safety: none; a test's check. Cost:
  // O(buckets * kWays + records).
  absl::StatusOr<Contents> Verify() const;

  void set_test_hook(TestHook hook, void* arg) {
    test_hook_ = hook;
    test_hook_arg_ = arg;
  }

 private:
  struct Record;

  // Bucket word: bits 0..47 hold kWays 16-bit handles (record index + 1;
  // 0 = empty entry), bits 48..63 a version bumped by every change.
  static uint16_t HandleAt(uint64_t word, size_t way) {
    return static_cast<uint16_t>(word >> (16 * way));
  }
  static uint64_t WithHandle(uint64_t word, size_t way, uint16_t handle);

  uint32_t BucketOf(uint64_t id_high, uint64_t id_low) const;
  // AllocateRecord claims a free record (references = 2: the bucket's and
  // the runner's) or returns -1 when all are referenced.
  int64_t AllocateRecord();
  // TryReference adds a reference unless the record is free.
  bool TryReference(Record& record);
  void Unreference(Record& record);

  const size_t bucket_count_;
  const size_t record_count_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::unique_ptr<Record[]> records_;
  std::atomic<uint64_t> allocation_cursor_{0};  // where the next scan starts
  std::atomic<uint64_t> next_sequence_{1};      // age of completed ids
  TestHook test_hook_ = nullptr;
  void* test_hook_arg_ = nullptr;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_REQUEST_LOG_H_
