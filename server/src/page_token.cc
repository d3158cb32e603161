#include "groove/server/page_token.h"

#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace groove::server {
namespace {

// Version 2: version, index, pool tag (PoolTag), checksum.
constexpr char kTokenVersion = 2;
constexpr size_t kTokenBytes = 1 + 8 + 8 + 8;
// Version 1 (servers before tokens named the pool_id): version, index,
// checksum of the pool name and the index. Recognized only to say why it
// is refused.
constexpr char kTokenVersion1 = 1;
constexpr size_t kToken1Bytes = 1 + 8 + 8;

// Fnv1a64 hashes bytes with FNV-1a: stable across builds and restarts,
// unlike absl::Hash, so tokens outlive the server that issued them.
uint64_t Fnv1a64(uint64_t hash, absl::string_view bytes) {
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

void Store64(char* out, uint64_t v) {
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>(v >> (8 * k));
}

uint64_t Load64(const char* in) {
  uint64_t v = 0;
  for (int k = 0; k < 8; ++k) {
    v |= uint64_t{static_cast<unsigned char>(in[k])} << (8 * k);
  }
  return v;
}

uint64_t Fnv1a64Word(uint64_t hash, uint64_t word) {
  char bytes[8];
  Store64(bytes, word);
  return Fnv1a64(hash, absl::string_view(bytes, sizeof(bytes)));
}

// PoolTag is what a token carries of the pool_id: 64 bits of FNV-1a of
// its 128. Two pools of a name (one re-created since) share a tag once in
// 2^64 re-creations; the tag is no secret either way (see the header).
uint64_t PoolTag(const PoolId& pool_id) {
  return Fnv1a64Word(Fnv1a64Word(0xcbf29ce484222325ULL, pool_id.high),
                     pool_id.low);
}

// Checksum covers the pool name, its tag (none in version 1) and the
// index.
uint64_t Checksum(absl::string_view pool, std::optional<uint64_t> pool_tag,
                  uint64_t index) {
  uint64_t hash = Fnv1a64(0xcbf29ce484222325ULL, "groove.v1.Inspect/page/");
  hash = Fnv1a64(hash, pool);
  hash = Fnv1a64(hash, absl::string_view("\0", 1));
  if (pool_tag.has_value()) hash = Fnv1a64Word(hash, *pool_tag);
  return Fnv1a64Word(hash, index);
}

}  // namespace

std::string EncodePageToken(absl::string_view pool, const PoolId& pool_id,
                            uint64_t next_index) {
  char raw[kTokenBytes];
  raw[0] = kTokenVersion;
  const uint64_t tag = PoolTag(pool_id);
  Store64(raw + 1, next_index);
  Store64(raw + 9, tag);
  Store64(raw + 17, Checksum(pool, tag, next_index));
  return absl::WebSafeBase64Escape(absl::string_view(raw, sizeof(raw)));
}

absl::StatusOr<uint64_t> DecodePageToken(absl::string_view token,
                                         absl::string_view pool,
                                         const PoolId& pool_id,
                                         uint64_t max_volumes) {
  const auto refused = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token ", why,
                     "; pass an empty page_token to list "
                     "pool '",
                     pool, "' from the first page"));
  };
  const auto not_returned = [&] {
    return refused(absl::StrCat(
        "is not a next_page_token that Inspect returned for pool '", pool,
        "'"));
  };
  std::string raw;
  // The canonical encoding only (unpadded, no other spelling of the same
  // bytes): the unescape also takes '=' padding, whitespace and unused
  // low bits in the last character, so one token had several spellings.
  if (!absl::WebSafeBase64Unescape(token, &raw) ||
      token != absl::WebSafeBase64Escape(raw)) {
    return not_returned();
  }
  if (raw.size() == kToken1Bytes && raw[0] == kTokenVersion1 &&
      Load64(raw.data() + 9) ==
          Checksum(pool, std::nullopt, Load64(raw.data() + 1))) {
    return refused(absl::StrCat(
        "of pool '", pool,
        "' is from an older server (its tokens do not name the pool's id), "
        "or from before the pool was re-created, so its listing cannot go "
        "on"));
  }
  if (raw.size() != kTokenBytes || raw[0] != kTokenVersion) {
    return not_returned();
  }
  const uint64_t index = Load64(raw.data() + 1);
  const uint64_t tag = Load64(raw.data() + 9);
  if (Load64(raw.data() + 17) != Checksum(pool, tag, index)) {
    return not_returned();
  }
  if (tag != PoolTag(pool_id)) {
    return refused(absl::StrCat(
        "was returned for pool '", pool,
        "' before it was re-created (its volumes are other ones now), or by "
        "another server's pool of that name, so its listing cannot go on"));
  }
  // A forged token (the layout is public) may name any index.
  if (index > max_volumes) return not_returned();
  return index;
}

}  // namespace groove::server
