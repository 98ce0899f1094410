#!/usr/bin/python3
"""Translates a bulwark ruleset (bench/rules/bench100.yaml) into the Lua an
OpenResty user would write for the same rules: bench/conf/rules100.lua.

Run once by hand when the ruleset changes, then read the output and commit
it; the benchmark never generates anything at run time:

    bench/gen_lua.py bench/rules/bench100.yaml > bench/conf/rules100.lua

Why a translator rather than hand-written Lua: the comparison is only fair if
both sides run the same rules, in the same order, with the same semantics;
a translator keeps them in step when the ruleset changes.

The output is written the way OpenResty users write access rules: a module
(loaded once by init_by_lua, so its tables are built once per worker, not
once per request) whose check() reads ngx.var.* and ngx.req.get_headers()
into locals, then runs one `if` per rule in ruleset order with
string.find(s, lit, 1, true) for substrings, string.sub for prefixes and
suffixes, ngx.re.find(s, re, "jos") for regexes (PCRE JIT, compiled once;
"s" because bulwark's `.` matches a newline), Lua tables for sets, a small
CIDR matcher on the numeric remote address, and ngx.exit(status) on a match.

Semantics kept from bulwark's evaluator (src/rules/eval.c):
- a header field (User-Agent, Referer, Cookie, X-Forwarded-For, Host) is
  absent, not "", when the request lacks it; a comparison on an absent
  value is unknown, and a rule whose expression is unknown does not match.
  The Lua guards each such comparison with `v and ...` (and its negation
  with `v and not ...`), which is exactly three-valued logic for a rule.
  Repeated headers are joined with ", " ("; " for Cookie), as bulwark does.
- http.request.uri.query is "" (present) when there is no query string;
- http.request.headers["x"] is the list of values, empty when absent;
  x[0] of an empty list is unknown;
- http.request.uri.path is the normalised path (nginx's $uri is normalised
  too); raw.http.request.uri.path is $request_uri up to the "?".
Actions supported: block (status, default 403), log (ngx.log, no stop).
Anything else stops the translator with an error, so nothing is silently
dropped.
"""

import re
import sys

import yaml


class Error(Exception):
    pass


# ------------------------------------------------------------------- lexer

KEYWORDS = {"and", "or", "xor", "not", "in", "eq", "ne", "lt", "le", "gt", "ge",
            "contains", "matches", "true", "false"}
SYMBOLS = {"==": "eq", "!=": "ne", "<=": "le", ">=": "ge", "<": "lt", ">": "gt",
           "&&": "and", "||": "or", "^^": "xor", "!": "not", "~": "matches"}
IP_RE = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?:/[0-9]{1,2})?|"
                   r"[0-9a-fA-F:]*:[0-9a-fA-F:.]*(?:/[0-9]{1,3})?")


def lex(text):
    toks = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "r" and i + 1 < n and text[i + 1] in '"#':
            j = i + 1
            hashes = 0
            while text[j] == "#":
                hashes += 1
                j += 1
            if text[j] != '"':
                raise Error(f"bad raw string at {i}")
            end = text.index('"' + "#" * hashes, j + 1)
            toks.append(("str", text[j + 1:end]))
            i = end + 1 + hashes
            continue
        if c == '"':
            j, out = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    j += 1
                    if text[j] not in '"\\':
                        raise Error(f"bad escape at {j}")
                out.append(text[j])
                j += 1
            toks.append(("str", "".join(out)))
            i = j + 1
            continue
        m = IP_RE.match(text, i)
        if m and ("." in m.group(0) and m.group(0).count(".") == 3 or ":" in m.group(0)) \
                and len(m.group(0)) > 2:
            toks.append(("ip", m.group(0)))
            i = m.end()
            continue
        m = re.compile(r"-?[0-9]+").match(text, i)
        if m:
            toks.append(("int", int(m.group(0))))
            i = m.end()
            continue
        if text.startswith("..", i):
            toks.append(("..", ".."))
            i += 2
            continue
        for sym in sorted(SYMBOLS, key=len, reverse=True):
            if text.startswith(sym, i):
                toks.append(("kw", SYMBOLS[sym]))
                i += len(sym)
                break
        else:
            if c in "(){}[],*":
                toks.append((c, c))
                i += 1
                continue
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*").match(text, i)
            if not m:
                raise Error(f"cannot lex {text[i:i + 20]!r}")
            w = m.group(0)
            toks.append(("kw", w) if w in KEYWORDS else ("id", w))
            i = m.end()
    toks.append(("eof", None))
    return toks


# ------------------------------------------------------------------ parser
# AST nodes are tuples: ("or"|"and"|"xor", [kids]), ("not", e),
# ("cmp", op, left, right), ("in", left, set), ("field", name),
# ("hdr", map, name), ("idx", e, n), ("star", e), ("call", fn, [args]),
# ("lit", kind, value), ("set", [elements])

class Parser:
    def __init__(self, text):
        self.t = lex(text)
        self.i = 0

    def peek(self):
        return self.t[self.i]

    def take(self, kind=None, val=None):
        tok = self.t[self.i]
        if (kind and tok[0] != kind) or (val and tok[1] != val):
            raise Error(f"expected {val or kind}, got {tok}")
        self.i += 1
        return tok

    def at(self, kind, val=None):
        tok = self.t[self.i]
        return tok[0] == kind and (val is None or tok[1] == val)

    def parse(self):
        e = self.expr()
        self.take("eof")
        return e

    def nary(self, op, sub):
        kids = [sub()]
        while self.at("kw", op):
            self.take()
            kids.append(sub())
        return kids[0] if len(kids) == 1 else (op, kids)

    def expr(self):
        return self.nary("or", self.xor)

    def xor(self):
        return self.nary("xor", self.conj)

    def conj(self):
        return self.nary("and", self.unary)

    def unary(self):
        if self.at("kw", "not"):
            self.take()
            return ("not", self.unary())
        return self.comparison()

    def comparison(self):
        left = self.value()
        tok = self.peek()
        if tok[0] == "kw" and tok[1] in ("eq", "ne", "lt", "le", "gt", "ge", "contains",
                                         "matches"):
            self.take()
            return ("cmp", tok[1], left, self.value())
        if tok[0] == "kw" and tok[1] == "in":
            self.take()
            return ("in", left, self.set())
        return left

    def set(self):
        self.take("{")
        elems = []
        while not self.at("}"):
            tok = self.take()
            if tok[0] == "int" and self.at(".."):
                self.take()
                elems.append(("range", tok[1], self.take("int")[1]))
            elif tok[0] in ("str", "int", "ip"):
                elems.append((tok[0], tok[1]))
            else:
                raise Error(f"bad set element {tok}")
        self.take("}")
        return ("set", elems)

    def value(self):
        tok = self.take()
        if tok[0] == "(":
            e = self.expr()
            self.take(")")
            return e
        if tok[0] in ("str", "int", "ip"):
            return ("lit", tok[0], tok[1])
        if tok[0] == "kw" and tok[1] in ("true", "false"):
            return ("lit", "bool", tok[1] == "true")
        if tok[0] != "id":
            raise Error(f"unexpected {tok}")
        name = tok[1]
        if self.at("("):
            self.take()
            args = []
            while not self.at(")"):
                args.append(self.expr())
                if self.at(","):
                    self.take()
            self.take(")")
            return ("call", name, args)
        node = ("field", name)
        while self.at("["):
            self.take()
            if self.at("str"):
                node = ("hdr", name, self.take()[1].lower())
            elif self.at("*"):
                self.take()
                node = ("star", node)
            else:
                node = ("idx", node, self.take("int")[1])
            self.take("]")
        return node


# ----------------------------------------------------------------- emitter

def lua_str(s):
    """A Lua string literal for the bytes of s (no escapes needed inside
    long brackets, which is how people write regexes in Lua)."""
    if "\n" not in s and "]]" not in s and not s.endswith("]"):
        if '"' not in s and "\\" not in s:
            return f'"{s}"'
        return f"[[{s}]]"
    level = 1
    while "]" + "=" * level + "]" in s:
        level += 1
    return f"[{'=' * level}[{s}]{'=' * level}]"


# field -> (Lua local name, how check() computes it, may it be nil?)
FIELDS = {
    "http.request.method": ("method", "var.request_method", False),
    "http.request.uri": ("request_uri", "var.request_uri", False),
    "http.request.uri.path": ("uri", "var.uri", False),
    "raw.http.request.uri.path": ("raw_path", None, False),
    "http.request.uri.query": ("args", 'var.args or ""', False),
    "http.host": ("host", "var.http_host", True),
    "http.user_agent": ("ua", 'header(h, "user-agent", ", ")', True),
    "http.referer": ("referer", 'header(h, "referer", ", ")', True),
    "http.cookie": ("cookie", 'header(h, "cookie", "; ")', True),
    "http.x_forwarded_for": ("xff", 'header(h, "x-forwarded-for", ", ")', True),
    "ip.src": ("addr", "var.remote_addr", False),
    "ssl": ("ssl", 'var.https == "on"', False),
    # The bot score a bot-detection step earlier in the request would leave
    # in ngx.ctx; nil in the bench (bulwark runs no bot model there either,
    # so its bot.score is unknown too).
    "bot.score": ("bot_score", "ngx.ctx.bot_score", True),
}
NEEDS_HEADERS = {"http.user_agent", "http.referer", "http.cookie", "http.x_forwarded_for"}


class Emitter:
    def __init__(self):
        self.locals = {}  # name -> code, in first-use order
        self.consts = []  # module-level definitions (sets, CIDR lists)
        self.nconst = 0
        self.helpers = set()
        self.uses_headers = False

    # -- values: (lua code, [nil-able locals that guard it], type)
    def val(self, e):
        k = e[0]
        if k == "elem":  # one value of an any()/all() loop
            return "v", [], "bytes"
        if k == "lit":
            if e[1] == "str":
                return lua_str(e[2]), [], "bytes"
            if e[1] == "int":
                return str(e[2]), [], "int"
            if e[1] == "bool":
                return "true" if e[2] else "false", [], "bool"
            raise Error(f"IP literal outside a set is not supported: {e}")
        if k == "field":
            name = e[1]
            if name not in FIELDS:
                raise Error(f"field {name} not supported by the translator")
            loc, code, nilable = FIELDS[name]
            if name == "raw.http.request.uri.path":
                self.local("request_uri", "var.request_uri")
                self.local("raw_path", "raw_path_of(request_uri)")
                self.helpers.add("raw_path_of")
            else:
                if name in NEEDS_HEADERS:
                    self.uses_headers = True
                    self.helpers.add("header")
                self.local(loc, code)
            typ = {"ssl": "bool", "ip.src": "ip", "bot.score": "int"}.get(name, "bytes")
            return loc, [loc] if nilable else [], typ
        if k == "idx":
            inner = e[1]
            if inner[0] != "hdr":
                raise Error(f"index on {inner} not supported")
            arr = self.hdr_array(inner)
            loc = f"{arr}_{e[2]}"
            self.local(loc, f"{arr}[{e[2] + 1}]")
            return loc, [loc], "bytes"
        if k == "hdr":
            return self.hdr_array(e), [], "array"
        if k == "call":
            fn, args = e[1], e[2]
            if fn in ("lower", "upper"):
                c, g, _ = self.val(args[0])
                return f"{fn}({c})", g, "bytes"
            if fn == "url_decode":
                c, g, _ = self.val(args[0])
                return f"unescape_uri({c})", g, "bytes"
            if fn == "len":
                c, g, _ = self.val(args[0])
                return f"#{c}", g, "int"
            if fn == "concat":
                parts = [self.val(a) for a in args]
                return ("(" + " .. ".join(p[0] for p in parts) + ")",
                        [x for p in parts for x in p[1]], "bytes")
            raise Error(f"function {fn}() as a value not supported")
        raise Error(f"value {e} not supported")

    def local(self, name, code):
        if name not in self.locals:
            self.locals[name] = code

    def hdr_array(self, e):
        if e[1] != "http.request.headers":
            raise Error(f"map {e[1]} not supported in the request phase")
        self.uses_headers = True
        self.helpers.add("values")
        loc = "hv_" + re.sub(r"[^a-z0-9]", "_", e[2])
        self.local(loc, f"values(h, {lua_str(e[2])})")
        return loc

    def const(self, prefix, code):
        self.nconst += 1
        name = f"{prefix}_{self.nconst}"
        self.consts.append(f"local {name} = {code}")
        return name

    # -- conditions: (T, F) Lua code for "is true" / "is false"
    def cond(self, e):
        k = e[0]
        if k == "not":
            t, f = self.cond(e[1])
            return f, t
        if k in ("and", "or"):
            parts = [self.cond(x) for x in e[1]]
            ts, fs = [p[0] for p in parts], [p[1] for p in parts]
            if k == "and":
                return " and ".join(paren(t) for t in ts), " or ".join(paren(f) for f in fs)
            return " or ".join(paren(t) for t in ts), " and ".join(paren(f) for f in fs)
        if k == "xor":
            raise Error("xor not supported by the translator")
        if k == "lit" and e[1] == "bool":
            return ("true", "false") if e[2] else ("false", "true")
        if k == "field" and e[1] == "ssl":
            c, _, _ = self.val(e)
            return c, f"not {c}"
        if k == "call":
            return self.call_cond(e)
        if k == "cmp":
            return self.cmp(e)
        if k == "in":
            return self.in_set(e)
        raise Error(f"condition {e} not supported")

    def guarded(self, guards, test):
        """T and F of a test on values that may be absent (unknown)."""
        g = " and ".join(dict.fromkeys(guards))
        if not g:
            return test, negate(test)
        return f"{g} and {test}", f"{g} and {negate(test)}"

    def call_cond(self, e):
        fn, args = e[1], e[2]
        if fn in ("starts_with", "ends_with"):
            s, g, _ = self.val(args[0])
            if args[1][0] != "lit":
                raise Error(f"{fn} with a non-literal second argument")
            lit = args[1][2]
            n = len(lit.encode())
            test = (f"sub({s}, 1, {n}) == {lua_str(lit)}" if fn == "starts_with"
                    else f"sub({s}, -{n}) == {lua_str(lit)}")
            return self.guarded(g, test)
        if fn == "has":
            a = args[0]
            if a[0] == "hdr":
                self.uses_headers = True
                return f"h[{lua_str(a[2])}] ~= nil", f"h[{lua_str(a[2])}] == nil"
            if a[0] == "field":
                loc, _, typ = self.val(a)
                nilable = FIELDS[a[1]][2]
                return (f"{loc} ~= nil", f"{loc} == nil") if nilable else ("true", "false")
            raise Error(f"has({a}) not supported")
        if fn in ("any", "all"):
            return self.quantifier(fn, args[0])
        raise Error(f"function {fn}() as a condition not supported")

    def quantifier(self, fn, e):
        """any()/all() over [*]: a module-level function looping over the
        header's values, as a user would write it."""
        # e is a cmp/in whose left side contains ("star", hdr)
        star = find_star(e)
        if star is None:
            raise Error(f"{fn}() without [*]: {e}")
        arr = self.hdr_array(star[1])
        t, _ = self.cond(replace_star(e, ("elem",)))
        self.nconst += 1
        name = f"{fn}_{self.nconst}"
        body = (f"local function {name}(list)\n"
                f"  for i = 1, #list do\n    local v = list[i]\n"
                + (f"    if {t} then return true end\n  end\n  return false\nend"
                   if fn == "any" else
                   f"    if not ({t}) then return false end\n  end\n  return true\nend"))
        self.consts.append(body)
        return f"{name}({arr})", f"not {name}({arr})"

    def cmp(self, e):
        op, l, r = e[1], e[2], e[3]
        lc, lg, lt = self.val(l)
        if op == "matches":
            if r[0] != "lit" or r[1] != "str":
                raise Error("matches needs a literal pattern")
            return self.guarded(lg, f"re_find({lc}, {lua_str(r[2])}, \"jos\")")
        rc, rg, _ = self.val(r)
        g = lg + rg
        if op == "contains":
            return self.guarded(g, f"find({lc}, {rc}, 1, true)")
        luaop = {"eq": "==", "ne": "~=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
        return self.guarded(g, f"{lc} {luaop} {rc}")

    def in_set(self, e):
        l, s = e[1], e[2]
        lc, lg, lt = self.val(l)
        elems = s[1]
        kinds = {x[0] for x in elems}
        if kinds <= {"str"}:
            tbl = self.const("SET", "{ " + ", ".join(
                f"[{lua_str(x[1])}] = true" for x in elems) + " }")
            return self.guarded(lg, f"{tbl}[{lc}]")
        if kinds <= {"int", "range"}:
            singles = [x[1] for x in elems if x[0] == "int"]
            tests = []
            if singles:
                tbl = self.const("SET", "{ " + ", ".join(f"[{v}] = true" for v in singles) + " }")
                tests.append(f"{tbl}[{lc}]")
            tests += [f"({lc} >= {x[1]} and {lc} <= {x[2]})" for x in elems if x[0] == "range"]
            return self.guarded(lg, " or ".join(tests) if len(tests) == 1
                                else "(" + " or ".join(tests) + ")")
        if kinds <= {"ip"}:
            self.helpers.add("cidr")
            self.local("addr_n", "ipv4_number(addr)")
            nets = []
            for x in elems:
                ip, _, bits = x[1].partition("/")
                if ":" in ip:
                    # The bench listens on 127.0.0.1 only: remote_addr is
                    # always IPv4, and an IPv4 address is never in an IPv6
                    # network (as in bulwark), so v6 entries cannot match.
                    nets.append(f'{{ v6 = "{x[1]}" }}')
                    continue
                bits = int(bits) if bits else 32
                nets.append(f'cidr("{ip}", {bits})')
            tbl = self.const("NETS", "{\n  " + ",\n  ".join(nets) + ",\n}")
            return self.guarded(lg, f"ip_in(addr_n, {tbl})")
        raise Error(f"mixed set {elems}")


def find_star(e):
    if isinstance(e, tuple):
        if e and e[0] == "star":
            return e
        for x in e:
            r = find_star(x)
            if r:
                return r
    elif isinstance(e, list):
        for x in e:
            r = find_star(x)
            if r:
                return r
    return None


def replace_star(e, with_):
    if isinstance(e, tuple):
        if e and e[0] == "star":
            return with_
        return tuple(replace_star(x, with_) for x in e)
    if isinstance(e, list):
        return [replace_star(x, with_) for x in e]
    return e


def paren(c):
    return c if re.fullmatch(r"[\w.\[\]\"]+(\(.*\))?", c) else f"({c})"


def negate(test):
    if test.startswith("not "):
        return test[4:]
    return f"not {paren(test)}"


HELPERS = {
    "header": '''-- A request header as one string: repeated headers joined the way bulwark
-- joins them (", ", or "; " for Cookie); nil when absent.
local function header(h, name, sep)
  local v = h[name]
  if type(v) == "table" then
    return concat(v, sep)
  end
  return v
end''',
    "values": '''-- All values of a request header as a list (empty when absent).
local EMPTY = {}
local function values(h, name)
  local v = h[name]
  if v == nil then
    return EMPTY
  end
  if type(v) == "table" then
    return v
  end
  return { v }
end''',
    "raw_path_of": '''local function raw_path_of(request_uri)
  local q = find(request_uri, "?", 1, true)
  return q and sub(request_uri, 1, q - 1) or request_uri
end''',
    "cidr": '''-- IPv4 CIDR matching on numbers: the address is parsed once per request,
-- each network once at load.
local function ipv4_number(ip)
  local a, b, c, d = match(ip, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return nil -- IPv6 client: no IPv4 network contains it
  end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function cidr(net, bits)
  local size = 2 ^ (32 - bits)
  local first = ipv4_number(net)
  return { first = first, last = first + size - 1 }
end

local function ip_in(n, nets)
  if n == nil then
    return false
  end
  for i = 1, #nets do
    local net = nets[i]
    if net.first and n >= net.first and n <= net.last then
      return true
    end
  end
  return false
end''',
}


def action_code(rule):
    act = rule.get("action", "block")
    if act == "block":
        status = rule.get("status", 403)
        return f"return ngx.exit({status})"
    if act == "log":
        return f'ngx.log(ngx.WARN, "rule {rule["id"]} matched")'
    raise Error(f"rule {rule['id']}: action {act} not supported by the translator")


def translate(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    if doc.get("phase", "request") != "request":
        raise Error("only request-phase rulesets")
    em = Emitter()
    body = []
    for rule in doc["rules"]:
        if rule.get("enabled", True) is False:
            continue
        try:
            t, _ = em.cond(Parser(rule["expression"]).parse())
        except (Error, IndexError, ValueError) as e:
            raise Error(f"rule {rule['id']}: {e}") from None
        expr = " ".join(rule["expression"].split())
        body.append(f"  -- {rule['id']}: {expr}\n  if {t} then\n    {action_code(rule)}\n  end")
    out = [f"-- The {doc['id']} ruleset ({path}, {len(body)} rules) as an OpenResty user",
           "-- writes it: generated once by bench/gen_lua.py, then read and committed.",
           "-- nginx loads it with init_by_lua_block { require \"rules100\" } and runs",
           "-- require(\"rules100\").check() in access_by_lua_block.",
           "local ngx = ngx",
           "local var = ngx.var",
           "local get_headers = ngx.req.get_headers",
           "local re_find = ngx.re.find",
           "local unescape_uri = ngx.unescape_uri",
           "local find, sub, match, lower, upper = string.find, string.sub, string.match, "
           "string.lower, string.upper",
           "local concat = table.concat",
           ""]
    for name in ("header", "values", "raw_path_of", "cidr"):
        if name in em.helpers:
            out += [HELPERS[name], ""]
    out += em.consts
    out += ["", "local _M = {}", "", "function _M.check()"]
    if em.uses_headers:
        out.append("  local h = get_headers()")
    for name, code in em.locals.items():
        out.append(f"  local {name} = {code}")
    out.append("")
    out += [b + "\n" for b in body]
    out += ["end", "", "return _M"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench/gen_lua.py RULESET.yaml > bench/conf/rules100.lua")
    try:
        sys.stdout.write(translate(sys.argv[1]))
    except Error as e:
        sys.exit(f"gen_lua: {e}")
