"""Large numeric ``data`` arrays of a V2 JSON request, parsed by numpy instead of into Python objects.

``json.loads`` turns each number into a Python object (a 4-byte ``0.5,`` becomes 32 bytes: a float and its list
slot) and holds the GIL for the whole parse. A request with millions of values (an FP32 map sent as JSON) would
cost many times its size and stall the event loop. So before parsing, each large flat array of number literals
that is the value of a ``"data"`` key is cut out of the text (``lift``), the rest is parsed as JSON with a token
string in its place, and the array is parsed by ``np.fromstring`` into the tensor's own datatype once the
datatype is known (``NumericText.parse``), a chunk at a time (each chunk is a few milliseconds of GIL).

Nested arrays (``[[1,2],[3,4]]``, row-major as the protocol allows) are lifted too when their brackets only group
numbers: balanced, no empty array, and every element separated by a comma. Their brackets are then dropped and the
numbers counted against the shape, as the JSON path does. Anything else stays JSON and gets the JSON parser's
verdict.

The numbers are JSON's, strictly, as on the JSON path: numpy would also read ``+1``, ``.5``, ``1.`` and ``01``, so
each chunk is matched against JSON's number grammar first (``_JSON_NUMBERS``, a few tens of milliseconds a MiB),
and a request with anything else is refused with the offending element.

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
_NUMBERS = re.compile(rb"[0-9eE+\-.,\s\[\]]*")
_BRACKETS = re.compile(rb"[\[\]]")
_BAD_GROUPING = re.compile(rb"\[\s*[\],]|[0-9eE+\-.]\s*\[|,\s*\]|\]\s*[^\s,\]]")
"""``[]``, ``[,``, a number then ``[``, ``,]``, and ``]`` followed by anything but ``,`` or ``]``."""
MAX_NESTING = 32
_JSON_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
"""A number as JSON (RFC 8259) writes it: no ``+`` sign, no leading zeros, digits on both sides of a point."""
_ONE_NUMBER = re.compile(rb"\s*" + _JSON_NUMBER + rb"\s*")
_JSON_NUMBERS = re.compile(rb"\s*(?:" + _JSON_NUMBER + rb"\s*,\s*)*" + _JSON_NUMBER + rb"\s*")
_FLOAT_PARSE = {"FP16": np.float64, "FP32": np.float32, "FP64": np.float64}  # FP16 via FP64: one rounding


@dataclass
class NumericText:
    """The text between a ``data`` array's outer brackets: number literals, commas and grouping brackets."""

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
    match = _find_data_key(text, 0)
    while match is not None:
        start = match.end()
        end = _array_end(text, start)
        if end - start >= LIFT_MIN_BYTES:
            key = f"\u0000{token}:{len(lifted)}"
            lifted[key] = NumericText(view[start:end])
            pieces += [text[kept : start - 1], b'"\\u0000' + key[1:].encode() + b'"']
            kept = end + 1
        match = _find_data_key(text, max(end, start))  # not through the array just scanned
    if not lifted:
        return text, {}
    pieces.append(text[kept:])
    return b"".join(pieces), lifted


def _find_data_key(text: bytes, pos: int) -> re.Match[bytes] | None:
    """The next ``"data": [`` from ``pos``, searched a chunk at a time (windows overlap by 64 bytes, so only a key
    padded with more whitespace than that can be missed, and then it is simply parsed as JSON)."""
    while pos < len(text):
        match = _DATA_KEY.search(text, pos, min(len(text), pos + CHUNK_BYTES + 64))
        if match is not None:
            return match
        pos += CHUNK_BYTES
    return None


def release(values: Any) -> None:
    """Empty a large parsed JSON list a slice at a time. Freeing millions of objects is one C call that holds the
    GIL throughout (a quarter second for a 60 MiB body); slices let the event loop run in between."""
    stack = [values] if isinstance(values, list) else []
    while stack:
        top = stack[-1]
        if not top:
            stack.pop()
            continue
        piece = top[-4096:]
        del top[-4096:]
        stack.extend(v for v in piece if isinstance(v, list) and len(v) > 256)  # big ones: their own slices
        del piece


def _array_end(text: bytes, start: int) -> int:
    """Where the numeric array opened just before ``start`` closes, or -1 when it is not one (see the module)."""
    run_end = _numbers_end(text, start)
    depth, close, nested = 1, -1, False
    for pos in range(start, run_end, CHUNK_BYTES):
        for bracket in _BRACKETS.finditer(text, pos, min(run_end, pos + CHUNK_BYTES)):
            depth += 1 if bracket.group() == b"[" else -1
            if depth == 0:
                close = bracket.start()
                break
            nested = True
            if depth > MAX_NESTING:
                return -1
        if close >= 0:
            break
    if close < 0 or (nested and _grouping_is_bad(text, start, close)):
        return -1
    return close


def _grouping_is_bad(text: bytes, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` has a bracket JSON would refuse, searched in overlapping chunks."""
    for pos in range(start, end, CHUNK_BYTES):
        if _BAD_GROUPING.search(text, pos, min(end, pos + CHUNK_BYTES + 64)):
            return True
    return False


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
    """Pieces of about ``CHUNK_BYTES``, each cut at a comma (the comma itself dropped), grouping brackets removed."""
    pos = 0
    size = len(text)
    while pos < size or size == 0:
        cut = bytes(text[pos : pos + CHUNK_BYTES]).rfind(b",") if pos + CHUNK_BYTES < size else -1
        stop = pos + cut if cut > 0 else size
        yield bytes(text[pos:stop]).translate(None, b"[]")
        pos = stop + 1
        if size == 0 or stop == size:
            return


def _parse_chunk(chunk: bytes, dtype: Any, name: str) -> np.ndarray[Any, Any]:
    if not chunk.strip():
        if chunk.count(b","):
            raise InputError(f"input {name!r}: data has an empty element")
        return np.empty(0, dtype=dtype)
    if _JSON_NUMBERS.fullmatch(chunk) is None:
        why = _first_bad(chunk)
        raise InputError(f"input {name!r}: data must be comma-separated numbers, as JSON writes them; {why}")
    expected = chunk.count(b",") + 1
    try:
        values = np.fromstring(chunk, dtype=dtype, sep=",")
    except ValueError:
        values = np.empty(0, dtype=dtype)
    if values.size != expected:
        raise InputError(f"input {name!r}: data holds something other than comma-separated numbers")
    return values


def _first_bad(chunk: bytes) -> str:
    """What is wrong with the first element of ``chunk`` that is not a JSON number (for the one-line refusal)."""
    for element in chunk.split(b","):
        if not element.strip():
            return "an element is empty"
        if _ONE_NUMBER.fullmatch(element) is None:
            shown = element.strip()[:24].decode("ascii", errors="replace")
            return f"{shown!r} is not one"
    return "an element is not one"
