#include "groove/server/service.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "groove/build_info.h"
#include "groove/server/config.h"
#include "groove/server/grpc_status.h"
#include "groove/server/log.h"
#include "groove/server/page_token.h"
#include "groove/v1/call_metadata.h"
#include "groove/volume.h"

namespace groove::server {
namespace {

// The payload NothingChanged puts on a status (its content is empty).
constexpr char kNothingChangedPayload[] =
    "type.googleapis.com/groove.server.NothingChanged";

// NothingChanged marks `refusal`, an UNAVAILABLE answered before the call
// changed anything, for Finish to send it with the trailing metadata
// groove-not-applied (groove/v1/call_metadata.h): clients repeat even an
// add or a remove after it. Only refusals made before any change may be
// marked; an UNAVAILABLE from anywhere else goes out unmarked.
absl::Status NothingChanged(absl::Status refusal) {
  refusal.SetPayload(kNothingChangedPayload, absl::Cord());
  return refusal;
}

// IndexList formats indices for a log line, eliding the middle of long
// lists: "0,1,2" or "0,1,2,...,1023 (1024 indices)".
std::string IndexList(const std::vector<uint64_t>& indices) {
  constexpr size_t kShown = 8;
  if (indices.size() <= kShown) return absl::StrJoin(indices, ",");
  return absl::StrCat(
      absl::StrJoin(indices.begin(), indices.begin() + kShown - 1, ","),
      ",...,", indices.back(), " (", indices.size(), " indices)");
}

// ArrivedWith says what a call's `deadline` left it when it arrived at
// `start` (less its time in transit), for the messages of calls whose
// deadline passed: "it arrived with 1.5s left" or "it arrived 2ms after
// its deadline". With how long the call ran since, it shows a client's
// too short deadline and a slow server apart.
std::string ArrivedWith(absl::Time deadline, absl::Time start) {
  const absl::Duration left = deadline - start;
  return left > absl::ZeroDuration()
             ? absl::StrCat("it arrived with ", absl::FormatDuration(left),
                            " left")
             : absl::StrCat("it arrived ", absl::FormatDuration(-left),
                            " after its deadline");
}

v1::VolumeState ToProtoState(VolumeStatus status) {
  switch (status) {
    case VolumeStatus::kEmpty:
      return v1::VOLUME_STATE_EMPTY;
    case VolumeStatus::kInUse:
      return v1::VOLUME_STATE_IN_USE;
    case VolumeStatus::kCorrupt:
      return v1::VOLUME_STATE_CORRUPT;
  }
  return v1::VOLUME_STATE_UNSPECIFIED;
}

bool IsServerFault(absl::StatusCode code) {
  return code == absl::StatusCode::kDataLoss ||
         code == absl::StatusCode::kInternal ||
         code == absl::StatusCode::kUnknown;
}

// IsClientFault says whether a call refused with `code` was refused for
// its client's own doing (a bad argument or token, a pool or index that
// is not there or not in that state, a full pool, its own deadline or
// cancellation): a client can repeat those in a loop, so their lines go
// under the refusal line budget (LogRefusal). Every other code is the
// server's state or fault (DATA_LOSS, INTERNAL, UNKNOWN; UNAVAILABLE:
// shutting down, an add queue full; UNIMPLEMENTED) and is always written.
bool IsClientFault(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

}  // namespace

v1::PoolSummary ToProtoSummary(const PoolSummary& s) {
  v1::PoolSummary out;
  out.set_name(s.name);
  out.set_volume_size_bytes(s.volume_size_bytes);
  out.set_backing_requested(ProtoBacking(s.backing_requested.kind));
  out.set_backing_in_use(ProtoBacking(s.backing_in_use));
  out.set_page_size_bytes(s.page_size_bytes);
  out.set_max_volumes(s.max_volumes);
  out.set_volumes_mapped(s.volumes_mapped);
  out.set_volumes_empty(s.volumes_empty);
  out.set_volumes_in_use(s.volumes_in_use);
  out.set_capacity_bytes(s.capacity_bytes);
  out.set_empty_bytes(s.empty_bytes);
  out.set_releasing_bytes(s.releasing_bytes);
  out.set_volumes_in_quarantine(s.volumes_in_quarantine);
  out.set_volumes_reclaimed(s.volumes_reclaimed);
  out.set_volumes_not_given_back(s.volumes_not_given_back);
  v1::PoolCounters* counters = out.mutable_counters();
  counters->set_volumes_added(s.counts.volumes_added);
  counters->set_volumes_removed(s.counts.volumes_removed);
  counters->set_acquires(s.counts.acquires);
  counters->set_releases(s.counts.releases);
  counters->set_volumes_quarantined(s.counts.volumes_quarantined);
  out.set_locked(s.locked);
  return out;
}

VolumePoolServiceImpl::VolumePoolServiceImpl(
    std::vector<ServedPool> pools, ServerMetrics* metrics, RequestLog* requests,
    std::vector<QuarantinedPool> quarantined, const LiveTokenTable* tokens)
    : pools_(std::move(pools)),
      quarantined_(std::move(quarantined)),
      metrics_(metrics),
      requests_(requests),
      tokens_(tokens),
      verifying_(std::make_unique<std::atomic<bool>[]>(pools_.size())) {
  for (size_t i = 0; i < pools_.size(); ++i) {
    pool_index_.emplace(pools_[i].pool->config().name, static_cast<int>(i));
  }
}

void VolumePoolServiceImpl::StartDraining() {
  // Relaxed: a hint; an RPC that starts just before the flag flips is an
  // in-flight RPC and finishes normally.
  draining_.store(true, std::memory_order_relaxed);
}

void VolumePoolServiceImpl::StopAddsAt(absl::Time cutoff) {
  // Relaxed: it is compared with the clock, not used to publish anything;
  // the server stores it when shutdown begins, a deadline (seconds) before
  // it matters.
  add_cutoff_unix_ns_.store(absl::ToUnixNanos(cutoff),
                            std::memory_order_relaxed);
}

absl::Status VolumePoolServiceImpl::Begin(Call* call,
                                          absl::string_view pool_name,
                                          bool verify) {
  if (tokens_ != nullptr) {
    // gRPC lower-cases metadata keys. Normally one value; Authorize
    // refuses several.
    absl::InlinedVector<absl::string_view, 1> authorization;
    const auto [first, last] =
        call->context->client_metadata().equal_range("authorization");
    for (auto it = first; it != last; ++it) {
      authorization.emplace_back(it->second.data(), it->second.size());
    }
    if (absl::Status s =
            Authorize(tokens_->Current(), authorization, call->method, verify);
        !s.ok()) {
      return s;
    }
  }
  if (draining_.load(std::memory_order_relaxed)) {
    return NothingChanged(absl::UnavailableError(
        "groove-volumed is shutting down; retry with backoff (against its "
        "next start)"));
  }
  if (call->method == RpcMethod::kListPools) return absl::OkStatus();
  auto it = pool_index_.find(pool_name);
  if (it == pool_index_.end()) {
    for (const QuarantinedPool& q : quarantined_) {
      if (q.name == pool_name) {
        return absl::DataLossError(absl::StrCat(
            "pool '", q.name,
            "' is quarantined: the server found it corrupt at start-up and "
            "does not serve it (",
            q.reason.message(), ")"));
      }
    }
    std::vector<std::string> names;
    for (const ServedPool& p : pools_) names.push_back(p.pool->config().name);
    return absl::NotFoundError(absl::StrCat(
        "no pool named '", absl::CHexEscape(pool_name.substr(0, 80)),
        "'; this server has ",
        names.empty() ? "no pools"
                      : absl::StrCat("pools ", absl::StrJoin(names, ", "))));
  }
  call->pool = it->second;
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* VolumePoolServiceImpl::Finish(
    const Call& call, const absl::Status& status,
    std::optional<absl::StatusCode> counted_as) {
  metrics_->RecordRpc(call.method, counted_as.value_or(status.code()),
                      absl::Now() - call.start);
  if (!status.ok()) {
    if (call.pool >= 0) {
      metrics_->RecordPoolError(static_cast<size_t>(call.pool), call.op,
                                status.code());
    }
    // A client's refusals under their budget (a client looping on a bad
    // call must not flood the log; the metrics above count every call),
    // the server's own faults always.
    (IsClientFault(status.code()) ? LogRefusal : Log)(
        IsServerFault(status.code()) ? LogLevel::kError : LogLevel::kWarn,
        "rpc_error",
        {{"method", RpcMethodName(call.method)},
         {"pool", call.pool >= 0 ? pools_[call.pool].pool->config().name
                                 : std::string("-")},
         {"code", StatusCodeName(status.code())},
         {"peer", call.context->peer()},
         {"message", status.message()}});
  }
  if (status.GetPayload(kNothingChangedPayload).has_value()) {
    call.context->AddTrailingMetadata(v1::kNotAppliedKey, v1::kNotAppliedValue);
  }
  call.reactor->Finish(ToGrpcStatus(status));
  return call.reactor;
}

grpc::ServerUnaryReactor* VolumePoolServiceImpl::ListPools(
    grpc::CallbackServerContext* context, const v1::ListPoolsRequest*,
    v1::ListPoolsResponse* response) {
  Call call{context, context->DefaultReactor(), RpcMethod::kListPools,
            absl::Now()};
  if (absl::Status s = Begin(&call, ""); !s.ok()) return Finish(call, s);
  for (const ServedPool& p : pools_) {
    *response->add_pools() = ToProtoSummary(p.pool->Summary());
  }
  for (const QuarantinedPool& q : quarantined_) {
    v1::QuarantinedPool* out = response->add_quarantined_pools();
    out->set_name(q.name);
    out->set_reason(std::string(q.reason.message()));
  }
  // After Begin: a caller refused there (no or an unknown token) learns
  // nothing of the build either (docs/SECURITY.md).
  *response->mutable_server_build() = ThisBuild();
  return Finish(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* VolumePoolServiceImpl::AddVolume(
    grpc::CallbackServerContext* context, const v1::AddVolumeRequest* request,
    v1::AddVolumeResponse* response) {
  Call call{context,
            context->DefaultReactor(),
            RpcMethod::kAddVolume,
            absl::Now(),
            -1,
            PoolOp::kAdd};
  if (absl::Status s = Begin(&call, request->pool()); !s.ok()) {
    return Finish(call, s);
  }
  const NamedPool& pool = *pools_[call.pool].pool;
  const std::string& name = pool.config().name;
  if (request->count() == 0 || request->count() > kMaxVolumesPerRequest) {
    return Finish(
        call, absl::InvalidArgumentError(absl::StrCat(
                  "add volumes to pool '", name, "': count ", request->count(),
                  " is outside [1, ", kMaxVolumesPerRequest, "]")));
  }
  std::optional<uint64_t> first_index;
  if (request->has_first_index()) first_index = request->first_index();
  // Everything the configuration decides (info size, OUT_OF_RANGE,
  // RESOURCE_EXHAUSTED beyond max_volumes) is answered here, at once: a
  // request the add worker would refuse must not wait behind slow adds
  // (seconds each for hugepages) only to time out or be told to retry.
  // The core's own check, so the rules and messages live in one place.
  if (absl::Status s = pool.CheckAddArguments(request->count(), first_index,
                                              request->info());
      !s.ok()) {
    return Finish(call, s);
  }
  if (absl::Status s = ValidateRequestId(request->request_id()); !s.ok()) {
    return Finish(call, s);
  }
  std::optional<RequestLog::Ticket> ticket;
  if (!request->request_id().empty()) {
    RequestLog::Claim claim = requests_->Start(*request);
    switch (claim.outcome) {
      case RequestLog::Outcome::kRun:
        ticket = claim.ticket;
        break;
      case RequestLog::Outcome::kReplay:
        *response = std::move(claim.response);
        LogDeferred(LogLevel::kInfo, "add_replayed",
                    {{"pool", name}, {"request_id", request->request_id()}});
        return Finish(call, absl::OkStatus());
      case RequestLog::Outcome::kInProgress:
        return Finish(call, absl::AbortedError(absl::StrCat(
                                "an AddVolume call with request_id ",
                                request->request_id(),
                                " is still in progress; retry with backoff "
                                "to receive its result")));
      case RequestLog::Outcome::kConflict:
        return Finish(call,
                      absl::InvalidArgumentError(absl::StrCat(
                          "request_id ", request->request_id(),
                          " was used by an earlier AddVolume call with "
                          "different arguments (",
                          claim.conflict, "); use a new id for a new call")));
      case RequestLog::Outcome::kBusy:
        return Finish(call, NothingChanged(absl::UnavailableError(
                                "too many AddVolume calls with request ids "
                                "are in progress at once; retry with "
                                "backoff")));
    }
  }
  if (first_index.has_value()) {
    // An index that holds a volume fails fast too. After the request log,
    // so that a replay of an add that made these volumes gets its response.
    // A hint (a remove may free the index the next instant); the worker's
    // claim decides.
    if (absl::Status s =
            pool.CheckRangeNotMapped(*first_index, request->count());
        !s.ok()) {
      if (ticket.has_value()) requests_->Failed(*ticket);
      return Finish(call, s);
    }
  }
  WorkerPool& workers = *pools_[call.pool].add_workers;
  const bool scheduled =
      workers.TrySchedule([this, call, request, response, ticket] {
        RunAdd(call, request, response, ticket);
      });
  if (!scheduled) {
    if (ticket.has_value()) requests_->Failed(*ticket);
    if (workers.stopping()) {
      return Finish(call, NothingChanged(absl::UnavailableError(absl::StrCat(
                              "add volumes to pool '", name,
                              "': groove-volumed is shutting down and no "
                              "longer queues adds; nothing was added; retry "
                              "with backoff (against its next start)"))));
    }
    return Finish(
        call, NothingChanged(absl::UnavailableError(absl::StrCat(
                  "add volumes to pool '", name, "': its add queue is full (",
                  workers.max_queued(), " AddVolume calls wait for its ",
                  workers.threads(),
                  " add workers, --add_workers_per_pool); nothing was added; "
                  "retry with backoff"))));
  }
  return call.reactor;
}

VolumePoolServiceImpl::Gone VolumePoolServiceImpl::CallGone(
    const Call& call) const {
  // One clock read for both deadlines (removes and reclaims call this
  // on gRPC's threads, twice each).
  const std::chrono::system_clock::time_point now =
      std::chrono::system_clock::now();
  // Relaxed: the cutoff is compared with the clock, not used to publish
  // anything; the server stores it when shutdown begins, a deadline
  // (seconds) before it matters.
  if (absl::ToUnixNanos(absl::FromChrono(now)) >=
      add_cutoff_unix_ns_.load(std::memory_order_relaxed)) {
    return Gone::kShutdownDeadline;
  }
  if (call.context->deadline() <= now) return Gone::kDeadlineExceeded;
  if (call.context->IsCancelled()) return Gone::kCancelled;
  return Gone::kNo;
}

absl::Status VolumePoolServiceImpl::GoneRefusal(const Call& call, Gone gone,
                                                absl::string_view change,
                                                absl::string_view queue) const {
  switch (gone) {
    case Gone::kShutdownDeadline:
      return NothingChanged(absl::UnavailableError(absl::StrCat(
          change,
          ": groove-volumed is shutting down and its shutdown deadline "
          "passed before the call started; nothing was changed; retry with "
          "backoff (against its next start)")));
    case Gone::kDeadlineExceeded:
      return absl::DeadlineExceededError(absl::StrCat(
          change, ": its deadline passed before the server started it (",
          ArrivedWith(absl::FromChrono(call.context->deadline()), call.start),
          " and waited ", absl::FormatDuration(absl::Now() - call.start),
          queue.empty() ? "" : " ", queue, "); nothing was changed; give ",
          RpcMethodName(call.method), " a longer deadline"));
    case Gone::kCancelled:
      return absl::CancelledError(absl::StrCat(
          change,
          ": the client cancelled the call (or its connection closed) "
          "before the server started it; nothing was changed"));
    case Gone::kNo:
      break;
  }
  return absl::InternalError(
      absl::StrCat(change, ": GoneRefusal of a call that is not gone"));
}

absl::Status VolumePoolServiceImpl::VerifyStopped(
    const Call& call, Gone gone, absl::string_view name,
    const absl::Status& stopped) const {
  const std::string what =
      absl::StrCat("inspect pool '", name, "' with verify");
  switch (gone) {
    case Gone::kShutdownDeadline:
      return absl::UnavailableError(absl::StrCat(
          what,
          ": groove-volumed is shutting down and its shutdown deadline "
          "passed while it walked the pool's stack (",
          stopped.message(), "); retry against its next start"));
    case Gone::kDeadlineExceeded:
      return absl::DeadlineExceededError(absl::StrCat(
          what,
          ": its deadline passed while the server walked the pool's "
          "stack (",
          ArrivedWith(absl::FromChrono(call.context->deadline()), call.start),
          " and ran for ", absl::FormatDuration(absl::Now() - call.start), "; ",
          stopped.message(),
          "); give Inspect a longer deadline: a walk "
          "reads the header of every empty volume"));
    case Gone::kCancelled:
      return absl::CancelledError(absl::StrCat(
          what,
          ": the client cancelled the call (or its connection closed) "
          "while the server walked the pool's stack (",
          stopped.message(), ")"));
    case Gone::kNo:
      break;
  }
  return absl::InternalError(
      absl::StrCat(what, ": the walk stopped but the call is not gone (",
                   stopped.message(), ")"));
}

void VolumePoolServiceImpl::RunAdd(
    const Call& call, const v1::AddVolumeRequest* request,
    v1::AddVolumeResponse* response,
    const std::optional<RequestLog::Ticket>& ticket) {
  NamedPool& pool = *pools_[call.pool].pool;
  // An add that has not started is refused, adding nothing and forgetting
  // its request_id, when its call can no longer be answered, saying why
  // for the log and the metrics (the client has gone already).
  if (const Gone gone = CallGone(call); gone != Gone::kNo) {
    // Past the shutdown deadline, starting now could keep the server
    // (hugepages: seconds per add) past its watchdog; past its own
    // deadline or cancelled, adding would only leave volumes the client
    // never hears of.
    if (ticket.has_value()) requests_->Failed(*ticket);
    Finish(
        call,
        GoneRefusal(
            call, gone,
            absl::StrCat("add volumes to pool '", pool.config().name, "'"),
            absl::StrCat("in the add queue behind the pool's other adds (add "
                         "workers: ",
                         pools_[call.pool].add_workers->threads(),
                         ", --add_workers_per_pool)")));
    return;
  }
  std::optional<uint64_t> first_index;
  if (request->has_first_index()) first_index = request->first_index();
  // The arguments were checked by AddVolume; AddVolumes checks them again
  // (CheckAddArguments) and decides ALREADY_EXISTS with its claim. An id
  // goes to the pool's request journal with the add's commit, so that it
  // is answered after a restart too (RequestLog, "Restarts").
  std::optional<RequestKey> key;
  if (ticket.has_value()) key = ParseRequestId(request->request_id());
  absl::StatusOr<std::vector<uint64_t>> added =
      pool.AddVolumes(request->count(), first_index, request->info(), key);
  if (!added.ok()) {
    if (ticket.has_value()) requests_->Failed(*ticket);
    Finish(call, added.status());
    return;
  }
  response->mutable_volume_indices()->Assign(added->begin(), added->end());
  *response->mutable_summary() = ToProtoSummary(pool.Summary());
  if (ticket.has_value()) requests_->Succeeded(*ticket, *response);
  LogDeferred(LogLevel::kInfo, "add",
              {{"pool", pool.config().name},
               {"count", added->size()},
               {"indices", IndexList(*added)},
               {"volumes_mapped", response->summary().volumes_mapped()}});
  // The add ran to its end (once started it always does), but its client
  // may have gone meanwhile (the request_id learns the volumes).
  Finish(call, absl::OkStatus(),
         ReportIfUnanswered(
             call, "add_unanswered", *added,
             request->request_id().empty() ? "-" : request->request_id()));
}

std::optional<absl::StatusCode> VolumePoolServiceImpl::ReportIfUnanswered(
    const Call& call, absl::string_view event,
    const std::vector<uint64_t>& indices, absl::string_view request_id) const {
  const Gone gone = CallGone(call);
  if (gone == Gone::kNo) return std::nullopt;
  const char* reason = gone == Gone::kShutdownDeadline   ? "shutdown_deadline"
                       : gone == Gone::kDeadlineExceeded ? "deadline_exceeded"
                                                         : "cancelled";
  const LogField pool("pool", pools_[call.pool].pool->config().name);
  const LogField count("count", indices.size());
  const LogField listed("indices", IndexList(indices));
  const LogField peer("peer", call.context->peer());
  if (request_id.empty()) {
    Log(LogLevel::kWarn, event,
        {pool, count, listed, {"reason", reason}, peer});
  } else {
    Log(LogLevel::kWarn, event,
        {pool,
         count,
         listed,
         {"reason", reason},
         {"request_id", request_id},
         peer});
  }
  // At the shutdown deadline the answer races gRPC's cancellation: what
  // the client saw is not known, and the call is counted as answered.
  if (gone == Gone::kDeadlineExceeded)
    return absl::StatusCode::kDeadlineExceeded;
  if (gone == Gone::kCancelled) return absl::StatusCode::kCancelled;
  return std::nullopt;
}

grpc::ServerUnaryReactor* VolumePoolServiceImpl::RemoveVolume(
    grpc::CallbackServerContext* context,
    const v1::RemoveVolumeRequest* request,
    v1::RemoveVolumeResponse* response) {
  Call call{context,
            context->DefaultReactor(),
            RpcMethod::kRemoveVolume,
            absl::Now(),
            -1,
            PoolOp::kRemove};
  if (absl::Status s = Begin(&call, request->pool()); !s.ok()) {
    return Finish(call, s);
  }
  NamedPool& pool = *pools_[call.pool].pool;
  if (request->count() == 0 || request->count() > kMaxVolumesPerRequest) {
    return Finish(call, absl::InvalidArgumentError(absl::StrCat(
                            "remove volumes from pool '", pool.config().name,
                            "': count ", request->count(), " is outside [1, ",
                            kMaxVolumesPerRequest, "]")));
  }
  // A call whose client is gone by now would remove volumes nobody hears
  // of (their info lost with the answer): refused, nothing removed.
  if (const Gone gone = CallGone(call); gone != Gone::kNo) {
    return Finish(call, GoneRefusal(call, gone,
                                    absl::StrCat("remove volumes from pool '",
                                                 pool.config().name, "'")));
  }
  absl::StatusOr<std::vector<RemovedVolume>> removed =
      pool.RemoveVolumes(request->count());
  if (!removed.ok()) return Finish(call, removed.status());
  std::vector<uint64_t> indices;
  for (const RemovedVolume& r : *removed) {
    v1::RemovedVolume* out = response->add_volumes();
    out->set_index(r.index);
    out->set_info(r.info);
    indices.push_back(r.index);
  }
  *response->mutable_summary() = ToProtoSummary(pool.Summary());
  LogDeferred(LogLevel::kInfo, "remove",
              {{"pool", pool.config().name},
               {"count", removed->size()},
               {"indices", IndexList(indices)},
               {"volumes_mapped", response->summary().volumes_mapped()}});
  // Its deadline may have passed while it ran (a punch of hugepages takes
  // milliseconds): the volumes are gone, their info with the answer.
  return Finish(call, absl::OkStatus(),
                ReportIfUnanswered(call, "remove_unanswered", indices, ""));
}

grpc::ServerUnaryReactor* VolumePoolServiceImpl::Inspect(
    grpc::CallbackServerContext* context, const v1::InspectRequest* request,
    v1::InspectResponse* response) {
  Call call{
      context, context->DefaultReactor(), RpcMethod::kInspect, absl::Now(),
      -1,      PoolOp::kInspect};
  if (absl::Status s = Begin(&call, request->pool(), request->verify());
      !s.ok()) {
    return Finish(call, s);
  }
  NamedPool& pool = *pools_[call.pool].pool;
  const std::string& name = pool.config().name;
  uint64_t start_index = 0;
  size_t page_size = kDefaultPageSize;
  if (request->include_volumes()) {
    if (request->page_size() < 0) {
      return Finish(call, absl::InvalidArgumentError(absl::StrCat(
                              "inspect pool '", name, "': page_size ",
                              request->page_size(),
                              " is negative; use 0 for the default (",
                              kDefaultPageSize, ") or up to ", kMaxPageSize)));
    }
    if (request->page_size() > 0) {
      page_size = static_cast<size_t>(
          std::min<int32_t>(request->page_size(), kMaxPageSize));
    }
    if (!request->page_token().empty()) {
      absl::StatusOr<uint64_t> next =
          DecodePageToken(request->page_token(), name, pool.pool_id(),
                          pool.config().max_volumes);
      if (!next.ok()) return Finish(call, next.status());
      start_index = *next;
    }
  }
  if (request->verify()) {
    std::atomic<bool>& verifying = verifying_[call.pool];
    // Relaxed: the flag guards no data, only how many walks run at once.
    if (verifying.exchange(true, std::memory_order_relaxed)) {
      return Finish(call, absl::AbortedError(absl::StrCat(
                              "inspect pool '", name,
                              "': another Inspect with verify of this pool "
                              "is running (one at a time per pool); retry "
                              "when it has finished")));
    }
    // Stops as soon as the answer could reach nobody (or the server must
    // stop): a walk of a large pool takes seconds on this gRPC thread.
    absl::StatusOr<VerifyReport> report =
        pool.Verify([&] { return CallGone(call) != Gone::kNo; });
    verifying.store(false, std::memory_order_relaxed);
    if (report.status().code() == absl::StatusCode::kCancelled) {
      return Finish(call,
                    VerifyStopped(call, CallGone(call), name, report.status()));
    }
    if (report.status().code() == absl::StatusCode::kAborted) {
      // Not a finding: pool users kept the stack moving. The call fails so
      // that nobody reads ok=false as corruption.
      return Finish(
          call, absl::AbortedError(absl::StrCat(
                    "inspect pool '", name, "': ", report.status().message())));
    }
    v1::VerifyResult* result = response->mutable_verify_result();
    result->set_ok(report.ok());
    if (report.ok()) {
      result->set_empty_volumes_walked(report->empty_volumes);
    } else {
      // Corruption does not fail Inspect: it is the answer. It is logged
      // and counted like a failed operation.
      result->set_message(std::string(report.status().message()));
      metrics_->RecordPoolError(static_cast<size_t>(call.pool), PoolOp::kVerify,
                                report.status().code());
      Log(LogLevel::kError, "verify_failed",
          {{"pool", name},
           {"code", StatusCodeName(report.status().code())},
           {"message", report.status().message()}});
    }
  }
  *response->mutable_summary() = ToProtoSummary(pool.Summary());
  if (request->include_volumes()) {
    uint64_t next_index = 0;
    for (VolumeEntry& entry :
         pool.ListVolumes(start_index, page_size, &next_index)) {
      v1::Volume* volume = response->add_volumes();
      volume->set_index(entry.index);
      volume->set_state(ToProtoState(entry.status));
      if (entry.status == VolumeStatus::kCorrupt) {
        volume->set_corruption(std::move(entry.corruption));
      } else {
        volume->set_info(std::move(entry.info));
      }
    }
    if (next_index < pool.config().max_volumes) {
      response->set_next_page_token(
          EncodePageToken(name, pool.pool_id(), next_index));
    }
  }
  return Finish(call, absl::OkStatus());
}

grpc::ServerUnaryReactor* VolumePoolServiceImpl::ReclaimVolume(
    grpc::CallbackServerContext* context,
    const v1::ReclaimVolumeRequest* request,
    v1::ReclaimVolumeResponse* response) {
  Call call{context,
            context->DefaultReactor(),
            RpcMethod::kReclaimVolume,
            absl::Now(),
            -1,
            PoolOp::kReclaim};
  if (absl::Status s = Begin(&call, request->pool()); !s.ok()) {
    return Finish(call, s);
  }
  NamedPool& pool = *pools_[call.pool].pool;
  const std::string& name = pool.config().name;
  if (!request->has_index()) {
    // proto3 would read an unset index as 0, a valid index: a client that
    // forgot it must not reclaim volume 0.
    return Finish(call, absl::InvalidArgumentError(absl::StrCat(
                            "reclaim a volume of pool '", name,
                            "': index is unset; give the index of the "
                            "quarantined volume (Inspect lists it CORRUPT)")));
  }
  // Like a remove, a reclaim whose client is gone would be lost with its
  // answer: refused, nothing changed.
  if (const Gone gone = CallGone(call); gone != Gone::kNo) {
    return Finish(call,
                  GoneRefusal(call, gone,
                              absl::StrCat("reclaim volume ", request->index(),
                                           " of pool '", name, "'")));
  }
  // Straight to the core, like RemoveVolume: one CAS of the slot and a
  // punch, lock-free, on this callback thread. It decides every refusal,
  // with messages that name the pool and the index (OUT_OF_RANGE;
  // FAILED_PRECONDITION saying what is at the index instead).
  absl::StatusOr<ReclaimedVolume> reclaimed =
      pool.ReclaimVolume(request->index());
  if (!reclaimed.ok()) return Finish(call, reclaimed.status());
  response->set_index(reclaimed->index);
  response->set_corruption(reclaimed->corruption);
  *response->mutable_summary() = ToProtoSummary(pool.Summary());
  // Not a routine line (never batched or budgeted): an operator's override
  // of a quarantine, on their word that no process still uses the volume.
  Log(LogLevel::kWarn, "reclaim",
      {{"pool", name},
       {"index", reclaimed->index},
       {"corruption", reclaimed->corruption},
       {"volumes_in_quarantine", response->summary().volumes_in_quarantine()},
       {"peer", context->peer()}});
  // As a remove's: its deadline may have passed inside its punch.
  return Finish(
      call, absl::OkStatus(),
      ReportIfUnanswered(call, "reclaim_unanswered", {reclaimed->index}, ""));
}

}  // namespace groove::server
