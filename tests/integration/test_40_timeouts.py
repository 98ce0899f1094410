"""Timeouts, downstream and upstream. Configured short (hundreds of ms) so
the tests are fast. No wall-clock upper bound: a shared, noisy machine can
only delay a close, so a test checks that it did not come before the
timeout, waits for it with a deadline that only guards against a hang, and
asserts which mechanism acted (the status, the access log's `error`)."""
import time

import pytest

from bwtest import origin as om
from bwtest import yamlish
from bwtest.checks import SLACK, assert_closed, assert_proxy_error, assert_still_serves
from bwtest.client import Closed, request_bytes

T = 0.5  # the timeout under test, seconds
LONG = "10s"


def limits(**over):
    d = {"client_header_timeout": LONG, "client_body_timeout": LONG, "keepalive_timeout": LONG,
         "send_timeout": LONG}
    d.update(over)
    return d


HANG = 20 * T  # waits this long for what a timeout of T does: a hang, not a slow machine


def not_before(t, timeout=T):
    """A lower bound only: noise adds delay, it cannot bring a close forward."""
    assert t >= timeout * 0.6, f"closed after {t:.2f}s, before the {timeout}s timeout"


def logged_error(bw, status, error):
    """The one access log line with `status` says `error`: the mechanism
    that acted (a timeout's own reason, not some other failure)."""
    deadline = time.monotonic() + HANG
    while True:
        lines = [l for l in bw.access_log_lines() if l["status"] == status]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(lines) == 1, f"expected one {status} in the access log: {lines}"
    assert lines[0].get("error", "").startswith(error), lines[0]
    return lines[0]


def test_partial_head_stall_gets_408(origin, proxy):
    bw = proxy(origin, limits=limits(client_header_timeout="500ms"))
    with bw.connect() as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-A: ")
        t0 = time.monotonic()
        r = c.read_response(timeout=HANG)
        not_before(time.monotonic() - t0)
        assert_proxy_error(r, 408)
        assert_closed(c)
    assert origin.bytes_received == 0
    assert_still_serves(bw)


def test_dripping_head_is_bounded_by_header_timeout(origin, proxy):
    # A byte every 100ms keeps the connection busy but never finishes the head:
    # the timeout covers the whole head, not the gap between reads.
    bw = proxy(origin, limits=limits(client_header_timeout="500ms"))
    # Dripped whole, the head would take 23 s, far past HANG: the proxy must
    # cut it first, with the header timeout's 408 (a timeout between reads,
    # 100 ms apart here, would never fire).
    raw = b"GET /drip HTTP/1.1\r\nHost: t\r\n" + b"X-A: " + b"a" * 200
    with bw.connect() as c:
        t0 = time.monotonic()
        cut = False
        for b in raw:
            try:
                c.send(bytes([b]))
            except OSError:
                cut = True
                break
            time.sleep(0.1)
            c.sock.setblocking(False)
            try:
                data = c.sock.recv(65536)
                c.buf += data
                if c.buf or not data:
                    cut = True
                    break
            except BlockingIOError:
                pass
            finally:
                c.sock.setblocking(True)
            if time.monotonic() - t0 > HANG:
                break
        assert cut, f"a dripping head kept the connection for {time.monotonic() - t0:.1f}s"
        not_before(time.monotonic() - t0)
        if c.buf:
            assert_proxy_error(c.read_response(timeout=HANG), 408)
    assert_still_serves(bw)


def test_first_head_deadline_counts_from_accept(origin, proxy):
    # A client that idles almost the whole header timeout and then starts a
    # head must not get a second full timeout for it. Told by order, not by
    # a clock: A connects, B a second later and starts its head at once, A
    # starts its head 0.7 s after that. Counted from accept, A's 408 comes
    # first (2 s against 3 s); restarted at the first byte, B's would (3 s
    # against 3.7 s).
    import selectors
    bw = proxy(origin, limits=limits(client_header_timeout="2s"))
    with bw.connect() as a:
        time.sleep(1.0)
        with bw.connect() as b:
            b.send(b"GET /b HTTP/1.1\r\nHost: t\r\n")
            time.sleep(0.7)
            a.send(b"GET /a HTTP/1.1\r\nHost: t\r\n")
            order = []
            with selectors.DefaultSelector() as sel:
                sel.register(a.sock, selectors.EVENT_READ, "a")
                sel.register(b.sock, selectors.EVENT_READ, "b")
                deadline = time.monotonic() + HANG
                while len(order) < 2 and time.monotonic() < deadline:
                    for key, _ in sel.select(timeout=0.5):
                        order.append(key.data)
                        sel.unregister(key.fileobj)
            assert order == ["a", "b"], f"408s in the order {order}: the deadline restarted at the first byte"
            assert_proxy_error(a.read_response(timeout=HANG), 408)
            assert_proxy_error(b.read_response(timeout=HANG), 408)
    assert_still_serves(bw)


def test_silent_new_connection_closed_without_bytes(origin, proxy):
    bw = proxy(origin, limits=limits(client_header_timeout="500ms"))
    with bw.connect() as c:
        t0 = time.monotonic()
        how, extra = c.wait_closed(HANG)
        assert how in ("eof", "reset"), "silent connection never closed"
        not_before(time.monotonic() - t0)
        assert extra == b"", f"silent connection got bytes: {extra!r}"
    assert_still_serves(bw)


def test_idle_keepalive_closed_after_keepalive_timeout(origin, proxy):
    bw = proxy(origin, limits=limits(keepalive_timeout="500ms"))
    with bw.connect() as c:
        c.send(request_bytes("GET", "/one"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        how, extra = c.wait_closed(HANG)
        assert how in ("eof", "reset"), "idle keepalive connection never closed"
        not_before(time.monotonic() - t0)
        assert extra == b"", f"idle keepalive close sent bytes: {extra!r}"
    assert_still_serves(bw)


def test_keepalive_connection_survives_within_timeout(origin, proxy):
    bw = proxy(origin, limits=limits(keepalive_timeout="800ms"))
    with bw.connect() as c:
        for i in range(4):
            c.send(request_bytes("GET", f"/k{i}"))
            assert c.read_response().status == 200
            time.sleep(0.4)  # idle, but less than the timeout each time


def test_client_body_stall_gets_408(origin, proxy):
    bw = proxy(origin, limits=limits(client_body_timeout="500ms"))
    with bw.connect() as c:
        c.send(request_bytes("POST", "/body", [("Content-Length", "100")]) + b"0123456789")
        t0 = time.monotonic()
        r = c.read_response(timeout=HANG)
        not_before(time.monotonic() - t0)
        assert_proxy_error(r, 408)
        assert_closed(c)
    assert origin.requests_for("/body") == []
    logged_error(bw, 408, "client body timeout")
    assert_still_serves(bw)


def test_client_chunked_body_stall_gets_408(origin, proxy):
    bw = proxy(origin, limits=limits(client_body_timeout="500ms"))
    with bw.connect() as c:
        c.send(request_bytes("POST", "/body", [("Transfer-Encoding", "chunked")]) + b"a\r\n01234")
        t0 = time.monotonic()
        r = c.read_response(timeout=HANG)
        not_before(time.monotonic() - t0)
        assert_proxy_error(r, 408)
        assert_closed(c)
    assert origin.requests_for("/body") == []
    logged_error(bw, 408, "client body timeout")
    assert_still_serves(bw)


def test_slow_but_steady_body_is_not_timed_out(origin, proxy):
    # client_body_timeout is between reads: a body that keeps coming is fine.
    bw = proxy(origin, limits=limits(client_body_timeout="500ms"))
    with bw.connect() as c:
        c.send(request_bytes("POST", "/steady", [("Content-Length", "8")]))
        for i in range(8):
            time.sleep(0.15)
            c.send(b"%d" % i)
        r = c.read_response(timeout=5)
        assert r.status == 200 and r.json()["body_len"] == 8


def test_upstream_read_timeout_gives_504(origin, proxy):
    origin.on("/hang", om.no_response())
    bw = proxy(origin, upstream_opts={"read_timeout": "500ms"}, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/hang"))
        t0 = time.monotonic()
        r = c.read_response(timeout=HANG)
        not_before(time.monotonic() - t0)
        assert_proxy_error(r, 504, closing=False)
        logged_error(bw, 504, "upstream read timeout")
        if "close" not in r.connection_tokens():
            c.send(request_bytes("GET", "/after"))
            assert c.read_response().json()["target"] == "/after"
    assert_still_serves(bw)


def test_slow_upstream_within_read_timeout_is_fine(origin, proxy):
    origin.on("/slowish", om.slow(0.3))
    bw = proxy(origin, upstream_opts={"read_timeout": "1s"})
    r = bw.request("GET", "/slowish")
    assert r.status == 200


def test_idle_pooled_upstream_connection_closed_after_the_upstreams_keepalive_timeout(origin, proxy):
    """An idle pooled connection is closed by bulwark after its upstream's
    keepalive_timeout, not after limits.keepalive_timeout (the client
    side's, here far longer): the client connection stays open meanwhile,
    and its next request takes a new upstream connection."""
    bw = proxy(origin, limits=limits(keepalive_timeout="1h"),
               upstream_opts={"keepalive_timeout": "300ms"})
    with bw.connect() as c:
        c.send(request_bytes("GET", "/one"))
        assert c.read_response().status == 200
        assert origin.connections == 1
        # The origin's own idle limit is 60s: only bulwark closes it sooner.
        assert origin.wait_for(lambda o: o.open_connections == 0, timeout=10 * SLACK), \
            "bulwark did not close the idle pooled connection"
        c.send(request_bytes("GET", "/two"))
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/two"
    assert origin.connections == 2
    assert [h.conn_id for h in origin.heads_for("/two")] == [2]


def test_upstream_keepalive_timeout_is_reloadable(origin, proxy):
    bw = proxy(origin, limits=limits(keepalive_timeout="1h"),
               upstream_opts={"keepalive_timeout": "1h"})
    assert bw.request("GET", "/before").status == 200
    bw.config["upstreams"]["app"]["keepalive_timeout"] = "300ms"
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(bw.config) + "\n")
    bw.reload()
    # The reload closes what the old configuration pooled; the connection
    # pooled now has the new timeout.
    assert origin.wait_for(lambda o: o.open_connections == 0, timeout=10 * SLACK)
    assert bw.request("GET", "/after").status == 200
    assert origin.connections == 2
    assert origin.wait_for(lambda o: o.open_connections == 0, timeout=10 * SLACK), \
        "the reloaded keepalive_timeout did not close the idle pooled connection"


def test_upstream_connection_closed_after_keepalive_requests(origin, proxy):
    """keepalive_requests: 3. Seven requests in a row, each pooling its
    connection: three connections carry 3, 3 and 1 of them."""
    bw = proxy(origin, upstream_opts={"keepalive_requests": 3})
    with bw.connect() as c:
        for i in range(7):
            c.send(request_bytes("GET", f"/k{i}"))
            assert c.read_response().status == 200
    assert origin.connections == 3
    per_conn = [[r.conn_id for r in origin.heads].count(k) for k in (1, 2, 3)]
    assert per_conn == [3, 3, 1], per_conn
    # Closed by bulwark after the third, not left to the origin.
    assert origin.wait_for(lambda o: o.open_connections == 1, timeout=10 * SLACK)


def test_upstream_down_gives_502(proxy):
    down = om.down_address()
    # A refused connect is a 502 at once: not a wait for connect_timeout
    # (that would be a 504 saying "connect timeout"), and with the access
    # log naming the refusal.
    bw = proxy(down, expect_errors=[down], upstream_opts={"connect_timeout": "1h"})
    r = bw.request("GET", "/x", timeout=HANG)
    assert_proxy_error(r, 502, closing=False)
    entry = logged_error(bw, 502, "")
    assert "refused" in entry["error"].lower() and "timeout" not in entry["error"], entry


def test_upstream_connect_timeout_gives_504(proxy):
    hole = om.Blackhole()
    try:
        if not hole.works:
            pytest.skip("cannot make a deterministic connect timeout on this kernel")
        bw = proxy(hole.address, upstream_opts={"connect_timeout": "300ms"}, expect_errors=[hole.address])
        t0 = time.monotonic()
        r = bw.request("GET", "/x", timeout=HANG)
        not_before(time.monotonic() - t0, 0.3)
        assert_proxy_error(r, 504, closing=False)
        logged_error(bw, 504, "connect timeout")
    finally:
        hole.close()


def test_post_whose_connect_timed_out_goes_to_the_next_server(origin, proxy):
    # The connect never completed, so the POST reached nobody: it is sent to
    # the next server (nginx's proxy_next_upstream timeout does the same).
    hole = om.Blackhole()
    try:
        if not hole.works:
            pytest.skip("cannot make a deterministic connect timeout on this kernel")
        bw = proxy([hole.address, origin], expect_errors=[hole.address],
                   upstream_opts={"connect_timeout": "300ms", "balance": "round_robin",
                                  "max_fails": 100})
        for i in range(2):  # one of the two starts on the black hole
            r = bw.request("POST", f"/pay/{i}", body=b"amount=10", timeout=5)
            assert r.status == 200, f"POST {i}: {r!r}"
            assert len(origin.requests_for(f"/pay/{i}")) == 1
    finally:
        hole.close()


def test_upstream_stall_mid_body_closes_client(origin, proxy):
    origin.on("/stall", om.stall_mid_body(100000, 20000))
    bw = proxy(origin, upstream_opts={"read_timeout": "500ms"}, expect_errors=[origin.address])
    with bw.connect() as c:
        c.send(request_bytes("GET", "/stall"))
        r = c.read_head()
        assert r.status == 200
        t0 = time.monotonic()
        with pytest.raises(Closed):
            c.read_exact(100000, timeout=HANG)
        not_before(time.monotonic() - t0)
        assert len(c.buf) == 20000
    assert bw.access_log_lines(wait_for=1)[0].get("error", "").startswith(
        "upstream read timeout in the middle of a response body"), bw.access_log_lines()
    assert_still_serves(bw)


def test_client_not_reading_is_dropped_after_send_timeout(origin, proxy):
    total = 64 << 20
    origin.on("/huge", om.big(total))
    bw = proxy(origin, limits=limits(send_timeout="500ms"))
    with bw.connect(rcvbuf=65536) as c:
        c.send(request_bytes("GET", "/huge"))
        assert c.read_head().status == 200
        time.sleep(T + 1.5 * SLACK)
        got = len(c.buf)
        how = "open"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                c.sock.settimeout(2)
                data = c.sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                how = "reset"
                break
            if not data:
                how = "eof"
                break
            got += len(data)
        assert how in ("eof", "reset") and got < total, "proxy kept a non-reading client"
    # The upstream connection of the abandoned response is released too.
    assert origin.wait_for(lambda o: o.open_connections == 0, timeout=3 * SLACK)
    assert_still_serves(bw)


def test_idle_websocket_tunnel_closed_after_read_timeout(origin, proxy):
    # An upgraded connection is timed like nginx's: traffic either way keeps
    # it open, read_timeout of silence in both directions closes it (and
    # its upstream connection), so tunnels nobody uses do not pile up.
    origin.on("/ws", om.upgrade_echo())
    bw = proxy(origin, upstream_opts={"read_timeout": "500ms"})
    with bw.connect() as c:
        c.send(request_bytes("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        assert c.read_response().status == 101
        for i in range(4):  # 1.2s in all, over twice the timeout
            time.sleep(0.3)
            c.send(b"ping%d" % i)
            assert c.read_exact(5, timeout=5) == b"ping%d" % i
        t0 = time.monotonic()
        how, extra = c.wait_closed(HANG)
        assert how in ("eof", "reset"), "an idle tunnel was never closed"
        not_before(time.monotonic() - t0)
        assert extra == b""
    assert origin.wait_for(lambda o: o.open_connections == 0, timeout=3 * SLACK)
    assert_still_serves(bw)


@pytest.mark.parametrize("n,held", [(8192, True), (8193, False)])
def test_small_body_is_received_whole_before_the_upstream_is_used(origin, proxy, n, held):
    # A client sending its body a byte at a time, each within
    # client_body_timeout, held an upstream connection (and a worker of the
    # application behind it) for as long as it liked: a few hundred such
    # clients took them all. A body of up to 8 KiB is read whole first, as
    # nginx buffers bodies; a larger one still streams.
    bw = proxy(origin, limits=limits())
    body = om.pattern(n, offset=1)
    with bw.connect() as c:
        c.send(request_bytes("POST", "/small", [("Content-Length", str(n))]) + body[:-1])
        if held:
            time.sleep(0.5)
            assert origin.heads_for("/small") == [] and origin.connections == 0
        else:
            assert origin.wait_for(lambda o: o.heads_for("/small"), timeout=3 * SLACK)
        c.send(body[-1:])
        r = c.read_response(timeout=5)
    assert r.status == 200
    assert r.json()["body_len"] == n
    assert origin.requests_for("/small")[0].body == body


def test_body_buffer_bytes_zero_streams_every_body(origin, proxy):
    # limits.body_buffer_bytes: 0 turns the hold-back off: the head goes
    # upstream at once and the body follows as it arrives.
    bw = proxy(origin, limits=limits(body_buffer_bytes="0"))
    with bw.connect() as c:
        c.send(request_bytes("POST", "/now", [("Content-Length", "5")]) + b"hell")
        assert origin.wait_for(lambda o: o.heads_for("/now"), timeout=3 * SLACK)
        c.send(b"o")
        r = c.read_response(timeout=5)
    assert r.status == 200 and r.json()["body_len"] == 5


def test_small_body_after_100_continue(origin, proxy):
    bw = proxy(origin, limits=limits())
    with bw.connect() as c:
        c.send(request_bytes("POST", "/expect", [("Content-Length", "5"), ("Expect", "100-continue")]))
        assert c.read_head(timeout=5).status == 100
        assert origin.connections == 0
        c.send(b"hello")
        r = c.read_response(timeout=5)
    assert r.status == 200 and r.json()["body_len"] == 5
