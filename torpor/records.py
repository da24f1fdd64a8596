"""@record: typed records for the runtime's hot start-up paths (config.json, the init plan).

dataclasses costs ~10 ms to import (inspect, ast, dis) and ~0.5 ms per class (it compiles an
__init__ for each): too much for `torpor create`, which containerd runs for every container.
A record takes its fields from the class annotations, in order; a class attribute is a
field's default, factory(f) a default made fresh for each instance. __init__ (positional or
keyword, then __post_init__ if the class has one), __repr__ and __eq__ are provided; nothing
else of dataclasses is."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")


class Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def factory(make: Callable[[], Any]) -> Any:
    """A default built by make() for each instance (a list, a dict, another record)."""
    return Factory(make)


def record(cls: type[T]) -> type[T]:
    names = list(cls.__dict__.get("__annotations__", {}))
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    for n, d in defaults.items():
        if isinstance(d, Factory):
            delattr(cls, n)  # instances always have their own value
    required = [n for n in names if n not in defaults]
    qual = cls.__name__
    post_init = getattr(cls, "__post_init__", None)

    def __init__(self, *args: Any, **kw: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{qual}() takes {len(names)} arguments, {len(args)} given")
        for n, v in zip(names, args, strict=False):
            setattr(self, n, v)
        for n in names[len(args):]:
            if n in kw:
                setattr(self, n, kw.pop(n))
            elif n in defaults:
                d = defaults[n]
                setattr(self, n, d.make() if isinstance(d, Factory) else d)
            else:
                raise TypeError(f"{qual}() missing argument {n!r} (required: {required})")
        if kw:
            raise TypeError(f"{qual}() got unexpected arguments {sorted(kw)}")
        if post_init is not None:
            post_init(self)

    def __repr__(self) -> str:
        return f"{qual}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    cls.__init__ = __init__  # type: ignore[misc]
    cls.__repr__ = __repr__  # type: ignore[assignment]
    cls.__eq__ = __eq__  # type: ignore[assignment]
    cls.__hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq
    cls.__record_fields__ = tuple(names)  # type: ignore[attr-defined]
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    return cls
