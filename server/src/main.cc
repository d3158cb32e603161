// groove-volumed: serves groove.v1.VolumePoolService for the pools of its
// configuration. main parses the flags, builds the server, starts it,
// waits for SIGTERM or SIGINT and shuts down with a deadline. Nothing else
// (STYLE.md rule 9); see groove/server/server.h.
//
// Exit status: 0 after a clean shutdown, and after a stop signal during
// start-up (which then stops before it binds anything: docs/SERVER.md §5);
// 2 for bad flags or configuration (nothing was opened or bound); 1 when a
// pool cannot be opened or an address cannot be bound; 3 when shutdown
// overran its deadline by the watchdog's grace (pools are recovered at the
// next start). --help lists every flag and exits 0; --version prints the
// build (groove/build_info.h) and exits 0.

#include <openssl/crypto.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "groove/build_info.h"
#include "groove/server/config.h"
#include "groove/server/log.h"
#include "groove/server/security.h"
#include "groove/server/server.h"
#include "groove/server/stop_signals.h"

ABSL_FLAG(std::optional<std::string>, listen, std::nullopt,
          "host:port of the gRPC service (default 127.0.0.1:50051; port 0 "
          "picks a free port, reported in the `listening` log line), or "
          "unix:/ABSOLUTE/PATH, a unix socket (mode 0660: its owner and "
          "group may connect)");
ABSL_FLAG(std::optional<std::string>, metrics_listen, std::nullopt,
          "host:port of the Prometheus endpoint /metrics (default "
          "127.0.0.1:9464; port 0 as for --listen)");
ABSL_FLAG(std::optional<std::string>, data_dir, std::nullopt,
          "directory of the pools' files (default /var/lib/groove-volumed if "
          "it exists, else /dev/shm/groove-volumed)");
ABSL_FLAG(std::optional<std::string>, config, std::nullopt,
          "a groove.v1.ServerConfig in protobuf text format; the flags above "
          "override its fields and --pool adds pools to it");
ABSL_FLAG(std::string, pool, "",
          "repeatable: name=NAME,backing=auto|gigantic|huge|normal|file:PATH,"
          "volume_size=1GiB,max_volumes=N,initial_volumes=K (only name is "
          "required). Without --config and --pool: one pool 'default'");
ABSL_FLAG(bool, recreate, false,
          "re-create pools whose files do not match the configuration, "
          "losing their volumes (never done otherwise)");
ABSL_FLAG(absl::Duration, shutdown_deadline, absl::Seconds(30),
          "on SIGTERM/SIGINT, how long in-flight RPCs get to finish");
ABSL_FLAG(absl::Duration, drain_grace, absl::ZeroDuration(),
          "on SIGTERM/SIGINT, how long to answer new calls UNAVAILABLE (and "
          "health NOT_SERVING) before refusing connections, so that load "
          "balancers stop sending first; a second signal ends it early");
ABSL_FLAG(absl::Duration, log_flush_interval, absl::Milliseconds(100),
          "how often the lines of routine events (each add and remove) are "
          "written to stderr, batched; 0 writes each at once. Warnings, "
          "errors, start and stop are always written at once");
ABSL_FLAG(int64_t, log_routine_lines_per_second, 100,
          "at most this many lines of routine events (each add and remove, "
          "and libprotobuf's and gRPC's own lines, which a peer can cause) "
          "a second; the rest are counted in one log_lines_suppressed line "
          "per flush. 0: every line. Refused calls' lines have a budget of "
          "their own (--log_refusal_lines_per_second); the server's other "
          "warnings and errors are never limited");
ABSL_FLAG(int64_t, log_refusal_lines_per_second, 100,
          "at most this many rpc_error lines a second of calls refused for "
          "their client's own doing (INVALID_ARGUMENT, NOT_FOUND, "
          "UNAUTHENTICATED, PERMISSION_DENIED, ...), which a client looping "
          "on a bad call could make by the thousand; the rest are counted in "
          "one log_lines_suppressed kind=refusal line per flush. 0: every "
          "line. Server faults (DATA_LOSS, INTERNAL, UNKNOWN, UNAVAILABLE) "
          "are never limited");
ABSL_FLAG(int, add_workers_per_pool, 4,
          "threads per pool that take memory for AddVolume (1 to 64)");
ABSL_FLAG(std::optional<std::string>, tls_cert, std::nullopt,
          "PEM certificate chain of the gRPC port: with --tls-key, the port "
          "speaks TLS only (overrides the config's tls.cert_file)");
ABSL_FLAG(std::optional<std::string>, tls_key, std::nullopt,
          "PEM private key (unencrypted) of --tls-cert (tls.key_file)");
ABSL_FLAG(std::optional<std::string>, tls_client_ca, std::nullopt,
          "PEM CA bundle: require every client to present a certificate "
          "signed by one of these CAs (mutual TLS; tls.client_ca_file)");
ABSL_FLAG(std::optional<std::string>, auth_tokens, std::nullopt,
          "file of `TOKEN ROLE` lines (roles reader, admin): every "
          "VolumePoolService call must send `authorization: Bearer TOKEN` "
          "(health checking needs none; auth_tokens_file)");
ABSL_FLAG(std::optional<absl::Duration>, credentials_refresh, std::nullopt,
          "how often the --tls-cert/--tls-key/--tls-client-ca and "
          "--auth-tokens files are read again while serving, so rotated "
          "certificates and tokens take effect without a restart (TLS in "
          "whole seconds, at least 1s); 0s: read once at start-up. A token "
          "file that no longer parses keeps the tokens in use (logged "
          "credentials_reload_failed). Unset: the config's "
          "credentials_refresh, else 60s");
ABSL_FLAG(bool, insecure, false,
          "allow a non-loopback --listen without TLS and without tokens "
          "(only where the network itself is trusted)");
ABSL_FLAG(bool, reflection, true,
          "serve gRPC server reflection (never needs a token: it describes "
          "the public API only)");
ABSL_FLAG(std::string, max_request_bytes, "64KiB",
          "largest request message accepted (4KiB to 64MiB); larger ones "
          "fail with RESOURCE_EXHAUSTED before any handler runs");
ABSL_FLAG(int, max_concurrent_streams, 100,
          "RPCs one connection may have in flight at once (1 to 100000)");
ABSL_FLAG(absl::Duration, max_connection_idle, absl::Minutes(10),
          "close a connection (GOAWAY) that has had no RPC in flight this "
          "long; clients reconnect on their next call. 0: never");
ABSL_FLAG(absl::Duration, keepalive_min_ping_interval, absl::Seconds(30),
          "clients may send keepalive pings at most this often (with or "
          "without calls); a client that pings more often three times is "
          "disconnected (GOAWAY too_many_pings)");
ABSL_FLAG(std::string, testonly_stall_add_fifo, "",
          "TESTS ONLY: every volume allocation waits to read one byte from "
          "this FIFO");
ABSL_FLAG(std::vector<std::string>, testonly_stall_add_pools, {},
          "TESTS ONLY: the pools --testonly_stall_add_fifo applies to "
          "(default: all)");
ABSL_FLAG(std::vector<std::string>, testonly_fail_punch_pools, {},
          "TESTS ONLY: every hole punch (the memory of removed volumes given "
          "back) of these pools fails with EIO");
ABSL_FLAG(std::vector<std::string>, testonly_stall_punch_pools, {},
          "TESTS ONLY: every hole punch of these pools waits, like an "
          "allocation, to read one byte from --testonly_stall_add_fifo");
ABSL_FLAG(std::string, testonly_stall_verify_fifo, "",
          "TESTS ONLY: every walk of an Inspect with verify waits, in the "
          "middle, to read one byte from this FIFO");

namespace {

using groove::server::Log;
using groove::server::LogLevel;
using groove::server::StopSignals;

constexpr int kExitBadConfig = 2;
constexpr int kExitFailed = 1;
constexpr int kExitShutdownOverran = 3;
// How long past --shutdown_deadline the watchdog lets shutdown run.
constexpr absl::Duration kWatchdogGrace = absl::Seconds(10);

// IsServerFlagFile says whether a flag defined in `file` is one of the
// server's (all are defined in this file). Abseil's --help lists only the
// flags of files named after the program (groove-volumed.cc, ...).
bool IsServerFlagFile(absl::string_view file) {
  return absl::EndsWith(file, "server/src/main.cc");
}

// PrintHelp prints the usage message and every server flag, sorted, with
// its help and default, wrapped to 80 columns. For --help, which Abseil
// 20220623 answers with exit status 1; ours is 0.
void PrintHelp(std::ostream& out) {
  out << "groove-volumed: " << absl::ProgramUsageMessage()
      << "\n\n  Flags ('-' and '_' are interchangeable in names; --pool may be "
         "repeated):\n";
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsServerFlagFile(flag->Filename())) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  for (const absl::CommandLineFlag* flag : flags) {
    const std::string text = absl::StrCat(
        "--", absl::StrReplaceAll(flag->Name(), {{"_", "-"}}), " (",
        flag->Help(), "); default: ", flag->DefaultValue(), ";");
    std::string line = "    ";  // the first line; the rest indent 6
    bool line_empty = true;
    for (absl::string_view word : absl::StrSplit(text, ' ')) {
      if (!line_empty && line.size() + 1 + word.size() > 80) {
        out << line << "\n";
        line = "      ";
        line_empty = true;
      }
      absl::StrAppend(&line, line_empty ? "" : " ", word);
      line_empty = false;
    }
    out << line << "\n";
  }
}

int Fail(int exit_code, absl::string_view event, const absl::Status& status) {
  Log(LogLevel::kError, event,
      {{"code", groove::server::StatusCodeName(status.code())},
       {"message", status.message()}});
  return exit_code;
}

// RaiseOpenFilesLimit raises this process's soft limit of open files
// (RLIMIT_NOFILE) to its hard limit, and returns the limit in force
// afterwards, or the error of setrlimit. Every gRPC connection, pool
// store and journal is a descriptor, and the usual soft limit, 1024 (kept
// low for select(2), which nothing here uses: gRPC polls with epoll), would
// refuse the 1,000th client with EMFILE where the hard limit (often
// 524,288) allows it: what the Go runtime and nginx do too.
absl::StatusOr<rlim_t> RaiseOpenFilesLimit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) {
    return absl::InternalError(
        absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  if (files.rlim_cur < files.rlim_max) {
    const rlim_t before = files.rlim_cur;
    files.rlim_cur = files.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
      return absl::InternalError(absl::StrCat("setrlimit(RLIMIT_NOFILE) from ",
                                              before, " to ", files.rlim_max,
                                              ": ", std::strerror(errno)));
    }
  }
  return files.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenSSL registers its exit-time cleanup (OPENSSL_cleanup, which frees
  // its locks) with atexit when it is first initialised, unless told not
  // to. gRPC 1.51's detached pool threads may still be running OpenSSL's
  // per-thread destructors after main returns (clients/groovectl/main.cc
  // tells how that crashed groovectl), so the server asks first, before
  // gRPC or the TLS file checks initialise OpenSSL. The exit frees the
  // memory anyway. (ServerTlsExitTest.StopRunsNoOpenSslCleanup)
  OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr);

  // Debian's Abseil is built with the mutex deadlock detector on, and gRPC
  // 1.51 takes Abseil mutexes internally on every RPC: the detector cost
  // 7-10% of the server's CPU (docs/PERFORMANCE.md). Our own request path
  // takes no mutex, so it has nothing to find there.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Block the stop signals before any thread exists, so every thread
  // inherits the mask and only StopSignals' thread receives them.
  StopSignals::BlockInThisThread();

  // Abseil's --helpshort and --helppackage list the flags of files named
  // after the program; ours are all defined in this file.
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = IsServerFlagFile;
  usage_config.contains_helpshort_flags = IsServerFlagFile;
  // --version: Abseil's own prints only "Debug build (NDEBUG not
  // #defined)" or nothing; ParseCommandLine prints this and exits 0.
  usage_config.version_string = [] {
    return groove::BuildLine("groove-volumed", groove::ThisBuild()) + "\n";
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "owns pools of fixed-size memory volumes and serves "
      "groove.v1.VolumePoolService over gRPC.\nUsage: groove-volumed "
      "[--config=FILE] [--pool=name=NAME,...]... "
      "[--listen=HOST:PORT|unix:PATH] "
      "[--metrics-listen=HOST:PORT] [--data-dir=DIR] [--tls-cert=PEM "
      "--tls-key=PEM [--tls-client-ca=PEM]] [--auth-tokens=FILE] "
      "[--credentials-refresh=DURATION] [--insecure]\n"
      "       groove-volumed --version   (the build: version, git revision, "
      "build type, gRPC, protobuf and Abseil versions)");
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<std::vector<std::string>> pool_flags =
      groove::server::ExtractRepeatedFlag(&args, "pool");
  if (!pool_flags.ok())
    return Fail(kExitBadConfig, "bad_flags", pool_flags.status());
  groove::server::NormalizeFlagNames(&args);
  if (std::find_if(args.begin(), args.end(), [](const std::string& arg) {
        return arg == "--help" || arg == "-help";
      }) != args.end()) {
    PrintHelp(std::cout);
    return 0;
  }
  std::vector<char*> parse_argv = {argv[0]};
  for (std::string& arg : args) parse_argv.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(
      static_cast<int>(parse_argv.size()), parse_argv.data());
  if (positional.size() > 1) {
    return Fail(kExitBadConfig, "bad_flags",
                absl::InvalidArgumentError(
                    absl::StrCat("unexpected argument '", positional[1],
                                 "'; every setting is a --flag (see --help)")));
  }
  const int add_workers = absl::GetFlag(FLAGS_add_workers_per_pool);
  if (add_workers < 1 || add_workers > 64) {
    return Fail(
        kExitBadConfig, "bad_flags",
        absl::InvalidArgumentError(absl::StrCat(
            "--add_workers_per_pool: ", add_workers, " is outside [1, 64]")));
  }
  const absl::Duration deadline = absl::GetFlag(FLAGS_shutdown_deadline);
  if (deadline < absl::ZeroDuration()) {
    return Fail(kExitBadConfig, "bad_flags",
                absl::InvalidArgumentError("--shutdown_deadline: negative"));
  }
  const int64_t routine_lines =
      absl::GetFlag(FLAGS_log_routine_lines_per_second);
  if (routine_lines < 0) {
    return Fail(kExitBadConfig, "bad_flags",
                absl::InvalidArgumentError(absl::StrCat(
                    "--log_routine_lines_per_second: ", routine_lines,
                    " is negative; use 0 for no limit")));
  }
  groove::server::SetRoutineLineBudget(static_cast<uint64_t>(routine_lines));
  const int64_t refusal_lines =
      absl::GetFlag(FLAGS_log_refusal_lines_per_second);
  if (refusal_lines < 0) {
    return Fail(kExitBadConfig, "bad_flags",
                absl::InvalidArgumentError(absl::StrCat(
                    "--log_refusal_lines_per_second: ", refusal_lines,
                    " is negative; use 0 for no limit")));
  }
  groove::server::SetRefusalLineBudget(static_cast<uint64_t>(refusal_lines));
  groove::server::RouteProtobufLogs();
  groove::server::RouteGrpcLogs();
  const absl::Duration drain_grace = absl::GetFlag(FLAGS_drain_grace);
  if (drain_grace < absl::ZeroDuration()) {
    return Fail(kExitBadConfig, "bad_flags",
                absl::InvalidArgumentError("--drain_grace: negative"));
  }
  const absl::Duration log_flush_interval =
      absl::GetFlag(FLAGS_log_flush_interval);
  if (log_flush_interval < absl::ZeroDuration() ||
      log_flush_interval > absl::Seconds(10)) {
    return Fail(
        kExitBadConfig, "bad_flags",
        absl::InvalidArgumentError(absl::StrCat(
            "--log_flush_interval: ", absl::FormatDuration(log_flush_interval),
            " is outside [0, 10s]")));
  }

  groove::server::VolumeServer::Limits limits;
  absl::StatusOr<uint64_t> max_request_bytes =
      groove::server::ParseByteSize(absl::GetFlag(FLAGS_max_request_bytes));
  if (!max_request_bytes.ok() || *max_request_bytes < 4096 ||
      *max_request_bytes > (uint64_t{64} << 20)) {
    return Fail(
        kExitBadConfig, "bad_flags",
        absl::InvalidArgumentError(absl::StrCat(
            "--max_request_bytes: ",
            max_request_bytes.ok()
                ? absl::StrCat(*max_request_bytes, " is outside [4KiB, 64MiB]")
                : std::string(max_request_bytes.status().message()))));
  }
  limits.max_request_bytes = *max_request_bytes;
  limits.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  if (limits.max_concurrent_streams < 1 ||
      limits.max_concurrent_streams > 100000) {
    return Fail(kExitBadConfig, "bad_flags",
                absl::InvalidArgumentError(absl::StrCat(
                    "--max_concurrent_streams: ", limits.max_concurrent_streams,
                    " is outside [1, 100000]")));
  }
  limits.max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
  limits.keepalive_min_ping_interval =
      absl::GetFlag(FLAGS_keepalive_min_ping_interval);
  for (const auto& [name, value] :
       {std::pair{"--max_connection_idle", limits.max_connection_idle},
        std::pair{"--keepalive_min_ping_interval",
                  limits.keepalive_min_ping_interval}}) {
    if (value < absl::ZeroDuration() || value > absl::Hours(24 * 24)) {
      return Fail(kExitBadConfig, "bad_flags",
                  absl::InvalidArgumentError(
                      absl::StrCat(name, ": ", absl::FormatDuration(value),
                                   " is outside [0, 576h]")));
    }
  }

  groove::server::CommandLine command_line;
  command_line.config_file = absl::GetFlag(FLAGS_config);
  command_line.listen_address = absl::GetFlag(FLAGS_listen);
  command_line.metrics_listen_address = absl::GetFlag(FLAGS_metrics_listen);
  command_line.data_dir = absl::GetFlag(FLAGS_data_dir);
  command_line.pools = *std::move(pool_flags);
  command_line.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  command_line.tls_key = absl::GetFlag(FLAGS_tls_key);
  command_line.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  command_line.auth_tokens = absl::GetFlag(FLAGS_auth_tokens);
  command_line.credentials_refresh = absl::GetFlag(FLAGS_credentials_refresh);
  command_line.insecure = absl::GetFlag(FLAGS_insecure);
  absl::StatusOr<groove::v1::ServerConfig> config =
      groove::server::LoadServerConfig(command_line);
  if (!config.ok()) return Fail(kExitBadConfig, "bad_config", config.status());

  // The TLS and token files are read and checked before anything is
  // opened or bound.
  std::optional<grpc::SslServerCredentialsOptions> tls;
  if (config->has_tls()) {
    absl::StatusOr<grpc::SslServerCredentialsOptions> loaded =
        groove::server::LoadTlsCredentials(config->tls());
    if (!loaded.ok()) {
      return Fail(kExitBadConfig, "bad_config", loaded.status());
    }
    tls = *std::move(loaded);
  }
  std::optional<groove::server::TokenTable> tokens;
  std::string tokens_text;
  if (!config->auth_tokens_file().empty()) {
    absl::StatusOr<groove::server::TokenTable> loaded =
        groove::server::TokenTable::Load(config->auth_tokens_file(),
                                         &tokens_text);
    if (!loaded.ok()) {
      return Fail(kExitBadConfig, "bad_config", loaded.status());
    }
    groove::server::LogTokenLikeComments(*loaded, config->auth_tokens_file());
    tokens = *std::move(loaded);
  }

  groove::server::VolumeServer::Options options;
  options.config = *std::move(config);
  options.recreate = absl::GetFlag(FLAGS_recreate);
  options.add_workers_per_pool = static_cast<size_t>(add_workers);
  options.tls = std::move(tls);
  options.tokens = std::move(tokens);
  options.tokens_text = std::move(tokens_text);
  options.reflection = absl::GetFlag(FLAGS_reflection);
  options.limits = limits;
  options.testonly_stall_add_fifo =
      absl::GetFlag(FLAGS_testonly_stall_add_fifo);
  options.testonly_stall_add_pools =
      absl::GetFlag(FLAGS_testonly_stall_add_pools);
  options.testonly_stall_verify_fifo =
      absl::GetFlag(FLAGS_testonly_stall_verify_fifo);
  options.testonly_fail_punch_pools =
      absl::GetFlag(FLAGS_testonly_fail_punch_pools);
  options.testonly_stall_punch_pools =
      absl::GetFlag(FLAGS_testonly_stall_punch_pools);
  // Stopped (every queued line written) on every return from here on.
  struct LogBatchingScope {
    explicit LogBatchingScope(absl::Duration interval) {
      groove::server::StartLogBatching(interval);
    }
    ~LogBatchingScope() { groove::server::StopLogBatching(); }
  } log_batching(log_flush_interval);
  // From here on each stop signal is logged when it arrives (with the
  // phase), and start-up stops at its next safe point.
  absl::StatusOr<std::unique_ptr<StopSignals>> signals = StopSignals::Start();
  if (!signals.ok()) return Fail(kExitFailed, "start_failed", signals.status());
  options.stop_requested = [s = signals->get()] { return s->stop_requested(); };
  const absl::StatusOr<rlim_t> open_files = RaiseOpenFilesLimit();
  if (!open_files.ok()) {
    Log(LogLevel::kWarn, "open_files_limit_not_raised",
        {{"reason", open_files.status().message()}});
  }
  Log(LogLevel::kInfo, "starting",
      {{"version", groove::ThisBuild().version()},
       {"revision", groove::ThisBuild().revision()},
       {"pid", getpid()},
       {"max_open_files",
        open_files.ok() ? absl::StrCat(*open_files) : std::string("-")},
       {"config", options.config.ShortDebugString()},
       {"recreate", options.recreate ? "true" : "false"}});

  absl::StatusOr<std::unique_ptr<groove::server::VolumeServer>> server =
      groove::server::VolumeServer::Create(std::move(options));
  if (!server.ok() &&
      !(absl::IsCancelled(server.status()) && (*signals)->stop_requested())) {
    return Fail(kExitFailed, "start_failed", server.status());
  }
  // Stopped during start-up: never bind, exit 0 (the stop was asked for).
  if (!server.ok() || !(*signals)->EnterPhase(StopSignals::Phase::kServing)) {
    Log(LogLevel::kInfo, "stopped",
        {{"phase", "starting"},
         {"reason",
          server.ok() ? "stopped before binding" : server.status().message()}});
    return 0;
  }
  if (absl::Status s = (*server)->Start(); !s.ok()) {
    return Fail(kExitFailed, "start_failed", s);
  }
  // SIGHUP reads the credential files again at once (while serving and
  // draining; before, it logs and does nothing).
  (*signals)->OnHangup(
      [s = server->get()] { return s->ReloadCredentialsNow(); });

  (*signals)->WaitForSignals(1, absl::InfiniteDuration());

  // Drain grace: health says NOT_SERVING and new calls get UNAVAILABLE from
  // the service, while connections stay open, until the grace ends or a
  // second signal arrives.
  (*signals)->EnterPhase(StopSignals::Phase::kDraining);
  (*server)->StartDraining();
  if (drain_grace > absl::ZeroDuration()) {
    Log(LogLevel::kInfo, "drain_grace",
        {{"grace", absl::FormatDuration(drain_grace)}});
    if ((*signals)->WaitForSignals(2, drain_grace)) {
      Log(LogLevel::kInfo, "drain_grace_cut_short", {});
    }
  }
  (*signals)->EnterPhase(StopSignals::Phase::kStopping);

  // Watchdog: an add stuck in the kernel could hold Shutdown past its
  // deadline. Exiting then is safe: the pools' slot tables record every
  // add and remove in flight, and the next start recovers them.
  absl::Notification done;
  std::thread watchdog([&] {
    if (!done.WaitForNotificationWithTimeout(deadline + kWatchdogGrace)) {
      Log(LogLevel::kError, "shutdown_overran",
          {{"deadline", absl::FormatDuration(deadline)},
           {"grace", absl::FormatDuration(kWatchdogGrace)}});
      std::_Exit(kExitShutdownOverran);
    }
  });
  (*server)->Shutdown(deadline);
  (*signals)->OnHangup(nullptr);  // before the server it names is gone
  server->reset();
  done.Notify();
  watchdog.join();
  return 0;
}
