"""Reload under load (issue 4, point 8): tests/tools/loadgen keeps ~2,000
requests/s through the proxy (two workers, a real nginx origin) on
kept-alive and fresh connections while the test reloads 100 times (two in
three by POST /reload, one in three by SIGHUP), alternating valid and
invalid rulesets and main configs: each invalid kind in turn (YAML syntax,
a type error in a rule expression, a failing embedded test, an unknown key
in the main config, a restart-only change, a main config that is not
YAML). Every response is checked by the load client:
zero failed requests, zero resets, zero unexpected statuses. At the end the
right version is active: /status shows the hashes of the last valid files,
the counts of accepted and rejected reloads, the last rejection's error, and
the rule added by the last valid ruleset acts while the ones before it and
the one of a rejected ruleset do not; /metrics counts the loads by file
and result. Under the ASan build (make check runs both) the bulwark
fixture's SIGTERM stop also fails the test on any LeakSanitizer report, so
the rejection path of each invalid kind is leak-checked too (the 1,000
accepted reloads of test_82_reload.py are the other half).

The rate is the load client's target, not an assertion: the test asserts
only that nothing failed. BULWARK_RELOAD_LOAD_RATE overrides it."""
import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

from bwtest import client, yamlish
from bwtest.proc import bulwark_bin

RATE = float(os.environ.get("BULWARK_RELOAD_LOAD_RATE", "2000"))
RELOADS = 100
RELOAD_SPAN = 30.0  # seconds over which the reloads are spread
FRESH_SHARE = 0.1  # of the rate, on a new connection per request


def loadgen_bin():
    b = os.environ.get("BULWARK_LOADGEN")
    if b:
        return b
    return os.path.join(os.path.dirname(bulwark_bin()), "tools", "loadgen")


def fnv1a64(data):
    """The artifact hash /status shows (src/proxy/proxy.c file_hash)."""
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def admin(bw, method, path):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes(method, path, host="admin"))
        return c.read_response(method=method, timeout=30)


def status(bw):
    r = admin(bw, "GET", "/status")
    assert r.status == 200, r
    return json.loads(r.body)


def metrics(bw):
    r = admin(bw, "GET", "/metrics")
    assert r.status == 200, r
    return r.body.decode()


def sample(text, name, **labels):
    """The value of one sample of /metrics whose labels include these."""
    for m in re.finditer(r"^bulwark_%s\{([^}]*)\} (\S+)$" % re.escape(name), text, re.M):
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


def start_loadgen(port, rate, conns, per_conn, duration, out_path):
    args = [loadgen_bin(), "--port", str(port), "--path", "/ok", "--conns", str(conns),
            "--rate", str(rate), "--duration", str(duration),
            "--requests", str(int(rate * duration) + 1), "--timeout", "5", "--expect", "200"]
    if per_conn:
        args += ["--per-conn", str(per_conn)]
    out = open(out_path, "w")
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    return p


def finish_loadgen(p, out_path):
    """SIGTERM (the load client stops sending, lets what is outstanding
    finish and reports), then its JSON report."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(5)
        raise AssertionError("loadgen did not stop within 30 s of SIGTERM")
    text = open(out_path).read()
    assert p.returncode == 0, text
    return json.loads(text.strip().splitlines()[-1])


def ruleset_text(n, test_ok=True):
    """The entry ruleset of step n: one rule added for /deny/n, an embedded
    test that it blocks (or, when not test_ok, one that fails)."""
    expect = "{ action: block, rule: deny-%d }" % n if test_ok else "{ action: none }"
    return textwrap.dedent(f"""\
        id: entry
        phase: request
        rules:
          - id: deny-{n}
            expression: 'http.request.uri.path eq "/deny/{n}"'
            action: block
          - id: never
            expression: 'http.request.uri.path eq "/never" and http.request.method eq "BREW"'
            action: block
        tests:
          - name: deny-{n} blocks
            request: {{ method: GET, path: /deny/{n} }}
            expect: {expect}
          - name: the load passes
            request: {{ method: GET, path: /ok }}
            expect: {{ action: none }}
        """)


# The invalid artifacts, in turn. Each: (name, which file, its text or a
# function of the good config, the text the rejection must name).
def bad_yaml_ruleset(n):
    return "id: entry\nrules:\n  - id: deny-%d\n    expression: [\n" % n


def type_error_ruleset(n):
    return ruleset_text(n).replace(
        f"'http.request.uri.path eq \"/deny/{n}\"'", "'ip.src contains \"/deny\"'")


INVALID = [
    ("ruleset YAML syntax", "rules", bad_yaml_ruleset, "entry.yaml:"),
    ("ruleset type error", "rules", type_error_ruleset, "needs Bytes on both sides"),
    ("ruleset failing test", "rules", lambda n: ruleset_text(n, test_ok=False),
     'expected none, got block by rule "deny-'),
    ("config unknown key", "config", lambda cfg: dict(cfg, bogus_key=1), 'unknown key "bogus_key"'),
    ("config restart-only change", "config", lambda cfg: dict(cfg, workers=1),
     "workers changed: a reload cannot apply that"),
    ("config YAML syntax", "config", None, "invalid YAML"),
]


def test_hundred_reloads_under_2000_rps(tmp_path, nginx_origin, bulwark):
    if not os.access(loadgen_bin(), os.X_OK):
        pytest.fail(f"load client not built at {loadgen_bin()} (make VARIANT=... build)")
    rules = tmp_path / "entry.yaml"
    rules.write_text(ruleset_text(0))
    cfg = {
        "listen": [{"address": "127.0.0.1:0"}],
        "workers": 2,
        "admin": {"address": "127.0.0.1:0"},
        "access_log": "off",
        "upstreams": {"app": {"servers": [{"address": nginx_origin.address}], "keepalive": 32}},
        "routes": [{"upstream": "app"}],
        "modules": {"rules": {"rulesets": [str(rules)]}},
    }
    bw = bulwark(cfg, expect_errors=["reload rejected", "entry.yaml", "bulwark.yaml"])
    assert bw.request("GET", "/deny/0").status == 403
    assert bw.request("GET", "/ok").status == 200

    def write_config(c):
        with open(bw.config_path, "w") as f:
            f.write(yamlish.dump(c) + "\n")

    write_config(cfg)
    good_config = open(bw.config_path, "rb").read()
    good_rules = rules.read_bytes()

    fresh_rate = RATE * FRESH_SHARE
    duration = RELOAD_SPAN * 2 + 30  # a cap only: the test stops it after the reloads
    keep_out, fresh_out = tmp_path / "load-keepalive.json", tmp_path / "load-fresh.json"
    keep = start_loadgen(bw.port, RATE - fresh_rate, 16, 0, duration, keep_out)
    fresh = start_loadgen(bw.port, fresh_rate, 4, 1, duration, fresh_out)
    procs = [keep, fresh]
    try:
        time.sleep(1.0)  # the load is steady before the first reload
        t0 = time.monotonic()
        accepted = rejected = 0
        last_valid = 0  # the step whose ruleset is live
        last_error = None
        rejected_rule = None  # a step whose rule came in a rejected ruleset
        by_kind = {}
        for i in range(1, RELOADS + 1):
            # Spread evenly; a slow reload (sanitizer build) only delays the next.
            delay = t0 + i * RELOAD_SPAN / RELOADS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            valid = i % 2 == 0
            if valid:
                # Both files good again; every other valid step also changes
                # the main config (a reloadable setting).
                rules.write_text(ruleset_text(i))
                if i % 4 == 0:
                    cfg["upstreams"]["app"]["keepalive"] = 16 + i
                    cfg["limits"] = {"keepalive_timeout": f"{60 + i}s"}
                write_config(cfg)
                good_config, good_rules = open(bw.config_path, "rb").read(), rules.read_bytes()
                expect_text = None
            else:
                name, which, make, expect_text = INVALID[(i // 2) % len(INVALID)]
                by_kind[name] = by_kind.get(name, 0) + 1
                if name == "ruleset failing test":
                    rejected_rule = i
                if which == "rules":
                    rules.write_text(make(i))
                elif make is None:
                    with open(bw.config_path, "w") as f:
                        f.write("listen: [{address: 127.0.0.1:0}\nworkers: 2\n")
                else:
                    write_config(make(cfg))
            if i % 3 == 0:  # by SIGHUP: wait for /status to count it
                before = status(bw)["config"]
                n0 = before["reloads_accepted"] + before["reloads_rejected"]
                bw.signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while True:
                    st = status(bw)["config"]
                    if st["reloads_accepted"] + st["reloads_rejected"] > n0:
                        break
                    assert time.monotonic() < deadline, "SIGHUP did not reload within 30 s"
                    time.sleep(0.01)
                assert st["reloads_accepted"] == before["reloads_accepted"] + (1 if valid else 0), \
                    (i, bw.stderr()[-2000:])
                if not valid:
                    assert expect_text in status(bw)["last_rejection"]["error"], i
            else:  # by POST /reload: the answer says what happened
                r = admin(bw, "POST", "/reload")
                body = json.loads(r.body)
                if valid:
                    assert r.status == 200 and body["accepted"] is True, (i, r.body)
                else:
                    assert r.status == 422 and body["accepted"] is False, (i, r.body)
                    assert expect_text in body["report"], (i, expect_text, body["report"])
            if valid:
                accepted += 1
                last_valid = i
            else:
                rejected += 1
                last_error = expect_text
            # Every process still running: a reload never takes the load
            # client's traffic down with it.
            assert bw.proc.poll() is None
        reload_seconds = time.monotonic() - t0
        assert all(p.poll() is None for p in procs), "the load ended before the reloads did"
        time.sleep(0.5)
    finally:
        results = [finish_loadgen(p, out) for p, out in ((keep, keep_out), (fresh, fresh_out))]

    total = {k: sum(r[k] for r in results) for k in
             ("sent", "completed", "failed", "unexpected_status", "resets", "connect_errors",
              "premature_closes", "timeouts", "protocol_errors", "connects")}
    elapsed = max(r["elapsed_s"] for r in results)
    p99 = max(r["latency_us"]["p99"] for r in results)
    mx = max(r["latency_us"]["max"] for r in results)
    summary = (f"reload under load: {total['completed']} requests in {elapsed:.1f} s "
               f"({total['completed'] / elapsed:.0f}/s, target {RATE:.0f}/s), "
               f"{total['connects']} connections, {RELOADS} reloads in {reload_seconds:.1f} s "
               f"({accepted} accepted, {rejected} rejected: {by_kind}), "
               f"failed {total['failed']}, resets {total['resets']}, "
               f"unexpected status {total['unexpected_status']}, p99 {p99} us, max {mx} us")
    print(summary)
    with open(tmp_path / "summary.txt", "w") as f:
        f.write(summary + "\n" + json.dumps(results) + "\n")

    # Every response checked: nothing failed, nothing was reset.
    assert total["failed"] == 0 and total["resets"] == 0, (summary, results)
    assert total["unexpected_status"] == 0, (summary, results)
    assert total["completed"] == total["sent"] > 0, (summary, results)

    # The right version is active.
    st = status(bw)
    assert st["config"]["generation"] == 1 + accepted
    assert st["config"]["reloads_accepted"] == accepted == RELOADS // 2
    assert st["config"]["reloads_rejected"] == rejected == RELOADS // 2
    assert last_error in st["last_rejection"]["error"]
    arts = {a["kind"]: a for a in st["artifacts"]}
    assert arts["config"]["hash"] == fnv1a64(good_config)
    assert arts["config"]["version"] == 1 + accepted
    assert arts["ruleset"]["hash"] == fnv1a64(good_rules)
    assert arts["ruleset"]["id"] == "entry"
    assert bw.request("GET", f"/deny/{last_valid}").status == 403
    # Not blocked: they reach the origin (which has no such page).
    assert bw.request("GET", f"/deny/{last_valid - 2}").status == 404
    assert bw.request("GET", f"/deny/{rejected_rule}").status == 404  # from a rejected ruleset
    assert bw.request("GET", "/ok").status == 200

    # /metrics counts the loads by artifact and result, and shows the
    # running version of each artifact with its hash.
    text = metrics(bw)
    ruleset_kinds = sum(n for k, n in by_kind.items() if k.startswith("ruleset"))
    config_kinds = rejected - ruleset_kinds
    cp, rp = bw.config_path, str(rules)
    assert sample(text, "artifact_file_loads_total", artifact="config", path=cp,
                  result="accepted") == 1 + accepted
    assert sample(text, "artifact_file_loads_total", artifact="config", path=cp,
                  result="rejected") == config_kinds
    assert sample(text, "artifact_file_loads_total", artifact="ruleset", path=rp,
                  result="accepted") == 1 + accepted
    assert sample(text, "artifact_file_loads_total", artifact="ruleset", path=rp,
                  result="rejected") == ruleset_kinds
    assert sample(text, "artifact_version", artifact="config", path=cp,
                  hash=fnv1a64(good_config)) == 1 + accepted
    assert sample(text, "artifact_version", artifact="ruleset", path=rp,
                  hash=fnv1a64(good_rules)) == 1 + accepted


def test_metrics_count_loads_by_artifact_and_show_versions(tmp_path, nginx_origin, bulwark):
    """bulwark_artifact_file_loads_total{artifact,path,result} blames the
    file a rejection names (not the valid ones loaded with it), and
    bulwark_artifact_version{artifact,path,hash} follows what runs: the
    feature file's own version, the generation for the others."""
    rules, feats = tmp_path / "entry.yaml", tmp_path / "features.json"
    rules.write_text(ruleset_text(1))

    def features(version, weight=1.0):
        feats.write_text(json.dumps({"version": version, "bias": -1.0, "features": [
            {"name": "ua_curl", "expression": 'lower(http.user_agent) contains "curl/"',
             "weight": weight}]}))
        return feats.read_bytes()

    good_feats = features(5)
    cfg = {
        "listen": [{"address": "127.0.0.1:0"}],
        "admin": {"address": "127.0.0.1:0"},
        "upstreams": {"app": {"servers": [{"address": nginx_origin.address}]}},
        "routes": [{"upstream": "app"}],
        "modules": {"rules": {"rulesets": [str(rules)]},
                    "bot_score": {"features": str(feats), "on_error": "open"}},
    }
    bw = bulwark(cfg, expect_errors=["reload rejected", "entry.yaml", "features.json"])
    cp, rp, fp = bw.config_path, str(rules), str(feats)

    def loads(kind, path, result):
        return sample(metrics(bw), "artifact_file_loads_total", artifact=kind, path=path,
                      result=result)

    assert [loads(k, p, "accepted") for k, p in
            (("config", cp), ("ruleset", rp), ("feature_file", fp))] == [1, 1, 1]
    assert sample(metrics(bw), "artifact_version", artifact="feature_file", path=fp,
                  hash=fnv1a64(good_feats)) == 5
    # A feature file going backwards: only it is blamed.
    features(4)
    r = admin(bw, "POST", "/reload")
    assert r.status == 422, r.body
    assert loads("feature_file", fp, "rejected") == 1
    assert loads("ruleset", rp, "rejected") == 0 and loads("config", cp, "rejected") == 0
    # A broken ruleset: only it.
    features(6)
    rules.write_text(type_error_ruleset(2))
    assert admin(bw, "POST", "/reload").status == 422
    assert loads("ruleset", rp, "rejected") == 1 and loads("feature_file", fp, "rejected") == 1
    # Everything good again: each file accepted once more, the new versions shown.
    rules.write_text(ruleset_text(3))
    assert admin(bw, "POST", "/reload").status == 200
    text = metrics(bw)
    assert [sample(text, "artifact_file_loads_total", artifact=k, path=p, result="accepted")
            for k, p in (("config", cp), ("ruleset", rp), ("feature_file", fp))] == [2, 2, 2]
    assert sample(text, "artifact_version", artifact="feature_file", path=fp,
                  hash=fnv1a64(feats.read_bytes())) == 6
    assert sample(text, "artifact_version", artifact="ruleset", path=rp,
                  hash=fnv1a64(rules.read_bytes())) == 2
    assert sample(text, "artifact_version", artifact="config", path=cp) == 2
    # The config-wide counter is unchanged in meaning: whole loads.
    assert 'bulwark_artifact_loads_total{result="rejected"} 2' in text
