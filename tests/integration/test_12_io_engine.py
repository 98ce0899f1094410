"""io_engine and io_batch_wait: each engine serves the same traffic, the
choice is logged, io_uring is refused with the reason where the kernel does
not allow it, and a reload cannot change either."""
import signal
import subprocess
import threading
import time

import pytest

from bwtest import yamlish
from bwtest.client import request_bytes
from bwtest.proc import bulwark_bin, default_config


def engine_line(bw):
    for line in bw.stderr().splitlines():
        if "listening on" in line and "io:" in line:
            return line.rsplit("io: ", 1)[1].rstrip(")")
    raise AssertionError(bw.stderr())


def mixed_traffic(bw, conns=40, per_conn=5):
    """Concurrent keepalive connections, each pipelining requests with and
    without bodies: every answer arrives, in order, on its connection."""
    errors = []

    def one(k):
        try:
            c = bw.connect(timeout=10)
            data = b"".join(
                request_bytes("POST", f"/c{k}/r{i}", body=b"x" * (i * 700)) if i % 2
                else request_bytes("GET", f"/c{k}/r{i}")
                for i in range(per_conn))
            c.send(data)
            for i in range(per_conn):
                r = c.read_response(timeout=10)
                got = r.json()
                if r.status != 200 or got["target"] != f"/c{k}/r{i}":
                    errors.append((k, i, r.status, got.get("target")))
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


@pytest.mark.parametrize("engine,batch", [("epoll", "50us"), ("auto", "50us"), ("auto", "0us"),
                                          ("auto", "1ms")])
def test_each_engine_serves_the_same_traffic(origin, proxy, engine, batch):
    bw = proxy(origin, io_engine=engine, io_batch_wait=batch)
    got = engine_line(bw)
    if engine == "epoll":
        assert got == "epoll"
    else:
        assert got in ("io_uring", "epoll")
        if got == "epoll":
            assert "io_engine: auto uses epoll" in bw.stderr()
    mixed_traffic(bw)
    # A large body both ways, through the copy limit and past it.
    big = bytes(range(256)) * 4096  # 1 MiB
    r = bw.request("POST", "/big", body=big, timeout=20)
    assert r.status == 200 and r.json()["body_len"] == len(big)


def test_io_uring_required(origin, tmp_path):
    cfg = default_config([origin.address], str(tmp_path / "a.log"), io_engine="io_uring")
    path = tmp_path / "ring.yaml"
    path.write_text(yamlish.dump(cfg) + "\n")
    log = tmp_path / "ring.err"
    with open(log, "wb") as err:
        p = subprocess.Popen([bulwark_bin(), "run", "-c", str(path)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and p.poll() is None and "listening on" not in log.read_text():
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        p.wait(10)
    text = log.read_text()
    if "listening on" in text:
        assert "io: io_uring" in text
        assert p.returncode == 0
    else:
        # Refused, with the reason and what works instead.
        assert p.returncode == 1, text
        assert "io_engine: io_uring:" in text and "io_engine: auto or epoll works here" in text


def test_reload_cannot_change_the_engine(origin, proxy):
    bw = proxy(origin, io_engine="epoll", expect_errors=["reload rejected"])
    cfg = dict(bw.config, io_engine="auto")
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(cfg) + "\n")
    bw.reload("reload rejected")
    assert "io_engine changed: a reload cannot apply that" in bw.stderr()
    assert bw.request("GET", "/still").status == 200
