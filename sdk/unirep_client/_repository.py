"""The model repository calls both clients make (``POST /v2/repository/...``, the Open Inference Protocol's
repository extension): request bodies and answers, shared so the blocking and async clients cannot drift."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ._inputs import Payload
from .types import RepositoryEntry

INDEX_PATH = "/v2/repository/index"


def model_path(name: str, action: str) -> str:
    return f"/v2/repository/models/{quote(name, safe='')}/{action}"


def load_payload(config: Mapping[str, Any] | None, files: Mapping[str, bytes] | None) -> Payload:
    """A load's body: the config override as JSON text, each file (``"1/model.safetensors"``) base64-encoded."""
    parameters: dict[str, Any] = {}
    if config is not None:
        parameters["config"] = json.dumps(dict(config))
    for path, content in (files or {}).items():
        key = path if path.startswith("file:") else f"file:{path}"
        parameters[key] = base64.b64encode(content).decode()
    return Payload(json={"parameters": parameters})


def index_entries(body: Any) -> list[RepositoryEntry]:
    return [RepositoryEntry.model_validate(item) for item in body]
