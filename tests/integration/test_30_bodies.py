"""Bodies stream both ways, intact, in every framing, without the proxy
buffering whole bodies."""
import hashlib
import re
import time

import pytest

from bwtest import origin as om
from bwtest.checks import ASAN, SLACK, assert_proxy_error, assert_still_serves
from bwtest.client import Closed, chunk_encode, request_bytes


def sha(b):
    return hashlib.sha256(b).hexdigest()


# Some scenarios below repeat: the bugs they guard against (a transfer that
# stalls under edge-triggered readiness, an EOF that arrives with the last
# data) showed only in some runs, so one run is not enough to trust.


def test_post_5mib_content_length_arrives_intact(origin, proxy):
    # Repeated: the stall is intermittent, ten uploads make it show reliably.
    bw = proxy(origin, limits={"drain_timeout": "1s"})
    body = om.pattern(5 << 20, offset=5)
    for i in range(10):
        r = bw.request("POST", f"/upload/{i}", body=body, timeout=5)
        assert r.status == 200
        got = r.json()
        assert (got["body_len"], got["body_sha256"]) == (len(body), sha(body))
        assert origin.requests[-1].header("content-length") == str(len(body))


def test_post_chunked_body_arrives_intact(origin, proxy):
    bw = proxy(origin, limits={"drain_timeout": "1s"})
    body = om.pattern(3 << 20, offset=9)
    enc = chunk_encode(body, sizes=(1, 7, 4096, 65536, 1 << 20, 3), ext=True, trailers=[("X-Trailer", "t")])
    for i in range(5):  # the stall is intermittent
        r = bw.request("POST", f"/chunked-up/{i}", [("Transfer-Encoding", "chunked")], body=enc, timeout=5)
        assert r.status == 200
        got = r.json()
        assert (got["body_len"], got["body_sha256"]) == (len(body), sha(body))
        req = origin.requests[-1]
        # Still one framing only at the origin.
        assert not (req.header("content-length") and req.header("transfer-encoding"))


def test_post_1mib_content_length_and_chunked_arrive_intact(origin, proxy):
    # Small enough to stay clear of the upload stall above; checks integrity.
    bw = proxy(origin)
    body = om.pattern(256 << 10, offset=5)
    r = bw.request("POST", "/small-up", body=body)
    assert r.json()["body_sha256"] == sha(body)
    r = bw.request("POST", "/small-up-c", [("Transfer-Encoding", "chunked")],
                   body=chunk_encode(body, sizes=(1, 7, 4096, 3), ext=True))
    assert r.json()["body_sha256"] == sha(body)


def test_tiny_chunks_are_coalesced_not_forwarded_one_by_one(origin, proxy):
    # A body of 1-byte chunks is 6 bytes on the wire per byte of data. Sent
    # up one chunk per write, each cost the proxy a system call and the
    # upstream a packet: a client at a few MB/s kept a core busy. What one
    # read brought goes up as one chunk of our own instead.
    bw = proxy(origin, limits={"body_bytes": "0"})
    body = om.pattern(256 << 10, offset=3)
    enc = b"".join(b"1\r\n" + body[i:i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
    assert_still_serves(bw)
    r = bw.request("POST", "/tiny", [("Transfer-Encoding", "chunked")], body=enc, timeout=30)
    assert r.status == 200
    got = r.json()
    assert (got["body_len"], got["body_sha256"]) == (len(body), sha(body))
    req = origin.requests_for("/tiny")[0]
    # The chunk count is the cost: one write and one upstream packet each.
    assert req.chunks <= len(body) // 64, f"{len(body)} client chunks went up as {req.chunks}"


def test_tiny_chunks_in_a_response_are_coalesced(origin, proxy):
    body = om.pattern(256 << 10, offset=4)
    enc = b"".join(b"1\r\n" + body[i:i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
    origin.on("/tiny", om.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + enc,
                              close=False))
    bw = proxy(origin)
    assert_still_serves(bw)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/tiny"))
        assert c.read_head(timeout=30).status == 200
        chunks = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            size = int(c.read_line(timeout=30).split(b";", 1)[0], 16)
            if size == 0:
                assert c.read_line(timeout=30) == b""
                break
            chunks.append(c.read_exact(size, timeout=30))
            assert c.read_exact(2, timeout=30) == b"\r\n"
    assert b"".join(chunks) == body
    assert len(chunks) <= len(body) // 64, f"{len(body)} upstream chunks reached the client as {len(chunks)}"


def test_post_empty_bodies(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("POST", "/e1", [("Content-Length", "0")]))
        assert c.read_response().json()["body_len"] == 0
        c.send(request_bytes("POST", "/e2", [("Transfer-Encoding", "chunked")], body=b"0\r\n\r\n"))
        assert c.read_response().json()["body_len"] == 0
        c.send(request_bytes("GET", "/e3"))
        assert c.read_response().json()["target"] == "/e3"


def test_chunked_response_arrives_intact(origin, proxy):
    body = om.pattern(2 << 20, offset=11)
    origin.on("/chunked", om.chunked(body, sizes=(1, 3, 100, 65536, 500000)))
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/chunked"))
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.body == body
        c.send(request_bytes("GET", "/after"))
        assert c.read_response().json()["target"] == "/after"


def test_chunked_response_is_reframed(origin, proxy):
    # Extensions, leading zeros, uppercase hex and trailers from the
    # upstream do not reach the client: it gets plain chunks of our own.
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"005;name=value\r\nhello\r\n"
           b"000B\r\n, and more.\r\n"
           b"0;last\r\nX-Trailer: t\r\n\r\n")
    origin.on("/odd", om.raw(raw, close=False))
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/odd"))
        head = c.read_head()
        assert head.header("transfer-encoding") == "chunked"
        wire = b""
        while not wire.endswith(b"0\r\n\r\n"):
            wire += c.read_exact(1)
        # Where our chunks begin and end depends on how the bytes were read
        # (what one read brought goes out as one chunk); their framing does not.
        assert wire.endswith(b"\r\n0\r\n\r\n") and b"X-Trailer" not in wire, wire
        data, rest = b"", wire
        while rest != b"0\r\n\r\n":
            line, rest = rest.split(b"\r\n", 1)
            assert re.fullmatch(rb"[1-9a-f][0-9a-f]*", line), f"size line {line!r} is not ours"
            n = int(line, 16)
            data, rest = data + rest[:n], rest[n:]
            assert rest.startswith(b"\r\n"), wire
            rest = rest[2:]
        assert data == b"hello, and more."
        c.send(request_bytes("GET", "/after"))
        assert c.read_response().json()["target"] == "/after"


def test_content_length_response_1mib_intact(origin, proxy):
    origin.on("/1m", om.big(1 << 20))
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/1m"))
        r = c.read_response(timeout=10)
        assert r.status == 200
        assert r.header("content-length") == str(1 << 20)
        assert r.body == om.big_body(1 << 20)
        c.send(request_bytes("GET", "/after"))
        assert c.read_response().json()["target"] == "/after"


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_close_delimited_response_arrives_whole_then_client_closed(origin, proxy, version):
    body = om.pattern(1 << 20, offset=3)
    origin.on("/cd", om.close_delimited(body, version=version))
    bw = proxy(origin, limits={"drain_timeout": "1s"})
    for _ in range(10):  # intermittent: repeated to show reliably
        with bw.connect() as c:
            c.send(request_bytes("GET", "/cd"))
            r = c.read_response(timeout=3)
            assert r.status == 200
            assert r.body == body
            how, extra = c.wait_closed(3 * SLACK)
            assert how == "eof" and extra == b"", f"connection {how} after a close-delimited response"
    assert_still_serves(bw)


def test_gzip_chunked_response_to_http10_client_is_502(origin, proxy):
    # An HTTP/1.0 client gets the body without chunked framing, and has no
    # Transfer-Encoding to learn of the gzip coding under it: sending the
    # bytes anyway would hand it gzip data as if it were the content.
    gz = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    origin.on("/gz", om.raw(gz, close=False))
    bw = proxy(origin, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/gz", version="HTTP/1.0"))
        assert_proxy_error(c.read_response(timeout=5), 502)
    # An HTTP/1.1 client is told of the coding and gets it, rechunked.
    with bw.connect() as c:
        c.send(request_bytes("GET", "/gz"))
        r = c.read_response(timeout=5)
        assert r.status == 200 and r.header("transfer-encoding") == "gzip, chunked", r
        assert r.body == b"hello"


def test_response_is_streamed_not_buffered(origin, proxy):
    # The origin sends the second half only once the client has the first:
    # a proxy holding the body back until it is whole never delivers it.
    import threading
    first_seen = threading.Event()

    def drip(ex):
        ex.read_body()
        ex.send_head(200, [("Content-Length", "2000")])
        ex.send(b"a" * 1000)
        first_seen.wait(30)
        ex.send(b"b" * 1000)
        return True

    origin.on("/drip", drip)
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/drip"))
        r = c.read_head(timeout=10)
        assert r.status == 200
        assert c.read_exact(1000, timeout=10) == b"a" * 1000, "first half of the body was held back"
        first_seen.set()
        assert c.read_exact(1000, timeout=10) == b"b" * 1000


def test_request_body_is_streamed_not_buffered(origin, proxy):
    bw = proxy(origin, limits={"drain_timeout": "1s"})
    total = 4 << 20
    for i in range(10):  # the upload stall is intermittent
        with bw.connect(timeout=5) as c:
            c.send(request_bytes("POST", f"/stream-up/{i}", [("Content-Length", str(total))]))
            c.send(b"x" * (1 << 20))
            # The origin sees the request before the client has sent the rest.
            assert origin.wait_for(lambda o: o.heads_for(f"/stream-up/{i}"), timeout=3 * SLACK), \
                "origin did not get the head while the body was still coming"
            c.send(b"x" * (total - (1 << 20)))
            r = c.read_response(timeout=5)
            assert r.json()["body_len"] == total


def test_slow_reader_large_response_backpressure(origin, proxy):
    total = 64 << 20
    origin.on("/huge", om.big(total))
    bw = proxy(origin, limits={"send_timeout": "10s", "drain_timeout": "1s"})
    assert bw.request("GET", "/warmup").status == 200
    rss0 = bw.rss_kib()
    with bw.connect(timeout=10, rcvbuf=65536) as c:
        c.send(request_bytes("GET", "/huge"))
        r = c.read_head(timeout=5)
        assert r.status == 200 and r.header("content-length") == str(total)
        time.sleep(1.0)  # the client does not read
        sent_during_pause = origin.sent_bytes
        rss_during_pause = bw.rss_kib()
        h = hashlib.sha256()
        got = len(c.buf)
        h.update(c.buf)
        c.buf = b""
        deadline = time.monotonic() + 30
        while got < total and time.monotonic() < deadline:
            c.sock.settimeout(5)
            data = c.sock.recv(min(262144, total - got))
            if not data:
                break
            h.update(data)
            got += len(data)
    assert got == total, f"client got {got} of {total} bytes"
    assert h.hexdigest() == sha(om.big_body(total))
    # Backpressure: while the client did not read, the origin could not send
    # much more than socket buffers hold.
    assert sent_during_pause < total // 2, \
        f"origin sent {sent_during_pause >> 20} MiB while the client read nothing: the proxy buffers"
    if not ASAN:  # the sanitizer's quarantine keeps freed memory resident
        grew = (rss_during_pause - rss0) >> 10
        assert grew < 32, f"proxy RSS grew by {grew} MiB while holding a slow reader"
    assert_still_serves(bw)


def test_upstream_closes_mid_body_client_sees_truncation(origin, proxy):
    origin.on("/cut", om.close_mid_body(100000, 30000))
    bw = proxy(origin, limits={"drain_timeout": "1s"}, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/cut"))
        r = c.read_head()
        assert r.status == 200
        with pytest.raises(Closed):
            c.read_exact(100000, timeout=3 * SLACK)
        assert len(c.buf) < 100000
    assert_still_serves(bw)


def test_upstream_closes_mid_chunked_body_client_sees_truncation(origin, proxy):
    origin.on("/cutc", om.close_mid_body(0, 30000, chunked_body=True))
    bw = proxy(origin, limits={"drain_timeout": "1s"}, expect_errors=[origin.address])
    for _ in range(10):  # intermittent: repeated to show reliably
        with bw.connect() as c:
            c.send(request_bytes("GET", "/cutc"))
            r = c.read_head()
            assert r.status == 200
            # The terminating zero-size chunk must not be invented by the proxy.
            with pytest.raises(Closed):
                c.read_chunked(timeout=3 * SLACK)
    assert_still_serves(bw)


@pytest.mark.parametrize("engine", ["epoll", "auto"])
def test_cut_body_to_an_http10_client_ends_with_a_reset(origin, proxy, engine):
    # An HTTP/1.0 client reads the body until the close: a chunked response
    # the upstream cuts short must not end in a FIN, which would make the
    # truncated body look whole. The bytes before the cut still arrive.
    origin.on("/cutc", om.close_mid_body(0, 30000, chunked_body=True))
    bw = proxy(origin, io_engine=engine, limits={"drain_timeout": "1s"},
               expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/cutc", version="HTTP/1.0"))
        r = c.read_head()
        assert r.status == 200 and r.header("transfer-encoding") is None
        how, _ = c.wait_closed(5 * SLACK)
        assert how == "reset", (how, len(c.buf))
        assert 0 < len(c.buf) <= 30000 and c.buf == om.pattern(30000)[:len(c.buf)]
    assert_still_serves(bw)
