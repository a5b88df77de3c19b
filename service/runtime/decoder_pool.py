"""The preprocessing pool: modality adapters run in separate spawned processes, each item under a time limit,
each process under a memory limit, so that a hostile or broken file costs only its own request.

Why not ``concurrent.futures.ProcessPoolExecutor``: one dead worker breaks that whole pool (BrokenProcessPool),
and it cannot kill a hung task. Here every process is a slot with its own pipe; a slot whose decoder hangs past
``timeout_s`` is killed (504), one that dies (segfault, abort, OOM kill) is reported as a crash (422), and either
way a replacement process is spawned in the background while the other slots keep serving.

A request's own deadline is shorter than the per-item limit: when the deadline passes first the request gets its
504 at once, but the decoder is left to finish (killing it would cost a process start, seconds of torch import),
and the slot returns to the pool afterwards; the per-item limit still bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from unirep_errors import (
    DeadlineExceededError,
    DecoderCrashedError,
    InputTooLargeError,
    PreprocessTimeoutError,
    ServiceUnavailableError,
    UndecodableInputError,
    UnirepError,
)

log = logging.getLogger(__name__)

FAULT_PREFIX = b"UNIREP-FAULT:"
"""Test hook (only with ``debug_fault_injection``): ``UNIREP-FAULT:hang``, ``:crash`` or ``:oom`` payloads."""
SPAWN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Decoded:
    tensor: torch.Tensor
    seconds: float
    """Time the decoder itself took in the child (what the preprocess histogram and header report)."""


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _limit_memory(extra_mb: int) -> None:
    """RLIMIT_AS = what the process maps now (torch and the decoders are imported) + the per-decoder budget."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return
    current = _address_space_bytes()
    if current:
        limit = current + extra_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _inject_fault(data: bytes, memory_mb: int) -> None:
    kind = data[len(FAULT_PREFIX) : len(FAULT_PREFIX) + 8].split(b"\n")[0].strip()
    if kind.startswith(b"hang"):
        time.sleep(3600)
    elif kind.startswith(b"crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind.startswith(b"oom"):
        # One allocation just past the budget: refused at once by RLIMIT_AS (no page is touched, so it is quick
        # and harmless to the machine), which is what a decoder asking for too much memory sees.
        hog = bytearray((memory_mb + 256) * 2**20)
        del hog


def _child_main(conn: Connection, adapters: dict[str, Any], memory_mb: int, fault_injection: bool) -> None:
    """One decoder process: import everything, cap memory, then decode requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops us in order.
    torch.set_num_threads(1)
    for adapter in adapters.values():  # decoders import their libraries on first use; pay that before the first request
        for module in getattr(adapter, "heavy_imports", ()):
            with contextlib.suppress(Exception):
                importlib.import_module(module)
    _limit_memory(memory_mb)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        modality, data, params = job
        start = time.perf_counter()
        try:
            if fault_injection and data.startswith(FAULT_PREFIX):
                _inject_fault(data, memory_mb)
            tensor = adapters[modality].decode(data, **params)
            reply: tuple[Any, ...] = (True, tensor.numpy(), time.perf_counter() - start)
        except UnirepError as exc:
            reply = (False, exc, time.perf_counter() - start)
        except MemoryError:
            reply = (False, InputTooLargeError(f"decoding needed more than the {memory_mb} MiB memory limit"), 0.0)
        except Exception as exc:
            reply = (False, UndecodableInputError(f"the {modality} decoder failed: {type(exc).__name__}: {exc}"), 0.0)
        conn.send(reply)


class _Slot:
    """One decoder process and the parent's end of its pipe; used by one job at a time."""

    def __init__(self, ctx: Any, adapters: dict[str, Any], memory_mb: int, fault_injection: bool) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_child_main, args=(child, adapters, memory_mb, fault_injection), daemon=True, name="unirep-decoder"
        )
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"decoder process did not start within {timeout:.0f} s")
        self.conn.recv()

    def call(self, modality: str, data: bytes, params: dict[str, Any], timeout: float) -> tuple[Any, ...]:
        """Run one job; raises PreprocessTimeoutError / DecoderCrashedError after which the slot is dead."""
        self.conn.send((modality, data, params))
        if not self.conn.poll(timeout):
            self.kill()
            raise PreprocessTimeoutError(
                f"the {modality} decoder ran past its {timeout:g} s limit and was stopped; "
                "check the file, or send a smaller one",
                limit_s=timeout,
            )
        try:
            reply: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(1.0)
            code = self.process.exitcode
            why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            raise DecoderCrashedError(
                f"the {modality} decoder crashed on this file ({why}); it is probably corrupt", exit=why
            ) from None
        return reply

    @property
    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(2.0)
        if self.process.is_alive():
            self.kill()


class DecoderPool:
    """``await pool.decode(modality, data, params, deadline=...)`` -> Decoded, on ``size`` spawned processes."""

    def __init__(
        self,
        adapters: dict[str, Any],
        size: int,
        timeout_s: float,
        memory_mb: int,
        fault_injection: bool = False,
        on_failure: Any = None,
    ) -> None:
        self.adapters = adapters
        self.size = size
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.fault_injection = fault_injection
        self.on_failure = on_failure
        """Called with (modality, reason) when a process is lost: the metrics hook."""
        self._ctx = multiprocessing.get_context("spawn")
        self._threads = ThreadPoolExecutor(max_workers=size + 2, thread_name_prefix="unirep-preprocess")
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        self._slots: set[_Slot] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._started = False
        self._replacing = 0

    @property
    def ready(self) -> bool:
        """Started and serving; a process being replaced after a crash does not make the service unready
        (requests wait for the replacement), but a pool that gave up on every process does."""
        return self._started and not self._closed and bool(self._slots or self._replacing)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._loop.run_in_executor(self._threads, self._spawn) for _ in range(self.size)))
        self._started = True

    def _spawn(self) -> None:
        """Start a process and hand it to the idle queue once it has imported everything (runs in a thread)."""
        for attempt in range(3):
            if self._closed:
                return
            try:
                slot = _Slot(self._ctx, self.adapters, self.memory_mb, self.fault_injection)
                slot.wait_ready(SPAWN_TIMEOUT_S)
            except Exception as exc:
                log.error("decoder process failed to start (attempt %d): %s", attempt + 1, exc)
                time.sleep(1.0)
                continue
            with self._lock:
                self._slots.add(slot)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._idle.put_nowait, slot)
            return
        log.error("giving up on starting a decoder process; the pool runs with fewer processes")

    async def decode(
        self, modality: str, data: bytes, params: dict[str, Any], *, deadline: float | None = None
    ) -> Decoded:
        """Decode one payload; ``deadline`` is a ``time.monotonic()`` instant (504 when it passes first)."""
        if self._closed:
            raise ServiceUnavailableError("the service is shutting down", retry_after=1)
        slot = await self._await_deadline(self._idle.get(), deadline, "waiting for a free decoder")
        assert self._loop is not None
        future = self._loop.run_in_executor(self._threads, slot.call, modality, data, params, self.timeout_s)
        future.add_done_callback(lambda f: self._after_call(slot, f, modality))
        success, payload, seconds = await self._await_deadline(asyncio.shield(future), deadline, "decoding")
        if not success:
            raise payload
        return Decoded(torch.from_numpy(np.asarray(payload)), float(seconds))

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

    def _after_call(self, slot: _Slot, future: asyncio.Future[Any] | Future[Any], modality: str) -> None:
        exc = future.exception()
        if exc is None and slot.alive:
            self._idle.put_nowait(slot)
            return
        reason = "timeout" if isinstance(exc, PreprocessTimeoutError) else "crash"
        log.warning("decoder process %s lost (%s); starting a replacement", slot.process.pid, reason)
        with self._lock:
            self._slots.discard(slot)
        if not isinstance(exc, PreprocessTimeoutError):
            self._threads.submit(slot.kill)
        if self.on_failure is not None:
            self.on_failure(modality, reason)
        if not self._closed:
            with self._lock:
                self._replacing += 1
            self._threads.submit(self._replace)

    def _replace(self) -> None:
        try:
            self._spawn()
        finally:
            with self._lock:
                self._replacing -= 1

    async def close(self) -> None:
        self._closed = True
        with self._lock:
            slots = list(self._slots)
            self._slots.clear()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, s.stop) for s in slots))
        self._threads.shutdown(wait=False, cancel_futures=True)
