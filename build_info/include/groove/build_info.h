// groove/build_info.h: which build of groove-volumed this binary is.
//
// The one place that knows the build: the project version (CMake's
// `project(groove_volumed VERSION ...)`), the git revision the tree was
// built from, the build type, and the versions of gRPC, protobuf and
// Abseil the binary was built against (those find_package found; Debian's
// runtime libraries of the same versions come from the same source
// packages). The revision is read from git at every build
// (build_info/generate.cmake); when it changes only the one small
// generated file that holds these values recompiles.
//
// Who reports it: groove-volumed's --version, its `starting` log line
// (version=, revision=), groove_build_info on /metrics and ListPools'
// `server_build`; groovectl's --version and `groovectl version`, which
// shows the server's too (docs/SERVER.md §4, clients/README.md).
//
// Example:
//   std::cout << BuildLine("groovectl", ThisBuild()) << "\n";
//   // groovectl 0.1.0 (revision 3561dfd, RelWithDebInfo build; gRPC
//   // 1.51.1, protobuf 3.21.12, Abseil 20220623)

#ifndef GROOVE_BUILD_INFO_H_
#define GROOVE_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"
#include "groove/v1/volume_pool.pb.h"

namespace groove {

// ThisBuild returns this binary's build, every field set:
//   version           the project version, "0.1.0"
//   revision          the short git hash of the tree it was built from
//                     (`git rev-parse --short HEAD`), with "-dirty" when a
//                     tracked file differed from HEAD; "unknown" when it
//                     was built outside a git checkout (a tarball, or the
//                     Dockerfile's build context, which holds no .git)
//                     unless the build named it (-DGROOVE_REVISION=...)
//   build_type        CMake's build type: "Release", "RelWithDebInfo", ...
//   grpc_version, protobuf_version, abseil_version
// Every value is made of [A-Za-z0-9._+-] only (the build refuses others),
// so it can go into a log line or a metric label as it is.
// Thread safety: safe from any thread; the object is made at the first
// call and never destroyed (lines logged while the process exits may
// still read it). Cost: O(1) after the first call.
const v1::BuildInfo& ThisBuild();

// BuildLine returns `build` of `program` as one line for people, e.g.
// "groove-volumed 0.1.0 (revision 3561dfd, RelWithDebInfo build; gRPC
// 1.51.1, protobuf 3.21.12, Abseil 20220623)". The program name and the
// version come first, as --version lines usually begin. Fields that are
// empty (a message from a server that left them unset) read "unknown".
// Cost: O(size of the line).
std::string BuildLine(absl::string_view program, const v1::BuildInfo& build);

}  // namespace groove

#endif  // GROOVE_BUILD_INFO_H_
