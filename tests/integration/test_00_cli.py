"""Command line: check, run with a bad config, version."""
import contextlib
import re
import subprocess

import pytest

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


def test_check_reports_every_failing_part_in_one_run(tmp_path):
    # A broken ruleset, a missing state_dir and a broken feature file: one
    # `check` lists all three, so fixing one does not reveal the next.
    (tmp_path / "rules.yaml").write_text(
        "id: r\nrules:\n  - id: x\n    expression: 'http.hots eq \"a\"'\n    action: block\n")
    (tmp_path / "features.json").write_text('{"version": 1, "bias": 0, "features": []}')
    text = GOOD + (f"state_dir: {tmp_path}/nostate\n"
                   f"modules:\n  rules: {{rulesets: [{tmp_path}/rules.yaml]}}\n"
                   f"  bot_score: {{features: {tmp_path}/features.json}}\n")
    r = run("check", "-c", write(tmp_path, text))
    assert r.returncode == 1
    assert "rules.yaml:4:" in r.stderr and "unknown field" in r.stderr, r.stderr
    assert "state_dir" in r.stderr, r.stderr
    assert "features.json" in r.stderr, r.stderr


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    # Under systemd the working directory is /: a relative state_dir,
    # access_log or token_file must mean the same as a relative ruleset,
    # next to the config file, whatever directory bulwark starts in.
    import os
    import time
    import urllib.request
    conf = tmp_path / "conf"
    (conf / "state").mkdir(parents=True)
    (conf / "logs").mkdir()
    (conf / "state" / "killswitches").write_text("module:rules\n")
    tok = conf / "admin.token"
    tok.write_text("s3cret\n")
    os.chmod(tok, 0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = GOOD.replace('access_log: "off"\n', "") + (
        "admin:\n  address: 127.0.0.1:0\n  token_file: admin.token\n"
        "state_dir: state\naccess_log: logs/access.log\n")
    path = write(conf, text)
    r = subprocess.run([bulwark_bin(), "check", "-c", path], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL, text=True, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    err = tmp_path / "stderr.log"
    with open(err, "wb") as ef:
        p = subprocess.Popen([bulwark_bin(), "run", "-c", path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=ef, cwd=elsewhere)
    try:
        deadline = time.monotonic() + 10
        port = admin = None
        while (port is None or admin is None) and time.monotonic() < deadline:
            assert p.poll() is None, err.read_text()
            log = err.read_text()
            m = re.search(r"(?<!admin )listening on 127\.0\.0\.1:(\d+)", log)
            a = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", log)
            port, admin = (m and m.group(1)), (a and a.group(1))
            time.sleep(0.02)
        assert port and admin, err.read_text()
        assert f"1 killswitch restored from {conf}/state\n" in err.read_text()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5)
        except urllib.error.HTTPError:
            pass  # the upstream is down: a 502, logged all the same
        req = urllib.request.Request(f"http://127.0.0.1:{admin}/reload", method="POST",
                                     headers={"Authorization": "Bearer s3cret"})
        assert urllib.request.urlopen(req, timeout=5).status == 200
        deadline = time.monotonic() + 5
        logf = conf / "logs" / "access.log"
        while time.monotonic() < deadline and not (logf.exists() and logf.read_text()):
            time.sleep(0.02)
        assert '"path":"/x"' in logf.read_text()
    finally:
        p.terminate()
        p.wait(10)
    assert list(elsewhere.iterdir()) == []


@contextlib.contextmanager
def running(path, tmp_path, cwd=None):
    """`bulwark run -c path`, its stderr in a file: yields (process,
    wait_for(text) -> the log once text is in it, failing if the process
    exits first or 10 s pass). Stopped (terminated, else killed) on exit."""
    import time
    err = tmp_path / "run-stderr.log"
    with open(err, "wb") as ef:
        p = subprocess.Popen([bulwark_bin(), "run", "-c", path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=ef, cwd=cwd)

    def wait_for(text):
        deadline = time.monotonic() + 10
        while text not in err.read_text() and time.monotonic() < deadline:
            assert p.poll() is None, err.read_text()
            time.sleep(0.02)
        return err.read_text()

    try:
        yield p, wait_for
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def start_and_stop(path, tmp_path, cwd=None):
    """`bulwark run -c path` until it listens; returns its error log."""
    with running(path, tmp_path, cwd) as (_, wait_for):
        return wait_for("admin listening on")


@pytest.mark.parametrize("address, token, warned", [
    ("0.0.0.0:0", False, True), ("[::]:0", False, True), ("192.0.2.1:9901", False, True),
    ("0.0.0.0:0", True, False), ("127.0.0.1:0", False, False), ("127.0.0.2:0", False, False),
    ("[::1]:0", False, False)])
def test_admin_open_to_the_network_without_a_token_is_warned(tmp_path, address, token, warned):
    import os
    admin = f"admin:\n  address: \"{address}\"\n"
    if token:
        (tmp_path / "admin.token").write_text("s3cret\n")
        os.chmod(tmp_path / "admin.token", 0o600)
        admin += "  token_file: admin.token\n"
    path = write(tmp_path, GOOD + admin)
    r = run("check", "-c", path)
    assert r.returncode == 0, r.stderr
    said = "open to anyone who can reach it"
    assert (said in r.stderr) == warned, r.stderr
    if warned:
        assert f"{path}: warning: admin.address {address} is not a loopback address" in r.stderr
    # run says it too; only the addresses this machine can listen on.
    if address.startswith("192.0.2."):
        return
    log = start_and_stop(path, tmp_path)
    assert (said in log) == warned, log
    if warned:
        assert re.search(r" warn: .*admin.address .* is not a loopback address", log), log


def test_reload_that_drops_the_token_of_an_open_admin_api_is_warned(tmp_path):
    import os
    import signal
    tok = tmp_path / "admin.token"
    tok.write_text("s3cret\n")
    os.chmod(tok, 0o600)
    path = write(tmp_path, GOOD + 'admin:\n  address: "0.0.0.0:0"\n  token_file: admin.token\n')
    with running(path, tmp_path) as (p, wait_for):
        log = wait_for("admin listening on")
        assert "open to anyone" not in log
        write(tmp_path, GOOD + 'admin:\n  address: "0.0.0.0:0"\n')
        p.send_signal(signal.SIGHUP)
        log = wait_for("generation 2 is live")
        assert "generation 2 is live" in log
        assert re.search(r" warn: .*admin.address 0.0.0.0:0 is not a loopback address .*open to "
                         r"anyone who can reach it", log), log


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


def test_run_says_when_it_is_ready_and_with_what(tmp_path):
    # After the "listening on" lines (which come before the workers and the
    # admin API start), one line says the process serves, its pid, and
    # whether the modules loaded; a reload and the exit say so too.
    import signal
    (tmp_path / "entry.yaml").write_text(
        "id: entry\nrules:\n  - id: a\n    expression: 'true'\n    action: log\n")
    path = write(tmp_path, GOOD + "modules:\n  rules: { rulesets: [entry.yaml] }\n")
    with running(path, tmp_path) as (p, wait_for):
        log = wait_for("ready: ")
        assert re.search(rf" info: ready: pid {p.pid}, config {re.escape(path)} \(generation 1\), "
                         r"1 worker; rules: 1 ruleset, 1 rule; bot_score: off; access log: off; "
                         r"SIGHUP reloads, SIGTERM drains and exits\n", log), log
        assert log.index("listening on") < log.index("ready: ")
        p.send_signal(signal.SIGHUP)
        log = wait_for("generation 2 is live")
        assert f"generation 2 is live ({path}; rules: 1 ruleset, 1 rule; bot_score: off)" in log
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        assert f"all workers stopped; exiting (pid {p.pid})" in (tmp_path / "run-stderr.log").read_text()


FILES = """\
admin:
  address: 127.0.0.1:0
  token_file: nope.token
state_dir: nostate
access_log: nodir/access.log
modules:
  bot_score: { features: nope.json }
  rules:
    rulesets:
      - rules/a.yaml
      - rules/nope.yaml
"""


def test_file_problems_are_said_at_the_key_that_names_the_file(tmp_path):
    # A file has no line of its own to point at when it is missing: the
    # message points at the config key that names it (DESIGN.md: a bad
    # config is rejected with file:line:col), after the path as resolved.
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text(
        "id: a\nrules:\n  - id: x\n    expression: 'true'\n    action: log\n")
    path = write(tmp_path, GOOD.replace('access_log: "off"\n', "") + FILES)
    d = str(tmp_path)
    files = [
        f"{path}:12:15: error: admin.token_file: admin token file {d}/nope.token: "
        "No such file or directory",
        f"{path}:14:13: error: access_log: the directory {d}/nodir: No such file or directory",
        f"{path}:13:12: error: state_dir: {d}/nostate: No such file or directory",
    ]
    r = run("check", "-c", path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"{path}:20:9: error: modules.rules.rulesets[1]: {d}/rules/nope.yaml: cannot open the "
        "ruleset file: No such file or directory",
        *files,
        f"{path}:16:26: error: modules.bot_score.features: {d}/nope.json: cannot open the "
        "feature file: No such file or directory",
    ], r.stderr
    r = run("run", "-c", path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [*files, f"{path}: not starting"], r.stderr


def test_a_taken_listen_port_is_said_at_its_address(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        path = write(tmp_path, GOOD.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        r = run("run", "-c", path)
    assert r.returncode == 1
    assert (f" error: {path}:2:14: error: listen[0].address: listen 127.0.0.1:{port}: address "
            "already in use by another process") in r.stderr, r.stderr


FEATURES = ('{"version": 1, "bias": 0, "features": [{"name": "ua_missing", '
            '"expression": "len(http.user_agent) eq 0", "weight": 1.0}]}')


def test_missing_artifacts_at_start_fall_back_and_say_where_they_are_named(tmp_path):
    # At start a ruleset or feature file that cannot be read is replaced by
    # its last-known-good copy (docs/operations.md); the message about it
    # points at the key that names it. A reload with it still missing is
    # rejected with the same position.
    import signal
    (tmp_path / "state").mkdir()
    (tmp_path / "rules").mkdir()
    ruleset = tmp_path / "rules" / "a.yaml"
    ruleset.write_text("id: a\nrules:\n  - id: x\n    expression: 'true'\n    action: log\n")
    (tmp_path / "f.json").write_text(FEATURES)
    path = write(tmp_path, GOOD + "state_dir: state\nmodules:\n"
                 "  bot_score: { features: f.json }\n"
                 "  rules:\n    rulesets:\n      - rules/a.yaml\n")
    log = start_and_stop(path, tmp_path)  # saves the last-known-good copies
    assert "rules: 1 ruleset, 1 rule; bot_score: 1 feature;" in log, log
    ruleset.unlink()
    (tmp_path / "f.json").unlink()
    d = str(tmp_path)
    with running(path, tmp_path) as (p, wait_for):
        log = wait_for("ready: ")
        rules_line = (f"{path}:16:9: error: modules.rules.rulesets[0]: {d}/rules/a.yaml: cannot "
                      "open the ruleset file: No such file or directory\n")
        bot_line = (f"{path}:13:26: error: modules.bot_score.features: {d}/f.json: cannot open "
                    "the feature file: No such file or directory\n")
        assert rules_line + "falling back to the last-known-good copies" in log, log
        assert bot_line + "falling back to the last-known-good copy" in log, log
        # Each reason once, not once per module that fell back.
        assert log.count(rules_line) == 1 and log.count(bot_line) == 1, log
        assert ("rules: 1 ruleset, 1 rule (last-known-good copies); bot_score: 1 feature "
                "(last-known-good copy)") in log, log
        p.send_signal(signal.SIGHUP)
        log = wait_for("reload rejected")
        log = wait_for(bot_line)
        assert "reload rejected; the running configuration stays:\n" + rules_line in log, log


def test_a_config_given_without_c_gets_the_command_to_use(tmp_path):
    path = write(tmp_path, GOOD)
    for cmd in ("check", "run"):
        r = run(cmd, path)
        assert r.returncode == 2
        assert r.stderr.splitlines()[0] == (
            f'bulwark: unexpected argument "{path}"; the config file comes after -c: '
            f"bulwark {cmd} -c {path}"), r.stderr
    # Past -c, an extra argument is only unexpected.
    r = run("check", "-c", path, "extra")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == 'bulwark: unexpected argument "extra"', r.stderr
