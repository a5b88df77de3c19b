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

from service.http import request_io as io
from service.http import v2_core as core
from service.http import v2_request
from service.http.intake import Admitted, Intake, http_door
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
from service.http.v2_tensors import HEADER_LENGTH, tensor_bytes, tensor_json_data
from service.http.visibility import public_model, sees_paths
from service.runtime.serving import ServiceRuntime
from unirep_errors import UnirepError

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
        meta = core.model_metadata(served, core.loaded_versions(_runtime(request), model))
        if not await sees_paths(request):  # with API keys on, local paths are for key holders only
            meta["parameters"] = public_model(meta["parameters"])
        return JSONResponse(meta)
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

    async def work(intake: Intake, admitted: Admitted, watch: io.DisconnectWatch) -> Response:
        parsed, inputs, requested, binary_flags = await v2_request.parse(
            admitted.body, request.headers.get(HEADER_LENGTH)
        )
        answer = await core.infer(
            runtime,
            admitted.served,
            inputs,
            requested,
            timeout_ms=admitted.timeout_ms,
            cancelled=watch,
            client=admitted.client,
        )
        default_binary = bool(parsed.parameters.get("binary_data_output", False))
        return _response(model, parsed.id, answer, binary_flags, default_binary, io.request_id(request))

    return await http_door(
        request,
        "v2_infer",
        model,
        lambda: core.served_for(runtime, model, version),
        work,
        lambda exc, rid: v2_error(exc, request),
        upload=False,
    )


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
