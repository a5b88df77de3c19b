"""``auto``'s measurement after the service is ready: the other candidates built and timed beside the serving one,
and the model switched to the fastest between two batches.

A cold start (no remembered choice) serves the device's first preferred candidate at once rather than building
and timing every candidate first (an ONNX export and a compile each, then seconds of timing per model: 20-30 s
of a cold start on a small CPU host). The rest is done here, by one thread per device worker, as low priority work:

- before each build, and before each timed run, it waits until the device has been idle ``QUIET_S`` (no batch
  running, none finished within that time); under traffic that never leaves such a gap it waits at most
  ``PATIENCE_S`` per step and then goes ahead between two batches (else a model loaded under load would stay on
  its first backend, up to 2-3x slower, for as long as the load lasts);
- each timed run holds the device (``DeviceWorker.device_lock``) for that one run, so a batch arriving meanwhile
  waits for one run at most, and the timings are not disturbed by a batch;
- the builds (an export-cache hit, a compile, the check against eager) run beside the batches, not holding the
  device, except a CUDA graph capture, which must not overlap another launch on the device.

The fastest is remembered (the next start uses it directly) and, when it is not the one serving, swapped in under
the device lock: a batch in flight finishes on the runner it started with, the next one runs on the new runner.
A model released or replaced meanwhile is left alone (its measurement is dropped).

``BackgroundSwitching`` is the device worker's side of all this (the device lock, when the device last ran a
batch, the models still to measure, the switch): a mixin of ``DeviceWorker``, kept here beside the thread it serves.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from service.runtime.backends import BackendError, BuildRequest, Choice, ExportCache, Runner
from service.runtime.backends.auto_choice import BUDGET_S, AutoStart, measure
from service.runtime.backends.registry import build_checked

if TYPE_CHECKING:
    from servable.served import ServedModel

log = logging.getLogger(__name__)

QUIET_S = 0.5
"""Idle time of the device before a background build or timed run starts."""
PATIENCE_S = 20.0
"""Longest wait for that idle time, per build or timed run; then it runs between two batches anyway."""
ON_DEVICE = ("cudagraphs",)
"""Candidates whose build runs work on the device itself (graph capture): built holding the device."""


@dataclass
class Pending:
    """One model's measurement, queued when it was installed and started once it is warm."""

    key: str
    served: ServedModel
    """The model installed under ``key`` when this was queued: another one there since means drop this."""
    request: BuildRequest
    start: AutoStart


class BackgroundSwitching:
    """A device worker's side of the background measurement: the lock that batches and timed runs take in turn,
    when the device last ran a batch, the models still to measure, and the switch to the fastest between batches.

    Mixed into ``DeviceWorker``, which owns the tables declared here (the switch updates them)."""

    device_name: str
    served: dict[str, ServedModel]
    runners: dict[str, Runner]
    backends: dict[str, Choice]
    cold: deque[tuple[str, int]]
    ran: set[tuple[str, int]]
    warmup_enabled: bool

    def start_background(self, cache: ExportCache) -> None:
        """Set up the state above (before the first model is installed); the thread starts with the first job."""
        self.device_lock = threading.RLock()
        """Held while a runner runs: a batch, a warm-up pass, one background timing run, a backend switch."""
        self.executing = False
        self.last_active = time.monotonic()
        self.pending: dict[str, Pending] = {}
        """``auto`` models whose candidates are still to be measured (submitted once the model is warm)."""
        self.measurer = BackgroundMeasurer(self, cache)
        self._warming_all = False
        self.on_switch: Callable[[str, str, str], None] | None = None
        """Called with (key, old backend, new backend) after a switch (the transport updates its metrics)."""

    @contextlib.contextmanager
    def running_batch(self) -> Iterator[None]:
        """Mark the device busy while a batch runs (background work waits for a quiet device)."""
        self.executing = True
        try:
            yield
        finally:
            self.last_active = time.monotonic()
            self.executing = False

    def quiet_since(self) -> float:
        """When the device last ran a batch (now while one runs): background work waits for a quiet device."""
        return time.monotonic() if self.executing else self.last_active

    @contextlib.contextmanager
    def warming_all(self) -> Iterator[None]:
        """Warm every model inside: the pending measurements start once they all are (not one by one)."""
        self._warming_all = True
        try:
            yield
        finally:
            self._warming_all = False
        for key in list(self.pending):
            self.measure_later(key)

    def measure_later(self, key: str) -> None:
        """Hand ``key``'s pending measurement to the background thread, once every model is warm."""
        if not self._warming_all and (pending := self.pending.pop(key, None)) is not None:
            self.measurer.submit(pending)

    def switch_backend(self, key: str, served: ServedModel, runner: Runner, choice: Choice) -> bool:
        """Serve ``key`` with ``runner`` from the next batch on (False: ``served`` is no longer installed there).

        Under the device lock, so a batch in flight finishes on the runner it started with. ``served`` is the
        object ``/models`` reads, so its backend and note follow."""
        with self.device_lock:
            if self.served.get(key) is not served:
                return False
            switched, old = self.runners[key] is not runner, self.backends[key].name
            self.runners[key], self.backends[key] = runner, choice
            served.record_backend(self.device_name, choice.name, choice.reason)
        if self.on_switch is not None and old != choice.name:
            self.on_switch(key, old, choice.name)
        if switched:  # the sizes between 1 and the largest are cold on the new runner: warmed when idle
            sizes = range(2, served.config.max_batch_size) if self.warmup_enabled else range(0)
            self.ran.difference_update((key, size) for size in sizes)
            self.cold.extend((key, size) for size in sizes)
        return True

    def close(self) -> None:
        """Stop the background measurement (the models keep the backends they have)."""
        self.measurer.stop()


class BackgroundMeasurer:
    """The one thread measuring a device worker's pending models, one model after the other."""

    def __init__(
        self,
        worker: BackgroundSwitching,
        cache: ExportCache,
        budget_s: float = BUDGET_S,
        patience_s: float = PATIENCE_S,
    ) -> None:
        self.worker, self.cache, self.budget_s, self.patience_s = worker, cache, budget_s, patience_s
        self.impatient = False
        """Set once a step went ahead without a quiet moment (logged once)."""
        self.jobs: queue.Queue[Pending | None] = queue.Queue()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def submit(self, pending: Pending) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._loop, name=f"unirep-measure-{self.worker.device_name}", daemon=True
            )
            self.thread.start()
        self.jobs.put(pending)

    def stop(self) -> None:
        self.stopped.set()
        self.jobs.put(None)

    def idle(self) -> bool:
        """Nothing is being measured or waiting to be."""
        return self.jobs.unfinished_tasks == 0

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                self._measure(job)
            except _StoppedError:
                return
            except Exception:  # the model keeps serving on its current backend
                log.exception("background measurement of %s on %s failed", job.key, self.worker.device_name)
            finally:
                self.jobs.task_done()

    def _current(self, job: Pending) -> bool:
        return self.worker.served.get(job.key) is job.served

    def wait_quiet(self) -> None:
        """Return once the device has been idle ``QUIET_S``, or after ``patience_s`` without such a moment (raises
        ``_StoppedError`` when the worker closes)."""
        give_up = time.monotonic() + self.patience_s
        while True:
            if self.stopped.is_set():
                raise _StoppedError
            now = time.monotonic()
            wait = self.worker.quiet_since() + QUIET_S - now
            if wait <= 0:
                return
            if now >= give_up:
                if not self.impatient:
                    self.impatient = True
                    log.info(
                        "%s never idle for %.1f s in %.0f s: measuring backends between batches",
                        self.worker.device_name,
                        QUIET_S,
                        self.patience_s,
                    )
                return
            self.stopped.wait(min(wait, QUIET_S, give_up - now))

    @contextlib.contextmanager
    def gate(self) -> Iterator[None]:
        """A quiet moment, then the device held for one run."""
        self.wait_quiet()
        with self.worker.device_lock:
            yield

    def _measure(self, job: Pending) -> None:
        started = job.start
        assert started.pending is not None
        request = job.request
        if started.name in ("torch", "cudagraphs"):  # an export would trace the very module serving the batches
            request = dataclasses.replace(request, module=copy.deepcopy(request.module))
        runners: dict[str, Runner] = {started.name: started.runner}
        for name in started.to_measure():
            self.wait_quiet()
            if not self._current(job):
                return
            held = self.worker.device_lock if name in ON_DEVICE else contextlib.nullcontext()
            try:
                with held:
                    runners[name] = build_checked(name, request, self.cache)
            except BackendError as exc:
                log.warning("%s: skipping %s: %s", started.pending.where, name, exc.message)
                started.pending.failed.append(f"{name}: {exc.message}")
        if not self._current(job):
            return
        if len(runners) == 1:
            note = f"{started.pending.where}: {started.name}, the only candidate that serves{started.pending.tail()}"
            self.worker.switch_backend(job.key, job.served, started.runner, Choice(started.name, note))
            return
        best, note = measure(started.pending, request, runners, self.budget_s, self.gate)
        runner = runners[best]
        if best != started.name:
            self._warm(runner, job)
        if self.worker.switch_backend(job.key, job.served, runner, Choice(best, note)) and best != started.name:
            log.info("[%s] switched from %s to %s on %s", job.key, started.name, best, self.worker.device_name)

    def _warm(self, runner: Runner, job: Pending) -> None:
        """Run the new runner once at batch size 1 and the largest (lazy allocations) before it serves."""
        shape = job.request.input_shape
        for size in sorted({1, job.request.max_batch_size}):
            with self.gate(), torch.inference_mode():
                runner.run(torch.zeros((size, *shape)))


class _StoppedError(Exception):
    """The worker closed while a measurement waited for a quiet moment."""
