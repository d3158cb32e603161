// groove/server/server.h: groove-volumed as an object: its pools, its gRPC
// server and its metrics endpoint, from start-up to a graceful shutdown.
//
// Life cycle:
//   Create    opens (creating or recovering) every pool of the config and
//             adds its initial volumes; binds nothing. A config the host
//             cannot honour fails here, before any port is bound. A stop
//             asked for meanwhile (Options::stop_requested) ends it at the
//             next safe point, with CANCELLED.
//   Start     binds the metrics endpoint and the gRPC server (with health
//             checking and, unless turned off, reflection; with TLS and
//             tokens when configured; with the resource limits of
//             Options::limits), marks the service SERVING, starts the
//             credentials reloader (credentials_reloader.h) when the
//             config's credentials_refresh is above zero, and logs
//             `event=listening grpc=HOST:PORT metrics=HOST:PORT` with the
//             ports actually bound (tests bind port 0 and read this line).
//   Shutdown  health goes NOT_SERVING and new RPCs get UNAVAILABLE; RPCs in
//             flight (queued and running adds included) get until the
//             deadline to finish, after which gRPC cancels them and a
//             queued add no longer starts (it finishes UNAVAILABLE; one
//             already in the core completes); the add workers and the
//             credentials reloader are joined and the metrics endpoint
//             closed.
//   ~         unmaps the pools, which stay consistent on disk for the next
//             start (NamedPool::Open recovers whatever was in flight).
//
// Example (what main.cc does):
//   options.stop_requested = [&] { return signals.stop_requested(); };
//   auto server = VolumeServer::Create(options);
//   if (!server.ok()) return 1;  // 0 for CANCELLED after a stop signal
//   if (!(*server)->Start().ok()) return 1;
//   ... wait for SIGTERM ...
//   (*server)->Shutdown(absl::Seconds(30));

#ifndef GROOVE_SERVER_SERVER_H_
#define GROOVE_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <prometheus/exposer.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "groove/named_pool.h"
#include "groove/server/credentials_reloader.h"
#include "groove/server/health.h"
#include "groove/server/metrics.h"
#include "groove/server/request_log.h"
#include "groove/server/security.h"
#include "groove/server/service.h"
#include "groove/server/stall_store.h"
#include "groove/server/worker_pool.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

// PoolHealthName is the grpc.health.v1 service name under which one pool's
// health is reported: "groove.v1.VolumePoolService/POOL". NOT_SERVING for
// a quarantined pool (and while the server drains), SERVING otherwise.
std::string PoolHealthName(absl::string_view pool);

class VolumeServer {
 public:
  // The metrics endpoint (prometheus-cpp's CivetWeb) serves one connection
  // per thread, kMetricsThreads of them, and drops a connection that has
  // not sent its request (or taken the response) within
  // kMetricsRequestTimeout. So kMetricsThreads clients that connect and
  // stall (a half-open peer, a port scanner, a slow client) hold a scrape
  // back by at most kMetricsRequestTimeout, under Prometheus' default
  // scrape timeout (10 s); CivetWeb's default, 30 s, failed every scrape
  // meanwhile (docs/SERVER.md §6).
  static constexpr int kMetricsThreads = 4;
  static constexpr absl::Duration kMetricsRequestTimeout = absl::Seconds(5);

  // Limits are the gRPC port's resource limits (docs/SERVER.md, section
  // 10, gives the reasons for each default).
  struct Limits {
    // The largest request message accepted; larger ones fail with
    // RESOURCE_EXHAUSTED inside gRPC, before any handler runs. The largest
    // valid request is under 700 bytes.
    uint64_t max_request_bytes = uint64_t{64} << 10;
    // RPCs one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS) may
    // have in flight at once.
    int max_concurrent_streams = 100;
    // A connection with no RPC in flight this long is closed (GOAWAY).
    // Zero: never.
    absl::Duration max_connection_idle = absl::Minutes(10);
    // Clients may ping at most this often; the third ping that comes
    // sooner closes the connection (GOAWAY ENHANCE_YOUR_CALM).
    absl::Duration keepalive_min_ping_interval = absl::Seconds(30);
  };

  struct Options {
    // The complete configuration (LoadServerConfig's result).
    v1::ServerConfig config;
    // Re-create pools whose metadata does not match the config
    // (NamedPool::OpenOptions::recreate): their volumes are lost.
    bool recreate = false;
    // Threads per pool that run AddVolume's core calls, and how many calls
    // may wait for them before AddVolume answers UNAVAILABLE (at most
    // WorkerPool::kMaxQueued: Create refuses more).
    size_t add_workers_per_pool = 4;
    size_t add_queue_per_pool = 256;
    // TLS for the gRPC port: what LoadTlsCredentials (security.h) read
    // from config.tls's files at start-up; unset: plaintext. With a
    // credentials_refresh above zero this is what gRPC serves first and
    // the reloader's baseline (gRPC then re-reads the checked copies the
    // reloader keeps: ServedTlsFiles); with zero, the server serves
    // exactly this.
    std::optional<grpc::SslServerCredentialsOptions> tls;
    // Bearer tokens every VolumePoolService call must carry, as read at
    // start-up from config.auth_tokens_file, and the text they were parsed
    // from (the reloader's baseline); unset: no tokens.
    std::optional<TokenTable> tokens;
    std::string tokens_text;
    // Serve gRPC server reflection (never behind a token).
    bool reflection = true;
    Limits limits;
    // Test hook (stall_store.h): a FIFO that AddVolume's allocations wait
    // on, for the pools named in testonly_stall_add_pools (all when empty).
    std::string testonly_stall_add_fifo;
    std::vector<std::string> testonly_stall_add_pools;
    // Test hook: a FIFO that every walk of an Inspect with verify waits on
    // (one byte each), inside the walk's window (the top word already
    // read), logging event=testonly_stall_verify_wait pool=NAME first.
    std::string testonly_stall_verify_fifo;
    // Test hook (stall_store.h): the pools whose hole punches all fail
    // (EIO), so that a remove's memory is not given back.
    std::vector<std::string> testonly_fail_punch_pools;
    // Test hook (stall_store.h): the pools whose hole punches wait on the
    // testonly_stall_add_fifo (REQUIRES it), so that a remove can be held
    // inside its punch.
    std::vector<std::string> testonly_stall_punch_pools;
    // Polled by Create, on its own thread, at its safe points: before
    // opening each pool and before each call that adds initial volumes
    // (at most kInitialAddBytesPerCall of them at a time). Once it returns
    // true, Create stops there (see Create). Null: never stops.
    std::function<bool()> stop_requested;
  };

  // kInitialAddBytesPerCall bounds the initial volumes Create adds in one
  // NamedPool::AddVolumes call (at least one volume per call): about 0.5-4
  // s of hugepage allocation between two polls of stop_requested, while
  // small volumes still go in few calls (one fallocate per call).
  static constexpr uint64_t kInitialAddBytesPerCall = uint64_t{1} << 30;

  // Create opens every pool of `options.config` in its data_dir (creating
  // the directory and new pools, recovering existing ones, logging each
  // recovery report) and adds the initial volumes each pool lacks.
  // Errors: whatever NamedPool::Open or AddVolumes return (the message
  // names the pool), INVALID_ARGUMENT for a bad test-hook FIFO or an
  // add_queue_per_pool above WorkerPool::kMaxQueued (before anything is
  // opened), CANCELLED
  // when options.stop_requested returned true: the pools opened so far are
  // closed again, and the initial volumes added so far stay (each add is
  // complete and crash-safe; the next start adds the rest). An add already
  // in the kernel when the stop comes is not interrupted: it completes
  // first.
  static absl::StatusOr<std::unique_ptr<VolumeServer>> Create(Options options);

  // Shuts down (with a zero deadline) if Start was called and Shutdown
  // was not, then unmaps the pools.
  ~VolumeServer();

  VolumeServer(const VolumeServer&) = delete;
  VolumeServer& operator=(const VolumeServer&) = delete;

  // Start binds the metrics endpoint and the gRPC server and starts
  // serving. Errors: UNAVAILABLE when an address cannot be bound (the
  // message names it); nothing stays bound then. REQUIRES: called once.
  absl::Status Start();

  // grpc_address and metrics_address are the bound addresses, with the
  // ports actually chosen for port 0. Valid after Start succeeded.
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }

  // ReloadCredentialsNow has the credentials reloader read the TLS files
  // and the token file at once (CredentialsReloader::ReloadNow; main runs
  // it on SIGHUP). Returns false, doing nothing, when there is no reloader
  // (no TLS and no tokens, or credentials_refresh 0: the files are read
  // only at start-up) or Shutdown has begun. Thread safety: any thread,
  // after Start; returns without waiting for the reads.
  bool ReloadCredentialsNow();

  // StartDraining makes health report NOT_SERVING (ending Watch streams)
  // and new pool RPCs fail with UNAVAILABLE, while the server keeps its
  // connections and lets calls in flight run. Idempotent. Thread safety:
  // call from one thread (the one that calls Shutdown).
  void StartDraining();

  // Shutdown drains (StartDraining) and stops the server (see the life
  // cycle above);
  // blocks until every RPC has finished, which is normally within
  // `deadline` (an add stuck in the kernel can take longer: main.cc bounds
  // that with a watchdog). Idempotent. Thread safety: call from one thread.
  void Shutdown(absl::Duration deadline);

 private:
  explicit VolumeServer(Options options) : options_(std::move(options)) {}

  absl::Status OpenPools();
  // TlsCredentials builds the gRPC port's TLS credentials from
  // options_.tls: with credentials_refresh above zero, over copies of the
  // files that the reloader replaces (served_tls_, made here). REQUIRES:
  // options_.tls is set. Errors: ServedTlsFiles::Create's.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials();
  // StartReloader starts reloader_ when credentials_refresh is above zero
  // and TLS or tokens are configured.
  void StartReloader();

  // Members are destroyed bottom-up: the endpoints before the service,
  // the service before the workers, the workers before the pools.
  Options options_;
  std::shared_ptr<StallGate> stall_gate_;
  std::shared_ptr<StallGate> verify_stall_gate_;
  std::vector<std::unique_ptr<NamedPool>> pools_;
  // Configured pools found corrupt (DATA_LOSS) at start: not served.
  std::vector<VolumePoolServiceImpl::QuarantinedPool> quarantined_;
  std::vector<std::unique_ptr<WorkerPool>> add_workers_;
  std::unique_ptr<ServerMetrics> metrics_;
  // The tokens in use (null: no tokens); the service reads them, the
  // reloader replaces them.
  std::unique_ptr<LiveTokenTable> tokens_;
  RequestLog requests_;
  std::unique_ptr<VolumePoolServiceImpl> service_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  // The TLS files gRPC serves when credentials_refresh is above zero
  // (null otherwise): declared before grpc_server_, which reads them until
  // it is destroyed.
  std::unique_ptr<ServedTlsFiles> served_tls_;
  std::unique_ptr<grpc::Server> grpc_server_;
  // Started by Start (null when credentials_refresh is zero or there is
  // nothing to watch), stopped by Shutdown. Declared after what it uses.
  std::unique_ptr<CredentialsReloader> reloader_;
  std::string grpc_address_;
  std::string metrics_address_;
  bool started_ = false;
  bool draining_ = false;
  bool shut_down_ = false;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_SERVER_H_
