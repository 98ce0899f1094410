"""A small YAML writer for test configs (dicts, lists, str, int, bool):
block style, strings double-quoted with JSON escaping (valid YAML)."""
import json
import re

_PLAIN = re.compile(r"^[A-Za-z0-9_./:\-]+$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _RESERVED and not s[0].isdigit() and s[0] not in "-." \
            and ":" not in s:
        return s
    return json.dumps(s)


def dump(obj, indent=0):
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                out.append(dump(v, indent + 1))
            elif isinstance(v, list):
                out.append(f"{pad}{k}: []")
            elif isinstance(v, dict):
                out.append(f"{pad}{k}: {{}}")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                inner = dump(item, indent + 1).split("\n")
                first = inner[0][len(pad) + 2:]
                out.append(f"{pad}- {first}")
                out.extend(inner[1:])
            elif isinstance(item, list):
                out.append(f"{pad}-")
                out.append(dump(item, indent + 1))
            else:
                out.append(f"{pad}- {_scalar(item)}")
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)
