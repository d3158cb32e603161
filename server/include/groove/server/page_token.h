// groove/server/page_token.h: Inspect's opaque page tokens (AIP-158).
//
// A token says where the next page of a pool's volume listing starts: the
// volume index to resume from, bound to the pool's name. It is the
// web-safe base64 of a version byte, the index and a 64-bit FNV-1a
// checksum of (a fixed key, the pool name, the index), so a token is
// opaque to clients, is valid only for the pool that issued it, never
// expires (it holds no server state: a restarted server takes it), and any
// other string is rejected with overwhelming probability. Tokens are not
// secret and not signed against forgery: a client that forges one can only
// start a listing at an index of its choice, which the API allows anyway.
//
// Example:
//   std::string token = EncodePageToken("main", 100);
//   absl::StatusOr<uint64_t> next = DecodePageToken(token, "main", 1024);

#ifndef GROOVE_SERVER_PAGE_TOKEN_H_
#define GROOVE_SERVER_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace groove::server {

// EncodePageToken returns the token for resuming `pool`'s listing at
// volume index `next_index`. Cost: O(pool name).
std::string EncodePageToken(absl::string_view pool, uint64_t next_index);

// DecodePageToken returns the index a token of `pool` resumes at.
// Errors: INVALID_ARGUMENT when `token` was not made by EncodePageToken
// for `pool`, or its index is above `max_volumes`. Cost: O(token).
absl::StatusOr<uint64_t> DecodePageToken(absl::string_view token,
                                         absl::string_view pool,
                                         uint64_t max_volumes);

}  // namespace groove::server

#endif  // GROOVE_SERVER_PAGE_TOKEN_H_
