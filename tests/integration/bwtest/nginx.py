"""nginx from Debian as a real origin for the integration tests."""
import os
import signal
import socket
import subprocess
import time

from . import origin as origin_mod


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


NGINX_HEAD = """
worker_processes 1;
user root root;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000;
"""

# The http block is left open: a template adds its server and "}}".
NGINX_CONF = NGINX_HEAD + """    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        location = /ok {{ return 200 "nginx ok\\n"; }}
        location = /created {{ return 201 "made\\n"; }}
        location /static/ {{ }}
    }}
}}
"""


class Nginx:
    """nginx from Debian as an origin: the template is formatted with the
    prefix, a free port and **extra (TLS tests pass their certificate)."""

    def __init__(self, prefix, template=NGINX_CONF, **extra):
        self.prefix = prefix
        for d in ("html/static", "tmp", "logs"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        self.small = origin_mod.pattern(1024)
        self.large = origin_mod.pattern(1 << 20, offset=17)
        with open(os.path.join(prefix, "html/static/1k.bin"), "wb") as f:
            f.write(self.small)
        with open(os.path.join(prefix, "html/static/1m.bin"), "wb") as f:
            f.write(self.large)
        self.proc = None
        last = ""
        for _ in range(5):
            self.port = _free_port()
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(template.format(prefix=prefix, port=self.port, **extra))
            self.stderr_path = os.path.join(prefix, "stderr.log")
            err = open(self.stderr_path, "wb")
            self.proc = subprocess.Popen(
                ["/usr/sbin/nginx", "-p", prefix, "-c", conf, "-e", "stderr",
                 "-g", f"daemon off; pid {prefix}/nginx.pid; error_log stderr;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.close()
            if self._wait_up():
                self.address = f"127.0.0.1:{self.port}"
                return
            last = open(self.stderr_path).read()
            self.stop()
        raise AssertionError(f"nginx did not start: {last}")

    def _wait_up(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
