"""What a caller may see of the served models: with API keys on, where files live is for key holders only.

``GET /models`` and the V2 model metadata answer without a key (a load balancer or a curious page may ask), and a
model's weights or label set is often a local path (``/srv/models/team-a/image.pth``), which tells an anonymous
caller about the host's file system and who runs it. Anonymous callers see the file's name instead, and not the
training command (it names data paths). A caller that sends a key gets everything once the key checks out; an
invalid key is refused (401), not silently served the anonymous view.
"""

from __future__ import annotations

from pathlib import PureWindowsPath
from typing import Any

from fastapi import Request

_HUB_PREFIXES = ("hf-hub:", "hf://", "http://", "https://")


async def sees_paths(request: Request) -> bool:
    """True when keys are off, or the request carries a valid key (raises 401/429/503 for a bad one)."""
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        return True
    header = request.headers.get("authorization")
    if not header:
        return False
    await auth.authorize(header)
    return True


def file_name(value: Any) -> Any:
    """A local path reduced to its file name; names, tags and hub references are public and kept."""
    if not isinstance(value, str) or value.startswith(_HUB_PREFIXES) or not ("/" in value or "\\" in value):
        return value
    return PureWindowsPath(value).name  # splits on both separators


def public_model(description: dict[str, Any]) -> dict[str, Any]:
    """A model description (``/models`` entry, or V2 metadata ``parameters``) without local paths."""
    out = dict(description)
    for key in ("weights", "label_set"):
        if key in out:
            out[key] = file_name(out[key])
    provenance = out.get("provenance")
    if isinstance(provenance, dict) and "command" in provenance:
        out["provenance"] = {**provenance, "command": None}
    return out
