"""image/codec.py: typed records to JSON and back, and what decoding refuses."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torpor.image import codec
from torpor.image.codec import Record
from torpor.image.schema import (
    Fd,
    OpenFile,
    PageRun,
    PipeFile,
    Thread,
    TreeImage,
    UnixSocket,
    Vma,
)


class Leaf(Record, forbid_unknown_fields=True, omit_defaults=True):
    n: int
    blob: bytes = b""
    tags: list[str] = []


class Pair(Record, array_like=True, forbid_unknown_fields=True):
    a: int
    b: str = "x"


class Kinds(Record, forbid_unknown_fields=True, omit_defaults=True):
    i: int
    f: float
    flag: bool
    leaves: list[Leaf]
    by_id: dict[int, Pair] = {}
    names: dict[str, object] = {}
    maybe: Leaf | None = None
    pairs: list[tuple[int, int]] = []


class Open(Record):  # unknown fields allowed (a newer writer's additions)
    n: int


def sample() -> Kinds:
    return Kinds(i=-(2**63), f=1.5, flag=True,
                 leaves=[Leaf(2**64 - 1, b"\x00\xff" * 40, ["a", "é", "\udcff"]), Leaf(0)],
                 by_id={3: Pair(1), -4: Pair(2, "y")}, names={"k": [1, {"z": None}]},
                 maybe=Leaf(7), pairs=[(1, 2)])


def test_round_trip_keeps_every_type() -> None:
    k = sample()
    data = codec.encode(k)
    data.decode("ascii")  # ASCII only: any path (even undecodable bytes) survives
    back = codec.decode(data, Kinds)
    assert back == k
    assert back.leaves[0].blob == b"\x00\xff" * 40 and back.by_id[-4].b == "y"
    assert back.pairs == [(1, 2)] and type(back.pairs[0]) is tuple


def test_defaults_are_left_out_and_fresh() -> None:
    assert codec.encode(Leaf(1)) == b'{"n":1}'
    assert codec.encode(Pair(1)) == b'[1,"x"]'
    a, b = codec.decode(b'{"n":1}', Leaf), codec.decode(b'{"n":2}', Leaf)
    a.tags.append("t")  # a default list is each record's own
    assert b.tags == [] and Leaf(3).tags == []
    assert codec.decode(b"[5]", Pair) == Pair(5, "x")


def test_tagged_union() -> None:
    files = [OpenFile(id=0, path="/etc/hosts", flags=0, pos=3), PipeFile(id=1, inode=9, flags=1),
             UnixSocket(id=2, inode=5, sock_type=1, flags=0, state="connected", name=b"\0abs")]
    tree = TreeImage(schema_version=1, root_pid=1, processes=[], files=files, mapped_files=[],
                     xfeatures=7, xstate_size=2696)
    data = codec.encode(tree)
    assert b'"type":"reg"' in data and b'"type":"pipe"' in data
    assert codec.decode(data, TreeImage) == tree
    with pytest.raises(codec.ValidationError, match=r"Invalid value 'nope' - at `\$.files\[1\].type`"):
        codec.decode(data.replace(b'"type":"pipe"', b'"type":"nope"'), TreeImage)


@pytest.mark.parametrize(("data", "tp", "message"), [
    (b'{"n":"1"}', Leaf, r"Expected `int`, got `str` - at `\$.n`"),
    (b'{"n":true}', Leaf, r"Expected `int`, got `bool` - at `\$.n`"),
    (b'{"n":1,"tags":["a",2]}', Leaf, r"Expected `str`, got `int` - at `\$.tags\[1\]`"),
    (b'{"n":1,"blob":"***"}', Leaf, r"Invalid base64 encoded string - at `\$.blob`"),
    (b'{"n":1,"extra":0}', Leaf, r"Object contains unknown field `extra`"),
    (b'{"tags":[]}', Leaf, r"Object missing required field `n`"),
    (b"[1,2,3]", Pair, r"Expected `array` of length 1 to 2, got 3"),
    (b'{"a":1}', Pair, r"Expected `array`, got `object`"),
    (b"[1]", Leaf, r"Expected `object`, got `array`"),
    (b'{"i":1,"f":1,"flag":1,"leaves":[]}', Kinds, r"Expected `bool`, got `int` - at `\$.flag`"),
    (b'{"i":1,"f":1,"flag":false,"leaves":[],"by_id":{"x":[1]}}', Kinds,
     r"Expected `int` key, got 'x' - at `\$.by_id\['x'\]`"),
    (b'{"i":1,"f":1,"flag":false,"leaves":[{"n":1},{"n":null}]}', Kinds,
     r"Expected `int`, got `null` - at `\$.leaves\[1\].n`"),
    (b'{"i":1,"f":1,"flag":false,"leaves":[],"pairs":[[1]]}', Kinds,
     r"Expected `array` of length 2, got 1 - at `\$.pairs\[0\]`"),
])
def test_refuses_what_does_not_fit(data: bytes, tp: type, message: str) -> None:
    with pytest.raises(codec.ValidationError, match=message):
        codec.decode(data, tp)


def test_unknown_fields_pass_where_allowed() -> None:
    assert codec.decode(b'{"n":1,"later":true}', Open).n == 1


@pytest.mark.parametrize("data", [b"", b"{", b"[1,]", b"\xff", b"NaN", b"[" * 100_000, b"1 2"])
def test_not_json(data: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(data, Leaf)


def test_cannot_encode() -> None:
    with pytest.raises(TypeError):
        codec.encode(Leaf(object()))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        codec.encode({"f": float("nan")})


def test_schema_records_round_trip() -> None:
    th = Thread(tid=5, regs=os.urandom(216), xstate=os.urandom(2696), sigmask=1 << 63, name="w\udc80",
                pending=[os.urandom(128)], rseq_ptr=0x7F00_0000_0000)
    vma = Vma(start=0x1000, end=0x3000, prot=3, shared=False, kind="anon", vmflags=["rd", "wr"],
              pages=[PageRun(0x1000, 2, 8192), PageRun(0x2000, 1, 0, "/img/parent")])
    for rec, tp in [(th, Thread), (vma, Vma), ([Fd(0, 1, True), Fd(5, 2, False)], list[Fd])]:
        assert codec.decode(codec.encode(rec), tp) == rec


ints = st.integers(-(2**63), 2**64 - 1)
leaves = st.builds(Leaf, ints, st.binary(max_size=20), st.lists(st.text(max_size=4), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.builds(Kinds, ints, st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                 st.lists(leaves, max_size=3),
                 st.dictionaries(ints, st.builds(Pair, ints, st.text(max_size=3)), max_size=3),
                 st.just({}), st.none() | leaves, st.lists(st.tuples(ints, ints), max_size=2)))
def test_any_record_round_trips(k: Kinds) -> None:
    assert codec.decode(codec.encode(k), Kinds) == k
