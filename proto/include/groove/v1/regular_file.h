// groove/v1/regular_file.h: ReadRegularFile, the one way groove-volumed
// and its clients read a file a person named (TLS PEM files, token files,
// groovectl's `add --info @FILE`). Hand-written, like token_file.h: the
// server and the client library share no other library.
//
// Example:
//   groove::v1::RegularFile file = groove::v1::ReadRegularFile(path);
//   if (file.error != 0) { /* "PATH: cannot read: strerror(file.error)" */ }
//   else if (!file.regular()) { /* refuse: a directory, FIFO or device */ }
//   else { use(file.text, file.opened.st_mode); }

#ifndef GROOVE_V1_REGULAR_FILE_H_
#define GROOVE_V1_REGULAR_FILE_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace groove::v1 {

// RegularFile is what ReadRegularFile found.
struct RegularFile {
  int error = 0;          // errno of a failed open, fstat or read; else 0
  struct stat opened {};  // the file as opened; set when error is 0
  std::string text;       // its whole contents; set when error is 0 and
                          // it is regular
  bool regular() const { return S_ISREG(opened.st_mode); }
};

// ReadRegularFile opens `path` (after symlinks) and, when what it opened
// is a regular file, reads all of it. The file is judged on what was
// opened (fstat), before any read, so nothing can be swapped in between;
// the open is non-blocking, so a FIFO is refused at once instead of
// waiting for a writer for ever, and a device such as /dev/zero is never
// read. A read error is an error (`error`), never contents cut short.
// Thread safety: reads the file only; safe concurrently. Cost: the
// file's size.
inline RegularFile ReadRegularFile(const std::string& path) {
  RegularFile file;
  const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    file.error = errno;
    return file;
  }
  if (fstat(fd, &file.opened) != 0) {
    file.error = errno;
  } else if (file.regular()) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        file.error = errno;
        file.text.clear();
        break;
      }
      file.text.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  return file;
}

}  // namespace groove::v1

#endif  // GROOVE_V1_REGULAR_FILE_H_
