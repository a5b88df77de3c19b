"""Malformed Open Inference Protocol traffic, generated (hypothesis, schemathesis), against a real ``unirep serve``
with both fronts: every request the service cannot serve answers a 4xx with a one-line reason (REST) or a status
other than INTERNAL/UNKNOWN (gRPC), and the server logs no traceback. A 60 MiB JSON body is parsed off the event
loop, within a bounded multiple of its size."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.server import IMAGE_ONLY, Server, free_port, running

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("tritonclient.grpc.service_pb2")
pb_grpc = pytest.importorskip("tritonclient.grpc.service_pb2_grpc")

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32"]
DATATYPES += ["FP64", "BYTES", "BF16", "", "fp32", "INT128", "\u00b2"]
HUGE = [2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), -1]
FIXED_SEED = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    port = free_port()
    with running(tmp_path_factory.mktemp("v2malformed"), {**IMAGE_ONLY, "UNIREP_GRPC_PORT": str(port)}) as srv:
        yield srv, port


@pytest.fixture(scope="module")
def rest(served: tuple[Server, int]) -> Iterator[httpx.Client]:
    with served[0].client(timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def stub(served: tuple[Server, int]) -> Iterator[Any]:
    channel = grpc.insecure_channel(f"127.0.0.1:{served[1]}", options=[("grpc.max_send_message_length", 2**27)])
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


# --- generated values ------------------------------------------------------------------------------------------

dims = st.one_of(st.integers(0, 4), st.sampled_from(HUGE), st.integers(-(2**63), 2**63 - 1))
shapes = st.lists(dims, max_size=40)
scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([*HUGE, 300, -129, 65536]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "x\udfffy", "\udbff"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner))
names = st.one_of(st.sampled_from(["FILE", "MAP", "PROBABILITIES", "\ud800"]), st.text(max_size=6))


@st.composite
def rest_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A V2 REST body (and headers): a request whose shapes, datatypes, data, parameters and framing are absurd."""
    tensor: dict[str, Any] = {"name": draw(names), "datatype": draw(st.sampled_from(DATATYPES)), "shape": draw(shapes)}
    binary = draw(st.binary(max_size=64)) if draw(st.booleans()) else None
    if binary is not None:
        tensor["parameters"] = {"binary_data_size": draw(st.sampled_from([len(binary), 0, -1, 2**64, "8", 1.5]))}
    else:
        tensor["data"] = draw(values)
    request: dict[str, Any] = {"inputs": [tensor] * draw(st.integers(0, 2))}
    if draw(st.booleans()):
        request["outputs"] = [{"name": draw(names), "parameters": {"classification": draw(scalars)}}]
    if draw(st.booleans()):
        request["id"] = draw(names)
    text = json.dumps(request).encode()
    # Literals json.dumps will not write: overflowing floats, NaN, and nesting past the recursion limit.
    text = text.replace(b"1e+300", draw(st.sampled_from([b"1e+300", b"1e400", b"-1e999", b"NaN"])))
    if draw(st.integers(0, 9)) == 0:
        depth = draw(st.integers(900, 100_000))
        text = b'{"inputs":[{"name":"MAP","datatype":"FP32","shape":[1],"data":' + b"[" * depth + b"]" * depth + b"}]}"
    headers: dict[str, Any] = {"content-type": "application/json"}
    if binary is not None:
        length = draw(
            st.sampled_from([str(len(text)), "\u00b2", "\u0661\u0662", "9" * 5000, "-1", "+12", "0x10", "1_0"])
        )
        # Sent as UTF-8 bytes: the server reads header values as Latin-1, so they arrive as non-ASCII text.
        headers = {"Inference-Header-Content-Length": length.encode(), "content-type": b"application/octet-stream"}
        text += binary
    return text, headers


@st.composite
def grpc_requests(draw: st.DrawFn) -> Any:
    """A ModelInferRequest with absurd shapes, datatypes, contents and raw data."""
    request = pb.ModelInferRequest(model_name=draw(st.sampled_from(["image", "hologram", ""])))
    tensor = request.inputs.add(name=draw(st.sampled_from(["FILE", "MAP", "X"])))
    tensor.datatype = draw(st.sampled_from(DATATYPES[:-1]))
    tensor.shape.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 4), max_size=40)))
    kind = draw(st.sampled_from(["uint", "int", "int64", "uint64", "fp32", "bool", "bytes", "raw", "none"]))
    count = draw(st.integers(0, 8))
    if kind == "raw":
        request.raw_input_contents.append(draw(st.binary(max_size=64)))
    elif kind == "uint":
        tensor.contents.uint_contents.extend(draw(st.lists(st.integers(0, 2**32 - 1), min_size=count, max_size=count)))
    elif kind == "int":
        tensor.contents.int_contents.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8)))
    elif kind == "int64":
        tensor.contents.int64_contents.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8)))
    elif kind == "uint64":
        tensor.contents.uint64_contents.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=8)))
    elif kind == "fp32":
        tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    elif kind == "bool":
        tensor.contents.bool_contents.extend(draw(st.lists(st.booleans(), max_size=8)))
    elif kind == "bytes":
        tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=16), max_size=8)))
    if draw(st.booleans()):
        out = request.outputs.add(name=draw(st.sampled_from(["PROBABILITIES", "EMBEDDING", "Y"])))
        out.parameters["classification"].int64_param = draw(st.integers(-(2**63), 2**63 - 1))
    return request


# --- the tests ---------------------------------------------------------------------------------------------------


def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    message = response.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message and len(message) < 400


@FIXED_SEED
@given(case=rest_bodies())
def test_generated_rest_bodies_are_refused(rest: httpx.Client, case: tuple[bytes, dict[str, Any]]) -> None:
    body, headers = case
    assert_refused(rest.post("/v2/models/image/infer", content=body, headers=headers))


@FIXED_SEED
@given(request=grpc_requests())
def test_generated_grpc_requests_are_refused_without_internal(stub: Any, request: Any) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request, timeout=120)
    code = refused.value.code()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), refused.value.details()
    assert code is not grpc.StatusCode.OK and "\n" not in (refused.value.details() or "")


_OVERFLOW = (
    b'{"inputs":[{"name":"MAP","datatype":"FP32","shape":[0,9223372036854775807,9223372036854775807],'
    b'"parameters":{"binary_data_size":0}}]}'
)
ISSUE_CASES: dict[str, tuple[bytes, dict[str, Any]]] = {
    "recursion": (b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
    "int8 range": (b'{"inputs":[{"name":"MAP","datatype":"INT8","shape":[1],"data":[300]}]}', {}),
    "uint16 range": (b'{"inputs":[{"name":"MAP","datatype":"UINT16","shape":[1],"data":[-1]}]}', {}),
    "int32 range": (b'{"inputs":[{"name":"MAP","datatype":"INT32","shape":[1],"data":[4294967296]}]}', {}),
    "1e400": (b'{"inputs":[{"name":"MAP","datatype":"FP32","shape":[1],"data":[1e400]}]}', {}),
    "surrogate": (b'{"inputs":[{"name":"FILE","datatype":"BYTES","shape":[1],"data":["\\ud800"]}]}', {}),
    "unicode digits": (b'{"inputs":[]}', {"Inference-Header-Content-Length": "\u00b9\u00b2".encode("latin-1")}),
    "many digits": (b'{"inputs":[]}', {"Inference-Header-Content-Length": "1" * 5000}),
    "shape overflow": (_OVERFLOW, {"Inference-Header-Content-Length": str(len(_OVERFLOW))}),
}


@pytest.mark.parametrize("case", sorted(ISSUE_CASES))
def test_reported_bodies_are_refused(served: tuple[Server, int], rest: httpx.Client, case: str) -> None:
    body, headers = ISSUE_CASES[case]
    response = rest.post("/v2/models/image/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text[:300]
    assert_refused(response)


@pytest.mark.parametrize("literal", ["+1", ".5", "1.", "01"])
def test_large_arrays_refuse_what_json_does_not_allow(rest: httpx.Client, literal: str) -> None:
    """A large FP32 array (the numpy path) with one number JSON does not allow: 400 naming it, on one line."""
    values = ["0.5"] * 30_000 + [literal]
    body = b'{"inputs":[{"name":"MAP","datatype":"FP32","shape":[%d],"data":[%s]}]}' % (
        len(values),
        ",".join(values).encode(),
    )
    response = rest.post("/v2/models/image/infer", content=body)
    assert response.status_code == 400, response.text[:300]
    message = response.json()["error"]
    assert f"{literal!r} is not one" in message and "\n" not in message, message
    assert_refused(response)


def test_schemathesis_finds_no_server_error_on_v2(served: tuple[Server, int], tmp_path: Path) -> None:
    pytest.importorskip("schemathesis")
    command = [
        sys.executable,
        "-c",
        "from schemathesis.cli import schemathesis; schemathesis()",
        "run",
        f"{served[0].url}/openapi.json",
        "--include-path-regex",
        "^/v2",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance",
        "--phases",
        "examples,fuzzing",
        "--max-time",
        "40",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "/v2/models/{model}/infer" in result.stdout


# --- a large JSON body -----------------------------------------------------------------------------------------


def rss_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def healthz_latencies_while(server: Server, send: Any) -> list[float]:
    """Seconds of each ``/healthz`` asked (every 50 ms, on its own connection) while ``send`` runs in a thread,
    checked: a loop that handled the request itself would hold one ``/healthz`` for about the whole request, so each
    must be answered within 0.5 s, or within a quarter of the request's time where a loaded machine makes it long."""
    sender = threading.Thread(target=send)
    latencies: list[float] = []
    with server.client(timeout=30) as health:
        began = time.perf_counter()
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            assert health.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    sender.join()
    assert len(latencies) >= 5, latencies  # the request took a while, and /healthz was asked throughout
    loop_free_within = max(0.5, 0.25 * (time.perf_counter() - began))
    assert max(latencies) <= loop_free_within, f"/healthz took {max(latencies):.2f} s while the request was handled"
    return latencies


def large_json_body(target: int, layout: str) -> bytes:
    """About ``target`` bytes of JSON: one FP32 tensor of short decimal values (the densest the JSON path accepts),
    flat (as tritonclient sends it), in rows of 64, or in rows after an empty one (which keeps numpy's fast path
    away: the JSON parser reads it all, the worst case)."""
    count = target // 7
    values = [f"{v:.4f}" for v in np.round(np.random.default_rng(0).random(count), 4)]
    rows = [",".join(values[i : i + 64]) for i in range(0, count, 64)]
    data = ",".join(rows) if layout == "flat" else ",".join(f"[{row}]" for row in rows)
    if layout == "json":
        data = "[]," + data
    head = f'{{"inputs":[{{"name":"MAP","datatype":"FP32","shape":[{count}],"data":['
    return head.encode() + data.encode() + b"]}]}"


@pytest.mark.parametrize("layout", ["flat", "rows", "json"])
def test_large_json_body_parses_off_the_loop_within_bounds(served: tuple[Server, int], layout: str) -> None:
    server = served[0]
    megabytes = 60
    body = large_json_body(megabytes * 2**20, layout)
    pid = server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    before = rss_bytes(pid, "VmRSS")
    answer: dict[str, httpx.Response] = {}

    def send() -> None:
        answer["response"] = httpx.post(f"{server.url}/v2/models/image/infer", content=body, timeout=300)

    latencies = healthz_latencies_while(server, send)
    grown = rss_bytes(pid, "VmHWM") - before
    response = answer["response"]
    assert response.status_code == 400 and "MAP must be FP32 of shape" in response.json()["error"]
    assert grown <= 600 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB for a {megabytes} MiB body"
    print(
        f"{megabytes} MiB {layout} body: +{grown / 2**20:.0f} MiB peak RSS, /healthz max {max(latencies) * 1000:.0f} ms"
    )


def test_large_grpc_contents_are_converted_off_the_loop(served: tuple[Server, int], stub: Any) -> None:
    """Eight million typed FP32 values (32 MB): their conversion must not stall the gateway's event loop."""
    request = pb.ModelInferRequest(model_name="image")
    tensor = request.inputs.add(name="MAP", datatype="FP32", shape=[8_000_000])
    tensor.contents.fp32_contents.extend(np.random.default_rng(1).random(8_000_000, dtype=np.float32))
    failure: dict[str, Any] = {}

    def send() -> None:
        try:
            stub.ModelInfer(request, timeout=300)
        except grpc.RpcError as exc:
            failure["error"] = exc

    healthz_latencies_while(served[0], send)
    error = failure["error"]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "MAP must be FP32 of shape" in error.details()


def test_a_denser_body_is_refused_before_parsing(rest: httpx.Client) -> None:
    """Integers are not parsed by numpy (it saturates them): 2-byte values would cost 18 times their text."""
    count = 4 * 2**20
    body = b'{"inputs":[{"name":"MAP","datatype":"INT32","shape":[%d],"data":[' % count
    body += b",".join([b"0"] * count) + b"]}]}"
    response = rest.post("/v2/models/image/infer", content=body)
    assert response.status_code == 413 and "binary tensor data extension" in response.json()["error"]
    assert math.isclose(len(body), 8 * 2**20, rel_tol=0.01)


def test_no_traceback_was_logged(served: tuple[Server, int]) -> None:
    """Runs after the corpora: nothing they sent reached the 'failed unexpectedly' handlers."""
    log = served[0].log.read_text(errors="replace")
    assert "Traceback" not in log and "failed unexpectedly" not in log
