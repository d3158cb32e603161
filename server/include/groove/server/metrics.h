// groove/server/metrics.h: the server's Prometheus metrics, built once.
//
// Three kinds of series, all registered at start-up (label values come
// from small fixed sets: pool names from the config, RPC methods, ops,
// canonical status codes; never a volume index or a request's text):
//
//   per process, set once at start-up (groove/build_info.h, ThisBuild):
//     groove_build_info{version,revision,build_type,grpc_version} (always
//     1; the Prometheus convention for *_build_info: join on it to
//     see which build each instance runs)
//   per RPC (RecordRpc, on every call of VolumePoolService):
//     grpc_server_handled_total{grpc_service,grpc_method,grpc_code}
//     grpc_server_handling_seconds{grpc_service,grpc_method} (histogram)
//   per configured pool, set once at start-up:
//     groove_pool_quarantined{pool} (1: found corrupt, not served; 0:
//     served)
//   per pool, counted by the server (RecordPoolError):
//     groove_pool_errors_total{pool,op,code}
//   per pool, read from the pool's shared header at scrape time
//   (PoolCollector: data-plane acquires and releases show up too):
//     groove_pool_volumes{pool,state="empty"|"in_use"}
//     groove_pool_max_volumes, groove_pool_volume_size_bytes,
//     groove_pool_capacity_bytes, groove_pool_empty_bytes,
//     groove_pool_volumes_added_total, groove_pool_volumes_removed_total,
//     groove_pool_acquires_total, groove_pool_releases_total,
//     groove_pool_volumes_quarantined_total, groove_pool_locked,
//     groove_pool_volumes_in_quarantine (quarantined volumes now),
//     groove_pool_volumes_reclaimed_total (ReclaimVolume; kept across
//     restarts), groove_pool_volumes_not_given_back_total (failed hole
//     punches, per volume; this process since it started),
//     groove_pool_info{pool,backing,page_size_bytes} (always 1)
//   per pool, read from its add WorkerPool at scrape time:
//     groove_pool_adds_queued{pool} (AddVolume calls waiting for a worker),
//     groove_pool_adds_running{pool} (core calls the workers run now),
//     groove_pool_add_queue_limit{pool} (the calls the queue holds, 256:
//     beyond it AddVolume answers UNAVAILABLE),
//     groove_pool_add_workers{pool} (--add_workers_per_pool)
//   per process, read from /proc/self at scrape time (ProcessCollector):
//     process_cpu_seconds_total, process_resident_memory_bytes,
//     process_virtual_memory_bytes, process_open_fds, process_max_fds,
//     process_start_time_seconds
//   per process, from the log's budgets (log.h) at scrape time:
//     groove_log_lines_suppressed_total{kind="routine"|"refusal"}
//   per credential file set, counted by the reloader
//   (RecordCredentialsReload; credentials_reloader.h):
//     groove_credentials_reloads_total{what="auth_tokens"|"tls",
//                                      result="ok"|"failed"}
//     groove_credentials_reload_failing{what}: 1 while the newest change
//       of those files was refused (the server serves older ones), else 0
//   per TLS certificate file, set when the files are loaded at start-up
//   and at each reload that installs them (SetTlsCertificate; security.h,
//   ReportTlsCertificates):
//     groove_tls_certificate_not_after_seconds{what="cert"|"client_ca",
//                                              subject}
//     groove_tls_certificate_not_before_seconds{what, subject}
//       the UNIX time of the certificate's notAfter / notBefore: for cert,
//       the server's own certificate (the first of --tls-cert); for
//       client_ca, the certificate of the --tls-client-ca bundle that
//       expires first. At most one series per `what` (two per metric):
//       `subject` is replaced, not added to, when the certificate changes.
//
// Status codes are labelled with their canonical upper-case names
// ("INVALID_ARGUMENT"), the same names the logs use.
//
// The hot path takes no lock: counters are prometheus::Counter (an atomic
// add), kept by reference in fixed tables; the latency histogram is our own
// (prometheus-cpp 1.0's Histogram::Observe takes a mutex) with one relaxed
// fetch_add per bucket and one for the sum.
//
// Example:
//   ServerMetrics metrics({pool_a.get(), pool_b.get()});
//   for (auto& c : metrics.collectables()) exposer.RegisterCollectable(c);
//   metrics.RecordRpc(RpcMethod::kInspect, absl::StatusCode::kOk, elapsed);

#ifndef GROOVE_SERVER_METRICS_H_
#define GROOVE_SERVER_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "groove/named_pool.h"
#include "groove/server/grpc_status.h"
#include "groove/server/worker_pool.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

// The RPCs of groove.v1.VolumePoolService, as metric label values.
enum class RpcMethod : int {
  kListPools,
  kAddVolume,
  kRemoveVolume,
  kInspect,
  kReclaimVolume
};
inline constexpr int kRpcMethodCount = 5;
inline constexpr char kServiceName[] = "groove.v1.VolumePoolService";

// RpcMethodName returns the method's name as in the proto ("AddVolume").
absl::string_view RpcMethodName(RpcMethod method);

// The pool operations whose errors groove_pool_errors_total counts. kVerify
// counts the corruption Inspect's verify finds (Inspect itself succeeds).
enum class PoolOp : int { kAdd, kRemove, kInspect, kVerify, kReclaim };
inline constexpr int kPoolOpCount = 5;

// PoolOpName returns "add", "remove", "inspect", "verify" or "reclaim".
absl::string_view PoolOpName(PoolOp op);

// The credentials the server re-reads while it serves
// (credentials_reloader.h): the --auth-tokens file, the TLS files.
enum class Credentials : int { kAuthTokens, kTls };
inline constexpr int kCredentialsCount = 2;

// CredentialsName returns "auth_tokens" or "tls".
absl::string_view CredentialsName(Credentials what);

// The TLS files whose certificates' dates the server exports
// (SetTlsCertificate): --tls-cert, --tls-client-ca.
enum class TlsCertificateFile : int { kCert, kClientCa };
inline constexpr int kTlsCertificateFileCount = 2;

// TlsCertificateFileName returns "cert" or "client_ca".
absl::string_view TlsCertificateFileName(TlsCertificateFile what);

// LatencyHistogram is a lock-free histogram of durations in seconds, with
// fixed buckets fit for RPCs from 1 us to a minute: the handlers of
// ListPools, Inspect (summary) and RemoveVolume take about a microsecond,
// hugepage adds take seconds.
class LatencyHistogram {
 public:
  // Upper bounds (le), 1-2.5-5 per decade from 1 us to 1 s, then 5 s and
  // 30 s. The six below 100 us resolve the fast RPCs: with 100 us as the
  // first bound, histogram_quantile() only interpolated inside that bucket
  // and reported p50/p90/p99 as 50/90/99 us whatever the real latency.
  // Each bound is one series per method (grpc_method; the histogram has
  // no code label): 21 bounds + +Inf + _sum + _count = 24 series per
  // method, 96 per server. Below 1 us quantiles are still interpolated
  // inside the first bucket; the mean (_sum / _count) is exact.
  static constexpr std::array<double, 21> kBucketBounds = {
      0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001,
      0.00025,  0.0005,    0.001,    0.0025,  0.005,    0.01,    0.025,
      0.05,     0.1,       0.25,     0.5,     1,        5,       30};

  // Observe counts one duration. Thread safety: wait-free (two relaxed
  // fetch_adds; counts are statistics, not for synchronization).
  void Observe(absl::Duration elapsed);

  // Fill writes the histogram (cumulative buckets, +Inf last) into
  // `metric`. Concurrent Observes may be half-seen: the snapshot is not
  // atomic as a whole. Cost: O(buckets).
  void Fill(prometheus::ClientMetric* metric) const;

 private:
  // counts_[i]: observations in (kBucketBounds[i-1], kBucketBounds[i]];
  // the last one counts those above every bound.
  std::array<std::atomic<uint64_t>, kBucketBounds.size() + 1> counts_{};
  std::atomic<uint64_t> sum_nanos_{0};
};

class ServerMetrics {
 public:
  // Builds every series. REQUIRES: every pool in `pools` outlives this
  // object and every Exposer that collects from it. The pools' indices in
  // `pools` are the `pool` arguments of RecordPoolError.
  // `quarantined_pools`: names of the configured pools not served because
  // they are corrupt (groove_pool_quarantined). `add_workers`: empty, or
  // pools[i]'s AddVolume WorkerPool at [i] (the groove_pool_add* series;
  // REQUIRES: they outlive this object too).
  explicit ServerMetrics(std::vector<const NamedPool*> pools,
                         std::vector<std::string> quarantined_pools = {},
                         std::vector<const WorkerPool*> add_workers = {});

  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // RecordRpc counts one finished RPC and its latency.
  // Thread safety: lock-free (atomic adds). Cost: O(1).
  void RecordRpc(RpcMethod method, absl::StatusCode code,
                 absl::Duration elapsed);

  // RecordPoolError counts one failed operation on pool `pool` (an index
  // into the constructor's `pools`). REQUIRES: code != kOk, pool in range.
  // Thread safety: lock-free. Cost: O(1).
  void RecordPoolError(size_t pool, PoolOp op, absl::StatusCode code);

  // RecordCredentialsReload counts one change of `what`'s files that the
  // reloader saw: installed (`ok`) or refused, the old credentials kept;
  // and sets groove_credentials_reload_failing{what} to 0 or 1 to match.
  // Thread safety: lock-free. Cost: O(1).
  void RecordCredentialsReload(Credentials what, bool ok);

  // SetTlsCertificate makes groove_tls_certificate_not_before_seconds and
  // groove_tls_certificate_not_after_seconds{what, subject} hold
  // `not_before` and `not_after` (UNIX seconds) of the certificate
  // `subject` of file `what`, and removes the series of the subject set
  // before for `what` if it was another: a rotated-away certificate leaves
  // no stale series. REQUIRES: one thread at a time calls it (start-up,
  // then the reloader's). Thread safety: safe concurrently with scrapes
  // (prometheus-cpp's family lock). Cost: O(1).
  void SetTlsCertificate(TlsCertificateFile what, const std::string& subject,
                         absl::Time not_before, absl::Time not_after);

  // ExportUnconfiguredPools makes every scrape export
  // groove_unconfigured_pool_bytes{pool}: the memory the files of each
  // pool in `config`'s data directory that `config` does not name hold
  // now (UnconfiguredPools, run at the scrape: the series leaves once its
  // files are deleted). REQUIRES: called once, before collectables().
  // Cost per scrape: UnconfiguredPools's (a directory listing, a few
  // preads and stats per pool), off every RPC path.
  void ExportUnconfiguredPools(v1::ServerConfig config);

  // collectables returns what an Exposer must collect from. The Exposer
  // keeps weak pointers: keep this object alive while it serves.
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables() const;

 private:
  using CodeCounters = std::array<prometheus::Counter*, kStatusCodeCount>;

  std::shared_ptr<prometheus::Registry> registry_;
  // handled_[method][code]; every entry is set.
  std::array<CodeCounters, kRpcMethodCount> handled_{};
  // pool_errors_[pool][op][code]; null for code OK.
  std::vector<std::array<CodeCounters, kPoolOpCount>> pool_errors_;
  // credentials_reloads_[what][ok ? 1 : 0]; every entry is set.
  std::array<std::array<prometheus::Counter*, 2>, kCredentialsCount>
      credentials_reloads_{};
  // credentials_failing_[what]; every entry is set.
  std::array<prometheus::Gauge*, kCredentialsCount> credentials_failing_{};
  // The TLS certificate dates: families registered at construction, and
  // per file the series set last (null gauges until the first
  // SetTlsCertificate of that file). Only SetTlsCertificate's thread
  // touches tls_series_.
  prometheus::Family<prometheus::Gauge>* tls_not_before_ = nullptr;
  prometheus::Family<prometheus::Gauge>* tls_not_after_ = nullptr;
  struct TlsSeries {
    std::string subject;
    prometheus::Gauge* not_before = nullptr;
    prometheus::Gauge* not_after = nullptr;
  };
  std::array<TlsSeries, kTlsCertificateFileCount> tls_series_;
  // The histograms and the scrape-time collectors.
  std::shared_ptr<prometheus::Collectable> latency_collector_;
  std::array<LatencyHistogram, kRpcMethodCount>* latency_ = nullptr;
  std::shared_ptr<prometheus::Collectable> pool_collector_;
  std::shared_ptr<prometheus::Collectable> process_collector_;
  std::shared_ptr<prometheus::Collectable> log_collector_;
  std::shared_ptr<prometheus::Collectable> unconfigured_pools_collector_;
};

}  // namespace groove::server

#endif  // GROOVE_SERVER_METRICS_H_
