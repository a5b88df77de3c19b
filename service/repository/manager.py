"""The model repository at run time: which named models and versions are loaded, loading and unloading them, and
the model-control modes (Triton's meanings).

- ``none``: every model of the repository is loaded at start; the repository API answers the index only.
- ``explicit``: the models named by ``load_models`` (``*``: all) are loaded at start; then only the API changes what
  is loaded (load, with an optional config override and the model's files in the request; unload).
- ``poll``: like ``none``, then the repository is rescanned every ``repository_poll_s`` and what changed is applied
  (a new or changed version is loaded, a removed one unloaded).

A load builds each version the policy selects off the request path (``servable.build``), installs and warms it
beside whatever serves, and switches it in atomically (``service.runtime.live_models``). If any selected version
fails, the versions that serve keep serving, the failed one is UNAVAILABLE with its reason in the index, and the
load answers the reason. The modality sections of the settings are the default models (named after the modality),
listed in the index but managed by the settings, not the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from servable.served import LOAD_SERIAL_MARK, ServedModel
from service.repository.layout import MODEL_FILE, ModelFolder, check_name, read_folder, scan, write_files
from service.repository.versions import build_version
from service.runtime import live_models
from unirep_errors import InputError, ModelLoadError, NotFoundError, UnirepError

if TYPE_CHECKING:
    from service.runtime.serving import ServiceRuntime
    from service.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class IndexEntry:
    name: str
    version: str
    state: str
    """READY, LOADING or UNAVAILABLE (Triton's states)."""
    reason: str = ""


class Repository(Protocol):
    """What the repository routes drive: this module's ``ModelRepository`` in one process, or the Redis-backed
    ``service.scaleout.repository_sync.ScaleoutRepository`` behind a scale-out gateway."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def index(self, ready_only: bool = False) -> list[IndexEntry]: ...
    async def load(
        self, name: str, config: dict[str, Any] | None = None, files: dict[str, bytes] | None = None
    ) -> None: ...
    async def unload(self, name: str) -> None: ...


class ModelRepository:
    def __init__(self, runtime: ServiceRuntime, settings: ServiceSettings) -> None:
        self.runtime = runtime
        self.root = Path(settings.model_repository or ".")
        self.control: str = settings.model_control
        self.poll_s: float = settings.repository_poll_s
        self.load_at_start: list[str] = list(settings.load_models)
        self.seed: int = settings.random_seed
        self.states: dict[tuple[str, int], IndexEntry] = {}
        self.loaded: dict[tuple[str, int], tuple[Any, ...]] = {}
        """(name, version) -> the fingerprint of what serves it, so an unchanged version is not rebuilt."""
        self.failed: dict[tuple[str, int], tuple[Any, ...]] = {}
        """(name, version) -> the fingerprint of a version that failed: polling retries it once it changes."""
        self.uploads = Path(tempfile.mkdtemp(prefix="unirep-uploads-"))
        """Model folders sent in load requests (their files), one per load; a name keeps only its latest."""
        self._uploaded: dict[str, Path] = {}
        self._lock = asyncio.Lock()
        self._serial = itertools.count(1)
        self._poller: asyncio.Task[None] | None = None

    # --- start and stop -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the control mode loads at start (a model that fails is reported, the service still starts)."""
        names = list(scan(self.root))
        if self.control == "explicit":
            names = names if "*" in self.load_at_start else self.load_at_start
        for name in names:
            try:
                await self.load(name, internal=True)
            except UnirepError as exc:
                log.error("model %s did not load: %s", name, exc.message)
        if self.control == "poll":
            poller = poll_every(self.poll_s, self.apply_changes)
            self._poller = asyncio.create_task(poller, name="unirep-repository-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        shutil.rmtree(self.uploads, ignore_errors=True)

    # --- the repository extension -------------------------------------------------------------------------------

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model and version: the default models, then the repository's (loaded or not), by name."""
        entries = {
            (sm.model_name, int(sm.model_version)): IndexEntry(sm.model_name, sm.model_version, "READY")
            for sm in self.runtime.table.all()
            if sm.repository_name is None
        }
        entries.update(self.states)
        for name in scan(self.root):
            if not any(key[0] == name for key in entries):
                entries[(name, 0)] = IndexEntry(name, "", "UNAVAILABLE", "not loaded")
        found = [entries[k] for k in sorted(entries)]
        return [e for e in found if e.state == "READY"] if ready_only else found

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
        """Load (or reload) ``name``: every version its policy selects; raises ``ModelLoadError`` naming why.
        ``internal``: the start or the poller loads it, whatever the control mode."""
        if not internal:
            self.check_control()
        check_managed(self.runtime, name)
        async with self._lock:
            folder = self._folder(name, config, files)
            wanted = folder.config.version_policy.select(list(folder.versions))
            if not wanted:
                raise ModelLoadError(f"model {name!r} has no version folder (N/{MODEL_FILE}) to load", model=name)
            failures = [f"version {v}: {why}" for v in wanted if (why := await self._load_version(folder, v))]
            if files:
                self._keep_upload(name, folder.path, kept=not failures)
            if failures:
                raise ModelLoadError(f"failed to load {name!r}: " + "; ".join(failures), model=name)
            for version in sorted(self.runtime.table.versions(name)):
                if version not in wanted:
                    self._withdraw(name, version, "unloaded: not selected by the version policy")

    async def unload(self, name: str, *, by_poll: bool = False) -> None:
        """Stop serving every version of ``name``; each is released once its admitted requests are answered."""
        if not by_poll:
            self.check_control()
        check_managed(self.runtime, name)
        async with self._lock:
            versions = self.runtime.table.versions(name)
            if not versions and not any(key[0] == name for key in self.states):
                raise NotFoundError(f"no model {name!r} is loaded", model=name)
            for version in sorted(versions):
                self._withdraw(name, version, "unloaded")
            self._keep_upload(name, None, kept=True)

    # --- the work -------------------------------------------------------------------------------------------------

    def _keep_upload(self, name: str, folder: Path | None, kept: bool) -> None:
        """Delete uploaded folders a name no longer needs: a failed load's own, else the previous one (what its
        versions hold is in memory, and a model sent as files is never read from disk again)."""
        if folder is not None and not kept:
            shutil.rmtree(folder, ignore_errors=True)
            return
        previous = self._uploaded.pop(name, None)
        if folder is not None:
            self._uploaded[name] = folder
        if previous is not None and previous != folder:
            shutil.rmtree(previous, ignore_errors=True)

    def _folder(self, name: str, config: dict[str, Any] | None, files: dict[str, bytes] | None) -> ModelFolder:
        if files:
            target = self.uploads / f"{name}-{next(self._serial)}"
            target.mkdir(parents=True)
            write_files(target, files)
            return read_folder(target, name, config)
        path = self.root / name
        if not path.is_dir():
            raise NotFoundError(f"no model {name!r} in the repository {self.root}", model=name)
        return read_folder(path, name, config)

    async def _load_version(self, folder: ModelFolder, version: int) -> str | None:
        """Load one version unless what serves it is the same; the reason it failed, or None."""
        key = (folder.name, version)
        fingerprint = folder.fingerprint(version)
        if self.loaded.get(key) == fingerprint and version in self.runtime.table.versions(folder.name):
            return None
        self.states[key] = IndexEntry(folder.name, str(version), "LOADING")
        metrics, started = self.runtime.metrics, time.perf_counter()
        try:
            served = await asyncio.get_running_loop().run_in_executor(None, self._build, folder, version)
            await live_models.install(self.runtime, served)
        except Exception as exc:
            reason = exc.message if isinstance(exc, UnirepError) else f"{type(exc).__name__}: {exc}"
            log.error("model %s version %d failed to load: %s", folder.name, version, reason)
            serving = version in self.runtime.table.versions(folder.name)
            kept = " (the version loaded before keeps serving)" if serving else ""
            state = "READY" if serving else "UNAVAILABLE"
            self.states[key] = IndexEntry(folder.name, str(version), state, f"load failed: {reason}{kept}")
            self.failed[key] = fingerprint
            metrics.model_changes.labels(folder.name, "failed").inc()
            metrics.model_load_duration.labels(folder.name).observe(time.perf_counter() - started)
            return reason
        self.states[key] = IndexEntry(folder.name, str(version), "READY")
        self.loaded[key] = fingerprint
        self.failed.pop(key, None)
        metrics.model_changes.labels(folder.name, "loaded").inc()
        metrics.model_load_duration.labels(folder.name).observe(time.perf_counter() - started)
        return None

    def _build(self, folder: ModelFolder, version: int) -> ServedModel:
        """Blocking: the served model of one version file, configured by the file and the folder's config."""
        path = folder.versions.get(version)
        if path is None:
            raise ModelLoadError(f"the version policy asks for version {version}, which {folder.path} does not hold")
        key = f"{folder.name}/{version}{LOAD_SERIAL_MARK}{next(self._serial)}"
        section = folder.config.section()
        return build_version(path, folder.name, version, section, self.runtime.adapters, self.seed, key)

    def _withdraw(self, name: str, version: int, reason: str) -> None:
        served = self.runtime.table.withdraw(name, version)
        self.states[(name, version)] = IndexEntry(name, str(version), "UNAVAILABLE", reason)
        self.loaded.pop((name, version), None)
        if served is not None:
            self.runtime.metrics.model_changes.labels(name, "unloaded").inc()
            live_models.schedule_release(self.runtime, served)

    async def apply_changes(self) -> None:
        present = scan(self.root)
        for name in present:
            try:
                folder = read_folder(present[name], name)
                wanted = folder.config.version_policy.select(list(folder.versions))
                stale = set(self.runtime.table.versions(name)) - set(wanted)
                changed = [
                    v
                    for v in wanted
                    if folder.fingerprint(v) not in (self.loaded.get((name, v)), self.failed.get((name, v)))
                ]
                if stale or changed:
                    await self.load(name, internal=True)
            except UnirepError as exc:
                log.error("model %s did not load: %s", name, exc.message)
        for name in {key[0] for key in self.loaded} - set(present):
            await self.unload(name, by_poll=True)


async def index_of(runtime: ServiceRuntime, ready_only: bool = False) -> list[IndexEntry]:
    """The repository's index; without a repository, the default models alone. A repository shared by several
    processes (scale-out, ``refresh``) is re-read first, so the index shows a change made through another gateway."""
    if runtime.repository is not None:
        refresh = getattr(runtime.repository, "refresh", None)
        if refresh is not None:
            with contextlib.suppress(Exception):  # Redis away: the last state read
                await refresh()
        return runtime.repository.index(ready_only)
    return [IndexEntry(sm.model_name, sm.model_version, "READY") for sm in runtime.table.all()]


async def poll_every(seconds: float, apply_changes: Callable[[], Awaitable[None]]) -> None:
    """Rescan and apply what changed every ``seconds``, until cancelled; a failed pass is logged, the next one
    tries again (the repository of one process and the one a scale-out gateway publishes poll alike)."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await apply_changes()
        except Exception:
            log.exception("repository poll failed")


def require_explicit(control: str) -> None:
    """Loads and unloads through the API are for ``explicit`` model control only (Triton's rule)."""
    if control != "explicit":
        raise InputError(
            f"model control is {control!r}: loading and unloading through the API needs --model-control explicit"
        )


def check_managed(runtime: ServiceRuntime, name: str) -> None:
    """``name`` is a valid repository name and not a modality's default model (those follow the settings)."""
    check_name(name)
    if name in {sm.model_name for sm in runtime.table.all() if sm.repository_name is None}:
        raise InputError(f"{name!r} is the default model of its modality: it is configured by the settings")
