// groove-volumed's API through the generated C++ stubs, against the real
// binary on loopback: every RPC with its results and the pool's summary
// after each call, pagination, request_id deduplication, and a table of
// bad inputs (RPCs and flags), each with its exact status code and the
// pools unchanged afterwards (the flags include the TLS, token and limit
// flags, with certificates made by openssl at test time).

#include <grpcpp/generic/generic_stub.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server_test_util.h"
#include "support/build_expectation.h"
#include "support/server_process.h"
#include "support/temp_dir.h"
#include "support/test_pki.h"

namespace groove::testing {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kSmall = 4096;

// StartServer starts groove-volumed on a fresh data directory with pools
// "a" (4 KiB volumes, 16 slots) and "b" (64 KiB, 8 slots, 2 initial).
std::unique_ptr<ServerProcess> StartServer(const TempDir& dir,
                                           std::vector<std::string> more = {}) {
  std::vector<std::string> args = {
      "--data-dir=" + dir.path(),
      "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16",
      "--pool=name=b,backing=normal,volume_size=64KiB,max_volumes=8,"
      "initial_volumes=2"};
  args.insert(args.end(), more.begin(), more.end());
  return ServerProcess::Start(args);
}

TEST(ServerApiTest, EveryRpcThroughGeneratedStubs) {
  TempDir dir;
  auto server = StartServer(dir);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();

  // ListPools: both pools, in config order, with their geometry.
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  ASSERT_EQ(pools.pools_size(), 2);
  const v1::PoolSummary& a0 = pools.pools(0);
  EXPECT_EQ(a0.name(), "a");
  EXPECT_EQ(a0.volume_size_bytes(), kSmall);
  EXPECT_EQ(a0.max_volumes(), 16u);
  EXPECT_EQ(a0.backing_requested(), v1::BACKING_NORMAL);
  EXPECT_EQ(a0.backing_in_use(), v1::BACKING_NORMAL);
  EXPECT_EQ(a0.page_size_bytes(), 4096u);
  EXPECT_EQ(a0.volumes_mapped(), 0u);
  const v1::PoolSummary& b0 = pools.pools(1);
  EXPECT_EQ(b0.name(), "b");
  EXPECT_EQ(b0.volume_size_bytes(), 64u << 10);
  EXPECT_EQ(b0.volumes_mapped(), 2u);  // initial_volumes
  EXPECT_EQ(b0.volumes_empty(), 2u);
  EXPECT_EQ(b0.capacity_bytes(), 2u * (64u << 10));

  // AddVolume at the lowest free indices.
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 3, "tenant=x"), &added).ok());
  EXPECT_THAT(added.volume_indices(), ElementsAre(0, 1, 2));
  EXPECT_EQ(added.summary().volumes_mapped(), 3u);
  EXPECT_EQ(added.summary().volumes_empty(), 3u);
  EXPECT_EQ(added.summary().volumes_in_use(), 0u);
  EXPECT_EQ(added.summary().capacity_bytes(), 3 * kSmall);
  EXPECT_EQ(added.summary().empty_bytes(), 3 * kSmall);
  EXPECT_EQ(added.summary().counters().volumes_added(), 3u);

  // AddVolume at a chosen range.
  v1::AddVolumeRequest at_ten = AddRequest("a", 2);
  at_ten.set_first_index(10);
  ASSERT_TRUE(Add(*stub, at_ten, &added).ok());
  EXPECT_THAT(added.volume_indices(), ElementsAre(10, 11));
  EXPECT_EQ(added.summary().volumes_mapped(), 5u);
  EXPECT_EQ(added.summary().counters().volumes_added(), 5u);

  // Inspect lists them with their info and state.
  v1::InspectRequest inspect;
  inspect.set_pool("a");
  inspect.set_include_volumes(true);
  v1::InspectResponse inspected;
  ASSERT_TRUE(Inspect(*stub, inspect, &inspected).ok());
  EXPECT_EQ(inspected.summary().volumes_mapped(), 5u);
  ASSERT_EQ(inspected.volumes_size(), 5);
  EXPECT_EQ(inspected.volumes(0).index(), 0u);
  EXPECT_EQ(inspected.volumes(0).info(), "tenant=x");
  EXPECT_EQ(inspected.volumes(0).state(), v1::VOLUME_STATE_EMPTY);
  EXPECT_EQ(inspected.volumes(3).index(), 10u);
  EXPECT_EQ(inspected.volumes(3).info(), "");
  EXPECT_TRUE(inspected.next_page_token().empty());
  EXPECT_FALSE(inspected.has_verify_result());

  // RemoveVolume pops the most recently pushed: the second add's, 10 and
  // 11 (an add pushes its highest index first).
  v1::RemoveVolumeResponse removed;
  ASSERT_TRUE(Remove(*stub, "a", 2, &removed).ok());
  ASSERT_EQ(removed.volumes_size(), 2);
  EXPECT_THAT((std::vector<uint64_t>{removed.volumes(0).index(),
                                     removed.volumes(1).index()}),
              UnorderedElementsAre(10, 11));
  EXPECT_EQ(removed.summary().volumes_mapped(), 3u);
  EXPECT_EQ(removed.summary().counters().volumes_removed(), 2u);

  // Inspect with verify walks the stack: exactly the 3 empty volumes.
  inspect.set_verify(true);
  ASSERT_TRUE(Inspect(*stub, inspect, &inspected).ok());
  ASSERT_TRUE(inspected.has_verify_result());
  EXPECT_TRUE(inspected.verify_result().ok())
      << inspected.verify_result().message();
  EXPECT_EQ(inspected.verify_result().empty_volumes_walked(), 3u);
  EXPECT_FALSE(inspected.summary().locked());

  // RemoveVolume removes fewer than asked when fewer are empty, with
  // their info.
  ASSERT_TRUE(Remove(*stub, "a", 5, &removed).ok());
  ASSERT_EQ(removed.volumes_size(), 3);
  for (const v1::RemovedVolume& v : removed.volumes()) {
    EXPECT_EQ(v.info(), "tenant=x");
  }
  EXPECT_EQ(removed.summary().volumes_mapped(), 0u);
  EXPECT_EQ(removed.summary().capacity_bytes(), 0u);

  // Nothing left to remove.
  const grpc::Status none = Remove(*stub, "a", 1, &removed);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << none.error_message();

  // ListPools sees the counters of everything above; b is untouched.
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  EXPECT_EQ(pools.pools(0).counters().volumes_added(), 5u);
  EXPECT_EQ(pools.pools(0).counters().volumes_removed(), 5u);
  EXPECT_EQ(pools.pools(0).volumes_mapped(), 0u);
  EXPECT_EQ(pools.pools(1).volumes_mapped(), 2u);

  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerApiTest, InspectPagesEveryVolumeOnce) {
  TempDir dir;
  auto server = StartServer(dir);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  ASSERT_TRUE(Add(*stub, AddRequest("a", 10), &added).ok());

  v1::InspectRequest request;
  request.set_pool("a");
  request.set_include_volumes(true);
  request.set_page_size(3);
  std::vector<uint64_t> seen;
  int pages = 0;
  for (;;) {
    v1::InspectResponse page;
    ASSERT_TRUE(Inspect(*stub, request, &page).ok());
    ++pages;
    ASSERT_LE(page.volumes_size(), 3);
    for (const v1::Volume& v : page.volumes()) seen.push_back(v.index());
    if (page.next_page_token().empty()) break;
    ASSERT_LT(pages, 10) << "the listing does not end";
    request.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(pages, 4);
  EXPECT_THAT(seen, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));

  // page_size 0 is the default (100): one page; above 1000 is 1000.
  for (int size : {0, 5000}) {
    request.set_page_size(size);
    request.clear_page_token();
    v1::InspectResponse all;
    ASSERT_TRUE(Inspect(*stub, request, &all).ok());
    EXPECT_EQ(all.volumes_size(), 10) << "page_size " << size;
    EXPECT_TRUE(all.next_page_token().empty());
  }

  // include_volumes false: no volumes, no token, page fields ignored.
  request.set_include_volumes(false);
  request.set_page_size(-1);
  request.set_page_token("ignored");
  v1::InspectResponse summary_only;
  ASSERT_TRUE(Inspect(*stub, request, &summary_only).ok());
  EXPECT_EQ(summary_only.volumes_size(), 0);
  EXPECT_TRUE(summary_only.next_page_token().empty());
  EXPECT_EQ(summary_only.summary().volumes_mapped(), 10u);
}

// A page costs a bounded scan, not one of max_volumes slots: in a pool of
// 4 * 64 Ki slots with one volume, at the last index, the first page is
// short (here empty) with a token, and the tokens lead to the volume. A
// listing of a few volumes spread over the scan bounds has each index
// once, in order.
TEST(ServerApiTest, PagesOfASparsePoolAreShortAndTheTokensReachEveryVolume) {
  constexpr uint64_t kScan = uint64_t{1} << 16;  // kListMaxSlotsScanned
  constexpr uint64_t kMax = 4 * kScan;
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       absl::StrCat("--pool=name=sparse,backing=normal,volume_size=4KiB,"
                    "max_volumes=",
                    kMax)});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::AddVolumeResponse added;
  v1::AddVolumeRequest last = AddRequest("sparse", 1);
  last.set_first_index(kMax - 1);
  ASSERT_TRUE(Add(*stub, last, &added).ok());

  v1::InspectRequest request;
  request.set_pool("sparse");
  request.set_include_volumes(true);
  v1::InspectResponse first;
  ASSERT_TRUE(Inspect(*stub, request, &first).ok());
  EXPECT_EQ(first.volumes_size(), 0);
  EXPECT_FALSE(first.next_page_token().empty())
      << "one page scanned the whole pool";
  std::vector<uint64_t> seen;
  int pages = 1;
  request.set_page_token(first.next_page_token());
  for (;;) {
    v1::InspectResponse page;
    ASSERT_TRUE(Inspect(*stub, request, &page).ok());
    ++pages;
    for (const v1::Volume& v : page.volumes()) seen.push_back(v.index());
    if (page.next_page_token().empty()) break;
    ASSERT_LT(pages, 10) << "the listing does not end";
    request.set_page_token(page.next_page_token());
  }
  EXPECT_THAT(seen, ElementsAre(kMax - 1));

  // Volumes at both sides of each scan bound, listed two to a page.
  for (uint64_t index : {uint64_t{0}, kScan - 1, kScan, 2 * kScan + 1}) {
    v1::AddVolumeRequest at = AddRequest("sparse", 1);
    at.set_first_index(index);
    ASSERT_TRUE(Add(*stub, at, &added).ok()) << index;
  }
  request.set_page_size(2);
  request.clear_page_token();
  seen.clear();
  for (pages = 0;; ++pages) {
    ASSERT_LT(pages, 20) << "the listing does not end";
    v1::InspectResponse page;
    ASSERT_TRUE(Inspect(*stub, request, &page).ok());
    ASSERT_LE(page.volumes_size(), 2);
    for (const v1::Volume& v : page.volumes()) seen.push_back(v.index());
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  EXPECT_THAT(seen, ElementsAre(0, kScan - 1, kScan, 2 * kScan + 1, kMax - 1));
  EXPECT_EQ(server->Stop(), 0);
}

TEST(ServerApiTest, RequestIdReplaysTheFirstResponse) {
  TempDir dir;
  auto server = StartServer(dir);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  const std::string id = "123e4567-e89b-42d3-a456-426614174000";
  v1::AddVolumeRequest request = AddRequest("a", 2, "first");
  request.set_request_id(id);
  v1::AddVolumeResponse first;
  ASSERT_TRUE(Add(*stub, request, &first).ok());
  EXPECT_THAT(first.volume_indices(), ElementsAre(0, 1));

  // The same call again (hex digits compare case-insensitively): the same
  // response, and nothing added.
  request.set_request_id("123E4567-E89B-42D3-A456-426614174000");
  v1::AddVolumeResponse again;
  ASSERT_TRUE(Add(*stub, request, &again).ok());
  EXPECT_THAT(again.volume_indices(), ElementsAre(0, 1));
  EXPECT_EQ(TakeSnapshot(*stub, "a").summary.volumes_mapped(), 2u);

  // The id with other arguments: INVALID_ARGUMENT, nothing added.
  request.set_info("second");
  v1::AddVolumeResponse conflict;
  const grpc::Status status = Add(*stub, request, &conflict);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("different arguments (info was 'first', is 'second' "
                        "now)"));
  EXPECT_EQ(TakeSnapshot(*stub, "a").summary.volumes_mapped(), 2u);

  // A failed call's id is not remembered: its retry runs afresh.
  v1::AddVolumeRequest failing = AddRequest("a", 1);
  failing.set_request_id("00000000-0000-4000-8000-000000000001");
  failing.set_first_index(16);  // beyond max_volumes
  v1::AddVolumeResponse unused;
  EXPECT_EQ(Add(*stub, failing, &unused).error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
  failing.set_first_index(7);
  ASSERT_TRUE(Add(*stub, failing, &unused).ok());
  EXPECT_THAT(unused.volume_indices(), ElementsAre(7));
  // ... and now it is remembered.
  failing.set_first_index(8);
  EXPECT_EQ(Add(*stub, failing, &unused).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Arguments the pool refuses whatever it holds are refused before the id
  // is looked at (the add worker is never involved).
  failing.set_first_index(16);
  EXPECT_EQ(Add(*stub, failing, &unused).error_code(),
            grpc::StatusCode::OUT_OF_RANGE);
}

// ---- Bad input: RPCs -------------------------------------------------------

struct RpcCase {
  std::string name;
  grpc::StatusCode code;
  std::string message_part;  // a part of the error message
  // Makes the call; returns its status.
  std::function<grpc::Status(Stub&)> call;
};

grpc::Status AddCall(Stub& stub, const v1::AddVolumeRequest& request) {
  v1::AddVolumeResponse response;
  return Add(stub, request, &response);
}

v1::AddVolumeRequest AddAt(const std::string& pool, uint64_t count,
                           uint64_t first_index) {
  v1::AddVolumeRequest request = AddRequest(pool, count);
  request.set_first_index(first_index);
  return request;
}

v1::AddVolumeRequest AddWithId(const std::string& pool, uint64_t count,
                               const std::string& id) {
  v1::AddVolumeRequest request = AddRequest(pool, count);
  request.set_request_id(id);
  return request;
}

grpc::Status RemoveCall(Stub& stub, const std::string& pool, uint64_t count) {
  v1::RemoveVolumeResponse response;
  return Remove(stub, pool, count, &response);
}

grpc::Status InspectCall(Stub& stub, const std::string& pool, int32_t page_size,
                         const std::string& token) {
  v1::InspectRequest request;
  request.set_pool(pool);
  request.set_include_volumes(true);
  request.set_page_size(page_size);
  request.set_page_token(token);
  v1::InspectResponse response;
  return Inspect(stub, request, &response);
}

TEST(ServerBadInputTest, EveryBadRpcFailsWithItsCodeAndChangesNothing) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=16",
       "--pool=name=full,backing=normal,volume_size=4KiB,max_volumes=2,"
       "initial_volumes=2",
       "--pool=name=empty,backing=normal,volume_size=4KiB,max_volumes=4"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  // Pool a holds volumes 0..3, added with request id kUsedId.
  const std::string kUsedId = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
  v1::AddVolumeResponse setup;
  ASSERT_TRUE(Add(*stub, AddWithId("a", 4, kUsedId), &setup).ok());
  // A real token of pool "full" (2 volumes, pages of 1).
  v1::InspectRequest full_page;
  full_page.set_pool("full");
  full_page.set_include_volumes(true);
  full_page.set_page_size(1);
  v1::InspectResponse full_response;
  ASSERT_TRUE(Inspect(*stub, full_page, &full_response).ok());
  const std::string full_token = full_response.next_page_token();
  ASSERT_FALSE(full_token.empty());
  // A token of pool a, tampered with.
  v1::InspectRequest a_page = full_page;
  a_page.set_pool("a");
  v1::InspectResponse a_response;
  ASSERT_TRUE(Inspect(*stub, a_page, &a_response).ok());
  std::string tampered = a_response.next_page_token();
  ASSERT_FALSE(tampered.empty());
  tampered[tampered.size() / 2] =
      tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';

  using C = grpc::StatusCode;
  const std::string big(481, 'i');
  const std::vector<RpcCase> cases = {
      // AddVolume
      {"add to an unknown pool", C::NOT_FOUND, "no pool named 'nope'",
       [](Stub& s) { return AddCall(s, AddRequest("nope", 1)); }},
      {"add to the empty pool name", C::NOT_FOUND, "no pool named ''",
       [](Stub& s) { return AddCall(s, AddRequest("", 1)); }},
      {"add count 0", C::INVALID_ARGUMENT, "count 0",
       [](Stub& s) { return AddCall(s, AddRequest("a", 0)); }},
      {"add count 1025", C::INVALID_ARGUMENT, "count 1025",
       [](Stub& s) { return AddCall(s, AddRequest("a", 1025)); }},
      {"add count 2^64-1", C::INVALID_ARGUMENT, "outside [1, 1024]",
       [](Stub& s) { return AddCall(s, AddRequest("a", ~uint64_t{0})); }},
      {"add info of 481 bytes", C::INVALID_ARGUMENT, "481 bytes",
       [&](Stub& s) { return AddCall(s, AddRequest("a", 1, big)); }},
      {"add info of 4096 bytes", C::INVALID_ARGUMENT, "4096 bytes",
       [](Stub& s) {
         return AddCall(s, AddRequest("a", 1, std::string(4096, 'x')));
       }},
      {"add request_id not a UUID", C::INVALID_ARGUMENT, "not a UUID",
       [](Stub& s) { return AddCall(s, AddWithId("a", 1, "retry-1")); }},
      {"add request_id dashes misplaced", C::INVALID_ARGUMENT, "not a UUID",
       [](Stub& s) {
         return AddCall(
             s, AddWithId("a", 1, "123e4567e-89b-42d3-a456-426614174000"));
       }},
      {"add request_id not hex", C::INVALID_ARGUMENT, "not a UUID",
       [](Stub& s) {
         return AddCall(
             s, AddWithId("a", 1, "123e4567-e89b-42d3-a456-42661417400g"));
       }},
      {"add request_id 37 characters", C::INVALID_ARGUMENT, "not a UUID",
       [](Stub& s) {
         return AddCall(
             s, AddWithId("a", 1, "123e4567-e89b-42d3-a456-4266141740000"));
       }},
      {"add request_id reused with other arguments", C::INVALID_ARGUMENT,
       "different arguments (count was 4, is 5 now)",
       [&](Stub& s) { return AddCall(s, AddWithId("a", 5, kUsedId)); }},
      {"add first_index at max_volumes", C::OUT_OF_RANGE, "max_volumes 16",
       [](Stub& s) { return AddCall(s, AddAt("a", 1, 16)); }},
      {"add range past max_volumes", C::OUT_OF_RANGE, "[15, 17)",
       [](Stub& s) { return AddCall(s, AddAt("a", 2, 15)); }},
      {"add first_index 2^64-1", C::OUT_OF_RANGE,
       "first_index 18446744073709551615 is not below max_volumes 16",
       [](Stub& s) { return AddCall(s, AddAt("a", 1, ~uint64_t{0})); }},
      {"add over a mapped volume", C::ALREADY_EXISTS, "index 0",
       [](Stub& s) { return AddCall(s, AddAt("a", 1, 0)); }},
      {"add a range overlapping at its start", C::ALREADY_EXISTS, "index 3",
       [](Stub& s) { return AddCall(s, AddAt("a", 2, 3)); }},
      {"add to a pool at max_volumes", C::RESOURCE_EXHAUSTED, "room for 0 more",
       [](Stub& s) { return AddCall(s, AddRequest("full", 1)); }},
      {"add more than the free slots", C::RESOURCE_EXHAUSTED,
       "room for 12 more",
       [](Stub& s) { return AddCall(s, AddRequest("a", 13)); }},
      {"add more than max_volumes", C::RESOURCE_EXHAUSTED,
       "holds at most max_volumes 16 volumes, asked for 17",
       [](Stub& s) { return AddCall(s, AddRequest("a", 17)); }},
      // RemoveVolume
      {"remove from an unknown pool", C::NOT_FOUND, "no pool named 'nope'",
       [](Stub& s) { return RemoveCall(s, "nope", 1); }},
      {"remove count 0", C::INVALID_ARGUMENT, "count 0",
       [](Stub& s) { return RemoveCall(s, "a", 0); }},
      {"remove count 1025", C::INVALID_ARGUMENT, "count 1025",
       [](Stub& s) { return RemoveCall(s, "a", 1025); }},
      {"remove from a pool with no volume", C::FAILED_PRECONDITION,
       "has no volumes (0 of 4 mapped); add some first",
       [](Stub& s) { return RemoveCall(s, "empty", 1); }},
      // Inspect
      {"inspect an unknown pool", C::NOT_FOUND, "no pool named 'nope'",
       [](Stub& s) { return InspectCall(s, "nope", 0, ""); }},
      {"inspect page_size -1", C::INVALID_ARGUMENT, "page_size -1",
       [](Stub& s) { return InspectCall(s, "a", -1, ""); }},
      {"inspect a made-up page_token", C::INVALID_ARGUMENT, "page_token",
       [](Stub& s) { return InspectCall(s, "a", 0, "garbage"); }},
      {"inspect another pool's page_token", C::INVALID_ARGUMENT, "for pool 'a'",
       [&](Stub& s) { return InspectCall(s, "a", 0, full_token); }},
      {"inspect a tampered page_token", C::INVALID_ARGUMENT, "page_token",
       [&](Stub& s) { return InspectCall(s, "a", 0, tampered); }},
      {"inspect a page_token with a space", C::INVALID_ARGUMENT, "page_token",
       [&](Stub& s) { return InspectCall(s, "a", 0, " " + full_token); }},
      // The token's own pool, its bytes with the '=' padding base64 allows:
      // only the canonical (unpadded) spelling is taken.
      {"inspect a padded page_token", C::INVALID_ARGUMENT,
       "page_token is not a next_page_token that Inspect returned for pool "
       "'full'",
       [&](Stub& s) { return InspectCall(s, "full", 1, full_token + "="); }},
  };

  const std::vector<std::string> pools = {"a", "full", "empty"};
  std::vector<Snapshot> before;
  for (const std::string& pool : pools) {
    before.push_back(TakeSnapshot(*stub, pool));
  }
  ASSERT_EQ(before[0].volumes.size(), 4u);
  for (const RpcCase& c : cases) {
    SCOPED_TRACE(c.name);
    const grpc::Status status = c.call(*stub);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message_part));
    for (size_t p = 0; p < pools.size(); ++p) {
      const Snapshot after = TakeSnapshot(*stub, pools[p]);
      EXPECT_TRUE(after == before[p])
          << "pool " << pools[p] << " changed:\nbefore "
          << before[p].DebugString() << "\nafter  " << after.DebugString();
    }
  }
  // Every error was logged with its code (the test reads the server's
  // output on a thread of its own: wait for the lines).
  EXPECT_TRUE(server->WaitForLogCount({"event=rpc_error"}, cases.size()));
  EXPECT_TRUE(
      server->WaitForLogCount({"event=rpc_error", "code=OUT_OF_RANGE"}, 3));
}

// ---- Bad input: flags and config -------------------------------------------

struct FlagCase {
  std::string name;
  std::vector<std::string> args;
  int exit_code;
  std::string message_part;  // names the bad flag or field
};

TEST(ServerBadInputTest, EveryBadFlagStopsTheServerBeforeItListens) {
  TempDir dir;
  auto config = [&](const std::string& name, const std::string& text) {
    const std::string path = dir.path() + "/" + name + ".textproto";
    std::ofstream(path) << text;
    return "--config=" + path;
  };
  const std::string data = "--data-dir=" + dir.path() + "/data";
  // Certificates for the TLS cases, and files that are not what they
  // should be.
  const std::string pki = dir.path() + "/pki";
  std::filesystem::create_directory(pki);
  ASSERT_TRUE(MakeTestPki(pki).ok()) << MakeTestPki(pki);
  const std::string not_pem = pki + "/not.pem";
  std::ofstream(not_pem) << "not a PEM file\n";
  // A token file whose second line has its fields swapped: the message
  // names the line, never the token.
  const std::string secret = "SeCrEt-groove-token-0123456789";
  const std::string tokens = pki + "/tokens";
  WriteTextFile(tokens, "# tokens\nadmin " + secret + "\n");
  // Well-formed token files whose modes let others in.
  const std::string loose_tokens =
      WriteTextFile(pki + "/loose_tokens", secret + " admin\n", 0644);
  const std::string group_writable_tokens =
      WriteTextFile(pki + "/group_writable_tokens", secret + " admin\n", 0620);
  // A FIFO nobody writes to: opening it to read would wait for a writer
  // forever (and reading a device such as /dev/zero would never end).
  const std::string fifo = pki + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  const std::string cert = "--tls-cert=" + pki + "/server.pem";
  const std::string key = "--tls-key=" + pki + "/server.key";
  // Not a key, in a file only its owner may read (as a key must be).
  const std::string not_pem_key =
      WriteTextFile(pki + "/not_pem.key", "not a PEM file\n");
  // The server's key in files whose modes let others read it.
  const std::string loose_key = WriteTextFile(
      pki + "/loose.key", ReadTextFile(pki + "/server.key"), 0644);
  const std::string group_writable_key = WriteTextFile(
      pki + "/group_writable.key", ReadTextFile(pki + "/server.key"), 0660);
  const std::vector<FlagCase> cases = {
      {"pool without name", {"--pool=backing=normal"}, 2, "name: required"},
      {"pool volume_size not a power of two",
       {"--pool=name=a,volume_size=3000"},
       2,
       "volume_size_bytes: 3000"},
      {"pool volume_size unit",
       {"--pool=name=a,volume_size=1GB"},
       2,
       "volume_size: '1GB' is not a size"},
      {"pool max_volumes 0",
       {"--pool=name=a,max_volumes=0"},
       2,
       "max_volumes: must be at least 1"},
      {"pool max_volumes not a number",
       {"--pool=name=a,max_volumes=many"},
       2,
       "max_volumes: 'many'"},
      {"pool initial_volumes above max",
       {"--pool=name=a,max_volumes=2,initial_volumes=3"},
       2,
       "initial_volumes: 3 is above max_volumes 2"},
      {"pool backing unknown",
       {"--pool=name=a,backing=weird"},
       2,
       "backing: 'weird'"},
      {"pool unknown key",
       {"--pool=name=a,color=red"},
       2,
       "color: unknown key"},
      {"pool key twice",
       {"--pool=name=a,name=b"},
       2,
       "name: given more than once"},
      {"pool names repeated",
       {"--pool=name=a", "--pool=name=a"},
       2,
       "'a' is already the name of --pool=name=a"},
      {"pool name escapes the data dir",
       {"--pool=name=.."},
       2,
       "name: pool name '..'"},
      {"pool huge backing with 4 KiB volumes",
       {"--pool=name=a,backing=huge,volume_size=4KiB"},
       2,
       "volume_size_bytes: 4096 is not a multiple"},
      {"pool span beyond the address space",
       {"--pool=name=a,volume_size=1GiB,max_volumes=1000000"},
       2,
       "max_volumes: 1000000 volumes"},
      {"listen not host:port",
       {"--listen=nonsense"},
       2,
       "listen_address: 'nonsense'"},
      {"listen port out of range",
       {"--listen=127.0.0.1:70000"},
       2,
       "listen_address: '127.0.0.1:70000'"},
      {"listen on a relative unix socket path",
       {"--listen=unix:grpc.sock"},
       2,
       "listen_address: 'unix:grpc.sock' is not unix:/ABSOLUTE/PATH of at "
       "most 107 bytes"},
      {"listen on a unix socket path too long for sockaddr_un",
       {"--listen=unix:/" + std::string(107, 'x')},
       2,
       "is not unix:/ABSOLUTE/PATH of at most 107 bytes"},
      {"metrics-listen on a unix socket",
       {"--metrics-listen=unix:/tmp/metrics.sock"},
       2,
       "metrics_listen_address: 'unix:/tmp/metrics.sock': a unix socket "
       "cannot serve it"},
      {"metrics-listen equal to listen",
       {"--listen=127.0.0.1:5999", "--metrics-listen=127.0.0.1:5999"},
       2,
       "metrics_listen_address: '127.0.0.1:5999' is also listen_address"},
      {"data-dir relative",
       {"--data-dir=relative/dir"},
       2,
       "data_dir: 'relative/dir' is not an absolute path"},
      {"config file missing",
       {"--config=/nonexistent/groove.textproto"},
       2,
       "--config=/nonexistent/groove.textproto: cannot read"},
      {"config a directory",
       {"--config=" + pki},
       2,
       "--config=" + pki + ": cannot read: it is a directory"},
      {"config a FIFO",
       {"--config=" + fifo},
       2,
       "--config=" + fifo + ": cannot read: it is not a regular file"},
      {"config a device",
       {"--config=/dev/zero"},
       2,
       "--config=/dev/zero: cannot read: it is not a regular file"},
      {"config syntax error",
       {config("syntax", "pools { name: }")},
       2,
       "line 1 column"},
      {"config unknown field", {config("unknown", "colour: 1")}, 2, "colour"},
      {"config duplicate pool names",
       {config("dup", "pools { name: \"a\" } pools { name: \"a\" }")},
       2,
       "pools[1].name: 'a' is already the name of pools[0]"},
      {"config file backing without file_path",
       {config("file", "pools { name: \"a\" backing: BACKING_FILE }")},
       2,
       "pools[0].file_path: required"},
      {"config file_path with normal backing",
       {config("path",
               "pools { name: \"a\" backing: BACKING_NORMAL "
               "file_path: \"x\" }")},
       2,
       "pools[0].file_path: must be empty"},
      {"config max_volumes above the limit",
       {config("max",
               "pools { name: \"a\" volume_size_bytes: 4096 "
               "max_volumes: 2000000000 }")},
       2,
       "pools[0].max_volumes: 2000000000 is outside"},
      {"unknown flag", {"--no_such_flag=1"}, 1, "no_such_flag"},
      {"positional argument", {"serve"}, 2, "unexpected argument 'serve'"},
      {"add workers 0",
       {"--add_workers_per_pool=0"},
       2,
       "--add_workers_per_pool: 0"},
      {"pool flag without value", {"--pool"}, 2, "--pool: missing value"},
      {"negative drain grace",
       {"--drain_grace=-1s"},
       2,
       "--drain_grace: negative"},
      {"negative routine line budget",
       {"--log_routine_lines_per_second=-1"},
       2,
       "--log_routine_lines_per_second: -1 is negative; use 0 for no limit"},
      {"negative refusal line budget",
       {"--log_refusal_lines_per_second=-1"},
       2,
       "--log_refusal_lines_per_second: -1 is negative; use 0 for no limit"},
      {"listen beyond loopback without TLS, tokens or --insecure",
       {"--listen=0.0.0.0:0"},
       2,
       "'0.0.0.0:0' is not a loopback address, and neither TLS nor tokens "
       "are configured"},
      {"listen on [::] without TLS, tokens or --insecure",
       {"--listen=[::]:0"},
       2,
       "Add --tls-cert=FILE --tls-key=FILE"},
      {"tls-cert missing",
       {"--tls-cert=/nonexistent/cert.pem", key},
       2,
       "--tls-cert (tls.cert_file) /nonexistent/cert.pem: cannot read"},
      {"tls-cert a directory",
       {"--tls-cert=" + pki, key},
       2,
       "--tls-cert (tls.cert_file) " + pki + ": cannot read"},
      {"tls-cert a FIFO",
       {"--tls-cert=" + fifo, key},
       2,
       "--tls-cert (tls.cert_file) " + fifo +
           ": cannot read: it is not a regular file"},
      {"tls-cert not PEM",
       {"--tls-cert=" + not_pem, key},
       2,
       "--tls-cert (tls.cert_file) " + not_pem + ": holds no PEM certificate"},
      {"tls-key missing",
       {cert, "--tls-key=/nonexistent/key.pem"},
       2,
       "--tls-key (tls.key_file) /nonexistent/key.pem: cannot read"},
      {"tls-key not PEM",
       {cert, "--tls-key=" + not_pem_key},
       2,
       "--tls-key (tls.key_file) " + not_pem_key +
           ": holds no unencrypted PEM"},
      {"tls-key of another certificate",
       {cert, "--tls-key=" + pki + "/client.key"},
       2,
       "/client.key: is not the key of the certificate in --tls-cert"},
      {"tls-key readable by others",
       {cert, "--tls-key=" + loose_key},
       2,
       "--tls-key (tls.key_file) " + loose_key +
           ": is accessible to others (mode 0644); chmod 600 " + loose_key},
      {"tls-key writable by its group",
       {cert, "--tls-key=" + group_writable_key},
       2,
       "--tls-key (tls.key_file) " + group_writable_key +
           ": is writable or executable by its group (mode 0660); chmod 600 " +
           group_writable_key},
      {"tls-key without tls-cert",
       {key},
       2,
       "tls.cert_file: TLS needs both a certificate and its key"},
      {"tls-client-ca without tls-cert",
       {"--tls-client-ca=" + pki + "/ca.pem"},
       2,
       "TLS needs both"},
      {"tls-client-ca not PEM",
       {cert, key, "--tls-client-ca=" + not_pem},
       2,
       "--tls-client-ca (tls.client_ca_file) " + not_pem + ": holds no PEM"},
      {"auth-tokens missing",
       {"--auth-tokens=/nonexistent/tokens"},
       2,
       "--auth-tokens=/nonexistent/tokens: cannot read"},
      {"auth-tokens malformed line",
       {"--auth-tokens=" + tokens},
       2,
       "--auth-tokens=" + tokens + ": line 2: the role is neither"},
      {"auth-tokens a FIFO",
       {"--auth-tokens=" + fifo},
       2,
       "--auth-tokens=" + fifo + ": cannot read: it is not a regular file"},
      {"auth-tokens readable by others",
       {"--auth-tokens=" + loose_tokens},
       2,
       "--auth-tokens=" + loose_tokens +
           ": is accessible to others (mode 0644); chmod 600 " + loose_tokens},
      {"auth-tokens writable by its group",
       {"--auth-tokens=" + group_writable_tokens},
       2,
       "--auth-tokens=" + group_writable_tokens +
           ": is writable or executable by its group (mode 0620)"},
      {"negative credentials refresh",
       {"--credentials-refresh=-1s"},
       2,
       "--credentials-refresh: credentials_refresh: -1s is outside [0s, 24h]; "
       "0s reads the TLS and token files once, at start-up"},
      {"credentials refresh above a day",
       {"--credentials_refresh=25h"},
       2,
       "--credentials-refresh: credentials_refresh: 25h is outside [0s, 24h]"},
      {"config credentials refresh negative",
       {config("refresh", "credentials_refresh { seconds: -5 }")},
       2,
       "credentials_refresh: -5s is outside [0s, 24h]"},
      {"config credentials refresh not a valid Duration",
       {config("refresh_nanos",
               "credentials_refresh { seconds: 1 nanos: -1 }")},
       2,
       "credentials_refresh: {seconds: 1 nanos: -1} is outside"},
      {"max request size below 4 KiB",
       {"--max_request_bytes=1KiB"},
       2,
       "--max_request_bytes: 1024 is outside [4KiB, 64MiB]"},
      {"max request size not a size",
       {"--max-request-bytes=lots"},
       2,
       "--max_request_bytes: 'lots' is not a size"},
      {"max concurrent streams 0",
       {"--max_concurrent_streams=0"},
       2,
       "--max_concurrent_streams: 0 is outside"},
      {"negative max connection idle",
       {"--max_connection_idle=-1s"},
       2,
       "--max_connection_idle: -1s is outside"},
  };
  for (const FlagCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> args = c.args;
    args.insert(args.begin(), data);
    const CommandResult result = ServerProcess::RunToExit(args);
    const std::string output = result.out + result.err;
    EXPECT_EQ(result.exit_code, c.exit_code) << output;
    EXPECT_THAT(output, HasSubstr(c.message_part));
    EXPECT_THAT(output, ::testing::Not(HasSubstr("event=listening")));
    EXPECT_THAT(output, ::testing::Not(HasSubstr(secret)));
  }
  // Nothing was opened either: no pool files were created.
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data"));
}

// --help lists every flag of the server and exits 0, having opened and
// bound nothing. (Abseil's own --help lists only the flags of a file named
// after the program, so it printed "No flags matched." and exited 1.)
TEST(ServerFlagsTest, HelpListsEveryFlagAndExitsZero) {
  TempDir dir;
  for (const std::string help : {"--help", "-help"}) {
    SCOPED_TRACE(help);
    const CommandResult result =
        ServerProcess::RunToExit({"--data-dir=" + dir.path() + "/data", help});
    EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
    EXPECT_THAT(result.out, HasSubstr("Usage: groove-volumed"));
    for (const char* flag :
         {"--data-dir (", "--pool (", "--listen (", "--metrics-listen (",
          "--config (", "--shutdown-deadline (", "--tls-cert (",
          "--auth-tokens (", "--credentials-refresh (", "--insecure (",
          "--max-request-bytes ("}) {
      EXPECT_THAT(result.out, HasSubstr(flag));
    }
    EXPECT_THAT(result.out, HasSubstr("default: 30s;"));
    EXPECT_THAT(result.out + result.err,
                ::testing::Not(HasSubstr("No flags matched")));
    EXPECT_THAT(result.err, ::testing::Not(HasSubstr("event=listening")));
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data"));
}

// ---- Which build is running -------------------------------------------------

// VersionOutput runs `groove-volumed --version` and returns its parsed
// line, recording a failure (with the output) when it is not one build
// line on stdout with exit status 0.
std::optional<BuildLineParts> VersionOutput(const std::string& data_dir) {
  const CommandResult result =
      ServerProcess::RunToExit({"--data-dir=" + data_dir, "--version"});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  std::optional<BuildLineParts> parts = ParseBuildLine(result.out);
  EXPECT_TRUE(parts.has_value())
      << "not one build line on stdout: '" << result.out << "'; stderr: '"
      << result.err << "'";
  return parts;
}

// --version prints the build and exits 0, having opened and bound
// nothing: the project version, the git revision this tree is at (HEAD's
// short hash, "-dirty" only if the tree has changes; "unknown" outside
// git), the preset's build type and gRPC's version. (Before, it printed
// Abseil's "groove-volumed / Debug build (NDEBUG not #defined)".)
TEST(ServerFlagsTest, VersionPrintsTheBuildAndExitsZero) {
  TempDir dir;
  const std::optional<BuildLineParts> build =
      VersionOutput(dir.path() + "/data");
  ASSERT_TRUE(build.has_value());
  EXPECT_EQ(build->program, "groove-volumed");
  EXPECT_EQ(build->version, kExpectedVersion);
  EXPECT_THAT(AcceptedRevisions(), Contains(build->revision));
  EXPECT_EQ(build->build_type, kExpectedBuildType);
  EXPECT_EQ(build->grpc_version, kExpectedGrpcVersion);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data"));
}

// A server, and the build its --version prints, which each test finds
// where an operator would look.
class ServerBuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::optional<BuildLineParts> build = VersionOutput(dir_.path() + "/data");
    ASSERT_TRUE(build.has_value());
    build_ = *std::move(build);
    server_ = ServerProcess::Start(
        {"--data-dir=" + dir_.path() + "/data",
         "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=4"});
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Stop(), 0);
    }
  }

  TempDir dir_;
  BuildLineParts build_;
  std::unique_ptr<ServerProcess> server_;
};

// The `starting` line names the build, as --version does.
TEST_F(ServerBuildTest, TheStartingLineNamesTheBuild) {
  const std::optional<std::string> starting =
      server_->WaitForLog("event=starting");
  ASSERT_TRUE(starting.has_value());
  EXPECT_EQ(LogValue(*starting, "version"), build_.version) << *starting;
  EXPECT_EQ(LogValue(*starting, "revision"), build_.revision) << *starting;
}

// /metrics has one groove_build_info series, a gauge of value 1 whose
// labels are the build --version prints (the Prometheus convention for
// *_build_info).
TEST_F(ServerBuildTest, MetricsHaveOneBuildInfoSeriesOfOne) {
  absl::StatusOr<std::string> scrape =
      HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  std::vector<std::string> samples;
  for (absl::string_view line : absl::StrSplit(*scrape, '\n')) {
    if (absl::StartsWith(line, "groove_build_info")) {
      samples.emplace_back(line);
    }
  }
  EXPECT_THAT(*scrape, HasSubstr("# TYPE groove_build_info gauge\n"));
  // prometheus-cpp writes labels sorted by name.
  EXPECT_THAT(samples,
              ElementsAre(absl::StrCat(
                  "groove_build_info{build_type=\"", build_.build_type,
                  "\",grpc_version=\"", build_.grpc_version, "\",revision=\"",
                  build_.revision, "\",version=\"", build_.version, "\"} 1")))
      << *scrape;
}

// ListPools says which build answered: every field as --version says it.
TEST_F(ServerBuildTest, ListPoolsNamesTheServersBuild) {
  auto stub = server_->Stub();
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  ASSERT_TRUE(pools.has_server_build()) << pools.ShortDebugString();
  const v1::BuildInfo& served = pools.server_build();
  EXPECT_EQ(served.version(), build_.version);
  EXPECT_EQ(served.revision(), build_.revision);
  EXPECT_EQ(served.build_type(), build_.build_type);
  EXPECT_EQ(served.grpc_version(), build_.grpc_version);
  EXPECT_EQ(served.protobuf_version(), build_.protobuf_version);
  EXPECT_EQ(served.abseil_version(), build_.abseil_version);
}

TEST(ServerBadInputTest, PoolThatCannotBeOpenedStopsTheServer) {
  TempDir dir;
  // A pool created with one geometry refuses another without --recreate,
  // before any port is bound.
  {
    auto server = ServerProcess::Start(
        {"--data-dir=" + dir.path(),
         "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=8"});
    ASSERT_NE(server, nullptr);
    EXPECT_EQ(server->Stop(), 0);
  }
  const CommandResult refused = ServerProcess::RunToExit(
      {"--data-dir=" + dir.path(),
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=9"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("max_volumes is 8, configured 9"));
  EXPECT_THAT(refused.err, HasSubstr("--recreate"));
  EXPECT_THAT(refused.err, ::testing::Not(HasSubstr("event=listening")));

  auto recreated = ServerProcess::Start(
      {"--data-dir=" + dir.path(), "--recreate",
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=9"});
  ASSERT_NE(recreated, nullptr);
  auto stub = recreated->Stub();
  EXPECT_EQ(TakeSnapshot(*stub, "a").summary.max_volumes(), 9u);
}

// A request libprotobuf cannot parse (here a pool name that is not UTF-8)
// is refused by gRPC before any handler runs; libprotobuf's complaint
// reaches the log as one logfmt line, not in a format of its own.
TEST(ServerBadInputTest, AMalformedRequestIsLoggedAsOneLogfmtLine) {
  TempDir dir;
  auto server = ServerProcess::Start({"--data-dir=" + dir.path()});
  ASSERT_NE(server, nullptr);
  grpc::GenericStub generic(server->channel());
  grpc::ClientContext context;
  SetDeadline(&context);
  const std::string pool_not_utf8("\x0a\x01\xff", 3);  // field 1, "\xff"
  grpc::Slice slice(pool_not_utf8);
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  absl::Notification done;
  grpc::Status status;
  generic.UnaryCall(&context, "/groove.v1.VolumePoolService/Inspect",
                    grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
  done.WaitForNotification();
  EXPECT_FALSE(status.ok());
  const std::optional<std::string> line =
      server->WaitForLog("event=protobuf_log");
  ASSERT_TRUE(line.has_value()) << server->LogText();
  EXPECT_THAT(*line, HasSubstr("level=warn"));
  EXPECT_THAT(*line, HasSubstr("invalid UTF-8"));
  EXPECT_EQ(server->LogCount({"[libprotobuf"}), 0u) << server->LogText();
}

TEST(ServerBadInputTest, AddressInUseStopsTheServer) {
  TempDir first_dir;
  TempDir second_dir;
  auto first = ServerProcess::Start({"--data-dir=" + first_dir.path()});
  ASSERT_NE(first, nullptr);
  for (const std::string& flag :
       {"--listen=" + first->grpc_address(),
        "--metrics-listen=" + first->metrics_address()}) {
    SCOPED_TRACE(flag);
    const CommandResult refused = ServerProcess::RunToExit(
        {"--data-dir=" + second_dir.path(), flag,
         absl::StrCat(absl::StartsWith(flag, "--listen") ? "--metrics-listen"
                                                         : "--listen",
                      "=127.0.0.1:0")});
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_THAT(refused.err, HasSubstr("cannot listen"));
    EXPECT_THAT(refused.err, ::testing::Not(HasSubstr("event=listening")));
  }
  // The first server is unharmed.
  auto stub = first->Stub();
  v1::ListPoolsResponse pools;
  EXPECT_TRUE(ListPools(*stub, &pools).ok());
}

// The limits are inclusive: one call adds, and one removes, exactly
// kMaxVolumesPerRequest (1024) volumes, each with exactly kVolumeInfoMax
// (480) bytes of info, which come back whole.
TEST(ServerApiTest, OneCallAddsAndRemovesTheMostVolumesWithTheLongestInfo) {
  TempDir dir;
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path(),
       "--pool=name=a,backing=normal,volume_size=4KiB,max_volumes=2048"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  const std::string info(480, 'i');
  v1::AddVolumeResponse added;
  const grpc::Status add = Add(*stub, AddRequest("a", 1024, info), &added);
  ASSERT_TRUE(add.ok()) << add.error_message();
  EXPECT_EQ(added.volume_indices_size(), 1024);
  v1::InspectRequest page;
  page.set_pool("a");
  page.set_include_volumes(true);
  page.set_page_size(1);
  v1::InspectResponse inspected;
  ASSERT_TRUE(Inspect(*stub, page, &inspected).ok());
  ASSERT_EQ(inspected.volumes_size(), 1);
  EXPECT_EQ(inspected.volumes(0).info(), info);
  v1::RemoveVolumeResponse removed;
  const grpc::Status remove = Remove(*stub, "a", 1024, &removed);
  ASSERT_TRUE(remove.ok()) << remove.error_message();
  EXPECT_EQ(removed.volumes_size(), 1024);
  EXPECT_EQ(TakeSnapshot(*stub, "a").summary.volumes_mapped(), 0u);
}

// A unix socket's address is its path: the server serves it (as local as
// loopback, so without TLS), refuses one another server serves or a path
// that is something else, replaces the socket of a server that died, and
// removes its own when it stops.
TEST(ServerUnixSocketTest, ServesOnAUnixSocketAndRemovesItWhenStopped) {
  TempDir dir;
  const std::string socket = dir.path() + "/grpc.sock";
  auto server = ServerProcess::Start(
      {"--data-dir=" + dir.path() + "/data", "--listen=unix:" + socket});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->grpc_address(), "unix:" + socket);
  EXPECT_EQ(server->LogCount({"event=plaintext_listen"}), 0u);
  EXPECT_EQ(std::filesystem::status(socket).type(),
            std::filesystem::file_type::socket);
  // Owner and group may connect, whatever the umask; nobody else.
  EXPECT_EQ(std::filesystem::status(socket).permissions(),
            std::filesystem::perms::owner_read |
                std::filesystem::perms::owner_write |
                std::filesystem::perms::group_read |
                std::filesystem::perms::group_write);
  auto stub = server->Stub();
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  EXPECT_EQ(pools.pools_size(), 1);
  EXPECT_EQ(server->Stop(), 0);
  EXPECT_FALSE(std::filesystem::exists(socket));
}

TEST(ServerUnixSocketTest, ASocketAnotherServerServesIsRefused) {
  TempDir dir;
  const std::string socket = dir.path() + "/grpc.sock";
  auto first = ServerProcess::Start(
      {"--data-dir=" + dir.path() + "/first", "--listen=unix:" + socket});
  ASSERT_NE(first, nullptr);
  const CommandResult refused = ServerProcess::RunToExit(
      {"--data-dir=" + dir.path() + "/second", "--listen=unix:" + socket,
       // Port 0: the default 9464 may be another test's at this moment.
       "--metrics-listen=127.0.0.1:0"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err,
              HasSubstr("listen_address unix:" + socket +
                        ": cannot listen: another process is serving that "
                        "socket (another groove-volumed?)"));
  // The first server keeps its socket and its clients.
  auto stub = first->Stub();
  v1::ListPoolsResponse pools;
  EXPECT_TRUE(ListPools(*stub, &pools).ok());
}

TEST(ServerUnixSocketTest, APathThatIsNotASocketIsRefusedAndLeftAlone) {
  TempDir dir;
  const std::string path = dir.path() + "/grpc.sock";
  std::ofstream(path) << "not a socket\n";
  const CommandResult refused = ServerProcess::RunToExit(
      {"--data-dir=" + dir.path() + "/data", "--listen=unix:" + path,
       // Port 0: the default 9464 may be another test's at this moment.
       "--metrics-listen=127.0.0.1:0"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err,
              HasSubstr("the path exists and is not a socket; remove it or "
                        "choose another path"));
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "not a socket");
}

TEST(ServerUnixSocketTest, TheSocketOfAServerThatDiedIsReplaced) {
  TempDir dir;
  const std::string socket = dir.path() + "/grpc.sock";
  const std::vector<std::string> args = {"--data-dir=" + dir.path() + "/data",
                                         "--listen=unix:" + socket};
  auto died = ServerProcess::Start(args);
  ASSERT_NE(died, nullptr);
  died->Kill();
  // Its channel goes too: gRPC shares a subchannel between channels to one
  // address, and that one is backing off from the dead server.
  died.reset();
  ASSERT_EQ(std::filesystem::status(socket).type(),
            std::filesystem::file_type::socket);
  auto server = ServerProcess::Start(args);
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::ListPoolsResponse pools;
  EXPECT_TRUE(ListPools(*stub, &pools).ok());
}

TEST(ServerApiTest, DefaultPoolWhenNoneIsConfigured) {
  TempDir dir;
  auto server = ServerProcess::Start({"--data-dir=" + dir.path()});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  ASSERT_EQ(pools.pools_size(), 1);
  EXPECT_EQ(pools.pools(0).name(), "default");
  EXPECT_EQ(pools.pools(0).backing_requested(), v1::BACKING_AUTO);
  EXPECT_NE(pools.pools(0).backing_in_use(), v1::BACKING_AUTO);
  EXPECT_EQ(pools.pools(0).volume_size_bytes(), uint64_t{1} << 30);
  EXPECT_EQ(pools.pools(0).max_volumes(), 1024u);
  EXPECT_EQ(pools.pools(0).volumes_mapped(), 0u);
}

TEST(ServerApiTest, ConfigFileAndFlagsCombine) {
  TempDir dir;
  const std::string path = dir.path() + "/groove.textproto";
  std::ofstream(path) << "# proto-message: groove.v1.ServerConfig\n"
                         "listen_address: \"127.0.0.1:1\"\n"
                         "pools {\n"
                         "  name: \"from_file\"\n"
                         "  backing: BACKING_NORMAL\n"
                         "  volume_size_bytes: 8192\n"
                         "  max_volumes: 4\n"
                         "  initial_volumes: 3\n"
                         "}\n";
  // --listen (from ServerProcess) overrides the file's listen_address;
  // --pool adds a pool after the file's.
  auto server = ServerProcess::Start(
      {"--config=" + path, "--data-dir=" + dir.path(),
       "--pool=name=from_flag,backing=normal,volume_size=4KiB,max_volumes=2"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(ListPools(*stub, &pools).ok());
  ASSERT_EQ(pools.pools_size(), 2);
  EXPECT_EQ(pools.pools(0).name(), "from_file");
  EXPECT_EQ(pools.pools(0).volume_size_bytes(), 8192u);
  EXPECT_EQ(pools.pools(0).volumes_mapped(), 3u);
  EXPECT_EQ(pools.pools(1).name(), "from_flag");
  EXPECT_THAT(Indices(TakeSnapshot(*stub, "from_file")), ElementsAre(0, 1, 2));
}

}  // namespace
}  // namespace groove::testing
