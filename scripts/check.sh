#!/usr/bin/env bash
# Runs every suite against the already-built variants and prints one closing
# line, "N passed, N failed", summing them all. Exit status 1 if any failed.
#   unit tests          release and asan builds
#   fuzz corpus replay  asan build (every corpus input as a regression test)
#   integration tests   release and asan builds (pytest, real processes)
#   fuzz smoke          libFuzzer, FUZZ_SMOKE_SECONDS (default 10) per target
#   format              every C file against clang-format (.clang-format)
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
total_pass=0
total_fail=0
summary=()

add() { # suite passed failed
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
  summary+=("$(printf '%-28s %5d passed, %d failed' "$1" "$2" "$3")")
}

# Reads "# N passed, M failed" lines from a log and adds them up.
sum_totals() {
  awk '/^# [0-9]+ passed, [0-9]+ failed/ {p += $2; f += $4} END {print p+0, f+0}' "$1"
}

run_unit() { # variant
  local log="build/$1/unit.log" p=0 f=0
  : >"$log"
  while IFS= read -r t; do
    if ! "$t" >>"$log" 2>&1; then
      grep -q "^# [0-9]* passed" "$log" || true
      # A binary that crashed before its totals line counts as one failure.
      tail -n 1 "$log" | grep -q '^# ' || { echo "# 0 passed, 1 failed ($t crashed)" >>"$log"; }
    fi
  done < <(find "build/$1/tests" -type f -perm -u+x | sort)
  read -r p f < <(sum_totals "$log")
  grep -E '^(FAIL|     )' "$log" | head -40
  add "unit ($1)" "$p" "$f"
}

run_replay() { # variant
  local log="build/$1/replay.log" p=0 f=0
  : >"$log"
  for bin in build/"$1"/replay/fuzz_*; do
    [ -x "$bin" ] || continue
    local name corpus
    name=$(basename "$bin")
    corpus="tests/fuzz/corpus/${name#fuzz_}"
    if [ -d "$corpus" ]; then
      if ! "$bin" "$corpus" >>"$log" 2>&1; then
        tail -n 1 "$log" | grep -q '^# ' || echo "# 0 passed, 1 failed ($name crashed)" >>"$log"
        tail -n 30 "$log"
      fi
    fi
  done
  read -r p f < <(sum_totals "$log")
  add "fuzz corpus replay ($1)" "$p" "$f"
}

run_integration() { # variant [engine tests...]
  local variant=$1 engine=${2:-} log p f e
  shift $(( $# > 1 ? 2 : 1 ))
  local tests=("$@")
  [ ${#tests[@]} -eq 0 ] && tests=(tests/integration)
  log="build/$variant/integration${engine:+-$engine}.log"
  BULWARK_BIN="$PWD/build/$variant/bulwark" BULWARK_VARIANT="$variant" \
    BULWARK_IO_ENGINE="$engine" \
    timeout 900 $PY -m pytest -q -p no:cacheprovider "${tests[@]}" >"$log" 2>&1
  p=$(grep -oE '[0-9]+ passed' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
  f=$(grep -oE '[0-9]+ failed' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
  e=$(grep -oE '[0-9]+ errors?' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
  if [ "$p" = 0 ] && [ "$f" = 0 ] && [ "$e" = 0 ]; then
    e=1 # pytest did not even report: count the suite as failed
  fi
  if [ "$f" != 0 ] || [ "$e" != 0 ]; then
    grep -E '^(FAILED|ERROR)|Error|assert' "$log" | head -40
  fi
  add "integration ($variant${engine:+, $engine})" "$p" $((f + e))
}

run_fuzz_smoke() {
  local secs=${FUZZ_SMOKE_SECONDS:-10} p=0 f=0
  for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    local name corpus work dict
    name=$(basename "$bin")
    corpus="tests/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    dict=$(scripts/fuzz-dict.sh "$name")
    [ -d "$corpus" ] && cp -r "$corpus/." "$work/"
    if "$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 ${dict:+-dict="$dict"} \
      -artifact_prefix="build/fuzz/${name}-" "$work" >"build/fuzz/$name.log" 2>&1; then
      p=$((p + 1))
    else
      f=$((f + 1))
      echo "fuzz smoke: $name found a failure; see build/fuzz/$name.log"
      tail -n 30 "build/fuzz/$name.log"
    fi
    rm -rf "$work"
  done
  add "fuzz smoke (${secs}s each)" "$p" "$f"
}

# Every C file as clang-format (.clang-format) writes it: one check per
# file, so a drifted file is named; `make format` fixes them all.
run_format() {
  local p=0 f=0 file
  while IFS= read -r file; do
    if clang-format --dry-run -Werror "$file" >/dev/null 2>&1; then
      p=$((p + 1))
    else
      f=$((f + 1))
      echo "format: $file differs from clang-format's output (make format fixes it)"
    fi
  done < <(find src tests bench -name '*.[ch]' | sort)
  add "format (clang-format)" "$p" "$f"
}

run_format
run_unit release
run_unit asan
run_replay asan
run_integration release
run_integration asan
# Both suites above run on io_uring where the kernel allows it (io_engine:
# auto); the proxy's core paths run again on epoll, the fallback.
run_integration release epoll tests/integration/test_10_proxy_basic.py \
  tests/integration/test_30_bodies.py tests/integration/test_40_timeouts.py \
  tests/integration/test_45_upstream_errors.py tests/integration/test_80_lifecycle.py \
  tests/integration/test_94_faults.py
run_fuzz_smoke

echo
for line in "${summary[@]}"; do echo "$line"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
