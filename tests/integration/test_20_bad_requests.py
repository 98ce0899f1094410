"""Requests the proxy must refuse: the error status, a short response with
Content-Length and `Connection: close`, then the connection closes. The
origin never sees a refused request, and the proxy keeps serving."""
import pytest

from bwtest.checks import assert_closed, assert_proxy_error, assert_still_serves
from bwtest.client import Closed, request_bytes

LIMITS = {"request_line_bytes": 256, "header_bytes": 1024, "headers": 10, "body_bytes": 1000}


def head(*lines, request_line="POST /x HTTP/1.1", host=True):
    out = request_line + "\r\n"
    if host:
        out += "Host: test.example\r\n"
    for line in lines:
        out += line + "\r\n"
    return (out + "\r\n").encode("latin-1")


# (id, bytes, status): refused while parsing the head.
HEAD_CASES = [
    ("cl-and-te", head("Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
    ("te-and-cl", head("Transfer-Encoding: chunked", "Content-Length: 5") + b"0\r\n\r\n", 400),
    ("duplicate-cl-same", head("Content-Length: 5", "Content-Length: 5") + b"hello", 400),
    ("duplicate-cl-differ", head("Content-Length: 5", "Content-Length: 6") + b"hello!", 400),
    ("cl-list", head("Content-Length: 5, 5") + b"hello", 400),
    ("cl-plus", head("Content-Length: +5") + b"hello", 400),
    ("cl-minus", head("Content-Length: -1"), 400),
    ("cl-inner-space", head("Content-Length: 1 0") + b"0123456789", 400),
    ("cl-hex", head("Content-Length: 0x5") + b"hello", 400),
    ("cl-empty", head("Content-Length: "), 400),
    ("cl-overflow", head("Content-Length: 184467440737095516160"), 400),
    ("cl-overflow-u64", head("Content-Length: 18446744073709551616"), 400),
    ("te-chunked-then-gzip", head("Transfer-Encoding: chunked, gzip") + b"0\r\n\r\n", 400),
    ("te-gzip-then-chunked", head("Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n", 501),
    ("obs-fold", head("X-Folded: a", " b"), 400),
    ("obs-fold-tab", head("X-Folded: a", "\tb"), 400),
    ("space-before-colon", head("Content-Length : 5") + b"hello", 400),
    ("space-in-name", head("X Y: z"), 400),
    ("nul-in-value", head("X-A: a\x00b"), 400),
    ("ctl-in-value", head("X-A: a\x01b"), 400),
    ("del-in-value", head("X-A: a\x7fb"), 400),
    ("bare-cr-in-value", head("X-A: a\rb"), 400),
    ("bare-lf-everywhere", b"GET /x HTTP/1.1\nHost: test.example\n\n", 400),
    ("bare-lf-one-field", b"GET /x HTTP/1.1\r\nHost: test.example\nX-A: b\r\n\r\n", 400),
    ("bare-lf-request-line", b"GET /x HTTP/1.1\nHost: test.example\r\n\r\n", 400),
    ("missing-host-11", head(request_line="GET /x HTTP/1.1", host=False), 400),
    ("two-hosts", head("Host: other.example", request_line="GET /x HTTP/1.1"), 400),
    ("http-1.2", head(request_line="GET /x HTTP/1.2"), 505),
    ("http-2.0", head(request_line="GET /x HTTP/2.0"), 505),
    ("garbage-request-line", b"HELLO\r\n\r\n", 400),
    ("nul-in-target", head(request_line="GET /a\x00b HTTP/1.1"), 400),
    ("expect-other", head("Expect: 200-ok", "Content-Length: 5") + b"hello", 417),
    # Methods are upper case: an origin that upper-cases "delete" would
    # serve a DELETE no rule on http.request.method saw (nginx refuses too).
    ("lowercase-method", head(request_line="delete /x HTTP/1.1"), 400),
    ("mixed-case-method", head(request_line="Get /x HTTP/1.1"), 400),
    ("host-empty-label", head("Host: a..example", request_line="GET /x HTTP/1.1", host=False), 400),
    # A reverse proxy opens no tunnels: an origin that accepted one would
    # turn a pooled connection into a pipe for other clients' requests.
    ("connect", head(request_line="CONNECT origin.example:443 HTTP/1.1"), 501),
]


@pytest.mark.parametrize("raw,status", [pytest.param(r, s, id=i) for i, r, s in HEAD_CASES])
def test_refused_head(origin, proxy, raw, status):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(raw)
        r = c.read_response(timeout=3)
        assert_proxy_error(r, status)
        assert_closed(c)
    assert origin.bytes_received == 0, f"origin received {origin.heads}"
    assert_still_serves(bw)


@pytest.mark.parametrize("te", ["chunked, chunked", "xchunked", "identity", "chunked, identity"])
def test_refused_odd_transfer_encoding(origin, proxy, te):
    # Not chunked as the one final coding: refused, as 400 or 501, never guessed at.
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(head(f"Transfer-Encoding: {te}") + b"0\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status in (400, 501), r
        assert_proxy_error(r, r.status)
        assert_closed(c)
    assert origin.bytes_received == 0
    assert_still_serves(bw)


# (id, body bytes after a chunked head, status): refused while reading the body.
CHUNK_CASES = [
    ("bad-chunk-size", b"zz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow", b"10000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow-long", b"f" * 40 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-negative", b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-data-too-long", b"3\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-bare-lf", b"5\nhello\r\n0\r\n\r\n", 400),
]


@pytest.mark.parametrize("body,status", [pytest.param(b, s, id=i) for i, b, s in CHUNK_CASES])
def test_refused_chunked_body(origin, proxy, body, status):
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(head("Transfer-Encoding: chunked") + body)
        r = c.read_response(timeout=3)
        assert_proxy_error(r, status)
        assert_closed(c)
    # The head may have been streamed on, but no complete request reached it.
    assert origin.requests == [], origin.requests
    assert_still_serves(bw)


# -- limits, exactly at the limit (passes) and one byte past (refused)

def request_line_of(total):
    # "GET /aaa HTTP/1.1\r\n" is 16 bytes plus the a's.
    return "GET /" + "a" * (total - 16) + " HTTP/1.1"


def test_request_line_at_limit_passes(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    line = request_line_of(256)
    assert len(line) + 2 == 256
    with bw.connect() as c:
        c.send(line + "\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
    assert origin.requests[0].target == "/" + "a" * 240


def test_request_line_over_limit_is_414(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(request_line_of(257) + "\r\nHost: t\r\n\r\n")
        assert_proxy_error(c.read_response(), 414)
        assert_closed(c)
    assert origin.bytes_received == 0
    assert_still_serves(bw)


def test_request_line_far_over_limit_before_line_end_is_414(origin, proxy):
    # The proxy does not wait for the end of an endless line.
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send("GET /" + "a" * 4000)
        assert_proxy_error(c.read_response(timeout=3), 414)
        assert_closed(c)
    assert_still_serves(bw)


def head_of(total, request_line="GET /h HTTP/1.1"):
    """A head of exactly `total` bytes (request line to the final CRLF)."""
    fixed = f"{request_line}\r\nHost: t\r\nX-Pad: \r\n\r\n"
    return f"{request_line}\r\nHost: t\r\nX-Pad: {'p' * (total - len(fixed))}\r\n\r\n".encode()


def test_head_at_header_bytes_passes(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    raw = head_of(1024)
    assert len(raw) == 1024
    with bw.connect() as c:
        c.send(raw)
        assert c.read_response().status == 200
    assert origin.requests[0].header("x-pad") == "p" * (1024 - 37)


def test_head_over_header_bytes_is_431(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(head_of(1025))
        assert_proxy_error(c.read_response(), 431)
        assert_closed(c)
    assert origin.bytes_received == 0
    assert_still_serves(bw)


def test_head_far_over_header_bytes_without_end_is_431(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 3 + b"X-Long: " + b"v" * 3000)
        assert_proxy_error(c.read_response(timeout=3), 431)
        assert_closed(c)
    assert_still_serves(bw)


def fields(n):
    return ["Host: t"] + [f"X-F{i}: {i}" for i in range(n - 1)]


def test_header_count_at_limit_passes(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(head(*fields(10), request_line="GET /n HTTP/1.1", host=False))
        assert c.read_response().status == 200
    assert origin.requests[0].header("x-f8") == "8"


def test_header_count_over_limit_is_431(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(head(*fields(11), request_line="GET /n HTTP/1.1", host=False))
        assert_proxy_error(c.read_response(), 431)
        assert_closed(c)
    assert origin.bytes_received == 0
    assert_still_serves(bw)


def test_body_at_limit_passes(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    r = bw.request("POST", "/b", body=b"b" * 1000)
    assert r.status == 200 and r.json()["body_len"] == 1000


def test_chunked_body_at_limit_passes(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    body = b"%x\r\n" % 600 + b"c" * 600 + b"\r\n" + b"%x\r\n" % 400 + b"c" * 400 + b"\r\n0\r\n\r\n"
    r = bw.request("POST", "/b", [("Transfer-Encoding", "chunked")], body=body)
    assert r.status == 200 and r.json()["body_len"] == 1000


def test_content_length_over_body_bytes_is_413(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        # Only the head: the length alone decides.
        c.send(head("Content-Length: 1001"))
        assert_proxy_error(c.read_response(), 413)
        assert_closed(c)
    assert origin.bytes_received == 0
    assert_still_serves(bw)


def test_chunk_size_over_body_bytes_is_413_before_its_data(origin, proxy):
    # The size line alone says the body will not fit: refused at once, as
    # nginx does, without waiting for (or forwarding) the chunk's data.
    bw = proxy(origin, limits=LIMITS)
    with bw.connect() as c:
        c.send(head("Transfer-Encoding: chunked") + b"%x\r\n" % 1001)
        assert_proxy_error(c.read_response(timeout=3), 413)
        assert_closed(c)
    with bw.connect() as c:
        # The largest size the decoder takes (15 hex digits), after a first
        # chunk: the sum is checked without overflow.
        c.send(head("Transfer-Encoding: chunked") + b"a\r\n" + b"c" * 10 + b"\r\nfffffffffffffff\r\n")
        assert_proxy_error(c.read_response(timeout=3), 413)
        assert_closed(c)
    assert_still_serves(bw)


def test_chunked_body_over_body_bytes_is_413(origin, proxy):
    bw = proxy(origin, limits=LIMITS)
    body = b"%x\r\n" % 600 + b"c" * 600 + b"\r\n" + b"%x\r\n" % 401 + b"c" * 401 + b"\r\n0\r\n\r\n"
    with bw.connect() as c:
        c.send(head("Transfer-Encoding: chunked") + body)
        try:
            r = c.read_response()
        except Closed as e:
            pytest.fail(f"connection {e.how} instead of a 413 response")
        assert_proxy_error(r, 413)
        assert_closed(c)
    assert origin.requests == []
    assert_still_serves(bw)


def test_refusal_after_good_request_on_same_connection(origin, proxy):
    # A refused request pipelined behind a good one: the good one is answered,
    # then the refusal, then the close.
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/good") + head("Content-Length: 1", "Transfer-Encoding: chunked") + b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/good"
        assert_proxy_error(c.read_response(), 400)
        assert_closed(c)
    assert [r.target for r in origin.requests] == ["/good"]
