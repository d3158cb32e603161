// build_values.h: the values of groove/build_info.h, defined in the one
// file generated at build time (build_values.cc; build_info/generate.cmake),
// so that a new revision recompiles that file alone. Read them through
// ThisBuild().

#ifndef GROOVE_BUILD_INFO_SRC_BUILD_VALUES_H_
#define GROOVE_BUILD_INFO_SRC_BUILD_VALUES_H_

namespace groove::build_internal {

extern const char kVersion[];          // CMake's PROJECT_VERSION: "0.1.0"
extern const char kRevision[];         // "3561dfd", "3561dfd-dirty", "unknown"
extern const char kBuildType[];        // "RelWithDebInfo", "Release", ...
extern const char kGrpcVersion[];      // find_package(gRPC): "1.51.1"
extern const char kProtobufVersion[];  // find_package(Protobuf): "3.21.12"
extern const char kAbseilVersion[];    // find_package(absl): "20220623"

}  // namespace groove::build_internal

#endif  // GROOVE_BUILD_INFO_SRC_BUILD_VALUES_H_
