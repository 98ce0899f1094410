"""A strict parser of the Prometheus text exposition format 0.0.4, for
tests: every sample belongs to a family announced by one HELP and one TYPE
line before its samples, a family's samples are contiguous, names and label
names are valid, label values use only the three escapes the format has
(\\\\, \\" and \\n), no series appears twice, and histograms are whole
(cumulative buckets ending in le="+Inf", then _sum and _count)."""
import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Family:
    def __init__(self, name):
        self.name, self.help, self.type, self.samples = name, None, None, []


def _value(text, where):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"{where}: bad value {text!r}")
    return float(text)


def _labels(s, i, where):
    """Parses '{...}' from s[i] == '{'; returns (dict, index after '}')."""
    out = {}
    i += 1
    while True:
        if s[i] == "}":
            return out, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise ValueError(f"{where}: bad label name at {s[i:i + 20]!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError(f"{where}: expected =\" after label {name}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ValueError(f"{where}: unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ValueError(f"{where}: bad escape \\{nxt} in label {name}")
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                val.append(c)
                i += 1
        if name in out:
            raise ValueError(f"{where}: label {name} twice")
        out[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ValueError(f"{where}: expected , or }} after label {name}")


def _family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and base in families and families[base].type in ("histogram", "summary"):
            return families[base]
    return families.get(name)


def parse(text):
    """Returns {family name: Family}; raises ValueError on any violation."""
    if not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    families, closed, series = {}, set(), set()
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}: {line[:120]!r}"
        if line == "":
            raise ValueError(f"{where}: empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    raise ValueError(f"{where}: bad metric name")
                f = families.get(name)
                if f is None:
                    if name in closed:
                        raise ValueError(f"{where}: family {name} announced again")
                    f = families[name] = Family(name)
                if current is not None and current is not f:
                    closed.add(current.name)
                current = f
                if f.samples:
                    raise ValueError(f"{where}: {parts[1]} after samples of {name}")
                if parts[1] == "HELP":
                    if f.help is not None:
                        raise ValueError(f"{where}: second HELP for {name}")
                    f.help = parts[3] if len(parts) > 3 else ""
                    if re.search(r"\\[^\\n]", f.help.replace("\\\\", "")):
                        raise ValueError(f"{where}: bad escape in HELP")
                else:
                    if f.type is not None:
                        raise ValueError(f"{where}: second TYPE for {name}")
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ValueError(f"{where}: bad TYPE")
                    f.type = parts[3]
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not m:
            raise ValueError(f"{where}: bad sample name")
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, where)
        if line[i:i + 1] != " ":
            raise ValueError(f"{where}: expected a space before the value")
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2):
            raise ValueError(f"{where}: bad value/timestamp")
        value = _value(rest[0], where)
        f = _family_of(name, families)
        if f is None or f.help is None or f.type is None:
            raise ValueError(f"{where}: sample of {name} without HELP and TYPE before it")
        if f is not current:
            raise ValueError(f"{where}: samples of {f.name} are not contiguous")
        if f.type == "histogram" and name == f.name:
            raise ValueError(f"{where}: a histogram sample needs _bucket, _sum or _count")
        if "le" in labels and not name.endswith("_bucket"):
            raise ValueError(f"{where}: le outside a bucket")
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise ValueError(f"{where}: duplicate series")
        series.add(key)
        f.samples.append((name, labels, value))
    for f in families.values():
        if f.help is None or f.type is None:
            raise ValueError(f"family {f.name}: HELP or TYPE missing")
        if f.type == "histogram":
            _check_histogram(f)
    return families


def _check_histogram(f):
    groups = {}
    for name, labels, value in f.samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        groups.setdefault(rest, []).append((name, labels, value))
    for rest, samples in groups.items():
        buckets = [(float(lb["le"].replace("Inf", "inf")), v)
                   for n, lb, v in samples if n.endswith("_bucket")]
        if not buckets or not math.isinf(buckets[-1][0]):
            raise ValueError(f"{f.name}{rest}: no le=\"+Inf\" bucket last")
        if [b for b, _ in buckets] != sorted(b for b, _ in buckets):
            raise ValueError(f"{f.name}{rest}: buckets out of order")
        if any(buckets[k][1] > buckets[k + 1][1] for k in range(len(buckets) - 1)):
            raise ValueError(f"{f.name}{rest}: buckets not cumulative")
        counts = [v for n, _, v in samples if n == f.name + "_count"]
        sums = [v for n, _, v in samples if n == f.name + "_sum"]
        if len(counts) != 1 or len(sums) != 1:
            raise ValueError(f"{f.name}{rest}: needs one _sum and one _count")
        if counts[0] != buckets[-1][1]:
            raise ValueError(f"{f.name}{rest}: _count differs from the +Inf bucket")
