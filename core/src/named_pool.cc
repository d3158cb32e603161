#include "groove/named_pool.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace groove {

// ---- The metadata object ---------------------------------------------------

namespace {

// kShmStoreDir holds the volume stores of `normal` pools whose data
// directory is not a tmpfs.
constexpr char kShmStoreDir[] = "/dev/shm/groove-volumed";
// A store in a directory that servers with other data directories share
// (kShmStoreDir, a hugetlbfs mount) is named PREFIX NAME@TAG.volumes, TAG
// 16 random hex digits drawn when the pool is created, so that two data
// directories' pools of one name never name one store. PREFIX is "" in
// kShmStoreDir and kMountStorePrefix on a hugetlbfs mount. Servers before
// the tag named it PREFIX NAME.volumes; such stores are still opened.
constexpr char kMountStorePrefix[] = "groove-volumed.";
constexpr size_t kStoreTagDigits = 16;
constexpr uint64_t kMetadataMagic = 0x67726f6f76656d32ULL;  // "groovem2"
// Layout 3: adds push with tagged links (VolumePool::PushRangeTagged) and
// removes announce their pops in the stack top (RemoveAnnounced), which a
// layout-2 join would read as a corrupt stack.
constexpr uint64_t kLayoutVersion = 3;
// Metadata::replaced of a metadata object a re-creation replaced (or is
// replacing): "replaced".
constexpr uint64_t kReplacedMark = 0x7265706c61636564ULL;
// Layout 1 (before the pool header grew its counter shards, 256 -> 1536
// bytes) kept its metadata magic at this offset. Its files must be refused,
// not mistaken for a creation that never finished: layout 2's magic offset
// falls inside layout 1's zero-padded store_path.
constexpr uint64_t kLayout1MetadataMagic = 0x67726f6f76656d31ULL;  // "groovem1"
constexpr uint64_t kLayout1MagicOffset = 256;
constexpr uint64_t kSlotTableOffset = 4096;
// The metadata object is sized in whole pages of this size (or of its
// filesystem's block, a multiple of it).
constexpr uint64_t kMetadataPageBytes = 4096;
// The slots of one page of the slot table (which starts on a page).
constexpr uint64_t kSlotsPerPage = kMetadataPageBytes / 8;
static_assert(kSlotTableOffset % kMetadataPageBytes == 0);

// A slot word is `state | batch << kSlotStateBits`. The state records the
// intent of the add or remove in flight on that index; the batch ties the
// slots of one multi-volume add together so recovery can roll a batch back
// or forward as a whole.
//   FREE      no volume; no memory (or memory being given back)
//   ADDING    claimed by an add; memory allocated and header written at
//             some point; never pushed
//   PUSHING   its batch is committed (every slot of it formatted); the
//             volume is being pushed with a link tagged with the batch
//             (VolumePool::PushRangeTagged). It turns MAPPED after its
//             push, by the add, or before that by the first pop that
//             takes it (NamedPool::ConfirmPushed). So a PUSHING volume off
//             the stack was never pushed.
//   MAPPED    pushed (empty, in use, or in a data-plane operation)
//   REMOVING  taken by a remove (set by whoever completes its announced
//             pop, before the volume leaves the stack), or by a reclaim of
//             a quarantined volume, which is giving the memory back
//   QUARANTINED
//             a pop found its header bad (a remove's: RemoveVolumes; a
//             data-plane Acquire's: RecordQuarantine; or recovery, for a
//             committed volume it would have pushed): off the stack, its
//             memory and index still taken, held by no groove party.
//             The popper owned the volume when it set the state, so the
//             state itself says the volume is off the stack. Only
//             ReclaimVolume leaves it (CAS to REMOVING), or, for one
//             pushed back onto the stack against Release's contract, a
//             remove's announced pop (RecordAnnouncedPop). Not known to
//             builds before it: their recovery refuses such a pool
//             (DATA_LOSS, "not a slot state").
enum SlotState : uint64_t {
  kSlotFree = 0,
  kSlotAdding = 1,
  kSlotPushing = 2,
  kSlotMapped = 3,
  kSlotRemoving = 4,
  kSlotQuarantined = 5,
};
constexpr int kSlotStateBits = 3;
// The last state: a word whose state is above it is corrupt.
constexpr SlotState kLastSlotState = kSlotQuarantined;
constexpr uint64_t kSlotStateMask = (uint64_t{1} << kSlotStateBits) - 1;

constexpr SlotState StateOf(uint64_t slot) {
  return static_cast<SlotState>(slot & kSlotStateMask);
}
constexpr uint64_t BatchOf(uint64_t slot) { return slot >> kSlotStateBits; }
constexpr uint64_t SlotWord(SlotState state, uint64_t batch) {
  return state | (batch << kSlotStateBits);
}

uint64_t RoundUp(uint64_t x, uint64_t to) { return (x + to - 1) / to * to; }

// SoundEmptyHeader: `v` is a sound empty volume's header for index
// `index`, as recovery pushes a volume: empty magic, its own index, info
// within bounds and zero after it (Verify's checks of a volume on the
// stack).
bool SoundEmptyHeader(uint64_t index, const VolumeHeader& v) {
  const uint64_t info_sz = v.info_sz.load(std::memory_order_relaxed);
  bool sound = v.magic.load(std::memory_order_relaxed) == kVolumeEmptyMagic &&
               v.idx.load(std::memory_order_relaxed) == index &&
               info_sz <= kVolumeInfoMax;
  for (uint64_t k = info_sz; sound && k < kVolumeInfoMax; ++k) {
    sound = v.info[k] == 0;
  }
  return sound;
}

// Indices iterates, ascending, over the indices of runs [first, first +
// count) (NamedPool::SlotRunsWithData): `for (uint64_t i : indices)`.
template <typename Run>
class Indices {
 public:
  explicit Indices(const std::vector<Run>& runs) : runs_(runs) {}
  class Iterator {
   public:
    Iterator(const std::vector<Run>& runs, size_t run)
        : runs_(runs), run_(run) {}
    uint64_t operator*() const { return runs_[run_].first + offset_; }
    Iterator& operator++() {
      if (++offset_ == runs_[run_].count) {
        ++run_;
        offset_ = 0;
      }
      return *this;
    }
    bool operator!=(const Iterator& other) const {
      return run_ != other.run_ || offset_ != other.offset_;
    }

   private:
    const std::vector<Run>& runs_;
    size_t run_;
    uint64_t offset_ = 0;
  };
  Iterator begin() const { return Iterator(runs_, 0); }
  Iterator end() const { return Iterator(runs_, runs_.size()); }

 private:
  const std::vector<Run>& runs_;
};

// kMaxSpanBytes is the largest volume store, max_volumes * volume_size: a
// file's size is an off_t. A larger span would wrap (2^44-byte volumes
// times 2^20 is 2^64: 0) or turn negative, and size the store wrongly.
constexpr uint64_t kMaxSpanBytes = std::numeric_limits<off_t>::max();

// SpanFits: `max_volumes` volumes of `volume_size` bytes (max_volumes > 0)
// make a store of at most kMaxSpanBytes.
constexpr bool SpanFits(uint64_t volume_size, uint64_t max_volumes) {
  return volume_size <= kMaxSpanBytes / max_volumes;
}

// IsKnownMagic: a volume header's magic is one of the three a header holds.
constexpr bool IsKnownMagic(uint64_t magic) {
  return magic == kVolumeMagic || magic == kVolumeEmptyMagic ||
         magic == kVolumeNotAVolume;
}

// The metadata object holds the slot table, then the link table (one word
// each per index), from kSlotTableOffset.
uint64_t MetadataBytes(uint64_t max_volumes) {
  return kSlotTableOffset + 2 * 8 * max_volumes;
}

// ForEachRun calls fn(first, count, end) for each run of consecutive
// indices among index_at(0), ..., index_at(n - 1) (ascending), where `end`
// is the position just past the run; stops at, and returns, the first
// error. Batches are mostly one run (ClaimSlots takes the lowest free
// indices in order), so a batch costs a few system calls, not a few per
// volume.
template <typename IndexAt, typename Fn>
absl::Status ForEachRun(size_t n, IndexAt index_at, Fn fn) {
  size_t k = 0;
  while (k < n) {
    size_t end = k + 1;
    while (end < n && index_at(end) == index_at(end - 1) + 1) ++end;
    if (absl::Status s = fn(index_at(k), uint64_t{end - k}, end); !s.ok()) {
      return s;
    }
    k = end;
  }
  return absl::OkStatus();
}

// CopyField writes `text` into a fixed char field, NUL-terminated.
template <size_t N>
void CopyField(char (&field)[N], absl::string_view text) {
  const size_t n = std::min(text.size(), N - 1);
  std::memcpy(field, text.data(), n);
  std::memset(field + n, 0, N - n);
}
template <size_t N>
std::string FieldString(const char (&field)[N]) {
  return std::string(field, strnlen(field, N));
}

// SharedStoreFileName is a store's file name in a shared directory.
std::string SharedStoreFileName(absl::string_view prefix,
                                absl::string_view name, uint64_t tag) {
  return absl::StrCat(prefix, name, "@", absl::Hex(tag, absl::kZeroPad16),
                      ".volumes");
}

// IsSharedStoreFileName: `file` is PREFIX NAME@TAG.volumes (*tagged set)
// or, as servers before the tag named it, PREFIX NAME.volumes.
bool IsSharedStoreFileName(absl::string_view file, absl::string_view prefix,
                           absl::string_view name, bool* tagged) {
  *tagged = false;
  if (!absl::ConsumePrefix(&file, prefix) ||
      !absl::ConsumePrefix(&file, name) ||
      !absl::ConsumeSuffix(&file, ".volumes")) {
    return false;
  }
  if (file.empty()) return true;
  if (file.size() != 1 + kStoreTagDigits || file[0] != '@') return false;
  *tagged = std::all_of(file.begin() + 1, file.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
  return *tagged;
}

// LockStore takes an exclusive flock on a volume store for as long as `fd`
// is open, before anything sizes or punches it: two owners of one store
// (pools configured with one file:PATH, pools of one name in two data
// directories created by a server before store tags, a copied data
// directory) must not both change it. ALREADY_EXISTS when another owner
// holds it.
absl::Status LockStore(int fd, absl::string_view pool,
                       absl::string_view description) {
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) return absl::OkStatus();
  if (errno == EWOULDBLOCK) {
    return absl::AlreadyExistsError(absl::StrCat(
        "pool '", pool, "': its volume store ", description,
        " is held by another owner, whose pool uses the same store (one "
        "configured with the same file:PATH; one of the same name in another "
        "data directory, created by a groove-volumed before stores were "
        "tagged; or a copy of this data directory); stop that owner, or give "
        "one of the two pools a store of its own (another file:PATH, or "
        "--recreate, losing its volumes)"));
  }
  return ErrnoError(absl::StrCat("lock volume store ", description));
}

// SharedJournalPathOf is the request journal of pool `name` whose id is
// `pool_id` in the shared tmpfs directory, where the pools of a hugetlbfs
// data directory keep theirs (NamedPool::OpenJournal).
std::string SharedJournalPathOf(absl::string_view name,
                                const RequestJournal::Identity& pool_id) {
  return absl::StrCat(kShmStoreDir, "/", name, "@",
                      absl::Hex(pool_id.high, absl::kZeroPad16),
                      absl::Hex(pool_id.low, absl::kZeroPad16), ".requests");
}

// JoinPermissionError is a data-plane join's PERMISSION_DENIED for `path`,
// a file of pool `pool` in `data_dir` that open(2) refused with `err`: the
// pool's files are its owner's alone (a 0700 data directory, objects 0600:
// docs/SECURITY.md section 3), so it names the owner's uid (the data
// directory's) and says to join as that uid.
absl::Status JoinPermissionError(absl::string_view pool,
                                 const std::string& data_dir,
                                 const std::string& path, int err) {
  struct stat dir;
  const std::string owner = stat(data_dir.c_str(), &dir) == 0
                                ? absl::StrCat("uid ", dir.st_uid)
                                : "the uid that runs it";
  return absl::PermissionDeniedError(absl::StrCat(
      "pool '", pool, "' in ", data_dir, ": this process (uid ", geteuid(),
      ") may not open ", path, " (", std::strerror(err),
      "): a pool's files are its owner's, ", owner,
      " (a 0700 data directory, objects 0600); run the data plane as that "
      "uid (docs/DEPLOY.md, data-plane pods)"));
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30) && bytes % (uint64_t{1} << 30) == 0) {
    return absl::StrCat(bytes >> 30, " GiB");
  }
  if (bytes >= (uint64_t{1} << 20) && bytes % (uint64_t{1} << 20) == 0) {
    return absl::StrCat(bytes >> 20, " MiB");
  }
  if (bytes >= (uint64_t{1} << 10) && bytes % (uint64_t{1} << 10) == 0) {
    return absl::StrCat(bytes >> 10, " KiB");
  }
  return absl::StrCat(bytes, " bytes");
}

}  // namespace

// Metadata is the metadata object's layout. The pool header comes first so
// the facts-file layout is at offset 0; the configuration follows; the slot
// table starts at kSlotTableOffset. `magic` is written last on creation.
struct NamedPool::Metadata {
  PoolHeader pool;
  std::atomic<uint64_t> magic;        // kMetadataMagic once created
  uint64_t layout_version;            // kLayoutVersion
  uint64_t volume_size_bytes;
  uint64_t max_volumes;
  uint64_t backing_requested;         // BackingKind
  uint64_t backing_in_use;            // BackingKind, never kAuto
  uint64_t page_size_bytes;
  std::atomic<int64_t> owner_pid;     // pid of the current (last) owner
  std::atomic<int64_t> store_memfd;   // the owner's memfd number, or -1
  std::atomic<uint64_t> next_batch;   // batch ids for adds
  std::atomic<uint64_t> volumes_mapped;  // slots PUSHING or MAPPED, approx.
  // kReplacedMark once an owner that re-creates the pool (ReplaceMetadata)
  // is about to unlink the store this object records, where its
  // replacement's store may be made at the same path; 0 otherwise (layout
  // 2's owner_pop_intent, never read by layout 3 before). A join checks it
  // after it opened the store: set, the store it opened may be the new
  // pool's, which must never be paired with this object's stack.
  std::atomic<uint64_t> replaced;
  char name[72];
  char backing_file_path[1024];       // file:PATH as configured
  char store_path[1024];              // named store file; empty for memfd
  // This pool's identity, 128 random bits drawn when it is created, which
  // its request journal records (RequestJournal::Identity): a re-created
  // pool has another. Zero in pools created before it existed: their
  // owner draws it at Open. (Not part of the layout version: builds that
  // do not know it never read it.)
  uint64_t pool_id[2];
  // Slots QUARANTINED now (volumes_in_quarantine): counted up after each
  // slot turns QUARANTINED and down after a reclaim (or a remove's pop of
  // one pushed back onto the stack) turns it REMOVING;
  // recounted by recovery. Zero in pools older than the state, which have
  // none. (Not part of the layout version, as pool_id.)
  std::atomic<uint64_t> volumes_in_quarantine;
  // Volumes ReclaimVolume freed, ever (only the owner writes it).
  std::atomic<uint64_t> volumes_reclaimed;
  // The pid of the owner that records quarantines in slots: written by the
  // owner of a build that knows QUARANTINED as it opens the pool, next to
  // owner_pid. A build before it writes owner_pid only, so a data-plane
  // join that sees the two differ leaves the slots of its quarantines
  // MAPPED, as that owner expects (RecordQuarantine).
  std::atomic<int64_t> quarantine_owner_pid;
};
static_assert(std::atomic<int64_t>::is_always_lock_free);

absl::Status ValidatePoolName(absl::string_view name) {
  const bool ok_chars =
      std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
      });
  if (name.empty() || name.size() > 64 || !ok_chars || name == "." ||
      name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool name '", name,
        "' must be 1 to 64 characters of [A-Za-z0-9_.-] (and not . or ..)"));
  }
  return absl::OkStatus();
}

absl::Status CheckOwnerMemfd(absl::string_view pool_name, int64_t owner_pid,
                             int64_t memfd, uint64_t fs_type,
                             absl::string_view link_name) {
  // memfd_create(NAME) files read as "/memfd:NAME (deleted)" in /proc.
  const std::string want =
      absl::StrCat("/memfd:groove-", pool_name, " (deleted)");
  if (fs_type == HUGETLBFS_MAGIC && link_name == want) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "pool '", pool_name, "' lives in a hugetlb memfd of process ", owner_pid,
      ", which is gone: /proc/", owner_pid, "/fd/", memfd, " is now '",
      link_name, "'", fs_type == HUGETLBFS_MAGIC ? "" : ", not on hugetlbfs",
      ", not the pool's memfd '", want,
      "' (the pid belongs to another process now); start the owner "
      "(groove-volumed) again and join once it serves the pool"));
}

// ---- Opening ---------------------------------------------------------------

NamedPool::NamedPool(const std::string& data_dir, const PoolConfig& config,
                     bool owner)
    : data_dir_(data_dir), config_(config), owner_(owner) {
  static_assert(sizeof(Metadata) <= kSlotTableOffset);
  static_assert(sizeof(Metadata::store_path) == kMaxStorePathBytes + 1 &&
                sizeof(Metadata::backing_file_path) == kMaxStorePathBytes + 1);
  static_assert(offsetof(Metadata, pool) == 0);
  static_assert(std::is_standard_layout_v<Metadata>);
  // What tests are told of the layout (named_pool.h, groove::testing).
  static_assert(offsetof(Metadata, magic) == testing::kMetadataMagicOffset);
  static_assert(offsetof(Metadata, volume_size_bytes) ==
                testing::kVolumeSizeOffset);
  static_assert(offsetof(Metadata, max_volumes) == testing::kMaxVolumesOffset);
  static_assert(offsetof(Metadata, layout_version) ==
                testing::kLayoutVersionOffset);
  static_assert(offsetof(Metadata, backing_in_use) ==
                testing::kBackingInUseOffset);
  static_assert(offsetof(Metadata, page_size_bytes) ==
                testing::kPageSizeOffset);
  static_assert(offsetof(Metadata, owner_pid) == testing::kOwnerPidOffset);
  static_assert(offsetof(Metadata, store_memfd) == testing::kStoreMemfdOffset);
  static_assert(offsetof(Metadata, name) == testing::kNameOffset);
  static_assert(offsetof(Metadata, store_path) == testing::kStorePathOffset);
  static_assert(sizeof(Metadata::store_path) == testing::kStorePathBytes);
  static_assert(offsetof(Metadata, volumes_in_quarantine) ==
                testing::kVolumesInQuarantineOffset);
  static_assert(testing::kLayoutVersion == kLayoutVersion);
  static_assert(testing::kSlotTableOffset == kSlotTableOffset);
  static_assert(StateOf(testing::kInvalidSlotWord) > kLastSlotState &&
                testing::kInvalidSlotWord <= kSlotStateMask);
  static_assert(testing::kQuarantinedSlotState == kSlotQuarantined);
  static_assert(testing::kSlotStateBits == kSlotStateBits);
  static_assert(testing::kAddingSlotWord == SlotWord(kSlotAdding, 0));
  static_assert(testing::kPushingSlotWord == SlotWord(kSlotPushing, 0));
  store_gate_.emplace([this](uint64_t first, uint64_t count) {
    GiveBackAndFree(first, count);
  });
}

NamedPool::~NamedPool() {
  // First, while the store and the slot table are still there: runs a
  // give-back left queued (none, when every remove has returned).
  store_gate_.reset();
  // This process's threads are done with the pool: give their counter
  // shards back before the header goes away, so that processes which come
  // and go do not use the shards up.
  if (pool_.has_value()) pool_->ReturnCounterShards();
  if (reservation_ != nullptr) munmap(reservation_, reservation_bytes_);
  if (meta_ != nullptr) munmap(meta_, meta_bytes_);
  store_.reset();
  if (meta_fd_ >= 0) close(meta_fd_);  // drops the owner's flock
}

uint64_t NamedPool::FirstUsedSlot(uint64_t file_bytes) const {
  // The slot table of the recorded geometry when there is one (the
  // creation got that far), else of the configured one; no further than
  // the file goes.
  uint64_t n = meta_->max_volumes;
  if (n == 0 || n > (uint64_t{1} << 30)) n = config_.max_volumes;
  if (file_bytes <= kSlotTableOffset) return kNoSlot;
  n = std::min(n, (file_bytes - kSlotTableOffset) / 8);
  const std::vector<SlotRun> written = SlotRunsWithData(n);
  for (const uint64_t i : Indices(written)) {
    // Relaxed: a snapshot, judged before anything is written.
    if (Slot(i).load(std::memory_order_relaxed) != kSlotFree) return i;
  }
  return kNoSlot;
}

std::atomic<uint64_t>& NamedPool::Slot(uint64_t index) const {
  return reinterpret_cast<std::atomic<uint64_t>*>(
      reinterpret_cast<std::byte*>(meta_) + kSlotTableOffset)[index];
}

absl::StatusOr<std::unique_ptr<NamedPool>> NamedPool::Open(
    const std::string& data_dir, const PoolConfig& config,
    OpenOptions options) {
  if (absl::Status s = ValidatePoolName(config.name); !s.ok()) return s;
  if (!IsPowerOfTwo(config.volume_size_bytes) ||
      config.volume_size_bytes < kVolumeMinFootprint) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool '", config.name, "': volume_size ", config.volume_size_bytes,
        " bytes is not a power of two of at least 4096"));
  }
  if (config.max_volumes == 0 || config.max_volumes > (uint64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool '", config.name, "': max_volumes ",
                     config.max_volumes, " is outside [1, 2^30]"));
  }
  if (!SpanFits(config.volume_size_bytes, config.max_volumes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool '", config.name, "': max_volumes ", config.max_volumes,
        " volumes of volume_size ", config.volume_size_bytes,
        " bytes do not fit in one volume store (at most ", kMaxSpanBytes,
        " bytes); lower max_volumes or volume_size"));
  }
  if (config.backing.kind == BackingKind::kFile &&
      config.backing.file_path.size() > kMaxStorePathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool '", config.name, "': the file_path of backing file is ",
        config.backing.file_path.size(), " bytes long; at most ",
        kMaxStorePathBytes, " are recorded"));
  }
  if (const size_t bytes =
          data_dir.size() + config.name.size() + std::strlen("/.volumes");
      bytes > kMaxStorePathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool '", config.name, "': data directory ", data_dir,
        " is too long: ", "its store path DATA_DIR/NAME.volumes would be ",
        bytes, " bytes, at most ", kMaxStorePathBytes, " are recorded"));
  }
  std::error_code ec;
  if (std::filesystem::create_directories(data_dir, ec)) {
    // Pools are for the server's user only.
    std::filesystem::permissions(data_dir, std::filesystem::perms::owner_all,
                                 ec);
  }
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "create data directory ", data_dir, ": ", ec.message()));
  }
  std::unique_ptr<NamedPool> pool(new NamedPool(data_dir, config, true));
  pool->host_ = options.host;
  pool->step_hook_ = options.step_hook;
  pool->on_give_back_failed_ = options.on_give_back_failed;
  const std::string meta_path = absl::StrCat(data_dir, "/", config.name,
                                             ".pool");
  if (absl::Status s = pool->Map(meta_path, true, &options); !s.ok()) {
    return s;
  }
  if (absl::Status s = pool->Recover(); !s.ok()) return s;
  pool->IndexFreeSlots();
  if (absl::Status s = pool->OpenJournal(); !s.ok()) return s;
  return pool;
}

bool NamedPool::DataDirIsHugetlbfs() const {
  struct statfs fs;
  return statfs(data_dir_.c_str(), &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC;
}

std::string NamedPool::SharedJournalPath(
    const RequestJournal::Identity& pool_id) const {
  return SharedJournalPathOf(config_.name, pool_id);
}

uint64_t PoolFiles::held_bytes() const {
  uint64_t held = 0;
  for (const File& file : files) held += file.bytes;
  return held;
}

absl::StatusOr<std::vector<PoolFiles>> NamedPool::FindPools(
    const std::string& data_dir) {
  return FindPools(data_dir, [](absl::string_view) { return true; });
}

absl::StatusOr<std::vector<PoolFiles>> NamedPool::FindPools(
    const std::string& data_dir,
    absl::FunctionRef<bool(absl::string_view name)> wanted) {
  std::vector<std::string> names;
  DIR* dir = opendir(data_dir.c_str());
  if (dir == nullptr) return ErrnoError(absl::StrCat("list ", data_dir));
  while (const struct dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (absl::ConsumeSuffix(&name, ".pool") && ValidatePoolName(name).ok() &&
        wanted(name)) {
      names.emplace_back(name);
    }
  }
  closedir(dir);
  std::sort(names.begin(), names.end());

  // AddIfThere appends `path` to `files`, with the memory it holds, when
  // it exists.
  auto add_if_there = [](const std::string& path,
                         std::vector<PoolFiles::File>* files) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return false;
    files->push_back({path, static_cast<uint64_t>(st.st_blocks) * 512});
    return true;
  };
  std::vector<PoolFiles> pools;
  for (const std::string& name : names) {
    PoolFiles& pool = pools.emplace_back();
    pool.name = name;
    const std::string meta_path = absl::StrCat(data_dir, "/", name, ".pool");
    add_if_there(meta_path, &pool.files);
    // The fields read, each where Metadata has it (a pread each: the object
    // is an owner's shared mapping, never mapped here).
    uint64_t magic = 0;
    uint64_t layout_version = 0;
    uint64_t pool_id[2] = {0, 0};
    char store_path[sizeof(Metadata::store_path)] = {};
    const int fd = open(meta_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      pool.unreadable = std::string(ErrnoError("open it").message());
      continue;
    }
    auto read_field = [fd](void* out, size_t size, size_t offset) {
      return pread(fd, out, size, static_cast<off_t>(offset)) ==
             static_cast<ssize_t>(size);
    };
    const bool read =
        read_field(&magic, sizeof(magic), offsetof(Metadata, magic)) &&
        read_field(&layout_version, sizeof(layout_version),
                   offsetof(Metadata, layout_version)) &&
        read_field(&pool.volumes_mapped, sizeof(pool.volumes_mapped),
                   offsetof(Metadata, volumes_mapped)) &&
        read_field(store_path, sizeof(store_path),
                   offsetof(Metadata, store_path)) &&
        read_field(pool_id, sizeof(pool_id), offsetof(Metadata, pool_id));
    close(fd);
    if (!read || magic != kMetadataMagic) {
      pool.unreadable =
          "it is not a finished pool's metadata (cut short, or a creation "
          "that never finished)";
      continue;
    }
    if (layout_version != kLayoutVersion) {
      pool.unreadable = absl::StrCat("its layout version is ", layout_version,
                                     "; this build reads ", kLayoutVersion);
      continue;
    }
    store_path[sizeof(store_path) - 1] = '\0';
    if (store_path[0] != '\0') add_if_there(store_path, &pool.files);
    // DATA_DIR/NAME.requests, or the shared one of a hugetlbfs data
    // directory (OpenJournal).
    if (!add_if_there(absl::StrCat(data_dir, "/", name, ".requests"),
                      &pool.files)) {
      add_if_there(SharedJournalPathOf(name, {pool_id[0], pool_id[1]}),
                   &pool.files);
    }
  }
  return pools;
}

absl::Status NamedPool::OpenJournal() {
  // The pool's identity, drawn once (a pool made before it has none yet):
  // a journal recording another belongs to an earlier pool of this name.
  if (meta_->pool_id[0] == 0 && meta_->pool_id[1] == 0) {
    uint64_t drawn[2] = {0, 0};
    if (getrandom(drawn, sizeof(drawn), 0) != sizeof(drawn)) {
      return ErrnoError("draw a pool id (getrandom)");
    }
    meta_->pool_id[0] = drawn[0];
    meta_->pool_id[1] = drawn[1] | 1;  // never all zeros
  }
  const RequestJournal::Identity pool_id = this->pool_id();
  // DATA_DIR/NAME.requests, unless the data directory is a hugetlbfs:
  // every file there takes whole huge pages (a 1 GiB one for the journal's
  // 4.5 MiB) and has no holes, so the journal goes to the shared tmpfs
  // directory, named by the pool's id, so that pools of one name in two
  // data directories never share one.
  std::string path = absl::StrCat(data_dir_, "/", config_.name, ".requests");
  if (DataDirIsHugetlbfs()) {
    if (absl::Status s = PrepareStoreDirectory(kShmStoreDir); !s.ok()) {
      recovery_.request_journal_error = std::string(s.message());
      return absl::OkStatus();
    }
    path = SharedJournalPath(pool_id);
  }
  // An add that was in flight happened if recovery rolled it forward: its
  // slots are MAPPED with its batch now, rolled back: FREE (recovery turns
  // an uncommitted batch's slots back to ADDING before it frees any, so a
  // batch is never half of each). "Any" rather than "all": recovery frees
  // a committed volume whose header says it is not a volume, and leaves a
  // corrupt one off the stack (QUARANTINED, with its batch: a data-plane
  // pop's quarantine keeps it too); the add happened all the same.
  // Nothing else runs yet to change the slots: this owner serves no add or
  // remove before Open returns, and data planes leave slots MAPPED.
  auto committed = [this](uint64_t batch, std::span<const uint64_t> indices) {
    for (const uint64_t i : indices) {
      // Relaxed: recovery's stores were made by this thread.
      const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
      if (slot == SlotWord(kSlotMapped, batch) ||
          slot == SlotWord(kSlotQuarantined, batch)) {
        return true;
      }
    }
    return false;
  };
  absl::StatusOr<std::unique_ptr<RequestJournal>> journal =
      RequestJournal::Open(path, pool_id, config_.max_volumes,
                           // Relaxed: recovery's stores, this thread's.
                           meta_->next_batch.load(std::memory_order_relaxed),
                           committed, &recovery_.request_journal,
                           &recorded_adds_);
  if (!journal.ok()) {
    // The pool is served without one: its adds with keys are remembered
    // in memory only, as before journals existed (the server logs this).
    recovery_.request_journal_error = std::string(journal.status().message());
    recorded_adds_.clear();
    return absl::OkStatus();
  }
  journal_ = std::move(*journal);
  // A pool that has made adds (batch ids are drawn by every add) whose
  // journal is gone: removed by hand, or kept in a /dev/shm that did not
  // outlive the hugetlbfs data directory (a container's: docs/DEPLOY.md
  // §3). The ids of its earlier adds are lost as with a journal emptied,
  // and a repeat of one adds again: say so rather than take the missing
  // file for a new pool's.
  // Relaxed: recovery's stores, this thread's.
  if (!recovery_.created && recovery_.request_journal.created &&
      meta_->next_batch.load(std::memory_order_relaxed) > 1) {
    recovery_.request_journal.reset_reason = absl::StrCat(
        "it was missing (", path,
        ") though the pool has made adds: the request ids of its earlier "
        "adds are forgotten, and a repeat of one adds again; keep the "
        "journal with the data directory");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> NamedPool::VerifyRequestJournal() const {
  if (journal_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pool '", config_.name, "' has no request journal open here"));
  }
  return journal_->Verify();
}

std::vector<RecordedAdd> NamedPool::TakeRecordedAdds() {
  return std::exchange(recorded_adds_, {});
}

absl::StatusOr<std::unique_ptr<NamedPool>> NamedPool::Join(
    const std::string& data_dir, absl::string_view name) {
  if (absl::Status s = ValidatePoolName(name); !s.ok()) return s;
  PoolConfig config;
  config.name = std::string(name);
  std::unique_ptr<NamedPool> pool(new NamedPool(data_dir, config, false));
  const std::string meta_path = absl::StrCat(data_dir, "/", name, ".pool");
  if (absl::Status s = pool->Map(meta_path, false, nullptr); !s.ok()) {
    return s;
  }
  return pool;
}

absl::Status NamedPool::Map(const std::string& meta_path, bool owner,
                            const OpenOptions* options) {
  meta_fd_ = open(meta_path.c_str(), O_RDWR | O_CLOEXEC);
  // Whether this call made the object (so may remove it when it refuses).
  bool made_object = false;
  if (meta_fd_ < 0 && owner && errno == ENOENT) {
    meta_fd_ =
        open(meta_path.c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
    made_object = meta_fd_ >= 0;
    // Made by another Open meanwhile: open that one (its flock decides).
    if (meta_fd_ < 0 && errno == EEXIST) {
      meta_fd_ = open(meta_path.c_str(), O_RDWR | O_CLOEXEC);
    }
  }
  if (meta_fd_ < 0) {
    if (!owner && errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(
          "no pool '", config_.name, "' in ", data_dir_, " (", meta_path,
          " does not exist)"));
    }
    if (!owner && (errno == EACCES || errno == EPERM)) {
      return JoinPermissionError(config_.name, data_dir_, meta_path, errno);
    }
    return ErrnoError(absl::StrCat("open ", meta_path));
  }
  if (owner && flock(meta_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::AlreadyExistsError(absl::StrCat(
          "pool '", config_.name, "' in ", data_dir_,
          " is open by another owner; stop it first"));
    }
    return ErrnoError(absl::StrCat("lock ", meta_path));
  }
  if (owner) {
    // The lock is on the object we opened, which an owner that found the
    // store lost may have replaced at meta_path since (ReplaceMetadata):
    // then that owner holds the object at meta_path, and this one is
    // orphaned.
    struct stat ours, named;
    if (fstat(meta_fd_, &ours) != 0 || stat(meta_path.c_str(), &named) != 0) {
      return ErrnoError(absl::StrCat("stat ", meta_path));
    }
    if (ours.st_dev != named.st_dev || ours.st_ino != named.st_ino) {
      return absl::AlreadyExistsError(absl::StrCat(
          "pool '", config_.name, "' in ", data_dir_,
          " was replaced by another owner as this one opened it; stop it "
          "first"));
    }
  }
  struct stat st;
  struct statfs fs;
  if (fstat(meta_fd_, &st) != 0 || fstatfs(meta_fd_, &fs) != 0) {
    return ErrnoError(absl::StrCat("stat ", meta_path));
  }
  // On hugetlbfs the object's size must be a multiple of the page size.
  const uint64_t block = std::max<uint64_t>(fs.f_bsize, 4096);

  bool create = false;
  // Re-create a pool whose object has content: never in place.
  bool replace = false;
  std::string abandoned_store;
  if (owner) {
    meta_bytes_ = RoundUp(MetadataBytes(config_.max_volumes), block);
    if (st.st_size == 0) {
      create = true;
    } else {
      // Peek at the existing object to validate it before using it.
      const uint64_t existing = static_cast<uint64_t>(st.st_size);
      void* p = mmap(nullptr, existing, PROT_READ | PROT_WRITE, MAP_SHARED,
                     meta_fd_, 0);
      if (p == MAP_FAILED) return ErrnoError(absl::StrCat("map ", meta_path));
      meta_ = static_cast<Metadata*>(p);
      meta_bytes_ = existing;
      const uint64_t magic = meta_->magic.load(std::memory_order_acquire);
      std::string mismatch;
      // A magic that is no groove-volumed pool's: the object is corrupt (or
      // not ours): DATA_LOSS, so the server quarantines just this pool.
      bool foreign = false;
      uint64_t layout1_magic = 0;
      if (existing >= kLayout1MagicOffset + sizeof(layout1_magic)) {
        std::memcpy(&layout1_magic,
                    reinterpret_cast<const char*>(meta_) + kLayout1MagicOffset,
                    sizeof(layout1_magic));
      }
      // Map sizes a new object in whole pages, for at least one slot,
      // before it writes anything: any other size is damage (a file cut
      // short by a crash of its host, a partial copy), never a creation
      // that did not finish.
      const uint64_t smallest = RoundUp(MetadataBytes(1), kMetadataPageBytes);
      if (magic == 0 && layout1_magic == kLayout1MetadataMagic) {
        mismatch = absl::StrCat("it was written by an older groove-volumed "
                                "(metadata layout 1), this build reads ",
                                kLayoutVersion);
      } else if (existing % kMetadataPageBytes != 0 || existing < smallest) {
        foreign = true;
        mismatch = absl::StrCat(
            "it is ", existing, " bytes, a size no pool's metadata has (whole ",
            kMetadataPageBytes, "-byte pages, at least ", smallest,
            "): it was cut short, or is not a pool's");
      } else if (magic == 0) {
        // Creation never finished (CreateStore writes the magic last), so
        // no volume was ever added: every slot is FREE (0). A slot that is
        // not says the magic was cleared after the pool had volumes.
        const uint64_t busy = FirstUsedSlot(existing);
        if (busy == kNoSlot) {
          create = true;
        } else {
          foreign = true;
          mismatch = absl::StrCat(
              "its metadata magic (offset ", offsetof(Metadata, magic),
              ") is 0, as if its creation never finished, but slot ", busy,
              " holds 0x",
              absl::Hex(Slot(busy).load(std::memory_order_relaxed)),
              ": the pool had volumes and its magic was cleared (corrupt)");
        }
      } else if (magic != kMetadataMagic) {
        foreign = true;
        mismatch = absl::StrCat("magic 0x", absl::Hex(magic),
                                " is not a groove-volumed pool's");
      } else if (meta_->layout_version != kLayoutVersion) {
        mismatch = absl::StrCat("layout version ", meta_->layout_version,
                                ", this build reads ", kLayoutVersion);
      } else if (const uint64_t pool_magic =
                     meta_->pool.magic.load(std::memory_order_acquire);
                 pool_magic != kPoolMagic) {
        // The pool header (the stack every join maps) is no pool's: its
        // stack cannot be trusted, the pool's own magic being right.
        foreign = true;
        mismatch = absl::StrCat("its pool header (offset 0) has magic 0x",
                                absl::Hex(pool_magic), ", not 0x",
                                absl::Hex(kPoolMagic), ": it is corrupt");
      } else if (const uint64_t recorded = meta_->max_volumes;
                 recorded >= 1 && recorded <= (uint64_t{1} << 30) &&
                 existing < MetadataBytes(recorded)) {
        foreign = true;
        mismatch = absl::StrCat("it is ", existing, " bytes, shorter than the ",
                                MetadataBytes(recorded), " its max_volumes ",
                                recorded, " needs: it was cut short");
      } else if (FieldString(meta_->name) != config_.name) {
        mismatch = absl::StrCat("it records the name '",
                                FieldString(meta_->name), "'");
      } else if (meta_->volume_size_bytes != config_.volume_size_bytes) {
        mismatch = absl::StrCat("volume_size is ",
                                HumanBytes(meta_->volume_size_bytes),
                                ", configured ",
                                HumanBytes(config_.volume_size_bytes));
      } else if (meta_->max_volumes != config_.max_volumes) {
        mismatch = absl::StrCat("max_volumes is ", meta_->max_volumes,
                                ", configured ", config_.max_volumes);
      } else if (meta_->backing_requested !=
                     static_cast<uint64_t>(config_.backing.kind) ||
                 FieldString(meta_->backing_file_path) !=
                     config_.backing.file_path) {
        Backing recorded;
        recorded.kind = static_cast<BackingKind>(meta_->backing_requested);
        recorded.file_path = FieldString(meta_->backing_file_path);
        mismatch =
            absl::StrCat("backing is ", BackingToString(recorded),
                         ", configured ", BackingToString(config_.backing));
      }
      if (!mismatch.empty()) {
        if (!options->recreate) {
          return absl::Status(
              foreign ? absl::StatusCode::kDataLoss
                      : absl::StatusCode::kFailedPrecondition,
              absl::StrCat(
                  "pool '", config_.name, "': refusing to load ", meta_path,
                  ": ", mismatch,
                  ". Its volumes may hold live data; ",
                  foreign ? "move the file aside (it is kept for forensics), "
                          : "fix the configuration, ",
                  "or re-create the pool (losing its volumes) with "
                  "--recreate"));
        }
        create = true;
      }
      if (create && (magic == kMetadataMagic || magic == 0) &&
          existing >= sizeof(Metadata)) {
        // The store of the pool being re-created (or of the creation that
        // never finished), removed once the new one exists.
        abandoned_store = FieldString(meta_->store_path);
      }
      // The old object stays mapped: ReplaceMetadata builds the new pool
      // beside it, since data-plane joins may still map it.
      replace = create;
    }
    if (create && !options->recreate) {
      if (absl::Status s = RefuseToCreateOverAStore(meta_path); !s.ok()) {
        if (made_object) unlink(meta_path.c_str());  // as it was: none
        return s;
      }
    }
    if (create) recovery_.created = true;
    // An empty object (just made, or emptied): nobody can have joined it;
    // it is sized and formatted in place.
    if (create && !replace &&
        ftruncate(meta_fd_, static_cast<off_t>(meta_bytes_)) != 0) {
      return ErrnoError(absl::StrCat("size ", meta_path));
    }
  } else {
    meta_bytes_ = static_cast<uint64_t>(st.st_size);
    if (meta_bytes_ < kSlotTableOffset) {
      return absl::FailedPreconditionError(IncompleteJoinMessage(
          meta_path,
          absl::StrCat("it is ", meta_bytes_, " bytes, not yet sized")));
    }
  }

  if (meta_ == nullptr) {
    void* p = mmap(nullptr, meta_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED,
                   meta_fd_, 0);
    if (p == MAP_FAILED) return ErrnoError(absl::StrCat("map ", meta_path));
    meta_ = static_cast<Metadata*>(p);
  }

  if (replace) {
    if (absl::Status s = ReplaceMetadata(meta_path, block, *options); !s.ok()) {
      return s;
    }
    RemoveAbandonedStore(abandoned_store);
  } else if (create) {
    if (absl::Status s = CreateStore(*options); !s.ok()) return s;
    RemoveAbandonedStore(abandoned_store);
  } else {
    if (!owner) {
      if (meta_->magic.load(std::memory_order_acquire) != kMetadataMagic) {
        return absl::FailedPreconditionError(IncompleteJoinMessage(
            meta_path, "its metadata magic is not written yet"));
      }
      // Checked before anything else is read: another layout gives the
      // fields and the stack other meanings (layouts 2 and 3 share the
      // magic, and a layout-3 join of a layout-2 pool would push and pop
      // by the wrong conventions).
      if (meta_->layout_version != kLayoutVersion) {
        return absl::FailedPreconditionError(absl::StrCat(
            "pool '", config_.name, "': ", meta_path, " has metadata layout ",
            meta_->layout_version, ", this data plane reads layout ",
            kLayoutVersion,
            ": its owner (groove-volumed) is of another version; run a data "
            "plane built from the owner's version, or upgrade the owner "
            "and let it re-create the pool"));
      }
      // A metadata object renamed or copied under another name: the owner
      // of NAME would refuse it too, and its store is another pool's.
      if (const std::string recorded = FieldString(meta_->name);
          recorded != config_.name) {
        return absl::FailedPreconditionError(absl::StrCat(
            "pool '", config_.name, "': ", meta_path,
            " records the pool name '", recorded,
            "': it was renamed or copied from another pool; join '", recorded,
            "' in the directory its owner serves, or give the "
            "file back its name"));
      }
      config_.volume_size_bytes = meta_->volume_size_bytes;
      config_.max_volumes = meta_->max_volumes;
      config_.backing.kind =
          static_cast<BackingKind>(meta_->backing_requested);
      config_.backing.file_path = FieldString(meta_->backing_file_path);
      // Checked as Open checks a configuration, before they size anything
      // (MetadataBytes would overflow).
      if (!IsPowerOfTwo(config_.volume_size_bytes) ||
          config_.volume_size_bytes < kVolumeMinFootprint ||
          config_.max_volumes == 0 ||
          config_.max_volumes > (uint64_t{1} << 30) ||
          !SpanFits(config_.volume_size_bytes, config_.max_volumes)) {
        return absl::FailedPreconditionError(absl::StrCat(
            meta_path, " records volume_size ", config_.volume_size_bytes,
            " and max_volumes ", config_.max_volumes,
            ": not a pool's geometry (corrupt; a pool's store holds at most ",
            kMaxSpanBytes, " bytes)"));
      }
      if (meta_bytes_ < MetadataBytes(config_.max_volumes)) {
        return absl::FailedPreconditionError(
            absl::StrCat(meta_path, " is truncated"));
      }
    }
    // The backing in use and its page size size the reservation and
    // align every volume: a page of 0 would divide by zero, a page that
    // does not divide the volume size would misalign the volumes.
    const auto in_use = static_cast<BackingKind>(meta_->backing_in_use);
    const uint64_t page = meta_->page_size_bytes;
    if (in_use == BackingKind::kAuto ||
        meta_->backing_in_use > static_cast<uint64_t>(BackingKind::kFile) ||
        page != BackingPageBytes(in_use) ||
        config_.volume_size_bytes % page != 0) {
      return absl::Status(
          owner ? absl::StatusCode::kDataLoss
                : absl::StatusCode::kFailedPrecondition,
          absl::StrCat("pool '", config_.name, "': ", meta_path,
                       " records backing ", meta_->backing_in_use, " with ",
                       page, "-byte pages for volumes of ",
                       HumanBytes(config_.volume_size_bytes),
                       ": the metadata is corrupt"));
    }
    if (absl::Status s = OpenStore(owner, options); !s.ok()) return s;
    if (recovery_.store_lost) {
      if (absl::Status s = ReplaceMetadata(meta_path, block, *options);
          !s.ok()) {
        return s;
      }
    }
  }

  // A data-plane join cannot see adds happen: it maps the whole store, at
  // an address aligned to the store's page size. The owner maps nothing:
  // it reaches headers with pread and pwrite (the header hooks below), so
  // it has no page-table entry for any volume and giving one back costs no
  // TLB shootdown (docs/ARCHITECTURE.md §9, "Volume memory").
  VolumePool::Hooks hooks;
  if (!owner) {
    const uint64_t page = store_->page_bytes();
    const uint64_t span = config_.max_volumes * config_.volume_size_bytes;
    reservation_bytes_ = span + page;
    void* r = mmap(nullptr, reservation_bytes_, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) {
      reservation_ = nullptr;
      return ErrnoError(absl::StrCat("reserve ", HumanBytes(span),
                                     " of address space for pool '",
                                     config_.name, "'"));
    }
    reservation_ = static_cast<std::byte*>(r);
    volume0_ = reinterpret_cast<std::byte*>(
        RoundUp(reinterpret_cast<uintptr_t>(reservation_), page));
    if (absl::Status s = store_->MapFixed(volume0_, 0, span); !s.ok()) {
      return s;
    }
    // Verify's walk reads headers of volumes the join has not popped, one
    // of which the owner may be removing: read through the mapping, its
    // punched page would be faulted back into the store (tmpfs: memory
    // held; hugetlbfs: a hugepage taken, or SIGBUS). pread reads the hole
    // as zeros (shmem and hugetlbfs read_iter alike) and allocates
    // nothing; Acquire and Release keep using the mapping.
    hooks.read_header = &NamedPool::ReadHeaderHook;
    // Release refuses a volume whose slot says it has no memory (FREE,
    // ADDING, REMOVING) before it reads its header (see Hooks).
    static_assert(VolumePool::kVolumeStateBits == kSlotStateBits);
    hooks.volume_states = &Slot(0);
    hooks.releasable_states = (uint64_t{1} << kSlotPushing) |
                              (uint64_t{1} << kSlotMapped) |
                              (uint64_t{1} << kSlotQuarantined);
  } else {
    hooks.read_header = &NamedPool::ReadHeaderHook;
    hooks.write_header = &NamedPool::WriteHeaderHook;
  }
  // The stack's links live in the metadata object, which is never given
  // back: a pop racing a removal then never reads the removed volume.
  hooks.on_tagged_pop = &NamedPool::ConfirmPushed;
  hooks.on_announced_pop = &NamedPool::RecordAnnouncedPop;
  hooks.on_quarantined_pop = &NamedPool::RecordQuarantine;
  hooks.arg = this;
  absl::StatusOr<VolumePool> joined = VolumePool::Join(
      &meta_->pool, volume0_, config_.max_volumes, config_.volume_size_bytes,
      &Slot(config_.max_volumes), hooks);
  if (!joined.ok()) return joined.status();
  pool_.emplace(*joined);
  if (step_hook_) {
    // Tests: steps inside a push or pop ("stack:linked": between the link
    // and the CAS; "stack:announced": a pop announced, not completed). A
    // verify's walk and a spin on the maintenance lock are no such steps.
    pool_->SetTestHookForTesting(
        [](void* arg, VolumePool::TestPoint point) {
          if (point == VolumePool::TestPoint::kBeforeCas) {
            static_cast<NamedPool*>(arg)->Step("stack:linked");
          } else if (point == VolumePool::TestPoint::kAnnounced) {
            static_cast<NamedPool*>(arg)->Step("stack:announced");
          }
        },
        this);
  }
  return absl::OkStatus();
}

void NamedPool::ConfirmPushed(void* self, uint64_t index, uint64_t tag) {
  const NamedPool& pool = *static_cast<NamedPool*>(self);
  std::atomic<uint64_t>& slot = pool.Slot(index);
  // Relaxed: the caller's pop CAS (acq_rel) publishes the new slot word to
  // whoever sees the volume off the stack; recovery reads it under the
  // maintenance lock, which it takes with an acquire CAS on the same top.
  uint64_t word = slot.load(std::memory_order_relaxed);
  if (StateOf(word) == kSlotPushing && (BatchOf(word) & kLinkTagMask) == tag) {
    slot.compare_exchange_strong(word, SlotWord(kSlotMapped, BatchOf(word)),
                                 std::memory_order_relaxed);
  }
}

void NamedPool::RecordAnnouncedPop(void* self, uint64_t index,
                                   uint64_t announced_top) {
  const NamedPool& pool = *static_cast<NamedPool*>(self);
  std::atomic<uint64_t>& slot = pool.Slot(index);
  const std::atomic<uint64_t>& ver_top = pool.pool_->header()->ver_top;
  // Acquire (here and on a failed CAS): the re-read of the top below must
  // not be hoisted above the read of `word`. The completing CAS publishes
  // the new word (as in ConfirmPushed).
  uint64_t word = slot.load(std::memory_order_acquire);
  for (;;) {
    const SlotState state = StateOf(word);
    // REMOVING: recorded already. QUARANTINED: a quarantined volume
    // pushed back onto the stack (a data-plane Release against its
    // contract), the pool's again (recovery would make it MAPPED): the
    // remove takes it like any other, and so must record it, or a reclaim
    // could free the slot under the remove (and a crash would leave a
    // quarantine of a punched volume). Anything else: a corrupt slot
    // table, which Verify and recovery report; left as is.
    if (state != kSlotPushing && state != kSlotMapped &&
        state != kSlotQuarantined) {
      return;
    }
    // Act only while the pop is still announced: `word` was then read
    // while the volume was on the stack in this life (its slot changes
    // life only after it leaves the stack), and slot words of different
    // lives differ (their batch), so the CAS cannot hit a later life. If
    // the pop is complete, its completer recorded it before completing.
    if (ver_top.load(std::memory_order_relaxed) != announced_top) return;
    if (slot.compare_exchange_weak(word, SlotWord(kSlotRemoving, 0),
                                   std::memory_order_acquire)) {
      if (state == kSlotQuarantined) pool.UncountQuarantine();
      return;
    }
  }
}

void NamedPool::UncountQuarantine() const {
  // Relaxed: a statistic. Stops at 0 rather than wrap: a data-plane
  // process killed between its quarantine's slot and its count left it one
  // short (until recovery).
  uint64_t in_quarantine =
      meta_->volumes_in_quarantine.load(std::memory_order_relaxed);
  while (in_quarantine > 0 &&
         !meta_->volumes_in_quarantine.compare_exchange_weak(
             in_quarantine, in_quarantine - 1, std::memory_order_relaxed)) {
  }
}

void NamedPool::RecordQuarantine(void* self, uint64_t index) {
  const NamedPool& pool = *static_cast<NamedPool*>(self);
  const Metadata& meta = *pool.meta_;
  // Relaxed: a hint of which build owns the pool (see Metadata).
  if (!pool.owner_ &&
      meta.quarantine_owner_pid.load(std::memory_order_relaxed) !=
          meta.owner_pid.load(std::memory_order_relaxed)) {
    return;
  }
  std::atomic<uint64_t>& slot = pool.Slot(index);
  uint64_t word = slot.load(std::memory_order_relaxed);
  // The volume is off the stack and this thread's: only a late
  // ConfirmPushed or an add's MarkPushed (PUSHING -> MAPPED) can change
  // the word meanwhile, so the loop ends at once.
  while (StateOf(word) == kSlotMapped || StateOf(word) == kSlotPushing) {
    // Release: see the header comment; relaxed on failure (retried).
    if (slot.compare_exchange_weak(
            word, SlotWord(kSlotQuarantined, BatchOf(word)),
            std::memory_order_release, std::memory_order_relaxed)) {
      // Relaxed: a statistic, never used to synchronize.
      pool.meta_->volumes_in_quarantine.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

absl::Status NamedPool::CreateStore(const OpenOptions& options) {
  // Decide the backing.
  const uint64_t size = config_.volume_size_bytes;
  BackingKind kind = config_.backing.kind;
  if (kind == BackingKind::kAuto) {
    kind = BackingKind::kNormal;
    for (BackingKind candidate : {BackingKind::kGigantic, BackingKind::kHuge}) {
      const uint64_t page = BackingPageBytes(candidate);
      absl::StatusOr<HugepagePool> pages = host_.Hugepages(page);
      if (size % page == 0 && pages.ok() && pages->free >= size / page) {
        kind = candidate;
        break;
      }
    }
  } else if (kind == BackingKind::kGigantic || kind == BackingKind::kHuge) {
    const uint64_t page = BackingPageBytes(kind);
    absl::StatusOr<HugepagePool> pages = host_.Hugepages(page);
    if (!pages.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pool '", config_.name, "': backing ", BackingKindName(kind),
          " cannot be had: ", pages.status().message(),
          "; use backing=huge, normal or auto"));
    }
    if (size % page != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pool '", config_.name, "': volume_size ", HumanBytes(size),
          " is not a multiple of the ", HumanBytes(page),
          " page of backing ", BackingKindName(kind)));
    }
  }
  const uint64_t page = BackingPageBytes(kind);

  // Decide and create the store file.
  std::string store_path;
  int fd = -1;
  std::string description;
  if (kind == BackingKind::kFile) {
    store_path = config_.backing.file_path;
  } else if (kind == BackingKind::kNormal) {
    struct statfs fs;
    if (statfs(data_dir_.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
      store_path = absl::StrCat(data_dir_, "/", config_.name, ".volumes");
    } else {
      // Normal pages live on tmpfs: the shared kShmStoreDir.
      if (absl::Status s = PrepareStoreDirectory(kShmStoreDir); !s.ok()) {
        return s;
      }
      absl::StatusOr<int> created =
          CreateTaggedStore(kShmStoreDir, "", &store_path);
      if (!created.ok()) return created.status();
      fd = *created;
    }
  } else {
    std::optional<HugetlbMount> mount =
        host_.FindHugetlbMount(page, data_dir_);
    if (mount.has_value()) {
      // The data directory is on the mount: the store goes beside the
      // metadata. Else the mount is shared: a tagged name.
      if (PathIsWithin(data_dir_, mount->path)) {
        store_path = absl::StrCat(data_dir_, "/", config_.name, ".volumes");
      } else {
        absl::StatusOr<int> created =
            CreateTaggedStore(mount->path, kMountStorePrefix, &store_path);
        if (!created.ok()) return created.status();
        fd = *created;
      }
    } else {
      const unsigned flags =
          MFD_CLOEXEC | MFD_HUGETLB |
          (kind == BackingKind::kGigantic ? MFD_HUGE_1GB : MFD_HUGE_2MB);
      fd = memfd_create(absl::StrCat("groove-", config_.name).c_str(), flags);
      if (fd < 0) {
        return ErrnoError(absl::StrCat(
            "pool '", config_.name, "': no hugetlbfs mount serves ",
            HumanBytes(page), " pages and memfd_create(MFD_HUGETLB) failed; "
            "mount one: mount -t hugetlbfs -o pagesize=",
            page >> 20, "M none DIR"));
      }
      description = "hugetlb memfd";
    }
  }
  if (fd < 0) {
    // The configured file:PATH, or DATA_DIR/NAME.volumes: this pool's name
    // in this data directory, whose metadata we hold locked.
    fd = open(store_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError(absl::StrCat("create ", store_path));
    description = store_path;
    if (absl::Status s = LockStore(fd, config_.name, description); !s.ok()) {
      close(fd);
      return s;
    }
    // A new pool starts with an empty store: drop whatever was there.
    if (ftruncate(fd, 0) != 0) {
      const absl::Status s = ErrnoError(absl::StrCat("truncate ", store_path));
      close(fd);
      return s;
    }
  }
  if (description.empty()) description = store_path;
  const uint64_t span = config_.max_volumes * size;
  if (ftruncate(fd, static_cast<off_t>(span)) != 0) {
    const absl::Status s = ErrnoError(
        absl::StrCat("size ", description, " to ", HumanBytes(span)));
    close(fd);
    return s;
  }
  RememberStoreFile(fd);
  store_ = std::make_unique<FdVolumeStore>(fd, page, description,
                                           kind == BackingKind::kNormal);
  if (options.wrap_store) store_ = options.wrap_store(std::move(store_));

  // Record the configuration, then format the pool, then the magic.
  Metadata* m = meta_;
  m->layout_version = kLayoutVersion;
  m->volume_size_bytes = size;
  m->max_volumes = config_.max_volumes;
  m->backing_requested = static_cast<uint64_t>(config_.backing.kind);
  m->backing_in_use = static_cast<uint64_t>(kind);
  m->page_size_bytes = page;
  m->owner_pid.store(getpid(), std::memory_order_relaxed);
  m->quarantine_owner_pid.store(getpid(), std::memory_order_relaxed);
  m->store_memfd.store(store_path.empty() ? fd : -1,
                       std::memory_order_relaxed);
  m->next_batch.store(1, std::memory_order_relaxed);
  m->volumes_mapped.store(0, std::memory_order_relaxed);
  m->volumes_in_quarantine.store(0, std::memory_order_relaxed);
  m->volumes_reclaimed.store(0, std::memory_order_relaxed);
  m->replaced.store(0, std::memory_order_relaxed);
  m->pool_id[0] = m->pool_id[1] = 0;  // drawn by OpenJournal
  CopyField(m->name, config_.name);
  CopyField(m->backing_file_path, config_.backing.file_path);
  CopyField(m->store_path, store_path);
  VolumePool::Format(&m->pool);
  // Release: a joiner that acquires the magic sees all of the above.
  m->magic.store(kMetadataMagic, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status NamedPool::UnlinkStoresReusedInPlace() const {
  for (const std::string& path : StoresReusedInPlace()) {
    // A file:PATH may be a symlink: the file it names is the store (the
    // link stays, and the creation makes a new file through it).
    char real[PATH_MAX];
    if (realpath(path.c_str(), real) == nullptr) {
      if (errno == ENOENT) continue;
      return ErrnoError(absl::StrCat("resolve volume store ", path));
    }
    const int fd = open(real, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      return ErrnoError(absl::StrCat("open volume store ", path));
    }
    // Another owner's store (one file:PATH configured twice) stays.
    absl::Status s = LockStore(fd, config_.name, path);
    if (s.ok() && unlink(real) != 0) {
      s = ErrnoError(absl::StrCat("remove volume store ", path));
    }
    close(fd);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<std::string> NamedPool::StoresReusedInPlace() const {
  std::vector<std::string> paths = {
      absl::StrCat(data_dir_, "/", config_.name, ".volumes")};
  if (config_.backing.kind == BackingKind::kFile) {
    paths.push_back(config_.backing.file_path);
  }
  return paths;
}

absl::Status NamedPool::RefuseToCreateOverAStore(
    const std::string& meta_path) const {
  for (const std::string& path : StoresReusedInPlace()) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    const bool has_data = fstat(fd, &st) == 0 && st.st_blocks != 0;
    // A store another owner holds is that owner's: ALREADY_EXISTS, as
    // CreateStore would say.
    const absl::Status held = LockStore(fd, config_.name, path);
    close(fd);  // drops the lock, if taken
    if (!held.ok()) return held;
    if (!has_data) continue;
    return absl::DataLossError(absl::StrCat(
        "pool '", config_.name, "': refusing to create it: its metadata ",
        meta_path, " is empty or was never completed, but the volume store ",
        path, " it would reuse holds ",
        HumanBytes(uint64_t(st.st_blocks) * 512),
        " of data that may be live volumes (was the metadata cut short, or "
        "deleted by hand?). Move both files aside (they are kept for "
        "forensics), or create the pool anew, emptying the store, with "
        "--recreate"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> NamedPool::CreateTaggedStore(const std::string& dir,
                                                 absl::string_view prefix,
                                                 std::string* path) {
  // A collision of two 64-bit tags is not expected; O_EXCL makes one
  // harmless (another tag is drawn), never a second user of a store.
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint64_t tag = 0;
    if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag)) {
      return ErrnoError("draw a volume store tag (getrandom)");
    }
    *path =
        absl::StrCat(dir, "/", SharedStoreFileName(prefix, config_.name, tag));
    if (path->size() > kMaxStorePathBytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pool '", config_.name, "': its volume store would be ", *path,
          ", longer than the ", kMaxStorePathBytes,
          " bytes the metadata records; mount the hugetlbfs on a shorter "
          "path"));
    }
    // Recorded before the file exists: a creation that dies from here on
    // leaves its path in the metadata, and the next one removes the file
    // (RemoveAbandonedStore).
    CopyField(meta_->store_path, *path);
    const int fd =
        open(path->c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
             0600);
    if (fd >= 0) {
      if (absl::Status s = LockStore(fd, config_.name, *path); !s.ok()) {
        close(fd);
        return s;
      }
      return fd;
    }
    if (errno != EEXIST) return ErrnoError(absl::StrCat("create ", *path));
  }
  return absl::InternalError(
      absl::StrCat("pool '", config_.name,
                   "': could not create a volume store of a new "
                   "name in ",
                   dir, " (every name drawn exists)"));
}

bool NamedPool::IsTaggedStorePath(const std::string& store_path) const {
  const std::filesystem::path path(store_path);
  const std::string dir = path.parent_path().string();
  const std::string file = path.filename().string();
  bool tagged = false;
  if (dir == kShmStoreDir) {
    return IsSharedStoreFileName(file, "", config_.name, &tagged) && tagged;
  }
  for (const HugetlbMount& mount : host_.HugetlbMounts()) {
    if (dir == mount.path) {
      return IsSharedStoreFileName(file, kMountStorePrefix, config_.name,
                                   &tagged) &&
             tagged;
    }
  }
  return false;
}

void NamedPool::RemoveAbandonedStore(const std::string& old_path) {
  if (old_path.empty() || old_path == FieldString(meta_->store_path) ||
      !IsTaggedStorePath(old_path)) {
    return;
  }
  const int fd = open(old_path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;  // gone already
  // Another owner holding it (a copy of this data directory) keeps it.
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) unlink(old_path.c_str());
  close(fd);
}

absl::Status NamedPool::CheckStorePath(const std::string& store_path) const {
  const auto kind = static_cast<BackingKind>(meta_->backing_in_use);
  const std::filesystem::path path(store_path);
  const std::string own = absl::StrCat(config_.name, ".volumes");
  const std::string dir = path.parent_path().string();
  std::string expected;
  if (kind == BackingKind::kFile) {
    expected = config_.backing.file_path;
    if (store_path == expected) return absl::OkStatus();
  } else {
    // The data directory by identity (device and inode), not by spelling:
    // "--data-dir=/var/lib/groove/" names the same one as ".../groove".
    struct stat a, b;
    const bool in_data_dir = path.filename() == own &&
                             stat(dir.c_str(), &a) == 0 &&
                             stat(data_dir_.c_str(), &b) == 0 &&
                             a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (in_data_dir) return absl::OkStatus();
    expected = absl::StrCat(data_dir_, "/", own);
    bool tagged = false;
    const std::string file = path.filename().string();
    if (kind == BackingKind::kNormal) {
      // Compared as text: the directory may be gone (a cleared /dev/shm),
      // which OpenStore recovers from.
      if (dir == kShmStoreDir &&
          IsSharedStoreFileName(file, "", config_.name, &tagged)) {
        return absl::OkStatus();
      }
      absl::StrAppend(&expected, " or ", kShmStoreDir, "/", config_.name,
                      "@TAG.volumes");
    } else {
      const std::optional<HugetlbMount> mount =
          host_.FindHugetlbMount(meta_->page_size_bytes, data_dir_);
      if (mount.has_value()) {
        if (dir == mount->path &&
            IsSharedStoreFileName(file, kMountStorePrefix, config_.name,
                                  &tagged)) {
          return absl::OkStatus();
        }
        absl::StrAppend(&expected, " or ", mount->path, "/", kMountStorePrefix,
                        config_.name, "@TAG.volumes");
      }
    }
  }
  return absl::DataLossError(absl::StrCat(
      "pool '", config_.name, "': the metadata records the volume store ",
      store_path, ", which is not where this server keeps that pool's store (",
      expected,
      "): the metadata is corrupt or was written by someone else; refusing "
      "to open, create or resize a file it names"));
}

absl::Status NamedPool::ReplaceMetadata(const std::string& meta_path,
                                        uint64_t block,
                                        const OpenOptions& options) {
  // The previous owner is gone (we hold the flock), so nothing will ever
  // release a maintenance lock it held on the old pool, on which the old
  // joins' blocking calls would spin for ever (data-plane joins never
  // lock). Release it, as recovery does, if the old object is a pool of
  // the geometry it records (a re-created one may be anything).
  const uint64_t old_max = meta_->max_volumes;
  const uint64_t old_size = meta_->volume_size_bytes;
  VolumePool::Hooks no_io;
  no_io.read_header = [](void*, uint64_t, VolumeHeader*) { return false; };
  no_io.write_header = [](void*, uint64_t, uint64_t, const void*, uint64_t) {
    return false;
  };
  if (meta_->magic.load(std::memory_order_acquire) == kMetadataMagic &&
      old_max >= 1 && old_max <= (uint64_t{1} << 30) &&
      meta_bytes_ >= MetadataBytes(old_max)) {
    if (absl::StatusOr<VolumePool> old = VolumePool::Join(
            &meta_->pool, nullptr, old_max, old_size, &Slot(old_max), no_io);
        old.ok() && old->IsLocked()) {
      recovery_.lock_was_held = true;
      old->Unlock();
    }
  }

  // The new pool is made beside the old one and renamed over it.
  const std::string temp = absl::StrCat(meta_path, ".new");
  const int fd =
      open(temp.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(absl::StrCat("create ", temp));
  // Locked before anyone can find it at meta_path: an owner that opens it
  // after the rename must find it owned.
  const uint64_t bytes = RoundUp(MetadataBytes(config_.max_volumes), block);
  void* p = MAP_FAILED;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, 0) != 0 ||
      ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
      (p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
          MAP_FAILED) {
    const absl::Status s = ErrnoError(absl::StrCat("ready ", temp));
    close(fd);
    unlink(temp.c_str());
    return s;
  }
  Metadata* const old = meta_;
  const uint64_t old_bytes = meta_bytes_;
  // A garbage object's id is no journal's name; unlinking it is harmless.
  const RequestJournal::Identity old_pool_id{
      old_bytes >= sizeof(Metadata) ? old->pool_id[0] : 0,
      old_bytes >= sizeof(Metadata) ? old->pool_id[1] : 0};
  meta_ = static_cast<Metadata*>(p);
  meta_bytes_ = bytes;
  // Marked before the old store's path can name the new pool's store: a
  // join that opened the old object and then opens that path refuses the
  // pair (Map). Restored if the replacement fails, when the old object
  // stays the pool. Seq_cst, as the join's load: ordered before the
  // unlink and the store's creation below, which the join's open sees.
  const bool old_has_mark = old_bytes >= sizeof(Metadata);
  const uint64_t old_mark =
      old_has_mark
          ? old->replaced.exchange(kReplacedMark, std::memory_order_seq_cst)
          : 0;
  // A store the creation would reuse in place is the old pool's, which
  // its joins map: the new pool gets a new file.
  absl::Status s = UnlinkStoresReusedInPlace();
  // From here whatever stands at an in-place path is this replacement's.
  const bool in_place_made_here = s.ok();
  if (s.ok()) s = CreateStore(options);
  // The commit point: from here joins find the new pool at meta_path.
  if (s.ok() && rename(temp.c_str(), meta_path.c_str()) != 0) {
    s = ErrnoError(absl::StrCat("rename ", temp, " to ", meta_path));
  }
  if (!s.ok()) {
    // The new store, if CreateStore got as far as naming it: only the
    // temporary metadata records it, so nobody else would ever remove it.
    const std::string made = FieldString(meta_->store_path);
    store_.reset();  // drops its lock
    munmap(meta_, meta_bytes_);
    meta_ = old;
    meta_bytes_ = old_bytes;
    // Seq_cst: as the mark (a join that sees the old object whole again).
    if (old_has_mark) {
      old->replaced.store(old_mark, std::memory_order_seq_cst);
    }
    close(fd);
    unlink(temp.c_str());
    RemoveAbandonedStore(made);  // a tagged name of this pool's only
    // And a new file at an in-place path, which would pair the old
    // metadata with an empty store (DATA_LOSS at the next start): without
    // it the old pool's store is lost, and the next Open replaces it.
    if (in_place_made_here) {
      for (const std::string& path : StoresReusedInPlace()) {
        char real[PATH_MAX];
        if (realpath(path.c_str(), real) != nullptr) unlink(real);
      }
    }
    return s;
  }
  munmap(old, old_bytes);
  // The old pool's request journal, where it is named by the old pool's id
  // (a hugetlbfs data directory): nothing would ever open it again. (At
  // DATA_DIR/NAME.requests, OpenJournal empties it as another pool's.)
  if ((old_pool_id.high != 0 || old_pool_id.low != 0) && DataDirIsHugetlbfs()) {
    unlink(SharedJournalPath(old_pool_id).c_str());
  }
  close(meta_fd_);  // the old object's lock: nobody can open it any more
  meta_fd_ = fd;
  return absl::OkStatus();
}

std::string NamedPool::IncompleteJoinMessage(const std::string& meta_path,
                                             absl::string_view what) const {
  return absl::StrCat(
      "pool '", config_.name, "' in ", data_dir_,
      " is being created: ", meta_path, " is not complete (", what,
      "); join again once its owner (groove-volumed) serves the pool (if "
      "none is running, its creation never finished: start it)");
}

absl::Status NamedPool::CheckNotReplaced() const {
  // Seq_cst: pairs with ReplaceMetadata's mark, which comes before the
  // unlink and the creation of a store this join's open may have found.
  if (meta_->replaced.load(std::memory_order_seq_cst) != kReplacedMark) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat(
      "pool '", config_.name, "' in ", data_dir_,
      " was re-created (or its lost volume store replaced) by its owner as "
      "this process joined it: the metadata it opened is the old pool's, "
      "and the store it found may be the new one's; join again"));
}

absl::Status NamedPool::OpenStore(bool owner, const OpenOptions* options) {
  const std::string store_path = FieldString(meta_->store_path);
  const auto kind = static_cast<BackingKind>(meta_->backing_in_use);
  const uint64_t page = meta_->page_size_bytes;
  int fd = -1;
  std::string description = store_path;
  // The owner opens, creates if missing, sizes and punches holes in the
  // file the metadata names: a metadata file pointing anywhere else would
  // make it do so to any file it can write (docs/SECURITY.md section 5).
  if (owner && !store_path.empty()) {
    if (absl::Status s = CheckStorePath(store_path); !s.ok()) return s;
  }
  if (!store_path.empty()) {
    fd = open(store_path.c_str(), O_RDWR | O_CLOEXEC);
    const int open_errno = errno;
    if (!owner) {
      // After the open: a re-creation marks this object before the path
      // can name its new store (ReplaceMetadata).
      if (absl::Status s = CheckNotReplaced(); !s.ok()) {
        if (fd >= 0) close(fd);
        return s;
      }
      if (fd < 0 && (open_errno == EACCES || open_errno == EPERM)) {
        return JoinPermissionError(config_.name, data_dir_, store_path,
                                   open_errno);
      }
      if (fd < 0 && open_errno == ENOENT) {
        return absl::FailedPreconditionError(absl::StrCat(
            "pool '", config_.name, "' in ", data_dir_, ": its volume store ",
            store_path,
            " is gone (deleted under its owner, or its directory was "
            "cleared), and its volumes with it; drain the pool's users and "
            "restart its owner (groove-volumed), which starts the pool "
            "empty, then join again"));
      }
    }
    if (fd < 0) {
      errno = open_errno;
      if (errno != ENOENT || !owner) {
        return ErrnoError(absl::StrCat("open volume store ", store_path));
      }
      // The store is gone (e.g. /dev/shm was cleared): its volumes too.
      // Map replaces the pool (ReplaceMetadata).
      recovery_.store_lost = true;
      return absl::OkStatus();
    }
    if (owner) {
      if (absl::Status s = LockStore(fd, config_.name, description); !s.ok()) {
        close(fd);
        return s;
      }
    }
  } else {
    const int64_t pid = meta_->owner_pid.load(std::memory_order_relaxed);
    const int64_t memfd = meta_->store_memfd.load(std::memory_order_relaxed);
    description = "hugetlb memfd";
    if (!owner) {
      const std::string path = absl::StrCat("/proc/", pid, "/fd/", memfd);
      fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "pool '", config_.name, "' lives in a hugetlb memfd of process ",
            pid, " (", path, "), which cannot be opened: ",
            std::strerror(errno), "; is the owner running?"));
      }
      // The pid may have been reused since the owner died: the file must
      // be the memfd the owner made, or the join would map (and its
      // Acquire write headers into) another process's file. What the fd
      // we opened is, not what the path names now.
      struct statfs fs;
      const uint64_t fs_type =
          fstatfs(fd, &fs) == 0 ? static_cast<uint64_t>(fs.f_type) : 0;
      char link[256];
      const ssize_t link_bytes = readlink(
          absl::StrCat("/proc/self/fd/", fd).c_str(), link, sizeof(link));
      const std::string link_name =
          link_bytes > 0 ? std::string(link, static_cast<size_t>(link_bytes))
                         : std::string();
      if (absl::Status s =
              CheckOwnerMemfd(config_.name, pid, memfd, fs_type, link_name);
          !s.ok()) {
        close(fd);
        return s;
      }
    } else {
      // The memfd died with the previous owner; so did its volumes. Map
      // replaces the pool (ReplaceMetadata).
      recovery_.store_lost = true;
      return absl::OkStatus();
    }
  }
  // Every volume is read through a mapping of the store: a store shorter
  // than the pool's span (cut short, or metadata that records another
  // geometry) would fault (SIGBUS) the first read past its end.
  struct stat st;
  if (fstat(fd, &st) == 0 &&
      static_cast<uint64_t>(st.st_size) <
          meta_->max_volumes * meta_->volume_size_bytes) {
    close(fd);
    return absl::Status(
        owner ? absl::StatusCode::kDataLoss
              : absl::StatusCode::kFailedPrecondition,
        absl::StrCat("pool '", config_.name, "': volume store ", description,
                     " is ", st.st_size, " bytes, but ", meta_->max_volumes,
                     " volumes of ", HumanBytes(meta_->volume_size_bytes),
                     " need ", meta_->max_volumes * meta_->volume_size_bytes,
                     ": it was cut short"));
  }
  if (owner) {
    // Relaxed, both: a data-plane join compares them as a hint of which
    // build owns the pool (RecordQuarantine), nothing is read through them.
    meta_->owner_pid.store(getpid(), std::memory_order_relaxed);
    meta_->quarantine_owner_pid.store(getpid(), std::memory_order_relaxed);
    // A mark a re-creation killed before its rename left on the object
    // it was replacing, which this owner serves: joins may pair it with
    // its store again. Relaxed: joins find the object through the file
    // system after Open returns.
    if (meta_->replaced.load(std::memory_order_relaxed) != 0) {
      meta_->replaced.store(0, std::memory_order_relaxed);
    }
  }
  RememberStoreFile(fd);
  store_ = std::make_unique<FdVolumeStore>(fd, page, description,
                                           kind == BackingKind::kNormal);
  if (options != nullptr && options->wrap_store) {
    store_ = options->wrap_store(std::move(store_));
  }
  return absl::OkStatus();
}

// ---- Recovery --------------------------------------------------------------

absl::Status NamedPool::Recover() {
  const VolumePool& pool = *pool_;
  // Counter shards of processes that died without giving them back (a
  // crashed owner, a killed data-plane process) would otherwise stay taken.
  pool.ReclaimDeadCounterShards();
  if (pool.IsLocked()) {
    // Data-plane joins never lock: the previous owner died holding it.
    recovery_.lock_was_held = true;
  } else {
    pool.Lock(Wait::kBlock);
  }
  const uint64_t n = config_.max_volumes;
  // Slots in holes of the file are FREE, which recovery leaves alone: it
  // reads only the others (an empty pool's table stays unallocated).
  const std::vector<SlotRun> written = SlotRunsWithData(n);

  // Judge the whole slot table before acting on any of it: a corrupt word
  // found half-way through the resolution below would leave the pool half
  // recovered when it is quarantined, instead of as found.
  for (const uint64_t i : Indices(written)) {
    const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
    if (StateOf(slot) > kLastSlotState) {
      pool.Unlock();
      return absl::DataLossError(absl::StrCat(
          "pool '", config_.name, "': slot ", i, " holds 0x",
          absl::Hex(slot), ", not a slot state"));
    }
  }
  std::vector<bool> on_stack(n, false);
  absl::Status walked = WalkStack(pool.PeekTop(), &on_stack);
  absl::StatusOr<VerifyReport> stack =
      walked.ok() ? pool.VerifyLocked() : walked;
  if (!stack.ok()) {
    pool.Unlock();
    return absl::DataLossError(absl::StrCat(
        "pool '", config_.name, "': recovery found the stack corrupt: ",
        stack.status().message()));
  }
  // A batch is rolled back if any of its slots is still ADDING (its
  // pushes had not started), and rolled forward otherwise. The batches
  // are kept sorted and distinct (a batch's slots are mostly adjacent, so
  // most repeats are dropped as they are read), so that each PUSHING slot
  // is judged in O(log batches): recovery holds the maintenance lock, and
  // a linear search per PUSHING slot made it O(ADDING x PUSHING) slots
  // (seconds at 2^19 slots, while every data-plane blocking call spins).
  std::vector<uint64_t> uncommitted_batches;
  for (const uint64_t i : Indices(written)) {
    const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
    if (StateOf(slot) == kSlotAdding &&
        (uncommitted_batches.empty() ||
         uncommitted_batches.back() != BatchOf(slot))) {
      uncommitted_batches.push_back(BatchOf(slot));
    }
  }
  std::sort(uncommitted_batches.begin(), uncommitted_batches.end());
  uncommitted_batches.erase(
      std::unique(uncommitted_batches.begin(), uncommitted_batches.end()),
      uncommitted_batches.end());
  auto uncommitted = [&](uint64_t batch) {
    return std::binary_search(uncommitted_batches.begin(),
                              uncommitted_batches.end(), batch);
  };
  // An uncommitted batch's PUSHING slots (a failed push was sending them
  // back, or the commit was being made) go back to ADDING before any slot
  // of it is freed: freed in runs, a recovery that dies between two runs
  // would otherwise leave only PUSHING slots of the batch, which the next
  // one would judge committed and push: part of an add that was rolled
  // back (and its request journal entry would list it).
  for (const uint64_t i : Indices(written)) {
    const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
    if (StateOf(slot) == kSlotPushing && uncommitted(BatchOf(slot))) {
      Slot(i).store(SlotWord(kSlotAdding, BatchOf(slot)),
                    std::memory_order_relaxed);
    }
  }
  std::vector<uint64_t> to_push;
  std::vector<uint64_t> to_mend;  // QUARANTINED, off the stack, header sound
  uint64_t mapped = 0;
  uint64_t in_quarantine = 0;
  // Volumes to free are gathered into runs of consecutive indices (the
  // loop below goes up), each given back with one punch rather than one
  // per volume, then their slots freed. A recovery that dies before a
  // run's punch leaves its slots as they were, for the next one to free.
  uint64_t run_first = 0;
  uint64_t run_count = 0;
  auto free_run = [&] {
    if (run_count == 0) return;
    GiveBack(run_first, run_count);  // reads as zeros, not a volume
    for (uint64_t i = run_first; i < run_first + run_count; ++i) {
      Slot(i).store(kSlotFree, std::memory_order_release);
    }
    run_count = 0;
    Step("recover:freed-run");
  };
  auto free_volume = [&](uint64_t i) {
    if (run_count != 0 && run_first + run_count == i) {
      ++run_count;
      return;
    }
    free_run();
    run_first = i;
    run_count = 1;
  };
  // push_if_sound queues a volume recovery would push, unless its header
  // is not a sound empty one (the checks Verify makes of every volume on
  // the stack): a corrupt volume stays off the stack, QUARANTINED (its
  // batch kept, so the request journal still sees its add happened), where
  // Inspect shows it as corrupt, no Acquire can be handed it and
  // ReclaimVolume can free it.
  // It returns false, having freed the slot, for a volume that is not a
  // volume at all (magic 0: its push failed and marked it so, or it reads
  // as a hole): it was never pushed and cannot be, so its add is undone
  // for it, instead of leaving a MAPPED slot that nothing lists or removes.
  auto quarantine = [&](uint64_t i) {
    Slot(i).store(SlotWord(kSlotQuarantined,
                           BatchOf(Slot(i).load(std::memory_order_relaxed))),
                  std::memory_order_relaxed);
    ++recovery_.volumes_quarantined;
    ++in_quarantine;
  };
  auto push_if_sound = [&](uint64_t i) {
    VolumeHeader v;
    if (!ReadVolumeHeader(i, &v)) {
      quarantine(i);
      return true;
    }
    if (v.magic.load(std::memory_order_relaxed) == kVolumeNotAVolume) {
      free_volume(i);
      ++recovery_.adds_rolled_back;
      return false;
    }
    if (SoundEmptyHeader(i, v)) {
      to_push.push_back(i);
    } else {
      quarantine(i);
    }
    return true;
  };
  for (const uint64_t i : Indices(written)) {
    const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
    // Only MAPPED slots need their header's magic (a hole reads 0).
    VolumeHeader header;
    const uint64_t magic =
        StateOf(slot) == kSlotMapped && ReadVolumeHeader(i, &header)
            ? header.magic.load(std::memory_order_relaxed)
            : kVolumeNotAVolume;
    switch (StateOf(slot)) {
      case kSlotFree:
        break;
      case kSlotAdding:
        free_volume(i);
        ++recovery_.adds_rolled_back;
        break;
      case kSlotPushing:
        if (uncommitted(BatchOf(slot))) {
          free_volume(i);
          ++recovery_.adds_rolled_back;
        } else {
          // Committed. On the stack: pushed (by the add, or by a recovery
          // that died before marking it MAPPED). Off it: never pushed,
          // since a pop that takes a volume pushed with its batch's tag
          // marks it MAPPED first (ConfirmPushed), so push it.
          if (on_stack[i] || push_if_sound(i)) ++mapped;
        }
        break;
      case kSlotMapped:
        // Empty on the stack, in use by a data-plane process, or empty and
        // off the stack: a data-plane Release in flight is about to push
        // it, or an Acquire in flight has just popped it (see
        // volumes_unresolved). Never one the owner took: its removes turn
        // the slot REMOVING before the volume leaves the stack
        // (RemoveAnnounced), and the Lock above completed an announced one.
        // Left as it is.
        if (magic == kVolumeEmptyMagic && !on_stack[i]) {
          ++recovery_.volumes_unresolved;
        }
        ++mapped;
        break;
      case kSlotRemoving:
        // A remove's, or a reclaim's (its volume no longer in
        // volumes_in_quarantine, recounted below).
        free_volume(i);
        ++recovery_.removes_finished;
        break;
      case kSlotQuarantined:
        if (on_stack[i]) {
          // Quarantined, then pushed back (a data-plane Release of a
          // volume its Acquire returned as corrupt): on the stack it is
          // the pool's again, and a reclaim would free it under the
          // stack. MAPPED, as every volume on the stack is. (Its header is
          // sound: VerifyLocked above refused a stack with a bad one.)
          Slot(i).store(SlotWord(kSlotMapped, BatchOf(slot)),
                        std::memory_order_relaxed);
          ++recovery_.quarantines_on_stack;
        } else if (VolumeHeader v;
                   ReadVolumeHeader(i, &v) && SoundEmptyHeader(i, v)) {
          // Off the stack with a sound empty header: mended after its
          // quarantine (nobody holds a volume whose magic says empty), a
          // volume ReclaimVolume refuses. Pushed back, the pool's again.
          to_mend.push_back(i);
        } else {
          ++in_quarantine;  // kept as it is, for ReclaimVolume
        }
        ++mapped;
        break;
      default:  // ruled out above; kept so the switch stays total
        free_run();
        pool.Unlock();
        return absl::DataLossError(absl::StrCat(
            "pool '", config_.name, "': slot ", i, " holds 0x",
            absl::Hex(slot), ", not a slot state"));
    }
  }
  free_run();
  recovery_.volumes_recovered = mapped;
  // Push under the lock (highest first, so the lowest index ends on top):
  // no other party can see a volume half-pushed, so a PUSHING slot is
  // unambiguous to the next recovery should this one die.
  for (auto it = to_push.rbegin(); it != to_push.rend(); ++it) {
    pool.PushLocked(*it);
  }
  // Mended quarantines likewise, and only then MAPPED: a recovery that dies
  // between leaves QUARANTINED slots on the stack, which the next one makes
  // MAPPED (quarantines_on_stack).
  for (auto it = to_mend.rbegin(); it != to_mend.rend(); ++it) {
    pool.PushLocked(*it);
  }
  for (const uint64_t i : Indices(written)) {
    const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
    if (StateOf(slot) == kSlotPushing) {
      Slot(i).store(SlotWord(kSlotMapped, BatchOf(slot)),
                    std::memory_order_relaxed);
    }
  }
  for (const uint64_t i : to_mend) {
    Slot(i).store(
        SlotWord(kSlotMapped, BatchOf(Slot(i).load(std::memory_order_relaxed))),
        std::memory_order_relaxed);
  }
  recovery_.volumes_repushed = to_push.size();
  recovery_.quarantines_mended = to_mend.size();
  recovery_.volumes_in_quarantine = in_quarantine;
  meta_->volumes_mapped.store(mapped, std::memory_order_relaxed);
  // Exact, unless a data-plane pop that took a corrupt volume before the
  // lock records its quarantine (RecordQuarantine) across this count: it
  // may be counted twice or not at all, until the next recovery.
  meta_->volumes_in_quarantine.store(in_quarantine, std::memory_order_relaxed);
  pool.RestartCountsLocked(stack->empty_volumes + to_push.size() +
                           to_mend.size());
  // Release (inside Unlock): what recovery wrote is visible to every pop.
  pool.Unlock();
  return absl::OkStatus();
}

// ---- Volume memory (owner) -------------------------------------------------

bool NamedPool::ReadVolumeHeader(uint64_t index, VolumeHeader* out) const {
  return store_
      ->Read(index * config_.volume_size_bytes, out, sizeof(VolumeHeader))
      .ok();
}

bool NamedPool::ReadHeaderHook(void* self, uint64_t index,
                               VolumeHeader* out) {
  return static_cast<NamedPool*>(self)->ReadVolumeHeader(index, out);
}

bool NamedPool::WriteHeaderHook(void* self, uint64_t index, uint64_t offset,
                                const void* bytes, uint64_t size) {
  const NamedPool& pool = *static_cast<NamedPool*>(self);
  return pool.store_
      ->Write(index * pool.config_.volume_size_bytes + offset, bytes, size)
      .ok();
}

void NamedPool::GiveBack(uint64_t first, uint64_t count) {
  // The owner maps no volume, so the punch zaps no page-table entry of
  // this process (a data-plane process that maps the store loses its own:
  // reading the range afterwards gives it zeros, not a volume).
  const uint64_t footprint = config_.volume_size_bytes;
  const absl::Status punched =
      store_->Deallocate(first * footprint, count * footprint);
  if (!punched.ok()) {
    // The memory stays taken, but the headers must not read as volumes: a
    // removed volume keeps the empty magic until the punch clears it
    // (RemoveAnnounced), and a later add of these indices would refuse it.
    for (uint64_t i = first; i < first + count; ++i) MarkNotAVolume(i);
    // Relaxed: a statistic (Summary); the memory is lost to the pool until
    // the indices are added again, and this count and the owner's report
    // below are all that say so (the caller may be another thread's).
    volumes_not_given_back_.fetch_add(count, std::memory_order_relaxed);
    if (on_give_back_failed_) on_give_back_failed_(first, count, punched);
  }
}

void NamedPool::GiveBackAndFree(uint64_t first, uint64_t count) {
  GiveBack(first, count);
  Step("remove:deallocated");
  for (uint64_t i = first; i < first + count; ++i) FreeSlot(i);
}

void NamedPool::FreeSlot(uint64_t index) {
  // Release: whoever claims the slot next sees what we did with it (the
  // volume given back). Then the hint, so a finder's CAS finds it free.
  Slot(index).store(kSlotFree, std::memory_order_release);
  free_slots_->MarkFree(index);
}

void NamedPool::IndexFreeSlots() {
  free_slots_ = std::make_unique<FreeSlotIndex>(config_.max_volumes);
  const uint64_t pages =
      (config_.max_volumes + kSlotsPerPage - 1) / kSlotsPerPage;
  written_slot_pages_ =
      std::make_unique<std::atomic<uint64_t>[]>((pages + 63) / 64);
  uint64_t i = 0;
  auto mark_free_up_to = [&](uint64_t end) {
    for (; i < end; ++i) free_slots_->MarkFree(i);  // in a hole: FREE
  };
  for (const SlotRun& run : SlotRunsWithData(config_.max_volumes)) {
    for (uint64_t page = run.first / kSlotsPerPage;
         page * kSlotsPerPage < run.first + run.count; ++page) {
      MarkSlotPageWritten(page * kSlotsPerPage);
    }
    mark_free_up_to(run.first);
    for (; i < run.first + run.count; ++i) {
      // Relaxed: nothing else runs on the pool before Open returns.
      if (Slot(i).load(std::memory_order_relaxed) == kSlotFree) {
        free_slots_->MarkFree(i);
      }
    }
  }
  mark_free_up_to(config_.max_volumes);
}

void NamedPool::MarkSlotPageWritten(uint64_t index) {
  const uint64_t page = index / kSlotsPerPage;
  std::atomic<uint64_t>& word = written_slot_pages_[page / 64];
  const uint64_t bit = uint64_t{1} << (page % 64);
  // Relaxed peek: the bit, once set, stays; release on setting it: see
  // SlotPageWritten.
  if ((word.load(std::memory_order_relaxed) & bit) == 0) {
    word.fetch_or(bit, std::memory_order_release);
  }
}

bool NamedPool::SlotPageWritten(uint64_t index) const {
  if (!written_slot_pages_) return true;
  const uint64_t page = index / kSlotsPerPage;
  return (written_slot_pages_[page / 64].load(std::memory_order_acquire) &
          (uint64_t{1} << (page % 64))) != 0;
}

std::vector<NamedPool::SlotRun> NamedPool::SlotRunsWithData(
    uint64_t end) const {
  std::vector<SlotRun> runs;
  auto offset_of = [](uint64_t index) {
    return static_cast<off_t>(kSlotTableOffset + 8 * index);
  };
  uint64_t i = 0;
  while (i < end) {
    const off_t data = lseek(meta_fd_, offset_of(i), SEEK_DATA);
    if (data < 0) {
      // ENXIO: no data from there on. Anything else: cannot tell.
      if (errno != ENXIO) runs.push_back({i, end - i});
      break;
    }
    const uint64_t first = std::max<uint64_t>(
        i, (static_cast<uint64_t>(data) - kSlotTableOffset) / 8);
    if (first >= end) break;
    const off_t hole = lseek(meta_fd_, data, SEEK_HOLE);
    const uint64_t after =
        hole < 0
            ? end
            : std::min<uint64_t>(
                  end,
                  (static_cast<uint64_t>(hole) - kSlotTableOffset + 7) / 8);
    runs.push_back({first, after - first});
    i = after;
  }
  return runs;
}

void NamedPool::MarkNotAVolume(uint64_t index) {
  const uint64_t magic = kVolumeNotAVolume;
  // Best effort: a header that cannot be written cannot be put back or
  // added either, which the caller's next step reports.
  WriteHeaderHook(this, index, offsetof(VolumeHeader, magic), &magic,
                  sizeof(magic));
}

// ---- Add and remove ----------------------------------------------------------

absl::Status NamedPool::WithRemedy(absl::Status status) const {
  if (status.code() != absl::StatusCode::kResourceExhausted) return status;
  const auto kind = static_cast<BackingKind>(meta_->backing_in_use);
  std::string remedy;
  if (kind == BackingKind::kGigantic || kind == BackingKind::kHuge) {
    const uint64_t page = BackingPageBytes(kind);
    absl::StatusOr<HugepagePool> pages = host_.Hugepages(page);
    remedy = absl::StrCat(
        "not enough free ", HumanBytes(page), " hugepages (one volume needs ",
        config_.volume_size_bytes / page, ", free ",
        pages.ok() ? absl::StrCat(pages->free) : "unknown",
        "); raise ", host_.NrHugepagesPath(page));
  } else if (kind == BackingKind::kNormal) {
    remedy = "the tmpfs holding the volume store is full; raise its size= "
             "mount option (e.g. mount -o remount,size=... /dev/shm) or free "
             "memory";
  } else {
    remedy = "the filesystem holding the volume store is full; free space "
             "on it or grow it (a tmpfs: raise its size= mount option)";
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "pool '", config_.name, "': ", remedy, " (", status.message(), ")"));
}

absl::Status NamedPool::CheckAddArguments(uint64_t count,
                                          std::optional<uint64_t> first_index,
                                          absl::string_view info) const {
  const uint64_t n = config_.max_volumes;
  if (count == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "add volumes to pool '", config_.name, "': count must be at least 1"));
  }
  if (info.size() > kVolumeInfoMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("add volumes to pool '", config_.name, "': info is ",
                     info.size(), " bytes; at most ", kVolumeInfoMax,
                     " fit in a volume header (it is never truncated)"));
  }
  if (!first_index.has_value()) {
    if (count <= n) return absl::OkStatus();
    return absl::ResourceExhaustedError(absl::StrCat(
        "pool '", config_.name, "' holds at most max_volumes ", n,
        " volumes, asked for ", count, "; add fewer or raise max_volumes"));
  }
  const uint64_t first = *first_index;
  if (first >= n) {
    return absl::OutOfRangeError(
        absl::StrCat("pool '", config_.name, "': first_index ", first,
                     " is not below max_volumes ", n, "; pick indices below ",
                     n, " or raise max_volumes"));
  }
  if (count > n - first) {
    // first < n <= 2^30: first + count cannot wrap while count <= n.
    return absl::OutOfRangeError(absl::StrCat(
        "pool '", config_.name, "': ",
        count <= n ? absl::StrCat("indices [", first, ", ", first + count, ")")
                   : absl::StrCat(count, " volumes from first_index ", first),
        " go beyond max_volumes ", n, "; pick indices below ", n,
        " or raise max_volumes"));
  }
  return absl::OkStatus();
}

absl::Status NamedPool::CheckRangeNotMapped(uint64_t first_index,
                                            uint64_t count) const {
  if (first_index >= config_.max_volumes ||
      count > config_.max_volumes - first_index) {
    return absl::OkStatus();  // not a range: CheckAddArguments says why
  }
  const uint64_t end = first_index + count;
  for (uint64_t i = first_index; i < end; ++i) {
    // A page no claim wrote holds no volume (and is not faulted in).
    if (!SlotPageWritten(i)) continue;
    // Relaxed: a hint that reads one word; AddVolumes's claim decides.
    const uint64_t slot = Slot(i).load(std::memory_order_relaxed);
    if (StateOf(slot) == kSlotMapped || StateOf(slot) == kSlotQuarantined) {
      return IndexTakenError(i, slot);
    }
  }
  return absl::OkStatus();
}

absl::Status NamedPool::IndexTakenError(uint64_t index, uint64_t slot) const {
  if (StateOf(slot) == kSlotQuarantined) {
    return absl::AlreadyExistsError(absl::StrCat(
        "pool '", config_.name, "': index ", index,
        " holds a quarantined volume (a pop found its header bad); reclaim "
        "it first (ReclaimVolume), pick free indices or omit first_index"));
  }
  return absl::AlreadyExistsError(absl::StrCat(
      "pool '", config_.name, "': index ", index,
      " already holds a volume (or one being added or removed); pick free "
      "indices or omit first_index"));
}

absl::Status NamedPool::ClaimSlots(uint64_t count,
                                   std::optional<uint64_t> first,
                                   uint64_t slot_value,
                                   std::vector<uint64_t>* out) {
  const uint64_t n = config_.max_volumes;
  auto undo = [&] {
    for (uint64_t i : *out) FreeSlot(i);
    out->clear();
  };
  if (first.has_value()) {
    for (uint64_t i = *first; i < *first + count; ++i) {
      uint64_t expected = kSlotFree;
      MarkSlotPageWritten(i);  // before the CAS, which writes even failing
      // Acquire on success: we own the index from here on; pairs with the
      // release that freed it. Relaxed on failure: we only report it.
      if (!Slot(i).compare_exchange_strong(expected, slot_value,
                                           std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
        undo();
        return IndexTakenError(i, expected);
      }
      free_slots_->MarkTaken(i);
      out->push_back(i);
    }
    return absl::OkStatus();
  }
  // The lowest free indices, as the index of free slots finds them; one
  // that another add took meanwhile fails its CAS and is passed.
  for (uint64_t i = free_slots_->FindFrom(0); i < n && out->size() < count;
       i = free_slots_->FindFrom(i + 1)) {
    uint64_t expected = kSlotFree;
    MarkSlotPageWritten(i);
    if (Slot(i).compare_exchange_strong(expected, slot_value,
                                        std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      free_slots_->MarkTaken(i);
      out->push_back(i);
    }
  }
  if (out->size() < count) {
    const uint64_t got = out->size();
    undo();
    return absl::ResourceExhaustedError(absl::StrCat(
        "pool '", config_.name, "' has room for ", got, " more volume",
        got == 1 ? "" : "s", " of max_volumes ", n, ", asked for ", count,
        "; remove volumes or raise max_volumes"));
  }
  return absl::OkStatus();
}

void NamedPool::ReleaseClaims(const std::vector<uint64_t>& indices,
                              size_t allocated) {
  store_gate_->BeginAllocation();  // a rollback punch, as part of the add
  ForEachRun(
      allocated, [&](size_t k) { return indices[k]; },
      [&](uint64_t first, uint64_t count, size_t) {
        GiveBack(first, count);
        return absl::OkStatus();
      })
      .IgnoreError();
  store_gate_->EndAllocation();
  for (uint64_t i : indices) FreeSlot(i);
}

absl::StatusOr<std::vector<uint64_t>> NamedPool::AddVolumes(
    uint64_t count, std::optional<uint64_t> first_index, absl::string_view info,
    std::optional<RequestKey> key) {
  if (!owner_) {
    return absl::FailedPreconditionError(
        "add volumes: only the pool's owner adds; this is a data-plane join");
  }
  // Before claiming anything: claiming every free slot only to give them
  // all back would make concurrent adds fail meanwhile.
  if (absl::Status s = CheckAddArguments(count, first_index, info); !s.ok()) {
    return s;
  }
  if (key.has_value() && count > RequestJournal::kMaxVolumesPerAdd) {
    return absl::InvalidArgumentError(absl::StrCat(
        "add volumes to pool '", config_.name, "': an add with a request key ",
        "adds at most ", RequestJournal::kMaxVolumesPerAdd, " volumes, not ",
        count, "; split it"));
  }
  const uint64_t batch =
      meta_->next_batch.fetch_add(1, std::memory_order_relaxed);
  std::vector<uint64_t> indices;
  // Looked at before the claim too: a punch done between a refused claim
  // and the look after it would leave none pending, its index free.
  const bool punches_were_pending = store_gate_->pending_volumes() > 0;
  absl::Status claimed =
      ClaimSlots(count, first_index, SlotWord(kSlotAdding, batch), &indices);
  const bool refused = claimed.code() == absl::StatusCode::kResourceExhausted ||
                       claimed.code() == absl::StatusCode::kAlreadyExists;
  if (refused) Step("add:claim-refused");
  if (refused && (punches_were_pending || store_gate_->pending_volumes() > 0)) {
    // A remove that has returned may have left its punch to an add that
    // is allocating, its indices still taken: wait for those punches and
    // claim again, so that an add after a remove finds the room it made.
    // (None pending before the claim: every remove that returned before
    // this add began has freed its indices, which the claim saw.)
    Step("add:store-busy");
    store_gate_->FinishGiveBacks();
    claimed =
        ClaimSlots(count, first_index, SlotWord(kSlotAdding, batch), &indices);
  }
  if (!claimed.ok()) return claimed;
  Step("add:claimed");
  const uint64_t footprint = config_.volume_size_bytes;
  // Take the memory, one fallocate per run of consecutive indices, as an
  // allocation announced to the store gate: a remove meanwhile leaves its
  // punch to us instead of waiting for our fallocate on the store's inode
  // lock. Punches queued before us run first, on this thread
  // (BeginAllocation), so that we find the memory of removes that have
  // returned: for hugepages, the pages they free. Any failure undoes every
  // step.
  if (store_gate_->pending_volumes() > 0) Step("add:store-busy");
  store_gate_->BeginAllocation();
  size_t allocated = 0;  // indices[0, allocated) hold memory
  absl::Status taken = ForEachRun(
      indices.size(), [&](size_t k) { return indices[k]; },
      [&](uint64_t first, uint64_t run, size_t end) {
        absl::Status s = store_->Allocate(first * footprint, run * footprint);
        // A failed allocation may keep pages: give this run back too.
        allocated = end;
        return s;
      });
  store_gate_->EndAllocation();  // runs the punches queued meanwhile
  if (!taken.ok()) {
    ReleaseClaims(indices, allocated);
    return WithRemedy(std::move(taken));
  }
  Step("add:allocated");
  // Format every header, then commit the batch, then push it, as one
  // chain: each volume links the next, the last links today's top.
  // Formatting each header with that `next` leaves the push no header to
  // write, unless another add or remove moves the top meanwhile (then it
  // writes the last one's again).
  const VolumePool& pool = *pool_;
  const uint64_t top_now = pool.PeekTop();
  const auto top_hint = [&](size_t k) {
    return k + 1 < indices.size() ? indices[k + 1] : top_now;
  };
  for (size_t k = 0; k < indices.size(); ++k) {
    const uint64_t i = indices[k];
    const PoolError err = pool.FormatRange(i, 1, info, top_hint(k));
    if (err != PoolError::kSuccess) {
      ReleaseClaims(indices, indices.size());
      // The slot claim makes the range ours, so the only way to fail is
      // the header write (the store's error is not carried by the hook).
      return err == PoolError::kCorrupt
                 ? absl::InternalError(absl::StrCat(
                       "add volumes to pool '", config_.name,
                       "': writing the header of volume ", i,
                       " to the volume store failed (an I/O error); the add "
                       "was rolled back"))
                 : PoolErrorToStatus(
                       err, absl::StrCat("format volume ", i, " of pool '",
                                         config_.name, "'"));
    }
  }
  Step("add:formatted");
  // An add with a key is recorded before it commits (PENDING: it happened
  // if its slots turn PUSHING), and its record commits before the push,
  // after which removes may take its volumes and leave no slot to judge
  // it by (RequestJournal).
  std::optional<uint64_t> journal_entry;
  if (key.has_value() && journal_ != nullptr) {
    absl::StatusOr<uint64_t> entry =
        journal_->Begin(*key, batch, count, first_index, info, indices);
    if (!entry.ok()) {
      ReleaseClaims(indices, indices.size());
      return absl::Status(
          entry.status().code(),
          absl::StrCat("add volumes to pool '", config_.name,
                       "': ", entry.status().message(), "; nothing was added"));
    }
    journal_entry = *entry;
    Step("add:recorded");
  }
  // Release: recovery (or Inspect) that sees PUSHING sees the headers, and
  // the journal entry's PENDING.
  for (uint64_t i : indices) {
    Slot(i).store(SlotWord(kSlotPushing, batch), std::memory_order_release);
  }
  meta_->volumes_mapped.fetch_add(count, std::memory_order_relaxed);
  Step("add:committed");
  if (journal_entry.has_value()) journal_->Commit(*journal_entry, batch);
  // One CAS pushes the whole batch (a chain, the lowest index on top), so
  // a push that fails (the top moved and the last volume's header cannot
  // be written again, or the stack is corrupt) pushed nothing and the add
  // is rolled back whole. Pushed one at a time, the volumes pushed before
  // a failure could be handed out at once and could not be taken back.
  bool header_write_failed = false;
  const PoolError pushed =
      pool.PushChainTagged(indices, batch, top_now, &header_write_failed);
  if (pushed != PoolError::kSuccess) {
    // Uncommitted again (a crash from here on is rolled back), then undone.
    // The journal entry first, and the slots with release stores, so no
    // crash finds a committed record of an add being rolled back.
    if (journal_entry.has_value()) journal_->Uncommit(*journal_entry, batch);
    for (uint64_t i : indices) {
      Slot(i).store(SlotWord(kSlotAdding, batch), std::memory_order_release);
      // Tests: killed here, the batch is part ADDING, part PUSHING.
      if (i == indices.front()) Step("add:uncommitting");
    }
    meta_->volumes_mapped.fetch_sub(count, std::memory_order_relaxed);
    ReleaseClaims(indices, indices.size());
    if (journal_entry.has_value()) journal_->Forget(*journal_entry);
    if (header_write_failed) {
      return absl::InternalError(absl::StrCat(
          "add volumes to pool '", config_.name, "': linking volume ",
          indices.back(),
          " onto the stack failed: writing its header to the "
          "volume store failed (an I/O error); the add was rolled back"));
    }
    return PoolErrorToStatus(
        pushed, absl::StrCat("push volumes of pool '", config_.name,
                             "' (the add was rolled back)"));
  }
  // Pushed: the entry may be reused by a later add.
  if (journal_entry.has_value()) journal_->Finish(*journal_entry, batch);
  Step("add:pushed");
  for (uint64_t i : indices) MarkPushed(i, batch);
  return indices;
}

absl::Status NamedPool::PushCommitted(uint64_t index, uint64_t batch,
                                      uint64_t top_hint) {
  const PoolError err = pool_->PutBackTagged(index, batch, top_hint);
  if (err == PoolError::kSuccess) return absl::OkStatus();
  return PoolErrorToStatus(
      err, absl::StrCat("push volume ", index, " of pool '", config_.name,
                        "'"));
}

void NamedPool::MarkPushed(uint64_t index, uint64_t batch) {
  // A pop may have marked it already (ConfirmPushed), and a remove may
  // have taken it since: only PUSHING of this batch turns MAPPED. Relaxed:
  // the push's release CAS already published the volume.
  uint64_t pushing = SlotWord(kSlotPushing, batch);
  Slot(index).compare_exchange_strong(pushing, SlotWord(kSlotMapped, batch),
                                      std::memory_order_relaxed);
}

namespace {

// HeaderFieldFault names the first of the header fields idx and info_sz
// that volume `index` cannot hold, with the value found and the value
// wanted ("header idx is 18, want 17"), or returns "".
std::string HeaderFieldFault(uint64_t index, const VolumeHeader& v) {
  const uint64_t idx = v.idx.load(std::memory_order_relaxed);
  if (idx != index)
    return absl::StrCat("header idx is ", idx, ", want ", index);
  const uint64_t info_sz = v.info_sz.load(std::memory_order_relaxed);
  if (info_sz > kVolumeInfoMax) {
    return absl::StrCat("header info_sz is ", info_sz, ", want at most ",
                        kVolumeInfoMax);
  }
  return "";
}

// StackHeaderFault says what is wrong with the header of volume `index`,
// popped off the stack, where only empty volumes belong (the checks of
// VolumePool's pops, in their order): the field, the value found and the
// value wanted, as Inspect shows a CORRUPT volume's; or "" when it reads
// sound.
std::string StackHeaderFault(uint64_t index, const VolumeHeader& v) {
  const uint64_t magic = v.magic.load(std::memory_order_relaxed);
  if (magic != kVolumeEmptyMagic) {
    absl::string_view what = magic == kVolumeMagic        ? " (in use)"
                             : magic == kVolumeNotAVolume ? " (not a volume)"
                                                          : "";
    return absl::StrCat("header magic is 0x", absl::Hex(magic), what,
                        ", want 0x", absl::Hex(kVolumeEmptyMagic), " (empty)");
  }
  return HeaderFieldFault(index, v);
}

}  // namespace

std::string NamedPool::QuarantineFault(uint64_t index, const VolumeHeader& v,
                                       const absl::Status& read) {
  if (!read.ok()) {
    return absl::StrCat("header cannot be read: ", read.message());
  }
  std::string fault = StackHeaderFault(index, v);
  if (fault.empty()) {
    fault = "header reads sound now, but was bad when a pop quarantined it";
  }
  return fault;
}

absl::StatusOr<std::vector<RemovedVolume>> NamedPool::RemoveVolumes(
    uint64_t count) {
  if (!owner_) {
    return absl::FailedPreconditionError(
        "remove volumes: only the pool's owner removes; this is a data-plane "
        "join");
  }
  if (count == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("remove volumes from pool '", config_.name,
                     "': count must be at least 1"));
  }
  const VolumePool& pool = *pool_;
  std::vector<RemovedVolume> removed;
  absl::Status failure;
  uint64_t quarantined = kNullIndex;  // the volume with a bad header
  while (removed.size() < count) {
    uint64_t index = kNullIndex;
    VolumeHeader popped;
    // Announced, so that the slot turns REMOVING before the volume leaves
    // the stack (RecordAnnouncedPop): a crash at any instant leaves no
    // doubt about which volumes this call took.
    const PoolError err = pool.RemoveAnnounced(&index, &popped, Wait::kBlock);
    if (err == PoolError::kEmpty) break;
    if (err != PoolError::kSuccess) {
      if (index != kNullIndex) {
        // A corrupt header: keep the volume, off the stack, QUARANTINED
        // (a fresh batch keeps slot words of different lives of an index
        // apart), where Inspect shows it as corrupt and ReclaimVolume can
        // free it. Only from the REMOVING(0) its announced pop recorded: a
        // corrupt stack can lead a pop to an index whose slot is no mapped
        // volume's (FREE: never added), which must not become one.
        // Release: as RecordQuarantine's CAS.
        uint64_t removing = SlotWord(kSlotRemoving, 0);
        const bool recorded = Slot(index).compare_exchange_strong(
            removing,
            SlotWord(kSlotQuarantined,
                     meta_->next_batch.fetch_add(1, std::memory_order_relaxed)),
            std::memory_order_release, std::memory_order_relaxed);
        // Relaxed: a statistic.
        if (recorded) {
          meta_->volumes_in_quarantine.fetch_add(1, std::memory_order_relaxed);
        }
        quarantined = index;
        // Read again for the message: nobody writes a quarantined volume
        // (off the stack, no user holds it).
        VolumeHeader found;
        std::string fault = ReadVolumeHeader(index, &found)
                                ? StackHeaderFault(index, found)
                                : "its header cannot be read (an I/O error)";
        if (fault.empty()) fault = "its header was bad when popped";
        failure = absl::DataLossError(absl::StrCat(
            "remove volumes from pool '", config_.name, "': volume ", index,
            ", popped off the stack, is not a sound empty volume (", fault,
            "); ",
            recorded
                ? absl::StrCat("it is quarantined: off the stack, counted in "
                               "volumes_in_quarantine and left as found, for "
                               "inspection; ReclaimVolume of index ",
                               index, " frees it")
                : absl::StrCat("its slot (0x", absl::Hex(removing),
                               ") says no volume was mapped there: the stack "
                               "is corrupt")));
      } else {
        failure = PoolErrorToStatus(
            err, absl::StrCat("remove volumes from pool '", config_.name, "'"));
      }
      break;
    }
    Step("remove:popped");
    removed.push_back({index, std::string(VolumeInfo(popped))});
  }
  if (!failure.ok()) {
    // Put back the good ones: the pool is unchanged but for the quarantine.
    // As an add of one batch: committed, then pushed.
    const uint64_t batch =
        meta_->next_batch.fetch_add(1, std::memory_order_relaxed);
    for (const RemovedVolume& r : removed) {
      // RemoveAnnounced left the header as it was popped (an empty
      // volume's, with its info): it is pushed back as it is.
      // Release: recovery that sees PUSHING sees the header.
      Slot(r.index).store(SlotWord(kSlotPushing, batch),
                          std::memory_order_release);
    }
    uint64_t lost = 0;
    for (const RemovedVolume& r : removed) {
      if (PushCommitted(r.index, batch, VolumePool::kNoTopHint).ok()) {
        MarkPushed(r.index, batch);
        continue;
      }
      ++lost;
      pool.CountRemoved(1);
      // Not pushed (its header cannot be written, or the stack is
      // corrupt: `failure` says DATA_LOSS already) and marked not a
      // volume: removed after all, never left MAPPED and unreachable.
      Slot(r.index).store(SlotWord(kSlotRemoving, 0),
                          std::memory_order_relaxed);
      meta_->volumes_mapped.fetch_sub(1, std::memory_order_relaxed);
      store_gate_->GiveBackOrDefer(r.index, 1);
    }
    if (quarantined == kNullIndex) return failure;
    const uint64_t put_back = removed.size() - lost;
    std::string rest =
        removed.empty()
            ? std::string("; nothing else was popped")
            : absl::StrCat("; the ", put_back,
                           put_back == 1 ? " volume popped before it was"
                                         : " volumes popped before it were",
                           " put back");
    if (lost > 0) {
      absl::StrAppend(&rest, ", and ", lost,
                      " that could not be (a header write failed) were "
                      "removed after all");
    }
    return absl::DataLossError(absl::StrCat(failure.message(), rest));
  }
  if (removed.empty()) {
    const PoolSummary summary = Summary();
    if (summary.volumes_mapped == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("pool '", config_.name, "' has no volumes (0 of ",
                       config_.max_volumes, " mapped); add some first"));
    }
    // Quarantined volumes are mapped and off the stack like volumes in
    // use, but nobody holds them: said apart, since releasing cannot bring
    // them back, and reclaiming them can (ReclaimVolume). Volumes
    // quarantined before quarantines were recorded (an older build) are
    // counted in use: their slots say MAPPED.
    const uint64_t quarantined_mapped =
        std::min(summary.volumes_in_quarantine, summary.volumes_in_use);
    const uint64_t held = summary.volumes_in_use - quarantined_mapped;
    if (quarantined_mapped == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pool '", config_.name, "' has no empty volume to remove (",
          summary.volumes_mapped, " mapped, ", held,
          " in use); release volumes or add more"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "pool '", config_.name, "' has no empty volume to remove (",
        summary.volumes_mapped, " mapped: ", held, " in use, ",
        quarantined_mapped,
        " quarantined: a pop found a bad header; no acquire hands them "
        "out and no RemoveVolume removes them, but ReclaimVolume frees them "
        "(Inspect lists them as corrupt)); ",
        held > 0 ? "release volumes, reclaim the quarantined ones or add more"
                 : "reclaim the quarantined ones or add more"));
  }
  // The volumes are out of the pool: off the stack, their slots REMOVING.
  pool.CountRemoved(removed.size());
  meta_->volumes_mapped.fetch_sub(removed.size(), std::memory_order_relaxed);
  // Give the memory back one run of consecutive indices at a time (one
  // punch each), in index order: now, or, while an add allocates in this
  // store, by that add as soon as its allocation is done (StoreGate).
  std::sort(removed.begin(), removed.end(),
            [](const RemovedVolume& a, const RemovedVolume& b) {
              return a.index < b.index;
            });
  ForEachRun(
      removed.size(), [&](size_t k) { return removed[k].index; },
      [&](uint64_t first, uint64_t run, size_t) {
        if (!store_gate_->GiveBackOrDefer(first, run)) {
          Step("remove:deferred");
        }
        return absl::OkStatus();
      })
      .IgnoreError();
  return removed;
}

// ---- Reading -----------------------------------------------------------------

std::string NamedPool::StorePath() const {
  return FieldString(meta_->store_path);
}

RequestJournal::Identity NamedPool::pool_id() const {
  return {meta_->pool_id[0], meta_->pool_id[1]};
}

void NamedPool::RememberStoreFile(int fd) {
  struct stat st;
  if (fstat(fd, &st) == 0) store_file_ = {st.st_dev, st.st_ino};
}

bool NamedPool::StoreDeleted() const {
  if (!owner_ || !store_file_.has_value()) return false;
  const std::string path = StorePath();
  if (path.empty()) return false;  // a hugetlb memfd has no name
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return errno == ENOENT;
  return st.st_dev != store_file_->device || st.st_ino != store_file_->inode;
}

PoolSummary NamedPool::Summary() const {
  PoolSummary s;
  s.name = config_.name;
  s.volume_size_bytes = config_.volume_size_bytes;
  s.backing_requested = config_.backing;
  s.backing_in_use = static_cast<BackingKind>(meta_->backing_in_use);
  s.page_size_bytes = meta_->page_size_bytes;
  s.max_volumes = config_.max_volumes;
  s.counts = pool_->Counts();
  s.volumes_mapped = std::min<uint64_t>(
      meta_->volumes_mapped.load(std::memory_order_relaxed),
      config_.max_volumes);
  s.volumes_empty = std::min(s.counts.empty_volumes, s.volumes_mapped);
  s.volumes_in_use = s.volumes_mapped - s.volumes_empty;
  s.capacity_bytes = s.volumes_mapped * s.volume_size_bytes;
  s.empty_bytes = s.volumes_empty * s.volume_size_bytes;
  s.releasing_bytes = store_gate_->pending_volumes() * s.volume_size_bytes;
  // Relaxed: statistics. Clamped: a quarantine counts its slot after
  // changing it and a reclaim its volume, so in flight the two may part.
  s.volumes_in_quarantine = std::min<uint64_t>(
      meta_->volumes_in_quarantine.load(std::memory_order_relaxed),
      s.volumes_mapped);
  s.volumes_reclaimed =
      meta_->volumes_reclaimed.load(std::memory_order_relaxed);
  s.volumes_not_given_back =
      volumes_not_given_back_.load(std::memory_order_relaxed);
  s.locked = pool_->IsLocked();
  // A named store has a path; a memfd has none. Its first byte says which,
  // without copying the path (Inspect calls this on every request).
  s.store_survives_restart = meta_->store_path[0] != '\0';
  return s;
}

namespace {

// kListWindowBytes: ListVolumes reads the headers of small volumes (at
// most kListWindowMaxFootprint) a window of the store at a time, one pread
// of up to this many bytes (headers and the data between them) instead of
// one per volume: a page of 1000 volumes of 4 KiB is 16 system calls
// instead of 1000. Copying the data between headers costs ~0.1 us per KiB
// against ~2 us per system call (docs/PERFORMANCE.md §4), so larger
// volumes are read one header at a time.
constexpr uint64_t kListWindowBytes = 256 << 10;
constexpr uint64_t kListWindowMaxFootprint = 8 << 10;

// Listed: ListVolumes lists the volume of slot word `slot`: mapped, or
// quarantined (as corrupt).
constexpr bool Listed(uint64_t slot) {
  return StateOf(slot) == kSlotMapped || StateOf(slot) == kSlotQuarantined;
}

// ListedEntry describes volume `index` from a copy of its header, or
// returns nullopt when it is not a volume (popped by a remove in flight).
std::optional<VolumeEntry> ListedEntry(uint64_t index, const VolumeHeader& v) {
  const uint64_t magic = v.magic.load(std::memory_order_relaxed);
  VolumeEntry entry;
  entry.index = index;
  if (magic == kVolumeEmptyMagic) {
    entry.status = VolumeStatus::kEmpty;
  } else if (magic == kVolumeMagic) {
    entry.status = VolumeStatus::kInUse;
  } else if (magic == kVolumeNotAVolume) {
    return std::nullopt;
  } else {
    entry.status = VolumeStatus::kCorrupt;
    entry.corruption = absl::StrCat(
        "header magic is 0x", absl::Hex(magic), ", want 0x",
        absl::Hex(kVolumeMagic), " (in use) or 0x",
        absl::Hex(kVolumeEmptyMagic), " (empty)");
  }
  if (entry.corruption.empty()) {
    entry.corruption = HeaderFieldFault(index, v);
    if (!entry.corruption.empty()) entry.status = VolumeStatus::kCorrupt;
  }
  entry.info = std::string(VolumeInfo(v));
  return entry;
}

}  // namespace

std::vector<VolumeEntry> NamedPool::ListVolumes(uint64_t start_index,
                                                size_t max_entries,
                                                uint64_t* next_index) const {
  const uint64_t n = config_.max_volumes;
  const uint64_t footprint = config_.volume_size_bytes;
  const uint64_t per_window = footprint <= kListWindowMaxFootprint
                                  ? kListWindowBytes / footprint
                                  : 1;
  // The slots this call may look at: a sparse pool's listing is many
  // short pages, never one call that reads the whole slot table.
  const uint64_t scan_end =
      start_index >= n
          ? start_index
          : start_index + std::min(n - start_index, kListMaxSlotsScanned);
  std::vector<VolumeEntry> entries;
  std::vector<uint64_t> slots(per_window);
  std::unique_ptr<std::byte[]> window;
  uint64_t i = start_index;
  // Once the page is full: whether a slot word this call loaded after the
  // page's last volume is listed, and the first slot it has not loaded.
  bool volume_follows = false;
  uint64_t unread = start_index;
  while (i < scan_end && entries.size() < max_entries) {
    // A page of the slot table no claim has written is a hole of the file:
    // FREE slots, skipped unread (a read would allocate it on tmpfs).
    if (!SlotPageWritten(i)) {
      i = std::min(scan_end, (i / kSlotsPerPage + 1) * kSlotsPerPage);
      continue;
    }
    const uint64_t end = std::min(
        {scan_end, i + per_window, (i / kSlotsPerPage + 1) * kSlotsPerPage});
    // Every slot of the window first. Acquire: pairs with the release
    // that made a slot MAPPED, so the header written before it is visible
    // to the read below, which must come after these loads.
    uint64_t first = kNullIndex;
    uint64_t last = kNullIndex;
    for (uint64_t k = i; k < end; ++k) {
      slots[k - i] = Slot(k).load(std::memory_order_acquire);
      if (!Listed(slots[k - i])) continue;
      if (first == kNullIndex) first = k;
      last = k;
    }
    if (first == kNullIndex) {
      i = end;
      continue;
    }
    // One copy read from the store (pread), never through a mapping: a
    // remove may punch a volume out meanwhile, and a read through a
    // mapping would then fault a fresh page into the store (or SIGBUS on
    // hugetlbfs); a pread of a hole reads zeros. What was read for a
    // volume is thrown away if its slot changed since the load above.
    const uint64_t bytes = (last - first) * footprint + sizeof(VolumeHeader);
    if (!window) window = std::make_unique_for_overwrite<std::byte[]>(
                     (per_window - 1) * footprint + sizeof(VolumeHeader));
    // An I/O error (or a store cut short by another process: a read past
    // its end) fails the whole window: then each header is read on its
    // own, and one that cannot be read is listed as corrupt, saying why,
    // so that no mapped volume is left out of the listing.
    const absl::Status window_read =
        store_->Read(first * footprint, window.get(), bytes);
    uint64_t k = first;
    for (; k <= last && entries.size() < max_entries; ++k) {
      if (!Listed(slots[k - i])) continue;
      VolumeHeader v;
      absl::Status read = window_read;
      if (read.ok()) {
        std::memcpy(static_cast<void*>(&v),
                    window.get() + (k - first) * footprint, sizeof(v));
      } else {
        read = store_->Read(k * footprint, &v, sizeof(v));
      }
      // A data-plane Acquire or Release may have been writing the magic
      // during the copy: a magic that is no magic at all is read once more
      // before it is believed.
      if (read.ok() && !IsKnownMagic(v.magic.load(std::memory_order_relaxed))) {
        VolumeHeader again;
        if (ReadVolumeHeader(k, &again)) CopyVolumeHeader(again, &v);
      }
      // Acquire: orders the reads above before this re-check.
      if (Slot(k).load(std::memory_order_acquire) != slots[k - i]) continue;
      if (StateOf(slots[k - i]) == kSlotQuarantined) {
        // Listed whatever its header says now (it may even read sound).
        VolumeEntry entry;
        entry.index = k;
        entry.status = VolumeStatus::kCorrupt;
        entry.corruption = QuarantineFault(k, v, read);
        if (read.ok()) entry.info = std::string(VolumeInfo(v));
        entries.push_back(std::move(entry));
        continue;
      }
      if (!read.ok()) {
        VolumeEntry entry;
        entry.index = k;
        entry.status = VolumeStatus::kCorrupt;
        entry.corruption =
            absl::StrCat("header cannot be read: ", read.message());
        entries.push_back(std::move(entry));
        continue;
      }
      if (std::optional<VolumeEntry> entry = ListedEntry(k, v)) {
        entries.push_back(*std::move(entry));
      }
    }
    if (entries.size() < max_entries) {
      i = end;
      continue;
    }
    // The page filled up: resume after the last volume looked at. The
    // window's slot `last` is listed, so a volume follows if the page
    // ended before it; else the rest of the window holds none.
    volume_follows = k <= last;
    unread = end;
    i = k;
  }
  // A full page ends the listing when no volume follows it (AIP-158: a
  // token says more follow, and a full page that ends on the pool's last
  // volume would otherwise cost a round trip for an empty one): the slot
  // words up to the scan bound say so, no header read. Where the bound
  // comes before max_volumes, the page keeps its token (the next page may
  // then be empty and the last).
  if (entries.size() == max_entries && i < n && !volume_follows &&
      scan_end == n && FirstListedSlot(unread, scan_end) == scan_end) {
    i = n;
  }
  *next_index = i;
  return entries;
}

uint64_t NamedPool::FirstListedSlot(uint64_t from, uint64_t to) const {
  uint64_t k = from;
  while (k < to) {
    // A page no claim has written holds FREE slots only: skipped unread.
    if (!SlotPageWritten(k)) {
      k = std::min(to, (k / kSlotsPerPage + 1) * kSlotsPerPage);
      continue;
    }
    // Relaxed: the word only decides whether a page carries a token; no
    // header is read after it. A volume listed just after this load is as
    // if it were added after the page.
    if (Listed(Slot(k).load(std::memory_order_relaxed))) return k;
    ++k;
  }
  return to;
}

absl::Status NamedPool::NotQuarantinedError(uint64_t index,
                                            uint64_t slot) const {
  std::string what;
  switch (StateOf(slot)) {
    case kSlotFree:
      what = "holds no volume";
      break;
    case kSlotAdding:
    case kSlotPushing:
      what = "holds a volume being added";
      break;
    case kSlotRemoving:
      what = "holds a volume being removed (or reclaimed)";
      break;
    case kSlotMapped: {
      VolumeHeader v;
      const absl::Status read = store_->Read(index * config_.volume_size_bytes,
                                             &v, sizeof(VolumeHeader));
      const std::optional<VolumeEntry> entry =
          read.ok() ? ListedEntry(index, v) : std::nullopt;
      if (read.ok() && entry.has_value() &&
          entry->status != VolumeStatus::kCorrupt) {
        what =
            entry->status == VolumeStatus::kEmpty
                ? "holds an empty volume (RemoveVolume removes empty volumes)"
                : "holds a volume in use";
        break;
      }
      // Mapped with a bad header: quarantined by a pop of a build before
      // quarantines were recorded (or in use, its header overwritten by
      // its user): no slot says it is nobody's.
      what = absl::StrCat(
          "holds a mapped volume with a bad header (",
          read.ok() ? (entry.has_value() ? entry->corruption
                                         : std::string("not a volume"))
                    : absl::StrCat("header cannot be read: ", read.message()),
          ") that is not recorded as quarantined: quarantined before "
          "quarantines were recorded (by an older build), or in use by a "
          "data-plane process that wrote over its header; it cannot be "
          "reclaimed: re-create the pool to free it");
      break;
    }
    default:
      what = absl::StrCat("holds slot word 0x", absl::Hex(slot),
                          ", not a slot state (the slot table is corrupt)");
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "reclaim volume ", index, " of pool '", config_.name, "': index ", index,
      " ", what, "; only a quarantined volume can be reclaimed"));
}

absl::Status NamedPool::SoundQuarantineError(uint64_t index) const {
  return absl::FailedPreconditionError(absl::StrCat(
      "reclaim volume ", index, " of pool '", config_.name, "': volume ", index,
      " is quarantined, but its header now reads as a sound empty volume's, "
      "as a Release writes it: a data-plane process released it back onto "
      "the stack (against Release's contract) or mended its header, so it "
      "may be on the stack, and it is not freed. The server's next start "
      "makes it an ordinary empty volume again, on the stack or off it "
      "(Inspect with verify says which); find the data-plane process that "
      "wrote it"));
}

absl::StatusOr<ReclaimedVolume> NamedPool::ReclaimVolume(uint64_t index) {
  if (!owner_) {
    return absl::FailedPreconditionError(
        "reclaim volume: only the pool's owner reclaims; this is a "
        "data-plane join");
  }
  if (index >= config_.max_volumes) {
    return absl::OutOfRangeError(absl::StrCat(
        "reclaim volume ", index, " of pool '", config_.name, "': index ",
        index, " is not below max_volumes ", config_.max_volumes));
  }
  // A page no claim wrote is a hole: FREE, known without faulting it in.
  // Acquire: pairs with the release that made the slot QUARANTINED, so
  // that the popper's last touch of the volume comes before our punch.
  uint64_t slot = SlotPageWritten(index)
                      ? Slot(index).load(std::memory_order_acquire)
                      : uint64_t{kSlotFree};
  // The header, read once per quarantine judged: to refuse a sound one,
  // and for the answer (read before the punch clears it; nobody writes a
  // quarantined volume, on the admin's word).
  VolumeHeader v;
  absl::Status read;
  for (;;) {
    if (StateOf(slot) != kSlotQuarantined) {
      return NotQuarantinedError(index, slot);
    }
    read = store_->Read(index * config_.volume_size_bytes, &v, sizeof(v));
    // A quarantined volume whose header reads as a sound empty volume's
    // was written after its quarantine, most likely by a data-plane
    // Release that pushed it back (against Release's contract): it may be
    // on the stack, which its slot cannot tell, so it is not freed. (A
    // header that reads in use is left to the admin: a process that wrote
    // an in-use magic over an empty volume is the usual cause of a
    // quarantine.)
    if (read.ok() && SoundEmptyHeader(index, v)) {
      return SoundQuarantineError(index);
    }
    // The CAS fails only to a party that took the volume meanwhile (a
    // concurrent reclaim, or a remove's pop of one pushed back onto the
    // stack). The loop then reports what followed, or, if that is a
    // quarantine of a later life of the index (added again and quarantined
    // since), judges that one afresh: the header read above was another
    // volume's.
    if (Slot(index).compare_exchange_strong(slot, SlotWord(kSlotRemoving, 0),
                                            std::memory_order_acquire,
                                            std::memory_order_acquire)) {
      break;
    }
  }
  // Ours from here: a crash leaves REMOVING, which recovery finishes (punch,
  // FREE) and recounts.
  Step("reclaim:claimed");
  ReclaimedVolume reclaimed{index, QuarantineFault(index, v, read)};
  // Relaxed: statistics (as RemoveVolumes' volumes_mapped).
  UncountQuarantine();
  meta_->volumes_mapped.fetch_sub(1, std::memory_order_relaxed);
  meta_->volumes_reclaimed.fetch_add(1, std::memory_order_relaxed);
  // As a remove's: now, or queued for the add allocating (StoreGate); the
  // slot turns FREE with the punch (GiveBackAndFree).
  if (!store_gate_->GiveBackOrDefer(index, 1)) Step("reclaim:deferred");
  return reclaimed;
}

absl::Status NamedPool::WalkStack(uint64_t top, std::vector<bool>* on_stack,
                                  std::optional<uint64_t> still_top,
                                  const VolumePool::StopCheck* stop) const {
  const uint64_t n = config_.max_volumes;
  uint64_t steps = 0;
  for (uint64_t i = top; i != kNullIndex;
       i = LinkNext(Slot(n + i).load(std::memory_order_relaxed))) {
    // Relaxed: only a hint to stop a walk that is void anyway; Verify's
    // own check decides.
    if (still_top.has_value() && steps % 64 == 63 &&
        pool_->header()->ver_top.load(std::memory_order_relaxed) !=
            *still_top) {
      return absl::OkStatus();
    }
    if (stop != nullptr &&
        steps % VolumePool::kVerifyStopCheckSteps ==
            VolumePool::kVerifyStopCheckSteps - 1 &&
        (*stop)()) {
      return absl::OkStatus();  // void: Verify asks `stop` again
    }
    if (i >= n || ++steps > n) {
      return absl::DataLossError(absl::StrCat(
          "pool '", config_.name, "': the stack reaches index ", i,
          i >= n ? " (out of range)" : " again (a cycle)"));
    }
    // PUSHING: pushed by an add that has not marked it MAPPED yet.
    const SlotState state = StateOf(Slot(i).load(std::memory_order_relaxed));
    if (state == kSlotQuarantined && on_stack == nullptr) {
      return absl::DataLossError(absl::StrCat(
          "pool '", config_.name, "': volume ", i,
          " is on the stack but its slot says it is quarantined (a pop "
          "found its header bad, and it was pushed back: a data-plane "
          "Release of a volume its Acquire returned as corrupt?); the "
          "owner's next start makes it mapped again"));
    }
    if (state != kSlotMapped && state != kSlotPushing &&
        state != kSlotQuarantined) {
      return absl::DataLossError(absl::StrCat(
          "pool '", config_.name, "': volume ", i,
          " is on the stack but its slot says it is not mapped"));
    }
    if (on_stack != nullptr) (*on_stack)[i] = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifyReport> NamedPool::Verify() const {
  return Verify([] { return false; });
}

absl::StatusOr<VerifyReport> NamedPool::Verify(
    VolumePool::StopCheck stop) const {
  // The slot walk reads the link table, which only a push writes, and slot
  // words, which change for a volume on the stack only from PUSHING to
  // MAPPED: inside the pool's still window (see VolumePool::Verify) both
  // are as the stack's last push or pop left them.
  return pool_->Verify(
      [this, &stop](uint64_t ver_top) {
        Step("verify:walk");  // in the window: a walk held here holds nobody
        return WalkStack(TopIndex(ver_top), /*on_stack=*/nullptr, ver_top,
                         &stop);
      },
      stop);
}

}  // namespace groove
