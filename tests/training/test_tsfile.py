"""The ``.ts`` reader: files the tests write (every header variant, missing values, hostile headers), and the UCR/UEA
files aeon ships, read both by our reader and by aeon's own loader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from training.tsfile import TsFileError, fill_missing, read_ts
from unirep_errors import InputError

HEADER = "@problemName Toy\n@timeStamps false\n@univariate {uni}\n@equalLength {eq}\n@classLabel true a b\n@data\n"


def _write(tmp_path: Path, text: str, name: str = "toy.ts") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_univariate_equal_length(tmp_path) -> None:
    text = "# comment\n% arff-style comment\n" + HEADER.format(uni="true", eq="true")
    text = text.replace("@data", "@seriesLength 3\n@data") + "1,2,3:a\n\n4.5,-5,6e1:b\n"
    series, labels = read_ts(_write(tmp_path, text))
    assert labels == ["a", "b"]
    assert [s.shape for s in series] == [(3, 1), (3, 1)]
    np.testing.assert_array_equal(series[1][:, 0], [4.5, -5.0, 60.0])


def test_multivariate_unequal_length_with_missing_values(tmp_path) -> None:
    text = HEADER.format(uni="false", eq="false").replace("@data", "@dimensions 2\n@missing true\n@data")
    text += "1,2,3:4,?,6:b\n7,8:9,10:a\n"
    series, labels = read_ts(_write(tmp_path, text))
    assert labels == ["b", "a"]
    assert [s.shape for s in series] == [(3, 2), (2, 2)]  # time x variables
    np.testing.assert_array_equal(series[0][:, 0], [1, 2, 3])
    assert np.isnan(series[0][1, 1])
    np.testing.assert_array_equal(fill_missing(series[0])[:, 1], [4, 5, 6])


def test_fill_missing_edges_and_empty_columns() -> None:
    x = np.array([[np.nan, np.nan], [2.0, np.nan], [np.nan, np.nan], [4.0, np.nan]])
    filled = fill_missing(x)
    np.testing.assert_array_equal(filled[:, 0], [2, 2, 3, 4])
    np.testing.assert_array_equal(filled[:, 1], [0, 0, 0, 0])
    assert np.isnan(x).sum() == 6  # the input is left alone


BROKEN = [
    ("1,2,3:a\n", "data before '@data'"),
    ("@problemName X\n@classLabel true a\n", "no '@data' line"),
    ("@problemName X\n@data\n1,2:a\n", "'@classLabel true <labels...>' is required"),
    ("@classLabel true\n@data\n1:a\n", "must list the class labels"),
    ("@classLabel true a a\n@data\n1:a\n", "lists a label twice"),
    ("@classLabel maybe a\n@data\n1:a\n", "must be 'true' or 'false'"),
    ("@dimensions two\n@classLabel true a\n@data\n1:a\n", "@dimensions needs one positive integer"),
    ("@seriesLength 0\n@classLabel true a\n@data\n1:a\n", "@seriesLength needs one positive integer"),
    ("@univariate true\n@dimensions 3\n@classLabel true a\n@data\n1:a\n", "contradicts '@dimensions 3'"),
    ("@equalLength false\n@seriesLength 4\n@classLabel true a\n@data\n1:a\n", "contradicts '@seriesLength 4'"),
    ("@timeStamps true\n@classLabel true a\n@data\n(0,1):a\n", "not supported"),
    ("@colour blue\n@classLabel true a\n@data\n1:a\n", "unknown header tag '@colour'"),
    ("@classLabel true a\n@data\n", "no cases after '@data'"),
    ("@classLabel true a\n@data\n1,2,3\n", "no class label"),
    ("@classLabel true a\n@data\n1,2:c\n", "class label 'c' is not one of"),
    ("@dimensions 2\n@classLabel true a\n@data\n1,2:a\n", "1 dimension(s); the header declares 2"),
    ("@seriesLength 3\n@classLabel true a\n@data\n1,2:a\n", "'@seriesLength' says 3"),
    ("@dimensions 2\n@classLabel true a\n@data\n1,2:3:a\n", "different lengths"),
    ("@classLabel true a\n@data\n1,x,3:a\n", "'x' is not a number"),
    ("@classLabel true a\n@data\n1,inf:a\n", "use '?' for a missing value"),
    ("@classLabel true a\n@data\n:a\n", "dimension 0 is empty"),
    ("@missing false\n@classLabel true a\n@data\n1,?:a\n", "'@missing false'"),
]


@pytest.mark.parametrize(("text", "fragment"), BROKEN, ids=[f[1][:30] for f in BROKEN])
def test_broken_files_name_the_problem(tmp_path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TsFileError) as info:
        read_ts(path)
    assert fragment in info.value.message
    assert str(path) in info.value.message
    assert isinstance(info.value, InputError) and info.value.status_code == 422


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(TsFileError, match="cannot read"):
        read_ts(tmp_path / "absent.ts")
    binary = tmp_path / "binary.ts"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(TsFileError, match="not a UTF-8 text file"):
        read_ts(binary)


def _aeon_data() -> Path | None:
    """aeon's shipped data folder, found without importing aeon (its import needs numba, which pins numpy)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


SHIPPED = [
    ("GunPoint", "GunPoint_TRAIN.ts", 50, {(150, 1)}),
    ("ItalyPowerDemand", "ItalyPowerDemand_TEST.ts", 1029, {(24, 1)}),
    ("BasicMotions", "BasicMotions_TRAIN.ts", 40, {(100, 6)}),
    ("JapaneseVowels", "JapaneseVowels_TRAIN.ts", 270, None),  # multivariate, unequal length
    ("PickupGestureWiimoteZ", "PickupGestureWiimoteZ_TRAIN.ts", 50, None),  # univariate, unequal length
]


@pytest.mark.parametrize(("problem", "name", "count", "shapes"), SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_ucr_uea_files_match_aeons_loader(problem: str, name: str, count: int, shapes) -> None:
    folder = _aeon_data()
    if folder is None:
        pytest.skip("aeon (test extra) is not installed")
    series, labels = read_ts(folder / problem / name)
    assert len(series) == len(labels) == count
    if shapes is not None:
        assert {s.shape for s in series} == shapes
    else:
        assert len({s.shape[0] for s in series}) > 1
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as exc:  # aeon installed beside a numpy its numba does not support
        pytest.skip(f"aeon's loader cannot be imported here: {exc}")
    ref_x, ref_y = load_from_ts_file(str(folder / problem / name))
    assert [label.lower() for label in labels] == [str(y) for y in ref_y]  # aeon lower-cases labels
    assert len(ref_x) == count
    for ours, theirs in zip(series, ref_x, strict=True):
        np.testing.assert_allclose(ours.T, np.asarray(theirs), rtol=0, atol=0)
