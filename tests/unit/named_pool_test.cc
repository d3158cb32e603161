// NamedPool on the normal and file backings (available everywhere): names,
// configuration checks, add/remove with real memory, all-or-nothing
// rollback, persistence across close/open, data-plane joins.

#include "groove/named_pool.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/fault_store.h"
#include "support/stall.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::FaultStore;
using ::testing::HasSubstr;
using testing::TempDir;

constexpr uint64_t kVolumeBytes = 64 << 10;  // 64 KiB: 16 normal pages

PoolConfig SmallConfig(const std::string& name = "main",
                       uint64_t max_volumes = 16) {
  PoolConfig config;
  config.name = name;
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = kVolumeBytes;
  config.max_volumes = max_volumes;
  return config;
}

std::unique_ptr<NamedPool> OpenOrDie(const std::string& dir,
                                     const PoolConfig& config,
                                     NamedPool::OpenOptions options = {}) {
  absl::StatusOr<std::unique_ptr<NamedPool>> pool =
      NamedPool::Open(dir, config, std::move(options));
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? std::move(*pool) : nullptr;
}

// OpenWithFaults opens a pool (a small one by default) whose store is a
// FaultStore driven by `control`.
std::unique_ptr<NamedPool> OpenWithFaults(
    const TempDir& dir, std::shared_ptr<FaultStore::Control> control,
    const PoolConfig& config = SmallConfig()) {
  NamedPool::OpenOptions options;
  options.wrap_store = [control](std::unique_ptr<VolumeStore> real) {
    return std::make_unique<FaultStore>(std::move(real), control);
  };
  return OpenOrDie(dir.path(), config, std::move(options));
}

// The pool's observable state, to check that a failed call changed nothing.
struct Observed {
  uint64_t mapped, empty;
  std::vector<uint64_t> indices;
  uint64_t allocated_bytes;
  bool operator==(const Observed&) const = default;
};
Observed Observe(const NamedPool& pool) {
  Observed o;
  const PoolSummary s = pool.Summary();
  o.mapped = s.volumes_mapped;
  o.empty = s.volumes_empty;
  // A call scans a bounded number of slots: follow it to the end.
  for (uint64_t next = 0; next < pool.config().max_volumes;) {
    for (const VolumeEntry& e : pool.ListVolumes(next, 1 << 20, &next)) {
      o.indices.push_back(e.index);
    }
  }
  o.allocated_bytes = pool.AllocatedBytes().value_or(~0ull);
  return o;
}

// ---- Names and backings
// -------------------------------------------------------

TEST(PoolNameTest, AcceptsTheDocumentedAlphabet) {
  EXPECT_TRUE(ValidatePoolName("main").ok());
  EXPECT_TRUE(ValidatePoolName("a.b-c_D9").ok());
  EXPECT_TRUE(ValidatePoolName(std::string(64, 'x')).ok());
}

TEST(PoolNameTest, RejectsNamesThatCouldEscapeTheDataDirectory) {
  for (const char* bad :
       {"", ".", "..", "a/b", "../etc", "a b", "é", "name\n"}) {
    EXPECT_EQ(ValidatePoolName(bad).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(ValidatePoolName(std::string(65, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BackingTest, ParsesEveryFormAndRoundTrips) {
  for (const char* text :
       {"auto", "gigantic", "huge", "normal", "file:/var/tmp/pool"}) {
    absl::StatusOr<Backing> b = ParseBacking(text);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(BackingToString(*b), text);
  }
  EXPECT_EQ(ParseBacking("file:/x")->file_path, "/x");
}

TEST(BackingTest, RejectsUnknownFormsAndRelativePaths) {
  for (const char* bad :
       {"", "hugepages", "file:", "file:relative", "FILE:/x", "Normal"}) {
    EXPECT_EQ(ParseBacking(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(HostMemoryTest, ReadsHugetlbfsMountsAndTheirPageSizes) {
  TempDir dir;
  const std::string mounts = dir.path() + "/mounts";
  std::ofstream(mounts)
      << "proc /proc proc rw,nosuid 0 0\n"
         "none /mnt/huge1g hugetlbfs rw,relatime,pagesize=1024M 0 0\n"
         "none /mnt/huge2m hugetlbfs rw,relatime,pagesize=2M 0 0\n"
         "tmpfs /dev/shm tmpfs rw 0 0\n";
  HostMemory host(mounts, dir.path());
  std::vector<HugetlbMount> found = host.HugetlbMounts();
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].path, "/mnt/huge1g");
  EXPECT_EQ(found[0].page_bytes, kGiganticPageBytes);
  EXPECT_EQ(found[1].page_bytes, kHugePageBytes);
  EXPECT_EQ(host.FindHugetlbMount(kHugePageBytes, "/srv")->path, "/mnt/huge2m");
  EXPECT_FALSE(host.FindHugetlbMount(4096, "/srv").has_value());
}

TEST(HostMemoryTest, PathIsWithinComparesWholeComponents) {
  EXPECT_TRUE(PathIsWithin("/x/huge", "/x/huge"));
  EXPECT_TRUE(PathIsWithin("/x/huge/data", "/x/huge"));
  EXPECT_TRUE(PathIsWithin("/x/huge/data", "/x/huge/"));
  EXPECT_TRUE(PathIsWithin("/x/huge/data", "/"));
  EXPECT_FALSE(PathIsWithin("/x/huge-data", "/x/huge"));
  EXPECT_FALSE(PathIsWithin("/x/hugedata/a", "/x/huge"));
  EXPECT_FALSE(PathIsWithin("/x", "/x/huge"));
}

TEST(HostMemoryTest, PrefersTheMountThatContainsTheDirectoryNotAPrefixOfIt) {
  TempDir dir;
  const std::string mounts = dir.path() + "/mounts";
  std::ofstream(mounts)
      << "none /x/huge hugetlbfs rw,relatime,pagesize=2M 0 0\n"
         "none /x/huge-data hugetlbfs rw,relatime,pagesize=2M 0 0\n";
  HostMemory host(mounts, dir.path());
  EXPECT_EQ(host.FindHugetlbMount(kHugePageBytes, "/x/huge-data/pools")->path,
            "/x/huge-data");
  EXPECT_EQ(host.FindHugetlbMount(kHugePageBytes, "/x/huge/pools")->path,
            "/x/huge");
}

// FakeHugepageHost is a host with 2 MiB pages and a hugetlbfs "mount" at
// MOUNT (a plain directory: a test does not allocate from it).
NamedPool::OpenOptions FakeHugepageHost(const TempDir& dir,
                                        const std::string& mount) {
  std::filesystem::create_directories(mount);
  std::ofstream(dir.path() + "/mounts")
      << "none " << mount << " hugetlbfs rw,relatime,pagesize=2M 0 0\n";
  const std::string sizes = dir.path() + "/sys/hugepages-2048kB";
  std::filesystem::create_directories(sizes);
  std::ofstream(sizes + "/nr_hugepages") << "8\n";
  std::ofstream(sizes + "/free_hugepages") << "8\n";
  NamedPool::OpenOptions options;
  options.host = HostMemory(dir.path() + "/mounts", dir.path() + "/sys");
  return options;
}

TEST(NamedPoolTest, AMountWhosePathPrefixesTheDataDirectoryDoesNotContainIt) {
  TempDir dir;
  const std::string mount = dir.path() + "/huge";
  const std::string data = dir.path() + "/huge-data";  // not on the mount
  PoolConfig config = SmallConfig();
  config.backing.kind = BackingKind::kHuge;
  config.volume_size_bytes = kHugePageBytes;
  config.max_volumes = 2;
  auto pool = OpenOrDie(data, config, FakeHugepageHost(dir, mount));
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->Summary().backing_in_use, BackingKind::kHuge);
  // The store is on the mount (so in hugepages), under the shared name,
  // not in the data directory, which is no hugetlbfs.
  EXPECT_FALSE(std::filesystem::exists(data + "/main.volumes"));
  int on_mount = 0;
  for (const auto& entry : std::filesystem::directory_iterator(mount)) {
    EXPECT_EQ(entry.path().filename().string().rfind("groove-volumed.main@", 0),
              0u)
        << entry.path();
    ++on_mount;
  }
  EXPECT_EQ(on_mount, 1);
}

TEST(HostMemoryTest, ReadsTheHugepageReservationFromSysfs) {
  TempDir dir;
  const std::string sizes = dir.path() + "/hugepages-2048kB";
  std::filesystem::create_directories(sizes);
  std::ofstream(sizes + "/nr_hugepages") << "8\n";
  std::ofstream(sizes + "/free_hugepages") << "5\n";
  std::ofstream(sizes + "/resv_hugepages") << "1\n";
  HostMemory host(dir.path() + "/mounts", dir.path());
  absl::StatusOr<HugepagePool> pages = host.Hugepages(kHugePageBytes);
  ASSERT_TRUE(pages.ok()) << pages.status();
  EXPECT_EQ(pages->total, 8u);
  EXPECT_EQ(pages->free, 5u);
  EXPECT_EQ(pages->reserved, 1u);
  EXPECT_EQ(pages->nr_hugepages_path, sizes + "/nr_hugepages");
  EXPECT_EQ(host.Hugepages(kGiganticPageBytes).status().code(),
            absl::StatusCode::kNotFound);
}

// ---- Opening ----------------------------------------------------------------

// ReadFile is the whole of `path`.
std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

// WriteWord writes `word` at `offset` of `path`.
void WriteWord(const std::string& path, uint64_t offset, uint64_t word) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(reinterpret_cast<const char*>(&word), sizeof(word));
  ASSERT_TRUE(file.good()) << path;
}

// RewriteStorePath replaces the volume store path recorded in `meta_file`
// (a NUL-padded field) with `path`, as a writer of the metadata could.
void RewriteStorePath(const std::string& meta_file, const std::string& from,
                      const std::string& path) {
  std::fstream file(meta_file, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(file)),
                    std::istreambuf_iterator<char>());
  const size_t at = bytes.find(from + std::string(1, '\0'));
  ASSERT_NE(at, std::string::npos) << from << " is not in " << meta_file;
  ASSERT_LT(path.size(), 1024u);
  std::string field = path;
  field.resize(std::max(from.size(), path.size()), '\0');
  file.clear();
  file.seekp(static_cast<std::streamoff>(at));
  file.write(field.data(), static_cast<std::streamsize>(field.size()));
  ASSERT_TRUE(file.good());
}

TEST(NamedPoolTest, OwnerRefusesAStorePathThePoolCouldNotHaveChosen) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  ASSERT_NE(OpenOrDie(data, SmallConfig()), nullptr);
  // Another spelling of the same data directory is the same place.
  ASSERT_NE(OpenOrDie(data + "/", SmallConfig()), nullptr);
  ASSERT_NE(OpenOrDie(dir.path() + "/./data", SmallConfig()), nullptr);

  // Metadata that names another file: the owner would create, size and
  // punch holes in it. It refuses (DATA_LOSS: the server quarantines) and
  // does not touch the file.
  const std::string victim = dir.path() + "/victim";
  RewriteStorePath(data + "/main.pool", data + "/main.volumes", victim);
  absl::StatusOr<std::unique_ptr<NamedPool>> reopened =
      NamedPool::Open(data, SmallConfig());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss)
      << reopened.status();
  EXPECT_THAT(reopened.status().message(),
              HasSubstr("records the volume store " + victim));
  struct stat st;
  EXPECT_NE(stat(victim.c_str(), &st), 0) << "the owner created " << victim;
  // Also a file of the right name in another directory.
  const std::string elsewhere = dir.path() + "/main.volumes";
  RewriteStorePath(data + "/main.pool", victim, elsewhere);
  EXPECT_EQ(NamedPool::Open(data, SmallConfig()).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_NE(stat(elsewhere.c_str(), &st), 0);
  // Put back, the pool opens again.
  RewriteStorePath(data + "/main.pool", elsewhere, data + "/main.volumes");
  EXPECT_NE(OpenOrDie(data, SmallConfig()), nullptr);
}

// ---- Stores in shared directories -------------------------------------------

// SharedStores are the stores of `normal` pools named `name` whose data
// directory is not a tmpfs: /dev/shm/groove-volumed/NAME@TAG.volumes, a
// directory every server on the host shares. Removed when it goes.
class SharedStores {
 public:
  explicit SharedStores(std::string name) : name_(std::move(name)) {}
  ~SharedStores() {
    for (const std::string& path : List()) std::filesystem::remove(path);
  }
  std::vector<std::string> List() const {
    std::vector<std::string> paths;
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator("/dev/shm/groove-volumed", ec)) {
      if (entry.path().filename().string().rfind(name_ + "@", 0) == 0) {
        paths.push_back(entry.path().string());
      }
    }
    std::sort(paths.begin(), paths.end());
    return paths;
  }

 private:
  std::string name_;
};

// A data directory that is not a tmpfs, so that `normal` stores go to
// /dev/shm/groove-volumed.
bool OnTmpfs(const std::string& dir) {
  struct statfs fs;
  return statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

TEST(NamedPoolTest, PoolsOfOneNameInTwoDataDirectoriesKeepTheirOwnStores) {
  TempDir a("/tmp");
  TempDir b("/tmp");
  TempDir c("/tmp");
  if (OnTmpfs(a.path())) GTEST_SKIP() << "/tmp is a tmpfs here";
  const std::string name = absl::StrCat("twodirs-", getpid());
  SharedStores stores(name);
  {
    auto first = OpenOrDie(a.path(), SmallConfig(name));
    ASSERT_NE(first, nullptr);
    ASSERT_TRUE(first->AddVolumes(3, std::nullopt, "first").ok());
  }
  // Another server, with another data directory, creates a pool of the
  // same name while the first is stopped ...
  auto second = OpenOrDie(b.path(), SmallConfig(name, 32));
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(second->recovery().created);
  ASSERT_TRUE(second->AddVolumes(1, std::nullopt, "second").ok());
  auto first = OpenOrDie(a.path(), SmallConfig(name));
  ASSERT_NE(first, nullptr);
  // ... and a third while it runs.
  auto third = OpenOrDie(c.path(), SmallConfig(name, 8));
  ASSERT_NE(third, nullptr);
  ASSERT_TRUE(third->AddVolumes(2, std::nullopt, "third").ok());
  EXPECT_EQ(stores.List().size(), 3u);

  // The first pool is as it left it: its volumes verify and list.
  EXPECT_FALSE(first->recovery().store_lost);
  EXPECT_EQ(first->recovery().volumes_recovered, 3u);
  absl::StatusOr<VerifyReport> verified = first->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 3u);
  uint64_t next = 0;
  const std::vector<VolumeEntry> listed = first->ListVolumes(0, 100, &next);
  ASSERT_EQ(listed.size(), 3u);
  for (const VolumeEntry& e : listed) EXPECT_EQ(e.info, "first");
  EXPECT_EQ(*first->AllocatedBytes(), 3 * kVolumeBytes);
  EXPECT_TRUE(second->Verify().ok());
  EXPECT_EQ(Observe(*second).indices, std::vector<uint64_t>{0});
}

TEST(NamedPoolTest, AStoreNamedByThePoolAloneAsBeforeTagsStillOpens) {
  TempDir dir("/tmp");
  if (OnTmpfs(dir.path())) GTEST_SKIP() << "/tmp is a tmpfs here";
  const std::string name = absl::StrCat("untagged-", getpid());
  SharedStores stores(name);
  const std::string untagged =
      absl::StrCat("/dev/shm/groove-volumed/", name, ".volumes");
  struct RemoveUntagged {
    std::string path;
    ~RemoveUntagged() { std::filesystem::remove(path); }
  } remove_untagged{untagged};
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig(name));
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "kept").ok());
  }
  // As a server before store tags created it.
  ASSERT_EQ(stores.List().size(), 1u);
  const std::string tagged = stores.List()[0];
  std::filesystem::rename(tagged, untagged);
  RewriteStorePath(dir.path() + "/" + name + ".pool", tagged, untagged);
  auto pool = OpenOrDie(dir.path(), SmallConfig(name));
  ASSERT_NE(pool, nullptr);
  EXPECT_FALSE(pool->recovery().store_lost);
  EXPECT_EQ(pool->recovery().volumes_recovered, 2u);
  EXPECT_EQ(Observe(*pool).indices, (std::vector<uint64_t>{0, 1}));
  EXPECT_TRUE(pool->Verify().ok());
}

TEST(NamedPoolTest, AnOwnerRefusesAStoreAnotherOwnerHolds) {
  TempDir a("/tmp");
  TempDir b("/tmp");
  if (OnTmpfs(a.path())) GTEST_SKIP() << "/tmp is a tmpfs here";
  const std::string name = absl::StrCat("heldstore-", getpid());
  SharedStores stores(name);
  auto first = OpenOrDie(a.path(), SmallConfig(name));
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->AddVolumes(2, std::nullopt, "first").ok());
  const Observed before = Observe(*first);
  ASSERT_EQ(stores.List().size(), 1u);
  const std::string first_store = stores.List()[0];
  ASSERT_NE(OpenOrDie(b.path(), SmallConfig(name)), nullptr);
  std::vector<std::string> both = stores.List();
  ASSERT_EQ(both.size(), 2u);
  const std::string second_store = both[0] == first_store ? both[1] : both[0];
  // The second pool's metadata names the first's store, as two pools of
  // one name created by a server before stores were tagged both do (or a
  // copy of a data directory).
  RewriteStorePath(b.path() + "/" + name + ".pool", second_store, first_store);
  const absl::Status s = NamedPool::Open(b.path(), SmallConfig(name)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_THAT(s.message(), HasSubstr(first_store));
  EXPECT_THAT(s.message(), HasSubstr("held by another owner"));
  EXPECT_EQ(Observe(*first), before);
  EXPECT_TRUE(first->Verify().ok());
}

TEST(NamedPoolTest, ReCreatingAPoolRemovesTheTaggedStoreItReplaces) {
  TempDir dir("/tmp");
  if (OnTmpfs(dir.path())) GTEST_SKIP() << "/tmp is a tmpfs here";
  const std::string name = absl::StrCat("recreated-", getpid());
  SharedStores stores(name);
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig(name));
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "").ok());
  }
  const std::vector<std::string> old_stores = stores.List();
  ASSERT_EQ(old_stores.size(), 1u);
  NamedPool::OpenOptions options;
  options.recreate = true;
  auto pool = OpenOrDie(dir.path(), SmallConfig(name, 32), options);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  const std::vector<std::string> new_stores = stores.List();
  ASSERT_EQ(new_stores.size(), 1u) << "the replaced store was left behind";
  EXPECT_NE(new_stores[0], old_stores[0]);
}

TEST(NamedPoolTest, ALostSharedStoreIsReplacedByOneOfANewName) {
  TempDir dir("/tmp");
  if (OnTmpfs(dir.path())) GTEST_SKIP() << "/tmp is a tmpfs here";
  const std::string name = absl::StrCat("lost-", getpid());
  SharedStores stores(name);
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig(name));
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "").ok());
  }
  const std::vector<std::string> old_stores = stores.List();
  ASSERT_EQ(old_stores.size(), 1u);
  std::filesystem::remove(old_stores[0]);  // as a cleared /dev/shm
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig(name));
    ASSERT_NE(pool, nullptr);
    EXPECT_TRUE(pool->recovery().store_lost);
    EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "new").ok());
  }
  const std::vector<std::string> new_stores = stores.List();
  ASSERT_EQ(new_stores.size(), 1u);
  EXPECT_NE(new_stores[0], old_stores[0]);
  // The metadata records the new store: the pool reopens with its volume.
  auto pool = OpenOrDie(dir.path(), SmallConfig(name));
  ASSERT_NE(pool, nullptr);
  EXPECT_FALSE(pool->recovery().store_lost);
  EXPECT_EQ(Observe(*pool).indices, std::vector<uint64_t>{0});
}

// OpenFailsWithFileTooLarge opens the pool (re-creating it when asked) in
// a child process whose files may grow to 1 MiB at most (RLIMIT_FSIZE): a
// new metadata object of up to 1024 slots fits, a larger store does not
// (EFBIG, a real kernel error). True when Open failed with INTERNAL "File
// too large".
bool OpenFailsWithFileTooLarge(const std::string& dir, const PoolConfig& config,
                               bool recreate) {
  const pid_t child = fork();
  if (child < 0) return false;
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{uint64_t{1} << 20, uint64_t{1} << 20};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(2);
    NamedPool::OpenOptions options;
    options.recreate = recreate;
    absl::StatusOr<std::unique_ptr<NamedPool>> pool =
        NamedPool::Open(dir, config, std::move(options));
    _exit(!pool.ok() && pool.status().code() == absl::StatusCode::kInternal &&
                  absl::StrContains(pool.status().message(), "File too large")
              ? 0
              : 1);
  }
  int status = 0;
  return waitpid(child, &status, 0) == child && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

// A replacement that fails after it has made its new store (the store's
// size is over RLIMIT_FSIZE here: EFBIG, a real kernel error) leaves
// nothing behind: no new store, which only its temporary metadata
// recorded, no temporary metadata, the old metadata as it was. The next
// Open replaces the pool.
TEST(NamedPoolTest, AFailedReplacementOfALostStoreLeavesNothingBehind) {
  TempDir dir("/tmp");
  if (OnTmpfs(dir.path())) GTEST_SKIP() << "/tmp is a tmpfs here";
  const std::string name = absl::StrCat("unreplaced-", getpid());
  SharedStores stores(name);
  const PoolConfig config = SmallConfig(name, 1024);  // a 4 MiB store
  {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "").ok());
  }
  ASSERT_EQ(stores.List().size(), 1u);
  std::filesystem::remove(stores.List()[0]);  // as a cleared /dev/shm
  const std::string meta = dir.path() + "/" + name + ".pool";
  const std::string before = ReadFile(meta);

  ASSERT_TRUE(OpenFailsWithFileTooLarge(dir.path(), config, false));
  EXPECT_TRUE(stores.List().empty()) << "the failed replacement left its store";
  EXPECT_FALSE(std::filesystem::exists(meta + ".new"));
  EXPECT_EQ(ReadFile(meta), before);

  auto pool = OpenOrDie(dir.path(), config);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().store_lost);
  EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
  EXPECT_EQ(stores.List().size(), 1u);
}

// ---- Metadata cut short or lost ---------------------------------------------

// A metadata object of a size no creation leaves (not whole pages, or
// shorter than its recorded max_volumes needs) is damage: DATA_LOSS, so
// the server quarantines the pool, and neither file is touched.
TEST(NamedPoolTest, MetadataCutShortIsDataLossAndChangesNothing) {
  TempDir dir;
  const PoolConfig config = SmallConfig("main", 1024);  // 20 KiB of metadata
  {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(8, std::nullopt, "live").ok());
  }
  const std::string meta = dir.path() + "/main.pool";
  const std::string store = dir.path() + "/main.volumes";
  const std::string store_before = ReadFile(store);
  // Longest first: each cut keeps less of the header.
  for (const auto& [size, says] : std::vector<std::pair<uint64_t, std::string>>{
           {12288, "shorter than the 20480 its max_volumes 1024 needs"},
           {4500, "it is 4500 bytes, a size no pool's metadata has"},
           {1000, "it is 1000 bytes, a size no pool's metadata has"}}) {
    SCOPED_TRACE(size);
    std::filesystem::resize_file(meta, size);
    const std::string meta_before = ReadFile(meta);
    const absl::Status s = NamedPool::Open(dir.path(), config).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr(says));
    EXPECT_THAT(s.message(), HasSubstr("cut short"));
    EXPECT_EQ(ReadFile(meta), meta_before);
    EXPECT_TRUE(ReadFile(store) == store_before) << "the store was changed";
  }
}

// An empty metadata object, or none, says nothing of the pool's volumes;
// the store the creation would reuse in place (DATA_DIR/NAME.volumes, or
// file:PATH) does. While that store holds data, Open refuses (DATA_LOSS)
// rather than empty it; --recreate creates the pool anew.
TEST(NamedPoolTest, AnEmptyOrMissingMetadataDoesNotEmptyTheStoreItWouldReuse) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  PoolConfig file_config = SmallConfig("f");
  file_config.backing = *ParseBacking("file:" + dir.path() + "/f.bin");
  for (const PoolConfig& config : {SmallConfig("t"), file_config}) {
    SCOPED_TRACE(config.name);
    {
      auto pool = OpenOrDie(data, config);
      ASSERT_NE(pool, nullptr);
      ASSERT_TRUE(pool->AddVolumes(4, std::nullopt, "live").ok());
    }
    const std::string meta = absl::StrCat(data, "/", config.name, ".pool");
    const std::string store = config.backing.kind == BackingKind::kFile
                                  ? config.backing.file_path
                                  : absl::StrCat(data, "/t.volumes");
    const std::string before = ReadFile(store);
    for (const bool deleted : {false, true}) {
      SCOPED_TRACE(deleted ? "metadata deleted" : "metadata emptied");
      if (deleted) {
        ASSERT_TRUE(std::filesystem::remove(meta));
      } else {
        std::filesystem::resize_file(meta, 0);
      }
      const absl::Status s = NamedPool::Open(data, config).status();
      EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
      EXPECT_THAT(s.message(),
                  HasSubstr("the volume store " + store + " it would reuse"));
      EXPECT_THAT(s.message(), HasSubstr("--recreate"));
      EXPECT_TRUE(ReadFile(store) == before) << "the store was changed";
      // Left as found: an emptied object stays, a missing one stays missing.
      EXPECT_EQ(std::filesystem::exists(meta), !deleted);
    }
    NamedPool::OpenOptions options;
    options.recreate = true;
    auto pool = OpenOrDie(data, config, options);
    ASSERT_NE(pool, nullptr);
    EXPECT_TRUE(pool->recovery().created);
    EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
  }
}

// The metadata records store paths of up to kMaxStorePathBytes: a longer
// one is refused before anything is made, never recorded cut short.
TEST(NamedPoolTest, StorePathsTooLongToRecordAreRefusedBeforeAnythingIsMade) {
  TempDir dir;
  // A file:PATH of exactly the limit is accepted (directories of 200
  // bytes, then a file name that makes up the rest).
  std::string deep = dir.path();
  while (deep.size() + 1 + 200 + 1 + 100 <= kMaxStorePathBytes) {
    deep += "/" + std::string(200, 'd');
  }
  std::filesystem::create_directories(deep);
  const std::string longest =
      deep + "/" + std::string(kMaxStorePathBytes - deep.size() - 1, 'f');
  ASSERT_EQ(longest.size(), kMaxStorePathBytes);
  PoolConfig config = SmallConfig();
  config.backing = *ParseBacking("file:" + longest);
  {
    auto pool = OpenOrDie(dir.path() + "/ok", config);
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "").ok());
  }
  ASSERT_NE(OpenOrDie(dir.path() + "/ok", config), nullptr)
      << "the recorded path must be the whole path";

  config.backing = *ParseBacking("file:" + longest + "x");
  absl::Status s = NamedPool::Open(dir.path() + "/long-file", config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("is 1024 bytes long; at most 1023"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/long-file"));

  const std::string long_dir = deep + "/" + std::string(200, 'e');
  s = NamedPool::Open(long_dir, SmallConfig()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("is too long"));
  EXPECT_FALSE(std::filesystem::exists(long_dir));
}

// A pool's slot and link tables cost memory only where they hold
// something: creation, recovery, the free-slot index and listings skip the
// holes of the metadata file, since a read through the mapping of a tmpfs
// hole allocates a page (8 bytes per slot of an empty pool: 8 MiB here).
TEST(NamedPoolTest, AnEmptyPoolsSlotTableTakesNoMemory) {
  TempDir dir;                                    // a tmpfs
  constexpr uint64_t kSlots = uint64_t{1} << 20;  // 16 MiB of tables
  const PoolConfig config = SmallConfig("main", kSlots);
  const std::string meta = dir.path() + "/main.pool";
  auto allocated = [&] {
    struct stat st {};
    EXPECT_EQ(stat(meta.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  };
  auto list_all = [](const NamedPool& pool) {
    std::vector<uint64_t> listed;
    for (uint64_t next = 0; next < kSlots;) {
      for (const VolumeEntry& e : pool.ListVolumes(next, 1000, &next)) {
        listed.push_back(e.index);
      }
    }
    return listed;
  };
  {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    EXPECT_TRUE(list_all(*pool).empty());
  }
  EXPECT_LE(allocated(), uint64_t{64} << 10) << "created";
  {
    auto pool = OpenOrDie(dir.path(), config);  // recovery, free-slot index
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(1, kSlots - 1, "last").ok());
    EXPECT_EQ(list_all(*pool), std::vector<uint64_t>{kSlots - 1});
  }
  EXPECT_LE(allocated(), uint64_t{64} << 10) << "reopened";
  auto pool = OpenOrDie(dir.path(), config);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().volumes_recovered, 1u);
  EXPECT_EQ(Observe(*pool).indices, std::vector<uint64_t>{kSlots - 1});
}

// kVolumeInfoMax bytes of info fit (481 do not: NamedPoolBadAddTest), and
// come back whole.
TEST(NamedPoolTest, TheLongestInfoFitsWhole) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  const std::string info(kVolumeInfoMax, 'i');
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, info).ok());
  uint64_t next = 0;
  const std::vector<VolumeEntry> listed = pool->ListVolumes(0, 1, &next);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].info, info);
}

// A re-creation whose store is in the data directory (a tmpfs) unlinks the
// old store first (joins of the old pool keep it); if the new one cannot
// be made, nothing is left at its path either: the old metadata finds its
// store lost, and the next Open replaces the pool, instead of pairing the
// old metadata with an empty file (DATA_LOSS at every start).
TEST(NamedPoolTest, AFailedRecreationLeavesTheOldPoolsStoreLostNotEmpty) {
  TempDir dir;  // a tmpfs: the store is DIR/main.volumes
  const std::string meta = dir.path() + "/main.pool";
  const std::string store = dir.path() + "/main.volumes";
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig("main", 16));
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "old").ok());
  }
  const std::string before = ReadFile(meta);
  // Re-created with 1024 slots: a 4 MiB store, over the limit.
  ASSERT_TRUE(OpenFailsWithFileTooLarge(dir.path(), SmallConfig("main", 1024),
                                        /*recreate=*/true));
  EXPECT_FALSE(std::filesystem::exists(store)) << "an empty store was left";
  EXPECT_FALSE(std::filesystem::exists(meta + ".new"));
  EXPECT_EQ(ReadFile(meta), before);
  auto pool = OpenOrDie(dir.path(), SmallConfig("main", 16));
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().store_lost);
  EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "new").ok());
}

// A file:PATH may be a symlink to the store: a re-creation makes a new
// file where the link points (the old one goes with the old pool's joins)
// and keeps the link.
TEST(NamedPoolTest, ARecreationThroughASymlinkedFileStoreKeepsTheLink) {
  TempDir dir;
  const std::string target = dir.path() + "/store.bin";
  const std::string link = dir.path() + "/store.link";
  std::ofstream(target).close();
  std::filesystem::create_symlink(target, link);
  PoolConfig config = SmallConfig("main", 16);
  config.backing = *ParseBacking("file:" + link);
  {
    auto pool = OpenOrDie(dir.path() + "/data", config);
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "old").ok());
  }
  struct stat old_target {};
  ASSERT_EQ(stat(target.c_str(), &old_target), 0);
  config.max_volumes = 32;
  NamedPool::OpenOptions recreate;
  recreate.recreate = true;
  auto pool = OpenOrDie(dir.path() + "/data", config, std::move(recreate));
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  struct stat new_target {};
  ASSERT_EQ(stat(target.c_str(), &new_target), 0);
  EXPECT_NE(new_target.st_ino, old_target.st_ino);
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "new").ok());
}

TEST(NamedPoolTest, OpenCreatesAnOwnerOnlyDataDirectoryAndObjects) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  auto pool = OpenOrDie(data, SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  struct stat st;
  ASSERT_EQ(stat(data.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((data + "/main.pool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((data + "/main.volumes").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 16 * kVolumeBytes);
  const PoolSummary s = pool->Summary();
  EXPECT_EQ(s.backing_in_use, BackingKind::kNormal);
  EXPECT_EQ(s.page_size_bytes, 4096u);
  EXPECT_EQ(s.volumes_mapped, 0u);
  EXPECT_TRUE(s.store_survives_restart);
}

// PrepareStoreDirectory guards /dev/shm/groove-volumed, where `normal`
// pools keep their stores when the data directory is not a tmpfs; here it
// is pointed at scratch directories so no other test's pool is disturbed.
TEST(StoreDirectoryTest, IsCreatedOwnerOnlyAndNarrowedIfOurs) {
  TempDir dir;
  const std::string stores = dir.path() + "/stores";
  ASSERT_TRUE(PrepareStoreDirectory(stores).ok());
  struct stat st;
  ASSERT_EQ(stat(stores.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Ours but open to others (as an older server left it): narrowed.
  ASSERT_EQ(chmod(stores.c_str(), 0755), 0);
  ASSERT_TRUE(PrepareStoreDirectory(stores).ok());
  ASSERT_EQ(stat(stores.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(StoreDirectoryTest, ASymlinkAFileOrAnotherUsersDirectoryIsRefused) {
  TempDir dir;
  const std::string target = dir.path() + "/elsewhere";
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  const std::string link = dir.path() + "/link";
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  absl::Status s = PrepareStoreDirectory(link);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("a symlink"));

  const std::string file = dir.path() + "/file";
  std::ofstream(file) << "x";
  s = PrepareStoreDirectory(file);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("not a directory"));

  // Another user's directory (the tests run as root, which may chown).
  if (geteuid() != 0) GTEST_SKIP() << "the other-user case needs root (chown)";
  const std::string theirs = dir.path() + "/theirs";
  ASSERT_EQ(mkdir(theirs.c_str(), 0755), 0);
  ASSERT_EQ(chown(theirs.c_str(), 65534, 65534), 0);
  s = PrepareStoreDirectory(theirs);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("is owned by uid 65534"));
  struct stat st;
  ASSERT_EQ(stat(theirs.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u) << "another user's mode was changed";
}

TEST(NamedPoolTest, OpenRejectsBadNamesAndGeometry) {
  TempDir dir;
  PoolConfig config = SmallConfig("../escape");
  EXPECT_EQ(NamedPool::Open(dir.path(), config).status().code(),
            absl::StatusCode::kInvalidArgument);
  config = SmallConfig();
  config.volume_size_bytes = 3 * 4096;
  EXPECT_EQ(NamedPool::Open(dir.path(), config).status().code(),
            absl::StatusCode::kInvalidArgument);
  config = SmallConfig();
  config.max_volumes = 0;
  EXPECT_EQ(NamedPool::Open(dir.path(), config).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/../escape.pool"));
}

TEST(NamedPoolTest, OpenRejectsAGeometryWhoseSpanDoesNotFitAFile) {
  TempDir dir;
  PoolConfig config = SmallConfig();
  config.volume_size_bytes = uint64_t{1} << 44;
  config.max_volumes = uint64_t{1} << 20;  // 2^64 bytes: wraps to 0
  absl::Status s = NamedPool::Open(dir.path(), config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("max_volumes 1048576 volumes of "
                                     "volume_size 17592186044416 bytes"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/main.pool"));
  // 2^63 bytes: no overflow, but more than an off_t (a negative size).
  config.max_volumes = uint64_t{1} << 19;
  s = NamedPool::Open(dir.path(), config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(NamedPoolTest, AJoinRefusesARecordedGeometryWhoseSpanOverflows) {
  TempDir dir;
  ASSERT_NE(OpenOrDie(dir.path(), SmallConfig()), nullptr);
  // The metadata records 2^20 volumes of 2^44 bytes: 2^64 bytes, which
  // wraps to 0.
  const std::string meta = dir.path() + "/main.pool";
  WriteWord(meta, testing::kVolumeSizeOffset, uint64_t{1} << 44);
  WriteWord(meta, testing::kMaxVolumesOffset, uint64_t{1} << 20);
  const absl::Status s = NamedPool::Join(dir.path(), "main").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("records volume_size 17592186044416 and "
                                     "max_volumes 1048576"));
}

TEST(NamedPoolTest, ASecondOwnerIsRefused) {
  TempDir dir;
  auto first = OpenOrDie(dir.path(), SmallConfig());
  const absl::Status second =
      NamedPool::Open(dir.path(), SmallConfig()).status();
  EXPECT_EQ(second.code(), absl::StatusCode::kAlreadyExists) << second;
}

TEST(NamedPoolTest, MismatchedConfigurationRefusesToLoadAndNamesTheField) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "keep").ok());
  }
  PoolConfig other = SmallConfig("main", 32);
  absl::Status s = NamedPool::Open(dir.path(), other).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("max_volumes is 16, configured 32"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("--recreate"), std::string::npos) << s;
  other = SmallConfig();
  other.volume_size_bytes = kVolumeBytes * 2;
  s = NamedPool::Open(dir.path(), other).status();
  EXPECT_NE(s.message().find("volume_size is 64 KiB"), std::string::npos) << s;
  // The refused opens left the pool as it was.
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  EXPECT_EQ(pool->Summary().volumes_mapped, 2u);
}

TEST(NamedPoolTest, RecreateReplacesAMismatchedPool) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "").ok());
  }
  NamedPool::OpenOptions options;
  options.recreate = true;
  auto pool = OpenOrDie(dir.path(), SmallConfig("main", 32), options);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  EXPECT_EQ(pool->Summary().max_volumes, 32u);
  EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
  EXPECT_EQ(*pool->AllocatedBytes(), 0u);
}

TEST(NamedPoolTest, AForeignMetadataObjectIsNeverReformatted) {
  TempDir dir;
  std::ofstream(dir.path() + "/main.pool") << std::string(8192, 'x');
  const absl::Status s = NamedPool::Open(dir.path(), SmallConfig()).status();
  // Corrupt or not ours: DATA_LOSS, so a server quarantines just this pool.
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("is not a groove-volumed pool"), std::string::npos)
      << s;
}

TEST(NamedPoolTest, ACorruptPoolHeaderMagicIsDataLossForTheOwner) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "kept").ok());
  }
  const std::string meta = dir.path() + "/main.pool";
  WriteWord(meta, offsetof(PoolHeader, magic), 0x2121216567616267);
  const std::string before = ReadFile(meta);
  const std::string store_before = ReadFile(dir.path() + "/main.volumes");
  // DATA_LOSS: a server quarantines this pool and serves its others.
  const absl::Status s = NamedPool::Open(dir.path(), SmallConfig()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("pool header (offset 0) has magic "
                                     "0x2121216567616267"));
  EXPECT_THAT(s.message(), HasSubstr("move the file aside"));
  EXPECT_TRUE(ReadFile(meta) == before) << "the refused open changed it";
  EXPECT_TRUE(ReadFile(dir.path() + "/main.volumes") == store_before)
      << "the refused open changed the store";
  // A data-plane join refuses it too (FAILED_PRECONDITION, as for every
  // bad metadata a join meets).
  EXPECT_EQ(NamedPool::Join(dir.path(), "main").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(NamedPoolTest, ACreationThatNeverFinishedIsCompleted) {
  TempDir dir;
  ASSERT_NE(OpenOrDie(dir.path(), SmallConfig()), nullptr);
  // As a creation that died before writing the magic leaves it.
  WriteWord(dir.path() + "/main.pool", testing::kMetadataMagicOffset, 0);
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "new").ok());
  EXPECT_TRUE(pool->Verify().ok());
}

TEST(NamedPoolTest, AZeroedMetadataMagicOnAPoolWithVolumesIsDataLoss) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_TRUE(pool->AddVolumes(3, std::nullopt, "kept").ok());
  }
  const std::string meta = dir.path() + "/main.pool";
  WriteWord(meta, testing::kMetadataMagicOffset, 0);
  const std::string before = ReadFile(meta);
  const std::string store_before = ReadFile(dir.path() + "/main.volumes");
  // Not "a creation that never finished": that would re-create the pool
  // and drop its volumes. DATA_LOSS, so a server quarantines it.
  const absl::Status s = NamedPool::Open(dir.path(), SmallConfig()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("metadata magic (offset 1536) is 0"));
  EXPECT_THAT(s.message(), HasSubstr("slot 0 holds 0x"));
  EXPECT_TRUE(ReadFile(meta) == before) << "the refused open changed it";
  EXPECT_TRUE(ReadFile(dir.path() + "/main.volumes") == store_before)
      << "the refused open changed the store";
}

TEST(NamedPoolTest, APoolOfTheOlderMetadataLayoutIsRefusedNotRecreated) {
  // Layout 1 kept its metadata magic ("groovem1") at offset 256, where
  // layout 2's larger pool header now lies; layout 2's magic offset falls in
  // layout 1's zero padding, which must not read as "creation never
  // finished" (that would silently re-create the pool and drop its volumes).
  TempDir dir;
  const std::string path = dir.path() + "/main.pool";
  std::string image(8192, '\0');
  const uint64_t layout1_magic = 0x67726f6f76656d31ULL;
  std::memcpy(image.data() + 256, &layout1_magic, sizeof(layout1_magic));
  std::ofstream(path, std::ios::binary) << image;
  const absl::Status s = NamedPool::Open(dir.path(), SmallConfig()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("metadata layout 1"), std::string::npos) << s;
  std::ifstream in(path, std::ios::binary);
  const std::string after((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  EXPECT_EQ(after, image) << "the refused open changed the file";
}

// ---- Add and remove ---------------------------------------------------------

TEST(NamedPoolTest, AddTakesTheLowestFreeIndicesAndRealMemory) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  absl::StatusOr<std::vector<uint64_t>> added =
      pool->AddVolumes(3, std::nullopt, "tenant=a");
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_EQ(*pool->AllocatedBytes(), 3 * kVolumeBytes);
  added = pool->AddVolumes(2, 10, "tenant=b");
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, (std::vector<uint64_t>{10, 11}));
  added = pool->AddVolumes(2, std::nullopt, "");
  EXPECT_EQ(*added, (std::vector<uint64_t>{3, 4}));

  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool->ListVolumes(0, 100, &next);
  ASSERT_EQ(listed.size(), 7u);
  EXPECT_EQ(next, 16u);
  EXPECT_EQ(listed[0].info, "tenant=a");
  EXPECT_EQ(listed[5].index, 10u);
  EXPECT_EQ(listed[5].info, "tenant=b");
  for (const VolumeEntry& e : listed) {
    EXPECT_EQ(e.status, VolumeStatus::kEmpty);
  }
  const PoolSummary s = pool->Summary();
  EXPECT_EQ(s.volumes_mapped, 7u);
  EXPECT_EQ(s.volumes_empty, 7u);
  EXPECT_EQ(s.capacity_bytes, 7 * kVolumeBytes);
  absl::StatusOr<VerifyReport> report = pool->Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->empty_volumes, 7u);
}

// FindPools lists the pools of a data directory from their files alone,
// with the memory each file holds: a pool's metadata, store and journal;
// a metadata object that is not a finished pool's (here cut short) is
// listed as unreadable, with itself as its only file; other files, and
// names no pool can have, are not pools.
TEST(NamedPoolTest, FindPoolsListsEachPoolsFilesWithoutOpeningIt) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig("main"));
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "x").ok());
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir.path() + "/" + name) << content;
  };
  write("cut.pool", "short");
  write("no pool here.pool", "x");  // a space: not a pool name
  write("notes.txt", "x");
  absl::StatusOr<std::vector<PoolFiles>> found =
      NamedPool::FindPools(dir.path());
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 2u);

  const PoolFiles& cut = (*found)[0];
  EXPECT_EQ(cut.name, "cut");
  EXPECT_THAT(cut.unreadable, HasSubstr("not a finished pool's metadata"));
  ASSERT_EQ(cut.files.size(), 1u);
  EXPECT_EQ(cut.files[0].path, dir.path() + "/cut.pool");

  const PoolFiles& main = (*found)[1];
  EXPECT_EQ(main.name, "main");
  EXPECT_EQ(main.unreadable, "");
  EXPECT_EQ(main.volumes_mapped, 2u);
  ASSERT_EQ(main.files.size(), 3u);
  EXPECT_EQ(main.files[0].path, dir.path() + "/main.pool");
  EXPECT_EQ(main.files[1].path, pool->StorePath());
  EXPECT_EQ(main.files[2].path, dir.path() + "/main.requests");
  // The store holds the two volumes' memory, no more (it is sparse).
  EXPECT_EQ(main.files[1].bytes, 2 * kVolumeBytes);
  uint64_t sum = 0;
  for (const PoolFiles::File& file : main.files) sum += file.bytes;
  EXPECT_EQ(main.held_bytes(), sum);

  EXPECT_EQ(NamedPool::FindPools(dir.path() + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

// A verify told to stop (its RPC's deadline passed) stops at the next ask,
// in either walk (the slot walk and the header walk each ask every
// kVerifyStopCheckSteps volumes), says how far it got, and leaves the pool
// as it was.
TEST(NamedPoolTest, AVerifyToldToStopStopsAtItsNextAsk) {
  TempDir dir;
  PoolConfig config = SmallConfig("main", 5000);
  config.volume_size_bytes = 4096;
  auto pool = OpenOrDie(dir.path(), config);
  for (uint64_t added = 0; added < 5000; added += 1000) {
    ASSERT_TRUE(pool->AddVolumes(1000, std::nullopt, "v").ok());
  }
  uint64_t full_asks = 0;
  absl::StatusOr<VerifyReport> full = pool->Verify([&] {
    ++full_asks;
    return false;
  });
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->empty_volumes, 5000u);
  // Asked before the walk, 4 times in each of its two walks of 5000 and
  // between them.
  EXPECT_EQ(full_asks, 10u);
  for (uint64_t stop_at = 1; stop_at <= full_asks; ++stop_at) {
    uint64_t asks = 0;
    absl::StatusOr<VerifyReport> stopped =
        pool->Verify([&] { return ++asks >= stop_at; });
    EXPECT_EQ(stopped.status().code(), absl::StatusCode::kCancelled)
        << "stop at ask " << stop_at << ": " << stopped.status();
    // The slot walk's stop is asked once more after it, and said again.
    EXPECT_LE(asks, stop_at + 1) << stop_at;
    EXPECT_THAT(stopped.status().message(),
                HasSubstr("nothing wrong was found on the way"));
  }
  // Stopped in the header walk, after its first ask (1023 volumes walked).
  uint64_t asks = 0;
  absl::StatusOr<VerifyReport> stopped =
      pool->Verify([&] { return ++asks >= 7; });
  EXPECT_THAT(stopped.status().message(),
              HasSubstr("after reading the headers of 1023 volumes"));
  full = pool->Verify();
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->empty_volumes, 5000u);
  EXPECT_EQ(pool->Summary().volumes_empty, 5000u);
}

TEST(NamedPoolTest, ListVolumesNamesTheWrongHeaderFieldOfACorruptVolume) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(pool->AddVolumes(4, std::nullopt, "x").ok());
  {
    // The owner maps no volume: corrupt them through a data-plane join.
    auto join = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    (*join)->pool().VolumeAt(1)->magic.store(0x1234);
    (*join)->pool().VolumeAt(2)->idx.store(18);
    (*join)->pool().VolumeAt(3)->info_sz.store(600);
  }
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool->ListVolumes(0, 16, &next);
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].status, VolumeStatus::kEmpty);
  EXPECT_EQ(listed[0].corruption, "");
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(listed[i].status, VolumeStatus::kCorrupt) << i;
  }
  EXPECT_THAT(listed[1].corruption,
              ::testing::StartsWith("header magic is 0x1234, want 0x"));
  EXPECT_EQ(listed[2].corruption, "header idx is 18, want 2");
  EXPECT_EQ(listed[3].corruption, "header info_sz is 600, want at most 480");
}

// A remove that meets a corrupt volume after popping good ones puts the
// good ones back, whole and with their info: RemoveAnnounced leaves their
// headers as popped, and they are pushed back as they are.
TEST(NamedPoolTest, ARemoveThatMeetsACorruptVolumePutsTheOthersBack) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(pool->AddVolumes(3, std::nullopt, "x").ok());  // 0 on top
  {
    auto join = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    (*join)->pool().VolumeAt(1)->magic.store(0x1234);
  }
  const absl::Status s = pool->RemoveVolumes(3).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(),
              ::testing::HasSubstr(
                  "volume 1, popped off the stack, is not a sound empty "
                  "volume (header magic is 0x1234, want 0x"));
  EXPECT_THAT(s.message(), ::testing::HasSubstr(
                               "; the 1 volume popped before it was put back"));
  // Volume 0 is back on top and empty; 1 is kept, as corrupt; 2 untouched.
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool->ListVolumes(0, 16, &next);
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].status, VolumeStatus::kEmpty);
  EXPECT_EQ(listed[0].info, "x");
  EXPECT_EQ(listed[1].status, VolumeStatus::kCorrupt);
  EXPECT_EQ(listed[2].status, VolumeStatus::kEmpty);
  EXPECT_EQ(*pool->AllocatedBytes(), 3 * kVolumeBytes);
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ((*removed)[0].index, 0u);
  EXPECT_EQ((*removed)[0].info, "x");
}

// A good volume such a remove cannot put back (writing its header fails)
// is removed after all: its memory given back, its index free. It used to
// stay MAPPED with a header that is not a volume's, counted and holding
// memory, which nothing listed, removed or could add again.
TEST(NamedPoolTest, AVolumeARemoveCannotPutBackIsGivenBack) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  bool armed = true;
  NamedPool::OpenOptions options;
  options.wrap_store = [control](std::unique_ptr<VolumeStore> real) {
    return std::make_unique<FaultStore>(std::move(real), control);
  };
  options.step_hook = [&](absl::string_view step) {
    if (step != "remove:popped" || !armed) return;
    armed = false;
    control->fail_write_in = 1;  // putting volume 0 back
  };
  auto pool = OpenOrDie(dir.path(), SmallConfig(), std::move(options));
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(3, std::nullopt, "x").ok());  // 0 on top
  {
    auto join = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    (*join)->pool().VolumeAt(1)->magic.store(0x1234);
  }
  const absl::Status s = pool->RemoveVolumes(3).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  const Observed after = Observe(*pool);
  EXPECT_EQ(after.indices, (std::vector<uint64_t>{1, 2}));  // 1 corrupt
  EXPECT_EQ(after.mapped, 2u);
  EXPECT_EQ(after.allocated_bytes, 2 * kVolumeBytes);
  absl::StatusOr<VerifyReport> verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 1u);  // 2
  EXPECT_EQ(*pool->AddVolumes(1, 0, "again"), (std::vector<uint64_t>{0}));
}

TEST(NamedPoolTest, APopThroughACorruptTopToAnUnaddedIndexDoesNotFault) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "x").ok());
  // Corrupt the top to name index 12, which was never added (its address
  // range is only reserved).
  std::atomic<uint64_t>& top = pool->pool().header()->ver_top;
  top.store(PackTop(TopVersion(top.load()) + kTopVersionStep, 12));
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  // Reading index 12 saw a zero header (not a volume): the pop quarantined
  // it, counted it, and reported the corruption; nothing faulted.
  ASSERT_FALSE(removed.ok());
  EXPECT_EQ(removed.status().code(), absl::StatusCode::kDataLoss)
      << removed.status();
  EXPECT_EQ(pool->Summary().counts.volumes_quarantined, 1u);
  // Its FREE slot is not made a quarantined volume's: there is none there
  // to reclaim (its announced pop did not record it: not a mapped slot).
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 0u);
  const absl::Status reclaimed = pool->ReclaimVolume(12).status();
  EXPECT_EQ(reclaimed.code(), absl::StatusCode::kFailedPrecondition)
      << reclaimed;
  EXPECT_THAT(reclaimed.message(), HasSubstr("holds no volume"));
}

TEST(NamedPoolTest, ListVolumesPaginatesAndShowsVolumesInUse) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(pool->AddVolumes(5, std::nullopt, "x").ok());
  auto join = NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kSuccess);  // index 0
  uint64_t next = 0;
  std::vector<VolumeEntry> page = pool->ListVolumes(0, 2, &next);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].status, VolumeStatus::kInUse);
  EXPECT_EQ(page[1].status, VolumeStatus::kEmpty);
  EXPECT_EQ(next, 2u);
  page = pool->ListVolumes(next, 2, &next);
  EXPECT_EQ(page[0].index, 2u);
  page = pool->ListVolumes(next, 2, &next);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].index, 4u);
  EXPECT_EQ(pool->Summary().volumes_in_use, 1u);
  EXPECT_EQ((*join)->pool().Release(v), PoolError::kSuccess);
}

// ListVolumes reads the headers of small volumes a window of the store at
// a time (256 KiB: 64 volumes of 4 KiB) and must still page exactly: every
// volume once, in order, across window and page boundaries and holes.
TEST(NamedPoolTest, ListVolumesPagesExactlyAcrossReadWindows) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  PoolConfig config = SmallConfig("main", 200);
  config.volume_size_bytes = 4096;
  auto pool = OpenWithFaults(dir, control, config);
  std::vector<uint64_t> added;
  for (uint64_t i = 0; i < 200; i += 2) {
    ASSERT_TRUE(pool->AddVolumes(1, i, absl::StrCat("v", i)).ok()) << i;
    added.push_back(i);
  }
  // All at once: one read per window that holds a volume (200 / 64).
  control->reads = 0;
  uint64_t next = 0;
  std::vector<VolumeEntry> all = pool->ListVolumes(0, 1000, &next);
  EXPECT_EQ(control->reads.load(), 4);
  EXPECT_EQ(next, 200u);
  ASSERT_EQ(all.size(), added.size());
  for (size_t k = 0; k < all.size(); ++k) {
    EXPECT_EQ(all[k].index, added[k]);
    EXPECT_EQ(all[k].info, absl::StrCat("v", added[k]));
    EXPECT_EQ(all[k].status, VolumeStatus::kEmpty);
  }
  // Pages of 7, from an odd start: the same volumes, each once.
  std::vector<uint64_t> paged;
  next = 1;
  while (next < 200) {
    std::vector<VolumeEntry> page = pool->ListVolumes(next, 7, &next);
    ASSERT_LE(page.size(), 7u);
    ASSERT_FALSE(page.empty());
    for (const VolumeEntry& e : page) paged.push_back(e.index);
    // A full page resumes right after its last volume.
    if (page.size() == 7) {
      EXPECT_EQ(next, page.back().index + 1);
    }
  }
  EXPECT_EQ(next, 200u);
  EXPECT_EQ(paged, std::vector<uint64_t>(added.begin() + 1, added.end()));
}

// IndicesOf lists the indices of a page.
std::vector<uint64_t> IndicesOf(const std::vector<VolumeEntry>& page) {
  std::vector<uint64_t> indices;
  for (const VolumeEntry& e : page) indices.push_back(e.index);
  return indices;
}

// A full page that ends on the pool's last volume completes the listing
// (AIP-158: a token says more follow): ListVolumes reads on, slot words
// only (no header), to the end of the index range. A full page that a
// volume follows, in the same read window or a later one, resumes right
// after its last volume.
TEST(NamedPoolTest, ListVolumesCompletesAFullPageThatEndsOnTheLastVolume) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  PoolConfig config = SmallConfig("main", 200);
  config.volume_size_bytes = 4096;  // read windows of 64 volumes
  auto pool = OpenWithFaults(dir, control, config);
  ASSERT_NE(pool, nullptr);
  for (uint64_t i : {10, 20, 150}) {
    ASSERT_TRUE(pool->AddVolumes(1, i, "x").ok()) << i;
  }
  uint64_t next = 0;
  // 20 follows in the same window, 150 in a later one.
  EXPECT_EQ(IndicesOf(pool->ListVolumes(0, 1, &next)),
            std::vector<uint64_t>{10});
  EXPECT_EQ(next, 11u);
  EXPECT_EQ(IndicesOf(pool->ListVolumes(0, 2, &next)),
            (std::vector<uint64_t>{10, 20}));
  EXPECT_EQ(next, 21u);
  // Full pages ending on 150: complete, one header read (the page's own).
  control->reads = 0;
  EXPECT_EQ(IndicesOf(pool->ListVolumes(21, 1, &next)),
            std::vector<uint64_t>{150});
  EXPECT_EQ(next, 200u);
  EXPECT_EQ(control->reads.load(), 1);
  EXPECT_EQ(IndicesOf(pool->ListVolumes(0, 3, &next)),
            (std::vector<uint64_t>{10, 20, 150}));
  EXPECT_EQ(next, 200u);
}

// Where the scan bound (kListMaxSlotsScanned) comes before max_volumes, a
// full page cannot tell whether a volume follows: it resumes after its
// last volume, and the next call may return none and complete the listing.
TEST(NamedPoolTest, ListVolumesResumesAFullPageWhenTheScanBoundComesFirst) {
  TempDir dir;
  PoolConfig config = SmallConfig("main", NamedPool::kListMaxSlotsScanned + 1);
  config.volume_size_bytes = 4096;
  auto pool = OpenOrDie(dir.path(), config);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(1, 0, "x").ok());
  uint64_t next = 0;
  EXPECT_EQ(IndicesOf(pool->ListVolumes(0, 1, &next)),
            std::vector<uint64_t>{0});
  EXPECT_EQ(next, 1u);
  EXPECT_TRUE(pool->ListVolumes(next, 1, &next).empty());
  EXPECT_EQ(next, config.max_volumes);
}

// A window of small volumes that cannot be read (an I/O error) is read
// again one header at a time: every volume is listed. It used to be
// skipped whole: Inspect said OK, listing no volume.
TEST(NamedPoolTest, ListVolumesReadsEachHeaderWhenAWindowCannotBeRead) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  PoolConfig config = SmallConfig("main", 16);
  config.volume_size_bytes = 4096;  // all 16 in one window
  auto pool = OpenWithFaults(dir, control, config);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(5, std::nullopt, "x").ok());
  control->reads = 0;
  control->fail_read_in = 1;  // the window
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool->ListVolumes(0, 16, &next);
  EXPECT_EQ(control->reads.load(), 1 + 5);
  EXPECT_EQ(next, 16u);
  ASSERT_EQ(listed.size(), 5u);
  for (uint64_t k = 0; k < 5; ++k) {
    EXPECT_EQ(listed[k].index, k);
    EXPECT_EQ(listed[k].status, VolumeStatus::kEmpty);
    EXPECT_EQ(listed[k].info, "x");
  }
}

// A store cut short (by another process) leaves the headers past its end
// unreadable: each of those volumes is listed as corrupt, saying why, and
// pages cover every mapped volume.
TEST(NamedPoolTest, ListVolumesListsAVolumeWhoseHeaderCannotBeReadAsCorrupt) {
  TempDir dir;
  PoolConfig config = SmallConfig("main", 16);
  config.volume_size_bytes = 4096;
  auto pool = OpenOrDie(dir.path(), config);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(8, std::nullopt, "x").ok());
  // Volume 5's header is cut in half; 6 and 7 are past the end.
  ASSERT_EQ(truncate((dir.path() + "/main.volumes").c_str(), 5 * 4096 + 256),
            0);
  std::vector<VolumeEntry> listed;
  uint64_t next = 0;
  while (next < 16) {
    std::vector<VolumeEntry> page = pool->ListVolumes(next, 3, &next);
    ASSERT_FALSE(page.empty()) << "a page of nothing before the end";
    listed.insert(listed.end(), page.begin(), page.end());
  }
  ASSERT_EQ(listed.size(), 8u);
  for (uint64_t k = 0; k < 8; ++k) {
    EXPECT_EQ(listed[k].index, k);
    if (k < 5) {
      EXPECT_EQ(listed[k].status, VolumeStatus::kEmpty) << k;
      continue;
    }
    EXPECT_EQ(listed[k].status, VolumeStatus::kCorrupt) << k;
    EXPECT_THAT(listed[k].corruption,
                ::testing::StartsWith("header cannot be read: "))
        << k;
    EXPECT_THAT(listed[k].corruption, HasSubstr("past the end")) << k;
  }
}

TEST(NamedPoolTest, RemoveGivesTheMemoryBackAndReturnsIndexAndInfo) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "a").ok());
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "b").ok());
  // The stack is LIFO: "b" (index 2, added last) is on top, then 0.
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(2);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 2u);
  EXPECT_EQ((*removed)[0].index, 0u);  // sorted by index
  EXPECT_EQ((*removed)[0].info, "a");
  EXPECT_EQ((*removed)[1].index, 2u);
  EXPECT_EQ((*removed)[1].info, "b");
  EXPECT_EQ(*pool->AllocatedBytes(), kVolumeBytes);
  // Up to `count`: asking for more than there are removes what is there.
  removed = pool->RemoveVolumes(5);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ((*removed)[0].index, 1u);
  EXPECT_EQ(*pool->AllocatedBytes(), 0u);
  EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
  // Freed indices are reused.
  EXPECT_EQ(*pool->AddVolumes(1, std::nullopt, ""), (std::vector<uint64_t>{0}));
}

TEST(NamedPoolTest, RemoveWithNothingEmptyIsFailedPrecondition) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  const absl::Status none = pool->RemoveVolumes(1).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(none.message(),
            "pool 'main' has no volumes (0 of 16 mapped); add some first");
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "").ok());
  auto join = NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kSuccess);
  // The owner's own join hands out no address: it maps no volume.
  VolumeHeader* owners = nullptr;
  EXPECT_EQ(pool->pool().Acquire(&owners), PoolError::kInvalid);
  EXPECT_EQ(owners, nullptr);
  const absl::Status s = pool->RemoveVolumes(1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("no empty volume to remove (1 mapped, 1 in use)"));
  EXPECT_EQ(pool->RemoveVolumes(0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

struct BadAdd {
  const char* name;
  uint64_t count;
  std::optional<uint64_t> first_index;
  size_t info_bytes;
  absl::StatusCode code;
  const char* message_part;  // the key facts, as a person reads them
};

class NamedPoolBadAddTest : public ::testing::TestWithParam<BadAdd> {};

TEST_P(NamedPoolBadAddTest, IsRejectedWithTheSpecificCodeAndChangesNothing) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(pool->AddVolumes(4, 4, "existing").ok());  // 4..7
  const Observed before = Observe(*pool);
  const BadAdd& c = GetParam();
  const absl::Status s =
      pool->AddVolumes(c.count, c.first_index, std::string(c.info_bytes, 'i'))
          .status();
  EXPECT_EQ(s.code(), c.code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(c.message_part));
  EXPECT_EQ(Observe(*pool), before);
  ASSERT_TRUE(pool->Verify().ok());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, NamedPoolBadAddTest,
    ::testing::Values(
        BadAdd{"ZeroCount", 0, std::nullopt, 0,
               absl::StatusCode::kInvalidArgument, "count must be at least 1"},
        BadAdd{"InfoTooLong", 1, std::nullopt, 481,
               absl::StatusCode::kInvalidArgument, "info is 481 bytes"},
        BadAdd{"RangeBeyondMax", 2, 15, 0, absl::StatusCode::kOutOfRange,
               "indices [15, 17) go beyond max_volumes 16"},
        BadAdd{"FirstIndexBeyondMax", 1, 16, 0, absl::StatusCode::kOutOfRange,
               "first_index 16 is not below max_volumes 16"},
        // Neither first_index + count wraps in the message.
        BadAdd{"HugeFirstIndex", 1, ~0ull, 0, absl::StatusCode::kOutOfRange,
               "first_index 18446744073709551615 is not below max_volumes 16"},
        BadAdd{"HugeCountOverflows", ~0ull, 1, 0, absl::StatusCode::kOutOfRange,
               "18446744073709551615 volumes from first_index 1 go beyond "
               "max_volumes 16"},
        BadAdd{"OverlapsMappedVolumes", 3, 2, 0,
               absl::StatusCode::kAlreadyExists, "index 4 already holds"},
        BadAdd{"InsideMappedVolumes", 1, 5, 0, absl::StatusCode::kAlreadyExists,
               "index 5 already holds"},
        BadAdd{"MoreThanTheRoomLeft", 13, std::nullopt, 0,
               absl::StatusCode::kResourceExhausted,
               "room for 12 more volumes of max_volumes 16, asked for 13"},
        // Refused before any slot is claimed (claiming every free one to
        // give them back would make concurrent adds fail meanwhile).
        BadAdd{"MoreThanMaxVolumes", 17, std::nullopt, 0,
               absl::StatusCode::kResourceExhausted,
               "holds at most max_volumes 16 volumes, asked for 17"}),
    [](const auto& info) { return std::string(info.param.name); });

// AddAtOddIndices adds volumes "before" at 1, 3 and 5, so that the next
// batch's lowest free indices (0, 2, 4, 6, 7, ...) are not one run.
void AddAtOddIndices(NamedPool& pool) {
  for (uint64_t i : {1, 3, 5}) {
    ASSERT_TRUE(pool.AddVolumes(1, i, "before").ok()) << i;
  }
}

TEST(NamedPoolTest, AllocationFailureMidBatchRollsBackTheWholeBatch) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  auto pool = OpenWithFaults(dir, control);
  AddAtOddIndices(*pool);
  const Observed before = Observe(*pool);
  // The next batch of 5 takes 0, 2, 4, 6, 7: runs [0], [2], [4], [6, 7],
  // one allocation each. Fail the 3rd, after two runs succeeded.
  control->fail_allocate_in = 3;
  const absl::Status s = pool->AddVolumes(5, std::nullopt, "batch").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("tmpfs"), std::string::npos) << s;
  // Every page the batch took, the failing run's included, is back.
  EXPECT_EQ(Observe(*pool), before);
  EXPECT_EQ(*pool->AllocatedBytes(), 3 * kVolumeBytes);
  // The claimed indices are free again.
  EXPECT_EQ(*pool->AddVolumes(5, std::nullopt, ""),
            (std::vector<uint64_t>{0, 2, 4, 6, 7}));
}

TEST(NamedPoolTest, HeaderWriteFailureMidBatchRollsBackTheWholeBatch) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  auto pool = OpenWithFaults(dir, control);
  AddAtOddIndices(*pool);
  const Observed before = Observe(*pool);
  // An I/O error writing the 3rd header (volume 4) of 0, 2, 4, 6, 7, whose
  // memory is all taken by then.
  control->fail_write_in = 3;
  const absl::Status s = pool->AddVolumes(5, std::nullopt, "batch").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_NE(s.message().find("header of volume 4"), std::string::npos) << s;
  EXPECT_NE(s.message().find("rolled back"), std::string::npos) << s;
  EXPECT_EQ(Observe(*pool), before);
  EXPECT_EQ(*pool->AllocatedBytes(), 3 * kVolumeBytes);
  absl::StatusOr<VerifyReport> verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 3u);
  EXPECT_EQ(*pool->AddVolumes(5, std::nullopt, ""),
            (std::vector<uint64_t>{0, 2, 4, 6, 7}));
}

// After the commit the batch is pushed with one CAS. When the top moved
// since the headers were formatted, the push must write the last
// volume's `next` again; if that write fails nothing was pushed, and the
// add is rolled back whole: before, the volumes pushed until then stayed
// in the pool (the caller told nothing of them), the rest stayed PUSHING
// (refused, counted mapped), and after a restart one of them was a MAPPED
// slot that nothing listed or could remove.
TEST(NamedPoolTest, AHeaderWriteFailureAfterTheCommitRollsBackTheWholeBatch) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  std::unique_ptr<NamedPool> data_plane;
  VolumeHeader* held = nullptr;
  bool armed = false;
  NamedPool::OpenOptions options;
  options.wrap_store = [control](std::unique_ptr<VolumeStore> real) {
    return std::make_unique<FaultStore>(std::move(real), control);
  };
  options.step_hook = [&](absl::string_view step) {
    if (step != "add:committed" || !armed) return;
    armed = false;
    // A data-plane Acquire moves the top, so the push must write the
    // `next` of the batch's last volume again: that write fails.
    ASSERT_EQ(data_plane->pool().Acquire(&held), PoolError::kSuccess);
    control->fail_write_in = 1;
  };
  auto pool = OpenOrDie(dir.path(), SmallConfig(), std::move(options));
  ASSERT_NE(pool, nullptr);
  AddAtOddIndices(*pool);  // 1, 3, 5
  auto join = NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  data_plane = std::move(*join);
  const Observed before = Observe(*pool);

  armed = true;
  // With a request key: its journal entry, committed with the batch, is
  // uncommitted and forgotten with it.
  const absl::Status s =
      pool->AddVolumes(5, std::nullopt, "batch", RequestKey{1, 2}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("volume 7"))
      << s;  // 0, 2, 4, 6, 7
  EXPECT_THAT(std::string(s.message()), HasSubstr("rolled back")) << s;
  ASSERT_NE(held, nullptr);
  ASSERT_EQ(data_plane->pool().Release(held), PoolError::kSuccess);
  EXPECT_EQ(Observe(*pool), before);
  absl::StatusOr<VerifyReport> verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 3u);

  // And after a restart: recovery finds nothing to undo or redo.
  data_plane.reset();
  pool.reset();
  pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  const RecoveryReport& r = pool->recovery();
  EXPECT_EQ(r.adds_rolled_back, 0u);
  EXPECT_EQ(r.volumes_repushed, 0u);
  EXPECT_EQ(r.volumes_quarantined, 0u);
  EXPECT_EQ(r.volumes_recovered, 3u);
  EXPECT_EQ(r.request_journal.committed, 0u);
  EXPECT_EQ(r.request_journal.resolved_failed, 0u);
  EXPECT_TRUE(pool->TakeRecordedAdds().empty());
  EXPECT_EQ(Observe(*pool), before);
  verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 3u);
  // Its indices are free.
  EXPECT_EQ(*pool->AddVolumes(5, std::nullopt, ""),
            (std::vector<uint64_t>{0, 2, 4, 6, 7}));
}

// A committed volume off the stack whose header is not a volume (magic 0:
// a push that failed marked it so) was never pushed and cannot be:
// recovery frees it. It used to keep it as a MAPPED slot, counted and
// holding memory, which ListVolumes hid (magic 0) and nothing could
// remove or add again.
TEST(NamedPoolTest, RecoveryFreesACommittedVolumeWhoseHeaderIsNotAVolume) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(4, std::nullopt, "kept").ok());  // 0..3
  }
  // Volume 4 as such a push leaves it: its memory taken, a header written
  // but for its magic, its slot PUSHING of a committed batch.
  {
    VolumeHeader header;
    std::memset(static_cast<void*>(&header), 0, sizeof(header));
    header.idx.store(4);
    header.info_sz.store(4);
    std::memcpy(header.info, "lost", 4);
    const int fd =
        open((dir.path() + "/main.volumes").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &header, sizeof(header), 4 * kVolumeBytes),
              static_cast<ssize_t>(sizeof(header)));
    close(fd);
    const uint64_t word = testing::kPushingSlotWord;
    const int meta =
        open((dir.path() + "/main.pool").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(meta, 0);
    ASSERT_EQ(pwrite(meta, &word, sizeof(word),
                     static_cast<off_t>(testing::kSlotTableOffset + 8 * 4)),
              8);
    close(meta);
  }
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().adds_rolled_back, 1u);
  EXPECT_EQ(pool->recovery().volumes_quarantined, 0u);
  EXPECT_EQ(pool->recovery().volumes_recovered, 4u);
  const Observed after = Observe(*pool);
  EXPECT_EQ(after.mapped, 4u);
  EXPECT_EQ(after.indices, (std::vector<uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(after.allocated_bytes, 4 * kVolumeBytes);
  ASSERT_TRUE(pool->Verify().ok());
  EXPECT_EQ(*pool->AddVolumes(1, 4, "again"), (std::vector<uint64_t>{4}));
}

// The owner maps no volume: adds and removes reach the store with
// fallocate, pread and pwrite only, so a remove zaps no page-table entry of
// the server's (docs/ARCHITECTURE.md §9, "Volume memory").
TEST(NamedPoolTest, ABatchTakesOneAllocationPerRunOfIndicesAndNoMapping) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  auto pool = OpenWithFaults(dir, control);
  AddAtOddIndices(*pool);  // 1, 3, 5
  control->allocates = 0;
  control->writes = 0;
  // 0, 2, 4, 6..9: runs [0], [2], [4], [6, 9].
  ASSERT_EQ(*pool->AddVolumes(7, std::nullopt, "batch"),
            (std::vector<uint64_t>{0, 2, 4, 6, 7, 8, 9}));
  EXPECT_EQ(control->allocates.load(), 4);
  // One write per volume: its header is formatted with the `next` its push
  // needs (nothing else moved the top), so the push writes nothing.
  EXPECT_EQ(control->writes.load(), 7);
  EXPECT_EQ(*pool->AllocatedBytes(), 10 * kVolumeBytes);
  // All ten are one run [0, 9]: one punch gives every page back, and the
  // headers are only read (the punch clears them).
  control->deallocates = 0;
  control->writes = 0;
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(10);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->size(), 10u);
  EXPECT_EQ((*removed)[0].info, "batch");
  EXPECT_EQ((*removed)[1].info, "before");
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(control->writes.load(), 0);
  EXPECT_EQ(*pool->AllocatedBytes(), 0u);
  absl::StatusOr<VerifyReport> verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(control->maps.load(), 0);
  EXPECT_EQ(pool->pool().volume0(), nullptr);
}

// A remove whose punch fails still removes (the memory stays taken), and
// leaves no header that reads as a volume: the index can be added again.
TEST(NamedPoolTest, ARemoveWhosePunchFailsLeavesTheIndexFreeToAddAgain) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  auto pool = OpenWithFaults(dir, control);
  ASSERT_EQ(*pool->AddVolumes(2, std::nullopt, "x"),
            (std::vector<uint64_t>{0, 1}));
  control->fail_deallocate_in = 1;
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ((*removed)[0].index, 0u);
  EXPECT_EQ(pool->Summary().volumes_mapped, 1u);
  EXPECT_EQ(*pool->AllocatedBytes(), 2 * kVolumeBytes);  // not given back
  absl::StatusOr<std::vector<uint64_t>> again =
      pool->AddVolumes(1, std::nullopt, "again");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, (std::vector<uint64_t>{0}));
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool->ListVolumes(0, 16, &next);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].info, "again");
  EXPECT_EQ(listed[0].status, VolumeStatus::kEmpty);
}

// A failed punch is counted per volume in volumes_not_given_back and
// reported, with the store's error, to OpenOptions::on_give_back_failed
// (the remove's caller cannot be told: the punch may run on an add's
// thread); a punch that succeeds counts and reports nothing, and the count
// only grows.
TEST(NamedPoolTest, AFailedPunchCountsItsVolumesAsNotGivenBack) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  struct Report {
    uint64_t first, count;
    absl::Status error;
  };
  std::vector<Report> reports;  // this thread's: the removes run here
  NamedPool::OpenOptions options;
  options.wrap_store = [control](std::unique_ptr<VolumeStore> real) {
    return std::make_unique<FaultStore>(std::move(real), control);
  };
  options.on_give_back_failed = [&reports](uint64_t first, uint64_t count,
                                           const absl::Status& error) {
    reports.push_back({first, count, error});
  };
  auto pool = OpenOrDie(dir.path(), SmallConfig(), std::move(options));
  ASSERT_EQ(*pool->AddVolumes(3, std::nullopt, "x"),
            (std::vector<uint64_t>{0, 1, 2}));
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(pool->Summary().volumes_not_given_back, 0u);
  // The other two are one run [1, 2]: one punch, which fails.
  control->deallocates = 0;
  control->fail_deallocate_in = 1;
  removed = pool->RemoveVolumes(2);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 2u);
  EXPECT_EQ(control->deallocates.load(), 1);
  EXPECT_EQ(*pool->AllocatedBytes(), 2 * kVolumeBytes);  // not given back
  EXPECT_EQ(pool->Summary().volumes_not_given_back, 2u);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].first, 1u);
  EXPECT_EQ(reports[0].count, 2u);
  EXPECT_FALSE(reports[0].error.ok());
  // Added again and removed with a punch that succeeds: the memory is
  // back, the count stays what it was.
  ASSERT_EQ(pool->AddVolumes(3, std::nullopt, "y").status().code(),
            absl::StatusCode::kOk);
  removed = pool->RemoveVolumes(3);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*pool->AllocatedBytes(), 0u);
  EXPECT_EQ(pool->Summary().volumes_not_given_back, 2u);
  EXPECT_EQ(reports.size(), 1u);
}

// An owner dies while one add has claimed its slots (ADDING) and another
// has committed its batch (PUSHING) and not pushed it: recovery rolls the
// first back, a PUSHING slot of its batch included (a commit cut short),
// and the second forward. The first's slots are one run of indices, given
// back with one punch. (Recovery used to search the ADDING slots' batches
// once per PUSHING slot, O(ADDING x PUSHING) under the maintenance lock,
// and to punch each volume on its own.)
TEST(NamedPoolTest, RecoveryRollsAnUncommittedAddBackAndACommittedOneForward) {
  TempDir dir;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::atomic<bool> claimed{false};
    std::atomic<int> claims{0};
    NamedPool::OpenOptions options;
    options.step_hook = [&](absl::string_view step) {
      if (step == "add:claimed" && claims.fetch_add(1) == 0) {
        claimed.store(true);
        for (;;) pause();  // the first add stays claimed until we die
      }
      if (step == "add:committed") _exit(0);  // the second add's commit
    };
    absl::StatusOr<std::unique_ptr<NamedPool>> pool =
        NamedPool::Open(dir.path(), SmallConfig(), std::move(options));
    if (!pool.ok()) _exit(1);
    std::thread first(
        [&] { (void)(*pool)->AddVolumes(4, std::nullopt, "a"); });  // 0..3
    while (!claimed.load()) std::this_thread::yield();
    (void)(*pool)->AddVolumes(2, std::nullopt, "b");  // 4, 5
    _exit(2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The first add's commit cut short: slot 1 PUSHING of its batch.
  const std::string meta = dir.path() + "/main.pool";
  uint64_t adding = 0;
  {
    std::ifstream file(meta, std::ios::binary);
    file.seekg(static_cast<std::streamoff>(testing::kSlotTableOffset));
    file.read(reinterpret_cast<char*>(&adding), sizeof(adding));
    ASSERT_TRUE(file.good());
  }
  ASSERT_EQ(adding & 7, testing::kAddingSlotWord) << adding;
  WriteWord(meta, testing::kSlotTableOffset + 8,
            (adding & ~uint64_t{7}) | testing::kPushingSlotWord);

  auto control = std::make_shared<FaultStore::Control>();
  auto pool = OpenWithFaults(dir, control);
  ASSERT_NE(pool, nullptr);
  const RecoveryReport& report = pool->recovery();
  EXPECT_EQ(report.adds_rolled_back, 4u);
  EXPECT_EQ(report.volumes_repushed, 2u);
  EXPECT_EQ(report.volumes_recovered, 2u);
  EXPECT_EQ(report.volumes_unresolved, 0u);
  EXPECT_EQ(control->deallocates.load(), 1) << "one punch for [0, 4)";
  const Observed after = Observe(*pool);
  EXPECT_EQ(after.indices, (std::vector<uint64_t>{4, 5}));
  EXPECT_EQ(after.mapped, 2u);
  EXPECT_EQ(after.empty, 2u);
  EXPECT_EQ(after.allocated_bytes, 2 * kVolumeBytes);
  absl::StatusOr<VerifyReport> verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 2u);
  uint64_t next = 0;
  for (const VolumeEntry& e : pool->ListVolumes(0, 16, &next)) {
    EXPECT_EQ(e.info, "b") << e.index;
  }
  // The rolled-back indices are free again.
  EXPECT_EQ(*pool->AddVolumes(4, std::nullopt, "again"),
            (std::vector<uint64_t>{0, 1, 2, 3}));
}

// Regression: recovery acted on the slots it had read (rolling back an
// add, freeing its index) before it reached a corrupt slot word further on,
// so a quarantined pool was left half recovered rather than as found.
// WriteSlot and ReadSlot write and read the slot word of `index` in the
// metadata object `meta`, as a crash or a corruption would leave it.
void WriteSlot(const std::string& meta, uint64_t index, uint64_t word) {
  const int fd = open(meta.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, &word, sizeof(word),
                   static_cast<off_t>(testing::kSlotTableOffset + 8 * index)),
            8);
  close(fd);
}
uint64_t ReadSlot(const std::string& meta, uint64_t index) {
  uint64_t word = 0;
  const int fd = open(meta.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(pread(fd, &word, sizeof(word),
                  static_cast<off_t>(testing::kSlotTableOffset + 8 * index)),
            8);
  close(fd);
  return word;
}

TEST(NamedPoolTest, RecoveryJudgesTheWholeSlotTableBeforeActing) {
  TempDir dir;
  { ASSERT_NE(OpenOrDie(dir.path(), SmallConfig()), nullptr); }
  const std::string meta = dir.path() + "/main.pool";
  WriteSlot(meta, 3, testing::kAddingSlotWord);  // an add in flight
  WriteSlot(meta, 9, testing::kInvalidSlotWord);
  absl::StatusOr<std::unique_ptr<NamedPool>> pool =
      NamedPool::Open(dir.path(), SmallConfig());
  ASSERT_EQ(pool.status().code(), absl::StatusCode::kDataLoss) << pool.status();
  EXPECT_NE(pool.status().message().find("slot 9"), std::string::npos)
      << pool.status();
  EXPECT_EQ(ReadSlot(meta, 3), testing::kAddingSlotWord) << "recovery acted";
  EXPECT_EQ(ReadSlot(meta, 9), testing::kInvalidSlotWord);
}

// An owner that dies in the middle of committing a batch (its slots turn
// from ADDING to PUSHING one by one) leaves a batch of both: recovery
// rolls the whole batch back, since a slot still ADDING says the commit
// did not finish; rolling the PUSHING part forward would add half a batch.
// DieAtStep opens pool "main" (SmallConfig) in `dir` as its owner in a
// forked child, which calls `work` on it and dies (_exit) at step `step`,
// as an owner killed there. Fails the test unless the child got there.
void DieAtStep(const std::string& dir, absl::string_view step,
               void (*work)(NamedPool& pool)) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    NamedPool::OpenOptions options;
    options.step_hook = [step](absl::string_view at) {
      if (at == step) _exit(0);
    };
    absl::StatusOr<std::unique_ptr<NamedPool>> pool =
        NamedPool::Open(dir, SmallConfig(), std::move(options));
    if (pool.ok()) work(**pool);
    _exit(1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the owner did not reach " << step;
}

TEST(NamedPoolTest, RecoveryRollsBackABatchItsOwnerDiedCommitting) {
  TempDir dir;
  const std::string meta = dir.path() + "/main.pool";
  { ASSERT_NE(OpenOrDie(dir.path(), SmallConfig()), nullptr); }
  // Dies with both volumes formatted and both slots ADDING.
  ASSERT_NO_FATAL_FAILURE(DieAtStep(
      dir.path(), "add:formatted",
      [](NamedPool& pool) { (void)pool.AddVolumes(2, std::nullopt, "half"); }));
  // The commit reached slot 1 only: its state (the low 3 bits) PUSHING.
  constexpr uint64_t kStateMask = testing::kInvalidSlotWord;
  const uint64_t adding = ReadSlot(meta, 1);
  ASSERT_EQ(adding & kStateMask, testing::kAddingSlotWord);
  ASSERT_EQ(ReadSlot(meta, 0), adding) << "one batch";
  WriteSlot(meta, 1, (adding & ~kStateMask) | testing::kPushingSlotWord);

  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().adds_rolled_back, 2u);
  EXPECT_EQ(pool->recovery().volumes_repushed, 0u);
  EXPECT_EQ(pool->Summary().volumes_mapped, 0u);
  EXPECT_EQ(ReadSlot(meta, 0), 0u);
  EXPECT_EQ(ReadSlot(meta, 1), 0u);
  absl::StatusOr<VerifyReport> verified = pool->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 0u);
}

TEST(NamedPoolTest, FileBackingKeepsVolumesInTheNamedFile) {
  TempDir dir("/tmp");  // a regular (non-tmpfs) filesystem, usually
  PoolConfig config = SmallConfig();
  config.backing = *ParseBacking("file:" + dir.path() + "/store.bin");
  auto pool = OpenOrDie(dir.path() + "/data", config);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->Summary().backing_in_use, BackingKind::kFile);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "on disk").ok());
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/store.bin").c_str(), &st), 0);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 2 * kVolumeBytes);
  ASSERT_TRUE(pool->RemoveVolumes(2).ok());
  EXPECT_EQ(*pool->AllocatedBytes(), 0u);
}

TEST(NamedPoolTest, ANewPoolDoesNotTakeAFileStoreAnotherOwnerHolds) {
  TempDir dir;
  PoolConfig config = SmallConfig();
  config.backing = *ParseBacking("file:" + dir.path() + "/store.bin");
  auto first = OpenOrDie(dir.path() + "/one", config);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->AddVolumes(2, std::nullopt, "first").ok());
  const Observed before = Observe(*first);
  // Another data directory's pool configured with the same file: its
  // creation would cut the store to 0.
  const absl::Status s = NamedPool::Open(dir.path() + "/two", config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_THAT(s.message(), HasSubstr(dir.path() + "/store.bin"));
  EXPECT_EQ(Observe(*first), before);
  EXPECT_TRUE(first->Verify().ok());
}

TEST(NamedPoolTest, AutoFallsBackToNormalWhenNoHugepagesAreFree) {
  TempDir dir;
  // A host with 2 MiB pages but none free, and no 1 GiB pages.
  const std::string sys = dir.path() + "/sys";
  std::filesystem::create_directories(sys + "/hugepages-2048kB");
  std::ofstream(sys + "/hugepages-2048kB/nr_hugepages") << "0\n";
  std::ofstream(sys + "/hugepages-2048kB/free_hugepages") << "0\n";
  NamedPool::OpenOptions options;
  options.host = HostMemory(dir.path() + "/mounts", sys);
  PoolConfig config = SmallConfig();
  config.backing.kind = BackingKind::kAuto;
  config.volume_size_bytes = kHugePageBytes;
  auto pool = OpenOrDie(dir.path() + "/data", config, options);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->Summary().backing_in_use, BackingKind::kNormal);
  EXPECT_EQ(pool->Summary().backing_requested.kind, BackingKind::kAuto);
}

TEST(NamedPoolTest, ExplicitBackingTheHostLacksSaysHowToFixIt) {
  TempDir dir;
  NamedPool::OpenOptions options;
  options.host = HostMemory(dir.path() + "/mounts", dir.path() + "/sys");
  PoolConfig config = SmallConfig();
  config.backing.kind = BackingKind::kGigantic;
  config.volume_size_bytes = kGiganticPageBytes;
  const absl::Status s =
      NamedPool::Open(dir.path() + "/data", config, options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("hugepages-1048576kB"), std::string::npos) << s;
  config.backing.kind = BackingKind::kHuge;
  config.volume_size_bytes = 4096;
  std::filesystem::create_directories(dir.path() + "/sys/hugepages-2048kB");
  std::ofstream(dir.path() + "/sys/hugepages-2048kB/nr_hugepages") << "4\n";
  const absl::Status size =
      NamedPool::Open(dir.path() + "/data", config, options).status();
  EXPECT_EQ(size.code(), absl::StatusCode::kInvalidArgument) << size;
  EXPECT_NE(size.message().find("not a multiple of the 2 MiB page"),
            std::string::npos)
      << size;
}

// ---- Persistence and joins ------------------------------------------------

TEST(NamedPoolTest, APoolSurvivesCloseAndReopenWithItsVolumes) {
  TempDir dir;
  VolumeHeader* held = nullptr;
  std::unique_ptr<NamedPool> data_plane;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_TRUE(pool->AddVolumes(3, std::nullopt, "persist").ok());
    ASSERT_TRUE(pool->AddVolumes(1, 9, "nine").ok());
    absl::StatusOr<std::unique_ptr<NamedPool>> join =
        NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    data_plane = std::move(*join);
    ASSERT_EQ(data_plane->pool().Acquire(&held), PoolError::kSuccess);
    std::memcpy(VolumeData(held), "payload", 8);
  }  // the owner goes away; the data-plane join stays
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  const RecoveryReport& r = pool->recovery();
  EXPECT_FALSE(r.created);
  EXPECT_EQ(r.volumes_recovered, 4u);
  EXPECT_EQ(r.adds_rolled_back, 0u);
  EXPECT_EQ(r.volumes_unresolved, 0u);
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = pool->ListVolumes(0, 100, &next);
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].status, VolumeStatus::kEmpty);
  EXPECT_EQ(listed[0].info, "persist");
  // Volume 9, added last, was on top: the data-plane process holds it.
  EXPECT_EQ(listed[3].index, 9u);
  EXPECT_EQ(listed[3].status, VolumeStatus::kInUse);
  EXPECT_EQ(listed[3].info, "nine");
  // The data-plane process kept its volume and its data.
  EXPECT_EQ(std::memcmp(VolumeData(held), "payload", 8), 0);
  EXPECT_EQ(data_plane->pool().Release(held), PoolError::kSuccess);
  EXPECT_EQ(pool->Verify()->empty_volumes, 4u);
  EXPECT_EQ(pool->Summary().volumes_empty, 4u);
}

// ---- The request journal
// -------------------------------------------------------

std::string JournalPath(const TempDir& dir, const std::string& name = "main") {
  return dir.path() + "/" + name + ".requests";
}

// Adds with keys survive the owner: the next Open lists them, committed
// ones only, oldest first, with their arguments and indices; adds without
// a key and failed adds are not listed.
TEST(RequestJournalTest, AddsWithKeysAreListedByTheNextOpen) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    EXPECT_TRUE(pool->recovery().request_journal.created);
    EXPECT_TRUE(pool->TakeRecordedAdds().empty());
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "a", RequestKey{1, 1}).ok());
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "no key").ok());
    ASSERT_TRUE(pool->AddVolumes(2, 8, "b", RequestKey{2, 2}).ok());
    // Fails (index 8 is taken) after claiming nothing: never recorded.
    EXPECT_EQ(pool->AddVolumes(1, 8, "c", RequestKey{3, 3}).status().code(),
              absl::StatusCode::kAlreadyExists);
  }
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  const RequestJournal::OpenReport& report = pool->recovery().request_journal;
  EXPECT_FALSE(report.created);
  EXPECT_EQ(report.reset_reason, "");
  EXPECT_EQ(report.committed, 2u);
  const std::vector<RecordedAdd> recorded = pool->TakeRecordedAdds();
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[0].key, (RequestKey{1, 1}));
  EXPECT_EQ(recorded[0].count, 2u);
  EXPECT_FALSE(recorded[0].first_index.has_value());
  EXPECT_EQ(recorded[0].info, "a");
  EXPECT_EQ(recorded[0].indices, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(recorded[1].key, (RequestKey{2, 2}));
  EXPECT_EQ(recorded[1].first_index, std::optional<uint64_t>(8));
  EXPECT_EQ(recorded[1].info, "b");
  EXPECT_EQ(recorded[1].indices, (std::vector<uint64_t>{8, 9}));
  EXPECT_LT(recorded[0].batch, recorded[1].batch);
  EXPECT_TRUE(pool->TakeRecordedAdds().empty());  // handed out once
}

// The journal holds the last RequestJournal::kEntries adds with keys: a
// newer add reuses the oldest one's entry, and the others are kept.
TEST(RequestJournalTest, ANewAddReusesTheOldestEntry) {
  TempDir dir;
  PoolConfig config = SmallConfig("main", 2 * RequestJournal::kEntries);
  config.volume_size_bytes = 4096;
  const uint64_t adds = RequestJournal::kEntries + 2;
  {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    for (uint64_t k = 0; k < adds; ++k) {
      ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "", RequestKey{0, k}).ok())
          << k;
    }
  }
  // Twice: a reopened journal goes on in ring order where the last one
  // stopped.
  for (uint64_t round = 0; round < 2; ++round) {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    const std::vector<RecordedAdd> recorded = pool->TakeRecordedAdds();
    ASSERT_EQ(recorded.size(), RequestJournal::kEntries);
    const uint64_t oldest = 2 + round;
    for (uint64_t k = 0; k < recorded.size(); ++k) {
      EXPECT_EQ(recorded[k].key, (RequestKey{0, oldest + k}));
      EXPECT_EQ(recorded[k].indices, (std::vector<uint64_t>{oldest + k}));
    }
    if (round == 0) {
      ASSERT_TRUE(
          pool->AddVolumes(1, std::nullopt, "", RequestKey{0, adds}).ok());
    }
  }
}

// Adds take their batch when they start and their journal entry when they
// commit, so an add slow to allocate (x) takes the entry after that of an
// add with a later batch (y). A reopened journal must go on after the entry
// taken last, not after the newest batch's: there the next add (z) reused
// x's entry, the add recorded last, while 1,021 entries were free, and a
// repeat of x after one more restart added it again.
TEST(RequestJournalTest, AReopenedJournalGoesOnAfterTheEntryTakenLast) {
  TempDir dir;
  const RequestKey x{1, 1}, y{2, 2}, z{3, 3};
  {
    testing::Stall stall;  // parks the first add to pass add:claimed: x
    NamedPool::OpenOptions options;
    options.step_hook = [&stall](absl::string_view step) {
      if (step == "add:claimed") testing::Stall::Hook(&stall);
    };
    auto pool = OpenOrDie(dir.path(), SmallConfig(), std::move(options));
    ASSERT_NE(pool, nullptr);
    std::thread slow(
        [&] { EXPECT_TRUE(pool->AddVolumes(1, std::nullopt, "x", x).ok()); });
    stall.WaitUntilStalled();  // x has its batch, not yet its entry
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "y", y).ok());
    stall.Resume();
    slow.join();
  }
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    ASSERT_EQ(pool->TakeRecordedAdds().size(), 2u);
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "z", z).ok());
  }
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  std::vector<RequestKey> listed;
  for (const RecordedAdd& add : pool->TakeRecordedAdds()) {
    listed.push_back(add.key);
  }
  EXPECT_EQ(listed, (std::vector<RequestKey>{x, y, z}))
      << "the journal lost an add it had room for";
}

// A re-created pool is a new pool: the keys of the one it replaced named
// volumes that are gone, so its journal is emptied, and says why.
TEST(RequestJournalTest, ARecreatedPoolForgetsTheKeysOfTheOldOne) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "", RequestKey{7, 7}).ok());
  }
  NamedPool::OpenOptions recreate;
  recreate.recreate = true;
  auto pool = OpenOrDie(dir.path(), SmallConfig("main", 32), recreate);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  EXPECT_THAT(pool->recovery().request_journal.reset_reason,
              HasSubstr("earlier pool of this name"));
  EXPECT_TRUE(pool->TakeRecordedAdds().empty());
}

// A journal that is not one (damaged, cut short, of another build) is
// emptied, never trusted; an entry that is no add's is dropped, the
// others kept.
// AddTwoKeyedVolumes opens a pool in `dir` and adds one volume with key
// {1, 0}, then one with key {2, 0} (journal entries 0 and 1).
void AddTwoKeyedVolumes(const TempDir& dir) {
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "", RequestKey{1, 0}).ok());
  ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "", RequestKey{2, 0}).ok());
}

// ExpectTheFirstEntryDropped opens AddTwoKeyedVolumes's pool again and
// checks that its journal dropped the first add's entry as invalid and
// lists the second add only.
void ExpectTheFirstEntryDropped(const TempDir& dir) {
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().request_journal.dropped_invalid, 1u);
  const std::vector<RecordedAdd> recorded = pool->TakeRecordedAdds();
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(recorded[0].key, (RequestKey{2, 0}));
}

TEST(RequestJournalTest, ADamagedJournalIsEmptiedAndABadEntryDropped) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(AddTwoKeyedVolumes(dir));
  // The first add's entry (the first of a new journal) claims 5000
  // volumes: no add's.
  WriteWord(JournalPath(dir),
            testing::kJournalEntryOffset + testing::kJournalEntryCountOffset,
            5000);
  ASSERT_NO_FATAL_FAILURE(ExpectTheFirstEntryDropped(dir));
  WriteWord(JournalPath(dir), 0, 0x1234);  // the magic
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    EXPECT_THAT(pool->recovery().request_journal.reset_reason,
                HasSubstr("not a journal"));
    EXPECT_TRUE(pool->TakeRecordedAdds().empty());
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "", RequestKey{3, 0}).ok());
  }
  ASSERT_EQ(truncate(JournalPath(dir).c_str(), 8192), 0);
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_THAT(pool->recovery().request_journal.reset_reason,
              HasSubstr("8192 bytes"));
  EXPECT_TRUE(pool->TakeRecordedAdds().empty());
  // The pool itself is untouched by all this.
  EXPECT_EQ(pool->Summary().volumes_mapped, 3u);
}

// An entry whose batch the pool never handed out (a host crash kept a
// newer page of the journal than of the metadata) records an add the pool
// never made: the owner's Open drops it (it gives the journal the pool's
// next batch).
TEST(RequestJournalTest, AnEntryOfABatchThePoolNeverMadeIsDropped) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(AddTwoKeyedVolumes(dir));
  // The first entry: COMMITTED (3) of batch 1,000,000.
  WriteWord(JournalPath(dir), testing::kJournalEntryOffset,
            3 | uint64_t{1'000'000} << 2);
  ASSERT_NO_FATAL_FAILURE(ExpectTheFirstEntryDropped(dir));
}

// A pool whose metadata and store an operator removed, leaving its
// journal, is a new pool when made again: it keeps none of the old pool's
// keys. On a disk file system the new metadata object often gets the old
// one's inode number, so the journal is tied to a random pool id instead.
TEST(RequestJournalTest, APoolRemovedAndMadeAgainForgetsTheOldPoolsKeys) {
  TempDir dir("/tmp");  // a disk file system here, which reuses inodes
  PoolConfig config = SmallConfig();
  config.backing.kind = BackingKind::kFile;
  config.backing.file_path = dir.path() + "/store";
  {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(3, std::nullopt, "", RequestKey{7, 7}).ok());
  }
  ASSERT_EQ(unlink((dir.path() + "/main.pool").c_str()), 0);
  ASSERT_EQ(unlink(config.backing.file_path.c_str()), 0);
  auto pool = OpenOrDie(dir.path(), config);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->recovery().created);
  EXPECT_THAT(pool->recovery().request_journal.reset_reason,
              HasSubstr("earlier pool of this name"));
  EXPECT_TRUE(pool->TakeRecordedAdds().empty());
}

// A journal that cannot be opened (here a directory stands at its path)
// does not keep the pool from being served: the pool says why, and its
// adds with keys go on, remembered in memory only.
TEST(RequestJournalTest, APoolWhoseJournalCannotBeOpenedIsServedWithoutOne) {
  TempDir dir;
  ASSERT_EQ(mkdir(JournalPath(dir).c_str(), 0700), 0);
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_THAT(pool->recovery().request_journal_error,
              HasSubstr("main.requests"));
  EXPECT_EQ(pool->AddVolumes(1, std::nullopt, "", RequestKey{1, 1})->size(),
            1u);
  pool.reset();
  pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->TakeRecordedAdds().empty());
  EXPECT_EQ(pool->Summary().volumes_mapped, 1u);
}

TEST(RequestJournalTest, AnAddWithAKeyOfMoreThanAnEntryHoldsIsRefused) {
  TempDir dir;
  auto pool = OpenOrDie(
      dir.path(), SmallConfig("main", RequestJournal::kMaxVolumesPerAdd + 1));
  ASSERT_NE(pool, nullptr);
  const Observed before = Observe(*pool);
  const absl::Status s = pool->AddVolumes(RequestJournal::kMaxVolumesPerAdd + 1,
                                          std::nullopt, "", RequestKey{1, 1})
                             .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("at most 1024 volumes"));
  EXPECT_EQ(Observe(*pool), before);
}

// Adds with keys from several threads at once each get an entry of their
// own: every one is listed after a reopen with the indices it returned.
TEST(RequestJournalTest, ConcurrentAddsWithKeysAreEachRecorded) {
  TempDir dir;
  PoolConfig config = SmallConfig("main", 512);
  config.volume_size_bytes = 4096;
  constexpr uint64_t kThreads = 4;
  constexpr uint64_t kAddsPerThread = 40;
  std::vector<std::vector<uint64_t>> returned(kThreads * kAddsPerThread);
  {
    auto pool = OpenOrDie(dir.path(), config);
    ASSERT_NE(pool, nullptr);
    std::vector<std::thread> threads;
    for (uint64_t t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (uint64_t k = 0; k < kAddsPerThread; ++k) {
          const uint64_t n = t * kAddsPerThread + k;
          absl::StatusOr<std::vector<uint64_t>> added =
              pool->AddVolumes(1 + n % 3, std::nullopt, "", RequestKey{t, k});
          EXPECT_TRUE(added.ok()) << added.status();
          if (added.ok()) returned[n] = *added;
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }
  auto pool = OpenOrDie(dir.path(), config);
  ASSERT_NE(pool, nullptr);
  const std::vector<RecordedAdd> recorded = pool->TakeRecordedAdds();
  ASSERT_EQ(recorded.size(), kThreads * kAddsPerThread);
  for (const RecordedAdd& add : recorded) {
    const uint64_t n = add.key.high * kAddsPerThread + add.key.low;
    ASSERT_LT(n, returned.size());
    EXPECT_EQ(add.indices, returned[n]) << n;
    EXPECT_EQ(add.count, 1 + n % 3);
  }
}

// --recreate with data-plane joins still running (here: of another
// max_volumes) builds the new pool beside the old one, as for a lost store:
// new metadata and a new store file, even at the same path. The old joins
// keep the old pair; nothing they do reaches the new pool.
// ExpectTheNewPoolJoined checks pool "main" in `dir` after a re-creation
// whose new pool `owner` serves with `empty` volumes carrying "new": its
// stack verifies with that many, and a join made now takes a "new" one.
void ExpectTheNewPoolJoined(const std::string& dir, const NamedPool& owner,
                            uint64_t empty) {
  absl::StatusOr<VerifyReport> verified = owner.Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, empty);
  absl::StatusOr<std::unique_ptr<NamedPool>> fresh =
      NamedPool::Join(dir, "main");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*fresh)->pool().Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(VolumeInfo(*v), "new");
  EXPECT_EQ((*fresh)->pool().Release(v), PoolError::kSuccess);
}

TEST(NamedPoolTest, AJoinAcrossARecreationCannotReachTheNewPool) {
  TempDir dir;
  const std::string store = dir.path() + "/main.volumes";
  std::unique_ptr<NamedPool> plane;
  VolumeHeader* held = nullptr;
  struct stat old_store {};
  {
    auto owner = OpenOrDie(dir.path(), SmallConfig("main", 64));
    ASSERT_NE(owner, nullptr);
    ASSERT_TRUE(owner->AddVolumes(8, std::nullopt, "old").ok());
    absl::StatusOr<std::unique_ptr<NamedPool>> join =
        NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    plane = std::move(*join);
    ASSERT_EQ(plane->pool().Acquire(&held), PoolError::kSuccess);
    ASSERT_EQ(stat(store.c_str(), &old_store), 0);
  }
  NamedPool::OpenOptions recreate;
  recreate.recreate = true;
  auto owner = OpenOrDie(dir.path(), SmallConfig("main", 16), recreate);
  ASSERT_NE(owner, nullptr);
  EXPECT_TRUE(owner->recovery().created);
  struct stat new_store {};
  ASSERT_EQ(stat(store.c_str(), &new_store), 0);
  EXPECT_NE(new_store.st_ino, old_store.st_ino) << "the store was reused";
  ASSERT_TRUE(owner->AddVolumes(8, std::nullopt, "new").ok());

  // The old join works its old pool: it releases what it held and takes
  // the old volumes, "old" every one, never one of the new pool.
  EXPECT_EQ(plane->pool().Release(held), PoolError::kSuccess);
  std::vector<VolumeHeader*> taken;
  VolumeHeader* v = nullptr;
  while (plane->pool().Acquire(&v) == PoolError::kSuccess) taken.push_back(v);
  EXPECT_EQ(taken.size(), 8u);
  for (VolumeHeader* t : taken) EXPECT_EQ(VolumeInfo(*t), "old");
  for (VolumeHeader* t : taken) {
    EXPECT_EQ(plane->pool().Release(t), PoolError::kSuccess);
  }
  // The new pool is untouched: eight "new" volumes, and a sound stack.
  ExpectTheNewPoolJoined(dir.path(), *owner, 8);
  // And it reopens as any pool does.
  owner.reset();
  owner = OpenOrDie(dir.path(), SmallConfig("main", 16));
  ASSERT_NE(owner, nullptr);
  EXPECT_EQ(owner->recovery().volumes_recovered, 8u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/main.pool.new"));
}

TEST(NamedPoolTest, AJoinHoldingAVolumeAcrossALostStoreCannotReachTheNewPool) {
  TempDir dir;
  std::unique_ptr<NamedPool> plane;
  VolumeHeader* held = nullptr;
  {
    auto owner = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_TRUE(owner->AddVolumes(1, std::nullopt, "old").ok());  // 0
    absl::StatusOr<std::unique_ptr<NamedPool>> join =
        NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    plane = std::move(*join);
    ASSERT_EQ(plane->pool().Acquire(&held), PoolError::kSuccess);
  }
  // The store goes (as a cleared /dev/shm, or a memfd with its owner); the
  // data plane's mapping keeps its memory alive.
  ASSERT_TRUE(std::filesystem::remove(dir.path() + "/main.volumes"));
  auto owner = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(owner, nullptr);
  EXPECT_TRUE(owner->recovery().store_lost);
  EXPECT_EQ(owner->Summary().volumes_mapped, 0u);

  // The data plane releases the volume it held: into the old pool, which
  // it still joins, not into the new one.
  EXPECT_EQ(plane->pool().Release(held), PoolError::kSuccess);
  absl::StatusOr<VerifyReport> verified = owner->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 0u);
  // The owner's next add takes index 0 again: pushed once, no cycle.
  absl::StatusOr<std::vector<uint64_t>> added =
      owner->AddVolumes(1, std::nullopt, "new");
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(*added, std::vector<uint64_t>{0});
  verified = owner->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 1u);
  // A join made now sees the new pool: one volume, "new", then empty.
  absl::StatusOr<std::unique_ptr<NamedPool>> fresh =
      NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  VolumeHeader* a = nullptr;
  VolumeHeader* b = nullptr;
  ASSERT_EQ((*fresh)->pool().Acquire(&a), PoolError::kSuccess);
  EXPECT_EQ(VolumeInfo(*a), "new");
  EXPECT_EQ((*fresh)->pool().Acquire(&b), PoolError::kEmpty);
  EXPECT_EQ((*fresh)->pool().Release(a), PoolError::kSuccess);
  // The old join keeps a pool of its own: its volume, and nothing of the
  // new one.
  ASSERT_EQ(plane->pool().Acquire(&a), PoolError::kSuccess);
  EXPECT_EQ(a, held);
  EXPECT_EQ(VolumeInfo(*a), "old");
  EXPECT_EQ(plane->pool().Acquire(&b), PoolError::kEmpty);
  EXPECT_EQ(plane->pool().Release(a), PoolError::kSuccess);
  EXPECT_TRUE(owner->Verify().ok());
  // The new pool survives its owner's restart as any pool does.
  owner.reset();
  owner = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(owner, nullptr);
  EXPECT_FALSE(owner->recovery().store_lost);
  EXPECT_EQ(owner->recovery().volumes_recovered, 1u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/main.pool.new"));
}

// A join opens the metadata object at DIR/NAME.pool, then the store that
// metadata names. A re-creation (--recreate, or a lost store replaced)
// unlinks the store at DIR/NAME.volumes, makes the new pool's store at that
// same path, then renames the new metadata over the old. A join that opened
// the old metadata before the rename and the store after the new one was
// made paired the old pool's stack with the new pool's volumes: its Acquire
// took the new pool's volume 0, which the new pool hands out too. Stood for
// here, deterministically, by a hard link that keeps the old metadata object
// where a join finds it, as it is found in that window.
TEST(NamedPoolTest,
     AJoinRacingARecreationNeverPairsTheOldStackWithTheNewStore) {
  TempDir dir;
  const std::string window = dir.path() + "/window";
  ASSERT_EQ(mkdir(window.c_str(), 0700), 0);
  {
    auto owner = OpenOrDie(dir.path(), SmallConfig("main", 16));
    ASSERT_NE(owner, nullptr);
    ASSERT_TRUE(owner->AddVolumes(4, std::nullopt, "old").ok());
  }
  ASSERT_EQ(link((dir.path() + "/main.pool").c_str(),
                 (window + "/main.pool").c_str()),
            0);
  NamedPool::OpenOptions recreate;
  recreate.recreate = true;
  auto owner = OpenOrDie(dir.path(), SmallConfig("main", 32), recreate);
  ASSERT_NE(owner, nullptr);
  ASSERT_TRUE(owner->recovery().created);
  ASSERT_EQ(owner->StorePath(), dir.path() + "/main.volumes");
  ASSERT_TRUE(owner->AddVolumes(4, std::nullopt, "new").ok());
  const Observed before = Observe(*owner);

  absl::StatusOr<std::unique_ptr<NamedPool>> late =
      NamedPool::Join(window, "main");
  if (late.ok()) {
    VolumeHeader* v = nullptr;
    const PoolError e = (*late)->pool().Acquire(&v);
    ADD_FAILURE() << "the join paired the old metadata with the new store: "
                     "its Acquire returned "
                  << PoolErrorName(e) << " and volume "
                  << (v != nullptr ? (*late)->pool().IndexOf(v) : kNullIndex)
                  << " carrying '" << (v != nullptr ? VolumeInfo(*v) : "")
                  << "', a volume of the new pool, which hands it out too";
    late->reset();
  }
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable)
      << late.status();
  EXPECT_THAT(late.status().message(), HasSubstr("was re-created"));
  EXPECT_THAT(late.status().message(), HasSubstr("join again"));
  // The refusal changed nothing, and a join made now joins the new pool.
  EXPECT_EQ(Observe(*owner), before);
  ExpectTheNewPoolJoined(dir.path(), *owner, 4);
  // An owner that opens the pool again serves it as any pool, joins too.
  owner.reset();
  owner = OpenOrDie(dir.path(), SmallConfig("main", 32));
  ASSERT_NE(owner, nullptr);
  EXPECT_TRUE(NamedPool::Join(dir.path(), "main").ok());
}

// Release's contract: a volume that is not in use (a double release) is
// refused, kInvalid, with nothing changed. A data plane that releases a
// volume twice, the owner having removed it in between (it was on the
// stack), or releases the address of an index never added, must not fault
// memory into the store: on tmpfs a page the pool never accounts for, on
// hugetlbfs a hugepage taken, or SIGBUS when none is free.
TEST(NamedPoolTest, ARefusedReleaseFaultsNoMemoryIntoTheStore) {
  TempDir dir;
  auto owner = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(owner->AddVolumes(1, std::nullopt, "x").ok());
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  const VolumePool& pool = (*join)->pool();
  VolumeHeader* v = nullptr;
  ASSERT_EQ(pool.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(pool.Release(v), PoolError::kSuccess);
  ASSERT_TRUE(owner->RemoveVolumes(1).ok());
  ASSERT_EQ(*owner->AllocatedBytes(), 0u);

  EXPECT_EQ(pool.Release(v), PoolError::kInvalid);
  EXPECT_EQ(*owner->AllocatedBytes(), 0u)
      << "the refused double release faulted the removed volume back in";
  EXPECT_EQ(pool.Release(pool.VolumeAt(3)), PoolError::kInvalid);
  EXPECT_EQ(*owner->AllocatedBytes(), 0u)
      << "the refused release of a never-added index faulted it in";
}

// An owner creates a pool's metadata object empty (O_EXCL), sizes it, and
// writes its magic last. A join in between finds a pool being created: it
// is refused, saying so and to join again once the owner serves the pool
// (it said the file was "not a pool (too small)", or "not a complete
// groove-volumed pool", with nothing to do), and the object is left as
// it was.
TEST(NamedPoolTest, AJoinOfAPoolBeingCreatedSaysToJoinAgain) {
  TempDir dir;
  const std::string meta = dir.path() + "/main.pool";
  { std::ofstream made(meta); }  // as the owner's O_EXCL open left it
  for (const off_t size : {off_t{0}, off_t{8192}}) {  // empty; then sized
    ASSERT_EQ(truncate(meta.c_str(), size), 0);
    const absl::Status s = NamedPool::Join(dir.path(), "main").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("is being created"));
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("join again once its owner"));
    EXPECT_EQ(std::filesystem::file_size(meta), static_cast<uint64_t>(size));
    EXPECT_EQ(ReadFile(meta), std::string(static_cast<size_t>(size), '\0'));
  }
}

TEST(NamedPoolTest, DataPlaneJoinSeesVolumesAddedAfterItJoined) {
  TempDir dir;
  auto owner = OpenOrDie(dir.path(), SmallConfig());
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  EXPECT_FALSE((*join)->is_owner());
  EXPECT_EQ((*join)->config().max_volumes, 16u);
  ASSERT_TRUE(owner->AddVolumes(2, std::nullopt, "late").ok());
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(VolumeInfo(*v), "late");
  EXPECT_EQ((*join)->pool().Release(v), PoolError::kSuccess);
  // A data-plane join cannot add or remove.
  EXPECT_EQ((*join)->AddVolumes(1, std::nullopt, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*join)->RemoveVolumes(1).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A data-plane join's Verify reads the headers of volumes it has not
// popped. One of them may be popped and punched by the owner's remove
// between the walk's look at the top and its read; read through the
// join's mapping, its page would be faulted back into the store (the walk
// is discarded, the memory stays taken). The walk reads with pread, as the
// owner's does: a hole reads as zeros. Deterministic stand-in for that
// race: the pages of the volumes on the stack are punched while the stack
// stays as it is, so the walk reads every one of them after its punch.
TEST(NamedPoolTest, AJoinsVerifyFaultsNoPunchedPageBackIntoTheStore) {
  TempDir dir;
  auto owner = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(owner->AddVolumes(4, std::nullopt, "x").ok());
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  absl::StatusOr<VerifyReport> verified = (*join)->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 4u);

  const int store = open(owner->StorePath().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(store, 0) << owner->StorePath();
  ASSERT_EQ(fallocate(store, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                      4 * kVolumeBytes),
            0);
  close(store);
  ASSERT_EQ(*owner->AllocatedBytes(), 0u);

  // The stack stood still, so the walk's finding is reported: holes.
  verified = (*join)->Verify();
  EXPECT_EQ(verified.status().code(), absl::StatusCode::kDataLoss)
      << verified.status();
  EXPECT_THAT(verified.status().message(), HasSubstr("its magic is 0x0"));
  EXPECT_EQ(*owner->AllocatedBytes(), 0u)
      << "the join's Verify faulted punched pages back into the store";
  EXPECT_EQ(*(*join)->AllocatedBytes(), 0u);
}

// The pids of the processes holding counter shards in `pool`'s header.
std::vector<pid_t> CounterShardHolders(const NamedPool& pool) {
  std::vector<pid_t> pids;
  const PoolStats& stats = pool.pool().header()->stats;
  for (uint64_t i = 1; i < kCounterShards; ++i) {
    const uint64_t token = stats.shards[i].owner.load();
    if (token != 0) pids.push_back(static_cast<pid_t>(token >> 42));
  }
  return pids;
}

TEST(NamedPoolTest, ClosingAndRecoveryGiveCounterShardsBack) {
  TempDir dir;
  auto owner = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_TRUE(owner->AddVolumes(2, std::nullopt, "").ok());
  // A data-plane process counts an acquire and a release, then dies
  // without closing its join (as a crash would).
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<std::unique_ptr<NamedPool>> join =
        NamedPool::Join(dir.path(), "main");
    VolumeHeader* v = nullptr;
    const bool ok = join.ok() &&
                    (*join)->pool().Acquire(&v) == PoolError::kSuccess &&
                    (*join)->pool().Release(v) == PoolError::kSuccess;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::vector<pid_t> holders = CounterShardHolders(*owner);
  EXPECT_EQ(holders.size(), 2u);  // ours (the adds) and the dead child's
  EXPECT_NE(std::find(holders.begin(), holders.end(), child), holders.end());

  owner.reset();  // closing gives our shard back; the child's stays taken
  {
    auto look = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(look.ok()) << look.status();
    EXPECT_EQ(CounterShardHolders(**look), std::vector<pid_t>{child});
  }
  owner = OpenOrDie(dir.path(), SmallConfig());  // recovery reclaims it
  EXPECT_TRUE(CounterShardHolders(*owner).empty());
  // The counts survived both hand-overs.
  const PoolCounts counts = owner->Summary().counts;
  EXPECT_EQ(counts.volumes_added, 2u);
  EXPECT_EQ(owner->Summary().volumes_empty, 2u);
}

// A data plane of another build must not follow the pool's conventions
// with its own (layouts 2 and 3 share the metadata magic).
TEST(NamedPoolTest, AJoinRefusesMetadataOfAnotherLayoutVersion) {
  TempDir dir;
  ASSERT_NE(OpenOrDie(dir.path(), SmallConfig()), nullptr);
  WriteWord(dir.path() + "/main.pool", testing::kLayoutVersionOffset,
            testing::kLayoutVersion - 1);
  const absl::Status s = NamedPool::Join(dir.path(), "main").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("has metadata layout 2, this data plane "
                                     "reads layout 3"));
  EXPECT_THAT(s.message(), HasSubstr("owner's version"));
}

// A metadata object renamed (or copied) to another pool's name is not that
// pool: its owner refuses it, and so does a join.
TEST(NamedPoolTest, AJoinRefusesMetadataThatRecordsAnotherName) {
  TempDir dir;
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "x").ok());
  }
  std::filesystem::rename(dir.path() + "/main.pool",
                          dir.path() + "/other.pool");
  const absl::Status s = NamedPool::Join(dir.path(), "other").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("records the pool name 'main'"));
  EXPECT_THAT(s.message(), HasSubstr("renamed or copied"));
}

TEST(NamedPoolTest, CheckOwnerMemfdAcceptsOnlyTheOwnersHugetlbMemfd) {
  EXPECT_TRUE(CheckOwnerMemfd("main", 42, 7, HUGETLBFS_MAGIC,
                              "/memfd:groove-main (deleted)")
                  .ok());
  // The owner's memfd is a hugetlb one: a tmpfs memfd of that name is not.
  absl::Status s = CheckOwnerMemfd("main", 42, 7, TMPFS_MAGIC,
                                   "/memfd:groove-main (deleted)");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("not on hugetlbfs"));
  EXPECT_THAT(s.message(), HasSubstr("start the owner"));
  // Another pool's memfd, a file on hugetlbfs, a memfd not deleted (no
  // such thing), a link that could not be read.
  for (absl::string_view link :
       {"/memfd:groove-other (deleted)", "/dev/hugepages/main.volumes",
        "/memfd:groove-main", ""}) {
    s = CheckOwnerMemfd("main", 42, 7, HUGETLBFS_MAGIC, link);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << link;
    EXPECT_THAT(s.message(), HasSubstr("/proc/42/fd/7 is now '"));
    EXPECT_THAT(s.message(),
                HasSubstr("not the pool's memfd '/memfd:groove-main "
                          "(deleted)'"));
  }
}

// A hugetlb-memfd pool is joined through /proc/OWNER_PID/fd/N. Once the
// owner has died that pid may be another process's, whose fd N is some
// other file of the right size: the join must not map it. Stood for here
// by this process (its pid) and a memfd or file of its own at fd N, which
// this host can make without hugepages.
TEST(NamedPoolTest, AJoinRefusesAMemfdStoreThatIsNotTheOwnersAnyMore) {
  TempDir dir;
  PoolConfig config = SmallConfig();
  config.volume_size_bytes = kHugePageBytes;  // as a huge pool's
  config.max_volumes = 2;
  ASSERT_NE(OpenOrDie(dir.path(), config), nullptr);
  // The metadata of a huge pool whose store is the owner's memfd.
  const std::string meta = dir.path() + "/main.pool";
  WriteWord(meta, testing::kBackingInUseOffset,
            static_cast<uint64_t>(BackingKind::kHuge));
  WriteWord(meta, testing::kPageSizeOffset, kHugePageBytes);
  {
    std::fstream file(meta, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(testing::kStorePathOffset));
    const std::string zeros(testing::kStorePathBytes, '\0');
    file.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    ASSERT_TRUE(file.good());
  }
  WriteWord(meta, testing::kOwnerPidOffset, static_cast<uint64_t>(getpid()));
  // A memfd of the owner's name, on tmpfs; and a plain file.
  const int same_name = memfd_create("groove-main", MFD_CLOEXEC);
  ASSERT_GE(same_name, 0);
  const int plain = open((dir.path() + "/other-file").c_str(),
                         O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(plain, 0);
  for (const int fd : {same_name, plain}) {
    ASSERT_EQ(ftruncate(fd, 2 * kHugePageBytes), 0);
    WriteWord(meta, testing::kStoreMemfdOffset, static_cast<uint64_t>(fd));
    const absl::Status s = NamedPool::Join(dir.path(), "main").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(s.message(), HasSubstr("which is gone"));
    EXPECT_THAT(s.message(), HasSubstr("start the owner"));
  }
  close(same_name);
  close(plain);
}

TEST(NamedPoolTest, JoiningAnUnknownPoolIsNotFound) {
  TempDir dir;
  EXPECT_EQ(NamedPool::Join(dir.path(), "nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(NamedPool::Join(dir.path(), "../x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Quarantine and ReclaimVolume ------------------------------------------

constexpr uint64_t kStateMask = (uint64_t{1} << testing::kSlotStateBits) - 1;

// ScribbleMagic writes `magic` into volume `index`'s header, through a
// data-plane join's mapping, as a process that scribbles on a volume does.
void ScribbleMagic(const std::string& dir, uint64_t index, uint64_t magic) {
  auto join = NamedPool::Join(dir, "main");
  ASSERT_TRUE(join.ok()) << join.status();
  (*join)->pool().VolumeAt(index)->magic.store(magic);
}

// QuarantineByRemove adds volumes 0, 1 and 2 (0 on top), scribbles volume
// 0's magic and has a remove pop it: quarantined.
void QuarantineByRemove(const std::string& dir, NamedPool& pool) {
  ASSERT_EQ(*pool.AddVolumes(3, std::nullopt, "q"),
            (std::vector<uint64_t>{0, 1, 2}));
  ScribbleMagic(dir, 0, 0x1234);
  const absl::Status s = pool.RemoveVolumes(1).status();
  ASSERT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  ASSERT_THAT(s.message(), HasSubstr("ReclaimVolume of index 0 frees it"));
}

// kScribbledFault is what a header whose magic is 0x1234 is found to be.
const std::string kScribbledFault =
    absl::StrCat("header magic is 0x1234, want 0x",
                 absl::Hex(kVolumeEmptyMagic), " (empty)");

// Everything a caller can see of a pool, to check a refusal changed nothing.
struct FullView {
  Observed observed;
  uint64_t in_use, in_quarantine, reclaimed;
  std::vector<std::string> listed;  // index, status, corruption, info
  bool operator==(const FullView&) const = default;
};
FullView View(const NamedPool& pool) {
  FullView v{Observe(pool), 0, 0, 0, {}};
  const PoolSummary s = pool.Summary();
  v.in_use = s.volumes_in_use;
  v.in_quarantine = s.volumes_in_quarantine;
  v.reclaimed = s.volumes_reclaimed;
  for (uint64_t next = 0; next < pool.config().max_volumes;) {
    for (const VolumeEntry& e : pool.ListVolumes(next, 1 << 20, &next)) {
      v.listed.push_back(absl::StrCat(e.index, " ", static_cast<int>(e.status),
                                      " ", e.corruption, " ", e.info));
    }
  }
  return v;
}

// What ListVolumes says of volume `index` (its kCorrupt explanation), or
// "missing" when it is not listed.
std::string ListedCorruption(const NamedPool& pool, uint64_t index) {
  uint64_t next = 0;
  for (const VolumeEntry& e : pool.ListVolumes(index, 1, &next)) {
    if (e.index != index) break;
    return e.status == VolumeStatus::kCorrupt ? e.corruption : "not corrupt";
  }
  return "missing";
}

// QuarantinedVolumeTest starts with pool "main" (SmallConfig) in dir_,
// opened as pool_, holding volumes 0, 1 and 2, of which a remove
// quarantined 0 (QuarantineByRemove); pool_'s steps go to on_step_.
class QuarantinedVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NamedPool::OpenOptions options;
    options.step_hook = [this](absl::string_view step) {
      if (on_step_) on_step_(step);
    };
    pool_ = OpenOrDie(dir_.path(), SmallConfig(), std::move(options));
    ASSERT_NE(pool_, nullptr);
    ASSERT_NO_FATAL_FAILURE(QuarantineByRemove(dir_.path(), *pool_));
  }
  // Reopen opens pool_ again (recovery runs), as a restart of the owner.
  void Reopen() {
    pool_.reset();
    pool_ = OpenOrDie(dir_.path(), SmallConfig());
    ASSERT_NE(pool_, nullptr);
  }

  TempDir dir_;
  std::function<void(absl::string_view)> on_step_;
  std::unique_ptr<NamedPool> pool_;
};

TEST_F(QuarantinedVolumeTest, ARemoveThatPopsABadHeaderQuarantinesItsSlot) {
  const std::string meta = dir_.path() + "/main.pool";
  EXPECT_EQ(ReadSlot(meta, 0) & kStateMask, testing::kQuarantinedSlotState);
  const PoolSummary s = pool_->Summary();
  EXPECT_EQ(s.volumes_in_quarantine, 1u);
  EXPECT_EQ(s.volumes_mapped, 3u);
  EXPECT_EQ(s.volumes_in_use, 1u);  // counted in use: off the stack
  EXPECT_EQ(ListedCorruption(*pool_, 0), kScribbledFault);
  absl::StatusOr<VerifyReport> verified = pool_->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 2u);
}

// A quarantined volume whose header was mended off the stack (its writer
// put the empty magic back) reads as a sound empty volume's, as one
// released back onto the stack would: ReclaimVolume refuses it, changing
// nothing, and the next start's recovery, which sees it off the stack,
// pushes it back as an ordinary empty volume.
TEST_F(QuarantinedVolumeTest, OneMendedOffTheStackIsRefusedThenPushedBack) {
  const std::string meta = dir_.path() + "/main.pool";
  ScribbleMagic(dir_.path(), 0, kVolumeEmptyMagic);
  const FullView before = View(*pool_);
  const absl::Status refused = pool_->ReclaimVolume(0).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr("its header now reads as a sound empty volume's"));
  EXPECT_EQ(View(*pool_), before);
  EXPECT_EQ(ReadSlot(meta, 0) & kStateMask, testing::kQuarantinedSlotState);
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(pool_->recovery().quarantines_mended, 1u);
  EXPECT_EQ(pool_->recovery().quarantines_on_stack, 0u);
  EXPECT_EQ(pool_->recovery().volumes_in_quarantine, 0u);
  EXPECT_EQ(pool_->Summary().volumes_in_quarantine, 0u);
  EXPECT_EQ(ReadSlot(meta, 0) & kStateMask, 3u) << "MAPPED";
  absl::StatusOr<VerifyReport> verified = pool_->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 3u);
  EXPECT_EQ(pool_->Summary().volumes_empty, 3u);
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool_->RemoveVolumes(3);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->size(), 3u);
  EXPECT_EQ(pool_->Summary().volumes_mapped, 0u);
}

TEST(QuarantineTest, ADataPlaneAcquireOfABadHeaderQuarantinesItsSlot) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "q").ok());  // 0 on top
  const std::string meta = dir.path() + "/main.pool";
  const uint64_t mapped_word = ReadSlot(meta, 0);
  auto join = NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  (*join)->pool().VolumeAt(0)->magic.store(0x1234);
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kCorrupt);
  ASSERT_EQ(v, (*join)->pool().VolumeAt(0));
  // QUARANTINED, its batch kept.
  EXPECT_EQ(ReadSlot(meta, 0),
            (mapped_word & ~kStateMask) | testing::kQuarantinedSlotState);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 1u);
  EXPECT_EQ(ListedCorruption(*pool, 0), kScribbledFault);
  // A good acquire records nothing.
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kSuccess);
  EXPECT_EQ(ReadSlot(meta, 1) & kStateMask, 3u) << "MAPPED";
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 1u);
  ASSERT_TRUE(pool->Verify().ok());
}

// A data-plane join leaves its quarantines MAPPED while the owner is a
// build that does not know QUARANTINED (it recorded its pid as owner, not
// as the owner that records quarantines): that owner's recovery would
// refuse the pool for a slot state it does not know.
TEST(QuarantineTest, ADataPlaneRecordsNoQuarantineForAnOlderOwner) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "q").ok());
  const std::string meta = dir.path() + "/main.pool";
  const uint64_t mapped_word = ReadSlot(meta, 0);
  // As an older owner's Open writes it: its own pid, nothing else.
  WriteWord(meta, testing::kOwnerPidOffset, static_cast<uint64_t>(getppid()));
  auto join = NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  (*join)->pool().VolumeAt(0)->magic.store(0x1234);
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kCorrupt);
  EXPECT_EQ(ReadSlot(meta, 0), mapped_word);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 0u);
}

TEST_F(QuarantinedVolumeTest, AnAddOverItsIndexIsRefused) {
  const FullView before = View(*pool_);
  const absl::Status hint = pool_->CheckRangeNotMapped(0, 1);
  EXPECT_EQ(hint.code(), absl::StatusCode::kAlreadyExists) << hint;
  EXPECT_THAT(hint.message(), HasSubstr("index 0 holds a quarantined volume"));
  const absl::Status added = pool_->AddVolumes(1, 0, "over").status();
  EXPECT_EQ(added.code(), absl::StatusCode::kAlreadyExists) << added;
  EXPECT_THAT(added.message(), HasSubstr("reclaim it first (ReclaimVolume)"));
  EXPECT_EQ(View(*pool_), before);
}

TEST_F(QuarantinedVolumeTest, AReclaimFreesIt) {
  const FullView before = View(*pool_);
  absl::StatusOr<ReclaimedVolume> reclaimed = pool_->ReclaimVolume(0);
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
  EXPECT_EQ(reclaimed->index, 0u);
  EXPECT_EQ(reclaimed->corruption, kScribbledFault);
  const FullView after = View(*pool_);
  EXPECT_EQ(after.observed.allocated_bytes,
            before.observed.allocated_bytes - kVolumeBytes);
  EXPECT_EQ(after.observed.mapped, before.observed.mapped - 1);
  EXPECT_EQ(after.observed.empty, before.observed.empty);
  EXPECT_EQ(after.in_quarantine, 0u);
  EXPECT_EQ(after.in_use, 0u);
  EXPECT_EQ(after.reclaimed, 1u);
  EXPECT_EQ(after.observed.indices, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(ReadSlot(dir_.path() + "/main.pool", 0), 0u);
  absl::StatusOr<VerifyReport> verified = pool_->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->empty_volumes, 2u);
  // Its index is free again, and a second reclaim finds nothing there.
  EXPECT_EQ(pool_->ReclaimVolume(0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*pool_->AddVolumes(1, 0, "again"), (std::vector<uint64_t>{0}));
  EXPECT_EQ(pool_->Summary().volumes_reclaimed, 1u);
}

TEST(ReclaimVolumeTest, FreesAVolumeADataPlaneQuarantined) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "q").ok());
  {
    auto join = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    (*join)->pool().VolumeAt(0)->idx.store(9);
    VolumeHeader* v = nullptr;
    ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kCorrupt);
  }
  absl::StatusOr<ReclaimedVolume> reclaimed = pool->ReclaimVolume(0);
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
  EXPECT_EQ(reclaimed->corruption, "header idx is 9, want 0");
  EXPECT_EQ(*pool->AllocatedBytes(), kVolumeBytes);
  EXPECT_EQ(pool->Summary().volumes_mapped, 1u);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 0u);
  ASSERT_TRUE(pool->Verify().ok());
}

// Each refusal says what the index holds and changes nothing.
TEST_F(QuarantinedVolumeTest, AReclaimRefusesWhatIsNotQuarantined) {
  // 0 quarantined; 1 on top, 2
  auto join = NamedPool::Join(dir_.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  VolumeHeader* held = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&held), PoolError::kSuccess);  // 1
  const FullView before = View(*pool_);
  auto refused = [&](uint64_t index, absl::StatusCode code,
                     const std::string& says) {
    const absl::Status s = pool_->ReclaimVolume(index).status();
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(s.message(), HasSubstr(says)) << index;
    EXPECT_EQ(View(*pool_), before) << index;
  };
  refused(16, absl::StatusCode::kOutOfRange, "not below max_volumes 16");
  refused(5, absl::StatusCode::kFailedPrecondition, "index 5 holds no volume");
  refused(2, absl::StatusCode::kFailedPrecondition,
          "index 2 holds an empty volume");
  refused(1, absl::StatusCode::kFailedPrecondition,
          "index 1 holds a volume in use");
  EXPECT_EQ((*join)->ReclaimVolume(0).status().code(),
            absl::StatusCode::kFailedPrecondition);  // a data-plane join
  EXPECT_EQ(View(*pool_), before);
  // An index being added, and one being removed, from inside those calls.
  uint64_t popping = 7;  // the remove's volume, on top
  on_step_ = [&](absl::string_view step) {
    if (step == "add:claimed") {
      const absl::Status s = pool_->ReclaimVolume(7).status();
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
      EXPECT_THAT(s.message(), HasSubstr("index 7 holds a volume being added"));
    } else if (step == "remove:popped") {
      const absl::Status s = pool_->ReclaimVolume(popping).status();
      EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
      EXPECT_THAT(s.message(),
                  HasSubstr(absl::StrCat("index ", popping,
                                         " holds a volume being removed")));
    }
  };
  ASSERT_TRUE(pool_->AddVolumes(1, 7, "seven").ok());
  ASSERT_TRUE(pool_->RemoveVolumes(1).ok());  // 7, then
  popping = 2;
  ASSERT_TRUE(pool_->RemoveVolumes(1).ok());
  on_step_ = nullptr;
  EXPECT_EQ(pool_->Summary().volumes_in_quarantine, 1u);
  EXPECT_EQ((*join)->pool().Release(held), PoolError::kSuccess);
}

// A volume quarantined before quarantines were recorded (an older build)
// is MAPPED with a bad header, off the stack: nothing tells it from a
// volume in use whose user wrote over its header, so it is refused, with
// the way out.
TEST_F(QuarantinedVolumeTest,
       AReclaimRefusesALegacyQuarantineWithTheRecreateHint) {
  // As an older build left it: MAPPED (of the same batch), not counted.
  const std::string meta = dir_.path() + "/main.pool";
  const uint64_t word = ReadSlot(meta, 0);
  pool_.reset();
  WriteSlot(meta, 0, (word & ~kStateMask) | 3);
  pool_ = OpenOrDie(dir_.path(), SmallConfig());
  ASSERT_NE(pool_, nullptr);
  EXPECT_EQ(pool_->Summary().volumes_in_quarantine, 0u);
  const FullView before = View(*pool_);
  const absl::Status s = pool_->ReclaimVolume(0).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("mapped volume with a bad header"));
  EXPECT_THAT(s.message(), HasSubstr("quarantined before quarantines were "
                                     "recorded"));
  EXPECT_THAT(s.message(), HasSubstr("re-create the pool to free it"));
  EXPECT_EQ(View(*pool_), before);
}

TEST_F(QuarantinedVolumeTest, ItSurvivesARestart) {
  pool_.reset();
  // Recovery recounts the figure from the slots, whatever the metadata
  // says (a data-plane process killed between its slot and its count).
  const std::string meta = dir_.path() + "/main.pool";
  WriteWord(meta, testing::kVolumesInQuarantineOffset, 7);
  pool_ = OpenOrDie(dir_.path(), SmallConfig());
  ASSERT_NE(pool_, nullptr);
  EXPECT_EQ(pool_->recovery().volumes_in_quarantine, 1u);
  EXPECT_EQ(pool_->recovery().volumes_recovered, 3u);
  EXPECT_EQ(pool_->recovery().volumes_unresolved, 0u);
  EXPECT_EQ(pool_->Summary().volumes_in_quarantine, 1u);
  EXPECT_EQ(pool_->Summary().volumes_mapped, 3u);
  EXPECT_EQ(ReadSlot(meta, 0) & kStateMask, testing::kQuarantinedSlotState);
  EXPECT_EQ(ListedCorruption(*pool_, 0), kScribbledFault);
  EXPECT_EQ(*pool_->AllocatedBytes(), 3 * kVolumeBytes);
  ASSERT_TRUE(pool_->ReclaimVolume(0).ok());
  EXPECT_EQ(*pool_->AllocatedBytes(), 2 * kVolumeBytes);
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(pool_->Summary().volumes_in_quarantine, 0u);
  EXPECT_EQ(pool_->Summary().volumes_reclaimed, 1u);  // kept in the metadata
  EXPECT_EQ(pool_->Summary().volumes_mapped, 2u);
}

// A data-plane process killed between its quarantine's slot change and
// its count leaves the figure one short until recovery: a reclaim then
// leaves it at 0, not wrapped round to 2^64 - 1.
TEST_F(QuarantinedVolumeTest, AReclaimOfAnUncountedQuarantineLeavesZero) {
  WriteWord(dir_.path() + "/main.pool", testing::kVolumesInQuarantineOffset, 0);
  ASSERT_EQ(pool_->Summary().volumes_in_quarantine, 0u);
  ASSERT_TRUE(pool_->ReclaimVolume(0).ok());
  EXPECT_EQ(pool_->Summary().volumes_in_quarantine, 0u);
  EXPECT_EQ(pool_->Summary().volumes_mapped, 2u);
}

// An owner killed between a reclaim's claim of the slot (REMOVING) and its
// punch leaves the rest to recovery, which frees the volume and counts it
// as a remove it finished (volumes_reclaimed had not counted it yet, and
// the slot cannot say it was a reclaim's).
TEST_F(QuarantinedVolumeTest, RecoveryFinishesAReclaimItsOwnerDiedIn) {
  pool_.reset();  // the child owns it
  ASSERT_NO_FATAL_FAILURE(
      DieAtStep(dir_.path(), "reclaim:claimed",
                [](NamedPool& pool) { (void)pool.ReclaimVolume(0); }));
  const std::string meta = dir_.path() + "/main.pool";
  ASSERT_EQ(ReadSlot(meta, 0) & kStateMask, 4u) << "REMOVING";
  auto pool = OpenOrDie(dir_.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().removes_finished, 1u);
  EXPECT_EQ(pool->recovery().volumes_in_quarantine, 0u);
  const FullView after = View(*pool);
  EXPECT_EQ(after.observed.mapped, 2u);
  EXPECT_EQ(after.in_quarantine, 0u);
  EXPECT_EQ(after.reclaimed, 0u);
  EXPECT_EQ(after.observed.allocated_bytes, 2 * kVolumeBytes);
  EXPECT_EQ(after.observed.indices, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(ReadSlot(meta, 0), 0u);
  ASSERT_TRUE(pool->Verify().ok());
  EXPECT_EQ(*pool->AddVolumes(1, 0, "again"), (std::vector<uint64_t>{0}));
}

// A committed volume recovery would push but whose header is bad is
// quarantined as a pop's would be: reclaimable.
TEST(ReclaimVolumeTest, FreesACommittedVolumeRecoveryCouldNotPush) {
  TempDir dir;
  const std::string meta = dir.path() + "/main.pool";
  {
    auto pool = OpenOrDie(dir.path(), SmallConfig());
    ASSERT_NE(pool, nullptr);
    ASSERT_TRUE(pool->AddVolumes(1, std::nullopt, "a").ok());  // 0
    ASSERT_TRUE(pool->RemoveVolumes(1).ok());  // its memory given back
    ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "b").ok());  // 0, 1
    auto join = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    VolumeHeader* v = nullptr;
    ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kSuccess);  // 0
    // As a committed add killed before its push leaves it, with a header
    // that is not sound: PUSHING, off the stack.
    v->idx.store(5);
    v->magic.store(kVolumeEmptyMagic);
  }
  const uint64_t word = ReadSlot(meta, 0);
  WriteSlot(meta, 0, (word & ~kStateMask) | testing::kPushingSlotWord);
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().volumes_quarantined, 1u);
  EXPECT_EQ(pool->recovery().volumes_in_quarantine, 1u);
  EXPECT_EQ(ReadSlot(meta, 0),
            (word & ~kStateMask) | testing::kQuarantinedSlotState);
  EXPECT_EQ(ListedCorruption(*pool, 0), "header idx is 5, want 0");
  absl::StatusOr<ReclaimedVolume> reclaimed = pool->ReclaimVolume(0);
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
  EXPECT_EQ(reclaimed->corruption, "header idx is 5, want 0");
  EXPECT_EQ(pool->Summary().volumes_mapped, 1u);
  EXPECT_EQ(*pool->AllocatedBytes(), kVolumeBytes);
  ASSERT_TRUE(pool->Verify().ok());
}

// A data-plane process that releases a volume its Acquire returned as
// corrupt (against Release's contract) puts a QUARANTINED slot on the
// stack: Verify says so, and a reclaim must not free it under the stack:
// its header reads as a sound empty volume's, which ReclaimVolume refuses;
// recovery makes it MAPPED again, the pool's.
TEST(QuarantineTest, AQuarantinedVolumePushedBackIsFlaggedThenMappedAgain) {
  TempDir dir;
  const std::string meta = dir.path() + "/main.pool";
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->AddVolumes(2, std::nullopt, "q").ok());  // 0 on top
  auto join = NamedPool::Join(dir.path(), "main");
  ASSERT_TRUE(join.ok()) << join.status();
  (*join)->pool().VolumeAt(0)->magic.store(kVolumeMagic);  // "in use"
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kCorrupt);
  ASSERT_EQ((*join)->pool().Release(v), PoolError::kSuccess);
  const absl::Status verified = pool->Verify().status();
  EXPECT_EQ(verified.code(), absl::StatusCode::kDataLoss) << verified;
  EXPECT_THAT(verified.message(),
              HasSubstr("volume 0 is on the stack but its slot says it is "
                        "quarantined"));
  EXPECT_EQ(ListedCorruption(*pool, 0),
            "header reads sound now, but was bad when a pop quarantined it");
  // A reclaim now would free a volume on the stack: refused, as for any
  // quarantined volume whose header reads sound, and nothing changes.
  const uint64_t slot_before = ReadSlot(meta, 0);
  const PoolSummary summary_before = pool->Summary();
  const uint64_t bytes_before = *pool->AllocatedBytes();
  const absl::Status refused = pool->ReclaimVolume(0).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr("volume 0 is quarantined, but its header now reads as "
                        "a sound empty volume's"));
  EXPECT_EQ(ReadSlot(meta, 0), slot_before);
  EXPECT_EQ(pool->Summary().volumes_mapped, summary_before.volumes_mapped);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine,
            summary_before.volumes_in_quarantine);
  EXPECT_EQ(pool->Summary().volumes_reclaimed, 0u);
  EXPECT_EQ(*pool->AllocatedBytes(), bytes_before);
  pool.reset();
  pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().quarantines_on_stack, 1u);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 0u);
  EXPECT_EQ(ReadSlot(meta, 0) & kStateMask, 3u) << "MAPPED";
  absl::StatusOr<VerifyReport> after = pool->Verify();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->empty_volumes, 2u);
  EXPECT_EQ(pool->ReclaimVolume(0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// PushBackAQuarantine has a data plane quarantine volume 0 of `pool`
// (volumes 0 and 1, 0 on top) through an Acquire and then Release it
// (against Release's contract): volume 0 is on the stack, its slot
// QUARANTINED, counted in volumes_in_quarantine.
void PushBackAQuarantine(const std::string& dir, NamedPool& pool) {
  ASSERT_EQ(*pool.AddVolumes(2, std::nullopt, "q"),
            (std::vector<uint64_t>{0, 1}));
  auto join = NamedPool::Join(dir, "main");
  ASSERT_TRUE(join.ok()) << join.status();
  (*join)->pool().VolumeAt(0)->magic.store(kVolumeMagic);  // "in use"
  VolumeHeader* v = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kCorrupt);
  ASSERT_EQ((*join)->pool().Release(v), PoolError::kSuccess);
  ASSERT_EQ(ReadSlot(dir + "/main.pool", 0) & kStateMask,
            testing::kQuarantinedSlotState);
  ASSERT_EQ(pool.Summary().volumes_in_quarantine, 1u);
}

// A remove that takes a quarantined volume pushed back onto the stack
// takes a volume of the pool's (recovery would make it MAPPED): it is
// quarantined no more, and leaves volumes_in_quarantine.
TEST(QuarantineTest, ARemoveOfAQuarantinedVolumePushedBackUncountsIt) {
  TempDir dir;
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  ASSERT_NO_FATAL_FAILURE(PushBackAQuarantine(dir.path(), *pool));
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ((*removed)[0].index, 0u);
  EXPECT_EQ(ReadSlot(dir.path() + "/main.pool", 0), 0u) << "FREE";
  const PoolSummary s = pool->Summary();
  EXPECT_EQ(s.volumes_mapped, 1u);
  EXPECT_EQ(s.volumes_in_quarantine, 0u);
  ASSERT_TRUE(pool->Verify().ok());
}

// While a remove gives back a quarantined volume pushed back onto the
// stack, its slot is the remove's (REMOVING): a reclaim of it, once the
// punch has cleared its header, is refused rather than freeing the slot a
// second time.
TEST(QuarantineTest, AReclaimCannotFreeAPushedBackQuarantineARemoveTook) {
  TempDir dir;
  std::function<void(absl::string_view)> on_step;
  NamedPool::OpenOptions options;
  options.step_hook = [&](absl::string_view step) {
    if (on_step) on_step(step);
  };
  auto pool = OpenOrDie(dir.path(), SmallConfig(), std::move(options));
  ASSERT_NE(pool, nullptr);
  ASSERT_NO_FATAL_FAILURE(PushBackAQuarantine(dir.path(), *pool));
  bool reclaim_tried = false;
  on_step = [&](absl::string_view step) {
    if (step != "remove:deallocated" || reclaim_tried) return;
    reclaim_tried = true;
    const absl::Status s = pool->ReclaimVolume(0).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  };
  absl::StatusOr<std::vector<RemovedVolume>> removed = pool->RemoveVolumes(1);
  on_step = nullptr;
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_TRUE(reclaim_tried);
  const PoolSummary s = pool->Summary();
  EXPECT_EQ(s.volumes_mapped, 1u);
  EXPECT_EQ(s.volumes_reclaimed, 0u);
  EXPECT_EQ(*pool->AllocatedBytes(), kVolumeBytes);
}

// An owner killed while it gives back a quarantined volume pushed back
// onto the stack, which its remove took, leaves the remove to recovery,
// which finishes it: no quarantine is left behind for a volume whose
// memory is gone.
TEST(QuarantineTest, RecoveryFinishesARemoveOfAPushedBackQuarantine) {
  TempDir dir;
  { ASSERT_NE(OpenOrDie(dir.path(), SmallConfig()), nullptr); }
  // The owner that dies pushes the quarantine back itself: the recovery
  // of its own Open would make an earlier one MAPPED.
  static const std::string* pushed_back_dir;
  pushed_back_dir = &dir.path();
  ASSERT_NO_FATAL_FAILURE(
      DieAtStep(dir.path(), "remove:deallocated", [](NamedPool& pool) {
        PushBackAQuarantine(*pushed_back_dir, pool);
        if (!::testing::Test::HasFailure()) (void)pool.RemoveVolumes(1);
      }));
  auto pool = OpenOrDie(dir.path(), SmallConfig());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->recovery().removes_finished, 1u);
  EXPECT_EQ(pool->recovery().volumes_in_quarantine, 0u);
  EXPECT_EQ(ReadSlot(dir.path() + "/main.pool", 0), 0u) << "FREE";
  EXPECT_EQ(pool->Summary().volumes_mapped, 1u);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 0u);
  ASSERT_TRUE(pool->Verify().ok());
}

// A reclaim whose CAS loses to another reclaim of the index finds, when
// more has happened meanwhile (the index added again and its new volume
// quarantined), a quarantine it has not judged: it judges it before it
// frees it, here refusing it since its header now reads as a sound empty
// volume's, as a reclaim that began then would.
TEST(ReclaimVolumeTest, ARaceLostToAnotherReclaimJudgesTheNextQuarantine) {
  TempDir dir;
  auto control = std::make_shared<FaultStore::Control>();
  auto pool = OpenWithFaults(dir, control);
  ASSERT_NE(pool, nullptr);
  ASSERT_NO_FATAL_FAILURE(QuarantineByRemove(dir.path(), *pool));
  const std::string meta = dir.path() + "/main.pool";
  // Stalled after its header read (the old volume's), before its CAS, the
  // reclaim lets another reclaim free volume 0, an add put a new volume
  // there and a data plane quarantine it; then the header is mended.
  control->after_read_at = 0;
  control->after_read = [&] {
    ASSERT_TRUE(pool->ReclaimVolume(0).ok());
    ASSERT_EQ(*pool->AddVolumes(1, 0, "new"), (std::vector<uint64_t>{0}));
    auto join = NamedPool::Join(dir.path(), "main");
    ASSERT_TRUE(join.ok()) << join.status();
    (*join)->pool().VolumeAt(0)->idx.store(9);
    VolumeHeader* v = nullptr;
    ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kCorrupt);
    ASSERT_EQ(ReadSlot(meta, 0) & kStateMask, testing::kQuarantinedSlotState);
    v->idx.store(0);  // mended: a sound empty volume's header
  };
  const uint64_t quarantined_word = ReadSlot(meta, 0);
  const absl::StatusOr<ReclaimedVolume> late = pool->ReclaimVolume(0);
  ASSERT_EQ(control->after_read, nullptr) << "the reclaim read no header";
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition)
      << (late.ok() ? late->corruption : late.status().ToString());
  EXPECT_NE(ReadSlot(meta, 0), quarantined_word);
  EXPECT_EQ(ReadSlot(meta, 0) & kStateMask, testing::kQuarantinedSlotState);
  EXPECT_EQ(pool->Summary().volumes_reclaimed, 1u);
  EXPECT_EQ(pool->Summary().volumes_in_quarantine, 1u);
}

// A remove that finds only quarantined volumes counts them exactly (not
// the quarantine counter since the restart) and says they can be reclaimed.
TEST_F(QuarantinedVolumeTest, ARemoveOfOnlyQuarantinedVolumesSaysReclaimThem) {
  ASSERT_TRUE(pool_->RemoveVolumes(2).ok());  // 1 and 2
  ASSERT_NO_FATAL_FAILURE(Reopen());  // the quarantine counter restarts: 0
  ASSERT_EQ(pool_->Summary().counts.volumes_quarantined, 0u);
  const absl::Status s = pool_->RemoveVolumes(1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("(1 mapped: 0 in use, 1 quarantined"));
  EXPECT_THAT(s.message(), HasSubstr("ReclaimVolume frees them"));
  EXPECT_THAT(
      std::string(s.message()),
      ::testing::EndsWith("; reclaim the quarantined ones or add more"));
}

}  // namespace
}  // namespace groove
