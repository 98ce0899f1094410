"""Basic proxying: a request reaches the origin and the answer comes back;
keepalive and pipelining; hop-by-hop fields; forwarding fields."""
import threading

from bwtest import origin as om
from bwtest.checks import assert_still_serves
from bwtest.client import request_bytes

HOP = ["Connection", "Keep-Alive", "TE", "Trailer", "Proxy-Connection", "Upgrade", "Transfer-Encoding"]


def test_get_is_proxied(origin, proxy):
    bw = proxy(origin)
    r = bw.request("GET", "/hello/world?a=1&b=two", headers=[("X-Custom", "v1"), ("Accept", "*/*")])
    assert r.status == 200
    got = r.json()
    assert got["server"] == origin.name
    assert got["method"] == "GET"
    assert got["target"] == "/hello/world?a=1&b=two"
    req = origin.requests[0]
    assert req.header("x-custom") == "v1"
    assert req.header("accept") == "*/*"
    assert req.header("host") == "test.example"


def test_methods_and_status_pass_through(origin, proxy):
    origin.on("/teapot", om.fixed(418, [("X-From", "origin")], b"short and stout"))
    origin.on("/missing", om.fixed(404, body=b"nope"))
    origin.on("/err", om.fixed(500, body=b"boom"))
    bw = proxy(origin)
    for m in ["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]:
        r = bw.request(m, "/m", body=b"x" if m in ("PUT", "PATCH") else b"")
        assert r.status == 200 and r.json()["method"] == m
    r = bw.request("GET", "/teapot")
    assert (r.status, r.header("x-from"), r.body) == (418, "origin", b"short and stout")
    assert bw.request("GET", "/missing").status == 404
    r = bw.request("GET", "/err")
    assert (r.status, r.body) == (500, b"boom")


def test_http10_client_without_host(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(b"GET /ten HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["target"] == "/ten"
        # HTTP/1.0 without keep-alive: the proxy closes after the response.
        how, _ = c.wait_closed(3)
        assert how in ("eof", "reset")


def test_keepalive_many_requests_one_client_connection(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        for i in range(10):
            c.send(request_bytes("GET", f"/ka/{i}"))
            r = c.read_response()
            assert r.status == 200
            assert r.json()["target"] == f"/ka/{i}"
            assert "close" not in r.connection_tokens()


def test_upstream_connection_reused_one_client_connection(origin, proxy):
    bw = proxy(origin, upstream_opts={"keepalive": 8})
    with bw.connect() as c:
        for i in range(20):
            c.send(request_bytes("GET", f"/reuse/{i}"))
            assert c.read_response().status == 200
    assert len(origin.requests) == 20
    assert origin.connections == 1, f"origin accepted {origin.connections} connections for 20 requests"


def test_upstream_connection_reused_across_client_connections(origin, proxy):
    bw = proxy(origin, upstream_opts={"keepalive": 8})
    for i in range(20):
        assert bw.request("GET", f"/reuse/{i}").status == 200
    assert origin.connections == 1, f"origin accepted {origin.connections} connections for 20 requests"


def test_upstream_connection_close_is_honoured(origin, proxy):
    origin.set_default(om.echo(close=True))
    bw = proxy(origin)
    with bw.connect() as c:
        for i in range(3):
            c.send(request_bytes("GET", f"/c/{i}"))
            assert c.read_response().status == 200
    # Each response said Connection: close, so no upstream connection is reused.
    assert origin.connections == 3


def test_pipelined_requests_answered_in_order(origin, proxy):
    # Responses of very different sizes and speeds, so order is really tested.
    origin.on("/p/slow", om.slow(0.2))
    origin.on("/p/big", om.big(300000))
    bw = proxy(origin)
    paths = ["/p/0", "/p/slow", "/p/2", "/p/big", "/p/4", "/p/5", "/p/6"]
    with bw.connect() as c:
        c.send(b"".join(request_bytes("GET", p) for p in paths))
        for p in paths:
            r = c.read_response()
            assert r.status == 200
            if p == "/p/big":
                assert r.body == om.big_body(300000)
            else:
                assert r.json()["target"] == p
        # Still usable afterwards.
        c.send(request_bytes("GET", "/after"))
        assert c.read_response().json()["target"] == "/after"


def test_pipelined_with_bodies_and_final_close(origin, proxy):
    bw = proxy(origin)
    reqs = [request_bytes("POST", f"/pb/{i}", body=b"x" * (i * 1000)) for i in range(4)]
    reqs.append(request_bytes("GET", "/pb/last", [("Connection", "close")]))
    with bw.connect() as c:
        c.send(b"".join(reqs))
        for i in range(4):
            got = c.read_response().json()
            assert (got["target"], got["body_len"]) == (f"/pb/{i}", i * 1000)
        r = c.read_response()
        assert r.json()["target"] == "/pb/last"
        assert "close" in r.connection_tokens()
        how, extra = c.wait_closed(3)
        assert how in ("eof", "reset") and extra == b""


def test_request_hop_by_hop_fields_not_forwarded(origin, proxy):
    bw = proxy(origin)
    r = bw.request("GET", "/hop", headers=[
        ("Connection", "keep-alive, X-Secret, x-other"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Connection", "keep-alive"),
        ("Upgrade", "h2c"),
        ("X-Secret", "do not forward"),
        ("X-Other", "nor this"),
        ("X-Kept", "yes"),
    ])
    assert r.status == 200
    names = origin.requests[0].header_names()
    for h in HOP[:6] + ["X-Secret", "X-Other"]:
        assert h.lower() not in names, f"{h} forwarded to the origin: {origin.requests[0].headers}"
    assert origin.requests[0].header("x-kept") == "yes"


def test_connection_close_named_field_not_forwarded(origin, proxy):
    bw = proxy(origin)
    r = bw.request("GET", "/hop2", headers=[("Connection", "close, X-Secret"), ("X-Secret", "s")])
    assert r.status == 200
    assert "x-secret" not in origin.requests[0].header_names()


def test_forwarded_for_and_proto_added(origin, proxy):
    bw = proxy(origin)
    assert bw.request("GET", "/xff").status == 200
    req = origin.requests[0]
    assert req.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert req.header_all("x-forwarded-proto") == ["http"]


def test_untrusted_client_forwarded_for_is_replaced(origin, proxy):
    bw = proxy(origin)
    r = bw.request("GET", "/xff", headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7, 8.8.8.8"),
                                           ("X-Forwarded-Proto", "https")])
    assert r.status == 200
    req = origin.requests[0]
    assert req.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert req.header_all("x-forwarded-proto") == ["http"]


def test_response_hop_by_hop_fields_not_returned(origin, proxy):
    origin.on("/rhop", om.fixed(200, [
        ("Connection", "keep-alive, X-Origin-Private"),
        ("Keep-Alive", "timeout=5, max=100"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Origin-Private", "secret"),
        ("Trailer", "X-Sum"),
        ("X-Public", "ok"),
    ], b"body"))
    bw = proxy(origin)
    r = bw.request("GET", "/rhop")
    assert r.status == 200 and r.body == b"body"
    names = {n.lower() for n, _ in r.headers}
    for h in ["keep-alive", "proxy-connection", "x-origin-private", "trailer"]:
        assert h not in names, f"{h} returned to the client: {r.headers}"
    assert r.header("x-public") == "ok"
    assert r.connection_tokens() <= {"keep-alive", "close"}


def test_head_keeps_content_length_without_body(origin, proxy):
    origin.on("/file", om.big(5000))
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("HEAD", "/file"))
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("content-length") == "5000"
        # No body bytes: the next response on the connection parses cleanly.
        c.send(request_bytes("GET", "/next"))
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["target"] == "/next"
        assert c.buf == b""


def test_204_and_304_have_no_body_and_connection_stays_usable(origin, proxy):
    origin.on("/nc", om.fixed(204, [("X-A", "1")]))
    origin.on("/nm", om.fixed(304, [("ETag", '"abc"')]))
    bw = proxy(origin)
    with bw.connect() as c:
        for p, status in [("/nc", 204), ("/nm", 304), ("/nc", 204)]:
            c.send(request_bytes("GET", p))
            r = c.read_response()
            assert r.status == status
            assert r.header("transfer-encoding") is None
            assert r.header("content-length") in (None, "0")
            c.send(request_bytes("GET", "/after"))
            r = c.read_response()
            assert r.status == 200, r
            assert r.json()["target"] == "/after"


def test_103_early_hints_then_final(origin, proxy):
    origin.on("/hints", om.informational(103, [("Link", "</a.css>; rel=preload")]))
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/hints"))
        info = []
        r = c.read_response(informational=info)
        assert [i.status for i in info] == [103]
        assert info[0].header("link") == "</a.css>; rel=preload"
        assert r.status == 200 and r.json()["target"] == "/hints"
        c.send(request_bytes("GET", "/after"))
        assert c.read_response().status == 200


def test_no_1xx_to_an_http10_client(origin, proxy):
    # RFC 9110 §15.2: an HTTP/1.0 client takes any response for the final
    # one, so the origin's 103 is not passed on; the 200 is.
    origin.on("/hints", om.informational(103, [("Link", "</a.css>; rel=preload")]))
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/hints", version="HTTP/1.0"))
        info = []
        r = c.read_response(informational=info)
        assert info == [] and r.status == 200, (info, r)
        assert r.json()["target"] == "/hints"


def test_expect_100_continue(origin, proxy):
    bw = proxy(origin)
    body = b"0123456789" * 1000
    with bw.connect() as c:
        c.send(request_bytes("POST", "/upload", [("Content-Length", str(len(body))), ("Expect", "100-continue")]))
        # The interim answer comes before any body byte is sent.
        interim = c.read_head(timeout=3)
        assert interim.status == 100, interim
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        got = r.json()
        assert got["body_len"] == len(body)
    req = origin.requests[0]
    assert req.header("expect") is None, "Expect forwarded to the origin"
    assert req.body == body


def test_websocket_upgrade_bytes_flow_both_ways(origin, proxy):
    origin.on("/ws", om.upgrade_echo())
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                              ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        assert r.status == 101
        assert (r.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in r.connection_tokens()
        for msg in [b"hello", b"\x00\x01\x02binary\xff", b"x" * 100000]:
            c.send(msg)
            assert c.read_exact(len(msg), timeout=5) == msg
    req = origin.requests[0]
    assert (req.header("upgrade") or "").lower() == "websocket"
    assert "upgrade" in (req.header("connection") or "").lower()


def test_many_concurrent_clients(origin, proxy):
    origin.set_default(om.echo(delay=0.05))
    bw = proxy(origin)
    results = []

    def one(i):
        try:
            results.append(bw.request("GET", f"/conc/{i}", timeout=10).json()["target"] == f"/conc/{i}")
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    assert results.count(True) == 40, results
    assert_still_serves(bw)
