// request_fuzzer: libFuzzer entry point; the work is RunRequestInput
// (fuzz_harness.h), shared with the regression tests.

#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_harness.h"

// Most mutated requests hold invalid UTF-8 in a string field; protobuf logs
// each such parse failure, which would bury libFuzzer's own output.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const groove::fuzz::RequestOutcome out = groove::fuzz::RunRequestInput(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!out.violation.empty()) {
    std::fprintf(stderr, "request_fuzzer: invariant violated: %s\n",
                 out.violation.c_str());
    std::abort();
  }
  // -1: bytes that are not the selected message stay out of the corpus.
  return out.parsed ? 0 : -1;
}
