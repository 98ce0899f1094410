#!/usr/bin/python3
"""bulwark TLS benchmark (`make bench-tls`): bulwark vs nginx terminating TLS,
one worker each, in the same run, on the same certificate and origin.

Two figures per proxy (issue 7's bar: bulwark at least equal on both):
- Handshakes: new TLS connections with no resumption, each doing one small
  request (GET /, 1 KiB from the origin, then close), from BENCH_HS_CLIENTS
  `openssl s_time -new` processes at once for BENCH_HS_DURATION seconds:
  handshakes/s and the proxy's CPU time per handshake. On a 2-core machine
  the clients (which do more public-key work per handshake than the server:
  they verify the ECDSA signature) and the origin share CPU 0 and are the
  limit, so handshakes/s is mostly the client's; the CPU time per handshake
  of the proxy, alone on CPU 1, is the decisive figure.
  No handshake may resume: s_time -new never offers a session (it prints 'r'
  for a resumed one; there must be none) and bulwark's
  bulwark_tls_handshakes_total{resumed="true"} (admin /metrics) must not move.
- Kept-alive TLS requests: wrk -t1 -cBENCH_CONNS -dBENCH_DURATION over
  https: requests/s, p50/p99, CPU seconds of the proxy per 100k requests.

Method, as bench/bench.py (whose /proc and port helpers it imports):
- One origin: nginx, one worker, bench/conf/origin-nginx.conf, 1 KiB file.
- bulwark: bench/conf/bulwark-tls.yaml (workers: 1, TLS listener, upstream
  keepalive 64, access log off, admin on a free port).
- nginx: bench/conf/nginx-tls.conf (worker_processes 1, listen ... ssl,
  TLSv1.2 TLSv1.3, session tickets on, proxy_pass with upstream keepalive 64,
  access_log off).
- One EC P-256 certificate made here with the openssl CLI, served by both.
- Pinning: the proxy under test on CPU 1 (BENCH_PROXY_CPU); origin, load
  generators and this script on CPU 0 (BENCH_LOAD_CPU).
- Interleaved repeats (BENCH_REPEATS): each repeat measures each figure of
  both proxies back to back (ABBA order); medians with (min-max), and the
  median of the per-repeat ratios. Each repeat then loads both proxies at
  once (each with its own clients, both proxies on the proxy CPU), so load
  from outside the benchmark hits both alike: the steadiest comparison of
  CPU per operation on a shared machine (BENCH_SIMULTANEOUS=0 skips it).
- CPU: utime+stime of the serving process (the nginx worker, not its
  master) from /proc/PID/stat before and after each run.
- Every process started here is stopped by its PID (SIGTERM, then SIGKILL
  after a bounded wait), also on Ctrl-C, SIGTERM or an error.

Knobs (environment):
  BULWARK_BIN          binary under test (build/release/bulwark)
  BENCH_DURATION       seconds per keepalive wrk run (10)
  BENCH_HS_DURATION    seconds per handshake run (BENCH_DURATION; s_time counts
                       whole seconds, so at least 1)
  BENCH_HS_CLIENTS     parallel `openssl s_time -new` processes (2)
  BENCH_HS_PROTOCOL    1.2 or 1.3: the handshakes' TLS version (the client's
                       default, TLS 1.3); wrk keeps its default
  BENCH_CONNS          wrk connections (50)
  BENCH_REPEATS        interleaved repeats; medians reported (3)
  BENCH_WARMUP         unmeasured warm-up seconds per proxy (1)
  BENCH_PROXY_CPU / BENCH_LOAD_CPU   pinning (1 / 0)
  BENCH_SIMULTANEOUS   1: also load both proxies at once each repeat (1)
  BENCH_WAIT_QUIET     before each run, wait up to N s for other CPU load to stop (0)
  BENCH_BUSY_PCT / BENCH_BUSY_RETRIES   a run during which other processes
                       used more than BENCH_BUSY_PCT % of a core (30) is done
                       again, up to BENCH_BUSY_RETRIES times (2; 0 in quick
                       mode); the calmest attempt counts
  BENCH_OUT            results file (bench/results/tls.md)
  BENCH_KEEP_WORK=1    keep the temporary directory (configs, certificate, logs)
  BENCH_QUICK=1        smoke test: 2 s runs, 1 repeat (not a result)

Exit status 0 when both proxies were measured and no handshake resumed; 1
otherwise (the table is still written with what was measured).
"""

import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (cpu_ticks, cpus_busy_ticks, free_ports, own_cpu_s,  # noqa: E402
                   parse_cpus, parse_latency, port_open, proc_children)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def env_int(name, default, minimum=0):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        sys.exit(f"tls-bench: {name}={v!r} is not an integer")
    if n < minimum:
        sys.exit(f"tls-bench: {name}={n} is below {minimum}")
    return n


QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
DURATION = env_int("BENCH_DURATION", 2 if QUICK else 10, 1)
HS_DURATION = env_int("BENCH_HS_DURATION", DURATION, 1)
HS_CLIENTS = env_int("BENCH_HS_CLIENTS", 2, 1)
CONNS = env_int("BENCH_CONNS", 50, 1)
REPEATS = env_int("BENCH_REPEATS", 1 if QUICK else 3, 1)
WARMUP = env_int("BENCH_WARMUP", 1)
WAIT_QUIET = env_int("BENCH_WAIT_QUIET", 0)
BUSY_PCT = env_int("BENCH_BUSY_PCT", 30)
BUSY_RETRIES = env_int("BENCH_BUSY_RETRIES", 0 if QUICK else 2)
QUIET_PCT = 15.0
PROXY_CPU = os.environ.get("BENCH_PROXY_CPU", "1")
LOAD_CPU = os.environ.get("BENCH_LOAD_CPU", "0")
BULWARK_BIN = os.environ.get("BULWARK_BIN") or os.path.join(ROOT, "build/release/bulwark")
OUT = os.environ.get("BENCH_OUT") or os.path.join(HERE, "results/tls.md")
KEEP_WORK = os.environ.get("BENCH_KEEP_WORK", "0") == "1"
SIMULTANEOUS = os.environ.get("BENCH_SIMULTANEOUS", "1") == "1"
HS_PROTOCOL = os.environ.get("BENCH_HS_PROTOCOL", "")
if HS_PROTOCOL not in ("", "1.2", "1.3"):
    sys.exit(f"tls-bench: BENCH_HS_PROTOCOL={HS_PROTOCOL!r}: 1.2, 1.3 or empty (the client's default)")
HS_PROTO_FLAG = ["-tls" + HS_PROTOCOL.replace(".", "_")] if HS_PROTOCOL else []
WORK = None  # the temporary directory, set by main()
WRK_SCRIPT = os.path.join(HERE, "wrk-percentiles.lua")
BODY_SIZE = 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 10.0
TARGETS = ["bulwark", "nginx"]


def log(msg):
    print(f"tls-bench: {msg}", file=sys.stderr, flush=True)


class StartError(Exception):
    pass


# ---------------------------------------------------------------- processes

def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


class Procs:
    """Every process started here, stopped by PID: SIGTERM, a bounded wait,
    then SIGKILL. PIDs we did not fork (nginx workers) are killed only if
    they still run the program recorded for them."""

    def __init__(self):
        self.started = []  # Popen
        self.extra = []  # (pid, comm)

    def start(self, argv, stdout, stderr, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                             cwd=ROOT)
        self.started.append(p)
        return p

    def adopt(self, pid, comm):
        self.extra.append((pid, comm))

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
        if p in self.started:
            self.started.remove(p)

    def stop_all(self):
        for p in reversed(list(self.started)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"stopping pid {p.pid}: {e}")
        deadline = time.monotonic() + 2.0
        for pid, comm in self.extra:
            while proc_comm(pid) == comm and time.monotonic() < deadline:
                time.sleep(0.05)  # a worker leaves shortly after its master
            if proc_comm(pid) == comm:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.extra = []


PROCS = Procs()


def tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])
    except OSError:
        return ""


def machine_ticks():
    """Busy clock ticks of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6]


def wait_quiet(limit_s):
    deadline = time.monotonic() + limit_s
    while True:
        m0, w0 = machine_ticks(), time.monotonic()
        time.sleep(1.0)
        m1, w1 = machine_ticks(), time.monotonic()
        pct = (m1 - m0) / CLK_TCK / (w1 - w0) * 100
        if pct <= QUIET_PCT or time.monotonic() >= deadline:
            return pct


def render(template, path, **values):
    values.setdefault("NOFILE", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    with open(os.path.join(HERE, "conf", template)) as f:
        text = string.Template(f.read()).substitute(**values)
    with open(path, "w") as f:
        f.write(text)
    return path


def run(argv, timeout=30):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def tool_version(argv, pattern):
    try:
        r = run(argv, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, r.stdout + r.stderr)
    return m.group(1) if m else "?"


# ------------------------------------------------------------------ targets

class Target:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.proc = None
        self.pid = None  # the serving process (nginx: the worker)
        self.errlog = None
        self.admin_port = None  # bulwark only
        self.failed = None
        self.hs = []  # handshake runs
        self.ka = []  # keepalive runs
        self.sim_hs = []  # handshake runs with both proxies loaded at once
        self.sim_ka = []  # keepalive runs with both proxies loaded at once
        self.tls = {}  # negotiated parameters

    def fail(self, reason):
        if not self.failed:
            self.failed = reason
            log(f"{self.name}: {reason}")

    def alive(self):
        return (self.proc is not None and self.proc.poll() is None
                and os.path.exists(f"/proc/{self.pid}"))


def wait_ready(t, want_line=None):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        rc = t.proc.poll()
        if rc is not None:
            why = f"exited with status {rc}" if rc >= 0 else f"killed by signal {-rc}"
            msg = tail(t.errlog)
            raise StartError(why + (f"; last output:\n{msg}" if msg else ""))
        line_ok = want_line is None or want_line in open(t.errlog, errors="replace").read()
        if line_ok and port_open(t.port):
            return
        time.sleep(0.05)
    msg = tail(t.errlog)
    raise StartError(f"not answering on 127.0.0.1:{t.port} after {START_TIMEOUT:.0f}s"
                     + (f"; last output:\n{msg}" if msg else ""))


def start_nginx(t, work, template, cpu, **values):
    conf = render(template, os.path.join(work, f"{t.name}.conf"), WORK=work, PORT=t.port,
                  **values)
    t.errlog = os.path.join(work, f"{t.name}.stderr")
    chk = run(["nginx", "-t", "-q", "-p", work, "-c", conf], timeout=20)
    if chk.returncode != 0:
        raise StartError(f"nginx -t rejected {conf}:\n{chk.stderr.strip()}")
    with open(t.errlog, "w") as err:
        t.proc = PROCS.start(["nginx", "-p", work, "-c", conf], subprocess.DEVNULL, err, cpu=cpu)
    wait_ready(t)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        kids = proc_children(t.proc.pid)
        if kids:
            for k in kids:
                PROCS.adopt(k, "nginx")
            t.pid = kids[0]
            return
        time.sleep(0.05)
    raise StartError("nginx master started no worker")


def start_bulwark(t, work, origin_port, cert, key):
    if not (os.path.isfile(BULWARK_BIN) and os.access(BULWARK_BIN, os.X_OK)):
        raise StartError(f"{BULWARK_BIN} not found or not executable (run make first)")
    conf = render("bulwark-tls.yaml", os.path.join(work, "bulwark-tls.yaml"), PORT=t.port,
                  ORIGIN_PORT=origin_port, ADMIN_PORT=t.admin_port, CERT=cert, KEY=key)
    chk = run([BULWARK_BIN, "check", "-c", conf], timeout=20)
    if chk.returncode != 0:
        raise StartError(f"bulwark check rejected {conf}:\n{(chk.stderr or chk.stdout).strip()}")
    t.errlog = os.path.join(work, "bulwark.stderr")
    with open(t.errlog, "w") as err:
        t.proc = PROCS.start([BULWARK_BIN, "run", "-c", conf], subprocess.DEVNULL, err,
                             cpu=PROXY_CPU)
    wait_ready(t, want_line=f"listening on 127.0.0.1:{t.port}")
    t.pid = t.proc.pid


def make_cert(work):
    cert, key = os.path.join(work, "bench.pem"), os.path.join(work, "bench.key")
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", key, "-out", cert])
    if r.returncode != 0:
        sys.exit(f"tls-bench: openssl req failed:\n{r.stderr.strip()}")
    return cert, key


def https_get(port, cafile):
    """One request over TLS, verifying the certificate: (status, body)."""
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def tls_params(t):
    """What the benchmark's own client (OpenSSL's defaults, as s_time and wrk
    use) negotiates: protocol, cipher, group, and how many session tickets
    the server sends per handshake."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{t.port}", "-servername",
            "localhost", "-msg", "-ign_eof"] + HS_PROTO_FLAG
    try:
        r = subprocess.run(argv, input="GET / HTTP/1.0\r\n\r\n", capture_output=True,
                           text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return {"error": "s_client timed out"}
    out = r.stdout + r.stderr
    p = {}
    m = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
    if m:
        p["protocol"], p["cipher"] = m.group(1), m.group(2)
    m = re.search(r"^Server Temp Key: ([^\n]+)", out, re.M)
    p["group"] = m.group(1).strip() if m else "?"
    p["tickets"] = len(re.findall(r"^<<< .*Handshake \[length [0-9a-f]+\], NewSessionTicket",
                                  out, re.M))
    return p


# --------------------------------------------------------------- load runs

def bulwark_handshakes(t):
    """(full, resumed) from bulwark_tls_handshakes_total{resumed=...}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{t.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    got = {}
    for m in re.finditer(r'^bulwark_tls_handshakes_total\{[^}]*resumed="(true|false)"[^}]*\}'
                         r'\s+(\d+)', text, re.M):
        got[m.group(1)] = got.get(m.group(1), 0) + int(m.group(2))
    if not got:
        raise RuntimeError("admin /metrics has no bulwark_tls_handshakes_total")
    return got.get("false", 0), got.get("true", 0)


def measure(t, body, origin):
    """Runs body() (the load) with CPU accounting around it; returns
    (body's result, dict of CPU figures)."""
    if WAIT_QUIET > 0:
        pct = wait_quiet(WAIT_QUIET)
        if pct > QUIET_PCT:
            log(f"  machine still busy ({pct:.0f}% of a core) after {WAIT_QUIET}s; running anyway")
    if not t.alive():
        raise RuntimeError(f"died before the run: {tail(t.errlog, 3)}")
    load_cpus = parse_cpus(LOAD_CPU)
    o0, l0 = cpu_ticks(origin.pid), cpus_busy_ticks(load_cpus)
    m0, own0, w0 = machine_ticks(), own_cpu_s(), time.monotonic()
    c0 = cpu_ticks(t.pid)
    res = body()
    if not t.alive():
        raise RuntimeError(f"died during the run: {tail(t.errlog, 3)}")
    c1 = cpu_ticks(t.pid)
    m1, own1, w1 = machine_ticks(), own_cpu_s(), time.monotonic()
    o1, l1 = cpu_ticks(origin.pid), cpus_busy_ticks(load_cpus)
    cpu_s = (c1 - c0) / CLK_TCK
    ours = cpu_s + (o1 - o0) / CLK_TCK + (own1 - own0)
    wall = w1 - w0
    return res, {"cpu_s": cpu_s, "wall": wall,
                 "util_pct": cpu_s / wall * 100,
                 "load_cpu_pct": (l1 - l0) / CLK_TCK / wall * 100 / len(load_cpus),
                 "foreign_pct": max(0.0, ((m1 - m0) / CLK_TCK - ours) / wall * 100)}


def start_s_time(port, seconds, tag):
    """Starts HS_CLIENTS `openssl s_time -new` on the load CPU, each writing
    to its own file (not a pipe nobody reads while the others run)."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-www", "/",
            "-time", str(seconds)] + HS_PROTO_FLAG
    started = []
    for i in range(HS_CLIENTS):
        path = os.path.join(WORK, f"s_time-{tag}-{i}.out")
        with open(path, "w") as f:
            started.append((PROCS.start(argv, f, subprocess.STDOUT, cpu=LOAD_CPU), path))
    return started


def collect_s_time(started, seconds):
    """Waits for start_s_time's clients: (connections, resumed, bytes per
    connection)."""
    deadline = time.monotonic() + seconds + 30
    try:
        for p, _ in started:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"openssl s_time did not finish within {seconds + 30}s")
    finally:
        for p, _ in started:
            PROCS.stop(p)
    conns = resumed = 0
    bytes_read = 0
    for p, path in started:
        with open(path, errors="replace") as f:
            out = f.read()
        m = re.search(r"^(\d+) connections in [\d.]+s; [\d.]+ connections/user sec, "
                      r"bytes read (\d+)", out, re.M)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"openssl s_time failed (status {p.returncode}): {out[-300:]}")
        conns += int(m.group(1))
        bytes_read += int(m.group(2))
        # Progress marks, one character per connection: 'r' for a resumed
        # session, '*' (or the version's letter) for a new one.
        marks = "".join(re.findall(r"^[*rt3]+", out, re.M))
        resumed += marks.count("r")
    return conns, resumed, (bytes_read / conns if conns else 0.0)


def s_time_clients(port, seconds):
    """(connections, resumed, bytes per connection, wall seconds)."""
    w0 = time.monotonic()
    res = collect_s_time(start_s_time(port, seconds, port), seconds)
    return res + (time.monotonic() - w0,)


def handshake_run(t, origin, rep):
    before = bulwark_handshakes(t) if t.name == "bulwark" else None
    (conns, resumed, per_conn, wall), cpu = measure(
        t, lambda: s_time_clients(t.port, HS_DURATION), origin)
    r = dict(cpu)
    r["handshakes"] = conns
    r["hs_per_s"] = conns / wall
    r["cpu_us_per_hs"] = cpu["cpu_s"] / conns * 1e6 if conns else float("nan")
    r["client_resumed"] = resumed
    r["bytes_per_conn"] = per_conn
    note = ""
    if before is not None:
        after = bulwark_handshakes(t)
        r["server_full"] = after[0] - before[0]
        r["server_resumed"] = after[1] - before[1]
        note = f"  server counted {r['server_full']} full, {r['server_resumed']} resumed"
    log(f"  {t.name:8s} handshakes run {rep}: {r['hs_per_s']:8.0f} /s  "
        f"cpu {r['cpu_us_per_hs']:.1f} us/handshake  proxy {r['util_pct']:.0f}% of its core  "
        f"load cpu {r['load_cpu_pct']:.0f}%  {per_conn:.0f} B/conn  "
        f"client-seen resumed {resumed}{note}  other load {r['foreign_pct']:.0f}%")
    if conns == 0:
        raise RuntimeError("no connection completed")
    if per_conn < BODY_SIZE:
        raise RuntimeError(f"only {per_conn:.0f} bytes read per connection: the request "
                           "did not get its 1 KiB response")
    return r


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


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
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sock_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def start_wrk(port, seconds):
    argv = ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency", "--timeout", "5s",
            f"https://127.0.0.1:{port}/"]
    path = os.path.join(WORK, f"wrk-{port}.out")
    with open(path, "w") as f:
        return PROCS.start(argv, f, subprocess.STDOUT, cpu=LOAD_CPU), path


def collect_wrk(started, seconds):
    p, path = started
    try:
        p.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {seconds + 30}s")
    finally:
        PROCS.stop(p)
    with open(path, errors="replace") as f:
        out = f.read()
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited with {p.returncode}: {out[-300:]}")
    return out


def wrk(port, seconds):
    return collect_wrk(start_wrk(port, seconds), seconds)


def keepalive_run(t, origin, rep):
    out, cpu = measure(t, lambda: wrk(t.port, DURATION), origin)
    r = parse_wrk(out)
    r.update(cpu)
    r["cpu_per_100k"] = (cpu["cpu_s"] / r["requests"] * 100000 if r["requests"]
                         else float("nan"))
    bad = ""
    if r["non2xx"] or r["sock_errors"]:
        bad = f"  ({r['non2xx']} non-2xx, {r['sock_errors']} socket errors)"
    log(f"  {t.name:8s} keepalive  run {rep}: {r['rps']:8.0f} req/s  p50 {r['p50']:.3f} ms  "
        f"p99 {r['p99']:.3f} ms  cpu {r['cpu_per_100k']:.3f} s/100k  "
        f"proxy {r['util_pct']:.0f}% of its core  load cpu {r['load_cpu_pct']:.0f}%  "
        f"other load {r['foreign_pct']:.0f}%{bad}")
    if r["non2xx"] or r["sock_errors"]:
        raise RuntimeError(f"wrk saw errors:{bad}")
    return r


def run_calm(phase, t, origin, rep):
    """One measured run; done again (up to BENCH_BUSY_RETRIES times) while
    something outside the benchmark used more than BENCH_BUSY_PCT % of a
    core during it. Keeps the calmest attempt."""
    best = None
    for attempt in range(BUSY_RETRIES + 1):
        r = phase(t, origin, rep)
        if best is None or r["foreign_pct"] < best["foreign_pct"]:
            best = r
        if r["foreign_pct"] <= BUSY_PCT:
            break
        if attempt < BUSY_RETRIES:
            log(f"  other load was {r['foreign_pct']:.0f}% of a core: once more")
            time.sleep(1.0)
    return best


def simultaneous_run(targets, origin, rep):
    """Both proxies loaded at the same time, each by its own clients on the
    load CPU, both proxies on the proxy CPU: whatever else the machine is
    doing, it does it to both alike. Only the CPU time per operation is
    compared from these runs (each proxy has half a core or so)."""
    live = [t for t in targets if not t.failed]
    if len(live) < 2:
        return
    for t in live:
        if not t.alive():
            raise RuntimeError(f"{t.name} died before the run: {tail(t.errlog, 3)}")
    before = {t.name: bulwark_handshakes(t) for t in live if t.name == "bulwark"}
    c0 = {t.name: cpu_ticks(t.pid) for t in live}
    w0 = time.monotonic()
    started = {t.name: start_s_time(t.port, HS_DURATION, f"sim-{t.name}") for t in live}
    got = {name: collect_s_time(s, HS_DURATION) for name, s in started.items()}
    wall = time.monotonic() - w0
    c1 = {t.name: cpu_ticks(t.pid) for t in live}
    for t in live:
        conns, resumed, per_conn = got[t.name]
        r = {"handshakes": conns, "hs_per_s": conns / wall, "client_resumed": resumed,
             "cpu_s": (c1[t.name] - c0[t.name]) / CLK_TCK}
        r["cpu_us_per_hs"] = r["cpu_s"] / conns * 1e6 if conns else float("nan")
        if t.name in before:
            after = bulwark_handshakes(t)
            r["server_resumed"] = after[1] - before[t.name][1]
        if per_conn < BODY_SIZE:
            raise RuntimeError(f"{t.name}: only {per_conn:.0f} bytes read per connection")
        t.sim_hs.append(r)
    log(f"  simultaneous handshakes run {rep}: " + "  ".join(
        f"{t.name} {t.sim_hs[-1]['hs_per_s']:.0f}/s {t.sim_hs[-1]['cpu_us_per_hs']:.1f} us/handshake"
        for t in live))
    time.sleep(0.5)
    c0 = {t.name: cpu_ticks(t.pid) for t in live}
    started = {t.name: start_wrk(t.port, DURATION) for t in live}
    outs = {name: collect_wrk(s, DURATION) for name, s in started.items()}
    c1 = {t.name: cpu_ticks(t.pid) for t in live}
    for t in live:
        r = parse_wrk(outs[t.name])
        r["cpu_s"] = (c1[t.name] - c0[t.name]) / CLK_TCK
        r["cpu_per_100k"] = (r["cpu_s"] / r["requests"] * 100000 if r["requests"]
                             else float("nan"))
        if r["non2xx"] or r["sock_errors"]:
            raise RuntimeError(f"{t.name}: wrk saw {r['non2xx']} non-2xx, "
                               f"{r['sock_errors']} socket errors")
        t.sim_ka.append(r)
    log(f"  simultaneous keepalive  run {rep}: " + "  ".join(
        f"{t.name} {t.sim_ka[-1]['rps']:.0f} req/s {t.sim_ka[-1]['cpu_per_100k']:.3f} s/100k"
        for t in live))


# ------------------------------------------------------------------- report

def med(runs, key):
    vals = [r[key] for r in runs if key in r]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(v, nd):
    if v is None:
        return "—"
    m, lo, hi = v
    if len(set((round(lo, nd), round(hi, nd)))) == 1:
        return f"{m:,.{nd}f}"
    return f"{m:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})"


def paired_ratio(a_runs, b_runs, key):
    """Median (min, max) of the per-repeat ratios a/b: each repeat measures
    both proxies back to back (ABBA order), so a ratio is taken under the
    same conditions, which matters on a machine others use too."""
    ratios = [a[key] / b[key] for a, b in zip(a_runs, b_runs)
              if key in a and key in b and b[key]]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def derive(t):
    """Capacity of one proxy core, from the CPU time per operation: what the
    proxy could do with its core to itself, whatever the load generator
    managed to send."""
    for r in t.hs:
        if r.get("cpu_us_per_hs"):
            r["hs_per_cpu_s"] = 1e6 / r["cpu_us_per_hs"]
    for r in t.ka:
        if r.get("cpu_per_100k"):
            r["req_per_cpu_s"] = 100000 / r["cpu_per_100k"]


ROWS = [  # label, runs attr, key, decimals, higher is better (None: context)
    ("TLS handshakes/s (new, no resumption), measured", "hs", "hs_per_s", 0, True),
    ("proxy CPU µs per handshake", "hs", "cpu_us_per_hs", 1, False),
    ("handshakes per proxy CPU second (1e6 / µs)", "hs", "hs_per_cpu_s", 0, True),
    ("proxy busy during handshake runs, % of its core", "hs", "util_pct", 0, None),
    ("other load during handshake runs, % of a core", "hs", "foreign_pct", 0, None),
    ("kept-alive TLS requests/s, measured", "ka", "rps", 0, True),
    ("p50 latency, ms", "ka", "p50", 3, False),
    ("p99 latency, ms", "ka", "p99", 3, False),
    ("proxy CPU s per 100k requests", "ka", "cpu_per_100k", 3, False),
    ("requests per proxy CPU second", "ka", "req_per_cpu_s", 0, True),
    ("proxy busy during keepalive runs, % of its core", "ka", "util_pct", 0, None),
    ("other load during keepalive runs, % of a core", "ka", "foreign_pct", 0, None),
    ("both at once: proxy CPU µs per handshake", "sim_hs", "cpu_us_per_hs", 1, False),
    ("both at once: proxy CPU s per 100k requests", "sim_ka", "cpu_per_100k", 3, False),
]


def report(targets, started, versions):
    by = {t.name: t for t in targets}
    bw, ng = by["bulwark"], by["nginx"]
    for t in targets:
        derive(t)
    lines = []
    lines.append("# TLS benchmark: bulwark vs nginx")
    lines.append("")
    lines.append(f"{started:%Y-%m-%d %H:%M} UTC, {platform.node()}: {cpu_model()}, "
                 f"{os.cpu_count()} CPUs, Linux {platform.release()}. "
                 f"bulwark {versions['bulwark']}, nginx {versions['nginx']}, "
                 f"{versions['openssl']}, wrk {versions['wrk']}.")
    lines.append("")
    lines.append(f"One worker each, proxy on CPU {PROXY_CPU}; origin (nginx, 1 KiB), load "
                 f"generators and harness on CPU {LOAD_CPU}. One EC P-256 certificate for "
                 f"both. Handshakes: {HS_CLIENTS} × `openssl s_time -new -www /"
                 f"{' ' + HS_PROTO_FLAG[0] if HS_PROTO_FLAG else ''}` for "
                 f"{HS_DURATION} s (a full handshake and one request per connection). "
                 f"Keepalive: `wrk -t1 -c{CONNS} -d{DURATION}s` over https. "
                 f"{REPEATS} repeat(s), each running both proxies back to back in ABBA "
                 "order: median (min–max); the ratio is the median (min–max) of the "
                 "per-repeat ratios."
                 + (" Each repeat then loads both proxies at once (each with its own "
                    "clients; both proxies share CPU 1), the \"both at once\" rows: "
                    "whatever else runs on the machine then slows both alike, so their "
                    "CPU per operation is the steadiest comparison on a shared machine."
                    if SIMULTANEOUS else "")
                 + (" **Quick mode: a smoke test, not a result.**" if QUICK else ""))
    lines.append("")
    lines.append("| | bulwark | nginx | bulwark/nginx |")
    lines.append("|---|---:|---:|---:|")
    verdict = []
    for label, attr, key, nd, better in ROWS:
        a_runs, b_runs = getattr(bw, attr), getattr(ng, attr)
        a, b = med(a_runs, key), med(b_runs, key)
        rr = paired_ratio(a_runs, b_runs, key)
        lines.append(f"| {label} | {fmt(a, nd)} | {fmt(b, nd)} | {fmt(rr, 2)} |")
        if better is not None and rr is not None:
            ok = rr[0] >= 1.0 if better else rr[0] <= 1.0
            verdict.append(f"{label.split(',')[0].split(' (')[0]}: "
                           f"{'at least equal' if ok else 'behind'}")
    lines.append("")
    lines.append("Bulwark vs nginx (median of the paired ratios): " + "; ".join(verdict) + ".")
    lines.append("")
    hs_util = [r["util_pct"] for t in targets for r in t.hs]
    ka_util = [r["util_pct"] for t in targets for r in t.ka]
    loads = [r["load_cpu_pct"] for t in targets for r in t.hs + t.ka]
    if loads and hs_util and ka_util and max(hs_util + ka_util) < 90 and min(loads) > 90:
        lines.append(f"The measured rates are the load side's limit, not the proxies': CPU "
                     f"{LOAD_CPU} (clients, wrk, origin) was {min(loads):.0f}–{max(loads):.0f} % "
                     f"busy while the proxy used at most {max(hs_util + ka_util):.0f} % of "
                     f"CPU {PROXY_CPU}. The proxy's CPU per handshake and per request (and "
                     "the per-CPU-second rates derived from them) are what compare the "
                     "proxies here.")
        lines.append("")
    lines.append("Negotiated by OpenSSL's default client (what s_time and wrk use)"
                 + (f", here with {HS_PROTO_FLAG[0]} as the handshakes," if HS_PROTO_FLAG else "")
                 + " and session tickets sent per full handshake:")
    lines.append("")
    for t in targets:
        p = t.tls
        lines.append(f"- {t.name}: {p.get('protocol', '?')}, {p.get('cipher', '?')}, "
                     f"{p.get('group', '?')}, {p.get('tickets', '?')} ticket(s)")
    lines.append("")
    res = [r.get("server_resumed") for r in bw.hs + bw.sim_hs if "server_resumed" in r]
    cres = sum(r["client_resumed"] for t in targets for r in t.hs + t.sim_hs)
    lines.append(f"Resumed handshakes during the handshake runs: bulwark's "
                 f"`bulwark_tls_handshakes_total{{resumed=\"true\"}}` moved by "
                 f"{sum(res) if res else '?'}; s_time saw {cres} resumed connection(s).")
    foreign = [r["foreign_pct"] for t in targets for r in t.hs + t.ka]
    if foreign and max(foreign) > 10:
        lines.append(f"Other load on the machine (not the benchmark's) during the runs: "
                     f"{min(foreign):.0f}–{max(foreign):.0f} % of a core: figures are noisier.")
    for t in targets:
        if t.failed:
            lines.append(f"**{t.name}: {t.failed}**")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- main

def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        os.sched_setaffinity(0, parse_cpus(LOAD_CPU))
    except OSError as e:
        log(f"cannot pin myself to CPU {LOAD_CPU}: {e}")
    for tool in ("nginx", "wrk", "taskset", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"tls-bench: {tool} not found (BULWARK_BENCH=1 scripts/install-deps.sh)")

    global WORK
    work = WORK = tempfile.mkdtemp(prefix="bulwark-tls-bench.")
    os.makedirs(os.path.join(work, "www"))
    os.makedirs(os.path.join(work, "tmp"))
    line = b"bulwark-bench-0123456789abcdef\n"
    with open(os.path.join(work, "www", "1k.bin"), "wb") as f:
        f.write((line * (BODY_SIZE // len(line) + 1))[:BODY_SIZE])
    cert, key = make_cert(work)

    origin_port, bw_port, bw_admin, ng_port = free_ports(4)
    origin = Target("origin", origin_port)
    bw, ng = Target("bulwark", bw_port), Target("nginx", ng_port)
    bw.admin_port = bw_admin
    targets = [bw, ng]
    versions = {"bulwark": tool_version([BULWARK_BIN, "version"], r"bulwark (\S+)"),
                "nginx": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
                "openssl": tool_version(["openssl", "version"], r"(OpenSSL \S+)"),
                "wrk": tool_version(["wrk", "-v"], r"wrk (\S+)")}
    r = run(["git", "-C", ROOT, "log", "-1", "--format=%h"])
    versions["bulwark"] += f" ({r.stdout.strip() or '?'})"
    log(f"work dir {work}; ports origin={origin_port} bulwark={bw_port} "
        f"(admin {bw_admin}) nginx={ng_port}")
    status = 0
    try:
        try:
            start_nginx(origin, work, "origin-nginx.conf", LOAD_CPU, ORIGIN_PORT=origin_port)
        except StartError as e:
            sys.exit(f"tls-bench: the origin failed to start: {e}\ntls-bench: logs in {work}")
        for t in targets:
            try:
                if t.name == "bulwark":
                    start_bulwark(t, work, origin_port, cert, key)
                else:
                    start_nginx(t, work, "nginx-tls.conf", PROXY_CPU, ORIGIN_PORT=origin_port,
                                CERT=cert, KEY=key)
                st, body = https_get(t.port, cert)
                if st != 200 or len(body) != BODY_SIZE:
                    raise StartError(f"the first request got HTTP {st} with {len(body)} bytes")
                t.tls = tls_params(t)
                log(f"{t.name} ready on 127.0.0.1:{t.port} (pid {t.pid}): "
                    f"{t.tls.get('protocol')}, {t.tls.get('cipher')}, {t.tls.get('group')}, "
                    f"{t.tls.get('tickets')} ticket(s)")
            except (StartError, OSError, ValueError, subprocess.SubprocessError) as e:
                t.fail(f"failed to start: {e}")
                if t.proc is not None:
                    PROCS.stop(t.proc)
        if WARMUP > 0:
            log(f"warm-up: {WARMUP}s per proxy")
            for t in targets:
                if not t.failed:
                    try:
                        wrk(t.port, WARMUP)
                    except (RuntimeError, OSError) as e:
                        t.fail(f"warm-up failed: {e}")
        for rep in range(1, REPEATS + 1):
            # ABBA: each figure of the two proxies is measured back to back,
            # and who goes first alternates between repeats.
            order = targets if rep % 2 else list(reversed(targets))
            log(f"repeat {rep}/{REPEATS}: handshakes {HS_DURATION}s, keepalive {DURATION}s")
            for phase, runs, seq in ((handshake_run, "hs", order),
                                     (keepalive_run, "ka", order[::-1])):
                for t in seq:
                    if t.failed:
                        continue
                    try:
                        getattr(t, runs).append(run_calm(phase, t, origin, rep))
                    except (RuntimeError, ValueError, OSError) as e:
                        t.fail(f"run {rep} failed: {e}")
                    time.sleep(0.5)
            if SIMULTANEOUS:
                try:
                    simultaneous_run(targets, origin, rep)
                except (RuntimeError, ValueError, OSError) as e:
                    log(f"simultaneous run {rep} failed: {e}")
                time.sleep(0.5)
    except BaseException:
        PROCS.stop_all()
        if not KEEP_WORK and sys.exc_info()[0] is KeyboardInterrupt:
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        PROCS.stop_all()

    for t in targets:
        if any(r.get("server_resumed", 0) or r["client_resumed"] for r in t.hs + t.sim_hs):
            t.fail("some handshakes were resumptions: the handshake figure is not valid")
    text = report(targets, started, versions)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print(text, end="")
    log(f"written to {OUT}")
    if any(t.failed for t in targets):
        status = 1
    if KEEP_WORK or status:
        log(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
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
