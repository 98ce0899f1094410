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
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bwtest import origin as origin_mod  # noqa: E402
from bwtest.nginx import Nginx  # noqa: E402
from bwtest.proc import Bulwark, bulwark_bin, default_config  # noqa: E402


def pytest_configure(config):
    b = bulwark_bin()
    if not os.access(b, os.X_OK):
        raise pytest.UsageError(f"bulwark binary not found at {b}; set BULWARK_BIN")


@pytest.fixture
def bulwark(tmp_path):
    started = []

    def start(config, expect_errors=(), name=None, nlisten=None, args=()):
        bw = Bulwark(tmp_path, config, name=name or f"bulwark{len(started)}",
                     expect_errors=expect_errors, nlisten=nlisten, args=args)
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


@pytest.fixture
def nginx_origin(tmp_path):
    if not os.access("/usr/sbin/nginx", os.X_OK):
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    n = Nginx(str(tmp_path / "nginx"))
    yield n
    n.stop()
    shutil.rmtree(n.prefix, ignore_errors=True)
