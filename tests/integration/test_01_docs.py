"""The YAML examples in README.md and docs/*.md pass `bulwark check`, so the
docs cannot drift from the code.

Each ```yaml block carries a marker on the line before its fence saying
what it is (an HTML comment, invisible once rendered):

  <!-- check: config -->          a whole main config
  <!-- check: fragment -->        top-level keys of a main config; checked
                                  inside a minimal config that lacks them
  <!-- check: ruleset -->         a whole ruleset file
  <!-- check: rules [response] --> items of a ruleset's `rules:` list
  <!-- check: no, WHY -->         not checkable (say why)

A block without a marker fails the test: a new example must say which it
is. The files an example names (certificates, rulesets, the feature file,
the token file, state and log directories) are made in a temporary
directory first; absolute paths under /etc/bulwark, /var/lib/bulwark and
/var/log/bulwark are moved there."""
import os
import pathlib
import re
import subprocess

import pytest

from bwtest.pki import Pki
from bwtest.proc import bulwark_bin

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?:yaml|yml)\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!-- check: (config|fragment|ruleset|rules|no)\b([^>]*)-->\s*$")

# The minimal config a fragment is checked in: its keys replace these.
BASE = {
    "listen": "listen:\n  - address: 127.0.0.1:0\n",
    "upstreams": "upstreams:\n" + "".join(
        f"  {n}:\n    servers: [{{ address: 127.0.0.1:{9000 + i} }}]\n"
        for i, n in enumerate(("app", "api", "static", "writes", "gold"))),
    "routes": "routes:\n  - upstream: {first}\n",
}

FEATURES = ('{"version": 1, "bias": 0.0, "features": [{"name": "ua_missing", '
            '"expression": "not has(http.user_agent)", "weight": 1.0}]}\n')


def blocks():
    for md in DOCS:
        text = md.read_text()
        for m in FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            kind, arg = (mark.group(1), mark.group(2).strip()) if mark else (None, "")
            yield pytest.param(md.name, line, kind, arg, m.group(1),
                               id=f"{md.name}:{line}")


def top_keys(body):
    return re.findall(r"^([a-z_]+):", body, re.M)


def first_upstream(body):
    m = re.search(r"^upstreams:\s*\n(?:\s*#.*\n)*\s+([A-Za-z0-9_-]+):", body, re.M)
    return m.group(1) if m else "app"


def make_files(d, body, pki):
    """Makes what the example names, relative to d (the config's directory)."""
    def path(p):
        p = p.strip("'\"")
        return pathlib.Path(p) if p.startswith("/") else d / p

    certs = re.findall(r"\bcert: ([^\s,}]+)", body)
    keys = re.findall(r"\bkey: ([^\s,}]+)", body)
    for i, (c, k) in enumerate(zip(certs, keys)):
        crt, key = pki.leaf(f"leaf{i}", [f"h{i}.example"])
        path(c).parent.mkdir(parents=True, exist_ok=True)
        path(c).write_bytes(pathlib.Path(crt).read_bytes())
        path(k).write_bytes(pathlib.Path(key).read_bytes())
    for ca in re.findall(r"\bca_file: ([^\s,}]+)", body):
        path(ca).parent.mkdir(parents=True, exist_ok=True)
        path(ca).write_bytes(pathlib.Path(pki.ca).read_bytes())
    for t in re.findall(r"\btoken_file: ([^\s,}#]+)", body):
        path(t).parent.mkdir(parents=True, exist_ok=True)
        path(t).write_text("s3cret-token\n")
        os.chmod(path(t), 0o600)
    for s in re.findall(r"^state_dir: ([^\s#]+)", body, re.M):
        path(s).mkdir(parents=True, exist_ok=True)
    for a in re.findall(r"^access_log: ([^\s#]+)", body, re.M):
        if a.strip("'\"") not in ("-", "off"):
            path(a).parent.mkdir(parents=True, exist_ok=True)
    for f in re.findall(r"\bfeatures: ([^\s,}#]+)", body):
        path(f).write_text(FEATURES)
    for lst in re.findall(r"\brulesets: \[([^\]]*)\]", body):
        for r in (x.strip() for x in lst.split(",")):
            path(r).parent.mkdir(parents=True, exist_ok=True)
            path(r).write_text(f"id: {pathlib.Path(r).stem}\nrules: []\n")


def check(cfg):
    r = subprocess.run([bulwark_bin(), "check", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("doc, line, kind, arg, body", list(blocks()))
def test_doc_yaml_example_checks(tmp_path, pki, doc, line, kind, arg, body):
    where = f"{doc}:{line}"
    assert kind, (f"{where}: a ```yaml block without a marker: put <!-- check: config|fragment|"
                  f"ruleset|rules|no, why --> on the line before it (tests/integration/"
                  f"test_01_docs.py)")
    if kind == "no":
        assert arg.lstrip(", "), f"{where}: <!-- check: no --> needs a reason"
        return
    d = tmp_path / "conf"
    d.mkdir()
    for prefix in ("/etc/bulwark", "/var/lib/bulwark", "/var/log/bulwark"):
        body = body.replace(prefix, str(d / prefix.strip("/").replace("/", "_")))
    if kind in ("ruleset", "rules"):
        if kind == "rules":
            phase = "response" if arg == "response" else "request"
            body = f"id: doc\nphase: {phase}\nrules:\n{body}"
        (d / "doc-ruleset.yaml").write_text(body)
        body = "modules:\n  rules: { rulesets: [doc-ruleset.yaml] }\n"
        kind = "fragment"
    if kind == "fragment":
        have = set(top_keys(body))
        first = first_upstream(body) if "upstreams" in have else "app"
        body = body + "".join(v.replace("{first}", first) for k, v in BASE.items()
                              if k not in have)
    cfg = d / "bulwark.yaml"
    cfg.write_text(body)
    make_files(d, body, pki)
    rc, out = check(cfg)
    assert rc == 0, f"{where}: `bulwark check` refuses the example:\n{out}\n---\n{body}"


def test_every_doc_yaml_block_is_found():
    # The fence pattern must keep finding the examples (a regex that
    # silently matched nothing would pass every doc).
    assert sum(1 for _ in blocks()) >= 20


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.name)
def test_doc_code_fences_are_balanced(md):
    # An unclosed ``` turns the rest of the page into one code block.
    fences = [i + 1 for i, line in enumerate(md.read_text().split("\n"))
              if line.lstrip().startswith("```")]
    assert len(fences) % 2 == 0, f"{md.name}: odd number of ``` fences, at lines {fences}"
