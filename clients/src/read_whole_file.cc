// clients/src/read_whole_file.cc: see the header.

#include "read_whole_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace groove {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view what) {
  const auto cannot_read = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read: ", std::strerror(errno)));
  };
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return cannot_read();
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": is not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return cannot_read();
  // Copying an empty file sets failbit on `text`, not an error here.
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace groove
