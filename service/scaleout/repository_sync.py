"""The model repository behind a scale-out gateway (``unirep gateway``): changes go to Redis, workers load them.

A load (REST or gRPC, through any gateway) checks each version the policy selects here (a file written by
``unirep train``, of an enabled modality), stores its file in Redis once, and writes the model's record with the
new versions as ``loading`` (``service.scaleout.repository_state``). It then waits (``state.LOAD_WAIT_S`` at most)
until every live worker announces them READY (``service.scaleout.worker_repository``): then the record routes
them, this gateway switches its routes before answering and the other gateways within ``SYNC_S``. If a worker
fails to build one, the record goes back to what it routed (the serving versions keep serving), the index shows
the version UNAVAILABLE with the worker's reason, and the load answers it. An unload stops routing the model; the
workers release a version once its stream has drained. Changes from several gateways take turns (a Redis lock).

Model control, as in ``unirep serve``: ``explicit`` lets the API load and unload (``--load-model`` names what the
gateway publishes at start); ``none`` publishes the gateway's ``--model-repository`` at start; ``poll`` also
republishes what changed in it every ``repository_poll_s`` and unloads the models it published whose folders are
gone. Without ``--model-repository`` a gateway routes and lists what other gateways published. The index answered
by any gateway is the records in Redis with the workers' announced states.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servable.served import LOAD_SERIAL_MARK
from service.repository.layout import ModelFolder, read_folder, scan, write_files
from service.repository.manager import IndexEntry, check_managed, poll_every, require_explicit
from service.repository.versions import version_config
from service.scaleout import repository_state as state
from service.scaleout.connection import REDIS_ERRORS
from service.scaleout.gateway_routes import GatewayRoutes
from service.scaleout.repository_state import ModelRecord, RepositoryLock, VersionSpec
from unirep_errors import ModelLoadError, NotFoundError, UnirepError

if TYPE_CHECKING:
    from service.runtime.serving import ServiceRuntime
    from service.scaleout.stream_transport import RedisStreamsTransport

log = logging.getLogger(__name__)

SYNC_S = 0.25


class ScaleoutRepository:
    def __init__(self, runtime: ServiceRuntime, transport: RedisStreamsTransport) -> None:
        settings = self.settings = runtime.settings
        self.runtime, self.transport = runtime, transport
        self.client, self.keys = transport.client, transport.keys
        self.root = Path(settings.model_repository) if settings.model_repository else None
        self.control: str = settings.model_control
        self.poll_s: float = settings.repository_poll_s
        self.load_at_start: list[str] = list(settings.load_models)
        self.files = Path(tempfile.mkdtemp(prefix="unirep-gateway-repository-"))
        self.routes = GatewayRoutes(runtime, transport, self.files)
        self.records: dict[str, ModelRecord] = {}
        self._generation: Any = None
        self._lock = asyncio.Lock()
        self._published: dict[str, Any] = {}
        """Names this gateway published from its directory -> what their folder looked like (poll)."""
        self._tasks: list[asyncio.Task[None]] = []

    # --- start and stop -------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        names = list(scan(self.root)) if self.root is not None else []
        if self.control == "explicit":
            names = names if "*" in self.load_at_start else self.load_at_start
        for name in names:
            try:
                await self.load(name, internal=True)
            except UnirepError as exc:
                log.error("model %s did not load: %s", name, exc.message)
        self._tasks.append(asyncio.create_task(self._sync(), name="unirep-repository-sync"))
        if self.control == "poll":
            poller = poll_every(self.poll_s, self.apply_changes)
            self._tasks.append(asyncio.create_task(poller, name="unirep-repository-poll"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        shutil.rmtree(self.files, ignore_errors=True)

    async def refresh(self) -> None:
        """Re-read the records (when the generation moved) and the live workers, and route accordingly."""
        generation = await self.client.get(self.keys.repository_generation)
        if generation != self._generation:
            self.records = await state.read_records(self.client, self.keys)
            self._generation = generation
        models = await self.transport.refresh()
        await self.routes.apply(self.records, models)

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(SYNC_S)
            try:
                await self.refresh()
            except Exception as exc:  # Redis away: the transport's breaker reports it; routes stay as they are
                log.debug("repository sync skipped: %s", exc)

    # --- the index ----------------------------------------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries = {
            (sm.model_name, int(sm.model_version)): IndexEntry(sm.model_name, sm.model_version, "READY")
            for sm in self.runtime.table.all()
            if sm.repository_name is None
        }
        for record in self.records.values():
            for version in set(record.routed) | set(record.loading) | set(record.reasons):
                entries[(record.name, version)] = state.index_entry(record, version, self.transport.worker_infos)
        for name in scan(self.root) if self.root is not None else {}:
            if not any(key[0] == name for key in entries):
                entries[(name, 0)] = IndexEntry(name, "", state.UNAVAILABLE, "not loaded")
        found = [entries[k] for k in sorted(entries)]
        return [e for e in found if e.state == state.READY] if ready_only else found

    # --- load and unload ----------------------------------------------------------------------------------------

    def check_control(self) -> None:
        require_explicit(self.control)

    async def load(
        self,
        name: str,
        config: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
        *,
        internal: bool = False,
    ) -> None:
        """Load (or reload) ``name`` on every worker; returns once routed, raises ``ModelLoadError`` naming why."""
        if not internal:
            self.check_control()
        check_managed(self.runtime, name)
        async with self._lock:
            upload = Path(tempfile.mkdtemp(prefix="unirep-upload-", dir=self.files)) if files else None
            try:
                folder = self._folder(name, config, files, upload)
                blobs, failures = await self._read_versions(folder)
            finally:
                if upload is not None:
                    shutil.rmtree(upload, ignore_errors=True)
            started = time.perf_counter()
            async with RepositoryLock(self.client, self.keys):
                await self._publish(name, folder.config.section(), blobs, failures)
            self.runtime.metrics.model_load_duration.labels(name).observe(time.perf_counter() - started)

    def _folder(
        self, name: str, config: dict[str, Any] | None, files: dict[str, bytes] | None, upload: Path | None
    ) -> ModelFolder:
        if files and upload is not None:
            write_files(upload, files)
            return read_folder(upload, name, config)
        path = self.root / name if self.root is not None else None
        if path is None or not path.is_dir():
            where = f"the repository {self.root}" if self.root is not None else "this gateway's repository (none)"
            raise NotFoundError(f"no model {name!r} in {where}: send its files in the load request", model=name)
        return read_folder(path, name, config)

    async def _read_versions(self, folder: ModelFolder) -> tuple[dict[int, bytes], dict[int, str]]:
        """The selected versions' files, checked here (readable, of an enabled modality); failures by version."""
        wanted = folder.config.version_policy.select(list(folder.versions))
        if not wanted:
            raise ModelLoadError(
                f"model {folder.name!r} has no version folder (N/model.safetensors)", model=folder.name
            )
        blobs: dict[int, bytes] = {}
        failures: dict[int, str] = {}
        loop, adapters, section = asyncio.get_running_loop(), self.runtime.adapters, folder.config.section()
        for version in wanted:
            path = folder.versions.get(version)
            try:
                if path is None:
                    raise ModelLoadError(f"the version policy asks for version {version}, which is not in the folder")
                await loop.run_in_executor(None, version_config, path, section, adapters)
                blobs[version] = path.read_bytes()
            except Exception as exc:
                failures[version] = exc.message if isinstance(exc, UnirepError) else f"{type(exc).__name__}: {exc}"
        return blobs, failures

    async def _publish(
        self, name: str, section: dict[str, Any], blobs: dict[int, bytes], failures: dict[int, str]
    ) -> None:
        """Under the Redis lock: the record's new versions, loaded by every worker, then routed; or the reason."""
        records = await state.read_records(self.client, self.keys)
        record = records.get(name) or ModelRecord(name)
        if not failures:
            specs, new = await self._specs(record, section, blobs)
            if new:
                record.loading = new
                await state.publish(self.client, self.keys, record)
                try:
                    failures = await state.await_workers(self.client, self.keys, self.settings.worker_ttl_s, new)
                except BaseException:  # stopped while waiting: the workers must not keep building for nobody
                    record.loading = {}
                    with contextlib.suppress(*REDIS_ERRORS):
                        await state.publish(self.client, self.keys, record)
                    raise
        if failures:
            record.loading = {}
            for version, reason in failures.items():
                kept = " (the version loaded before keeps serving)" if version in record.routed else ""
                record.reasons[version] = f"load failed: {reason}{kept}"
            await state.publish(self.client, self.keys, record)
            await self.refresh()
            self.runtime.metrics.model_changes.labels(name, "failed").inc(len(failures))
            why = "; ".join(f"version {v}: {r}" for v, r in sorted(failures.items()))
            raise ModelLoadError(f"failed to load {name!r}: {why}", model=name)
        for version in set(record.routed) - set(specs):
            record.reasons[version] = "unloaded: not selected by the version policy"
            self.runtime.metrics.model_changes.labels(name, "unloaded").inc()
        for version in specs:
            record.reasons.pop(version, None)
        changed = record.routed != specs or record.loading
        record.routed, record.loading = specs, {}
        if changed:
            await state.publish(self.client, self.keys, record)
            self.runtime.metrics.model_changes.labels(name, "loaded").inc(len(new))
        await self.refresh()

    async def _specs(
        self, record: ModelRecord, section: dict[str, Any], blobs: dict[int, bytes]
    ) -> tuple[dict[int, VersionSpec], dict[int, VersionSpec]]:
        """Every selected version's spec (an unchanged one keeps its serving key), and the new ones among them."""
        specs: dict[int, VersionSpec] = {}
        new: dict[int, VersionSpec] = {}
        for version, data in blobs.items():
            digest = hashlib.sha256(data).hexdigest()
            old = record.routed.get(version)
            if old is not None and old.file == digest and old.section == section:
                specs[version] = old
                continue
            await self.client.set(self.keys.repository_file(digest), data, nx=True)
            serial = await self.client.incr(self.keys.repository_serial)
            key = f"{record.name}/{version}{LOAD_SERIAL_MARK}{serial}"
            specs[version] = new[version] = VersionSpec(key, digest, section)
        return specs, new

    async def unload(self, name: str, *, by_poll: bool = False) -> None:
        """Stop routing every version of ``name``; each is released once its admitted requests are answered."""
        if not by_poll:
            self.check_control()
        check_managed(self.runtime, name)
        async with self._lock, RepositoryLock(self.client, self.keys):
            record = (await state.read_records(self.client, self.keys)).get(name)
            if record is None or not (record.routed or record.reasons):
                raise NotFoundError(f"no model {name!r} is loaded", model=name)
            for version in record.routed:
                record.reasons[version] = "unloaded"
                self.runtime.metrics.model_changes.labels(name, "unloaded").inc()
            record.routed, record.loading = {}, {}
            await state.publish(self.client, self.keys, record)
            await self.refresh()

    # --- poll ------------------------------------------------------------------------------------------------------

    async def apply_changes(self) -> None:
        """Republish what changed in the directory, and unload what this gateway published and is gone."""
        present = scan(self.root) if self.root is not None else {}
        for name, path in present.items():
            try:
                folder = read_folder(path, name)
                seen = (sorted(folder.fingerprint(v) for v in folder.versions), folder.config.model_dump_json())
                if self._published.get(name) != seen:
                    self._published[name] = seen
                    await self.load(name, internal=True)
            except UnirepError as exc:
                log.error("model %s did not load: %s", name, exc.message)
        for name in set(self._published) - set(present):
            del self._published[name]
            with contextlib.suppress(NotFoundError):
                await self.unload(name, by_poll=True)
