"""A recording origin for differential tests: it keeps exactly the bytes it
receives on each connection, splits them into requests with a strict
HTTP/1.1 parser of its own, and answers each request simply (200, a short
body naming what it saw). The test then compares what the proxy passed on
with what the client sent.

Unlike bwtest/origin.py it has no behaviours: it is a witness. Anything it
cannot parse strictly is itself a finding, kept in `conn.error`."""
import re
import socket
import threading
import time

RECV_POLL = 0.05
IDLE_LIMIT = 30.0
TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class Rec:
    """One request as the origin received it."""

    def __init__(self, conn, seq, raw_head, method, target, version, headers):
        self.conn = conn
        self.seq = seq
        self.raw_head = raw_head
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name bytes, value bytes)] as received
        self.framing = "none"  # none | length | chunked
        self.body = b""
        self.complete = False

    def header_all(self, name):
        name = name.lower().encode() if isinstance(name, str) else name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def header(self, name):
        vals = self.header_all(name)
        return vals[0] if vals else None

    def names(self):
        return [n.lower().decode("latin-1") for n, _ in self.headers]

    def __repr__(self):
        return (f"<Rec {self.method!r} {self.target!r} conn={self.conn.id} seq={self.seq} "
                f"framing={self.framing} body={self.body[:60]!r} complete={self.complete}>")


class RecConn:
    def __init__(self, cid):
        self.id = cid
        self.raw = bytearray()  # every byte received, in order
        self.requests = []
        self.error = None  # what the strict parser could not accept
        self.closed = False


class ParseError(Exception):
    pass


class RecordingOrigin:
    def __init__(self, name="recorder"):
        self.name = name
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(RECV_POLL)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.conns = []
        self.requests = []  # every Rec, in arrival order of heads
        self.bytes_received = 0
        self._socks = set()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name=f"{name}-accept")
        self._acceptor.start()

    # -- observation
    def mark(self):
        with self.lock:
            return len(self.requests), self.bytes_received

    def since(self, mark):
        with self.lock:
            return list(self.requests[mark[0]:])

    def bytes_since(self, mark):
        with self.lock:
            return self.bytes_received - mark[1]

    def errors(self):
        with self.lock:
            return [(c.id, c.error) for c in self.conns if c.error]

    def wait_for(self, predicate, timeout=3.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.02))
            return True

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
                conn = RecConn(len(self.conns) + 1)
                self.conns.append(conn)
                self._socks.add(s)
            t = threading.Thread(target=self._serve, args=(s, conn), daemon=True,
                                 name=f"{self.name}-conn{conn.id}")
            self._threads.append(t)
            t.start()

    # -- one connection
    def _recv(self, s, conn, deadline):
        while True:
            if self.stopping.is_set() or time.monotonic() > deadline:
                raise EOFError
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                raise EOFError from None
            if not data:
                raise EOFError
            with self.lock:
                conn.raw += data
                self.bytes_received += len(data)
                self.lock.notify_all()
            return data

    def _serve(self, s, conn):
        s.settimeout(RECV_POLL)
        buf = bytearray()
        seq = 0
        try:
            while True:
                deadline = time.monotonic() + IDLE_LIMIT

                def need(n):
                    while len(buf) < n:
                        buf.extend(self._recv(s, conn, deadline))

                def line():
                    while True:
                        i = buf.find(b"\r\n")
                        if i >= 0:
                            out = bytes(buf[:i])
                            del buf[:i + 2]
                            return out
                        if len(buf) > 65536:
                            raise ParseError("line over 64 KiB")
                        buf.extend(self._recv(s, conn, deadline))

                while b"\r\n\r\n" not in buf:
                    if len(buf) > 1 << 20:
                        raise ParseError("head over 1 MiB")
                    buf.extend(self._recv(s, conn, deadline))
                end = buf.index(b"\r\n\r\n") + 4
                head = bytes(buf[:end])
                del buf[:end]
                rec = self._parse_head(conn, seq, head)
                seq += 1
                with self.lock:
                    conn.requests.append(rec)
                    self.requests.append(rec)
                    self.lock.notify_all()
                body = bytearray()
                if rec.framing == "length":
                    n = int(rec.header("content-length"))
                    need(n)
                    body += buf[:n]
                    del buf[:n]
                elif rec.framing == "chunked":
                    while True:
                        size_line = line()
                        # bulwark re-chunks: plain lowercase hex, no leading
                        # zeros, no extensions, no trailers.
                        if not re.fullmatch(rb"0|[1-9a-f][0-9a-f]{0,15}", size_line):
                            raise ParseError(f"chunk size line {size_line[:80]!r}")
                        n = int(size_line, 16)
                        if n == 0:
                            if line() != b"":
                                raise ParseError("trailer fields passed on")
                            break
                        need(n + 2)
                        if buf[n:n + 2] != b"\r\n":
                            raise ParseError("chunk data not followed by CRLF")
                        body += buf[:n]
                        del buf[:n + 2]
                rec.body = bytes(body)
                rec.complete = True
                with self.lock:
                    self.lock.notify_all()
                text = b"origin saw %s %s %d\n" % (rec.method, rec.target, len(rec.body))
                resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Seen: " + rec.target +
                        b"\r\nContent-Length: %d\r\n\r\n" % len(text))
                if rec.method != b"HEAD":
                    resp += text
                s.sendall(resp)
                conn_tokens = b",".join(rec.header_all("connection")).lower()
                if b"close" in [t.strip() for t in conn_tokens.split(b",")]:
                    return
        except EOFError:
            pass
        except ParseError as e:
            with self.lock:
                conn.error = str(e)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                conn.closed = True
                self._socks.discard(s)
                self.lock.notify_all()

    def _parse_head(self, conn, seq, head):
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not TOKEN_RE.match(parts[0]) or parts[2] != b"HTTP/1.1":
            raise ParseError(f"request line {lines[0][:120]!r}")
        headers = []
        for ln in lines[1:]:
            if b"\n" in ln or b"\r" in ln or b"\0" in ln:
                raise ParseError(f"control byte in field line {ln[:120]!r}")
            n, sep, v = ln.partition(b":")
            if not sep or not TOKEN_RE.match(n):
                raise ParseError(f"field line {ln[:120]!r}")
            headers.append((n, v.strip(b" \t")))
        rec = Rec(conn, seq, head, parts[0], parts[1], parts[2], headers)
        te = rec.header_all("transfer-encoding")
        cl = rec.header_all("content-length")
        if te and cl:
            raise ParseError("Content-Length with Transfer-Encoding")
        if len(cl) > 1 or len(te) > 1:
            raise ParseError("repeated framing field")
        if te:
            if te[0].lower() != b"chunked":
                raise ParseError(f"Transfer-Encoding {te[0]!r}")
            rec.framing = "chunked"
        elif cl:
            if not re.fullmatch(rb"0|[1-9][0-9]{0,17}", cl[0]):
                raise ParseError(f"Content-Length {cl[0]!r}")
            rec.framing = "length"
        return rec
