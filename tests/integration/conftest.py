"""Fixtures for bulwark's black-box tests.

  bulwark        factory: bulwark(config_dict_or_yaml, expect_errors=[...]) ->
                 a running proxy (.port .pid .proc .stderr() .access_log_lines()
                 .url()); stopped at teardown with SIGTERM, which must exit 0
                 with no sanitizer report and no unexpected `error:` line.
  origin         a scripted raw-socket origin (bwtest/origin.py)
  origins        factory: origins(n) -> list of origins named s0..s(n-1)
  proxy          factory: proxy(origin_or_addresses, **config) -> bulwark in
                 front of them with the default config plus overrides
  nginx_origin   a real nginx serving static files and `return 200`
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bwtest import origin as origin_mod  # noqa: E402
from bwtest.proc import Bulwark, bulwark_bin, default_config  # noqa: E402


def pytest_configure(config):
    b = bulwark_bin()
    if not os.access(b, os.X_OK):
        raise pytest.UsageError(f"bulwark binary not found at {b}; set BULWARK_BIN")


@pytest.fixture
def bulwark(tmp_path):
    started = []

    def start(config, expect_errors=(), name=None, nlisten=None):
        bw = Bulwark(tmp_path, config, name=name or f"bulwark{len(started)}",
                     expect_errors=expect_errors, nlisten=nlisten)
        started.append(bw)
        return bw

    yield start
    failures = []
    for bw in started:
        try:
            bw.stop()
        except AssertionError as e:
            failures.append(str(e))
        finally:
            bw.kill()
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def origins():
    made = []

    def make(n=1, prefix="s"):
        out = []
        for _ in range(n):
            o = origin_mod.Origin(name=f"{prefix}{len(made)}")
            made.append(o)
            out.append(o)
        return out

    yield make
    errors = []
    for o in made:
        o.stop()
        errors += o.errors
    assert not errors, f"origin behaviour raised: {errors}"


@pytest.fixture
def origin(origins):
    return origins(1, prefix="origin")[0]


@pytest.fixture
def proxy(bulwark, tmp_path):
    """proxy(origin_or_list, expect_errors=(), **top_level_overrides)."""

    def start(upstream, expect_errors=(), upstream_opts=None, **over):
        ups = upstream if isinstance(upstream, (list, tuple)) else [upstream]
        addrs = [u if isinstance(u, str) else u.address for u in ups]
        over.setdefault("access_log", str(tmp_path / f"access{len(os.listdir(tmp_path))}.log"))
        cfg = default_config(addrs, **over)
        if upstream_opts:
            cfg["upstreams"]["app"].update(upstream_opts)
        return bulwark(cfg, expect_errors=expect_errors)

    return start


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


NGINX_CONF = """
worker_processes 1;
user root root;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        location = /ok {{ return 200 "nginx ok\\n"; }}
        location = /created {{ return 201 "made\\n"; }}
        location /static/ {{ }}
    }}
}}
"""


class Nginx:
    def __init__(self, prefix):
        self.prefix = prefix
        for d in ("html/static", "tmp", "logs"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        self.small = origin_mod.pattern(1024)
        self.large = origin_mod.pattern(1 << 20, offset=17)
        with open(os.path.join(prefix, "html/static/1k.bin"), "wb") as f:
            f.write(self.small)
        with open(os.path.join(prefix, "html/static/1m.bin"), "wb") as f:
            f.write(self.large)
        self.proc = None
        last = ""
        for _ in range(5):
            self.port = _free_port()
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(prefix=prefix, port=self.port))
            self.stderr_path = os.path.join(prefix, "stderr.log")
            err = open(self.stderr_path, "wb")
            self.proc = subprocess.Popen(
                ["/usr/sbin/nginx", "-p", prefix, "-c", conf, "-e", "stderr",
                 "-g", f"daemon off; pid {prefix}/nginx.pid; error_log stderr;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.close()
            if self._wait_up():
                self.address = f"127.0.0.1:{self.port}"
                return
            last = open(self.stderr_path).read()
            self.stop()
        raise AssertionError(f"nginx did not start: {last}")

    def _wait_up(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def nginx_origin(tmp_path):
    if not os.access("/usr/sbin/nginx", os.X_OK):
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    n = Nginx(str(tmp_path / "nginx"))
    yield n
    n.stop()
    shutil.rmtree(n.prefix, ignore_errors=True)
