"""TLS termination (listen[].tls): certificates made here with the openssl
command line; curl and `openssl s_client` against several SNI names;
resumption; plain HTTP and garbage on a TLS port; a stalled handshake;
certificate reload, good and bad; `ssl` and X-Forwarded-Proto; bodies both
ways and keepalive over TLS."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from bwtest import client
from bwtest import origin as om
from bwtest.checks import assert_still_serves
from bwtest.pki import Pki
from bwtest.proc import default_config

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(not OPENSSL or not CURL, reason="needs openssl and curl")


def _run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    return Pki(d)


def tls_config(origin, certs, **over):
    cfg = default_config([origin.address], **over)
    cfg["listen"] = [{"address": "127.0.0.1:0"},
                     {"address": "127.0.0.1:0",
                      "tls": {"certificates": [{"cert": c, "key": k} for c, k in certs]}}]
    cfg["admin"] = {"address": "127.0.0.1:0"}
    return cfg


def curl(bw, name, path="/", ca=None, extra=()):
    port = bw.ports[1]
    args = [CURL, "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
            "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}{path}", *extra]
    args += ["--cacert", ca] if ca else ["-k"]
    r = _run(*args)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body, r.stderr


def served_cn(port, sni):
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni,
             input="")
    for line in r.stdout.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].lstrip(" =")
    return None


def admin_json(bw, path):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("GET", path, host="admin"))
        return c.read_response().json()


def admin_post(bw, path, body=b""):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("POST", path, body=body, host="admin"))
        return c.read_response()


def metric(bw, name):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("GET", "/metrics", host="admin"))
        text = c.read_response().body.decode()
    for line in text.splitlines():
        # "name" matches its first series, labelled or not; "name{...}" one.
        if line.startswith(name + " ") or ("{" not in name and line.startswith(name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


def tls_conn(port, sni="a.example", ca=None, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    return client.Conn(s)


def test_sni_selects_certificates_and_requests_are_proxied(origin, bulwark, pki):
    a = pki.leaf("a", ["a.example", "*.w.example"])
    b = pki.leaf("b", ["b.example"], key_type="rsa")
    bw = bulwark(tls_config(origin, [a, b]))
    port = bw.ports[1]
    for name, cn in [("a.example", "a.example"), ("b.example", "b.example"),
                     ("x.w.example", "a.example"), ("other.example", "a.example")]:
        assert served_cn(port, name) == cn, name
    for name in ("a.example", "b.example", "x.w.example"):
        code, body, err = curl(bw, name, "/tls-path", ca=pki.ca)
        assert code == 200, err
        got = json.loads(body)
        assert got["target"] == "/tls-path"
    # curl verifies against the CA: a name the default certificate does not
    # carry fails verification (it is served the default one).
    code, _, err = curl(bw, "other.example", "/", ca=pki.ca)
    assert code == 0 and ("certificate" in err.lower() or "SSL" in err), err
    req = origin.requests[0]
    assert req.header("x-forwarded-proto") == "https"
    # The plain listener says http.
    assert bw.request("GET", "/plain").status == 200
    assert origin.requests[-1].header("x-forwarded-proto") == "http"
    lines = bw.access_log_lines(wait_for=5)
    assert any(x.get("tls") == "TLSv1.3" and x.get("sni") == "b.example" for x in lines)
    assert all("tls" not in x for x in lines if x["path"] == "/plain")


def test_alpn_protocols_and_versions(origin, bulwark, pki):
    bw = bulwark(tls_config(origin, [pki.leaf("a", ["a.example"])]))
    port = bw.ports[1]
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example",
             "-alpn", "h2,http/1.1", input="")
    assert "ALPN protocol: http/1.1" in r.stdout
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example",
             "-alpn", "h2", input="")
    assert "no application protocol" in r.stderr
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", input="")
    assert "Protocol  : TLSv1.2" in r.stdout or "TLSv1.2" in r.stdout
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1", input="")
    assert r.returncode != 0
    assert_still_serves(bw)


def test_session_resumption(origin, bulwark, pki, tmp_path):
    bw = bulwark(tls_config(origin, [pki.leaf("a", ["a.example"])]))
    port = bw.ports[1]
    # TLS 1.2 session tickets: s_client -reconnect resumes five times.
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example",
             "-tls1_2", "-reconnect", input="")
    reused = [x for x in r.stdout.splitlines() if x.startswith("Reused,")]
    assert len(reused) == 5, r.stdout[-2000:]
    # TLS 1.3 tickets: save the session, resume with it.
    sess = str(tmp_path / "s13")
    p = subprocess.Popen([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                          "a.example", "-sess_out", sess], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The ticket comes after the handshake; s_client writes the session
    # file once it has one.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (os.path.exists(sess) and os.path.getsize(sess)):
        time.sleep(0.05)
    time.sleep(0.2)
    p.communicate(b"", timeout=10)
    r = _run(OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example",
             "-sess_in", sess, input="")
    assert "Reused, TLSv1.3" in r.stdout, r.stdout[-2000:]
    assert metric(bw, 'bulwark_tls_handshakes_total{resumed="true"}') >= 6


def test_plain_http_on_tls_port_gets_400(origin, bulwark, pki):
    bw = bulwark(tls_config(origin, [pki.leaf("a", ["a.example"])]))
    with client.connect(bw.ports[1]) as c:
        c.send(client.request_bytes("GET", "/"))
        r = c.read_response()
        assert r.status == 400
        assert "close" in r.connection_tokens()
        how, _ = c.wait_closed(3)
        assert how in ("eof", "reset")
    assert metric(bw, "bulwark_tls_plain_http_total") == 1
    assert len(origin.requests) == 0
    logged = bw.access_log_lines(wait_for=1)
    assert [(x["status"], x["method"], x["path"]) for x in logged] == [(400, "-", "-")]
    assert_still_serves(bw)


def test_garbage_and_stalled_handshakes_close_and_are_counted(origin, bulwark, pki):
    cfg = tls_config(origin, [pki.leaf("a", ["a.example"])],
                     limits={"client_header_timeout": "1s"})
    bw = bulwark(cfg)
    port = bw.ports[1]
    # A handshake record that is no ClientHello.
    with client.connect(port) as c:
        c.send(b"\x16\x03\x01\x00\x20" + os.urandom(32))
        how, _ = c.wait_closed(3)
        assert how in ("eof", "reset")
    # Half a ClientHello, then silence: closed at the header timeout.
    stalled = [client.connect(port) for _ in range(5)]
    for c in stalled:
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    # (The waits only guard against a hang; the timeout metric below says
    # which mechanism closed them.)
    for c in stalled:
        how, _ = c.wait_closed(10)
        assert how in ("eof", "reset")
        c.close()
    # A client that connects and says nothing at all.
    with client.connect(port) as c:
        how, _ = c.wait_closed(10)
        assert how in ("eof", "reset")
    assert metric(bw, 'bulwark_tls_handshake_failures_total{reason="error"}') >= 1
    assert metric(bw, 'bulwark_tls_handshake_failures_total{reason="timeout"}') >= 6
    # Meanwhile and after, real TLS clients are served at once.
    code, _, err = curl(bw, "a.example", "/after", ca=pki.ca)
    assert code == 200, err
    assert_still_serves(bw)


def test_keepalive_pipelining_and_bodies_over_tls(origin, bulwark, pki):
    origin.on("/big", om.big(1 << 20))
    bw = bulwark(tls_config(origin, [pki.leaf("a", ["a.example"])]))
    with tls_conn(bw.ports[1], ca=pki.ca) as c:
        for i in range(5):
            c.send(client.request_bytes("GET", f"/ka{i}"))
            r = c.read_response()
            assert r.status == 200 and r.json()["target"] == f"/ka{i}"
        # Pipelined: three requests in one write, answered in order.
        c.send(b"".join(client.request_bytes("GET", f"/p{i}") for i in range(3)))
        for i in range(3):
            assert c.read_response().json()["target"] == f"/p{i}"
        # 1 MiB down.
        c.send(client.request_bytes("GET", "/big"))
        r = c.read_response(timeout=20)
        assert r.status == 200 and r.body == om.pattern(1 << 20)
        # 1 MiB up, chunked and with a length.
        body = om.pattern(1 << 20, offset=5)
        c.send(client.request_bytes("POST", "/up", body=body))
        r = c.read_response(timeout=20)
        assert r.status == 200 and r.json()["body_len"] == len(body)
        c.send(client.request_bytes("POST", "/upc", headers=[("Transfer-Encoding", "chunked")])
               + client.chunk_encode(body))
        r = c.read_response(timeout=20)
        assert r.status == 200 and r.json()["body_len"] == len(body)
    assert [q.target for q in origin.requests].count("/ka0") == 1


def test_ssl_field_in_rules(origin, bulwark, pki, tmp_path):
    rs = tmp_path / "entry.yaml"
    rs.write_text("id: entry\nrules:\n"
                  "  - id: https-only\n"
                  "    expression: 'starts_with(http.request.uri.path, \"/secure\") and not ssl'\n"
                  "    action: block\n"
                  "    status: 403\n")
    cfg = tls_config(origin, [pki.leaf("a", ["a.example"])])
    cfg["modules"] = {"rules": {"rulesets": [str(rs)]}}
    bw = bulwark(cfg)
    assert bw.request("GET", "/secure/x").status == 403
    code, _, err = curl(bw, "a.example", "/secure/x", ca=pki.ca)
    assert code == 200, err


def test_pipelined_refusals_over_tls_are_all_answered(origin, bulwark, pki, tmp_path):
    # TLS writes complete at once, so pipelined requests a rule refuses used
    # to be answered by recursion, one stack frame chain each, until the
    # worker overflowed its stack (~1,400 requests): every TLS listener was
    # exposed whatever io_engine said. openssl s_client writes and reads at
    # once; the last request closes the connection so its output ends.
    rs = tmp_path / "entry.yaml"
    rs.write_text("id: entry\nrules:\n"
                  "  - id: no-admin\n"
                  "    expression: 'starts_with(http.request.uri.path, \"/admin\")'\n"
                  "    action: block\n")
    cfg = tls_config(origin, [pki.leaf("a", ["a.example"])])
    cfg["modules"] = {"rules": {"rulesets": [str(rs)]}}
    bw = bulwark(cfg)
    n = 20000
    data = (client.request_bytes("GET", "/admin") * (n - 1)
            + client.request_bytes("GET", "/admin", headers=[("Connection", "close")]))
    r = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{bw.ports[1]}",
                        "-servername", "a.example", "-quiet", "-ign_eof"],
                       input=data, capture_output=True, timeout=60)
    assert r.stdout.count(b"HTTP/1.1 403 ") == n, r.stderr[-500:]
    code, _, err = curl(bw, "a.example", "/fine", ca=pki.ca)
    assert code == 200, err
    assert not origin.requests_for("/admin")


def test_certificate_reload_good_and_bad(origin, bulwark, pki, tmp_path):
    crt, key = pki.leaf("a", ["a.example"])
    live_crt, live_key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    shutil.copy(crt, live_crt)
    shutil.copy(key, live_key)
    bw = bulwark(tls_config(origin, [(live_crt, live_key)]),
                 expect_errors=["reload rejected", "does not match",
                                "no PEM certificate could be read"])
    port = bw.ports[1]
    st = admin_json(bw, "/status")
    certs = st["tls"][0]["certificates"]
    assert certs[0]["names"] == "a.example" and 28 <= certs[0]["days_left"] <= 30
    # A new pair for more names: accepted, served to new connections.
    crt2, key2 = pki.leaf("a2", ["a.example", "new.example"], days=90)
    shutil.copy(crt2, live_crt)
    shutil.copy(key2, live_key)
    r = admin_post(bw, "/reload")
    assert r.status == 200 and r.json()["accepted"], r.body
    code, _, err = curl(bw, "new.example", "/", ca=pki.ca)
    assert code == 200, err
    st = admin_json(bw, "/status")
    assert st["tls"][0]["certificates"][0]["days_left"] >= 88
    # A certificate whose key does not match: rejected, the running pair
    # keeps serving, /status says why.
    crt3, _ = pki.leaf("a3", ["a.example", "third.example"])
    shutil.copy(crt3, live_crt)
    r = admin_post(bw, "/reload")
    assert not r.json()["accepted"]
    assert "the key does not match the certificate" in r.json()["report"]
    st = admin_json(bw, "/status")
    assert "does not match" in st["last_rejection"]["error"]
    assert "listen[1].tls.certificates[0]" in st["last_rejection"]["error"]
    code, _, err = curl(bw, "new.example", "/", ca=pki.ca)
    assert code == 200, err
    # Garbage in place of the certificate: rejected the same way.
    with open(live_crt, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    r = admin_post(bw, "/reload")
    assert not r.json()["accepted"] and "no PEM certificate" in r.json()["report"]
    assert served_cn(port, "new.example") == "a.example"
    assert metric(bw, "bulwark_tls_certificate_expiry_seconds") > 80 * 86400


def test_bad_certificate_at_start_refuses_to_start(tmp_path, pki):
    from bwtest.proc import bulwark_bin
    crt, _ = pki.leaf("a", ["a.example"])
    _, other_key = pki.leaf("b", ["b.example"])
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listen:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n"
                   f"        - {{cert: {crt}, key: {other_key}}}\n"
                   "upstreams: {app: {servers: [{address: 127.0.0.1:9}]}}\n"
                   "routes: [{upstream: app}]\n")
    r = _run(bulwark_bin(), "check", "-c", str(cfg))
    assert r.returncode == 1
    assert f"{cfg}:5:11: error: listen[0].tls.certificates[0]" in r.stderr
    assert "the key does not match the certificate" in r.stderr
    r = _run(bulwark_bin(), "run", "-c", str(cfg))
    assert r.returncode == 1
    assert "the key does not match the certificate" in r.stderr


def test_certificate_change_is_picked_up_by_the_file_watch(origin, bulwark, pki, tmp_path):
    crt, key = pki.leaf("a", ["a.example"])
    live_crt, live_key = str(tmp_path / "w.pem"), str(tmp_path / "w.key")
    shutil.copy(crt, live_crt)
    shutil.copy(key, live_key)
    cfg = tls_config(origin, [(live_crt, live_key)])
    cfg["reload"] = {"watch": True, "debounce": "100ms"}
    # Between the two renames the key and certificate may not match for a
    # moment: a reload then is refused, and the next one takes the pair.
    bw = bulwark(cfg, expect_errors=["does not match", "reload rejected"])
    gen = admin_json(bw, "/status")["config"]["generation"]
    crt2, key2 = pki.leaf("a2", ["a.example", "watched.example"])
    # The way certificate tools deploy: write aside, rename into place.
    for src, dst in ((key2, live_key), (crt2, live_crt)):
        shutil.copy(src, dst + ".tmp")
        os.rename(dst + ".tmp", dst)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = admin_json(bw, "/status")
        if st["config"]["generation"] > gen and \
                "watched.example" in st["tls"][0]["certificates"][0]["names"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the new certificate was not loaded: {st}")
    code, _, err = curl(bw, "watched.example", "/", ca=pki.ca)
    assert code == 200, err


def test_proxy_protocol_in_front_of_tls(origin, bulwark, pki):
    cfg = tls_config(origin, [pki.leaf("a", ["a.example"])],
                     client_ip={"trusted": ["127.0.0.0/8"], "from": "proxy_protocol"})
    bw = bulwark(cfg)
    ctx = ssl.create_default_context(cafile=pki.ca)
    for header in (b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n",
                   b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes([198, 51, 100, 9]) +
                   bytes([127, 0, 0, 1]) + (40000).to_bytes(2, "big") + (443).to_bytes(2, "big")):
        # The header and the ClientHello in one segment: the handshake must
        # still get every byte of its own.
        raw = socket.create_connection(("127.0.0.1", bw.ports[1]), timeout=5)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="a.example")
        pending = header
        done = False
        while not done:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                pass
            pending += out.read()
            if pending:
                raw.sendall(pending)
                pending = b""
            if not done:
                data = raw.recv(65536)
                assert data, "closed during the handshake"
                inc.write(data)
        obj.write(client.request_bytes("GET", "/pp"))
        raw.sendall(out.read())
        got = b""
        while b"\r\n\r\n" not in got:
            data = raw.recv(65536)
            assert data, got
            inc.write(data)
            try:
                got += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
        assert got.startswith(b"HTTP/1.1 200 "), got
        raw.close()
    xff = [q.header("x-forwarded-for") for q in origin.requests]
    assert xff == ["192.0.2.7", "198.51.100.9"]


def short_lived_leaf(pki, name, dns, seconds):
    """A leaf signed by pki's CA that expires `seconds` from now (openssl's
    command line counts in days)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    with open(pki.ca, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(pki.ca_key, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(seconds=seconds))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), False)
            .sign(ca_key, hashes.SHA256()))
    crt_path, key_path = str(pki.d / f"{name}.pem"), str(pki.d / f"{name}.key")
    with open(crt_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return crt_path, key_path, (now + datetime.timedelta(seconds=seconds)).timestamp()


def test_a_certificate_expiring_in_place_does_not_block_reloads(origin, bulwark, pki):
    """One of a listener's certificates runs out while bulwark serves it. It
    was serving either way; refusing it would refuse every later reload (a
    route change, an urgent ruleset) until someone renews an unrelated
    hostname's certificate. nginx, HAProxy and Envoy all keep loading it. A
    reload that keeps the same files is accepted with a warning; a changed
    certificate that is already expired is still refused, and the last good
    pair keeps serving."""
    a_crt, a_key = pki.leaf("a", ["a.example"])
    b_crt, b_key, b_end = short_lived_leaf(pki, "b", ["b.example"], 3)
    bw = bulwark(tls_config(origin, [(a_crt, a_key), (b_crt, b_key)]),
                 expect_errors=["reload rejected", "expired"])
    assert curl(bw, "b.example", ca=pki.ca)[0] == 200
    time.sleep(max(0.0, b_end - time.time()) + 1.5)
    r = admin_post(bw, "/reload")
    assert r.status == 200 and r.json()["accepted"], r.body
    assert "b.pem" in bw.stderr() and "expired" in bw.stderr(), bw.stderr()
    assert curl(bw, "a.example", ca=pki.ca)[0] == 200
    # An expired certificate that would replace a serving one: refused.
    c_crt, c_key, _ = short_lived_leaf(pki, "c", ["a.example"], -60)
    shutil.copy(c_crt, a_crt)
    shutil.copy(c_key, a_key)
    r = admin_post(bw, "/reload")
    assert r.status == 422 and not r.json()["accepted"], r.body
    assert "a.pem: certificate 1 is expired" in r.json()["report"], r.body
    assert curl(bw, "a.example", ca=pki.ca)[0] == 200


def test_an_expired_certificate_at_start_is_served_with_a_warning(origin, bulwark, pki, tmp_path):
    """Refusing to start over one expired certificate would take every other
    name, listener and the plain-HTTP port down with it (a reboot at the
    wrong hour is a whole-site outage): like nginx, HAProxy and Envoy,
    bulwark starts, serves it, and says so; `check` says the same."""
    from bwtest.proc import bulwark_bin
    a_crt, a_key = pki.leaf("a", ["a.example"])
    b_crt, b_key, _ = short_lived_leaf(pki, "b", ["b.example"], -60)
    cfg = tls_config(origin, [(a_crt, a_key), (b_crt, b_key)])
    bw = bulwark(cfg)
    assert curl(bw, "a.example", ca=pki.ca)[0] == 200
    # The expired one is served (a client that checks refuses it).
    code, _, err = curl(bw, "b.example", ca=pki.ca)
    assert code == 0 and "expired" in err, err
    assert curl(bw, "b.example", extra=("-k",))[0] == 200
    warn = [ln for ln in bw.stderr_lines() if "b.pem: certificate 1 is expired" in ln]
    assert warn and "warn" in warn[0] and "listen[1].tls.certificates[1]" in warn[0], \
        bw.stderr()
    st = admin_json(bw, "/status")
    assert st["tls"][0]["certificates"][1]["days_left"] < 0
    r = _run(bulwark_bin(), "check", "-c", bw.config_path)
    assert r.returncode == 0, r.stderr
    assert "b.pem: certificate 1 is expired" in r.stderr and "warn" in r.stderr


def _read_to_close(port, path, version="HTTP/1.1"):
    """(bytes, True if the server sent an alert (close_notify) before
    closing). TLS 1.2, whose record headers show an alert's content type
    (21) even when encrypted, read through a memory BIO: Python's ssl
    module of some versions reports an EOF without close_notify as a clean
    one."""
    ctx = ssl._create_unverified_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="a.example")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw = bytearray()

    def flush():
        d = out.read()
        if d:
            sock.sendall(d)

    def fill():
        try:
            d = sock.recv(65536)
        except ConnectionResetError:  # a cut close-delimited body ends so
            d = b""
        raw.extend(d)
        if d:
            inc.write(d)
        else:
            inc.write_eof()
        return bool(d)

    data = b""
    try:
        for _ in range(100):
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                assert fill(), "closed during the handshake"
        flush()
        obj.write(f"GET {path} {version}\r\nHost: a.example\r\n\r\n".encode())
        flush()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                d = obj.read(65536)
                if not d:
                    break
                data += d
            except ssl.SSLWantReadError:
                if not fill():
                    break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        else:
            raise AssertionError("no end within 5 s")
        while fill():  # whatever is left up to the TCP close
            pass
    finally:
        sock.close()
    types, i = [], 0
    while i + 5 <= len(raw):
        types.append(raw[i])
        i += 5 + int.from_bytes(raw[i + 3:i + 5], "big")
    return data, 21 in types


def test_a_response_cut_short_ends_without_close_notify(origin, bulwark, pki):
    """close_notify says "that was all": a response whose upstream failed
    halfway must end without it, or a client reading a close-delimited body
    takes the truncated bytes for the whole (RFC 8446 §6.1; nginx does not
    send it on such an error either). A whole response still ends with it."""
    def close_delimited_then_reset(ex):
        ex.read_body()
        ex.send_head(200, [("Content-Type", "application/octet-stream")], version="HTTP/1.0")
        ex.send(b"x" * 30000)
        time.sleep(0.2)
        ex.reset()
        return False
    origin.on("/cut-cd", close_delimited_then_reset)
    origin.on("/cut-chunked", om.close_mid_body(0, 30000, chunked_body=True))
    origin.on("/whole", om.close_delimited(b"y" * 30000))
    crt, key = pki.leaf("a", ["a.example"])
    bw = bulwark(tls_config(origin, [(crt, key)]), expect_errors=["in the middle of a response"])
    port = bw.ports[1]
    data, notified = _read_to_close(port, "/whole")
    assert data.endswith(b"y" * 30000) and notified
    for path, version in (("/cut-cd", "HTTP/1.1"), ("/cut-cd", "HTTP/1.0"),
                          ("/cut-chunked", "HTTP/1.0"), ("/cut-chunked", "HTTP/1.1")):
        data, notified = _read_to_close(port, path, version)
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        assert not notified, f"{path} {version}: a cut response ended with close_notify ({len(data)} bytes)\n{bw.stderr()}"


def test_the_same_certificate_twice_in_a_listener_is_refused(tmp_path, pki):
    """Listed twice, one file would be two identical series of
    bulwark_tls_certificate_expiry_seconds{listener,cert}, and Prometheus
    refuses a scrape with a duplicate series as a whole: every metric of the
    instance would be lost. It serves nothing more, so it is a config error
    with the place of the second entry."""
    from bwtest.proc import bulwark_bin
    crt, key = pki.leaf("a", ["a.example"])
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("listen:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n"
                   f"        - {{cert: {crt}, key: {key}}}\n"
                   f"        - {{cert: {crt}, key: {key}}}\n"
                   "upstreams: {app: {servers: [{address: 127.0.0.1:9}]}}\n"
                   "routes: [{upstream: app}]\n")
    r = _run(bulwark_bin(), "check", "-c", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cfg}:6:18: error: listen[0].tls.certificates[1].cert: {crt} is listed already, " \
           "as listen[0].tls.certificates[0]" in r.stderr, r.stderr


@pytest.mark.parametrize("close_notify", [True, False])
def test_a_tls_client_closing_while_it_waits_abandons_the_upstream_request(origin, bulwark, pki,
                                                                          close_notify):
    # A TLS client closing (with close_notify, or cut without it) while its
    # request waits on a slow upstream: as on plain HTTP, the upstream
    # connection is closed at once and the request logged 499.
    origin.on("/hang", om.no_response())
    bw = bulwark(tls_config(origin, [pki.leaf("a", ["a.example"])]))
    c = tls_conn(bw.ports[1], ca=pki.ca)
    c.send(client.request_bytes("GET", "/hang"))
    assert origin.wait_for(lambda o: o.heads_for("/hang"), 10)
    if close_notify:
        c.sock.setblocking(False)
        try:
            c.sock.unwrap()  # sends close_notify; bulwark does not answer it
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
    c.sock.close()
    assert origin.wait_for(lambda o: o.open_connections == 0, 10), \
        "the upstream connection outlived its TLS client"
    line = [x for x in bw.access_log_lines(wait_for=1) if x["path"] == "/hang"]
    assert len(line) == 1 and line[0]["status"] == 499, line
