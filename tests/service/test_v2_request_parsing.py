"""The V2 REST body parser on its own: large flat numeric arrays parsed by numpy give exactly what ``json.loads``
gives, whatever the number formatting and whitespace, and anything that is not a clean list of numbers is refused
with a reason rather than misread."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.http import v2_numbers
from service.http.v2_request import parse_now
from unirep_errors import InputError

FORMATS = {
    "repr": lambda v: repr(float(v)),
    "short": lambda v: f"{v:.3g}",
    "exp": lambda v: f"{v:.6e}",
    "int": lambda v: str(round(v)),
}


def flat(data: Any) -> list[Any]:
    return [leaf for item in data for leaf in flat(item)] if isinstance(data, list) else [data]


def body(values: list[str], datatype: str, shape: list[int], gap: str = "", row: int = 0) -> bytes:
    """A request whose one input holds ``values``, flat or (``row``) in rows of that many."""
    if row:
        values = ["[" + ("," + gap).join(values[i : i + row]) + "]" for i in range(0, len(values), row)]
    data = ("," + gap).join(values)
    head = json.dumps({"name": "MAP", "datatype": datatype, "shape": shape})[:-1]
    return f'{{"inputs":[{head}, "data":[{gap}{data}{gap}]}}]}}'.encode()


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.sampled_from([10, 20_000]),
    fmt=st.sampled_from(sorted(FORMATS)),
    gap=st.sampled_from(["", " ", "\n  ", "\t"]),
    datatype=st.sampled_from(["FP32", "FP64", "FP16"]),
    row=st.sampled_from([0, 0, 1, 7, 64]),
)
def test_numeric_arrays_parse_as_json_would(seed: int, count: int, fmt: str, gap: str, datatype: str, row: int) -> None:
    scale = 1000.0 if datatype == "FP16" else 1e6
    values = [FORMATS[fmt](v) for v in np.random.default_rng(seed).normal(scale=scale, size=count)]
    text = body(values, datatype, [count], gap, row)
    lifted = v2_numbers.lift(text)[1]
    assert bool(lifted) == (len(text) > v2_numbers.LIFT_MIN_BYTES + 200)  # large arrays take the numpy path
    (tensor,) = parse_now(text, None)[1]
    dtype = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16}[datatype]
    data = json.loads(text)["inputs"][0]["data"]
    expected = np.asarray(flat(data), dtype=np.float64).astype(dtype)
    assert tensor.data.dtype == dtype and tensor.shape == [count]
    np.testing.assert_array_equal(tensor.data, expected)


def large(values: list[str]) -> list[str]:
    return values + ["0.5"] * 20_000


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (large(["1.5 2.5"]), "comma-separated numbers"),
        (large(["1.5", ""]), "comma-separated numbers"),
        (large(["1e999"]), "out of range for FP32"),
        (large(["1e39"]), "out of range for FP32"),
        (large(["0x10"]), "not valid JSON"),  # not a number run: the JSON parser says so
        (large(["--1"]), "comma-separated numbers"),
        (large(["1e"]), "comma-separated numbers"),
        # numpy reads these; JSON does not, so neither does the service
        (large(["+1"]), "'\\+1' is not one"),
        (large([".5"]), "'\\.5' is not one"),
        (large(["-.5"]), "'-\\.5' is not one"),
        (large(["1."]), "'1\\.' is not one"),
        (large(["01"]), "'01' is not one"),
        (large(["-01.5"]), "'-01\\.5' is not one"),
        (large(["1.e5"]), "'1\\.e5' is not one"),
        (large(["1E+"]), "'1E\\+' is not one"),
    ],
)
def test_what_is_not_a_clean_number_list_is_refused(values: list[str], reason: str) -> None:
    text = body(values, "FP32", [len(values)])
    with pytest.raises(InputError, match=reason):
        parse_now(text, None)


@pytest.mark.parametrize(
    ("grouped", "verdict"),
    [
        ("[[1,2],[3,4]]", 4),  # rows
        ("[1,[2,[3]],4]", 4),  # ragged, as JSON allows: its numbers in order
        ("[[1,2][3,4]]", "not valid JSON"),
        ("[[1,2]3]", "not valid JSON"),
        ("[1[2]]", "not valid JSON"),
        ("[[1,2],]", "not valid JSON"),
        ("[[],[1,2,3]]", 3),  # an empty row: left to the JSON parser, which accepts it
        ("[[1,2],[3,4]", "not valid JSON"),
    ],
)
def test_nested_arrays_are_lifted_only_when_json_would_read_them(grouped: str, verdict: int | str) -> None:
    filler = ",".join(["[0.5,0.25]"] * 20_000)
    text = b'{"inputs":[{"name":"MAP","datatype":"FP32","shape":[%d],"data":[%s,%s]}]}'
    count = 40_000 + (verdict if isinstance(verdict, int) else 4)
    request = text % (count, grouped.encode(), filler.encode())
    if isinstance(verdict, str):
        with pytest.raises(InputError, match=verdict):
            parse_now(request, None)
        return
    (tensor,) = parse_now(request, None)[1]
    leaves = [float(v) for v in grouped.replace("[", "").replace("]", "").split(",") if v]
    np.testing.assert_array_equal(tensor.data[: len(leaves)], leaves)
    assert tensor.data.size == count


@pytest.mark.parametrize("shape", [[20_000], [20_002]])
def test_a_count_that_differs_from_the_shape_is_refused(shape: list[int]) -> None:
    with pytest.raises(InputError, match="data elements"):
        parse_now(body(["0.25"] * 20_001, "FP32", shape), None)


def test_other_datatypes_keep_every_check_of_the_json_path() -> None:
    values = ["7"] * 20_000
    (tensor,) = parse_now(body(values, "INT16", [20_000]), None)[1]
    assert tensor.data.dtype == np.int16 and int(tensor.data.sum()) == 140_000
    with pytest.raises(InputError, match="lie in"):
        parse_now(body([*values, "40000"], "INT16", [20_001]), None)
    with pytest.raises(InputError, match="not a INT16 value"):
        parse_now(body([*values, "1.5"], "INT16", [20_001]), None)


def test_a_data_key_inside_a_string_or_parameters_is_left_alone() -> None:
    numbers = ",".join(["1"] * 40_000)
    request: dict[str, Any] = {
        "id": f'"data":[{numbers}]',
        "inputs": [{"name": "FILE", "datatype": "BYTES", "shape": [1], "data": ["x"]}],
        "parameters": {"data": [1] * 40_000},
    }
    parsed, inputs, _, _ = parse_now(json.dumps(request).encode(), None)
    assert parsed.id == request["id"] and parsed.parameters == request["parameters"]
    assert inputs[0].data == [b"x"]


@pytest.mark.parametrize("literal", ["0", "-0", "10", "-0.5", "1e5", "1E+05", "2.5e-07", "1e999"])
def test_every_json_number_form_takes_the_numpy_path(literal: str) -> None:
    values = large([literal])
    text = body(values, "FP64", [len(values)])
    assert v2_numbers.lift(text)[1]
    if literal == "1e999":  # a JSON number, out of range
        with pytest.raises(InputError, match="out of range"):
            parse_now(text, None)
        return
    (tensor,) = parse_now(text, None)[1]
    assert tensor.data[0] == float(literal)


@pytest.mark.parametrize("literal", ["+1", ".5", "1.", "01"])
def test_small_arrays_refuse_the_same_literals(literal: str) -> None:
    """The JSON path (arrays under the lift size) refuses them too: one grammar whatever the size."""
    text = body([literal, "0.5"], "FP32", [2])
    assert not v2_numbers.lift(text)[1]
    with pytest.raises(InputError):
        parse_now(text, None)
