"""A stream worker's repository versions, kept in line with the desired state in Redis (``unirep worker``).

A thread of its own (never the consume loops) watches ``<ns>:repository:generation``; when it moves, it reads the
records (``service.scaleout.repository_state``) and, for each routed or loading version this worker does not hold,
fetches the version's file by its sha256, builds it (``service.repository.versions``), installs and warms it on
every device (``live_models.place``) and only then adds it to the served models, so the consume loops start
reading its stream when it is warm. Each version's state (LOADING, READY, or UNAVAILABLE with the reason) goes
into the worker's description at once (an extra heartbeat): the gateway that asked for the load waits on it.

A version no longer wanted keeps being consumed until its stream is empty, nothing of it is pending, and that has
lasted ``RETIRE_QUIET_S`` (gateways that still route it, or still hold its queued items, switch within that time);
then it leaves the served models and the devices, and its empty stream is deleted. A worker that joins reads the
records at start, so it loads the current set. A ``--model-repository`` given to a worker is not read: the
repository of a scale-out deployment is what the gateways publish to Redis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from servable.served import ServedModel
from service.repository.layout import MODEL_FILE
from service.repository.versions import build_version
from service.runtime import live_models
from service.scaleout.connection import REDIS_ERRORS
from service.scaleout.repository_state import LOADING, READY, UNAVAILABLE, VersionSpec, parse_records, wanted
from unirep_errors import ModelLoadError, UnirepError

if TYPE_CHECKING:
    from service.scaleout.stream_worker import StreamWorker

log = logging.getLogger(__name__)

SYNC_S = 0.25
RETIRE_QUIET_S = 5.0


def repository_source(name: str, version: int, sha256: str) -> str:
    """The weights source a repository version reports: the same on every worker, wherever its file lies."""
    return f"repository {name}/{version} (sha256 {sha256[:16]})"


class WorkerRepository:
    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker
        self.client = worker.client
        self.keys = worker.keys
        self.states: dict[str, dict[str, Any]] = {}
        """Serving key -> {name, version, state, reason}: what the worker announces."""
        self.retiring: dict[str, tuple[float, Any] | None] = {}
        """Serving key no longer wanted -> (since when, last entry id) its stream has been drained; None: not."""
        self.files = Path(tempfile.mkdtemp(prefix="unirep-worker-repository-"))
        self._generation: Any = None

    def run(self) -> None:
        """The sync thread: until the worker stops (errors are logged and retried, never fatal)."""
        try:
            while not self.worker.stopping.is_set():
                try:
                    self.sync()
                except REDIS_ERRORS as exc:
                    log.debug("repository sync skipped: %s", exc)
                except Exception:
                    log.exception("repository sync failed")
                self.worker.stopping.wait(SYNC_S)
        finally:
            shutil.rmtree(self.files, ignore_errors=True)

    def sync(self) -> None:
        generation = self.client.get(self.keys.repository_generation)
        if generation != self._generation:
            self._generation = generation
            records = parse_records(self.client.hgetall(self.keys.repository))
            want = wanted(records)
            for key in list(self.states):
                if key in want:
                    self.retiring.pop(key, None)
                elif self.states[key]["state"] == READY:
                    self.retiring.setdefault(key, None)
                else:
                    self.states.pop(key)  # a failed version no longer asked for: forget it
            for key, (name, version, spec) in want.items():
                if key not in self.states and not self.worker.stopping.is_set():
                    self._load(key, name, version, spec)
        for key in list(self.retiring):
            self._retire(key)

    # --- loading ------------------------------------------------------------------------------------------------

    def _announce(self, key: str, name: str, version: int, state: str, reason: str = "") -> None:
        self.states[key] = {"name": name, "version": str(version), "state": state, "reason": reason}
        self.worker.heartbeat.beat_now()

    def _load(self, key: str, name: str, version: int, spec: VersionSpec) -> None:
        self._announce(key, name, version, LOADING)
        metrics, started = self.worker.metrics, time.perf_counter()
        try:
            served = self._build(key, name, version, spec)
        except Exception as exc:
            reason = exc.message if isinstance(exc, UnirepError) else f"{type(exc).__name__}: {exc}"
            log.error("model %s version %d (%s) failed to load: %s", name, version, key, reason)
            metrics.model_changes.labels(name, "failed").inc()
            self._announce(key, name, version, UNAVAILABLE, f"worker {self.worker.worker_id}: {reason}")
            return
        self.worker.served = {**self.worker.served, key: served}  # a new dict: consume loops read a snapshot
        metrics.model_changes.labels(name, "loaded").inc()
        metrics.model_load_duration.labels(name).observe(time.perf_counter() - started)
        log.info("loaded %s version %d as %s in %.1f s", name, version, key, time.perf_counter() - started)
        self._announce(key, name, version, READY)

    def _build(self, key: str, name: str, version: int, spec: VersionSpec) -> ServedModel:
        path = self._file(spec.file)
        settings = self.worker.settings
        served = build_version(path, name, version, spec.section, self.worker.adapters, settings.random_seed, key)
        served.weights = dataclasses.replace(served.weights, source=repository_source(name, version, spec.file))
        devices = self.worker.devices
        live_models.place(devices, served, background=False)
        live_models.record_backends(served, devices, self.worker.metrics)
        return served

    def _file(self, sha256: str) -> Path:
        """The version file, fetched from Redis once (and checked against its digest)."""
        path = self.files / sha256 / MODEL_FILE
        if path.is_file():
            return path
        data: Any = self.client.get(self.keys.repository_file(sha256))
        if data is None:
            raise ModelLoadError(f"the model file {sha256[:16]} is missing from Redis")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelLoadError(f"the model file {sha256[:16]} in Redis does not match its digest")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    # --- retiring -----------------------------------------------------------------------------------------------

    def _activity(self, stream: str) -> Any:
        """None while the stream holds or computes batches; else its last entry id (another id: new traffic)."""
        try:
            info: Any = self.client.xinfo_stream(stream)
            pending: Any = self.client.xpending(stream, self.keys.group)
        except redis.ResponseError:  # no stream (nor group): nothing can be pending
            return "none"
        if int(info.get("length", 0)) or int(pending.get("pending", 0)):
            return None
        return info.get("last-generated-id")

    def _retire(self, key: str) -> None:
        """Release ``key`` once its stream has been drained, with no new batch, for ``RETIRE_QUIET_S``."""
        stream = self.keys.stream(key)
        activity, now = self._activity(stream), time.monotonic()
        quiet = self.retiring[key]
        if activity is None or quiet is None or quiet[1] != activity:
            self.retiring[key] = None if activity is None else (now, activity)
            return
        if now - quiet[0] < RETIRE_QUIET_S:
            return
        self.worker.served = {k: v for k, v in self.worker.served.items() if k != key}
        for device in self.worker.devices:
            device.uninstall(key)
        if self._activity(stream) == activity:
            self.client.delete(stream)  # empty: a consumer still blocked on it starts over (``UNBLOCKED``)
        state = self.states.pop(key, {})
        self.retiring.pop(key, None)
        self.worker.metrics.model_changes.labels(state.get("name", key), "unloaded").inc()
        log.info("released %s version %s (%s)", state.get("name"), state.get("version"), key)
        self.worker.heartbeat.beat_now()
