#!/usr/bin/env bash
# bulwark instruction counts (`make bench-instr`, after the release build): a
# deterministic companion to `make bench-eval` and `make bench`. This host is
# a shared VM without hardware counters, where CPU time per request moves by
# tens of percent in bursts; callgrind's count of user-space instructions
# does not, so two commits can be compared to within a fraction of a percent.
#
#   1. The rules evaluator (build/release/bench/eval_bench, 100 rules of
#      bench/rules/bench100.yaml): instructions per request over the
#      recorded corpus bench/rules/corpus.txt, and over `make bench`'s
#      request alone (GET /index.html, Host only, from 127.0.0.1).
#   2. The proxy (build/release/bulwark, one worker, epoll, an nginx origin
#      serving 1 KiB): instructions per proxied request without rules
#      (bench/conf/bulwark.yaml) and with the 100 rules
#      (bench/conf/bulwark-rules.yaml), and their ratio.
#
# What it does not measure: the kernel. callgrind counts only user space, and
# most of a proxied request's CPU time is the kernel's network work, so the
# proxy's instruction ratio (about 2.6) is NOT issue 3's CPU bar (at most
# 10 % more CPU per request with the rules; about 1.08 in CPU time). Nor is
# it time: an instruction count ignores cache misses and branch
# mispredictions. It is bulwark's own work per request, for comparing commits.
#
# Knobs (environment):
#   BENCH_INSTR_BIN        bulwark binary (build/release/bulwark)
#   BENCH_INSTR_EVAL_BIN   eval_bench binary (build/release/bench/eval_bench)
#   BENCH_INSTR_PROXY=0    skip the proxy part
#   BENCH_INSTR_REQUESTS   proxied requests counted per configuration (4000)
#   BENCH_INSTR_WARMUP     proxied requests before counting starts (400)
#
# Prints a one-line summary per figure and a markdown table on stdout.
# Exit status 1 when any step failed. Everything started is stopped by PID on
# exit; only 127.0.0.1 is used.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BENCH_INSTR_BIN:-$ROOT/build/release/bulwark}
EVAL_BIN=${BENCH_INSTR_EVAL_BIN:-$ROOT/build/release/bench/eval_bench}
PROXY=${BENCH_INSTR_PROXY:-1}
REQUESTS=${BENCH_INSTR_REQUESTS:-4000}
WARMUP=${BENCH_INSTR_WARMUP:-400}
PY=${PYTHON:-/usr/bin/python3}
RULES=$ROOT/bench/rules/bench100.yaml
CORPUS=$ROOT/bench/rules/corpus.txt
CONNS=4
# Passes over each corpus: enough that start-up and the warm-up pass are
# noise, few enough that each callgrind run takes seconds.
CORPUS_ITERS=20
SINGLE_ITERS=1000

die() {
    echo "bench-instr: $*" >&2
    exit 1
}

for tool in valgrind callgrind_control timeout "$PY"; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x $EVAL_BIN ]] || die "$EVAL_BIN not found (make VARIANT=release $EVAL_BIN)"
[[ $REQUESTS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] ||
    die "BENCH_INSTR_REQUESTS and BENCH_INSTR_WARMUP must be counts"
if [[ $PROXY != 0 ]]; then
    [[ -x $BIN ]] || die "$BIN not found (make VARIANT=release $BIN)"
    command -v nginx >/dev/null || die "nginx not found (the proxy part needs it as origin; BENCH_INSTR_PROXY=0 skips it)"
fi

WORK=$(mktemp -d -t bulwark-instr.XXXXXX)
PIDS=()

# Stop one process we started: TERM, up to 30 s, then KILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# A reaped PID may be reused: the exit trap must not see it again.
forget() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# Run a command as a child stopped by PID on exit, and wait for it: a signal
# interrupts `wait` at once, whereas a foreground child (and timeout puts its
# own in a process group of their own) would hold the trap until it ends.
run() {
    "$@" &
    local pid=$! rc=0
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# "summary:" (or "totals:") of a callgrind output file: the Ir it collected.
cg_total() {
    local n
    n=$(awk '/^(summary|totals):/ { print $2; exit }' "$1")
    [[ $n =~ ^[0-9]+$ ]] || die "no total in $1"
    echo "$n"
}

# Integer division rounded to nearest; thousands separators (whatever the
# locale).
div() { echo $((($1 + $2 / 2) / $2)); }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

ROWS=()

# ---- 1. The evaluator ------------------------------------------------------

# Instructions of eval_bench's `pass` only (ITERS passes over the corpus, 5
# timed repeats after one warm-up pass, as eval_bench prints): loading the
# rules and the corpus stays out. The toggle names `pass` and its clones (pass.constprop.0) but
# not `pass*`: the regex prefilter has a pass_avx2, called inside `pass`,
# and a second matching function toggles collection off again inside it.
eval_instr() {
    local label=$1 corpus=$2 iters=$3 out=$WORK/eval.$4
    if ! run env EVAL_BENCH_ONLY=100 timeout 600 valgrind --tool=callgrind \
        --callgrind-out-file="$out.cg" --toggle-collect=pass --toggle-collect='pass.*' \
        "$EVAL_BIN" "$RULES" "$corpus" "$iters" >"$out.stdout" 2>"$out.stderr"; then
        cat "$out.stderr" "$out.stdout" >&2
        die "eval_bench under callgrind failed ($label)"
    fi
    local nreq total counted
    nreq=$(sed -n 's/^corpus: \([0-9][0-9]*\) requests.*/\1/p' "$out.stdout")
    [[ -n $nreq ]] || die "no \"corpus: N requests\" line from eval_bench ($label)"
    total=$(cg_total "$out.cg")
    ((total > 0)) || die "callgrind collected nothing: no function named pass in $EVAL_BIN?"
    # time_rules: one warm-up pass, then `repeats` x `iters` passes.
    local repeats
    repeats=$(sed -n "s/^iterations: $iters passes over the corpus, \([0-9][0-9]*\) repeats.*/\1/p" "$out.stdout")
    [[ -n $repeats ]] || die "no \"iterations: $iters passes ..., N repeats\" line from eval_bench ($label)"
    counted=$(((repeats * iters + 1) * nreq))
    local per
    per=$(div "$total" "$counted")
    echo "evaluator, $label: $(commas "$per") instructions/request ($(commas "$total") over $(commas "$counted") requests: ($repeats x $iters + 1) passes x $nreq)"
    ROWS+=("| evaluator, 100 rules, $label | $(commas "$per") |")
}

SINGLE=$WORK/single.txt
printf '@ 127.0.0.1\nGET /index.html HTTP/1.1\nHost: 127.0.0.1:8080\n' >"$SINGLE"
eval_instr "corpus.txt" "$CORPUS" "$CORPUS_ITERS" corpus
eval_instr "bench request only" "$SINGLE" "$SINGLE_ITERS" single

# ---- 2. The proxy ----------------------------------------------------------

# The load: CONNS keep-alive connections, one request in flight at a time in
# turn (so bulwark's work per request does not depend on how many events an
# epoll_wait happens to return), each response read in full by its
# Content-Length. Counters are zeroed after the warm-up and dumped after the
# last response, by callgrind_control on bulwark's PID.
cat >"$WORK/client.py" <<'EOF'
import socket, subprocess, sys, time

mode, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 600
REQ = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def fill(self):
        if time.monotonic() > deadline:
            sys.exit("client: out of time")
        chunk = self.s.recv(65536)
        if not chunk:
            sys.exit("client: connection closed by the proxy")
        self.buf += chunk

    def get(self):
        self.s.sendall(REQ)
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split(" ")[1:2] != ["200"]:
            sys.exit(f"client: {lines[0]!r}")
        length = [int(l.split(":", 1)[1]) for l in lines[1:]
                  if l.lower().startswith("content-length:")]
        if len(length) != 1 or length[0] != 1024:
            sys.exit(f"client: Content-Length {length}, expected 1024")
        while len(self.buf) < length[0]:
            self.fill()
        self.buf = self.buf[length[0]:]

def control(flag, pid):
    r = subprocess.run(["callgrind_control", flag, pid], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        sys.exit(f"client: callgrind_control {flag} {pid}: {r.stdout}{r.stderr}")

if mode == "probe":
    Conn().get()
    sys.exit(0)
pid, warm, n, nconn = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
conns = [Conn() for _ in range(nconn)]
for i in range(warm):
    conns[i % nconn].get()
control("-z", pid)
for i in range(n):
    conns[i % nconn].get()
control("-d", pid)
EOF

# Probe PORT until it serves a 1 KiB response, for up to 120 s, or until
# process PID is gone.
wait_ready() {
    local port=$1 pid=$2 what=$3 i
    for ((i = 0; i < 240; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if run timeout 10 "$PY" "$WORK/client.py" probe "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    die "$what does not answer on 127.0.0.1:$port after 120 s"
}

free_ports() {
    "$PY" -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# Fill ${...} as bench/bench.py does (string.Template), with KEY=VALUE args.
render() {
    local template=$1 out=$2
    shift 2
    "$PY" - "$template" "$out" "$@" <<'EOF' || die "cannot render $1"
import string, sys
template, out, kv = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
with open(template) as f:
    text = string.Template(f.read()).substitute(kv)
with open(out, "w") as f:
    f.write(text)
EOF
}

PROXY_PER=()
proxy_instr() {
    local label=$1 template=$2 port=$3 conf=$WORK/$4.yaml
    render "$ROOT/bench/conf/$template" "$conf.in" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" MAXCONN=1000
    # valgrind does not follow io_uring; the relative ruleset path is made
    # absolute since the config is not next to bench/rules/.
    {
        echo "io_engine: epoll"
        sed "s|\.\./rules/bench100\.yaml|$RULES|" "$conf.in"
    } >"$conf"
    ! grep -q '\.\./rules/' "$conf" || die "$template: a relative ruleset path other than ../rules/bench100.yaml"
    "$BIN" check -c "$conf" >"$WORK/$4.check" 2>&1 ||
        { cat "$WORK/$4.check" >&2; die "bulwark check -c $conf failed ($label)"; }
    valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
        --callgrind-out-file="$WORK/cg.%p" "$BIN" run -c "$conf" >"$WORK/$4.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    if ! wait_ready "$port" "$pid" "bulwark ($label)"; then
        cat "$WORK/$4.log" >&2
        die "bulwark under callgrind exited before answering ($label)"
    fi
    rm -f "$WORK/cg.$pid".*
    if ! run timeout 900 "$PY" "$WORK/client.py" load "$port" "$pid" "$WARMUP" "$REQUESTS" "$CONNS"; then
        die "load against bulwark failed ($label)"
    fi
    local dumps=("$WORK/cg.$pid".*)
    [[ ${#dumps[@]} == 1 && -f ${dumps[0]} ]] || die "expected one callgrind dump of $pid, found: ${dumps[*]}"
    local total per
    total=$(cg_total "${dumps[0]}")
    stop_pid "$pid"
    per=$(div "$total" "$REQUESTS")
    PROXY_PER+=("$per")
    echo "proxy, $label: $(commas "$per") instructions/request ($(commas "$total") over $(commas "$REQUESTS") requests, $CONNS keep-alive connections)"
    ROWS+=("| proxy, $label | $(commas "$per") |")
}

if [[ $PROXY != 0 ]]; then
    ports=$(free_ports 3) || die "cannot find free ports on 127.0.0.1"
    read -r ORIGIN_PORT PORT_PLAIN PORT_RULES <<<"$ports"
    mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/logs"
    "$PY" -c '
import sys
line = b"bulwark-bench-0123456789abcdef\n"
open(sys.argv[1], "wb").write((line * (1024 // len(line) + 1))[:1024])' "$WORK/www/1k.bin"
    render "$ROOT/bench/conf/origin-nginx.conf" "$WORK/origin.conf" \
        WORK="$WORK" NOFILE="$(ulimit -n)" ORIGIN_PORT="$ORIGIN_PORT"
    nginx -p "$WORK" -c "$WORK/origin.conf" -e "$WORK/origin.error.log" >"$WORK/origin.log" 2>&1 &
    ORIGIN_PID=$!
    PIDS+=("$ORIGIN_PID")
    wait_ready "$ORIGIN_PORT" "$ORIGIN_PID" "the origin nginx" ||
        { cat "$WORK/origin.log" "$WORK/origin.error.log" >&2 || true; die "the origin nginx exited"; }

    proxy_instr "no rules" bulwark.yaml "$PORT_PLAIN" plain
    proxy_instr "100 rules" bulwark-rules.yaml "$PORT_RULES" rules
    plain=${PROXY_PER[0]} rules=${PROXY_PER[1]}
    ratio=$(awk -v a="$rules" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')
    echo "proxy, 100 rules / no rules: $ratio in user-space instructions ($(commas $((rules - plain))) more per request); not the CPU-time ratio: the kernel is not counted"
    ROWS+=("| proxy, added by the 100 rules | $(commas $((rules - plain))) |")
    ROWS+=("| proxy, ratio 100 rules / no rules (user space only, not CPU time) | $ratio |")
fi

echo
echo "| callgrind, user-space instructions | per request |"
echo "|---|---:|"
printf '%s\n' "${ROWS[@]}"
