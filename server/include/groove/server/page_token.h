// groove/server/page_token.h: Inspect's opaque page tokens (AIP-158).
//
// A token says where the next page of a pool's volume listing starts: the
// volume index to resume from, bound to the pool (its name and its random
// pool_id, NamedPool::pool_id, which a pool re-created under the same name
// draws anew). It is the unpadded web-safe base64 of a version byte (2),
// the index, a 64-bit tag of the pool_id (FNV-1a of its 128 bits) and a
// 64-bit FNV-1a checksum of (a fixed key, the pool name, the tag, the
// index): 25 bytes, 34 characters. So a token is opaque to
// clients, is valid only for the pool that issued it, never expires (it
// holds no server state: a restarted server takes it, the pool_id being
// kept in the pool's metadata), and a string that is not one (a typo, a
// truncation, another pool's token, a padded or otherwise re-spelled one)
// is refused. A token of a pool of the same name that was re-created since
// (its pool_id is another), or of version 1 (servers before pool_id was
// bound, whose tokens named the pool only), is refused saying so: resuming
// it would mix two pools' volumes in one listing. The checksum is
// integrity against accidents, not authentication: the key is a public
// constant and the tag is in the token, so tokens are neither secret
// nor unforgeable. That is harmless: a forged token can only start a
// listing at an index in [0, max_volumes], which paging reaches anyway,
// and a listing reveals nothing a caller of Inspect may not see.
//
// Example:
//   std::string token = EncodePageToken("main", pool.pool_id(), 100);
//   absl::StatusOr<uint64_t> next =
//       DecodePageToken(token, "main", pool.pool_id(), 1024);

#ifndef GROOVE_SERVER_PAGE_TOKEN_H_
#define GROOVE_SERVER_PAGE_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "groove/request_journal.h"

namespace groove::server {

// PoolId is a pool's random identity (NamedPool::pool_id).
using PoolId = RequestJournal::Identity;

// EncodePageToken returns the token for resuming the listing of pool
// `pool`, identity `pool_id`, at volume index `next_index`: 34 characters.
// Thread safety: a pure function. Cost: O(pool name).
std::string EncodePageToken(absl::string_view pool, const PoolId& pool_id,
                            uint64_t next_index);

// DecodePageToken returns the index a token of pool `pool`, identity
// `pool_id`, resumes at.
// Errors (all INVALID_ARGUMENT, naming the pool and saying to pass an
// empty page_token):
// - `token` was made by EncodePageToken for `pool` and another pool_id
//   (its tag is another):
//   the pool was re-created since (or the token is another server's pool
//   of the same name);
// - `token` is a version 1 token of `pool` (servers before tokens named
//   the pool_id): from an older server, or the pool was re-created since;
// - anything else that is not exactly what EncodePageToken returns for
//   `pool`, `pool_id` and some index (the canonical encoding only: no '='
//   padding, no other spelling), or whose index is above `max_volumes`.
// Thread safety: a pure function. Cost: O(token + pool name).
absl::StatusOr<uint64_t> DecodePageToken(absl::string_view token,
                                         absl::string_view pool,
                                         const PoolId& pool_id,
                                         uint64_t max_volumes);

}  // namespace groove::server

#endif  // GROOVE_SERVER_PAGE_TOKEN_H_
