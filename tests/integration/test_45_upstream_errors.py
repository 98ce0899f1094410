"""Upstream failures: retries of what is safe to retry, and 502 for
responses the proxy must not pass on."""
import socket
import threading
import time

import pytest

from bwtest import client
from bwtest import origin as om
from bwtest.checks import assert_proxy_error, assert_still_serves
from bwtest.client import Closed, request_bytes
from bwtest.proc import default_config


def test_get_retried_on_next_server_when_first_is_down(origins, proxy):
    live, = origins(1)
    down = om.down_address()
    bw = proxy([down, live], upstream_opts={"balance": "round_robin", "max_fails": 100},
               expect_errors=[down])
    for i in range(10):
        r = bw.request("GET", f"/r/{i}")
        assert r.status == 200, f"request {i}: {r!r}"
        assert r.json()["server"] == live.name
    assert len(live.requests) == 10


def test_post_refused_by_a_down_server_goes_to_the_next(origins, proxy):
    """A refused connect means the request reached nobody: retrying it is
    safe whatever the method (nginx and HAProxy do the same), and
    DESIGN.md's request flow says "retry on connect failure"."""
    live, = origins(1)
    down = om.down_address()
    bw = proxy([down, live], upstream_opts={"balance": "round_robin", "max_fails": 100},
               expect_errors=[down])
    # Round robin over [down, live]: one of the two POSTs is first tried on
    # the down server; both must arrive once, with their bodies.
    for i in range(2):
        r = bw.request("POST", f"/pay/{i}", body=b"amount=10")
        assert r.status == 200, f"POST {i}: {r!r}"
    for i in range(2):
        got = live.requests_for(f"/pay/{i}")
        assert len(got) == 1 and got[0].body == b"amount=10", got


def test_post_to_only_server_down_is_502(proxy):
    down = om.down_address()
    bw = proxy(down, expect_errors=[down])
    r = bw.request("POST", "/pay", body=b"amount=10")
    assert_proxy_error(r, 502, closing=False)
    assert_still_serves_502 = bw.request("GET", "/x")
    assert assert_still_serves_502.status == 502


def test_post_that_reached_a_failing_server_is_not_replayed(origins, proxy):
    a, b = origins(2)
    a.on("/pay", om.reset())
    b.on("/pay", om.reset())
    a.on("/pay2", om.reset())
    bw = proxy([a, b], upstream_opts={"balance": "round_robin", "max_fails": 100},
               expect_errors=[a.address, b.address])
    r = bw.request("POST", "/pay", body=b"amount=10")
    assert_proxy_error(r, 502, closing=False)
    # It reached one server, which failed; it must not be sent again.
    assert len(a.heads_for("/pay")) + len(b.heads_for("/pay")) == 1
    # Only a fails /pay2; two POSTs, one each: b's is fine, a's is not replayed on b.
    statuses = sorted(bw.request("POST", "/pay2", body=b"x").status for _ in range(2))
    assert statuses == [200, 502], statuses
    assert len(b.requests_for("/pay2")) == 1


BAD_RESPONSES = [
    ("reset-before-response", om.reset()),
    ("close-before-response", om.raw(b"", close=True)),
    ("garbage-status-line", om.garbage_status()),
    ("not-http", om.raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")),
    ("huge-headers", om.huge_headers()),
    ("cl-and-te", om.cl_and_te()),
    ("bad-content-length", om.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\nhello")),
    ("two-content-lengths", om.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")),
    ("nul-in-field", om.raw(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok")),
    ("obs-fold", om.raw(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok")),
]


@pytest.mark.parametrize("behaviour", [pytest.param(b, id=i) for i, b in BAD_RESPONSES])
def test_bad_upstream_response_gives_502(origin, proxy, behaviour):
    origin.on("/bad", behaviour)
    bw = proxy(origin, upstream_opts={"read_timeout": "2s"}, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/bad"))
        r = c.read_response(timeout=5)
        assert_proxy_error(r, 502, closing=False)
        assert r.header("x-a") is None and r.header("x-big") is None
        if "close" not in r.connection_tokens():
            c.send(request_bytes("GET", "/after"))
            assert c.read_response().json()["target"] == "/after"
    assert_still_serves(bw)


def test_response_smuggling_attempt_not_passed_on(origin, proxy):
    # CL+TE from the origin with a second response hidden in the body: the
    # client must not receive the hidden response as a separate one.
    origin.on("/smuggle", om.raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2d\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!\r\n0\r\n\r\n", close=False))
    bw = proxy(origin, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/smuggle"))
        r = c.read_response()
        assert r.status == 502
        if "close" not in r.connection_tokens():
            c.send(request_bytes("GET", "/after"))
            r2 = c.read_response()
            assert r2.status == 200 and r2.json()["target"] == "/after"


def test_upstream_that_hangs_up_after_a_response_is_not_reused(origin, proxy):
    # The origin answers as if keeping the connection (no Connection: close)
    # and closes at once. A POST, which is never retried, must not be handed
    # that dead connection from the pool.
    origin.on("/ka-then-close", om.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True))
    bw = proxy(origin)
    for i in range(10):
        with bw.connect() as c:
            c.send(request_bytes("GET", "/ka-then-close"))
            assert c.read_response().status == 200
            time.sleep(0.05)
            c.send(request_bytes("POST", f"/after/{i}", body=b"data"))
            r = c.read_response()
            assert r.status == 200, f"round {i}: POST after the upstream hung up got {r!r}"
            assert r.json()["target"] == f"/after/{i}"


def test_unsolicited_101_is_502_and_not_replayed(origin, proxy):
    # A 101 to a request that asked for no upgrade is an invalid response,
    # not a stale pooled connection: the GET is answered 502 and not sent
    # again on a new connection.
    origin.on("/sw", om.raw(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                            b"Upgrade: websocket\r\n\r\n", close=False))
    bw = proxy(origin, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/warm"))  # leaves a pooled connection
        assert c.read_response().status == 200
        c.send(request_bytes("GET", "/sw"))
        assert_proxy_error(c.read_response(timeout=5), 502, closing=False)
    assert len(origin.requests_for("/sw")) == 1, origin.requests_for("/sw")
    assert_still_serves(bw)


@pytest.mark.parametrize("upgrade_asked", [False, True])
def test_101_without_upgrade_header_is_502(origin, proxy, upgrade_asked):
    # RFC 9110 §15.2.2: a 101 names the protocol it switches to in Upgrade.
    # One without it is no interim response to pass on: forwarded, the
    # client (or a cache in front) would switch to a tunnel while the
    # proxy went on parsing HTTP from the same bytes (a desync).
    origin.on("/sw", om.raw(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=False))
    bw = proxy(origin, expect_errors=[origin.address])
    asked = [("Connection", "upgrade"), ("Upgrade", "websocket")] if upgrade_asked else []
    with bw.connect() as c:
        c.send(request_bytes("GET", "/sw", asked))
        r = c.read_response(timeout=5)
        assert r.status == 502, r
    assert len(origin.requests_for("/sw")) == 1
    assert_still_serves(bw)


def corked(data):
    """Sends data and closes with TCP_CORK on, so the close's FIN travels
    with the last bytes: the proxy reads the end of the stream right behind
    the response, deterministically."""

    def run(ex):
        ex.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        ex.send(data)
        return False

    return run


@pytest.mark.parametrize("data,status,interim", [
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n"
                 b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                 413, [100], id="100-then-413"),
    pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                 b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
                 204, [103], id="103-then-204"),
    pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                 200, [103], id="103-then-200"),
])
def test_final_response_read_with_the_upstream_close_is_delivered(origin, proxy, data, status, interim):
    """A final response that arrives together with the upstream's close,
    behind a 1xx still going out to the client, was taken for a cut one: the
    end of the stream was acted on before the buffered head was parsed (a
    502, or a bare close after the 1xx) or before the head went out (a
    whole 413 or 204 dropped as a "truncated body")."""
    origin.on("/up", corked(data))
    bw = proxy(origin)
    for i in range(5):
        with bw.connect() as c:
            c.send(request_bytes("POST", "/up", [("Content-Length", "100000")]))
            info = []
            r = c.read_response(informational=info, timeout=5)
            assert r.status == status, f"round {i}: {r!r}"
            assert [x.status for x in info] == interim
            assert r.body == (b"ok" if status == 200 else b"")
    log = bw.access_log_lines(wait_for=5)
    assert [e["status"] for e in log] == [status] * 5


def test_upstream_failing_after_a_1xx_gets_a_final_502(origin, proxy):
    """After a whole 1xx the client still waits for a final response (RFC
    9110 §15.2): an upstream that fails then gets it a 502, not a bare close
    logged as 499 (the client's fault)."""
    origin.on("/h", corked(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"))
    bw = proxy(origin, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/h"))
        info = []
        r = c.read_response(informational=info, timeout=5)
        assert [x.status for x in info] == [103]
        assert_proxy_error(r, 502, closing=True)
    entry = bw.access_log_lines(wait_for=1)[0]
    assert entry["status"] == 502, entry
    assert "closed before a complete response head" in entry["error"], entry
    assert len(origin.heads_for("/h")) == 1  # a 1xx went out: not replayed


def upstream_failures(bw):
    r = client.request(bw.admin_port, "GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith('bulwark_upstream_failures_total{upstream="app"} '):
            return int(line.split()[1])
    raise AssertionError("no bulwark_upstream_failures_total for app")


@pytest.mark.parametrize("how,behaviour,why", [
    ("close", om.close_mid_body(100000, 30000), "closed in the middle of a response body"),
    ("stall", om.stall_mid_body(100000, 20000), "read timeout in the middle of a response body"),
    ("bad-chunk", None, "malformed chunked body"),
])
def test_upstream_failing_mid_body_is_counted_and_logged(tmp_path, origin, bulwark, how, behaviour, why):
    """An upstream that dies, stalls past read_timeout or breaks its framing
    after the response head went out is as much a failure as one before it:
    the client connection is cut (test_30, test_40), and the operator sees it
    in bulwark_upstream_failures_total, the error log and the access log,
    whose status (200, already sent) alone looks like a success. A stall
    mid-body left no trace at all."""
    head_read = threading.Event()
    if behaviour is None:
        def behaviour(ex):
            # The bad chunk only once the client has the head.
            ex.read_body()
            ex.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            head_read.wait(5)
            head_read.clear()
            ex.send(b"zz\r\n")
            ex.hold(limit=5)
            return False
    origin.on("/cut", behaviour)
    cfg = default_config([origin.address], admin={"address": "127.0.0.1:0"})
    cfg["upstreams"]["app"].update({"read_timeout": "300ms", "max_fails": 0})
    bw = bulwark(cfg, expect_errors=[origin.address])
    for i in range(2):
        with bw.connect() as c:
            c.send(request_bytes("GET", "/cut"))
            r = c.read_head(timeout=5)
            assert r.status == 200
            head_read.set()
            with pytest.raises(Closed):
                c.read_exact(100000, timeout=5)
        assert upstream_failures(bw) == i + 1
    log = bw.access_log_lines(wait_for=2)
    assert [e["status"] for e in log] == [200, 200]
    assert all(why in e.get("error", "") for e in log), log
    assert sum(why in line for line in bw.stderr_lines()) == 2, bw.stderr()


def pooled_connections(bw, origin, n):
    """n concurrent GETs: the origin holds each until all have arrived, so
    they leave n idle connections in the (one) worker's pool."""
    origin.on("/warm", om.gather(n))
    results = [None] * n

    def get(i):
        results[i] = bw.request("GET", "/warm", timeout=10).status

    threads = [threading.Thread(target=get, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == [200] * n, results
    assert origin.connections == n


def upstream_retries(bw):
    r = client.request(bw.admin_port, "GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith("bulwark_upstream_retries_total "):
            return int(line.split()[1])
    raise AssertionError("no bulwark_upstream_retries_total")


STALE = 4


def test_get_meeting_a_stale_pooled_connection_is_retried_on_a_new_one(origin, proxy):
    """Every pooled connection was closed by the origin (its own idle
    timeout, say): the GET that meets the first is sent again on a new
    connection, as architecture.md says, not on the next pooled one, stale
    as well. Taken from the pool, the second stale one used up the only
    server's last attempt: a 502."""
    bw = proxy(origin, admin={"address": "127.0.0.1:0"})
    pooled_connections(bw, origin, STALE)
    origin.set_default(om.drop_connections(STALE))
    r = bw.request("GET", "/after")
    assert r.status == 200, r
    assert r.json()["target"] == "/after"
    assert origin.connections == STALE + 1  # exactly one new connection
    heads = origin.heads_for("/after")
    assert [h.conn_id for h in heads[1:]] == [STALE + 1], heads
    assert len(heads) == 2  # one stale pooled connection met, then the new one
    assert upstream_retries(bw) == 1
    entry = bw.access_log_lines(wait_for=STALE + 1)[-1]
    assert entry["status"] == 200 and "error" not in entry, entry


@pytest.mark.parametrize("body", [b"amount=10", b""], ids=["with-body", "empty"])
def test_post_meeting_a_stale_pooled_connection_is_not_replayed(origin, proxy, body):
    """The proxy cannot tell a pooled connection the origin closed before
    the request arrived from one it closed while processing it: a POST
    that met one is answered 502, not sent again (nginx does the same).
    An upstream keepalive_timeout shorter than the origin's avoids the race."""
    bw = proxy(origin, expect_errors=[origin.address])
    pooled_connections(bw, origin, 1)
    origin.set_default(om.drop_connections(1))
    r = bw.request("POST", "/pay", body=body, headers=[("Content-Length", str(len(body)))])
    assert_proxy_error(r, 502, closing=False)
    assert len(origin.heads_for("/pay")) == 1
    assert origin.connections == 1
    assert bw.request("GET", "/after").status == 200


@pytest.mark.parametrize("pooled", [False, True], ids=["new-connection", "pooled-connection"])
def test_get_whose_upstream_times_out_is_not_retried(origins, proxy, pooled):
    """A read timeout before the response head is never retried, even for
    a GET, on a pooled connection or not (config.md, Retries): the server
    may still be working on it, and a slow server would get every request
    twice. 504, the request sent once, the other server untouched."""
    a, b = origins(2)
    for o in (a, b):
        o.on("/hang", om.no_response())
    bw = proxy([a, b], upstream_opts={"read_timeout": "300ms", "max_fails": 100},
               expect_errors=[a.address, b.address])
    with bw.connect() as c:
        if pooled:
            c.send(request_bytes("GET", "/warm"))
            assert c.read_response().status == 200
        c.send(request_bytes("GET", "/hang"))
        assert_proxy_error(c.read_response(timeout=5), 504, closing=False)
    heads = a.heads_for("/hang") + b.heads_for("/hang")
    assert len(heads) == 1, heads
    entry = bw.access_log_lines(wait_for=2 if pooled else 1)[-1]
    assert entry["status"] == 504 and "read timeout" in entry["error"], entry

