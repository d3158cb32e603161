// groove/v1/token_file.h: the mode a file holding bearer tokens must have,
// one rule for both ends: groove-volumed's `--auth-tokens` file (every
// client's token, admins' included) and a client's `--token-file`
// (groove::client, groovectl). groove-volumed applies it to its TLS
// private key (`--tls-key`) too: a secret of the same weight. Hand-written,
// like call_metadata.h: the server and the client library share no other
// library.
//
// Example:
//   struct stat st;
//   fstat(fd, &st);
//   if (const char* problem = groove::v1::TokenFileModeProblem(st.st_mode,
//                                                              st.st_uid);
//       *problem != '\0') { /* refuse: "PATH: <problem> (mode 0644)" */ }

#ifndef GROOVE_V1_TOKEN_FILE_H_
#define GROOVE_V1_TOKEN_FILE_H_

#include <sys/types.h>

namespace groove::v1 {

// TokenFileModeProblem returns why a token file of `mode` owned by `uid`
// must not be used, or "" when it may: others get nothing, the group at
// most read, and group read only on a root-owned file. A readable token is
// a leaked one, as ssh insists for private keys. Why group read at all:
// Kubernetes mounts a Secret for a non-root container only through the
// pod's fsGroup, as root:fsGroup 0440 (kubelet adds group read to
// defaultMode), so refusing every group bit made the documented recipe
// unusable. Why root-owned only (PostgreSQL's rule for its key files): a
// file made root-owned with a chosen group was shared on purpose (the
// kubelet, config management); a user's own 0640 file is a loose umask
// that shares the token with a whole group. Thread safety: pure. Cost:
// O(1).
inline const char* TokenFileModeProblem(mode_t mode, uid_t uid) {
  if ((mode & 007) != 0) return "is accessible to others";
  if ((mode & 070) == 0) return "";
  if ((mode & 030) != 0) return "is writable or executable by its group";
  if (uid != 0) {
    return "is readable by its group and not owned by root (group read is "
           "accepted only on a root-owned file, such as a Kubernetes Secret "
           "under fsGroup)";
  }
  return "";
}

}  // namespace groove::v1

#endif  // GROOVE_V1_TOKEN_FILE_H_
