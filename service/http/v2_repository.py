"""The model repository extension of the Open Inference Protocol over REST, as ``tritonclient.http`` speaks it:
``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load`` (optional ``parameters.config``, a JSON
model configuration, and ``parameters["file:N/model.safetensors"]``, base64 file contents that form the model's
folder) and ``POST /v2/repository/models/{name}/unload``.

With API keys on, every one of them needs a key with the admin scope (``unirep keys create --admin``): an
inference key gets 403. Errors leave as the protocol's ``{"error": "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from service.http import request_io as io
from service.http.v2_rest import v2_error
from service.http.v2_schemas import error_responses
from service.repository.manager import Repository, index_of
from service.runtime.serving import ServiceRuntime
from unirep_errors import InputError, UnirepError

router = APIRouter(prefix="/v2/repository", tags=["open inference protocol (v2): model repository"])
FILE_PREFIX = "file:"


class IndexRequest(BaseModel):
    ready: bool = False


class IndexEntry(BaseModel):
    name: str
    version: str
    state: str
    reason: str


class ChangeRequest(BaseModel):
    parameters: dict[str, Any] = {}


def repository(runtime: ServiceRuntime) -> Repository:
    if runtime.repository is None:
        raise InputError("no model repository is configured: start the server with --model-repository DIR")
    return runtime.repository


def load_parameters(params: dict[str, Any], decode: bool) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    """A load's config override and files; ``decode``: file contents arrive base64 (REST) rather than as bytes."""
    config: dict[str, Any] | None = None
    raw = params.get("config")
    if raw not in (None, ""):
        try:
            config = json.loads(raw) if isinstance(raw, str | bytes) else None
        except ValueError as exc:
            raise InputError(f"parameters.config is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise InputError("parameters.config must be a JSON object (a model configuration)")
    files: dict[str, bytes] = {}
    for key, value in params.items():
        if not key.startswith(FILE_PREFIX):
            continue
        try:
            files[key[len(FILE_PREFIX) :]] = base64.b64decode(value, validate=True) if decode else bytes(value)
        except (binascii.Error, TypeError, ValueError):
            raise InputError(f"parameters[{key!r}] must be the file's contents, base64-encoded") from None
    return config, files


async def _admin(request: Request) -> ServiceRuntime:
    """The runtime, once the caller holds an admin key (when keys are on)."""
    auth = getattr(request.app.state, "auth", None)
    if auth is not None:
        await auth.authorize_admin(request.headers.get("authorization"))
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def _body(request: Request, runtime: ServiceRuntime, schema: type[BaseModel]) -> Any:
    body = await io.read_body(request, runtime.settings.max_body_bytes)
    try:
        return schema.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise InputError(f"invalid request: {exc.errors()[0]['msg']}") from None


@router.post("/index", response_model=list[IndexEntry], responses=error_responses(400, 401, 403))
async def repository_index(request: Request) -> Response:
    """Every model and version with its state (READY, LOADING, UNAVAILABLE) and why it is not ready."""
    try:
        runtime = await _admin(request)
        asked: IndexRequest = await _body(request, runtime, IndexRequest)
        entries = await index_of(runtime, asked.ready)
    except UnirepError as exc:
        return v2_error(exc, request)
    return JSONResponse([IndexEntry(**vars(e)).model_dump() for e in entries])


@router.post("/models/{name}/load", responses=error_responses(400, 401, 403, 404))
async def repository_load(request: Request, name: str) -> Response:
    """Load or reload a model: built, checked and warmed beside what serves, then switched in atomically."""
    try:
        runtime = await _admin(request)
        asked: ChangeRequest = await _body(request, runtime, ChangeRequest)
        config, files = load_parameters(asked.parameters, decode=True)
        await repository(runtime).load(name, config, files or None)
    except UnirepError as exc:
        return v2_error(exc, request)
    return JSONResponse({})


@router.post("/models/{name}/unload", responses=error_responses(400, 401, 403, 404))
async def repository_unload(request: Request, name: str) -> Response:
    """Stop serving a model; each version is released once the requests it admitted are answered."""
    try:
        runtime = await _admin(request)
        await _body(request, runtime, ChangeRequest)
        await repository(runtime).unload(name)
    except UnirepError as exc:
        return v2_error(exc, request)
    return JSONResponse({})
