"""torpor.jsonlite against the json package: same text out, same values in, same refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from torpor import jsonlite

scalars = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(values, st.sampled_from([None, 0, 1, 2, 4]))
def test_same_text_and_values_as_json(value, indent) -> None:
    text = jsonlite.dumps(value, indent=indent)
    assert text == json.dumps(value, indent=indent)
    assert jsonlite.loads(text) == json.loads(text)
    assert jsonlite.loads(text.encode()) == json.loads(text)


def test_non_string_keys_as_json() -> None:
    d = {3: "a", 2.5: "b", True: "c", False: "e", None: "d"}
    assert jsonlite.dumps(d) == json.dumps(d)


@pytest.mark.parametrize("bad", ["", " ", "{", '{"a":}', "[1,]", "1 2", "NaN", "-Infinity",
                                 '"\\x"', "tru", "{'a': 1}", '"a\nb"'])
def test_refuses_what_json_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        jsonlite.loads(bad)


def test_refuses_nan_and_objects() -> None:
    with pytest.raises(ValueError):
        jsonlite.dumps(float("nan"))
    with pytest.raises(TypeError):
        jsonlite.dumps({"a": object()})


def test_no_re_at_import() -> None:
    """The point of the module: importing it loads neither json nor re."""
    code = "import sys, torpor.jsonlite; print(sorted({'re', 'json'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out.strip() == "[]"


def test_syntax_error_says_where_in_a_fresh_process() -> None:
    """_json reports syntax errors through json.decoder, which jsonlite does not load: in a
    process where nothing else loaded it, the error is still a ValueError with a position."""
    code = ("import torpor.jsonlite as j\n"
            "try:\n    j.loads('{\"a\": 1,\\n \"b\": }')\n"
            "except ValueError as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out.startswith("JSONDecodeError") and "line 2" in out, out
