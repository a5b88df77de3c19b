"""Which loaded model answers a model name and version: the routing table that new requests resolve through.

Loading a version installs it beside what serves (a new serving key) and then routes it here in one step, so a
request resolves either to the old version or to the new one, never to a half-made one; a request that already
resolved keeps its ``ServedModel`` (and its serving key stays loaded until it is answered). A modality's default
model is the name of the modality, version 1. Without a version, a name resolves to its highest routed version.
"""

from __future__ import annotations

from typing import Any

from servable.served import ServedModel
from unirep_errors import NotFoundError


class ModelTable:
    def __init__(self) -> None:
        self._routes: dict[str, dict[int, ServedModel]] = {}

    def route(self, served: ServedModel) -> ServedModel | None:
        """Make ``served`` answer its name and version; the one it replaces (to be released once drained)."""
        versions = self._routes.setdefault(served.model_name, {})
        number = int(served.model_version)
        replaced = versions.get(number)
        versions[number] = served
        return replaced if replaced is not None and replaced is not served else None

    def withdraw(self, name: str, version: int) -> ServedModel | None:
        """Stop routing one version (new requests get 404); the withdrawn model, to be released once drained."""
        versions = self._routes.get(name, {})
        served = versions.pop(version, None)
        if not versions:
            self._routes.pop(name, None)
        return served

    def versions(self, name: str) -> dict[int, ServedModel]:
        return dict(self._routes.get(name, {}))

    def names(self) -> list[str]:
        return list(self._routes)

    def all(self) -> list[ServedModel]:
        return [sm for name in self._routes for _, sm in sorted(self._routes[name].items())]

    def describe(self, state: str) -> list[dict[str, Any]]:
        """Each routed model's description (``GET /models``), with ``state``, without the wire-only weights detail."""
        out = []
        for served in self.all():
            desc = served.describe()
            desc.pop("weights_detail")
            out.append({**desc, "state": state})
        return out

    def resolve(self, name: str, version: str | int | None = None) -> ServedModel:
        """The model answering ``name`` (``version``, or the highest); ``NotFoundError`` naming what exists."""
        versions = self._routes.get(name)
        if not versions:
            known = ", ".join(sorted(self._routes)) or "none"
            raise NotFoundError(f"no model {name!r} is loaded (loaded: {known})", model=name)
        if version in (None, ""):
            return versions[max(versions)]
        try:
            number = int(str(version))
        except ValueError:
            number = -1
        if number not in versions:
            have = ", ".join(str(v) for v in sorted(versions))
            raise NotFoundError(f"model {name!r} has no version {version!r} loaded; it has {have}", model=name)
        return versions[number]
