// groove/v1/token_file.h: the rules of files holding bearer tokens, one
// for both ends: groove-volumed's `--auth-tokens` file (every client's
// token, admins' included) and a client's `--token-file` (groove::client,
// groovectl): the mode such a file must have, and the byte no token may
// start with. groove-volumed applies the mode rule to its TLS private key
// (`--tls-key`) too: a secret of the same weight. Hand-written, like
// call_metadata.h: the server and the client library share no other
// library. clients/python/groove_example.py mirrors them, naming this
// file.
//
// Example:
//   struct stat st;
//   fstat(fd, &st);
//   if (std::string refusal = groove::v1::SecretFileModeRefusal(st, path);
//       !refusal.empty()) { /* refuse: "--token-file PATH: " + refusal */ }

#ifndef GROOVE_V1_TOKEN_FILE_H_
#define GROOVE_V1_TOKEN_FILE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdio>
#include <string>
#include <string_view>

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

// SecretFileModeRefusal is the message that refuses a secret file (a
// token file, a TLS private key) at `path` whose status as opened is
// `opened`, by TokenFileModeProblem: "PROBLEM (mode 0644); chmod 600
// PATH", which the caller prefixes with the option that named the file;
// "" when its mode passes. Thread safety: pure. Cost: O(path).
inline std::string SecretFileModeRefusal(const struct stat& opened,
                                         const std::string& path) {
  const char* problem = TokenFileModeProblem(opened.st_mode, opened.st_uid);
  if (*problem == '\0') return "";
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o",
                static_cast<unsigned>(opened.st_mode & 07777));
  return std::string(problem) + " (mode " + mode + "); chmod 600 " + path;
}

// kTokenFileComment starts a comment line of the server's token file: a
// line whose first non-blank byte it is is never read as `TOKEN ROLE`.
// So a token that starts with it can never be accepted: its line in the
// server's file is a comment, and its client gets UNAUTHENTICATED with no
// word of why. The clients refuse such a token (TokenStartProblem); the
// server warns of a comment that reads as a `TOKEN ROLE` line
// (TokenTable::Parse).
inline constexpr char kTokenFileComment = '#';

// TokenStartProblem returns why `token` can never be accepted for how it
// starts, or "" when it may be: a token that starts with
// kTokenFileComment. The message never holds the token.
// Thread safety: pure. Cost: O(1).
inline const char* TokenStartProblem(std::string_view token) {
  if (!token.empty() && token.front() == kTokenFileComment) {
    return "the token starts with '#', which makes its line in the "
           "server's token file a comment: no server can accept it; "
           "generate another (e.g. openssl rand -hex 32)";
  }
  return "";
}

}  // namespace groove::v1

#endif  // GROOVE_V1_TOKEN_FILE_H_
