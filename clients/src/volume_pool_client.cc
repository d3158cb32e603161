// groove/client/volume_pool_client.cc: see the header.

#include "groove/client/volume_pool_client.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "groove/v1/call_metadata.h"

namespace groove {
namespace {

// Generator returns this thread's random generator (no lock: one per
// thread), seeded once from std::random_device: the backoffs' jitter.
// Not for request ids (NewRequestId): fork copies it.
std::mt19937_64& Generator() {
  thread_local std::mt19937_64 generator = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return generator;
}

absl::Status ToAbslStatus(const grpc::Status& status) {
  // absl::StatusCode and grpc::StatusCode share their numbers.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

// WithSuffix returns `status` with `suffix` appended to its message, its
// code and payloads kept (the client's notes on a status: attempts made,
// whether the request was sent, the add's request_id).
absl::Status WithSuffix(const absl::Status& status, absl::string_view suffix) {
  absl::Status noted(status.code(), absl::StrCat(status.message(), suffix));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    noted.SetPayload(url, payload);
  });
  return noted;
}

absl::Status ValidateOptions(const ClientOptions& o) {
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "timeout must be positive, got ", absl::FormatDuration(o.timeout)));
  }
  if (o.max_attempts < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_attempts must be at least 1, got ", o.max_attempts));
  }
  if (o.initial_backoff <= absl::ZeroDuration() ||
      o.max_backoff < o.initial_backoff) {
    return absl::InvalidArgumentError(
        absl::StrCat("need 0 < initial_backoff <= max_backoff, got ",
                     absl::FormatDuration(o.initial_backoff), " and ",
                     absl::FormatDuration(o.max_backoff)));
  }
  if (!(o.backoff_multiplier >= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backoff_multiplier must be at least 1, got ", o.backoff_multiplier));
  }
  if (!(o.jitter >= 0.0 && o.jitter < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("jitter must be in [0, 1), got ", o.jitter));
  }
  return absl::OkStatus();
}

// The payload OutcomeUnknown looks for (its content is empty).
constexpr char kOutcomeUnknownPayload[] =
    "type.googleapis.com/groove.client.OutcomeUnknown";

// MarkOutcomeUnknown returns `status` with `note` appended, marked so that
// OutcomeUnknown says true.
absl::Status MarkOutcomeUnknown(const absl::Status& status,
                                absl::string_view note) {
  absl::Status unknown = WithSuffix(status, note);
  unknown.SetPayload(kOutcomeUnknownPayload, absl::Cord());
  return unknown;
}

}  // namespace

bool OutcomeUnknown(const absl::Status& status) {
  return status.GetPayload(kOutcomeUnknownPayload).has_value();
}

std::string NewRequestId() {
  // From the kernel, each time: a generator in the process (Generator's)
  // is copied by fork, and a parent and the workers it forked would make
  // the same ids, each add answered as a repeat of another.
  uint64_t words[2] = {0, 0};
  size_t got = 0;
  while (got < sizeof(words)) {
    const ssize_t n =
        getrandom(reinterpret_cast<char*>(words) + got, sizeof(words) - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      // No getrandom (a kernel before 3.17): the OS's generator through
      // libstdc++, a fresh instance (no state a fork could copy).
      std::random_device device;
      for (uint64_t& w : words) w = (uint64_t{device()} << 32) | device();
      break;
    }
  }
  uint64_t hi = words[0];
  uint64_t lo = words[1];
  hi = (hi & ~uint64_t{0xf000}) | 0x4000;                    // version 4
  lo = (lo & ~(uint64_t{0xc} << 60)) | (uint64_t{8} << 60);  // variant 10
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32,
                         (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48,
                         lo & 0xffffffffffffULL);
}

absl::StatusOr<std::unique_ptr<VolumePoolClient>> VolumePoolClient::Create(
    ClientOptions options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("address must not be empty");
  }
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  // Any TLS option, not only the CA: LoadClientSecurity would refuse a
  // server name or client certificate alone as wanting tls_ca_file, which
  // this would then refuse.
  const ClientSecurity& tls = options.security;
  if (options.credentials != nullptr &&
      (!tls.tls_ca_file.empty() || !tls.tls_cert_file.empty() ||
       !tls.tls_key_file.empty() || !tls.tls_server_name.empty())) {
    return absl::InvalidArgumentError(
        "give TLS either as credentials or as security's TLS options "
        "(tls_ca_file, tls_cert_file, tls_key_file, tls_server_name), not "
        "both; for a server name with hand-built credentials, set "
        "GRPC_SSL_TARGET_NAME_OVERRIDE_ARG on a channel of your own "
        "(CreateWithChannel)");
  }
  ClientSecurity checked = options.security;
  // Hand-built credentials may well be TLS: the plaintext-token rule,
  // which cannot tell, is the caller's to apply.
  if (options.credentials != nullptr) checked.allow_plaintext_token = true;
  absl::StatusOr<LoadedSecurity> security =
      LoadClientSecurity(checked, options.address);
  if (!security.ok()) return security.status();
  grpc::ChannelArguments args;
  if (!security->tls_server_name.empty()) {
    args.SetSslTargetNameOverride(security->tls_server_name);
  }
  // Reconnect at the pace of the client's own retries: gRPC's default
  // reconnect backoff starts at 1 s and grows to 120 s, so a client whose
  // server restarted would keep failing fast for up to two minutes.
  args.SetInt(
      GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.initial_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.max_backoff)));
  // A subchannel of its own: the reconnect settings above then apply even
  // when another channel of the process talks to the same address.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials ? options.credentials : security->credentials;
  auto channel = grpc::CreateCustomChannel(options.address, credentials, args);
  return std::unique_ptr<VolumePoolClient>(
      new VolumePoolClient(std::move(channel), std::move(options),
                           std::move(security->authorization)));
}

absl::StatusOr<std::unique_ptr<VolumePoolClient>>
VolumePoolClient::CreateWithChannel(std::shared_ptr<grpc::Channel> channel,
                                    ClientOptions options) {
  if (channel == nullptr) {
    return absl::InvalidArgumentError("channel must not be null");
  }
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  // Only the token matters here: the channel is secured already (so the
  // plaintext-token rule, which needs to know, does not apply).
  ClientSecurity token_only;
  token_only.token = options.security.token;
  token_only.token_file = options.security.token_file;
  token_only.allow_plaintext_token = true;
  absl::StatusOr<LoadedSecurity> security =
      LoadClientSecurity(token_only, options.address);
  if (!security.ok()) return security.status();
  return std::unique_ptr<VolumePoolClient>(
      new VolumePoolClient(std::move(channel), std::move(options),
                           std::move(security->authorization)));
}

VolumePoolClient::VolumePoolClient(std::shared_ptr<grpc::Channel> channel,
                                   ClientOptions options,
                                   std::string authorization)
    : options_(std::move(options)),
      authorization_(std::move(authorization)),
      channel_(std::move(channel)),
      stub_(v1::VolumePoolService::NewStub(channel_)),
      health_stub_(grpc::health::v1::Health::NewStub(channel_)) {}

absl::Status VolumePoolClient::Probe(absl::Time deadline) const {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = health_stub_->Check(
      &context, grpc::health::v1::HealthCheckRequest(), &response);
  // Any answer means a connection; only these two mean none was made.
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return WithSuffix(ToAbslStatus(status),
                      " (no connection: the request was not sent)");
  }
  if (absl::Now() >= deadline) {
    // Answered at the last instant: sending now could only expire.
    return absl::DeadlineExceededError(
        "the deadline passed while connecting (the request was not sent)");
  }
  return absl::OkStatus();
}

// CallRules: how Call treats one RPC. Every field is set, by name, where
// the public method defines its rules beside its call, so that each RPC's
// retry and token policy reads in one place (the top of the header gives
// them all).
struct VolumePoolClient::CallRules {
  // method: the RPC's name, for the client's notes on a status and for
  // RetryEvent::method.
  absl::string_view method;
  // changes_pool: the RPC adds or removes volumes, so a repeat could do it
  // twice. True: an attempt is retried when it changed nothing. Over a
  // channel that is not READY a fail-fast Health probe goes first, and the
  // change is sent only once that is answered (a probe's UNAVAILABLE, which
  // sent nothing, is retried); the change then waits for the connection
  // (wait_for_ready) instead of failing fast; of its answers only an
  // UNAVAILABLE marked groove-not-applied is retried, and an unmarked
  // UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED or UNKNOWN is returned as
  // OutcomeUnknown (unless retry_unknown_outcome). False (read-only): sent
  // at once, retried on any UNAVAILABLE and on CANCELLED.
  bool changes_pool;
  // retry_aborted: ABORTED is retried too (whatever changes_pool says).
  bool retry_aborted;
  // retry_unknown_outcome (only with changes_pool): an attempt whose
  // outcome is unknown is retried too, rather than returned. Only for a
  // change the server deduplicates, whose repeat it answers with the first
  // attempt's result instead of making it again: an AddVolume with a
  // request_id. DEADLINE_EXCEEDED is not retried: no time is left.
  bool retry_unknown_outcome;
  // carries_token: each attempt carries `authorization: Bearer TOKEN` when
  // the client has a token.
  bool carries_token;
};

absl::Status VolumePoolClient::Call(
    const CallRules& rules, const CallOptions& call,
    const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const {
  const absl::string_view method = rules.method;
  const absl::Duration timeout = call.timeout.value_or(options_.timeout);
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(method, ": timeout must be positive, got ",
                     absl::FormatDuration(timeout)));
  }
  const int max_attempts = call.max_attempts.value_or(options_.max_attempts);
  if (max_attempts < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        method, ": max_attempts must be at least 1, got ", max_attempts));
  }
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = options_.initial_backoff;
  // Attempts whose outcome is unknown. Once one is, so is the call's until
  // an attempt succeeds: a later attempt's failure says only that that
  // attempt changed nothing (and an error answered before the server looks
  // at the request_id, e.g. after a restart with another configuration,
  // says nothing of the first).
  std::vector<int> unknown_attempts;  // their numbers, 1 for the first
  // A read-only call's last retried failure (OK before any): what the call
  // reports when a later attempt only runs into the deadline, whose bare
  // DEADLINE_EXCEEDED would hide that the server answered (a draining
  // server's UNAVAILABLE, say).
  absl::Status last_retried;
  // Failed returns the call's failure `status` after n attempts, with the
  // client's notes: `progress` ("gave up after N attempts", ...: may be
  // empty) and whether the outcome is unknown (marked OutcomeUnknown).
  auto failed = [&](const absl::Status& status, int n,
                    const std::string& progress) {
    if (unknown_attempts.empty()) {
      if (progress.empty()) return status;
      return WithSuffix(status,
                        absl::StrCat(" (", method, ": ", progress, ")"));
    }
    std::string note = progress;
    if (note.empty() && n > 1) note = absl::StrCat(n, " attempts");
    if (!note.empty()) note += "; ";
    // "attempt 1", "attempts 1, 3 and 4": the last attempt's own message
    // may say something else (e.g. that it found no connection).
    std::string which = "the request";
    if (n > 1) {
      which = unknown_attempts.size() == 1 ? "attempt " : "attempts ";
      for (size_t i = 0; i < unknown_attempts.size(); ++i) {
        if (i > 0) which += i + 1 == unknown_attempts.size() ? " and " : ", ";
        absl::StrAppend(&which, unknown_attempts[i]);
      }
    }
    return MarkOutcomeUnknown(
        status, absl::StrCat(" (", method, ": ", note,
                             "its outcome is unknown: ", which,
                             " may have reached the server, which may have "
                             "made the change)"));
  };
  for (int n = 1;; ++n) {
    absl::Status status;
    bool retryable = false;
    bool attempt_unknown = false;  // this attempt's outcome is unknown
    if (rules.changes_pool &&
        channel_->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
      // Send a change only over a connection: without one, gRPC fails a
      // call fast, but its UNAVAILABLE would look like one cut off after
      // sending. The probe's failure means nothing was sent.
      status = Probe(deadline);
      retryable = absl::IsUnavailable(status);
    }
    if (status.ok()) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(deadline));
      // A change waits for the connection instead of failing fast, so
      // that its every UNAVAILABLE comes from a sent request or from the
      // server.
      if (rules.changes_pool) context.set_wait_for_ready(true);
      if (rules.carries_token && !authorization_.empty()) {
        context.AddMetadata("authorization", authorization_);
      }
      status = ToAbslStatus(attempt(&context));
      if (!rules.changes_pool) {
        // CANCELLED: this client never cancels, so the server ended the
        // call (one racing its shutdown).
        retryable = absl::IsUnavailable(status) || absl::IsCancelled(status) ||
                    (rules.retry_aborted && absl::IsAborted(status));
      } else {
        const auto& trailers = context.GetServerTrailingMetadata();
        const auto marker = trailers.find(v1::kNotAppliedKey);
        const bool not_applied = absl::IsUnavailable(status) &&
                                 marker != trailers.end() &&
                                 marker->second == v1::kNotAppliedValue;
        retryable =
            not_applied || (rules.retry_aborted && absl::IsAborted(status));
        attempt_unknown =
            !not_applied &&
            (absl::IsUnavailable(status) || absl::IsCancelled(status) ||
             absl::IsDeadlineExceeded(status) || absl::IsUnknown(status));
        if (attempt_unknown) {
          unknown_attempts.push_back(n);
          // The retry carries the same request_id: the server answers it
          // with this attempt's result if it made the change, and makes
          // it if not (rolled back, or never started).
          retryable =
              rules.retry_unknown_outcome && !absl::IsDeadlineExceeded(status);
        }
      }
    }
    if (status.ok()) return status;
    if (!rules.changes_pool && absl::IsDeadlineExceeded(status) &&
        !last_retried.ok()) {
      return failed(last_retried, n,
                    absl::StrCat(n, " attempts, the last cut off by the ",
                                 absl::FormatDuration(timeout), " deadline"));
    }
    if (!retryable || n >= max_attempts) {
      return failed(status, n,
                    retryable && n > 1
                        ? absl::StrCat("gave up after ", n, " attempts")
                        : std::string());
    }
    std::uniform_real_distribution<double> factor(1.0 - options_.jitter,
                                                  1.0 + options_.jitter);
    const absl::Duration wait = backoff * factor(Generator());
    // The next attempt could not start before the deadline: report the
    // failure we have rather than a bare DEADLINE_EXCEEDED.
    const auto no_time_left = [&] {
      return failed(status, n,
                    absl::StrCat(n,
                                 " attempts, no time left for another before "
                                 "the ",
                                 absl::FormatDuration(timeout), " deadline"));
    };
    if (absl::Now() + wait >= deadline) return no_time_left();
    if (options_.on_retry) {
      // The event's status says why the attempt is retried: an attempt
      // whose outcome is unknown carries OutcomeUnknown.
      options_.on_retry(RetryEvent{
          std::string(method), n,
          attempt_unknown
              ? MarkOutcomeUnknown(
                    status, absl::StrCat(" (", method, ": attempt ", n,
                                         "'s outcome is unknown: retried "
                                         "with the same request_id)"))
              : status,
          wait});
    }
    if (!rules.changes_pool) last_retried = status;
    // Again: on_retry's time is the call's too (a slow callback must not
    // carry the call past its deadline, into an attempt that can only
    // expire).
    if (options_.on_retry && absl::Now() + wait >= deadline) {
      return no_time_left();
    }
    absl::SleepFor(wait);
    backoff =
        std::min(options_.max_backoff, backoff * options_.backoff_multiplier);
  }
}

template <typename Response>
absl::StatusOr<Response> VolumePoolClient::CallFor(
    const CallRules& rules, const CallOptions& call,
    const std::function<grpc::Status(grpc::ClientContext*, Response*)>& rpc)
    const {
  Response response;
  absl::Status status = Call(rules, call, [&](grpc::ClientContext* context) {
    response.Clear();
    return rpc(context, &response);
  });
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ListPoolsResponse> VolumePoolClient::ListPools(
    const CallOptions& call) const {
  static constexpr CallRules kRules{
      .method = "ListPools",
      .changes_pool = false,
      .retry_aborted = false,
      .retry_unknown_outcome = false,
      .carries_token = true,
  };
  return CallFor<v1::ListPoolsResponse>(
      kRules, call,
      [&](grpc::ClientContext* context, v1::ListPoolsResponse* response) {
        return stub_->ListPools(context, v1::ListPoolsRequest(), response);
      });
}

absl::StatusOr<v1::AddVolumeResponse> VolumePoolClient::AddVolume(
    v1::AddVolumeRequest request, const CallOptions& call) const {
  if (call.generate_request_id && request.request_id().empty()) {
    request.set_request_id(NewRequestId());
  }
  const CallRules rules{
      .method = "AddVolume",
      .changes_pool = true,
      // ABORTED: the add's request_id is still running on the server, which
      // will answer a repeat with its result.
      .retry_aborted = true,
      // With a request_id the server answers a repeat with the first
      // attempt's result (also after it restarted or crashed), so an
      // attempt cut off after it was sent is repeated too; without one a
      // repeat could add again.
      .retry_unknown_outcome = !request.request_id().empty(),
      .carries_token = true,
  };
  absl::StatusOr<v1::AddVolumeResponse> added = CallFor<v1::AddVolumeResponse>(
      rules, call,
      [&](grpc::ClientContext* context, v1::AddVolumeResponse* response) {
        return stub_->AddVolume(context, request, response);
      });
  if (!added.ok() && !request.request_id().empty()) {
    // The caller may not know the id (generate_request_id), and needs it
    // to learn the outcome of a call cut off after it was sent.
    return WithSuffix(added.status(),
                      absl::StrCat("; request_id ", request.request_id()));
  }
  return added;
}

absl::StatusOr<v1::RemoveVolumeResponse> VolumePoolClient::RemoveVolume(
    const v1::RemoveVolumeRequest& request, const CallOptions& call) const {
  static constexpr CallRules kRules{
      .method = "RemoveVolume",
      .changes_pool = true,
      .retry_aborted = false,
      .retry_unknown_outcome = false,
      .carries_token = true,
  };
  return CallFor<v1::RemoveVolumeResponse>(
      kRules, call,
      [&](grpc::ClientContext* context, v1::RemoveVolumeResponse* response) {
        return stub_->RemoveVolume(context, request, response);
      });
}

absl::StatusOr<v1::ReclaimVolumeResponse> VolumePoolClient::ReclaimVolume(
    const v1::ReclaimVolumeRequest& request, const CallOptions& call) const {
  // A change, retried only when an attempt changed nothing. An attempt cut
  // off after it was sent is not repeated, though a repeat would be
  // harmless (FAILED_PRECONDITION: the index is no longer quarantined):
  // its answer could not say that the first attempt reclaimed the volume,
  // so the caller gets OutcomeUnknown and looks.
  static constexpr CallRules kRules{
      .method = "ReclaimVolume",
      .changes_pool = true,
      .retry_aborted = false,
      .retry_unknown_outcome = false,
      .carries_token = true,
  };
  return CallFor<v1::ReclaimVolumeResponse>(
      kRules, call,
      [&](grpc::ClientContext* context, v1::ReclaimVolumeResponse* response) {
        return stub_->ReclaimVolume(context, request, response);
      });
}

absl::StatusOr<v1::InspectResponse> VolumePoolClient::Inspect(
    const v1::InspectRequest& request, const CallOptions& call) const {
  static constexpr CallRules kRules{
      .method = "Inspect",
      .changes_pool = false,
      // ABORTED: another verify of the pool runs, or the pool's users kept
      // moving its stack; a later verify may run.
      .retry_aborted = true,
      .retry_unknown_outcome = false,
      .carries_token = true,
  };
  return CallFor<v1::InspectResponse>(
      kRules, call,
      [&](grpc::ClientContext* context, v1::InspectResponse* response) {
        return stub_->Inspect(context, request, response);
      });
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus>
VolumePoolClient::Health(const std::string& service,
                         const CallOptions& call) const {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  static constexpr CallRules kRules{
      .method = "Health",
      .changes_pool = false,
      .retry_aborted = false,
      .retry_unknown_outcome = false,
      // Health needs no token (and a probe's answer must not depend on
      // one).
      .carries_token = false,
  };
  using Response = grpc::health::v1::HealthCheckResponse;
  absl::StatusOr<Response> checked = CallFor<Response>(
      kRules, call, [&](grpc::ClientContext* context, Response* response) {
        return health_stub_->Check(context, request, response);
      });
  if (!checked.ok()) return checked.status();
  return checked->status();
}

}  // namespace groove
