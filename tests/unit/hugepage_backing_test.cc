// The hugetlb backings with real hugepages. As root, each test reserves the
// few pages it needs through sysfs and gives them back afterwards (the
// previous nr_hugepages is restored). Where the machine cannot provide
// them (not root, no such page size, memory too fragmented), the test is
// reported SKIPPED with the reason: never silently passed.
//
// CTest runs these cases one at a time (RESOURCE_LOCK hugepages) because
// they change a machine-wide setting.

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "groove/named_pool.h"
#include "gtest/gtest.h"
#include "support/hugepage_reservation.h"
#include "support/temp_dir.h"

namespace groove {
namespace {

using testing::FreeHugepages;
using testing::HugepageReservation;
using testing::HugepageSysfsDir;
using testing::TempDir;

// HugetlbfsMount mounts hugetlbfs with `page_bytes` pages in a temporary
// directory and unmounts it when destroyed.
class HugetlbfsMount {
 public:
  explicit HugetlbfsMount(uint64_t page_bytes) {
    const std::string options =
        "pagesize=" + std::to_string(page_bytes >> 20) + "M,mode=0700";
    if (mount("none", dir_.path().c_str(), "hugetlbfs", 0, options.c_str()) !=
        0) {
      reason_ = "cannot mount hugetlbfs on " + dir_.path() + ": " +
                std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~HugetlbfsMount() {
    if (mounted_) umount(dir_.path().c_str());
  }
  bool ok() const { return mounted_; }
  const std::string& reason() const { return reason_; }
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_{"/tmp"};
  std::string reason_;
  bool mounted_ = false;
};

PoolConfig HugeConfig(BackingKind kind, uint64_t volume_bytes) {
  PoolConfig config;
  config.name = "huge";
  config.backing.kind = kind;
  config.volume_size_bytes = volume_bytes;
  config.max_volumes = 8;
  return config;
}

// Options whose host has no hugetlbfs mount (so the memfd path is used) but
// the real sysfs.
NamedPool::OpenOptions NoMountOptions(const TempDir& dir) {
  std::ofstream(dir.path() + "/no-mounts");  // an empty /proc/mounts
  NamedPool::OpenOptions options;
  options.host =
      HostMemory(dir.path() + "/no-mounts", "/sys/kernel/mm/hugepages");
  return options;
}

TEST(HugepageBackingTest, HugeVolumesTakeAndGiveBackRealHugepages) {
  HugepageReservation reservation(kHugePageBytes, 4);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  TempDir dir;
  auto pool = NamedPool::Open(dir.path() + "/data",
                              HugeConfig(BackingKind::kHuge, kHugePageBytes),
                              NoMountOptions(dir));
  ASSERT_TRUE(pool.ok()) << pool.status();
  const PoolSummary summary = (*pool)->Summary();
  EXPECT_EQ(summary.backing_in_use, BackingKind::kHuge);
  EXPECT_EQ(summary.page_size_bytes, kHugePageBytes);
  EXPECT_FALSE(summary.store_survives_restart);  // a memfd

  const uint64_t free_before = FreeHugepages(kHugePageBytes);
  ASSERT_TRUE((*pool)->AddVolumes(2, std::nullopt, "hp").ok());
  EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before - 2);
  {
    // A data-plane join (the owner maps no volume) writes the volume's
    // last byte: the whole volume is there.
    auto join = NamedPool::Join(dir.path() + "/data", "huge");
    ASSERT_TRUE(join.ok()) << join.status();
    VolumeHeader* v = nullptr;
    ASSERT_EQ((*join)->pool().Acquire(&v), PoolError::kSuccess);
    VolumeData(v)[kHugePageBytes - kVolumeHeaderBytes - 1] = std::byte{1};
    ASSERT_EQ((*join)->pool().Release(v), PoolError::kSuccess);
  }
  ASSERT_TRUE((*pool)->RemoveVolumes(2).ok());
  EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before);
}

// A data-plane process releases a volume twice, the owner having removed
// it in between, while every reserved hugepage is taken: Release must
// refuse it (kInvalid) without touching its memory. Read through the
// join's mapping, the removed volume's header faulted a hugepage in, and
// with none free the kernel raised SIGBUS. The release runs in a forked
// child (the join's mapping inherited), so that a SIGBUS shows as such.
TEST(HugepageBackingTest, ADoubleReleaseOfARemovedVolumeTakesNoHugepage) {
  HugepageReservation reservation(kHugePageBytes, 2);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  const uint64_t free_before = FreeHugepages(kHugePageBytes);
  TempDir dir;
  auto pool = NamedPool::Open(dir.path() + "/data",
                              HugeConfig(BackingKind::kHuge, kHugePageBytes),
                              NoMountOptions(dir));
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_TRUE((*pool)->AddVolumes(2, std::nullopt, "hp").ok());  // 0 and 1
  auto join = NamedPool::Join(dir.path() + "/data", "huge");
  ASSERT_TRUE(join.ok()) << join.status();
  const VolumePool& data_plane = (*join)->pool();
  VolumeHeader* v = nullptr;
  ASSERT_EQ(data_plane.Acquire(&v), PoolError::kSuccess);
  ASSERT_EQ(data_plane.IndexOf(v), 0u);
  ASSERT_EQ(data_plane.Release(v), PoolError::kSuccess);
  // The remove takes volume 0 (on top) and gives its page back; an add at
  // index 2 takes that page: none is free.
  absl::StatusOr<std::vector<RemovedVolume>> removed =
      (*pool)->RemoveVolumes(1);
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->front().index, 0u);
  ASSERT_TRUE((*pool)->AddVolumes(1, 2, "hp").ok());
  ASSERT_EQ(FreeHugepages(kHugePageBytes), free_before - 2);

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    _exit(data_plane.Release(v) == PoolError::kInvalid ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_FALSE(WIFSIGNALED(status))
      << "the double release was killed by signal " << WTERMSIG(status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the double release was not refused";
  EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before - 2);
  EXPECT_EQ(*(*pool)->AllocatedBytes(), 2 * kHugePageBytes);
}

TEST(HugepageBackingTest, ExhaustionIsResourceExhaustedAndLeaksNoPage) {
  HugepageReservation reservation(kHugePageBytes, 2);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  TempDir dir;
  auto pool = NamedPool::Open(dir.path() + "/data",
                              HugeConfig(BackingKind::kHuge, kHugePageBytes),
                              NoMountOptions(dir));
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_TRUE((*pool)->AddVolumes(1, std::nullopt, "").ok());
  const uint64_t free_before = FreeHugepages(kHugePageBytes);
  const uint64_t wanted = free_before + 1;  // one page more than there is
  const absl::Status s =
      (*pool)->AddVolumes(wanted, std::nullopt, "too many").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(
      s.message().find(HugepageSysfsDir(kHugePageBytes) + "/nr_hugepages"),
      std::string::npos)
      << s;
  // The pages the failed batch took were all given back.
  EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before);
  EXPECT_EQ((*pool)->Summary().volumes_mapped, 1u);
  EXPECT_EQ(*(*pool)->AllocatedBytes(), kHugePageBytes);
  ASSERT_TRUE((*pool)->Verify().ok());
}

TEST(HugepageBackingTest, HugetlbfsMountGivesANamedStoreThatSurvivesReopen) {
  HugepageReservation reservation(kHugePageBytes, 4);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  HugetlbfsMount mount(kHugePageBytes);
  if (!mount.ok()) GTEST_SKIP() << mount.reason();
  TempDir dir;
  const PoolConfig config = HugeConfig(BackingKind::kHuge, 2 * kHugePageBytes);
  const uint64_t free_before = FreeHugepages(kHugePageBytes);
  {
    auto pool = NamedPool::Open(dir.path(), config);  // real /proc/mounts
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_TRUE((*pool)->Summary().store_survives_restart);
    ASSERT_TRUE((*pool)->AddVolumes(1, std::nullopt, "kept").ok());
    EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before - 2);
  }
  // Named groove-volumed.NAME@TAG.volumes on the mount (TAG drawn at
  // creation, so other data directories' pools of this name have others).
  std::vector<std::string> stores;
  for (const auto& entry : std::filesystem::directory_iterator(mount.path())) {
    if (entry.path().filename().string().rfind("groove-volumed.huge@", 0) ==
        0) {
      stores.push_back(entry.path().string());
    }
  }
  ASSERT_EQ(stores.size(), 1u);
  auto pool = NamedPool::Open(dir.path(), config);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ((*pool)->recovery().volumes_recovered, 1u);
  uint64_t next = 0;
  std::vector<VolumeEntry> listed = (*pool)->ListVolumes(0, 10, &next);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].info, "kept");
  ASSERT_TRUE((*pool)->RemoveVolumes(1).ok());
  EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before);
  std::filesystem::remove(stores[0]);
}

// A data directory on hugetlbfs (the DaemonSet's emptyDir of medium
// HugePages) holds the metadata and the store; the request journal, which
// would take whole huge pages there, is kept in /dev/shm/groove-volumed,
// named by the pool's id, and a re-created pool removes its old one.
TEST(HugepageBackingTest, OnAHugetlbfsDataDirectoryTheJournalTakesNoHugePage) {
  HugepageReservation reservation(kHugePageBytes, 4);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  HugetlbfsMount mount(kHugePageBytes);
  if (!mount.ok()) GTEST_SKIP() << mount.reason();
  PoolConfig config = HugeConfig(BackingKind::kHuge, kHugePageBytes);
  config.name = absl::StrCat("jrnl", getpid());
  const uint64_t free_before = FreeHugepages(kHugePageBytes);
  // The journals of this pool's name in the shared directory.
  const auto journals = [&config] {
    std::vector<std::string> found;
    for (const auto& entry :
         std::filesystem::directory_iterator("/dev/shm/groove-volumed")) {
      const std::string file = entry.path().filename().string();
      if (file.rfind(config.name + "@", 0) == 0 && file.size() > 9 &&
          file.substr(file.size() - 9) == ".requests") {
        found.push_back(entry.path().string());
      }
    }
    return found;
  };
  std::string journal;
  {
    auto pool = NamedPool::Open(mount.path(), config);
    ASSERT_TRUE(pool.ok()) << pool.status();
    ASSERT_TRUE(
        (*pool)->AddVolumes(1, std::nullopt, "", RequestKey{4, 2}).ok());
    // One page of metadata, one volume: nothing for the journal.
    EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before - 2);
    ASSERT_EQ(journals().size(), 1u);
    journal = journals()[0];
    EXPECT_FALSE(std::filesystem::exists(mount.path() + "/" + config.name +
                                         ".requests"));
  }
  {
    auto pool = NamedPool::Open(mount.path(), config);
    ASSERT_TRUE(pool.ok()) << pool.status();
    const std::vector<RecordedAdd> recorded = (*pool)->TakeRecordedAdds();
    ASSERT_EQ(recorded.size(), 1u);
    EXPECT_EQ(recorded[0].key, (RequestKey{4, 2}));
  }
  NamedPool::OpenOptions recreate;
  recreate.recreate = true;
  config.max_volumes = 4;  // another configuration: re-created
  {
    auto pool = NamedPool::Open(mount.path(), config, recreate);
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_TRUE((*pool)->TakeRecordedAdds().empty());
    EXPECT_FALSE(std::filesystem::exists(journal)) << journal;
    EXPECT_EQ(journals().size(), 1u);  // the new pool's
  }
  // The pool's files go with the mount; its journal is in /dev/shm.
  for (const std::string& path : journals()) std::filesystem::remove(path);
  std::filesystem::remove(mount.path() + "/" + config.name + ".pool");
  std::filesystem::remove(mount.path() + "/" + config.name + ".volumes");
  EXPECT_EQ(FreeHugepages(kHugePageBytes), free_before);
}

TEST(HugepageBackingTest, AutoPicksHugeWhenHugepagesAreFree) {
  HugepageReservation reservation(kHugePageBytes, 1);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  TempDir dir;
  auto pool = NamedPool::Open(dir.path() + "/data",
                              HugeConfig(BackingKind::kAuto, kHugePageBytes),
                              NoMountOptions(dir));
  ASSERT_TRUE(pool.ok()) << pool.status();
  // Gigantic is tried first, but a 2 MiB volume is no multiple of 1 GiB.
  EXPECT_EQ((*pool)->Summary().backing_in_use, BackingKind::kHuge);
}

TEST(HugepageBackingTest, GiganticVolumesUseOneGibibytePages) {
  HugepageReservation reservation(kGiganticPageBytes, 1);
  if (!reservation.ok()) GTEST_SKIP() << reservation.reason();
  TempDir dir;
  auto pool = NamedPool::Open(
      dir.path() + "/data",
      HugeConfig(BackingKind::kGigantic, kGiganticPageBytes),
      NoMountOptions(dir));
  ASSERT_TRUE(pool.ok()) << pool.status();
  const uint64_t free_before = FreeHugepages(kGiganticPageBytes);
  ASSERT_TRUE((*pool)->AddVolumes(1, std::nullopt, "1g").ok());
  EXPECT_EQ(FreeHugepages(kGiganticPageBytes), free_before - 1);
  ASSERT_TRUE((*pool)->RemoveVolumes(1).ok());
  EXPECT_EQ(FreeHugepages(kGiganticPageBytes), free_before);
}

}  // namespace
}  // namespace groove
