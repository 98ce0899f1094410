"""Differential check of the request parser: every case of
corpus/differential.py goes through one bulwark to a recording origin
(bwtest/recorder.py), and what the client got is compared with what the
origin received. Whatever a case expects, every case also asserts:

  - the origin never got more requests than the client sent, never one the
    client did not send (no body taken for a request, no /smuggled);
  - every origin request is framed one way only and its body is exactly the
    body the client meant (the strict recorder refuses anything else);
  - no hop-by-hop field, and no field the client's Connection lists, was
    passed on; one Host, one X-Forwarded-For;
  - a refused request gets its status from bulwark (short body,
    Content-Length, Connection: close) and a clean close (EOF), and the
    origin saw nothing of it (for a body refused mid-stream: no complete
    request, at most its head, and that upstream connection is closed);
  - an accepted request leaves the client connection in step: a probe sent
    after it gets the probe's own response.

One proxy and one origin serve all cases, in order; each case uses a new
client connection and tells its requests apart by target (/d/<case id>)."""
import time

import pytest

from bwtest.checks import assert_proxy_error
from bwtest.client import Closed, Timeout, request_bytes
from bwtest.proc import Bulwark, default_config
from bwtest.recorder import RecordingOrigin
from corpus.differential import CASES, LIMITS

# Never forwarded (RFC 9110 §7.6.1, RFC 9112 §9.6), whatever the client sends.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect",
              "http2-settings"}
# Fields bulwark writes itself: a client's Connection cannot remove them.
PROXY_OWNED = {"host", "content-length", "transfer-encoding", "x-forwarded-for", "x-forwarded-proto"}
SETTLE = 0.03  # after the expected requests arrived, how long to watch for extra ones


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    origin = RecordingOrigin()
    cfg = default_config([origin.address], limits=LIMITS)
    bw = Bulwark(tmp_path_factory.mktemp("differential"), cfg)
    try:
        yield bw, origin
    finally:
        try:
            bw.stop()
        finally:
            bw.kill()
            origin.stop()


def connection_tokens(raw):
    """Every element of every Connection field of the client's bytes (the
    head(s) only, loosely: it may be malformed on purpose)."""
    out = set()
    for line in raw.split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"connection":
            out.update(t.strip().lower().decode("latin-1") for t in value.split(b",") if t.strip())
    return out


def wants_upgrade(raw):
    return "upgrade" in connection_tokens(raw) and b"\nupgrade:" in raw.lower()


def send(c, case):
    cuts = [0, *case.parts, len(case.raw)]
    for a, b in zip(cuts, cuts[1:]):
        if a < b:
            c.send(case.raw[a:b])
            if b < len(case.raw):
                time.sleep(0.02)


def check_origin_request(case, rec, listed, upgrade_ok):
    names = rec.names()
    for n in names:
        if n in HOP_BY_HOP:
            allowed = upgrade_ok and n in ("connection", "upgrade") and rec.header("upgrade") is not None
            if n == "connection" and allowed:
                assert rec.header("connection").lower() == b"upgrade", rec.raw_head
            assert allowed, f"hop-by-hop field {n!r} passed on: {rec.raw_head!r}"
        if not (upgrade_ok and n == "upgrade"):
            assert n not in listed, f"field {n!r} listed in the client's Connection passed on: {rec.raw_head!r}"
        assert n not in case.absent, f"field {n!r} must not reach the origin: {rec.raw_head!r}"
    assert names.count("host") == 1, f"origin got {names.count('host')} Host fields: {rec.raw_head!r}"
    assert names.count("x-forwarded-for") == 1, rec.raw_head
    if rec.body:
        assert rec.framing in ("length", "chunked"), rec


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.cat}:{c.id}") for c in CASES])
def test_differential(rig, case):
    bw, origin = rig
    mark = origin.mark()
    errors_before = origin.errors()
    methods = case.method if isinstance(case.method, tuple) else (case.method,) * max(1, len(case.expect))
    got = []
    with bw.connect() as c:
        send(c, case)
        if case.after_100 is not None:
            interim = []
            r = c.read_response(timeout=case.wait, skip_1xx=False, informational=interim)
            assert r.status == 100, f"expected 100 Continue, got {r!r}"
            c.send(case.after_100)
        for i, status in enumerate(case.expect):
            try:
                r = c.read_response(methods[i], timeout=case.wait if i == 0 else 3.0)
            except (Closed, Timeout) as e:
                pytest.fail(f"response {i + 1} of {list(case.expect)}: {e}")
            got.append(r)
            assert r.status == status, f"response {i + 1}: expected {status}, got {r!r}"
            if status >= 400:
                assert_proxy_error(r, status)
            else:
                assert r.header("x-seen", "").encode() == case.targets[i] if i < len(case.targets) else True, r
        last = got[-1] if got else None
        closing = last is None or "close" in last.connection_tokens()
        if closing:
            how, extra = c.wait_closed(3.0)
            assert (how, extra) == ("eof", b""), \
                f"expected a clean close after the last response, got {how} with {extra[:200]!r}"
        else:
            # Still in step: the next request on the connection gets its own answer.
            assert origin.wait_for(lambda o: sum(r.complete for r in o.since(mark)) >= len(case.origin))
            time.sleep(SETTLE)
            before_probe = len(origin.since(mark))
            probe = case.target + b"/probe"
            c.send(request_bytes("GET", probe.decode()))
            r = c.read_response(timeout=3)
            assert (r.status, r.header("x-seen")) == (200, probe.decode()), \
                f"client connection out of step after the case: {r!r}"
    if closing:
        origin.wait_for(lambda o: sum(r.complete for r in o.since(mark)) >= len(case.origin))
        time.sleep(SETTLE)
        before_probe = len(origin.since(mark))

    recs = origin.since(mark)[:before_probe]
    assert not [r for r in recs if b"smuggled" in r.target], f"a body was taken for a request: {recs}"
    complete = [r for r in recs if r.complete]
    assert len(recs) <= case.sent, f"client sent {case.sent} request(s), origin got {len(recs)}: {recs}"
    if case.partial_head and not case.origin:
        assert complete == [], f"a refused request reached the origin whole: {complete}"
        assert len(recs) <= 1, recs
        if recs:  # the upstream connection carrying the cut request is not reused
            assert origin.wait_for(lambda o: recs[0].conn.closed), "upstream connection of a refused body kept open"
    elif not case.origin:
        assert recs == [] and origin.bytes_since(mark) == 0, \
            f"origin received {origin.bytes_since(mark)} bytes of a refused request: {recs}"
    else:
        assert len(recs) == len(case.origin) == len(complete), f"origin got {recs}"
        assert [r.target for r in recs] == list(case.targets)
        assert [r.body for r in recs] == list(case.origin)
        listed = connection_tokens(case.raw) - PROXY_OWNED
        for rec in recs:
            check_origin_request(case, rec, listed, wants_upgrade(case.raw))
        for name, value in case.headers.items():
            assert recs[0].header_all(name) == [value], \
                f"origin field {name}: {recs[0].header_all(name)} != [{value!r}]: {recs[0].raw_head!r}"
    new_errors = [e for e in origin.errors() if e not in errors_before]
    assert new_errors == [], f"origin could not parse what bulwark sent: {new_errors}"
