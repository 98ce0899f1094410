"""Running out of resources: file descriptors and the connection limit. The
proxy must neither spin nor stop serving once the pressure is gone."""
import os
import resource
import socket
import time

from bwtest import client
from bwtest.checks import SLACK, assert_still_serves

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def serves_again(bw, within):
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            return assert_still_serves(bw)
        except (AssertionError, OSError, client.Closed, client.Timeout) as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"proxy did not serve again within {within}s: {last!r}")


def test_out_of_file_descriptors_pauses_accept_without_spinning(origin, proxy):
    bw = proxy(origin, expect_errors=["accept: Too many open files"])
    assert_still_serves(bw)
    # Leave the worker a handful of spare descriptors, then connect past them.
    soft, hard = resource.prlimit(bw.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(bw.pid, resource.RLIMIT_NOFILE, (40, hard))
    socks = []
    try:
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", bw.port), timeout=5)
            socks.append(s)
        deadline = time.monotonic() + 5 * SLACK
        while "pausing accept" not in bw.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "pausing accept" in bw.stderr(), bw.stderr()
        # Connections still queued in the backlog keep the listener readable:
        # a proxy that retried at once would burn a whole core here.
        before = cpu_seconds(bw.pid)
        time.sleep(1.0)
        used = cpu_seconds(bw.pid) - before
        assert used < 0.5, f"proxy used {used:.2f}s of CPU in 1s while out of descriptors"
    finally:
        for s in socks:
            s.close()
    resource.prlimit(bw.pid, resource.RLIMIT_NOFILE, (soft, hard))
    serves_again(bw, 5 * SLACK)


def test_max_connections_closes_extra_connections_and_recovers(origin, proxy):
    bw = proxy(origin, limits={"max_connections": 5},
               expect_errors=[])
    held = [socket.create_connection(("127.0.0.1", bw.port), timeout=5) for _ in range(5)]
    try:
        time.sleep(0.2)
        # The sixth is accepted and closed at once: EOF, no response.
        extra = socket.create_connection(("127.0.0.1", bw.port), timeout=5)
        extra.settimeout(3 * SLACK)
        try:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            got = extra.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        assert got == b""
        extra.close()
        assert "max_connections" in bw.stderr()
    finally:
        for s in held:
            s.close()
    serves_again(bw, 5 * SLACK)
