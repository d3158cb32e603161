// groove/server/health.h: grpc.health.v1.Health for groove-volumed.
//
// The standard health checking protocol
// (https://github.com/grpc/grpc/blob/master/doc/health-checking.md):
// Check answers at once; Watch streams the status and every change. The
// server reports "" (the whole server) and each of its services, all with
// one status: SERVING from Start until shutdown, NOT_SERVING after.
//
// Why not gRPC's default health service (EnableDefaultHealthCheckService):
// its Watch streams stay open through a shutdown, so one health watcher (a
// load balancer) holds every shutdown until its deadline cancels the
// calls. Here Shutdown sends NOT_SERVING to every watcher and then ends
// its stream with UNAVAILABLE, so a drain waits only for real work.
//
// Example:
//   HealthService health({"groove.v1.VolumePoolService"});
//   builder.RegisterService(&health);
//   ... BuildAndStart ...
//   health.SetServing(true);
//   ...
//   health.Shutdown();  // before grpc::Server::Shutdown

#ifndef GROOVE_SERVER_HEALTH_H_
#define GROOVE_SERVER_HEALTH_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace groove::server {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // `services` are the service names reported besides "". Every status
  // starts NOT_SERVING. The names in `never_serving` (a subset of
  // `services`: the per-pool names of quarantined pools) stay NOT_SERVING
  // whatever SetServing says.
  explicit HealthService(std::vector<std::string> services,
                         std::vector<std::string> never_serving = {});

  // REQUIRES: no Watch in flight (the gRPC server has shut down).
  ~HealthService() = default;

  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  // SetServing sets every status to SERVING or NOT_SERVING and sends it to
  // every watcher. Ignored after Shutdown. Thread safety: safe from any
  // thread; holds the service's mutex (never taken by pool RPCs) while it
  // queues one write per watcher. Cost: O(watchers).
  void SetServing(bool serving);

  // Shutdown sets every status to NOT_SERVING for good, sends it to every
  // watcher and ends each Watch stream with UNAVAILABLE once that is
  // written. A Watch that starts later gets NOT_SERVING and ends likewise.
  // Thread safety: as SetServing. Idempotent.
  void Shutdown();

  // Check returns the status of a known service, NOT_FOUND otherwise.
  // Thread safety: lock-free (reads an atomic copy of the status), so
  // health checks never wait on a status change or a Watch.
  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request,
      grpc::health::v1::HealthCheckResponse* response) override;

  // Watch streams the status of a service (SERVICE_UNKNOWN for an unknown
  // one), then each change, until the client cancels or the server shuts
  // down.
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class Watcher;

  // Remove forgets a watcher whose call is done.
  void Remove(Watcher* watcher);
  // Broadcast sends the current status to every watcher of a known
  // service, ending their streams after it when shut down.
  // REQUIRES: mu_ held.
  void BroadcastLocked();

  const absl::flat_hash_set<std::string> services_;  // with ""
  const absl::flat_hash_set<std::string> never_serving_;
  // Orders status changes; ordered before Watcher::mu_. Guards status_,
  // shut_down_ and watchers_. A std::mutex, not an absl::Mutex: it is
  // never taken on a pool RPC, and ThreadSanitizer sees std::mutex
  // (pthread) but not Debian's uninstrumented Abseil, so with absl::Mutex
  // the tsan preset would report the watchers' hand-offs between the
  // thread changing the status and gRPC's threads as races.
  std::mutex mu_;
  ServingStatus status_;
  // status_, for Check to read without mu_. Written under mu_ with status_.
  std::atomic<ServingStatus> current_status_;
  bool shut_down_ = false;
  absl::flat_hash_set<Watcher*> watchers_;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_HEALTH_H_
