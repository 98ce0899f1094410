"""Who the client is: X-Forwarded-For / X-Real-IP / PROXY protocol from
trusted peers only."""
import socket
import struct
import time

from bwtest.checks import assert_still_serves
from bwtest.client import request_bytes

XFF_IN = "203.0.113.7, 198.51.100.2"


def start(proxy, origin, source, trusted):
    return proxy(origin, client_ip={"trusted": trusted, "from": source})


def last_log(bw, n=1):
    lines = bw.access_log_lines(wait_for=n)
    assert len(lines) >= n, lines
    return lines[n - 1]


def test_xff_from_trusted_peer(origin, proxy):
    bw = start(proxy, origin, "x_forwarded_for", ["127.0.0.1/32"])
    assert bw.request("GET", "/xff", headers=[("X-Forwarded-For", XFF_IN)]).status == 200
    assert last_log(bw)["client"] == "198.51.100.2"
    assert origin.requests[0].header_all("x-forwarded-for") == [XFF_IN + ", 127.0.0.1"]


def test_xff_rightmost_untrusted_skips_trusted_hops(origin, proxy):
    bw = start(proxy, origin, "x_forwarded_for", ["127.0.0.1/32", "10.0.0.0/8"])
    r = bw.request("GET", "/xff", headers=[("X-Forwarded-For", "203.0.113.7, 198.51.100.2, 10.1.2.3, 10.9.9.9")])
    assert r.status == 200
    assert last_log(bw)["client"] == "198.51.100.2"


def test_xff_repeated_header_fields_are_one_list(origin, proxy):
    bw = start(proxy, origin, "x_forwarded_for", ["127.0.0.1/32"])
    r = bw.request("GET", "/xff", headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.2")])
    assert r.status == 200
    assert last_log(bw)["client"] == "198.51.100.2"
    assert origin.requests[0].header_all("x-forwarded-for") == [XFF_IN + ", 127.0.0.1"]


def test_xff_from_untrusted_peer_is_ignored_and_replaced(origin, proxy):
    bw = start(proxy, origin, "x_forwarded_for", ["10.0.0.0/8"])
    assert bw.request("GET", "/xff", headers=[("X-Forwarded-For", XFF_IN)]).status == 200
    assert last_log(bw)["client"] == "127.0.0.1"
    assert origin.requests[0].header_all("x-forwarded-for") == ["127.0.0.1"]


def test_xff_trust_is_per_peer_address(origin, proxy):
    # Same config; a peer outside the trusted /32 (127.0.0.2) cannot set it.
    bw = start(proxy, origin, "x_forwarded_for", ["127.0.0.1/32"])
    assert bw.request("GET", "/a", headers=[("X-Forwarded-For", XFF_IN)], source="127.0.0.2").status == 200
    assert last_log(bw, 1)["client"] == "127.0.0.2"
    assert origin.requests[0].header_all("x-forwarded-for") == ["127.0.0.2"]
    assert bw.request("GET", "/b", headers=[("X-Forwarded-For", XFF_IN)], source="127.0.0.1").status == 200
    assert last_log(bw, 2)["client"] == "198.51.100.2"


FORGEABLE = [("Forwarded", "for=127.0.0.1;host=admin.internal;proto=https"),
             ("X-Real-IP", "127.0.0.1"), ("X-Forwarded-Host", "admin.internal"),
             ("X-Forwarded-Port", "443")]


def test_other_forwarding_fields_reach_the_origin_from_trusted_peers_only(origin, proxy):
    # An application that believes X-Real-IP or X-Forwarded-Host (as many
    # do, behind nginx) must not get them from the client itself.
    bw = start(proxy, origin, "x_forwarded_for", ["127.0.0.1/32"])
    assert bw.request("GET", "/a", headers=FORGEABLE, source="127.0.0.2").status == 200
    assert bw.request("GET", "/b", headers=FORGEABLE, source="127.0.0.1").status == 200
    forged, relayed = origin.requests_for("/a")[0], origin.requests_for("/b")[0]
    for name, value in FORGEABLE:
        assert forged.header_all(name.lower()) == [], name
        assert relayed.header_all(name.lower()) == [value], name
    # With no client_ip at all (bulwark is the edge), nobody is trusted.
    bare = proxy(origin)
    assert bare.request("GET", "/c", headers=FORGEABLE).status == 200
    for name, _ in FORGEABLE:
        assert origin.requests_for("/c")[0].header_all(name.lower()) == [], name


def test_xff_garbage_from_trusted_peer_falls_back_to_peer(origin, proxy):
    bw = start(proxy, origin, "x_forwarded_for", ["127.0.0.1/32"])
    r = bw.request("GET", "/g", headers=[("X-Forwarded-For", "not-an-ip, also bad")])
    assert r.status == 200
    assert last_log(bw)["client"] in ("127.0.0.1",)


def test_x_real_ip_from_trusted_peer(origin, proxy):
    bw = start(proxy, origin, "x_real_ip", ["127.0.0.1/32"])
    assert bw.request("GET", "/rip", headers=[("X-Real-IP", "203.0.113.7")]).status == 200
    assert last_log(bw)["client"] == "203.0.113.7"


def test_x_real_ip_from_untrusted_peer_is_ignored(origin, proxy):
    bw = start(proxy, origin, "x_real_ip", ["10.0.0.0/8"])
    assert bw.request("GET", "/rip", headers=[("X-Real-IP", "203.0.113.7")]).status == 200
    assert last_log(bw)["client"] == "127.0.0.1"
    assert origin.requests[0].header_all("x-forwarded-for") == ["127.0.0.1"]


def proxy_v2(src, dst, sport, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def test_proxy_protocol_v1(origin, proxy):
    bw = start(proxy, origin, "proxy_protocol", ["127.0.0.1/32"])
    with bw.connect() as c:
        c.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n" + request_bytes("GET", "/pp1"))
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/pp1"
        # Later requests on the connection keep the client address.
        c.send(request_bytes("GET", "/pp1b"))
        assert c.read_response().status == 200
    assert last_log(bw, 1)["client"] == "203.0.113.7"
    assert last_log(bw, 2)["client"] == "203.0.113.7"
    assert origin.requests[0].header_all("x-forwarded-for") == ["203.0.113.7"]


def test_proxy_protocol_v2(origin, proxy):
    bw = start(proxy, origin, "proxy_protocol", ["127.0.0.1/32"])
    with bw.connect() as c:
        c.send(proxy_v2("203.0.113.7", "127.0.0.1", 5555, 80) + request_bytes("GET", "/pp2"))
        r = c.read_response()
        assert r.status == 200 and r.json()["target"] == "/pp2"
    assert last_log(bw)["client"] == "203.0.113.7"


def test_proxy_protocol_header_in_separate_packets(origin, proxy):
    bw = start(proxy, origin, "proxy_protocol", ["127.0.0.1/32"])
    with bw.connect() as c:
        c.send(b"PROXY TCP4 203.0.113.")
        time.sleep(0.05)
        c.send(b"7 127.0.0.1 5555 80\r\nGET /split HTTP/1.1\r\n")
        time.sleep(0.05)
        c.send(b"Host: t\r\n\r\n")
        assert c.read_response().status == 200
    assert last_log(bw)["client"] == "203.0.113.7"


def assert_refused_connection(bw, origin, data):
    with bw.connect() as c:
        c.send(data)
        raw, how = c.read_all_until_close(timeout=3)
        assert how in ("eof", "reset"), "connection was not closed"
        assert not raw.startswith(b"HTTP/1.1 2"), raw[:200]
    assert origin.requests == []


def test_proxy_protocol_missing_from_trusted_peer_is_closed(origin, proxy):
    bw = start(proxy, origin, "proxy_protocol", ["127.0.0.1/32"])
    assert_refused_connection(bw, origin, request_bytes("GET", "/nopp"))
    assert_still_serves_pp(bw)


def test_proxy_protocol_malformed_is_closed(origin, proxy):
    bw = start(proxy, origin, "proxy_protocol", ["127.0.0.1/32"])
    for bad in [b"PROXY TCP4 203.0.113.999 127.0.0.1 5555 80\r\n",
                b"PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n",
                b"PROXY TCP9 203.0.113.7 127.0.0.1 5555 80\r\n",
                b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 80\r\n",
                b"PROXY TCP4 " + b"1" * 200 + b"\r\n",
                b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"]:
        assert_refused_connection(bw, origin, bad + request_bytes("GET", "/bad"))
    assert_still_serves_pp(bw)


def assert_still_serves_pp(bw):
    with bw.connect() as c:
        c.send(b"PROXY TCP4 203.0.113.8 127.0.0.1 5555 80\r\n" + request_bytes("GET", "/ok"))
        assert c.read_response().status == 200


def test_proxy_protocol_not_required_from_untrusted_peer(origin, proxy):
    # Only trusted peers speak PROXY; others are plain HTTP clients, as seen.
    bw = start(proxy, origin, "proxy_protocol", ["10.0.0.0/8"])
    r = bw.request("GET", "/plain")
    assert r.status == 200
    assert last_log(bw)["client"] == "127.0.0.1"
    assert_still_serves(bw)
