"""Against a real origin: Debian's nginx serving static files."""
from bwtest.client import request_bytes


def test_static_files_through_proxy(nginx_origin, proxy):
    bw = proxy(nginx_origin.address, upstream_opts={"keepalive": 4})
    with bw.connect() as c:
        for _ in range(3):
            c.send(request_bytes("GET", "/static/1k.bin"))
            r = c.read_response()
            assert r.status == 200 and r.body == nginx_origin.small
            c.send(request_bytes("GET", "/static/1m.bin"))
            r = c.read_response(timeout=10)
            assert r.status == 200 and r.body == nginx_origin.large
            assert r.header("content-length") == str(len(nginx_origin.large))


def test_return_locations_and_404(nginx_origin, proxy):
    bw = proxy(nginx_origin.address)
    r = bw.request("GET", "/ok")
    assert (r.status, r.body) == (200, b"nginx ok\n")
    r = bw.request("POST", "/created", body=b"x" * 1000)
    assert (r.status, r.body) == (201, b"made\n")
    assert bw.request("GET", "/static/nope").status == 404


def test_head_and_conditional_get(nginx_origin, proxy):
    bw = proxy(nginx_origin.address)
    with bw.connect() as c:
        c.send(request_bytes("HEAD", "/static/1m.bin"))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("content-length") == str(1 << 20)
        etag = r.header("etag")
        assert etag
        c.send(request_bytes("GET", "/static/1m.bin", [("If-None-Match", etag)]))
        r = c.read_response()
        assert r.status == 304 and r.body == b""
        c.send(request_bytes("GET", "/static/1k.bin", [("Range", "bytes=10-19")]))
        r = c.read_response()
        assert r.status == 206 and r.body == nginx_origin.small[10:20]
        c.send(request_bytes("GET", "/ok"))
        assert c.read_response().body == b"nginx ok\n"


def test_pipelined_to_nginx(nginx_origin, proxy):
    bw = proxy(nginx_origin.address)
    with bw.connect() as c:
        c.send(request_bytes("GET", "/ok") + request_bytes("GET", "/static/1k.bin") + request_bytes("GET", "/static/nope")
               + request_bytes("GET", "/ok"))
        assert c.read_response().body == b"nginx ok\n"
        assert c.read_response().body == nginx_origin.small
        assert c.read_response().status == 404
        assert c.read_response().body == b"nginx ok\n"
