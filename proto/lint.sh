#!/usr/bin/env bash
# proto/lint.sh: lint groove-volumed's API with buf (proto/buf.yaml: the
# STANDARD rules plus the COMMENTS rules, no exceptions).
#
# Usage: proto/lint.sh [BUF]
#   BUF  path of a buf binary. Without it, buf comes from npm through
#        `npx --yes @bufbuild/buf@$BUF_VERSION` (default below, the version
#        the rules were last checked with; a newer buf may add rules).
#
# Exits 0 when there is no finding; otherwise prints the findings and exits
# non-zero (buf exits 100 on findings, other values on usage errors). Runs
# from any working directory.
set -euo pipefail

BUF_VERSION="${BUF_VERSION:-1.75.0}"

if [ "$#" -gt 1 ]; then
  echo "usage: $0 [path/to/buf]" >&2
  exit 2
fi

if [ "$#" -eq 1 ] && [ -n "$1" ]; then
  # Resolve BUF before leaving the caller's directory: a relative path or a
  # bare name on PATH both work.
  if ! bin="$(command -v -- "$1")" || [ ! -x "$bin" ]; then
    echo "lint.sh: '$1' is not an executable buf binary" >&2
    exit 2
  fi
  case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
  buf=("$bin")
else
  buf=(npx --yes "@bufbuild/buf@${BUF_VERSION}")
fi

module_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$module_dir"

"${buf[@]}" lint --error-format=text
echo "lint.sh: buf lint: no findings in $module_dir"
