#!/usr/bin/env bash
# smoke.sh FUZZER CORPUS WORK FINDINGS: a short, seeded libFuzzer run of
# FUZZER over the checked-in CORPUS (read-only: new inputs go to WORK/new),
# for CTest (label `fuzz`). Bounded by runs and by time; a crash, leak,
# timeout or invariant violation fails it, and the input is saved as
# FINDINGS/<fuzzer>-crash-... (check it into the corpus and write a
# regression test: tests/unit/fuzz_regression_test.cc).
# GROOVE_FUZZ_SMOKE_RUNS / GROOVE_FUZZ_SMOKE_SECONDS override the bounds.
set -euo pipefail
fuzzer=$1 corpus=$2 work=$3 findings=$4
runs=${GROOVE_FUZZ_SMOKE_RUNS:-3000}
seconds=${GROOVE_FUZZ_SMOKE_SECONDS:-20}
name=$(basename "${fuzzer}")
rm -rf "${work}"
mkdir -p "${work}/new" "${findings}"
exec "${fuzzer}" -seed=1 -runs="${runs}" -max_total_time="${seconds}" \
  -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
  -artifact_prefix="${findings}/${name}-" "${work}/new" "${corpus}"
