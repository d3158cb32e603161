#include "groove/server/metrics.h"

#include <dirent.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "groove/backing.h"
#include "groove/build_info.h"
#include "groove/server/config.h"
#include "groove/server/log.h"

namespace groove::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

ClientMetric Sample(std::vector<ClientMetric::Label> labels, double value,
                    MetricType type) {
  ClientMetric metric;
  metric.label = std::move(labels);
  if (type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return metric;
}

// LatencyCollector exposes grpc_server_handling_seconds from the
// histograms it owns.
class LatencyCollector final : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    MetricFamily family =
        Family("grpc_server_handling_seconds",
               "Time from the start of an RPC of the service to its end, by "
               "method.",
               MetricType::Histogram);
    for (int m = 0; m < kRpcMethodCount; ++m) {
      ClientMetric metric;
      metric.label = {{"grpc_method",
                       std::string(RpcMethodName(static_cast<RpcMethod>(m)))},
                      {"grpc_service", kServiceName}};
      histograms[m].Fill(&metric);
      family.metric.push_back(std::move(metric));
    }
    return {std::move(family)};
  }

  std::array<LatencyHistogram, kRpcMethodCount> histograms;
};

// PoolCollector builds the pool gauges from NamedPool::Summary() on every
// scrape, so they show what data-plane processes did too.
class PoolCollector final : public prometheus::Collectable {
 public:
  PoolCollector(std::vector<const NamedPool*> pools,
                std::vector<const WorkerPool*> add_workers)
      : pools_(std::move(pools)),
        add_workers_(std::move(add_workers)),
        store_deleted_logged_(
            std::make_unique<std::atomic<bool>[]>(pools_.size())) {}

  std::vector<MetricFamily> Collect() const override {
    MetricFamily volumes =
        Family("groove_pool_volumes",
               "Volumes in the pool by state: empty (on the stack) or in_use "
               "(acquired, or quarantined and still mapped).",
               MetricType::Gauge);
    MetricFamily max_volumes =
        Family("groove_pool_max_volumes",
               "Volume slots of the pool: indices are [0, max_volumes).",
               MetricType::Gauge);
    MetricFamily volume_size =
        Family("groove_pool_volume_size_bytes",
               "Size of every volume of the pool, header included.",
               MetricType::Gauge);
    MetricFamily capacity = Family(
        "groove_pool_capacity_bytes",
        "Memory the pool's volumes hold: mapped volumes times volume size.",
        MetricType::Gauge);
    MetricFamily empty =
        Family("groove_pool_empty_bytes",
               "Memory ready to be acquired: empty volumes times volume size.",
               MetricType::Gauge);
    MetricFamily releasing = Family(
        "groove_pool_releasing_bytes",
        "Memory of removed volumes not yet given back: their punch waits "
        "for an AddVolume's allocation of the pool in progress.",
        MetricType::Gauge);
    MetricFamily added = Family(
        "groove_pool_volumes_added_total",
        "Volumes pushed by AddVolume since the pool's shared counters last "
        "restarted (creation or recovery).",
        MetricType::Counter);
    MetricFamily removed = Family(
        "groove_pool_volumes_removed_total",
        "Good volumes popped by RemoveVolume since the counters restarted.",
        MetricType::Counter);
    MetricFamily acquires =
        Family("groove_pool_acquires_total",
               "Volumes acquired by data-plane processes since the counters "
               "restarted.",
               MetricType::Counter);
    MetricFamily releases =
        Family("groove_pool_releases_total",
               "Volumes released by data-plane processes since the counters "
               "restarted.",
               MetricType::Counter);
    MetricFamily quarantined =
        Family("groove_pool_volumes_quarantined_total",
               "Volumes popped with a bad header and taken out of circulation.",
               MetricType::Counter);
    MetricFamily in_quarantine = Family(
        "groove_pool_volumes_in_quarantine",
        "Volumes quarantined now: popped with a bad header, still mapped "
        "(counted in_use) until ReclaimVolume frees them. Kept across "
        "restarts.",
        MetricType::Gauge);
    MetricFamily reclaimed =
        Family("groove_pool_volumes_reclaimed_total",
               "Quarantined volumes freed by ReclaimVolume since the pool was "
               "created (kept across restarts).",
               MetricType::Counter);
    MetricFamily not_given_back = Family(
        "groove_pool_volumes_not_given_back_total",
        "Volumes whose memory this server could not give back to the "
        "backing since it started (a failed hole punch): their indices are "
        "free, their memory stays allocated until an AddVolume takes the "
        "index again or the pool is re-created.",
        MetricType::Counter);
    MetricFamily locked =
        Family("groove_pool_locked",
               "1 while the pool's maintenance lock is held (a recovery).",
               MetricType::Gauge);
    MetricFamily store_deleted = Family(
        "groove_pool_store_deleted",
        "1 when the pool's volume store file was deleted under the running "
        "server: its volumes live only until the server stops.",
        MetricType::Gauge);
    MetricFamily adds_queued = Family(
        "groove_pool_adds_queued",
        "AddVolume calls waiting in the pool's add queue for an add worker.",
        MetricType::Gauge);
    MetricFamily adds_running =
        Family("groove_pool_adds_running",
               "AddVolume calls the pool's add workers run now (taking "
               "memory from the kernel).",
               MetricType::Gauge);
    MetricFamily add_queue_limit = Family(
        "groove_pool_add_queue_limit",
        "AddVolume calls the pool's add queue holds: beyond them AddVolume "
        "answers UNAVAILABLE at once.",
        MetricType::Gauge);
    MetricFamily add_workers = Family(
        "groove_pool_add_workers",
        "Threads that run the pool's AddVolume calls (--add_workers_per_pool).",
        MetricType::Gauge);
    MetricFamily info = Family(
        "groove_pool_info",
        "Always 1: the backing the pool's memory comes from and its page "
        "size.",
        MetricType::Gauge);
    for (size_t i = 0; i < pools_.size(); ++i) {
      const NamedPool* pool = pools_[i];
      const PoolSummary s = pool->Summary();
      const ClientMetric::Label name{"pool", s.name};
      auto gauge = [&](MetricFamily& family, double value) {
        family.metric.push_back(Sample({name}, value, MetricType::Gauge));
      };
      auto counter = [&](MetricFamily& family, double value) {
        family.metric.push_back(Sample({name}, value, MetricType::Counter));
      };
      volumes.metric.push_back(Sample({name, {"state", "empty"}},
                                      static_cast<double>(s.volumes_empty),
                                      MetricType::Gauge));
      volumes.metric.push_back(Sample({name, {"state", "in_use"}},
                                      static_cast<double>(s.volumes_in_use),
                                      MetricType::Gauge));
      gauge(max_volumes, static_cast<double>(s.max_volumes));
      gauge(volume_size, static_cast<double>(s.volume_size_bytes));
      gauge(capacity, static_cast<double>(s.capacity_bytes));
      gauge(empty, static_cast<double>(s.empty_bytes));
      gauge(releasing, static_cast<double>(s.releasing_bytes));
      counter(added, static_cast<double>(s.counts.volumes_added));
      counter(removed, static_cast<double>(s.counts.volumes_removed));
      counter(acquires, static_cast<double>(s.counts.acquires));
      counter(releases, static_cast<double>(s.counts.releases));
      counter(quarantined, static_cast<double>(s.counts.volumes_quarantined));
      gauge(in_quarantine, static_cast<double>(s.volumes_in_quarantine));
      counter(reclaimed, static_cast<double>(s.volumes_reclaimed));
      counter(not_given_back, static_cast<double>(s.volumes_not_given_back));
      gauge(locked, s.locked ? 1 : 0);
      const bool deleted = pool->StoreDeleted();
      gauge(store_deleted, deleted ? 1 : 0);
      // Once per pool, by the first scrape that sees it (relaxed: only
      // which scrape logs is decided here).
      if (deleted &&
          !store_deleted_logged_[i].exchange(true, std::memory_order_relaxed)) {
        Log(LogLevel::kError, "store_deleted",
            {{"pool", s.name},
             {"store", pool->StorePath()},
             {"note",
              "the volume store file was deleted under the running server: "
              "its volumes live only until the server stops, new data-plane "
              "joins fail, and the next start finds the pool empty"}});
      }
      if (i < add_workers_.size()) {
        const WorkerPool& workers = *add_workers_[i];
        gauge(adds_queued, static_cast<double>(workers.queued()));
        gauge(adds_running, static_cast<double>(workers.running()));
        gauge(add_queue_limit, static_cast<double>(workers.max_queued()));
        gauge(add_workers, static_cast<double>(workers.threads()));
      }
      info.metric.push_back(
          Sample({{"backing", std::string(BackingKindName(s.backing_in_use))},
                  {"page_size_bytes", absl::StrCat(s.page_size_bytes)},
                  name},
                 1, MetricType::Gauge));
    }
    std::vector<MetricFamily> families;
    for (MetricFamily* f :
         {&volumes, &max_volumes, &volume_size, &capacity, &empty, &releasing,
          &added, &removed, &acquires, &releases, &quarantined, &in_quarantine,
          &reclaimed, &not_given_back, &locked, &store_deleted, &info}) {
      families.push_back(std::move(*f));
    }
    // The add queue's, only with add workers to read.
    if (!add_workers_.empty()) {
      for (MetricFamily* f :
           {&adds_queued, &adds_running, &add_queue_limit, &add_workers}) {
        families.push_back(std::move(*f));
      }
    }
    return families;
  }

 private:
  std::vector<const NamedPool*> pools_;
  std::vector<const WorkerPool*> add_workers_;  // empty, or pools_[i]'s
  // Whether a scrape has logged event=store_deleted for pools_[i].
  std::unique_ptr<std::atomic<bool>[]> store_deleted_logged_;
};

// ProcessCollector reads the process's own resource use from /proc/self
// at scrape time, with the names of the Prometheus client libraries'
// standard process metrics.
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> families;
    auto add = [&](const char* name, const char* help, MetricType type,
                   double value) {
      MetricFamily family = Family(name, help, type);
      family.metric.push_back(Sample({}, value, type));
      families.push_back(std::move(family));
    };
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)),
                     std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may hold
    // spaces: field 3 (state) is the first after the last ')'.
    const size_t paren = stat.rfind(')');
    std::vector<std::string> fields;
    if (paren != std::string::npos) {
      fields =
          absl::StrSplit(stat.substr(paren + 2), ' ', absl::SkipWhitespace());
    }
    // fields[k] is stat field k + 3 (proc(5)).
    auto field = [&](size_t number) {
      double value = 0;
      if (number >= 3 && number - 3 < fields.size()) {
        if (!absl::SimpleAtod(fields[number - 3], &value)) value = 0;
      }
      return value;
    };
    if (ticks > 0 && !fields.empty()) {
      add("process_cpu_seconds_total",
          "User and system CPU time spent, in seconds.", MetricType::Counter,
          (field(14) + field(15)) / ticks);
      add("process_start_time_seconds",
          "Start time of the process since the Unix epoch, in seconds.",
          MetricType::Gauge, BootTimeSeconds() + field(22) / ticks);
    }
    if (!fields.empty()) {
      add("process_virtual_memory_bytes", "Virtual memory size in bytes.",
          MetricType::Gauge, field(23));
      add("process_resident_memory_bytes", "Resident memory size in bytes.",
          MetricType::Gauge, field(24) * page);
    }
    add("process_open_fds", "Number of open file descriptors.",
        MetricType::Gauge, static_cast<double>(OpenFds()));
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      add("process_max_fds", "Maximum number of open file descriptors.",
          MetricType::Gauge,
          limit.rlim_cur == RLIM_INFINITY
              ? std::numeric_limits<double>::infinity()
              : static_cast<double>(limit.rlim_cur));
    }
    return families;
  }

 private:
  static double BootTimeSeconds() {
    std::ifstream in("/proc/stat");
    std::string line;
    while (std::getline(in, line)) {
      double value = 0;
      if (line.rfind("btime ", 0) == 0 &&
          absl::SimpleAtod(line.substr(6), &value)) {
        return value;
      }
    }
    return 0;
  }

  static size_t OpenFds() {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return 0;
    size_t count = 0;
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    return count > 0 ? count - 1 : 0;  // not the one opendir holds
  }
};

// UnconfiguredPoolCollector exports, at each scrape, the memory held by
// the files of the pools in the data directory that the configuration
// does not name (UnconfiguredPools).
class UnconfiguredPoolCollector final : public prometheus::Collectable {
 public:
  explicit UnconfiguredPoolCollector(v1::ServerConfig config)
      : config_(std::move(config)) {}

  std::vector<MetricFamily> Collect() const override {
    MetricFamily family = Family(
        "groove_unconfigured_pool_bytes",
        "Memory held by the files (metadata, volume store, request journal) "
        "of a pool in the data directory that this server's configuration "
        "does not name, so nobody serves it: add it back to the "
        "configuration, or delete its files (the start-up line "
        "event=pool_not_configured names them).",
        MetricType::Gauge);
    absl::StatusOr<std::vector<PoolFiles>> pools = UnconfiguredPools(config_);
    if (pools.ok()) {
      for (const PoolFiles& pool : *pools) {
        family.metric.push_back(Sample({{"pool", pool.name}},
                                       static_cast<double>(pool.held_bytes()),
                                       MetricType::Gauge));
      }
    }
    return {std::move(family)};
  }

 private:
  const v1::ServerConfig config_;
};

// LogCollector exposes how many log lines each budget refused (log.h),
// so a flood that thins the audit trail, or a client looping on refused
// calls, shows on a dashboard.
class LogCollector final : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    MetricFamily family = Family(
        "groove_log_lines_suppressed_total",
        "Log lines not written because they were over their budget: "
        "kind=routine, adds and removes over "
        "--log_routine_lines_per_second; kind=refusal, rpc_error lines of "
        "calls refused for their client's doing over "
        "--log_refusal_lines_per_second. The log counts them in "
        "log_lines_suppressed lines.",
        MetricType::Counter);
    family.metric.push_back(Sample(
        {{"kind", "routine"}},
        static_cast<double>(RoutineLinesSuppressedTotal()), family.type));
    family.metric.push_back(Sample(
        {{"kind", "refusal"}},
        static_cast<double>(RefusalLinesSuppressedTotal()), family.type));
    return {std::move(family)};
  }
};

}  // namespace

absl::string_view RpcMethodName(RpcMethod method) {
  switch (method) {
    case RpcMethod::kListPools:
      return "ListPools";
    case RpcMethod::kAddVolume:
      return "AddVolume";
    case RpcMethod::kRemoveVolume:
      return "RemoveVolume";
    case RpcMethod::kInspect:
      return "Inspect";
    case RpcMethod::kReclaimVolume:
      return "ReclaimVolume";
  }
  return "unknown";
}

absl::string_view PoolOpName(PoolOp op) {
  switch (op) {
    case PoolOp::kAdd:
      return "add";
    case PoolOp::kRemove:
      return "remove";
    case PoolOp::kInspect:
      return "inspect";
    case PoolOp::kVerify:
      return "verify";
    case PoolOp::kReclaim:
      return "reclaim";
  }
  return "unknown";
}

absl::string_view CredentialsName(Credentials what) {
  switch (what) {
    case Credentials::kAuthTokens:
      return "auth_tokens";
    case Credentials::kTls:
      return "tls";
  }
  return "unknown";
}

absl::string_view TlsCertificateFileName(TlsCertificateFile what) {
  switch (what) {
    case TlsCertificateFile::kCert:
      return "cert";
    case TlsCertificateFile::kClientCa:
      return "client_ca";
  }
  return "unknown";
}

// Observe's lower_bound needs the bounds ascending.
static_assert(std::is_sorted(LatencyHistogram::kBucketBounds.begin(),
                             LatencyHistogram::kBucketBounds.end()));

void LatencyHistogram::Observe(absl::Duration elapsed) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(kBucketBounds.begin(), kBucketBounds.end(), seconds) -
      kBucketBounds.begin());
  // Relaxed: statistics, read without synchronization at scrape time.
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(
                           absl::ToInt64Nanoseconds(elapsed), 0)),
                       std::memory_order_relaxed);
}

void LatencyHistogram::Fill(prometheus::ClientMetric* metric) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= kBucketBounds.size(); ++i) {
    // Relaxed: see Observe.
    cumulative += counts_[i].load(std::memory_order_relaxed);
    prometheus::ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = i < kBucketBounds.size()
                             ? kBucketBounds[i]
                             : std::numeric_limits<double>::infinity();
    metric->histogram.bucket.push_back(bucket);
  }
  metric->histogram.sample_count = cumulative;
  metric->histogram.sample_sum =
      static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) * 1e-9;
}

ServerMetrics::ServerMetrics(std::vector<const NamedPool*> pools,
                             std::vector<std::string> quarantined_pools,
                             std::vector<const WorkerPool*> add_workers)
    : registry_(std::make_shared<prometheus::Registry>()) {
  // The build never changes while the process runs: one series, set once.
  const v1::BuildInfo& build = ThisBuild();
  prometheus::BuildGauge()
      .Name("groove_build_info")
      .Help(
          "Always 1: the build this server runs, in its labels: version, git "
          "revision (short hash, -dirty for uncommitted changes, unknown "
          "when built outside git), CMake build type, gRPC version.")
      .Register(*registry_)
      .Add({{"version", build.version()},
            {"revision", build.revision()},
            {"build_type", build.build_type()},
            {"grpc_version", build.grpc_version()}})
      .Set(1);
  auto& quarantined =
      prometheus::BuildGauge()
          .Name("groove_pool_quarantined")
          .Help(
              "1 for each configured pool the server found corrupt at start "
              "and does not serve (its RPCs fail with DATA_LOSS), 0 for "
              "each pool it serves.")
          .Register(*registry_);
  // Set once: which pools are quarantined changes only with a restart.
  // Served pools get 0, so every configured pool has this series (a
  // quarantined one has no other groove_pool_* series).
  for (const NamedPool* pool : pools) {
    quarantined.Add({{"pool", pool->config().name}}).Set(0);
  }
  for (const std::string& name : quarantined_pools) {
    quarantined.Add({{"pool", name}}).Set(1);
  }
  auto& handled = prometheus::BuildCounter()
                      .Name("grpc_server_handled_total")
                      .Help(
                          "RPCs of the service completed on the server, "
                          "by method and status code.")
                      .Register(*registry_);
  for (int m = 0; m < kRpcMethodCount; ++m) {
    for (int c = 0; c < kStatusCodeCount; ++c) {
      handled_[m][c] = &handled.Add(
          {{"grpc_service", kServiceName},
           {"grpc_method",
            std::string(RpcMethodName(static_cast<RpcMethod>(m)))},
           {"grpc_code", StatusCodeName(static_cast<absl::StatusCode>(c))}});
    }
  }
  auto& errors = prometheus::BuildCounter()
                     .Name("groove_pool_errors_total")
                     .Help(
                         "Failed operations on a pool, by operation and "
                         "status code; op=verify counts corruption found "
                         "by Inspect's verify.")
                     .Register(*registry_);
  pool_errors_.resize(pools.size());
  for (size_t p = 0; p < pools.size(); ++p) {
    for (int op = 0; op < kPoolOpCount; ++op) {
      for (int c = 1; c < kStatusCodeCount; ++c) {
        pool_errors_[p][op][c] = &errors.Add(
            {{"pool", pools[p]->config().name},
             {"op", std::string(PoolOpName(static_cast<PoolOp>(op)))},
             {"code", StatusCodeName(static_cast<absl::StatusCode>(c))}});
      }
    }
  }
  auto& reloads =
      prometheus::BuildCounter()
          .Name("groove_credentials_reloads_total")
          .Help(
              "Changes of the credential files (what: auth_tokens, tls) the "
              "server saw while serving: ok, installed; failed, refused "
              "(the log says why; the tokens in use stay). Each change "
              "counts once, however long it stays.")
          .Register(*registry_);
  auto& failing =
      prometheus::BuildGauge()
          .Name("groove_credentials_reload_failing")
          .Help(
              "1 while the newest change of the credential files (what: "
              "auth_tokens, tls) was refused, so the server serves older "
              "ones (rotation has stopped until the files are fixed); 0 "
              "otherwise.")
          .Register(*registry_);
  for (int w = 0; w < kCredentialsCount; ++w) {
    const std::string what(CredentialsName(static_cast<Credentials>(w)));
    for (const bool ok : {false, true}) {
      credentials_reloads_[w][ok ? 1 : 0] =
          &reloads.Add({{"what", what}, {"result", ok ? "ok" : "failed"}});
    }
    credentials_failing_[w] = &failing.Add({{"what", what}});
  }
  // Series come with the first SetTlsCertificate: a server without TLS
  // has none.
  tls_not_before_ =
      &prometheus::BuildGauge()
           .Name("groove_tls_certificate_not_before_seconds")
           .Help(
               "notBefore of the TLS certificate in use, as a UNIX time: "
               "what=cert, the server's own (--tls-cert); what=client_ca, "
               "the client CA of --tls-client-ca that expires first. The "
               "certificate is not valid before it.")
           .Register(*registry_);
  tls_not_after_ =
      &prometheus::BuildGauge()
           .Name("groove_tls_certificate_not_after_seconds")
           .Help(
               "notAfter of the TLS certificate in use, as a UNIX time: "
               "what=cert, the server's own (--tls-cert); what=client_ca, "
               "the client CA of --tls-client-ca that expires first. "
               "Clients refuse the certificate after it; rotate the files "
               "before (alerts GrooveTlsCertificateExpiresSoon, "
               "GrooveTlsCertificateExpired).")
           .Register(*registry_);
  auto latency = std::make_shared<LatencyCollector>();
  latency_ = &latency->histograms;
  latency_collector_ = std::move(latency);
  pool_collector_ =
      std::make_shared<PoolCollector>(std::move(pools), std::move(add_workers));
  process_collector_ = std::make_shared<ProcessCollector>();
  log_collector_ = std::make_shared<LogCollector>();
}

void ServerMetrics::RecordRpc(RpcMethod method, absl::StatusCode code,
                              absl::Duration elapsed) {
  const int m = static_cast<int>(method);
  int c = static_cast<int>(code);
  if (c < 0 || c >= kStatusCodeCount)
    c = static_cast<int>(absl::StatusCode::kUnknown);
  handled_[m][c]->Increment();
  (*latency_)[m].Observe(elapsed);
}

void ServerMetrics::RecordPoolError(size_t pool, PoolOp op,
                                    absl::StatusCode code) {
  int c = static_cast<int>(code);
  if (c <= 0 || c >= kStatusCodeCount)
    c = static_cast<int>(absl::StatusCode::kUnknown);
  pool_errors_[pool][static_cast<int>(op)][c]->Increment();
}

void ServerMetrics::RecordCredentialsReload(Credentials what, bool ok) {
  credentials_reloads_[static_cast<int>(what)][ok ? 1 : 0]->Increment();
  credentials_failing_[static_cast<int>(what)]->Set(ok ? 0 : 1);
}

void ServerMetrics::SetTlsCertificate(TlsCertificateFile what,
                                      const std::string& subject,
                                      absl::Time not_before,
                                      absl::Time not_after) {
  TlsSeries& series = tls_series_[static_cast<int>(what)];
  if (series.not_after == nullptr || series.subject != subject) {
    // Another certificate (or the first): its series replace the old
    // subject's, which would otherwise be exported for ever.
    if (series.not_after != nullptr) {
      tls_not_before_->Remove(series.not_before);
      tls_not_after_->Remove(series.not_after);
    }
    const std::map<std::string, std::string> labels = {
        {"what", std::string(TlsCertificateFileName(what))},
        {"subject", subject}};
    series.subject = subject;
    series.not_before = &tls_not_before_->Add(labels);
    series.not_after = &tls_not_after_->Add(labels);
  }
  series.not_before->Set(static_cast<double>(absl::ToUnixSeconds(not_before)));
  series.not_after->Set(static_cast<double>(absl::ToUnixSeconds(not_after)));
}

void ServerMetrics::ExportUnconfiguredPools(v1::ServerConfig config) {
  unconfigured_pools_collector_ =
      std::make_shared<UnconfiguredPoolCollector>(std::move(config));
}

std::vector<std::shared_ptr<prometheus::Collectable>>
ServerMetrics::collectables() const {
  std::vector<std::shared_ptr<prometheus::Collectable>> all = {
      registry_, latency_collector_, pool_collector_, process_collector_,
      log_collector_};
  if (unconfigured_pools_collector_ != nullptr) {
    all.push_back(unconfigured_pools_collector_);
  }
  return all;
}

}  // namespace groove::server
