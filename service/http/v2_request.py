"""An Open Inference Protocol REST request body, parsed strictly and within bounds.

Every way a body can be wrong answers 400 (or 413) with one line, never 500: the header length must be ASCII
digits within the body; JSON nested past the interpreter's recursion limit, ``NaN``/``Infinity``, number literals
that overflow (``1e400``) or have absurdly many digits, and strings that are not valid Unicode (lone surrogates)
are refused while parsing.

What a body may cost is decided before it is parsed. Large numeric ``data`` arrays are cut out and parsed by numpy
(``v2_numbers``). Python's JSON objects are many times larger than their text (a ``0,`` of 2 bytes becomes
an 8-byte list slot at least), so a remaining JSON whose counted values, strings and containers would build a tree
over ``TREE_FACTOR`` times its size is refused (413: such bodies belong in the binary tensor data extension).
Large bodies are parsed in a worker thread, one at a time (memory stays bounded under concurrency), with
Python-level number hooks: the C parser never yields the GIL on its own, and a hook runs bytecode, so the event
loop keeps answering (``/healthz``) while a 60 MiB body parses.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from pydantic import ValidationError

from service.http import v2_core as core
from service.http import v2_numbers
from service.http.v2_numbers import NumericText
from service.http.v2_schemas import InferenceRequest, RequestInput
from service.http.v2_tensors import (
    HEADER_LENGTH,
    MAX_DIMS,
    Tensor,
    element_count,
    tensor_from_json,
    tensor_from_raw,
)
from unirep_errors import InputError, InputTooLargeError

INLINE_BYTES = 256 * 1024
"""Bodies up to this size parse on the event loop (a few milliseconds); larger ones in a thread."""
TREE_FACTOR = 6
"""The parsed JSON tree may cost this many times the JSON's size (plus ``TREE_SLACK``)."""
TREE_SLACK = 8 * 2**20
MAX_UNHOOKED = 1_000_000
"""Containers and strings a body may hold: the parser builds them without any hook, so without yielding."""
MAX_INT_DIGITS = 24
_DIGITS = re.compile(r"[0-9]{1,18}")
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()
"""One large parse at a time per event loop (a limiter belongs to the loop it was made on)."""

T = TypeVar("T")
Parsed = tuple[InferenceRequest, list[Tensor], list[core.RequestedOutput], dict[str, bool | None]]


async def parse(body: bytes, header_length: str | None) -> Parsed:
    """The request, its input tensors, and the requested outputs with their binary flags."""
    if len(body) <= INLINE_BYTES:
        return parse_now(body, header_length)
    return await off_loop(parse_now, body, header_length)


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread, one at a time per event loop: large requests are converted one
    after another, so their memory does not add up."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(1)
    return await anyio.to_thread.run_sync(function, *args, limiter=limiter)


def parse_now(body: bytes, header_length: str | None) -> Parsed:
    json_part, binary = _split(body, header_length)
    skeleton, lifted = v2_numbers.lift(json_part)
    request = _validate(load_json(skeleton))
    if lifted and not set(lifted) <= {given.data for given in request.inputs if isinstance(given.data, str)}:
        # A "data" array that is not an input's (a parameter's, say) must stay what it was: parse it all as JSON.
        lifted = {}
        request = _validate(load_json(json_part))
    inputs = _inputs(request, binary, lifted)
    for given in request.inputs:
        given.data = None  # the JSON values are tensors now; let their tree go before inference
    requested, flags = _outputs(request)
    return request, inputs, requested, flags


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON and the binary region (the whole body is JSON without the header)."""
    if header_length is None:
        return body, b""
    if not _DIGITS.fullmatch(header_length) or int(header_length) > len(body):
        shown = header_length if len(header_length) <= 24 else header_length[:21] + "..."
        raise InputError(f"{HEADER_LENGTH} must be a byte count within the body (ASCII digits), got {shown!r}")
    size = int(header_length)
    return body[:size], body[size:]


def load_json(text: bytes) -> Any:
    """``json.loads`` that refuses what it would otherwise let through or crash on (see the module docstring)."""
    check_cost(text)
    try:
        with _collector_paused(len(text) > INLINE_BYTES):
            return json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise InputError("the inference request is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(f"the inference request is not valid JSON: {exc}") from None


@contextlib.contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """No cyclic garbage collection (process-wide) while a large body parses: a full collection walks the growing
    tree in one C call that holds the GIL, and a JSON tree has no cycles to find."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def check_cost(text: bytes) -> None:
    """Refuse (413) a body whose JSON tree would be out of proportion to its size, from counts of its punctuation.

    Upper bounds per item: a container 72 bytes, a string 56 plus its text, any value 36 (an int, or a float and
    its list slot). Escaped quotes and punctuation inside strings only make the estimate more cautious."""
    containers = text.count(b"[") + text.count(b"{")
    strings = text.count(b'"') // 2
    values = text.count(b",") + text.count(b":") + 1
    estimate = 72 * containers + 56 * strings + 36 * values
    if containers + strings > MAX_UNHOOKED or estimate > TREE_FACTOR * len(text) + TREE_SLACK:
        raise InputTooLargeError(
            f"the JSON request holds {values} values and {containers} arrays or objects in {len(text)} bytes, too "
            "many to parse for its size; send tensors with the binary tensor data extension",
            values=values,
            containers=containers,
            size=len(text),
        )


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:24]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer literal has {len(text)} digits")
    return int(text)


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _validate(header: Any) -> InferenceRequest:
    if not isinstance(header, dict):
        raise InputError("the inference request must be a JSON object")
    try:
        request = InferenceRequest.model_validate(header)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InputError(f"malformed inference request: {problems}") from None
    check_text([request.id, request.parameters], "the request")
    for given in request.inputs:
        check_text([given.name, given.datatype, given.parameters], "an input's name, datatype or parameters")
    for out in request.outputs:
        check_text([out.name, out.parameters], "an output's name or parameters")
    return request


def check_text(value: Any, where: str) -> None:
    """Strings that are echoed or passed on must be encodable: JSON's ``\\ud800`` escape makes a lone surrogate."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DIMS:
            raise InputError(f"{where} is nested deeper than {MAX_DIMS} levels")
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"{where} holds a string that is not valid Unicode (a lone surrogate)") from None
        elif isinstance(node, dict):
            stack.extend((item, depth + 1) for pair in node.items() for item in pair)
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _inputs(parsed: InferenceRequest, binary: bytes, lifted: dict[str, NumericText]) -> list[Tensor]:
    out: list[Tensor] = []
    pos = 0
    for given in parsed.inputs:
        params = dict(given.parameters)
        size = params.pop("binary_data_size", None)
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise InputError(f"input {given.name!r}: binary_data_size {size!r} does not fit the binary data")
            out.append(tensor_from_raw(given.name, given.datatype, given.shape, binary[pos : pos + size], params))
            pos += size
        elif given.data is None:
            raise InputError(f"input {given.name!r} has neither data nor binary_data_size")
        else:
            out.append(_json_tensor(given, params, lifted))
    if pos != len(binary):
        raise InputError(f"{len(binary) - pos} bytes of binary data belong to no input")
    return out


def _json_tensor(given: RequestInput, params: dict[str, Any], lifted: dict[str, NumericText]) -> Tensor:
    """A tensor from JSON ``data``: a lifted numeric array parsed by numpy when it can be, else the JSON values."""
    data = given.data
    text = lifted.get(data) if isinstance(data, str) else None
    if text is not None:
        values = text.parse(given.name, given.datatype, element_count(given.shape, given.name))
        if values is not None:
            return Tensor(given.name, given.datatype, given.shape, values.reshape(given.shape), params)
        data = load_json(b"[" + bytes(text.text) + b"]")
    try:
        return tensor_from_json(given.name, given.datatype, given.shape, data, params)
    finally:
        v2_numbers.release(data)


def _outputs(parsed: InferenceRequest) -> tuple[list[core.RequestedOutput], dict[str, bool | None]]:
    requested: list[core.RequestedOutput] = []
    flags: dict[str, bool | None] = {}
    for out in parsed.outputs:
        k = core.classification_k(out.parameters.get("classification"))
        binary = out.parameters.get("binary_data")
        flags[out.name] = bool(binary) if binary is not None else None
        requested.append(core.RequestedOutput(out.name, k))
    return requested, flags
