// groove/v1/call_metadata.h: the part of groove.v1.VolumePoolService's
// protocol that travels in gRPC metadata rather than in its messages
// (proto/groove/v1/volume_pool.proto says where each is used). The server
// and the client library take the keys from here.

#ifndef GROOVE_V1_CALL_METADATA_H_
#define GROOVE_V1_CALL_METADATA_H_

namespace groove::v1 {

// Trailing metadata of an UNAVAILABLE that groove-volumed answered itself
// (shutting down, an add queue full, too many request ids in progress):
// the call changed nothing, so repeating it is safe, whatever its method.
// An UNAVAILABLE without it comes from the transport (a connection cut
// after the request was sent), and a mutating call may then have taken
// effect. Key and value are lower case, as gRPC requires.
inline constexpr char kNotAppliedKey[] = "groove-not-applied";
inline constexpr char kNotAppliedValue[] = "true";

}  // namespace groove::v1

#endif  // GROOVE_V1_CALL_METADATA_H_
