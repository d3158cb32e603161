// config_fuzzer's harness: --pool values and a ServerConfig text proto
// through the server's flag handling and LoadServerConfig, as main does.

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "fuzz_harness.h"
#include "groove/named_pool.h"
#include "groove/server/config.h"
#include "groove/volume.h"

namespace groove::fuzz {
namespace {

// ScratchFile is this process's config file path, under a directory that
// is removed at exit.
const std::string& ScratchFile() {
  static const std::string* path =
      new std::string(ScratchDir("config") + "/config.textproto");
  return *path;
}

bool WriteFile(const std::string& path, absl::string_view text) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  return done == text.size();
}

// CheckAccepted is the oracle: what LoadServerConfig accepts, the core
// must accept too (main hands it to NamedPool::Open), and validating it
// again must agree.
std::string CheckAccepted(const v1::ServerConfig& config) {
  if (absl::Status s = server::ValidateServerConfig(config); !s.ok()) {
    return absl::StrCat(
        "LoadServerConfig accepted a config that "
        "ValidateServerConfig rejects: ",
        s.ToString());
  }
  for (const v1::PoolConfig& p : config.pools()) {
    const PoolConfig core = server::CorePoolConfig(p);
    if (!ValidatePoolName(core.name).ok()) {
      return absl::StrCat("accepted pool name '", core.name,
                          "' that the core rejects");
    }
    if (!IsPowerOfTwo(core.volume_size_bytes) ||
        core.volume_size_bytes < kVolumeMinFootprint) {
      return absl::StrCat("accepted volume_size_bytes ",
                          core.volume_size_bytes);
    }
    if (core.max_volumes == 0 || core.max_volumes > server::kMaxVolumesLimit ||
        core.max_volumes > server::kMaxSpanBytes / core.volume_size_bytes) {
      return absl::StrCat("accepted max_volumes ", core.max_volumes,
                          " of volume_size_bytes ", core.volume_size_bytes);
    }
    if (p.initial_volumes() > core.max_volumes) {
      return absl::StrCat("accepted initial_volumes ", p.initial_volumes());
    }
    if (core.backing.kind == BackingKind::kFile &&
        !std::filesystem::path(core.backing.file_path).is_absolute()) {
      return absl::StrCat("accepted a relative file backing '",
                          core.backing.file_path, "'");
    }
  }
  if (!std::filesystem::path(config.data_dir()).is_absolute()) {
    return absl::StrCat("accepted data_dir '", config.data_dir(), "'");
  }
  return "";
}

}  // namespace

ConfigOutcome RunConfigInput(absl::string_view data) {
  ConfigOutcome out;
  server::CommandLine command_line;
  absl::string_view config_text = data;
  const size_t split = absl::StartsWith(data, "%%\n") ? 0 : data.find("\n%%\n");
  if (split == absl::string_view::npos) {
    // No arguments: the input is the config file, and also one --pool.
    absl::StatusOr<v1::PoolConfig> pool = server::ParsePoolFlag(data);
    if (pool.ok() && pool->name().empty()) {
      out.violation = "ParsePoolFlag accepted a pool without a name";
      return out;
    }
  } else {
    const absl::string_view args_text =
        split == 0 ? absl::string_view() : data.substr(0, split);
    config_text = data.substr(split == 0 ? 3 : split + 4);
    std::vector<std::string> args;
    if (!args_text.empty()) args = absl::StrSplit(args_text, '\n');
    absl::StatusOr<std::vector<std::string>> pools =
        server::ExtractRepeatedFlag(&args, "pool");
    out.extract = pools.status();
    if (!pools.ok()) return out;
    command_line.pools = *std::move(pools);
    server::NormalizeFlagNames(&args);
    for (const std::string& arg : args) {
      for (absl::string_view flag : {"listen", "metrics_listen", "data_dir"}) {
        const std::string prefix = absl::StrCat("--", flag, "=");
        if (!absl::StartsWith(arg, prefix)) continue;
        std::string value = arg.substr(prefix.size());
        if (flag == "listen") command_line.listen_address = value;
        if (flag == "metrics_listen") {
          command_line.metrics_listen_address = value;
        }
        if (flag == "data_dir") command_line.data_dir = value;
      }
    }
  }
  // An empty config section means no --config at all.
  if (!config_text.empty()) {
    if (!WriteFile(ScratchFile(), config_text)) {
      out.violation = "cannot write the scratch config file";
      return out;
    }
    command_line.config_file = ScratchFile();
  }
  absl::StatusOr<v1::ServerConfig> config =
      server::LoadServerConfig(command_line);
  out.loaded = config.status();
  if (config.ok()) out.violation = CheckAccepted(*config);
  return out;
}

}  // namespace groove::fuzz
