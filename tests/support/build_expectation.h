// tests/support/build_expectation.h: what a binary built from this tree
// must say of its build (groove/build_info.h), found independently of the
// build: the values CMake found, and the revision asked of git now, as the
// test runs.
//
// The revision: `git rev-parse --short HEAD` of the source tree; when a
// tracked file differs from HEAD now (`git status --porcelain
// --untracked-files=no`), the same hash with or without "-dirty" (the
// binary may have been built before or after the edit); "unknown" when the
// tree is not a git work tree of its own (a tarball) or git is missing;
// exactly -DGROOVE_REVISION when the build named one. CI runs in a fresh
// clone, so there the revision is HEAD's, clean.
//
// Needs the compile definitions of the CMake target
// groove_build_expectation (tests/CMakeLists.txt).
//
// Example:
//   std::optional<BuildLineParts> parts = ParseBuildLine(result.out);
//   ASSERT_TRUE(parts.has_value());
//   EXPECT_THAT(AcceptedRevisions(), Contains(parts->revision));

#ifndef GROOVE_TESTS_SUPPORT_BUILD_EXPECTATION_H_
#define GROOVE_TESTS_SUPPORT_BUILD_EXPECTATION_H_

#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "support/subprocess.h"

#if !defined(GROOVE_SOURCE_DIR) || !defined(GROOVE_EXPECTED_VERSION) || \
    !defined(GROOVE_EXPECTED_BUILD_TYPE) ||                             \
    !defined(GROOVE_EXPECTED_GRPC_VERSION) ||                           \
    !defined(GROOVE_REVISION_OVERRIDE) || !defined(GROOVE_GIT_BIN)
#error "link the test with groove_build_expectation (tests/CMakeLists.txt)"
#endif

namespace groove::testing {

// The values CMake found: PROJECT_VERSION, the preset's build type, the
// gRPC package's version.
inline constexpr char kExpectedVersion[] = GROOVE_EXPECTED_VERSION;
inline constexpr char kExpectedBuildType[] = GROOVE_EXPECTED_BUILD_TYPE;
inline constexpr char kExpectedGrpcVersion[] = GROOVE_EXPECTED_GRPC_VERSION;

// GitOutput returns git's stripped stdout for `args` in the source tree,
// or nullopt when git is missing or fails.
inline std::optional<std::string> GitOutput(std::vector<std::string> args) {
  const std::string git = GROOVE_GIT_BIN;
  if (git.empty() || !std::filesystem::exists(git)) return std::nullopt;
  args.insert(args.begin(), {git, "-C", GROOVE_SOURCE_DIR});
  // No index refresh written: the test must not race the developer's git.
  const CommandResult r =
      RunCommand(args, "", absl::Seconds(30), {{"GIT_OPTIONAL_LOCKS", "0"}});
  if (r.exit_code != 0) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(r.out));
}

// AcceptedRevisions returns the revisions a binary of this tree may
// report (see the file comment), the clean one first.
inline std::vector<std::string> AcceptedRevisions() {
  const std::string named = GROOVE_REVISION_OVERRIDE;
  if (!named.empty()) return {named};
  const std::optional<std::string> top =
      GitOutput({"rev-parse", "--show-toplevel"});
  std::error_code ec;
  if (!top.has_value() ||
      !std::filesystem::equivalent(*top, GROOVE_SOURCE_DIR, ec)) {
    return {"unknown"};
  }
  const std::optional<std::string> hash =
      GitOutput({"rev-parse", "--short", "HEAD"});
  if (!hash.has_value() || hash->empty()) return {"unknown"};
  const std::optional<std::string> changes =
      GitOutput({"status", "--porcelain", "--untracked-files=no"});
  if (changes.has_value() && !changes->empty()) {
    return {*hash, *hash + "-dirty"};
  }
  return {*hash};
}

// BuildLineParts are the fields of a line groove::BuildLine wrote.
struct BuildLineParts {
  std::string program, version, revision, build_type, grpc_version,
      protobuf_version, abseil_version;
};

// ParseBuildLine reads `text` (trailing newlines allowed) as one build
// line, "PROGRAM VERSION (revision REV, TYPE build; gRPC V, protobuf V,
// Abseil V)", or returns nullopt when it is not exactly that.
inline std::optional<BuildLineParts> ParseBuildLine(absl::string_view text) {
  static const std::regex kLine(
      R"(^(\S+) ([A-Za-z0-9._+-]+) \(revision ([A-Za-z0-9._+-]+), )"
      R"(([A-Za-z0-9._+-]+) build; gRPC ([A-Za-z0-9._+-]+), )"
      R"(protobuf ([A-Za-z0-9._+-]+), Abseil ([A-Za-z0-9._+-]+)\)\n*$)");
  std::smatch m;
  const std::string line(text);
  if (!std::regex_match(line, m, kLine)) return std::nullopt;
  return BuildLineParts{m[1], m[2], m[3], m[4], m[5], m[6], m[7]};
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_BUILD_EXPECTATION_H_
