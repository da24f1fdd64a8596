"""JSON for the runtime's start-up path, without the json package.

json.decoder and json.encoder import re (and with it enum): ~5 ms of every `torpor state`,
which containerd runs for each operation on a container. Parsing and string escaping here are
CPython's own C code from _json, the same that json uses; only the encoder's walk over dicts
and lists is written out below. Output is byte for byte what json.dumps gives for the same
value and indent (tests/test_jsonlite.py checks it against json).
"""

from __future__ import annotations

import _json

_WHITESPACE = " \t\n\r"


def _no_constant(name: str):
    raise ValueError(f"JSON has no {name}")


class _Context:
    """The attributes _json.make_scanner reads, as json.JSONDecoder() has them, except that
    NaN and Infinity are refused."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)
    memo: dict = {}


_scan = _json.make_scanner(_Context())
_string = _json.encode_basestring_ascii


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def loads(text: str | bytes) -> object:
    """One JSON value (surrounded by whitespace only); ValueError otherwise."""
    if isinstance(text, bytes | bytearray):
        text = text.decode()
    start = _skip(text, 0)
    try:
        value, end = _scan(text, start)
    except (StopIteration, SystemError):
        # _json raises its syntax errors through json.decoder's JSONDecodeError, which it
        # finds only if json.decoder is loaded (else SystemError): json says where, then
        import json

        json.loads(text)  # raises JSONDecodeError, a ValueError
        raise ValueError("invalid JSON") from None
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def dumps(value: object, indent: int | None = None) -> str:
    """As json.dumps(value, indent=indent): ASCII only, sort order kept."""
    out: list[str] = []
    _emit(value, out, indent, 0)
    return "".join(out)


def _emit(v: object, out: list[str], indent: int | None, level: int) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, str):
        out.append(_string(v))
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"JSON has no {v}")
        out.append(float.__repr__(v))
    elif isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        inner, close, sep = _layout(indent, level)
        out.append("{" + inner)
        for i, (k, item) in enumerate(v.items()):
            if i:
                out.append(sep)
            out.append(_string(_key(k)) + ": ")
            _emit(item, out, indent, level + 1)
        out.append(close + "}")
    elif isinstance(v, list | tuple):
        if not v:
            out.append("[]")
            return
        inner, close, sep = _layout(indent, level)
        out.append("[" + inner)
        for i, item in enumerate(v):
            if i:
                out.append(sep)
            _emit(item, out, indent, level + 1)
        out.append(close + "]")
    else:
        raise TypeError(f"Object of type {type(v).__name__} is not JSON serializable")


def _layout(indent: int | None, level: int) -> tuple[str, str, str]:
    """(after the opening bracket, before the closing one, between items)."""
    if indent is None:
        return "", "", ", "
    pad = "\n" + " " * (indent * (level + 1))
    return pad, "\n" + " " * (indent * level), "," + pad


def _key(k: object) -> str:
    """json's conversions of non-string keys."""
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float):
        return float.__repr__(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")
