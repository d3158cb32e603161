#include "groove/client/inspect_pages.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace groove {

InspectPageGuard::InspectPageGuard(std::string pool) : pool_(std::move(pool)) {}

absl::Status InspectPageGuard::Check(absl::string_view sent_token,
                                     const v1::InspectResponse& page) {
  ++pages_;
  if (pages_ == 1) {
    const uint64_t max_volumes = page.summary().max_volumes();
    max_pages_ = max_volumes == std::numeric_limits<uint64_t>::max()
                     ? max_volumes
                     : max_volumes + 1;
  }
  const auto misbehaves = [&](absl::string_view what) {
    return absl::InternalError(absl::StrCat(
        "the server misbehaves: Inspect of pool '", pool_, "', page ", pages_,
        " of the listing: ", what,
        "; stopped following next_page_token (a listing that would never "
        "end)"));
  };
  const std::string& next = page.next_page_token();
  if (!next.empty() && next == sent_token) {
    return misbehaves("its next_page_token is the page_token just sent for it");
  }
  for (const v1::Volume& v : page.volumes()) {
    if (last_index_.has_value() && v.index() <= *last_index_) {
      return misbehaves(absl::StrCat("it lists volume ", v.index(),
                                     " after volume ", *last_index_,
                                     " (indices ascend across the pages of a "
                                     "listing, each at most once)"));
    }
    last_index_ = v.index();
  }
  if (!next.empty() && pages_ >= max_pages_) {
    return misbehaves(absl::StrCat(
        "it still has a next_page_token, but a listing of a pool of "
        "max_volumes ",
        max_pages_ - 1, " has at most ", max_pages_, " pages"));
  }
  return absl::OkStatus();
}

}  // namespace groove
