"""Pydantic models of the Open Inference Protocol (KServe V2) REST messages: they validate requests and document
the ``/v2`` routes in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestInput(_Message):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None
    """Row-major values (nested or flat); absent when ``parameters.binary_data_size`` places them after the JSON."""


class RequestOutput(_Message):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    """``binary_data`` (bool), ``classification`` (top k, Triton's classification extension)."""


class InferenceRequest(_Message):
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    """``binary_data_output`` (bool): every output in binary form unless the output says otherwise."""
    inputs: list[RequestInput]
    outputs: list[RequestOutput] = Field(default_factory=list)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class V2Error(BaseModel):
    """The protocol's error body."""

    error: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the protocol's error statuses."""
    text = {
        400: "malformed request (bad tensor, shape, datatype or parameter)",
        401: "missing or invalid API key (when API keys are on)",
        403: "the API key lacks the scope (managing models needs an admin key)",
        404: "unknown model or version",
        408: "the body stalled or did not arrive in time",
        413: "body over the size limit",
        422: "an input file that cannot be decoded",
        429: "queue full or rate limited (Retry-After)",
        503: "not ready or draining (Retry-After)",
        504: "the deadline (X-Request-Timeout-Ms) passed",
    }
    return {code: {"model": V2Error, "description": text.get(code, "error")} for code in codes}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined, for an OpenAPI ``requestBody`` written by hand (a
    ``#/$defs/...`` reference would dangle there). The protocol's models are not recursive."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
