"""The admin API wired into the proxy: /status, /metrics, /reload and
/killswitch against the running snapshot; killswitches persisted in
state_dir; the token; and killswitches under load (DESIGN.md outage 2)."""
import json
import os
import socket
import textwrap
import threading
import time

from bwtest import client, report, yamlish
from bwtest.proc import default_config


def admin(bw, method, path, body=None, token=None, timeout=5.0):
    headers = [("Content-Type", "application/json")] if body is not None else []
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    data = json.dumps(body).encode() if body is not None else b""
    with client.connect(bw.admin_port, timeout=timeout) as c:
        c.send(client.request_bytes(method, path, headers=headers, body=data, host="admin"))
        return c.read_response(method=method)


ENTRY = """\
    id: entry
    rules:
      - id: deny-admin
        expression: 'starts_with(http.request.uri.path, "/admin")'
        action: block
      - id: run-managed
        expression: 'true'
        action: execute
        ruleset: managed
      - id: deny-secret
        expression: 'http.request.uri.path eq "/secret"'
        action: block
        status: 451
"""

MANAGED = """\
    id: managed
    rules:
      - id: deny-bots
        expression: 'lower(http.user_agent) contains "badbot"'
        action: block
      - id: deny-trace
        expression: 'http.request.method eq "TRACE"'
        action: block
        status: 405
"""


def admin_config(tmp_path, origin, state_dir=None, token=None, workers=1):
    (tmp_path / "entry.yaml").write_text(textwrap.dedent(ENTRY))
    (tmp_path / "managed.yaml").write_text(textwrap.dedent(MANAGED))
    cfg = default_config([origin.address], workers=workers)
    cfg["admin"] = {"address": "127.0.0.1:0"}
    if token:
        tf = tmp_path / "admin.token"
        tf.write_text(token + "\n")
        os.chmod(tf, 0o600)
        cfg["admin"]["token_file"] = str(tf)
    if state_dir:
        cfg["state_dir"] = str(state_dir)
    cfg["modules"] = {"rules": {"rulesets": [str(tmp_path / "entry.yaml"),
                                             str(tmp_path / "managed.yaml")]}}
    return cfg


def test_status_lists_artifacts_and_generation(tmp_path, origin, bulwark):
    bw = bulwark(admin_config(tmp_path, origin))
    r = admin(bw, "GET", "/status")
    assert r.status == 200 and r.header("content-type").startswith("application/json")
    st = r.json()
    assert st["config"]["generation"] == 1
    kinds = [(a["kind"], a.get("id")) for a in st["artifacts"]]
    assert kinds == [("config", None), ("ruleset", "entry"), ("ruleset", "managed")]
    assert all(len(a["hash"]) == 16 for a in st["artifacts"])
    assert st["modules"]["rules"]["state"] == "ok"
    assert st["last_rejection"] is None and st["killswitches"] == []


def test_metrics_count_requests_routes_and_rules(tmp_path, origin, bulwark):
    bw = bulwark(admin_config(tmp_path, origin))
    for _ in range(3):
        assert bw.request("GET", "/ok").status == 200
    assert bw.request("GET", "/admin").status == 403
    # A refused request is counted when its connection has closed (after
    # the lingering close), which may be a moment after the client read it.
    deadline = time.monotonic() + 5
    while True:
        r = admin(bw, "GET", "/metrics")
        assert r.status == 200
        text = r.body.decode()
        if 'bulwark_request_duration_seconds_count 4' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 'bulwark_responses_total{class="2xx"} 3' in text
    assert 'bulwark_responses_total{class="4xx"} 1' in text
    assert 'bulwark_route_responses_total{route="1",upstream="app",class="2xx"} 3' in text
    assert 'bulwark_route_responses_total{route="none",upstream="none",class="4xx"} 1' in text
    assert 'bulwark_rule_matches_total{ruleset="entry",rule="deny-admin",action="block"} 1' in text
    assert 'bulwark_rules_verdicts_total{phase="request",verdict="block"} 1' in text
    assert 'bulwark_request_duration_seconds_count 4' in text
    assert "# TYPE bulwark_request_duration_seconds histogram" in text


def test_reload_accepted_and_rejected(tmp_path, origin, bulwark):
    cfg = admin_config(tmp_path, origin)
    bw = bulwark(cfg, expect_errors=["reload rejected", "entry.yaml"])
    r = admin(bw, "POST", "/reload")
    assert r.status == 200 and r.json()["accepted"] is True and r.json()["generation"] == 2
    (tmp_path / "entry.yaml").write_text("id: entry\nrules:\n  - id: x\n    expression: 'nope'\n"
                                         "    action: block\n")
    r = admin(bw, "POST", "/reload")
    assert r.status == 422
    body = r.json()
    assert body["accepted"] is False and "entry.yaml:4:18: error" in body["report"]
    st = admin(bw, "GET", "/status").json()
    assert st["config"]["generation"] == 2
    assert "entry.yaml:4:18" in st["last_rejection"]["error"]
    # Still serving with the old rules.
    assert bw.request("GET", "/admin").status == 403


def test_killswitch_at_once_and_back(tmp_path, origin, bulwark):
    bw = bulwark(admin_config(tmp_path, origin))
    assert bw.request("GET", "/admin").status == 403
    r = admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": False})
    assert r.status == 200, r
    assert bw.request("GET", "/admin").status == 200
    st = admin(bw, "GET", "/status").json()
    assert st["killswitches"] == [{"target": "rule:entry/deny-admin", "present": True}]
    r = admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": True})
    assert r.status == 200
    assert bw.request("GET", "/admin").status == 403
    # A typo is refused, not silently accepted.
    r = admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admn", "enabled": False})
    assert r.status == 400 and "no such rule" in r.json()["error"]
    r = admin(bw, "POST", "/killswitch", {"target": "module:bot_score", "enabled": False})
    assert r.status == 400
    # Killing the rules module: no rule runs, requests go on.
    r = admin(bw, "POST", "/killswitch", {"target": "module:rules", "enabled": False})
    assert r.status == 200
    assert bw.request("GET", "/admin").status == 200
    assert admin(bw, "GET", "/status").json()["modules"]["rules"]["state"] == "killed"
    assert 'bulwark_module_killed_total{module="rules"} 1' in admin(bw, "GET", "/metrics").body.decode()


def test_killswitches_survive_reload_and_restart(tmp_path, origin, bulwark):
    state = tmp_path / "state"
    state.mkdir()
    cfg = admin_config(tmp_path, origin, state_dir=state)
    bw = bulwark(cfg, name="first")
    assert admin(bw, "POST", "/killswitch", {"target": "ruleset:managed", "enabled": False}).status == 200
    assert (state / "killswitches").read_text() == "ruleset:managed\n"
    ua = [("User-Agent", "BadBot/1")]
    assert bw.request("GET", "/x", headers=ua).status == 200
    assert admin(bw, "POST", "/reload").status == 200
    assert bw.request("GET", "/x", headers=ua).status == 200  # kept across the reload
    bw.stop()
    bw2 = bulwark(cfg, name="second")
    assert "1 killswitch restored" in bw2.stderr()
    assert bw2.request("GET", "/x", headers=ua).status == 200
    assert bw2.request("GET", "/secret").status == 451  # the rest still acts


def test_a_bad_line_in_the_state_file_costs_only_that_line(tmp_path, origin, bulwark):
    # Edited by hand during an incident: a comment, CRLF, a typo. Every good
    # line is restored (a killed rule must not come back on a restart), the
    # bad one is reported, and the file as written is kept aside before the
    # next killswitch rewrites it.
    state = tmp_path / "state"
    state.mkdir()
    text = ("# INC-123: managed blocks checkout\r\n"
            "ruleset:managed\r\n"
            "rule:entry/deny-admn-typo here\r\n"
            "rule:entry/deny-admin\r\n")
    (state / "killswitches").write_text(text, newline="")
    bw = bulwark(admin_config(tmp_path, origin, state_dir=state),
                 expect_errors=["killswitches:"])
    err = bw.stderr()
    assert "killswitches: 1 line skipped, the first:" in err and "killswitches:3:" in err, err
    assert "2 killswitches restored" in err
    assert bw.request("GET", "/admin").status == 200
    assert bw.request("GET", "/x", headers=[("User-Agent", "BadBot/1")]).status == 200
    assert bw.request("GET", "/secret").status == 451
    assert admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-secret",
                                             "enabled": False}).status == 200
    assert (state / "killswitches.rejected").read_bytes() == text.encode()
    assert sorted((state / "killswitches").read_text().split()) == [
        "rule:entry/deny-admin", "rule:entry/deny-secret", "ruleset:managed"]


def test_a_killswitch_on_a_removed_target_can_be_lifted(tmp_path, origin, bulwark):
    state = tmp_path / "state"
    state.mkdir()
    cfg = admin_config(tmp_path, origin, state_dir=state)
    bw = bulwark(cfg)
    assert admin(bw, "POST", "/killswitch", {"target": "ruleset:managed",
                                             "enabled": False}).status == 200
    # The ruleset leaves the configuration; its killswitch stays, shown absent.
    (tmp_path / "entry.yaml").write_text(textwrap.dedent(ENTRY).replace(
        "  - id: run-managed\n    expression: 'true'\n    action: execute\n"
        "    ruleset: managed\n", ""))
    cfg2 = dict(bw.config, modules={"rules": {"rulesets": [str(tmp_path / "entry.yaml")]}})
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(cfg2) + "\n")
    assert admin(bw, "POST", "/reload").status == 200
    st = admin(bw, "GET", "/status").json()
    assert st["killswitches"] == [{"target": "ruleset:managed", "present": False}]
    # Lifting it is allowed (else it would kill the ruleset again the day it
    # came back); killing a target that is not there is still refused.
    r = admin(bw, "POST", "/killswitch", {"target": "ruleset:managed", "enabled": True})
    assert r.status == 200, r
    assert admin(bw, "GET", "/status").json()["killswitches"] == []
    assert (state / "killswitches").read_text() == ""
    r = admin(bw, "POST", "/killswitch", {"target": "ruleset:managed", "enabled": False})
    assert r.status == 400


def test_token_guards_mutating_calls(tmp_path, origin, bulwark):
    bw = bulwark(admin_config(tmp_path, origin, token="s3cret-token"))
    assert admin(bw, "GET", "/status").status == 200  # read-only calls stay open
    r = admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": False})
    assert r.status == 401 and r.header("www-authenticate", "").startswith("Bearer")
    r = admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": False},
              token="wrong")
    assert r.status == 401
    assert bw.request("GET", "/admin").status == 403
    r = admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": False},
              token="s3cret-token")
    assert r.status == 200
    assert bw.request("GET", "/admin").status == 200


def test_reload_reads_the_token_again(tmp_path, origin, bulwark):
    # Rotating the secret: write the new token, reload (with the old one);
    # from then on only the new one opens the mutating calls.
    bw = bulwark(admin_config(tmp_path, origin, token="token-a"),
                 expect_errors=["admin.token_file", "reload rejected"])
    tf = tmp_path / "admin.token"
    tf.write_text("token-b\n")
    assert admin(bw, "POST", "/reload", token="token-a").status == 200
    assert admin(bw, "POST", "/reload", token="token-a").status == 401
    assert admin(bw, "POST", "/reload", token="token-b").status == 200
    # A token file that cannot be used rejects the reload, and the running
    # token stays.
    os.chmod(tf, 0o644)
    r = admin(bw, "POST", "/reload", token="token-b")
    assert r.status == 422 and "admin.token_file" in r.json()["report"], r.body
    assert "chmod 600" in r.json()["report"]
    os.chmod(tf, 0o600)
    # Another file named by the config: its token from this reload on.
    other = tmp_path / "other.token"
    other.write_text("token-c\n")
    os.chmod(other, 0o600)
    cfg = dict(bw.config)
    cfg["admin"] = dict(cfg["admin"], token_file=str(other))
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(cfg) + "\n")
    assert admin(bw, "POST", "/reload", token="token-b").status == 200
    assert admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": False},
                 token="token-b").status == 401
    assert admin(bw, "POST", "/killswitch", {"target": "rule:entry/deny-admin", "enabled": False},
                 token="token-c").status == 200


def test_killing_execute_ruleset_and_every_rule_under_load_never_5xx(tmp_path, origin, bulwark):
    """DESIGN.md outage 2, replayed: under load, kill the execute rule, then
    its target ruleset, then every other rule, one at a time: no 5xx, and the
    rules still enabled keep acting."""
    bw = bulwark(admin_config(tmp_path, origin, workers=2))
    stop = threading.Event()
    bad, seen = [], [0]
    corpus = [("GET", "/ok", []), ("GET", "/admin/x", []), ("GET", "/secret", []),
              ("GET", "/x", [("User-Agent", "BadBot/3")]), ("TRACE", "/", [])]

    def load():
        deadline = time.monotonic() + 20
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            m, p, h = corpus[i % len(corpus)]
            i += 1
            r = bw.request(m, p, headers=h)
            seen[0] += 1
            if r.status >= 500:
                bad.append((m, p, r.status))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    steps = ["rule:entry/run-managed", "ruleset:managed", "rule:entry/deny-admin",
             "rule:managed/deny-bots", "rule:managed/deny-trace"]
    for target in steps:
        r = admin(bw, "POST", "/killswitch", {"target": target, "enabled": False})
        assert r.status == 200, (target, r)
        time.sleep(0.2)
        # The one rule never killed still acts, at once.
        assert bw.request("GET", "/secret").status == 451
    stop.set()
    for t in threads:
        t.join(30)
    assert bad == [] and seen[0] > 50
    report.outage("killswitch on an execute rule", seen[0], len(bad),
                  {"killswitches": admin(bw, "GET", "/status").json()["killswitches"]})
    assert bw.request("GET", "/admin/x").status == 200
    assert bw.request("GET", "/x", headers=[("User-Agent", "BadBot/3")]).status == 200


def test_metrics_count_upstream_failures_and_retries(tmp_path, origin, bulwark):
    # A server that refuses connections, then a good one: the request is
    # retried (GET is idempotent) and served; both show in /metrics.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()
    cfg = default_config([dead_addr, origin.address])
    cfg["upstreams"]["app"]["max_fails"] = 1000
    cfg["admin"] = {"address": "127.0.0.1:0"}
    bw = bulwark(cfg, expect_errors=[dead_addr])
    for _ in range(4):
        assert bw.request("GET", "/").status == 200
    text = admin(bw, "GET", "/metrics").body.decode()
    def value(name):
        line = [ln for ln in text.splitlines() if ln.startswith(name + " ")][0]
        return int(line.split()[1])

    fails = value('bulwark_upstream_failures_total{upstream="app"}')
    retries = value("bulwark_upstream_retries_total")
    assert fails >= 1 and retries == fails
    assert f'bulwark_upstream_server_up{{upstream="app",server="{dead_addr}"}}' in text


def test_upstream_failures_are_counted_by_upstream_across_reloads(tmp_path, origin, bulwark):
    # Which upstream is failing is the first thing an operator asks: each
    # configured upstream has its own series (and only those: the label
    # never takes a value from traffic), kept across a reload.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()
    cfg = default_config([origin.address])
    cfg["upstreams"]["broken"] = {"servers": [{"address": dead_addr}], "max_fails": 1000}
    cfg["routes"] = [{"match": 'starts_with(http.request.uri.path, "/broken/")',
                      "upstream": "broken"}, {"upstream": "app"}]
    cfg["admin"] = {"address": "127.0.0.1:0"}
    bw = bulwark(cfg, expect_errors=[dead_addr])
    cfg = bw.config  # with the access log the fixture chose

    def failures():
        text = admin(bw, "GET", "/metrics").body.decode()
        return {ln.split('"')[1]: int(ln.split()[1]) for ln in text.splitlines()
                if ln.startswith("bulwark_upstream_failures_total{")}

    assert failures() == {"app": 0, "broken": 0}
    for _ in range(3):
        assert bw.request("GET", "/broken/x").status == 502
        assert bw.request("GET", "/fine").status == 200
    got = failures()
    assert got["app"] == 0 and got["broken"] >= 3, got
    # A reload keeps the count; the next failure adds to it.
    cfg["upstreams"]["app"]["keepalive"] = 8
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(cfg) + "\n")
    assert admin(bw, "POST", "/reload").status == 200
    assert failures() == got
    assert bw.request("GET", "/broken/x").status == 502
    after = failures()
    assert after["broken"] > got["broken"] and after["app"] == 0, after
    # An upstream the configuration no longer has is no longer shown.
    del cfg["upstreams"]["broken"]
    cfg["routes"] = [{"upstream": "app"}]
    with open(bw.config_path, "w") as f:
        f.write(yamlish.dump(cfg) + "\n")
    assert admin(bw, "POST", "/reload").status == 200
    assert failures() == {"app": 0}


def test_metrics_connections_open(tmp_path, origin, bulwark):
    cfg = default_config([origin.address])
    cfg["admin"] = {"address": "127.0.0.1:0"}
    bw = bulwark(cfg)

    def open_now():
        text = admin(bw, "GET", "/metrics").body.decode()
        line = [ln for ln in text.splitlines() if ln.startswith("bulwark_connections_open ")][0]
        return int(float(line.split()[1]))

    assert open_now() == 0
    conns = [bw.connect() for _ in range(3)]
    for c in conns:  # a request on each, so each has surely been accepted
        c.send(client.request_bytes("GET", "/"))
        assert c.read_response().status == 200
    assert open_now() == 3
    for c in conns:
        c.close()
    deadline = time.monotonic() + 5
    while open_now() != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_now() == 0


def test_metrics_count_regex_scans_by_how_they_were_answered(tmp_path, origin, bulwark):
    """bulwark_rules_regex_scans_total: a User-Agent with none of the
    strings the patterns need is not scanned, a literal pattern is answered
    by the prefilter, and only a value with a non-literal pattern's string
    reaches the automaton."""
    (tmp_path / "ua.yaml").write_text(textwrap.dedent("""\
        id: ua
        rules:
          - id: scanners
            expression: 'http.user_agent matches "(?i)sqlmap|nikto"'
            action: block
          - id: curl
            expression: 'http.user_agent matches "^curl/[0-9]+\\."'
            action: block
            status: 429
    """))
    cfg = default_config([origin.address], workers=1)
    cfg["admin"] = {"address": "127.0.0.1:0"}
    cfg["modules"] = {"rules": {"rulesets": [str(tmp_path / "ua.yaml")]}}
    bw = bulwark(cfg)
    assert bw.request("GET", "/", headers=[("User-Agent", "Mozilla/5.0")]).status == 200
    assert bw.request("GET", "/", headers=[("User-Agent", "SQLMap/1.7")]).status == 403
    assert bw.request("GET", "/", headers=[("User-Agent", "curl/8.1")]).status == 429
    assert bw.request("GET", "/", headers=[("User-Agent", "xcurl/8.1")]).status == 200
    text = admin(bw, "GET", "/metrics").body.decode()
    assert "# TYPE bulwark_rules_regex_scans_total counter" in text
    assert 'bulwark_rules_regex_scans_total{result="skipped"} 1' in text
    assert 'bulwark_rules_regex_scans_total{result="literal"} 1' in text
    assert 'bulwark_rules_regex_scans_total{result="scanned"} 2' in text


def test_metrics_parse_strictly_with_awkward_file_names(tmp_path, origin, bulwark):
    """The whole /metrics page, with every family present (TLS, rules,
    health, failures) and file paths holding a quote and a backslash in
    their labels, passes a strict exposition-format parser."""
    from bwtest import promtext
    from bwtest.pki import Pki
    d = tmp_path / 'we"ird\\dir'
    d.mkdir()
    (d / "entry.yaml").write_text(textwrap.dedent(ENTRY))
    (d / 'man"aged.yaml').write_text(textwrap.dedent(MANAGED))
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    crt, key = Pki(pki_dir).leaf("a", ["a.example"])
    odd_crt = d / 'c"ert.pem'
    odd_crt.write_bytes(open(crt, "rb").read())
    cfg = default_config([origin.address, "127.0.0.1:9"])
    cfg["listen"].append({"address": "127.0.0.1:0",
                          "tls": {"certificates": [{"cert": str(odd_crt), "key": key}]}})
    cfg["admin"] = {"address": "127.0.0.1:0"}
    cfg["upstreams"]["app"]["health_check"] = {"interval": "100ms"}
    cfg["modules"] = {"rules": {"rulesets": [str(d / "entry.yaml"), str(d / 'man"aged.yaml')]}}
    bw = bulwark(cfg, expect_errors=["127.0.0.1:9", "reload rejected", "aged.yaml:3:1"])
    for path in ("/ok", "/admin", "/secret", "/x"):
        bw.request("GET", path)
    time.sleep(0.5)
    r = admin(bw, "GET", "/metrics")
    assert r.status == 200
    text = r.body.decode()
    try:
        fams = promtext.parse(text)
    except ValueError as e:
        raise AssertionError(f"{e}\n{text}")
    paths = {lb.get("path") for _, lb, _ in fams["bulwark_artifact_version"].samples}
    assert str(d / 'man"aged.yaml') in paths, paths
    certs = {lb.get("cert") for _, lb, _ in fams["bulwark_tls_certificate_expiry_seconds"].samples}
    assert str(odd_crt) in certs, certs
    for name in ("bulwark_upstream_server_up", "bulwark_rule_matches_total",
                 "bulwark_request_duration_seconds", "bulwark_tls_handshakes_total"):
        assert name in fams, name
    # After a rejected reload, an accepted one and a killswitch: still valid.
    good = (d / 'man"aged.yaml').read_text()
    (d / 'man"aged.yaml').write_text("id: managed\nrules: [\n")
    assert admin(bw, "POST", "/reload").status == 422
    (d / 'man"aged.yaml').write_text(good)
    assert admin(bw, "POST", "/reload").status == 200
    assert admin(bw, "POST", "/killswitch",
                 {"target": "rule:managed/deny-bots", "enabled": False}).status == 200
    bw.request("GET", "/admin")
    text = admin(bw, "GET", "/metrics").body.decode()
    try:
        promtext.parse(text)
    except ValueError as e:
        raise AssertionError(f"{e}\n{text}")
