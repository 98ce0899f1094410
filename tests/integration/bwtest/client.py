"""Raw HTTP/1.1 client: exact bytes out, strict parsing in, every wait bounded.

Tests talk to the proxy through this instead of http.client so they control
every byte (smuggling cases, pipelining, stalls) and can tell a clean close
(EOF) from a reset."""
import socket
import time

DEFAULT_TIMEOUT = 5.0


class Closed(Exception):
    """The peer closed (EOF) or reset before a complete message arrived."""

    def __init__(self, how, partial=b""):
        super().__init__(f"connection {how} after {len(partial)} bytes: {partial[:200]!r}")
        self.how = how
        self.partial = partial


class Timeout(Exception):
    pass


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.raw_head = raw_head
        self.chunked = False

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def connection_tokens(self):
        toks = set()
        for v in self.header_all("connection"):
            toks.update(t.strip().lower() for t in v.split(",") if t.strip())
        return toks

    def json(self):
        import json

        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:120]!r}>"


def connect(port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, source=None, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect((host, port))
    return Conn(s)


class Conn:
    """One client connection with a read buffer shared by successive
    responses (so pipelined responses parse one after another)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads more bytes into buf. Raises Closed on EOF/reset, Timeout at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout(f"no data before deadline; have {self.buf[:200]!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise Timeout(f"no data before deadline; have {self.buf[:200]!r}") from None
        except ConnectionResetError:
            raise Closed("reset", self.buf) from None
        if not data:
            self.eof = True
            raise Closed("eof", self.buf)
        self.buf += data

    def read_head(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise AssertionError("response head over 1 MiB")
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise AssertionError(f"bad status line {lines[0]!r}")
        version = parts[0].decode()
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            if b"\n" in line or b"\r" in line:
                raise AssertionError(f"bare CR/LF in response head line {line!r}")
            name, sep, value = line.partition(b":")
            if not sep:
                raise AssertionError(f"bad header line {line!r}")
            if name != name.strip() or not name:
                raise AssertionError(f"whitespace around header name {line!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return Response(version, status, reason, headers, b"", head + b"\r\n\r\n")

    def read_exact(self, n, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_response(self, method="GET", timeout=DEFAULT_TIMEOUT, skip_1xx=True, informational=None):
        """Reads one complete response. 1xx responses (other than 101) are
        skipped, or appended to `informational` if a list is given."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.read_head(max(0.001, deadline - time.monotonic()))
            if 100 <= resp.status < 200 and resp.status != 101:
                if informational is not None:
                    informational.append(resp)
                if skip_1xx:
                    continue
                return resp
            break
        left = lambda: max(0.001, deadline - time.monotonic())  # noqa: E731
        te = resp.header("transfer-encoding")
        cl = resp.header_all("content-length")
        if method == "HEAD" or resp.status in (101, 204, 304):
            return resp
        if te is not None:
            assert not cl, f"response with both Transfer-Encoding and Content-Length: {resp!r}"
            assert te.lower().replace(" ", "").endswith("chunked"), f"bad TE {te}"
            resp.chunked = True
            resp.body = self.read_chunked(left())
        elif cl:
            assert len(cl) == 1, f"several Content-Length: {cl}"
            resp.body = self.read_exact(int(cl[0]), left())
        else:
            # Close-delimited.
            try:
                while True:
                    self._fill(deadline)
            except Closed as c:
                if c.how != "eof":
                    raise
            resp.body, self.buf = self.buf, b""
        return resp

    def read_chunked(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        left = lambda: max(0.001, deadline - time.monotonic())  # noqa: E731
        parts = []
        while True:
            line = self.read_line(left())
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.read_line(left()) != b"":
                    pass
                return b"".join(parts)
            parts.append(self.read_exact(size, left()))
            if self.read_exact(2, left()) != b"\r\n":
                raise AssertionError("chunk data not followed by CRLF")

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """Waits for the peer to close; returns (how, extra_bytes) where how is
        'eof', 'reset' or 'open' (still open at the deadline)."""
        deadline = time.monotonic() + timeout
        start = len(self.buf)
        try:
            while True:
                self._fill(deadline)
        except Closed as c:
            return c.how, self.buf[start:]
        except Timeout:
            return "open", self.buf[start:]

    def read_all_until_close(self, timeout=DEFAULT_TIMEOUT):
        """Everything the peer sends until it closes: (bytes, how)."""
        how, _ = self.wait_closed(timeout)
        data, self.buf = self.buf, b""
        return data, how


def request_bytes(method="GET", path="/", headers=None, body=b"", host="test.example", version="HTTP/1.1"):
    """Builds a well-formed request. headers: list of pairs (Host is added first
    unless given); Content-Length added for a non-empty body unless a
    Content-Length or Transfer-Encoding is given."""
    headers = list(headers or [])
    names = {n.lower() for n, _ in headers}
    out = [f"{method} {path} {version}\r\n"]
    if host is not None and "host" not in names:
        out.append(f"Host: {host}\r\n")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    for n, v in headers:
        out.append(f"{n}: {v}\r\n")
    out.append("\r\n")
    if isinstance(body, str):
        body = body.encode()
    return "".join(out).encode("latin-1") + body


def request(port, method="GET", path="/", headers=None, body=b"", host="test.example", timeout=DEFAULT_TIMEOUT, source=None):
    """One request on a new connection; returns the Response."""
    with connect(port, timeout=timeout, source=source) as c:
        c.send(request_bytes(method, path, headers, body, host))
        return c.read_response(method, timeout=timeout)


def chunk_encode(body, sizes=(7, 1000, 1, 65536), ext=False, trailers=None):
    out = []
    i = 0
    k = 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        piece = body[i:i + n]
        i += n
        e = b";name=value" if ext and k % 2 else b""
        out.append(b"%x" % len(piece) + e + b"\r\n" + piece + b"\r\n")
    out.append(b"0\r\n")
    for n, v in (trailers or []):
        out.append(f"{n}: {v}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)
