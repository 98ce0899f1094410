"""The differential corpus: tricky raw requests, what the client must see and
what the origin must have received. Used by test_92_differential.py, which
sends each case through bulwark to a recording origin.

A case:
  id, cat      name and category
  raw          the exact bytes the client sends; "{T}" stands for the case's
               own target, /d/<id> (so every origin request names its case)
  expect       the status of each response the client must get, in order; a
               4xx/5xx is bulwark's own answer: short, Content-Length,
               `Connection: close`, then a clean close (EOF)
  origin       the body of each request the origin must receive, in order
               (empty tuple: the origin must receive nothing at all)
  targets      the request-target of each of them (default "{T}" each)
  headers      {name: value} the origin's first request must carry
  absent       field names the origin must not receive (on top of the
               hop-by-hop ones and whatever the client's Connection lists,
               which the test always checks)
  sent         how many requests the client sent (default len(expect))
  parts        send raw in this many pieces (split at these offsets),
               pausing between them, to test incremental parsing
  after_100    sent only once a 100 Continue arrived
  partial_head the origin may have received the head (not the whole
               request) before the refusal: a body refused mid-stream
  wait         seconds the first response may take (timeouts)
  method       the method of the requests, or one per response (a HEAD
               response has no body)

Expected outcomes follow RFC 9112/9110 and are at least as strict as the
stricter of nginx and HAProxy on each case; where bulwark is stricter than
both, the case says so.
"""

LIMITS = {
    "request_line_bytes": 512,
    "header_bytes": 2048,
    "headers": 20,
    "body_bytes": 4096,
    "client_header_timeout": "1s",
    "client_body_timeout": "500ms",
    "keepalive_timeout": "10s",
}

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t.example\r\n\r\n"


class Case:
    def __init__(self, id, cat, raw, expect, origin=(), targets=None, headers=None, absent=(),
                 sent=None, parts=(), after_100=None, partial_head=False, wait=3.0, method="GET"):
        self.id = id
        self.cat = cat
        self.target = f"/d/{id}".encode()
        self.raw = raw.replace(b"{T}", self.target)
        self.expect = tuple(expect)
        self.origin = tuple(origin)
        self.targets = tuple(t.replace(b"{T}", self.target) for t in (targets or [b"{T}"] * len(origin)))
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.absent = tuple(a.lower() for a in absent)
        self.sent = sent if sent is not None else max(1, len(expect))
        self.parts = tuple(parts)
        self.after_100 = after_100
        self.partial_head = partial_head
        self.wait = wait
        self.method = method
        assert len(self.targets) == len(self.origin), id

    def __repr__(self):
        return f"<Case {self.id}>"


def req(line, *fields, body=b"", host=True):
    """A request head from its line and field lines (CRLF added), then body."""
    if isinstance(line, str):
        line = line.encode("latin-1")
    out = line + b"\r\n"
    if host:
        out += b"Host: t.example\r\n"
    for f in fields:
        out += (f.encode("latin-1") if isinstance(f, str) else f) + b"\r\n"
    return out + b"\r\n" + body


def post(*fields, body=b""):
    return req("POST {T} HTTP/1.1", *fields, body=body)


def get(*fields, body=b""):
    return req("GET {T} HTTP/1.1", *fields, body=body)


HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
TE = "Transfer-Encoding: chunked"

CASES = []


def add(*a, **kw):
    CASES.append(Case(*a, **kw))


# ---------------------------------------------------------------- smuggling:
# both framings at once (CL.TE, TE.CL), in every order and disguise. RFC 9112
# §6.3 lets a server either refuse or let Transfer-Encoding win and close; a
# proxy cannot know which its upstream does, so all are refused (HAProxy and
# nginx >= 1.23 refuse too, or strip CL and close).
S = "smuggling"
add("cl-te", S, post("Content-Length: 6", TE, body=b"0\r\n\r\nG"), [400])
add("te-cl", S, post(TE, "Content-Length: 3", body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), [400])
add("cl-te-request-in-body", S,
    post("Content-Length: %d" % (5 + len(SMUGGLED)), TE, body=b"0\r\n\r\n" + SMUGGLED), [400])
add("te-cl-request-in-chunk", S,
    post(TE, "Content-Length: 4", body=b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"), [400])
add("cl-te-uppercase", S, post("Content-Length: 5", "Transfer-Encoding: CHUNKED", body=HELLO_CHUNKED), [400])
add("cl-te-space-before-colon", S,
    post("Content-Length: 5", "Transfer-Encoding : chunked", body=HELLO_CHUNKED), [400])
add("cl-te-xchunked", S, post("Content-Length: 5", "Transfer-Encoding: xchunked", body=b"hello"), [400])
add("cl-te-tab", S, post("Content-Length: 5", "Transfer-Encoding:\tchunked", body=HELLO_CHUNKED), [400])
add("cl-te-empty-te", S, post("Content-Length: 5", "Transfer-Encoding: ", body=b"hello"), [400])
add("cl-te-http10", S,
    req("POST {T} HTTP/1.0", "Content-Length: 5", TE, body=HELLO_CHUNKED), [400])
add("te-http10", S, req("POST {T} HTTP/1.0", TE, body=HELLO_CHUNKED), [400])
add("cl-te-folded-te", S,
    post("Content-Length: 5", "Transfer-Encoding:", " chunked", body=HELLO_CHUNKED), [400])
add("te-cl-zero-smuggle", S, post(TE, "Content-Length: 0", body=b"0\r\n\r\n" + SMUGGLED), [400])
add("cl-te-get", S, get("Content-Length: 5", TE, body=b"0\r\n\r\n"), [400])
add("cl-te-in-two-writes", S, post("Content-Length: 6", TE, body=b"0\r\n\r\nG"), [400], parts=(30, 60))

# ------------------------------------------------- obfuscated Transfer-Encoding
O = "te-obfuscation"
add("te-trailing-space", O, post("Transfer-Encoding: chunked ", body=HELLO_CHUNKED), [200], [b"hello"])
add("te-leading-tab", O, post("Transfer-Encoding:\tchunked", body=HELLO_CHUNKED), [200], [b"hello"])
add("te-uppercase", O, post("Transfer-Encoding: CHUNKED", body=HELLO_CHUNKED), [200], [b"hello"])
add("te-mixed-case", O, post("TRANSFER-encoding: cHuNkEd", body=HELLO_CHUNKED), [200], [b"hello"])
add("te-xchunked", O, post("Transfer-Encoding: xchunked", body=HELLO_CHUNKED), [400])
add("te-chunkedx", O, post("Transfer-Encoding: chunkedx", body=HELLO_CHUNKED), [400])
add("te-chunked-identity", O, post("Transfer-Encoding: chunked, identity", body=HELLO_CHUNKED), [400])
# RFC 9112 §6.1: a coding the server does not understand: 501.
add("te-identity-chunked", O, post("Transfer-Encoding: identity, chunked", body=HELLO_CHUNKED), [501])
add("te-gzip-chunked", O, post("Transfer-Encoding: gzip, chunked", body=HELLO_CHUNKED), [501])
add("te-duplicate-lines", O, post(TE, TE, body=HELLO_CHUNKED), [400])
add("te-chunked-twice-list", O, post("Transfer-Encoding: chunked, chunked", body=HELLO_CHUNKED), [400])
add("te-then-identity-line", O, post(TE, "Transfer-Encoding: identity", body=HELLO_CHUNKED), [400])
add("te-vertical-tab", O, post("Transfer-Encoding: \x0bchunked", body=HELLO_CHUNKED), [400])
add("te-parameter", O, post("Transfer-Encoding: chunked;q=1", body=HELLO_CHUNKED), [400])
add("te-quoted", O, post('Transfer-Encoding: "chunked"', body=HELLO_CHUNKED), [400])
add("te-empty-element", O, post("Transfer-Encoding: , chunked", body=HELLO_CHUNKED), [400])
add("te-non-ascii", O, post(b"Transfer-Encoding: chunk\xe9d", body=HELLO_CHUNKED), [400])
add("te-nul", O, post(b"Transfer-Encoding: chunked\x00", body=HELLO_CHUNKED), [400])
add("te-identity-only", O, post("Transfer-Encoding: identity", body=b"hello"), [400])
add("te-underscore-name", O,
    post("Content-Length: 5", "Transfer_Encoding: chunked", body=b"hello"), [200], [b"hello"],
    absent=["transfer_encoding"])
add("te-name-space-inside", O, post("Transfer Encoding: chunked", body=HELLO_CHUNKED), [400])

# ------------------------------------------------------------- Content-Length
L = "content-length"
add("cl-plus", L, post("Content-Length: +5", body=b"hello"), [400])
add("cl-minus", L, post("Content-Length: -5", body=b"hello"), [400])
add("cl-leading-space", L, post("Content-Length:    5", body=b"hello"), [200], [b"hello"])
add("cl-trailing-space", L, post("Content-Length: 5  ", body=b"hello"), [200], [b"hello"])
add("cl-leading-zeros", L, post("Content-Length: 0005", body=b"hello"), [200], [b"hello"],
    headers={"content-length": b"5"})
# 010 is 8 to a parser that takes a leading 0 for octal: goes up as 10.
add("cl-octal-looking", L, post("Content-Length: 010", body=b"0123456789"), [200], [b"0123456789"],
    headers={"content-length": b"10"})
add("cl-hex", L, post("Content-Length: 0x5", body=b"hello"), [400])
add("cl-hex-letter", L, post("Content-Length: a", body=b"helloworld"), [400])
add("cl-decimal", L, post("Content-Length: 5.0", body=b"hello"), [400])
add("cl-exponent", L, post("Content-Length: 5e0", body=b"hello"), [400])
add("cl-list-same", L, post("Content-Length: 5, 5", body=b"hello"), [400])
add("cl-list-differ", L, post("Content-Length: 5, 6", body=b"hello!"), [400])
add("cl-duplicate-same", L, post("Content-Length: 5", "Content-Length: 5", body=b"hello"), [400])
add("cl-duplicate-differ", L, post("Content-Length: 5", "Content-Length: 6", body=b"hello!"), [400])
add("cl-empty", L, post("Content-Length: ", body=b"hello"), [400])
add("cl-inner-space", L, post("Content-Length: 1 0", body=b"helloworld"), [400])
add("cl-inner-tab", L, post("Content-Length: 5\t5", body=b"hello"), [400])
add("cl-wraps-u64", L, post("Content-Length: 18446744073709551621", body=b"hello"), [400])
add("cl-overflow", L, post("Content-Length: 99999999999999999999999", body=b"hello"), [400])
add("cl-over-body-limit", L, post("Content-Length: 4097"), [413])
add("cl-non-ascii-digit", L, post("Content-Length: \xd9\xa5", body=b"hello"), [400])
add("cl-on-get", L, get("Content-Length: 5", body=b"hello"), [200], [b"hello"])
add("cl-lowercase-name", L, post("content-length: 5", body=b"hello"), [200], [b"hello"])
add("cl-zero", L, post("Content-Length: 0"), [200], [b""])
add("cl-body-is-a-request", L,
    post("Content-Length: %d" % len(SMUGGLED), body=SMUGGLED), [200], [SMUGGLED])

# ------------------------------------------------------------------ chunking
K = "chunked"
add("ch-extension", K, post(TE, body=b"5;foo=bar\r\nhello\r\n0\r\n\r\n"), [200], [b"hello"])
add("ch-extension-quoted", K, post(TE, body=b'5;foo="a;b\\"c"\r\nhello\r\n0;x\r\n\r\n'), [200], [b"hello"])
add("ch-extension-bws", K, post(TE, body=b"5 ;foo\r\nhello\r\n0\r\n\r\n"), [200], [b"hello"])
add("ch-extension-no-semicolon", K, post(TE, body=b"5 foo\r\nhello\r\n0\r\n\r\n"), [400],
    partial_head=True)
# nginx and HAProxy skip spaces after the size; bulwark refuses (stricter).
add("ch-size-trailing-space", K, post(TE, body=b"5 \r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-extension-ctl", K, post(TE, body=b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-extension-too-long", K, post(TE, body=b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), [400],
    partial_head=True)
add("ch-leading-zeros", K, post(TE, body=b"0005\r\nhello\r\n0\r\n\r\n"), [200], [b"hello"])
add("ch-leading-zeros-16-digits", K, post(TE, body=b"0000000000000005\r\nhello\r\n0\r\n\r\n"), [200],
    [b"hello"])
add("ch-17-digits", K, post(TE, body=b"00000000000000005\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-overflow", K, post(TE, body=b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-wraps-to-5", K, post(TE, body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"), [400],
    partial_head=True)
# A size over 32 bits: an upstream that truncated it to 5 would take the
# rest for a request. The upstream never sees the client's size line, and
# the size alone is over body_bytes: 413 at once (nginx answers the same).
add("ch-size-over-32-bits", K, post(TE, body=b"100000005\r\nhello" + SMUGGLED), [413], partial_head=True)
add("ch-uppercase-hex", K, post(TE, body=b"A\r\n0123456789\r\n0\r\n\r\n"), [200], [b"0123456789"])
add("ch-hex-prefix", K, post(TE, body=b"0x5\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-negative", K, post(TE, body=b"-5\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-plus", K, post(TE, body=b"+5\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-empty-size", K, post(TE, body=b"\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-size-bare-lf", K, post(TE, body=b"5\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-data-bare-lf", K, post(TE, body=b"5\r\nhello\n0\r\n\r\n"), [400], partial_head=True)
add("ch-all-bare-lf", K, post(TE, body=b"5\nhello\n0\n\n"), [400], partial_head=True)
add("ch-last-chunk-bare-lf", K, post(TE, body=b"5\r\nhello\r\n0\n\n"), [400], partial_head=True)
add("ch-size-bare-cr", K, post(TE, body=b"5\rhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-size-nul", K, post(TE, body=b"5\x00\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-data-too-long", K, post(TE, body=b"3\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-data-too-short", K, post(TE, body=b"7\r\nhello\r\n0\r\n\r\n"), [400], partial_head=True)
add("ch-no-crlf-after-data", K, post(TE, body=b"5\r\nhello0\r\n\r\n"), [400], partial_head=True)
add("ch-trailer", K, post(TE, body=b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"), [200], [b"hello"])
add("ch-trailer-content-length", K, post(TE, body=b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),
    [200], [b"hello"])
add("ch-trailer-transfer-encoding", K,
    post(TE, body=b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), [200], [b"hello"])
add("ch-trailer-obs-fold", K, post(TE, body=b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"), [400],
    partial_head=True)
add("ch-trailer-no-colon", K, post(TE, body=b"5\r\nhello\r\n0\r\nX-T\r\n\r\n"), [400], partial_head=True)
add("ch-trailer-bare-lf", K, post(TE, body=b"5\r\nhello\r\n0\r\nX-T: a\n\r\n"), [400], partial_head=True)
add("ch-missing-final-crlf", K, post(TE, body=b"5\r\nhello\r\n0\r\n"), [408], partial_head=True, wait=4)
add("ch-missing-last-chunk", K, post(TE, body=b"5\r\nhello\r\n"), [408], partial_head=True, wait=4)
add("ch-request-inside-data", K,
    post(TE, body=b"%x\r\n" % (7 + len(SMUGGLED)) + b"\r\n0\r\n\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
    [200], [b"\r\n0\r\n\r\n" + SMUGGLED])
add("ch-one-byte-chunks", K, post(TE, body=b"".join(b"1\r\n%c\r\n" % c for c in b"abcdefghij") + b"0\r\n\r\n"),
    [200], [b"abcdefghij"])
add("ch-split-everywhere", K, post(TE, body=b"5\r\nhello\r\n0\r\n\r\n"), [200], [b"hello"],
    parts=(10, 40, 41, 60, 62, 63, 66, 67, 70))
add("ch-over-body-limit", K, post(TE, body=b"1001\r\n" + b"x" * 4097 + b"\r\n0\r\n\r\n"), [413],
    partial_head=True)

# ------------------------------------------------------------- field lines
F = "fields"
add("obs-fold", F, get("X-A: a", " b"), [400])
add("obs-fold-tab", F, get("X-A: a", "\tb"), [400])
add("space-before-colon", F, get("X-A : a"), [400])
add("tab-before-colon", F, get("X-A\t: a"), [400])
add("nul-in-value", F, get(b"X-A: a\x00b"), [400])
add("cr-in-value", F, get(b"X-A: a\rb"), [400])
add("lf-in-value", F, get(b"X-A: a\nb"), [400])
add("del-in-value", F, get(b"X-A: a\x7fb"), [400])
add("non-ascii-value", F, get(b"X-A: caf\xc3\xa9 \xff"), [200], [b""], headers={"x-a": b"caf\xc3\xa9 \xff"})
add("non-ascii-name", F, get(b"X-\xc3\xa9: a"), [400])
add("empty-name", F, get(": a"), [400])
add("name-with-slash", F, get("X/A: a"), [400])
add("name-with-at", F, get("X@A: a"), [400])
add("line-without-colon", F, get("X-A a"), [400])
add("empty-value", F, get("X-A:   "), [200], [b""], headers={"x-a": b""})
add("leading-space-first-field", F, b"GET {T} HTTP/1.1\r\n Host: t.example\r\n\r\n", [400])
add("too-many-fields-at-limit", F, get(*[f"X-F{i}: {i}" for i in range(19)]), [200], [b""],
    headers={"x-f18": b"18"})
add("too-many-fields-over-limit", F, get(*[f"X-F{i}: {i}" for i in range(20)]), [431])

# -------------------------------------------------------------------- Host
H = "host"
add("host-duplicate", H, get("Host: t.example"), [400])
add("host-duplicate-differ", H, get("Host: evil.example"), [400])
add("host-missing-11", H, req("GET {T} HTTP/1.1", host=False), [400])
add("host-empty", H, req("GET {T} HTTP/1.1", "Host: ", host=False), [400])
add("host-space", H, req("GET {T} HTTP/1.1", "Host: a b", host=False), [400])
add("host-userinfo", H, req("GET {T} HTTP/1.1", "Host: u@a.example", host=False), [400])
add("host-path", H, req("GET {T} HTTP/1.1", "Host: a.example/x", host=False), [400])
add("host-comma", H, req("GET {T} HTTP/1.1", "Host: a.example, b.example", host=False), [400])
add("host-bad-port", H, req("GET {T} HTTP/1.1", "Host: a.example:99999", host=False), [400])
add("host-ipv6", H, req("GET {T} HTTP/1.1", "Host: [::1]:8080", host=False), [200], [b""],
    headers={"host": b"[::1]:8080"})
add("http10-no-host", H, req("GET {T} HTTP/1.0", host=False), [200], [b""])
add("abs-form-host-mismatch", H,
    req("GET http://a.example{T}?q=1 HTTP/1.1", "Host: b.example", host=False), [200], [b""],
    targets=[b"{T}?q=1"], headers={"host": b"a.example"})
add("abs-form-https-no-path", H, req("GET https://a.example HTTP/1.1", "Host: b.example", host=False),
    [200], [b""], targets=[b"/"], headers={"host": b"a.example"})
add("abs-form-uppercase-scheme", H, req("GET HTTP://A.example{T} HTTP/1.1", "Host: b.example", host=False),
    [200], [b""],
    headers={"host": b"A.example"})
add("abs-form-userinfo", H, req("GET http://u:p@a.example{T} HTTP/1.1"), [400])
add("abs-form-other-scheme", H, req("GET ftp://a.example{T} HTTP/1.1"), [400])
add("abs-form-empty-authority", H, req("GET http://{T} HTTP/1.1"), [400])

# ------------------------------------------------------------ request line
R = "request-line"
add("http09", R, b"GET {T}\r\n\r\n", [400])
add("http09-line-only", R, b"GET {T}\r\n", [408], wait=4)
add("version-1.2", R, req("GET {T} HTTP/1.2"), [505])
add("version-2.0", R, req("GET {T} HTTP/2.0"), [505])
add("version-lowercase", R, req("GET {T} http/1.1"), [400])
add("version-1.10", R, req("GET {T} HTTP/1.10"), [400])
add("version-trailing-space", R, req("GET {T} HTTP/1.1 "), [400])
add("double-space", R, req("GET  {T} HTTP/1.1"), [400])
add("tab-separator", R, req("GET\t{T} HTTP/1.1"), [400])
add("leading-space", R, req(" GET {T} HTTP/1.1"), [400])
add("space-in-target", R, req("GET {T} x HTTP/1.1"), [400])
# nginx refuses a method that is not upper case; RFC 9110 allows it, but an
# origin that upper-cases it would serve what no method rule saw.
add("method-lowercase", R, req("get {T} HTTP/1.1"), [400])
add("method-unknown", R, req("FROB {T} HTTP/1.1"), [200], [b""])
add("method-bad-char", R, req("GE(T {T} HTTP/1.1"), [400])
add("target-non-ascii", R, req(b"GET {T}\xc3\xa9 HTTP/1.1"), [400])
add("target-del", R, req(b"GET {T}\x7f HTTP/1.1"), [400])
add("target-asterisk-get", R, req("GET * HTTP/1.1"), [400])
add("target-asterisk-options", R, req("OPTIONS * HTTP/1.1"), [200], [b""], targets=[b"*"])
add("leading-empty-lines", R, b"\r\n\r\n" + get(), [200], [b""])
add("bare-lf-everywhere", R, b"GET {T} HTTP/1.1\nHost: t.example\n\n", [400])
add("bare-lf-after-request-line", R, b"GET {T} HTTP/1.1\nHost: t.example\r\n\r\n", [400])
add("bare-lf-last-line", R, b"GET {T} HTTP/1.1\r\nHost: t.example\r\n\n", [400])
add("bare-cr-line-end", R, b"GET {T} HTTP/1.1\rHost: t.example\r\n\r\n", [400])
# Limits: at the limit passes, one byte past is refused. The request line
# limit (512) counts the line with its CRLF; the head limit (2048) all of it.
_pad = 512 - len(b"GET  HTTP/1.1\r\n") - len(b"/d/request-line-at-limit")
add("request-line-at-limit", R, req(b"GET {T}" + b"a" * _pad + b" HTTP/1.1"), [200], [b""],
    targets=[b"{T}" + b"a" * _pad])
_pad = 512 - len(b"GET  HTTP/1.1\r\n") - len(b"/d/request-line-over-limit") + 1
add("request-line-over-limit", R, req(b"GET {T}" + b"a" * _pad + b" HTTP/1.1"), [414])
add("request-line-endless", R, b"GET {T}" + b"a" * 3000, [414])
_fixed = len(get().replace(b"{T}", b"/d/head-at-limit")) + len(b"X-Pad: \r\n")
add("head-at-limit", R, get("X-Pad: " + "p" * (2048 - _fixed)), [200], [b""])
_fixed = len(get().replace(b"{T}", b"/d/head-over-limit")) + len(b"X-Pad: \r\n")
add("head-over-limit", R, get("X-Pad: " + "p" * (2049 - _fixed)), [431])
add("head-endless-field", R, b"GET {T} HTTP/1.1\r\nHost: t.example\r\nX-Long: " + b"v" * 4000, [431])

# -------------------------------------------------------------- pipelining
P = "pipeline"
add("pipe-two-gets", P, req("GET {T}/1 HTTP/1.1") + req("GET {T}/2 HTTP/1.1"), [200, 200],
    [b"", b""], targets=[b"{T}/1", b"{T}/2"])
add("pipe-post-cl-then-get", P,
    req("POST {T}/1 HTTP/1.1", "Content-Length: 5", body=b"hello") + req("GET {T}/2 HTTP/1.1"),
    [200, 200], [b"hello", b""], targets=[b"{T}/1", b"{T}/2"])
add("pipe-post-chunked-then-get", P,
    req("POST {T}/1 HTTP/1.1", TE, body=HELLO_CHUNKED) + req("GET {T}/2 HTTP/1.1"),
    [200, 200], [b"hello", b""], targets=[b"{T}/1", b"{T}/2"])
add("pipe-get-then-smuggle-attempt", P,
    req("GET {T}/1 HTTP/1.1") + req("POST {T}/2 HTTP/1.1", "Content-Length: 6", TE, body=b"0\r\n\r\nG"),
    [200, 400], [b""], targets=[b"{T}/1"])
add("pipe-close-stops-the-rest", P,
    req("GET {T}/1 HTTP/1.1", "Connection: close") + req("GET {T}/2 HTTP/1.1"),
    [200], [b""], targets=[b"{T}/1"], sent=2)
add("pipe-head-then-get", P, req("HEAD {T}/1 HTTP/1.1") + req("GET {T}/2 HTTP/1.1"), [200, 200],
    [b"", b""], targets=[b"{T}/1", b"{T}/2"], method=("HEAD", "GET"))
add("pipe-get-with-body-then-get", P,
    req("GET {T}/1 HTTP/1.1", "Content-Length: %d" % len(SMUGGLED), body=SMUGGLED) + req("GET {T}/2 HTTP/1.1"),
    [200, 200], [SMUGGLED, b""], targets=[b"{T}/1", b"{T}/2"])
add("pipe-http10-keepalive", P,
    req("GET {T}/1 HTTP/1.0", "Connection: keep-alive") + req("GET {T}/2 HTTP/1.0"),
    [200, 200], [b"", b""], targets=[b"{T}/1", b"{T}/2"])
add("pipe-split-mid-second", P, req("GET {T}/1 HTTP/1.1") + req("GET {T}/2 HTTP/1.1"), [200, 200],
    [b"", b""], targets=[b"{T}/1", b"{T}/2"], parts=(50, 70))

# ----------------------------------------------- Connection and hop-by-hop
C = "hop-by-hop"
add("conn-lists-custom", C, get("Connection: X-Secret", "X-Secret: 1"), [200], [b""])
add("conn-lists-custom-case", C, get("Connection: x-SECRET", "X-Secret: 1"), [200], [b""])
add("conn-lists-two-fields", C, get("Connection: X-A", "Connection: X-B", "X-A: 1", "X-B: 2", "X-C: 3"),
    [200], [b""], headers={"x-c": b"3"})
add("conn-lists-many", C,
    get("Connection: " + ", ".join(f"X-H{i}" for i in range(12)), *[f"X-H{i}: {i}" for i in range(12)]),
    [200], [b""])
add("conn-keep-alive-field", C, get("Connection: keep-alive", "Keep-Alive: timeout=5"), [200], [b""])
add("conn-proxy-connection", C, get("Proxy-Connection: keep-alive"), [200], [b""])
add("conn-te-trailers", C, get("TE: trailers"), [200], [b""])
add("conn-trailer-field", C, get("Trailer: X-T"), [200], [b""])
add("conn-upgrade-without-connection", C, get("Upgrade: websocket"), [200], [b""])
add("conn-close-upgrade", C,
    get("Connection: close, Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13"), [200], [b""])
add("conn-h2c-upgrade", C,
    get("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
    [200], [b""], absent=["upgrade"])
add("conn-lists-authorization", C, get("Connection: Authorization", "Authorization: Basic eDp5"), [200],
    [b""])
add("conn-lists-content-length", C, post("Connection: Content-Length", "Content-Length: 5", body=b"hello"),
    [200], [b"hello"])
add("conn-lists-transfer-encoding", C, post("Connection: Transfer-Encoding", TE, body=HELLO_CHUNKED),
    [200], [b"hello"])
add("conn-lists-host", C, get("Connection: Host"), [200], [b""], headers={"host": b"t.example"})
add("conn-lists-x-forwarded-for", C, get("Connection: X-Forwarded-For", "X-Forwarded-For: 1.2.3.4"),
    [200], [b""], headers={"x-forwarded-for": b"127.0.0.1"})
add("xff-spoof", C, get("X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: https"), [200], [b""],
    headers={"x-forwarded-for": b"127.0.0.1", "x-forwarded-proto": b"http"})
add("underscore-xff", C, get("X_Forwarded_For: 1.2.3.4", "X_Real_IP: 1.2.3.4"), [200], [b""],
    absent=["x_forwarded_for", "x_real_ip"], headers={"x-forwarded-for": b"127.0.0.1"})
add("underscore-content-length", C, get("Content_Length: 5", body=b""), [200], [b""],
    absent=["content_length"])
add("conn-h2c-upgrade-with-websocket", C,
    get("Connection: Upgrade", "Upgrade: websocket, h2c"), [200], [b""], absent=["upgrade"])
add("conn-empty-elements", C, get("Connection: , ,X-Secret,", "X-Secret: 1"), [200], [b""])

# ------------------------------------------------------------------ Expect
E = "expect"
add("expect-100-body-with-head", E, post("Expect: 100-continue", "Content-Length: 5", body=b"hello"),
    [200], [b"hello"])
add("expect-100-waits", E, post("Expect: 100-continue", "Content-Length: 5"), [200], [b"hello"],
    after_100=b"hello")
add("expect-100-chunked-waits", E, post("Expect: 100-continue", TE), [200], [b"hello"],
    after_100=HELLO_CHUNKED)
add("expect-100-mixed-case", E, post("Expect: 100-Continue", "Content-Length: 5", body=b"hello"),
    [200], [b"hello"])
add("expect-other", E, post("Expect: 200-ok", "Content-Length: 5", body=b"hello"), [417])
add("expect-empty", E, post("Expect: ", "Content-Length: 5", body=b"hello"), [417])
add("expect-list", E, post("Expect: 100-continue, foo", "Content-Length: 5", body=b"hello"), [417])
add("expect-100-no-body", E, get("Expect: 100-continue"), [200], [b""])
add("expect-100-http10", E,
    req("POST {T} HTTP/1.0", "Expect: 100-continue", "Content-Length: 5", body=b"hello"), [200],
    [b"hello"])
