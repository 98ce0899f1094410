"""A scripted origin server on raw sockets, one thread per connection.

It records every request it receives (raw head, method, target, headers,
body length and checksum), counts accepted TCP connections, and answers
according to a behaviour chosen per path (exact path, or a prefix ending in
'*') or globally. A behaviour is a function taking an Exchange and returning
True to keep the connection open for another request. Factories below build
the common ones: echo (the default), fixed, chunked, big, slow, stalls,
closes, resets, malformed responses, 1xx, 101 + byte echo."""
import hashlib
import json
import socket
import struct
import threading
import time

RECV_POLL = 0.1  # granularity of stop checks in blocking reads
IDLE_LIMIT = 60.0  # an idle connection from the proxy is dropped after this
HOLD_LIMIT = 20.0  # stalls hold the connection at most this long


class PeerGone(Exception):
    pass


class Request:
    def __init__(self, conn_id, seq, raw_head, method, target, version, headers):
        self.conn_id = conn_id
        self.seq = seq  # index of this request on its connection
        self.raw_head = raw_head
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.version = version
        self.headers = headers  # list of (name, value)
        self.body = b""
        self.body_len = 0
        self.chunks = 0  # data chunks of a chunked body, as the origin received them
        self.body_sha256 = hashlib.sha256(b"").hexdigest()
        self.complete = False  # whole body received
        self.time = time.monotonic()

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def header_names(self):
        return {n.lower() for n, _ in self.headers}

    def describe(self, server):
        return {
            "server": server,
            "method": self.method,
            "target": self.target,
            "version": self.version,
            "headers": [[n, v] for n, v in self.headers],
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
            "conn": self.conn_id,
            "seq": self.seq,
        }

    def __repr__(self):
        return f"<Request {self.method} {self.target} conn={self.conn_id} complete={self.complete}>"


class Exchange:
    """One request on one connection, as seen by a behaviour."""

    def __init__(self, origin, sock, conn_id, req, buf):
        self.origin = origin
        self.sock = sock
        self.conn_id = conn_id
        self.req = req
        self.buf = buf  # bytes already read after the head
        self.body_read = False

    # -- reading
    def _recv(self, deadline):
        while True:
            if self.origin.stopping.is_set():
                raise PeerGone("origin stopping")
            if time.monotonic() > deadline:
                raise PeerGone("timeout")
            try:
                data = self.sock.recv(262144)
            except socket.timeout:
                continue
            except OSError as e:
                raise PeerGone(str(e)) from None
            if not data:
                raise PeerGone("eof")
            self.origin._count_bytes(len(data))
            return data

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.buf += self._recv(deadline)

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise PeerGone("chunk line too long")
            self.buf += self._recv(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_body(self, timeout=IDLE_LIMIT):
        """Reads the request body per its framing; records the request as
        complete. Raises PeerGone if the peer goes away mid-body."""
        if self.body_read:
            return self.req.body
        self.body_read = True
        deadline = time.monotonic() + timeout
        req = self.req
        h = hashlib.sha256()
        te = req.header("transfer-encoding")
        cl = req.header("content-length")
        body = bytearray()
        if te is not None and "chunked" in te.lower():
            while True:
                line = self._line(deadline)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self._line(deadline) != b"":
                        pass
                    break
                self._need(size + 2, deadline)
                req.chunks += 1
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                self._progress(body)
        elif cl is not None:
            n = int(cl)
            while len(body) < n:
                if not self.buf:
                    self.buf = self._recv(deadline)
                take = self.buf[: n - len(body)]
                body += take
                self.buf = self.buf[len(take):]
                self._progress(body)
        h.update(body)
        req.body = bytes(body) if len(body) <= (1 << 20) else b""
        req.body_len = len(body)
        req.body_sha256 = h.hexdigest()
        req.complete = True
        self.origin._record_complete(req)
        return req.body

    def _progress(self, body):
        self.req.body_len = len(body)

    # -- writing
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        view = memoryview(data)
        deadline = time.monotonic() + HOLD_LIMIT
        while view:
            if self.origin.stopping.is_set() or time.monotonic() > deadline:
                raise PeerGone("stopping or send stuck")
            try:
                n = self.sock.send(view)
            except socket.timeout:
                continue
            except OSError as e:
                raise PeerGone(str(e)) from None
            view = view[n:]
            self.origin._count_sent(n)

    def send_head(self, status=200, headers=(), reason=None, version="HTTP/1.1"):
        reason = reason if reason is not None else REASONS.get(status, "Whatever")
        lines = [f"{version} {status} {reason}\r\n"]
        for n, v in headers:
            lines.append(f"{n}: {v}\r\n")
        lines.append("\r\n")
        self.send("".join(lines))

    def hold(self, limit=HOLD_LIMIT):
        """Keeps the connection open, reading and discarding, until the peer
        closes, the origin stops, or `limit` seconds pass."""
        deadline = time.monotonic() + limit
        try:
            while True:
                self._recv(deadline)
        except PeerGone:
            pass

    def sleep(self, seconds):
        """Sleeps, but wakes early when the origin stops."""
        self.origin.stopping.wait(seconds)

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


REASONS = {100: "Continue", 101: "Switching Protocols", 103: "Early Hints", 200: "OK",
           204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
           304: "Not Modified", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


def _no_body(ex, status):
    return ex.req.method == "HEAD" or status in (204, 304) or 100 <= status < 200


# ---------------------------------------------------------------- behaviours

def echo(status=200, headers=(), delay=0.0, close=False):
    """200 with a JSON body describing the request (after reading its body)."""

    def run(ex):
        ex.read_body()
        if delay:
            ex.sleep(delay)
        body = json.dumps(ex.req.describe(ex.origin.name)).encode()
        hs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        hs += list(headers)
        if close:
            hs.append(("Connection", "close"))
        ex.send_head(status, hs)
        if ex.req.method != "HEAD":
            ex.send(body)
        return not close

    return run


def fixed(status=200, headers=(), body=b"", close=False, reason=None, content_length=True):
    """A fixed response. Content-Length is added unless the status or the
    method has no body, or content_length is False (then headers decide)."""
    if isinstance(body, str):
        body = body.encode()

    def run(ex):
        ex.read_body()
        hs = list(headers)
        if content_length and not (status in (204, 304) or 100 <= status < 200):
            hs.append(("Content-Length", str(len(body))))
        if close:
            hs.append(("Connection", "close"))
        ex.send_head(status, hs, reason=reason)
        if not _no_body(ex, status):
            ex.send(body)
        return not close

    return run


def raw(data, close=True, read_body=True):
    """Sends exactly these bytes as the response."""

    def run(ex):
        if read_body:
            ex.read_body()
        ex.send(data)
        if close:
            return False
        return True

    return run


def pattern(n, offset=0):
    """Deterministic body bytes: n bytes of a 251-periodic pattern."""
    block = bytes((i * 7 + 3) % 251 for i in range(251)) * 4200  # ~1 MiB
    out = bytearray()
    pos = offset % 251
    while len(out) < n:
        out += block[pos: pos + (n - len(out))]
        pos = 0
    return bytes(out)


def big(n, chunked=False, piece=65536, headers=()):
    """A response of n pattern bytes, sent in pieces (Content-Length or chunked).
    origin.sent_bytes shows how far it got (for backpressure checks)."""
    body = pattern(min(n, 1 << 20))

    def run(ex):
        ex.read_body()
        hs = [("Content-Type", "application/octet-stream")] + list(headers)
        hs.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(n)))
        ex.send_head(200, hs)
        if ex.req.method == "HEAD":
            return True
        sent = 0
        while sent < n:
            k = min(piece, n - sent)
            start = sent % len(body)
            if start + k > len(body):
                k = len(body) - start
            data = body[start:start + k]
            ex.send(b"%x\r\n" % k + data + b"\r\n" if chunked else data)
            sent += k
        if chunked:
            ex.send(b"0\r\n\r\n")
        return True

    return run


def big_body(n):
    """The bytes big(n) sends."""
    one = pattern(min(n, 1 << 20))
    reps = n // len(one) + 1
    return (one * reps)[:n]


def chunked(body, sizes=(1, 10, 4096, 100000), trailers=(), headers=()):
    if isinstance(body, str):
        body = body.encode()

    def run(ex):
        ex.read_body()
        ex.send_head(200, list(headers) + [("Transfer-Encoding", "chunked")])
        if ex.req.method == "HEAD":
            return True
        i = k = 0
        while i < len(body):
            n = sizes[k % len(sizes)]
            k += 1
            part = body[i:i + n]
            i += n
            ex.send(b"%x\r\n" % len(part) + part + b"\r\n")
        ex.send(b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers) + b"\r\n")
        return True

    return run


def close_delimited(body, version="HTTP/1.0"):
    """No Content-Length, no chunking: the body ends when the origin closes."""
    if isinstance(body, str):
        body = body.encode()

    def run(ex):
        ex.read_body()
        ex.send_head(200, [("Content-Type", "application/octet-stream")], version=version)
        for i in range(0, len(body), 65536):
            ex.send(body[i:i + 65536])
        return False

    return run


def stall_mid_body(total, sent):
    """Promises `total` bytes, sends `sent`, then goes silent (keeps the socket
    open) until the peer gives up."""

    def run(ex):
        ex.read_body()
        ex.send_head(200, [("Content-Length", str(total))])
        ex.send(pattern(sent))
        ex.hold()
        return False

    return run


def close_mid_body(total, sent, chunked_body=False):
    def run(ex):
        ex.read_body()
        if chunked_body:
            ex.send_head(200, [("Transfer-Encoding", "chunked")])
            ex.send(b"%x\r\n" % sent + pattern(sent) + b"\r\n")
        else:
            ex.send_head(200, [("Content-Length", str(total))])
            ex.send(pattern(sent))
        return False

    return run


def reset():
    """Reads the request head, then resets the connection (RST)."""

    def run(ex):
        ex.reset()
        return False

    return run


def no_response():
    """Reads the request and never answers (until the peer closes)."""

    def run(ex):
        ex.read_body()
        ex.hold()
        return False

    return run


def drop_connections(first, then=None):
    """Closes without an answer a request that arrives on one of the first
    `first` connections accepted; behaves as `then` on later ones. To the
    proxy, such a connection is one the origin closed while it sat idle in
    the pool, found closed only once a request was written to it: the race
    with an origin's own keepalive timeout, made deterministic (an origin
    that really closes an idle connection is seen at once and dropped from
    the pool)."""
    then = then or echo()

    def run(ex):
        if ex.conn_id <= first:
            return False
        return then(ex)

    return run


def gather(n, then=None):
    """Holds each request until n requests for its path have arrived, then
    behaves as `then`: n concurrent requests leave n connections open."""
    then = then or echo()

    def run(ex):
        path = ex.req.path
        if not ex.origin.wait_for(lambda o: sum(r.path == path for r in o.heads) >= n, timeout=HOLD_LIMIT):
            raise AssertionError(f"gather: fewer than {n} requests for {path} arrived")
        return then(ex)

    return run


def slow(delay, then=None):
    """Waits `delay` seconds before the response head, then behaves as `then`."""
    then = then or echo()

    def run(ex):
        ex.read_body()
        ex.sleep(delay)
        return then(ex)

    return run


def garbage_status():
    return raw(b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok")


def huge_headers(nbytes=256 * 1024):
    def run(ex):
        ex.read_body()
        ex.send(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Big: " + b"a" * 4000 + b"\r\n"
        for _ in range(nbytes // len(line) + 1):
            ex.send(line)
        ex.send(b"Content-Length: 2\r\n\r\nok")
        return False

    return run


def cl_and_te():
    return raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")


def informational(code=103, headers=(("Link", "</style.css>; rel=preload"),), then=None):
    then = then or echo()

    def run(ex):
        ex.read_body()
        ex.send_head(code, list(headers))
        return then(ex)

    return run


def upgrade_echo(protocol="websocket"):
    """Answers 101 and then echoes every byte back until the peer closes."""

    def run(ex):
        ex.read_body()
        ex.send_head(101, [("Upgrade", protocol), ("Connection", "Upgrade")])
        if ex.buf:
            ex.send(ex.buf)
            ex.buf = b""
        deadline = time.monotonic() + HOLD_LIMIT
        try:
            while True:
                data = ex._recv(deadline)
                ex.send(data)
        except PeerGone:
            pass
        return False

    return run


# ---------------------------------------------------------------- the server

class Origin:
    def __init__(self, name="origin", port=0):
        self.name = name
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(256)
        self.listener.settimeout(RECV_POLL)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.connections = 0  # TCP connections accepted
        self.open_connections = 0
        self.heads = []  # every request whose head arrived
        self.requests = []  # requests whose body arrived whole
        self.bytes_received = 0
        self.sent_bytes = 0
        self.routes = {}
        self.default = echo()
        self.errors = []  # exceptions inside the origin (bugs in tests)
        self._socks = set()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name=f"{name}-accept")
        self._acceptor.start()

    def __repr__(self):
        return f"<Origin {self.name} {self.address}>"

    # -- configuration
    def on(self, path, behaviour):
        """Behaviour for an exact path, or for a prefix when path ends in '*'."""
        with self.lock:
            self.routes[path] = behaviour
        return self

    def set_default(self, behaviour):
        with self.lock:
            self.default = behaviour
        return self

    def _behaviour(self, path):
        with self.lock:
            if path in self.routes:
                return self.routes[path]
            best = None
            for p, b in self.routes.items():
                if p.endswith("*") and path.startswith(p[:-1]):
                    if best is None or len(p) > len(best[0]):
                        best = (p, b)
            return best[1] if best else self.default

    # -- observation
    def wait_for(self, predicate, timeout=5.0):
        """Waits until predicate(self) is true (checked under the lock)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.05))
            return True

    def requests_for(self, path):
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def heads_for(self, path):
        with self.lock:
            return [r for r in self.heads if r.path == path]

    def app_requests(self, health_path="/healthz"):
        with self.lock:
            return [r for r in self.requests if r.path != health_path]

    def _count_bytes(self, n):
        with self.lock:
            self.bytes_received += n

    def _count_sent(self, n):
        with self.lock:
            self.sent_bytes += n

    def _record_complete(self, req):
        with self.lock:
            self.requests.append(req)
            self.lock.notify_all()

    # -- lifecycle
    def stop(self):
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._acceptor.join(2)
        for t in list(self._threads):
            t.join(2)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open_connections += 1
                conn_id = self.connections
                self._socks.add(s)
                self.lock.notify_all()
            t = threading.Thread(target=self._serve, args=(s, conn_id), daemon=True,
                                 name=f"{self.name}-conn{conn_id}")
            self._threads.append(t)
            t.start()

    def _serve(self, s, conn_id):
        s.settimeout(RECV_POLL)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        seq = 0
        try:
            while not self.stopping.is_set():
                deadline = time.monotonic() + IDLE_LIMIT
                while b"\r\n\r\n" not in buf:
                    if len(buf) > 1 << 20:
                        return
                    probe = Exchange(self, s, conn_id, None, b"")
                    try:
                        buf += probe._recv(deadline)
                    except PeerGone:
                        return
                head, buf = buf.split(b"\r\n\r\n", 1)
                req = self._parse(head, conn_id, seq)
                seq += 1
                if req is None:
                    s.sendall(b"HTTP/1.1 400 Origin Cannot Parse\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                with self.lock:
                    self.heads.append(req)
                    self.lock.notify_all()
                ex = Exchange(self, s, conn_id, req, buf)
                behaviour = self._behaviour(req.path)
                try:
                    keep = behaviour(ex)
                    if keep:
                        ex.read_body()
                except PeerGone:
                    return
                if not keep or req.header("connection", "").lower() == "close":
                    return
                buf = ex.buf
        except Exception as e:  # a bug in a behaviour: keep it for the test to see
            with self.lock:
                self.errors.append(repr(e))
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                self._socks.discard(s)
                self.open_connections -= 1
                self.lock.notify_all()

    def _parse(self, head, conn_id, seq):
        try:
            lines = head.split(b"\r\n")
            method, target, version = lines[0].decode("latin-1").split(" ")
            headers = []
            for line in lines[1:]:
                n, _, v = line.decode("latin-1").partition(":")
                headers.append((n, v.strip(" \t")))
            return Request(conn_id, seq, head + b"\r\n\r\n", method, target, version, headers)
        except ValueError:
            return None


def down_address():
    """An address on which nothing listens (bind, take the port, close)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


class Blackhole:
    """A listener with backlog 0 that never accepts; its queue is filled so
    further connection attempts hang in SYN_SENT (a connect timeout)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.fillers = []
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        # Verify: a new attempt must not complete within 300ms.
        time.sleep(0.05)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", self.port))
            self.works = False
        except (socket.timeout, OSError):
            self.works = True
        finally:
            probe.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.listener.close()
