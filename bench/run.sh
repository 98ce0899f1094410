#!/usr/bin/env bash
# bulwark benchmark: one command (`make bench`, after the release build) that
# starts an origin and then, one worker each and in the same run, bulwark,
# bulwark with the bench's 100 rules, nginx (proxy_pass, upstream keepalive),
# nginx + Lua running the same 100 rules, HAProxy (mode http) and the origin
# directly; loads each with wrk on loopback and prints requests/s, p50/p99/
# p99.9 latency, CPU seconds per 100k requests of the serving process, RSS,
# memory per idle keepalive connection and syscalls per request, as markdown
# tables with ratios against nginx, for 1 KiB responses and then (shorter
# runs) 16 KiB, 1 MiB and 1,000 connections; then two bulwark-only
# scenarios: p50/p99/p99.9 steady vs while reloading every second, and
# req/s with the 2019 WAF regex against crafted queries vs without it;
# written to
# bench/results/latest.md with a PNG chart per figure (bench/results/*.png).
#
# CPU pinning, for the 2-core machines this is run on: every proxy under test
# runs on CPU 1 (BENCH_PROXY_CPU) and has that core to itself; the origin,
# wrk and the harness share CPU 0 (BENCH_LOAD_CPU). The proxy's CPU time is
# then its own, and the load generator and origin never steal its core. The
# "origin" row (origin served directly) shares CPU 0 with wrk: a reference.
#
# Knobs (environment):
#   BULWARK_BIN            binary under test (build/release/bulwark)
#   BENCH_DURATION         seconds per wrk run (10)
#   BENCH_CONNS            wrk connections (50)
#   BENCH_REPEATS          interleaved repeats; medians reported (3)
#   BENCH_WARMUP           warm-up seconds per target before measuring (1)
#   BENCH_IDLE_CONNS       idle keepalive connections for the memory test (10000)
#   BENCH_SYSCALL_REQUESTS requests counted in the syscall test (10000)
#   BENCH_WAIT_QUIET       before each run, wait up to this many seconds for
#                          other CPU load on the machine to stop (0: don't)
#   BENCH_LOAD_SYSCALL_SECONDS  syscall count under wrk load, seconds (3; 0 skips)
#   BENCH_SYSCALL_METHOD   perf | strace (default: perf if its tracepoints work)
#   BENCH_TARGETS          comma list of origin,bulwark,bulwark+rules,nginx,
#                          nginx+lua,haproxy (all six); add relay for the
#                          floor of a proxy's CPU per request (bench/relay.c)
#   BENCH_SCENARIOS        extra scenarios after the 1 KiB one: comma list of
#                          16k,1m,c1000 and the bulwark-only reload,regex
#                          (all; "" for none)
#   BENCH_MAIN=0           only the bulwark-only scenarios (no comparison table)
#   BENCH_RELOAD_DURATION  seconds per wrk run of the reload scenario (10)
#   BENCH_RELOAD_INTERVAL  seconds between two POST /reload in it (1)
#   BENCH_REGEX_DURATION   seconds per wrk run of the regex scenario (10)
#   BENCH_REGEX_QUERY_BYTES  length of its crafted query string (4096)
#   BENCH_EXTRA_DURATION   seconds per wrk run in the extra scenarios (5)
#   BENCH_BIG_CONNS        connections of the c1000 scenario (1000)
#   BENCH_PROXY_CPU / BENCH_LOAD_CPU   pinning (1 / 0)
#   BENCH_OUT              results file (bench/results/latest.md)
#   BENCH_KEEP_WORK=1      keep the temporary dir with configs and logs
#   BENCH_BROWSER=1        send an ordinary browser's headers (UA, Accept*, Referer,
#                          Cookie) instead of wrk's bare request (Host only)
#   BENCH_QUICK=1          smoke test of the harness: 2s runs, 1 repeat,
#                          1,000 idle connections, 1,000 syscall requests
#
# Exit status: 0 when every target ran; 1 when bulwark (or anything else)
# failed — the table is still printed with a row saying so.
#
# Every process started is stopped on exit by PID: bench/bench.py stops its
# own children and records each PID in a file; the trap below stops whatever
# that file still lists if the harness itself died.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3

# haproxy, wrk, lua-nginx-module and gnuplot are only needed here; install
# them (Debian) if missing.
need=()
for tool in wrk haproxy nginx taskset gnuplot; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing missing tools: ${need[*]}" >&2
  BULWARK_BENCH=1 scripts/install-deps.sh || { echo "bench: could not install ${need[*]}" >&2; exit 1; }
fi
command -v perf >/dev/null 2>&1 || command -v strace >/dev/null 2>&1 ||
  echo "bench: neither perf nor strace found; syscall counts will be skipped" >&2

# The idle-connection test holds BENCH_IDLE_CONNS client sockets here and as
# many downstream sockets in each proxy (which inherit this limit). As root
# the hard limit can be raised; otherwise take what the hard limit allows.
want_fds=$(( ${BENCH_IDLE_CONNS:-10000} * 2 + 4096 ))
[ "$want_fds" -lt 65536 ] && want_fds=65536
if ! ulimit -n "$want_fds" 2>/dev/null; then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $(( ${BENCH_IDLE_CONNS:-10000} + 1024 )) ]; then
    echo "bench: open-file limit is $(ulimit -n) (hard limit); the idle test will stop short of ${BENCH_IDLE_CONNS:-10000} connections" >&2
  fi
fi

BENCH_PIDFILE=$(mktemp /tmp/bulwark-bench-pids.XXXXXX)
export BENCH_PIDFILE

cleanup() {
  local pid comm
  # Anything the harness recorded and did not stop: stop it, by PID, if that
  # PID still runs the program that was recorded.
  while read -r pid comm; do
    [ -n "$pid" ] || continue
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
      kill -TERM "$pid" 2>/dev/null
    fi
  done <"$BENCH_PIDFILE"
  sleep 0.3
  while read -r pid comm; do
    [ -n "$pid" ] || continue
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
      kill -KILL "$pid" 2>/dev/null
    fi
  done <"$BENCH_PIDFILE"
  rm -f "$BENCH_PIDFILE"
}

harness=
on_signal() {
  [ -n "$harness" ] && kill -TERM "$harness" 2>/dev/null && wait "$harness"
  exit 130
}
trap cleanup EXIT
trap on_signal INT TERM HUP

"$PY" bench/bench.py &
harness=$!
wait "$harness"
status=$?
exit "$status"
