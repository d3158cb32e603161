// groove/server/grpc_status.h: the one conversion from the core's
// absl::Status to the grpc::Status an RPC ends with.
//
// absl::StatusCode and grpc::StatusCode share their numbers (both are the
// canonical codes of google.rpc.Code), so the conversion keeps the code and
// the message as they are: the core already picks the most specific code
// and writes a message a person can act on.
//
// Example:
//   absl::StatusOr<std::vector<uint64_t>> added = pool.AddVolumes(...);
//   if (!added.ok()) reactor->Finish(ToGrpcStatus(added.status()));

#ifndef GROOVE_SERVER_GRPC_STATUS_H_
#define GROOVE_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace groove::server {

// kStatusCodeCount is the number of canonical codes: OK (0) to
// UNAUTHENTICATED (16). Metrics build one series per code.
inline constexpr int kStatusCodeCount = 17;

// ToGrpcStatus returns a grpc::Status with `status`'s code and message.
// Payloads are dropped (the API does not use error details). Cost: copies
// the message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// StatusCodeName returns the canonical upper-case name of a code, e.g.
// "INVALID_ARGUMENT", as used in metric labels and logs; "UNKNOWN" for a
// number outside [0, kStatusCodeCount).
std::string StatusCodeName(absl::StatusCode code);

}  // namespace groove::server

#endif  // GROOVE_SERVER_GRPC_STATUS_H_
