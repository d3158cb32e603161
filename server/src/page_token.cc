#include "groove/server/page_token.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace groove::server {
namespace {

constexpr char kTokenVersion = 1;
constexpr size_t kTokenBytes = 1 + 8 + 8;  // version, index, checksum

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

uint64_t Checksum(absl::string_view pool, uint64_t index) {
  char index_bytes[8];
  Store64(index_bytes, index);
  uint64_t hash = Fnv1a64(0xcbf29ce484222325ULL, "groove.v1.Inspect/page/");
  hash = Fnv1a64(hash, pool);
  hash = Fnv1a64(hash, absl::string_view("\0", 1));
  return Fnv1a64(hash, absl::string_view(index_bytes, sizeof(index_bytes)));
}

}  // namespace

std::string EncodePageToken(absl::string_view pool, uint64_t next_index) {
  char raw[kTokenBytes];
  raw[0] = kTokenVersion;
  Store64(raw + 1, next_index);
  Store64(raw + 9, Checksum(pool, next_index));
  return absl::WebSafeBase64Escape(absl::string_view(raw, sizeof(raw)));
}

absl::StatusOr<uint64_t> DecodePageToken(absl::string_view token,
                                         absl::string_view pool,
                                         uint64_t max_volumes) {
  std::string raw;
  bool ok = absl::WebSafeBase64Unescape(token, &raw) &&
            raw.size() == kTokenBytes && raw[0] == kTokenVersion;
  uint64_t index = 0;
  if (ok) {
    index = Load64(raw.data() + 1);
    ok =
        Load64(raw.data() + 9) == Checksum(pool, index) && index <= max_volumes;
  }
  // The canonical encoding only (unpadded, no other spelling of the same
  // bytes): the unescape also takes '=' padding, whitespace and unused
  // low bits in the last character, so one token had several spellings.
  if (ok) ok = token == EncodePageToken(pool, index);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token is not a next_page_token that Inspect returned for pool '",
        pool, "'; pass an empty page_token for the first page"));
  }
  return index;
}

}  // namespace groove::server
