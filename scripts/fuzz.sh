#!/usr/bin/env bash
# Runs every libFuzzer target for FUZZ_SECONDS (default 60) on its corpus.
# New interesting inputs go to build/fuzz/corpus-<target>/, not into the
# committed corpus; crashes are written as build/fuzz/<target>-crash-*.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
status=0
for bin in build/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  [[ "$name" == *.log ]] && continue
  corpus="tests/fuzz/corpus/${name#fuzz_}"
  work="build/fuzz/corpus-${name#fuzz_}"
  mkdir -p "$work"
  dict=$(scripts/fuzz-dict.sh "$name")
  echo "== $name for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 ${dict:+-dict="$dict"} \
    -artifact_prefix="build/fuzz/${name}-" "$work" "$corpus" 2>&1 | tail -n 3; then
    status=1
  fi
done
exit $status
