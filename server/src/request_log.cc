#include "groove/server/request_log.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace groove::server {
namespace {

// ArgumentDifference names the first argument in which `now` differs from
// `first` (pool, count, first_index, info), with both values:
// "count was 2, is 3 now". Empty when they are the same.
std::string ArgumentDifference(const v1::AddVolumeRequest& first,
                               const v1::AddVolumeRequest& now) {
  auto quoted = [](absl::string_view text) {
    constexpr size_t kShown = 64;
    std::string out =
        absl::StrCat("'", absl::CHexEscape(text.substr(0, kShown)), "'");
    if (text.size() > kShown) {
      absl::StrAppend(&out, "... (", text.size(), " bytes)");
    }
    return out;
  };
  auto index = [](const v1::AddVolumeRequest& r) {
    return r.has_first_index() ? absl::StrCat(r.first_index())
                               : std::string("unset");
  };
  auto differs = [](absl::string_view field, const std::string& was,
                    const std::string& is) {
    return absl::StrCat(field, " was ", was, ", is ", is, " now");
  };
  if (first.pool() != now.pool()) {
    return differs("pool", quoted(first.pool()), quoted(now.pool()));
  }
  if (first.count() != now.count()) {
    return differs("count", absl::StrCat(first.count()),
                   absl::StrCat(now.count()));
  }
  if (first.has_first_index() != now.has_first_index() ||
      first.first_index() != now.first_index()) {
    return differs("first_index", index(first), index(now));
  }
  if (first.info() != now.info()) {
    return differs("info", quoted(first.info()), quoted(now.info()));
  }
  return "";
}

constexpr uint64_t kVersionShift = 48;
constexpr uint64_t kVersionOne = uint64_t{1} << kVersionShift;

}  // namespace

RequestKey ParseRequestId(absl::string_view request_id) {
  RequestKey key;
  int digits = 0;
  for (char c : request_id) {
    if (c == '-') continue;
    const uint64_t nibble =
        absl::ascii_isdigit(c)
            ? static_cast<uint64_t>(c - '0')
            : static_cast<uint64_t>(absl::ascii_tolower(c) - 'a' + 10);
    uint64_t& half = digits < 16 ? key.high : key.low;
    half = half << 4 | nibble;
    ++digits;
  }
  return key;
}

std::string FormatRequestId(const RequestKey& key) {
  const std::string hex = absl::StrCat(absl::Hex(key.high, absl::kZeroPad16),
                                       absl::Hex(key.low, absl::kZeroPad16));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-",
                      hex.substr(12, 4), "-", hex.substr(16, 4), "-",
                      hex.substr(20, 12));
}

absl::Status ValidateRequestId(absl::string_view request_id) {
  if (request_id.empty()) return absl::OkStatus();
  bool ok = request_id.size() == 36;
  for (size_t i = 0; ok && i < request_id.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    ok = dash ? request_id[i] == '-' : absl::ascii_isxdigit(request_id[i]);
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request_id '", absl::CHexEscape(request_id.substr(0, 64)),
        "' is not a UUID: use 36 characters, 8-4-4-4-12 hex digits, e.g. "
        "123e4567-e89b-42d3-a456-426614174000, or leave it empty"));
  }
  return absl::OkStatus();
}

// Record is one remembered id. A record with references == 0 is free; the
// thread whose CAS takes it from 0 owns its fields until it publishes the
// record in a bucket, after which they change only as noted.
// Every field is atomic because a reader may load one from a record that
// is being reused; it then finds its bucket changed and discards what it
// read.
struct RequestLog::Record {
  // Holders: the bucket entry (while published), the call running the id
  // (from kRun to Succeeded/Failed), and readers copying a replay.
  std::atomic<uint64_t> references{0};
  std::atomic<uint64_t> id_high{0};
  std::atomic<uint64_t> id_low{0};
  // The first call's arguments: set before publication, then constant.
  std::atomic<const v1::AddVolumeRequest*> request{nullptr};
  // Null while the call runs; set once by Succeeded (release). Owned by the
  // record: freed when the record is reused or the log destroyed.
  std::atomic<const v1::AddVolumeResponse*> response{nullptr};
  // When the call succeeded (a log-wide sequence): the oldest completed
  // entry of a full bucket is replaced first. Written before `response`.
  std::atomic<uint64_t> completed_sequence{0};
};

RequestLog::RequestLog(size_t buckets)
    : bucket_count_(std::clamp<size_t>(buckets, 1, kMaxBuckets)),
      // Twice the entries: a record evicted while a reader copies its
      // response stays referenced, and a new id needs a record before it
      // can replace one.
      record_count_(2 * kWays * bucket_count_),
      buckets_(new std::atomic<uint64_t>[bucket_count_]),
      records_(new Record[record_count_]) {
  static_assert(kWays * 16 <= kVersionShift);
  static_assert(2 * kWays * kMaxBuckets < 0xffff, "handles are 16 bits");
  for (size_t i = 0; i < bucket_count_; ++i) {
    buckets_[i].store(0, std::memory_order_relaxed);
  }
}

RequestLog::~RequestLog() {
  for (size_t i = 0; i < record_count_; ++i) {
    delete records_[i].request.load(std::memory_order_relaxed);
    delete records_[i].response.load(std::memory_order_relaxed);
  }
}

uint64_t RequestLog::WithHandle(uint64_t word, size_t way, uint16_t handle) {
  const uint64_t shift = 16 * way;
  word &= ~(uint64_t{0xffff} << shift);
  word |= uint64_t{handle} << shift;
  return word + kVersionOne;  // the version wraps within its 16 bits
}

uint32_t RequestLog::BucketOf(uint64_t id_high, uint64_t id_low) const {
  const size_t hash =
      absl::Hash<std::pair<uint64_t, uint64_t>>()({id_high, id_low});
  return static_cast<uint32_t>(hash % bucket_count_);
}

bool RequestLog::TryReference(Record& record) {
  // Relaxed first load: the CAS re-checks it.
  uint64_t references = record.references.load(std::memory_order_relaxed);
  while (references != 0) {
    // Acquire: a reader that then validates its bucket reads the fields the
    // publisher wrote (the bucket CAS is the publication; this is belt and
    // braces for the fields written after it: response).
    if (record.references.compare_exchange_weak(references, references + 1,
                                                std::memory_order_acquire,
                                                std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void RequestLog::Unreference(Record& record) {
  // Release: this holder's reads of the record happen before a later
  // owner (whose claiming CAS is acquire) frees or rewrites its fields.
  record.references.fetch_sub(1, std::memory_order_release);
}

int64_t RequestLog::AllocateRecord() {
  for (size_t scanned = 0; scanned < record_count_; ++scanned) {
    // Relaxed: the cursor only spreads allocations; the CAS decides.
    const uint64_t i =
        allocation_cursor_.fetch_add(1, std::memory_order_relaxed) %
        record_count_;
    Record& record = records_[i];
    uint64_t free = 0;
    // Acquire: see every earlier holder's last use before reusing fields.
    if (!record.references.compare_exchange_strong(
            free, 2, std::memory_order_acquire, std::memory_order_relaxed)) {
      continue;
    }
    // The record is ours until published: drop what its last use left.
    delete record.request.exchange(nullptr, std::memory_order_relaxed);
    delete record.response.exchange(nullptr, std::memory_order_relaxed);
    record.completed_sequence.store(0, std::memory_order_relaxed);
    return static_cast<int64_t>(i);
  }
  return -1;
}

RequestLog::Claim RequestLog::Start(const v1::AddVolumeRequest& request) {
  const RequestKey id = ParseRequestId(request.request_id());
  const uint32_t bucket_index = BucketOf(id.high, id.low);
  std::atomic<uint64_t>& bucket = buckets_[bucket_index];
  int64_t fresh = -1;  // a record allocated for this id, not yet published
  auto release_fresh = [&] {
    if (fresh < 0) return;
    // Never published: only we (and transient readers) hold it.
    Unreference(records_[fresh]);
    Unreference(records_[fresh]);
    fresh = -1;
  };

  for (;;) {
    // Acquire: the records the word names were published (their fields
    // written) before the CAS that stored it.
    uint64_t word = bucket.load(std::memory_order_acquire);
    int match = -1;
    for (size_t way = 0; way < kWays; ++way) {
      const uint16_t handle = HandleAt(word, way);
      if (handle == 0) continue;
      const Record& r = records_[handle - 1];
      // Relaxed: valid only if the bucket is unchanged when checked below.
      if (r.id_high.load(std::memory_order_relaxed) == id.high &&
          r.id_low.load(std::memory_order_relaxed) == id.low) {
        match = static_cast<int>(way);
        break;
      }
    }

    if (match >= 0) {
      Record& r = records_[HandleAt(word, match) - 1];
      if (!TryReference(r)) continue;  // freed meanwhile: look again
      // Unchanged bucket (same version): the ids compared above were this
      // record's, and our reference keeps its fields from being reused.
      if (bucket.load(std::memory_order_acquire) != word) {
        Unreference(r);
        continue;
      }
      release_fresh();
      Claim claim;
      // Relaxed: published with the record (acquire load of the bucket).
      const v1::AddVolumeRequest* first =
          r.request.load(std::memory_order_relaxed);
      // Acquire: pairs with Succeeded's release: the response is complete.
      const v1::AddVolumeResponse* done =
          r.response.load(std::memory_order_acquire);
      if (std::string difference = ArgumentDifference(*first, request);
          !difference.empty()) {
        claim.outcome = Outcome::kConflict;
        claim.conflict = std::move(difference);
      } else if (done == nullptr) {
        claim.outcome = Outcome::kInProgress;
      } else {
        claim.outcome = Outcome::kReplay;
        claim.response = *done;
      }
      Unreference(r);
      return claim;
    }

    // A new id: take an empty entry, else the oldest completed one.
    if (test_hook_ != nullptr) test_hook_(test_hook_arg_);
    int way_to_use = -1;
    uint64_t oldest = ~uint64_t{0};
    for (size_t way = 0; way < kWays; ++way) {
      const uint16_t handle = HandleAt(word, way);
      if (handle == 0) {
        way_to_use = static_cast<int>(way);
        oldest = 0;
        break;
      }
      const Record& r = records_[handle - 1];
      // Acquire (response) then relaxed (sequence, written before it). A
      // stale read only makes the CAS below fail.
      if (r.response.load(std::memory_order_acquire) == nullptr) continue;
      const uint64_t sequence =
          r.completed_sequence.load(std::memory_order_relaxed);
      if (sequence < oldest) {
        oldest = sequence;
        way_to_use = static_cast<int>(way);
      }
    }
    if (way_to_use < 0) {
      release_fresh();
      Claim claim;
      claim.outcome = Outcome::kBusy;
      return claim;
    }
    if (fresh < 0) {
      fresh = AllocateRecord();
      if (fresh < 0) {
        Claim claim;
        claim.outcome = Outcome::kBusy;
        return claim;
      }
      Record& r = records_[fresh];
      // Relaxed: published by the release CAS of the bucket below.
      r.id_high.store(id.high, std::memory_order_relaxed);
      r.id_low.store(id.low, std::memory_order_relaxed);
      r.request.store(new v1::AddVolumeRequest(request),
                      std::memory_order_relaxed);
    }
    const uint16_t evicted = HandleAt(word, way_to_use);
    const uint64_t next =
        WithHandle(word, way_to_use, static_cast<uint16_t>(fresh + 1));
    // Release: publishes the record's fields. Acquire on failure is not
    // needed: the loop reloads the word with acquire.
    if (bucket.compare_exchange_strong(word, next, std::memory_order_release,
                                       std::memory_order_relaxed)) {
      if (evicted != 0) Unreference(records_[evicted - 1]);
      Claim claim;
      claim.outcome = Outcome::kRun;
      claim.ticket.bucket = bucket_index;
      claim.ticket.record = static_cast<uint32_t>(fresh);
      return claim;
    }
  }
}

void RequestLog::Succeeded(const Ticket& ticket,
                           const v1::AddVolumeResponse& response) {
  Record& r = records_[ticket.record];
  // Relaxed: ordered before the response's release store.
  r.completed_sequence.store(
      next_sequence_.fetch_add(1, std::memory_order_relaxed),
      std::memory_order_relaxed);
  // Release: a reader that sees the pointer sees the whole response.
  r.response.store(new v1::AddVolumeResponse(response),
                   std::memory_order_release);
  Unreference(r);  // the runner's reference
}

bool RequestLog::Remember(const v1::AddVolumeRequest& request,
                          const v1::AddVolumeResponse& response) {
  Claim claim = Start(request);
  if (claim.outcome != Outcome::kRun) return false;
  Succeeded(claim.ticket, response);
  return true;
}

void RequestLog::Failed(const Ticket& ticket) {
  Record& r = records_[ticket.record];
  std::atomic<uint64_t>& bucket = buckets_[ticket.bucket];
  const uint16_t handle = static_cast<uint16_t>(ticket.record + 1);
  // Relaxed: the CAS checks the word; nothing else is read from it.
  uint64_t word = bucket.load(std::memory_order_relaxed);
  for (;;) {
    int way = -1;
    for (size_t w = 0; w < kWays; ++w) {
      if (HandleAt(word, w) == handle) way = static_cast<int>(w);
    }
    // An id in progress is never evicted, so it is still in its bucket.
    if (way < 0) break;
    if (bucket.compare_exchange_weak(word, WithHandle(word, way, 0),
                                     std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      Unreference(r);  // the bucket's reference
      break;
    }
  }
  Unreference(r);  // the runner's reference
}

absl::StatusOr<RequestLog::Contents> RequestLog::Verify() const {
  Contents contents;
  // How many bucket entries name each record.
  std::vector<uint64_t> named(record_count_, 0);
  const uint64_t sequences_handed_out =
      next_sequence_.load(std::memory_order_relaxed);
  for (size_t b = 0; b < bucket_count_; ++b) {
    // Relaxed loads throughout: REQUIRES no call in flight.
    const uint64_t word = buckets_[b].load(std::memory_order_relaxed);
    for (size_t way = 0; way < kWays; ++way) {
      const uint16_t handle = HandleAt(word, way);
      if (handle == 0) continue;
      const auto bad = [&](auto&&... what) {
        return absl::InternalError(absl::StrCat("request log bucket ", b,
                                                " entry ", way, ": ", what...));
      };
      if (handle > record_count_) {
        return bad("names record ", handle - 1, " of ", record_count_);
      }
      const size_t i = handle - 1;
      if (++named[i] > 1) return bad("names record ", i, " again");
      const Record& r = records_[i];
      const uint64_t high = r.id_high.load(std::memory_order_relaxed);
      const uint64_t low = r.id_low.load(std::memory_order_relaxed);
      if (BucketOf(high, low) != b) {
        return bad("record ", i, "'s id belongs in bucket ",
                   BucketOf(high, low));
      }
      for (size_t other = 0; other < way; ++other) {
        const uint16_t h = HandleAt(word, other);
        if (h != 0 && h <= record_count_ &&
            records_[h - 1].id_high.load(std::memory_order_relaxed) == high &&
            records_[h - 1].id_low.load(std::memory_order_relaxed) == low) {
          return bad("holds the id of entry ", other, " again");
        }
      }
      if (r.request.load(std::memory_order_relaxed) == nullptr) {
        return bad("record ", i, " has no request");
      }
      const bool done = r.response.load(std::memory_order_relaxed) != nullptr;
      const uint64_t sequence =
          r.completed_sequence.load(std::memory_order_relaxed);
      if (done != (sequence != 0) || sequence >= sequences_handed_out) {
        return bad("record ", i, (done ? " succeeded" : " is in progress"),
                   " with completion sequence ", sequence, " (",
                   sequences_handed_out, " handed out)");
      }
      const uint64_t want_references = done ? 1 : 2;
      const uint64_t references = r.references.load(std::memory_order_relaxed);
      if (references != want_references) {
        return bad(
            "record ", i, " has ", references, " references, not ",
            want_references,
            (done ? " (its bucket's)" : " (its bucket's and its runner's)"));
      }
      ++(done ? contents.remembered : contents.in_progress);
    }
  }
  for (size_t i = 0; i < record_count_; ++i) {
    const uint64_t references =
        records_[i].references.load(std::memory_order_relaxed);
    if (named[i] == 0 && references != 0) {
      return absl::InternalError(
          absl::StrCat("request log record ", i, " is in no bucket but has ",
                       references, " references: it can never be reused"));
    }
  }
  return contents;
}

size_t RememberNewest(std::vector<RecordedPoolAdd> adds, RequestLog& log) {
  std::sort(adds.begin(), adds.end(),
            [](const RecordedPoolAdd& a, const RecordedPoolAdd& b) {
              return a.add.recorded_unix_ns < b.add.recorded_unix_ns;
            });
  // Newest first, keeping the first of each id; then remembered oldest
  // first.
  std::vector<const RecordedPoolAdd*> newest;
  absl::flat_hash_set<std::pair<uint64_t, uint64_t>> seen;
  for (auto it = adds.rbegin(); it != adds.rend(); ++it) {
    if (seen.insert({it->add.key.high, it->add.key.low}).second) {
      newest.push_back(&*it);
    }
  }
  size_t remembered = 0;
  for (auto it = newest.rbegin(); it != newest.rend(); ++it) {
    const RecordedPoolAdd& r = **it;
    v1::AddVolumeRequest request;
    request.set_pool(r.pool);
    request.set_count(r.add.count);
    if (r.add.first_index.has_value()) {
      request.set_first_index(*r.add.first_index);
    }
    request.set_info(r.add.info);
    request.set_request_id(FormatRequestId(r.add.key));
    v1::AddVolumeResponse response;
    response.mutable_volume_indices()->Assign(r.add.indices.begin(),
                                              r.add.indices.end());
    *response.mutable_summary() = r.summary;
    if (log.Remember(request, response)) ++remembered;
  }
  return remembered;
}

}  // namespace groove::server
