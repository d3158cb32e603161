// groove/server/service.h: groove.v1.VolumePoolService, the RPC handlers.
//
// Each handler validates its request, calls the core, records metrics,
// logs errors and finishes (STYLE.md rule 8). It uses gRPC's callback API:
// handlers run on gRPC's threads, which serve every RPC of the server, so
// no handler may wait there for long:
//   - ListPools, Inspect, RemoveVolume and ReclaimVolume call the core
//     inline: reading summaries and headers is wait-free or lock-free, a
//     remove pops (lock-free) and a reclaim CASes one slot, and both punch
//     holes (milliseconds); a remove or reclaim whose call can no longer
//     be answered (its deadline passed, or it was cancelled, before it
//     started) changes nothing (CallGone, GoneRefusal). Inspect with
//     `verify` walks the stack, O(empty volumes), without a lock, one
//     verify per pool at a time (another fails with ABORTED), and stops
//     as soon as its call is gone (VerifyStopped).
//   - AddVolume's core call takes memory from the kernel (seconds per GiB
//     of hugepages), so the handler queues it on the pool's add WorkerPool
//     and returns; a worker calls the core and finishes the RPC.
// With tokens on, Begin authorizes every call first (security.h): a pure
// function of the current TokenTable (one acquire load of the
// LiveTokenTable, which the credentials reloader may replace) and the
// call's metadata.
// No handler takes a lock that another request can hold: the request_id
// log (RequestLog) and the add queue (WorkerPool) are lock-free, the core
// pool is lock-free (Inspect's verify included), and metrics are relaxed
// atomics (docs/SERVER.md, "No blocking").
//
// Example:
//   VolumePoolServiceImpl service(pools, &metrics, &request_log);
//   builder.RegisterService(&service);
//   ...
//   service.StartDraining();  // new calls get UNAVAILABLE

#ifndef GROOVE_SERVER_SERVICE_H_
#define GROOVE_SERVER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "groove/named_pool.h"
#include "groove/server/metrics.h"
#include "groove/server/request_log.h"
#include "groove/server/security.h"
#include "groove/server/worker_pool.h"
#include "groove/v1/volume_pool.grpc.pb.h"

namespace groove::server {

// The per-request maximum of AddVolumeRequest.count and
// RemoveVolumeRequest.count.
inline constexpr uint64_t kMaxVolumesPerRequest = 1024;
// Every add a request may ask for fits in a request journal entry.
static_assert(kMaxVolumesPerRequest <= RequestJournal::kMaxVolumesPerAdd);
// Inspect's page sizes: 0 means kDefaultPageSize; larger than kMaxPageSize
// means kMaxPageSize.
inline constexpr int32_t kDefaultPageSize = 100;
inline constexpr int32_t kMaxPageSize = 1000;

// ToProtoSummary converts the core's summary to the API's.
v1::PoolSummary ToProtoSummary(const PoolSummary& summary);

class VolumePoolServiceImpl final
    : public v1::VolumePoolService::CallbackService {
 public:
  // ServedPool is one pool the service serves. The index in the vector
  // given to the constructor is the pool's index in ServerMetrics.
  struct ServedPool {
    NamedPool* pool;          // the owner's handle
    WorkerPool* add_workers;  // runs this pool's AddVolume core calls
  };

  // QuarantinedPool is a configured pool the server does not serve: its
  // files were found corrupt at start-up (`reason`, a DATA_LOSS status).
  struct QuarantinedPool {
    std::string name;
    absl::Status reason;
  };

  // `quarantined`: configured pools not served (their RPCs fail with
  // DATA_LOSS). `tokens`: when not null, every RPC must carry a bearer
  // token of its current table whose role allows it (security.h,
  // Authorize),
  // checked first, before anything else about the call is looked at or
  // revealed.
  // REQUIRES: the pools, workers, metrics, request log and tokens outlive
  // the service and every RPC it started (the server shuts gRPC down
  // first). Pool names (served and quarantined) are unique.
  VolumePoolServiceImpl(std::vector<ServedPool> pools, ServerMetrics* metrics,
                        RequestLog* requests,
                        std::vector<QuarantinedPool> quarantined = {},
                        const LiveTokenTable* tokens = nullptr);

  // StartDraining makes every RPC that starts from now on fail with
  // UNAVAILABLE; RPCs already running finish normally.
  // Thread safety: safe from any thread.
  void StartDraining();

  // StopAddsAt makes every AddVolume whose core call has not begun by
  // `cutoff` (the shutdown deadline) finish with UNAVAILABLE, adding
  // nothing and forgetting its request_id; an add already in the core runs
  // to its end. gRPC cancels the calls left at that deadline too, but it
  // marks them cancelled asynchronously, so a queued add could otherwise
  // still start, and succeed, after the deadline. A time, not a flag set
  // by a thread at the deadline: no add starts in the gap before such a
  // thread runs. Thread safety: safe from any thread (one atomic store).
  void StopAddsAt(absl::Time cutoff);

  // The RPCs, as proto/groove/v1/volume_pool.proto documents them (the
  // checks each adds to the core's are in docs/SERVER.md, section 3).
  // Thread safety: any number may run at once, on any gRPC thread.
  grpc::ServerUnaryReactor* ListPools(grpc::CallbackServerContext* context,
                                      const v1::ListPoolsRequest* request,
                                      v1::ListPoolsResponse* response) override;
  grpc::ServerUnaryReactor* AddVolume(grpc::CallbackServerContext* context,
                                      const v1::AddVolumeRequest* request,
                                      v1::AddVolumeResponse* response) override;
  grpc::ServerUnaryReactor* RemoveVolume(
      grpc::CallbackServerContext* context,
      const v1::RemoveVolumeRequest* request,
      v1::RemoveVolumeResponse* response) override;
  grpc::ServerUnaryReactor* Inspect(grpc::CallbackServerContext* context,
                                    const v1::InspectRequest* request,
                                    v1::InspectResponse* response) override;
  grpc::ServerUnaryReactor* ReclaimVolume(
      grpc::CallbackServerContext* context,
      const v1::ReclaimVolumeRequest* request,
      v1::ReclaimVolumeResponse* response) override;

 private:
  // Call is one RPC in progress: what Finish needs to account for it.
  struct Call {
    grpc::CallbackServerContext* context;
    grpc::ServerUnaryReactor* reactor;
    RpcMethod method;
    absl::Time start;
    int pool = -1;  // index into pools_, once known
    PoolOp op = PoolOp::kInspect;
  };

  // Begin starts accounting for an RPC. Fails with UNAUTHENTICATED or
  // PERMISSION_DENIED when tokens are on and the call's token is missing,
  // unknown or of too weak a role (first, so that a caller without a
  // token learns nothing else, not even the pool names), UNAVAILABLE
  // while draining, and NOT_FOUND for an unknown `pool_name` (when `op`
  // is set). `verify`: the call is an Inspect with verify=true, which
  // needs role admin (RequiredRole).
  absl::Status Begin(Call* call, absl::string_view pool_name,
                     bool verify = false);
  // Finish records the RPC's metrics, logs it if it failed, and finishes
  // it with `status`. Returns the reactor, for handlers to return.
  // `counted_as`: the code the metrics count instead of status's (an add
  // answered OK after its client had gone counts as what the client saw).
  grpc::ServerUnaryReactor* Finish(
      const Call& call, const absl::Status& status,
      std::optional<absl::StatusCode> counted_as = std::nullopt);
  // Gone is why a call can no longer be answered, if it can't.
  enum class Gone {
    kNo,
    // The shutdown deadline (StopAddsAt) passed: gRPC cancels every call
    // left, asynchronously.
    kShutdownDeadline,
    kDeadlineExceeded,  // the call's own deadline passed
    kCancelled,         // the client cancelled it, or its connection closed
  };
  // CallGone says which, in that order: the two deadlines are compared
  // with the clock, since gRPC marks such calls cancelled asynchronously
  // (IsCancelled), and without saying why. Cost: one clock read, an
  // atomic load and IsCancelled. Thread safety: any thread.
  Gone CallGone(const Call& call) const;
  // GoneRefusal returns the refusal that finishes a change (`change`
  // names it for the message: "remove volumes from pool 'p'") which has
  // not started and will not, because its call is `gone` (CallGone, not
  // kNo): its answer could reach nobody, so the change would be lost with
  // it. DEADLINE_EXCEEDED, saying what the deadline left the call when it
  // arrived and how long it waited since (`queue`, when not empty, says
  // where: the add queue), so that a client's too short deadline and a
  // slow server show apart; CANCELLED; or UNAVAILABLE marked
  // NothingChanged past the shutdown deadline. Used by RunAdd, and by
  // RemoveVolume and ReclaimVolume before they change the pool. Cost: on
  // the refusal path only. Thread safety: any thread.
  absl::Status GoneRefusal(const Call& call, Gone gone,
                           absl::string_view change,
                           absl::string_view queue = "") const;
  // VerifyStopped returns the answer of an Inspect with verify of pool
  // `name` whose walk stopped (NamedPool::Verify's CANCELLED, `stopped`)
  // because its call is `gone` (CallGone, not kNo): DEADLINE_EXCEEDED
  // saying what the deadline left the call when it arrived and how long it
  // ran (a walk reads every empty volume's header), CANCELLED, or
  // UNAVAILABLE past the shutdown deadline; each with `stopped`'s message
  // (how far the walk got; nothing wrong found). Cost: on that path only.
  // Thread safety: any thread.
  absl::Status VerifyStopped(const Call& call, Gone gone,
                             absl::string_view name,
                             const absl::Status& stopped) const;
  // ReportIfUnanswered is for a change that ran to its end (an add, a
  // remove, a reclaim) whose call may have gone meanwhile (CallGone): its
  // answer then reaches nobody, and the routine line of the change reads as
  // answered. So it logs, at warn and never budgeted,
  //   event=EVENT pool= count= indices= reason=deadline_exceeded|
  //     cancelled|shutdown_deadline [request_id=] peer=
  // (`request_id` empty: no such field), so that a client's
  // DEADLINE_EXCEEDED or CANCELLED can be matched to the volumes the change
  // made or removed, and returns the code its client saw, for Finish's
  // metrics (nullopt: answered, or at the shutdown deadline, where the
  // answer races gRPC's cancellation and what the client saw is not
  // known). Cost when answered: CallGone's clock reads. Thread safety: any
  // thread.
  std::optional<absl::StatusCode> ReportIfUnanswered(
      const Call& call, absl::string_view event,
      const std::vector<uint64_t>& indices, absl::string_view request_id) const;
  // RunAdd is AddVolume's second half, on a worker thread.
  // `ticket`: the request_id log entry to complete, for calls with an id.
  void RunAdd(const Call& call, const v1::AddVolumeRequest* request,
              v1::AddVolumeResponse* response,
              const std::optional<RequestLog::Ticket>& ticket);

  std::vector<ServedPool> pools_;
  std::vector<QuarantinedPool> quarantined_;
  absl::flat_hash_map<std::string, int> pool_index_;  // name -> pools_ index
  ServerMetrics* metrics_;
  RequestLog* requests_;
  const LiveTokenTable* tokens_;  // null: no authorization
  std::atomic<bool> draining_{false};
  // verifying_[i] is true while an Inspect with verify runs on pools_[i]:
  // one verify per pool at a time, so that verifies (each O(empty volumes)
  // of a callback thread) cannot take every gRPC thread from the other
  // RPCs. A try-flag, not a lock: a second verify fails with ABORTED
  // instead of waiting.
  std::unique_ptr<std::atomic<bool>[]> verifying_;
  // StopAddsAt's cutoff in Unix nanoseconds; INT64_MAX: none.
  std::atomic<int64_t> add_cutoff_unix_ns_{std::numeric_limits<int64_t>::max()};
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_SERVICE_H_
