"""Passive and active health checking of upstream servers."""
import re
import time

import pytest

from bwtest import origin as om
from bwtest.checks import SLACK
from bwtest.proc import default_config


def served(bw, n, prefix="/h"):
    out = []
    for i in range(n):
        r = bw.request("GET", f"{prefix}/{i}")
        assert r.status == 200, r
        out.append(r.json()["server"])
    return out


def test_passive_ejection_and_return_after_fail_timeout(tmp_path, origins, bulwark):
    live, = origins(1)
    down = om.down_address()
    cfg = default_config([down, live.address], str(tmp_path / "access.log"))
    cfg["upstreams"]["app"].update({"balance": "round_robin", "max_fails": 1, "fail_timeout": "2s"})
    bw = bulwark(cfg, expect_errors=[down])
    # The down server fails once and is ejected; every request still succeeds.
    assert set(served(bw, 6, "/one")) == {live.name}
    t_ejected = time.monotonic()
    # It comes back up at once, but stays ejected until fail_timeout passes.
    back = om.Origin(name="back", port=int(down.rsplit(":", 1)[1]))
    try:
        seq = served(bw, 8, "/two")
        if time.monotonic() - t_ejected >= 1.5:
            # A precondition, not the behaviour: past fail_timeout the
            # server may rightly be tried again. Only a stalled host gets here.
            pytest.skip("the host was too slow to send 8 requests within fail_timeout")
        assert set(seq) == {live.name}, f"ejected server was tried within fail_timeout: {seq}"
        assert back.connections == 0
        n_before = len(bw.access_log_lines(wait_for=14))
        # After fail_timeout it is tried again and, being up, gets traffic.
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t_ejected)) + 0.3)
        seq = served(bw, 8, "/three")
        assert back.name in seq, f"server not tried again after fail_timeout: {seq}"
    finally:
        back.stop()
    log = bw.access_log_lines(wait_for=22)
    assert len(log) >= 22
    assert n_before >= 14
    for entry in log[6:14]:
        assert down not in str(entry.get("upstream")), f"ejected server in access log: {entry}"


def test_passive_failures_below_max_fails_do_not_eject(tmp_path, origins, bulwark):
    a, b = origins(2)
    a.on("/fail", om.reset())
    cfg = default_config([a.address, b.address], str(tmp_path / "access.log"))
    cfg["upstreams"]["app"].update({"balance": "round_robin", "max_fails": 5, "fail_timeout": "10s"})
    bw = bulwark(cfg, expect_errors=[a.address])
    for _ in range(2):
        bw.request("GET", "/fail")
    # a failed at most twice (< max_fails): it still takes its share.
    seq = served(bw, 10, "/ok")
    assert seq.count(a.name) >= 4, seq


def total_connections(servers):
    return sum(o.connections for o in servers)


def test_every_server_ejected_one_attempt_per_request(tmp_path, origins, bulwark):
    """When every server is passively ejected, a request makes one attempt
    (on one of them, in turn), not one per server: with blackholed servers
    each attempt costs a connect_timeout, and trying all of them made every
    request wait N times that while requests piled up. The servers here
    accept and close, so each attempt is one counted connection."""
    servers = origins(3)
    for o in servers:
        o.on("/x", om.raw(b"", close=True))
    cfg = default_config([o.address for o in servers], str(tmp_path / "access.log"))
    cfg["upstreams"]["app"].update({"balance": "round_robin", "max_fails": 1, "fail_timeout": "1m"})
    bw = bulwark(cfg, expect_errors=[o.address for o in servers])
    # Each server is in good standing when tried, fails, and is ejected.
    assert bw.request("GET", "/x").status == 502
    assert total_connections(servers) == 3
    for i in range(4):
        r = bw.request("GET", "/x")
        assert r.status == 502, r
        assert total_connections(servers) == 4 + i, \
            f"request {i + 2} with every server ejected made {total_connections(servers) - 3 - i} attempts"
    log = bw.access_log_lines(wait_for=5)
    assert "no live upstream server left" in log[-1].get("error", ""), log[-1]
    assert "closed before a complete response head" in log[-1]["error"], log[-1]
    # The one attempt is a real chance: a server that answers is back at once.
    r = bw.request("GET", "/ok")
    assert r.status == 200, r
    back = r.json()["server"]
    assert [r.json()["server"] for r in (bw.request("GET", "/ok") for _ in range(3))].count(back) >= 1
    assert "error" not in bw.access_log_lines(wait_for=9)[-1]


def test_every_other_server_ejected_health_check_down_stays_out(tmp_path, origins, bulwark):
    """A server the health check holds down is not the fallback when every
    other server is ejected: that verdict is fresh, an ejection a suspicion."""
    sick, a, b = origins(3)
    sick.on("/healthz", om.fixed(500, body=b"sick"))
    for o in (a, b):
        o.on("/x", om.raw(b"", close=True))
    cfg = health_cfg(tmp_path, [sick, a, b], interval="100ms", timeout="200ms", rise=1, fall=1)
    cfg["upstreams"]["app"].update({"max_fails": 1, "fail_timeout": "1m"})
    bw = bulwark(cfg, expect_errors=[sick.address, a.address, b.address])
    assert log_line_with(bw, sick.address, "down", timeout=3 * SLACK), bw.stderr()
    assert bw.request("GET", "/x").status == 502  # a and b fail and are ejected
    assert bw.request("GET", "/x").status == 502  # one attempt, on a or b
    assert sick.heads_for("/x") == []
    assert len(a.heads_for("/x")) + len(b.heads_for("/x")) == 3


def health_cfg(tmp_path, servers, **hc):
    cfg = default_config([s.address for s in servers], str(tmp_path / "access.log"))
    check = {"path": "/healthz", "interval": "200ms", "timeout": "200ms", "rise": 2, "fall": 2}
    check.update(hc)
    cfg["upstreams"]["app"].update({"balance": "round_robin", "health_check": check})
    return cfg


def wait_until_excluded(bw, bad, good_name, timeout):
    """Polls until 8 consecutive requests all avoid `bad`; returns seconds taken or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        seq = served(bw, 8, "/poll")
        if bad.name not in seq:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def wait_until_included(bw, server, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.name in served(bw, 4, "/poll"):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def log_line_with(bw, address, word, timeout=2.0):
    """A stderr line naming the address and holding `word` as a word."""
    pat = re.compile(r"\b" + word + r"\b", re.I)
    deadline = time.monotonic() + timeout
    while True:
        for line in bw.stderr_lines():
            if address in line and pat.search(line.replace(address, "")):
                return line
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


HANG = 15.0  # a wait for what a few 200 ms checks do: guards against a hang only


def answer_noting(bw, server, status, word, noted):
    """Answers a health check with `status`, first noting in `noted` whether
    the error log already says the server is `word`. The checker starts a
    check only once the previous one is done, and logs a verdict as it
    reaches it, so the notes count, without any clock, the checks that
    went before the verdict."""
    reply = om.fixed(status, body=b"ok" if status < 400 else b"sick")

    def run(ex):
        noted.append(log_line_with(bw, server.address, word, timeout=0) is not None)
        return reply(ex)

    return run


def test_active_health_check_takes_server_out_and_back(tmp_path, origins, bulwark):
    a, b = origins(2)
    bw = bulwark(health_cfg(tmp_path, [a, b]), expect_errors=[a.address])  # rise 2, fall 2
    assert {a.name, b.name} == set(served(bw, 4))
    # The checker really asks the configured path.
    assert a.wait_for(lambda o: o.requests_for("/healthz"), HANG), "no health check reached the origin"
    assert a.requests_for("/healthz")[0].method in ("GET", "HEAD")

    # Taken out after exactly `fall` failed checks, and from then on it gets
    # no client request: counted in checks and requests, not in seconds.
    sick = []
    a.on("/healthz", answer_noting(bw, a, 500, "down", sick))
    assert a.wait_for(lambda o: len(sick) > 2, HANG), "health checks stopped"
    line = log_line_with(bw, a.address, "down")
    assert line, "no log line saying the server is down:\n" + bw.stderr()
    assert "2 consecutive health checks failed (last: status 500)" in line, line
    assert sick[:3] == [False, False, True], f"down after {sick.index(True)} failed checks, not 2: {sick}"
    n = len(a.app_requests())
    assert set(served(bw, 8, "/after-down")) == {b.name}
    assert len(a.app_requests()) == n, "a server the checks took out still got requests"

    # Back after exactly `rise` passed checks, and then in the rotation.
    ok = []
    a.on("/healthz", answer_noting(bw, a, 200, "up", ok))
    assert a.wait_for(lambda o: len(ok) > 2, HANG), "health checks stopped"
    line = log_line_with(bw, a.address, "up")
    assert line, "no log line saying the server is up:\n" + bw.stderr()
    assert "2 consecutive health checks passed" in line, line
    assert ok[:3] == [False, False, True], f"up after {ok.index(True)} passed checks, not 2: {ok}"
    assert served(bw, 4, "/after-up").count(a.name) == 2, "recovered server not back in the rotation"


def test_active_health_check_timeout_counts_as_failure(tmp_path, origins, bulwark):
    a, b = origins(2)
    a.on("/healthz", om.no_response())
    bw = bulwark(health_cfg(tmp_path, [a, b]), expect_errors=[a.address])
    took = wait_until_excluded(bw, a, b.name, 3 * SLACK)
    assert took is not None, "server whose health check hangs still gets traffic"


def test_active_health_check_interval_is_respected(tmp_path, origins, bulwark):
    a, = origins(1)
    bulwark(health_cfg(tmp_path, [a], interval="200ms"))
    time.sleep(1.1)
    n = len(a.requests_for("/healthz"))
    # 200ms interval over ~1.1s: about 5 checks (one worker, one checker).
    assert 3 <= n <= 8, f"{n} health checks in 1.1s at a 200ms interval"


def test_down_server_with_health_check_gets_no_client_requests(tmp_path, origins, bulwark):
    live, = origins(1)
    down = om.down_address()
    cfg = default_config([down, live.address], str(tmp_path / "access.log"))
    cfg["upstreams"]["app"].update({"balance": "round_robin", "max_fails": 1000,
                                    "health_check": {"path": "/healthz", "interval": "100ms",
                                                     "timeout": "100ms", "rise": 1, "fall": 1}})
    bw = bulwark(cfg, expect_errors=[down])
    time.sleep(0.5)
    # Once the checker knows it is down, requests go straight to the live one,
    # fast, without a failed attempt first.
    assert set(served(bw, 10)) == {live.name}
    log = bw.access_log_lines(wait_for=10)
    for entry in log[-10:]:
        assert down not in str(entry.get("upstream")), entry


def test_health_verdicts_survive_a_reload(tmp_path, origins, bulwark):
    """A server the active checks took out stays out across a reload that
    keeps it (same upstream, same address), as Envoy keeps a host's health
    across a cluster update: a reload must not send traffic to a server known
    to be down until `fall` checks have failed again."""
    a, b = origins(2)
    a.on("/healthz", om.fixed(500, body=b"sick"))
    cfg = health_cfg(tmp_path, [a, b], interval="1s", timeout="500ms", rise=2, fall=3)
    bw = bulwark(cfg, expect_errors=[a.address])
    assert log_line_with(bw, a.address, "down", timeout=3 * SLACK + 4), bw.stderr()
    assert a.name not in served(bw, 8, "/before")
    bw.reload("generation 2 is live")
    # For 1.5 s after the reload (workers adopt it within 250 ms), nothing
    # goes to the down server; without carrying the verdict over, it would be
    # "up" until three checks a second apart failed again.
    seen = []
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end and len(seen) < 200:
        seen += served(bw, 4, "/after")
        time.sleep(0.05)
    assert a.name not in seen, f"down server served {seen.count(a.name)} of {len(seen)} after reload"
    # ... and it comes back as usual once it passes `rise` checks.
    a.on("/healthz", om.fixed(200, body=b"ok"))
    assert wait_until_included(bw, a, 4 + 3 * SLACK) is not None


def test_passive_ejection_survives_a_reload(tmp_path, origins, bulwark):
    live, = origins(1)
    down = om.down_address()
    cfg = default_config([down, live.address], str(tmp_path / "access.log"))
    cfg["upstreams"]["app"].update({"balance": "round_robin", "max_fails": 1, "fail_timeout": "10s"})
    bw = bulwark(cfg, expect_errors=[down])
    assert set(served(bw, 4, "/one")) == {live.name}
    bw.reload("generation 2 is live")
    time.sleep(0.3)  # workers adopt the new snapshot within 250 ms
    back = om.Origin(name="back", port=int(down.rsplit(":", 1)[1]))
    try:
        seq = served(bw, 8, "/two")
        assert set(seq) == {live.name}, f"ejected server tried again right after a reload: {seq}"
        assert back.connections == 0
    finally:
        back.stop()


def test_health_check_status_lines_read_as_haproxy_and_nginx_do(tmp_path, origins, bulwark):
    """A status line ended by a bare LF (a small health endpoint written by
    hand often sends one; HAProxy and nginx read it) passes; a status code
    that is not exactly three digits, or a version that is not HTTP/1.0 or
    1.1, fails."""
    lf, four, ver, good = origins(4)
    lf.on("/healthz", om.raw(b"HTTP/1.1 200 OK\n\nok"))
    four.on("/healthz", om.raw(b"HTTP/1.1 2000 OK\r\n\r\n"))
    ver.on("/healthz", om.raw(b"HTTP/1.x 200 OK\r\n\r\n"))
    cfg = health_cfg(tmp_path, [lf, four, ver, good], interval="100ms", timeout="200ms", rise=1,
                     fall=1)
    bw = bulwark(cfg, expect_errors=[four.address, ver.address])
    assert log_line_with(bw, four.address, "down", timeout=3 * SLACK), bw.stderr()
    assert log_line_with(bw, ver.address, "down", timeout=3 * SLACK), bw.stderr()
    time.sleep(0.5)
    assert lf.address not in bw.stderr(), bw.stderr()
    seq = served(bw, 12)
    assert set(seq) == {lf.name, good.name}, seq
