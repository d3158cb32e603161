// groove/server/request_log.h: AddVolume's request_id deduplication.
//
// A client that sets AddVolumeRequest.request_id may retry a call whose
// response it lost. The RequestLog remembers, per id:
//   - while the first call runs: that it is in progress (a repeat gets
//     ABORTED);
//   - after it succeeded: its arguments and its response (a repeat with the
//     same arguments gets that response again and adds nothing; one with
//     other arguments gets INVALID_ARGUMENT).
// A failed call is forgotten, so its retry runs afresh.
//
// The window: the kDefaultCapacity most recent successful ids, across all
// pools, in memory. The oldest is forgotten first; every id is forgotten
// when the server restarts (docs/SERVER.md). Ids are compared
// case-insensitively (UUID hex digits).
//
// Example:
//   RequestLog::Claim claim = log.Start(request);
//   switch (claim.outcome) { case RequestLog::Outcome::kRun: ... }
//   ...
//   log.Succeeded(request, response);   // or log.Failed(request)

#ifndef GROOVE_SERVER_REQUEST_LOG_H_
#define GROOVE_SERVER_REQUEST_LOG_H_

#include <cstddef>
#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "groove/v1/volume_pool.pb.h"

namespace groove::server {

// ValidateRequestId returns OK for "" (no deduplication) and for a UUID in
// its 36-character text form (8-4-4-4-12 hex digits, any case), else
// INVALID_ARGUMENT with an example of the right form.
absl::Status ValidateRequestId(absl::string_view request_id);

class RequestLog {
 public:
  static constexpr size_t kDefaultCapacity = 4096;

  enum class Outcome {
    kRun,         // new id (now in progress): run the call, then report it
    kReplay,      // done before with the same arguments: return `response`
    kInProgress,  // the first call with this id still runs: ABORTED
    kConflict,    // seen with other arguments: INVALID_ARGUMENT
  };
  struct Claim {
    Outcome outcome = Outcome::kRun;
    v1::AddVolumeResponse response;  // kReplay only
  };

  // `capacity`: how many successful ids are remembered (at least 1).
  explicit RequestLog(size_t capacity = kDefaultCapacity);

  // Start looks `request`'s id up and, when it is new, records it as in
  // progress. REQUIRES: request.request_id() is non-empty and passed
  // ValidateRequestId. After kRun the caller must call exactly one of
  // Succeeded or Failed with the same request.
  // Thread safety: safe to call concurrently; holds the log's mutex for an
  // O(1) map lookup (plus copying a replayed response), never across a
  // call into the core. Cost: O(request size).
  Claim Start(const v1::AddVolumeRequest& request);

  // Succeeded remembers `response` for the request's id, forgetting the
  // oldest remembered id when capacity is reached. Thread safety: as Start.
  void Succeeded(const v1::AddVolumeRequest& request,
                 const v1::AddVolumeResponse& response);

  // Failed forgets the request's id. Thread safety: as Start.
  void Failed(const v1::AddVolumeRequest& request);

 private:
  struct Entry {
    v1::AddVolumeRequest request;  // the first call's arguments
    bool done = false;
    v1::AddVolumeResponse response;  // when done
  };

  const size_t capacity_;
  absl::Mutex mu_;
  // Key: the lower-cased id. Holds in-progress and remembered ids.
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // The remembered (done) ids, oldest first: at most capacity_.
  std::deque<std::string> done_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_REQUEST_LOG_H_
