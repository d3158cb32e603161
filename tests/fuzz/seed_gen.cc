// fuzz_seed_gen: writes the seed corpus of each fuzz target into
// OUT/<target>/, so that the fuzzers start from inputs that get past every
// magic and parser check:
//   config_fuzzer     flag lists and config files as the docs show them;
//   request_fuzzer    one request of each RPC, valid and at the edges;
//   recovery_fuzzer   real pools (NamedPool::Open in a scratch directory)
//                     at rest, in use, with quarantined volumes, and with
//                     an add, remove or reclaim killed at
//                     each of its steps (a forked child _exits in the step
//                     hook), encoded by EncodeRecoveryImage;
//   journal_fuzzer    real request journals (RequestJournal) with adds
//                     committed, finished, pending, uncommitted and
//                     forgotten, read by ReadJournalImage, and edited into
//                     what the API never leaves (WRITING, each kind of entry
//                     that is no add, each wrong header).
// Usage: fuzz_seed_gen OUT   (script/fuzz --seed regenerates the corpus
// from this; the checked-in corpus is its output, minimized, plus every
// crash ever found.)

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "fuzz_harness.h"
#include "groove/named_pool.h"
#include "groove/request_journal.h"
#include "groove/server/page_token.h"
#include "groove/v1/volume_pool.pb.h"

namespace {

using groove::fuzz::RecoveryGeometry;

int failures = 0;

void Write(const std::string& dir, const std::string& name,
           const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/seed_" + name, std::ios::binary) << bytes;
}

void ConfigSeeds(const std::string& out) {
  const std::string dir = out + "/config_fuzzer";
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"pool_flag",
       "name=main,backing=huge,volume_size=1GiB,max_volumes=64,"
       "initial_volumes=2"},
      {"pool_flag_file", "name=a,backing=file:/nvme/a,volume_size=64KiB"},
      {"flags",
       "--pool=name=a,volume_size=4096\n--pool\nname=b,backing=normal\n"
       "--listen=127.0.0.1:0\n--metrics-listen=[::1]:0\n--data-dir=/tmp/g\n"
       "%%\n"},
      {"config_file",
       "--listen=127.0.0.1:50051\n%%\n"
       "listen_address: \"127.0.0.1:50051\"\n"
       "metrics_listen_address: \"127.0.0.1:9464\"\n"
       "data_dir: \"/dev/shm/groove-volumed\"\n"
       "pools { name: \"main\" backing: BACKING_HUGE volume_size_bytes: "
       "2097152 max_volumes: 16 initial_volumes: 1 }\n"
       "pools { name: \"f\" backing: BACKING_FILE file_path: \"f.volumes\" "
       "volume_size_bytes: 4096 max_volumes: 1073741824 }\n"},
      {"config_only",
       "pools { name: \"x\" backing: BACKING_GIGANTIC volume_size_bytes: "
       "1073741824 }\npools { name: \"x\" }\n"},
  };
  for (const auto& [name, text] : seeds) Write(dir, name, text);
}

template <typename Message>
std::string Request(int selector, const Message& m) {
  return std::string(1, static_cast<char>(selector)) + m.SerializeAsString();
}

void RequestSeeds(const std::string& out) {
  const std::string dir = out + "/request_fuzzer";
  namespace v1 = groove::v1;
  Write(dir, "list_pools", Request(0, v1::ListPoolsRequest()));
  v1::AddVolumeRequest add;
  add.set_pool("fuzz");
  add.set_count(2);
  add.set_info("tenant=a");
  Write(dir, "add", Request(1 | 4, add));
  add.set_first_index(60);
  add.set_count(4);
  add.set_request_id("123e4567-e89b-12d3-a456-426614174000");
  Write(dir, "add_at_index_with_id", Request(1 | 4, add));
  add.set_count(1024);
  Write(dir, "add_too_many", Request(1, add));
  v1::AddVolumeRequest add_bad;
  add_bad.set_pool("bad");
  add_bad.set_count(1);
  Write(dir, "add_quarantined", Request(1 | 8, add_bad));
  v1::RemoveVolumeRequest remove;
  remove.set_pool("fuzz");
  remove.set_count(3);
  Write(dir, "remove", Request(2 | 4, remove));
  v1::InspectRequest inspect;
  inspect.set_pool("fuzz");
  inspect.set_include_volumes(true);
  inspect.set_page_size(2);
  inspect.set_verify(true);
  Write(dir, "inspect", Request(3 | 4, inspect));
  // The fuzz pool's id is drawn at random in each run, so no seed token is
  // its own: this one gets past the base64 and the checksum to the check
  // of the pool_id (refused as a token of the pool before a re-creation).
  inspect.set_page_token(
      groove::server::EncodePageToken("fuzz", {0x5eed, 0x5eed}, 1));
  Write(dir, "inspect_page_token", Request(3 | 4, inspect));
  v1::ReclaimVolumeRequest reclaim;
  reclaim.set_pool("fuzz");
  reclaim.set_index(0);
  Write(dir, "reclaim", Request(16 | 4, reclaim));
  reclaim.clear_index();
  Write(dir, "reclaim_unset_index", Request(16 | 4, reclaim));
}

// RecoverySeed makes a real pool in `scratch` with geometry `g`, lets
// `setup` work on it (in a forked child when `crash_step` is set, which
// _exits at that step), and writes its compact image as OUT/name.
void RecoverySeed(const std::string& out, const std::string& name,
                  RecoveryGeometry g, const std::string& crash_step,
                  void (*setup)(groove::NamedPool&,
                                const std::string& dir)) {
  const std::string scratch =
      absl::StrCat("/dev/shm/groove-fuzz-seed-", getpid());
  std::filesystem::remove_all(scratch);
  groove::PoolConfig config;
  config.name = groove::fuzz::kRecoveryPoolName;
  config.backing.kind = groove::BackingKind::kNormal;
  config.volume_size_bytes = g.volume_size_bytes;
  config.max_volumes = g.max_volumes;
  const pid_t child = fork();
  if (child == 0) {
    groove::NamedPool::OpenOptions options;
    if (!crash_step.empty()) {
      options.step_hook = [crash_step](absl::string_view step) {
        if (step == crash_step) _exit(0);
      };
    }
    auto pool = groove::NamedPool::Open(scratch, config, options);
    if (!pool.ok()) _exit(1);
    setup(**pool, scratch);
    _exit(crash_step.empty() ? 0 : 2);  // 2: the step never came
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "seed %s: child exited %d\n", name.c_str(), status);
    ++failures;
    return;
  }
  absl::StatusOr<std::string> image =
      groove::fuzz::EncodeRecoveryImage(scratch, g);
  std::filesystem::remove_all(scratch);
  if (!image.ok()) {
    std::fprintf(stderr, "seed %s: %s\n", name.c_str(),
                 image.status().ToString().c_str());
    ++failures;
    return;
  }
  Write(out + "/recovery_fuzzer", name, *image);
}

void AddSome(groove::NamedPool& pool, const std::string&) {
  (void)pool.AddVolumes(3, std::nullopt, "tenant=a");
}
void AddAndUse(groove::NamedPool& pool, const std::string& dir) {
  (void)pool.AddVolumes(4, 2, "tenant=b");
  // Acquired by a data-plane join (the owner maps no volume), and held: in
  // use at the "crash".
  auto join = groove::NamedPool::Join(dir, pool.config().name);
  groove::VolumeHeader* v = nullptr;
  if (join.ok()) (void)(*join)->pool().Acquire(&v);
}
void AddThenRemove(groove::NamedPool& pool, const std::string&) {
  (void)pool.AddVolumes(3, std::nullopt, "x");
  (void)pool.RemoveVolumes(2);
}

// Quarantine has a remove and then a data-plane acquire each pop a
// volume whose header was scribbled: two QUARANTINED slots.
void Quarantine(groove::NamedPool& pool, const std::string& dir) {
  (void)pool.AddVolumes(4, std::nullopt, "q");  // 0 on top
  auto join = groove::NamedPool::Join(dir, pool.config().name);
  if (!join.ok()) return;
  (*join)->pool().VolumeAt(0)->magic.store(0x1234);
  (void)pool.RemoveVolumes(1);
  (*join)->pool().VolumeAt(1)->idx.store(7);
  groove::VolumeHeader* v = nullptr;
  (void)(*join)->pool().Acquire(&v);
}
void QuarantineThenReclaim(groove::NamedPool& pool, const std::string& dir) {
  Quarantine(pool, dir);
  (void)pool.ReclaimVolume(0);
}

void RecoverySeeds(const std::string& out) {
  RecoveryGeometry g;
  g.max_volumes = 8;
  RecoverySeed(out, "empty_pool", g, "", [](groove::NamedPool&, const std::string&) {});
  RecoverySeed(out, "three_empty", g, "", AddSome);
  RecoverySeed(out, "one_in_use", g, "", AddAndUse);
  for (const char* step : {"add:claimed", "add:allocated", "add:formatted",
                           "add:committed", "add:pushed"}) {
    RecoverySeed(
        out, absl::StrCat("crash_", absl::StrReplaceAll(step, {{":", "_"}})), g,
        step, AddSome);
  }
  for (const char* step :
       {"remove:popped", "stack:announced", "remove:deallocated"}) {
    RecoverySeed(
        out, absl::StrCat("crash_", absl::StrReplaceAll(step, {{":", "_"}})), g,
        step, AddThenRemove);
  }
  RecoverySeed(out, "quarantined", g, "", Quarantine);
  RecoverySeed(out, "crash_reclaim_claimed", g, "reclaim:claimed",
               QuarantineThenReclaim);
  RecoveryGeometry big = g;
  big.max_volumes = 16;
  big.volume_size_bytes = 8192;
  big.join_first = true;
  RecoverySeed(out, "join_then_open", big, "", AddAndUse);
  RecoveryGeometry lost = g;
  lost.no_store = true;
  RecoverySeed(out, "store_lost", lost, "", AddSome);
}

using groove::RequestJournal;
using groove::RequestKey;
using groove::fuzz::JournalImage;
namespace fz = groove::fuzz;

// JournalSeed makes a real journal (RequestJournal::Open of a scratch
// file, with the harness's identity and the max_volumes `flags` and `m`
// select), lets `setup` work on it, closes it (as a killed owner leaves
// it: an add Begun and not Forgotten stays PENDING in the file), reads its
// image with `flags` and `answers`, lets `edit` change it (into what the
// API never leaves), and writes it as OUT/journal_fuzzer/seed_`name`.
void JournalSeed(const std::string& out, const std::string& name, uint8_t flags,
                 uint8_t m, uint8_t answers,
                 const std::function<void(RequestJournal&)>& setup,
                 const std::function<void(JournalImage&)>& edit = nullptr) {
  const std::string scratch =
      absl::StrCat("/dev/shm/groove-fuzz-seed-journal-", getpid());
  std::filesystem::remove_all(scratch);
  std::filesystem::create_directories(scratch);
  const std::string path = scratch + "/j.requests";
  {
    auto journal = RequestJournal::Open(
        path, fz::kJournalIdentity, fz::JournalMaxVolumes(flags, m),
        RequestJournal::kAnyBatch,
        [](uint64_t, std::span<const uint64_t>) { return true; }, nullptr,
        nullptr);
    if (!journal.ok()) {
      std::fprintf(stderr, "seed %s: %s\n", name.c_str(),
                   journal.status().ToString().c_str());
      ++failures;
      return;
    }
    setup(**journal);
  }
  absl::StatusOr<JournalImage> image =
      fz::ReadJournalImage(path, flags, m, answers);
  std::filesystem::remove_all(scratch);
  if (!image.ok()) {
    std::fprintf(stderr, "seed %s: %s\n", name.c_str(),
                 image.status().ToString().c_str());
    ++failures;
    return;
  }
  // The clock's times, fixed: regenerated seeds are the same bytes.
  for (fz::JournalRecord& r : image->records) {
    r.recorded_unix_ns = 1'700'000'000'000'000'000 + r.entry;
  }
  if (edit) edit(*image);
  Write(out + "/journal_fuzzer", name, fz::EncodeJournalInput(*image));
}

// Add makes one add of `batch` that claimed `indices`, Begun and, as
// `steps` says, committed ("c"), finished ("cf"), uncommitted ("cu"),
// forgotten ("x"), or left PENDING (""). Returns its entry.
uint64_t Add(RequestJournal& journal, uint64_t batch,
             std::vector<uint64_t> indices, std::optional<uint64_t> first,
             absl::string_view info, absl::string_view steps = "cf") {
  absl::StatusOr<uint64_t> entry =
      journal.Begin(RequestKey{0x5eed0000 + batch, ~batch}, batch,
                    indices.size(), first, info, indices);
  if (!entry.ok()) {
    std::fprintf(stderr, "seed add of batch %llu: %s\n",
                 static_cast<unsigned long long>(batch),
                 entry.status().ToString().c_str());
    ++failures;
    return 0;
  }
  if (steps == "c" || steps == "cf" || steps == "cu") {
    journal.Commit(*entry, batch);
  }
  if (steps == "cf") journal.Finish(*entry, batch);
  if (steps == "cu") journal.Uncommit(*entry, batch);
  if (steps == "x") journal.Forget(*entry);
  return *entry;
}

// Three finished adds: consecutive without a first index, at a first
// index, and scattered.
void ThreeCommitted(RequestJournal& j) {
  Add(j, 1, {0, 1}, std::nullopt, "tenant=a");
  Add(j, 2, {4, 5, 6, 7}, 4, "tenant=b");
  Add(j, 3, {10, 20, 30}, std::nullopt, "");
}

// Edit returns an edit of the last record by `f`.
std::function<void(JournalImage&)> EditLast(
    std::function<void(fz::JournalRecord&)> f) {
  return [f](JournalImage& image) {
    if (!image.records.empty()) f(image.records.back());
  };
}

void JournalSeeds(const std::string& out) {
  constexpr uint8_t m = 63;  // max_volumes 64
  const auto none = [](RequestJournal&) {};
  JournalSeed(out, "no_journal", fz::kJournalSizeEmpty << fz::kJournalSizeShift,
              m, 0, none);
  JournalSeed(out, "empty", 0, m, 0, none);
  JournalSeed(out, "three_committed", 0, m, 0, ThreeCommitted);
  const auto pending = [](RequestJournal& j) {
    ThreeCommitted(j);
    Add(j, 4, {40, 41}, std::nullopt, "p", "");
  };
  JournalSeed(out, "pending_rolled_forward", 0, m, 0xff, pending);
  JournalSeed(out, "pending_rolled_back", 0, m, 0x00, pending);
  JournalSeed(out, "committed_not_finished", 0, m, 0, [](RequestJournal& j) {
    ThreeCommitted(j);
    Add(j, 4, {40}, 40, "c", "c");
  });
  JournalSeed(out, "uncommitted", 0, m, 0x10, [](RequestJournal& j) {
    ThreeCommitted(j);
    Add(j, 4, {40, 41, 42}, std::nullopt, "u", "cu");
  });
  JournalSeed(out, "forgotten", 0, m, 0, [](RequestJournal& j) {
    ThreeCommitted(j);
    Add(j, 4, {50}, std::nullopt, "f", "x");
  });
  JournalSeed(out, "writing", 0, m, 0xff, pending,
              EditLast([](fz::JournalRecord& r) {
                r.state_word = (r.state_word & ~uint64_t{3}) | 1;
              }));
  // Entries that are no add's, one of each kind (the last add's).
  const std::vector<
      std::pair<const char*, std::function<void(fz::JournalRecord&)>>>
      invalid = {
          {"invalid_count_zero", [](fz::JournalRecord& r) { r.count = 0; }},
          {"invalid_count_too_big",
           [](fz::JournalRecord& r) {
             r.count = RequestJournal::kMaxVolumesPerAdd + 1;
           }},
          {"invalid_info_too_long",
           [](fz::JournalRecord& r) {
             r.info_size = RequestJournal::kMaxInfoBytes + 1;
           }},
          {"invalid_index_too_big",
           [](fz::JournalRecord& r) {
             r.indices = {10, 20, 64};
           }},
          {"invalid_not_ascending",
           [](fz::JournalRecord& r) {
             r.indices = {10, 30, 20};
           }},
          {"invalid_not_from_first_index",
           [](fz::JournalRecord& r) { r.first_index = 11; }},
      };
  for (const auto& [name, f] : invalid) {
    JournalSeed(out, name, 0, m, 0, ThreeCommitted, EditLast(f));
  }
  // Wrong headers over three adds: each is emptied.
  const std::vector<std::pair<const char*, uint8_t>> headers = {
      {"header_bad_magic", fz::kJournalBadMagic},
      {"header_bad_layout", fz::kJournalBadLayout},
      {"header_bad_entry_count", fz::kJournalBadEntryCount},
      {"header_bad_entry_bytes", fz::kJournalBadEntryBytes},
      {"header_other_pool", fz::kJournalOtherPool},
      {"size_short", fz::kJournalSizeShort << fz::kJournalSizeShift},
      {"size_long", fz::kJournalSizeLong << fz::kJournalSizeShift},
  };
  for (const auto& [name, flags] : headers) {
    JournalSeed(out, name, flags, m, 0, ThreeCommitted);
  }
  // The largest batch a state word holds: no batch is left for another
  // add.
  JournalSeed(
      out, "largest_batch", 0, m, 0, ThreeCommitted,
      EditLast([](fz::JournalRecord& r) { r.state_word = ~uint64_t{0}; }));
  // The pool's next batch (Open's next_batch, image byte [3]): an entry at
  // or above it is an add the pool never made (a host crash kept a newer
  // journal page than metadata page), dropped, PENDING or not, without a
  // question; one just below it is kept.
  const auto next_batch = [](uint8_t batch) {
    return [batch](JournalImage& image) {
      image.next_batch_byte = static_cast<uint8_t>(batch + 1);
    };
  };
  JournalSeed(out, "next_batch_drops_the_newest", 0, m, 0, ThreeCommitted,
              next_batch(3));
  JournalSeed(out, "next_batch_keeps_the_one_below", 0, m, 0, ThreeCommitted,
              next_batch(4));
  JournalSeed(out, "next_batch_drops_a_pending_one", 0, m, 0xff, pending,
              next_batch(4));
  // A pool of 2^30 volumes (the largest): indices near the top, a large
  // add, and large batches.
  JournalSeed(out, "large_pool", fz::kJournalLargePool, 255, 0xaa,
              [](RequestJournal& j) {
                const uint64_t top = uint64_t{1} << 30;
                std::vector<uint64_t> run;
                for (uint64_t k = 0; k < RequestJournal::kMaxVolumesPerAdd;
                     ++k) {
                  run.push_back(top - RequestJournal::kMaxVolumesPerAdd + k);
                }
                Add(j, uint64_t{1} << 40, run, run.front(), "the largest");
                Add(j, (uint64_t{1} << 40) + 1, {0, top / 2, top - 1},
                    std::nullopt, "spread", "");
                Add(j, (uint64_t{1} << 40) + 2, {7}, 7, "", "");
              });
  // Many adds of one volume each, every other one left in flight.
  JournalSeed(out, "many", 0, 255, 0x5a, [](RequestJournal& j) {
    for (uint64_t b = 1; b <= 60; ++b) {
      Add(j, b, {b * 4}, std::nullopt, "", b % 2 == 0 ? "" : "cf");
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  ConfigSeeds(out);
  RequestSeeds(out);
  RecoverySeeds(out);
  JournalSeeds(out);
  return failures == 0 ? 0 : 1;
}
