"""A scale-out gateway's routes to repository versions: what the Redis records route, once a worker serves it.

The gateway holds no model: it describes a version from the version's file (labels, params: fetched from Redis by
its sha256) and a live worker's announcement (weights, shapes, version), gives it a batcher bucket, and routes it
in the model table in one step, as ``live_models.install`` does in one process. A version the records no longer
route is withdrawn and released once its admitted requests are answered (``live_models.schedule_release``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servable.served import ServedModel
from service.repository.layout import MODEL_FILE
from service.repository.versions import version_config
from service.runtime import live_models
from service.runtime.admission import latency_seeds
from service.runtime.bucket import BatchPolicy
from service.scaleout.repository_state import ModelRecord, VersionSpec
from unirep_errors import ModelLoadError

if TYPE_CHECKING:
    from service.runtime.serving import ServiceRuntime
    from service.scaleout.stream_transport import RedisStreamsTransport

log = logging.getLogger(__name__)


class GatewayRoutes:
    def __init__(self, runtime: ServiceRuntime, transport: RedisStreamsTransport, files: Path) -> None:
        self.runtime, self.transport, self.files = runtime, transport, files
        self._lock = asyncio.Lock()
        self._refused: set[str] = set()
        """Serving keys whose description did not match (logged once, not retried every tick)."""

    def routed(self) -> dict[str, ServedModel]:
        """Serving key -> the repository versions this gateway routes now."""
        return {sm.key: sm for sm in self.runtime.table.all() if sm.repository_name is not None}

    async def apply(self, records: dict[str, ModelRecord], models: dict[str, dict[str, Any]]) -> None:
        """Route what ``records`` route and a live worker announces (``models``: key -> description); withdraw
        the rest. One at a time: the sync loop, a load and an index request may all ask at once."""
        async with self._lock:
            await self._apply(records, models)

    async def _apply(self, records: dict[str, ModelRecord], models: dict[str, dict[str, Any]]) -> None:
        wanted = {(name, v): spec for name, rec in records.items() for v, spec in rec.routed.items()}
        routed = self.routed()
        for (name, version), spec in sorted(wanted.items()):
            if spec.key in routed or spec.key in self._refused or spec.key not in models:
                continue
            try:
                served = await self._describe(name, version, spec, models[spec.key])
            except Exception as exc:
                self._refused.add(spec.key)
                log.error("cannot route %s version %d (%s): %s", name, version, spec.key, exc)
                continue
            self._route(served)
        for served in self.routed().values():
            if (served.model_name, int(served.model_version)) not in wanted:
                withdrawn = self.runtime.table.withdraw(served.model_name, int(served.model_version))
                if withdrawn is not None:
                    log.info("%s version %s is no longer routed", served.model_name, served.model_version)
                    live_models.schedule_release(self.runtime, withdrawn)
        for key in list(self.transport.versions):
            if key not in self.transport.required and key not in self.runtime.served:
                del self.transport.versions[key]  # released

    async def fetch(self, sha256: str) -> Path:
        """A version file from Redis, kept locally by digest (it only gives labels and params here)."""
        path = self.files / sha256 / MODEL_FILE
        if not path.is_file():
            data: Any = await self.transport.client.get(self.transport.keys.repository_file(sha256))
            if data is None or hashlib.sha256(data).hexdigest() != sha256:
                raise ModelLoadError(f"the model file {sha256[:16]} is missing from Redis")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return path

    async def _describe(self, name: str, version: int, spec: VersionSpec, desc: dict[str, Any]) -> ServedModel:
        path = await self.fetch(spec.file)
        adapters = self.runtime.adapters
        cfg = await asyncio.get_running_loop().run_in_executor(None, version_config, path, spec.section, adapters)
        return ServedModel.from_description(cfg, adapters[cfg.modality], desc, (name, version, spec.key))

    def _route(self, served: ServedModel) -> None:
        runtime = self.runtime
        assert runtime.batcher is not None
        cfg = served.config
        policy = BatchPolicy(cfg.max_batch_size, cfg.max_delay_ms, cfg.max_queue_size)
        runtime.served[served.key] = served
        self.transport.versions[served.key] = served.version
        seeds = latency_seeds(served, [], runtime.settings.warmup)
        runtime.batcher.add_model(served.key, policy, served.input_shape, seeds)
        replaced = runtime.table.route(served)
        log.info("routing %s version %s to the workers (%s)", served.model_name, served.model_version, served.key)
        if replaced is not None:
            live_models.schedule_release(runtime, replaced)
