"""Fault injection: what the other fault tests do not already cover.

Already covered elsewhere, not repeated here: an upstream that is down
(test_40, test_45), resets or closes before a response, sends a garbage or
non-HTTP status line, oversized heads, Content-Length with
Transfer-Encoding (test_45), stalls before the head or mid-body (test_40),
closes mid-body (test_30); a client dripping a head (test_40), a client that
stops reading (test_30, test_40), the descriptor limit lowered on a running
proxy and max_connections (test_85).

Here, upstream: refusing and coming back, a reset mid-body, a refusal and an
early answer while the client is still uploading, a stall on a POST (never
replayed), an upstream that never reads an upload, bytes after a complete
response on a kept connection, a malformed chunked body mid-stream, a head
cut short. Downstream: a client resetting mid-upload, many slowloris
clients at once, a steadily slow reader of a large response, 5,000
connections at once, and a proxy started with fewer descriptors than
connections. Each asserts its outcome, then that a normal request is served
at once. Every loop is bounded in time and count; only 127.0.0.1."""
import resource
import selectors
import socket
import struct
import threading
import time

import pytest

from bwtest import client
from bwtest import origin as om
from bwtest.checks import (ASAN, SLACK, assert_paused_not_spinning, assert_proxy_error,
                           assert_still_serves)
from bwtest.client import Closed, request_bytes
from bwtest.proc import Bulwark, default_config

HANG = 10 * SLACK  # guards a wait against a hang; times nothing


def send_quietly(sock, data, sent, deadline_s=10.0):
    """Sends data until done, refused, or the deadline; counts bytes in sent[0]."""
    view = memoryview(data)
    deadline = time.monotonic() + deadline_s
    sock.settimeout(0.2)
    while view and time.monotonic() < deadline:
        try:
            n = sock.send(view[:65536])
        except socket.timeout:
            continue
        except OSError:
            return
        view = view[n:]
        sent[0] += n


def uploader(sock, data):
    sent = [0]
    t = threading.Thread(target=send_quietly, args=(sock, data, sent), daemon=True)
    t.start()
    return t, sent


def rst_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------------------- upstream faults

def test_upstream_refusing_then_back_is_served_at_once(origins, proxy):
    o, = origins(1)
    bw = proxy(o, expect_errors=[o.address])
    assert_still_serves(bw)
    port = o.port
    o.stop()  # the listener is gone (connections refused) and pooled ones closed
    r = bw.request("GET", "/while-refusing")
    assert_proxy_error(r, 502, closing=False)
    back = om.Origin(name="back", port=port)
    try:
        assert_still_serves(bw)
        assert back.requests_for("/still-serves")
    finally:
        back.stop()
    assert back.errors == []


def test_upstream_reset_mid_body_truncates_and_closes_client(origin, proxy):
    def reset_mid_body(ex):
        ex.read_body()
        ex.send_head(200, [("Content-Length", "200000")])
        ex.send(om.pattern(50000))
        ex.sleep(0.3)  # let the proxy pass the head and data on first
        ex.reset()
        return False

    origin.on("/rst", reset_mid_body)
    bw = proxy(origin, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/rst"))
        r = c.read_head()
        assert r.status == 200 and r.header("content-length") == "200000"
        with pytest.raises(Closed):
            c.read_exact(200000, timeout=5)
        assert len(c.buf) <= 50000 and c.buf == om.pattern(len(c.buf))
    assert_still_serves(bw)


def test_upstream_refusing_while_client_uploads_gets_502_before_close(proxy):
    down = om.down_address()
    bw = proxy(down, expect_errors=[down])
    body = b"u" * (4 << 20)
    with bw.connect() as c:
        # A fixed send buffer: autotuned loopback buffers (tcp_wmem and
        # tcp_rmem maxima of 4 and 32 MiB on some hosts) would otherwise take
        # the whole body without the proxy reading a byte of it.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 << 10)
        c.send(request_bytes("POST", "/upload", [("Content-Length", str(len(body)))]))
        t, sent = uploader(c.sock, body)
        r = c.read_response(timeout=5)
        assert_proxy_error(r, 502)  # the body is left unread: the connection closes
        how, extra = c.wait_closed(5 * SLACK)
        assert how in ("eof", "reset") and extra == b"", (how, extra[:100])
        t.join(12)
    assert sent[0] < len(body), "the proxy read a whole upload it could never forward"
    back = om.Origin(name="back", port=int(down.rsplit(":", 1)[1]))
    try:
        assert_still_serves(bw)
    finally:
        back.stop()


def test_upstream_early_answer_during_upload_reaches_client(origin, proxy):
    def early_413(ex):
        # Answers from the head alone, stops reading, and closes gracefully
        # (shutdown, then drain) so its own close does not reset the answer.
        ex.send_head(413, [("Content-Length", "9"), ("Connection", "close")])
        ex.send(b"too large")
        ex.sock.shutdown(socket.SHUT_WR)
        ex.hold(limit=3)
        return False

    origin.on("/early", early_413)
    bw = proxy(origin)
    body = b"e" * (8 << 20)
    with bw.connect() as c:
        c.send(request_bytes("POST", "/early", [("Content-Length", str(len(body)))]))
        t, sent = uploader(c.sock, body)
        r = c.read_response(timeout=5)
        assert (r.status, r.body) == (413, b"too large"), r
        assert "close" in r.connection_tokens(), "the rest of the upload is unread: must close"
        how, extra = c.wait_closed(5 * SLACK)
        assert how in ("eof", "reset") and extra == b"", (how, extra[:100])
        t.join(12)
    assert_still_serves(bw)


def test_upstream_stall_on_post_is_504_and_never_replayed(origins, proxy):
    a, b = origins(2)
    for o in (a, b):
        o.on("/pay", om.no_response())
    bw = proxy([a, b], upstream_opts={"read_timeout": "500ms", "max_fails": 100},
               expect_errors=[a.address, b.address])
    with bw.connect() as c:
        c.send(request_bytes("POST", "/pay", body=b"amount=10"))
        r = c.read_response(timeout=5)
        assert_proxy_error(r, 504, closing=False)
    time.sleep(0.3)
    heads = len(a.heads_for("/pay")) + len(b.heads_for("/pay"))
    assert heads == 1, f"a POST whose upstream stalled was sent {heads} times"
    assert_still_serves(bw)


def test_upstream_never_reading_an_upload_gets_backpressure_then_504(origin, proxy):
    # The upload counterpart of test_30's slow reader: the proxy
    # must stop reading the client instead of buffering the upload.
    def never_reads(ex):
        ex.sleep(8)  # neither reads the body nor answers
        return False

    origin.on("/sink", never_reads)
    bw = proxy(origin, upstream_opts={"write_timeout": "1s", "read_timeout": "1s"},
               limits={"client_body_timeout": "10s", "body_bytes": "256MiB"},
               expect_errors=[origin.address])
    assert_still_serves(bw, "/warmup")
    rss0 = bw.rss_kib()
    total = 64 << 20
    body = b"s" * total
    with bw.connect() as c:
        c.send(request_bytes("POST", "/sink", [("Content-Length", str(total))]))
        t, sent = uploader(c.sock, body)
        # Stuck writing upstream: upstream write_timeout, 504 (the origin
        # holds 8 s; HANG only guards), and the upstream is not blamed for a
        # replay (a POST is never retried). The access log names the timer.
        r = c.read_response(timeout=HANG)
        assert_proxy_error(r, 504)
        entry = [l for l in bw.access_log_lines(wait_for=2) if l["path"] == "/sink"]
        assert len(entry) == 1 and entry[0]["error"].startswith("upstream write timeout"), entry
        rss1 = bw.rss_kib()
        how, _ = c.wait_closed(5 * SLACK)
        assert how in ("eof", "reset")
        t.join(12)
    assert sent[0] < total // 2, f"the proxy took {sent[0] >> 20} MiB of an upload nobody read"
    if not ASAN:
        grew = (rss1 - rss0) >> 10
        assert grew < 32, f"proxy RSS grew by {grew} MiB holding an unread upload"
    assert_still_serves(bw)


def test_bytes_after_a_complete_response_never_answer_another_request(origin, proxy):
    # The origin answers /extra with its response plus a second, unasked-for
    # one on a connection it keeps open: a proxy that reused that connection
    # would hand "EVIL" to the next client.
    origin.on("/extra", om.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                               b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL", close=False))
    bw = proxy(origin, upstream_opts={"keepalive": 4}, expect_errors=[origin.address])
    for i in range(5):
        with bw.connect() as c:
            c.send(request_bytes("GET", "/extra"))
            r = c.read_response()
            assert (r.status, r.body) == (200, b"ok"), r
        for j in range(3):
            r = bw.request("GET", f"/after/{i}/{j}")
            assert r.status == 200 and r.body != b"EVIL", f"stale upstream bytes answered a request: {r!r}"
            assert r.json()["target"] == f"/after/{i}/{j}"
    assert_still_serves(bw)


def test_malformed_chunked_body_mid_stream_is_not_completed(origin, proxy):
    origin.on("/badchunk", om.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"5\r\nhello\r\nzz\r\nHTTP/1.1 200 OK\r\n\r\n", close=False))
    bw = proxy(origin, expect_errors=[origin.address])
    for _ in range(5):
        with bw.connect() as c:
            c.send(request_bytes("GET", "/badchunk"))
            r = c.read_head()
            if r.status == 502:  # the error was found before the head went out
                r.body = c.read_exact(int(r.header("content-length")))
                assert_proxy_error(r, 502)
                how, extra = c.wait_closed(3 * SLACK)
                assert how == "eof" and extra == b"", (how, extra)
                continue
            assert r.status == 200, r
            # The proxy must neither pass the garbage on nor invent a last chunk.
            with pytest.raises(Closed):
                c.read_chunked(timeout=3 * SLACK)
            assert b"zz" not in c.buf and b"HTTP/1.1" not in c.buf, c.buf
    assert_still_serves(bw)


def test_upstream_closing_mid_head_is_502(origin, proxy):
    origin.on("/cut-head", om.raw(b"HTTP/1.1 200 OK\r\nContent-Le", close=True))
    bw = proxy(origin, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/cut-head"))
        r = c.read_response(timeout=5)
        assert_proxy_error(r, 502, closing=False)
        assert r.header("content-le") is None
    assert_still_serves(bw)


# ----------------------------------------------------------- downstream faults

def test_client_reset_mid_upload_releases_the_upstream(origin, proxy):
    bw = proxy(origin)
    c = bw.connect()
    c.send(request_bytes("POST", "/half", [("Content-Length", str(1 << 20))]) + b"h" * 100000)
    assert origin.wait_for(lambda o: o.heads_for("/half"), timeout=3 * SLACK)
    rst_close(c.sock)
    # The upstream connection carrying the cut request is closed, not pooled.
    assert origin.wait_for(lambda o: o.open_connections == 0, timeout=3 * SLACK), \
        "upstream connection of an aborted upload kept open"
    assert origin.requests_for("/half") == []
    assert_still_serves(bw)


def test_many_slowloris_clients_are_timed_out_while_others_are_served(origin, proxy):
    n = 100
    timeout = 2.0
    bw = proxy(origin, limits={"client_header_timeout": "2s"})
    head = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Drip: " + b"d" * 100
    conns = []
    t0 = time.monotonic()  # before any connect: each header deadline is later
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", bw.port), timeout=5)
        s.setblocking(False)
        conns.append(s)
    closed_at = {}
    got = {i: b"" for i in range(n)}
    served = 0
    pos = 0
    deadline = t0 + 10 * timeout * SLACK
    try:
        while len(closed_at) < n and time.monotonic() < deadline:
            # One byte per second on every open connection ...
            for i, s in enumerate(conns):
                if i in closed_at:
                    continue
                try:
                    s.send(head[pos:pos + 1])
                except OSError:
                    closed_at[i] = time.monotonic() - t0
            pos += 1
            # ... while normal clients are served.
            r = bw.request("GET", f"/normal/{pos}", timeout=5)
            assert r.status == 200, f"a normal request failed during slowloris: {r!r}"
            served += 1
            step_end = time.monotonic() + 1.0
            while time.monotonic() < step_end and len(closed_at) < n:
                for i, s in enumerate(conns):
                    if i in closed_at:
                        continue
                    try:
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    got[i] += data
                    if not data:
                        closed_at[i] = time.monotonic() - t0
                time.sleep(0.05)
    finally:
        for s in conns:
            s.close()
    assert len(closed_at) == n, f"{n - len(closed_at)} slowloris connections still open after {deadline - t0:.1f}s"
    assert pos <= len(head), "a dripping head was never cut off"
    # Cut by the header timeout, and by nothing else: every connection that
    # got an answer got a 408 (a close before the timeout would have come
    # before its first second of dripping ended; the deadline above only
    # guards against a hang, noise only delays the cut).
    assert min(closed_at.values()) >= timeout * 0.6, f"closed after {min(closed_at.values()):.1f}s"
    answered = [g for g in got.values() if g]
    assert all(g.startswith(b"HTTP/1.1 408 ") for g in answered), answered[:3]
    assert served >= 2
    assert origin.heads_for("/slow") == []
    assert_still_serves(bw)


def kernel_queued(ports):
    """Bytes queued in the kernel (send and receive queues) on every TCP
    socket with a local or remote port in `ports` (/proc/net/tcp)."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].rsplit(":", 1)[1], 16)
            rport = int(parts[2].rsplit(":", 1)[1], 16)
            if lport in ports or rport in ports:
                tx, rx = parts[4].split(":")
                total += int(tx, 16) + int(rx, 16)
    return total


def test_steadily_slow_reader_gets_everything_with_bounded_buffering(origin, proxy):
    # What the origin has sent and the client not yet received is in socket
    # buffers (loopback autotuning lets them grow to tens of MiB) or in the
    # proxy. Only the proxy's part must stay small: it is the difference.
    total = 32 << 20
    origin.on("/big", om.big(total))
    bw = proxy(origin, limits={"send_timeout": "10s"})
    assert_still_serves(bw, "/warmup")
    rss0 = bw.rss_kib()
    max_ahead = 0
    max_rss = rss0
    got = 0
    with bw.connect(timeout=10, rcvbuf=65536) as c:
        c.send(request_bytes("GET", "/big"))
        r = c.read_head(timeout=5)
        assert r.status == 200 and r.header("content-length") == str(total)
        expect = om.big_body(total)
        got = len(c.buf)
        data_ok = c.buf == expect[:got]
        c.buf = b""
        deadline = time.monotonic() + 30
        reads = 0
        while got < total and time.monotonic() < deadline:
            c.sock.settimeout(5)
            data = c.sock.recv(min(64 << 10, total - got))
            if not data:
                break
            data_ok = data_ok and data == expect[got:got + len(data)]
            got += len(data)
            reads += 1
            if reads % 16 == 0:
                queued = kernel_queued({origin.port, bw.port})
                max_ahead = max(max_ahead, origin.sent_bytes - got - queued)
                max_rss = max(max_rss, bw.rss_kib())
            time.sleep(0.002)  # the client reads more slowly than the origin sends
    assert got == total and data_ok, f"client got {got} of {total} bytes (intact: {data_ok})"
    # Backpressure: the proxy itself never holds much of the response (its
    # buffers are tens of KiB; 4 MiB leaves room for sampling skew).
    assert max_ahead < 4 << 20, f"the proxy held {max_ahead >> 10} KiB of the response for a slow reader"
    if not ASAN:
        grew = (max_rss - rss0) >> 10
        assert grew < 32, f"proxy RSS grew by {grew} MiB for one slow reader"
    assert_still_serves(bw)


class ManyConnOrigin:
    """A one-thread origin (selectors) for thousands of connections: answers
    every request head with 200 "ok", keeps connections open."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4096)
        self.listener.setblocking(False)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.stop_ev = threading.Event()
        self.requests = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        bufs = {}
        while not self.stop_ev.is_set():
            for key, _ in self.sel.select(0.1):
                if key.data is None:
                    for _ in range(256):
                        try:
                            s, _a = self.listener.accept()
                        except (BlockingIOError, OSError):
                            break
                        s.setblocking(False)
                        bufs[s] = b""
                        self.sel.register(s, selectors.EVENT_READ, "c")
                    continue
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    s.close()
                    bufs.pop(s, None)
                    continue
                buf = bufs[s] + data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    self.requests += 1
                    try:
                        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    except OSError:
                        break
                bufs[s] = buf
        for s in list(bufs):
            s.close()
        self.sel.close()
        self.listener.close()

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)


def test_5000_connections_at_once_are_all_served(bulwark, tmp_path):
    n = 5000
    need = 2 * n + 200  # the client side of each connection, plus slack
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    up = ManyConnOrigin()
    socks = []
    try:
        cfg = default_config([up.address])
        # Each of the 5,000 in-flight requests opens an upstream connection;
        # past the origin's backlog a SYN is retried after 1s: give connect
        # room for that.
        cfg["upstreams"]["app"].update({"keepalive": 64, "connect_timeout": "5s"})
        bw = bulwark(cfg)
        sel = selectors.DefaultSelector()
        req = b"GET /many HTTP/1.1\r\nHost: t\r\n\r\n"
        state = {}
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", bw.port))
            socks.append(s)
            state[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
        done = 0
        failed = []
        deadline = time.monotonic() + (60 if ASAN else 30)
        while done + len(failed) < n and time.monotonic() < deadline:
            for key, ev in sel.select(0.2):
                s = key.fileobj
                if ev & selectors.EVENT_WRITE:
                    try:
                        s.send(req)
                    except OSError as e:
                        failed.append(repr(e))
                        sel.unregister(s)
                        continue
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data = None
                    failed.append(repr(e))
                if not data:
                    if data is not None:
                        failed.append("eof")
                    sel.unregister(s)
                    continue
                state[s] += data
                if state[s].endswith(b"\r\n\r\nok"):
                    assert state[s].startswith(b"HTTP/1.1 200 "), state[s][:100]
                    done += 1
                    sel.unregister(s)
        sel.close()
        assert failed == [], f"{len(failed)} of {n} connections failed: {failed[:5]}"
        assert done == n, f"only {done} of {n} connections got their response in time"
        # All still open (keepalive), and the proxy still answers a new one at once.
        r = client.request(bw.port, "GET", "/after-many", timeout=5)
        assert r.status == 200 and r.body == b"ok"
    finally:
        for s in socks:
            s.close()
        up.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert up.requests >= n + 1


def test_started_with_fewer_descriptors_than_connections(origin, tmp_path):
    nofile = 64

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    cfg = default_config([origin.address], access_log=str(tmp_path / "access.log"),
                         admin={"address": "127.0.0.1:0"})
    bw = Bulwark(tmp_path, cfg, name="lowfd", preexec_fn=low_nofile,
                 expect_errors=["Too many open files"])
    try:
        check_fewer_descriptors(bw, nofile)
    finally:
        # Whatever failed above, the process started here goes.
        bw.kill()


def check_fewer_descriptors(bw, nofile):
    socks = []
    try:
        assert resource.prlimit(bw.pid, resource.RLIMIT_NOFILE)[0] == nofile
        assert_still_serves(bw)
        # Three times more connections than descriptors; each sends a request,
        # so the accepted ones also hold an upstream connection.
        for i in range(3 * nofile):
            s = socket.create_connection(("127.0.0.1", bw.port), timeout=5)
            s.sendall(request_bytes("GET", f"/fd/{i}"))
            socks.append(s)
        deadline = time.monotonic() + 5 * SLACK
        while "pausing accept" not in bw.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "pausing accept" in bw.stderr(), bw.stderr()[-2000:]
        # Saturated, with connections still queued: no busy loop. Counted
        # once it serves again (paused and resumed below); the sleep only
        # gives a spinning proxy the chance to fail accept after accept.
        time.sleep(1.5)
        # Those that got in were answered: 200, or 502 when no descriptor was
        # left for the upstream connection (io_uring reads a request after
        # accept's batch, so accepted connections may have taken them all;
        # epoll reads it at once). Never anything else.
        answered = 0
        for s in socks:
            s.setblocking(False)
            try:
                head = s.recv(65536)
            except OSError:
                continue
            if head:
                assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 502 ")), head[:100]
                answered += 1
        assert 0 < answered, f"none of {len(socks)} answered with {nofile} descriptors"
    finally:
        for s in socks:
            s.close()
        socks = []
    try:
        # Once the connections are gone, it serves again (and soon: the
        # accept pause is short).
        deadline = time.monotonic() + 5 * SLACK
        last = None
        while time.monotonic() < deadline:
            try:
                assert_still_serves(bw)
                break
            except (AssertionError, OSError, client.Closed, client.Timeout) as e:
                last = e
                time.sleep(0.1)
        else:
            raise AssertionError(f"not serving again after the connections closed: {last!r}")
        assert_still_serves(bw)
        assert_paused_not_spinning(bw)
    finally:
        bw.stop()


@pytest.mark.parametrize("engine", ["epoll", "auto"])
def test_client_closing_before_the_answer_abandons_the_upstream_request(origin, proxy, engine):
    # A client that gives up (closes) while its request waits on a slow
    # upstream: the upstream connection is closed at once, as nginx does
    # (499), not held until read_timeout for an answer nobody reads.
    origin.on("/hang", om.no_response())
    bw = proxy(origin, io_engine=engine, upstream_opts={"read_timeout": "60s"})
    c = bw.connect(timeout=10)
    c.send(request_bytes("GET", "/hang"))
    assert origin.wait_for(lambda o: o.heads_for("/hang"), 5 * SLACK)
    c.close()
    assert origin.wait_for(lambda o: o.open_connections == 0, 5 * SLACK), \
        "the upstream connection outlived its client"
    line = [l for l in bw.access_log_lines(wait_for=1) if l["path"] == "/hang"]
    assert len(line) == 1 and line[0]["status"] == 499, line
    assert_still_serves(bw)


@pytest.mark.parametrize("engine", ["epoll", "auto"])
def test_client_half_closing_after_pipelined_requests_gets_every_answer(origin, proxy, engine):
    # A FIN behind pipelined requests ends the client's sending, not its
    # reading: each request is answered before the connection closes.
    origin.on("/slow", om.slow(0.3))
    bw = proxy(origin, io_engine=engine)
    c = bw.connect(timeout=10)
    c.send(request_bytes("GET", "/slow") + request_bytes("GET", "/next"))
    c.sock.shutdown(socket.SHUT_WR)
    for path in ("/slow", "/next"):
        r = c.read_response(timeout=5 * SLACK)
        assert r.status == 200 and r.json()["target"] == path, r
    how, extra = c.wait_closed(5 * SLACK)
    assert how == "eof" and extra == b""
    c.close()
