// clients/src/read_whole_file.cc: see the header.

#include "read_whole_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace groove {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view what) {
  const auto cannot_read = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot read: ", std::strerror(errno)));
  };
  // O_NONBLOCK: a FIFO is refused below, not waited on at the open; the
  // type is checked on what was opened, so nothing can be swapped in
  // between.
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return cannot_read();
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const absl::Status s = cannot_read();
    close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": is not a regular file"));
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const absl::Status s = cannot_read();  // never a file cut short
      close(fd);
      return s;
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

}  // namespace groove
