"""The rules module through the running proxy: every action, the
normalised path, execute/skip/disabled states, rate limits shared by the
workers, the module's failure policy, routes as expressions, and the
`check` / `eval` commands."""
import json
import os
import shutil
import subprocess
import textwrap

import pytest

from bwtest import client
from bwtest.proc import bulwark_bin, default_config

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.normpath(os.path.join(HERE, "..", "..", "examples"))


def ruleset(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def rules_config(tmp_path, origin, files, on_error="open", **over):
    cfg = default_config([origin.address], **over)
    cfg["modules"] = {"rules": {"rulesets": files, "on_error": on_error}}
    return cfg


ENTRY = """\
    id: entry
    rules:
      - id: block-admin
        expression: 'starts_with(http.request.uri.path, "/admin")'
        action: block
      - id: teapot
        expression: 'http.request.uri.query contains "tea=1"'
        action: block
        status: 418
        body: "short and stout\\n"
      - id: moved
        expression: 'http.request.uri.path eq "/old"'
        action: redirect
        status: 301
        location: /new
        preserve_query: true
      - id: note-curl
        expression: 'starts_with(http.user_agent, "curl/")'
        action: log
      - id: rewrite-v1
        expression: 'starts_with(http.request.uri.path, "/v1/")'
        action: rewrite
        headers:
          set: { x-api-version: "1" }
          remove: [x-debug]
        path: /api
"""


def origin_view(r):
    assert r.status == 200, r
    return r.json()


def header_of(view, name):
    vals = [v for n, v in view["headers"] if n.lower() == name]
    return vals


def test_block_status_body_and_log(tmp_path, origin, bulwark):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "entry.yaml", ENTRY)]))
    r = bw.request("GET", "/admin/users")
    assert r.status == 403
    # A refusal keeps the connection when nothing of the request is unread.
    with bw.connect() as c:
        c.send(client.request_bytes("GET", "/admin") + client.request_bytes("GET", "/fine"))
        first = c.read_response()
        assert first.status == 403 and first.header("connection") is None
        assert c.read_response().status == 200
    # One with a body it did not read is answered and closed.
    with bw.connect() as c:
        c.send(client.request_bytes("POST", "/admin", body=b"x" * 100000)[:2000])
        r = c.read_response()
        assert r.status == 403 and r.header("connection") == "close"
    r = bw.request("GET", "/?tea=1")
    assert r.status == 418 and r.body == b"short and stout\n"
    assert r.header("content-length") == str(len(b"short and stout\n"))
    # A HEAD gets the head only.
    with bw.connect() as c:
        c.send(client.request_bytes("HEAD", "/admin"))
        h = c.read_response(method="HEAD")
        assert h.status == 403 and h.body == b""
    assert all(not q.target.startswith("/admin") for q in origin.heads)
    # Six requests were answered: wait for all six lines (the log is written
    # after the response, so the 418 may not be there yet at three).
    lines = bw.access_log_lines(wait_for=6)
    blocked = [l for l in lines if l["status"] == 403]
    assert blocked and blocked[0]["rule"] == "entry/block-admin" and blocked[0]["action"] == "block"
    assert [l for l in lines if l["status"] == 418][0]["rule"] == "entry/teapot"


def pipelined_refusals(sock, n):
    """Sends n pipelined requests a rule refuses, from a thread, and counts
    the 403 heads read back; the connection must stay up for all n."""
    import threading
    req = client.request_bytes("GET", "/admin")
    sender = threading.Thread(target=lambda: sock.sendall(req * n), daemon=True)
    sender.start()
    sock.settimeout(20)
    got, tail = 0, b""
    head = b"HTTP/1.1 403 "
    while got < n:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data = tail + chunk
        got += data.count(head)
        tail = data[-(len(head) - 1):]
    sender.join(20)
    return got


@pytest.mark.parametrize("engine", ["epoll", "io_uring"])
def test_pipelined_refusals_on_one_connection_are_all_answered(tmp_path, origin, bulwark, engine):
    # Each refusal a rule answers itself (no upstream, no waiting) must go
    # back to the event loop before the next pipelined request: answering
    # them by recursion overflowed the stack after ~1,400 (a crash of every
    # worker from one connection of 45 KB).
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "entry.yaml", ENTRY)],
                              io_engine=engine))
    n = 20000
    with bw.connect() as c:
        assert pipelined_refusals(c.sock, n) == n
    assert bw.request("GET", "/fine").status == 200
    assert not origin.requests_for("/admin")


@pytest.mark.parametrize("path", ["/admin", "/%61dmin", "/x/../admin", "//admin", "/./admin/",
                                  "/%2e%2e/admin", "/x/%2e%2e/admin", "/ADMIN/../admin"])
def test_normalised_path_cannot_slip_past_a_rule(tmp_path, origin, bulwark, path):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "entry.yaml", ENTRY)]))
    assert bw.request("GET", path).status == 403


HOSTS = """\
    id: hosts
    rules:
      - id: block-evil
        expression: 'http.host eq "evil.example"'
        action: block
"""


@pytest.mark.parametrize("host", ["evil.example", "EVIL.example", "evil.example:80",
                                  "evil.example.", "Evil.Example.:8080"])
def test_every_spelling_of_a_host_meets_its_rule(tmp_path, origin, bulwark, host):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "hosts.yaml", HOSTS)]))
    assert bw.request("GET", "/", host=host).status == 403
    assert bw.request("GET", "/", host="good.example.").status == 200
    assert all(q.header("host") == "good.example." for q in origin.heads)


def test_redirect_keeps_the_query(tmp_path, origin, bulwark):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "entry.yaml", ENTRY)]))
    r = bw.request("GET", "/old?a=1&b=2")
    assert r.status == 301
    assert r.header("location") == "/new?a=1&b=2"
    r = bw.request("GET", "/old")
    assert r.header("location") == "/new"
    # A query too long for a Location line: refused (414), never passed on
    # to the upstream as if the redirect rule had not matched.
    r = bw.request("GET", "/old?" + "a" * 5000)
    assert r.status == 414, r
    assert not origin.requests_for("/old")


def test_redirect_puts_the_query_before_the_fragment(tmp_path, origin, bulwark):
    # After the '#', the query would be part of the fragment, which the
    # browser keeps to itself: the redirect would lose it.
    rs = ruleset(tmp_path, "entry.yaml", """\
        id: entry
        rules:
          - id: frag
            expression: 'http.request.uri.path eq "/docs"'
            action: redirect
            location: https://docs.example/guide#install
            preserve_query: true
    """)
    bw = bulwark(rules_config(tmp_path, origin, [rs]))
    r = bw.request("GET", "/docs?lang=en")
    assert r.status == 302, r
    assert r.header("location") == "https://docs.example/guide?lang=en#install"
    assert bw.request("GET", "/docs").header("location") == "https://docs.example/guide#install"


def test_log_action_lets_the_request_through(tmp_path, origin, bulwark):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "entry.yaml", ENTRY)]))
    r = bw.request("GET", "/page", headers=[("User-Agent", "curl/8.0")])
    assert r.status == 200
    line = bw.access_log_lines(wait_for=1)[-1]
    assert line["rule"] == "entry/note-curl" and line["action"] == "log"
    # No rule fired: no rule in the log line.
    bw.request("GET", "/page", headers=[("User-Agent", "Mozilla/5.0")])
    assert "rule" not in bw.access_log_lines(wait_for=2)[-1]


def test_rewrite_headers_and_path(tmp_path, origin, bulwark):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "entry.yaml", ENTRY)]))
    r = bw.request("GET", "/v1/users?id=7",
                   headers=[("X-Debug", "1"), ("X-Api-Version", "9"), ("X-Keep", "k")])
    v = origin_view(r)
    assert v["target"] == "/api?id=7"
    assert header_of(v, "x-api-version") == ["1"]
    assert header_of(v, "x-debug") == []
    assert header_of(v, "x-keep") == ["k"]
    # Other paths are untouched.
    v = origin_view(bw.request("GET", "/v2/users", headers=[("X-Debug", "1")]))
    assert v["target"] == "/v2/users" and header_of(v, "x-debug") == ["1"]


RESPONSE = """\
    id: out
    phase: response
    rules:
      - id: hsts
        expression: 'true'
        action: set_header
        name: strict-transport-security
        value: max-age=600
      - id: hide
        expression: 'has(http.response.headers["x-powered-by"])'
        action: remove_header
        name: x-powered-by
      - id: mask-errors
        expression: 'http.response.code ge 500 and starts_with(http.request.uri.path, "/api/")'
        action: block
        status: 502
        body: "upstream error\\n"
"""


def test_response_phase_headers_and_block(tmp_path, origins, bulwark):
    from bwtest import origin as origin_mod
    o, = origins(1)
    o.on("/page", origin_mod.fixed(200, headers=[("X-Powered-By", "php")], body=b"ok"))
    o.on("/api/x", origin_mod.fixed(500, body=b"stack trace here"))
    o.on("/other", origin_mod.fixed(500, body=b"plain error"))
    bw = bulwark(rules_config(tmp_path, o, [ruleset(tmp_path, "out.yaml", RESPONSE)]))
    r = bw.request("GET", "/page")
    assert r.status == 200 and r.body == b"ok"
    assert r.header("strict-transport-security") == "max-age=600"
    assert not r.has_header("x-powered-by")
    r = bw.request("GET", "/api/x")
    assert r.status == 502 and r.body == b"upstream error\n"
    r = bw.request("GET", "/other")
    assert r.status == 500 and r.body == b"plain error"


def test_response_head_too_large_with_rule_fields_is_502_and_not_retried(tmp_path, origins,
                                                                          bulwark):
    # Five 8000-byte fields are more than any head buffer holds
    # (limits.header_bytes + 4 KiB). The answer is a 502, and the request is
    # not retried on the other server: building the client head overwrote
    # the request head, and a retry sent the other server the start of this
    # response as its request (it then waited for the rest until
    # read_timeout).
    from bwtest import origin as origin_mod
    o1, o2 = origins(2)
    for o in (o1, o2):
        o.on("/big", origin_mod.fixed(200, body=b"ok"))
    rules = "".join(f"  - id: big{i}\n"
                    f"    expression: 'http.request.uri.path eq \"/big\"'\n"
                    f"    action: set_header\n"
                    f"    name: x-big{i}\n"
                    f"    value: {'v' * 8000}\n" for i in range(5))
    rs = ruleset(tmp_path, "out.yaml", "id: out\nphase: response\nrules:\n" + rules)
    cfg = rules_config(tmp_path, o1, [rs])
    cfg["upstreams"]["app"] = {"servers": [{"address": o1.address}, {"address": o2.address}],
                               "read_timeout": "2s"}
    bw = bulwark(cfg)
    r = bw.request("GET", "/big")
    assert r.status == 502, r
    assert len(o1.heads_for("/big")) + len(o2.heads_for("/big")) == 1
    assert o1.connections + o2.connections == 1
    line = bw.access_log_lines(wait_for=1)[-1]
    assert line["error"] == "response head too large with the response rules' fields", line
    # A response that fits is relayed with the rules' fields.
    o1.on("/small", origin_mod.fixed(200, body=b"ok"))
    o2.on("/small", origin_mod.fixed(200, body=b"ok"))
    assert bw.request("GET", "/small").status == 200


def test_request_head_too_large_with_rule_fields_is_431_and_never_sent(tmp_path, origin,
                                                                        bulwark):
    sets = ", ".join(f"x-big{i}: {'v' * 8000}" for i in range(5))
    rs = ruleset(tmp_path, "entry.yaml", "id: entry\nrules:\n"
                 "  - id: big\n"
                 "    expression: 'http.request.uri.path eq \"/big\"'\n"
                 "    action: rewrite\n"
                 f"    headers: {{set: {{{sets}}}}}\n")
    bw = bulwark(rules_config(tmp_path, origin, [rs]))
    assert bw.request("GET", "/big").status == 431
    assert not origin.heads
    assert origin_view(bw.request("GET", "/small"))["target"] == "/small"


def test_response_phase_sees_request_fields_after_a_body(tmp_path, origin, bulwark):
    # The request head's buffer is reused for the body; the response phase
    # still reads the request's path (a copy is kept for it).
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "out.yaml", """\
        id: out
        phase: response
        rules:
          - id: tag
            expression: 'http.request.uri.path eq "/upload" and http.request.method eq "POST"'
            action: set_header
            name: x-seen
            value: upload
        """)]))
    r = bw.request("POST", "/upload", body=b"x" * 200000)
    assert r.status == 200 and r.header("x-seen") == "upload"


EXEC = """\
    id: entry
    rules:
      - id: skip-health
        expression: 'http.request.uri.path eq "/healthz"'
        action: skip
      - id: run-managed
        expression: 'true'
        action: execute
        ruleset: managed
      - id: after
        expression: 'http.request.uri.path eq "/after"'
        action: block
        status: 451
"""

MANAGED = """\
    id: managed
    rules:
      - id: deny-bots
        expression: 'lower(http.user_agent) contains "badbot"'
        action: block
      - id: stop-here
        expression: 'starts_with(http.request.uri.path, "/after")'
        action: skip
      - id: never
        expression: 'starts_with(http.request.uri.path, "/after")'
        action: block
        status: 410
"""


def test_execute_and_skip(tmp_path, origin, bulwark):
    files = [ruleset(tmp_path, "entry.yaml", EXEC), ruleset(tmp_path, "managed.yaml", MANAGED)]
    bw = bulwark(rules_config(tmp_path, origin, files))
    assert bw.request("GET", "/x", headers=[("User-Agent", "BadBot/2")]).status == 403
    # skip with no parameters ends only the ruleset it is in: entry's later
    # rule still runs after managed was cut short.
    assert bw.request("GET", "/after").status == 451
    # skip in entry: nothing after it runs, managed included.
    assert bw.request("GET", "/healthz", headers=[("User-Agent", "BadBot/2")]).status == 200


def disabled(text, rule_id=None):
    """The ruleset text with one rule, or (rule_id None) the ruleset, disabled."""
    lines = textwrap.dedent(text).splitlines()
    if rule_id is None:
        return "enabled: false\n" + "\n".join(lines) + "\n"
    out = []
    for ln in lines:
        out.append(ln)
        if ln.strip() == f"- id: {rule_id}":
            out.append(ln[:ln.index("-")] + "  enabled: false")
    return "\n".join(out) + "\n"


def test_disabled_rule_and_disabled_executed_ruleset_are_normal_states(tmp_path, origin, bulwark):
    files = [ruleset(tmp_path, "entry.yaml", EXEC),
             ruleset(tmp_path, "managed.yaml", disabled(MANAGED))]
    bw = bulwark(rules_config(tmp_path, origin, files))
    # managed is disabled: its execute runs nothing, the rest goes on.
    assert bw.request("GET", "/x", headers=[("User-Agent", "BadBot/2")]).status == 200
    assert bw.request("GET", "/after").status == 451
    bw2 = bulwark(rules_config(tmp_path, origin,
                               [ruleset(tmp_path, "entry2.yaml", disabled(EXEC, "run-managed")),
                                files[1]]), name="second")
    assert bw2.request("GET", "/x", headers=[("User-Agent", "BadBot/2")]).status == 200


RATE = """\
    id: limits
    rules:
      - id: per-client
        expression: 'starts_with(http.request.uri.path, "/api/")'
        action: rate_limit
        characteristics: [ip.src, 'http.request.headers["x-key"]']
        requests: 5
        period: 60s
"""


def test_rate_limit_429_with_retry_after(tmp_path, origin, bulwark):
    bw = bulwark(rules_config(tmp_path, origin, [ruleset(tmp_path, "rate.yaml", RATE)]))
    statuses = [bw.request("GET", "/api/x", headers=[("X-Key", "a")]).status for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    r = bw.request("GET", "/api/x", headers=[("X-Key", "a")])
    assert r.status == 429 and int(r.header("retry-after")) >= 1
    # Another key is counted on its own; paths the rule does not match are free.
    assert bw.request("GET", "/api/x", headers=[("X-Key", "b")]).status == 200
    assert bw.request("GET", "/other", headers=[("X-Key", "a")]).status == 200
    # Refused requests on one kept-alive connection: answered, not closed.
    with bw.connect() as c:
        got = []
        for _ in range(7):
            c.send(client.request_bytes("GET", "/api/y", headers=[("X-Key", "c")]))
            got.append(c.read_response().status)
        assert got == [200] * 5 + [429] * 2
    line = [l for l in bw.access_log_lines(wait_for=10) if l["status"] == 429][0]
    assert line["rule"] == "limits/per-client" and line["action"] == "rate_limit"


def test_rate_limit_is_shared_by_all_workers(tmp_path, origin, bulwark):
    cfg = rules_config(tmp_path, origin, [ruleset(tmp_path, "rate.yaml", RATE.replace(
        "requests: 5", "requests: 40"))], workers=2)
    bw = bulwark(cfg)
    # Fresh connections spread over both workers' SO_REUSEPORT listeners.
    statuses = [bw.request("GET", "/api/x", headers=[("X-Key", "k")]).status for _ in range(60)]
    assert statuses.count(200) == 40 and statuses.count(429) == 20


def test_rate_limit_counters_survive_a_reload(tmp_path, origin, bulwark):
    """Counters are kept by the rule's identity: a reload that adds a rule
    in front of the limit (so its place in the book moves) must not give
    every client a fresh allowance."""
    path = ruleset(tmp_path, "rate.yaml", RATE)
    bw = bulwark(rules_config(tmp_path, origin, [path]))
    statuses = [bw.request("GET", "/api/x", headers=[("X-Key", "a")]).status for _ in range(5)]
    assert statuses == [200] * 5
    with open(path, "w") as f:
        f.write(textwrap.dedent(RATE).replace(
            "rules:\n", """rules:
  - id: new-first
    expression: 'http.request.uri.path eq "/blocked"'
    action: block
""", 1))
    bw.reload("generation 2 is live")
    assert bw.request("GET", "/blocked").status == 403  # the new ruleset serves
    assert bw.request("GET", "/api/x", headers=[("X-Key", "a")]).status == 429
    assert bw.request("GET", "/api/x", headers=[("X-Key", "b")]).status == 200


BROKEN = """\
    id: broken
    rules:
      - id: typo
        expression: 'http.hots eq "a"'
        action: block
"""


def test_fail_open_serves_without_rules(tmp_path, origin, bulwark):
    files = [ruleset(tmp_path, "entry.yaml", ENTRY), ruleset(tmp_path, "broken.yaml", BROKEN)]
    bw = bulwark(rules_config(tmp_path, origin, files, on_error="open"),
                 expect_errors=["did not load", "broken.yaml"])
    assert bw.request("GET", "/admin").status == 200  # no rule runs
    err = bw.stderr()
    assert "broken.yaml:4:18: error: rules[0].expression: unknown field" in err


def test_fail_closed_refuses_with_the_module_status(tmp_path, origin, bulwark):
    files = [ruleset(tmp_path, "broken.yaml", BROKEN)]
    cfg = rules_config(tmp_path, origin, files, on_error="closed")
    cfg["modules"]["rules"]["error_status"] = 503
    bw = bulwark(cfg, expect_errors=["did not load", "broken.yaml"])
    r = bw.request("GET", "/")
    assert r.status == 503 and b"rules" in r.body
    assert origin.heads == []


def test_routes_are_full_expressions(tmp_path, origins, bulwark):
    a, b, c = origins(3)
    cfg = default_config([c.address])
    cfg["upstreams"] = {"a": {"servers": [{"address": a.address}]},
                        "b": {"servers": [{"address": b.address}]},
                        "c": {"servers": [{"address": c.address}]}}
    cfg["routes"] = [
        {"match": 'http.request.method in {"POST" "PUT"} and http.request.uri.path matches "^/api/v[0-9]+/"',
         "upstream": "a"},
        {"match": 'any(lower(http.request.headers["x-tier"][*]) eq "gold")', "upstream": "b"},
        {"upstream": "c"},
    ]
    bw = bulwark(cfg)
    assert origin_view(bw.request("POST", "/api/v2/x", body=b"{}"))["server"] == a.name
    assert origin_view(bw.request("GET", "/api/v2/x"))["server"] == c.name
    assert origin_view(bw.request("GET", "/", headers=[("X-Tier", "Gold")]))["server"] == b.name
    assert origin_view(bw.request("GET", "/"))["server"] == c.name


def test_edit_order_and_what_later_rules_and_routes_see(tmp_path, origins, bulwark):
    # The documented order (docs/rules.md, "What rules do to the messages"):
    # every rule of a phase and the route read the request as received; the
    # edits apply after the phase, in the order the rules fired across
    # rulesets, each name's last operation deciding; a rewritten path is
    # what the upstream gets, not what routes or later rules read.
    a, b = origins(2)
    first = ruleset(tmp_path, "first.yaml", """\
        id: first
        rules:
          - id: move
            expression: 'http.request.uri.path eq "/old"'
            action: rewrite
            path: /new
            headers:
              set: { x-a: first, x-b: first }
              remove: [x-c]
    """)
    second = ruleset(tmp_path, "second.yaml", """\
        id: second
        rules:
          - id: block-new
            expression: 'http.request.uri.path eq "/new"'
            action: block
          - id: later
            expression: 'http.request.uri.path eq "/old"'
            action: rewrite
            headers:
              set: { x-a: second, x-c: second }
              remove: [x-b]
    """)
    out = ruleset(tmp_path, "out.yaml", """\
        id: out
        phase: response
        rules:
          - id: one
            expression: 'http.request.uri.path eq "/old"'
            action: set_header
            name: set-cookie
            value: one=1
          - id: two
            expression: 'http.request.uri.path eq "/old"'
            action: set_header
            name: set-cookie
            value: two=2
    """)
    cfg = default_config([a.address])
    cfg["upstreams"] = {"a": {"servers": [{"address": a.address}]},
                        "b": {"servers": [{"address": b.address}]}}
    cfg["routes"] = [{"match": 'http.request.uri.path eq "/new"', "upstream": "b"},
                     {"upstream": "a"}]
    cfg["modules"] = {"rules": {"rulesets": [first, second, out]}}
    from bwtest import origin as origin_mod
    a.on("/new", origin_mod.fixed(200, headers=[("Set-Cookie", "u=1"), ("Set-Cookie", "v=2")],
                                  body=b"ok"))
    bw = bulwark(cfg)
    r = bw.request("GET", "/old?q=1", headers=[("X-A", "client"), ("X-C", "client")])
    assert r.status == 200, r
    assert r.header_all("set-cookie") == ["two=2"]
    head = a.heads_for("/new")[0]
    assert head.target == "/new?q=1"
    assert head.header_all("x-a") == ["second"]
    assert head.header_all("x-b") == []
    assert head.header_all("x-c") == ["second"]
    assert not b.heads
    # A request for /new itself is what block-new and the route read.
    assert bw.request("GET", "/new").status == 403


def run_cli(*args):
    return subprocess.run([bulwark_bin(), *args], capture_output=True, timeout=20,
                          stdin=subprocess.DEVNULL, text=True)


def write_config(tmp_path, files, name="bulwark.yaml"):
    from bwtest import yamlish
    cfg = default_config(["127.0.0.1:9"], access_log="off")
    cfg["modules"] = {"rules": {"rulesets": files}}
    p = tmp_path / name
    p.write_text(yamlish.dump(cfg) + "\n")
    return str(p)


def test_check_reports_ruleset_errors_with_position(tmp_path):
    cfg = write_config(tmp_path, [ruleset(tmp_path, "broken.yaml", BROKEN)])
    r = run_cli("check", "-c", cfg)
    assert r.returncode == 1
    assert "broken.yaml:4:18: error: rules[0].expression: unknown field \"http.hots\"" in r.stderr
    assert "^~~~~~~~~" in r.stderr


def test_check_runs_embedded_tests(tmp_path):
    bad_test = textwrap.dedent(ENTRY) + textwrap.dedent("""\
        tests:
          - name: admin is open
            request: { method: GET, path: /admin, headers: { host: a.example } }
            expect: { action: none }
        """)
    cfg = write_config(tmp_path, [ruleset(tmp_path, "entry.yaml", bad_test)])
    r = run_cli("check", "-c", cfg)
    assert r.returncode == 1
    assert "admin is open" in r.stderr and "block-admin" in r.stderr
    good = write_config(tmp_path, [ruleset(tmp_path, "entry2.yaml", ENTRY)], name="good.yaml")
    r = run_cli("check", "-c", good)
    assert r.returncode == 0, r.stderr
    assert "1 rulesets, 5 rules" in r.stdout


def test_example_config_checks(tmp_path):
    # The demo's HTTPS certificate is made on first use, as `make run` does.
    subprocess.run([os.path.join(EXAMPLES, "..", "scripts", "demo-cert.sh")], check=True)
    r = run_cli("check", "-c", os.path.join(EXAMPLES, "bulwark.yaml"))
    assert r.returncode == 0, r.stderr
    assert "TLS ok (1 certificate)" in r.stdout


def test_eval_traces_every_phase(tmp_path):
    files = [ruleset(tmp_path, "entry.yaml", EXEC), ruleset(tmp_path, "managed.yaml", MANAGED),
             ruleset(tmp_path, "out.yaml", RESPONSE)]
    cfg = write_config(tmp_path, files)
    r = run_cli("eval", "-c", cfg, "--request", "GET /x HTTP/1.1", "-H", "Host: a.example",
                "-H", "User-Agent: BadBot/1", "--ip", "203.0.113.9")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "rule skip-health" in out and "false" in out
    assert "rule deny-bots" in out and "fired -> block" in out
    assert "verdict: block 403 by managed/deny-bots" in out
    assert "route: not reached" in out
    r = run_cli("eval", "-c", cfg, "--request", "GET /api/x HTTP/1.1", "-H", "Host: a.example",
                "--response-status", "503")
    assert r.returncode == 0, r.stderr
    assert "rule deny-bots" in r.stdout and "unknown" in r.stdout  # no User-Agent: unknown
    assert "route: #1 (default) -> upstream app" in r.stdout
    assert "verdict: block 502 by out/mask-errors" in r.stdout
    # An invalid request is refused as the proxy would.
    r = run_cli("eval", "-c", cfg, "--request", "GET /x HTTP/1.1")
    assert r.returncode == 1 and "400" in r.stdout


def eval_config(tmp_path, files, state_dir=None, features=None):
    from bwtest import yamlish
    cfg = default_config(["127.0.0.1:9"], access_log="off")
    cfg["modules"] = {"rules": {"rulesets": files}}
    if features:
        cfg["modules"]["bot_score"] = {"features": features}
    if state_dir is not None:
        cfg["state_dir"] = str(state_dir)
    p = tmp_path / "bulwark.yaml"
    p.write_text(yamlish.dump(cfg) + "\n")
    return str(p)


def rule_line(out, rule_id):
    return [ln for ln in out.splitlines() if ln.strip().startswith(f"rule {rule_id} ")][0]


def test_eval_says_why_a_rule_was_not_evaluated(tmp_path):
    # A disabled rule, a disabled top-level ruleset and an execute of a
    # disabled ruleset: the trace says each was skipped and why, never a
    # truth value nothing computed.
    entry = disabled(EXEC, "skip-health")
    managed = disabled(MANAGED)
    files = [ruleset(tmp_path, "entry.yaml", entry), ruleset(tmp_path, "managed.yaml", managed),
             ruleset(tmp_path, "top.yaml", disabled(HOSTS))]
    r = run_cli("eval", "-c", eval_config(tmp_path, files), "--request", "GET /healthz HTTP/1.1",
                "-H", "Host: a.example")
    assert r.returncode == 0, r.stderr
    line = rule_line(r.stdout, "skip-health")
    assert "skipped: rule disabled" in line, r.stdout
    assert line.split()[2] == "skipped:", line  # the value column
    line = rule_line(r.stdout, "run-managed")
    assert "fired -> execute, target not run: ruleset disabled" in line, r.stdout
    assert "ruleset hosts: skipped: ruleset disabled" in r.stdout


def test_eval_applies_the_killswitches_in_state_dir(tmp_path):
    files = [ruleset(tmp_path, "entry.yaml", EXEC), ruleset(tmp_path, "managed.yaml", MANAGED),
             ruleset(tmp_path, "top.yaml", HOSTS)]
    state = tmp_path / "state"
    state.mkdir()
    # A bad line too: run skips it (and keeps a .rejected copy); eval must
    # only read.
    (state / "killswitches").write_text(
        "rule:managed/deny-bots\nruleset:hosts\nnot a target\nrule:gone/x\n")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in state.iterdir())
    cfg = eval_config(tmp_path, files, state)
    req = ("eval", "-c", cfg, "--request", "GET /x HTTP/1.1", "-H", "Host: evil.example",
           "-H", "User-Agent: BadBot/1")
    r = run_cli(*req)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"killswitches in force (state_dir {state}): 3" in out, out
    assert "  rule:managed/deny-bots\n" in out and "  ruleset:hosts\n" in out
    assert "  rule:gone/x (not in this configuration)" in out
    assert "1 line of" in out and ":3:" in out
    line = rule_line(out, "deny-bots")
    assert "skipped: rule killed by killswitch" in line, out
    assert "ruleset hosts: skipped: ruleset killed by killswitch" in out
    assert "verdict: continue" in out and "route: #1" in out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in state.iterdir()) == before
    # The whole rules module killed: no rule runs, the route still does.
    (state / "killswitches").write_text("module:rules\n")
    r = run_cli(*req, "--response-status", "503")
    assert r.returncode == 0, r.stderr
    assert "  module:rules\n" in r.stdout
    assert "skipped (module rules killed by killswitch" in r.stdout
    assert "rule deny-bots" not in r.stdout and "route: #1" in r.stdout
    # No killswitch file: none in force.
    (state / "killswitches").unlink()
    r = run_cli(*req)
    assert r.returncode == 0 and f"killswitches in force (state_dir {state}): 0" in r.stdout
    assert "verdict: block 403 by managed/deny-bots" in r.stdout


def test_eval_with_the_bot_module_killed_has_no_score(tmp_path):
    files = [ruleset(tmp_path, "entry.yaml", EXEC), ruleset(tmp_path, "managed.yaml", MANAGED)]
    state = tmp_path / "state"
    state.mkdir()
    cfg = eval_config(tmp_path, files, state, features=os.path.join(EXAMPLES, "features.json"))
    req = ("eval", "-c", cfg, "--request", "GET /x HTTP/1.1", "-H", "Host: a.example")
    r = run_cli(*req)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "bot.score: unknown" not in r.stdout and "bot.score: " in r.stdout
    (state / "killswitches").write_text("module:bot_score\n")
    # As in the proxy: the killed module gives no score, whatever eval is told.
    r = run_cli(*req, "--bot-score", "5")
    assert r.returncode == 0, r.stderr
    assert "bot.score: unknown (module bot_score killed by killswitch; --bot-score ignored)" \
        in r.stdout, r.stdout


def test_eval_without_a_readable_state_dir_says_so_and_goes_on(tmp_path):
    files = [ruleset(tmp_path, "entry.yaml", EXEC), ruleset(tmp_path, "managed.yaml", MANAGED)]
    req = ("--request", "GET /x HTTP/1.1", "-H", "Host: a.example", "-H", "User-Agent: BadBot/1")
    r = run_cli("eval", "-c", eval_config(tmp_path, files), *req)
    assert r.returncode == 0 and "killswitches: none (no state_dir" in r.stdout, r.stdout
    missing = tmp_path / "nowhere"
    r = run_cli("eval", "-c", eval_config(tmp_path, files, missing), *req)
    assert r.returncode == 0, r.stderr
    assert f"killswitches: NOT READ (state_dir {missing}: No such file" in r.stdout, r.stdout
    assert "verdict: block 403 by managed/deny-bots" in r.stdout
    assert not missing.exists()
    # A killswitch file that cannot be read (a directory: root reads any file).
    state = tmp_path / "state"
    (state / "killswitches").mkdir(parents=True)
    r = run_cli("eval", "-c", eval_config(tmp_path, files, state), *req)
    assert r.returncode == 0, r.stderr
    assert "killswitches: NOT READ (cannot read" in r.stdout, r.stdout
    assert "verdict: block 403 by managed/deny-bots" in r.stdout


EXAMPLE_CORPUS = [
    ("GET", "/", []), ("GET", "/admin/x", []), ("GET", "/%61dmin", []),
    ("GET", "/api/users?id=1", [("User-Agent", "curl/8")]), ("GET", "/v0/old?q=1", []),
    ("TRACE", "/", []), ("GET", "/", [("User-Agent", "sqlmap/1.0")]),
    ("POST", "/api/items", [("Cookie", "a=" + "x" * 9000)]), ("GET", "/healthz", []),
]


def example_rules():
    """(file name, ruleset text, [rule ids]) of the example rulesets."""
    out = []
    for name in ("entry.yaml", "managed.yaml", "response.yaml"):
        text = open(os.path.join(EXAMPLES, "rules", name)).read()
        ids = [ln.split("- id:")[1].strip() for ln in text.splitlines()
               if ln.strip().startswith("- id:")]
        out.append((name, text, ids))
    return out


def test_disabling_any_example_rule_or_ruleset_never_5xx(tmp_path, origin, bulwark):
    """DESIGN.md outage 2: every rule of the example rulesets in turn, and
    each ruleset, disabled; a request corpus replayed; no 5xx."""
    rules = example_rules()
    variants = []
    for i, (name, text, ids) in enumerate(rules):
        for rid in ids:
            variants.append((i, disabled(text, rid)))
        variants.append((i, disabled(text)))
    for k, (i, text) in enumerate(variants):
        d = tmp_path / f"v{k}"
        d.mkdir()
        files = []
        for j, (name, orig, _) in enumerate(rules):
            p = d / name
            body = text if j == i else orig
            # Embedded tests may expect the disabled rule: drop them here.
            body = body.split("\ntests:")[0] + "\n"
            p.write_text(body)
            files.append(str(p))
        bw = bulwark(rules_config(d, origin, files), name=f"b{k}")
        for method, path, headers in EXAMPLE_CORPUS:
            r = bw.request(method, path, headers=headers)
            assert r.status < 500, (k, method, path, r.status)
        bw.stop()
