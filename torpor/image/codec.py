"""Typed records and their JSON encoding: the image's schema layer.

A record class lists its fields as annotations (real types: int, bool, str, bytes, float,
object for any JSON value, list[T], dict[K, V], another record, a union of tagged records,
T | None) with class attributes as defaults. Decoding checks every value against its field's
type and names the place of the first mismatch (`$.processes[0].vmas[3].start`), so a damaged
or foreign image is refused before anything is built from it.

On disk a record is compact ASCII JSON: an object of its fields (those equal to their default
left out when the class says omit_defaults), or an array of its fields in order (array_like);
bytes are base64 strings; a tagged record carries its tag in "type". Parsing and encoding are
CPython's C code from _json; only the type checks are Python.

This replaces msgspec: its C module imports typing, datetime, decimal, uuid and re when it
loads, 20-28 ms on this machine, a third of a whole tiny `torpor restore`.
"""

from __future__ import annotations

import _json
import binascii
import types

from torpor import jsonlite
from torpor.records import Factory, factory, record

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

TAG_FIELD = "type"
_MISSING = object()


class ValidationError(ValueError):
    """A decoded value does not fit the schema; `where` is its JSON path."""

    def __init__(self, msg: str, where: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.where = where

    def at(self, step: str) -> ValidationError:
        self.where = step + self.where
        return self

    def __str__(self) -> str:
        return f"{self.msg} - at `${self.where}`"[:2000]


class DecodeError(ValueError):
    """The bytes are not JSON."""


class Record:
    """Base of typed records. Options (inherited): omit_defaults, forbid_unknown_fields,
    array_like; tag (this class only): the value of "type" in a tagged union."""

    _omit_defaults = False
    _forbid_unknown = False
    _array_like = False
    _tag: str | None = None
    __record_fields__: tuple[str, ...] = ()

    def __init_subclass__(cls, *, omit_defaults: bool | None = None,
                          forbid_unknown_fields: bool | None = None,
                          array_like: bool | None = None, tag: str | None = None,
                          **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if omit_defaults is not None:
            cls._omit_defaults = omit_defaults
        if forbid_unknown_fields is not None:
            cls._forbid_unknown = forbid_unknown_fields
        if array_like is not None:
            cls._array_like = array_like
        cls._tag = tag
        own = cls.__dict__.get("__annotations__", {})
        for name in own:  # an empty list or dict default is made fresh for each instance
            d = cls.__dict__.get(name, _MISSING)
            if type(d) in (list, dict) and not d:
                setattr(cls, name, factory(type(d)))
        record(cls)
        cls._codec = None  # compiled at first use: the annotations may name later classes


class _Codec:
    """A record class's fields: (name, exact, decoder, default, default is a factory).
    exact is the field's type when a JSON value of exactly that type is taken as it is (int,
    str, bool: the common case, checked inline), else None."""

    __slots__ = ("cls", "fields", "names", "required", "by_name", "encode")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.fields: list[tuple[str, type | None, Callable, Any, bool]] = []
        defaults = cls.__record_defaults__
        for name, tp in cls.__dict__.get("__annotations__", {}).items():
            if isinstance(tp, str):  # postponed annotations: resolved in the class's module
                import sys

                tp = eval(tp, vars(sys.modules[cls.__module__]))  # noqa: S307 - own source
            d = defaults.get(name, _MISSING)
            fac = isinstance(d, Factory)
            exact = tp if tp in (int, str, bool) else None
            self.fields.append((name, exact, _decoder(tp), d.make if fac else d, fac))
        self.names = [f[0] for f in self.fields]
        self.by_name = {f[0]: f for f in self.fields}
        self.required = sum(1 for f in self.fields if f[3] is _MISSING)
        self.encode = _record_encoder(self)


def _codec(cls: type) -> _Codec:
    c = cls.__dict__.get("_codec")
    if c is None:
        c = _Codec(cls)
        cls._codec = c
    return c


# ------------------------------------------------------------------------ decoding


def _expected(what: str, v: object) -> ValidationError:
    got = {dict: "object", list: "array", str: "str", int: "int", float: "float", bool: "bool",
           type(None): "null"}.get(type(v), type(v).__name__)
    return ValidationError(f"Expected `{what}`, got `{got}`")


def _int(v: object) -> int:
    if type(v) is int:
        return v
    raise _expected("int", v)


def _bool(v: object) -> bool:
    if type(v) is bool:
        return v
    raise _expected("bool", v)


def _str(v: object) -> str:
    if type(v) is str:
        return v
    raise _expected("str", v)


def _float(v: object) -> float:
    if type(v) is float or type(v) is int:
        return float(v)
    raise _expected("float", v)


def _bytes(v: object) -> bytes:
    if type(v) is str:
        try:
            return binascii.a2b_base64(v, strict_mode=True)
        except (binascii.Error, ValueError):
            raise ValidationError("Invalid base64 encoded string") from None
    raise _expected("str", v)


def _any(v: object) -> object:
    return v


_SCALARS: dict[object, Callable] = {int: _int, bool: _bool, str: _str, float: _float,
                                    bytes: _bytes, object: _any}


def _decoder(tp: object) -> Callable[[object], object]:
    """The function that checks and converts a JSON value to type tp."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    if isinstance(tp, type) and issubclass(tp, Record):
        return _record_decoder(tp)
    if isinstance(tp, types.UnionType):
        return _union_decoder(tp.__args__)
    if isinstance(tp, types.GenericAlias):
        origin, args = tp.__origin__, tp.__args__
        if origin is list:
            return _list_decoder(args[0])
        if origin is tuple:
            return _tuple_decoder(args)
        if origin is dict:
            return _dict_decoder(args[0], args[1])
    raise TypeError(f"no record decoder for type {tp!r}")


def _list_decoder(tp: object) -> Callable[[object], list]:
    if tp in (int, str, bool):  # the common lists of scalars: their types in one C-level pass
        only = {tp}

        def check(v: object) -> list:
            if type(v) is not list:
                raise _expected("array", v)
            if v and set(map(type, v)) != only:
                i = next(i for i, x in enumerate(v) if type(x) is not tp)
                raise _expected(tp.__name__, v[i]).at(f"[{i}]")
            return v
        return check
    return _list_decoder_of(_decoder(tp))


def _list_decoder_of(item: Callable) -> Callable[[object], list]:
    def decode(v: object) -> list:
        if type(v) is not list:
            raise _expected("array", v)
        try:
            return [item(x) for x in v]
        except ValidationError:
            pass
        for i, x in enumerate(v):  # again, to say which item
            try:
                item(x)
            except ValidationError as e:
                raise e.at(f"[{i}]") from None
        raise AssertionError("unreachable")
    return decode


def _tuple_decoder(args: tuple) -> Callable[[object], tuple]:
    items = [_decoder(a) for a in args]

    def decode(v: object) -> tuple:
        if type(v) is not list:
            raise _expected("array", v)
        if len(v) != len(items):
            raise ValidationError(f"Expected `array` of length {len(items)}, got {len(v)}")
        out = []
        for i, (f, x) in enumerate(zip(items, v, strict=True)):
            try:
                out.append(f(x))
            except ValidationError as e:
                raise e.at(f"[{i}]") from None
        return tuple(out)
    return decode


def _dict_decoder(ktp: object, vtp: object) -> Callable[[object], dict]:
    value = _decoder(vtp)
    if ktp is str:
        def key(k: str) -> object:
            return k
    elif ktp is int:  # JSON object keys are strings
        def key(k: str) -> object:
            try:
                return int(k)
            except ValueError:
                raise ValidationError(f"Expected `int` key, got {k!r}") from None
    else:
        raise TypeError(f"no record decoder for dict keys of type {ktp!r}")

    def decode(v: object) -> dict:
        if type(v) is not dict:
            raise _expected("object", v)
        out = {}
        for k, x in v.items():
            try:
                out[key(k)] = value(x)
            except ValidationError as e:
                raise e.at(f"[{k!r}]") from None
        return out
    return decode


def _union_decoder(args: tuple) -> Callable[[object], object]:
    """T | None, or a union of tagged records (told apart by their "type")."""
    others = [a for a in args if a is not type(None)]
    if len(others) < len(args) and len(others) == 1:
        inner = _decoder(others[0])
        return lambda v: None if v is None else inner(v)
    tags: dict[str, type] = {}
    for a in others:
        if not (isinstance(a, type) and issubclass(a, Record) and a._tag):
            raise TypeError(f"a union of records needs tags: {a!r}")
        tags[a._tag] = _record_decoder(a)
    nullable = len(others) < len(args)

    def decode(v: object) -> object:
        if v is None and nullable:
            return None
        if type(v) is not dict:
            raise _expected("object", v)
        tag = v.get(TAG_FIELD)
        dec = tags.get(tag)  # type: ignore[arg-type]
        if dec is None:
            raise ValidationError(f"Invalid value {tag!r}").at(f".{TAG_FIELD}")
        return dec(v)
    return decode


def _record_decoder(cls: type[T]) -> Callable[[object], T]:
    """The decoder of one record class (its fields are looked up at its first use: the
    annotations may name classes defined after it). Values of a field's exact type (int, str,
    bool: most of them) are taken inline; the rest go through the field's decoder."""
    fields: list = []
    c: _Codec | None = None
    tag, forbid, array_like = cls._tag, cls._forbid_unknown, cls._array_like
    new = cls.__new__

    def decode(v: object) -> T:
        nonlocal c, fields
        if c is None:
            c = _codec(cls)
            fields = c.fields
        values: dict[str, object] = {}
        if type(v) is dict and not array_like:
            get = v.get
            seen = 0
            for name, exact, dec, default, fac in fields:
                x = get(name, _MISSING)
                if type(x) is exact:
                    values[name] = x
                    seen += 1
                elif x is _MISSING:
                    if default is _MISSING:
                        raise ValidationError(f"Object missing required field `{name}`")
                    values[name] = default() if fac else default
                else:
                    seen += 1
                    try:
                        values[name] = dec(x)
                    except ValidationError as e:
                        raise e.at(f".{name}") from None
            if tag is not None:
                if get(TAG_FIELD) != tag:
                    raise ValidationError(f"Invalid value {get(TAG_FIELD)!r}").at(f".{TAG_FIELD}")
                seen += 1
            if forbid and seen != len(v):
                unknown = next(k for k in v if k not in c.by_name and k != TAG_FIELD)
                raise ValidationError(f"Object contains unknown field `{unknown}`")
        elif type(v) is list and array_like:
            if not c.required <= len(v) <= len(fields):
                raise ValidationError(f"Expected `array` of length {c.required} to "
                                      f"{len(fields)}, got {len(v)}")
            for i, (name, exact, dec, default, fac) in enumerate(fields):
                if i >= len(v):
                    values[name] = default() if fac else default
                    continue
                x = v[i]
                if type(x) is exact:
                    values[name] = x
                    continue
                try:
                    values[name] = dec(x)
                except ValidationError as e:
                    raise e.at(f"[{i}]") from None
        else:
            raise _expected("array" if array_like else "object", v)
        obj = new(cls)
        obj.__dict__ = values
        return obj
    return decode


def convert(value: object, tp: type[T]) -> T:
    """Check and convert a JSON value (dicts, lists, scalars) to type tp."""
    return _decoder(tp)(value)


def parse(data: bytes | str) -> object:
    """A JSON document as dicts, lists and scalars; DecodeError if it is not JSON (invalid
    UTF-8, or nested deeper than the parser goes, included)."""
    try:
        return jsonlite.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"invalid JSON: {e}") from None


def decode(data: bytes | str, tp: type[T]) -> T:
    """A JSON document checked and converted to type tp. DecodeError if it is not JSON,
    ValidationError if it does not fit."""
    return convert(parse(data), tp)


# ------------------------------------------------------------------------ encoding


def _encode_default(o: object) -> object:
    """What the C encoder calls for values JSON has no form for: records and bytes."""
    if type(o) is bytes or type(o) is bytearray or type(o) is memoryview:
        return binascii.b2a_base64(o, newline=False).decode("ascii")
    if isinstance(o, Record):
        return _codec(type(o)).encode(o)
    if isinstance(o, set | frozenset):  # (the C encoder takes tuples as arrays itself)
        return list(o)
    raise TypeError(f"cannot encode a {type(o).__name__}")


def _record_encoder(c: _Codec) -> Callable[[object], object]:
    """What a record of class c.cls becomes for the C encoder: a tuple of its fields
    (array_like), or a dict of them without those equal to their default (omit_defaults)."""
    cls = c.cls
    names = tuple(c.names)
    if cls._array_like:
        def as_array(o: object) -> object:
            d = o.__dict__
            return tuple([d[n] for n in names])
        return as_array
    first = {TAG_FIELD: cls._tag} if cls._tag is not None else {}
    if not cls._omit_defaults:
        def as_object(o: object) -> object:
            d = o.__dict__
            out = dict(first)
            for n in names:
                out[n] = d[n]
            return out
        return as_object
    always = tuple(f[0] for f in c.fields if f[3] is _MISSING)
    # (name, default value, type of default) or (name, None, None) for an empty-list/dict
    # default made by a factory
    optional = tuple((f[0], None, None) if f[4] else (f[0], f[3], type(f[3]))
                     for f in c.fields if f[3] is not _MISSING)

    def as_sparse_object(o: object) -> object:
        d = o.__dict__
        out = dict(first)
        for n in always:
            out[n] = d[n]
        for n, default, dtype in optional:
            x = d[n]
            if dtype is None:
                if x or type(x) not in (list, dict):
                    out[n] = x
            elif x != default or type(x) is not dtype:
                out[n] = x
        return out
    return as_sparse_object


_encoder = _json.make_encoder(None, _encode_default, _json.encode_basestring_ascii, None,
                              ":", ",", False, False, False)


def encode(value: object) -> bytes:
    """Compact ASCII JSON of records, lists, dicts and scalars (TypeError: not encodable,
    ValueError: NaN or infinity)."""
    return "".join(_encoder(value, 0)).encode("ascii")


def to_builtins(value: object) -> object:
    """Records as dicts (or lists), bytes as base64: what decode() reads back."""
    return jsonlite.loads(encode(value))
