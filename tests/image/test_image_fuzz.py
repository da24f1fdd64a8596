"""Random damage to a valid image: always an ImageError, never a wrong successful read."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imgutil import make_image, read_all

from torpor.errors import ImageError
from torpor.image import codec

FILES = ["manifest.json", "tree.rec", "tasks.rec", "pages.img", "rootfs.tar"]


@pytest.fixture(scope="module", params=[None, "zstd"])
def template(request, tmp_path_factory):
    p = str(tmp_path_factory.mktemp("fuzz") / "img")
    make_image(p, compress=request.param, chunk_size=4096)
    return Template(p, read_all(p))


class Template(tuple):
    def __new__(cls, path, original):
        return super().__new__(cls, (path, original))

    def __repr__(self):
        return f"Template({self[0]!r})"


mutation = st.one_of(
    st.tuples(
        st.just("flip"),
        st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=4),
    ),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("replace"), st.binary(max_size=200)),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("insert"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8))),
)


def apply(path: str, how: str, arg) -> None:
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "flip":
        for where, x in arg:
            if data:
                data[min(int(where * len(data)), len(data) - 1)] ^= x
    elif how == "truncate":
        data = data[: int(arg * len(data))] if data else data
        if len(data) == os.path.getsize(path) and data:
            data = data[:-1]
    elif how == "append":
        data += arg
    elif how == "replace":
        data = bytearray(arg)
    elif how == "insert":
        where, extra = arg
        i = int(where * len(data))
        data[i:i] = extra
    elif how == "delete":
        os.unlink(path)
        return
    with open(path, "wb") as f:
        f.write(data)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    damage=st.lists(
        st.tuples(st.sampled_from(FILES + ["pages.idx"]), mutation), min_size=1, max_size=3
    )
)
def test_damage_is_detected(template, damage):
    src, original = template
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "img")
        shutil.copytree(src, p)
        for filename, (how, arg) in damage:
            if os.path.exists(os.path.join(p, filename)):
                apply(os.path.join(p, filename), how, arg)
        try:
            got = read_all(p)
        except ImageError as e:
            assert "\n" not in str(e) and p in str(e)
            return
        # only harmless changes may pass (whitespace in the manifest, files not in the image)
        assert got == original


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            codec.encode,
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers(-(2**63), 2**64 - 1)
                | st.text(max_size=5)
                | st.binary(max_size=5),
                lambda kids: (
                    st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4)
                ),
                max_leaves=12,
            ),
        ),
    )
)
def test_garbage_records_with_valid_checksum(data):
    """Whatever bytes sit in a record (even with a valid checksum): a Tree or an ImageError."""
    from imgutil import Tree, replace_file

    from torpor.image.store import ImageReader

    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "img")
        make_image(p)
        replace_file(p, "tree.rec", data)
        with ImageReader(p) as r:
            try:
                got = r.record("tree", Tree)
            except ImageError as e:
                assert "tree.rec" in str(e) and "\n" not in str(e)
            else:
                assert isinstance(got, Tree)
