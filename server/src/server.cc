#include "groove/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "groove/server/config.h"
#include "groove/server/log.h"
#include "groove/server/security.h"

namespace groove::server {
namespace {

// WithPort replaces the port of "host:port" by `port`.
std::string WithPort(absl::string_view address, int port) {
  const size_t colon = address.rfind(':');
  return absl::StrCat(address.substr(0, colon), ":", port);
}

// kUnixSocketUmask makes bind(2) create the socket 0660: its owner and
// group may connect (connect(2) needs write permission), nobody else, from
// the moment it exists.
constexpr mode_t kUnixSocketUmask = 0117;

// UnixSocketPath is the PATH of a "unix:PATH" address, "" for host:port.
std::string UnixSocketPath(absl::string_view address) {
  return absl::ConsumePrefix(&address, "unix:") ? std::string(address) : "";
}

// CheckUnixSocketFree returns OK when a server may bind the unix socket
// `path`: nothing is there, or a socket that refuses connections
// (ECONNREFUSED: left by a server that died; gRPC replaces it). gRPC would
// also replace a socket another server is accepting on, taking its address
// silently: that is UNAVAILABLE here, as is a path that is not a socket and
// a socket whose state the connect cannot tell (a full backlog, no
// permission). The connect does not block.
absl::Status CheckUnixSocketFree(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat(
        "listen_address unix:", path, ": cannot listen: ", strerror(errno)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat(
        "listen_address unix:", path,
        ": cannot listen: the path exists and is not a socket; remove it or "
        "choose another path"));
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("listen_address unix:", path,
                     ": cannot listen: socket: ", strerror(errno)));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  const int connected =
      connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int error = errno;
  close(fd);
  if (connected != 0 && error == ECONNREFUSED) return absl::OkStatus();
  if (connected == 0 || error == EAGAIN) {
    return absl::UnavailableError(absl::StrCat(
        "listen_address unix:", path,
        ": cannot listen: another process is serving that socket (another "
        "groove-volumed?); stop it or choose another path"));
  }
  return absl::UnavailableError(absl::StrCat(
      "listen_address unix:", path,
      ": cannot listen: cannot tell whether another process serves that "
      "socket (connect: ",
      strerror(error),
      "); remove it or choose another "
      "path"));
}

// AddInitialVolumes adds the volumes of [0, count) that `pool` lacks, a
// contiguous run of at most kInitialAddBytesPerCall at a time, and polls
// `stop_requested` (if set) before each: CANCELLED when it returns true.
// Volumes already there (from an earlier start) are kept as they are.
absl::Status AddInitialVolumes(NamedPool& pool, uint64_t count,
                               const std::function<bool()>& stop_requested) {
  if (count == 0) return absl::OkStatus();
  const uint64_t per_call =
      std::max<uint64_t>(1, VolumeServer::kInitialAddBytesPerCall /
                                pool.config().volume_size_bytes);
  // Every mapped index below `count`: the listing of [0, count), a
  // bounded number of slots per call (NamedPool::kListMaxSlotsScanned).
  uint64_t next = 0;
  std::vector<bool> present(count, false);
  while (next < count) {
    for (const VolumeEntry& entry : pool.ListVolumes(next, count, &next)) {
      if (entry.index < count) present[entry.index] = true;
    }
  }
  uint64_t added = 0;
  for (uint64_t i = 0; i < count;) {
    if (present[i]) {
      ++i;
      continue;
    }
    uint64_t end = i;
    while (end < count && end - i < per_call && !present[end]) ++end;
    if (stop_requested && stop_requested()) {
      Log(LogLevel::kInfo, "initial_volumes_stopped",
          {{"pool", pool.config().name},
           {"initial_volumes", count},
           {"added", added},
           {"next_index", i}});
      return absl::CancelledError(
          absl::StrCat("pool '", pool.config().name, "': initial_volumes ",
                       count, ": stopped by a stop signal before index ", i,
                       " (", added, " added; the next start adds the rest)"));
    }
    absl::StatusOr<std::vector<uint64_t>> run = pool.AddVolumes(end - i, i, "");
    if (!run.ok()) {
      return absl::Status(
          run.status().code(),
          absl::StrCat("pool '", pool.config().name, "': initial_volumes ",
                       count, ": adding [", i, ", ", end,
                       "): ", run.status().message()));
    }
    added += end - i;
    i = end;
  }
  Log(LogLevel::kInfo, "initial_volumes",
      {{"pool", pool.config().name},
       {"initial_volumes", count},
       {"added", added},
       {"already_there", count - added}});
  return absl::OkStatus();
}

// Connect opens and closes a TCP connection to "host:port" ("[v6]:port"),
// ignoring failures.
void Connect(absl::string_view address) {
  const size_t colon = address.rfind(':');
  std::string host(address.substr(0, colon));
  const std::string port(address.substr(colon + 1));
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return;
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    connect(fd, found->ai_addr, found->ai_addrlen);
    close(fd);
  }
  freeaddrinfo(found);
}

// CloseExposer destroys `exposer`, which listens on `address`, quickly.
// Its CivetWeb listener polls with a 2 s timeout and notices the stop only
// when the poll returns: without help every shutdown would take 2 s more.
// A connection makes the poll return, so one is made every 10 ms until
// the exposer is gone.
void CloseExposer(std::unique_ptr<prometheus::Exposer> exposer,
                  const std::string& address) {
  absl::Notification closed;
  std::thread closer([&] {
    exposer.reset();
    closed.Notify();
  });
  while (!closed.WaitForNotificationWithTimeout(absl::Milliseconds(10))) {
    Connect(address);
  }
  closer.join();
}

// WithoutReflection removes the server reflection plugin from a builder.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    std::erase_if(*plugins, [](const auto& plugin) {
      return plugin->name() == "proto_server_reflection";
    });
  }
};

// ApplyLimits sets the gRPC port's resource limits (docs/SERVER.md §10).
void ApplyLimits(const VolumeServer::Limits& limits,
                 grpc::ServerBuilder* builder) {
  auto ms = [](absl::Duration d) {
    return static_cast<int>(absl::ToInt64Milliseconds(d));
  };
  builder->SetMaxReceiveMessageSize(static_cast<int>(limits.max_request_bytes));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                              limits.max_concurrent_streams);
  // Keepalive enforcement: a client may ping, even without calls in
  // flight, once per interval; the third ping that comes sooner (ping
  // strikes above 2) gets GOAWAY ENHANCE_YOUR_CALM.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      ms(limits.keepalive_min_ping_interval));
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // The server's own keepalive: a peer that has vanished (no FIN, e.g. a
  // node lost) is noticed within 2 min + 20 s and its connection freed.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 120000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  if (limits.max_connection_idle > absl::ZeroDuration()) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                                ms(limits.max_connection_idle));
  }
}

// ReportUnconfiguredPools warns of each pool in the data directory that
// `config` does not name (UnconfiguredPools): dropped from the
// configuration, its files keep their memory until someone deletes them.
void ReportUnconfiguredPools(const v1::ServerConfig& config) {
  absl::StatusOr<std::vector<PoolFiles>> unconfigured =
      UnconfiguredPools(config);
  if (!unconfigured.ok()) {
    Log(LogLevel::kWarn, "pools_not_listed",
        {{"data_dir", config.data_dir()},
         {"reason", unconfigured.status().message()}});
    return;
  }
  for (const PoolFiles& pool : *unconfigured) {
    std::vector<std::string> paths;
    for (const PoolFiles::File& file : pool.files) paths.push_back(file.path);
    Log(LogLevel::kWarn, "pool_not_configured",
        {{"pool", pool.name},
         {"data_dir", config.data_dir()},
         {"volumes_mapped", pool.volumes_mapped},
         {"held_bytes", pool.held_bytes()},
         {"files", absl::StrJoin(paths, ",")},
         {"unreadable", pool.unreadable.empty() ? "-" : pool.unreadable},
         {"effect",
          "this server does not serve it, and its files keep their memory "
          "(hugepages included); add it back to the configuration to serve "
          "it, or stop every process that joined it and delete these files "
          "to free the memory"}});
  }
}

void LogOpened(const NamedPool& pool) {
  const RecoveryReport& r = pool.recovery();
  const PoolSummary s = pool.Summary();
  const RequestJournal::OpenReport& journal = r.request_journal;
  const bool eventful =
      r.lock_was_held || r.store_lost || r.adds_rolled_back > 0 ||
      r.removes_finished > 0 || r.volumes_unresolved > 0 ||
      r.volumes_quarantined > 0 || !journal.reset_reason.empty() ||
      journal.dropped_invalid > 0 || !r.request_journal_error.empty();
  Log(eventful ? LogLevel::kWarn : LogLevel::kInfo,
      r.created ? "pool_created" : "pool_recovered",
      {{"pool", s.name},
       {"backing_requested", BackingToString(s.backing_requested)},
       {"backing", BackingKindName(s.backing_in_use)},
       {"page_size_bytes", s.page_size_bytes},
       {"volume_size_bytes", s.volume_size_bytes},
       {"max_volumes", s.max_volumes},
       {"volumes_mapped", s.volumes_mapped},
       {"volumes_empty", s.volumes_empty},
       {"store", pool.StorePath().empty() ? "memfd" : pool.StorePath()},
       {"store_survives_restart", s.store_survives_restart ? "true" : "false"},
       {"lock_was_held", r.lock_was_held ? "true" : "false"},
       {"store_lost", r.store_lost ? "true" : "false"},
       {"volumes_recovered", r.volumes_recovered},
       {"adds_rolled_back", r.adds_rolled_back},
       {"removes_finished", r.removes_finished},
       {"volumes_repushed", r.volumes_repushed},
       {"volumes_unresolved", r.volumes_unresolved},
       {"volumes_quarantined", r.volumes_quarantined},
       {"quarantines_on_stack", r.quarantines_on_stack},
       {"quarantines_mended", r.quarantines_mended},
       // Adds with request ids the pool's journal holds (their ids are
       // answered across this restart); of them, in flight and rolled
       // forward; in flight and rolled back (forgotten); entries that were
       // no add's; why the journal was emptied ("" if it was not).
       {"request_ids_recorded", journal.committed},
       {"request_adds_rolled_forward", journal.resolved_committed},
       {"request_adds_forgotten", journal.resolved_failed},
       {"request_entries_dropped", journal.dropped_invalid},
       {"request_journal_reset", journal.reset_reason},
       // Why the pool has no journal this run ("" when it has): its ids
       // are then remembered in memory only, until a restart.
       {"request_journal_error", r.request_journal_error}});
}

}  // namespace

std::string PoolHealthName(absl::string_view pool) {
  return absl::StrCat(kServiceName, "/", pool);
}

absl::StatusOr<std::unique_ptr<VolumeServer>> VolumeServer::Create(
    Options options) {
  if (options.add_queue_per_pool > WorkerPool::kMaxQueued) {
    return absl::InvalidArgumentError(absl::StrCat(
        "add_queue_per_pool: ", options.add_queue_per_pool, " is above ",
        WorkerPool::kMaxQueued,
        ", the most AddVolume calls a pool's add queue can hold (its nodes "
        "are one fixed-size array with 16-bit indices)"));
  }
  std::unique_ptr<VolumeServer> server(new VolumeServer(std::move(options)));
  if (absl::Status s = server->OpenPools(); !s.ok()) return s;
  std::vector<const NamedPool*> pools;
  std::vector<VolumePoolServiceImpl::ServedPool> served;
  std::vector<const WorkerPool*> add_workers;
  for (const std::unique_ptr<NamedPool>& pool : server->pools_) {
    auto workers =
        std::make_unique<WorkerPool>(absl::StrCat("add:", pool->config().name),
                                     server->options_.add_workers_per_pool,
                                     server->options_.add_queue_per_pool);
    served.push_back({pool.get(), workers.get()});
    add_workers.push_back(workers.get());
    server->add_workers_.push_back(std::move(workers));
    pools.push_back(pool.get());
  }
  // Health names: "", the service, and "<service>/<pool>" per configured
  // pool; a quarantined pool's stays NOT_SERVING.
  std::vector<std::string> health_names = {kServiceName};
  std::vector<std::string> quarantined_names;
  std::vector<std::string> never_serving;
  for (const v1::PoolConfig& p : server->options_.config.pools()) {
    health_names.push_back(PoolHealthName(p.name()));
  }
  for (const auto& q : server->quarantined_) {
    quarantined_names.push_back(q.name);
    never_serving.push_back(PoolHealthName(q.name));
  }
  server->metrics_ = std::make_unique<ServerMetrics>(
      std::move(pools), quarantined_names, std::move(add_workers));
  server->metrics_->ExportUnconfiguredPools(server->options_.config);
  if (server->options_.tokens.has_value()) {
    server->tokens_ =
        std::make_unique<LiveTokenTable>(*std::move(server->options_.tokens));
    server->options_.tokens.reset();
  }
  server->service_ = std::make_unique<VolumePoolServiceImpl>(
      std::move(served), server->metrics_.get(), &server->requests_,
      server->quarantined_, server->tokens_.get());
  server->health_ = std::make_unique<HealthService>(std::move(health_names),
                                                    std::move(never_serving));
  return server;
}

absl::Status VolumeServer::OpenPools() {
  const v1::ServerConfig& config = options_.config;
  for (auto [fifo, gate, hook] :
       {std::tuple{&options_.testonly_stall_add_fifo, &stall_gate_, "add"},
        std::tuple{&options_.testonly_stall_verify_fifo, &verify_stall_gate_,
                   "verify"}}) {
    if (fifo->empty()) continue;
    absl::StatusOr<std::shared_ptr<StallGate>> opened = StallGate::Open(*fifo);
    if (!opened.ok()) return opened.status();
    *gate = *std::move(opened);
    Log(LogLevel::kWarn, absl::StrCat("testonly_stall_", hook, "_enabled"),
        {{"fifo", *fifo}});
  }
  if (!options_.testonly_stall_punch_pools.empty() && stall_gate_ == nullptr) {
    return absl::InvalidArgumentError(
        "--testonly_stall_punch_pools needs --testonly_stall_add_fifo, the "
        "FIFO the punches wait on");
  }
  std::vector<RecordedPoolAdd> recorded;
  for (const v1::PoolConfig& pool_config : config.pools()) {
    if (options_.stop_requested && options_.stop_requested()) {
      return absl::CancelledError(
          absl::StrCat("stopped by a stop signal before opening pool '",
                       pool_config.name(), "'"));
    }
    NamedPool::OpenOptions open_options;
    open_options.recreate = options_.recreate;
    const auto named = [&pool_config](const std::vector<std::string>& pools) {
      return std::find(pools.begin(), pools.end(), pool_config.name()) !=
             pools.end();
    };
    TestonlyVolumeStore::Faults faults;
    if (stall_gate_ != nullptr && (options_.testonly_stall_add_pools.empty() ||
                                   named(options_.testonly_stall_add_pools))) {
      faults.stall_allocations = stall_gate_;
    }
    if (named(options_.testonly_stall_punch_pools)) {
      faults.stall_punches = stall_gate_;
    }
    faults.fail_punches = named(options_.testonly_fail_punch_pools);
    if (faults.fail_punches) {
      Log(LogLevel::kWarn, "testonly_fail_punches_enabled",
          {{"pool", pool_config.name()}});
    }
    if (faults.stall_allocations != nullptr || faults.fail_punches ||
        faults.stall_punches != nullptr) {
      open_options.wrap_store = [faults, name = pool_config.name()](
                                    std::unique_ptr<VolumeStore> store) {
        return std::make_unique<TestonlyVolumeStore>(std::move(store), faults,
                                                     name);
      };
    }
    // The memory of removed volumes that could not be given back stays
    // allocated: said once per failed punch, at error, with the store's
    // reason (groove_pool_volumes_not_given_back_total counts them).
    open_options.on_give_back_failed = [name = pool_config.name()](
                                           uint64_t first, uint64_t count,
                                           const absl::Status& error) {
      Log(LogLevel::kError, "give_back_failed",
          {{"pool", name},
           {"first_index", first},
           {"count", count},
           {"reason", error.message()},
           {"effect",
            "the volumes' indices are free but their memory stays allocated "
            "until they are added again or the pool is re-created"}});
    };
    if (verify_stall_gate_ != nullptr) {
      open_options.step_hook = [gate = verify_stall_gate_,
                                name = pool_config.name()](
                                   absl::string_view step) {
        if (step != "verify:walk") return;
        Log(LogLevel::kWarn, "testonly_stall_verify_wait", {{"pool", name}});
        gate->Wait();
        Log(LogLevel::kWarn, "testonly_stall_verify_released",
            {{"pool", name}});
      };
    }
    absl::StatusOr<std::unique_ptr<NamedPool>> pool = NamedPool::Open(
        config.data_dir(), CorePoolConfig(pool_config), open_options);
    if (!pool.ok() && pool.status().code() == absl::StatusCode::kDataLoss) {
      // Corrupt: quarantine this pool and serve the others. Its files are
      // left as they are, for forensics and repair.
      Log(LogLevel::kError, "pool_quarantined",
          {{"pool", pool_config.name()},
           {"data_dir", config.data_dir()},
           {"reason", pool.status().message()}});
      quarantined_.push_back({pool_config.name(), pool.status()});
      continue;
    }
    if (!pool.ok()) {
      const absl::Status& s = pool.status();
      return absl::Status(
          s.code(), absl::StrCat("open pool '", pool_config.name(), "' in ",
                                 config.data_dir(), ": ", s.message()));
    }
    LogOpened(**pool);
    // Taken before the initial volumes are added, whose summary a replay
    // need not show.
    const v1::PoolSummary summary = ToProtoSummary((*pool)->Summary());
    for (RecordedAdd& add : (*pool)->TakeRecordedAdds()) {
      recorded.push_back({pool_config.name(), std::move(add), summary});
    }
    if (absl::Status s = AddInitialVolumes(
            **pool, pool_config.initial_volumes(), options_.stop_requested);
        !s.ok()) {
      return s;
    }
    pools_.push_back(*std::move(pool));
  }
  ReportUnconfiguredPools(config);
  // The adds with request ids the pools' journals held: a repeat of one
  // after this restart is answered as before it (RequestLog, "Restarts").
  if (!recorded.empty()) {
    const size_t adds = recorded.size();
    const size_t ids = RememberNewest(std::move(recorded), requests_);
    // ids < adds: an id recorded twice (the newest kept), or more than the
    // request log holds (the oldest forgotten).
    Log(LogLevel::kInfo, "request_ids_remembered",
        {{"ids", ids}, {"adds_recorded", adds}});
  }
  return absl::OkStatus();
}

absl::Status VolumeServer::Start() {
  const v1::ServerConfig& config = options_.config;
  // Metrics first: if either address cannot be bound, nothing is served.
  try {
    // CivetWeb's options, as prometheus-cpp's other constructor sets the
    // first two.
    exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", config.metrics_listen_address(), "num_threads",
        absl::StrCat(kMetricsThreads), "request_timeout_ms",
        absl::StrCat(absl::ToInt64Milliseconds(kMetricsRequestTimeout))});
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics_listen_address ",
                                               config.metrics_listen_address(),
                                               ": cannot listen: ", e.what()));
  }
  const std::vector<int> metrics_ports = exposer_->GetListeningPorts();
  if (metrics_ports.empty()) {
    exposer_.reset();
    return absl::UnavailableError(absl::StrCat("metrics_listen_address ",
                                               config.metrics_listen_address(),
                                               ": cannot listen"));
  }
  for (const auto& collectable : metrics_->collectables()) {
    exposer_->RegisterCollectable(collectable);
  }

  // The reflection plugin is process-wide, and linking
  // libgrpc++_reflection already registers it (a static initializer):
  // every builder adds the reflection service unless an option takes the
  // plugin out again.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!options_.reflection) {
    builder.SetOption(std::make_unique<WithoutReflection>());
  }
  // gRPC sets SO_REUSEPORT by default, so a second server on the same
  // address would share its traffic instead of failing to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ApplyLimits(options_.limits, &builder);
  const std::string unix_path = UnixSocketPath(config.listen_address());
  if (!unix_path.empty()) {
    if (absl::Status free = CheckUnixSocketFree(unix_path); !free.ok()) {
      CloseExposer(
          std::move(exposer_),
          WithPort(config.metrics_listen_address(), metrics_ports.front()));
      return free;
    }
  }
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (options_.tls.has_value()) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> tls =
        TlsCredentials();
    if (!tls.ok()) {
      CloseExposer(
          std::move(exposer_),
          WithPort(config.metrics_listen_address(), metrics_ports.front()));
      return tls.status();
    }
    credentials = *std::move(tls);
  }
  int grpc_port = 0;
  builder.AddListeningPort(config.listen_address(), std::move(credentials),
                           &grpc_port);
  builder.RegisterService(service_.get());
  builder.RegisterService(health_.get());
  // The socket of a unix address is made 0660 by bind(2) itself (the umask
  // is the process's: no other thread creates files meanwhile).
  const mode_t umask_before = unix_path.empty() ? 0 : umask(kUnixSocketUmask);
  grpc_server_ = builder.BuildAndStart();
  if (!unix_path.empty()) umask(umask_before);
  if (grpc_server_ == nullptr || grpc_port == 0) {
    grpc_server_.reset();
    CloseExposer(std::move(exposer_), WithPort(config.metrics_listen_address(),
                                               metrics_ports.front()));
    return absl::UnavailableError(absl::StrCat(
        "listen_address ", config.listen_address(),
        ": cannot listen (in use, or not an address of this host)"));
  }
  health_->SetServing(true);
  started_ = true;
  grpc_address_ = unix_path.empty()
                      ? WithPort(config.listen_address(), grpc_port)
                      : config.listen_address();
  metrics_address_ =
      WithPort(config.metrics_listen_address(), metrics_ports.front());
  const char* tls = "off";
  if (options_.tls.has_value()) {
    tls = options_.tls->client_certificate_request ==
                  GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
              ? "on"
              : "mutual";
  }
  const TokenTable* tokens = tokens_ == nullptr ? nullptr : &tokens_->Current();
  const absl::Duration refresh = CredentialsRefresh(config);
  Log(LogLevel::kInfo, "listening",
      {{"grpc", grpc_address_},
       {"metrics", metrics_address_},
       {"pools", config.pools_size()},
       {"data_dir", config.data_dir()},
       {"tls", tls},
       {"auth_tokens",
        tokens == nullptr ? "off" : absl::StrCat(tokens->size())},
       {"credentials_refresh",
        refresh > absl::ZeroDuration() ? absl::FormatDuration(refresh) : "off"},
       {"reflection", options_.reflection ? "on" : "off"}});
  StartReloader();
  if (!IsLoopbackAddress(config.listen_address()) &&
      !options_.tls.has_value()) {
    // Allowed by --insecure or by tokens alone (ValidateServerConfig);
    // either way, what crosses the network is readable.
    Log(LogLevel::kWarn, "plaintext_listen",
        {{"grpc", grpc_address_},
         {"auth_tokens", tokens == nullptr ? "off" : "on"},
         {"note", tokens == nullptr
                      ? "--insecure: anyone who can reach this address may "
                        "call every RPC; the network must be the boundary"
                      : "bearer tokens cross the network in plaintext; "
                        "add --tls-cert and --tls-key"}});
  }
  return absl::OkStatus();
}

namespace {

// StartUpTlsFiles returns the text of the TLS files main read and checked
// (LoadTlsCredentials): the key, the chain and, for mutual TLS, the
// client CAs ("" otherwise).
TlsFiles StartUpTlsFiles(const grpc::SslServerCredentialsOptions& read) {
  TlsFiles files;
  files.cert_chain = read.pem_key_cert_pairs.front().cert_chain;
  files.private_key = read.pem_key_cert_pairs.front().private_key;
  files.client_ca = read.pem_root_certs;
  return files;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
VolumeServer::TlsCredentials() {
  const grpc::SslServerCredentialsOptions& read = *options_.tls;
  const bool mutual = read.client_certificate_request !=
                      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  const absl::Duration refresh = CredentialsRefresh(options_.config);
  // The certificates' validity, reported once per load: here for the
  // files read at start-up, then by the reloader for each change it
  // installs. An expired or not yet valid certificate is served all the
  // same (ReportTlsCertificates says why). The files passed CheckTlsFiles
  // in main: this parse is for their dates.
  absl::StatusOr<std::vector<TlsCertificate>> certificates =
      CheckTlsFiles(options_.config.tls(), StartUpTlsFiles(read));
  if (!certificates.ok()) return certificates.status();
  ReportTlsCertificates(options_.config.tls(), *certificates, absl::Now(),
                        metrics_.get());
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (refresh > absl::ZeroDuration()) {
    // gRPC's own FileWatcherCertificateProvider
    // (grpcpp/security/tls_certificate_provider.h): a thread of gRPC's
    // re-reads the key, the certificate chain and the client CAs every
    // interval, and new handshakes use what it read last. It reads
    // checked copies (ServedTlsFiles), which the reloader replaces only
    // with files that pass the start-up checks: given the configured
    // files, gRPC 1.51 would take a key that is not the certificate's and
    // then fail every new handshake (docs/SERVER.md section 10). Its
    // interval is whole seconds (an unsigned int), so a shorter refresh
    // becomes 1 s; gRPC 1.51 has no minimum of its own, and 0 would make
    // it read in a loop.
    absl::StatusOr<std::unique_ptr<ServedTlsFiles>> served =
        ServedTlsFiles::Create(StartUpTlsFiles(read));
    if (!served.ok()) return served.status();
    served_tls_ = *std::move(served);
    const auto seconds = static_cast<unsigned int>(std::max<int64_t>(
        1, absl::ToInt64Seconds(absl::Ceil(refresh, absl::Seconds(1)))));
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            served_tls_->key_path(), served_tls_->cert_path(),
            served_tls_->client_ca_path(), seconds);
  } else {
    // --credentials-refresh=0s: exactly what was read and checked at
    // start-up, for the server's life.
    provider =
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
            read.pem_root_certs,
            std::vector<grpc::experimental::IdentityKeyCertPair>{
                {read.pem_key_cert_pairs.front().private_key,
                 read.pem_key_cert_pairs.front().cert_chain}});
  }
  grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (mutual) {
    // The client CAs verify client certificates: the same
    // require-and-verify as grpc::SslServerCredentials had.
    tls_options.watch_root_certs();
  }
  tls_options.set_cert_request_type(read.client_certificate_request);
  return grpc::experimental::TlsServerCredentials(tls_options);
}

void VolumeServer::StartReloader() {
  const v1::ServerConfig& config = options_.config;
  const absl::Duration refresh = CredentialsRefresh(config);
  if (refresh <= absl::ZeroDuration() ||
      (tokens_ == nullptr && !options_.tls.has_value())) {
    return;
  }
  CredentialsReloader::Options reload;
  reload.interval = refresh;
  if (tokens_ != nullptr) {
    reload.auth_tokens_file = config.auth_tokens_file();
    reload.tokens = tokens_.get();
    reload.tokens_text = std::move(options_.tokens_text);
  }
  if (options_.tls.has_value()) {
    reload.tls = config.tls();
    reload.tls_files = StartUpTlsFiles(*options_.tls);
    reload.served_tls = served_tls_.get();
  }
  reloader_ = CredentialsReloader::Start(std::move(reload), metrics_.get());
}

bool VolumeServer::ReloadCredentialsNow() {
  return reloader_ != nullptr && reloader_->ReloadNow();
}

void VolumeServer::StartDraining() {
  if (!started_ || draining_) return;
  draining_ = true;
  Log(LogLevel::kInfo, "draining", {});
  service_->StartDraining();
  // NOT_SERVING for "" and every service, so health checkers stop sending
  // traffic; their Watch streams end, so they do not hold the drain up.
  health_->Shutdown();
}

void VolumeServer::Shutdown(absl::Duration deadline) {
  if (!started_ || shut_down_) return;
  shut_down_ = true;
  // No more reloads: the thread wakes at once and is joined.
  if (reloader_ != nullptr) reloader_->Stop();
  StartDraining();
  Log(LogLevel::kInfo, "shutting_down",
      {{"deadline", absl::FormatDuration(deadline)}});

  const absl::Time deadline_at = absl::Now() + deadline;
  // From the deadline on, queued adds do not start (gRPC's cancellation of
  // them below is seen asynchronously).
  service_->StopAddsAt(deadline_at);
  // The test hook must not outlive the deadline: release stalled adds then.
  absl::Notification stopped;
  std::thread releaser;
  if (stall_gate_ != nullptr || verify_stall_gate_ != nullptr) {
    releaser = std::thread([&] {
      if (!stopped.WaitForNotificationWithDeadline(deadline_at)) {
        for (StallGate* gate : {stall_gate_.get(), verify_stall_gate_.get()}) {
          if (gate != nullptr) gate->ReleaseAll();
        }
      }
    });
  }
  // Waits for in-flight RPCs until the deadline, then cancels them, then
  // waits for their handlers to finish (an add in the kernel completes; a
  // queued one finishes UNAVAILABLE at once, StopAddsAt).
  grpc_server_->Shutdown(absl::ToChronoTime(deadline_at));
  stopped.Notify();
  if (releaser.joinable()) releaser.join();
  for (std::unique_ptr<WorkerPool>& workers : add_workers_) workers->Stop();
  CloseExposer(std::move(exposer_), metrics_address_);
  for (const std::unique_ptr<NamedPool>& pool : pools_) {
    const PoolSummary s = pool->Summary();
    Log(LogLevel::kInfo, "pool_closed",
        {{"pool", s.name},
         {"volumes_mapped", s.volumes_mapped},
         {"volumes_empty", s.volumes_empty}});
  }
  Log(LogLevel::kInfo, "stopped");
}

VolumeServer::~VolumeServer() {
  Shutdown(absl::ZeroDuration());
  for (std::unique_ptr<WorkerPool>& workers : add_workers_) workers->Stop();
}

}  // namespace groove::server
