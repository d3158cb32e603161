// tests/fuzz/fuzz_harness.h: what each libFuzzer target does with one
// input, as plain functions, so that the fuzz targets (fuzz preset, clang +
// libFuzzer) and the regression tests (tests/unit/fuzz_regression_test.cc,
// every preset) run exactly the same code on an input.
//
// Each Run*Input function never exits the process and never throws; it
// returns what happened (errors are values). A non-empty `violation` is a
// broken invariant of the code under test (not a rejected input): the fuzz
// targets abort on it, the regression tests fail on it.
//
// Scratch files live in one directory per process and kind under /dev/shm
// (tmpfs), reused by every input and removed at exit.
//
// Example (a regression test):
//   RecoveryOutcome out = RunRecoveryInput(ReadFile("crash-..."));
//   EXPECT_EQ(out.violation, "");
//   EXPECT_EQ(out.open.code(), absl::StatusCode::kDataLoss);

#ifndef GROOVE_TESTS_FUZZ_FUZZ_HARNESS_H_
#define GROOVE_TESTS_FUZZ_FUZZ_HARNESS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "groove/named_pool.h"

namespace groove::fuzz {

// ---- config_fuzzer ----------------------------------------------------------
//
// Input: lines up to a line "%%" are command-line arguments, one per line
// (--pool=..., --listen=..., --metrics-listen=..., --data-dir=..., anything
// else is ignored the way main leaves it to Abseil); what follows "%%" is a
// `groove.v1.ServerConfig` text proto, given to LoadServerConfig as
// --config. Without a "%%" line the whole input is the config text, and is
// also parsed as one --pool value.
struct ConfigOutcome {
  absl::Status extract;  // ExtractRepeatedFlag("pool")
  absl::Status loaded;   // LoadServerConfig
  std::string violation;
};
ConfigOutcome RunConfigInput(absl::string_view data);

// ---- recovery_fuzzer --------------------------------------------------------
//
// Input: a compact pool image (missing bytes are zeros):
//   [0]          geometry: max_volumes = 1 + (g & 15); volume_size_bytes =
//                4096 << ((g >> 4) & 1); g & 0x20: the metadata file is cut
//                to 4096 bytes; g & 0x40: there is no volume store file;
//                g & 0x80: a data-plane process joins before the owner
//   [1, 1633)    the metadata object's first kMetaPrefixBytes (pool header,
//                magic, layout version, geometry, backing, page size, pids,
//                counters: everything before the name)
//   then         the slot table, max_volumes words; the link table, as many
//   then         each volume's first kVolumeHeaderPrefix bytes (magic, idx,
//                next, info_sz, info[0, 32))
// The harness writes the name ("f"), the backing file path (none) and the
// store path (its own scratch file) itself, so that an input never names a
// file outside the scratch directory. It then opens the pool as its owner
// (NamedPool::Open: recovery) and, if that succeeds, runs Verify,
// ListVolumes, Summary and a few adds, removes, acquires and releases.
inline constexpr size_t kMetaPrefixBytes = 1632;
inline constexpr size_t kVolumeHeaderPrefix = 64;
inline constexpr char kRecoveryPoolName[] = "f";

struct RecoveryGeometry {
  uint64_t max_volumes = 1;
  uint64_t volume_size_bytes = 4096;
  bool truncate_metadata = false;
  bool no_store = false;
  bool join_first = false;
};
RecoveryGeometry DecodeGeometry(uint8_t g);
uint8_t EncodeGeometry(const RecoveryGeometry& geometry);

struct RecoveryOutcome {
  absl::Status join;      // the data-plane join (OK when not attempted)
  absl::Status open;      // NamedPool::Open
  absl::Status verify;    // Verify right after a successful Open
  RecoveryReport report;  // the successful Open's
  std::string violation;
};
RecoveryOutcome RunRecoveryInput(absl::string_view data);

// EncodeRecoveryImage reads the pool kRecoveryPoolName of `dir` (normal
// backing, its store `dir`/f.volumes) and returns it as a compact image
// with `geometry`'s flags: the seed corpus is made of real pools.
absl::StatusOr<std::string> EncodeRecoveryImage(
    const std::string& dir, const RecoveryGeometry& geometry);

// ---- request_fuzzer ---------------------------------------------------------
//
// Input: [0] selects the RPC: (b & 3) is ListPools, AddVolume,
// RemoveVolume, Inspect; b & 4: the request's pool becomes "fuzz" (the
// served pool); b & 8 (without 4): it becomes "bad" (a quarantined pool).
// The rest is the request message in protobuf wire format. The request is
// sent through a stub to one in-process gRPC server per process
// (grpc::Server::InProcessChannel) running the real VolumePoolServiceImpl
// over a real pool "fuzz" (normal backing, 4 KiB volumes, 64 at most).
// Afterwards Inspect(verify=true) must find the pool sound.
inline constexpr char kRequestPoolName[] = "fuzz";

struct RequestOutcome {
  bool parsed = false;  // the bytes decoded as the selected message
  int code = 0;         // the RPC's grpc::StatusCode
  std::string violation;
};
RequestOutcome RunRequestInput(absl::string_view data);

}  // namespace groove::fuzz

#endif  // GROOVE_TESTS_FUZZ_FUZZ_HARNESS_H_
