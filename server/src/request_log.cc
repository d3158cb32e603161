#include "groove/server/request_log.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace groove::server {
namespace {

std::string Key(const v1::AddVolumeRequest& request) {
  return absl::AsciiStrToLower(request.request_id());
}

bool SameArguments(const v1::AddVolumeRequest& a,
                   const v1::AddVolumeRequest& b) {
  return a.pool() == b.pool() && a.count() == b.count() &&
         a.has_first_index() == b.has_first_index() &&
         a.first_index() == b.first_index() && a.info() == b.info();
}

}  // namespace

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

RequestLog::RequestLog(size_t capacity)
    : capacity_(std::max<size_t>(capacity, 1)) {}

RequestLog::Claim RequestLog::Start(const v1::AddVolumeRequest& request) {
  Claim claim;
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = entries_.try_emplace(Key(request));
  if (inserted) {
    it->second.request = request;
    claim.outcome = Outcome::kRun;
  } else if (!SameArguments(it->second.request, request)) {
    claim.outcome = Outcome::kConflict;
  } else if (!it->second.done) {
    claim.outcome = Outcome::kInProgress;
  } else {
    claim.outcome = Outcome::kReplay;
    claim.response = it->second.response;
  }
  return claim;
}

void RequestLog::Succeeded(const v1::AddVolumeRequest& request,
                           const v1::AddVolumeResponse& response) {
  const std::string key = Key(request);
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.done) return;
  it->second.done = true;
  it->second.response = response;
  done_order_.push_back(key);
  while (done_order_.size() > capacity_) {
    entries_.erase(done_order_.front());
    done_order_.pop_front();
  }
}

void RequestLog::Failed(const v1::AddVolumeRequest& request) {
  const std::string key = Key(request);
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && !it->second.done) entries_.erase(it);
}

}  // namespace groove::server
