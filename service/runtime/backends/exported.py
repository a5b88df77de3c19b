"""Backends built from an exported file: export into the cache once, load from it on every start after.

A cached entry that the backend cannot load (truncated by a full disk, written by a broken build) is moved aside and
exported again once; a second failure is a real error and stops the start. The same holds for an entry that loads
but disagrees with the eager model (``registry.build_runner`` checks it and calls ``reject``).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from pathlib import Path

from service.runtime.backends.base import BackendError, BackendSpec, BuildRequest, Runner
from service.runtime.backends.cache import ExportCache, entry_key

log = logging.getLogger(__name__)


class ExportedSpec(BackendSpec):
    """A backend whose runner loads a file written by ``write`` (kept in the export cache)."""

    @abstractmethod
    def write(self, request: BuildRequest, directory: Path, cache: ExportCache) -> None:
        """Export the request's model into ``directory`` (a fresh temporary one); ``cache`` holds what several
        backends share (the ONNX export)."""

    @abstractmethod
    def load(self, request: BuildRequest, entry: Path) -> Runner:
        """A runner over the files ``write`` produced."""

    def cache_key(self, request: BuildRequest) -> str:
        return entry_key(
            backend=self.name,
            version=self.version(),
            weights=request.weights_digest,
            shape=list(request.input_shape),
            max_batch=request.max_batch_size if not self.dynamic_batch else None,
            precision=str(request.autocast_dtype),
        )

    dynamic_batch = True
    """False: the export depends on the batch range (part of the key)."""

    def build(self, request: BuildRequest, cache: ExportCache) -> Runner:
        key = self.cache_key(request)
        what = f"{self.name} {'x'.join(map(str, request.input_shape))}"
        for attempt in (1, 2):
            entry = cache.get_or_build(key, lambda d: self.write(request, d, cache), what)
            try:
                return self.load(request, entry)
            except Exception as exc:
                if attempt == 2:
                    raise BackendError(f"{self.name} cannot load its freshly exported model: {exc}") from exc
                cache.set_aside(entry, f"{self.name} could not load it: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")

    def reject(self, request: BuildRequest, cache: ExportCache, reason: str) -> None:
        """Move the request's cached entry aside (it loaded, but must not serve), so the next build exports anew."""
        cache.set_aside(cache.root / self.cache_key(request), reason)
