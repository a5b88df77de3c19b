"""Reader for the UCR/UEA ``.ts`` archive format (the one aeon and sktime read), without pandas or numba.

A ``.ts`` file is ``#`` comments, a header of ``@tag value`` lines, then ``@data`` and one case per line: the
dimensions separated by ``:``, the values of one dimension separated by ``,`` (``?`` is a missing value), and,
when ``@classLabel true``, the class label as the last ``:`` field. Equal- and unequal-length, univariate and
multivariate files all fit that grammar; the header says which, and the reader holds the data to what the header
claims, because a file whose header lies is the usual way a dataset goes silently wrong.

``read_ts(path)`` returns one ``(T, V)`` float64 array per case (time x variables, the layout the time-series
adapter takes; missing values are NaN) and the class labels as strings. Every problem is a ``TsFileError``
(an ``UndecodableInputError``) whose message names the file, the line and what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unirep_errors import UndecodableInputError

__all__ = ["TsFileError", "TsHeader", "fill_missing", "read_ts"]

_BOOL = {"true": True, "false": False}
_BOOL_TAGS = {"timestamps", "missing", "univariate", "equallength"}
_SPELLING = {"timestamps": "timeStamps", "equallength": "equalLength", "serieslength": "seriesLength"}
_SPELLING |= {"classlabel": "classLabel", "targetlabel": "targetLabel", "problemname": "problemName"}


class TsFileError(UndecodableInputError):
    """A ``.ts`` file that does not follow the format, or whose data contradicts its own header."""

    code = "bad_ts_file"


@dataclass
class TsHeader:
    """What the header declares; None where a tag was absent."""

    problem_name: str | None = None
    timestamps: bool | None = None
    missing: bool | None = None
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    class_label: bool | None = None
    class_labels: list[str] = field(default_factory=list)
    target_label: bool | None = None


def read_ts(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """All cases of a classification ``.ts`` file as ``(T, V)`` arrays (NaN for ``?``) and their labels."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TsFileError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except OSError as exc:
        raise TsFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = text.splitlines()
    header, data_start = _read_header(lines, path)
    if not header.class_label:
        raise TsFileError(f"{path}: '@classLabel true <labels...>' is required for a classification dataset")
    series: list[np.ndarray] = []
    labels: list[str] = []
    for number in range(data_start, len(lines)):
        line = lines[number].strip()
        if not line or line.startswith(("#", "%")):
            continue
        values, label = _read_case(line, header, f"{path}, line {number + 1}")
        series.append(values)
        labels.append(label)
    if not series:
        raise TsFileError(f"{path}: no cases after '@data'")
    return series, labels


def fill_missing(series: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN gaps per variable (edges take the nearest value); an all-NaN column is 0."""
    out = np.array(series, dtype=np.float64, copy=True)
    steps = np.arange(out.shape[0])
    for v in range(out.shape[1]):
        col = out[:, v]
        ok = np.isfinite(col)
        if ok.all():
            continue
        col[:] = np.interp(steps, steps[ok], col[ok]) if ok.any() else 0.0
    return out


def _read_header(lines: list[str], path: Path) -> tuple[TsHeader, int]:
    """Parse ``@tag`` lines up to ``@data``; returns the header and the index of the first data line."""
    header = TsHeader()
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith(("#", "%")):
            continue
        where = f"{path}, line {number + 1}"
        if not line.startswith("@"):
            raise TsFileError(f"{where}: data before '@data' (the header must end with an '@data' line)")
        tag, _, rest = line[1:].partition(" ")
        tag, words = tag.lower(), rest.split()
        if tag == "data":
            _check_header(header, path)
            return header, number + 1
        _apply_tag(header, tag, words, where)
    raise TsFileError(f"{path}: no '@data' line: this is not a .ts file, or it is truncated")


def _apply_tag(header: TsHeader, tag: str, words: list[str], where: str) -> None:
    if tag == "problemname":
        header.problem_name = " ".join(words) or None
    elif tag in _BOOL_TAGS:
        setattr(header, {"equallength": "equal_length"}.get(tag, tag), _bool(words, tag, where))
    elif tag in ("dimensions", "serieslength"):
        if len(words) != 1 or not words[0].isdigit() or int(words[0]) < 1:
            name = _SPELLING.get(tag, tag)
            raise TsFileError(f"{where}: @{name} needs one positive integer, got {' '.join(words)!r}")
        setattr(header, "dimensions" if tag == "dimensions" else "series_length", int(words[0]))
    elif tag == "classlabel":
        header.class_label = _bool(words[:1], tag, where)
        header.class_labels = words[1:]
        if header.class_label and not header.class_labels:
            raise TsFileError(f"{where}: '@classLabel true' must list the class labels")
        if len(set(header.class_labels)) != len(header.class_labels):
            raise TsFileError(f"{where}: @classLabel lists a label twice: {' '.join(words[1:])}")
    elif tag == "targetlabel":
        header.target_label = _bool(words[:1], tag, where)
    else:
        raise TsFileError(f"{where}: unknown header tag '@{tag}'")


def _bool(words: list[str], tag: str, where: str) -> bool:
    if len(words) != 1 or words[0].lower() not in _BOOL:
        raise TsFileError(f"{where}: @{_SPELLING.get(tag, tag)} must be 'true' or 'false', got {' '.join(words)!r}")
    return _BOOL[words[0].lower()]


def _check_header(header: TsHeader, path: Path) -> None:
    if header.timestamps:
        raise TsFileError(f"{path}: '@timeStamps true' files are not supported; export the values without times")
    if header.univariate and header.dimensions not in (None, 1):
        raise TsFileError(f"{path}: '@univariate true' contradicts '@dimensions {header.dimensions}'")
    if header.equal_length is False and header.series_length is not None:
        raise TsFileError(f"{path}: '@equalLength false' contradicts '@seriesLength {header.series_length}'")


def _read_case(line: str, header: TsHeader, where: str) -> tuple[np.ndarray, str]:
    fields = line.split(":")
    label = ""
    if header.class_label:
        if len(fields) < 2:
            raise TsFileError(f"{where}: no class label (expected '<values>:<label>')")
        label = fields.pop().strip()
        if label not in header.class_labels:
            raise TsFileError(f"{where}: class label {label!r} is not one of @classLabel {header.class_labels}")
    expected_dims = header.dimensions or (1 if header.univariate else None)
    if expected_dims is not None and len(fields) != expected_dims:
        raise TsFileError(f"{where}: {len(fields)} dimension(s); the header declares {expected_dims}")
    columns = [_read_values(f, where, d) for d, f in enumerate(fields)]
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise TsFileError(f"{where}: the dimensions of one case have different lengths {sorted(lengths)}")
    length = lengths.pop()
    if header.series_length is not None and length != header.series_length:
        raise TsFileError(f"{where}: {length} values per dimension; '@seriesLength' says {header.series_length}")
    values = np.stack(columns, axis=1)
    if header.missing is False and not np.isfinite(values).all():
        raise TsFileError(f"{where}: missing values although the header says '@missing false'")
    return values, label


def _read_values(text: str, where: str, dim: int) -> np.ndarray:
    cells = [c.strip() for c in text.split(",")]
    if cells == [""]:
        raise TsFileError(f"{where}: dimension {dim} is empty")
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        if cell in ("?", "NaN", "nan"):
            out[i] = math.nan
            continue
        try:
            out[i] = float(cell)
        except ValueError:
            raise TsFileError(f"{where}: dimension {dim}, value {i}: {cell[:40]!r} is not a number") from None
        if not math.isfinite(out[i]):
            raise TsFileError(f"{where}: dimension {dim}, value {i} is {cell!r}; use '?' for a missing value")
    return out
