#!/usr/bin/python3
"""Soak test of the sanitizer build (`make soak`; issue 6 point 5; not in CI).

SOAK_SECONDS (600) of mixed traffic against build/asan/bulwark (two workers,
the admin API, a plain and a TLS listener, the demo's rulesets and feature
file), with a reload every 10 s alternating a valid change and an invalid
one. It passes when, at the end:

  - every response was what its scenario expects (status, body bytes, framing,
    connection close), the load client counted no failure, and the only 5xx
    are the ones a scenario provokes (504 from an origin that stalls past
    read_timeout, 502 from one that closes without answering), also as bulwark
    counted them in /metrics and wrote them in its access log;
  - every reload was answered as its change deserves (200 valid, 422 invalid)
    and the rule a valid one added acts at once;
  - once the load stops, bulwark's descriptors come back to the baseline:
    no downstream connection left, no other descriptor more than at the
    start, and upstream connections no more than the idle pools may keep;
  - RSS is flat after warm-up (see rss_verdict for the definition);
  - SIGTERM ends bulwark with exit status 0 and its stderr holds no
    AddressSanitizer, LeakSanitizer or UBSan ("runtime error:") report.

The traffic: tests/tools/loadgen (build/asan/tools/loadgen, itself built
without sanitizers) for the bulk, at SOAK_RATE requests/s in all (300):
keep-alive and a new connection per request, 1 KiB, 64 KiB and 1 MiB bodies,
Content-Length and chunked, plus rule-blocked requests; and Python clients for
what it cannot do: pipelined requests, HTTP/1.0, chunked and large uploads
(echoed and checked by checksum), clients that abort mid-upload, mid-response
or mid-head, a slow reader, malformed requests (400), requests over TLS (full
and resumed handshakes), plain HTTP to the TLS port, rule actions (403, 308,
429) and the provoked 502/504.

The origins: nginx from Debian for the static bodies (Content-Length; the
/c/ location passes them through sub_filter, which makes them chunked) and
this script in --origin mode (a threaded Python origin) for uploads, the
/api/ echo and the provoked failures.

Knobs (environment): SOAK_SECONDS (600), SOAK_RATE (300), SOAK_QUICK=1 (a
smoke run: 60 s unless SOAK_SECONDS says otherwise, samples every 5 s),
SOAK_SAMPLE (seconds between samples: 10), SOAK_RELOAD_EVERY (10),
BULWARK_BIN (build/asan/bulwark), SOAK_LOADGEN (build/asan/tools/loadgen),
SOAK_OUT (build/soak). The work directory (configs, logs) is
SOAK_OUT/work, kept after the run and replaced by the next one; the report is
SOAK_OUT/report.md, also printed. Exit status 0 on pass, 1 on failure (the
reasons are listed first in the report), 2 when it could not run.

Only 127.0.0.1 is used. Every loop is bounded in time and count; every
process started is stopped by its PID. Python standard library only.
"""
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer")
IO_TIMEOUT = 15.0  # per socket operation of a Python client
MiB = 1 << 20


def env_float(name, default):
    v = os.environ.get(name)
    return float(v) if v not in (None, "") else default


def pattern(n, offset=0):
    """Deterministic body bytes (the nginx files and the checks)."""
    block = bytes((i * 7 + 3) % 251 for i in range(251))
    reps = (n + offset) // 251 + 2
    return (block * reps)[offset:offset + n]


BODIES = {"1k.bin": pattern(1024), "64k.bin": pattern(64 * 1024, 5), "1m.bin": pattern(MiB, 17)}


# --------------------------------------------------------------------------
# The Python origin (--origin PORTFILE): uploads, /api/, provoked failures.

class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection from bulwark is dropped after this

    def log_message(self, *args):
        pass

    def version_string(self):
        return "soak-origin/1"

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        h = hashlib.sha256()
        n = 0
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    d = self.rfile.read(min(left, 65536))
                    if not d:
                        raise ConnectionError("eof in chunk")
                    h.update(d)
                    n += len(d)
                    left -= len(d)
                self.rfile.readline(8)
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                d = self.rfile.read(min(left, 65536))
                if not d:
                    raise ConnectionError("eof in body")
                h.update(d)
                n += len(d)
                left -= len(d)
        return n, h.hexdigest()

    def answer(self, status, body, chunked=False, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if chunked:
            for i in range(0, len(body), 3000):
                part = body[i:i + 3000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def handle_any(self):
        try:
            n, sha = self.read_body()
        except (ValueError, ConnectionError):
            self.close_connection = True
            return
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        path = url.path
        if path == "/healthz":
            self.answer(200, b"ok\n", ctype="text/plain")
        elif path == "/up/echo" or path.startswith("/api/"):
            body = json.dumps({"method": self.command, "path": path, "bytes": n,
                               "sha256": sha}).encode() + b"\n"
            self.answer(200, body, chunked=q.get("te") == ["chunked"])
        elif path == "/flaky/stall":
            time.sleep(min(float(q.get("ms", ["1500"])[0]), 5000) / 1000)
            self.answer(200, b"late\n", ctype="text/plain")
        elif path == "/flaky/close":
            self.close_connection = True  # no answer at all: bulwark says 502
        else:
            self.answer(404, b'{"error":"not found"}\n')

    do_GET = do_POST = do_PUT = do_HEAD = handle_any


def run_origin(portfile):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), OriginHandler)
    srv.daemon_threads = True
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    srv.serve_forever(poll_interval=0.5)


# --------------------------------------------------------------------------
# A small HTTP/1.1 client on raw sockets, strict about framing.

class CheckFailed(Exception):
    pass


class Conn:
    def __init__(self, port, tls_ctx=None, session=None, rcvbuf=None, timeout=IO_TIMEOUT):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost", session=session)
        self.sock = s
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            return False
        self.buf += d
        return True

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise CheckFailed("header line too long")
            if not self._fill():
                raise EOFError("closed before a full line")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed with {n - len(self.buf)} body bytes missing")
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_response(self, method="GET"):
        """(status, headers {lower name: value}, body). Interim 1xx skipped."""
        while True:
            line = self.read_line()
            m = re.match(rb"HTTP/1\.([01]) (\d{3}) ", line + b" ")
            if not m:
                raise CheckFailed(f"bad status line {line[:80]!r}")
            status = int(m.group(2))
            headers = {}
            while True:
                h = self.read_line()
                if not h:
                    break
                k, _, v = h.partition(b":")
                k = k.decode("latin-1").lower()
                v = v.strip().decode("latin-1")
                if k in headers and k in ("content-length", "transfer-encoding"):
                    raise CheckFailed(f"repeated {k}")
                headers[k] = v
            if 100 <= status < 200:
                continue
            break
        if method == "HEAD" or status in (204, 304):
            return status, headers, b""
        te = headers.get("transfer-encoding")
        if te is not None:
            if "content-length" in headers:
                raise CheckFailed("both Content-Length and Transfer-Encoding")
            if te.lower() != "chunked":
                raise CheckFailed(f"transfer-encoding {te!r}")
            body = bytearray()
            while True:
                size_line = self.read_line()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self.read_line():
                        pass
                    break
                body += self.read_exact(size)
                if self.read_exact(2) != b"\r\n":
                    raise CheckFailed("chunk not followed by CRLF")
            return status, headers, bytes(body)
        if "content-length" in headers:
            return status, headers, self.read_exact(int(headers["content-length"]))
        body = bytearray(self.buf)
        self.buf = b""
        while True:
            d = self.sock.recv(65536)
            if not d:
                break
            body += d
        return status, headers, bytes(body)

    def expect_close(self):
        """The server closes: EOF (or a reset) with nothing more sent."""
        try:
            more = self.buf + self.sock.recv(4096)
        except ConnectionResetError:
            more = b""
        if more:
            raise CheckFailed(f"bytes after the last response: {more[:60]!r}")

    def abort(self, rst=False):
        if rst:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def req(method, path, headers=(), body=b"", version="1.1", host="soak.example"):
    lines = [f"{method} {path} HTTP/{version}", f"Host: {host}", "User-Agent: soak/1 (bulwark)"]
    lines += list(headers)
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked_body(data, rnd):
    out = bytearray()
    i = 0
    while i < len(data):
        n = rnd.randint(1, 16384)
        part = data[i:i + n]
        out += b"%x\r\n%s\r\n" % (len(part), part)
        i += n
    out += b"0\r\n\r\n"
    return bytes(out)


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def check_static(status, body, name):
    expect(status == 200, f"status {status} for {name}")
    expect(body == BODIES[name], f"body of {name}: {len(body)} bytes, not the file's")


def check_echo(status, headers, body, n, data):
    expect(status == 200, f"upload: status {status}: {body[:100]!r}")
    j = json.loads(body)
    expect(j["bytes"] == n, f"upload: origin got {j['bytes']} bytes of {n}")
    expect(j["sha256"] == hashlib.sha256(data).hexdigest(), "upload: checksum differs")


# --------------------------------------------------------------------------
# Scenarios. Each takes (ctx, rnd) and returns the list of outcomes (a status
# or a word like "aborted"); a CheckFailed (or any other error) is a failure.

def sc_pipelined(ctx, rnd):
    c = Conn(ctx.port)
    try:
        plan = [("GET", "/s/1k.bin", "1k.bin"), ("GET", "/c/64k.bin", "64k.bin"),
                ("HEAD", "/s/64k.bin", None), ("GET", "/s/1k.bin", "1k.bin")]
        rnd.shuffle(plan)
        data = b"".join(req(m, p) for m, p, _ in plan[:-1])
        m, p, _ = plan[-1]
        data += req(m, p, ["Connection: close"])
        c.send(data)
        out = []
        for m, p, name in plan:
            status, h, body = c.read_response(m)
            if m == "HEAD":
                expect(status == 200 and body == b"", f"HEAD status {status}")
            else:
                check_static(status, body, name)
            out.append(status)
        c.expect_close()
        return out
    finally:
        c.close()


def sc_http10(ctx, rnd):
    c = Conn(ctx.port)
    try:
        name = rnd.choice(["1k.bin", "64k.bin"])
        c.send(req("GET", f"/{rnd.choice('sc')}/{name}", version="1.0"))
        status, h, body = c.read_response()
        check_static(status, body, name)
        c.expect_close()
        return [status]
    finally:
        c.close()


def sc_upload(ctx, rnd, tls=False, sizes=(0, 256 * 1024), per_conn=2, chunked=None):
    c = Conn(ctx.tls_port if tls else ctx.port, ctx.tls_ctx if tls else None)
    try:
        out = []
        for _ in range(per_conn):
            n = rnd.randint(*sizes)
            data = rnd.randbytes(n)
            use_chunked = rnd.random() < 0.5 if chunked is None else chunked
            te = "?te=chunked" if rnd.random() < 0.5 else ""
            if use_chunked:
                c.send(req("POST", "/up/echo" + te, ["Transfer-Encoding: chunked"])
                       + chunked_body(data, rnd))
            elif n and rnd.random() < 0.3:
                # Expect: 100-continue: bulwark answers 100, then the body goes.
                c.send(req("POST", "/up/echo" + te, [f"Content-Length: {n}",
                                                     "Expect: 100-continue"]))
                line = c.read_line()
                expect(line.startswith(b"HTTP/1.1 100 "), f"100-continue: got {line[:60]!r}")
                while c.read_line():
                    pass
                c.send(data)
            else:
                c.send(req("POST", "/up/echo" + te, [f"Content-Length: {n}"]) + data)
            status, h, body = c.read_response("POST")
            check_echo(status, h, body, n, data)
            out.append(status)
        return out
    finally:
        c.close()


def sc_upload_large(ctx, rnd):
    return sc_upload(ctx, rnd, sizes=(MiB, 4 * MiB), per_conn=1)


def sc_abort_upload(ctx, rnd):
    c = Conn(ctx.port)
    try:
        n = MiB
        if rnd.random() < 0.5:
            c.send(req("POST", "/up/echo", [f"Content-Length: {n}"]) + rnd.randbytes(128 * 1024))
        else:
            c.send(req("POST", "/up/echo", ["Transfer-Encoding: chunked"])
                   + chunked_body(rnd.randbytes(128 * 1024), rnd)[:-5])
        time.sleep(0.05)
    finally:
        c.abort(rst=rnd.random() < 0.5)
    return ["aborted"]


def sc_abort_response(ctx, rnd):
    c = Conn(ctx.port)
    try:
        c.send(req("GET", f"/{rnd.choice('sc')}/1m.bin"))
        got = 0
        want = rnd.randint(1, 256 * 1024)
        while got < want:
            d = c.sock.recv(65536)
            expect(d, "closed before the abort point")
            got += len(d)
    finally:
        c.abort(rst=rnd.random() < 0.5)
    return ["aborted"]


def sc_abort_head(ctx, rnd):
    c = Conn(ctx.port)
    try:
        full = req("GET", "/s/1k.bin", ["Accept: */*"])
        c.send(full[:rnd.randint(1, len(full) - 1)])
        time.sleep(0.02)
    finally:
        c.abort(rst=rnd.random() < 0.5)
    return ["aborted"]


def sc_slow_reader(ctx, rnd):
    c = Conn(ctx.port, rcvbuf=8192)
    try:
        name = "1m.bin"
        c.send(req("GET", f"/{rnd.choice('sc')}/{name}"))
        c.sock.settimeout(IO_TIMEOUT)
        # Read the head, then the body 8 KiB at a time every 10 ms (~800 KB/s).
        orig = c._fill

        def slow_fill():
            time.sleep(0.01)
            d = c.sock.recv(8192)
            if not d:
                return False
            c.buf += d
            return True
        c._fill = slow_fill
        status, h, body = c.read_response()
        c._fill = orig
        check_static(status, body, name)
        return [status]
    finally:
        c.close()


def sc_idle_keepalive(ctx, rnd):
    """One request, then idle past limits.keepalive_timeout (10 s): bulwark
    closes the connection."""
    c = Conn(ctx.port, timeout=IO_TIMEOUT + 15)
    try:
        c.send(req("GET", "/s/1k.bin"))
        status, h, body = c.read_response()
        check_static(status, body, "1k.bin")
        t0 = time.monotonic()
        c.expect_close()
        idle = time.monotonic() - t0
        expect(8 <= idle <= 20, f"idle connection closed after {idle:.1f} s, not ~10 s")
        return [status, "closed-when-idle"]
    finally:
        c.close()


# Malformed requests: raw bytes, the status bulwark answers, then a close.
MALFORMED = [
    ("CL and TE", b"POST /up/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("control char in target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("space in header name", b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n"),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bad Content-Length", b"POST /up/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n"),
    ("no Host in 1.1", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
    ("bare LF soup", b"GET / HTTP/1.1\nHost: a\n\x00\n\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
]


def sc_malformed(ctx, rnd):
    name, raw = MALFORMED[ctx.next_index("malformed") % len(MALFORMED)]
    c = Conn(ctx.port)
    try:
        c.send(raw)
        status, h, body = c.read_response()
        expect(status == 400, f"malformed ({name}): status {status}")
        c.expect_close()
        return [status]
    finally:
        c.close()


def sc_tls(ctx, rnd):
    session = ctx.tls_session if rnd.random() < 0.5 else None
    c = Conn(ctx.tls_port, ctx.tls_ctx, session=session)
    try:
        out = ["resumed" if c.sock.session_reused else "full-handshake"]
        for _ in range(2):
            name = rnd.choice(list(BODIES))
            c.send(req("GET", f"/{rnd.choice('sc')}/{name}"))
            status, h, body = c.read_response()
            check_static(status, body, name)
            out.append(status)
        data = rnd.randbytes(rnd.randint(0, 64 * 1024))
        c.send(req("POST", "/up/echo", ["Transfer-Encoding: chunked"]) + chunked_body(data, rnd))
        status, h, body = c.read_response("POST")
        check_echo(status, h, body, len(data), data)
        out.append(status)
        # A TLS 1.3 ticket arrives after the handshake: take the session now.
        if c.sock.session is not None:
            ctx.tls_session = c.sock.session
        return out
    finally:
        c.close()


def sc_plain_to_tls(ctx, rnd):
    c = Conn(ctx.tls_port)
    try:
        c.send(req("GET", "/s/1k.bin"))
        status, h, body = c.read_response()
        expect(status == 400, f"plain HTTP to the TLS port: status {status}")
        c.expect_close()
        return [status]
    finally:
        c.close()


def sc_rules(ctx, rnd):
    c = Conn(ctx.port)
    try:
        out = []
        c.send(req("GET", "/admin/users"))
        status, h, body = c.read_response()
        expect(status == 403 and body == b"admin is internal\n", f"/admin: {status} {body[:60]!r}")
        out.append(status)
        c.send(req("GET", "/v0/items?page=2"))
        status, h, body = c.read_response()
        expect(status == 308 and h.get("location") == "/api/?page=2",
               f"/v0/: {status} location {h.get('location')!r}")
        out.append(status)
        c.send(req("GET", "/api/items"))
        status, h, body = c.read_response()
        expect(status in (200, 429), f"/api/: {status}")
        if status == 200:
            expect(json.loads(body)["path"] == "/api/items", f"/api/ echo: {body[:80]!r}")
        out.append(status)
        c.send(req("GET", "/s/1k.bin", ["User-Agent: sqlmap/1.7"]))
        status, h, body = c.read_response()
        expect(status == 403, f"scanner: {status}")
        out.append(status)
        return out
    finally:
        c.close()


def sc_provoked(ctx, rnd):
    c = Conn(ctx.port)
    try:
        if ctx.next_index("provoked") % 2 == 0:
            c.send(req("GET", "/flaky/stall?ms=2500"))
            status, h, body = c.read_response()
            expect(status == 504, f"/flaky/stall: status {status}")
        else:
            c.send(req("GET", "/flaky/close"))
            status, h, body = c.read_response()
            expect(status == 502, f"/flaky/close: status {status}")
        return [status]
    finally:
        c.close()


# name: (function, runs per second, statuses it may see)
SCENARIOS = {
    "pipelined": (sc_pipelined, 3.0),
    "http1.0": (sc_http10, 2.0),
    "upload": (sc_upload, 3.0),
    "upload-large": (sc_upload_large, 0.5),
    "abort-upload": (sc_abort_upload, 1.0),
    "abort-response": (sc_abort_response, 1.0),
    "abort-head": (sc_abort_head, 1.0),
    "slow-reader": (sc_slow_reader, 0.3),
    "idle-keepalive": (sc_idle_keepalive, 0.05),
    "malformed": (sc_malformed, 2.0),
    "tls": (sc_tls, 3.0),
    "tls-upload": (lambda ctx, rnd: sc_upload(ctx, rnd, tls=True, sizes=(0, 2 * MiB)), 0.5),
    "plain-to-tls": (sc_plain_to_tls, 0.2),
    "rules": (sc_rules, 2.0),
    "provoked-5xx": (sc_provoked, 0.5),
}
PROVOKED_5XX = {"provoked-5xx"}


class Ctx:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}  # scenario -> {outcome: n}
        self.runs = {}
        self.failures = {}  # scenario -> [n, first few messages]
        self.indexes = {}
        self.tls_session = None
        self.stop = threading.Event()

    def next_index(self, key):
        with self.lock:
            self.indexes[key] = self.indexes.get(key, -1) + 1
            return self.indexes[key]

    def record(self, name, outcomes):
        with self.lock:
            d = self.counts.setdefault(name, {})
            self.runs[name] = self.runs.get(name, 0) + 1
            for o in outcomes:
                d[str(o)] = d.get(str(o), 0) + 1

    def fail(self, name, msg):
        with self.lock:
            f = self.failures.setdefault(name, [0, []])
            f[0] += 1
            if len(f[1]) < 3:
                f[1].append(msg)


def scenario_loop(ctx, name, fn, rate, deadline, seed):
    rnd = random.Random(seed)
    interval = 1.0 / rate
    nxt = time.monotonic() + rnd.random() * interval
    max_runs = int((deadline - time.monotonic()) * rate) + 2
    for _ in range(max_runs):
        now = time.monotonic()
        if ctx.stop.is_set() or now >= deadline:
            break
        if nxt > now:
            if ctx.stop.wait(min(nxt - now, deadline - now)):
                break
            continue_at = time.monotonic()
            if continue_at >= deadline:
                break
        nxt = max(nxt + interval, time.monotonic() - 5 * interval)
        try:
            ctx.record(name, fn(ctx, rnd))
        except Exception as e:  # a failure of the scenario, whatever it is
            ctx.fail(name, f"{type(e).__name__}: {e}")
            ctx.record(name, ["failed"])


# --------------------------------------------------------------------------
# The processes under test.

class Procs:
    """Every process started, stopped by PID at the end."""

    def __init__(self):
        self.items = []

    def start(self, name, args, **kw):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kw)
        self.items.append((name, p))
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        return p.returncode

    def stop_all(self):
        for _, p in reversed(self.items):
            try:
                self.stop(p, 5)
            except (OSError, subprocess.TimeoutExpired):
                pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


NGINX_CONF = """
worker_processes 1;
user root root;
pid {work}/nginx/nginx.pid;
error_log {work}/nginx/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx/tmp/body;
    proxy_temp_path {work}/nginx/tmp/proxy;
    fastcgi_temp_path {work}/nginx/tmp/fastcgi;
    uwsgi_temp_path {work}/nginx/tmp/uwsgi;
    scgi_temp_path {work}/nginx/tmp/scgi;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {work}/nginx/html;
        location = /healthz {{ return 200 "ok\\n"; }}
        location /s/ {{ }}
        # sub_filter drops Content-Length: the same files go out chunked.
        location /c/ {{
            alias {work}/nginx/html/s/;
            sub_filter_types *;
            sub_filter "@@never-there@@" "";
        }}
    }}
}}
"""


def start_nginx(procs, work):
    d = os.path.join(work, "nginx")
    for sub in ("html/s", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for name, data in BODIES.items():
        with open(os.path.join(d, "html/s", name), "wb") as f:
            f.write(data)
    for _ in range(5):
        port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(work=work, port=port))
        p = procs.start("nginx", ["/usr/sbin/nginx", "-p", d, "-c", conf, "-e", "stderr",
                                  "-g", "daemon off;"],
                        stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr.log"), "wb"))
        if wait_port(port, p):
            return p, port
        procs.stop(p)
    raise RuntimeError("nginx did not start: " + open(os.path.join(d, "stderr.log")).read()[-500:])


def start_origin(procs, work):
    portfile = os.path.join(work, "origin.port")
    p = procs.start("origin", [sys.executable, os.path.abspath(__file__), "--origin", portfile],
                    stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "origin.log"), "wb"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not os.path.exists(portfile):
        if p.poll() is not None:
            break
        time.sleep(0.05)
    port = int(open(portfile).read())
    if not wait_port(port, p):
        raise RuntimeError("the Python origin did not start")
    return p, port


def make_cert(work):
    d = os.path.join(work, "tls")
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", os.path.join(d, "soak.key"), "-out", os.path.join(d, "soak.pem")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return os.path.join(d, "soak.pem")


WORKERS = 2
KEEPALIVE = {"static": 32, "echo": 16, "flaky": 4}


def config_text(nginx_port, origin_port, extra=""):
    return f"""# soak config (scripts/soak.py)
listen:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    tls:
      certificates:
        - {{ cert: tls/soak.pem, key: tls/soak.key }}
workers: {WORKERS}
admin:
  address: 127.0.0.1:0
state_dir: state
limits:
  keepalive_timeout: 10s
  client_header_timeout: 10s
  drain_timeout: 5s
upstreams:
  static:
    servers: [{{ address: 127.0.0.1:{nginx_port} }}]
    keepalive: {KEEPALIVE['static']}
    health_check: {{ path: /healthz, interval: 2s }}
  echo:
    servers: [{{ address: 127.0.0.1:{origin_port} }}]
    keepalive: {KEEPALIVE['echo']}
    health_check: {{ path: /healthz, interval: 2s }}
  flaky:
    servers: [{{ address: 127.0.0.1:{origin_port} }}]
    keepalive: {KEEPALIVE['flaky']}
    read_timeout: 1s
    max_fails: 0
routes:
  - match: 'starts_with(http.request.uri.path, "/flaky/")'
    upstream: flaky
  - match: 'starts_with(http.request.uri.path, "/up/") or starts_with(http.request.uri.path, "/api/")'
    upstream: echo
  - upstream: static
modules:
  bot_score: {{ features: features.json, on_error: open }}
  rules:
    rulesets: [rules/entry.yaml, rules/managed.yaml, rules/response.yaml]
    on_error: open
access_log: access.log
{extra}"""


class Bulwark:
    def __init__(self, procs, binary, work, env):
        self.work = work
        self.stderr_path = os.path.join(work, "bulwark.stderr")
        self.proc = procs.start("bulwark", [binary, "run", "-c", os.path.join(work, "bulwark.yaml")],
                                cwd=work, env=env, stdout=open(os.path.join(work, "bulwark.stdout"), "wb"),
                                stderr=open(self.stderr_path, "wb"))
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = self.stderr()
            ls = re.findall(r"(?<!admin )listening on 127\.0\.0\.1:(\d+)", text)
            adm = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", text)
            if len(ls) >= 2 and adm:
                self.port, self.tls_port = int(ls[0]), int(ls[1])
                self.admin_port = int(adm.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("bulwark did not start:\n" + self.stderr()[-2000:])

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def admin(self, method, path, timeout=30):
        c = Conn(self.admin_port, timeout=timeout)
        try:
            c.send(req(method, path, ["Connection: close"], host="admin"))
            status, h, body = c.read_response(method)
            return status, body
        finally:
            c.close()

    def metrics(self):
        status, body = self.admin("GET", "/metrics")
        if status != 200:
            raise CheckFailed(f"/metrics: {status}")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self, origin_ports):
        """bulwark's descriptors by kind: downstream and upstream TCP
        connections, listeners, admin connections, other sockets, and what is
        not a socket (files, epoll, eventfd, pipes)."""
        socks = {}
        for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(tab) as f:
                    next(f)
                    for line in f:
                        p = line.split()
                        lport = int(p[1].rsplit(":", 1)[1], 16)
                        rport = int(p[2].rsplit(":", 1)[1], 16)
                        socks[p[9]] = (lport, rport, p[3])
            except OSError:
                pass
        kinds = {"downstream": 0, "upstream": 0, "listen": 0, "admin": 0,
                 "other-socket": 0, "not-socket": 0}
        d = f"/proc/{self.pid}/fd"
        for fd in os.listdir(d):
            try:
                target = os.readlink(f"{d}/{fd}")
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", target)
            if not m:
                kinds["not-socket"] += 1
                continue
            s = socks.get(m.group(1))
            if s is None:
                kinds["other-socket"] += 1
            elif s[2] == "0A":
                kinds["listen"] += 1
            elif s[0] in (self.port, self.tls_port):
                kinds["downstream"] += 1
            elif s[0] == self.admin_port:
                kinds["admin"] += 1
            elif s[1] in origin_ports:
                kinds["upstream"] += 1
            else:
                kinds["other-socket"] += 1
        kinds["total"] = sum(kinds.values())
        return kinds


# --------------------------------------------------------------------------
# Reloads: every SOAK_RELOAD_EVERY seconds, alternately a valid change (a new
# rule in the entry ruleset and a newer feature file) and an invalid one (in
# turn: each kind below). After each, the files are left valid again.

def entry_with(base, n, broken=None):
    rule = (f"  - id: soak-deny-{n}\n"
            f"    expression: 'http.request.uri.path eq \"/deny/{n}\"'\n"
            f"    action: block\n")
    if broken == "type":
        rule = rule.replace(f"'http.request.uri.path eq \"/deny/{n}\"'", "'ip.src contains \"/deny\"'")
    text = base.replace("rules:\n", "rules:\n" + rule, 1)
    if broken == "yaml":
        text += "  - id: [oops\n"
    if broken == "test":
        text = text.replace("tests:\n", "tests:\n  - name: soak breaks\n"
                            f"    request: {{ method: GET, path: /deny/{n} }}\n"
                            "    expect: { action: none }\n", 1)
    return text


INVALID_KINDS = ["ruleset type error", "ruleset YAML syntax", "ruleset failing test",
                 "feature file duplicate name", "feature file version back",
                 "config unknown key"]


class Reloader:
    def __init__(self, bw, work, cfg_text):
        self.bw = bw
        self.entry_path = os.path.join(work, "rules/entry.yaml")
        self.features_path = os.path.join(work, "features.json")
        self.cfg_path = os.path.join(work, "bulwark.yaml")
        self.cfg_text = cfg_text
        self.base_entry = open(self.entry_path).read()
        self.features = json.load(open(self.features_path))
        self.good_entry = self.base_entry
        self.live = None  # the n of the live soak-deny-n rule
        self.accepted = self.rejected = 0
        self.by_kind = {}
        self.failures = []
        self.durations = []

    def write(self, path, text):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def write_features(self, version, dup=False):
        f = dict(self.features, version=version)
        if dup:
            f["features"] = f["features"] + [f["features"][0]]
        self.write(self.features_path, json.dumps(f, indent=1))

    def step(self, i):
        valid = i % 2 == 1
        kind = "valid" if valid else INVALID_KINDS[(i // 2 - 1) % len(INVALID_KINDS)]
        v = self.features["version"]
        if valid:
            text = entry_with(self.base_entry, i)
            self.write(self.entry_path, text)
            self.features["version"] = v + 1
            self.write_features(v + 1)
        elif kind.startswith("ruleset"):
            broken = {"ruleset type error": "type", "ruleset YAML syntax": "yaml",
                      "ruleset failing test": "test"}[kind]
            self.write(self.entry_path, entry_with(self.base_entry, i, broken=broken))
        elif kind == "feature file duplicate name":
            self.write_features(v + 1, dup=True)
        elif kind == "feature file version back":
            self.write_features(v - 1)
        elif kind == "config unknown key":
            self.write(self.cfg_path, self.cfg_text + "bogus_soak_key: 1\n")
        t0 = time.monotonic()
        status, body = self.bw.admin("POST", "/reload", timeout=60)
        self.durations.append(time.monotonic() - t0)
        k = self.by_kind.setdefault(kind, {})
        k[status] = k.get(status, 0) + 1
        if valid:
            if status == 200:
                self.accepted += 1
                self.good_entry = text
                prev, self.live = self.live, i
                self.check_rules(prev)
            else:
                self.failures.append(f"reload {i} (valid) answered {status}: {body[:300]!r}")
        else:
            self.write(self.entry_path, self.good_entry)
            self.write_features(self.features["version"])
            self.write(self.cfg_path, self.cfg_text)
            if status == 422:
                self.rejected += 1
                self.check_rules(None)
            else:
                self.failures.append(f"reload {i} ({kind}) answered {status}: {body[:300]!r}")

    def check_rules(self, prev):
        c = Conn(self.bw.port)
        try:
            c.send(req("GET", f"/deny/{self.live}"))
            status, h, body = c.read_response()
            if status != 403:
                self.failures.append(f"after reload: /deny/{self.live} answered {status}, not 403")
            if prev is not None:
                c.send(req("GET", f"/deny/{prev}"))
                status, h, body = c.read_response()
                if status != 404:  # the rule is gone: nginx has no such file
                    self.failures.append(f"after reload: /deny/{prev} answered {status}, not 404")
        finally:
            c.close()


def reload_loop(ctx, rl, every, deadline):
    for i in range(1, 100000):
        at = ctx.t0 + i * every
        if at >= deadline - 2:
            break
        if ctx.stop.wait(max(0.0, at - time.monotonic())):
            break
        try:
            rl.step(i)
        except Exception as e:
            rl.failures.append(f"reload {i}: {type(e).__name__}: {e}")


def sample_loop(ctx, bw, origin_ports, every, deadline, samples):
    for i in range(0, 100000):
        at = ctx.t0 + i * every
        if at > deadline + 0.5:
            break
        if ctx.stop.wait(max(0.0, at - time.monotonic())):
            break
        try:
            samples.append(take_sample(ctx, bw, origin_ports))
        except OSError:  # bulwark is gone: the main loop reports it
            break


def take_sample(ctx, bw, origin_ports):
    s = {"t": time.monotonic() - ctx.t0, "rss_kib": bw.rss_kib(), "fds": bw.fds(origin_ports)}
    try:
        m = bw.metrics()
        s["accepted"] = int(m.get("bulwark_connections_accepted_total", 0))
        s["5xx"] = int(m.get('bulwark_responses_total{class="5xx"}', 0))
        s["responses"] = int(sum(v for k, v in m.items() if k.startswith("bulwark_responses_total")))
    except Exception as e:
        s["metrics_error"] = str(e)
    return s


# --------------------------------------------------------------------------
# Load client runs (tests/tools/loadgen): name, path, expected, share of
# SOAK_RATE, connections, requests per connection (0: keep-alive).

LOADGEN_RUNS = [
    ("ka-1k", "/s/1k.bin", 200, 0.40, 8, 0),
    ("new-conn-1k-chunked", "/c/1k.bin", 200, 0.15, 4, 1),
    ("ka-64k", "/s/64k.bin", 200, 0.10, 4, 0),
    ("ka-64k-chunked", "/c/64k.bin", 200, 0.10, 4, 0),
    ("ka-1m", "/s/1m.bin", 200, 0.03, 2, 0),
    ("few-per-conn-1m-chunked", "/c/1m.bin", 200, 0.02, 2, 3),
    ("new-conn-blocked", "/admin/x", 403, 0.05, 2, 1),
]


def start_loadgens(procs, loadgen, port, rate, seconds, work):
    out = []
    for name, path, want, share, conns, per_conn in LOADGEN_RUNS:
        r = max(rate * share, 0.5)
        args = [loadgen, "--port", str(port), "--path", path, "--conns", str(conns),
                "--rate", f"{r:.2f}", "--duration", str(seconds),
                "--requests", str(int(r * seconds) + 10), "--timeout", "20",
                "--expect", str(want), "--host", "soak.example",
                "--header", "User-Agent: soak-loadgen/1"]
        if per_conn:
            args += ["--per-conn", str(per_conn)]
        path_out = os.path.join(work, f"loadgen-{name}.json")
        p = procs.start("loadgen " + name, args, stdout=open(path_out, "wb"), stderr=subprocess.STDOUT)
        out.append((name, path, want, r, p, path_out))
    return out


# --------------------------------------------------------------------------
# Verdicts.

def rss_verdict(samples):
    """RSS is flat after warm-up when the largest RSS of the last half of the
    load is at most 10 % + 8 MiB above the largest of its second quarter.

    Why: the first quarter is warm-up (connection buffers and free lists, the
    upstream pools, the allocator's and ASan's caches grow to the working set
    of this traffic mix: ASan's quarantine holds freed memory up to its cap
    before it recycles any). A leak proportional to traffic grows without
    bound, so over the last half it shows as growth beyond the second quarter's
    peak; comparing peaks (not single samples) ignores the moment-to-moment
    swing of 1 MiB bodies in flight, and the 10 % + 8 MiB allows the
    allocator's noise without hiding a leak of any size that matters over
    ten minutes (at 300 requests/s, 8 MiB is ~45 bytes per request)."""
    n = len(samples)
    if n < 8:
        return True, f"too few samples ({n}) to judge; not checked"
    q2 = samples[n // 4: n // 2]
    h2 = samples[n // 2:]
    ref = max(s["rss_kib"] for s in q2)
    last = max(s["rss_kib"] for s in h2)
    limit = ref * 1.10 + 8 * 1024
    ok = last <= limit
    return ok, (f"max RSS of the 2nd quarter {ref / 1024:.1f} MiB, of the last half "
                f"{last / 1024:.1f} MiB, limit {limit / 1024:.1f} MiB (+10 % + 8 MiB)")


def fd_back_to_baseline(base, now):
    """None when bulwark's descriptors are back to the baseline, else why not."""
    allowed_up = WORKERS * sum(KEEPALIVE.values()) + 8  # idle pools + health checks
    why = []
    if now["downstream"]:
        why.append(f"{now['downstream']} downstream connections still open")
    for k in ("listen", "not-socket", "other-socket"):
        if now[k] > base[k]:
            why.append(f"{k}: {now[k]} (baseline {base[k]})")
    if now["upstream"] > max(allowed_up, base["upstream"]):
        why.append(f"upstream: {now['upstream']} (the pools keep at most {allowed_up})")
    return "; ".join(why) or None


def fmt_fds(f):
    return ", ".join(f"{k} {v}" for k, v in f.items() if v or k == "total")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--origin":
        run_origin(sys.argv[2])
        return 0
    quick = os.environ.get("SOAK_QUICK", "") not in ("", "0")
    seconds = env_float("SOAK_SECONDS", 60 if quick else 600)
    rate = env_float("SOAK_RATE", 300)
    sample_every = env_float("SOAK_SAMPLE", 5 if quick else 10)
    reload_every = env_float("SOAK_RELOAD_EVERY", 10)
    binary = os.path.abspath(os.environ.get("BULWARK_BIN") or os.path.join(ROOT, "build/asan/bulwark"))
    loadgen = os.path.abspath(os.environ.get("SOAK_LOADGEN") or os.path.join(ROOT, "build/asan/tools/loadgen"))
    out_dir = os.path.abspath(os.environ.get("SOAK_OUT") or os.path.join(ROOT, "build/soak"))
    if not (5 <= seconds <= 7200) or rate <= 0 or sample_every <= 0 or reload_every <= 0:
        print("soak: SOAK_SECONDS must be 5..7200, the others positive", file=sys.stderr)
        return 2
    for b in (binary, loadgen):
        if not os.access(b, os.X_OK):
            print(f"soak: {b} is not built (make VARIANT=asan build)", file=sys.stderr)
            return 2
    work = os.path.join(out_dir, "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    shutil.copytree(os.path.join(ROOT, "examples/rules"), os.path.join(work, "rules"))
    shutil.copy(os.path.join(ROOT, "examples/features.json"), work)
    os.makedirs(os.path.join(work, "state"))

    procs = Procs()
    ctx = Ctx()
    reasons = []
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        return run(ctx, procs, reasons, started, quick, seconds, rate, sample_every,
                   reload_every, binary, loadgen, out_dir, work)
    finally:
        ctx.stop.set()
        procs.stop_all()


def run(ctx, procs, reasons, started, quick, seconds, rate, sample_every, reload_every,
        binary, loadgen, out_dir, work):
    cert = make_cert(work)
    nginx, nginx_port = start_nginx(procs, work)
    origin, origin_port = start_origin(procs, work)
    cfg = config_text(nginx_port, origin_port)
    with open(os.path.join(work, "bulwark.yaml"), "w") as f:
        f.write(cfg)
    env = dict(os.environ)
    # detect_leaks: LeakSanitizer at exit. quarantine_size_mb: ASan keeps
    # freed memory in a FIFO up to this cap before reusing it (that is how it
    # catches a use after free); 256 MiB by default, which at this traffic
    # takes minutes to fill and so looks like growth (64 MiB still grew for
    # 40 s at 100 requests/s; with 0 RSS was flat from the first sample). 16
    # MiB fills within seconds and still covers the memory of the last
    # several hundred requests.
    # ASAN_OPTIONS from the environment come after these, so they win.
    env["ASAN_OPTIONS"] = ":".join(filter(None, ["detect_leaks=1:quarantine_size_mb=16:abort_on_error=0",
                                                 os.environ.get("ASAN_OPTIONS")]))
    env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    bw = Bulwark(procs, binary, work, env)
    ctx.port, ctx.tls_port = bw.port, bw.tls_port
    tls_ctx = ssl.create_default_context(cafile=cert)
    tls_ctx.set_alpn_protocols(["http/1.1"])
    ctx.tls_ctx = tls_ctx
    origin_ports = {nginx_port, origin_port}

    # Wait (bounded) for both upstreams to be up, then take the baseline.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = bw.metrics()
        ups = [v for k, v in m.items() if k.startswith("bulwark_upstream_server_up")]
        if ups and all(v == 1 for v in ups):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"upstreams not up in 30 s: {ups}")
    time.sleep(1)
    base_fds = bw.fds(origin_ports)
    base_rss = bw.rss_kib()

    ctx.t0 = time.monotonic()
    end = ctx.t0 + seconds
    lgs = start_loadgens(procs, loadgen, bw.port, rate, seconds, work)
    rl = Reloader(bw, work, cfg)
    samples = []
    threads = [threading.Thread(target=sample_loop, args=(ctx, bw, origin_ports, sample_every, end, samples)),
               threading.Thread(target=reload_loop, args=(ctx, rl, reload_every, end))]
    for i, (name, (fn, r)) in enumerate(SCENARIOS.items()):
        threads.append(threading.Thread(target=scenario_loop, args=(ctx, name, fn, r, end, 1000 + i)))
    for t in threads:
        t.daemon = True
        t.start()
    print(f"soak: {seconds:.0f} s against {binary} (pid {bw.pid}), "
          f"loadgen {rate:.0f}/s, work dir {work}", flush=True)
    last_print = time.monotonic()
    while time.monotonic() < end and bw.proc.poll() is None:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if time.monotonic() - last_print >= 60 and samples:
            s = samples[-1]
            print(f"soak: t={s['t']:.0f}s rss={s['rss_kib'] / 1024:.1f} MiB fds={s['fds']['total']} "
                  f"responses={s.get('responses')}", flush=True)
            last_print = time.monotonic()
    if bw.proc.poll() is not None:
        reasons.append(f"bulwark exited during the load with status {bw.proc.returncode}")
    ctx.stop.set()
    for t in threads:
        t.join(60)
        if t.is_alive():
            reasons.append(f"a client thread did not stop within 60 s ({t.name})")
    lg_results = []
    for name, path, want, r, p, path_out in lgs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            procs.stop(p)
        try:
            j = json.loads(open(path_out).read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            j = None
            reasons.append(f"loadgen {name}: no report (exit {p.returncode})")
        lg_results.append((name, path, want, r, j))
    load_end = time.monotonic() - ctx.t0

    # After the load: descriptors back to the baseline (bounded wait: the
    # clients closed theirs; keepalive_timeout is 10 s for any straggler).
    fd_wait = None
    deadline = time.monotonic() + 30
    after = None
    alive = bw.proc.poll() is None
    while alive and time.monotonic() < deadline:
        after = bw.fds(origin_ports)
        fd_wait = fd_back_to_baseline(base_fds, after)
        if fd_wait is None:
            break
        time.sleep(0.5)
    final = take_sample(ctx, bw, origin_ports) if alive else None
    if alive and fd_wait:
        reasons.append(f"descriptors not back to the baseline 30 s after the load: {fd_wait}")
    status_json = None
    if alive:
        try:
            st, body = bw.admin("GET", "/status")
            status_json = json.loads(body)
        except Exception as e:
            reasons.append(f"GET /status after the load: {e}")

    # SIGTERM and the exit status.
    exit_code = None
    if alive:
        os.kill(bw.pid, signal.SIGTERM)
        try:
            exit_code = bw.proc.wait(60)
        except subprocess.TimeoutExpired:
            reasons.append("bulwark did not exit within 60 s of SIGTERM")
            procs.stop(bw.proc)
    else:
        exit_code = bw.proc.returncode
    if exit_code != 0:
        reasons.append(f"bulwark exit status {exit_code}, not 0")
    err = bw.stderr()
    san = [l for l in err.splitlines() if any(m in l for m in SANITIZER_MARKERS)]
    if san:
        reasons.append(f"sanitizer report in bulwark's stderr: {san[0][:200]}")

    # Every response checked: the load clients, the Python clients, the
    # reloads, and bulwark's own count of 5xx against the provoked ones.
    for name, path, want, r, j in lg_results:
        if j is None:
            continue
        if j["failed"] or j["unexpected_status"]:
            reasons.append(f"loadgen {name}: {j['failed']} failed, {j['unexpected_status']} "
                           f"unexpected status (first {j['first_unexpected_status']}): {j['first_error']}")
    for name, (n, msgs) in sorted(ctx.failures.items()):
        reasons.append(f"{name}: {n} failed; first: " + " | ".join(msgs))
    for f in rl.failures[:5]:
        reasons.append(f)
    provoked = sum(v for name in PROVOKED_5XX for k, v in ctx.counts.get(name, {}).items()
                   if k.startswith("5"))
    server_5xx = final.get("5xx") if final else None
    access = access_log_summary(os.path.join(work, "access.log"))
    if server_5xx is not None and server_5xx != provoked:
        reasons.append(f"bulwark counted {server_5xx} 5xx responses in /metrics; the scenarios "
                       f"provoked {provoked}: unexpected 5xx")
    if access["unexpected_5xx"]:
        reasons.append(f"{access['unexpected_5xx']} 5xx in the access log outside /flaky/: "
                       + "; ".join(access["examples"]))
    ok_rss, rss_text = rss_verdict(samples)
    if not ok_rss:
        reasons.append("RSS not flat after warm-up: " + rss_text)
    if status_json is not None:
        # bulwark's own counts of the reloads against the soak's.
        c = status_json.get("config", {})
        got = (c.get("reloads_accepted"), c.get("reloads_rejected"))
        if got != (rl.accepted, rl.rejected):
            reasons.append(f"/status counts {got[0]} accepted and {got[1]} rejected reloads; "
                           f"the soak made {rl.accepted} and {rl.rejected}")
        for a in status_json.get("artifacts", []):
            if a.get("kind") == "feature_file" and a.get("version") != rl.features["version"]:
                reasons.append(f"/status: feature file version {a.get('version')}, "
                               f"not the last valid one ({rl.features['version']})")

    report = write_report(locals())
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report)
    print(report)
    return 1 if reasons else 0


def access_log_summary(path):
    by_status = {}
    unexpected = 0
    examples = []
    lines = 0
    try:
        f = open(path, "rb")
    except OSError:
        return {"lines": 0, "by_status": {}, "unexpected_5xx": 0, "examples": []}
    with f:
        for raw in f:
            lines += 1
            try:
                j = json.loads(raw)
            except ValueError:
                continue
            st = j.get("status")
            by_status[st] = by_status.get(st, 0) + 1
            path_ = str(j.get("path", j.get("uri", "")))
            if isinstance(st, int) and st >= 500 and not path_.startswith("/flaky/"):
                unexpected += 1
                if len(examples) < 3:
                    examples.append(raw.decode("utf-8", "replace").strip()[:300])
    return {"lines": lines, "by_status": by_status, "unexpected_5xx": unexpected, "examples": examples}


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, Linux {platform.release()}"


def write_report(v):
    ctx, rl, samples, reasons = v["ctx"], v["rl"], v["samples"], v["reasons"]
    L = []
    L.append(f"# Soak report: {'PASS' if not reasons else 'FAIL'}\n")
    L.append(f"- Started {v['started']}; {v['seconds']:.0f} s of load"
             f"{' (quick mode)' if v['quick'] else ''}, load clients at {v['rate']:.0f} requests/s "
             f"in all plus the Python clients; reload every {v['reload_every']:.0f} s; "
             f"samples every {v['sample_every']:.0f} s.")
    L.append(f"- Machine: {machine()}.")
    L.append(f"- Binary: `{os.path.relpath(v['binary'], ROOT)}` (ASan + UBSan), {WORKERS} workers, "
             f"plain and TLS listeners, admin API; work dir `{os.path.relpath(v['work'], ROOT)}`.")
    L.append(f"- Exit status after SIGTERM: {v['exit_code']}; sanitizer reports: {len(v['san'])}.\n")
    if reasons:
        L.append("## Failures\n")
        L += [f"- {r}" for r in reasons]
        L.append("")
    L.append("## Load clients (tests/tools/loadgen)\n")
    L.append("| run | path | expect | rate/s | completed | 2xx | 3xx | 4xx | 5xx | failed | unexpected | connects | p99 ms |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    total = 0
    for name, path, want, r, j in v["lg_results"]:
        if j is None:
            L.append(f"| {name} | `{path}` | {want} | {r:.1f} | no report | | | | | | | | |")
            continue
        total += j["completed"]
        s = j["status"]
        L.append(f"| {name} | `{path}` | {want} | {r:.1f} | {j['completed']} | {s['2xx']} | {s['3xx']} | "
                 f"{s['4xx']} | {s['5xx']} | {j['failed']} | {j['unexpected_status']} | {j['connects']} | "
                 f"{j['latency_us']['p99'] / 1000:.1f} |")
    L.append(f"\n{total} responses, each checked for status and framing.\n")
    L.append("## Python clients\n")
    L.append("| scenario | runs | outcomes | failed |")
    L.append("|---|---|---|---|")
    for name in SCENARIOS:
        c = ctx.counts.get(name, {})
        outs = ", ".join(f"{k}: {n}" for k, n in sorted(c.items()) if k != "failed")
        L.append(f"| {name} | {ctx.runs.get(name, 0)} | {outs} | {c.get('failed', 0)} |")
    L.append("\nEvery response's status, framing and body (checksum of uploads, bytes of downloads) "
             "is checked; 5xx are expected only from provoked-5xx (504: the origin stalls past "
             "read_timeout; 502: it closes without answering).\n")
    acc = v["access"]
    L.append(f"bulwark's side: /metrics counts {v['server_5xx']} 5xx (provoked: {v['provoked']}); "
             f"the access log has {acc['lines']} lines, by status: "
             + ", ".join(f"{k}: {n}" for k, n in sorted(acc["by_status"].items(), key=lambda x: str(x[0])))
             + ".\n")
    L.append("## Reloads\n")
    L.append(f"{rl.accepted + rl.rejected} reloads by POST /reload: {rl.accepted} valid accepted (200), "
             f"{rl.rejected} invalid rejected (422); failures: {len(rl.failures)}. Longest reload "
             f"{max(rl.durations) if rl.durations else 0:.2f} s.\n")
    for kind, d in rl.by_kind.items():
        L.append(f"- {kind}: " + ", ".join(f"{s}: {n}" for s, n in sorted(d.items())))
    L.append("")
    L.append("## Samples (bulwark process)\n")
    L.append("| t s | RSS MiB | fds | downstream | upstream | responses | accepted conns |")
    L.append("|---|---|---|---|---|---|---|")
    rows = list(samples)
    if v["final"]:
        f = dict(v["final"])
        f["t"] = v["load_end"]
        rows.append(dict(f, label="after"))
    for s in rows:
        fd = s["fds"]
        t = f"{s['t']:.0f}" + (" (after load)" if s.get("label") else "")
        L.append(f"| {t} | {s['rss_kib'] / 1024:.1f} | {fd['total']} | {fd['downstream']} | "
                 f"{fd['upstream']} | {s.get('responses', '')} | {s.get('accepted', '')} |")
    L.append("")
    L.append(f"- RSS: at start {v['base_rss'] / 1024:.1f} MiB; {v['rss_text']}.")
    L.append(f"- Descriptors: baseline {fmt_fds(v['base_fds'])}; after the load "
             f"{fmt_fds(v['after']) if v['after'] else 'n/a'}"
             f" ({'back to the baseline' if not v['fd_wait'] else v['fd_wait']}; upstream "
             f"connections may stay idle in the pools, at most {WORKERS} workers x "
             f"{sum(KEEPALIVE.values())}).")
    errs = [l for l in v["err"].splitlines() if re.search(r"(^|\s)(error|warn):", l)]
    kinds = {}
    for l in errs:
        k = re.sub(r"\d+", "N", l.split(":", 1)[-1])[:90]
        kinds[k] = kinds.get(k, 0) + 1
    L.append(f"- bulwark's stderr: {len(errs)} error/warning lines"
             + ("; most common: " + "; ".join(f"{n}x `{k.strip()}`" for k, n in
                                              sorted(kinds.items(), key=lambda x: -x[1])[:4])
                if kinds else "") + ".")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        sys.exit(2)
