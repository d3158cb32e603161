#include "groove/server/config.h"

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "groove/server/security.h"

namespace groove::server {
namespace {

// A pool of the merged configuration and where it came from, for messages:
// "--config=FILE: pools[1]" or "--pool=name=a,...".
struct PoolOrigin {
  std::string where;   // prefix of every message about this pool
  std::string prefix;  // "pools[1]." for the file, "" for a --pool flag
};

// FieldError is "<where>: <field>: <problem>".
absl::Status FieldError(absl::string_view where, absl::string_view field,
                        absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(where, where.empty() ? "" : ": ", field, ": ", problem));
}

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// ValidateListenAddress checks "host:port" or "[v6]:port", port 0..65535,
// or (when `unix_allowed`) "unix:/absolute/path" that fits a sockaddr_un.
absl::Status ValidateListenAddress(absl::string_view address,
                                   absl::string_view where,
                                   absl::string_view field, bool unix_allowed) {
  if (absl::string_view path = address; absl::ConsumePrefix(&path, "unix:")) {
    if (!unix_allowed) {
      return FieldError(where, field,
                        absl::StrCat("'", address,
                                     "': a unix socket cannot serve it; give "
                                     "host:port (e.g. 127.0.0.1:9464)"));
    }
    if (!absl::StartsWith(path, "/") || path.size() >= kMaxUnixSocketPath) {
      return FieldError(
          where, field,
          absl::StrCat("'", address, "' is not unix:/ABSOLUTE/PATH of at most ",
                       kMaxUnixSocketPath - 1, " bytes"));
    }
    return absl::OkStatus();
  }
  const size_t colon = address.rfind(':');
  absl::string_view host =
      colon == absl::string_view::npos ? "" : address.substr(0, colon);
  const absl::string_view port =
      colon == absl::string_view::npos ? "" : address.substr(colon + 1);
  if (absl::StartsWith(host, "[")) {
    if (!absl::EndsWith(host, "]") || host.size() < 3) host = "";
  } else if (absl::StrContains(host, ':')) {
    host = "";  // an IPv6 address must be bracketed
  }
  uint32_t port_number = 0;
  const bool port_ok =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(),
                  [](char c) { return c >= '0' && c <= '9'; }) &&
      absl::SimpleAtoi(port, &port_number) && port_number <= 65535;
  if (host.empty() || !port_ok) {
    return FieldError(
        where, field,
        absl::StrCat("'", address,
                     "' is not host:port (e.g. 127.0.0.1:50051, "
                     "[::1]:50051; port 0 picks a free port)",
                     unix_allowed ? " or unix:/ABSOLUTE/PATH" : ""));
  }
  return absl::OkStatus();
}

// Describe names pool `i` of a merged configuration: "pools[1]" of the
// file or "--pool=name=a,...".
std::string Describe(const std::vector<PoolOrigin>& origins, int i) {
  if (i >= static_cast<int>(origins.size()))
    return absl::StrCat("pools[", i, "]");
  const PoolOrigin& o = origins[i];
  if (o.prefix.empty()) return o.where;
  return o.prefix.substr(0, o.prefix.size() - 1);
}

bool HasPortZero(absl::string_view address) {
  return absl::EndsWith(address, ":0");
}

absl::Status ValidatePool(const v1::PoolConfig& pool, const PoolOrigin& o) {
  const std::string& p = o.prefix;
  if (absl::Status s = ValidatePoolName(pool.name()); !s.ok()) {
    return FieldError(o.where, p + "name", s.message());
  }
  if (!v1::Backing_IsValid(pool.backing()) ||
      pool.backing() == v1::BACKING_UNSPECIFIED) {
    return FieldError(o.where, p + "backing",
                      absl::StrCat(pool.backing(), " is not a backing"));
  }
  const bool is_file = pool.backing() == v1::BACKING_FILE;
  if (is_file && pool.file_path().empty()) {
    return FieldError(o.where, p + "file_path",
                      "required with backing BACKING_FILE");
  }
  if (!is_file && !pool.file_path().empty()) {
    return FieldError(o.where, p + "file_path",
                      absl::StrCat("must be empty unless backing is "
                                   "BACKING_FILE (backing is ",
                                   v1::Backing_Name(pool.backing()), ")"));
  }
  const uint64_t size = pool.volume_size_bytes();
  if (!IsPowerOfTwo(size) || size < 4096) {
    return FieldError(
        o.where, p + "volume_size_bytes",
        absl::StrCat(size, " is not a power of two of at least 4096"));
  }
  uint64_t page = 0;
  if (pool.backing() == v1::BACKING_HUGE) page = kHugePageBytes;
  if (pool.backing() == v1::BACKING_GIGANTIC) page = kGiganticPageBytes;
  if (page != 0 && size % page != 0) {
    return FieldError(o.where, p + "volume_size_bytes",
                      absl::StrCat(size, " is not a multiple of the ", page,
                                   "-byte page of backing ",
                                   v1::Backing_Name(pool.backing())));
  }
  const uint64_t max = pool.max_volumes();
  if (max == 0 || max > kMaxVolumesLimit) {
    return FieldError(
        o.where, p + "max_volumes",
        absl::StrCat(max, " is outside [1, ", kMaxVolumesLimit, "]"));
  }
  if (max > kMaxSpanBytes / size) {
    return FieldError(o.where, p + "max_volumes",
                      absl::StrCat(max, " volumes of ", size,
                                   " bytes need more address space than the ",
                                   kMaxSpanBytes, " bytes a pool may reserve"));
  }
  if (pool.initial_volumes() > max) {
    return FieldError(
        o.where, p + "initial_volumes",
        absl::StrCat(pool.initial_volumes(), " is above max_volumes ", max));
  }
  return absl::OkStatus();
}

// Origins says where each part of a merged configuration came from, for
// messages: a flag ("--listen"), the config file ("--config=FILE"), or ""
// (a bare field name).
struct Origins {
  std::string listen;
  std::string metrics;
  std::string data_dir;
  std::string tls;
  std::string credentials_refresh;
  std::vector<PoolOrigin> pools;
};

absl::Status ValidateWithOrigins(const v1::ServerConfig& config,
                                 const Origins& origins) {
  if (absl::Status s = ValidateListenAddress(config.listen_address(),
                                             origins.listen, "listen_address",
                                             /*unix_allowed=*/true);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ValidateListenAddress(config.metrics_listen_address(),
                                origins.metrics, "metrics_listen_address",
                                /*unix_allowed=*/false);
      !s.ok()) {
    return s;
  }
  if (config.listen_address() == config.metrics_listen_address() &&
      !HasPortZero(config.listen_address())) {
    return FieldError(origins.metrics, "metrics_listen_address",
                      absl::StrCat("'", config.metrics_listen_address(),
                                   "' is also listen_address; they must "
                                   "differ"));
  }
  if (config.data_dir().empty() ||
      !std::filesystem::path(config.data_dir()).is_absolute()) {
    return FieldError(
        origins.data_dir, "data_dir",
        absl::StrCat("'", config.data_dir(), "' is not an absolute path"));
  }
  if (config.has_tls()) {
    const v1::TlsConfig& tls = config.tls();
    if (tls.cert_file().empty() || tls.key_file().empty()) {
      return FieldError(
          origins.tls,
          tls.cert_file().empty() ? "tls.cert_file" : "tls.key_file",
          "TLS needs both a certificate and its key: give both --tls-cert "
          "and --tls-key (tls.cert_file and tls.key_file)");
    }
  }
  if (config.has_credentials_refresh()) {
    const google::protobuf::Duration& d = config.credentials_refresh();
    // A valid Duration: nanos in (-1e9, 1e9) with the sign of seconds.
    const bool valid = d.nanos() > -1000000000 && d.nanos() < 1000000000 &&
                       !(d.seconds() > 0 && d.nanos() < 0) &&
                       !(d.seconds() < 0 && d.nanos() > 0);
    const absl::Duration refresh = CredentialsRefresh(config);
    if (!valid || refresh < absl::ZeroDuration() ||
        refresh > kMaxCredentialsRefresh) {
      return FieldError(
          origins.credentials_refresh, "credentials_refresh",
          absl::StrCat(
              valid ? absl::FormatDuration(refresh)
                    : absl::StrCat("{seconds: ", d.seconds(),
                                   " nanos: ", d.nanos(), "}"),
              " is outside [0s, ", absl::FormatDuration(kMaxCredentialsRefresh),
              "]; 0s reads the TLS and token files once, at start-up"));
    }
  }
  if (!IsLoopbackAddress(config.listen_address()) && !config.has_tls() &&
      config.auth_tokens_file().empty() && !config.insecure()) {
    return FieldError(
        origins.listen, "listen_address",
        absl::StrCat("'", config.listen_address(),
                     "' is not a loopback address, and neither TLS nor "
                     "tokens are configured: anyone who can reach it could "
                     "add and remove volumes. Add --tls-cert=FILE "
                     "--tls-key=FILE (and --tls-client-ca=FILE to require "
                     "client certificates) and/or --auth-tokens=FILE; or, "
                     "if the network itself is trusted, add --insecure"));
  }
  absl::flat_hash_map<std::string, int> seen;
  for (int i = 0; i < config.pools_size(); ++i) {
    const PoolOrigin o = i < static_cast<int>(origins.pools.size())
                             ? origins.pools[i]
                             : PoolOrigin{"", absl::StrCat("pools[", i, "].")};
    if (absl::Status s = ValidatePool(config.pools(i), o); !s.ok()) return s;
    auto [it, inserted] = seen.emplace(config.pools(i).name(), i);
    if (!inserted) {
      return FieldError(
          o.where, o.prefix + "name",
          absl::StrCat("'", config.pools(i).name(), "' is already the name of ",
                       Describe(origins.pools, it->second),
                       "; pool names must be unique"));
    }
  }
  return absl::OkStatus();
}

// FillPoolDefaults applies the documented defaults to one pool.
void FillPoolDefaults(v1::PoolConfig* pool, const std::string& data_dir) {
  if (pool->backing() == v1::BACKING_UNSPECIFIED) {
    pool->set_backing(v1::BACKING_AUTO);
  }
  if (pool->volume_size_bytes() == 0) {
    pool->set_volume_size_bytes(kDefaultVolumeSizeBytes);
  }
  if (pool->max_volumes() == 0) pool->set_max_volumes(kDefaultMaxVolumes);
  if (!pool->file_path().empty() &&
      !std::filesystem::path(pool->file_path()).is_absolute() &&
      !data_dir.empty()) {
    pool->set_file_path(
        (std::filesystem::path(data_dir) / pool->file_path()).string());
  }
}

// Collects text-format parse errors with their (1-based) position.
class TextErrors final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ",
                            message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

absl::StatusOr<v1::ServerConfig> ReadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text =
      ReadNamedFile(path, absl::StrCat("--config=", path));
  if (!text.ok()) return text.status();
  v1::ServerConfig config;
  google::protobuf::TextFormat::Parser parser;
  TextErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(*text, &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--config=", path,
                     ": not a groove.v1.ServerConfig in "
                     "text format: ",
                     errors.first()));
  }
  return config;
}

}  // namespace

absl::Duration CredentialsRefresh(const v1::ServerConfig& config) {
  return absl::Seconds(config.credentials_refresh().seconds()) +
         absl::Nanoseconds(config.credentials_refresh().nanos());
}

std::string DefaultDataDir() {
  std::error_code ec;
  if (std::filesystem::is_directory(kSystemDataDir, ec)) return kSystemDataDir;
  return kTmpfsDataDir;
}

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(text[digits])) ++digits;
  const std::string suffix = absl::AsciiStrToLower(text.substr(digits));
  uint64_t shift = 0;
  bool suffix_ok = true;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (suffix == "kib") {
    shift = 10;
  } else if (suffix == "mib") {
    shift = 20;
  } else if (suffix == "gib") {
    shift = 30;
  } else if (suffix == "tib") {
    shift = 40;
  } else {
    suffix_ok = false;
  }
  uint64_t value = 0;
  if (digits == 0 || !suffix_ok ||
      !absl::SimpleAtoi(text.substr(0, digits), &value) ||
      value > (~uint64_t{0} >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text,
        "' is not a size: write a number of bytes, optionally with KiB, MiB, "
        "GiB or TiB (e.g. 4096, 64KiB, 1GiB)"));
  }
  return value << shift;
}

absl::StatusOr<v1::PoolConfig> ParsePoolFlag(absl::string_view text) {
  const std::string where = absl::StrCat("--pool=", text);
  v1::PoolConfig pool;
  absl::flat_hash_map<std::string, bool> seen;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return FieldError(where, item,
                        "expected key=value (keys: name, backing, "
                        "volume_size, max_volumes, initial_volumes)");
    }
    const std::string key(item.substr(0, eq));
    const absl::string_view value = item.substr(eq + 1);
    if (!seen.emplace(key, true).second) {
      return FieldError(where, key, "given more than once");
    }
    if (key == "name") {
      pool.set_name(std::string(value));
    } else if (key == "backing") {
      if (value == "auto") {
        pool.set_backing(v1::BACKING_AUTO);
      } else if (value == "gigantic") {
        pool.set_backing(v1::BACKING_GIGANTIC);
      } else if (value == "huge") {
        pool.set_backing(v1::BACKING_HUGE);
      } else if (value == "normal") {
        pool.set_backing(v1::BACKING_NORMAL);
      } else if (absl::StartsWith(value, "file:") && value.size() > 5) {
        pool.set_backing(v1::BACKING_FILE);
        pool.set_file_path(std::string(value.substr(5)));
      } else {
        return FieldError(where, key,
                          absl::StrCat("'", value,
                                       "' is not auto, gigantic, huge, normal "
                                       "or file:PATH"));
      }
    } else if (key == "volume_size") {
      absl::StatusOr<uint64_t> size = ParseByteSize(value);
      if (!size.ok()) return FieldError(where, key, size.status().message());
      pool.set_volume_size_bytes(*size);
    } else if (key == "max_volumes" || key == "initial_volumes") {
      uint64_t n = 0;
      if (value.empty() ||
          !std::all_of(value.begin(), value.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(value, &n)) {
        return FieldError(where, key,
                          absl::StrCat("'", value, "' is not a count"));
      }
      if (key == "max_volumes") {
        if (n == 0) return FieldError(where, key, "must be at least 1");
        pool.set_max_volumes(n);
      } else {
        pool.set_initial_volumes(n);
      }
    } else {
      return FieldError(where, key,
                        "unknown key (keys: name, backing, volume_size, "
                        "max_volumes, initial_volumes)");
    }
  }
  if (pool.name().empty()) {
    return FieldError(where, "name", "required (e.g. --pool=name=main)");
  }
  return pool;
}

absl::StatusOr<v1::ServerConfig> LoadServerConfig(
    const CommandLine& command_line) {
  v1::ServerConfig config;
  std::vector<PoolOrigin> origins;
  std::string where;  // of the config file's fields
  if (command_line.config_file.has_value()) {
    absl::StatusOr<v1::ServerConfig> file =
        ReadConfigFile(*command_line.config_file);
    if (!file.ok()) return file.status();
    config = *std::move(file);
    where = absl::StrCat("--config=", *command_line.config_file);
    for (int i = 0; i < config.pools_size(); ++i) {
      origins.push_back({where, absl::StrCat("pools[", i, "].")});
    }
  }
  if (command_line.listen_address.has_value()) {
    config.set_listen_address(*command_line.listen_address);
  }
  if (command_line.metrics_listen_address.has_value()) {
    config.set_metrics_listen_address(*command_line.metrics_listen_address);
  }
  if (command_line.data_dir.has_value()) {
    config.set_data_dir(*command_line.data_dir);
  }
  if (command_line.tls_cert.has_value()) {
    config.mutable_tls()->set_cert_file(*command_line.tls_cert);
  }
  if (command_line.tls_key.has_value()) {
    config.mutable_tls()->set_key_file(*command_line.tls_key);
  }
  if (command_line.tls_client_ca.has_value()) {
    config.mutable_tls()->set_client_ca_file(*command_line.tls_client_ca);
  }
  if (command_line.auth_tokens.has_value()) {
    config.set_auth_tokens_file(*command_line.auth_tokens);
  }
  if (command_line.credentials_refresh.has_value()) {
    // Seconds and the nanoseconds left, both with the duration's sign (the
    // Duration convention); an infinite duration saturates and is refused
    // by the range check.
    absl::Duration remainder;
    const int64_t seconds = absl::IDivDuration(
        *command_line.credentials_refresh, absl::Seconds(1), &remainder);
    config.mutable_credentials_refresh()->set_seconds(seconds);
    config.mutable_credentials_refresh()->set_nanos(
        static_cast<int32_t>(remainder / absl::Nanoseconds(1)));
  }
  if (command_line.insecure) config.set_insecure(true);
  for (const std::string& text : command_line.pools) {
    absl::StatusOr<v1::PoolConfig> pool = ParsePoolFlag(text);
    if (!pool.ok()) return pool.status();
    *config.add_pools() = *std::move(pool);
    origins.push_back({absl::StrCat("--pool=", text), ""});
  }
  if (!command_line.config_file.has_value() && config.pools_size() == 0) {
    v1::PoolConfig* pool = config.add_pools();
    pool->set_name(kDefaultPoolName);
    origins.push_back({"the default pool", ""});
  }
  if (config.listen_address().empty()) {
    config.set_listen_address(kDefaultListenAddress);
  }
  if (config.metrics_listen_address().empty()) {
    config.set_metrics_listen_address(kDefaultMetricsListenAddress);
  }
  if (config.data_dir().empty()) config.set_data_dir(DefaultDataDir());
  if (!config.has_credentials_refresh()) {
    config.mutable_credentials_refresh()->set_seconds(
        absl::ToInt64Seconds(kDefaultCredentialsRefresh));
  }
  Origins from;
  from.listen = command_line.listen_address.has_value() ? "--listen" : where;
  from.metrics = command_line.metrics_listen_address.has_value()
                     ? "--metrics-listen"
                     : where;
  from.data_dir = command_line.data_dir.has_value() ? "--data-dir" : where;
  from.tls = command_line.tls_cert.has_value() ||
                     command_line.tls_key.has_value() ||
                     command_line.tls_client_ca.has_value()
                 ? "--tls-cert/--tls-key/--tls-client-ca"
                 : where;
  from.credentials_refresh = command_line.credentials_refresh.has_value()
                                 ? "--credentials-refresh"
                                 : where;
  from.pools = std::move(origins);
  // Check data_dir before making file paths absolute against it.
  if (!std::filesystem::path(config.data_dir()).is_absolute()) {
    return FieldError(
        from.data_dir, "data_dir",
        absl::StrCat("'", config.data_dir(), "' is not an absolute path"));
  }
  for (v1::PoolConfig& pool : *config.mutable_pools()) {
    FillPoolDefaults(&pool, config.data_dir());
  }
  if (absl::Status s = ValidateWithOrigins(config, from); !s.ok()) return s;
  return config;
}

absl::Status ValidateServerConfig(const v1::ServerConfig& config) {
  return ValidateWithOrigins(config, Origins());
}

absl::StatusOr<std::vector<PoolFiles>> UnconfiguredPools(
    const v1::ServerConfig& config) {
  // The configured pools' files are not even read (a scrape runs this).
  return NamedPool::FindPools(config.data_dir(), [&](absl::string_view name) {
    return std::none_of(
        config.pools().begin(), config.pools().end(),
        [&](const v1::PoolConfig& p) { return p.name() == name; });
  });
}

PoolConfig CorePoolConfig(const v1::PoolConfig& pool) {
  PoolConfig core;
  core.name = pool.name();
  switch (pool.backing()) {
    case v1::BACKING_GIGANTIC:
      core.backing.kind = BackingKind::kGigantic;
      break;
    case v1::BACKING_HUGE:
      core.backing.kind = BackingKind::kHuge;
      break;
    case v1::BACKING_NORMAL:
      core.backing.kind = BackingKind::kNormal;
      break;
    case v1::BACKING_FILE:
      core.backing.kind = BackingKind::kFile;
      core.backing.file_path = pool.file_path();
      break;
    default:
      core.backing.kind = BackingKind::kAuto;
      break;
  }
  core.volume_size_bytes = pool.volume_size_bytes();
  core.max_volumes = pool.max_volumes();
  return core;
}

v1::Backing ProtoBacking(BackingKind kind) {
  switch (kind) {
    case BackingKind::kAuto:
      return v1::BACKING_AUTO;
    case BackingKind::kGigantic:
      return v1::BACKING_GIGANTIC;
    case BackingKind::kHuge:
      return v1::BACKING_HUGE;
    case BackingKind::kNormal:
      return v1::BACKING_NORMAL;
    case BackingKind::kFile:
      return v1::BACKING_FILE;
  }
  return v1::BACKING_UNSPECIFIED;
}

absl::StatusOr<std::vector<std::string>> ExtractRepeatedFlag(
    std::vector<std::string>* args, absl::string_view name) {
  std::vector<std::string> values;
  std::vector<std::string> kept;
  const std::string one = absl::StrCat("-", name);
  const std::string two = absl::StrCat("--", name);
  size_t i = 0;
  for (; i < args->size(); ++i) {
    const std::string& arg = (*args)[i];
    if (arg == "--") break;
    if (arg == one || arg == two) {
      if (i + 1 >= args->size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, ": missing value"));
      }
      values.push_back((*args)[++i]);
    } else if (absl::StartsWith(arg, one + "=")) {
      values.push_back(arg.substr(one.size() + 1));
    } else if (absl::StartsWith(arg, two + "=")) {
      values.push_back(arg.substr(two.size() + 1));
    } else {
      kept.push_back(arg);
    }
  }
  for (; i < args->size(); ++i) kept.push_back((*args)[i]);
  *args = std::move(kept);
  return values;
}

void NormalizeFlagNames(std::vector<std::string>* args) {
  for (std::string& arg : *args) {
    if (arg == "--") return;
    if (arg.size() < 2 || arg[0] != '-') continue;
    const size_t start = arg[1] == '-' ? 2 : 1;
    const size_t end = std::min(arg.find('='), arg.size());
    for (size_t k = start; k < end; ++k) {
      if (arg[k] == '-') arg[k] = '_';
    }
  }
}

}  // namespace groove::server
