"""Command line: check, run with a bad config, version."""
import re
import subprocess

from bwtest.proc import bulwark_bin

GOOD = """\
listen:
  - address: 127.0.0.1:0
workers: 1
upstreams:
  app:
    servers:
      - address: 127.0.0.1:9
routes:
  - upstream: app
access_log: "off"
"""


def run(*args, timeout=10):
    return subprocess.run([bulwark_bin(), *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, text=True)


def write(tmp_path, text, name="bulwark.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def diag_positions(stderr, path):
    """(line, col) of every `path:LINE:COL:` diagnostic."""
    return [(int(m.group(1)), int(m.group(2)))
            for m in re.finditer(re.escape(path) + r":(\d+):(\d+):", stderr)]


def test_version():
    r = run("version")
    assert r.returncode == 0
    assert re.fullmatch(r"bulwark \S+\n", r.stdout), r.stdout


def test_check_good_config(tmp_path):
    path = write(tmp_path, GOOD)
    r = run("check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()


def test_check_full_config_with_every_key(tmp_path):
    text = GOOD.replace("access_log: \"off\"\n", "") + """\
limits:
  request_line_bytes: 8KiB
  header_bytes: 32KiB
  headers: 100
  body_bytes: 16MiB
  client_header_timeout: 10s
  client_body_timeout: 10s
  keepalive_timeout: 60s
  send_timeout: 60s
  drain_timeout: 500ms
  max_connections: 1000
client_ip:
  trusted: [10.0.0.0/8, 127.0.0.1/32]
  from: x_forwarded_for
access_log: "-"
""".replace("  app:\n    servers:\n      - address: 127.0.0.1:9\n", """\
  app:
    servers:
      - { address: 127.0.0.1:9, weight: 3 }
      - { address: 127.0.0.1:10, weight: 1 }
    balance: least_conn
    keepalive: 16
    connect_timeout: 1s
    read_timeout: 30s
    write_timeout: 30s
    max_fails: 3
    fail_timeout: 10s
    health_check: { path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3 }
  other:
    servers: [{ address: 127.0.0.1:11 }]
    balance: hash(http.request.headers["x-user"])
""").replace("routes:\n  - upstream: app\n", """\
routes:
  - match: 'http.host eq "a.example" and starts_with(http.request.uri.path, "/api/")'
    upstream: other
  - upstream: app
""")
    path = write(tmp_path, text)
    r = run("check", "-c", path)
    assert r.returncode == 0, text + r.stderr


def test_check_unknown_key_points_at_it(tmp_path):
    text = GOOD.replace("workers: 1\n", "workers: 1\nlimits:\n  header_bytez: 1KiB\n")
    path = write(tmp_path, text)
    r = run("check", "-c", path)
    assert r.returncode == 1, r.stderr
    # `header_bytez` is on line 5, column 3.
    assert (5, 3) in diag_positions(r.stderr, path), r.stderr
    assert "header_bytez" in r.stderr


def test_check_wrong_type_points_at_value(tmp_path):
    text = GOOD.replace("workers: 1\n", "workers: 1\nlimits:\n  client_header_timeout: [1, 2]\n")
    path = write(tmp_path, text)
    r = run("check", "-c", path)
    assert r.returncode == 1
    pos = diag_positions(r.stderr, path)
    assert pos and pos[0][0] == 5, r.stderr


def test_check_bad_duration_and_size(tmp_path):
    text = GOOD.replace("workers: 1\n", "workers: 1\nlimits:\n  client_header_timeout: 10 parsecs\n  header_bytes: lots\n")
    path = write(tmp_path, text)
    r = run("check", "-c", path)
    assert r.returncode == 1
    lines = {line for line, _ in diag_positions(r.stderr, path)}
    # Errors are collected, not stopped at the first.
    assert {5, 6} <= lines, r.stderr


def test_check_bad_balance_and_route(tmp_path):
    text = GOOD.replace("      - address: 127.0.0.1:9\n", "      - address: 127.0.0.1:9\n    balance: random_please\n") \
        .replace("  - upstream: app\n", "  - upstream: nosuch\n")
    path = write(tmp_path, text)
    r = run("check", "-c", path)
    assert r.returncode == 1
    lines = {line for line, _ in diag_positions(r.stderr, path)}
    assert 8 in lines and 10 in lines, r.stderr


def test_check_bad_yaml_syntax(tmp_path):
    path = write(tmp_path, GOOD + "upstreams: [unclosed\n")
    r = run("check", "-c", path)
    assert r.returncode == 1
    assert diag_positions(r.stderr, path), r.stderr


def test_check_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    r = run("check", "-c", path)
    assert r.returncode == 1
    assert path in r.stderr


def test_run_bad_config_exits_nonzero_with_position(tmp_path):
    text = GOOD.replace("workers: 1\n", "workers: 1\nbogus_key: 1\n")
    path = write(tmp_path, text)
    r = run("run", "-c", path)
    assert r.returncode != 0
    assert (4, 1) in diag_positions(r.stderr, path), r.stderr


def test_unknown_command_is_usage_error():
    r = run("frobnicate")
    assert r.returncode != 0
    assert 'unknown command "frobnicate"' in r.stderr
    assert "usage" in (r.stderr + r.stdout).lower()


def test_check_and_run_refuse_files_the_server_could_not_use(tmp_path):
    # What `run` would fail on (or serve half-broken with), `check` reports
    # first: a missing state_dir, an access log in a missing directory, a
    # token file others can read. Nothing is created by `check`.
    os_ = __import__("os")
    base = GOOD.replace('access_log: "off"\n', "")
    cases = [
        (f"state_dir: {tmp_path}/nostate\n", "state_dir"),
        (f"access_log: {tmp_path}/nodir/access.log\n", "access_log: the directory"),
        (f"admin:\n  address: 127.0.0.1:0\n  token_file: {tmp_path}/tok\n", "chmod 600"),
    ]
    tok = tmp_path / "tok"
    tok.write_text("secret\n")
    os_.chmod(tok, 0o644)
    for extra, said in cases:
        path = write(tmp_path, base + extra)
        for cmd in ("check", "run"):
            r = run(cmd, "-c", path)
            assert r.returncode == 1 and said in r.stderr, (cmd, extra, r.stderr)
    assert not os_.path.exists(tmp_path / "nodir")
    # Fixed, all three pass, and check creates no access log.
    (tmp_path / "nostate").mkdir()
    (tmp_path / "nodir").mkdir()
    os_.chmod(tok, 0o600)
    path = write(tmp_path, base + "".join(e for e, _ in cases))
    r = run("check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert not os_.path.exists(tmp_path / "nodir" / "access.log")


def test_check_reports_every_error_of_a_ruleset_file(tmp_path):
    # Three independent bad rules (and a good one between them): check lists
    # each at its file:line:col, not only the first, and refuses the file.
    rules = tmp_path / "entry.yaml"
    rules.write_text("""\
id: entry
rules:
  - id: a
    expression: 'true'
    action: execute
    ruleset: nope
  - id: fine
    expression: 'true'
    action: log
  - id: b
    expression: 'true'
    action: skip
    rulesets: [gone]
  - id: c
    expression: 'true'
    action: set_header
    name: x-a
    value: b
""")
    text = GOOD + f"modules:\n  rules: {{ rulesets: [{rules}] }}\n"
    path = write(tmp_path, text)
    r = run("check", "-c", path)
    assert r.returncode == 1, r.stderr
    # The file's own problems first, then those that need the other files.
    assert diag_positions(r.stderr, str(rules)) == [(16, 13), (6, 14), (13, 15)], r.stderr
    assert 'execute target ruleset "nope" does not exist' in r.stderr
    assert 'skip target ruleset "gone" does not exist' in r.stderr
    assert "set_header is a response-phase action" in r.stderr

    # Three bad expressions: each with its position and a caret.
    rules.write_text("""\
id: entry
rules:
  - id: a
    expression: 'ip.src contains "x"'
    action: block
  - id: b
    expression: 'http.hots eq "a"'
    action: block
  - id: c
    expression: 'len(ssl) gt 1'
    action: log
""")
    r = run("check", "-c", path)
    assert r.returncode == 1, r.stderr
    assert diag_positions(r.stderr, str(rules)) == [(4, 18), (7, 18), (10, 22)], r.stderr
    assert r.stderr.count("^~~") == 3, r.stderr

    # Past the bound, the rest are counted, not listed.
    body = "id: entry\nrules:\n" + "".join(
        f"  - id: r{i}\n    expression: 'true'\n    action: execute\n    ruleset: nope\n"
        for i in range(25))
    rules.write_text(body)
    r = run("check", "-c", path)
    assert r.returncode == 1, r.stderr
    assert len(diag_positions(r.stderr, str(rules))) == 20, r.stderr
    assert "5 more errors not shown" in r.stderr, r.stderr
