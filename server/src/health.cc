#include "groove/server/health.h"

#include <mutex>
#include <optional>
#include <utility>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace groove::server {
namespace {

// HandOff and TakeOver tell ThreadSanitizer (tsan preset) what gRPC
// guarantees through its own synchronisation, which it cannot see (Debian's
// gRPC and Abseil are not instrumented): a reactor returned by Watch
// happens before each of its reactions, on whichever gRPC thread they run.
// No-ops in other builds. tests/tsan.supp says why gRPC is invisible.
#if defined(__SANITIZE_THREAD__)
void HandOff(void* reactor) { __tsan_release(reactor); }
void TakeOver(void* reactor) { __tsan_acquire(reactor); }
#else
void HandOff(void*) {}
void TakeOver(void*) {}
#endif

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

absl::flat_hash_set<std::string> WithOverall(std::vector<std::string> names) {
  absl::flat_hash_set<std::string> set(names.begin(), names.end());
  set.insert("");
  return set;
}

}  // namespace

// Watcher is one Watch stream. At most one write is in flight; a status
// that arrives meanwhile replaces any queued one (watchers want the latest
// status, not every transition). gRPC runs reactions (OnWriteDone, OnDone)
// on its own threads, never inline from StartWrite or Finish, so calling
// those with mu_ held is safe (gRPC's default health service does too).
class HealthService::Watcher final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  // `known`: the service exists; `never_serving`: it is one that stays
  // NOT_SERVING (a quarantined pool).
  Watcher(HealthService* service, bool known, bool never_serving)
      : service_(service), known_(known), never_serving_(never_serving) {}

  bool known() const { return known_; }
  bool never_serving() const { return never_serving_; }

  // Send queues `status`; with `finish_after`, the stream ends after it.
  void Send(ServingStatus status, bool finish_after) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = status;
    finish_after_ = finish_after_ || finish_after;
    if (!writing_) StartNextLocked();
  }

  void OnWriteDone(bool ok) override {
    TakeOver(this);
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    StartNextLocked();
  }

  void OnCancel() override {
    TakeOver(this);
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    TakeOver(this);
    // gRPC runs OnDone after every other reaction has returned; each of
    // them holds mu_ throughout, so taking it once shows ThreadSanitizer
    // that order too. Uncontended, once per stream.
    { std::lock_guard<std::mutex> lock(mu_); }
    service_->Remove(this);
    delete this;
  }

 private:
  // REQUIRES: mu_ held.
  void StartNextLocked() {
    if (finished_) return;
    if (pending_.has_value()) {
      response_.set_status(*pending_);
      pending_.reset();
      writing_ = true;
      StartWrite(&response_);
    } else if (finish_after_) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "groove-volumed is shutting down"));
    }
  }

  // REQUIRES: mu_ held.
  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  HealthService* const service_;
  const bool known_;
  const bool never_serving_;
  // std::mutex, as HealthService::mu_ (see there). Guards the fields below.
  std::mutex mu_;
  HealthCheckResponse response_;  // being written
  std::optional<ServingStatus> pending_;
  bool writing_ = false;
  bool finish_after_ = false;
  bool finished_ = false;
};

HealthService::HealthService(std::vector<std::string> services,
                             std::vector<std::string> never_serving)
    : services_(WithOverall(std::move(services))),
      never_serving_(never_serving.begin(), never_serving.end()),
      status_(HealthCheckResponse::NOT_SERVING),
      current_status_(HealthCheckResponse::NOT_SERVING) {}

void HealthService::SetServing(bool serving) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return;
  status_ =
      serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  // Relaxed: a value with no data behind it.
  current_status_.store(status_, std::memory_order_relaxed);
  BroadcastLocked();
}

void HealthService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return;
  shut_down_ = true;
  status_ = HealthCheckResponse::NOT_SERVING;
  current_status_.store(status_, std::memory_order_relaxed);
  BroadcastLocked();
  // Watchers of unknown services end too.
  for (Watcher* watcher : watchers_) {
    if (!watcher->known()) {
      watcher->Send(HealthCheckResponse::SERVICE_UNKNOWN, true);
    }
  }
}

void HealthService::BroadcastLocked() {
  for (Watcher* watcher : watchers_) {
    if (!watcher->known()) continue;
    watcher->Send(
        watcher->never_serving() ? HealthCheckResponse::NOT_SERVING : status_,
        shut_down_);
  }
}

void HealthService::Remove(Watcher* watcher) {
  std::lock_guard<std::mutex> lock(mu_);
  watchers_.erase(watcher);
}

grpc::ServerUnaryReactor* HealthService::Check(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request,
    HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!services_.contains(request->service())) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  response->set_status(never_serving_.contains(request->service())
                           ? HealthCheckResponse::NOT_SERVING
                           : current_status_.load(std::memory_order_relaxed));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext*, const HealthCheckRequest* request) {
  const bool known = services_.contains(request->service());
  const bool never_serving = never_serving_.contains(request->service());
  auto* watcher = new Watcher(this, known, never_serving);
  std::lock_guard<std::mutex> lock(mu_);
  watchers_.insert(watcher);
  watcher->Send(!known          ? HealthCheckResponse::SERVICE_UNKNOWN
                : never_serving ? HealthCheckResponse::NOT_SERVING
                                : status_,
                shut_down_);
  HandOff(watcher);
  return watcher;
}

}  // namespace groove::server
