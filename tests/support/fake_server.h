// tests/support/fake_server.h: StartFakeServer, a gRPC server of a test's
// own service on loopback, for the tests that inject a server's fault (a
// server that pages for ever, one that stops answering): the one mock the
// tests allow, where the real groove-volumed cannot be made to misbehave.
//
// Example:
//   MyFaultyService service;
//   std::string address;
//   std::unique_ptr<grpc::Server> server = StartFakeServer(&service, &address);
//   ASSERT_NE(server, nullptr);
//   ... talk to `address` ...
//   server->Shutdown();  // after releasing any call the service holds

#ifndef GROOVE_TESTS_SUPPORT_FAKE_SERVER_H_
#define GROOVE_TESTS_SUPPORT_FAKE_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace groove::testing {

// StartFakeServer serves `service` in plaintext on 127.0.0.1, on a port
// the kernel picks, and sets `*address` to "127.0.0.1:PORT". Returns the
// started server, or null when it could not start. REQUIRES: `service`
// outlives the server.
inline std::unique_ptr<grpc::Server> StartFakeServer(grpc::Service* service,
                                                     std::string* address) {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  *address = absl::StrCat("127.0.0.1:", port);
  return server;
}

}  // namespace groove::testing

#endif  // GROOVE_TESTS_SUPPORT_FAKE_SERVER_H_
