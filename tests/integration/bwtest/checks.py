"""Assertions shared by many tests."""
import os
import re

from . import client

ASAN = os.environ.get("BULWARK_VARIANT") == "asan"
# Sanitizer builds are slower; timing bounds get this much more slack.
SLACK = 2.0 if ASAN else 1.0


def assert_still_serves(bw, path="/still-serves"):
    """A normal request on a new connection still gets 200 from the origin."""
    r = client.request(bw.port, "GET", path, timeout=5)
    assert r.status == 200, f"proxy no longer serves: {r!r}"
    body = r.json()
    assert body["target"] == path
    return body


def assert_proxy_error(resp, status, closing=True):
    """An error produced by the proxy itself: the status, a Content-Length that
    matches a short text body, and `Connection: close` when it will close."""
    assert resp.status == status, f"expected {status}, got {resp!r}"
    cl = resp.header("content-length")
    assert cl is not None, f"proxy error response without Content-Length: {resp!r}"
    assert int(cl) == len(resp.body)
    assert 0 < len(resp.body) <= 1024, f"error body should be short text: {resp.body[:200]!r}"
    assert resp.header("transfer-encoding") is None
    if closing:
        assert "close" in resp.connection_tokens(), f"closing error response without Connection: close: {resp!r}"


def assert_closed(conn, timeout=3.0):
    """The proxy closed the connection (EOF or reset) without sending more."""
    how, extra = conn.wait_closed(timeout * SLACK)
    assert how in ("eof", "reset"), f"connection still open after {timeout}s"
    assert extra == b"", f"unexpected bytes after the response: {extra[:200]!r}"


def accept_pauses(bw):
    """(paused, resumed) from /metrics: accepting paused for lack of
    descriptors, and resumed after such a pause."""
    r = client.request(bw.admin_port, "GET", "/metrics", host="admin", timeout=10 * SLACK)
    assert r.status == 200, r
    text = r.body.decode()

    def get(name):
        return int(re.search(r"^bulwark_%s (\d+)$" % name, text, re.M).group(1))

    return get("accept_paused_total"), get("accept_resumed_total")


def assert_paused_not_spinning(bw):
    """Every failed accept paused accepting until the retry timer resumed
    it (one worker: paused - resumed is 0, or 1 while a pause runs). A
    proxy retrying at once while the backlog keeps the listener readable
    fails again and again in between: paused would run far ahead of
    resumed. A count, where a CPU-time threshold was noise-prone."""
    paused, resumed = accept_pauses(bw)
    assert paused >= 1, "accept never paused"
    assert paused - resumed <= 1, f"{paused} accept pauses but {resumed} resumes: accept spun"
