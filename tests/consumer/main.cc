// groove_consumer: uses groove::client and groove::core from an installed
// groove package; exits 0 and prints "consumer ok" when both work.

#include <cstdio>

#include "groove/client/volume_pool_client.h"
#include "groove/named_pool.h"

int main() {
  groove::ClientOptions options;
  options.address = "127.0.0.1:1";  // Create does not connect
  auto client = groove::VolumePoolClient::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "Create: %s\n", client.status().ToString().c_str());
    return 1;
  }
  if (groove::NewRequestId().size() != 36) return 1;
  // groove::core: a pool name that could escape the data directory.
  if (groove::ValidatePoolName("..").code() !=
      absl::StatusCode::kInvalidArgument) {
    return 1;
  }
  std::printf("consumer ok\n");
  return 0;
}
