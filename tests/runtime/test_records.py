"""torpor.records.record: the dataclass stand-in of the runtime's start-up path."""

from __future__ import annotations

import pytest

from torpor.records import factory, record


@record
class Sample:
    name: str
    size: int = 4
    tags: list[str] = factory(list)


def test_fields_defaults_and_fresh_factories() -> None:
    a, b = Sample("a"), Sample(name="b", size=7)
    assert (a.name, a.size, a.tags) == ("a", 4, [])
    assert (b.name, b.size) == ("b", 7)
    a.tags.append("x")
    assert b.tags == [] and Sample("c").tags == [], "a factory default is shared"
    assert Sample("a", 4, ["x"]) == a and Sample("a") != a
    assert repr(Sample("z")) == "Sample(name='z', size=4, tags=[])"


def test_bad_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="missing argument 'name'"):
        Sample()
    with pytest.raises(TypeError, match="unexpected arguments \\['colour'\\]"):
        Sample("a", colour="red")
    with pytest.raises(TypeError, match="takes 3 arguments, 4 given"):
        Sample("a", 1, [], 2)
