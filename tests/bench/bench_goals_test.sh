#!/usr/bin/env bash
# bench_goals_test.sh SCRIPT: script/bench-goals against results written
# here in script/bench's formats: every goal met; then one figure over its
# bound, a failed run (said in the file, or listed by script/bench), a
# suite not run and a machine without 1 GiB pages, each on its own row.
set -euo pipefail
goals="$1"
dir="$(mktemp -d)"
trap 'rm -rf "${dir}"' EXIT
failures=0

# expect ROW_PREFIX VERDICT: the row of the goal starting with ROW_PREFIX
# has VERDICT.
expect() {
  local line
  line="$(grep -F -- "$1" "${dir}/out.txt" || true)"
  if [ -z "${line}" ] || ! grep -qE " ${2} +[a-z0-9_.-]+\.txt$" <<<"${line}"; then
    echo "FAIL: want '$2' for '$1', got: ${line:-no such row}" >&2
    failures=$((failures + 1))
  fi
}

# run WANT_STATUS: runs the script on the directory, into out.txt.
run() {
  local status=0
  "${goals}" "${dir}" >"${dir}/out.txt" || status=$?
  if [ "${status}" -ne "$1" ]; then
    echo "FAIL: exit status ${status}, want $1" >&2
    cat "${dir}/out.txt" >&2
    failures=$((failures + 1))
  fi
}

cat >"${dir}/core-ratios.txt" <<'EOF'
threads:1: groove/boost 1.622  groove/mutex 1.19  remove+add/boost 0.642  remove+add/mutex 0.471  groove/ceiling 0.717  ceiling/mutex 1.66
threads:2: groove/boost 11.846  groove/mutex 5.111  remove+add/boost 4.881  remove+add/mutex 2.106  groove/ceiling 0.716  ceiling/mutex 7.14
threads:4: groove/boost 11.586  groove/mutex 5.39  remove+add/boost 4.869  remove+add/mutex 2.265  groove/ceiling 0.724  ceiling/mutex 7.443
threads:8: groove/boost 6.463  groove/mutex 6.947  remove+add/boost 2.739  remove+add/mutex 2.944  groove/ceiling 0.702  ceiling/mutex 9.89
EOF
for mix in add_remove inspect_summary; do
  for f in "rpc-${mix}" "rpc-pinned-${mix}"; do
    cat >"${dir}/${f}.txt" <<EOF
ratio ${mix}/health round 1: throughput 0.896  p50 1.114  p99 1.118  p999 1.113
ratio ${mix}/health (median of 5 rounds): throughput 0.932  p50 1.114  p99 1.078  p999 0.927
EOF
  done
done
cat >"${dir}/backing.txt" <<'EOF'
size            floor_add_us    pool_add_us     add_x  floor_remove_us   pool_remove_us  remove_x
normal 4KiB              1.0            1.5     1.441              0.8              1.3     1.521
huge 2MiB               86.0           84.9     0.987              5.7              4.5     0.786
huge 32MiB            2398.5         2408.0     1.004             14.0             12.7     0.907
gigantic 1GiB       116036.4       118820.5     1.024             21.5             17.6     0.819
EOF
cat >"${dir}/scale.txt" <<'EOF'
scale: 1000000 volumes of 4096 bytes in pool 'big'
   volumes  health_us  summary_us    page_us  add1024_us  floor_add_us remove1024_us   floor_rm_us  add1+remove1 | ratios vs 1k:  sum/hc    page     add  remove add1+r1 | per floor vs 1k:     add  remove | summary/health
      1024       99.9      116.4      721.6      2408.5        1364.7        1515.9         198.0         279.1 |                 1.000   1.000   1.000   1.000   1.000 |                    1.000   1.000 | 1.166
   1000000      118.9      131.5      803.3      1973.3        1378.9        1253.3         201.4         279.0 |                 0.948   1.113   0.819   0.827   1.000 |                    0.811   1.310 | 1.105
server bytes per volume outside the volumes: 9.1 (goal < 64): anon 1.2 + file/shared 8.0
EOF
for mix in add_remove inspect_summary; do
  cat >"${dir}/contention-${mix}.txt" <<'EOF'
ratio dataplane/alone (median of 3 rounds): throughput 0.830  p50 1.118  p99 1.610  p999 1.509
ratio dataplane/busy-loop (median of 3 rounds): throughput 0.934  p50 1.082  p99 1.033  p999 1.000
EOF
done
cat >"${dir}/h2load-ratio.txt" <<'EOF'
ratio groove-load/h2load (inspect_summary, 4x8) round 1: 1.033 (61301.0 / 59323.67 req/s)
ratio groove-load/h2load (inspect_summary, 4x8), median of 3 rounds: 1.043
ratio groove-load/h2load (inspect_page, 4x8), median of 3 rounds: 0.999
EOF

# 1. Every goal met, and the figures are the medians, not the rounds.
run 0
rows="$(tail -n +2 "${dir}/out.txt" | wc -l)"
met="$(grep -c ' met ' "${dir}/out.txt" || true)"
if [ "${rows}" -ne 18 ] || [ "${met}" -ne 18 ]; then
  echo "FAIL: want 18 rows all met, got ${met} met of ${rows}" >&2
  cat "${dir}/out.txt" >&2
  failures=$((failures + 1))
fi
grep -q '^add_remove throughput.* 0.932 (pinned 0.932) ' "${dir}/out.txt" || {
  echo "FAIL: add_remove's figures are not the medians" >&2
  failures=$((failures + 1))
}
grep -q '2x mutex.* 5.111 5.39 6.947 (ceiling/mutex 7.14 7.443 9.89) ' \
  "${dir}/out.txt" || {
  echo "FAIL: the core's 2x-mutex figures are not those of 2, 4, 8 threads" >&2
  failures=$((failures + 1))
}

grep -q 'per-request cost flat.*: 0.948 1.113 0.819 0.827 1.000 (bound ours: 1.2) *met ' \
  "${dir}/out.txt" || {
  echo "FAIL: the scale goal is not judged on the raw ratios vs 1k alone" >&2
  failures=$((failures + 1))
}

# 2. One thread count under 2x the mutex fails that goal, and only it.
sed -i 's/groove\/mutex 5.39 /groove\/mutex 1.82 /' "${dir}/core-ratios.txt"
run 1
expect "core >= 2x mutex" "NOT MET"
expect "core pair contended >= boost" "met"

# 3. A run that said ERROR, and one script/bench listed as failed.
sed -i '1s/$/  ERROR: AddVolume: no room/' "${dir}/scale.txt"
echo rpc-add_remove.txt >"${dir}/failed-runs.txt"
run 1
expect "server memory < 64 B" "ERROR"
expect "per-request cost flat" "ERROR"
expect "add_remove throughput" "ERROR"
expect "inspect_summary throughput" "met"

# 4. A suite not run, and a machine without 1 GiB pages.
rm "${dir}/h2load-ratio.txt"
sed -i '/^gigantic/d' "${dir}/backing.txt"
run 1
expect "h2load agrees" "not run"
expect "gigantic add" "not run"
expect "huge add" "met"

# 5. No directory: a usage error.
status=0
"${goals}" "${dir}/missing" >/dev/null 2>&1 || status=$?
[ "${status}" -eq 2 ] || {
  echo "FAIL: a missing directory exits ${status}, want 2" >&2
  failures=$((failures + 1))
}

[ "${failures}" -eq 0 ] || exit 1
echo "bench_goals_test: all checks passed"
