// groove/server/page_token.h: Inspect's opaque page tokens (AIP-158).
//
// A token says where the next page of a pool's volume listing starts: the
// volume index to resume from, bound to the pool's name. It is the
// unpadded web-safe base64 of a version byte, the index and a 64-bit
// FNV-1a checksum of (a fixed key, the pool name, the index), so a token
// is opaque to clients, is valid only for the pool that issued it, never
// expires (it holds no server state: a restarted server takes it), and a
// string that is not one (a typo, a truncation, another pool's token, a
// padded or otherwise re-spelled one) is refused. The checksum is
// integrity against accidents, not authentication: the key is a public
// constant, so tokens are neither secret nor unforgeable. That is
// harmless: a forged token can only start a listing at an index in
// [0, max_volumes], which paging reaches anyway, and a listing reveals
// nothing a caller of Inspect may not see.
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
// Errors: INVALID_ARGUMENT when `token` is not exactly what
// EncodePageToken returns for `pool` and some index (the canonical
// encoding only: no '=' padding, no other spelling), or its index is above
// `max_volumes`. Cost: O(token + pool name).
absl::StatusOr<uint64_t> DecodePageToken(absl::string_view token,
                                         absl::string_view pool,
                                         uint64_t max_volumes);

}  // namespace groove::server

#endif  // GROOVE_SERVER_PAGE_TOKEN_H_
