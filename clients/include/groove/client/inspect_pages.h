// groove/client/inspect_pages.h: a check that a listing of a pool's
// volumes through Inspect's pages (AIP-158) ends, whatever the server
// answers.
//
// A client follows next_page_token until it is empty. groove-volumed ends
// every listing: each page moves the listing on by at least one index (its
// token names an index past the page's last volume, or past the slots it
// looked at), so a listing has at most max_volumes + 1 pages, a token
// never repeats the one sent for it, and the indices ascend across the
// pages ("every index appears at most once across the pages of one
// listing", InspectRequest.page_token). A server (or anything between the
// client and it) that breaks this would keep a client paging for ever, its
// memory growing with every page. InspectPageGuard checks each page against
// that contract, so that every paging loop stops with an error instead: a
// real server never trips it.
//
// Example:
//   groove::InspectPageGuard guard("main");
//   v1::InspectRequest request;  // pool "main", include_volumes
//   for (;;) {
//     v1::InspectResponse page = ...;  // Inspect(request)
//     if (absl::Status s = guard.Check(request.page_token(), page); !s.ok())
//       return s;  // INTERNAL: the server misbehaves; stop paging
//     ... page.volumes() ...
//     if (page.next_page_token().empty()) break;
//     request.set_page_token(page.next_page_token());
//   }

#ifndef GROOVE_CLIENT_INSPECT_PAGES_H_
#define GROOVE_CLIENT_INSPECT_PAGES_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "groove/v1/volume_pool.pb.h"

namespace groove {

// InspectPageGuard checks the pages of one listing of one pool's volumes,
// in the order they come. Thread safety: none (one listing, one thread).
class InspectPageGuard {
 public:
  // `pool` names the pool in the errors.
  explicit InspectPageGuard(std::string pool);

  // Check checks `page`, the answer to the Inspect (include_volumes set)
  // whose page_token was `sent_token` ("" for the first page), as the
  // listing's next page. OK when the listing may go on, or ends with this
  // page (an empty next_page_token). Else INTERNAL, naming the server's
  // misbehaviour and the page, and the caller stops paging:
  // - the page's next_page_token is `sent_token` again;
  // - an index of the page is not above every index listed before it (a
  //   volume listed again, or out of order);
  // - the page still has a next_page_token although it is page
  //   max_volumes + 1 of the listing (max_volumes as the first page's
  //   summary says), the most pages a listing can have.
  // Cost: O(volumes of the page).
  absl::Status Check(absl::string_view sent_token,
                     const v1::InspectResponse& page);

 private:
  const std::string pool_;
  uint64_t pages_ = 0;                  // pages checked, this one included
  uint64_t max_pages_ = 0;              // max_volumes + 1, from the first page
  std::optional<uint64_t> last_index_;  // the highest index listed so far
};

}  // namespace groove

#endif  // GROOVE_CLIENT_INSPECT_PAGES_H_
