"""Ingesting bad files (issue 4, item 1): the main config and a ruleset file,
at start (`bulwark check`, `bulwark run`) and on reload (SIGHUP and POST
/reload), each broken in every way a file can be broken: empty, only
comments, truncated, binary, UTF-16, Latin-1, a NUL byte, over the size
limit, a symlink to nowhere, a directory, a FIFO, unreadable, replaced by
rename. Each gives one clear sentence naming the file, never a crash, a hang
or a half-applied state: the running snapshot keeps serving the same
answers, /status names the rejection and the metrics count it."""
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest

from bwtest import client
from bwtest.proc import ADMIN_RE, bulwark_bin

CONFIG_MAX = 4 * 1024 * 1024  # BW_CONFIG_MAX_FILE_BYTES
RULESET_MAX = 8 * 1024 * 1024  # BW_RULESET_MAX_FILE_BYTES

CONFIG = """\
listen:
  - address: 127.0.0.1:0
workers: 1
admin:
  address: 127.0.0.1:0
upstreams:
  app:
    servers:
      - address: {origin}
routes:
  - match: 'http.user_agent eq "café"'
    upstream: app
  - upstream: app
access_log: "off"
modules:
  rules: {{ rulesets: [{rules}], on_error: open }}
"""

RULESET = """\
id: entry
rules:
  - id: deny
    expression: 'http.request.uri.path eq "/deny" or http.user_agent eq "café"'
    action: block
"""

RULESET2 = RULESET.replace('"/deny"', '"/deny2"')


def padded(good, size):
    """good text, then a comment, exactly `size` bytes."""
    data = good.encode()
    return data + b"#" * (size - len(data) - 1) + b"\n"


def cut_at(good, marker, keep):
    """good text cut right after the first `keep` characters of `marker`."""
    i = good.index(marker)
    return good[:i + keep].encode()


# case -> (kind -> bytes to write, or a special maker), and the message.
# Messages are exactly what the loader says (a substring of the line).
def bad_bytes(case, kind, good):
    limit = CONFIG_MAX if kind == "config" else RULESET_MAX
    if case == "empty":
        return b""
    if case == "only_comments":
        return b"# nothing here\n# nor here\n"
    if case == "truncated_mapping":
        return cut_at(good, "servers:\n      - address", 19) if kind == "config" else cut_at(good, "expression", 4)
    if case == "truncated_quote":
        return cut_at(good, '"off"', 3) if kind == "config" else cut_at(good, '"/deny', 4)
    if case == "binary":
        rnd = random.Random(84)
        return bytes(rnd.randrange(256) for _ in range(512)) + b"\0\0\0"
    if case == "utf16":
        return b"\xff\xfe" + good.encode("utf-16-le")
    if case == "latin1":
        return good.encode("latin-1")
    if case == "nul":
        data = good.encode()
        i = data.index(b"\n", data.index(b"\n") + 1) + 3  # line 3, column 3
        return data[:i] + b"\0" + data[i:]
    if case == "over_limit":
        return padded(good, limit + 1)
    raise AssertionError(case)


def expected(case, kind, path):
    noun = "the config" if kind == "config" else "the ruleset file"
    limit = CONFIG_MAX if kind == "config" else RULESET_MAX
    name = re.escape(path)
    pos = name + r":\d+:\d+: error: "
    # A ruleset file as a whole (no line of its own) is said at the config
    # key that names it, then its path.
    whole = name + r": error: " if kind == "config" else (
        r"/bulwark\.yaml:\d+:\d+: error: modules\.rules\.rulesets\[0\]: " + name + ": ")
    return {
        "empty": whole + re.escape(f"the {kind} file is empty"),
        "only_comments": whole + re.escape(
            "the config is empty; it needs at least listen, upstreams and routes"
            if kind == "config" else "the ruleset file is empty; it needs at least id and rules"),
        "truncated_mapping": (
            name + ":9:11: error: the file ends here, in the middle of a line: was it truncated?"
            if kind == "config" else
            name + ":4:9: error: truncated: the file ends inside the key that starts at line 4, "
                   "column 5"),
        "truncated_quote": (
            name + ":14:16: error: truncated: the file ends inside the quoted string that starts "
                   "at line 14, column 13"
            if kind == "config" else
            name + ":4:47: error: truncated: the file ends inside the quoted string that starts "
                   "at line 4, column 17"),
        "binary": pos + re.escape("contains a NUL byte: YAML must be text (a binary or corrupted "
                                  "file?)"),
        "utf16": name + re.escape(":1:1: error: the file is UTF-16 (it starts with a UTF-16 "
                                  "byte-order mark); save it as UTF-8"),
        "latin1": (name + (":11:36: " if kind == "config" else ":4:77: ") + re.escape(
            "error: not valid UTF-8: byte 0xE9 is not followed by the 2 continuation bytes it "
            "needs (Latin-1 or Windows-1252 text?); save the file as UTF-8")),
        "nul": name + re.escape(":3:3: error: contains a NUL byte: YAML must be text"),
        "over_limit": whole + re.escape(
            f"{noun} is {limit + 1} bytes, over the limit of {limit} bytes"),
        "dangling_symlink": whole + re.escape('is a symlink to "') + r"[^\"]*nowhere\.yaml" +
                            re.escape('", which does not exist'),
        "directory": whole + re.escape(f"is a directory, expected a {kind} file"),
        "fifo": whole + re.escape("is a FIFO (named pipe), expected a regular file"),
        "unreadable": whole + re.escape(f"cannot open {noun}: Permission denied"),
        "renamed_truncated": (
            name + ":14:16: error: truncated: the file ends inside the quoted string"
            if kind == "config" else
            name + ":4:47: error: truncated: the file ends inside the quoted string"),
    }[case]


CASES = ["empty", "only_comments", "truncated_mapping", "truncated_quote", "binary", "utf16",
         "latin1", "nul", "over_limit", "dangling_symlink", "directory", "fifo", "unreadable",
         "renamed_truncated"]


def clear(path):
    if os.path.islink(path) or os.path.isfile(path) or (os.path.exists(path) and
                                                         not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        os.rmdir(path)


def make_bad(case, kind, path, good):
    """Puts the broken thing at path (replacing what is there)."""
    if case == "unreadable" and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading")
    clear(path)
    if case == "dangling_symlink":
        os.symlink(os.path.join(os.path.dirname(path), "nowhere.yaml"), path)
    elif case == "directory":
        os.mkdir(path)
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "unreadable":
        with open(path, "w") as f:
            f.write(good)
        os.chmod(path, 0)
    elif case == "renamed_truncated":
        tmp = path + ".new"
        with open(tmp, "wb") as f:
            f.write(bad_bytes("truncated_quote", kind, good))
        os.rename(tmp, path)
    else:
        with open(path, "wb") as f:
            f.write(bad_bytes(case, kind, good))


def put_good(path, text):
    """Writes text at path by rename, as a deploy tool would."""
    clear(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())
    os.rename(tmp, path)


def cli(*args, timeout=20):
    return subprocess.run([bulwark_bin(), *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, text=True, errors="replace")


def setup_files(tmp_path, origin_address="127.0.0.1:9"):
    rules = str(tmp_path / "entry.yaml")
    conf = str(tmp_path / "bulwark.yaml")
    put_good(rules, RULESET)
    put_good(conf, CONFIG.format(origin=origin_address, rules=rules))
    return conf, rules


# ---- at start --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["config", "ruleset"])
@pytest.mark.parametrize("case", CASES)
def test_check_refuses_with_the_file_and_the_reason(tmp_path, case, kind):
    conf, rules = setup_files(tmp_path)
    assert cli("check", "-c", conf).returncode == 0
    target = conf if kind == "config" else rules
    good = open(target, encoding="utf-8").read()
    make_bad(case, kind, target, good)
    r = cli("check", "-c", conf)
    assert r.returncode == 1, r.stderr
    assert re.search(expected(case, kind, target), r.stderr), r.stderr
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr


@pytest.mark.parametrize("case", CASES)
def test_run_refuses_to_start_on_a_bad_config(tmp_path, case):
    conf, _ = setup_files(tmp_path)
    make_bad(case, "config", conf, open(conf, encoding="utf-8").read())
    r = cli("run", "-c", conf, timeout=20)
    assert r.returncode == 1, r.stderr
    assert re.search(expected(case, "config", conf), r.stderr), r.stderr
    assert "listening on" not in r.stderr


@pytest.mark.parametrize("case", CASES)
def test_run_with_a_bad_ruleset_follows_on_error(tmp_path, origin, bulwark, case):
    conf, rules = setup_files(tmp_path, origin.address)
    make_bad(case, "ruleset", rules, RULESET)
    bw = bulwark(open(conf, encoding="utf-8").read(),
                 expect_errors=["did not load", "entry.yaml"])
    err = bw.stderr()
    assert "the rules module did not load; on_error: open (no rule runs)" in err
    assert re.search(expected(case, "ruleset", rules), err), err
    assert bw.request("GET", "/deny").status == 200  # fail open: no rule runs


def test_values_exactly_at_the_limits_load(tmp_path, origin, bulwark):
    conf, rules = setup_files(tmp_path, origin.address)
    put_good(rules, padded(RULESET, RULESET_MAX))
    put_good(conf, padded(open(conf, encoding="utf-8").read(), CONFIG_MAX))
    assert os.path.getsize(conf) == CONFIG_MAX and os.path.getsize(rules) == RULESET_MAX
    r = cli("check", "-c", conf, timeout=60)
    assert r.returncode == 0, r.stderr
    bw = bulwark(open(conf, encoding="utf-8").read())
    assert bw.request("GET", "/deny").status == 403


# ---- on reload ---------------------------------------------------------------------------------

def admin(port, method, path):
    with client.connect(port, timeout=10) as c:
        c.send(client.request_bytes(method, path, host="admin"))
        return c.read_response(method=method)


def rejected_count(port):
    text = admin(port, "GET", "/metrics").body.decode()
    m = re.search(r'^bulwark_artifact_loads_total\{result="rejected"\} (\d+)$', text, re.M)
    assert m, text
    return int(m.group(1))


def wait_metric(bw, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rejected_count(bw.admin_port) >= n:
            assert rejected_count(bw.admin_port) == n
            return
        time.sleep(0.02)
    raise AssertionError(f"rejected loads did not reach {n}:\n{bw.stderr()[-3000:]}")


def wait_re(bw, pattern, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, bw.stderr())) >= n:
            return True
        time.sleep(0.02)
    return False


def start_for_reload(tmp_path, origin, bulwark):
    conf, rules = setup_files(tmp_path, origin.address)
    bw = bulwark(open(conf, encoding="utf-8").read(),
                 expect_errors=["reload rejected", "bulwark.yaml", "entry.yaml"])
    deadline = time.monotonic() + 10
    while not ADMIN_RE.search(bw.stderr()) and time.monotonic() < deadline:
        time.sleep(0.02)
    bw.admin_port = int(ADMIN_RE.search(bw.stderr()).group(2))
    return bw, bw.config_path, rules


def answers(bw):
    return (bw.request("GET", "/deny").status, bw.request("GET", "/deny2").status,
            bw.request("GET", "/").status)


@pytest.mark.parametrize("kind", ["config", "ruleset"])
def test_reload_rejects_every_bad_file_and_keeps_serving(tmp_path, origin, bulwark, kind):
    bw, conf, rules = start_for_reload(tmp_path, origin, bulwark)
    target = conf if kind == "config" else rules
    good = open(target, encoding="utf-8").read()
    before = answers(bw)
    assert before == (403, 200, 200)
    nrej = rejected_count(bw.admin_port)
    for case in CASES:
        if case == "unreadable" and os.geteuid() == 0:
            continue  # test_check_refuses_... reports the skip
        make_bad(case, kind, target, good)
        want = expected(case, kind, target)
        # POST /reload: 422 with the report.
        r = admin(bw.admin_port, "POST", "/reload")
        assert r.status == 422, (case, r.status, r.body[:500])
        body = r.json()
        assert body["accepted"] is False and re.search(want, body["report"]), (case, body)
        nrej += 1
        assert rejected_count(bw.admin_port) == nrej, case
        # SIGHUP: counted and logged. The log line is rate-limited per second,
        # so a suppressed one is asked for again in a later second.
        seen = len(re.findall(want, bw.stderr()))
        for _ in range(4):
            bw.signal(signal.SIGHUP)
            nrej += 1
            wait_metric(bw, nrej)
            if wait_re(bw, want, seen + 1, 1.2):
                break
        else:
            raise AssertionError(f"{case}: no {want!r} logged:\n{bw.stderr()[-2000:]}")
        st = admin(bw.admin_port, "GET", "/status").json()
        assert st["config"]["generation"] == 1, case
        assert re.search(want, st["last_rejection"]["error"]), (case, st["last_rejection"])
        assert rejected_count(bw.admin_port) == nrej, case
        assert answers(bw) == before, case
        assert bw.proc.poll() is None, case
    # A good file put in place by rename is taken.
    if kind == "config":
        rules2 = str(tmp_path / "entry2.yaml")
        put_good(rules2, RULESET2)
        put_good(target, good.replace(rules, rules2))
    else:
        put_good(target, RULESET2)
    r = admin(bw.admin_port, "POST", "/reload")
    assert r.status == 200 and r.json()["accepted"] is True, r.body[:500]
    deadline = time.monotonic() + 5
    while answers(bw) != (200, 403, 200) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert answers(bw) == (200, 403, 200)
    assert admin(bw.admin_port, "GET", "/status").json()["config"]["generation"] == 2


def test_file_replaced_by_rename_while_reloading(tmp_path, origin, bulwark):
    """A deploy tool renames new versions over the ruleset while reloads run:
    every reload reads one whole version, never a mix, and is accepted."""
    bw, conf, rules = start_for_reload(tmp_path, origin, bulwark)
    versions = [RULESET.encode(), RULESET2.encode()]
    stop = threading.Event()
    flips = [0]

    def flipper():
        i = 0
        while not stop.is_set():
            tmp = rules + f".v{i % 2}"
            with open(tmp, "wb") as f:
                f.write(versions[i % 2])
            os.rename(tmp, rules)
            i += 1
            flips[0] = i

    t = threading.Thread(target=flipper)
    t.start()
    try:
        for _ in range(20):
            r = admin(bw.admin_port, "POST", "/reload")
            assert r.status == 200 and r.json()["accepted"] is True, r.body[:500]
            a = answers(bw)
            assert a in ((403, 200, 200), (200, 403, 200)), a
    finally:
        stop.set()
        t.join(10)
    assert flips[0] > 20
    assert rejected_count(bw.admin_port) == 0
