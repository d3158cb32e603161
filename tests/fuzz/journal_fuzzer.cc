// journal_fuzzer: libFuzzer entry point; the work is RunJournalInput
// (fuzz_harness.h), shared with the regression tests.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const groove::fuzz::JournalOutcome out = groove::fuzz::RunJournalInput(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!out.violation.empty()) {
    std::fprintf(stderr, "journal_fuzzer: invariant violated: %s\n",
                 out.violation.c_str());
    std::abort();
  }
  return 0;
}
