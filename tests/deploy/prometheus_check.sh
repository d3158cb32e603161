#!/usr/bin/env bash
# tests/deploy/prometheus_check.sh: checks deploy/prometheus/ with promtool:
#   promtool check config  prometheus.yml (and the rule files it names)
#   promtool check rules   groove-volumed.rules.yml
#   promtool test rules    groove-volumed.rules.test.yml (every alert firing
#                          and not firing)
# then proves each check bites: a config with a misspelt field, a rule with
# a PromQL syntax error, and rules with a moved threshold (10% -> 15%: the
# `edge` pool at 10% would fire; 14 -> 15 days: a certificate with 14 days
# left would), a dropped `for`, client errors counted as failures and
# refused adds of a full pool taken for lack of memory must each fail, with
# the finding named.
#
# Usage: prometheus_check.sh PROMTOOL SOURCE_DIR
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 PROMTOOL SOURCE_DIR" >&2
  exit 2
fi
promtool="$1"
dir="$2/deploy/prometheus"
if [ ! -x "$promtool" ]; then
  echo "prometheus_check: promtool '$promtool' is missing: run script/bootstrap" >&2
  exit 1
fi

failures=0
fail() {
  echo "prometheus_check: FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_ok NAME CMD...: CMD must exit 0.
expect_ok() {
  local name="$1"
  shift
  local out
  if out="$("$@" 2>&1)"; then
    echo "ok: $name"
  else
    fail "$name: $*"$'\n'"$out"
  fi
}

# expect_fail NAME PATTERN CMD...: CMD must exit non-zero and print PATTERN
# (an extended regex).
expect_fail() {
  local name="$1" pattern="$2"
  shift 2
  local out
  if out="$("$@" 2>&1)"; then
    fail "$name: passed, but must fail: $*"$'\n'"$out"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    fail "$name: failed without the expected finding /$pattern/:"$'\n'"$out"
  else
    echo "ok: $name (rejected as it must be)"
  fi
}

expect_ok "check config" "$promtool" check config "$dir/prometheus.yml"
expect_ok "check rules" "$promtool" check rules "$dir/groove-volumed.rules.yml"
expect_ok "test rules" "$promtool" test rules "$dir/groove-volumed.rules.test.yml"

# Every alert of the rules has a test that expects it to fire.
alerts="$(sed -n 's/^ *- alert: *\([A-Za-z]*\).*/\1/p' "$dir/groove-volumed.rules.yml" | sort -u)"
[ -n "$alerts" ] || fail "no alert found in groove-volumed.rules.yml"
for alert in $alerts; do
  if ! grep -Eq "^ *alertname: $alert\$" "$dir/groove-volumed.rules.test.yml"; then
    fail "alert $alert has no test in groove-volumed.rules.test.yml"
  fi
  # Firing: some test of it lists exp_labels (not only exp_alerts: []).
  if ! awk -v a="$alert" '
        $1 == "alertname:" { cur = $2 }
        $1 == "-" && $2 == "exp_labels:" && cur == a { found = 1 }
        END { exit !found }' "$dir/groove-volumed.rules.test.yml"; then
    fail "alert $alert is never tested firing"
  fi
done

# Mistakes, in copies in a scratch directory.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$dir"/* "$scratch/"

# mutate FILE SED_EXPR: applies SED_EXPR to a fresh copy of FILE; fails the
# check when it changed nothing (the mistake no longer applies).
mutate() {
  cp "$dir/$1" "$scratch/$1"
  sed -i -e "$2" "$scratch/$1"
  if cmp -s "$dir/$1" "$scratch/$1"; then
    fail "mistake '$2' no longer changes $1: update this script"
  fi
}

mutate prometheus.yml 's/scrape_interval:/scrape_intervall:/'
expect_fail "check config rejects a misspelt field" "field scrape_intervall not found" \
  "$promtool" check config "$scratch/prometheus.yml"
cp "$dir/prometheus.yml" "$scratch/prometheus.yml"

mutate groove-volumed.rules.yml 's/< 0.1 \* sum without/< 0.1 * sum witout/'
expect_fail "check rules rejects a PromQL syntax error" "parse error" \
  "$promtool" check rules "$scratch/groove-volumed.rules.yml"

mutate groove-volumed.rules.yml 's/< 0.1 \* sum without/< 0.15 * sum without/'
expect_fail "test rules catches a moved threshold" "pool=\"edge\"" \
  "$promtool" test rules "$scratch/groove-volumed.rules.test.yml"

mutate groove-volumed.rules.yml '/alert: GrooveVolumedDown/,/for:/{/for:/d}'
expect_fail "test rules catches a dropped 'for'" "alertname: GrooveVolumedDown" \
  "$promtool" test rules "$scratch/groove-volumed.rules.test.yml"

mutate groove-volumed.rules.yml 's/UNKNOWN|INTERNAL|UNAVAILABLE/UNKNOWN|INTERNAL|UNAVAILABLE|INVALID_ARGUMENT/'
expect_fail "test rules catches client errors counted as failures" "RemoveVolume" \
  "$promtool" test rules "$scratch/groove-volumed.rules.test.yml"

mutate groove-volumed.rules.yml '/unless on (job, instance, pool)/,+1d'
expect_fail "test rules catches refused adds of a pool at max_volumes counted as lack of memory" \
  "pool=\"max\"" \
  "$promtool" test rules "$scratch/groove-volumed.rules.test.yml"

mutate groove-volumed.rules.yml 's/< 14 \* 86400 >= 0/< 15 * 86400 >= 0/'
expect_fail "test rules catches a moved certificate expiry threshold" \
  "alertname: GrooveTlsCertificateExpiresSoon, time: 5m" \
  "$promtool" test rules "$scratch/groove-volumed.rules.test.yml"

if [ "$failures" -ne 0 ]; then
  echo "prometheus_check: $failures failure(s)" >&2
  exit 1
fi
echo "prometheus_check: config, rules and rule tests pass; 7 mistakes rejected"
