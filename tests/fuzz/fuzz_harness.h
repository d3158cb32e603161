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

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "groove/named_pool.h"
#include "groove/request_journal.h"

namespace groove::fuzz {

// ScratchDir returns /dev/shm/groove-fuzz-KIND-PID, this process's scratch
// directory for the harness `kind` ("config", "recovery", ...): emptied
// and created on the first call, removed at exit (std::atexit: a run that
// aborts leaves it, so harnesses also empty their files after an input).
// Thread safety: call from one thread (libFuzzer and the regression tests
// run inputs one at a time).
const std::string& ScratchDir(absl::string_view kind);

// WriteAll writes `size` bytes of `data` at `offset` of `fd` (pwrite until
// done); false when a write fails or writes nothing.
bool WriteAll(int fd, const void* data, size_t size, uint64_t offset);

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
// RemoveVolume, Inspect, and b & 16 makes it ReclaimVolume whatever b & 3
// says; b & 4: the request's pool becomes "fuzz" (the served pool); b & 8
// (without 4): it becomes "bad" (a quarantined pool).
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

// ---- journal_fuzzer ---------------------------------------------------------
//
// Input: a compact request journal image (the file is 4.5 MiB; an input
// names only the entries it writes). Missing bytes are zeros.
//   [0]   flags: kJournalBad* (each a header field written wrong), the file's
//         size ((f >> 5) & 3: kJournalSize*), kJournalLargePool
//   [1]   m: max_volumes = 1 + m, or (1 + m) << 22 with kJournalLargePool
//         (2^30 at most, a pool's largest)
//   [2]   answers: the `committed` callback answers a question about batch
//         b with bit (b % 8)
//   [3]   n: the pool's next batch, Open's next_batch (JournalNextBatch):
//         n - 1, or RequestJournal::kAnyBatch when n is 0 (no entry
//         dropped for its batch)
//   then  records, each one entry's fields, little-endian, in the file's
//         order (the last record of an entry number wins):
//           u16 entry (mod kEntries)   u64 state word (state | batch << 2)
//           u64 key_high  u64 key_low  u16 count
//           u32 first_index (0xffffffff: none, the file's ~0)
//           u16 info_size  i64 recorded_unix_ns
//           u8  info bytes that follow (so at most 255 of the entry's
//               kMaxInfoBytes; the rest of its info is zeros)
//           u8  s: (s & 0x7f) u32 indices follow, written from index 0; with
//               s & 0x80 the rest of the entry's kMaxVolumesPerAdd indices
//               continue one by one from the last (from 0 when none), so
//               that one index makes a valid add of any count
//           the info bytes, then the indices
// The harness writes the file sparse in its scratch directory (the header
// and the records' entries at their offsets, holes elsewhere), opens it
// (RequestJournal::Open, recovery of a crashed owner's journal) with a
// fixed identity and checks what it found against a model of the image
// (see RunJournalInput); then it makes one more add (Begin, Commit,
// Finish) and opens the file again.
inline constexpr uint8_t kJournalBadMagic = 0x01;       // 0: never created
inline constexpr uint8_t kJournalBadLayout = 0x02;      // layout_version 2
inline constexpr uint8_t kJournalBadEntryCount = 0x04;  // kEntries + 1
inline constexpr uint8_t kJournalBadEntryBytes = 0x08;  // an entry's - 8
inline constexpr uint8_t kJournalOtherPool = 0x10;      // another pool's id
inline constexpr uint8_t kJournalSizeShift = 5;
inline constexpr uint8_t kJournalSizeRight = 0;
inline constexpr uint8_t kJournalSizeShort = 1;  // its last entry cut off
inline constexpr uint8_t kJournalSizeLong = 2;   // a page more
inline constexpr uint8_t kJournalSizeEmpty = 3;  // 0 bytes: no journal yet
inline constexpr uint8_t kJournalLargePool = 0x80;
// The first_index of a record that has none.
inline constexpr uint32_t kJournalNoFirstIndex = 0xffffffffu;
// The identity the harness opens every journal with.
inline constexpr RequestJournal::Identity kJournalIdentity{
    0x6a6f75726e616c31ull, 0x66757a7a00000001ull};

struct JournalRecord {
  uint16_t entry = 0;
  uint64_t state_word = 0;
  RequestKey key;
  uint16_t count = 0;
  uint32_t first_index = kJournalNoFirstIndex;
  uint16_t info_size = 0;
  int64_t recorded_unix_ns = 0;
  std::string info;               // at most 255 bytes (more: cut)
  std::vector<uint32_t> indices;  // at most 127 (more: cut)
  bool continue_indices = false;  // the s & 0x80 above
  bool operator==(const JournalRecord&) const = default;
};

struct JournalImage {
  uint8_t flags = 0;
  uint8_t max_volumes_byte = 0;
  uint8_t answers = 0;
  uint8_t next_batch_byte = 0;
  std::vector<JournalRecord> records;
  bool operator==(const JournalImage&) const = default;
};

// DecodeJournalInput reads an input as the image above (every input is
// one: missing bytes are zeros, a record cut short is completed with
// zeros). EncodeJournalInput writes an image as an input (trailing zeros
// dropped); Decode(Encode(image)) == image when the image's info and
// indices fit their limits.
JournalImage DecodeJournalInput(absl::string_view data);
std::string EncodeJournalInput(const JournalImage& image);
// JournalMaxVolumes is the max_volumes an image's first two bytes select.
uint64_t JournalMaxVolumes(uint8_t flags, uint8_t max_volumes_byte);
// JournalNextBatch is the next_batch an image's byte [3] selects.
uint64_t JournalNextBatch(uint8_t next_batch_byte);

struct JournalOutcome {
  absl::Status open;                  // the first RequestJournal::Open
  absl::Status verify;                // Verify right after it
  RequestJournal::OpenReport report;  // the first Open's
  std::vector<RecordedAdd> recorded;  // the first Open's
  bool added = false;   // the add after it ran (a batch was left for it)
  absl::Status reopen;  // the second Open (OK when not attempted)
  std::string violation;
};
JournalOutcome RunJournalInput(absl::string_view data);

// ReadJournalImage reads the journal file at `path` (written by a real
// RequestJournal opened with kJournalIdentity) and returns it as an image
// with `flags`, `max_volumes_byte` and `answers`, one record for each entry
// that holds a byte other than zero: the seed corpus is made of real
// journals. Errors: NOT_FOUND (no file), FAILED_PRECONDITION (an entry the
// image cannot express: a count or info_size above 65535, a first_index
// at or above 2^32 - 1 other than none, an info with a byte other than
// zero past its 255th, or more than 127 indices before the consecutive
// rest).
absl::StatusOr<JournalImage> ReadJournalImage(const std::string& path,
                                              uint8_t flags,
                                              uint8_t max_volumes_byte,
                                              uint8_t answers);

}  // namespace groove::fuzz

#endif  // GROOVE_TESTS_FUZZ_FUZZ_HARNESS_H_
