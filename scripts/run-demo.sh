#!/usr/bin/env bash
# The demo behind `make run` (called from the repo root after the release
# build): starts the demo origin (examples/origin.py, 127.0.0.1:8081) in the
# background, then bulwark with examples/bulwark.yaml (127.0.0.1:8080 -> the
# origin) in the foreground, prints what to try once 8080 answers, and waits
# on bulwark. Ctrl-C stops bulwark; the origin this script started is
# stopped on any exit, by its PID.
#
# bulwark runs in the foreground on purpose: a background job of a
# non-interactive shell starts with SIGINT ignored, and then bulwark could
# not see Ctrl-C.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
BIN=${BULWARK_BIN:-build/release/bulwark}
CONF=${BULWARK_CONF:-examples/bulwark.yaml}
PROXY_PORT=8080
TLS_PORT=8443
ORIGIN_PORT=8081
ORIGIN_LOG=build/demo-origin.log

die() { echo "run-demo: $*" >&2; exit 1; }

[ -x "$BIN" ] || die "$BIN not found; build it first (make)"
[ -f "$CONF" ] || die "$CONF not found"

# A port is taken if something is bound to it (a listener, or a socket
# without SO_REUSEADDR semantics that would make our bind fail).
port_taken() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

for port in "$PROXY_PORT" "$TLS_PORT" "$ORIGIN_PORT"; do
  if port_taken "$port"; then
    echo "run-demo: port 127.0.0.1:$port is already in use; the demo needs 8080 and 8443 (bulwark) and 8081 (origin) free." >&2
    who=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(.*)' | head -n 1)
    [ -n "$who" ] && echo "run-demo: held by $who" >&2
    exit 1
  fi
done

answers() { # port path: true once an HTTP answer (any status) comes back
  if command -v curl >/dev/null 2>&1; then
    local code
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1$2" 2>/dev/null)
    [ -n "$code" ] && [ "$code" != 000 ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

origin_pid=
helper_pid=
cleanup() {
  if [ -n "$helper_pid" ] && kill -0 "$helper_pid" 2>/dev/null; then
    kill "$helper_pid" 2>/dev/null
  fi
  if [ -n "$origin_pid" ] && kill -0 "$origin_pid" 2>/dev/null; then
    kill -TERM "$origin_pid" 2>/dev/null
    for _ in $(seq 20); do
      kill -0 "$origin_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$origin_pid" 2>/dev/null
    echo "run-demo: origin stopped" >&2
  fi
}
trap cleanup EXIT
# Ctrl-C reaches bulwark too (same foreground process group) and bulwark
# drains and exits; this script then ends with bulwark's status. Before
# bulwark runs, Ctrl-C just ends the script.
bulwark_running=0
trap '[ "$bulwark_running" = 1 ] || exit 130' INT
trap 'exit 143' TERM

# The HTTPS listener's self-signed certificate, made once.
scripts/demo-cert.sh || die "could not make the demo certificate (is openssl installed?)"

mkdir -p "$(dirname "$ORIGIN_LOG")"
"$PY" examples/origin.py --port "$ORIGIN_PORT" >"$ORIGIN_LOG" 2>&1 &
origin_pid=$!
for _ in $(seq 50); do
  answers "$ORIGIN_PORT" /healthz && break
  kill -0 "$origin_pid" 2>/dev/null || { cat "$ORIGIN_LOG" >&2; die "the demo origin exited"; }
  sleep 0.1
done
answers "$ORIGIN_PORT" /healthz || die "the demo origin did not answer on 127.0.0.1:$ORIGIN_PORT (log: $ORIGIN_LOG)"
echo "run-demo: demo origin on 127.0.0.1:$ORIGIN_PORT (pid $origin_pid, log $ORIGIN_LOG)" >&2

# Prints the instructions once bulwark answers, while bulwark holds the
# foreground.
(
  for _ in $(seq 100); do
    if answers "$PROXY_PORT" /; then
      cat >&2 <<EOF

  bulwark is up on http://127.0.0.1:$PROXY_PORT (config $CONF), proxying to the demo origin.
  Try, in another terminal:
    curl -i http://127.0.0.1:$PROXY_PORT/
    curl -i http://127.0.0.1:$PROXY_PORT/api/hello
    curl -i --cacert examples/tls/demo.pem https://localhost:$TLS_PORT/   # HTTPS (docs/tls.md)
    curl -i http://127.0.0.1:$PROXY_PORT/admin          # blocked by examples/rules/entry.yaml
    curl -i http://127.0.0.1:$PROXY_PORT/v0/users?page=2 # redirected by a rule
    curl -i http://127.0.0.1:$PROXY_PORT/login           # curl scores as a bot: blocked
    curl -i -A 'Mozilla/5.0 Firefox/121' -H 'Accept-Language: en' -H 'Sec-Fetch-Mode: navigate' \\
         http://127.0.0.1:$PROXY_PORT/login             # a browser-like request passes
    $BIN check -c $CONF
    $BIN eval -c $CONF --request 'GET /admin HTTP/1.1' -H 'Host: demo.example'
    (rules: examples/rules/*.yaml, docs/rules.md)
    curl -s http://127.0.0.1:9901/status              # admin API (docs/admin.md)
    curl -s http://127.0.0.1:9901/metrics | grep bulwark_rule_matches
    curl -s -X POST -d '{"target": "rule:entry/block-admin", "enabled": false}' http://127.0.0.1:9901/killswitch
  Ctrl-C stops bulwark and the origin.

EOF
      exit 0
    fi
    sleep 0.1
  done
  echo "run-demo: bulwark did not answer on 127.0.0.1:$PROXY_PORT within 10s" >&2
) &
helper_pid=$!

bulwark_running=1
"$BIN" run -c "$CONF"
status=$?
bulwark_running=0
echo "run-demo: bulwark exited with status $status" >&2
exit "$status"
