#!/usr/bin/python3
"""bulwark benchmark harness: the orchestrator behind bench/run.sh.

What this file owns: starting the origin and every proxy under test, loading
each with wrk, measuring CPU, memory and syscalls, and printing the results
table. What it does not own: building bulwark (make does), installing tools
and raising the fd limit (bench/run.sh does), and the last-resort cleanup of
processes if this interpreter itself is killed (bench/run.sh's trap does,
from the PID file this script keeps).

Method (docs/performance.md explains it in full):
- One origin: its own nginx, one worker, serving a 1 KiB file for any path.
- Targets: the origin directly, bulwark, bulwark with the bench's 100 rules
  (bench/rules/bench100.yaml), nginx (proxy_pass + upstream keepalive),
  nginx + Lua running the same 100 rules in access_by_lua
  (bench/conf/rules100.lua) and HAProxy (mode http, http-reuse always), one
  worker each, on their own ports, all loaded in the same run. A target that
  cannot run here (bulwark rejecting modules:, lua-nginx-module missing) is
  a row saying "n/a" and why, not a failure.
- Scenarios: the main one (1 KiB, BENCH_CONNS connections) gets every
  measurement; the extra ones (16 KiB and 1 MiB responses, 1,000
  connections) get the load runs only.
- Pinning (2 cores): the target proxy on CPU 1; origin, wrk and this script
  on CPU 0. The proxy then has a core of its own and the load generator and
  origin can never steal it. (When the origin is the target, it shares CPU 0
  with wrk, so its row is a reference, not a peer.)
- Load: wrk -t1 -cBENCH_CONNS -dBENCH_DURATION --latency, interleaved:
  for each repeat, every target in turn; medians (min-max) across repeats.
  bench/wrk-percentiles.lua adds p99.9 to wrk's percentiles.
- CPU: utime+stime of the serving process (all its threads; the nginx
  worker, not the idle master) from /proc/PID/stat before and after each run.
- Idle keepalive memory: RSS growth of the serving process after N client
  connections each made one request and stayed open, divided by N.
- Syscalls: perf stat on every syscalls:sys_enter_* tracepoint of the serving
  process, enabled exactly around a fixed number of sequential requests on
  one kept-alive connection (strace -c -f as a fallback).
- bulwark-only scenarios, after all of that, each on bulwark processes of
  its own (BENCH_SCENARIOS picks them too):
  reload: bulwark with the 100 rules and an admin listener, loaded by wrk
    once steady and once while POST /reload arrives every
    BENCH_RELOAD_INTERVAL seconds (interleaved per repeat); p50/p99/p99.9 of
    both and their ratio, and how long each reload took to answer.
  regex: the same crafted traffic (bench/wrk-regex.lua: a query of several
    KiB of the 2019 WAF regex's backtracking trigger) to bulwark without
    rules and to bulwark with that regex over the query
    (bench/rules/waf2019.yaml); req/s ratio (issue 5's bar: within 20 %).
"""

import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"


def env_int(name, default):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        return int(v)
    except ValueError:
        sys.exit(f"bench: {name}={v!r} is not an integer")


def env_float(name, default):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        return float(v)
    except ValueError:
        sys.exit(f"bench: {name}={v!r} is not a number")


QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
DURATION = env_int("BENCH_DURATION", 2 if QUICK else 10)
CONNS = env_int("BENCH_CONNS", 50)
REPEATS = env_int("BENCH_REPEATS", 1 if QUICK else 3)
WARMUP = env_float("BENCH_WARMUP", 1.0)
IDLE_CONNS = env_int("BENCH_IDLE_CONNS", 1000 if QUICK else 10000)
# The extra scenarios are shorter than the main one to keep a default run
# under ~15 minutes; their repeats are still interleaved.
EXTRA_DURATION = env_int("BENCH_EXTRA_DURATION", 2 if QUICK else 5)
BIG_CONNS = env_int("BENCH_BIG_CONNS", 1000)
LOAD_SYSCALL_SECONDS = env_int("BENCH_LOAD_SYSCALL_SECONDS", 2 if QUICK else 3)
SYSCALL_REQS = env_int("BENCH_SYSCALL_REQUESTS", 1000 if QUICK else 10000)
WAIT_QUIET = env_int("BENCH_WAIT_QUIET", 0)  # seconds to wait for an idle machine per run
QUIET_PCT = 15.0  # "idle": less than this % of one core busy
PROXY_CPU = os.environ.get("BENCH_PROXY_CPU", "1")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "0")
BULWARK_BIN = os.environ.get("BULWARK_BIN") or os.path.join(ROOT, "build/release/bulwark")
OUT = os.environ.get("BENCH_OUT") or os.path.join(HERE, "results/latest.md")
PIDFILE = os.environ.get("BENCH_PIDFILE", "")
KEEP_WORK = os.environ.get("BENCH_KEEP_WORK", "0") == "1"
RELAY_BIN = os.environ.get("BENCH_RELAY_BIN") or os.path.join(ROOT, "build/release/bench/relay")
DEFAULT_TARGETS = ["origin", "bulwark", "bulwark+rules", "nginx", "nginx+lua", "haproxy"]
# "relay" (bench/relay.c) only on request: bytes copied between a client and
# its own upstream connection, nothing parsed; the floor of a proxy's CPU per
# request on this host. It takes no part in the memory and syscall tests.
ALL_TARGETS = DEFAULT_TARGETS + ["relay"]
TARGETS = [t for t in os.environ.get("BENCH_TARGETS", ",".join(DEFAULT_TARGETS)).split(",") if t]
for _t in TARGETS:
    if _t not in ALL_TARGETS:
        sys.exit(f"bench: unknown target {_t!r} in BENCH_TARGETS (know {ALL_TARGETS})")
if "origin" not in TARGETS:
    TARGETS.insert(0, "origin")  # every proxy needs it anyway

BODY_SIZE = 1024
# Scenarios: (name, path, response bytes, connections, seconds). The first
# is the main one; BENCH_SCENARIOS picks the extra ones (comma list, "" for
# none).
MAIN = {"name": "1k", "path": "/", "size": BODY_SIZE, "conns": CONNS, "duration": DURATION,
        "label": f"1 KiB, {CONNS} conns"}
EXTRA_SCENARIOS = {
    "16k": {"name": "16k", "path": "/16k", "size": 16 * 1024, "conns": CONNS,
            "duration": EXTRA_DURATION, "label": f"16 KiB, {CONNS} conns"},
    "1m": {"name": "1m", "path": "/1m", "size": 1024 * 1024, "conns": CONNS,
           "duration": EXTRA_DURATION, "label": f"1 MiB, {CONNS} conns"},
    "c1000": {"name": "c1000", "path": "/", "size": BODY_SIZE, "conns": BIG_CONNS,
              "duration": EXTRA_DURATION, "label": f"1 KiB, {BIG_CONNS:,} conns"},
}
# bulwark-only scenarios (see the top of this file): they run after the
# comparison, on bulwark processes of their own.
BULWARK_ONLY = ["reload", "regex"]
_x = os.environ.get("BENCH_SCENARIOS", ",".join(list(EXTRA_SCENARIOS) + BULWARK_ONLY))
SCENARIOS = [MAIN]
BW_SCENARIOS = []
for _s in [x for x in _x.split(",") if x]:
    if _s in BULWARK_ONLY:
        BW_SCENARIOS.append(_s)
        continue
    if _s not in EXTRA_SCENARIOS:
        sys.exit(f"bench: unknown scenario {_s!r} in BENCH_SCENARIOS "
                 f"(know {list(EXTRA_SCENARIOS) + BULWARK_ONLY})")
    SCENARIOS.append(EXTRA_SCENARIOS[_s])
# BENCH_MAIN=0: skip the comparison of targets (the first table, memory,
# syscalls and the extra scenarios), run only the bulwark-only scenarios.
RUN_MAIN = os.environ.get("BENCH_MAIN", "1") != "0"
RELOAD_DURATION = env_int("BENCH_RELOAD_DURATION", 2 if QUICK else 10)
RELOAD_INTERVAL = env_float("BENCH_RELOAD_INTERVAL", 1.0)
RELOAD_RATE = env_int("BENCH_RELOAD_RATE", 5000)  # fixed-rate runs (0: none)
LOADGEN_BIN = os.environ.get("BENCH_LOADGEN") or os.path.join(
    os.path.dirname(BULWARK_BIN), "tools", "loadgen")
REGEX_DURATION = env_int("BENCH_REGEX_DURATION", 2 if QUICK else 10)
REGEX_QUERY_BYTES = env_int("BENCH_REGEX_QUERY_BYTES", 4096)
WRK_REGEX_SCRIPT = os.path.join(HERE, "wrk-regex.lua")
WRK_SCRIPT = os.path.join(HERE, "wrk-percentiles.lua")
LUA_MODULES = ["/usr/lib/nginx/modules/ndk_http_module.so",
               "/usr/lib/nginx/modules/ngx_http_lua_module.so"]
USABLE_CPUS = len(os.sched_getaffinity(0))  # before pinning ourselves
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 10.0


def parse_cpus(spec):
    """taskset's list format ("0", "0-3,6") as a set of CPU numbers."""
    cpus = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class StartError(Exception):
    pass


# ---------------------------------------------------------------- processes

class Procs:
    """Every process this script starts, so each can be stopped by PID.

    Each PID also goes to BENCH_PIDFILE as "PID COMM" so bench/run.sh can
    stop what is left if this interpreter dies without running its cleanup.
    """

    def __init__(self):
        self.started = []  # (Popen, name)
        self.extra = []  # PIDs we did not fork but must stop (nginx workers)

    def record(self, pid, comm):
        """comm: the name the process will carry once exec'd (it may still
        be taskset or a forked python when this runs)."""
        if not PIDFILE:
            return
        try:
            with open(PIDFILE, "a") as f:
                f.write(f"{pid} {comm[:15]}\n")
        except OSError:
            pass

    def start(self, name, argv, stdout, stderr, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        program = os.path.basename(argv[3] if argv[0] == "taskset" else argv[0])
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                             cwd=ROOT)
        self.started.append((p, name))
        self.record(p.pid, program)
        return p

    def adopt(self, pid, comm):
        self.extra.append(pid)
        self.record(pid, comm)

    def stop(self, p, grace=5.0):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass

    def stop_all(self):
        for p, _name in reversed(self.started):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"stopping pid {p.pid}: {e}")
        for pid in self.extra:
            if os.path.exists(f"/proc/{pid}"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


PROCS = Procs()


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def proc_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_split(pid):
    """(utime, stime) of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime are fields 14 and 15.
    return int(fields[11]), int(fields[12])


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    return sum(cpu_split(pid))


def rss_kib(pid, what="VmRSS"):
    """VmRSS (resident now) or VmHWM (peak resident) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(what + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {what} for pid {pid}")


# -------------------------------------------------------------- HTTP client

# BENCH_BROWSER=1: every request (wrk's and the harness's) carries the
# headers of an ordinary browser visit. With wrk's bare request (Host only)
# the rules on User-Agent, Referer, Cookie and Accept-* see absent values
# and end early, in bulwark and in Lua alike; with these they do their full
# work. None of bench100.yaml's rules matches them.
BROWSER_HEADERS = [
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/126.0.0.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Referer", "https://www.example.com/products?page=2"),
    ("Cookie", "sid=8f3a9c2e71b44d0e; cart=3; lang=en"),
]
BROWSER = os.environ.get("BENCH_BROWSER", "0") == "1"
EXTRA_HEADERS = BROWSER_HEADERS if BROWSER else []
REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           + (b"" if BROWSER else b"User-Agent: bulwark-bench\r\n")
           + b"".join(f"{k}: {v}\r\n".encode() for k, v in EXTRA_HEADERS) + b"\r\n")


def read_response(sock, buf=b""):
    """Reads one HTTP/1.1 response; returns (status, body, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before response headers")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed in chunked body")
                rest += chunk
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed in chunk")
                rest += chunk
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                # No trailers expected from these origins; the terminating
                # CRLF of the last chunk was consumed above.
                return status, body, rest
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in body")
        rest += chunk
    return status, rest[:length], rest[length:]


def probe(port, path="/", size=BODY_SIZE):
    """One request on a fresh connection: (ok, detail)."""
    req = REQUEST if path == "/" else REQUEST.replace(b"GET / ", f"GET {path} ".encode(), 1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.settimeout(3)
            s.sendall(req)
            status, body, _ = read_response(s)
    except (OSError, ConnectionError, ValueError) as e:
        return False, f"request failed: {e}"
    if status != 200:
        return False, f"answered HTTP {status} for {path} (expected 200)"
    if len(body) != size:
        return False, f"answered a {len(body)}-byte body for {path} (expected {size})"
    return True, "ok"


# ------------------------------------------------------------------ targets

class Target:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.proc = None  # Popen we started
        self.pid = None  # the process doing the work (nginx: the worker)
        self.failed = None  # reason string, once the target is out
        self.na = False  # cannot run here (not a failure): failed says why
        self.runs = []  # dicts per load run of the main scenario
        self.xruns = {}  # extra scenario name -> dicts per load run
        self.peak_kib = None  # VmHWM after the load runs
        self.idle = None  # dict
        self.syscalls = None  # dict
        self.version = ""

    def fail(self, reason):
        if not self.failed:
            self.failed = reason
            log(f"{self.name}: {reason}")

    def runs_of(self, scen):
        return self.runs if scen is MAIN else self.xruns.setdefault(scen["name"], [])


class NotApplicable(Exception):
    """The target cannot run on this machine or with this build: a row
    saying n/a, not a failure."""


def render(template, path, **values):
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    values.setdefault("NOFILE", nofile)
    values.setdefault("MAXCONN", max(IDLE_CONNS, BIG_CONNS) + 1000)
    with open(os.path.join(HERE, "conf", template)) as f:
        text = string.Template(f.read()).substitute(**values)
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_ready(t, errlog, want_line=None):
    """Waits until the target's port answers; raises StartError if it exits
    or does not come up within START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        rc = t.proc.poll()
        if rc is not None:
            why = f"exited with status {rc}" if rc >= 0 else f"killed by signal {-rc}"
            msg = tail(errlog)
            raise StartError(f"{why}" + (f"; last output:\n{msg}" if msg else ""))
        line_ok = want_line is None or want_line in open(errlog, errors="replace").read()
        if line_ok and port_open(t.port):
            return
        time.sleep(0.05)
    msg = tail(errlog)
    raise StartError(f"not answering on 127.0.0.1:{t.port} after {START_TIMEOUT:.0f}s"
                     + (f"; last output:\n{msg}" if msg else ""))


def nginx_worker(t):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        kids = proc_children(t.proc.pid)
        if kids:
            for k in kids:
                PROCS.adopt(k, "nginx")
            return kids[0]
        time.sleep(0.05)
    raise StartError("nginx master started no worker")


def start_nginx(t, work, template, cpu, origin_port):
    extra = {}
    if template == "nginx-lua.conf":
        missing = [m for m in LUA_MODULES if not os.path.exists(m)]
        if missing:
            raise NotApplicable(f"n/a: lua-nginx-module not installed ({missing[0]} missing; "
                                "BULWARK_BENCH=1 scripts/install-deps.sh installs it)")
        # The rules are the Lua module bench/conf/rules100.lua, found through
        # lua_package_path where it is committed.
        extra = {"LUA_DIR": os.path.join(HERE, "conf"), "LUA_MODULE": "rules100"}
    conf = render(template, os.path.join(work, f"{t.name}.conf"), WORK=work,
                  PORT=t.port, ORIGIN_PORT=origin_port, **extra)
    errlog = os.path.join(work, f"{t.name}.stderr")
    # -t first: a config error is reported clearly instead of as a timeout.
    chk = subprocess.run(["nginx", "-t", "-q", "-p", work, "-c", conf],
                         capture_output=True, text=True, timeout=20)
    if chk.returncode != 0:
        raise StartError(f"nginx -t rejected {conf}:\n{chk.stderr.strip()}")
    with open(errlog, "w") as err:
        t.proc = PROCS.start(t.name, ["nginx", "-p", work, "-c", conf], subprocess.DEVNULL,
                             err, cpu=cpu)
    wait_ready(t, errlog)
    t.pid = nginx_worker(t)


def start_haproxy(t, work, origin_port):
    conf = render("haproxy.cfg", os.path.join(work, "haproxy.cfg"), WORK=work,
                  PORT=t.port, ORIGIN_PORT=origin_port)
    errlog = os.path.join(work, "haproxy.stderr")
    chk = subprocess.run(["haproxy", "-c", "-q", "-f", conf], capture_output=True, text=True,
                         timeout=20)
    if chk.returncode != 0:
        raise StartError(f"haproxy -c rejected {conf}:\n{(chk.stdout + chk.stderr).strip()}")
    with open(errlog, "w") as err:
        t.proc = PROCS.start(t.name, ["haproxy", "-db", "-f", conf], subprocess.DEVNULL, err,
                             cpu=PROXY_CPU)
    wait_ready(t, errlog)
    t.pid = t.proc.pid


def start_bulwark(t, work, origin_port, template="bulwark.yaml", **extra):
    if not (os.path.isfile(BULWARK_BIN) and os.access(BULWARK_BIN, os.X_OK)):
        raise StartError(f"{BULWARK_BIN} not found or not executable (run make first)")
    # Rendered into WORK/conf/ next to a WORK/rules link to bench/rules/, so
    # a ruleset path relative to the config's directory ("../rules/...")
    # means the same file as in bench/conf/.
    os.makedirs(os.path.join(work, "conf"), exist_ok=True)
    if not os.path.exists(os.path.join(work, "rules")):
        os.symlink(os.path.join(HERE, "rules"), os.path.join(work, "rules"))
    conf = render(template, os.path.join(work, "conf", template), PORT=t.port,
                  ORIGIN_PORT=origin_port, **extra)
    if template != "bulwark.yaml":
        chk = subprocess.run([BULWARK_BIN, "check", "-c", conf], capture_output=True, text=True,
                             timeout=20)
        if chk.returncode != 0:
            err = (chk.stderr or chk.stdout).strip()
            first = err.splitlines()[0] if err else "?"
            # Only the "this build has no modules:" refusal is "not wired
            # yet"; any other error (in the ruleset, say) is shown as it is.
            if re.search(r"modules:? .*(not available|unknown|not supported)", first):
                raise NotApplicable("n/a: bulwark rejects modules: (rules not wired yet)"
                                    f"; bulwark check said: {first}")
            raise NotApplicable(f"n/a: bulwark check rejects {template}: {err}")
    errlog = t.errlog = os.path.join(work, f"{t.name}.stderr")
    with open(errlog, "w") as err:
        t.proc = PROCS.start(t.name, [BULWARK_BIN, "run", "-c", conf], subprocess.DEVNULL, err,
                             cpu=PROXY_CPU)
    wait_ready(t, errlog, want_line=f"listening on 127.0.0.1:{t.port}")
    t.pid = t.proc.pid


def start_relay(t, work, origin_port):
    if not (os.path.isfile(RELAY_BIN) and os.access(RELAY_BIN, os.X_OK)):
        raise NotApplicable(f"n/a: {RELAY_BIN} not found (make build makes it)")
    errlog = t.errlog = os.path.join(work, "relay.stderr")
    with open(errlog, "w") as err:
        t.proc = PROCS.start(t.name, [RELAY_BIN, str(t.port), str(origin_port)],
                             subprocess.DEVNULL, err, cpu=PROXY_CPU)
    wait_ready(t, errlog, want_line="listening on")
    t.pid = t.proc.pid


def tool_version(argv, pattern=None):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    out = (r.stdout + r.stderr).strip().splitlines()
    if not out:
        return "?"
    line = out[0]
    if pattern:
        m = re.search(pattern, line)
        return m.group(1) if m else "?"
    return line


def bulwark_revision():
    r = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %cd", "--date=short"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


# --------------------------------------------------------------------- load

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_latency(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * UNIT[m.group(2)]


def parse_wrk(out):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if not m:
        raise ValueError("wrk printed no request count")
    r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        r[f"p{pct}"] = parse_latency(m.group(1)) if m else float("nan")
    # From bench/wrk-percentiles.lua: microseconds.
    for m in re.finditer(r"^bench-latency p([\d.]+) (\d+)$", out, re.M):
        r[f"p{m.group(1)}"] = int(m.group(2)) / 1000.0
    r.setdefault("p99.9", float("nan"))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sock_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def wrk(port, duration, conns=None, path="/", script=WRK_SCRIPT):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns or CONNS}", f"-d{duration}s",
            "--latency", "--timeout", "5s", "-s", script, f"http://127.0.0.1:{port}{path}"]
    for k, v in EXTRA_HEADERS:
        argv[-1:-1] = ["-H", f"{k}: {v}"]
    # wrk is short-lived and waited for here; it is recorded too, so an
    # interrupted run cannot leave it behind.
    p = PROCS.start("wrk", argv, subprocess.PIPE, subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError(f"wrk did not finish within {duration + 30}s")
    finally:
        PROCS.started.remove((p, "wrk"))
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited with {p.returncode}: {err.decode(errors='replace')[-300:]}")
    return out.decode(errors="replace")


def alive(t):
    return t.proc is not None and t.proc.poll() is None and os.path.exists(f"/proc/{t.pid}")


def machine_ticks():
    """(busy, steal) clock ticks of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is in user)
    return v[0] + v[1] + v[2] + v[5] + v[6], v[7]


def cpus_busy_ticks(cpus):
    """Busy clock ticks of the given CPUs, from /proc/stat."""
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0].startswith("cpu") and parts[0][3:].isdigit() and int(parts[0][3:]) in cpus:
                v = [int(x) for x in parts[1:]]
                busy += v[0] + v[1] + v[2] + v[5] + v[6]
    return busy


def own_cpu_s():
    """CPU seconds of this script and of its waited-for children (wrk)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def wait_quiet(limit_s):
    """Waits up to limit_s seconds until the machine has been (almost) idle
    for one second, i.e. nothing outside the benchmark is using the CPUs;
    between runs the benchmark's own processes are idle. Returns the load
    seen last, in % of one core."""
    deadline = time.monotonic() + limit_s
    while True:
        m0, w0 = machine_ticks(), time.monotonic()
        time.sleep(1.0)
        m1, w1 = machine_ticks(), time.monotonic()
        pct = (m1[0] - m0[0]) / CLK_TCK / (w1 - w0) * 100
        if pct <= QUIET_PCT or time.monotonic() >= deadline:
            return pct


def load_run(t, repeat, origin, scen=MAIN, during=None):
    """One wrk run against t; `during`, when given, is a context manager
    entered just around wrk (the reload scenario's reloader)."""
    if WAIT_QUIET > 0:
        pct = wait_quiet(WAIT_QUIET)
        if pct > QUIET_PCT:
            log(f"  machine still busy ({pct:.0f}% of a core) after {WAIT_QUIET}s; running anyway")
    if not alive(t):
        t.fail(f"died before run {repeat} (status {t.proc.poll()}): {tail(t.errlog, 3)}")
        return
    others = [origin.pid] if origin is not t else []
    o0 = [cpu_ticks(p) for p in others]
    load_cpus = parse_cpus(LOAD_CPU)
    l0 = cpus_busy_ticks(load_cpus)
    m0, own0, w0 = machine_ticks(), own_cpu_s(), time.monotonic()
    s0 = cpu_split(t.pid)
    c0 = sum(s0)
    if during is None:
        out = wrk(t.port, scen["duration"], scen["conns"], scen["path"],
                  scen.get("script", WRK_SCRIPT))
    else:
        with during:
            out = wrk(t.port, scen["duration"], scen["conns"], scen["path"],
                      scen.get("script", WRK_SCRIPT))
    if not alive(t):
        t.fail(f"died during run {repeat} (status {t.proc.poll()}): {tail(t.errlog, 3)}")
        return
    s1 = cpu_split(t.pid)
    c1 = sum(s1)
    m1, own1, w1 = machine_ticks(), own_cpu_s(), time.monotonic()
    l1 = cpus_busy_ticks(load_cpus)
    o1 = [cpu_ticks(p) for p in others]
    r = parse_wrk(out)
    r["cpu_s"] = (c1 - c0) / CLK_TCK
    # CPU used on this machine during the run by anything that is not part
    # of the benchmark (other builds, tests...), in % of one core: it makes
    # numbers noisy, so it is reported.
    ours = r["cpu_s"] + sum(b - a for a, b in zip(o0, o1)) / CLK_TCK + (own1 - own0)
    r["foreign_pct"] = max(0.0, ((m1[0] - m0[0]) / CLK_TCK - ours) / (w1 - w0) * 100)
    r["steal_pct"] = (m1[1] - m0[1]) / CLK_TCK / (w1 - w0) * 100
    # How busy the serving process and the load CPUs were: a proxy well
    # under 100 % of its core while the load CPUs are at 100 % means req/s
    # and latency are the load generator's limit, not the proxy's.
    r["util_pct"] = r["cpu_s"] / (w1 - w0) * 100
    r["load_cpu_pct"] = (l1 - l0) / CLK_TCK / (w1 - w0) * 100 / len(load_cpus)
    # CPU the load side (wrk + origin) spent per request through this target:
    # a proxy that answers in smaller batches makes wrk and the origin wake
    # up more often, which costs req/s when the load side is the bottleneck.
    r["load_cpu_per_100k"] = ((l1 - l0) / CLK_TCK / r["requests"] * 100000
                              if r["requests"] else float("nan"))
    r["cpu_per_100k"] = r["cpu_s"] / r["requests"] * 100000 if r["requests"] else float("nan")
    # The same CPU time split into user space (the proxy's own code: parser,
    # rules, Lua) and kernel (TCP, io_uring or epoll): most of a proxied
    # request's cost is the kernel's loopback TCP work, about the same for
    # every proxy, and this shows how much of the difference is each.
    for key, i in (("user_per_100k", 0), ("sys_per_100k", 1)):
        r[key] = ((s1[i] - s0[i]) / CLK_TCK / r["requests"] * 100000
                  if r["requests"] else float("nan"))
    r["rss_kib"] = rss_kib(t.pid)
    t.runs_of(scen).append(r)
    bad = ""
    if r["non2xx"] or r["sock_errors"]:
        bad = f"  ({r['non2xx']} non-2xx, {r['sock_errors']} socket errors)"
    log(f"  {t.name:13s} {scen['name']:5s} run {repeat}: {r['rps']:10.0f} req/s  "
        f"p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  p99.9 {r['p99.9']:.3f} ms  "
        f"cpu {r['cpu_per_100k']:.3f} s/100k  "
        f"rss {r['rss_kib'] / 1024:.1f} MiB  load-side cpu {r['load_cpu_per_100k']:.3f} s/100k"
        f"  other load {r['foreign_pct']:.0f}%"
        f"{bad}")


# ------------------------------------------------------- idle connections

def idle_memory(t, n):
    """Opens n client connections, one request each, keeps them idle and
    returns the serving process's RSS growth per connection."""
    # This process holds one descriptor per connection: stay under its limit.
    room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 256
    if n > room:
        log(f"  {t.name:8s} idle: only {room} connections fit under the open-file limit")
        n = room
    time.sleep(0.5)
    rss0 = rss_kib(t.pid)
    socks = []
    error = None
    batch = 100
    try:
        while len(socks) < n and error is None:
            fresh = []
            for _ in range(min(batch, n - len(socks))):
                try:
                    s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
                except OSError as e:
                    error = f"connect #{len(socks) + len(fresh) + 1}: {e}"
                    break
                fresh.append(s)
            for s in fresh:
                try:
                    s.settimeout(5)
                    s.sendall(REQUEST)
                    status, body, _ = read_response(s)
                    if status != 200 or len(body) != BODY_SIZE:
                        error = f"request #{len(socks) + 1} got HTTP {status}, {len(body)} bytes"
                        s.close()
                        break
                except (OSError, ConnectionError, ValueError) as e:
                    error = f"request #{len(socks) + 1}: {e}"
                    s.close()
                    break
                socks.append(s)
            else:
                continue
            for s in fresh:
                if s not in socks:
                    s.close()
        time.sleep(1.0)
        rss1 = rss_kib(t.pid)
        # Count connections the target closed while we waited: they would
        # make the per-connection figure a lie.
        closed = 0
        for s in socks:
            try:
                s.setblocking(False)
                if s.recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        opened = len(socks)
    finally:
        for s in socks:
            s.close()
    res = {"n": opened, "rss0": rss0, "rss1": rss1, "closed": closed, "error": error}
    res["bytes_per_conn"] = (rss1 - rss0) * 1024 / (opened - closed) if opened > closed else None
    log(f"  {t.name:8s} idle: {opened} conns held ({closed} closed by peer), RSS "
        f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB"
        + (f", {res['bytes_per_conn']:.0f} B/conn" if res["bytes_per_conn"] is not None else "")
        + (f"; stopped early: {error}" if error else ""))
    return res


# ----------------------------------------------------------------- syscalls

SYSCALL_METHOD = None  # "perf" or "strace", decided once


def sequential(sock, n, buf=b""):
    for _ in range(n):
        sock.sendall(REQUEST)
        status, body, buf = read_response(sock, buf)
        if status != 200 or len(body) != BODY_SIZE:
            raise RuntimeError(f"got HTTP {status} with {len(body)} bytes")
    return buf


def perf_count(pid, work, run):
    """perf stat on every syscall tracepoint of pid, enabled exactly while
    run() executes. Returns {syscall: count}."""
    ctl, ack = os.path.join(work, "perf.ctl"), os.path.join(work, "perf.ack")
    out = os.path.join(work, f"perf-{pid}.csv")
    for f in (ctl, ack):
        if os.path.exists(f):
            os.unlink(f)
        os.mkfifo(f)
    p = PROCS.start("perf", ["perf", "stat", "-x,", "-e", "syscalls:sys_enter_*", "-p",
                             str(pid), "--delay=-1", "--control", f"fifo:{ctl},{ack}",
                             "-o", out], subprocess.DEVNULL, subprocess.DEVNULL)
    try:
        # Opening the FIFOs would block forever if perf died; check first.
        deadline = time.monotonic() + 20
        fd = None
        while fd is None:
            try:
                fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("perf stat did not start")
                time.sleep(0.05)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "w") as c, open(ack) as a:
            def cmd(word):
                c.write(word + "\n")
                c.flush()
                got = a.readline().strip("\x00\n ")
                if got != "ack":
                    raise RuntimeError(f"perf control answered {got!r}")
            cmd("enable")
            try:
                run()
            finally:
                cmd("disable")
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    finally:
        PROCS.stop(p)
        PROCS.started.remove((p, "perf"))
    counts = {}
    with open(out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 3 or not parts[2].startswith("syscalls:sys_enter_"):
                continue
            try:
                n = int(parts[0])
            except ValueError:
                continue  # <not counted> / <not supported>
            if n:
                counts[parts[2][len("syscalls:sys_enter_"):]] = n
    return counts


def strace_count(pid, work, run):
    """Fallback: strace -c -f attached to pid around run()."""
    out = os.path.join(work, f"strace-{pid}.txt")
    err = os.path.join(work, f"strace-{pid}.stderr")
    with open(err, "w") as e:
        p = PROCS.start("strace", ["strace", "-c", "-f", "-p", str(pid), "-o", out],
                        subprocess.DEVNULL, e)
    try:
        deadline = time.monotonic() + 20
        # One "Process N attached" line, "... attached with K threads" when
        # there are several.
        while "attached" not in tail(err, 1000):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"strace did not attach: {tail(err, 3)}")
            time.sleep(0.05)
        time.sleep(0.2)
        run()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    finally:
        PROCS.stop(p)
        PROCS.started.remove((p, "strace"))
    counts = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                try:
                    counts[parts[-1]] = int(parts[3])
                except ValueError:
                    pass
    return counts


def pick_syscall_method(work):
    """perf if its syscall tracepoints work here, else strace, else none;
    BENCH_SYSCALL_METHOD=perf|strace forces one."""
    forced = os.environ.get("BENCH_SYSCALL_METHOD", "")
    if forced in ("perf", "strace"):
        return forced
    if shutil.which("perf"):
        try:
            r = subprocess.run(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_getppid",
                                PY, "-c", "import os; [os.getppid() for _ in range(7)]"],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and re.search(r"^\s*(7|8),", r.stderr, re.M):
                return "perf"
            log(f"perf syscall tracepoints unusable here: {r.stderr.strip()[-200:]}")
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"perf unusable: {e}")
    if shutil.which("strace"):
        return "strace"
    return None


def syscalls_per_request(t, work, n):
    sock = socket.create_connection(("127.0.0.1", t.port), timeout=5)
    sock.settimeout(10)
    try:
        buf = sequential(sock, 200)  # warm: upstream connection pooled

        def run():
            nonlocal buf
            buf = sequential(sock, n, buf)

        counter = perf_count if SYSCALL_METHOD == "perf" else strace_count
        counts = counter(t.pid, work, run)
    finally:
        sock.close()
    res = summarize_syscalls(counts, n)
    log(f"  {t.name:8s} syscalls, sequential: " + describe_syscalls(res))
    if LOAD_SYSCALL_SECONDS > 0:
        # The same count under wrk's concurrent load, where a proxy can
        # batch (several requests per epoll_wait): informative, not exact,
        # since the window includes wrk's connects.
        out = {}

        def loaded():
            out["wrk"] = wrk(t.port, LOAD_SYSCALL_SECONDS)

        counts = counter(t.pid, work, loaded)
        res["loaded"] = summarize_syscalls(counts, parse_wrk(out["wrk"])["requests"])
        log(f"  {t.name:8s} syscalls, under load: " + describe_syscalls(res["loaded"]))
    return res


def summarize_syscalls(counts, n):
    total = sum(counts.values())
    epoll = sum(v for k, v in counts.items() if k.startswith("epoll"))
    return {"n": n, "counts": counts, "per_req": (total - epoll) / max(n, 1),
            "epoll_per_req": epoll / max(n, 1)}


def describe_syscalls(res, min_per_req=0.0):
    n = max(res["n"], 1)
    parts = sorted(res["counts"].items(), key=lambda kv: -kv[1])
    return (f"{res['per_req']:.2f}/req non-epoll + {res['epoll_per_req']:.2f} epoll ("
            + ", ".join(f"{k} {v / n:.2f}" for k, v in parts if v / n >= max(min_per_req, 0.005))
            + ")")


# ------------------------------------------------------------------- report

def med(vals):
    return statistics.median(vals) if vals else float("nan")


def spread(vals, fmt):
    if not vals:
        return "-"
    m = fmt(med(vals))
    if len(vals) == 1:
        return m
    return f"{m} ({fmt(min(vals))}–{fmt(max(vals))})"


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_ms(v):
    return f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def fmt_cpu(v):
    return f"{v:.3f}"


def fmt_mib(v):
    return f"{v / 1024:.1f}"


def machine_line():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"nproc {USABLE_CPUS} (of {os.cpu_count()} online), {model}, "
            f"Linux {platform.release()}")


def ratios(t, ref, key, scen=MAIN):
    """t's value / the reference's value in the same repeat, per repeat.
    Runs of one repeat are minutes apart at most, so this cancels most of
    the machine's drift, which a ratio of medians would not."""
    return [a[key] / b[key] for a, b in zip(t.runs_of(scen), ref.runs_of(scen)) if b[key]]


def ratio(t, ref, key, scen=MAIN):
    if ref is None:
        return "-"
    if t is ref:
        return "1.00"
    return spread(ratios(t, ref, key, scen), lambda v: f"{v:.2f}")


def live_ref(targets, name, scen=MAIN):
    return next((t for t in targets if t.name == name and t.runs_of(scen) and not t.failed), None)


# The bars of issue 3: bulwark with its rules must cost at most 0.45x the CPU
# of nginx + Lua with the same rules, and at most 1.10x bulwark without them.
BARS = [("bulwark+rules", "nginx+lua", 0.45), ("bulwark+rules", "bulwark", 1.10)]


def bars(targets):
    """Markdown table of the rules-cost ratios (CPU per request), per
    scenario, with whether each meets its bar."""
    head = ["scenario"] + [f"{a} ÷ {b} CPU/req (bar ≤ {bar:.2f})" for a, b, bar in BARS]
    rows = []
    for scen in SCENARIOS:
        row = [scen["label"]]
        for a, b, bar in BARS:
            ta, tb = live_ref(targets, a, scen), live_ref(targets, b, scen)
            if ta is None or tb is None:
                missing = a if ta is None else b
                row.append(f"n/a ({missing} did not run)")
                continue
            rs = ratios(ta, tb, "cpu_per_100k", scen)
            if not rs:
                row.append("-")
                continue
            ok = "meets the bar" if med(rs) <= bar else "**misses the bar**"
            row.append(spread(rs, lambda v: f"{v:.2f}") + f" — {ok}")
        rows.append(row)
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"] + \
        ["| " + " | ".join(r) + " |" for r in rows]


def cpu_split_report(targets):
    """Where each serving process's CPU per request goes, user space against
    kernel (/proc/PID/stat utime and stime, sampled at the clock tick): the
    kernel's loopback TCP work is most of it and about the same for every
    proxy, so it bounds how far apart two proxies' totals can be; the
    user-space ratio is what the rules engine costs against LuaJIT. It is
    reported beside the bar, not in its place."""
    live = [t for t in targets if t.runs]
    if not live:
        return []
    out = ["", "Serving process CPU per 100k requests, 1 KiB scenario, user space + kernel "
           "(s, medians): " + ", ".join(
               f"{t.name} {med([r['user_per_100k'] for r in t.runs]):.3f} + "
               f"{med([r['sys_per_100k'] for r in t.runs]):.3f}" for t in live) + "."]
    a, b = live_ref(targets, "bulwark+rules"), live_ref(targets, "nginx+lua")
    if a is not None and b is not None:
        us = ratios(a, b, "user_per_100k")
        ks = ratios(a, b, "sys_per_100k")
        # Within each repeat: the budget 0.45 x nginx+lua leaves, against the
        # kernel time bulwark+rules spent, which no user-space work removes.
        bar = BARS[0][2]
        budget = [bar * y["cpu_per_100k"] for y in b.runs]
        kern = [x["sys_per_100k"] for x in a.runs]
        out += ["", "bulwark+rules ÷ nginx+lua, user-space CPU per request (the rules and "
                f"proxy code against nginx + LuaJIT): {spread(us, lambda v: f'{v:.2f}')}; "
                f"kernel CPU per request: {spread(ks, lambda v: f'{v:.2f}')}. "
                f"The bar's budget, {bar:.2f} x nginx+lua's CPU per request: "
                f"{spread(budget, fmt_cpu)} s/100k; bulwark+rules' kernel time alone: "
                f"{spread(kern, fmt_cpu)} s/100k."]
    floor = live_ref(targets, "relay")
    if floor is not None and b is not None:
        fs = ratios(floor, b, "cpu_per_100k")
        out += ["", "relay (bench/relay.c, a proxy with no user-space work: bytes copied "
                "between each client and its own upstream connection on epoll, nothing "
                f"parsed) ÷ nginx+lua, CPU per request: {spread(fs, lambda v: f'{v:.2f}')}."]
    return out


def extra_table(targets, scen):
    """The load-run figures of an extra scenario (no memory or syscall
    tests there)."""
    ref = live_ref(targets, "nginx", scen)
    head = ["target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU s/100k req", "CPU vs nginx",
            "req/s vs nginx", "RSS after run MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for t in targets:
        runs = t.runs_of(scen)
        if not runs:
            why = "n/a" if t.na else "failed" if t.failed else "not run"
            lines.append("| " + " | ".join([t.name, why] + ["-"] * (len(head) - 2)) + " |")
            continue
        lines.append("| " + " | ".join([
            t.name + (" ⚠" if t.failed else ""),
            spread([r["rps"] for r in runs], fmt_int),
            spread([r["p50"] for r in runs], fmt_ms),
            spread([r["p99"] for r in runs], fmt_ms),
            spread([r["p99.9"] for r in runs], fmt_ms),
            spread([r["cpu_per_100k"] for r in runs], fmt_cpu),
            ratio(t, ref, "cpu_per_100k", scen),
            ratio(t, ref, "rps", scen),
            spread([r["rss_kib"] for r in runs], fmt_mib)]) + " |")
    return lines


def table(targets):
    ref = live_ref(targets, "nginx")
    head = ["target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU s/100k req", "CPU vs nginx",
            "req/s vs nginx", "RSS after run MiB", "peak RSS MiB", "idle-conn bytes",
            "syscalls/request"]
    rows = []
    notes = []
    for t in targets:
        if t.na:
            rows.append([t.name, t.failed.split(";")[0]] + ["-"] * (len(head) - 2))
            notes.append(f"{t.name}: {t.failed}")
            continue
        if t.failed and not t.runs:
            what = "failed to start" if t.failed.startswith("failed to start") else "failed"
            rows.append([t.name, f"**{t.name} {what}**"] + ["-"] * (len(head) - 2))
            notes.append(f"{t.name}: {t.failed}")
            continue
        rps = [r["rps"] for r in t.runs]
        cpu = [r["cpu_per_100k"] for r in t.runs]
        row = [t.name + (" ⚠" if t.failed else ""), spread(rps, fmt_int),
               spread([r["p50"] for r in t.runs], fmt_ms),
               spread([r["p99"] for r in t.runs], fmt_ms),
               spread([r["p99.9"] for r in t.runs], fmt_ms),
               spread(cpu, fmt_cpu),
               ratio(t, ref, "cpu_per_100k"),
               ratio(t, ref, "rps"),
               spread([r["rss_kib"] for r in t.runs], fmt_mib),
               fmt_mib(t.peak_kib) if t.peak_kib else "-"]
        if t.idle and t.idle["bytes_per_conn"] is not None:
            row.append(f"{t.idle['bytes_per_conn']:,.0f}"
                       + (f" (n={t.idle['n'] - t.idle['closed']:,})"
                          if t.idle["n"] - t.idle["closed"] != IDLE_CONNS else ""))
        else:
            row.append("-")
        if t.syscalls:
            row.append(f"{t.syscalls['per_req']:.2f} (+{t.syscalls['epoll_per_req']:.2f} epoll)")
        else:
            row.append("-")
        rows.append(row)
        for scen in SCENARIOS:
            errs = sum(r["non2xx"] + r["sock_errors"] for r in t.runs_of(scen))
            if errs:
                notes.append(f"{t.name}: {errs} non-2xx responses or socket errors during the "
                             f"{scen['label']} load (its numbers there are not comparable)")
        if t.failed:
            notes.append(f"{t.name}: {t.failed}")
        if t.idle and t.idle.get("error"):
            notes.append(f"{t.name} idle test stopped early: {t.idle['error']}")
        if t.idle and t.idle.get("closed"):
            notes.append(f"{t.name} closed {t.idle['closed']} idle connections during the idle test")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines, notes


def breakdown(targets, key=None):
    lines = []
    for t in targets:
        res = t.syscalls and (t.syscalls.get(key) if key else t.syscalls)
        if res:
            lines.append(f"- {t.name}: " + describe_syscalls(res))
    return lines


def short_header(started, versions):
    """The report's head when only the bulwark-only scenarios ran."""
    return "\n".join([f"# bulwark benchmark — {started:%Y-%m-%d %H:%M} UTC", "",
                      f"Machine: {machine_line()}", "",
                      f"Versions: bulwark {versions['bulwark']}, nginx {versions['nginx']} "
                      f"(origin), wrk {versions['wrk']}", "",
                      f"bulwark-only scenarios ({', '.join(BW_SCENARIOS)}; BENCH_MAIN=0: no "
                      f"comparison of targets); bulwark on CPU {PROXY_CPU}, origin + wrk on "
                      f"CPU {LOAD_CPU}."
                      + (" QUICK MODE: smoke test only, not a result." if QUICK else "")]) + "\n"


def report(targets, started, versions):
    tbl, notes = table(targets)
    out = [f"# bulwark benchmark — {started:%Y-%m-%d %H:%M} UTC", "",
           f"Machine: {machine_line()}", "",
           f"Versions: bulwark {versions['bulwark']}, nginx {versions['nginx']}, "
           f"lua-nginx-module {versions['lua']}, HAProxy {versions['haproxy']}, "
           f"wrk {versions['wrk']}", "",
           "Rules: bulwark+rules runs bench/rules/bench100.yaml (100 rules), nginx+lua the "
           "same 100 rules as OpenResty-style Lua (bench/conf/rules100.lua, access_by_lua); "
           "none matches the bench request, so all 100 are evaluated on every request.", "",
           ("Requests: wrk's own (GET, Host only)" if not BROWSER else
            "Requests: with an ordinary browser's headers (BENCH_BROWSER=1: "
            + ", ".join(k for k, _ in EXTRA_HEADERS) + ")") + ".", "",
           f"Load: wrk -t1 -c{CONNS} -d{DURATION}s --latency, {REPEATS} interleaved "
           f"repeat(s), medians (min–max); 1 KiB response; proxy on CPU {PROXY_CPU}, "
           f"origin + wrk on CPU {LOAD_CPU}. Idle connections: {IDLE_CONNS:,}. "
           f"Syscalls: {SYSCALL_REQS:,} sequential requests on one kept-alive connection, "
           f"counted with {SYSCALL_METHOD or 'nothing (perf and strace unavailable)'}."
           + (" QUICK MODE: smoke test only, not a result." if QUICK else ""), ""]
    out += tbl
    out += ["", "Rules cost, CPU per request, ratios within each repeat then the median "
            "(min–max), per scenario:", ""] + bars(targets) + cpu_split_report(targets)
    for scen in SCENARIOS[1:]:
        out += ["", f"### {scen['label']}", "",
                f"wrk -t1 -c{scen['conns']} -d{scen['duration']}s {scen['path']} "
                f"({scen['size']:,}-byte response), {REPEATS} interleaved repeat(s):", ""]
        out += extra_table(targets, scen)
    out += ["", "Ratios are against nginx, taken within each repeat, then the median "
            "(min–max) (CPU: lower is better; req/s: higher is better). "
            "RSS and CPU are the serving process only (nginx: its worker). "
            "The origin row is the origin served directly; it shares CPU "
            f"{LOAD_CPU} with wrk, so it is a reference, not a peer."]
    out += ["", "Main scenario (the first table) only:"]
    util = [f"{t.name} {med([r['util_pct'] for r in t.runs]):.0f}%" for t in targets if t.runs]
    loadc = [r["load_cpu_pct"] for t in targets if t.name != "origin" for r in t.runs]
    if util:
        out += ["", "CPU use during load runs (medians): serving process, in % of one core: "
                + ", ".join(util)
                + (f"; load CPU(s) {LOAD_CPU} (wrk + origin) during the proxy runs: "
                   f"{med(loadc):.0f}% busy" if loadc else "")
                + ("; CPU the load side spent per 100k requests through each target (s): "
                   + ", ".join(f"{t.name} {med([r['load_cpu_per_100k'] for r in t.runs]):.2f}"
                               for t in targets if t.runs) if loadc else "")
                + "."
                + (" The load side is saturated and no proxy is: req/s and latency are "
                   "the load generator's limit here, and CPU per request is the figure "
                   "to compare." if loadc and med(loadc) > 95 and all(
                       med([r['util_pct'] for r in t.runs]) < 95
                       for t in targets if t.runs and t.name != "origin") else "")]
    every = [r for t in targets for scen in SCENARIOS for r in t.runs_of(scen)]
    foreign = [r["foreign_pct"] for r in every]
    steal = [r["steal_pct"] for r in every]
    if foreign:
        out += ["", f"Other CPU load on the machine during load runs (not the benchmark's "
                f"processes): median {med(foreign):.0f}% of one core, max {max(foreign):.0f}%; "
                f"steal median {med(steal):.0f}%."
                + (" **The machine was not quiet: treat differences of less than ~10-20% as "
                   "noise.**" if max(foreign) > 10 else "")]
    bd = breakdown(targets)
    if bd:
        out += ["", f"Syscalls per request, {SYSCALL_REQS:,} sequential requests on one "
                "kept-alive connection (the table's column):", ""] + bd
    bd = breakdown(targets, "loaded")
    if bd:
        out += ["", f"Syscalls per request under load (wrk -c{CONNS}, {LOAD_SYSCALL_SECONDS}s, "
                "perf attached; includes wrk's connects; not in the table):", ""] + bd
    if notes:
        out += ["", "Notes:", ""] + ["- " + n.replace("\n", " | ") for n in notes]
    return "\n".join(out) + "\n"


# ------------------------------------------------- bulwark-only scenarios

def admin_post(port, path, timeout=30.0):
    """POST on bulwark's admin listener: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n".encode())
        status, body, _ = read_response(s)
    return status, body


class Reloader:
    """POST /reload every `interval` seconds on a thread of this process
    (pinned to the load CPU with the rest of the harness) until stopped;
    keeps how long each took to answer and any that failed."""

    def __init__(self, admin_port, interval):
        self.admin_port, self.interval = admin_port, interval
        self.ms, self.errors = [], []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            t0 = time.monotonic()
            try:
                status, body = admin_post(self.admin_port, "/reload")
                if status != 200:
                    self.errors.append(f"HTTP {status}: {body[:200]!r}")
            except (OSError, ConnectionError, ValueError) as e:
                self.errors.append(repr(e))
            self.ms.append((time.monotonic() - t0) * 1000.0)
            nxt += self.interval
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join(60)


RELOAD_STEADY = {"name": "steady", "path": "/", "size": BODY_SIZE, "conns": CONNS,
                 "duration": RELOAD_DURATION, "label": "steady"}
RELOAD_BUSY = dict(RELOAD_STEADY, name="reloading",
                   label=f"reloading every {RELOAD_INTERVAL:g} s")
REGEX_SCEN = {"name": "regex", "path": "/", "size": BODY_SIZE, "conns": CONNS,
              "duration": REGEX_DURATION, "script": WRK_REGEX_SCRIPT,
              "label": f"{REGEX_QUERY_BYTES:,}-byte crafted query"}


def loadgen_run(t, origin, rate, duration, during=None):
    """tests/tools/loadgen at a fixed rate (CONNS keep-alive connections,
    pinned with the rest of the load side): latency at a load the proxy
    keeps up with, unlike wrk's saturating closed loop. Returns a dict like
    load_run's (latencies in ms)."""
    argv = ["taskset", "-c", LOAD_CPU, LOADGEN_BIN, "--port", str(t.port), "--conns",
            str(CONNS), "--rate", str(rate), "--duration", str(duration),
            "--requests", str(rate * duration + 1), "--expect", "200"]
    if WAIT_QUIET > 0:
        wait_quiet(WAIT_QUIET)
    c0, o0 = cpu_ticks(t.pid), cpu_ticks(origin.pid)
    m0, own0, w0 = machine_ticks(), own_cpu_s(), time.monotonic()
    p = PROCS.start("loadgen", argv, subprocess.PIPE, subprocess.PIPE)
    try:
        if during is None:
            out, err = p.communicate(timeout=duration + 30)
        else:
            with during:
                out, err = p.communicate(timeout=duration + 30)
    finally:
        PROCS.started.remove((p, "loadgen"))
    if p.returncode != 0:
        raise RuntimeError(f"loadgen exited with {p.returncode}: {err.decode()[-300:]}")
    j = json.loads(out.decode().strip().splitlines()[-1])
    lat = j["latency_us"]
    r = {"rps": j["rate"], "p50": lat["p50"] / 1000, "p99": lat["p99"] / 1000,
         "p99.9": lat["p999"] / 1000, "max": lat["max"] / 1000,
         "requests": j["completed"], "non2xx": j["unexpected_status"],
         "sock_errors": j["failed"]}
    r["cpu_s"] = (cpu_ticks(t.pid) - c0) / CLK_TCK
    m1, own1, w1 = machine_ticks(), own_cpu_s(), time.monotonic()
    ours = r["cpu_s"] + (cpu_ticks(origin.pid) - o0) / CLK_TCK + (own1 - own0)
    r["foreign_pct"] = max(0.0, ((m1[0] - m0[0]) / CLK_TCK - ours) / (w1 - w0) * 100)
    r["cpu_per_100k"] = r["cpu_s"] / r["requests"] * 100000 if r["requests"] else float("nan")
    return r


def reload_scenario(work, origin):
    """bulwark with the 100 rules, steady and while reloading, interleaved
    per repeat. Returns (target, [per-repeat reload stats]) or raises."""
    port, admin_port = free_ports(2)
    t = Target("bulwark+rules (reload)", port)
    start_bulwark(t, work, origin.port, "bulwark-reload.yaml", ADMIN_PORT=admin_port)
    ok, detail = probe(t.port)
    if not ok:
        raise StartError(f"started but the first request {detail}")
    log(f"reload scenario: {t.name} on 127.0.0.1:{t.port}, admin {admin_port} (pid {t.pid})")
    if WARMUP > 0:
        wrk(t.port, max(1, int(round(WARMUP))))
    reloads = []
    for rep in range(1, REPEATS + 1):
        log(f"reload scenario, {RELOAD_DURATION}s runs: repeat {rep}/{REPEATS}")
        load_run(t, rep, origin, RELOAD_STEADY)
        time.sleep(0.5)
        r = Reloader(admin_port, RELOAD_INTERVAL)
        load_run(t, rep, origin, RELOAD_BUSY, during=r)
        reloads.append({"n": len(r.ms), "ms": r.ms, "errors": r.errors})
        if RELOAD_RATE > 0 and os.access(LOADGEN_BIN, os.X_OK):
            for name, rl in (("rate-steady", None),
                             ("rate-reloading", Reloader(admin_port, RELOAD_INTERVAL))):
                time.sleep(0.5)
                res = loadgen_run(t, origin, RELOAD_RATE, RELOAD_DURATION, rl)
                t.xruns.setdefault(name, []).append(res)
                log(f"  {t.name} {name} run {rep}: {res['rps']:.0f} req/s  p50 {res['p50']:.3f} "
                    f"ms  p99 {res['p99']:.3f} ms  p99.9 {res['p99.9']:.3f} ms  max "
                    f"{res['max']:.3f} ms  failed {res['sock_errors']}  cpu "
                    f"{res['cpu_per_100k']:.3f} s/100k  other load {res['foreign_pct']:.0f}%")
                if rl is not None:
                    reloads[-1]["n"] += len(rl.ms)
                    reloads[-1]["ms"] += rl.ms
                    reloads[-1]["errors"] += rl.errors
                if res["sock_errors"] or res["non2xx"]:
                    t.fail(f"{name}: {res['sock_errors']} failed, {res['non2xx']} not 200")
        if r.errors:
            t.fail(f"reloads failed: {r.errors[:3]}")
        log(f"  {len(r.ms)} reloads, answered in median {med(r.ms):.1f} ms, "
            f"max {max(r.ms) if r.ms else float('nan'):.1f} ms, {len(r.errors)} failed")
        time.sleep(0.5)
        if t.failed:
            break
    PROCS.stop(t.proc)
    return t, reloads


def regex_scenario(work, origin):
    """The same crafted traffic to bulwark without rules and to bulwark with
    the 2019 regex ruleset, interleaved per repeat. Returns the two targets."""
    os.environ["BENCH_REGEX_QUERY_BYTES"] = str(REGEX_QUERY_BYTES)  # for wrk-regex.lua
    p1, p2 = free_ports(2)
    plain = Target("bulwark, no rules", p1)
    waf = Target("bulwark, 2019 regex", p2)
    query = ("1true-" * (REGEX_QUERY_BYTES // 6 + 1))[:REGEX_QUERY_BYTES]
    for t, template in ((plain, "bulwark.yaml"), (waf, "bulwark-regex.yaml")):
        start_bulwark(t, work, origin.port, template)
        # The crafted request passes (no '=' in it: the rule does not match).
        ok, detail = probe(t.port, "/search?" + query)
        if not ok:
            raise StartError(f"{t.name}: the crafted request {detail}")
        log(f"regex scenario: {t.name} on 127.0.0.1:{t.port} (pid {t.pid})")
        if WARMUP > 0:
            wrk(t.port, max(1, int(round(WARMUP))), script=WRK_REGEX_SCRIPT)
    for rep in range(1, REPEATS + 1):
        log(f"regex scenario, {REGEX_DURATION}s runs: repeat {rep}/{REPEATS}")
        for t in (plain, waf):
            load_run(t, rep, origin, REGEX_SCEN)
            time.sleep(0.5)
    for t in (plain, waf):
        PROCS.stop(t.proc)
    return plain, waf


def run_row(name, runs, extra=()):
    return "| " + " | ".join([
        name,
        spread([r["rps"] for r in runs], fmt_int),
        spread([r["p50"] for r in runs], fmt_ms),
        spread([r["p99"] for r in runs], fmt_ms),
        spread([r["p99.9"] for r in runs], fmt_ms),
        spread([r["cpu_per_100k"] for r in runs], fmt_cpu),
        str(sum(r["non2xx"] + r["sock_errors"] for r in runs))] + list(extra)) + " |"


RUN_HEAD = ["req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU s/100k req", "non-2xx + socket errors"]


# A repeat counts as quiet when other CPU load (not the benchmark's) stayed
# under this % of one core in both of its runs.
QUIET_PAIR_PCT = 25.0


def paired(a, b, key, quiet=False):
    return [y[key] / x[key] for x, y in zip(a, b) if x[key] and (
        not quiet or max(x.get("foreign_pct", 0), y.get("foreign_pct", 0)) < QUIET_PAIR_PCT)]


def n_quiet(a, b):
    return len(paired(a, b, "rps", quiet=True)), len(paired(a, b, "rps"))


def reload_report(t, reloads):
    steady, busy = t.runs_of(RELOAD_STEADY), t.runs_of(RELOAD_BUSY)
    out = ["", "### Reloads under load", "",
           f"bulwark with the 100 rules (bench/conf/bulwark-reload.yaml, one worker), "
           f"wrk -t1 -c{CONNS} -d{RELOAD_DURATION}s, {REPEATS} interleaved repeat(s): steady, "
           f"then while POST /reload arrives every {RELOAD_INTERVAL:g} s (each re-reads, "
           "recompiles and re-tests the 100 rules and publishes a new snapshot, on the "
           "worker's core). Reload time: from sending POST /reload to its answer "
           "(snapshot built and published).", ""]
    if t.failed:
        out += [f"**{t.failed}**", ""]
    head = ["run"] + RUN_HEAD + ["reloads", "reload ms median (max)"]
    out += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    all_ms = [m for r in reloads for m in r["ms"]]
    out.append(run_row("steady", steady, ["-", "-"]))
    out.append(run_row(RELOAD_BUSY["label"], busy, ["", ""]))
    fs, fb = t.xruns.get("rate-steady", []), t.xruns.get("rate-reloading", [])
    if fs and fb:
        out.append(run_row(f"loadgen at {RELOAD_RATE:,}/s, steady", fs, ["-", "-"]))
        out.append(run_row(f"loadgen at {RELOAD_RATE:,}/s, reloading every "
                           f"{RELOAD_INTERVAL:g} s", fb, ["", ""]))
    out.append(f"| all reloads | | | | | | | {sum(r['n'] for r in reloads)} | "
               + (f"{med(all_ms):.1f} ({max(all_ms):.1f})" if all_ms else "-") + " |")

    def ratio_line(a, b, quiet=False):
        return (", ".join(f"{k} {spread(paired(a, b, k, quiet), lambda v: f'{v:.2f}')}"
                          for k in ("p50", "p99", "p99.9"))
                + f"; req/s {spread(paired(a, b, 'rps', quiet), lambda v: f'{v:.2f}')}; CPU per "
                f"request {spread(paired(a, b, 'cpu_per_100k', quiet), lambda v: f'{v:.2f}')}")
    out += ["", "Reloading ÷ steady, per repeat then the median (min–max):", "",
            "- wrk (saturating), every repeat: " + ratio_line(steady, busy)]
    if fs and fb:
        out += [f"- loadgen at a fixed {RELOAD_RATE:,} req/s, every repeat: "
                + ratio_line(fs, fb)]
    for name, a, b in (("wrk", steady, busy), (f"loadgen at {RELOAD_RATE:,}/s", fs, fb)):
        q, n = n_quiet(a, b)
        if n and q < n:
            out += [f"- {name}, only the repeats where the machine was quiet (other load under "
                    f"{QUIET_PAIR_PCT:.0f} % of a core in both runs; {q} of {n}): "
                    + (ratio_line(a, b, True) if q else "none")]
    return out


def regex_report(plain, waf):
    a, b = plain.runs_of(REGEX_SCEN), waf.runs_of(REGEX_SCEN)
    rs = paired(a, b, "rps")
    out = ["", "### The 2019 regex", "",
           f"The same traffic (bench/wrk-regex.lua: GET /search? with a {REGEX_QUERY_BYTES:,}-"
           "byte query of \"1true-\" repeated, no '=': the 2019 WAF regex's backtracking "
           f"trigger) to bulwark without rules and to bulwark with that regex over "
           f"http.request.uri.query (bench/rules/waf2019.yaml); wrk -t1 -c{CONNS} "
           f"-d{REGEX_DURATION}s, {REPEATS} interleaved repeat(s).", ""]
    for t in (plain, waf):
        if t.failed:
            out += [f"**{t.name}: {t.failed}**", ""]
    head = ["target"] + RUN_HEAD
    out += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    out += [run_row(plain.name, a), run_row(waf.name, b)]
    if rs:
        ok = "within 20 %: meets the bar" if med(rs) >= 0.8 else "**more than 20 % slower**"
        out += ["", f"With the regex ÷ without, req/s per repeat then the median (min–max): "
                f"{spread(rs, lambda v: f'{v:.2f}')} — {ok}; CPU per request "
                f"{spread(paired(a, b, 'cpu_per_100k'), lambda v: f'{v:.2f}')}."]
        q, n = n_quiet(a, b)
        if q < n:
            rq = paired(a, b, "rps", True)
            out += ["", f"Only the repeats where the machine was quiet (other load under "
                    f"{QUIET_PAIR_PCT:.0f} % of a core in both runs; {q} of {n}): "
                    + (f"req/s {spread(rq, lambda v: f'{v:.2f}')}, CPU per request "
                       f"{spread(paired(a, b, 'cpu_per_100k', True), lambda v: f'{v:.2f}')}"
                       if q else "none") + "."]
    return out


# ------------------------------------------------------------------- charts

def charts(targets, outdir):
    """One PNG per figure in outdir (gnuplot bar charts: the median, with
    min-max error bars over the repeats; one panel per scenario where the
    figure is measured in each). Returns the paths written."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no charts (BULWARK_BENCH=1 scripts/install-deps.sh installs it)")
        return []
    tmp = tempfile.mkdtemp(prefix="bulwark-bench-charts.")
    try:
        return draw(targets, outdir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def draw(targets, outdir, tmp):
    def stats(vals):
        vals = [v for v in vals if v == v]  # drop NaN
        return (med(vals), min(vals), max(vals)) if vals else (float("nan"),) * 3

    def datafile(name, rows):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            for label, cols in rows:
                f.write(f'"{label}" ' + " ".join(f"{v:.6g}" for v in cols) + "\n")
        return path

    common = ["set style data histogram", "set style histogram errorbars gap 1 lw 1",
              "set style fill solid 0.7 border -1", "set boxwidth 0.9", "set yrange [0:*]",
              "set grid ytics", "set xtics rotate by 30 right scale 0", "set key off"]
    figures = []  # (png name, title, [(panel title, datafile, plot clause)])

    def per_scenario(key, scale=1.0):
        panels = []
        for scen in SCENARIOS:
            rows = [(t.name, [x * scale for x in stats([r[key] for r in t.runs_of(scen)])])
                    for t in targets if t.runs_of(scen)]
            if rows:
                f = datafile(f"{key}-{scen['name']}.dat", rows)
                panels.append((scen["label"], f"'{f}' using 2:3:4:xtic(1) lc rgb '#4477aa'"))
        return panels

    figures.append(("rps.png", "requests/s (median; bars: min–max over repeats)",
                    per_scenario("rps")))
    figures.append(("cpu.png", "CPU seconds per 100k requests, serving process (lower is better)",
                    per_scenario("cpu_per_100k")))
    lat = []
    for scen in SCENARIOS:
        rows = []
        for t in targets:
            runs = t.runs_of(scen)
            if runs:
                rows.append((t.name, [x for k in ("p50", "p99", "p99.9")
                                      for x in stats([r[k] for r in runs])]))
        if rows:
            f = datafile(f"lat-{scen['name']}.dat", rows)
            lat.append((scen["label"], f"'{f}' using 2:3:4:xtic(1) title 'p50', "
                        f"'' using 5:6:7 title 'p99', '' using 8:9:10 title 'p99.9'"))
    figures.append(("latency.png", "latency ms: p50, p99, p99.9 (median; bars: min–max)", lat))
    rows = [(t.name, [t.peak_kib / 1024] * 3) for t in targets if t.peak_kib]
    if rows:
        figures.append(("rss.png", "peak RSS of the serving process over the load runs, MiB",
                        [("", f"'{datafile('rss.dat', rows)}' using 2:3:4:xtic(1) "
                              "lc rgb '#4477aa'")]))
    rows = [(t.name, [t.idle["bytes_per_conn"]] * 3) for t in targets
            if t.idle and t.idle.get("bytes_per_conn") is not None]
    if rows:
        figures.append(("idle.png", f"user-space bytes per idle keepalive connection "
                        f"({IDLE_CONNS:,} connections)",
                        [("", f"'{datafile('idle.dat', rows)}' using 2:3:4:xtic(1) "
                              "lc rgb '#4477aa'")]))
    written = []
    os.makedirs(outdir, exist_ok=True)
    for png, title, panels in figures:
        if not panels:
            continue
        out = os.path.join(outdir, png)
        gp = [f"set terminal pngcairo size {max(480, 420 * len(panels))},460 noenhanced "
              "font 'sans,9'", f"set output '{out}'",
              f"set multiplot layout 1,{len(panels)} title '{title}'"] + common
        if png == "latency.png":
            gp.append("set key top left")
        for ptitle, clause in panels:
            gp += [f"set title '{ptitle}'", f"plot {clause}"]
        gp.append("unset multiplot")
        script = os.path.join(tmp, png + ".gp")
        with open(script, "w") as f:
            f.write("\n".join(gp) + "\n")
        r = subprocess.run(["gnuplot", script], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"gnuplot failed on {png}: {r.stderr.strip()[-300:]}")
        written.append(out)
    return written


# --------------------------------------------------------------------- main

def main():
    global SYSCALL_METHOD
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        os.sched_setaffinity(0, parse_cpus(LOAD_CPU))
    except OSError as e:
        log(f"cannot pin myself to CPU {LOAD_CPU}: {e}")
    for tool in ("nginx", "wrk", "taskset") + (("haproxy",) if "haproxy" in TARGETS else ()):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (bench/run.sh installs it; run make bench)")

    work = tempfile.mkdtemp(prefix="bulwark-bench.")
    os.makedirs(os.path.join(work, "www"))
    os.makedirs(os.path.join(work, "tmp"))
    line = b"bulwark-bench-0123456789abcdef\n"
    for name, size in (("1k.bin", BODY_SIZE), ("16k.bin", 16 * 1024), ("1m.bin", 1024 * 1024)):
        with open(os.path.join(work, "www", name), "wb") as f:
            f.write((line * (size // len(line) + 1))[:size])

    ports = free_ports(len(TARGETS))
    names = TARGETS if RUN_MAIN else ["origin"]
    targets = [Target(name, port) for name, port in zip(names, ports)]
    by = {t.name: t for t in targets}
    origin = by["origin"]
    bw_version = tool_version([BULWARK_BIN, "version"], r"bulwark (\S+)")
    versions = {"bulwark": f"{bw_version} (tree {bulwark_revision()})",
                "nginx": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
                "haproxy": tool_version(["haproxy", "-v"], r"version (\S+)"),
                "lua": tool_version(["dpkg-query", "-W", "-f", "${Version}\n",
                                     "libnginx-mod-http-lua"]),
                "wrk": tool_version(["wrk", "--version"], r"wrk (\S+)")}
    log(f"work dir {work}; ports " + ", ".join(f"{t.name}={t.port}" for t in targets))
    status = 0
    bw_sections, bw_failures = [], []
    try:
        for t in targets:
            t.errlog = os.path.join(work, f"{t.name}.stderr")
            try:
                if t.name == "origin":
                    start_nginx(t, work, "origin-nginx.conf", LOAD_CPU, t.port)
                elif t.name == "nginx":
                    start_nginx(t, work, "nginx-proxy.conf", PROXY_CPU, origin.port)
                elif t.name == "nginx+lua":
                    start_nginx(t, work, "nginx-lua.conf", PROXY_CPU, origin.port)
                elif t.name == "haproxy":
                    start_haproxy(t, work, origin.port)
                elif t.name == "bulwark":
                    start_bulwark(t, work, origin.port)
                elif t.name == "bulwark+rules":
                    start_bulwark(t, work, origin.port, "bulwark-rules.yaml")
                elif t.name == "relay":
                    start_relay(t, work, origin.port)
                # Every scenario's path answers with the right body (a rule
                # that matched the bench request would answer 403 here).
                for scen in SCENARIOS:
                    ok, detail = probe(t.port, scen["path"], scen["size"])
                    if not ok:
                        raise StartError(f"started but the first request {detail}")
            except NotApplicable as e:
                t.na = True
                t.fail(str(e))
                if t.proc is not None:
                    PROCS.stop(t.proc)
                continue
            except (StartError, OSError, subprocess.SubprocessError) as e:
                t.fail(f"failed to start: {e}")
                if t.proc is not None:
                    PROCS.stop(t.proc)
                if not t.name.startswith("bulwark"):
                    # The reference points must work; a broken bulwark is
                    # reported as a row and the rest still runs.
                    sys.exit(f"bench: {t.name} failed to start: {e}\n"
                             f"bench: logs in {work}")
            if not t.failed:
                log(f"{t.name} ready on 127.0.0.1:{t.port} (pid {t.pid})")

        live = [t for t in targets if not t.failed]
        if WARMUP > 0 and RUN_MAIN:
            log(f"warm-up: {WARMUP:g}s per target")
            for t in live:
                try:
                    wrk(t.port, max(1, int(round(WARMUP))))
                except (RuntimeError, OSError) as e:
                    t.fail(f"warm-up failed: {e}")
        def load_scenario(scen):
            for rep in range(1, REPEATS + 1):
                log(f"{scen['label']}, {scen['duration']}s: repeat {rep}/{REPEATS}")
                for t in targets:
                    if not t.failed:
                        try:
                            load_run(t, rep, origin, scen)
                        except (RuntimeError, ValueError, OSError) as e:
                            t.fail(f"{scen['name']} load run {rep} failed: {e}")
                        time.sleep(0.5)

        # Scenarios with more connections than the main one run after the
        # memory tests: a proxy that has held 1,000 connections has memory
        # for them that the idle test would then reuse instead of measuring.
        many = [s for s in SCENARIOS if s["conns"] > CONNS]
        for scen in SCENARIOS:
            if scen not in many and RUN_MAIN:
                load_scenario(scen)
        # Peak RSS over the load runs so far (all at BENCH_CONNS), before the
        # idle test adds its thousands of connections.
        for t in targets:
            if not t.failed and alive(t):
                t.peak_kib = rss_kib(t.pid, "VmHWM")

        if RUN_MAIN:
            log(f"idle keepalive memory: {IDLE_CONNS:,} connections per target")
        for t in targets:
            if RUN_MAIN and not t.failed and alive(t) and t.name != "relay":
                try:
                    t.idle = idle_memory(t, IDLE_CONNS)
                except (RuntimeError, OSError) as e:
                    t.fail(f"idle-connection test failed: {e}")
                time.sleep(1.0)

        SYSCALL_METHOD = pick_syscall_method(work) if RUN_MAIN else None
        if SYSCALL_METHOD:
            log(f"syscalls per request ({SYSCALL_METHOD}, {SYSCALL_REQS:,} requests)")
            for t in targets:
                if not t.failed and alive(t) and t.name != "relay":
                    try:
                        t.syscalls = syscalls_per_request(t, work, SYSCALL_REQS)
                    except (RuntimeError, OSError, ValueError, ConnectionError) as e:
                        t.fail(f"syscall count failed: {e}")
        elif RUN_MAIN:
            log("neither perf nor strace works here: no syscall counts")
        for scen in many:
            if RUN_MAIN:
                load_scenario(scen)
        for name in BW_SCENARIOS:
            try:
                if name == "reload":
                    bw_sections.append(("reload", reload_scenario(work, origin)))
                elif name == "regex":
                    bw_sections.append(("regex", regex_scenario(work, origin)))
            except (StartError, NotApplicable, RuntimeError, ValueError, OSError) as e:
                log(f"{name} scenario failed: {e}")
                bw_failures.append(f"{name} scenario failed: {e}")
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or a reference target failed: keep the
        # logs only when they explain a failure.
        PROCS.stop_all()
        if not KEEP_WORK and sys.exc_info()[0] is KeyboardInterrupt:
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        PROCS.stop_all()

    text = report(targets, started, versions) if RUN_MAIN else short_header(started, versions)
    extra_out = []
    for name, res in bw_sections:
        extra_out += reload_report(*res) if name == "reload" else regex_report(*res)
        for t in (res[:1] if name == "reload" else res):
            if t.failed:
                bw_failures.append(f"{t.name}: {t.failed}")
    for f in bw_failures:
        extra_out += ["", f"**{f}**"]
    if extra_out:
        text += "\n".join(extra_out) + "\n"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print(text, end="")
    log(f"written to {OUT}")
    try:
        for png in (charts(targets, os.path.dirname(OUT)) if RUN_MAIN else []):
            log(f"chart {png}")
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        log(f"charts not drawn: {e}")
    for t in targets:
        if t.failed:
            log(f"{t.name}: {t.failed}")
            if not t.na:
                status = 1
    if bw_failures:
        status = 1
    if KEEP_WORK or status:
        log(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    # Started in the background by run.sh, this process may have inherited
    # SIGINT as ignored, and so would perf, which is stopped with SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        PROCS.stop_all()
        sys.exit(130)
    finally:
        PROCS.stop_all()
