"""DESIGN.md §1, outage 1 replayed: an oversized, duplicated feature file
arrives while serving (rejected; the previous model keeps scoring, zero
5xx, /status and /metrics say so), and a fresh start with only that bad file
(fail-open: every request served, bot.score unknown, a `bot.score lt 10`
rule never fires; fail-closed: the declared status). Outage 2 (killswitch on
an execute rule) is replayed in test_86_admin.py; outage 3 (a backtracking
regex) in the rules unit tests (the 2019 pattern runs in linear time)."""
import json
import textwrap
import threading
import time

from bwtest import client, report
from bwtest.proc import default_config


def feature_file(path, n=60, version=1000, duplicate=False, extra=0):
    feats = [{"name": "ua_missing", "expression": "not has(http.user_agent)", "weight": 6.0},
             {"name": "ua_curl", "expression": 'lower(http.user_agent) contains "curl/"',
              "weight": 5.0}]
    for i in range(len(feats), n):
        feats.append({"name": f"path_{i}",
                      "expression": f'http.request.uri.path eq "/probe/{i}"', "weight": 0.5})
    if duplicate:  # a permission change made the query return every row twice
        feats = feats + [dict(f) for f in feats]
        for i in range(extra):
            feats.append({"name": f"more_{i}", "expression": "true", "weight": 0.0})
    path.write_text(json.dumps({"version": version, "bias": -3.0, "features": feats}))


RULES = """\
    id: entry
    rules:
      - id: bots
        expression: 'bot.score lt 10'
        action: block
"""

CORPUS = [
    ("/", [("User-Agent", "Mozilla/5.0")]),
    ("/", [("User-Agent", "curl/8.4.0")]),
    ("/probe/7", [("User-Agent", "Mozilla/5.0")]),
    ("/", []),  # no User-Agent: the strongest bot signal
]


def setup_files(tmp_path, on_error="open", state=False):
    (tmp_path / "entry.yaml").write_text(textwrap.dedent(RULES))
    feature_file(tmp_path / "features.json")
    cfg = default_config([], workers=2)
    cfg["admin"] = {"address": "127.0.0.1:0"}
    cfg["modules"] = {"bot_score": {"features": str(tmp_path / "features.json"),
                                    "on_error": on_error},
                      "rules": {"rulesets": [str(tmp_path / "entry.yaml")]}}
    if state:
        (tmp_path / "state").mkdir(exist_ok=True)
        cfg["state_dir"] = str(tmp_path / "state")
    return cfg


def admin(bw, method, path):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes(method, path, host="admin"))
        return c.read_response(method=method)


_marks = [0]


def replay(bw):
    """Status and score of each corpus request (score from the access log,
    found by a query-string mark: features read the path, not the query)."""
    out = []
    for path, headers in CORPUS:
        _marks[0] += 1
        target = f"{path}?mark={_marks[0]}"
        r = bw.request("GET", target, headers=headers)
        deadline = time.monotonic() + 5
        line = None
        while line is None and time.monotonic() < deadline:
            line = next((l for l in bw.access_log_lines() if l["path"] == target), None)
            if line is None:
                time.sleep(0.02)
        assert line is not None, target
        out.append((r.status, line.get("bot_score")))
    return out


def test_oversized_feature_file_is_rejected_and_the_model_keeps_scoring(tmp_path, origin, bulwark):
    cfg = setup_files(tmp_path)
    cfg["upstreams"]["app"]["servers"] = [{"address": origin.address}]
    bw = bulwark(cfg, expect_errors=["reload rejected", "features.json"])
    before = replay(bw)
    assert [s for s, _ in before] == [200, 200, 200, 403]
    assert all(score is not None for _, score in before)
    assert before[3][1] < 10 and before[0][1] > before[1][1]

    stop = threading.Event()
    bad, seen = [], [0]

    def load():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            for path, headers in CORPUS:
                r = bw.request("GET", path, headers=headers)
                seen[0] += 1
                if r.status >= 500:
                    bad.append(r.status)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    # The doubled file (120 features, duplicate names), then doubled and more
    # (250), each under load for a while before and after.
    time.sleep(0.7)
    for extra in (0, 130):
        feature_file(tmp_path / "features.json", version=1001, duplicate=True, extra=extra)
        r = admin(bw, "POST", "/reload")
        assert r.status == 422, r
        assert "features.json" in r.json()["report"]
        time.sleep(0.7)
    stop.set()
    for t in threads:
        t.join(30)
    assert bad == [] and seen[0] > 0
    st = admin(bw, "GET", "/status").json()
    assert "features.json" in st["last_rejection"]["error"]
    assert st["modules"]["bot_score"]["state"] == "ok"
    fs = [a for a in st["artifacts"] if a["kind"] == "feature_file"]
    assert fs and fs[0]["version"] == 1000 and fs[0]["features"] == 60
    metrics = admin(bw, "GET", "/metrics").body.decode()
    assert 'bulwark_artifact_loads_total{result="rejected"} 2' in metrics
    assert "bulwark_bot_model_version 1000" in metrics
    assert replay(bw) == before  # same scores as before, request for request
    report.outage("oversized feature file", seen[0], len(bad),
                  {"last_rejection": st["last_rejection"], "bot_score": st["modules"]["bot_score"],
                   "feature_file": fs[0]})


def test_fresh_start_with_only_the_bad_file_fails_open(tmp_path, origin, bulwark):
    cfg = setup_files(tmp_path, on_error="open")
    cfg["upstreams"]["app"]["servers"] = [{"address": origin.address}]
    feature_file(tmp_path / "features.json", duplicate=True, extra=130)
    bw = bulwark(cfg, expect_errors=["no valid model", "features.json"])
    results = replay(bw)
    # Served, all of them; bot.score unknown, so `bot.score lt 10` never fires.
    assert [s for s, _ in results] == [200, 200, 200, 200]
    assert all(score is None for _, score in results)
    st = admin(bw, "GET", "/status").json()
    assert st["modules"]["bot_score"]["state"] == "failed"
    metrics = admin(bw, "GET", "/metrics").body.decode()
    assert 'bulwark_module_failures_total{module="bot_score",policy="open"} 4' in metrics


def test_fresh_start_with_only_the_bad_file_fails_closed(tmp_path, origin, bulwark):
    cfg = setup_files(tmp_path, on_error="closed")
    cfg["upstreams"]["app"]["servers"] = [{"address": origin.address}]
    cfg["modules"]["bot_score"]["error_status"] = 503
    feature_file(tmp_path / "features.json", duplicate=True, extra=130)
    bw = bulwark(cfg, expect_errors=["no valid model", "features.json"])
    for path, headers in CORPUS:
        r = bw.request("GET", path, headers=headers)
        assert r.status == 503 and b"bot_score" in r.body
    assert origin.heads == []


def test_last_known_good_model_at_start_and_killswitch(tmp_path, origin, bulwark):
    cfg = setup_files(tmp_path, state=True)
    cfg["upstreams"]["app"]["servers"] = [{"address": origin.address}]
    bw = bulwark(cfg, name="first")
    before = replay(bw)
    bw.stop()
    feature_file(tmp_path / "features.json", duplicate=True, extra=130)
    bw2 = bulwark(cfg, name="second", expect_errors=["did not load", "features.json"])
    assert "last-known-good" in bw2.stderr()
    assert replay(bw2) == before
    assert admin(bw2, "GET", "/status").json()["modules"]["bot_score"]["state"] == "last_known_good"
    # Killing the module is not a failure: the score is unknown, requests go on.
    with client.connect(bw2.admin_port) as c:
        body = json.dumps({"target": "module:bot_score", "enabled": False}).encode()
        c.send(client.request_bytes("POST", "/killswitch", body=body, host="admin",
                                    headers=[("Content-Type", "application/json")]))
        assert c.read_response().status == 200
    assert bw2.request("GET", "/").status == 200  # no User-Agent, yet not blocked
    metrics = admin(bw2, "GET", "/metrics").body.decode()
    assert 'bulwark_module_killed_total{module="bot_score"} 1' in metrics
    assert 'bulwark_module_failures_total{module="bot_score",policy="open"} 0' in metrics


def model_version(bw):
    arts = admin(bw, "GET", "/status").json()["artifacts"]
    return [a for a in arts if a["kind"] == "feature_file"][0]["version"]


def test_feature_version_does_not_go_back_across_a_restart(tmp_path, origin, bulwark):
    """A reload refuses an older feature file; a restart must too. The
    last-known-good copy is the newest model this server accepted: a
    version below it is refused at start and the copy serves instead."""
    cfg = setup_files(tmp_path, state=True)
    cfg["upstreams"]["app"]["servers"] = [{"address": origin.address}]
    bw = bulwark(cfg, name="first")
    assert model_version(bw) == 1000
    bw.stop()
    feature_file(tmp_path / "features.json", n=3, version=999)
    bw2 = bulwark(cfg, name="second", expect_errors=["did not load", "features.json"])
    err = bw2.stderr()
    assert ("version 999 is lower than the last-known-good copy's version 1000: "
            "a feature file's version must not go backwards") in err, err
    status = admin(bw2, "GET", "/status").json()["modules"]["bot_score"]
    assert status["state"] == "last_known_good" and model_version(bw2) == 1000
    bw2.stop()
    # The same version, or a newer one, is taken as it is.
    feature_file(tmp_path / "features.json", n=3, version=1000)
    bw3 = bulwark(cfg, name="third")
    status = admin(bw3, "GET", "/status").json()["modules"]["bot_score"]
    assert status["state"] == "ok" and model_version(bw3) == 1000


WAF_2019 = (r"""(?:(?:\"|'|\]|\}|\\|\d|(?:nan|infinity|true|false|null|undefined|symbol|math)"""
            r"""|\`|\-|\+)+[)]*;?((?:\s|-|~|!|{}|\|\||\+)*.*(?:.*=.*)))""")


def test_backtracking_regex_deployed_under_load(tmp_path, origin, bulwark):
    """Outage 3: the 2019 WAF regex is deployed (by reload) while clients
    send long crafted query strings. Linear-time matching: every request is
    answered, none times out."""
    cfg = default_config([origin.address], workers=2)
    cfg["limits"] = {"request_line_bytes": "64KiB", "header_bytes": "80KiB"}
    cfg["admin"] = {"address": "127.0.0.1:0"}
    rules = tmp_path / "waf.yaml"
    rules.write_text("id: waf\nrules:\n  - id: noop\n    expression: 'false'\n    action: block\n")
    cfg["modules"] = {"rules": {"rulesets": [str(rules)]}}
    bw = bulwark(cfg)
    crafted = [
        "1" + "x" * 40000,                       # the pattern's worst case for a backtracker
        "-" * 30000 + "=",                       # long run, then the '=' it looks for
        "true" * 8000,
        "a=1&" + "+-~!" * 8000,
    ]
    stop = threading.Event()
    answers, bad = [0], []

    def load(i):
        deadline = time.monotonic() + 20
        k = i
        while not stop.is_set() and time.monotonic() < deadline:
            q = crafted[k % len(crafted)]
            k += 1
            try:
                r = bw.request("GET", "/search?" + q, timeout=5.0)
            except Exception as e:  # noqa: BLE001  a timeout or reset is the failure looked for
                bad.append(repr(e))
                continue
            answers[0] += 1
            if r.status not in (200, 403):
                bad.append(r.status)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    rules.write_text("id: waf\nrules:\n  - id: outage-2019\n"
                     "    expression: |\n      http.request.uri.query matches \"" +
                     WAF_2019 + "\"\n"
                     "    action: block\n")
    r = admin(bw, "POST", "/reload")
    assert r.status == 200, r.body  # accepted: vectorscan runs it in linear time
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(30)
    assert bad == [] and answers[0] > 0
    st = admin(bw, "GET", "/status").json()
    report.outage("backtracking regex", answers[0], 0,
                  {"rulesets": [a for a in st["artifacts"] if a["kind"] == "ruleset"],
                   "last_rejection": st["last_rejection"]})
    # It acts: a query with '=' after a digit matches; one without does not.
    assert bw.request("GET", "/s?" + "1" + "x" * 40000 + "=").status == 403
    assert bw.request("GET", "/s?" + "x" * 40000).status == 200
