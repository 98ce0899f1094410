"""Reloads (SIGHUP): validate, then swap. A good config takes effect for
new requests without dropping any; a bad one (YAML error, ruleset error, a
restart-only change) is rejected with the reason and the running one keeps
serving; requests in flight finish on the snapshot they started with."""
import json
import os
import signal
import textwrap
import threading
import time

import pytest

from bwtest import client
from bwtest import origin as om
from bwtest import yamlish
from bwtest.proc import default_config


def write_config(bw, cfg):
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(cfg) + "\n")


def wait_log(bw, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in bw.stderr():
            return True
        time.sleep(0.02)
    return False


def reload(bw, expect, timeout=5.0):
    bw.reload(expect, timeout)


def served_by(bw, path="/"):
    r = bw.request("GET", path)
    assert r.status == 200, r
    return r.json()["server"]


def wait_served_by(bw, name, path="/", timeout=3.0):
    # Workers adopt a new snapshot at their next request (or within 250 ms).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served_by(bw, path) == name:
            return True
        time.sleep(0.02)
    return False


def two_upstreams(tmp_path, a, b, target):
    cfg = default_config([a.address], str(tmp_path / "access.log"), workers=2)
    cfg["upstreams"] = {"a": {"servers": [{"address": a.address}]},
                        "b": {"servers": [{"address": b.address}]}}
    cfg["routes"] = [{"upstream": target}]
    return cfg


def test_reload_switches_routes_without_dropping_connections(tmp_path, origins, bulwark):
    a, b = origins(2)
    cfg = two_upstreams(tmp_path, a, b, "a")
    bw = bulwark(cfg)
    with bw.connect() as keep:
        keep.send(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        assert keep.read_response().json()["server"] == a.name
        cfg["routes"] = [{"upstream": "b"}]
        write_config(bw, cfg)
        reload(bw, "generation 2 is live")
        assert wait_served_by(bw, b.name)
        # The kept-alive connection survived and its next request uses the
        # new routes.
        keep.send(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
        assert keep.read_response().json()["server"] == b.name


def test_request_in_flight_finishes_on_its_snapshot(tmp_path, origins, bulwark):
    a, b = origins(2)
    a.on("/slow", om.slow(1.0))
    cfg = two_upstreams(tmp_path, a, b, "a")
    bw = bulwark(cfg)
    result = []
    t = threading.Thread(target=lambda: result.append(bw.request("GET", "/slow", timeout=10)))
    t.start()
    assert a.wait_for(lambda o: any(h.target == "/slow" for h in o.heads))
    cfg["routes"] = [{"upstream": "b"}]
    write_config(bw, cfg)
    reload(bw, "generation 2 is live")
    t.join(10)
    assert result and result[0].status == 200 and result[0].json()["server"] == a.name
    assert wait_served_by(bw, b.name)


def test_bad_config_is_rejected_and_the_old_one_serves(tmp_path, origins, bulwark):
    a, b = origins(2)
    cfg = two_upstreams(tmp_path, a, b, "a")
    bw = bulwark(cfg, expect_errors=["reload rejected", "bulwark.yaml:"])
    with open(bw.config_path, "w") as f:
        f.write("listen: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: []}}\nroutes: x\n")
    reload(bw, "reload rejected")
    assert "bulwark.yaml:2:" in bw.stderr()
    for _ in range(10):
        assert served_by(bw) == a.name
    # An empty file too.
    open(bw.config_path, "w").close()
    reload(bw, "reload rejected")
    assert served_by(bw) == a.name
    # Then a good one is taken.
    cfg["routes"] = [{"upstream": "b"}]
    write_config(bw, cfg)
    reload(bw, "generation 2 is live")
    assert wait_served_by(bw, b.name)


def test_restart_only_change_is_rejected_with_the_reason(tmp_path, origins, bulwark):
    a, b = origins(2)
    cfg = two_upstreams(tmp_path, a, b, "a")
    bw = bulwark(cfg, expect_errors=["reload rejected"])
    cfg2 = dict(cfg, workers=1)
    write_config(bw, cfg2)
    reload(bw, "reload rejected")
    assert "workers changed: a reload cannot apply that" in bw.stderr()
    assert served_by(bw) == a.name


@pytest.mark.parametrize("change, named, not_named", [
    ({"limits": {"headers": 50}}, "limits.headers changed: a reload cannot apply that (restart "
     "bulwark for it)", ["header_bytes", "request_line_bytes"]),
    ({"limits": {"drain_timeout": "5s"}}, "limits.drain_timeout changed:", ["max_connections"]),
    ({"workers": 1, "limits": {"header_bytes": "16KiB"}},
     "workers and limits.header_bytes changed: a reload cannot apply those (restart bulwark for "
     "them)", ["limits.headers", "request_line_bytes"]),
])
def test_restart_only_reload_names_exactly_the_fields_that_changed(tmp_path, origins, bulwark,
                                                                    change, named, not_named):
    a, b = origins(2)
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["admin"] = {"address": "127.0.0.1:0"}
    bw = bulwark(cfg, expect_errors=["reload rejected"])
    write_config(bw, dict(cfg, **change))
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("POST", "/reload", host="admin"))
        r = c.read_response(method="POST")
    assert r.status == 422, r.body
    report = json.loads(r.body)["report"]
    assert named in report, report
    for other in not_named:
        assert other not in report, report
    assert served_by(bw) == a.name


def test_ruleset_error_on_reload_keeps_the_running_rules(tmp_path, origins, bulwark):
    a, b = origins(2)
    rules = tmp_path / "entry.yaml"
    rules.write_text(textwrap.dedent("""\
        id: entry
        rules:
          - id: deny
            expression: 'http.request.uri.path eq "/deny"'
            action: block
        """))
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["modules"] = {"rules": {"rulesets": [str(rules)]}}
    bw = bulwark(cfg, expect_errors=["reload rejected", "entry.yaml"])
    assert bw.request("GET", "/deny").status == 403
    rules.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.nope'\n    action: block\n")
    reload(bw, "reload rejected")
    assert "entry.yaml:4:18: error" in bw.stderr()
    assert bw.request("GET", "/deny").status == 403
    # A good change is taken.
    rules.write_text(textwrap.dedent("""\
        id: entry
        rules:
          - id: deny
            expression: 'http.request.uri.path eq "/deny2"'
            action: block
        """))
    reload(bw, "generation 2 is live")
    deadline = time.monotonic() + 3
    while bw.request("GET", "/deny").status != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bw.request("GET", "/deny").status == 200
    assert bw.request("GET", "/deny2").status == 403


def test_reloads_under_load_lose_nothing(tmp_path, origins, bulwark):
    a, b = origins(2)
    cfg = two_upstreams(tmp_path, a, b, "a")
    bw = bulwark(cfg)
    stop = threading.Event()
    errors, count = [], [0]

    def load():
        deadline = time.monotonic() + 8
        with bw.connect() as c:
            while not stop.is_set() and time.monotonic() < deadline:
                c.send(b"GET /l HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response()
                if r.status != 200:
                    errors.append(r.status)
                count[0] += 1
        for _ in range(20):
            if stop.is_set() or time.monotonic() > deadline:
                break
            r = bw.request("GET", "/fresh")
            if r.status != 200:
                errors.append(r.status)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(10):
        cfg["routes"] = [{"upstream": "b" if i % 2 == 0 else "a"}]
        write_config(bw, cfg)
        reload(bw, f"generation {i + 2} is live")
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(15)
    assert errors == [] and count[0] > 0


def test_watch_reloads_on_file_change_debounced(tmp_path, origins, bulwark):
    a, b = origins(2)
    rules = tmp_path / "entry.yaml"
    rules.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.request.uri.path eq \"/one\"'\n"
                     "    action: block\n")
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["modules"] = {"rules": {"rulesets": [str(rules)]}}
    cfg["reload"] = {"watch": True, "debounce": "100ms"}
    bw = bulwark(cfg, expect_errors=["reload rejected", "entry.yaml"])
    assert bw.request("GET", "/one").status == 403

    def eventually(fn, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fn():
                return True
            time.sleep(0.05)
        return False

    # Written in place, in two steps: read once, whole, after the quiet time.
    with open(rules, "w") as f:
        f.write("id: entry\nrules:\n  - id: deny\n")
        f.flush()
        time.sleep(0.02)
        f.write("    expression: 'http.request.uri.path eq \"/two\"'\n    action: block\n")
    assert eventually(lambda: bw.request("GET", "/two").status == 403)
    assert bw.request("GET", "/one").status == 200
    assert "reload rejected" not in bw.stderr()
    # An editor's save: a temporary file renamed over the old one.
    tmp = tmp_path / ".entry.yaml.swp"
    tmp.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.request.uri.path eq \"/three\"'\n"
                   "    action: block\n")
    os.rename(tmp, rules)
    assert eventually(lambda: bw.request("GET", "/three").status == 403)
    # A broken save is rejected; the running rules stay.
    rules.write_text("id: entry\nrules: [\n")
    assert eventually(lambda: "reload rejected" in bw.stderr()), bw.stderr()
    assert bw.request("GET", "/three").status == 403
    # The config file itself is watched too (with the ruleset fixed: a
    # reload takes everything or nothing).
    tmp.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.request.uri.path eq \"/three\"'\n"
                   "    action: block\n")
    os.rename(tmp, rules)
    cfg["routes"] = [{"upstream": "b"}]
    write_config(bw, cfg)
    assert eventually(lambda: served_by(bw) == b.name)


def test_last_known_good_rulesets_at_start(tmp_path, origins, bulwark):
    a, b = origins(2)
    state = tmp_path / "state"
    state.mkdir()
    rules = tmp_path / "entry.yaml"
    rules.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.request.uri.path eq \"/deny\"'\n"
                     "    action: block\n")
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["modules"] = {"rules": {"rulesets": [str(rules)], "on_error": "open"}}
    cfg["state_dir"] = str(state)
    bw = bulwark(cfg, name="first")
    assert bw.request("GET", "/deny").status == 403
    copies = sorted(p.name for p in (state / "lkg").iterdir())
    assert len(copies) == 2 and copies[0].endswith("-bulwark.yaml") or copies[1].endswith("-bulwark.yaml")
    assert any(c.endswith("-entry.yaml") for c in copies)
    bw.stop()
    # The ruleset breaks while bulwark is down: at start, its copy is used.
    rules.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.nope'\n    action: block\n")
    bw2 = bulwark(cfg, name="second", expect_errors=["did not load", "entry.yaml", "reload rejected"])
    assert "falling back to the last-known-good copies" in bw2.stderr()
    assert bw2.request("GET", "/deny").status == 403
    # A copy that was used is not saved over by itself, and a reload of the
    # broken file is still rejected.
    bw2.signal(signal.SIGHUP)
    assert wait_log(bw2, "reload rejected")
    assert bw2.request("GET", "/deny").status == 403
    bw2.stop()
    # Without copies, the module's on_error applies (open: no rule runs).
    for p in (state / "lkg").iterdir():
        p.unlink()
    bw3 = bulwark(cfg, name="third", expect_errors=["did not load", "entry.yaml"])
    assert bw3.request("GET", "/deny").status == 200


def test_hundred_reloads_alternating_valid_and_invalid_under_load(tmp_path, origins, bulwark):
    """Issue 4's reload-under-load: clients on kept-alive and fresh
    connections while the test reloads 100 times, alternating valid and
    invalid rulesets and main configs: zero failed requests, zero resets,
    and the right version active at the end."""
    a, b = origins(2)
    rules = tmp_path / "entry.yaml"

    def good_rules(n):
        rules.write_text(f"id: entry\nrules:\n  - id: deny\n"
                         f"    expression: 'http.request.uri.path eq \"/deny/{n}\"'\n    action: block\n")

    good_rules(0)
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["modules"] = {"rules": {"rulesets": [str(rules)]}}
    cfg["admin"] = {"address": "127.0.0.1:0"}
    bw = bulwark(cfg, expect_errors=["reload rejected", "entry.yaml", "bulwark.yaml"])
    stop = threading.Event()
    failures, count = [], [0]

    def keepalive_client():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with bw.connect() as c:
                    for _ in range(200):
                        if stop.is_set():
                            break
                        c.send(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
                        r = c.read_response()
                        count[0] += 1
                        if r.status != 200:
                            failures.append(r.status)
            except Exception as e:  # noqa: BLE001  a reset or a timeout is a failure
                failures.append(repr(e))

    def fresh_client():
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = bw.request("GET", "/f")
                count[0] += 1
                if r.status != 200:
                    failures.append(r.status)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    threads = [threading.Thread(target=keepalive_client) for _ in range(3)]
    threads.append(threading.Thread(target=fresh_client))
    for t in threads:
        t.start()
    accepted = 0
    for i in range(100):
        kind = i % 4
        if kind == 0:  # a valid ruleset change
            good_rules(i)
        elif kind == 1:  # an invalid ruleset
            rules.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.nope'\n    action: block\n")
        elif kind == 2:  # a valid main config change (and the ruleset fixed)
            good_rules(i)
            cfg["upstreams"]["a"]["keepalive"] = 16 + i
            write_config(bw, cfg)
        else:  # an invalid main config
            with open(bw.config_path, "w") as f:
                f.write("listen: [{address: 127.0.0.1:0}]\nupstreams: nope\nroutes: []\n")
        with client.connect(bw.admin_port) as c:
            c.send(client.request_bytes("POST", "/reload", host="admin"))
            r = c.read_response(method="POST")
        if kind in (0, 2):
            assert r.status == 200, r.body
            accepted += 1
        else:
            assert r.status == 422, r.body
        if kind == 3:
            write_config(bw, cfg)  # put the good config back for the next round
    stop.set()
    for t in threads:
        t.join(60)
    assert failures == [] and count[0] > 0
    st = json.loads(_admin_get(bw, "/status"))
    assert st["config"]["generation"] == 1 + accepted
    assert st["config"]["reloads_rejected"] == 50
    # The last accepted ruleset is the one acting.
    assert bw.request("GET", "/deny/98").status == 403
    assert bw.request("GET", "/deny/96").status == 200


def _admin_get(bw, path):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("GET", path, host="admin"))
        return c.read_response().body.decode()


def test_thousand_reloads_leak_nothing(tmp_path, origins, bulwark):
    """Run under the ASan build by `make check`: LeakSanitizer reports any
    snapshot, view or compiled ruleset a reload forgets to free, and the
    bulwark fixture fails the test on any sanitizer line."""
    a, b = origins(2)
    rules = tmp_path / "entry.yaml"
    rules.write_text("id: entry\nrules:\n  - id: deny\n    expression: 'http.request.uri.path matches \"^/x[0-9]+\"'\n"
                     "    action: block\n")
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["modules"] = {"rules": {"rulesets": [str(rules)]}}
    cfg["admin"] = {"address": "127.0.0.1:0"}
    bw = bulwark(cfg)
    with client.connect(bw.admin_port) as c:
        pass
    for i in range(1000):
        with client.connect(bw.admin_port) as c:
            c.send(client.request_bytes("POST", "/reload", host="admin"))
            assert c.read_response(method="POST").status == 200
        if i % 100 == 0:
            assert bw.request("GET", "/x1").status == 403
    st = json.loads(_admin_get(bw, "/status"))
    assert st["config"]["generation"] == 1001


def test_main_config_last_known_good_with_state_dir_flag(tmp_path, origins, bulwark):
    import re
    import subprocess
    from bwtest.proc import bulwark_bin
    a, b = origins(2)
    state = tmp_path / "state"
    state.mkdir()
    cfg = two_upstreams(tmp_path, a, b, "a")
    cfg["state_dir"] = str(state)
    bw = bulwark(cfg, name="first")
    assert served_by(bw) == a.name
    path = bw.config_path
    bw.stop()
    with open(path, "w") as f:
        f.write("listen: [{address: 127.0.0.1:0}]\nupstreams: {a: {servers: []}}\nroutes: x\n")
    # Without --state-dir: refuses to start, with the error.
    r = subprocess.run([bulwark_bin(), "run", "-c", path], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "bulwark.yaml:2:" in r.stderr
    # With it: starts on the copy, loudly, and serves.
    log = open(tmp_path / "lkg.log", "w+")
    p = subprocess.Popen([bulwark_bin(), "run", "-c", path, "--state-dir", str(state)],
                         stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        port = None
        deadline = time.monotonic() + 10
        while port is None and time.monotonic() < deadline:
            m = re.search(r"(?<!admin )listening on 127\.0\.0\.1:(\d+)", open(tmp_path / "lkg.log").read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.02)
        assert port, open(tmp_path / "lkg.log").read()
        text = open(tmp_path / "lkg.log").read()
        assert "STARTING WITH ITS LAST-KNOWN-GOOD COPY" in text
        r = client.request(port, "GET", "/")
        assert r.status == 200 and r.json()["server"] == a.name
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        log.close()
    # The broken file was not saved over the good copy.
    copies = [c for c in (state / "lkg").iterdir() if c.name.endswith("-bulwark.yaml")]
    assert copies and "routes: x" not in copies[0].read_text()
