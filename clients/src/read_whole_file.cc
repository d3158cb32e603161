// clients/src/read_whole_file.cc: see the header.

#include "read_whole_file.h"

#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "groove/v1/regular_file.h"

namespace groove {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view what,
                                          struct stat* opened) {
  v1::RegularFile file = v1::ReadRegularFile(path);
  if (file.error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read: ", std::strerror(file.error)));
  }
  if (!file.regular()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": is not a regular file"));
  }
  if (opened != nullptr) *opened = file.opened;
  return std::move(file.text);
}

}  // namespace groove
