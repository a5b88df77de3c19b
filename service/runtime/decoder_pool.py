"""The preprocessing pool: modality adapters run in separate processes, each item under a time limit, each
process under a memory limit, so that a hostile or broken file costs only its own request, and costs its sender.

Why not ``concurrent.futures.ProcessPoolExecutor``: one dead worker breaks that whole pool (BrokenProcessPool),
and it cannot kill a hung task. Here every process is a slot with its own pipe (``decoder_process.Slot``).

- Two lanes: inputs that are expensive by their header or size (``DecodeGuard.is_heavy``) decode in their own
  small lane of niced processes, so a few huge images cannot take every decoder nor the CPU from the others.
- Each lane keeps ``spares`` started processes: a lost one is replaced from them at once, and the new spare is
  forked in the background (from a fork server that has torch imported: cheap).
- Before decoding, ``DecodeGuard.admit`` refuses an input whose hash crashed a decoder (quarantine), and a client
  over its crash budget for that kind of input or, while others wait, over its decode time (429); every decode is
  charged to its client.
- Free decoders go to waiting clients in turn (``FairQueue``), not in arrival order.
- A process lost while holding a job is retried once on another process. When the retry is lost too: both crashes
  in native code (SIGSEGV, ...) blame the input (422 ``decoder_crashed``, and its hash is quarantined); otherwise
  (SIGKILL from the OOM killer, a broken pipe) the service is at fault: 503 with Retry-After, never 500 nor 422.
- A decoder that hangs past ``timeout_s`` is killed (504). A request whose own deadline passes first gets its
  504 at once; the decoder is left to finish and its slot returns to the pool afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from service.runtime.decode_guard import DecodeGuard, GuardPolicy, input_kind, upload_kind
from service.runtime.decoder_process import DecoderLostError, Slot, context, lost_twice
from service.runtime.fair_queue import FairQueue
from unirep_errors import DeadlineExceededError, DecoderCrashedError, PreprocessTimeoutError, ServiceUnavailableError

log = logging.getLogger(__name__)

SPAWN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Decoded:
    tensor: torch.Tensor
    seconds: float
    """Time the decoder itself took in the child (what the preprocess histogram and header report)."""


@dataclass
class _Lane:
    name: str
    size: int
    spares: int
    nice: int
    idle: FairQueue[Slot] = field(default_factory=FairQueue)
    spare: deque[Slot] = field(default_factory=deque)
    active: int = 0
    starting: int = 0
    waiting: int = 0


class DecoderPool:
    """``await pool.decode(modality, data, params, deadline=..., client=...)`` -> Decoded."""

    def __init__(
        self,
        adapters: dict[str, Any],
        size: int,
        timeout_s: float,
        memory_mb: int,
        fault_injection: bool = False,
        on_failure: Any = None,
        *,
        spares: int = 1,
        heavy_size: int = 1,
        heavy_nice: int = 10,
        guard: DecodeGuard | None = None,
    ) -> None:
        self.adapters = adapters
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.fault_injection = fault_injection
        self.on_failure = on_failure
        """Called with (modality, reason) when a process is lost: the metrics hook."""
        self.guard = guard or DecodeGuard(GuardPolicy())
        weight_of = self.guard.weight_of  # the clients' weights: their shares of decoders, and their budgets
        self.lanes = {
            "normal": _Lane("normal", size, spares, 0, FairQueue(weight_of)),
            "heavy": _Lane("heavy", heavy_size, spares, heavy_nice, FairQueue(weight_of)),
        }
        self._ctx = context(adapters)
        self._threads = ThreadPoolExecutor(max_workers=size + heavy_size + 4, thread_name_prefix="unirep-preprocess")
        self._slots: set[Slot] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._started = False

    @property
    def ready(self) -> bool:
        """Started and serving; a process being replaced does not make the service unready (requests wait for it),
        but a pool that gave up on every process does."""
        lane = self.lanes["normal"]
        return self._started and not self._closed and bool(lane.active or lane.starting)

    def check_client(self, client: str, modality: str) -> None:
        """The decode-time backstop, before a request's body is read (see ``DecodeGuard.admit_client``)."""
        self.guard.admit_client(client, self._contended(client))

    def check_upload(self, client: str, modality: str, head: bytes, content_type: str) -> None:
        """The crash budget for this kind of upload, from the body's first bytes (a refusal costs no body)."""
        kind = upload_kind(modality, head, content_type)
        if kind is not None:
            self.guard.admit_kind(client, kind)

    def _contended(self, client: str) -> bool:
        """Whether clients other than ``client`` are waiting for a decoder."""
        return any(lane.idle.waiting_clients() - {client} for lane in self.lanes.values())

    def wait_estimate(self, decode_s: float, client: str | None = None) -> float:
        """Seconds a new job of the normal lane would wait for a decoder, given the typical decode time: behind
        every waiting job in arrival order, or with ``client`` given, behind its own and one turn of each other
        waiting client (the fair order)."""
        lane = self.lanes["normal"]
        if lane.idle.qsize() > lane.waiting:
            return 0.0
        ahead = lane.waiting
        if client is not None:
            ahead = lane.idle.waiting_of(client) + len(lane.idle.waiting_clients() - {client})
        return (ahead // max(1, lane.active) + 1) * decode_s

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        jobs = []
        for lane in self.lanes.values():
            lane.starting += lane.size + lane.spares
            jobs += [
                self._loop.run_in_executor(self._threads, self._spawn, lane) for _ in range(lane.size + lane.spares)
            ]
        await asyncio.gather(*jobs)
        self._started = True

    def _spawn(self, lane: _Lane) -> None:
        """Start a process and adopt it once it has imported everything (runs in a thread)."""
        assert self._loop is not None
        for attempt in range(3):
            if self._closed:
                break
            try:
                slot = Slot(self._ctx, self.adapters, self.memory_mb, self.fault_injection, lane.nice)
                slot.wait_ready(SPAWN_TIMEOUT_S)
            except Exception as exc:
                log.error("decoder process failed to start (attempt %d): %s", attempt + 1, exc)
                time.sleep(1.0)
                continue
            with self._lock:
                self._slots.add(slot)
            self._loop.call_soon_threadsafe(self._adopt, lane, slot)
            return
        else:
            log.error("giving up on starting a decoder process; the pool runs with fewer processes")
        self._loop.call_soon_threadsafe(self._adopt, lane, None)

    def _adopt(self, lane: _Lane, slot: Slot | None) -> None:
        lane.starting -= 1
        if slot is None:
            return
        if lane.active < lane.size:
            lane.active += 1
            lane.idle.put_nowait(slot)
        else:
            lane.spare.append(slot)

    def _replace(self, lane: _Lane) -> None:
        """A process of ``lane`` is gone: promote a spare at once, and start a new process in the background."""
        lane.active -= 1
        while lane.spare and not lane.spare[0].alive:  # a spare killed while waiting is no spare
            dead = lane.spare.popleft()
            with self._lock:
                self._slots.discard(dead)
            self._threads.submit(dead.kill)
            lane.starting += 1
            self._threads.submit(self._spawn, lane)
        if lane.spare:
            lane.active += 1
            lane.idle.put_nowait(lane.spare.popleft())
        if not self._closed:
            lane.starting += 1
            self._threads.submit(self._spawn, lane)

    async def decode(
        self,
        modality: str,
        data: bytes,
        params: dict[str, Any],
        *,
        deadline: float | None = None,
        client: str = "anonymous",
        digest: str | None = None,
    ) -> Decoded:
        """Decode one payload; ``deadline`` is a ``time.monotonic()`` instant (504 when it passes first);
        ``digest`` is the payload's SHA-256 when the caller has it already."""
        if self._closed:
            raise ServiceUnavailableError("the service is shutting down", retry_after=1)
        digest = digest or hashlib.sha256(data).hexdigest()
        kind = input_kind(modality, data)
        self.guard.admit(client, digest, kind, self._contended(client))
        lane = self.lanes["heavy" if self.guard.is_heavy(modality, data) else "normal"]
        losses: list[DecoderLostError] = []
        while True:
            try:
                success, payload, seconds = await self._attempt(lane, modality, data, params, deadline, client)
            except DecoderLostError as lost:
                losses.append(lost)
                self.guard.charge(client, 0.0, crashed_kind=kind if lost.input_like else None)
                if len(losses) < 2:
                    log.info("decoder lost (%s) on a %s input; retrying it once on another decoder", lost, modality)
                    continue
                error = lost_twice(losses, modality)
                if isinstance(error, DecoderCrashedError):  # the input's fault: refused from now on
                    self.guard.quarantine(digest, losses[-1].why)
                raise error from None
            if not success:
                raise payload
            return Decoded(torch.from_numpy(np.asarray(payload)), float(seconds))

    async def _attempt(
        self, lane: _Lane, modality: str, data: bytes, params: dict[str, Any], deadline: float | None, client: str
    ) -> tuple[Any, ...]:
        lane.waiting += 1
        try:
            slot = await self._await_deadline(lane.idle.get(client), deadline, "waiting for a free decoder")
            while not slot.alive:  # died while idle (killed from outside): not this request's loss, take another
                self._discard(lane, slot, modality)
                slot = await self._await_deadline(lane.idle.get(client), deadline, "waiting for a free decoder")
        finally:
            lane.waiting -= 1
        assert self._loop is not None
        started = time.monotonic()
        future = self._loop.run_in_executor(self._threads, slot.call, modality, data, params, self.timeout_s)

        def settle(f: asyncio.Future[Any]) -> None:
            seconds = time.monotonic() - started
            self.guard.charge(client, seconds)
            lane.idle.settle(client, seconds)
            self._after_call(lane, slot, f, modality)

        future.add_done_callback(settle)
        reply: tuple[Any, ...] = await self._await_deadline(asyncio.shield(future), deadline, "decoding")
        return reply

    async def _await_deadline(self, awaitable: Any, deadline: float | None, stage: str) -> Any:
        if deadline is None:
            return await awaitable
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(awaitable, remaining)
        except TimeoutError:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise DeadlineExceededError(
                f"the request's deadline passed while {stage}; nothing reached the model", stage="preprocess"
            ) from None

    def _after_call(self, lane: _Lane, slot: Slot, future: asyncio.Future[Any], modality: str) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is None and slot.alive:
            lane.idle.put_nowait(slot)
            return
        self._discard(lane, slot, modality, "timeout" if isinstance(exc, PreprocessTimeoutError) else "crash")

    def _discard(self, lane: _Lane, slot: Slot, modality: str, reason: str = "crash") -> None:
        log.warning("decoder process %s lost (%s); replacing it", slot.pid, reason)
        with self._lock:
            self._slots.discard(slot)
        if reason != "timeout":  # a timed-out slot was killed by its call already
            self._threads.submit(slot.kill)
        if self.on_failure is not None:
            self.on_failure(modality, reason)
        self._replace(lane)

    async def close(self) -> None:
        self._closed = True
        with self._lock:
            slots = list(self._slots)
            self._slots.clear()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, s.stop) for s in slots))
        self._threads.shutdown(wait=False, cancel_futures=True)
