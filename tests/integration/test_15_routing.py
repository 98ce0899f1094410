"""Routes: host equality, path prefix, both, first match wins, default."""
import pytest

from bwtest.proc import default_config


def routing_config(tmp_path, a, b, c, d, routes):
    cfg = default_config([d.address], str(tmp_path / "access.log"))
    cfg["upstreams"] = {
        "a": {"servers": [{"address": a.address}]},
        "b": {"servers": [{"address": b.address}]},
        "c": {"servers": [{"address": c.address}]},
        "d": {"servers": [{"address": d.address}]},
    }
    cfg["routes"] = routes
    return cfg


def served_by(bw, path, host="test.example"):
    r = bw.request("GET", path, host=host)
    assert r.status == 200, r
    return r.json()["server"]


def test_host_and_prefix_routes_first_match_wins(tmp_path, origins, bulwark):
    a, b, c, d = origins(4)
    bw = bulwark(routing_config(tmp_path, a, b, c, d, [
        {"match": 'http.host eq "api.example" and starts_with(http.request.uri.path, "/v2/")', "upstream": "c"},
        {"match": 'http.host eq "api.example"', "upstream": "a"},
        {"match": 'starts_with(http.request.uri.path, "/static/")', "upstream": "b"},
        {"match": 'starts_with(http.request.uri.path, "/static/special/")', "upstream": "c"},  # shadowed
        {"upstream": "d"},
    ]))
    assert served_by(bw, "/v2/users", "api.example") == c.name
    assert served_by(bw, "/v1/users", "api.example") == a.name
    assert served_by(bw, "/static/x.css", "api.example") == a.name  # host rule is earlier
    assert served_by(bw, "/static/x.css") == b.name
    assert served_by(bw, "/static/special/y") == b.name  # first match wins
    assert served_by(bw, "/other") == d.name
    assert served_by(bw, "/v2/users", "www.example") == d.name
    # Prefix is a prefix of the path, not a substring, and is case-sensitive.
    assert served_by(bw, "/x/static/") == d.name
    assert served_by(bw, "/STATIC/x") == d.name
    assert served_by(bw, "/static") == d.name  # "/static" does not start with "/static/"


def test_host_match_ignores_case(tmp_path, origins, bulwark):
    a, b, c, d = origins(4)
    bw = bulwark(routing_config(tmp_path, a, b, c, d, [
        {"match": 'http.host eq "api.example"', "upstream": "a"},
        {"upstream": "d"},
    ]))
    assert served_by(bw, "/", "API.Example") == a.name
    assert served_by(bw, "/", "api.example.evil") == d.name


def test_route_on_query_does_not_confuse_prefix(tmp_path, origins, bulwark):
    a, b, c, d = origins(4)
    bw = bulwark(routing_config(tmp_path, a, b, c, d, [
        {"match": 'starts_with(http.request.uri.path, "/api/")', "upstream": "a"},
        {"upstream": "d"},
    ]))
    assert served_by(bw, "/api/x?y=/z") == a.name
    assert served_by(bw, "/?/api/") == d.name


def test_dot_segments_cannot_escape_a_prefix_route(tmp_path, origins, bulwark):
    # Path matching is on the normalised path (DESIGN: RFC 3986 6.2.2), so
    # /public/../admin is routed as /admin, and %61dmin as admin.
    a, b, c, d = origins(4)
    bw = bulwark(routing_config(tmp_path, a, b, c, d, [
        {"match": 'starts_with(http.request.uri.path, "/admin/")', "upstream": "a"},
        {"upstream": "d"},
    ]))
    assert served_by(bw, "/public/../admin/x") == a.name
    assert served_by(bw, "/%61dmin/x") == a.name
    assert served_by(bw, "//admin/x") == a.name
    assert served_by(bw, "/admin/x") == a.name
