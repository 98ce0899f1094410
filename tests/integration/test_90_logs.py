"""Access log (JSON lines) and the rate-limited error log."""
import json
import os
import signal
import time

import pytest

from bwtest import origin as om
from bwtest.checks import assert_still_serves
from bwtest.client import request_bytes

KEYS = {"time", "client", "method", "path", "status", "bytes_in", "bytes_out", "upstream", "upstream_ms", "total_ms"}


def test_access_log_entry_for_a_request(origin, proxy):
    origin.on("/log/path", om.echo(delay=0.2))
    bw = proxy(origin)
    body = b"p" * 100
    r = bw.request("POST", "/log/path?q=1", body=body)
    assert r.status == 200
    lines = bw.access_log_lines(wait_for=1)
    assert len(lines) == 1, lines
    e = lines[0]
    assert KEYS <= set(e), f"missing keys {KEYS - set(e)} in {e}"
    assert e["client"] == "127.0.0.1"
    assert e["method"] == "POST"
    assert e["path"].startswith("/log/path")
    assert e["status"] == 200
    assert e["upstream"] == origin.address or origin.address in str(e["upstream"])
    assert e["bytes_out"] >= len(r.body)
    assert isinstance(e["upstream_ms"], (int, float)) and isinstance(e["total_ms"], (int, float))
    assert e["upstream_ms"] >= 150, e
    assert e["total_ms"] >= e["upstream_ms"]
    assert e["total_ms"] < 5000
    assert isinstance(e["time"], (str, int, float)) and e["time"]


def test_access_log_bytes_in_counts_the_body(origin, proxy):
    bw = proxy(origin)
    body = b"p" * 10000
    assert bw.request("POST", "/up", body=body).status == 200
    e = bw.access_log_lines(wait_for=1)[0]
    assert e["bytes_in"] >= len(body), e


def test_access_log_one_line_per_request_in_order(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        for i in range(5):
            c.send(request_bytes("GET", f"/seq/{i}"))
            assert c.read_response().status == 200
    lines = bw.access_log_lines(wait_for=5)
    assert [e["path"] for e in lines] == [f"/seq/{i}" for i in range(5)]


def test_access_log_records_upstream_errors(proxy):
    down = om.down_address()
    bw = proxy(down, expect_errors=[down])
    assert bw.request("GET", "/fail").status == 502
    e = bw.access_log_lines(wait_for=1)[0]
    assert e["status"] == 502 and e["path"] == "/fail"
    assert down in str(e["upstream"])


def test_access_log_records_refused_requests_as_valid_json(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(b'GET /x\x01"\\y HTTP/1.1\r\nHost: t\r\n\r\n')
        assert c.read_response().status == 400
    with bw.connect() as c:
        c.send(b"GET /ok HTTP/1.1\r\nHost: t\r\nX: \xff\xfe\r\n\r\n")
        c.read_response()
    assert_still_serves(bw)
    lines = bw.access_log_lines(wait_for=3)  # each line must parse as JSON
    assert any(e["status"] == 400 for e in lines), lines
    assert lines[-1]["status"] == 200


def test_access_log_has_the_protocol_version(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
    with bw.connect() as c:
        c.send(request_bytes("GET", "/eleven"))
        assert c.read_response().status == 200
    with bw.connect() as c:
        c.send(b"GET /bad HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n")
        assert c.read_response().status == 400
    lines = bw.access_log_lines(wait_for=3)
    by_path = {e["path"]: e for e in lines}
    assert by_path["/ten"]["protocol"] == "HTTP/1.0", lines
    assert by_path["/eleven"]["protocol"] == "HTTP/1.1", lines
    # A head the parser refused has no version to show: the key is absent.
    refused = [e for e in lines if e["status"] == 400]
    assert refused and "protocol" not in refused[0], lines


# What the client sends in Host and User-Agent goes into the line escaped:
# quotes, backslashes, tabs and bytes outside ASCII cannot end the string or
# the line; a long one is cut, so the line stays bounded.
def test_access_log_has_host_and_user_agent_escaped(origin, proxy):
    bw = proxy(origin)
    ua = b'Mo"zilla\\5.0\t(x)\xff\xfe'
    with bw.connect() as c:
        c.send(b"GET /who HTTP/1.1\r\nHost: A.Example:8080\r\nUser-Agent: " + ua +
               b"\r\nUser-Agent: second\r\n\r\n")
        assert c.read_response().status == 200
    with bw.connect() as c:
        c.send(b"GET /nobody HTTP/1.0\r\n\r\n")
        assert c.read_response().status == 200
    with bw.connect() as c:
        c.send(b"GET /long HTTP/1.1\r\nHost: t\r\nUser-Agent: " + b"u" * 2000 + b"\r\n\r\n")
        assert c.read_response().status == 200
    lines = bw.access_log_lines(wait_for=3)  # every line parses as JSON
    with open(bw.access_log_path, "rb") as f:
        assert f.read().count(b"\n") == 3
    by_path = {e["path"]: e for e in lines}
    who = by_path["/who"]
    assert who["host"] == "A.Example:8080", who
    assert who["user_agent"] == 'Mo"zilla\\5.0\t(x)\u00ff\u00fe', who
    assert "host" not in by_path["/nobody"] and "user_agent" not in by_path["/nobody"]
    assert by_path["/long"]["user_agent"] == "u" * 256  # cut, the line bounded


def test_access_log_off(origin, proxy, tmp_path):
    bw = proxy(origin, access_log="off")
    assert_still_serves(bw)
    time.sleep(0.1)
    assert bw.stdout() == ""
    assert not list(tmp_path.glob("**/access*.log"))


def test_access_log_to_stdout(origin, proxy):
    bw = proxy(origin, access_log="-")
    assert_still_serves(bw, "/to-stdout")
    deadline = time.monotonic() + 3
    while "\n" not in bw.stdout() and time.monotonic() < deadline:
        time.sleep(0.02)
    e = json.loads(bw.stdout().splitlines()[0])
    assert e["path"] == "/to-stdout" and e["status"] == 200


def test_error_log_is_rate_limited(proxy):
    down = om.down_address()
    bw = proxy(down, expect_errors=[down])
    t0 = time.monotonic()
    with bw.connect() as c:
        for i in range(200):
            c.send(request_bytes("GET", f"/e/{i}"))
            r = c.read_response()
            assert r.status == 502
            if "close" in r.connection_tokens():
                c.close()
                c = bw.connect()
    took = time.monotonic() - t0
    # After the window, the next error reports how many were suppressed.
    time.sleep(1.1)
    assert bw.request("GET", "/e/last").status == 502
    deadline = time.monotonic() + 2
    while "suppressed" not in bw.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    about_down = [line for line in bw.stderr_lines() if down in line]
    assert len(about_down) <= 20 * (took + 2), f"{len(about_down)} lines for 201 errors in {took:.1f}s"
    assert len(about_down) < 100
    assert any("suppressed" in line for line in bw.stderr_lines()), bw.stderr()


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP])
def test_log_rotation_reopens_the_access_log(origin, proxy, sig):
    # logrotate's way with nginx: move the file, send USR1 (or HUP), and
    # new lines go to a new file by the configured name while the moved one
    # keeps every line written before.
    bw = proxy(origin)
    assert bw.request("GET", "/before").status == 200
    assert [l["path"] for l in bw.access_log_lines(wait_for=1)] == ["/before"]
    rotated = bw.access_log_path + ".1"
    os.rename(bw.access_log_path, rotated)
    bw.signal(sig)
    deadline = time.monotonic() + 5
    while not os.path.exists(bw.access_log_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.exists(bw.access_log_path), "no new access log after the signal"
    assert bw.proc.poll() is None, f"{sig.name} ended the process"
    assert bw.request("GET", "/after").status == 200
    assert [l["path"] for l in bw.access_log_lines(wait_for=1)] == ["/after"]
    with open(rotated) as f:
        assert [json.loads(l)["path"] for l in f.read().splitlines()] == ["/before"]


def test_sigquit_writes_the_lines_of_requests_already_answered(origin, proxy):
    # SIGQUIT cuts what is in flight, but what was served is on record: the
    # writer drains every ring before the exit (it runs every 20 ms, so
    # without the final drain the last requests' lines are lost).
    bw = proxy(origin)
    with bw.connect() as c:
        for i in range(50):
            c.send(request_bytes("GET", f"/q/{i}"))
            assert c.read_response().status == 200
        bw.signal(signal.SIGQUIT)
    assert bw.wait_exit(5) == 0
    with open(bw.access_log_path) as f:
        paths = [json.loads(l)["path"] for l in f.read().splitlines()]
    assert paths == [f"/q/{i}" for i in range(50)]
