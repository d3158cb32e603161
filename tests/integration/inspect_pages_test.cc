// inspect_pages_test: an adversarial review of Inspect's volume pages, as
// the contract states them (proto/groove/v1/volume_pool.proto, InspectRequest
// and InspectResponse, "paginated as in AIP-158"; docs/SERVER.md §3 "Page
// tokens"): page tokens (made-up, truncated, not base64, forged, another
// pool's, from before a restart, from a pool re-created since, with another
// page size), page_size 0, negative and above the maximum, the walk's
// consistency under concurrent adds and removes (in the core and through
// the real server), the last page saying it is the last, the counts of one
// response against its volumes, and groovectl's page loop against servers
// that never stop returning a token.
//
// Every test here states the contract; a failure is a finding of the
// review (see the report that added this file).

#include "groove/client/inspect_pages.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "groove/named_pool.h"
#include "groove/server/page_token.h"
#include "groove/volume.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/fake_server.h"
#include "support/server_process.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

#ifndef GROOVECTL_BIN
#error "GROOVECTL_BIN must name the groovectl binary"
#endif
#if !defined(GROOVE_PYTHON3) || !defined(GROOVE_SOURCE_DIR)
#error "GROOVE_PYTHON3 and GROOVE_SOURCE_DIR must be defined"
#endif

namespace groove::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kPoolA[] =
    "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16";

// StartA starts the server on `dir` with pools a and b (16 slots of 4 KiB
// each) and adds `volumes` volumes to pool a (none when 0). Null, the
// failure recorded, when either fails.
std::unique_ptr<ServerProcess> StartA(const TempDir& dir, uint64_t volumes) {
  auto server = ServerProcess::Start({"--data-dir=" + dir.path(), kPoolA,
                                      "--pool=name=b,backing=normal,"
                                      "volume_size=4KiB,max_volumes=16"});
  if (server == nullptr || volumes == 0) return server;
  v1::AddVolumeResponse added;
  const grpc::Status status =
      Add(*server->Stub(), AddRequest("a", volumes), &added);
  if (!status.ok()) {
    ADD_FAILURE() << "add " << volumes
                  << " volumes: " << status.error_message();
    return nullptr;
  }
  return server;
}

// TokenOf makes by hand (the layout is public) the token of pool `name`
// in `dir` at `index`: its pool_id read through a data-plane join.
std::string TokenOf(const TempDir& dir, const std::string& name,
                    uint64_t index) {
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir.path(), name);
  if (!join.ok()) {
    ADD_FAILURE() << "join pool '" << name << "': " << join.status();
    return "";
  }
  return groove::server::EncodePageToken(name, (*join)->pool_id(), index);
}

v1::InspectRequest PageRequest(const std::string& pool, int32_t page_size,
                               const std::string& token = "") {
  v1::InspectRequest request;
  request.set_pool(pool);
  request.set_include_volumes(true);
  request.set_page_size(page_size);
  request.set_page_token(token);
  return request;
}

std::vector<uint64_t> PageIndices(const v1::InspectResponse& page) {
  std::vector<uint64_t> indices;
  for (const v1::Volume& v : page.volumes()) indices.push_back(v.index());
  return indices;
}

// Walk is one full listing: every page's indices, and the number of pages.
struct Walk {
  std::vector<uint64_t> indices;
  int pages = 0;
  bool ended = false;  // a page came back without a token
  grpc::Status status;
};

// WalkPool pages through `pool`, page_size from `sizes` in turn, giving up
// after `max_pages` pages.
Walk WalkPool(Stub& stub, const std::string& pool,
              const std::vector<int32_t>& sizes, int max_pages) {
  Walk walk;
  std::string token;
  while (walk.pages < max_pages) {
    v1::InspectResponse page;
    walk.status = Inspect(
        stub, PageRequest(pool, sizes[walk.pages % sizes.size()], token),
        &page);
    if (!walk.status.ok()) return walk;
    ++walk.pages;
    for (const v1::Volume& v : page.volumes())
      walk.indices.push_back(v.index());
    token = page.next_page_token();
    if (token.empty()) {
      walk.ended = true;
      return walk;
    }
  }
  return walk;
}

// ---- Tokens ----------------------------------------------------------------

// Every token that Inspect did not return for this pool is INVALID_ARGUMENT
// (proto: "INVALID_ARGUMENT for any other value"), with a message that says
// what to do (start again with an empty page_token), and changes nothing.
TEST(InspectPageTokenTest, EveryMalformedTokenIsInvalidArgumentAndActionable) {
  TempDir dir;
  auto server = StartA(dir, 6);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("b", 6), &added).ok());
  v1::InspectResponse first;
  ASSERT_TRUE(Inspect(*stub, PageRequest("a", 2), &first).ok());
  const std::string token = first.next_page_token();
  ASSERT_EQ(token.size(), 34u) << token;
  v1::InspectResponse b_first;
  ASSERT_TRUE(Inspect(*stub, PageRequest("b", 2), &b_first).ok());

  std::string flipped_last = token;
  flipped_last.back() = flipped_last.back() == 'A' ? 'B' : 'A';
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token, &raw));
  std::string other_version = raw;
  other_version[0] = 3;
  const struct {
    std::string name;
    std::string token;
  } cases[] = {
      {"truncated by one character", token.substr(0, token.size() - 1)},
      {"truncated to half", token.substr(0, token.size() / 2)},
      {"one character", token.substr(0, 1)},
      {"a character appended", token + "A"},
      {"last character changed", flipped_last},
      {"not base64 at all", "!!!!%%%%"},
      {"base64 of the wrong length", absl::WebSafeBase64Escape("hello")},
      {"standard (not web-safe) base64 alphabet", absl::Base64Escape(raw)},
      {"padded", token + "="},
      {"a trailing newline", token + "\n"},
      {"another version byte", absl::WebSafeBase64Escape(other_version)},
      {"another pool's token", b_first.next_page_token()},
      {"an index past max_volumes, checksum right", TokenOf(dir, "a", 17)},
      {"index 2^64-1, checksum right", TokenOf(dir, "a", ~uint64_t{0})},
      {"64 KiB minus a little of garbage", std::string(60000, 'A')},
  };
  const Snapshot before = TakeSnapshot(*stub, "a");
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    v1::InspectResponse page;
    const grpc::Status status =
        Inspect(*stub, PageRequest("a", 2, c.token), &page);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("pool 'a'"));
    EXPECT_THAT(status.error_message(), HasSubstr("empty page_token"));
  }
  EXPECT_EQ(TakeSnapshot(*stub, "a"), before);
}

// A forged token (the layout is public) only starts a listing where paging
// could have (docs/SERVER.md §3): at max_volumes itself, an empty last page.
TEST(InspectPageTokenTest, AForgedTokenStartsWherePagingCould) {
  TempDir dir;
  auto server = StartA(dir, 6);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::InspectResponse page;
  ASSERT_TRUE(
      Inspect(*stub, PageRequest("a", 0, TokenOf(dir, "a", 4)), &page).ok());
  EXPECT_EQ(PageIndices(page), (std::vector<uint64_t>{4, 5}));
  EXPECT_TRUE(page.next_page_token().empty());
  ASSERT_TRUE(
      Inspect(*stub, PageRequest("a", 0, TokenOf(dir, "a", 16)), &page).ok());
  EXPECT_EQ(page.volumes_size(), 0);
  EXPECT_TRUE(page.next_page_token().empty());
}

// AIP-158: "If the user changes the page_size in a request for subsequent
// pages, the service must honor the new page size."
TEST(InspectPageTokenTest, ThePageSizeMayChangeBetweenPages) {
  TempDir dir;
  auto server = StartA(dir, 12);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  const Walk walk = WalkPool(*stub, "a", {1, 5, 2, 1000, 3}, 20);
  ASSERT_TRUE(walk.status.ok()) << walk.status.error_message();
  EXPECT_TRUE(walk.ended);
  std::vector<uint64_t> want(12);
  for (uint64_t i = 0; i < 12; ++i) want[i] = i;
  EXPECT_EQ(walk.indices, want);
  // Pages of 1, 5, 2, then one of up to 1000 that holds the other 4.
  EXPECT_LE(walk.pages, 5);
}

// A token does not expire and survives restarts (proto, docs/SERVER.md §3);
// a restart also keeps the walk exact: each index once, in order.
TEST(InspectPageTokenTest, AWalkGoesOnAcrossARestart) {
  TempDir dir;
  std::string token;
  {
    auto server = StartA(dir, 9);
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    v1::InspectResponse page;
    ASSERT_TRUE(Inspect(*stub, PageRequest("a", 4), &page).ok());
    token = page.next_page_token();
    ASSERT_FALSE(token.empty());
    EXPECT_EQ(server->Stop(), 0);
  }
  auto server = StartA(dir, 0);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::InspectResponse page;
  ASSERT_TRUE(Inspect(*stub, PageRequest("a", 100, token), &page).ok());
  EXPECT_EQ(PageIndices(page), (std::vector<uint64_t>{4, 5, 6, 7, 8}));
  EXPECT_TRUE(page.next_page_token().empty());
}

// A token is "valid only for the same pool" (proto). A pool re-created
// under the same name (--recreate; files removed by hand) is not the same
// pool: its volumes are new ones, and the project says so for request ids
// (docs/SERVER.md §3: a re-created pool starts with an empty request
// journal, "since the old ids named volumes that are gone"). A token of
// the old pool must not resume a walk of the new one, mixing two pools'
// volumes in one listing without a word: INVALID_ARGUMENT, saying the pool
// was re-created and to start again. And where the new pool is smaller
// than the token's index, the refusal must not claim that Inspect never
// returned that token.
TEST(InspectPageTokenTest, ATokenOfAPoolReCreatedSinceIsRefused) {
  TempDir dir;
  std::string token_at_2;
  std::string token_at_12;
  {
    auto server = ServerProcess::Start({"--data-dir=" + dir.path(), kPoolA});
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*stub, AddRequest("a", 14, "old"), &added).ok());
    v1::InspectResponse page;
    ASSERT_TRUE(Inspect(*stub, PageRequest("a", 2), &page).ok());
    token_at_2 = page.next_page_token();
    ASSERT_TRUE(Inspect(*stub, PageRequest("a", 12), &page).ok());
    token_at_12 = page.next_page_token();
    ASSERT_FALSE(token_at_2.empty());
    ASSERT_FALSE(token_at_12.empty());
    EXPECT_EQ(server->Stop(), 0);
  }
  {
    // Re-created with other volumes (64 KiB), the same 16 slots.
    auto server = ServerProcess::Start(
        {"--data-dir=" + dir.path(), "--recreate",
         "--pool=name=a,backing=normal,volume_size=64KiB,max_volumes=16"});
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*stub, AddRequest("a", 4, "new"), &added).ok());
    v1::InspectResponse page;
    const grpc::Status status =
        Inspect(*stub, PageRequest("a", 2, token_at_2), &page);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "the old pool's token resumed the new pool's listing at "
        << absl::StrJoin(PageIndices(page), ",");
    EXPECT_THAT(status.error_message(), HasSubstr("re-created"));
    EXPECT_THAT(status.error_message(), HasSubstr("empty page_token"));
    EXPECT_EQ(server->Stop(), 0);
  }
  {
    // Re-created again, with 8 slots: the old token's index 12 is past them.
    auto server = ServerProcess::Start(
        {"--data-dir=" + dir.path(), "--recreate",
         "--pool=name=a,backing=normal,volume_size=64KiB,max_volumes=8"});
    ASSERT_NE(server, nullptr);
    auto stub = server->Stub();
    v1::InspectResponse page;
    const grpc::Status status =
        Inspect(*stub, PageRequest("a", 2, token_at_12), &page);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("re-created"));
    EXPECT_THAT(status.error_message(), HasSubstr("empty page_token"));
  }
}

// ---- page_size
// ---------------------------------------------------------------

// proto: "0 means the default, 100; values above 1000 are treated as 1000
// ... INVALID_ARGUMENT when negative" (the message naming the value and
// the range); page fields are ignored without include_volumes.
TEST(InspectPageSizeTest, ZeroNegativeAndAboveTheMaximumAsDocumented) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=big,backing=normal,volume_size=4KiB,max_volumes=2048"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("big", 1024), &added).ok());
  ASSERT_TRUE(Add(*stub, AddRequest("big", 476), &added).ok());
  for (const auto& [size, want] : std::vector<std::pair<int32_t, int>>{
           {0, 100},
           {1, 1},
           {1000, 1000},
           {1001, 1000},
           {std::numeric_limits<int32_t>::max(), 1000}}) {
    SCOPED_TRACE(size);
    v1::InspectResponse page;
    ASSERT_TRUE(Inspect(*stub, PageRequest("big", size), &page).ok());
    EXPECT_EQ(page.volumes_size(), want);
    EXPECT_FALSE(page.next_page_token().empty());
  }
  for (int32_t size : {-1, std::numeric_limits<int32_t>::min()}) {
    SCOPED_TRACE(size);
    v1::InspectResponse page;
    const grpc::Status status = Inspect(*stub, PageRequest("big", size), &page);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("page_size ", size, " is negative")));
    EXPECT_THAT(status.error_message(), HasSubstr("100"));
    EXPECT_THAT(status.error_message(), HasSubstr("1000"));
  }
  v1::InspectRequest summary_only = PageRequest("big", -1, "garbage");
  summary_only.set_include_volumes(false);
  v1::InspectResponse page;
  ASSERT_TRUE(Inspect(*stub, summary_only, &page).ok());
  EXPECT_EQ(page.volumes_size(), 0);
  EXPECT_TRUE(page.next_page_token().empty());
}

// ---- The last page
// -----------------------------------------------------------

// The last page says it is the last: AIP-158 (which Inspect follows) makes
// an empty next_page_token the only way to say "end of collection", and
// InspectResponse.volumes speaks of a token as saying "more follow". A page
// that fills up on the pool's last volume knows (within its scan bound)
// that nothing follows; a token there costs every client (groovectl pages
// by 1000: a pool of exactly 1000 volumes) a round trip for an empty page.
TEST(InspectLastPageTest, APageThatEndsOnTheLastVolumeHasNoToken) {
  TempDir dir;
  auto server = StartA(dir, 4);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  // One page of exactly the pool's volumes.
  v1::InspectResponse page;
  ASSERT_TRUE(Inspect(*stub, PageRequest("a", 4), &page).ok());
  EXPECT_EQ(page.volumes_size(), 4);
  EXPECT_TRUE(page.next_page_token().empty())
      << "a full page of every volume of the pool says more follow";
  // Pages of 2: the second ends on the last volume.
  const Walk walk = WalkPool(*stub, "a", {2}, 10);
  ASSERT_TRUE(walk.status.ok());
  EXPECT_EQ(walk.indices, (std::vector<uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(walk.pages, 2) << "the walk ended on an empty page";
}

// A walk ends when the pool shrinks under it (the volumes after its cursor
// removed) or grows (volumes added after its cursor are listed, those
// before it are not), and lists no index twice.
TEST(InspectLastPageTest, AWalkEndsWhenThePoolShrinksOrGrowsUnderIt) {
  TempDir dir;
  auto server = StartA(dir, 8);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  v1::InspectResponse page;
  ASSERT_TRUE(Inspect(*stub, PageRequest("a", 3), &page).ok());
  ASSERT_EQ(PageIndices(page), (std::vector<uint64_t>{0, 1, 2}));
  // Shrink: RemoveVolume pops the most recently pushed (an add pushes its
  // highest index first, so 0 is on top): remove all, add 0..2 again.
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(*stub, "a", 8, &removed).ok());
  ASSERT_TRUE(Add(*stub, AddRequest("a", 3), &added).ok());
  v1::InspectResponse next;
  ASSERT_TRUE(
      Inspect(*stub, PageRequest("a", 3, page.next_page_token()), &next).ok());
  EXPECT_EQ(next.volumes_size(), 0);
  EXPECT_TRUE(next.next_page_token().empty());

  // Grow: volumes behind the cursor are not listed, those past it are.
  ASSERT_TRUE(Inspect(*stub, PageRequest("a", 2), &page).ok());
  ASSERT_EQ(PageIndices(page), (std::vector<uint64_t>{0, 1}));
  v1::AddVolumeRequest at_15 = AddRequest("a", 1);
  at_15.set_first_index(15);
  ASSERT_TRUE(Add(*stub, at_15, &added).ok());
  std::vector<uint64_t> rest;
  std::string token = page.next_page_token();
  for (int pages = 0; !token.empty(); ++pages) {
    ASSERT_LT(pages, 17);
    ASSERT_TRUE(Inspect(*stub, PageRequest("a", 2, token), &next).ok());
    for (uint64_t i : PageIndices(next)) rest.push_back(i);
    token = next.next_page_token();
  }
  EXPECT_EQ(rest, (std::vector<uint64_t>{2, 15}));
}

// ---- Consistency under adds and removes
// --------------------------------------

// ExpectWalkConsistent: the walk ended, in at most max_volumes + 1 pages
// (each page moves the cursor on by at least one index), its indices are
// strictly ascending (so none twice), and every stable index is there.
void ExpectWalkConsistent(const std::vector<uint64_t>& indices, bool ended,
                          int pages, uint64_t max_volumes,
                          const std::vector<uint64_t>& stable) {
  EXPECT_TRUE(ended);
  EXPECT_LE(static_cast<uint64_t>(pages), max_volumes + 1);
  for (size_t k = 1; k < indices.size(); ++k) {
    ASSERT_LT(indices[k - 1], indices[k])
        << "index listed twice or out of order";
  }
  std::vector<uint64_t> missing;
  std::set_difference(stable.begin(), stable.end(), indices.begin(),
                      indices.end(), std::back_inserter(missing));
  EXPECT_TRUE(missing.empty())
      << missing.size() << " stable volumes missing, first "
      << (missing.empty() ? 0 : missing[0]);
}

// In the core: a churn thread adds and removes volumes (between the stable
// ones, and past them), and acquires and releases volumes (stable ones
// among them: their headers flip between empty and in use), while the
// main thread pages through with page sizes of 1 to 7; each walk lists
// every stable volume exactly once, no index twice, and ends.
TEST(InspectConsistencyTest, CoreWalksUnderChurnListEveryStableVolumeOnce) {
  TempDir dir;
  PoolConfig config;
  config.name = "churn";
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = 4096;
  config.max_volumes = 1024;
  absl::StatusOr<std::unique_ptr<NamedPool>> opened =
      NamedPool::Open(dir.path(), config);
  ASSERT_TRUE(opened.ok()) << opened.status();
  NamedPool& pool = **opened;
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir.path(), "churn");
  ASSERT_TRUE(join.ok()) << join.status();
  // Stable: every third index below 768. The others are the churn's.
  std::vector<uint64_t> stable;
  for (uint64_t i = 0; i < 768; i += 3) {
    ASSERT_TRUE(pool.AddVolumes(1, i, "stable").ok()) << i;
    stable.push_back(i);
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rounds{0};
  std::thread churn([&] {
    uint64_t k = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      // Adds at the lowest free indices (between the stable ones) and one
      // past them; removes pop exactly these again (the stack is LIFO and
      // this thread is its only user); acquires and releases in reverse
      // order leave the stack as it was.
      const uint64_t n = 1 + k % 9;
      absl::StatusOr<std::vector<uint64_t>> a =
          pool.AddVolumes(n, std::nullopt, "churn");
      absl::StatusOr<std::vector<uint64_t>> high =
          pool.AddVolumes(1, 768 + (k * 37) % 256, "churn-high");
      const uint64_t pushed = (a.ok() ? n : 0) + (high.ok() ? 1 : 0);
      std::vector<VolumeHeader*> held;
      for (uint64_t j = 0; j < pushed + 2; ++j) {
        VolumeHeader* v = nullptr;
        if ((*join)->pool().Acquire(&v) != PoolError::kSuccess) break;
        held.push_back(v);
      }
      while (!held.empty()) {
        if ((*join)->pool().Release(held.back()) != PoolError::kSuccess) {
          ADD_FAILURE() << "the churn's release failed";
          return;
        }
        held.pop_back();
      }
      if (pushed > 0) {
        absl::StatusOr<std::vector<RemovedVolume>> r =
            pool.RemoveVolumes(pushed);
        if (!r.ok() || r->size() != pushed) {
          ADD_FAILURE() << "the churn's remove: "
                        << (r.ok() ? absl::StrCat(r->size(), " of ", pushed)
                                   : std::string(r.status().message()));
          return;
        }
        for (const RemovedVolume& v : *r) {
          if (v.info == "stable") {
            ADD_FAILURE() << "the churn removed stable volume " << v.index;
            return;
          }
        }
      }
      ++k;
      rounds.store(k, std::memory_order_relaxed);
    }
  });
  const absl::Time end = absl::Now() + absl::Seconds(4);
  int walks = 0;
  while (absl::Now() < end && !::testing::Test::HasFailure()) {
    std::vector<uint64_t> indices;
    uint64_t next = 0;
    int pages = 0;
    while (next < config.max_volumes &&
           static_cast<uint64_t>(pages) <= config.max_volumes) {
      const size_t size = 1 + (walks + pages) % 7;
      for (const VolumeEntry& e : pool.ListVolumes(next, size, &next)) {
        indices.push_back(e.index);
        if (e.info == "stable") {
          EXPECT_NE(e.status, VolumeStatus::kCorrupt) << e.corruption;
        }
      }
      ++pages;
    }
    ExpectWalkConsistent(indices, next >= config.max_volumes, pages,
                         config.max_volumes, stable);
    ++walks;
  }
  stop.store(true);
  churn.join();
  EXPECT_GT(rounds.load(), 10u);
  EXPECT_GT(walks, 10);
  std::printf("%d walks against %lu churn rounds\n", walks,
              static_cast<unsigned long>(rounds.load()));
}

// Through the real server: AddVolume and RemoveVolume from one client while
// another pages with Inspect; each walk lists every stable volume once, no
// index twice, and ends.
TEST(InspectConsistencyTest, RpcWalksUnderAddsAndRemovesListEveryStableOnce) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=c,backing=normal,volume_size=4KiB,max_volumes=512"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  std::vector<uint64_t> stable;
  for (uint64_t i = 1; i < 384; i += 4) {
    v1::AddVolumeRequest at = AddRequest("c", 1, "stable");
    at.set_first_index(i);
    v1::AddVolumeResponse added;
    ASSERT_TRUE(Add(*stub, at, &added).ok()) << i;
    stable.push_back(i);
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rounds{0};
  std::thread churn([&] {
    auto churn_stub = server->Stub();
    for (uint64_t k = 0; !stop.load(std::memory_order_relaxed); ++k) {
      const uint64_t n = 1 + k % 13;
      v1::AddVolumeResponse added;
      if (!Add(*churn_stub, AddRequest("c", n, "churn"), &added).ok()) continue;
      v1::RemoveVolumeResponse removed;
      const grpc::Status s = Remove(*churn_stub, "c", n, &removed);
      if (!s.ok() || removed.volumes_size() != static_cast<int>(n)) {
        ADD_FAILURE() << "churn remove: " << s.error_message();
        return;
      }
      for (const v1::RemovedVolume& v : removed.volumes()) {
        if (v.info() == "stable") {
          ADD_FAILURE() << "the churn removed stable volume " << v.index();
          return;
        }
      }
      rounds.store(k + 1, std::memory_order_relaxed);
    }
  });
  const absl::Time end = absl::Now() + absl::Seconds(4);
  int walks = 0;
  while (absl::Now() < end && !::testing::Test::HasFailure()) {
    const Walk walk = WalkPool(*stub, "c", {1, 2, 3, 5, 7, 11}, 600);
    ASSERT_TRUE(walk.status.ok()) << walk.status.error_message();
    ExpectWalkConsistent(walk.indices, walk.ended, walk.pages, 512, stable);
    ++walks;
  }
  stop.store(true);
  churn.join();
  EXPECT_GT(walks, 2);
  EXPECT_GT(rounds.load(), 10u);
  std::printf("%d walks through Inspect against %lu add+remove rounds\n", walks,
              static_cast<unsigned long>(rounds.load()));
}

// ---- Counts against the listing
// ----------------------------------------------

// In a pool nobody changes, one page of every volume agrees with the
// summary of the same response: volumes_mapped ("Exact") is the number
// listed; volumes_empty and the verify's empty_volumes_walked ("the exact
// number of empty volumes") the number listed EMPTY; volumes_in_use the
// number IN_USE plus the quarantined (CORRUPT) ones; volumes_in_quarantine
// ("Exact when no pop or reclaim is in flight") the number CORRUPT. Also
// after a restart (recovery restarts the counters).
TEST(InspectCountsTest, OnePageOfAQuietPoolAgreesWithItsSummary) {
  TempDir dir;
  const std::vector<std::string> args = {
      "--data-dir=" + dir.path(),
      "--pool=name=q,backing=normal,volume_size=4KiB,max_volumes=64"};
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("q", 10), &added).ok());
  // Volume 0 is on top of the stack, then 1: corrupt 1, acquire 0 and 2
  // ... so that a remove of 1 finds 1 bad and quarantines it.
  absl::StatusOr<std::unique_ptr<NamedPool>> join =
      NamedPool::Join(dir.path(), "q");
  ASSERT_TRUE(join.ok()) << join.status();
  VolumeHeader* held = nullptr;
  ASSERT_EQ((*join)->pool().Acquire(&held), PoolError::kSuccess);
  CorruptMagic(dir.path(), "q", 1);
  v1::RemoveVolumeResponse removed;
  EXPECT_EQ(Remove(*stub, "q", 1, &removed).error_code(),
            grpc::StatusCode::DATA_LOSS);

  const auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    v1::InspectRequest request = PageRequest("q", 1000);
    request.set_verify(true);
    v1::InspectResponse r;
    ASSERT_TRUE(Inspect(*stub, request, &r).ok());
    ASSERT_TRUE(r.next_page_token().empty());
    uint64_t empty = 0, in_use = 0, corrupt = 0;
    for (const v1::Volume& v : r.volumes()) {
      empty += v.state() == v1::VOLUME_STATE_EMPTY;
      in_use += v.state() == v1::VOLUME_STATE_IN_USE;
      corrupt += v.state() == v1::VOLUME_STATE_CORRUPT;
    }
    const v1::PoolSummary& s = r.summary();
    EXPECT_EQ(s.volumes_mapped(), static_cast<uint64_t>(r.volumes_size()));
    EXPECT_EQ(s.volumes_empty(), empty);
    EXPECT_EQ(r.verify_result().empty_volumes_walked(), empty);
    EXPECT_EQ(s.volumes_in_use(), in_use + corrupt);
    EXPECT_EQ(s.volumes_in_quarantine(), corrupt);
    EXPECT_EQ(in_use, 1u);
    EXPECT_EQ(corrupt, 1u);
    EXPECT_EQ(r.volumes_size(), 10);
  };
  check("live");
  EXPECT_EQ(server->Stop(), 0);
  server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  stub = server->Stub();
  check("after a restart");
  EXPECT_EQ((*join)->pool().Release(held), PoolError::kSuccess);
}

// ---- groovectl's page loop
// ---------------------------------------------------

// EndlessPages is a VolumePoolService whose Inspect never stops returning a
// token, as a buggy or hostile server (or a proxy) might: the same token
// each time, or a fresh one listing the same volume again, or fresh ones
// with empty pages for ever.
class EndlessPages final : public v1::VolumePoolService::Service {
 public:
  enum class Mode { kSameToken, kSameVolume, kEmptyPages };
  explicit EndlessPages(Mode mode) : mode_(mode) {}

  grpc::Status Inspect(grpc::ServerContext*, const v1::InspectRequest* request,
                       v1::InspectResponse* response) override {
    const uint64_t n = calls_.fetch_add(1) + 1;
    v1::PoolSummary* s = response->mutable_summary();
    s->set_name(request->pool());
    s->set_volume_size_bytes(4096);
    s->set_max_volumes(16);
    s->set_volumes_mapped(1);
    s->set_volumes_empty(1);
    if (mode_ != Mode::kEmptyPages) {
      v1::Volume* v = response->add_volumes();
      v->set_index(0);
      v->set_state(v1::VOLUME_STATE_EMPTY);
    }
    response->set_next_page_token(mode_ == Mode::kSameToken
                                      ? std::string("again")
                                      : absl::StrCat("page-", n));
    return grpc::Status::OK;
  }
  uint64_t calls() const { return calls_.load(); }

 private:
  const Mode mode_;
  std::atomic<uint64_t> calls_{0};
};

// PageOf is an InspectResponse of pool "a" (max_volumes `max_volumes`)
// listing `indices`, with `token` as its next_page_token.
v1::InspectResponse PageOf(uint64_t max_volumes,
                           const std::vector<uint64_t>& indices,
                           const std::string& token) {
  v1::InspectResponse page;
  page.mutable_summary()->set_name("a");
  page.mutable_summary()->set_max_volumes(max_volumes);
  for (uint64_t i : indices) page.add_volumes()->set_index(i);
  page.set_next_page_token(token);
  return page;
}

// InspectPageGuard takes what a server's listing can be (short and empty
// pages, up to max_volumes + 1 pages, a max_volumes of 2^64 - 1), and
// refuses each misbehaviour with INTERNAL naming it.
TEST(InspectPageGuardTest, TakesEveryRealListingAndRefusesEachEndlessOne) {
  {
    InspectPageGuard guard("a");
    EXPECT_TRUE(guard.Check("", PageOf(2, {0}, "t1")).ok());
    EXPECT_TRUE(guard.Check("t1", PageOf(2, {}, "t2")).ok());
    EXPECT_TRUE(guard.Check("t2", PageOf(2, {1}, "")).ok());
  }
  EXPECT_TRUE(
      InspectPageGuard("a").Check("", PageOf(~uint64_t{0}, {5}, "t1")).ok());
  const struct {
    std::string name;
    std::vector<v1::InspectResponse> pages;
    std::string says;
  } cases[] = {
      {"the token sent comes back",
       {PageOf(16, {0}, "t1"), PageOf(16, {1}, "t1")},
       "its next_page_token is the page_token just sent"},
      {"a volume listed again on the next page",
       {PageOf(16, {0, 1}, "t1"), PageOf(16, {1, 2}, "")},
       "it lists volume 1 after volume 1"},
      {"indices out of order in one page",
       {PageOf(16, {3, 2}, "")},
       "it lists volume 2 after volume 3"},
      {"a token on page max_volumes + 1",
       {PageOf(1, {}, "t1"), PageOf(1, {}, "t2")},
       "max_volumes 1 has at most 2 pages"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    InspectPageGuard guard("a");
    std::string sent;
    absl::Status status;
    for (const v1::InspectResponse& page : c.pages) {
      status = guard.Check(sent, page);
      if (!status.ok()) break;
      sent = page.next_page_token();
    }
    EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
    EXPECT_THAT(status.message(), HasSubstr("the server misbehaves"));
    EXPECT_THAT(status.message(), HasSubstr("pool 'a'"));
    EXPECT_THAT(status.message(), HasSubstr(c.says));
  }
}

// ExpectEachEndlessServerStops starts an EndlessPages server of each mode
// on loopback and runs `client`'s command (given the server's address)
// against it: the command must end within 10 s with exit 1 and an error
// that speaks of the token, not page for ever.
void ExpectEachEndlessServerStops(
    const std::function<std::vector<std::string>(const std::string&)>& client) {
  for (EndlessPages::Mode mode :
       {EndlessPages::Mode::kSameToken, EndlessPages::Mode::kSameVolume,
        EndlessPages::Mode::kEmptyPages}) {
    SCOPED_TRACE(static_cast<int>(mode));
    EndlessPages service(mode);
    std::string address;
    std::unique_ptr<grpc::Server> server = StartFakeServer(&service, &address);
    ASSERT_NE(server, nullptr);
    const CommandResult r = RunCommand(client(address), "", absl::Seconds(10));
    EXPECT_FALSE(r.timed_out) << "the client was still paging after 10 s and "
                              << service.calls() << " pages";
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("token")) << r.err;
    server->Shutdown();
  }
}

// groovectl `inspect --volumes` follows next_page_token "until it is
// empty". Against a server that never empties it, it must still end (a
// listing has at most max_volumes + 1 pages, and its indices ascend across
// pages: "every index appears at most once across the pages of one
// listing"), with an error (exit 1), not loop for ever, its memory growing
// with every page.
TEST(GroovectlPagesTest, InspectEndsAgainstAServerThatKeepsReturningAToken) {
  ExpectEachEndlessServerStops([](const std::string& address) {
    return std::vector<std::string>{
        GROOVECTL_BIN, "--addr=" + address, "--output=json", "inspect",
        "a",           "--volumes"};
  });
}

// The Python example's inspect_volumes pages the same way, and must stop
// the same way (PagingError; here, exit 1 with its message).
TEST(GroovectlPagesTest, ThePythonExampleEndsAgainstAServerThatKeepsPaging) {
  constexpr char kScript[] = R"py(
import shutil, sys, tempfile
sys.path.insert(0, sys.argv[1] + "/clients/python")
import groove_example as g
out = tempfile.mkdtemp(prefix="groove-py-")
try:
    g.generate(g.DEFAULT_PROTO_DIR, out)
    sys.path.insert(0, out)
    import grpc
    from groove.v1 import volume_pool_pb2 as pb
    from groove.v1 import volume_pool_pb2_grpc as pb_grpc
    with grpc.insecure_channel(sys.argv[2]) as channel:
        stub = pb_grpc.VolumePoolServiceStub(channel)
        try:
            g.inspect_volumes(stub, pb, "a", {"timeout": 10})
        except g.PagingError as e:
            print("error: %s" % e, file=sys.stderr)
            sys.exit(1)
    print("the listing ended")
finally:
    shutil.rmtree(out, ignore_errors=True)
)py";
  ExpectEachEndlessServerStops([&](const std::string& address) {
    return std::vector<std::string>{GROOVE_PYTHON3, "-c", kScript,
                                    GROOVE_SOURCE_DIR, address};
  });
}

}  // namespace
}  // namespace groove::testing
