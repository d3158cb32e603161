// groove/server/config.h: the server's configuration, from its flags and
// its config file, checked before the server touches anything.
//
// The configuration is a `groove.v1.ServerConfig` (proto/groove/v1/
// config.proto documents every field). It comes from, in order:
//   1. `--config=FILE`, a ServerConfig in protobuf text format, if given;
//   2. `--listen`, `--metrics-listen`, `--data-dir`, `--tls-cert`,
//      `--tls-key`, `--tls-client-ca`, `--auth-tokens`,
//      `--credentials-refresh` and `--insecure`, which override the file's
//      fields when given;
//   3. each `--pool=name=NAME,backing=...,volume_size=...,max_volumes=N,
//      initial_volumes=K`, appended to the file's pools;
//   4. defaults for whatever is still unset (see LoadServerConfig).
// LoadServerConfig returns the complete configuration (every default
// filled in, every file path absolute) or INVALID_ARGUMENT whose message
// names the flag or the field that is wrong and why, e.g.
//   --config=/etc/groove.textproto: pools[1].volume_size_bytes: 3000 is not
//   a power of two of at least 4096
//
// Example:
//   CommandLine command_line;
//   command_line.pools = {"name=main,backing=huge,volume_size=1GiB"};
//   absl::StatusOr<v1::ServerConfig> config = LoadServerConfig(command_line);

#ifndef GROOVE_SERVER_CONFIG_H_
#define GROOVE_SERVER_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "groove/backing.h"
#include "groove/named_pool.h"
#include "groove/v1/config.pb.h"

namespace groove::server {

inline constexpr char kDefaultListenAddress[] = "127.0.0.1:50051";
inline constexpr char kDefaultMetricsListenAddress[] = "127.0.0.1:9464";
// listen_address may also be "unix:/ABSOLUTE/PATH", a unix socket whose
// path, with its terminating NUL, fits sockaddr_un's 108-byte sun_path.
inline constexpr size_t kMaxUnixSocketPath = 108;
// The data directory when neither --data-dir nor the config names one:
// kSystemDataDir if it exists (a packaged install creates it), else
// kTmpfsDataDir.
inline constexpr char kSystemDataDir[] = "/var/lib/groove-volumed";
inline constexpr char kTmpfsDataDir[] = "/dev/shm/groove-volumed";
// How often the TLS and token files are read again while the server
// serves (credentials_refresh), unless configured; zero: never.
inline constexpr absl::Duration kDefaultCredentialsRefresh = absl::Seconds(60);
inline constexpr absl::Duration kMaxCredentialsRefresh = absl::Hours(24);
// The pool the server owns when neither --config nor --pool names any.
inline constexpr char kDefaultPoolName[] = "default";
inline constexpr uint64_t kDefaultVolumeSizeBytes = uint64_t{1} << 30;
inline constexpr uint64_t kDefaultMaxVolumes = 1024;
// The largest max_volumes the core's metadata layout accepts
// (NamedPool::Open). The proto allows up to 2^34 - 1; see docs/SERVER.md.
inline constexpr uint64_t kMaxVolumesLimit = uint64_t{1} << 30;
// The largest span (max_volumes * volume_size_bytes) of address space a
// pool may reserve: x86-64 user space is 2^47 bytes, and the server maps
// other things too.
inline constexpr uint64_t kMaxSpanBytes = uint64_t{1} << 46;

// CommandLine is what main() read from the flags; unset optionals were not
// given.
struct CommandLine {
  std::optional<std::string> config_file;             // --config
  std::optional<std::string> listen_address;          // --listen
  std::optional<std::string> metrics_listen_address;  // --metrics-listen
  std::optional<std::string> data_dir;                // --data-dir
  std::vector<std::string> pools;  // every --pool value, in order
  std::optional<std::string> tls_cert;       // --tls-cert
  std::optional<std::string> tls_key;        // --tls-key
  std::optional<std::string> tls_client_ca;  // --tls-client-ca
  std::optional<std::string> auth_tokens;    // --auth-tokens
  std::optional<absl::Duration> credentials_refresh;  // --credentials-refresh
  bool insecure = false;                              // --insecure
};

// LoadServerConfig reads --config (if given), applies the flags, fills in
// the defaults and checks the result:
//   listen_address           "127.0.0.1:50051"
//   metrics_listen_address   "127.0.0.1:9464"
//   data_dir                 DefaultDataDir()
//   pools                    with no --config and no --pool: one pool
//                            "default" (auto backing, 1 GiB volumes, 1024
//                            max, none added); with --config: exactly the
//                            file's pools plus the --pool ones
//   pool backing             BACKING_AUTO
//   pool volume_size_bytes   1 GiB
//   pool max_volumes         1024
//   pool file_path           made absolute against data_dir
//   tls, auth_tokens_file    unset (plaintext, no tokens)
//   credentials_refresh      kDefaultCredentialsRefresh (60 s)
//   insecure                 false
// Errors: INVALID_ARGUMENT naming the flag or field (a config file that
// does not parse: its line and column); NOT_FOUND or PERMISSION_DENIED
// when the config file cannot be read. Reads the file system (the config
// file, whether kSystemDataDir exists); changes nothing.
absl::StatusOr<v1::ServerConfig> LoadServerConfig(
    const CommandLine& command_line);

// ValidateServerConfig checks a complete configuration (defaults filled
// in, as LoadServerConfig returns it): addresses are host:port (the two
// differ unless both use port 0), data_dir is absolute, pool names are
// valid and unique, geometry and backing agree, tls names both a
// certificate and a key, credentials_refresh is a valid Duration in
// [0, kMaxCredentialsRefresh], and a listen_address that is not loopback
// has TLS or tokens or `insecure` (see config.proto). It does not read the
// TLS or token files (security.h does, at start-up).
// Returns INVALID_ARGUMENT naming the first bad field, e.g.
// "pools[2].name: 'a' is already the name of pools[0]".
absl::Status ValidateServerConfig(const v1::ServerConfig& config);

// CredentialsRefresh returns the config's credentials_refresh as a
// duration (zero when unset). REQUIRES: ValidateServerConfig accepted the
// configuration (LoadServerConfig fills the default in).
absl::Duration CredentialsRefresh(const v1::ServerConfig& config);

// DefaultDataDir returns kSystemDataDir if that directory exists, else
// kTmpfsDataDir.
std::string DefaultDataDir();

// ParseByteSize parses a byte count: digits, optionally followed by B, KiB,
// MiB, GiB or TiB (case-insensitive), e.g. "4096", "64KiB", "1GiB".
// INVALID_ARGUMENT for anything else or a value above 2^64 - 1.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// ParsePoolFlag parses one --pool value, comma-separated key=value pairs:
//   name=NAME (required), backing=auto|gigantic|huge|normal|file:PATH,
//   volume_size=SIZE (ParseByteSize), max_volumes=N, initial_volumes=K.
// Keys may appear once each; a file PATH may not contain a comma.
// Unset keys stay unset (LoadServerConfig fills defaults). Errors:
// INVALID_ARGUMENT naming the key. Does not check ranges (see
// ValidateServerConfig).
absl::StatusOr<v1::PoolConfig> ParsePoolFlag(absl::string_view text);

// UnconfiguredPools returns the pools in `config`'s data directory
// (NamedPool::FindPools) that `config` does not name: a pool dropped from
// the configuration keeps its files, and with them its memory (hugepages
// included), until someone deletes them; nothing else says so. The server
// warns of each at start-up (event=pool_not_configured) and exports the
// memory they hold (groove_unconfigured_pool_bytes). Errors: FindPools's.
// Thread safety: any thread. Cost: FindPools's.
absl::StatusOr<std::vector<PoolFiles>> UnconfiguredPools(
    const v1::ServerConfig& config);

// CorePoolConfig turns a validated pool of a complete configuration into
// the core's PoolConfig. REQUIRES: ValidateServerConfig accepted the
// configuration holding `pool`.
PoolConfig CorePoolConfig(const v1::PoolConfig& pool);

// ProtoBacking returns the proto enum value of a core backing kind
// (kAuto -> BACKING_AUTO).
v1::Backing ProtoBacking(BackingKind kind);

// ExtractRepeatedFlag removes every occurrence of the flag `name` from
// `args` (argv without argv[0]) and returns their values in order.
// Accepts -name=V, --name=V, -name V and --name V; stops at "--". Abseil
// flags keep only the last value of a repeated flag, so --pool is taken
// out before absl::ParseCommandLine sees it. INVALID_ARGUMENT when the
// flag is last with no value.
absl::StatusOr<std::vector<std::string>> ExtractRepeatedFlag(
    std::vector<std::string>* args, absl::string_view name);

// NormalizeFlagNames rewrites '-' to '_' inside flag names (not values) of
// `args`, up to "--", so that --data-dir and --metrics-listen reach the
// Abseil flags data_dir and metrics_listen.
void NormalizeFlagNames(std::vector<std::string>* args);

}  // namespace groove::server

#endif  // GROOVE_SERVER_CONFIG_H_
