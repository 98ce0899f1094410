"""Load balancing: smooth weighted round robin, least_conn, consistent hashing."""
import threading

from bwtest.proc import default_config
from bwtest import origin as om


def upstream_cfg(tmp_path, servers, balance, weights=None, **opts):
    cfg = default_config([s.address for s in servers], str(tmp_path / f"access-{balance[:4]}-{len(servers)}.log"))
    ups = cfg["upstreams"]["app"]
    ups["balance"] = balance
    if weights:
        for entry, w in zip(ups["servers"], weights):
            entry["weight"] = w
    ups.update(opts)
    return cfg


def sequence(bw, n, path=lambda i: f"/rr/{i}", **kw):
    out = []
    for i in range(n):
        r = bw.request("GET", path(i), **kw)
        assert r.status == 200, r
        out.append(r.json()["server"])
    return out


def max_run(seq, name):
    best = run = 0
    for s in seq:
        run = run + 1 if s == name else 0
        best = max(best, run)
    return best


def test_round_robin_equal_weights_alternates(tmp_path, origins, bulwark):
    a, b = origins(2)
    bw = bulwark(upstream_cfg(tmp_path, [a, b], "round_robin"))
    seq = sequence(bw, 20)
    assert all(seq[i] != seq[i + 1] for i in range(19)), seq


def test_round_robin_three_servers_cycles(tmp_path, origins, bulwark):
    servers = origins(3)
    bw = bulwark(upstream_cfg(tmp_path, servers, "round_robin"))
    seq = sequence(bw, 30)
    for i in range(0, 30, 3):
        assert sorted(seq[i:i + 3]) == sorted(s.name for s in servers), seq


def test_round_robin_weights_3_to_1_smooth(tmp_path, origins, bulwark):
    a, b = origins(2)
    bw = bulwark(upstream_cfg(tmp_path, [a, b], "round_robin", weights=[3, 1]))
    seq = sequence(bw, 40)
    assert seq.count(a.name) == 30 and seq.count(b.name) == 10, seq
    # Smooth: every window of 4 holds 3 a's and 1 b; never b twice, never 4 a's.
    assert max_run(seq, b.name) == 1, seq
    assert max_run(seq, a.name) <= 3, seq
    for i in range(0, 40, 4):
        assert seq[i:i + 4].count(b.name) == 1, seq


def test_round_robin_weights_5_1_1_smooth(tmp_path, origins, bulwark):
    a, b, c = origins(3)
    bw = bulwark(upstream_cfg(tmp_path, [a, b, c], "round_robin", weights=[5, 1, 1]))
    seq = sequence(bw, 35)
    assert [seq.count(s.name) for s in (a, b, c)] == [25, 5, 5], seq
    # Smooth (nginx's order for 5:1:1 is a a b a c a a): b and c are spread
    # out, never a block of five a's (a a a a a b c).
    assert max_run(seq, a.name) <= 4, seq
    assert max_run(seq, b.name) == 1 and max_run(seq, c.name) == 1, seq
    for i in range(0, 35, 7):
        assert sorted(seq[i:i + 7]) == sorted([a.name] * 5 + [b.name, c.name]), seq


def test_least_conn_avoids_server_with_slow_request(tmp_path, origins, bulwark):
    a, b = origins(2)
    for o in (a, b):
        o.on("/slow", om.slow(1.5))
    bw = bulwark(upstream_cfg(tmp_path, [a, b], "least_conn"))
    results = []
    t = threading.Thread(target=lambda: results.append(bw.request("GET", "/slow", timeout=10)))
    t.start()
    try:
        assert a.wait_for(lambda o: o.heads_for("/slow"), 0.01) or \
            b.wait_for(lambda o: o.heads_for("/slow"), 3), "slow request never reached an origin"
        busy = a if a.heads_for("/slow") else b
        idle = b if busy is a else a
        seq = sequence(bw, 6, path=lambda i: f"/fast/{i}")
        assert seq == [idle.name] * 6, f"busy={busy.name} seq={seq}"
    finally:
        t.join(10)
    assert results and results[0].status == 200


def test_least_conn_spreads_when_idle(tmp_path, origins, bulwark):
    a, b = origins(2)
    bw = bulwark(upstream_cfg(tmp_path, [a, b], "least_conn"))
    seq = sequence(bw, 20)
    assert seq.count(a.name) >= 5 and seq.count(b.name) >= 5, seq


def path_map(bw, paths):
    out = {}
    for p in paths:
        r = bw.request("GET", p)
        assert r.status == 200
        out[p] = r.json()["server"]
    return out


def test_hash_uri_path_is_sticky_and_consistent(tmp_path, origins, bulwark):
    servers = origins(4)
    paths = [f"/item/{i}/view" for i in range(200)]
    bw3 = bulwark(upstream_cfg(tmp_path, servers[:3], "hash(http.request.uri.path)"), name="three")
    m3 = path_map(bw3, paths)
    # Sticky: the same path again (with another query string) lands on the same server.
    for p in paths[:50]:
        r = bw3.request("GET", p + "?again=1")
        assert r.json()["server"] == m3[p], p
    counts = {s.name: list(m3.values()).count(s.name) for s in servers[:3]}
    assert all(c >= 30 for c in counts.values()), f"hash spreads badly: {counts}"
    bw4 = bulwark(upstream_cfg(tmp_path, servers, "hash(http.request.uri.path)"), name="four")
    m4 = path_map(bw4, paths)
    moved = [p for p in paths if m3[p] != m4[p]]
    assert len(moved) <= 80, f"{len(moved)} of 200 paths moved when adding a 4th server"
    # A path that moves, moves to the new server only.
    assert all(m4[p] == servers[3].name for p in moved), "paths moved between old servers"
    assert list(m4.values()).count(servers[3].name) >= 20


def test_hash_ip_src_is_sticky_per_client(tmp_path, origins, bulwark):
    servers = origins(3)
    bw = bulwark(upstream_cfg(tmp_path, servers, "hash(ip.src)"))
    seen = {}
    for last in range(1, 31):
        src = f"127.0.0.{last}"
        got = {bw.request("GET", f"/ip/{i}", source=src).json()["server"] for i in range(4)}
        assert len(got) == 1, f"{src} went to {got}"
        seen[src] = got.pop()
    assert len(set(seen.values())) >= 2, f"30 client addresses all hashed to one server: {seen}"


def test_hash_host_is_sticky(tmp_path, origins, bulwark):
    servers = origins(3)
    bw = bulwark(upstream_cfg(tmp_path, servers, "hash(http.host)"))
    seen = {}
    for i in range(30):
        host = f"site{i}.example"
        # Every spelling of the name (case, port, trailing dot) is one host,
        # as http.host sees it.
        spellings = [host, host.upper(), host + ":80", host + ".", host.capitalize() + ".:8080"]
        got = {bw.request("GET", f"/h/{j}", host=h).json()["server"] for j, h in enumerate(spellings)}
        assert len(got) == 1, f"{host} went to {got}"
        seen[host] = got.pop()
    assert len(set(seen.values())) >= 2, seen


def test_hash_header_is_sticky(tmp_path, origins, bulwark):
    servers = origins(3)
    bw = bulwark(upstream_cfg(tmp_path, servers, 'hash(http.request.headers["x-user"])'))
    seen = {}
    for i in range(30):
        user = f"user-{i}"
        got = {bw.request("GET", f"/u/{j}", headers=[("X-User", user)]).json()["server"] for j in range(3)}
        assert len(got) == 1, f"{user} went to {got}"
        seen[user] = got.pop()
    assert len(set(seen.values())) >= 2, seen
    # Requests without the header are still served.
    assert bw.request("GET", "/nouser").status == 200


def test_hash_falls_over_to_another_server_when_its_server_is_down(tmp_path, origins, bulwark):
    servers = origins(2)
    down = om.down_address()

    class Down:
        address = down
        name = "down"

    cfg = upstream_cfg(tmp_path, [servers[0], Down, servers[1]], "hash(http.request.uri.path)", max_fails=100)
    bw = bulwark(cfg, expect_errors=[down])
    for i in range(40):
        r = bw.request("GET", f"/f/{i}")
        assert r.status == 200, f"/f/{i}: {r!r}"


def test_least_conn_keeps_weights_when_idle(tmp_path, origins, bulwark):
    """One request at a time leaves every server idle at each pick: the
    tie is broken by weight (smooth weighted round robin, as nginx does), so
    a canary of weight 1 beside weight 9 gets a tenth of the traffic, not
    half."""
    canary, main = origins(2)
    bw = bulwark(upstream_cfg(tmp_path, [canary, main], "least_conn", weights=[1, 9]))
    seq = sequence(bw, 40)
    assert seq.count(canary.name) == 4, seq


def test_max_conns_caps_requests_in_flight_per_server(tmp_path, origins, bulwark):
    # A server at max_conns takes no more requests from this worker: the
    # next goes to another server, and with every server full the client
    # gets a 503 at once instead of piling onto a struggling origin. A
    # request that ends frees its place.
    import time
    from bwtest import client
    a, b = origins(2)
    for o in (a, b):
        o.on("/hang", om.no_response())
    cfg = upstream_cfg(tmp_path, [a, b], "round_robin")
    cfg["workers"] = 1
    cfg["upstreams"]["app"]["servers"][0]["max_conns"] = 2
    cfg["upstreams"]["app"]["servers"][1]["max_conns"] = 1
    bw = bulwark(cfg)
    hanging = []
    for i in range(3):
        c = bw.connect(timeout=10)
        c.send(client.request_bytes("GET", "/hang"))
        hanging.append(c)
        assert a.wait_for(lambda o: len(o.heads_for("/hang")) + len(b.heads_for("/hang")) > i, 10)
    assert len(a.heads_for("/hang")) == 2 and len(b.heads_for("/hang")) == 1
    r = bw.request("GET", "/full")
    assert r.status == 503, r
    assert not a.requests_for("/full") and not b.requests_for("/full")
    line = [x for x in bw.access_log_lines(wait_for=1) if x["path"] == "/full"]
    assert line and "max_conns" in line[0].get("error", ""), line
    # The requests end (their clients leave, and bulwark lets their
    # upstream connections go): the servers take requests again.
    for c in hanging:
        c.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (a.open_connections or b.open_connections):
        time.sleep(0.02)
    assert [bw.request("GET", f"/again/{i}").status for i in range(3)] == [200, 200, 200]
