// journal_fuzzer's harness: a compact request journal image written out as
// a pool's journal file, opened (repaired) by RequestJournal::Open as an
// owner that crashed would find it (with the pool's next batch the image
// chooses, or none), checked against a model of the image, used for one
// add and opened again. See fuzz_harness.h for the image
// format.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fuzz_harness.h"
#include "groove/request_journal.h"

namespace groove::fuzz {
namespace {

constexpr uint64_t kEntries = RequestJournal::kEntries;
constexpr uint64_t kMaxVolumesPerAdd = RequestJournal::kMaxVolumesPerAdd;
constexpr uint64_t kMaxInfoBytes = RequestJournal::kMaxInfoBytes;
constexpr uint64_t kEntryOffset = testing::kJournalEntryOffset;
constexpr uint64_t kEntryBytes = testing::kJournalEntryBytes;
constexpr uint64_t kFileBytes = kEntryOffset + kEntries * kEntryBytes;

// The header's layout (core/src/request_journal.cc, struct
// RequestJournal::Header: six uint64_t at the start of the first page)
// and its values. The header exports no constant for them;
// tests/unit/fuzz_regression_test.cc checks them against a real journal
// (JournalImageTest.RealJournalRoundTripsThroughTheImage: a real journal
// read back and written by these offsets is kept, not emptied).
constexpr uint64_t kJournalMagic = 0x316a65766f6f7267ull;  // "groovej1"
constexpr uint64_t kJournalLayoutVersion = 1;
constexpr size_t kHeaderFields = 6;  // magic, layout, count, bytes, id x2
static_assert(kHeaderFields * 8 <= kEntryOffset);

// An entry's layout (struct RequestJournal::Entry): seven uint64_t (state,
// key_high, key_low, count, first_index, info_size, recorded_unix_ns), the
// info, then the indices as uint32_t.
constexpr size_t kStateOffset = 0;
constexpr size_t kKeyHighOffset = 8;
constexpr size_t kKeyLowOffset = 16;
constexpr size_t kCountOffset = 24;
constexpr size_t kFirstIndexOffset = 32;
constexpr size_t kInfoSizeOffset = 40;
constexpr size_t kRecordedOffset = 48;
constexpr size_t kInfoOffset = 56;
constexpr size_t kIndicesOffset = kInfoOffset + kMaxInfoBytes;
static_assert(kCountOffset == testing::kJournalEntryCountOffset);
static_assert(kIndicesOffset + 4 * kMaxVolumesPerAdd == kEntryBytes);
static_assert(kEntryOffset == 4096, "the header is one page");
constexpr uint64_t kNoFirstIndex = ~uint64_t{0};  // in the file
constexpr uint64_t kStateBits = 2;
constexpr uint64_t kFree = 0, kWriting = 1, kPending = 2, kCommitted = 3;
constexpr uint64_t kStateMask = (uint64_t{1} << kStateBits) - 1;
// The largest batch a state word holds.
constexpr uint64_t kMaxBatch = ~uint64_t{0} >> kStateBits;

// A record's fixed part: entry, state, key x2, count, first_index,
// info_size, recorded_unix_ns, the info's length, the indices' spec.
constexpr size_t kRecordFixedBytes = 2 + 8 + 8 + 8 + 2 + 4 + 2 + 8 + 1 + 1;
constexpr size_t kMaxExplicitIndices = 0x7f;
constexpr size_t kMaxRecordInfo = 0xff;

std::string JournalPath() { return ScratchDir("journal") + "/j.requests"; }

template <typename T>
T Load(const std::string& bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(v));
  return v;
}

template <typename T>
void Store(std::string& bytes, size_t offset, T v) {
  std::memcpy(bytes.data() + offset, &v, sizeof(v));
}

// Reader hands out consecutive pieces of the input, zeros past its end.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool empty() const { return data_.empty(); }
  template <typename T>
  T Take() {
    unsigned char bytes[sizeof(T)] = {};
    const size_t have = std::min(sizeof(T), data_.size());
    std::memcpy(bytes, data_.data(), have);
    data_.remove_prefix(have);
    T v;
    std::memcpy(&v, bytes, sizeof(v));
    return v;
  }
  std::string TakeBytes(size_t n) {
    std::string out(n, '\0');
    const size_t have = std::min(n, data_.size());
    std::memcpy(out.data(), data_.data(), have);
    data_.remove_prefix(have);
    return out;
  }

 private:
  absl::string_view data_;
};

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// EntryBytes is the entry a record writes, whole.
std::string EntryBytes(const JournalRecord& r) {
  std::string e(kEntryBytes, '\0');
  Store<uint64_t>(e, kStateOffset, r.state_word);
  Store<uint64_t>(e, kKeyHighOffset, r.key.high);
  Store<uint64_t>(e, kKeyLowOffset, r.key.low);
  Store<uint64_t>(e, kCountOffset, r.count);
  Store<uint64_t>(
      e, kFirstIndexOffset,
      r.first_index == kJournalNoFirstIndex ? kNoFirstIndex : r.first_index);
  Store<uint64_t>(e, kInfoSizeOffset, r.info_size);
  Store<int64_t>(e, kRecordedOffset, r.recorded_unix_ns);
  std::memcpy(e.data() + kInfoOffset, r.info.data(),
              std::min<size_t>(r.info.size(), kMaxRecordInfo));
  const size_t n = std::min(r.indices.size(), kMaxExplicitIndices);
  for (size_t k = 0; k < n; ++k) {
    Store<uint32_t>(e, kIndicesOffset + 4 * k, r.indices[k]);
  }
  if (r.continue_indices) {
    uint32_t last = n == 0 ? 0xffffffffu : r.indices[n - 1];
    for (size_t k = n; k < kMaxVolumesPerAdd; ++k) {
      Store<uint32_t>(e, kIndicesOffset + 4 * k, ++last);  // wraps: u32
    }
  }
  return e;
}

// Parsed is what Open reads of an entry: its fields, and its first
// min(count, kMaxVolumesPerAdd) indices.
struct Parsed {
  uint64_t word = 0;
  RecordedAdd add;  // count, first_index, info (info_size of it), indices
  uint64_t info_size = 0;
};

Parsed Parse(const std::string& e) {
  Parsed p;
  p.word = Load<uint64_t>(e, kStateOffset);
  p.add.key = {Load<uint64_t>(e, kKeyHighOffset),
               Load<uint64_t>(e, kKeyLowOffset)};
  p.add.count = Load<uint64_t>(e, kCountOffset);
  const uint64_t first = Load<uint64_t>(e, kFirstIndexOffset);
  if (first != kNoFirstIndex) p.add.first_index = first;
  p.info_size = Load<uint64_t>(e, kInfoSizeOffset);
  p.add.info.assign(e.data() + kInfoOffset,
                    std::min<uint64_t>(p.info_size, kMaxInfoBytes));
  p.add.recorded_unix_ns = Load<int64_t>(e, kRecordedOffset);
  p.add.batch = p.word >> kStateBits;
  const uint64_t n = std::min<uint64_t>(p.add.count, kMaxVolumesPerAdd);
  for (uint64_t k = 0; k < n; ++k) {
    p.add.indices.push_back(Load<uint32_t>(e, kIndicesOffset + 4 * k));
  }
  return p;
}

// AddProblem says why an add is none a pool of `max_volumes` could have
// made (request_journal.h: a count outside [1, kMaxVolumesPerAdd], an info
// longer than kMaxInfoBytes, indices not ascending, at or above
// max_volumes, or not consecutive from first_index when it is set), or
// returns "". Written from the header's contract, not from the code.
std::string AddProblem(uint64_t count, const std::optional<uint64_t>& first,
                       uint64_t info_size, std::span<const uint64_t> indices,
                       uint64_t max_volumes) {
  if (count < 1 || count > kMaxVolumesPerAdd) {
    return absl::StrCat("count ", count);
  }
  if (info_size > kMaxInfoBytes) return absl::StrCat("info_size ", info_size);
  if (indices.size() != count) {
    return absl::StrCat(indices.size(), " indices for count ", count);
  }
  for (uint64_t k = 0; k < count; ++k) {
    if (indices[k] >= max_volumes) {
      return absl::StrCat("index ", indices[k], " >= ", max_volumes);
    }
    if (k > 0 && indices[k] <= indices[k - 1]) {
      return absl::StrCat("indices not ascending at ", k);
    }
    if (first.has_value() && indices[k] != *first + k) {
      return absl::StrCat("index ", k, " is ", indices[k], ", first_index ",
                          *first);
    }
  }
  return "";
}

std::string Describe(const RecordedAdd& a) {
  return absl::StrCat(
      "{batch ", a.batch, " key ", a.key.high, ":", a.key.low, " count ",
      a.count, " first ",
      a.first_index.has_value() ? absl::StrCat(*a.first_index) : "-", " info '",
      a.info, "' at ", a.recorded_unix_ns, " indices [",
      absl::StrJoin(a.indices, ","), "]}");
}

auto Tie(const RecordedAdd& a) {
  return std::tie(a.batch, a.key.high, a.key.low, a.count, a.first_index,
                  a.info, a.recorded_unix_ns, a.indices);
}

// SameAdds says how two lists of adds differ as multisets, or "".
std::string SameAdds(std::vector<RecordedAdd> got,
                     std::vector<RecordedAdd> want) {
  const auto less = [](const RecordedAdd& a, const RecordedAdd& b) {
    return Tie(a) < Tie(b);
  };
  std::sort(got.begin(), got.end(), less);
  std::sort(want.begin(), want.end(), less);
  for (size_t k = 0; k < std::max(got.size(), want.size()); ++k) {
    if (k >= got.size() || k >= want.size() || Tie(got[k]) != Tie(want[k])) {
      return absl::StrCat(
          got.size(), " adds where ", want.size(), " were expected; the ", k,
          "th (by batch) is ", k < got.size() ? Describe(got[k]) : "missing",
          ", expected ", k < want.size() ? Describe(want[k]) : "none");
    }
  }
  return "";
}

std::string CheckReport(const RequestJournal::OpenReport& got,
                        const RequestJournal::OpenReport& want) {
  if (got.created != want.created ||
      got.reset_reason.empty() != want.reset_reason.empty() ||
      got.committed != want.committed ||
      got.resolved_committed != want.resolved_committed ||
      got.resolved_failed != want.resolved_failed ||
      got.dropped_invalid != want.dropped_invalid) {
    const auto show = [](const RequestJournal::OpenReport& r) {
      return absl::StrCat("created ", r.created, " reset '", r.reset_reason,
                          "' committed ", r.committed, " (resolved ",
                          r.resolved_committed, ") failed ", r.resolved_failed,
                          " invalid ", r.dropped_invalid);
    };
    return absl::StrCat("report {", show(got), "}, expected {", show(want),
                        "}");
  }
  return "";
}

using Questions = std::vector<std::pair<uint64_t, std::vector<uint64_t>>>;

// Model is what Open must do with an image, from the header's contract.
// The contract does not say what becomes of two entries that would both
// be kept with one batch (a damaged file: a batch is one add's), except
// that Verify, which Open must satisfy, allows one at most: such a batch
// is `contested`, and the model accepts Open keeping either entry, or
// neither, and not asking about them.
struct Model {
  uint64_t max_volumes = 0;
  uint64_t next_batch = RequestJournal::kAnyBatch;  // Open's next_batch
  bool keeps_header = false;  // the file is this pool's journal, kept
  uint64_t file_bytes = 0;
  std::map<uint64_t, std::string> entries;  // entry number -> its bytes
  uint64_t not_free = 0;  // entries not FREE, when the header is kept
  RequestJournal::OpenReport report;  // exact unless `contested` is not empty
  std::vector<RecordedAdd> recorded;  // the adds of uncontested batches
  // The `committed` questions Open must ask: PENDING entries with an add,
  // of uncontested batches; and those it may ask, of contested ones.
  Questions questions;
  Questions contested_questions;
  // Batch -> the adds of two or more entries that would be kept with it.
  std::map<uint64_t, std::vector<RecordedAdd>> contested;
};

bool Answer(uint8_t answers, uint64_t batch) {
  return ((answers >> (batch % 8)) & 1) != 0;
}

Model MakeModel(const JournalImage& image) {
  Model m;
  m.max_volumes = JournalMaxVolumes(image.flags, image.max_volumes_byte);
  m.next_batch = JournalNextBatch(image.next_batch_byte);
  switch ((image.flags >> kJournalSizeShift) & 3) {
    case kJournalSizeRight:
      m.file_bytes = kFileBytes;
      break;
    case kJournalSizeShort:
      m.file_bytes = kFileBytes - kEntryBytes;
      break;
    case kJournalSizeLong:
      m.file_bytes = kFileBytes + 4096;
      break;
    default:
      m.file_bytes = 0;
  }
  for (const JournalRecord& r : image.records) {
    m.entries[r.entry % kEntries] = EntryBytes(r);
  }
  constexpr uint8_t kBadHeader = kJournalBadMagic | kJournalBadLayout |
                                 kJournalBadEntryCount | kJournalBadEntryBytes |
                                 kJournalOtherPool;
  m.keeps_header =
      m.file_bytes == kFileBytes && (image.flags & kBadHeader) == 0;
  if (m.file_bytes == 0) m.report.created = true;
  if (!m.keeps_header) {
    if (!m.report.created) m.report.reset_reason = "(any)";
    return m;
  }
  std::vector<RecordedAdd> kept;  // what Open keeps
  for (const auto& [i, bytes] : m.entries) {
    const Parsed p = Parse(bytes);
    const uint64_t state = p.word & kStateMask;
    if (state == kFree) continue;
    ++m.not_free;
    if (state == kWriting) {
      ++m.report.resolved_failed;
      continue;
    }
    // No add's, or one of a batch the pool has not handed out (at or above
    // its next_batch): an add it never made.
    if (!AddProblem(p.add.count, p.add.first_index, p.info_size, p.add.indices,
                    m.max_volumes)
             .empty() ||
        p.add.batch >= m.next_batch) {
      ++m.report.dropped_invalid;
      continue;
    }
    if (state == kPending) {
      m.questions.emplace_back(p.add.batch, p.add.indices);
      if (!Answer(image.answers, p.add.batch)) {
        ++m.report.resolved_failed;
        continue;
      }
      ++m.report.resolved_committed;
    }
    ++m.report.committed;
    kept.push_back(p.add);
  }
  std::map<uint64_t, int> batches;
  for (const RecordedAdd& add : kept) ++batches[add.batch];
  for (const RecordedAdd& add : kept) {
    if (batches[add.batch] == 1) {
      m.recorded.push_back(add);
    } else {
      m.contested[add.batch].push_back(add);
    }
  }
  const auto split = std::partition(
      m.questions.begin(), m.questions.end(),
      [&](const auto& q) { return !m.contested.contains(q.first); });
  m.contested_questions.assign(split, m.questions.end());
  m.questions.erase(split, m.questions.end());
  return m;
}

// WriteJournal writes the model's file: sized first, then the header and
// each entry up to its last byte other than zero, the rest left holes (as
// a real journal has them). Returns false when the scratch directory
// cannot be written (an environment failure).
bool WriteJournal(const std::string& path, const JournalImage& image,
                  const Model& m) {
  const int fd =
      open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  // The previous input's file goes whole: its pages are freed.
  bool ok = ftruncate(fd, 0) == 0;
  if (ok && m.file_bytes > 0) {
    ok = ftruncate(fd, static_cast<off_t>(m.file_bytes)) == 0;
    const uint64_t header[kHeaderFields] = {
        (image.flags & kJournalBadMagic) ? 0 : kJournalMagic,
        (image.flags & kJournalBadLayout) ? kJournalLayoutVersion + 1
                                          : kJournalLayoutVersion,
        (image.flags & kJournalBadEntryCount) ? kEntries + 1 : kEntries,
        (image.flags & kJournalBadEntryBytes) ? kEntryBytes - 8 : kEntryBytes,
        kJournalIdentity.high,
        (image.flags & kJournalOtherPool) ? kJournalIdentity.low ^ 1
                                          : kJournalIdentity.low,
    };
    ok = ok && WriteAll(fd, header, sizeof(header), 0);
    for (const auto& [i, bytes] : m.entries) {
      if (!ok) break;
      size_t used = bytes.size();
      while (used > 0 && bytes[used - 1] == '\0') --used;
      if (used > 0) {
        ok = WriteAll(fd, bytes.data(), used, kEntryOffset + i * kEntryBytes);
      }
    }
    // A short file loses what was written past its end.
    ok = ok && ftruncate(fd, static_cast<off_t>(m.file_bytes)) == 0;
  }
  close(fd);
  return ok;
}

// CheckAdds checks invariant 3's shape of a listing: every add one a pool
// of `max_volumes` whose next batch is `next_batch` could have made, oldest
// (lowest batch) first.
std::string CheckAdds(const std::vector<RecordedAdd>& recorded,
                      uint64_t max_volumes, uint64_t next_batch) {
  for (size_t k = 0; k < recorded.size(); ++k) {
    const RecordedAdd& a = recorded[k];
    if (const std::string p = AddProblem(a.count, a.first_index, a.info.size(),
                                         a.indices, max_volumes);
        !p.empty()) {
      return absl::StrCat("listed an add that is none: ", p, " in ",
                          Describe(a));
    }
    if (a.batch >= next_batch) {
      return absl::StrCat("listed an add the pool never made: batch ", a.batch,
                          " is at or above next_batch ", next_batch, " in ",
                          Describe(a));
    }
    if (k > 0 && a.batch < recorded[k - 1].batch) {
      return absl::StrCat("listed batch ", a.batch, " after ",
                          recorded[k - 1].batch);
    }
  }
  return "";
}

RequestJournal::Committed Asker(uint8_t answers, Questions* asked) {
  return [answers, asked](uint64_t batch, std::span<const uint64_t> indices) {
    asked->emplace_back(batch,
                        std::vector<uint64_t>(indices.begin(), indices.end()));
    return Answer(answers, batch);
  };
}

// IsSubset says whether every question of `part` is in `whole`, as many
// times at most. Both sorted.
bool IsSubset(const Questions& part, const Questions& whole) {
  return std::includes(whole.begin(), whole.end(), part.begin(), part.end());
}

// CheckOpened checks a journal Open returned: Verify, and what it listed,
// asked and reported, against the model. Returns a violation or "".
std::string CheckOpened(const RequestJournal& journal, const Model& m,
                        Questions asked, JournalOutcome& out) {
  absl::StatusOr<uint64_t> verified = journal.Verify();
  out.verify = verified.status();
  if (!verified.ok()) {
    return absl::StrCat("Open left a journal that Verify rejects: ",
                        verified.status().ToString());
  }
  if (*verified != out.report.committed || *verified != out.recorded.size()) {
    return absl::StrCat("Verify counts ", *verified, " committed, the report ",
                        out.report.committed, ", the listing ",
                        out.recorded.size());
  }
  if (std::string p = CheckAdds(out.recorded, m.max_volumes, m.next_batch);
      !p.empty()) {
    return p;
  }
  // Each PENDING entry with an add asked about once (of contested batches:
  // at most once).
  Questions want = m.questions, maybe = m.contested_questions, asked_maybe;
  std::sort(asked.begin(), asked.end());
  std::sort(want.begin(), want.end());
  std::sort(maybe.begin(), maybe.end());
  const auto split = std::stable_partition(
      asked.begin(), asked.end(),
      [&](const auto& q) { return !m.contested.contains(q.first); });
  asked_maybe.assign(split, asked.end());
  asked.erase(split, asked.end());
  if (asked != want || !IsSubset(asked_maybe, maybe)) {
    return absl::StrCat("asked `committed` ", asked.size() + asked_maybe.size(),
                        " times; the PENDING entries with an add are ",
                        want.size() + maybe.size(),
                        " (each to be asked about once)");
  }
  // The report's counts add up.
  const RequestJournal::OpenReport& r = out.report;
  if (m.keeps_header) {
    if (!r.reset_reason.empty() || r.created ||
        r.committed + r.resolved_failed + r.dropped_invalid != m.not_free ||
        r.resolved_committed > r.committed) {
      return absl::StrCat("kept the header, but the report does not add up to ",
                          m.not_free,
                          " entries not FREE: ", CheckReport(r, m.report));
    }
  } else if (r.committed + r.resolved_committed + r.resolved_failed +
                     r.dropped_invalid !=
                 0 ||
             r.created == !r.reset_reason.empty()) {
    return absl::StrCat("emptied or created the journal, but ",
                        CheckReport(r, m.report));
  }
  // What it kept is what the contract says.
  std::vector<RecordedAdd> listed;
  std::map<uint64_t, int> contested_listed;
  for (const RecordedAdd& a : out.recorded) {
    const auto c = m.contested.find(a.batch);
    if (c == m.contested.end()) {
      listed.push_back(a);
      continue;
    }
    if (++contested_listed[a.batch] > 1 ||
        std::none_of(c->second.begin(), c->second.end(),
                     [&](const RecordedAdd& b) { return Tie(a) == Tie(b); })) {
      return absl::StrCat("listed ", Describe(a), ", of batch ", a.batch,
                          " which ", c->second.size(),
                          " entries record: one of them at most");
    }
  }
  if (m.contested.empty()) {
    if (std::string p = CheckReport(r, m.report); !p.empty()) return p;
  }
  return SameAdds(listed, m.recorded);
}

// KeptEntries reads the state words of the entries the image wrote: entry
// -> batch of those that are COMMITTED (kept) in the file now.
std::map<uint64_t, uint64_t> KeptEntries(const std::string& path,
                                         const Model& m) {
  std::map<uint64_t, uint64_t> kept;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kept;
  for (const auto& [i, bytes] : m.entries) {
    uint64_t word = 0;
    if (pread(fd, &word, sizeof(word),
              static_cast<off_t>(kEntryOffset + i * kEntryBytes)) ==
            static_cast<ssize_t>(sizeof(word)) &&
        (word & kStateMask) == kCommitted) {
      kept[i] = word >> kStateBits;
    }
  }
  close(fd);
  return kept;
}

}  // namespace

uint64_t JournalMaxVolumes(uint8_t flags, uint8_t max_volumes_byte) {
  const uint64_t n = uint64_t{1} + max_volumes_byte;
  return (flags & kJournalLargePool) ? n << 22 : n;
}

uint64_t JournalNextBatch(uint8_t next_batch_byte) {
  return next_batch_byte == 0 ? RequestJournal::kAnyBatch
                              : uint64_t{next_batch_byte} - 1;
}

JournalImage DecodeJournalInput(absl::string_view data) {
  Reader in(data);
  JournalImage image;
  image.flags = in.Take<uint8_t>();
  image.max_volumes_byte = in.Take<uint8_t>();
  image.answers = in.Take<uint8_t>();
  image.next_batch_byte = in.Take<uint8_t>();
  while (!in.empty()) {
    JournalRecord r;
    r.entry = in.Take<uint16_t>() % kEntries;
    r.state_word = in.Take<uint64_t>();
    r.key.high = in.Take<uint64_t>();
    r.key.low = in.Take<uint64_t>();
    r.count = in.Take<uint16_t>();
    r.first_index = in.Take<uint32_t>();
    r.info_size = in.Take<uint16_t>();
    r.recorded_unix_ns = in.Take<int64_t>();
    const uint8_t info_bytes = in.Take<uint8_t>();
    const uint8_t spec = in.Take<uint8_t>();
    r.info = in.TakeBytes(info_bytes);
    r.continue_indices = (spec & 0x80) != 0;
    for (size_t k = 0; k < (spec & kMaxExplicitIndices); ++k) {
      r.indices.push_back(in.Take<uint32_t>());
    }
    image.records.push_back(std::move(r));
  }
  return image;
}

std::string EncodeJournalInput(const JournalImage& image) {
  std::string out;
  Put<uint8_t>(out, image.flags);
  Put<uint8_t>(out, image.max_volumes_byte);
  Put<uint8_t>(out, image.answers);
  Put<uint8_t>(out, image.next_batch_byte);
  for (const JournalRecord& r : image.records) {
    const size_t info = std::min(r.info.size(), kMaxRecordInfo);
    const size_t n = std::min(r.indices.size(), kMaxExplicitIndices);
    Put<uint16_t>(out, r.entry);
    Put<uint64_t>(out, r.state_word);
    Put<uint64_t>(out, r.key.high);
    Put<uint64_t>(out, r.key.low);
    Put<uint16_t>(out, r.count);
    Put<uint32_t>(out, r.first_index);
    Put<uint16_t>(out, r.info_size);
    Put<int64_t>(out, r.recorded_unix_ns);
    Put<uint8_t>(out, static_cast<uint8_t>(info));
    Put<uint8_t>(out,
                 static_cast<uint8_t>(n | (r.continue_indices ? 0x80 : 0)));
    out.append(r.info, 0, info);
    for (size_t k = 0; k < n; ++k) Put<uint32_t>(out, r.indices[k]);
  }
  static_assert(kRecordFixedBytes == 44);
  // Trailing zeros are implied: the fuzzer starts from shorter seeds.
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

JournalOutcome RunJournalInput(absl::string_view data) {
  JournalOutcome out;
  const JournalImage image = DecodeJournalInput(data);
  const Model m = MakeModel(image);
  const std::string path = JournalPath();
  // The file's pages go when the input is done, so that a process that
  // ends without its exit handlers (an abort on a violation, libFuzzer's
  // _Exit) leaves an empty file behind, not up to 4.5 MiB of tmpfs.
  struct Truncate {
    const std::string& path;
    ~Truncate() { (void)truncate(path.c_str(), 0); }
  } truncate_at_end{path};
  if (!WriteJournal(path, image, m)) {
    out.violation = absl::StrCat("cannot write the scratch journal ", path);
    return out;
  }

  // 1. Open returns, with a value. The file is a regular file of the
  // harness's, so only the environment may fail it: RESOURCE_EXHAUSTED
  // (ENOSPC, ENOMEM: a full /dev/shm) is accepted, nothing else.
  Questions asked;
  absl::StatusOr<std::unique_ptr<RequestJournal>> journal =
      RequestJournal::Open(path, kJournalIdentity, m.max_volumes, m.next_batch,
                           Asker(image.answers, &asked), &out.report,
                           &out.recorded);
  out.open = journal.status();
  if (!journal.ok()) {
    if (out.open.code() != absl::StatusCode::kResourceExhausted) {
      out.violation =
          absl::StrCat("Open failed on a regular file: ", out.open.ToString());
    }
    return out;
  }
  // 2-4. Verify, the listing, the questions and the report, against the
  // model.
  out.violation = CheckOpened(**journal, m, asked, out);
  if (!out.violation.empty()) return out;

  // 5. One more add, in the pool's next batch: next_batch, or without one
  // a batch above every listed one, unless the listing left none. Batch 0
  // is none a pool hands out.
  const uint64_t batch = m.next_batch != RequestJournal::kAnyBatch
                             ? m.next_batch
                         : out.recorded.empty() ? 1
                                                : out.recorded.back().batch + 1;
  if (batch == 0 || batch > kMaxBatch) return out;
  const std::map<uint64_t, uint64_t> kept =
      m.keeps_header ? KeptEntries(path, m) : std::map<uint64_t, uint64_t>();
  const uint64_t count = std::min<uint64_t>(3, m.max_volumes);
  const uint64_t first = m.max_volumes - count;
  std::vector<uint64_t> indices;
  for (uint64_t k = 0; k < count; ++k) indices.push_back(first + k);
  const RequestKey key{0x6e657761646400ull, batch};
  absl::StatusOr<uint64_t> entry =
      (*journal)->Begin(key, batch, count, first, "fuzz", indices);
  if (!entry.ok()) {
    out.violation =
        absl::StrCat("Begin after Open failed: ", entry.status().ToString());
    return out;
  }
  (*journal)->Commit(*entry, batch);
  (*journal)->Finish(*entry, batch);
  out.added = true;
  // Expected now: what the first Open listed, less the add whose entry
  // Begin reused (if it took a kept one), plus the new add.
  Model after;
  after.max_volumes = m.max_volumes;
  // The pool's next batch now follows the add's.
  after.next_batch = m.next_batch != RequestJournal::kAnyBatch
                         ? batch + 1
                         : RequestJournal::kAnyBatch;
  after.keeps_header = true;  // the file is the pool's now, whatever it was
  after.recorded = out.recorded;
  if (auto reused = kept.find(*entry); reused != kept.end()) {
    const uint64_t gone = reused->second;
    std::erase_if(after.recorded,
                  [gone](const RecordedAdd& a) { return a.batch == gone; });
  }
  RecordedAdd added;
  added.key = key;
  added.count = count;
  added.first_index = first;
  added.info = "fuzz";
  added.indices = indices;
  added.batch = batch;
  after.recorded.push_back(added);
  after.not_free = after.recorded.size();
  after.report.committed = after.recorded.size();
  absl::StatusOr<uint64_t> verified = (*journal)->Verify();
  if (!verified.ok() || *verified != after.recorded.size()) {
    out.violation =
        absl::StrCat("after one more add, Verify says ",
                     verified.ok() ? absl::StrCat(*verified, " committed")
                                   : verified.status().ToString(),
                     "; expected ", after.recorded.size());
    return out;
  }
  journal->reset();

  // The repair is done once: a second Open finds nothing to resolve and
  // lists the same adds, plus the new one.
  Questions asked_again;
  JournalOutcome again;
  absl::StatusOr<std::unique_ptr<RequestJournal>> reopened =
      RequestJournal::Open(path, kJournalIdentity, m.max_volumes,
                           after.next_batch, Asker(image.answers, &asked_again),
                           &again.report, &again.recorded);
  out.reopen = reopened.status();
  if (!reopened.ok()) {
    if (out.reopen.code() != absl::StatusCode::kResourceExhausted) {
      out.violation =
          absl::StrCat("the second Open failed: ", out.reopen.ToString());
    }
    return out;
  }
  // The new add's time is the clock's: take it from the listing.
  for (const RecordedAdd& a : again.recorded) {
    if (a.batch == batch) {
      after.recorded.back().recorded_unix_ns = a.recorded_unix_ns;
    }
  }
  if (std::string p = CheckOpened(**reopened, after, asked_again, again);
      !p.empty()) {
    out.violation = absl::StrCat("the second Open: ", p);
  }
  return out;
}

absl::StatusOr<JournalImage> ReadJournalImage(const std::string& path,
                                              uint8_t flags,
                                              uint8_t max_volumes_byte,
                                              uint8_t answers) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("no journal ", path));
  }
  std::string file(kFileBytes, '\0');
  size_t done = 0;
  while (done < file.size()) {
    const ssize_t n = pread(fd, file.data() + done, file.size() - done,
                            static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (done != file.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "journal ", path, " is ", done, " bytes, not ", kFileBytes));
  }
  JournalImage image;
  image.flags = flags;
  image.max_volumes_byte = max_volumes_byte;
  image.answers = answers;
  for (uint64_t i = 0; i < kEntries; ++i) {
    const std::string e =
        file.substr(kEntryOffset + i * kEntryBytes, kEntryBytes);
    if (e.find_first_not_of('\0') == std::string::npos) continue;
    const auto bad = [i](absl::string_view what) {
      return absl::FailedPreconditionError(
          absl::StrCat("entry ", i, ": ", what, " (the image cannot hold it)"));
    };
    JournalRecord r;
    r.entry = static_cast<uint16_t>(i);
    r.state_word = Load<uint64_t>(e, kStateOffset);
    r.key = {Load<uint64_t>(e, kKeyHighOffset),
             Load<uint64_t>(e, kKeyLowOffset)};
    const uint64_t count = Load<uint64_t>(e, kCountOffset);
    const uint64_t first = Load<uint64_t>(e, kFirstIndexOffset);
    const uint64_t info_size = Load<uint64_t>(e, kInfoSizeOffset);
    if (count > 0xffff || info_size > 0xffff) return bad("count or info_size");
    if (first != kNoFirstIndex && first >= kJournalNoFirstIndex) {
      return bad("first_index");
    }
    r.count = static_cast<uint16_t>(count);
    r.first_index = first == kNoFirstIndex ? kJournalNoFirstIndex
                                           : static_cast<uint32_t>(first);
    r.info_size = static_cast<uint16_t>(info_size);
    r.recorded_unix_ns = Load<int64_t>(e, kRecordedOffset);
    std::string info = e.substr(kInfoOffset, kMaxInfoBytes);
    while (!info.empty() && info.back() == '\0') info.pop_back();
    if (info.size() > kMaxRecordInfo) return bad("an info of over 255 bytes");
    r.info = info;
    // Only the first `count` indices are read (Open); the fewest explicit
    // ones, the rest consecutive.
    const uint64_t used = std::min<uint64_t>(count, kMaxVolumesPerAdd);
    std::vector<uint32_t> indices;
    for (uint64_t k = 0; k < used; ++k) {
      indices.push_back(Load<uint32_t>(e, kIndicesOffset + 4 * k));
    }
    size_t n = indices.size();
    while (n > 0 &&
           (n == 1 ? indices[0] == 0 : indices[n - 1] == indices[n - 2] + 1)) {
      --n;
    }
    r.continue_indices = n < indices.size();
    if (n > kMaxExplicitIndices) return bad("too many scattered indices");
    r.indices.assign(indices.begin(), indices.begin() + n);
    image.records.push_back(std::move(r));
  }
  return image;
}

}  // namespace groove::fuzz
