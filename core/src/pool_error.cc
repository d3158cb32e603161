#include "groove/pool_error.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace groove {

absl::string_view PoolErrorName(PoolError error) {
  switch (error) {
    case PoolError::kSuccess:
      return "SUCCESS";
    case PoolError::kInvalid:
      return "INVALID";
    case PoolError::kAgain:
      return "AGAIN";
    case PoolError::kCorrupt:
      return "CORRUPT";
    case PoolError::kEmpty:
      return "EMPTY";
    case PoolError::kFull:
      return "FULL";
    case PoolError::kKey:
      return "KEY";
  }
  return "UNKNOWN";
}

absl::StatusCode PoolErrorCode(PoolError error) {
  switch (error) {
    case PoolError::kSuccess:
      return absl::StatusCode::kOk;
    case PoolError::kInvalid:
      return absl::StatusCode::kInvalidArgument;
    case PoolError::kAgain:
      return absl::StatusCode::kUnavailable;
    case PoolError::kCorrupt:
      return absl::StatusCode::kDataLoss;
    case PoolError::kEmpty:
      return absl::StatusCode::kFailedPrecondition;
    case PoolError::kFull:
      return absl::StatusCode::kResourceExhausted;
    case PoolError::kKey:
      return absl::StatusCode::kAlreadyExists;
  }
  return absl::StatusCode::kUnknown;
}

namespace {

// Remedy returns what a person should do about `error`.
absl::string_view Remedy(PoolError error) {
  switch (error) {
    case PoolError::kSuccess:
      return "";
    case PoolError::kInvalid:
      return "the arguments are outside what the pool accepts (index range "
             "beyond max_volumes, bad footprint or a volume address that is "
             "not one of this pool's); nothing was changed";
    case PoolError::kAgain:
      return "the pool is locked for maintenance (verify or recovery); "
             "retry shortly; nothing was changed";
    case PoolError::kCorrupt:
      return "the pool's shared state is inconsistent; Inspect with verify "
             "says what is wrong; the owner's next start recovers the pool "
             "from its data directory, or quarantines it if its stack or "
             "slot table is corrupt (docs/SERVER.md section 4)";
    case PoolError::kEmpty:
      return "the pool has no empty volume; add volumes first or release "
             "volumes in use";
    case PoolError::kFull:
      return "the pool holds max_volumes volumes; remove volumes or raise "
             "max_volumes";
    case PoolError::kKey:
      return "an index in the range already holds a volume; pick unused "
             "indices or remove that volume first";
  }
  return "unknown pool error";
}

}  // namespace

absl::Status PoolErrorToStatus(PoolError error, absl::string_view what) {
  if (error == PoolError::kSuccess) return absl::OkStatus();
  return absl::Status(PoolErrorCode(error),
                      absl::StrCat(what, ": ", PoolErrorName(error), ": ",
                                   Remedy(error)));
}

absl::Status ErrnoError(absl::string_view what) {
  const int err = errno;
  std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EACCES || err == EPERM || err == EROFS) {
    return absl::PermissionDeniedError(message);
  }
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == ENOSPC || err == ENOMEM) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace groove
