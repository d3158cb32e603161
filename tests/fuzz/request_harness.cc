// request_fuzzer's harness: one in-process gRPC server per process running
// the real VolumePoolServiceImpl over a real pool; each input is one
// request sent through a stub. See fuzz_harness.h for the input format.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz_harness.h"
#include "groove/named_pool.h"
#include "groove/server/metrics.h"
#include "groove/server/request_log.h"
#include "groove/server/service.h"
#include "groove/server/worker_pool.h"
#include "groove/v1/volume_pool.grpc.pb.h"

namespace groove::fuzz {
namespace {

// Env is the process's server. Created on first use and never destroyed
// (gRPC's own globals may be gone by the time static destructors run); the
// scratch directory is removed at exit. No leak to LeakSanitizer: GetEnv's
// static pointer reaches it, and the add queue's nodes are one array it
// follows (WorkerPool's fixed-size queue).
struct Env {
  std::string dir;
  std::unique_ptr<NamedPool> pool;
  std::unique_ptr<server::WorkerPool> workers;
  std::unique_ptr<server::ServerMetrics> metrics;
  server::RequestLog requests;
  std::unique_ptr<server::VolumePoolServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::VolumePoolService::Stub> stub;
  std::string error;  // why the environment could not be built
};

Env* MakeEnv() {
  auto* env = new Env;
  env->dir = ScratchDir("request");
  PoolConfig config;
  config.name = kRequestPoolName;
  config.backing.kind = BackingKind::kNormal;
  config.volume_size_bytes = 4096;
  config.max_volumes = 64;
  absl::StatusOr<std::unique_ptr<NamedPool>> pool =
      NamedPool::Open(env->dir, config);
  if (!pool.ok()) {
    env->error = pool.status().ToString();
    return env;
  }
  env->pool = *std::move(pool);
  // One worker: adds run in order, so a run replays the same way.
  env->workers = std::make_unique<server::WorkerPool>("add:fuzz", 1, 16);
  env->metrics = std::make_unique<server::ServerMetrics>(
      std::vector<const NamedPool*>{env->pool.get()},
      std::vector<std::string>{"bad"});
  env->service = std::make_unique<server::VolumePoolServiceImpl>(
      std::vector<server::VolumePoolServiceImpl::ServedPool>{
          {env->pool.get(), env->workers.get()}},
      env->metrics.get(), &env->requests,
      std::vector<server::VolumePoolServiceImpl::QuarantinedPool>{
          {"bad", absl::DataLossError("the fuzzer's quarantined pool")}});
  grpc::ServerBuilder builder;
  builder.RegisterService(env->service.get());
  env->server = builder.BuildAndStart();
  if (env->server == nullptr) {
    env->error = "grpc::ServerBuilder::BuildAndStart failed";
    return env;
  }
  env->stub = v1::VolumePoolService::NewStub(
      env->server->InProcessChannel(grpc::ChannelArguments()));
  return env;
}

Env& GetEnv() {
  static Env* env = MakeEnv();
  return *env;
}

void SetDeadline(grpc::ClientContext* context) {
  // Far longer than any call takes; libFuzzer's -timeout catches hangs.
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(60));
}

template <typename Request>
bool Decode(absl::string_view bytes, int selector, Request* request) {
  if (!request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return false;
  }
  if (selector & 4) {
    request->set_pool(kRequestPoolName);
  } else if (selector & 8) {
    request->set_pool("bad");
  }
  return true;
}

}  // namespace

RequestOutcome RunRequestInput(absl::string_view data) {
  RequestOutcome out;
  Env& env = GetEnv();
  if (!env.error.empty()) {
    out.violation = absl::StrCat("cannot start the server: ", env.error);
    return out;
  }
  if (data.empty()) return out;
  const int selector = static_cast<unsigned char>(data[0]);
  const absl::string_view bytes = data.substr(1);
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status status;
  // ReclaimVolume, the fifth RPC, came after the corpus's first inputs:
  // bit 16 picks it, so that inputs without that bit keep their RPC.
  const int rpc = (selector & 16) ? 4 : (selector & 3);
  switch (rpc) {
    case 0: {
      v1::ListPoolsRequest request;
      if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
        return out;
      v1::ListPoolsResponse response;
      status = env.stub->ListPools(&context, request, &response);
      break;
    }
    case 1: {
      v1::AddVolumeRequest request;
      if (!Decode(bytes, selector, &request)) return out;
      v1::AddVolumeResponse response;
      status = env.stub->AddVolume(&context, request, &response);
      break;
    }
    case 2: {
      v1::RemoveVolumeRequest request;
      if (!Decode(bytes, selector, &request)) return out;
      v1::RemoveVolumeResponse response;
      status = env.stub->RemoveVolume(&context, request, &response);
      break;
    }
    case 3: {
      v1::InspectRequest request;
      if (!Decode(bytes, selector, &request)) return out;
      v1::InspectResponse response;
      status = env.stub->Inspect(&context, request, &response);
      break;
    }
    case 4: {
      v1::ReclaimVolumeRequest request;
      if (!Decode(bytes, selector, &request)) return out;
      v1::ReclaimVolumeResponse response;
      status = env.stub->ReclaimVolume(&context, request, &response);
      break;
    }
  }
  out.parsed = true;
  out.code = status.error_code();
  // DATA_LOSS is only ever the quarantined pool's answer: never the
  // served pool's (selector bit 4 aims the request at it).
  if (out.code == grpc::StatusCode::DEADLINE_EXCEEDED ||
      out.code == grpc::StatusCode::INTERNAL ||
      out.code == grpc::StatusCode::UNKNOWN ||
      (out.code == grpc::StatusCode::DATA_LOSS && (selector & 4))) {
    out.violation = absl::StrCat("RPC ", rpc, " failed with code ", out.code,
                                 ": ", status.error_message());
    return out;
  }
  // The invariant: whatever the request did, the pool is sound.
  grpc::ClientContext check_context;
  SetDeadline(&check_context);
  v1::InspectRequest check;
  check.set_pool(kRequestPoolName);
  check.set_verify(true);
  v1::InspectResponse checked;
  const grpc::Status check_status =
      env.stub->Inspect(&check_context, check, &checked);
  if (!check_status.ok()) {
    out.violation =
        absl::StrCat("Inspect(verify) failed: ", check_status.error_message());
  } else if (!checked.verify_result().ok()) {
    out.violation = absl::StrCat("the pool is corrupt after the request: ",
                                 checked.verify_result().message());
  } else if (checked.summary().volumes_mapped() >
             checked.summary().max_volumes()) {
    out.violation = "volumes_mapped above max_volumes";
  }
  return out;
}

}  // namespace groove::fuzz
