// groove/client/volume_pool_client.h: a C++ client of groove-volumed's
// VolumePoolService (proto/groove/v1/volume_pool.proto) and of its gRPC
// health service, with an absl::StatusOr API, per-call deadlines and
// retries with exponential backoff and jitter where retrying is safe.
//
// Example:
//   groove::ClientOptions options;
//   options.address = "127.0.0.1:50051";
//   auto client = groove::VolumePoolClient::Create(options);
//   if (!client.ok()) return client.status();
//   groove::v1::AddVolumeRequest add;
//   add.set_pool("default");
//   add.set_count(2);
//   groove::CallOptions call;
//   call.generate_request_id = true;  // a repeat learns the first's result,
//                                     // so the client repeats a cut-off add
//   absl::StatusOr<groove::v1::AddVolumeResponse> added =
//       (*client)->AddVolume(add, call);
//   if (groove::OutcomeUnknown(added.status())) {
//     // Every attempt's answer was lost (the server down for the whole
//     // deadline, say): the volumes may have been added. Repeat with the
//     // id the message ends with, or look.
//   }
//   if (!added.ok()) return added.status();  // e.g. NOT_FOUND: no such pool
//
// Which calls are retried, and why:
//   ListPools, Inspect, Health   read-only: retried on UNAVAILABLE and
//                                CANCELLED (this client never cancels, so a
//                                server stopping ended the call); Inspect
//                                also on ABORTED (with verify: another
//                                verify of the pool runs, or its users kept
//                                moving the stack through every walk).
//   AddVolume, RemoveVolume,     changes: retried when an attempt
//   ReclaimVolume
//                                changed nothing, so a retry never adds or
//                                removes twice. That is when it was never
//                                sent (no connection: before sending a
//                                change over a channel that is not READY,
//                                the client makes a Health call, and sends
//                                only once that gets an answer; the change
//                                itself then waits for the connection
//                                rather than failing fast), and when the
//                                server answered UNAVAILABLE with trailing
//                                metadata groove-not-applied: true
//                                (groove/v1/call_metadata.h: shutting down,
//                                a full add queue or request log).
//                                AddVolume also on ABORTED ("the same
//                                request_id is still in progress", which
//                                only a request_id can give).
//   AddVolume with a request_id  also when an attempt was cut off after it
//                                was sent (its outcome unknown, below),
//                                with the same id: the server answers a
//                                repeat with the first attempt's result
//                                (ABORTED while that still runs), also
//                                after it restarted or crashed (each pool
//                                journals its last 1,024 adds with ids:
//                                docs/SERVER.md §3, request_id), and makes
//                                the add if the first did not. So such an
//                                add is made at most once, and the caller
//                                need not write the repeat loop.
//   A change cut off after it was sent (an UNAVAILABLE without that
//   metadata, CANCELLED, DEADLINE_EXCEEDED, UNKNOWN) may have taken effect.
//   Without a request_id (every RemoveVolume and ReclaimVolume, an
//   AddVolume without one) it is not retried: a repeat could do it twice
//   (a repeated ReclaimVolume cannot: it fails with FAILED_PRECONDITION,
//   but that answer cannot tell the caller that the first one freed the
//   volume). OutcomeUnknown(status) says so. Look before repeating it (Inspect,
//   e.g. the volumes' info). A keyed AddVolume returns OutcomeUnknown only when
//   no attempt after the cut-off one learned the result: its attempts or its
//   deadline ran out (e.g. the server down for the whole deadline), or a later
//   attempt failed in a way that says nothing of the first. Repeating it later
//   with the same id is still safe.
// No call retries DEADLINE_EXCEEDED: the deadline covers every attempt.
//
// Retrying keyed adds is on by default, with no switch to turn it off: a
// retry can only do what the caller's own repeat with the id would (learn
// the first's result, or make the add that did not happen), and does it
// sooner, so more surely while the server still remembers the id (the
// pool's last 1,024 keyed adds and the server's last ~6,000,
// docs/SERVER.md §9). No caller was found that is better off with the
// cut-off add returned: one that wants to look rather than repeat sends
// no request_id (or gives max_attempts = 1).
//
// Errors: every method returns the server's gRPC status as an absl::Status
// with the same code and message (absl and gRPC codes share numbers), e.g.
// NOT_FOUND for an unknown pool, except that the client appends what it
// knows: "(METHOD: gave up after N attempts)", "(... no time left for
// another before the D deadline)", "(no connection: the request was not
// sent)", "(METHOD: its outcome is unknown: the request may have reached
// the server ...)" (after several attempts, e.g. "(METHOD: gave up after N
// attempts; its outcome is unknown: attempt 1 may have reached the
// server ...)": the message before it is the last attempt's),
// and for AddVolume with a request_id, "; request_id ID". UNAVAILABLE when
// the server cannot be reached within the retry budget; DEADLINE_EXCEEDED
// when the call's deadline passed, except that a read-only call whose
// last attempt runs into the deadline after earlier attempts were retried
// returns the last retried failure with "(METHOD: N attempts, the last
// cut off by the D deadline)": what the server answered (a draining
// server's UNAVAILABLE, say) says more than that time ran out. A change's
// DEADLINE_EXCEEDED is always returned: its outcome is unknown.
//
// Security (client_security.h): ClientOptions::security names the TLS
// files and the bearer token; every VolumePoolService call then carries
// `authorization: Bearer TOKEN`. A TLS handshake that fails (wrong CA,
// wrong name, no client certificate for a mutual-TLS server) is
// UNAVAILABLE, like an unreachable server: no connection was made (the
// message carries gRPC's reason, e.g. CERTIFICATE_VERIFY_FAILED). A
// missing or unknown token is UNAUTHENTICATED, a role too low
// PERMISSION_DENIED; neither is retried.

#ifndef GROOVE_CLIENT_VOLUME_POOL_CLIENT_H_
#define GROOVE_CLIENT_VOLUME_POOL_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "groove/client/client_security.h"
#include "groove/v1/volume_pool.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace groove {

// RetryEvent describes one failed attempt that is about to be retried:
// passed to ClientOptions::on_retry (logging, metrics, tests).
struct RetryEvent {
  std::string method;      // "ListPools", "AddVolume", "RemoveVolume",
                           // "ReclaimVolume", "Inspect", "Health"
  int attempt = 0;         // the attempt that failed: 1 for the first call
  // status: why it failed (UNAVAILABLE, CANCELLED, ABORTED, UNKNOWN). For
  // an AddVolume with a request_id cut off after it was sent,
  // OutcomeUnknown(status) is true and the message ends "(AddVolume:
  // attempt N's outcome is unknown: retried with the same request_id)";
  // a change that was never sent says "(no connection: the request was
  // not sent)", one the server refused carries its message.
  absl::Status status;
  absl::Duration backoff;  // how long the client waits before the next one
};

// ClientOptions configure a VolumePoolClient. Every field has a usable
// default; the defaults suit an operator's tool on the same host.
struct ClientOptions {
  // address is the server's gRPC address, "host:port" (any gRPC target
  // string works, e.g. "dns:///volumes.internal:50051" or
  // "unix:/run/groove.sock"). Must not be empty.
  std::string address = "127.0.0.1:50051";

  // security: TLS files and the bearer token (client_security.h), read
  // and checked by Create. The default is plaintext without a token.
  ClientSecurity security;

  // credentials, when not null, secure the channel instead of the TLS part
  // of `security` (which must then be empty: tls_ca_file, tls_cert_file,
  // tls_key_file and tls_server_name; else Create fails INVALID_ARGUMENT
  // "... not both"): for credentials built by
  // hand (e.g. grpc::experimental::TlsCredentials). The token of
  // `security` is still sent, to any address (whether these credentials
  // encrypt is the caller's to know). Null: built from `security`.
  std::shared_ptr<grpc::ChannelCredentials> credentials;

  // timeout is the default deadline of one call, all of its attempts and
  // backoffs included. Must be positive. CallOptions::timeout overrides it.
  absl::Duration timeout = absl::Seconds(10);

  // max_attempts bounds the attempts of a retryable call (1 = no retries).
  // Must be at least 1. CallOptions::max_attempts overrides it. With the
  // default backoffs below, 10 attempts wait 8.9-13.3 s between them, about
  // the default timeout: by default the deadline, or nearly, ends the
  // retries, so a call rides out a server restart of up to about 9 s.
  int max_attempts = 10;

  // Backoff before retry n (n = 1, 2, ...) is
  //   min(max_backoff, initial_backoff * backoff_multiplier^(n-1))
  // scaled by a random factor in [1 - jitter, 1 + jitter], so that clients
  // that failed together do not retry together. The channel's reconnect
  // backoff is set to the same bounds, so a restarted server is reconnected
  // to as fast as the client retries. REQUIRES: 0 < initial_backoff <=
  // max_backoff, backoff_multiplier >= 1, 0 <= jitter < 1.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  double backoff_multiplier = 2.0;
  double jitter = 0.2;

  // on_retry, when set, is called (on the calling thread) before each
  // backoff. It must be safe to call from every thread that uses the
  // client concurrently. It may call the client (it holds no lock). Its
  // time counts against the call's deadline: when the backoff no longer
  // fits after it, the call returns (the retry it announced is not made,
  // "no time left for another before the D deadline").
  std::function<void(const RetryEvent&)> on_retry;
};

// CallOptions override ClientOptions for one call.
struct CallOptions {
  std::optional<absl::Duration> timeout;  // all attempts; must be positive
  std::optional<int> max_attempts;        // at least 1
  // AddVolume only: when the request's request_id is empty, set it to a
  // fresh UUID v4 (NewRequestId), so that the server answers a repeat
  // (ABORTED while the first runs, then the first's result) instead of
  // adding again, and so that the client repeats an attempt cut off after
  // it was sent (see the top of this file). A failed call's message ends
  // with the id. Ignored by other methods.
  bool generate_request_id = false;
};

// OutcomeUnknown says whether `status`, as returned by AddVolume,
// RemoveVolume or ReclaimVolume, leaves open whether the call took effect: its
// request may have reached the server (it found a connection), then the
// connection broke, the server ended the call, or the deadline passed before
// the answer came (UNAVAILABLE without groove-not-applied, CANCELLED,
// DEADLINE_EXCEEDED, UNKNOWN). The server may have made the change. False
// for OK, for a call that was never sent, and for the server's own
// errors, which it answers having changed nothing. For a call of several
// attempts (a keyed AddVolume retried after one was cut off), true when
// any attempt's outcome was unknown and none succeeded, whatever the last
// one's code: that a later attempt changed nothing says nothing of the
// earlier one (e.g. the last found no connection, or a restarted server
// refused it before looking at the id). One exception it cannot
// see: gRPC's own INTERNAL for a protocol error after sending (rare) looks
// like the server's INTERNAL, and is not counted. Cost: O(payloads).
bool OutcomeUnknown(const absl::Status& status);

// NewRequestId returns a random (version 4) UUID in its 36-character
// lowercase text form, e.g. "5f0c6a3e-8d1b-4f6e-9a27-1c3b5d7e9f10".
// Each id's 122 random bits come from the kernel (getrandom), so that a
// process forked after making ids makes other ids than its parent.
// Thread safety: safe to call concurrently, and in a forked child. Cost:
// O(1), one system call.
std::string NewRequestId();

// VolumePoolClient calls one groove-volumed server.
//
// Thread safety: every method is safe to call concurrently from many
// threads on one client (gRPC channels and stubs are thread-safe; the
// client's state is immutable after Create). Each call blocks its caller
// until it finishes, retries included, for at most its deadline; there is
// no way to cancel one early, so a caller that must stop sooner gives it a
// shorter CallOptions::timeout. REQUIRES: no call in flight when the
// client is destroyed (join the threads that call it first).
class VolumePoolClient {
 public:
  // Create builds a client over a new channel to options.address. It does
  // not connect: the first call does (and fails with UNAVAILABLE, after its
  // retries, if the server cannot be reached).
  // Errors: INVALID_ARGUMENT when an option is out of range (empty
  // address, timeout <= 0, max_attempts < 1, bad backoff or jitter), and
  // LoadClientSecurity's errors (a missing or bad TLS or token file, a
  // certificate without its key, TLS files together with `credentials`, a
  // plaintext token to a non-loopback address).
  static absl::StatusOr<std::unique_ptr<VolumePoolClient>> Create(
      ClientOptions options);

  // CreateWithChannel builds a client over `channel` (tests, in-process
  // channels, channels shared with other stubs). options.address,
  // options.credentials and the TLS part of options.security are ignored
  // (the channel is already secured); the token is sent.
  // REQUIRES: channel is not null. Errors: as Create.
  static absl::StatusOr<std::unique_ptr<VolumePoolClient>> CreateWithChannel(
      std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  VolumePoolClient(const VolumePoolClient&) = delete;
  VolumePoolClient& operator=(const VolumePoolClient&) = delete;

  // ListPools returns every pool's summary. Retried on UNAVAILABLE and
  // CANCELLED.
  absl::StatusOr<v1::ListPoolsResponse> ListPools(
      const CallOptions& call = {}) const;

  // AddVolume grows a pool (see the proto for every error code). Retried
  // when an attempt changed nothing (see the top of this file), and on
  // ABORTED; with a request_id (the request's, or generate_request_id's)
  // also when an attempt was cut off after it was sent, with the same id,
  // so that the volumes are added once: OK then returns the volumes
  // whichever attempt made them. A call that still fails with
  // OutcomeUnknown (its attempts or deadline ran out with none answered;
  // without an id, the first cut off) may have added the volumes: repeat
  // it with the same request_id (its message ends with the id; also after
  // the server restarted), or Inspect the pool. Adding hugepage-backed
  // volumes takes seconds per GiB: give the call a deadline that fits
  // (groovectl gives 8 s per GiB on top of its --timeout), since an
  // attempt whose deadline passes is not retried.
  absl::StatusOr<v1::AddVolumeResponse> AddVolume(
      v1::AddVolumeRequest request, const CallOptions& call = {}) const;

  // RemoveVolume shrinks a pool by up to request.count() empty volumes.
  // It is not idempotent (a repeat removes more), so it is retried only
  // when an attempt changed nothing (see the top of this file); a status
  // with OutcomeUnknown may have removed volumes: Inspect before repeating.
  absl::StatusOr<v1::RemoveVolumeResponse> RemoveVolume(
      const v1::RemoveVolumeRequest& request,
      const CallOptions& call = {}) const;

  // ReclaimVolume frees the quarantined volume at request.index() of
  // request.pool() (see the proto: the caller vouches that no data-plane
  // process still uses it). Retried only when an attempt changed nothing
  // (never sent, or UNAVAILABLE with groove-not-applied), like
  // RemoveVolume. A status with OutcomeUnknown may have reclaimed the
  // volume: Inspect the pool (a reclaimed index is no longer listed), or
  // simply repeat the call, which is harmless: a reclaim of an index that
  // is free (or holds a new volume) fails with FAILED_PRECONDITION and
  // changes nothing.
  absl::StatusOr<v1::ReclaimVolumeResponse> ReclaimVolume(
      const v1::ReclaimVolumeRequest& request,
      const CallOptions& call = {}) const;

  // Inspect returns one page of a pool's summary and volumes. Retried on
  // UNAVAILABLE and CANCELLED, and on ABORTED (a verify that could not run
  // now).
  absl::StatusOr<v1::InspectResponse> Inspect(
      const v1::InspectRequest& request, const CallOptions& call = {}) const;

  // Health returns the serving status grpc.health.v1.Health/Check reports
  // for `service` ("" for the whole server, or
  // "groove.v1.VolumePoolService"). Retried on UNAVAILABLE and CANCELLED.
  // Errors: NOT_FOUND for a service the server does not know; as above.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "", const CallOptions& call = {}) const;

  // channel is the client's channel (e.g. to read its connectivity state).
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }

 private:
  VolumePoolClient(std::shared_ptr<grpc::Channel> channel,
                   ClientOptions options, std::string authorization);

  // CallRules state one RPC's retry and token policy (the top of this file
  // has the rules): defined in the .cc, one per RPC beside its call.
  struct CallRules;

  // Call runs `attempt` (one RPC with the given context) until it succeeds,
  // fails in a way `rules` do not repeat, runs out of attempts or of time.
  absl::Status Call(
      const CallRules& rules, const CallOptions& call,
      const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const;

  // CallFor runs Call with attempts of `rpc`, each into a cleared
  // response, and returns the last attempt's response or the status.
  // Defined (and instantiated) in the .cc.
  template <typename Response>
  absl::StatusOr<Response> CallFor(
      const CallRules& rules, const CallOptions& call,
      const std::function<grpc::Status(grpc::ClientContext*, Response*)>& rpc)
      const;

  // Probe makes one fail-fast Health call, to learn whether the channel
  // can connect before a change is sent. OK when the server answered
  // (whatever it answered); else UNAVAILABLE or DEADLINE_EXCEEDED, which
  // say that nothing was sent.
  absl::Status Probe(absl::Time deadline) const;

  // Immutable after construction: that is what makes concurrent calls safe.
  ClientOptions options_;
  // authorization_: "Bearer TOKEN" added to every VolumePoolService call,
  // or "" for none.
  std::string authorization_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VolumePoolService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

}  // namespace groove

#endif  // GROOVE_CLIENT_VOLUME_POOL_CLIENT_H_
