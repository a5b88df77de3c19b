"""The Open Inference Protocol (KServe V2) over HTTP/REST, as ``tritonclient.http`` speaks it: health, server and
model metadata, and infer with JSON or binary tensor data (``Inference-Header-Content-Length``) both ways.

Errors leave as the protocol's ``{"error": "message"}`` with the service's status codes (429 and 503 with
Retry-After, 401 with WWW-Authenticate). The body is read with the same size limit as the native routes.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from service.http import request_io as io
from service.http import v2_core as core
from service.http.tracking import Tracked
from service.http.v2_schemas import (
    InferenceRequest,
    InferenceResponse,
    Live,
    ModelMetadata,
    Ready,
    ServerMetadata,
    error_responses,
    inline_schema,
)
from service.http.v2_tensors import (
    HEADER_LENGTH,
    Tensor,
    split_binary_body,
    tensor_bytes,
    tensor_from_json,
    tensor_from_raw,
    tensor_json_data,
)
from service.runtime.serving import ServiceRuntime
from unirep_errors import InputError, UnirepError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "An inference request (JSON). With the binary tensor data extension the JSON is followed by the tensors' "
            f"bytes; the `{HEADER_LENGTH}` header gives the JSON's length."
        ),
        "content": {
            "application/json": {"schema": inline_schema(InferenceRequest)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def v2_error(exc: UnirepError, request: Request | None = None) -> JSONResponse:
    headers: dict[str, str] = {}
    if request is not None:
        headers[io.REQUEST_ID_HEADER] = io.request_id(request)
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="unirep"'
    if exc.status_code in (429, 503):
        retry = exc.details.get("retry_after")
        headers["Retry-After"] = str(max(1, math.ceil(float(retry if retry is not None else 1))))
    return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=headers)


@router.get("/health/live", response_model=Live, summary="V2 server liveness")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready",
    response_model=Ready,
    responses=error_responses(503),
    summary="V2 server readiness (503 until warm)",
)
async def server_ready(request: Request) -> Response:
    if _runtime(request).ready:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False}, status_code=503, headers={"Retry-After": "5"})


@router.get("", response_model=ServerMetadata, summary="V2 server metadata")
async def server_metadata() -> dict[str, Any]:
    return core.server_metadata()


@router.get("/models/{model}", response_model=ModelMetadata, responses=error_responses(404, 503))
@router.get("/models/{model}/versions/{version}", response_model=ModelMetadata, responses=error_responses(404, 503))
async def model_metadata(request: Request, model: str, version: str | None = None) -> Response:
    """One V2 model per served modality: its inputs (FILE bytes or a MAP) and outputs (PROBABILITIES, EMBEDDING)."""
    try:
        served = core.served_for(_runtime(request), model, version)
        return JSONResponse(core.model_metadata(served, core.loaded_versions(_runtime(request), model)))
    except UnirepError as exc:
        return v2_error(exc, request)


@router.get("/models/{model}/ready", response_model=Ready, responses=error_responses(404, 503))
@router.get("/models/{model}/versions/{version}/ready", response_model=Ready, responses=error_responses(404, 503))
async def model_ready(request: Request, model: str, version: str | None = None) -> Response:
    runtime = _runtime(request)
    try:
        core.served_for(runtime, model, version)
    except UnirepError as exc:
        return v2_error(exc, request)
    if runtime.ready:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False}, status_code=503, headers={"Retry-After": "5"})


_INFER_ERRORS = error_responses(400, 401, 404, 413, 422, 429, 503, 504)


@router.post(
    "/models/{model}/infer", response_model=InferenceResponse, responses=_INFER_ERRORS, openapi_extra=_INFER_BODY
)
@router.post(
    "/models/{model}/versions/{version}/infer",
    response_model=InferenceResponse,
    responses=_INFER_ERRORS,
    openapi_extra=_INFER_BODY,
)
async def model_infer(request: Request, model: str, version: str | None = None) -> Response:
    """Classify and/or embed the request's files (BYTES) or maps (FP32), as a batch."""
    runtime = _runtime(request)
    with Tracked(runtime, model, "v2_infer") as tracked:
        try:
            auth = getattr(request.app.state, "auth", None)
            if auth is not None:
                await auth.authorize(request.headers.get("authorization"))
            served = core.served_for(runtime, model, version)
            runtime.check_admission()
            timeout_ms = io.parse_timeout_ms(request)
            body = await io.read_body(request, runtime.settings.max_body_bytes)
            parsed, binary = _parse(body, request.headers.get(HEADER_LENGTH))
            inputs = _inputs(parsed, binary)
            requested, binary_flags = _outputs(parsed)
            watch = io.DisconnectWatch(request.receive)
            try:
                answer = await core.infer(runtime, served, inputs, requested, timeout_ms=timeout_ms, cancelled=watch)
            finally:
                watch.close()
        except UnirepError as exc:
            tracked.status = exc.status_code
            return v2_error(exc, request)
        except Exception:
            log.exception("V2 infer on %s failed unexpectedly", model)
            return JSONResponse({"error": "internal error; see the server log"}, status_code=500)
        tracked.status = 200
        default_binary = bool(parsed.parameters.get("binary_data_output", False))
        return _response(model, parsed.id, answer, binary_flags, default_binary, io.request_id(request))


def _parse(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    header, binary = split_binary_body(body, header_length)
    try:
        return InferenceRequest.model_validate(header), binary
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"malformed inference request: {problems}") from None


def _inputs(parsed: InferenceRequest, binary: bytes) -> list[Tensor]:
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
            out.append(tensor_from_json(given.name, given.datatype, given.shape, given.data, params))
    if pos != len(binary):
        raise InputError(f"{len(binary) - pos} bytes of binary data belong to no input")
    return out


def _outputs(parsed: InferenceRequest) -> tuple[list[core.RequestedOutput], dict[str, bool | None]]:
    requested: list[core.RequestedOutput] = []
    flags: dict[str, bool | None] = {}
    for out in parsed.outputs:
        k = core.classification_k(out.parameters.get("classification"))
        binary = out.parameters.get("binary_data")
        flags[out.name] = bool(binary) if binary is not None else None
        requested.append(core.RequestedOutput(out.name, k))
    return requested, flags


def _response(
    model: str,
    request_id: str | None,
    answer: core.V2Answer,
    flags: dict[str, bool | None],
    default_binary: bool,
    rid: str,
) -> Response:
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in answer.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        flag = flags.get(tensor.name)
        if flag if flag is not None else default_binary:
            blob = tensor_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor_json_data(tensor)
        outputs.append(entry)
    content: dict[str, Any] = {"model_name": model, "model_version": answer.model_version, "outputs": outputs}
    if request_id is not None:
        content["id"] = request_id
    content["parameters"] = answer.parameters
    headers = {io.REQUEST_ID_HEADER: rid, "X-Cache": str(answer.parameters["cache"])}
    if not blobs:
        return JSONResponse(content, headers=headers)
    head = json.dumps(content, separators=(",", ":")).encode()
    headers[HEADER_LENGTH] = str(len(head))
    return Response(head + b"".join(blobs), media_type="application/octet-stream", headers=headers)
