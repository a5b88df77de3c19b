"""The model repository extension of the Open Inference Protocol over REST, as ``tritonclient.http`` speaks it:
``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load`` (optional ``parameters.config``, a JSON
model configuration, and ``parameters["file:N/model.safetensors"]``, base64 file contents that form the model's
folder) and ``POST /v2/repository/models/{name}/unload``.

With API keys on, every one of them needs a key with the admin scope (``unirep keys create --admin``): an
inference key gets 403. Every one of them passes the front door's admin passage (``service.http.intake``): the
admin key, the client, the bounded body (408 when it stalls), and one counted status (endpoints
``repository_index``, ``repository_load``, ``repository_unload``). Errors leave as the protocol's
``{"error": "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from service.http.intake import admin_door
from service.http.v2_rest import v2_error
from service.http.v2_schemas import error_responses
from service.repository.manager import Repository, index_of
from service.runtime.serving import ServiceRuntime
from unirep_errors import InputError

router = APIRouter(prefix="/v2/repository", tags=["open inference protocol (v2): model repository"])
FILE_PREFIX = "file:"
M = TypeVar("M", bound=BaseModel)


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


def _parse(body: bytes, schema: type[M]) -> M:
    try:
        return schema.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise InputError(f"invalid request: {exc.errors()[0]['msg']}") from None


async def _manage(
    request: Request, door: str, model: str, act: Callable[[ServiceRuntime, bytes], Awaitable[Any]]
) -> Response:
    """One management request through the intake's admin passage (``intake.admin_door``); ``act`` returns the
    JSON answer."""
    runtime: ServiceRuntime = request.app.state.runtime

    async def work(body: bytes) -> Response:
        return JSONResponse(await act(runtime, body))

    return await admin_door(request, door, model, work, lambda exc, rid: v2_error(exc, request))


@router.post("/index", response_model=list[IndexEntry], responses=error_responses(400, 401, 403, 408, 413))
async def repository_index(request: Request) -> Response:
    """Every model and version with its state (READY, LOADING, UNAVAILABLE) and why it is not ready."""

    async def act(runtime: ServiceRuntime, body: bytes) -> Any:
        entries = await index_of(runtime, _parse(body, IndexRequest).ready)
        return [IndexEntry(**vars(e)).model_dump() for e in entries]

    return await _manage(request, "repository_index", "", act)


@router.post("/models/{name}/load", responses=error_responses(400, 401, 403, 404, 408, 413))
async def repository_load(request: Request, name: str) -> Response:
    """Load or reload a model: built, checked and warmed beside what serves, then switched in atomically."""

    async def act(runtime: ServiceRuntime, body: bytes) -> Any:
        config, files = load_parameters(_parse(body, ChangeRequest).parameters, decode=True)
        await repository(runtime).load(name, config, files or None)
        return {}

    return await _manage(request, "repository_load", name, act)


@router.post("/models/{name}/unload", responses=error_responses(400, 401, 403, 404, 408, 413))
async def repository_unload(request: Request, name: str) -> Response:
    """Stop serving a model; each version is released once the requests it admitted are answered."""

    async def act(runtime: ServiceRuntime, body: bytes) -> Any:
        _parse(body, ChangeRequest)
        await repository(runtime).unload(name)
        return {}

    return await _manage(request, "repository_unload", name, act)
