"""Large flat numeric ``data`` arrays of a V2 JSON request, parsed by numpy instead of into Python objects.

``json.loads`` turns each number into a Python object (a 4-byte ``0.5,`` becomes 32 bytes: a float and its list
slot) and holds the GIL for the whole parse. A request with millions of values (an FP32 map sent as JSON) would
cost many times its size and stall the event loop. So before parsing, each large flat array of number literals
that is the value of a ``"data"`` key is cut out of the text (``lift``), the rest is parsed as JSON with a token
string in its place, and the array is parsed by ``np.fromstring`` into the tensor's own datatype once the
datatype is known (``NumericText.parse``), a chunk at a time (each chunk is a few milliseconds of GIL).

Only floating-point datatypes are parsed this way (numpy saturates integers silently); any other datatype parses
the cut-out text as JSON, with every check of the JSON path.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.http.v2_tensors import DTYPES, narrow
from unirep_errors import InputError

LIFT_MIN_BYTES = 64 * 1024
"""Arrays shorter than this stay in the JSON (parsing them as objects is cheap)."""
CHUNK_BYTES = 1 << 20
"""Text scanned or parsed per step; the GIL can pass between steps."""
_DATA_KEY = re.compile(rb'"data"\s*:\s*\[')
_NUMBERS = re.compile(rb"[0-9eE+\-.,\s]*")
_FLOAT_PARSE = {"FP16": np.float32, "FP32": np.float32, "FP64": np.float64}


@dataclass
class NumericText:
    """The text between a ``data`` array's brackets: number literals and commas only."""

    text: memoryview

    def parse(self, name: str, datatype: str, count: int) -> np.ndarray[Any, Any] | None:
        """The values as ``datatype``; None for a datatype this parser does not handle (see the module)."""
        wide = _FLOAT_PARSE.get(datatype)
        if wide is None:
            return None
        out = np.empty(count, dtype=wide)
        filled = 0
        for chunk in _chunks(self.text):
            values = _parse_chunk(chunk, wide, name)
            if filled + values.size > count:
                raise InputError(f"input {name!r}: more data elements than its shape's {count}")
            out[filled : filled + values.size] = values
            filled += values.size
        if filled != count:
            raise InputError(f"input {name!r}: {filled} data elements for its shape ({count} expected)")
        if not np.isfinite(out).all():  # the text holds no inf or nan: a literal overflowed the type
            raise InputError(f"input {name!r}: a value is out of range for {datatype}")
        return narrow(out, datatype, name) if DTYPES[datatype] != out.dtype else out


def lift(text: bytes) -> tuple[bytes, dict[str, NumericText]]:
    """``text`` with each large flat numeric ``data`` array replaced by a token string, and the arrays by token."""
    token = secrets.token_hex(8)
    pieces: list[bytes] = []
    lifted: dict[str, NumericText] = {}
    view = memoryview(text)
    kept = 0
    for match in _DATA_KEY.finditer(text):
        start = match.end()
        if start < kept:
            continue
        end = _numbers_end(text, start)
        if end - start < LIFT_MIN_BYTES or end >= len(text) or text[end : end + 1] != b"]":
            continue
        key = f"\u0000{token}:{len(lifted)}"
        lifted[key] = NumericText(view[start:end])
        pieces += [text[kept : start - 1], b'"\\u0000' + key[1:].encode() + b'"']
        kept = end + 1
    if not lifted:
        return text, {}
    pieces.append(text[kept:])
    return b"".join(pieces), lifted


def _numbers_end(text: bytes, start: int) -> int:
    """Where the run of number characters from ``start`` ends, scanned in chunks."""
    pos = start
    while True:
        stop = min(len(text), pos + CHUNK_BYTES)
        end = _NUMBERS.match(text, pos, stop).end()  # type: ignore[union-attr]  # matches the empty run
        if end < stop or stop == len(text):
            return end
        pos = end


def _chunks(text: memoryview) -> Any:
    """Pieces of about ``CHUNK_BYTES``, each cut at a comma (the comma itself dropped)."""
    pos = 0
    size = len(text)
    while pos < size or size == 0:
        cut = bytes(text[pos : pos + CHUNK_BYTES]).rfind(b",") if pos + CHUNK_BYTES < size else -1
        stop = pos + cut if cut > 0 else size
        yield bytes(text[pos:stop])
        pos = stop + 1
        if size == 0 or stop == size:
            return


def _parse_chunk(chunk: bytes, dtype: Any, name: str) -> np.ndarray[Any, Any]:
    if not chunk.strip():
        if chunk.count(b","):
            raise InputError(f"input {name!r}: data has an empty element")
        return np.empty(0, dtype=dtype)
    expected = chunk.count(b",") + 1
    try:
        values = np.fromstring(chunk, dtype=dtype, sep=",")
    except ValueError:
        values = np.empty(0, dtype=dtype)
    if values.size != expected:
        raise InputError(f"input {name!r}: data holds something other than comma-separated numbers")
    return values
