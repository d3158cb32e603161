// groove-volumed under faults, against the real binary on loopback and
// real filesystems:
//   - a volume store filesystem that runs out of space in the middle of a
//     multi-volume add (a real, tiny tmpfs): RESOURCE_EXHAUSTED naming the
//     resource and the fix, the pool unchanged, the space given back;
//   - a pool whose metadata is corrupt in each way recovery checks (the
//     pool header's and the metadata's magic, the slot table, the stack's
//     top, links and slots):
//     quarantined with DATA_LOSS and a clear log line while the other pool
//     serves, and per-pool health NOT_SERVING;
//   - hole punches that fail (injected: --testonly_fail_punch_pools):
//     the removes succeed, the memory kept is logged, counted and shown,
//     and the indices are added again;
//   - a data directory the server cannot use (read-only filesystem, a
//     regular file in its path): exit 1 before listening, naming the
//     directory and the system's reason; a missing one is created 0700.
// The tests mount tmpfs (support/tmpfs_mount.h): they run as root, as CI
// does, and fail (not skip) when they cannot mount.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "groove/named_pool.h"
#include "groove/volume.h"
#include "groove/volume_pool.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "integration/server_test_util.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"
#include "support/tmpfs_mount.h"

namespace groove::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// ---- ENOSPC in the middle of a batch, on a real filesystem ----------------

struct NoSpaceCase {
  const char* name;
  // true: the pool's backing is file:PATH on the tmpfs; false: the normal
  // backing, with the data directory (and so the store) on the tmpfs.
  bool file_backing;
  const char* remedy;  // what the message must tell the operator
};
void PrintTo(const NoSpaceCase& c, std::ostream* os) { *os << c.name; }

class ServerNoSpaceTest : public ::testing::TestWithParam<NoSpaceCase> {};

TEST_P(ServerNoSpaceTest, AddRunningOutMidBatchChangesNothingAndSaysWhy) {
  const NoSpaceCase& c = GetParam();
  constexpr uint64_t kVolumeBytes = 64 << 10;
  TmpfsMount tmpfs("256k");
  ASSERT_TRUE(tmpfs.ok()) << tmpfs.error();
  TempDir meta_dir;
  const std::string data_dir =
      c.file_backing ? meta_dir.path() : tmpfs.path() + "/data";
  const std::string store =
      c.file_backing ? tmpfs.path() + "/f.store" : data_dir + "/f.volumes";
  const std::string backing =
      c.file_backing ? absl::StrCat("file:", store) : "normal";
  auto server =
      ServerProcess::Start({"--data-dir=" + data_dir,
                            absl::StrCat("--pool=name=f,backing=", backing,
                                         ",volume_size=64KiB,max_volumes=16")});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  // Fill the filesystem but for one volume.
  const uint64_t fit = tmpfs.FreeBytes() / kVolumeBytes;
  ASSERT_GE(fit, 2u) << "the tmpfs is too small for this test";
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("f", fit - 1, "before"), &added).ok());
  const Snapshot before = TakeSnapshot(*stub, "f");
  const uint64_t free_before = tmpfs.FreeBytes();
  ASSERT_EQ(AllocatedBytes(store),
            static_cast<int64_t>((fit - 1) * kVolumeBytes));

  // A batch of 3: the first volume fits, the second does not.
  v1::AddVolumeResponse not_added;
  const grpc::Status s = Add(*stub, AddRequest("f", 3, "batch"), &not_added);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("No space left on device"));
  EXPECT_THAT(s.error_message(), HasSubstr(store));
  EXPECT_THAT(s.error_message(), HasSubstr(c.remedy));
  EXPECT_EQ(not_added.volume_indices_size(), 0);

  // Nothing changed, and every page the batch took is back.
  EXPECT_EQ(TakeSnapshot(*stub, "f"), before)
      << "before " << before.DebugString() << "\nafter "
      << TakeSnapshot(*stub, "f").DebugString();
  EXPECT_EQ(tmpfs.FreeBytes(), free_before);
  EXPECT_EQ(AllocatedBytes(store),
            static_cast<int64_t>((fit - 1) * kVolumeBytes));

  // What does fit is added, at the index the batch had claimed first.
  ASSERT_TRUE(Add(*stub, AddRequest("f", 1, "after"), &added).ok());
  EXPECT_THAT(added.volume_indices(), ::testing::ElementsAre(fit - 1));
  EXPECT_EQ(tmpfs.FreeBytes(), free_before - kVolumeBytes);
  EXPECT_EQ(server->Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Backings, ServerNoSpaceTest,
    ::testing::Values(
        NoSpaceCase{
            "FileBackingOnAFullFilesystem", true,
            "the filesystem holding the volume store is full; free space on it "
            "or grow it"},
        NoSpaceCase{"NormalBackingOnAFullTmpfs", false,
                    "the tmpfs holding the volume store is full; raise its "
                    "size= mount option"}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- Corrupt pools are quarantined -----------------------------------------

constexpr uint64_t kPoolBMaxVolumes = 8;
constexpr uint64_t kPoolBVolumeBytes = 64 << 10;

// PoolFiles reads and writes 64-bit words of pool b's files where the core
// says its fields are (groove/named_pool.h, groove::testing).
class PoolFiles {
 public:
  explicit PoolFiles(const std::string& dir)
      : meta_(dir + "/b.pool"), store_(dir + "/b.volumes") {}

  const std::string& meta_path() const { return meta_; }

  uint64_t Read(const std::string& path, uint64_t offset) const {
    uint64_t word = 0;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    EXPECT_EQ(pread(fd, &word, sizeof(word), static_cast<off_t>(offset)),
              static_cast<ssize_t>(sizeof(word)));
    close(fd);
    return word;
  }
  void Write(const std::string& path, uint64_t offset, uint64_t word) const {
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    EXPECT_EQ(pwrite(fd, &word, sizeof(word), static_cast<off_t>(offset)),
              static_cast<ssize_t>(sizeof(word)));
    close(fd);
  }

  static uint64_t SlotOffset(uint64_t index) {
    return kSlotTableOffset + 8 * index;
  }
  static uint64_t LinkOffset(uint64_t index) {
    return kSlotTableOffset + 8 * (kPoolBMaxVolumes + index);
  }
  static uint64_t TopOffset() { return offsetof(PoolHeader, ver_top); }
  static uint64_t HeaderNextOffset(uint64_t index) {
    return index * kPoolBVolumeBytes + offsetof(VolumeHeader, next);
  }

  uint64_t Top() const { return Read(meta_, TopOffset()); }
  // Stack is the empty volumes from the top down, by the link table (whose
  // links an add tags: LinkNext drops the tag).
  std::vector<uint64_t> Stack() const {
    std::vector<uint64_t> order;
    for (uint64_t i = TopIndex(Top()); i != kNullIndex && order.size() < 64;
         i = LinkNext(Read(meta_, LinkOffset(i)))) {
      order.push_back(i);
    }
    return order;
  }
  // SetLink sets the stack link of `index` in the link table and, when
  // `header_too`, in its volume header (so the two agree).
  void SetLink(uint64_t index, uint64_t next, bool header_too) const {
    Write(meta_, LinkOffset(index), next);
    if (header_too) Write(store_, HeaderNextOffset(index), next);
  }
  void SetSlot(uint64_t index, uint64_t word) const {
    Write(meta_, SlotOffset(index), word);
  }
  void SetTopIndex(uint64_t index) const {
    Write(meta_, TopOffset(), PackTop(TopVersion(Top()), index));
  }
  void SetMetadataMagic(uint64_t magic) const {
    Write(meta_, kMetadataMagicOffset, magic);
  }
  void SetPoolHeaderMagic(uint64_t magic) const {
    Write(meta_, offsetof(PoolHeader, magic), magic);
  }

  // Evidence is what recovery reads to judge the pool: the pool header's
  // and the metadata's magic, the stack's top index, the slot and link
  // tables, and the volume store.
  // (Opening a pool as its owner also writes bookkeeping before recovery
  // judges it: the owner's pid, the lock's version in ver_top, the counter
  // shards of dead processes. Those are not evidence.)
  std::string Evidence() const {
    const std::string meta = ReadFile(meta_);
    if (meta.size() < kSlotTableOffset + 16 * kPoolBMaxVolumes) {
      // Cut short: judged by its size alone, before anything is written.
      return absl::StrCat("cut short: ", meta, "/", ReadFile(store_));
    }
    return absl::StrCat(Read(meta_, offsetof(PoolHeader, magic)), "/",
                        Read(meta_, kMetadataMagicOffset), "/", TopIndex(Top()),
                        "/",
                        meta.substr(kSlotTableOffset, 16 * kPoolBMaxVolumes),
                        "/", ReadFile(store_));
  }

 private:
  std::string meta_;
  std::string store_;
};

struct CorruptionCase {
  const char* name;
  std::function<void(const PoolFiles&, const std::vector<uint64_t>& stack)>
      corrupt;
  const char* reason;  // what the quarantine reason must say
};
void PrintTo(const CorruptionCase& c, std::ostream* os) { *os << c.name; }

std::vector<std::string> TwoPools(const TempDir& dir) {
  return {"--data-dir=" + dir.path(),
          "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16",
          absl::StrCat("--pool=name=b,backing=normal,volume_size=64KiB,"
                       "max_volumes=",
                       kPoolBMaxVolumes)};
}

HealthStatus::ServingStatus HealthOf(const ServerProcess& server,
                                     const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(server.channel());
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthStatus response;
  const grpc::Status s = health->Check(&context, request, &response);
  EXPECT_TRUE(s.ok()) << service << ": " << s.error_message();
  return response.status();
}

class ServerCorruptionTest : public ::testing::TestWithParam<CorruptionCase> {};

TEST_P(ServerCorruptionTest, ThePoolIsQuarantinedAndTheOtherServes) {
  const CorruptionCase& c = GetParam();
  TempDir dir;
  Snapshot a;
  {
    auto server = ServerProcess::Start(TwoPools(dir));
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*stub, AddRequest("a", 3, "a"), &added).ok());
    ASSERT_TRUE(Add(*stub, AddRequest("b", 4, "b"), &added).ok());
    a = TakeSnapshot(*stub, "a");
    EXPECT_EQ(server->Stop(), 0);
  }
  const PoolFiles files(dir.path());
  const std::vector<uint64_t> stack = files.Stack();
  ASSERT_EQ(stack.size(), 4u) << "pool b's four empty volumes are stacked";
  c.corrupt(files, stack);
  const std::string corrupt = files.Evidence();

  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr) << "one corrupt pool must not stop the server";
  const std::string logged =
      server->WaitForLog("event=pool_quarantined pool=b").value_or("");
  EXPECT_THAT(logged, HasSubstr("level=error"));
  EXPECT_THAT(logged, HasSubstr(c.reason));
  EXPECT_THAT(server->LogText(), Not(HasSubstr("event=pool_recovered pool=b")));
  auto stub = server->Stub();

  // Pool b: DATA_LOSS on every RPC, named in ListPools.
  v1::InspectRequest inspect_b;
  inspect_b.set_pool("b");
  v1::InspectResponse inspected;
  const grpc::Status b = Inspect(*stub, inspect_b, &inspected);
  EXPECT_EQ(b.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(b.error_message(), HasSubstr("quarantined"));
  EXPECT_THAT(b.error_message(), HasSubstr(c.reason));
  v1::AddVolumeResponse added;
  EXPECT_EQ(Add(*stub, AddRequest("b", 1), &added).error_code(),
            grpc::StatusCode::DATA_LOSS);
  v1::RemoveVolumeResponse removed;
  EXPECT_EQ(Remove(*stub, "b", 1, &removed).error_code(),
            grpc::StatusCode::DATA_LOSS);
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  ASSERT_EQ(pools.quarantined_pools_size(), 1);
  EXPECT_EQ(pools.quarantined_pools(0).name(), "b");

  // Pool a keeps serving: its volumes are there, adds and removes work.
  EXPECT_EQ(TakeSnapshot(*stub, "a"), a);
  ASSERT_TRUE(Add(*stub, AddRequest("a", 1), &added).ok());
  ASSERT_TRUE(Remove(*stub, "a", 1, &removed).ok());

  // Health: the server and pool a serve, pool b does not.
  EXPECT_EQ(HealthOf(*server, ""), HealthStatus::SERVING);
  EXPECT_EQ(HealthOf(*server, "groove.v1.VolumePoolService/a"),
            HealthStatus::SERVING);
  EXPECT_EQ(HealthOf(*server, "groove.v1.VolumePoolService/b"),
            HealthStatus::NOT_SERVING);
  EXPECT_EQ(server->Stop(), 0);
  // Quarantine leaves the evidence as found: no repair was attempted.
  EXPECT_TRUE(files.Evidence() == corrupt) << "the corrupt pool was changed";
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, ServerCorruptionTest,
    ::testing::Values(
        CorruptionCase{"WrongMetadataMagic",
                       [](const PoolFiles& f, const auto&) {
                         f.SetMetadataMagic(0x2121216567616267);  // "gbage!!!"
                       },
                       "is not a groove-volumed pool"},
        CorruptionCase{"WrongPoolHeaderMagic",
                       [](const PoolFiles& f, const auto&) {
                         // The stack's header, which every join maps.
                         f.SetPoolHeaderMagic(0x2121216567616267);
                       },
                       "its pool header (offset 0) has magic"},
        CorruptionCase{"ZeroedMetadataMagic",
                       [](const PoolFiles& f, const auto&) {
                         // Not a creation that never finished: the slot
                         // table holds volumes.
                         f.SetMetadataMagic(0);
                       },
                       "its magic was cleared"},
        CorruptionCase{"MetadataCutShort",
                       [](const PoolFiles& f, const auto&) {
                         // As a crash of the host can leave a file on disk.
                         std::filesystem::resize_file(f.meta_path(), 3000);
                       },
                       "it is 3000 bytes, a size no pool's metadata has"},
        CorruptionCase{"MetadataEmptiedWithItsStoreFull",
                       [](const PoolFiles& f, const auto&) {
                         // Creating the pool again would empty b.volumes.
                         std::filesystem::resize_file(f.meta_path(), 0);
                       },
                       "is empty or was never completed, but the volume "
                       "store"},
        CorruptionCase{"InvalidSlotStateWord",
                       [](const PoolFiles& f, const auto&) {
                         // An index no volume was ever added at.
                         f.SetSlot(kPoolBMaxVolumes - 1, kInvalidSlotWord);
                       },
                       "not a slot state"},
        CorruptionCase{"StackedVolumeWithAFreeSlot",
                       [](const PoolFiles& f, const auto& stack) {
                         f.SetSlot(stack[1], 0);  // FREE
                       },
                       "is on the stack but its slot says it is not mapped"},
        CorruptionCase{"TopOutOfRange",
                       [](const PoolFiles& f, const auto&) {
                         f.SetTopIndex(kPoolBMaxVolumes + 3);
                       },
                       "out of range"},
        CorruptionCase{"StackCycle",
                       [](const PoolFiles& f, const auto& stack) {
                         // The bottom links back to the top.
                         f.SetLink(stack.back(), stack.front(), true);
                       },
                       "a cycle"},
        CorruptionCase{"LinkOutOfRange",
                       [](const PoolFiles& f, const auto& stack) {
                         f.SetLink(stack[1], kPoolBMaxVolumes + 5, true);
                       },
                       "out of range"},
        CorruptionCase{"LinkTableDisagreesWithTheHeaders",
                       [](const PoolFiles& f, const auto& stack) {
                         // A cycle in the link table alone, which is
                         // what pops follow and recovery walks first.
                         f.SetLink(stack.back(), stack.front(), false);
                       },
                       "again (a cycle)"}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- A store deleted under the running server ------------------------------

// Someone deletes a pool's store file while the server runs (by hand, or a
// cleaner of /dev/shm). The server keeps the memory while it runs, but a
// restart will find the pool empty: the next scrape shows it in
// groove_pool_store_deleted (an alert), and it is logged once.
TEST(ServerStoreDeletedTest, AStoreDeletedUnderTheServerIsShownAndLoggedOnce) {
  TempDir dir;  // a tmpfs: the stores are DIR/a.volumes and DIR/b.volumes
  auto server = ServerProcess::Start(TwoPools(dir));
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 1), &added).ok());
  auto deleted = [&](const std::string& pool) {
    absl::StatusOr<std::string> scrape =
        HttpGet(server->metrics_address(), "/metrics");
    EXPECT_TRUE(scrape.ok()) << scrape.status();
    return MetricValue(
        scrape.value_or(""),
        absl::StrCat("groove_pool_store_deleted{pool=\"", pool, "\"}"));
  };
  EXPECT_EQ(deleted("a"), "0");
  EXPECT_EQ(server->LogCount({"event=store_deleted"}), 0u);

  ASSERT_TRUE(std::filesystem::remove(dir.path() + "/a.volumes"));
  EXPECT_EQ(deleted("a"), "1");
  EXPECT_EQ(deleted("b"), "0");
  const std::optional<std::string> line =
      server->WaitForLog("event=store_deleted");
  ASSERT_TRUE(line.has_value());
  EXPECT_THAT(*line, HasSubstr("level=error"));
  EXPECT_THAT(*line, HasSubstr("pool=a"));
  EXPECT_THAT(*line, HasSubstr("store=" + dir.path() + "/a.volumes"));
  EXPECT_EQ(deleted("a"), "1");
  EXPECT_EQ(server->LogCount({"event=store_deleted"}), 1u) << "logged once";
  EXPECT_EQ(server->Stop(), 0);
}

// RunRefusedJoin starts the server on TwoPools(dir), adds two volumes to
// pool a, calls `prepare` (what makes a join fail), then runs the
// data-plane example (after `prefix`, a command that runs it, or nothing)
// to join pool a, which must fail (exit 2), and checks that the refusal
// changed nothing the server shows of the pool. Returns the example's
// result, whose stderr holds the join's status.
CommandResult RunRefusedJoin(const TempDir& dir,
                             const std::function<void()>& prepare,
                             std::vector<std::string> prefix = {}) {
  CommandResult joined;
  auto server = ServerProcess::Start(TwoPools(dir));
  EXPECT_NE(server, nullptr);
  if (server == nullptr) return joined;
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  EXPECT_TRUE(Add(*stub, AddRequest("a", 2), &added).ok());
  prepare();
  const Snapshot before = TakeSnapshot(*stub, "a");
  for (const std::string arg :
       {GROOVE_DATA_PLANE_BIN, "--data-dir", dir.path().c_str(), "--pool", "a",
        "--acquires", "1"}) {
    prefix.push_back(arg);
  }
  joined = RunCommand(prefix);
  EXPECT_EQ(joined.exit_code, 2) << joined.out << joined.err;
  const Snapshot after = TakeSnapshot(*stub, "a");
  EXPECT_EQ(after.summary.SerializeAsString(),
            before.summary.SerializeAsString());
  EXPECT_EQ(after.volumes.size(), before.volumes.size());
  ExpectPoolVerifies(*stub, "a", 2);
  EXPECT_EQ(server->Stop(), 0);
  return joined;
}

// A data-plane process that joins the pool once its store was deleted under
// the server cannot map its volumes (the file is gone): its Join says so,
// with what to do, as FAILED_PRECONDITION (the pool exists: NOT_FOUND says
// there is no such pool), and changes nothing. The data-plane example
// prints the join's status and exits 2.
TEST(ServerStoreDeletedTest, ANewJoinSaysTheStoreIsGoneAndWhatToDo) {
  TempDir dir;
  const CommandResult joined = RunRefusedJoin(dir, [&] {
    ASSERT_TRUE(std::filesystem::remove(dir.path() + "/a.volumes"));
  });
  EXPECT_THAT(joined.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(joined.err,
              HasSubstr("its volume store " + dir.path() + "/a.volumes"));
  EXPECT_THAT(joined.err, HasSubstr("is gone"));
  EXPECT_THAT(joined.err, HasSubstr("restart its owner"));
}

// A data-plane process of another uid cannot open the pool's files (a 0700
// data directory, objects 0600: docs/SECURITY.md §3). Its Join says that
// it is another uid's pool and how to join it (run as the server's uid,
// docs/DEPLOY.md), not only the errno of an open, and changes nothing.
// The data-plane example runs as nobody (setpriv) and prints the status.
TEST(ServerDataPlaneJoinTest, AJoinOfAnotherUidSaysWhoseThePoolIsAndWhatToDo) {
  ASSERT_EQ(geteuid(), 0u) << "the test switches the joiner's uid";
  TempDir dir;
  const CommandResult joined = RunRefusedJoin(
      dir, [] {},
      {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  EXPECT_THAT(joined.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(joined.err, HasSubstr("this process (uid 65534) may not open " +
                                    dir.path() + "/a.pool"));
  EXPECT_THAT(joined.err, HasSubstr("its owner's, uid 0"));
  EXPECT_THAT(joined.err, HasSubstr("run the data plane as that uid"));
}

// ---- Punches that fail ----------------------------------------------------

// AllocatedBytes is what the file at `path` holds in memory or on disk.
uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// The file system refuses to punch the memory of removed volumes out of
// pool a's store (--testonly_fail_punch_pools=a: each punch fails as EIO
// would; the one injected fault). The removes still succeed: their indices
// are free, their memory stays allocated. That is said in every place an
// operator looks (a line per failed punch with the reason, Inspect, the
// counter behind GroovePoolGiveBackFailing, groovectl), and adding the
// indices again finds the memory there; pool b, whose punches work, is
// the control.
TEST(ServerPunchFailureTest, IsLoggedCountedShownAndTheIndicesServeAgain) {
  TempDir dir;  // a tmpfs: the stores are DIR/a.volumes and DIR/b.volumes
  std::vector<std::string> args = TwoPools(dir);
  args.push_back("--testonly_fail_punch_pools=a");
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LogCount({"event=testonly_fail_punches_enabled", "pool=a"}),
            1u);
  EXPECT_EQ(server->LogCount({"event=testonly_fail_punches_enabled", "pool=b"}),
            0u);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 3), &added).ok());
  ASSERT_TRUE(Add(*stub, AddRequest("b", 2), &added).ok());
  const std::string store_a = dir.path() + "/a.volumes";
  const std::string store_b = dir.path() + "/b.volumes";
  const uint64_t allocated_a = AllocatedBytes(store_a);
  const uint64_t allocated_b = AllocatedBytes(store_b);
  ASSERT_GE(allocated_a, 3 * 4096u);

  std::vector<uint64_t> removed_indices;
  for (int i = 0; i < 2; ++i) {
    v1::RemoveVolumeResponse removed;
    const grpc::Status status = Remove(*stub, "a", 1, &removed);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(removed.volumes_size(), 1);
    removed_indices.push_back(removed.volumes(0).index());
    EXPECT_EQ(removed.summary().volumes_not_given_back(),
              static_cast<uint64_t>(i + 1));
  }
  v1::RemoveVolumeResponse removed_b;
  ASSERT_TRUE(Remove(*stub, "b", 1, &removed_b).ok());

  // One error line per failed punch, naming the volumes and the reason.
  ASSERT_TRUE(server->WaitForLogCount({"event=give_back_failed"}, 2));
  for (uint64_t index : removed_indices) {
    EXPECT_EQ(
        server->LogCount({"level=error", "event=give_back_failed", "pool=a",
                          absl::StrCat("first_index=", index, " "), "count=1",
                          "Input/output error"}),
        1u)
        << "index " << index;
  }
  EXPECT_EQ(server->LogCount({"event=give_back_failed", "pool=b"}), 0u);

  // The memory really stays (pool a), and really goes (pool b).
  EXPECT_EQ(AllocatedBytes(store_a), allocated_a);
  EXPECT_LT(AllocatedBytes(store_b), allocated_b);

  v1::InspectRequest inspect;
  inspect.set_pool("a");
  v1::InspectResponse inspected;
  ASSERT_TRUE(Inspect(*stub, inspect, &inspected).ok());
  EXPECT_EQ(inspected.summary().volumes_not_given_back(), 2u);
  EXPECT_EQ(inspected.summary().volumes_mapped(), 1u);
  absl::StatusOr<std::string> scrape =
      HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(
      MetricValue(*scrape,
                  R"(groove_pool_volumes_not_given_back_total{pool="a"})"),
      "2");
  EXPECT_EQ(
      MetricValue(*scrape,
                  R"(groove_pool_volumes_not_given_back_total{pool="b"})"),
      "0");
  const CommandResult ctl =
      RunCommand({GROOVECTL_BIN, "--addr=" + server->grpc_address(),
                  "--timeout=5s", "inspect", "a"},
                 "", absl::Seconds(30));
  EXPECT_EQ(ctl.exit_code, 0) << ctl.err;
  EXPECT_THAT(ctl.out, HasSubstr("give-back failed"));
  EXPECT_THAT(ctl.out, HasSubstr("2 volumes since the server started"));

  // An add takes the lowest free indices, the two removed, and finds their
  // memory still allocated: the store does not grow, the pool is sound.
  ASSERT_TRUE(Add(*stub, AddRequest("a", 2), &added).ok());
  std::sort(removed_indices.begin(), removed_indices.end());
  EXPECT_THAT(added.volume_indices(),
              ::testing::ElementsAreArray(removed_indices));
  EXPECT_EQ(AllocatedBytes(store_a), allocated_a);
  ExpectPoolVerifies(*stub, "a", 3);
  EXPECT_EQ(server->Stop(), 0);
}

// ---- A data directory the server cannot use --------------------------------

struct DataDirCase {
  const char* name;
  // Returns the data directory to pass, given a read-only tmpfs and a
  // regular file.
  std::function<std::string(const std::string& read_only,
                            const std::string& file)>
      data_dir;
  const char* errno_text;  // strerror of what the kernel says
};
void PrintTo(const DataDirCase& c, std::ostream* os) { *os << c.name; }

class ServerDataDirTest : public ::testing::TestWithParam<DataDirCase> {};

TEST_P(ServerDataDirTest, ExitsBeforeListeningNamingTheDirectoryAndWhy) {
  const DataDirCase& c = GetParam();
  // Root ignores file modes: only a read-only filesystem refuses it.
  TmpfsMount tmpfs("64k");
  ASSERT_TRUE(tmpfs.ok()) << tmpfs.error();
  ASSERT_TRUE(tmpfs.RemountReadOnly().ok());
  TempDir scratch;
  const std::string file = scratch.path() + "/not-a-directory";
  std::ofstream(file) << "x";
  const std::string data_dir = c.data_dir(tmpfs.path(), file);

  const CommandResult r = ServerProcess::RunToExit(
      {"--data-dir=" + data_dir,
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4",
       "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0"});
  const std::string out = r.out + r.err;
  EXPECT_EQ(r.exit_code, 1) << out;
  EXPECT_THAT(out, HasSubstr("event=start_failed"));
  EXPECT_THAT(out, HasSubstr(data_dir));
  EXPECT_THAT(out, HasSubstr(c.errno_text));
  EXPECT_THAT(out, Not(HasSubstr("event=listening")));
}

INSTANTIATE_TEST_SUITE_P(
    Faults, ServerDataDirTest,
    ::testing::Values(
        DataDirCase{
            "OnAReadOnlyFilesystem",
            [](const std::string& ro, const std::string&) { return ro; },
            "Read-only file system"},
        DataDirCase{"MissingWithAParentOnAReadOnlyFilesystem",
                    [](const std::string& ro, const std::string&) {
                      return ro + "/missing/data";
                    },
                    "Read-only file system"},
        DataDirCase{
            "IsARegularFile",
            [](const std::string&, const std::string& file) { return file; },
            "Not a directory"},
        DataDirCase{"HasARegularFileAsParent",
                    [](const std::string&, const std::string& file) {
                      return file + "/data";
                    },
                    "Not a directory"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ServerStartTest, AMissingDataDirectoryIsCreatedOwnerOnly) {
  TempDir scratch;
  const std::string data_dir = scratch.path() + "/missing/data";
  auto server = ServerProcess::Start(
      {"--data-dir=" + data_dir,
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4"});
  ASSERT_NE(server, nullptr);
  struct stat st;
  ASSERT_EQ(stat(data_dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(server->Stop(), 0);
}

}  // namespace
}  // namespace groove::testing
