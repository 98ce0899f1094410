"""TLS to upstreams (upstreams.<name>.tls) against a real nginx serving
TLS: verified by name and by IP address, pooled connections, a refused
certificate answered 502, verification off, health checks over TLS, and a
bad CA file refused at reload."""
import os
import shutil
import time

import pytest

from bwtest import client
from bwtest.nginx import NGINX_HEAD, Nginx
from bwtest.pki import Pki

NGINX = "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK) or not shutil.which("openssl"),
                                reason="needs nginx and openssl")

NGINX_TLS_CONF = NGINX_HEAD + """
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            add_header X-Conn $connection always;
            add_header X-Sni "$ssl_server_name" always;
            return 200 "tls origin $request_uri\\n";
        }}
    }}
}}
"""


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    return Pki(d)


@pytest.fixture
def tls_origin(tmp_path, pki):
    started = []

    def start(dns=("app.internal",), ips=("127.0.0.1",)):
        crt, key = pki.leaf(f"origin{len(started)}", list(dns), ips=list(ips))
        n = Nginx(str(tmp_path / f"nginx{len(started)}"), NGINX_TLS_CONF, cert=crt, key=key)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def config(origin_addr, tls, health=None):
    up = {"servers": [{"address": origin_addr}], "tls": tls, "keepalive": 8}
    if health:
        up["health_check"] = health
    return {
        "listen": [{"address": "127.0.0.1:0"}],
        "workers": 1,
        "admin": {"address": "127.0.0.1:0"},
        "upstreams": {"app": up},
        "routes": [{"upstream": "app"}],
    }


def admin_get(bw, path):
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("GET", path, host="admin"))
        return c.read_response()


def test_verified_by_name_pooled(bulwark, tls_origin, pki):
    o = tls_origin()
    bw = bulwark(config(o.address, {"ca_file": pki.ca, "sni": "app.internal"}))
    conns = set()
    with bw.connect() as c:
        for i in range(5):
            c.send(client.request_bytes("GET", f"/n{i}"))
            r = c.read_response()
            assert r.status == 200, r
            assert r.body == f"tls origin /n{i}\n".encode()
            assert r.header("x-sni") == "app.internal"
            conns.add(r.header("x-conn"))
    # Kept-alive requests reuse one pooled upstream TLS connection.
    assert len(conns) == 1
    # A POST with a body goes through TLS too.
    r = bw.request("POST", "/post", body=b"x" * 100000)
    assert r.status == 200


def test_verified_by_ip_without_sni(bulwark, tls_origin, pki):
    o = tls_origin(dns=("app.internal",), ips=("127.0.0.1",))
    bw = bulwark(config(o.address, {"ca_file": pki.ca}))
    r = bw.request("GET", "/ip")
    assert r.status == 200 and r.header("x-sni") is None  # nginx omits an empty header


def test_refused_certificates_answer_502(bulwark, tls_origin, pki, tmp_path):
    o = tls_origin(dns=("app.internal",), ips=())
    # The name does not match.
    bw = bulwark(config(o.address, {"ca_file": pki.ca, "sni": "other.internal"}),
                 expect_errors=["certificate was refused"])
    r = bw.request("GET", "/x")
    assert r.status == 502
    assert "hostname mismatch" in bw.stderr()
    # No IP address in the certificate and no sni: the IP cannot be verified.
    bw2 = bulwark(config(o.address, {"ca_file": pki.ca}), expect_errors=["certificate was refused"])
    assert bw2.request("GET", "/x").status == 502
    assert "IP address mismatch" in bw2.stderr()
    # Signed by a CA bulwark does not trust.
    other = Pki(tmp_path / "pki", name="other-ca")
    bw3 = bulwark(config(o.address, {"ca_file": other.ca, "sni": "app.internal"}),
                  expect_errors=["certificate was refused"])
    assert bw3.request("GET", "/x").status == 502
    assert "unable to get local issuer certificate" in bw3.stderr()
    # The system store does not know the test CA either.
    bw4 = bulwark(config(o.address, {"sni": "app.internal"}),
                  expect_errors=["certificate was refused"])
    assert bw4.request("GET", "/x").status == 502


def test_verification_off(bulwark, tls_origin):
    o = tls_origin(dns=("app.internal",), ips=())
    bw = bulwark(config(o.address, {"verify": False}))
    assert bw.request("GET", "/nv").status == 200


def test_plain_origin_on_a_tls_upstream_is_502(bulwark, nginx_origin):
    # nginx answers the ClientHello with a plain 400: the handshake fails.
    bw = bulwark(config(nginx_origin.address, {"verify": False}),
                 expect_errors=["TLS handshake with the upstream failed"])
    assert bw.request("GET", "/plain").status == 502


def test_health_checks_over_tls(bulwark, tls_origin, pki, tmp_path):
    o = tls_origin()
    health = {"path": "/healthz", "interval": "200ms", "timeout": "1s", "fall": 1, "rise": 1}
    bw = bulwark(config(o.address, {"ca_file": pki.ca, "sni": "app.internal"}, health),
                 expect_errors=["health check"])
    time.sleep(0.6)
    text = admin_get(bw, "/metrics").body.decode()
    assert 'bulwark_upstream_server_up{upstream="app",server="%s"} 1' % o.address in text
    assert bw.request("GET", "/hc").status == 200
    # Checked against the wrong CA: down, and then no server is left: 503.
    other = Pki(tmp_path / "pki", name="other-ca")
    bw2 = bulwark(config(o.address, {"ca_file": other.ca, "sni": "app.internal"}, health),
                  expect_errors=["is down", "certificate"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = admin_get(bw2, "/metrics").body.decode()
        if 'server="%s"} 0' % o.address in text:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(text)
    assert "certificate refused" in bw2.stderr()
    assert bw2.request("GET", "/hc").status == 503


def test_bad_ca_file_rejects_the_reload(bulwark, tls_origin, pki, tmp_path):
    o = tls_origin()
    ca = tmp_path / "live-ca.pem"
    shutil.copy(pki.ca, ca)
    bw = bulwark(config(o.address, {"ca_file": str(ca), "sni": "app.internal"}),
                 expect_errors=["reload rejected", "no PEM certificate"])
    assert bw.request("GET", "/before").status == 200
    ca.write_text("not a certificate\n")
    with client.connect(bw.admin_port) as c:
        c.send(client.request_bytes("POST", "/reload", host="admin"))
        r = c.read_response()
    body = r.json()
    assert not body["accepted"]
    assert "upstreams.app.tls" in body["report"] and "no PEM certificate" in body["report"]
    assert bw.request("GET", "/after").status == 200
