// groove/pool_error.h: the error values of the volume pool.
//
// The pool's hot-path operations (Acquire, Release, Remove) return a
// `PoolError`, a plain enum in the family of Firedancer's pool errors: it
// costs nothing to return and never allocates. Callers that need an
// `absl::Status` (the server, tools, tests) convert it once with
// `PoolErrorToStatus()`, which picks the most specific canonical code and a
// message a person can act on. Maintenance operations that have detail to
// report (Join, Verify) return `absl::Status` directly.
//
// Example:
//
//   groove::VolumeHeader* v = nullptr;
//   groove::PoolError err = pool.Acquire(&v);
//   if (err != groove::PoolError::kSuccess) {
//     return groove::PoolErrorToStatus(err, "acquire a volume");
//   }

#ifndef GROOVE_POOL_ERROR_H_
#define GROOVE_POOL_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace groove {

// PoolError numbers are those of the seed's family, so logs and shared
// tooling agree on them.
enum class PoolError : int {
  kSuccess = 0,
  // kInvalid: bad arguments (range outside the pool, bad footprint,
  // misaligned or foreign volume address). Nothing was changed.
  kInvalid = -1,
  // kAgain: a non-blocking call found the pool locked for maintenance. Try
  // again later; nothing was changed.
  kAgain = -2,
  // kCorrupt: the pool's shared state is inconsistent (an index out of
  // range, a cycle, a header whose magic/idx/info_sz is wrong).
  kCorrupt = -3,
  // kEmpty: no empty volume was on the pool at some point during the call.
  kEmpty = -4,
  // kFull: the pool cannot take more volumes.
  kFull = -5,
  // kKey: an index already holds a volume (add over a live volume).
  kKey = -6,
};

// PoolErrorName returns a short stable name ("INVALID", "AGAIN", ...), for
// logs and metric labels.
absl::string_view PoolErrorName(PoolError error);

// PoolErrorCode maps a PoolError to the most specific canonical code:
// kSuccess -> OK, kInvalid -> INVALID_ARGUMENT, kAgain -> UNAVAILABLE,
// kCorrupt -> DATA_LOSS, kEmpty -> FAILED_PRECONDITION, kFull ->
// RESOURCE_EXHAUSTED, kKey -> ALREADY_EXISTS.
absl::StatusCode PoolErrorCode(PoolError error);

// PoolErrorToStatus returns OkStatus() for kSuccess, else a status with
// PoolErrorCode(error) whose message is "<what>: <explanation and remedy>".
// `what` names the operation that failed, e.g. "remove a volume from pool
// 'main'". Allocates only on error.
absl::Status PoolErrorToStatus(PoolError error, absl::string_view what);

// ErrnoError returns the status of a failed system call from errno: "<what>:
// <strerror>", PERMISSION_DENIED for EACCES, EPERM and EROFS, NOT_FOUND for
// ENOENT, RESOURCE_EXHAUSTED for ENOSPC and ENOMEM, else INTERNAL. `what`
// names the call and its object, e.g. "open /dev/shm/groove-volumed/a.pool".
// REQUIRES: errno is the failed call's (read first thing).
absl::Status ErrnoError(absl::string_view what);

}  // namespace groove

#endif  // GROOVE_POOL_ERROR_H_
