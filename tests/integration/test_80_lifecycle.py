"""Process lifecycle: graceful drain, signals, many connections, workers."""
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from bwtest import origin as om
from bwtest.checks import SLACK, assert_still_serves
from bwtest.client import request_bytes


def in_background(fn):
    out = []

    def run():
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


HANG = 10 * SLACK  # waits for an exit or a refusal: guards against a hang, times nothing
NEVER = "1h"  # a drain_timeout that cannot be what ended a drain within HANG


def held(release):
    """Reads the request and answers (as echo) only once `release` is set:
    the request stays in flight for as long as the test needs, whatever the
    machine's speed."""
    then = om.echo()

    def run(ex):
        ex.read_body()
        while not release.wait(0.05):
            if ex.origin.stopping.is_set():
                return False
        return then(ex)

    return run


def exited_by_drain(bw, code):
    """Exited 0 within HANG with drain_timeout NEVER: the drain finished
    because no connection was left, not because its deadline passed."""
    assert code is not None, f"still running {HANG}s after SIGTERM: the drain waited for something"
    assert code == 0, f"exit code {code}"
    assert "drain timeout" not in bw.stderr(), bw.stderr()


def connect_refused(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
        # A connection that reached the accept queue just as the listener
        # closed is reset rather than refused, and a SYN that arrives while
        # the listener is being torn down can go unanswered (the connect
        # then times out): either way it is not served.
        return True
    finally:
        s.close()


def draining_with_a_held_request(origin, proxy, release):
    """A proxy with an hour of drain_timeout, one request in flight that
    the origin holds until release is set, then SIGTERM: (bw, conn)."""
    origin.on("/slow", held(release))
    bw = proxy(origin, limits={"drain_timeout": NEVER})
    conn = bw.connect(timeout=HANG)
    conn.send(request_bytes("GET", "/slow"))
    assert origin.wait_for(lambda o: o.heads_for("/slow"), HANG)
    bw.signal(signal.SIGTERM)
    return bw, conn


def test_sigterm_drains_in_flight_request(origin, proxy):
    release = threading.Event()
    try:
        bw, conn = draining_with_a_held_request(origin, proxy, release)
        # New connections are refused while the request is still in flight
        # (held by the origin until the test lets it go).
        deadline = time.monotonic() + HANG
        refused = False
        while time.monotonic() < deadline and not refused:
            refused = connect_refused(bw.port)
            if not refused:
                time.sleep(0.05)
        assert refused, "listener still accepting after SIGTERM"
        assert bw.proc.poll() is None, "exited with a request in flight"
    finally:
        release.set()
    r = conn.read_response(timeout=HANG)
    assert r.status == 200 and r.json()["target"] == "/slow"
    assert "close" in r.connection_tokens(), "response during drain does not announce the close"
    how, _ = conn.wait_closed(HANG)
    assert how in ("eof", "reset")
    conn.close()
    # Once drained it exits: with an hour of drain_timeout, only the drain
    # finishing can end it within HANG.
    exited_by_drain(bw, bw.wait_exit(HANG))


def test_drain_timeout_bounds_shutdown(origin, proxy):
    origin.on("/hang", om.no_response())
    bw = proxy(origin, limits={"drain_timeout": "500ms"}, upstream_opts={"read_timeout": "30s"})
    conn = bw.connect(timeout=10)
    conn.send(request_bytes("GET", "/hang"))
    assert origin.wait_for(lambda o: o.heads_for("/hang"), 3)
    t0 = time.monotonic()
    bw.signal(signal.SIGTERM)
    code = bw.wait_exit(HANG)
    took = time.monotonic() - t0
    assert code is not None, "did not exit after drain_timeout"
    assert took >= 0.4, f"exited after {took:.2f}s with drain_timeout 500ms"
    # The drain's deadline is what ended it (the request hangs for 30s).
    assert "drain timeout: closing 1 connections still open" in bw.stderr(), bw.stderr()
    how, _ = conn.wait_closed(2)
    assert how in ("eof", "reset")
    conn.close()
    # Logged as cut by the shutdown (nginx's 444, no response), not as a
    # client that went away (499).
    line = [l for l in bw.access_log_lines() if l["path"] == "/hang"]
    assert len(line) == 1 and line[0]["status"] == 444 and line[0]["cut"] == "shutdown", line


def test_idle_keepalive_connections_do_not_delay_shutdown(origin, proxy):
    bw = proxy(origin, limits={"drain_timeout": NEVER, "keepalive_timeout": "1h"})
    idle = []
    for i in range(5):
        c = bw.connect()
        c.send(request_bytes("GET", f"/idle{i}"))
        assert c.read_response().status == 200
        idle.append(c)
    bw.signal(signal.SIGTERM)
    # Idle keepalive connections are closed at once: they cannot hold the
    # drain (its deadline, an hour, is not what ends it).
    exited_by_drain(bw, bw.wait_exit(HANG))
    for c in idle:
        how, extra = c.wait_closed(1)
        assert how in ("eof", "reset") and extra == b""
        c.close()


def test_sigint_exits_cleanly(origin, proxy):
    bw = proxy(origin)
    assert_still_serves(bw)
    bw.signal(signal.SIGINT)
    assert bw.wait_exit(5 * SLACK) == 0


def test_sighup_does_not_kill(origin, proxy):
    bw = proxy(origin)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/before"))
        assert c.read_response().status == 200
        bw.signal(signal.SIGHUP)
        time.sleep(0.3)
        assert bw.proc.poll() is None, "SIGHUP killed the process"
        # An open keepalive connection keeps working.
        c.send(request_bytes("GET", "/during"))
        assert c.read_response().status == 200
    assert_still_serves(bw)


def test_500_connections_opened_and_closed(origin, proxy):
    # client_header_timeout bounds the teardown while the bug below stands.
    bw = proxy(origin, limits={"client_header_timeout": "2s"})
    socks = []
    for i in range(500):
        s = socket.socket()
        s.settimeout(5)
        s.connect(("127.0.0.1", bw.port))
        socks.append(s)
    # While they are all open, a request is still served.
    assert_still_serves(bw)
    for i, s in enumerate(socks):
        if i % 3 == 0:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # half a head
        if i % 2 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.2)
    assert_still_serves(bw)
    assert origin.bytes_received > 0
    assert len(origin.requests) == 2


def test_client_closing_mid_head_is_released_at_once(origin, proxy):
    # Neither timeout can release them within HANG: only seeing the close can.
    bw = proxy(origin, limits={"client_header_timeout": "1h", "drain_timeout": NEVER})
    socks = []
    for _ in range(20):
        s = socket.socket()
        s.connect(("127.0.0.1", bw.port))
        socks.append(s)
    time.sleep(0.2)  # accepted and idle first, then half a head, then FIN
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        s.close()
    time.sleep(0.3)
    assert_still_serves(bw)
    bw.signal(signal.SIGTERM)
    exited_by_drain(bw, bw.wait_exit(HANG))


def test_many_connections_each_with_a_request(origin, proxy):
    bw = proxy(origin)
    conns = []
    for i in range(200):
        c = bw.connect(timeout=10)
        c.send(request_bytes("GET", f"/m/{i}"))
        conns.append(c)
    for i, c in enumerate(conns):
        assert c.read_response(timeout=10).json()["target"] == f"/m/{i}"
        c.close()


@pytest.mark.parametrize("workers", [2, "auto"])
def test_workers_serve(origin, proxy, workers):
    bw = proxy(origin, workers=workers)
    threads = [in_background(lambda i=i: bw.request("GET", f"/w/{i}").status) for i in range(30)]
    for t, _ in threads:
        t.join(10)
    assert [out[0] for _, out in threads] == [200] * 30


def test_two_listeners(origin, bulwark, tmp_path):
    from bwtest.proc import default_config

    cfg = default_config([origin.address], str(tmp_path / "access.log"),
                         listen=[{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}])
    bw = bulwark(cfg)
    assert len(bw.ports) == 2 and bw.ports[0] != bw.ports[1]
    for port in bw.ports:
        from bwtest import client

        assert client.request(port, "GET", f"/on/{port}").status == 200


def test_second_instance_on_a_taken_port_is_refused_unless_taking_over(origin, bulwark, tmp_path):
    """SO_REUSEPORT would let a second bulwark (a forgotten one, or one
    started twice by a unit file) silently take a share of the connections
    with its own configuration. It is refused; --takeover is the explicit
    way to start a replacement beside the running one."""
    from bwtest import client
    from bwtest.proc import bulwark_bin, default_config

    from bwtest import yamlish

    first = bulwark(default_config([origin.address], str(tmp_path / "a.log"),
                                   admin={"address": "127.0.0.1:0"}), name="first")
    cfg = default_config([origin.address], str(tmp_path / "b.log"),
                         listen=[{"address": f"127.0.0.1:{first.port}"}],
                         admin={"address": f"127.0.0.1:{first.admin_port}"})
    path = tmp_path / "second.yaml"
    path.write_text(yamlish.dump(cfg) + "\n")
    out = subprocess.run([bulwark_bin(), "run", "-c", str(path)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert f"listen 127.0.0.1:{first.port}: address already in use by another process" in out.stderr
    assert "--takeover" in out.stderr
    assert client.request(first.port, "GET", "/still").status == 200

    # The admin port is not shared: the replacement serves traffic at once
    # and takes the admin API over when the old process exits.
    second = bulwark(yamlish.dump(cfg) + "\n", name="second", args=["--takeover"])
    assert second.port == first.port
    assert "held by the process being replaced" in second.stderr()
    first.signal(signal.SIGTERM)
    assert first.wait_exit(5 * SLACK) == 0
    for i in range(20):  # every new connection now reaches the replacement
        assert client.request(first.port, "GET", f"/after/{i}").status == 200
    deadline = time.monotonic() + 5 * SLACK
    while "admin listening on" not in second.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.request(first.admin_port, "GET", "/status", host="admin").status == 200
    assert second.proc.poll() is None


@pytest.mark.parametrize("second", [signal.SIGQUIT, signal.SIGTERM])
def test_sigquit_or_second_sigterm_during_drain_exits_at_once(origin, proxy, second):
    # SIGQUIT, or a second SIGTERM (its sender will not wait for the drain
    # the first one started), must not wait for the request in flight. It
    # is held until the end and the drain has an hour: exiting at all means
    # waiting for neither.
    release = threading.Event()
    try:
        bw, conn = draining_with_a_held_request(origin, proxy, release)
        time.sleep(0.2)
        assert bw.proc.poll() is None, "exited before the in-flight request finished"
        bw.signal(second)
        code = bw.wait_exit(HANG)
        assert code is not None, f"{second.name} during the drain did not end the process"
        if second == signal.SIGTERM:
            assert code == 0, f"a second SIGTERM during the drain exited {code}"
        conn.close()
    finally:
        release.set()


def test_sigusr2_is_ignored(origin, proxy):
    # nginx's binary-upgrade signal; its default action would end the process.
    bw = proxy(origin)
    bw.signal(signal.SIGUSR2)
    time.sleep(0.3)
    assert bw.proc.poll() is None, "SIGUSR2 killed the process"
    assert_still_serves(bw)
    assert "SIGUSR2: ignored" in bw.stderr()
