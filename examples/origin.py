#!/usr/bin/python3
"""The demo origin behind bulwark in `make run` (examples/bulwark.yaml).

Python standard library only. HTTP/1.1 with keepalive, one thread per
connection, on 127.0.0.1:8081 by default (--port, --host).

  GET /         a short text page: "hello from the demo origin", the path and
                the headers it received (so you can see what bulwark added,
                removed or rewrote)
  ANY /api/...  JSON echoing the method, path, query, headers and body size
  GET /healthz  200 "ok" (for bulwark's health checks)
  anything else 404 as JSON
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY = 1 << 20  # the demo reads at most 1 MiB of a request body


def headers_dict(headers):
    """Header names as received; a repeated header becomes a list."""
    out = {}
    for k, v in headers.items():
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = v
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keepalive, Content-Length on every answer
    def version_string(self):
        return "demo-origin/1"

    def send(self, status, body, content_type):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_body(self):
        """Reads (and so drains, keeping the connection usable) the body."""
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            return b""
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(n)

    def handle_any(self):
        body = self.read_body()
        url = urlsplit(self.path)
        path = url.path
        if path == "/healthz":
            self.send(200, "ok\n", "text/plain; charset=utf-8")
        elif path == "/api" or path.startswith("/api/"):
            echo = {
                "origin": "demo",
                "method": self.command,
                "path": path,
                "query": url.query,
                "headers": headers_dict(self.headers),
                "body_bytes": len(body),
                "client": f"{self.client_address[0]}:{self.client_address[1]}",
            }
            self.send(200, json.dumps(echo, indent=2) + "\n", "application/json")
        elif path == "/":
            lines = [
                "hello from the demo origin",
                "",
                f"you asked for: {self.command} {self.path}",
                f"from: {self.client_address[0]}:{self.client_address[1]}",
                "headers received:",
            ]
            lines += [f"  {k}: {v}" for k, v in self.headers.items()]
            lines += ["", "try /api/hello for JSON, /healthz for a health check", ""]
            self.send(200, "\n".join(lines), "text/plain; charset=utf-8")
        else:
            self.send(404, json.dumps({"error": "not found", "path": path}) + "\n",
                      "application/json")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any

    def log_message(self, fmt, *args):
        sys.stderr.write(f"origin: {self.address_string()} {fmt % args}\n")


def main():
    ap = argparse.ArgumentParser(description="demo origin for bulwark's `make run`")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = ap.parse_args()
    if args.quiet:
        Handler.log_message = lambda *a: None
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    try:
        srv = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as e:
        print(f"origin: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"origin: listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
