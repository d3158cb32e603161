// clients/src/read_whole_file.h: ReadWholeFile, the clients' errors over
// v1::ReadRegularFile (shared with the server), for the files a person
// names: the TLS PEM files and the token file
// (client_security.cc) and groovectl's `add --info @FILE`. Internal to
// groove::client and groovectl (not installed).

#ifndef GROOVE_CLIENTS_SRC_READ_WHOLE_FILE_H_
#define GROOVE_CLIENTS_SRC_READ_WHOLE_FILE_H_

#include <sys/stat.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace groove {

// ReadWholeFile returns the contents of `path` (an empty file gives "").
// `path` must name a regular file, after symlinks: a directory, FIFO or
// device is refused, judged on the file opened (without blocking) and
// before any read. Why: a directory opens fine through std::ifstream and
// its read fails on the stream read into, so a caller checking the
// ifstream took it for an empty file; a FIFO can block the reader forever.
// A read error is an error, never contents cut short.
// `what` names the file in the message, e.g. "--info file /x/info.txt" or
// "tls_ca_file (--tls-ca) /x/ca.pem".
// `opened`, when not null, receives the file's status as opened (on
// success), for a caller that judges the file itself (its mode) without a
// second lookup of the path that could find another file.
// Errors: INVALID_ARGUMENT "WHAT: cannot read: <strerror>" (missing,
// unreadable) or "WHAT: is not a regular file".
// Thread safety: reads the file only; safe concurrently.
// Cost: the file's size.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view what,
                                          struct stat* opened = nullptr);

}  // namespace groove

#endif  // GROOVE_CLIENTS_SRC_READ_WHOLE_FILE_H_
