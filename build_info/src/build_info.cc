// build_info.cc: see groove/build_info.h.

#include "groove/build_info.h"

#include "absl/strings/str_cat.h"
#include "build_values.h"

namespace groove {
namespace {

absl::string_view OrUnknown(const std::string& value) {
  return value.empty() ? absl::string_view("unknown")
                       : absl::string_view(value);
}

}  // namespace

const v1::BuildInfo& ThisBuild() {
  // Never destroyed: see the header.
  static const v1::BuildInfo* const build = [] {
    auto* b = new v1::BuildInfo();
    b->set_version(build_internal::kVersion);
    b->set_revision(build_internal::kRevision);
    b->set_build_type(build_internal::kBuildType);
    b->set_grpc_version(build_internal::kGrpcVersion);
    b->set_protobuf_version(build_internal::kProtobufVersion);
    b->set_abseil_version(build_internal::kAbseilVersion);
    return b;
  }();
  return *build;
}

std::string BuildLine(absl::string_view program, const v1::BuildInfo& build) {
  return absl::StrCat(program, " ", OrUnknown(build.version()), " (revision ",
                      OrUnknown(build.revision()), ", ",
                      OrUnknown(build.build_type()), " build; gRPC ",
                      OrUnknown(build.grpc_version()), ", protobuf ",
                      OrUnknown(build.protobuf_version()), ", Abseil ",
                      OrUnknown(build.abseil_version()), ")");
}

}  // namespace groove
