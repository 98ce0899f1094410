"""Runs a bulwark process for a test: writes its config, starts it, learns
the ports it bound from its `listening on` lines, and stops it by PID,
checking the exit status and the error log."""
import json
import os
import re
import signal
import subprocess
import time

from . import client, yamlish

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")
LISTEN_RE = re.compile(r"(?<!admin )listening on (127\.0\.0\.1:(\d+))")
ADMIN_RE = re.compile(r"admin listening on (127\.0\.0\.1:(\d+))")
ERROR_LINE_RE = re.compile(r"(^|\s)error:\s")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def bulwark_bin():
    b = os.environ.get("BULWARK_BIN")
    if not b:
        here = os.path.dirname(os.path.abspath(__file__))
        b = os.path.normpath(os.path.join(here, "..", "..", "..", "build", "release", "bulwark"))
    # Absolute: bulwark runs with its test directory as working directory.
    return os.path.abspath(b)


def default_config(upstream_addresses, access_log=None, **over):
    cfg = {
        "listen": [{"address": "127.0.0.1:0"}],
        "workers": 1,
        "upstreams": {
            "app": {"servers": [{"address": a} for a in upstream_addresses]},
        },
        "routes": [{"upstream": "app"}],
    }
    if access_log is not None:
        cfg["access_log"] = access_log
    cfg.update(over)
    return cfg


class Bulwark:
    def __init__(self, tmp_path, config, name="bulwark", expect_errors=(), nlisten=None, preexec_fn=None,
                 args=()):
        self.tmp_path = tmp_path
        self.dir = tmp_path / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.access_log_path = str(self.dir / "access.log")
        if isinstance(config, dict):
            config = dict(config)
            config.setdefault("access_log", self.access_log_path)
            # BULWARK_IO_ENGINE=epoll runs a suite on the other engine
            # (scripts/check.sh does, for a subset).
            if os.environ.get("BULWARK_IO_ENGINE"):
                config.setdefault("io_engine", os.environ["BULWARK_IO_ENGINE"])
            self.config = config
            if config.get("access_log") not in ("off", "-"):
                self.access_log_path = config["access_log"]
            text = yamlish.dump(config) + "\n"
            nlisten = nlisten or len(config.get("listen", [])) or 1
        else:
            text = config
            self.config = None
            nlisten = nlisten or 1
        self.config_path = str(self.dir / "bulwark.yaml")
        with open(self.config_path, "w") as f:
            f.write(text)
        self.stdout_path = str(self.dir / "stdout.log")
        self.stderr_path = str(self.dir / "stderr.log")
        self.expected_errors = list(expect_errors)
        self.stopped = False
        self.exit_code = None
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [bulwark_bin(), "run", "-c", self.config_path, *args],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, cwd=str(self.dir),
            preexec_fn=preexec_fn,  # e.g. a resource limit set in the child before exec
        )
        self.pid = self.proc.pid
        self.addresses = self._wait_listening(nlisten)
        self.port = int(self.addresses[0].rsplit(":", 1)[1])
        self.ports = [int(a.rsplit(":", 1)[1]) for a in self.addresses]
        self.admin_port = None
        if isinstance(config, dict) and config.get("admin"):
            deadline = time.monotonic() + START_TIMEOUT
            while self.admin_port is None and time.monotonic() < deadline:
                m = ADMIN_RE.search(self.stderr())
                if m:
                    self.admin_port = int(m.group(2))
                else:
                    time.sleep(0.01)
            assert self.admin_port, f"no admin listener reported:\n{self.stderr()}"

    def _wait_listening(self, n):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = []
            for m in LISTEN_RE.finditer(self.stderr()):
                if m.group(1) not in found:
                    found.append(m.group(1))
            if len(found) >= n:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"bulwark exited with {self.proc.returncode} before listening:\n{self.stderr()}")
            time.sleep(0.01)
        self.kill()
        raise AssertionError(f"bulwark did not report listening within {START_TIMEOUT}s:\n{self.stderr()}")

    # -- observation
    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_lines(self):
        return self.stderr().splitlines()

    def access_log_lines(self, wait_for=0, timeout=3.0):
        """Parsed JSON lines of the access log; waits (bounded) until at least
        `wait_for` lines are there, since the log may be written after the
        response."""
        deadline = time.monotonic() + timeout
        while True:
            lines = []
            try:
                with open(self.access_log_path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                text = ""
            complete = text.split("\n")[:-1]  # a last line without \n is still being written
            for line in complete:
                if line.strip():
                    lines.append(json.loads(line))
            if len(lines) >= wait_for or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def expect_error(self, substring):
        self.expected_errors.append(substring)

    # -- requests
    def request(self, method="GET", path="/", headers=None, body=b"", host="test.example", timeout=5.0, source=None):
        return client.request(self.port, method, path, headers, body, host, timeout, source)

    def connect(self, timeout=5.0, source=None, rcvbuf=None):
        return client.connect(self.port, timeout=timeout, source=source, rcvbuf=rcvbuf)

    # -- lifecycle
    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def reload(self, expect="is live", timeout=5.0):
        """SIGHUP, then wait for one more `expect` in the error log (a
        generation going live, or "reload rejected")."""
        n = self.stderr().count(expect)
        self.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stderr().count(expect) > n:
                return
            time.sleep(0.02)
        raise AssertionError(f"no {expect!r} after SIGHUP:\n{self.stderr()[-2000:]}")

    def wait_exit(self, timeout):
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._close_files()

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def stop(self):
        """SIGTERM, wait, then check exit status and the error log."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                self._close_files()
                raise AssertionError(f"bulwark did not exit within {STOP_TIMEOUT}s of SIGTERM:\n{self.stderr()[-3000:]}")
        else:
            self.exit_code = self.proc.returncode
        self._close_files()
        self.check_log()
        assert self.exit_code == 0, f"bulwark exited with {self.exit_code}:\n{self.stderr()[-3000:]}"

    def unexpected_log_lines(self):
        bad = []
        for line in self.stderr_lines():
            if any(m in line for m in SANITIZER_MARKERS):
                bad.append(line)
            elif ERROR_LINE_RE.search(line) and not any(e in line for e in self.expected_errors):
                bad.append(line)
        return bad

    def check_log(self):
        bad = self.unexpected_log_lines()
        assert not bad, "unexpected lines in bulwark's error log:\n" + "\n".join(bad[:30]) + \
            "\n--- full stderr tail ---\n" + self.stderr()[-3000:]
