"""One decoder process and the parent's end of its pipe (the preprocessing pool's unit, see ``decoder_pool``).

Processes are started from a fork server that has already imported torch and the decoder libraries, so a
replacement after a crash costs a fork (tens of milliseconds) instead of a fresh interpreter importing torch
(seconds of CPU that every other request would pay for). The child caps its own address space (RLIMIT_AS) and may
lower its own CPU priority (the lane for expensive inputs runs niced, so that it only gets the CPU others leave).

A lost process is classified: a crash in native code (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) may be the input's
fault; a SIGKILL (the kernel's OOM killer, an operator), SIGTERM or a broken pipe is not, so the pool retries it.
Lost on the retry too, the input is refused only when both losses were input-like (``lost_twice``).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

import torch

from unirep_errors import (
    DecoderCrashedError,
    InputTooLargeError,
    PreprocessTimeoutError,
    ServiceUnavailableError,
    UndecodableInputError,
    UnirepError,
)

FAULT_PREFIX = b"UNIREP-FAULT:"
"""Test hook (only with ``debug_fault_injection``): ``UNIREP-FAULT:hang``, ``:crash``, ``:kill``, ``:oom``, or
``:slow`` (0.3 s of decoding, then undecodable: an expensive input whose cost does not depend on the host)."""
INPUT_LIKE_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL})
_CONTEXT: Any = None


def _heavy_imports(adapters: dict[str, Any]) -> list[str]:
    """The decoder libraries the adapters import on first use (each adapter names its own)."""
    return [module for adapter in adapters.values() for module in getattr(adapter, "heavy_imports", ())]


def context(adapters: dict[str, Any]) -> Any:
    """The fork-server context, preloading torch, the adapters and their decoder libraries (once per process)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        modules = ["torch", "numpy", "modality_adapters", "service.runtime.decoder_process"]
        modules += _heavy_imports(adapters)
        ctx.set_forkserver_preload(modules)
        _CONTEXT = ctx
    return _CONTEXT


class DecoderLostError(Exception):
    """The process died (or its pipe broke) while it held a job; ``input_like`` says whether the input may be why."""

    def __init__(self, why: str, input_like: bool) -> None:
        super().__init__(why)
        self.why = why
        self.input_like = input_like


def lost_twice(losses: list[DecoderLostError], modality: str) -> UnirepError:
    """The answer when an input's decoder was lost on its try and its retry: the input's fault (422, and the pool
    quarantines it) when both losses were crashes in native code; otherwise the service's (503: retry)."""
    why = losses[-1].why
    if all(lost.input_like for lost in losses):
        return DecoderCrashedError(
            f"the {modality} decoder crashed on this file twice ({why}); the file is refused", exit=why
        )
    return ServiceUnavailableError(
        f"a decoder process was lost twice while decoding this {modality} input ({why}); "
        "this is not a problem with the file: retry",
        retry_after=2,
    )


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
    elif kind.startswith(b"slow"):
        time.sleep(0.3)
    elif kind.startswith(b"crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind.startswith(b"kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind.startswith(b"oom"):
        # One allocation just past the budget: refused at once by RLIMIT_AS (no page is touched).
        hog = bytearray((memory_mb + 256) * 2**20)
        del hog


def _decode_one(adapters: dict[str, Any], job: tuple[Any, ...], memory_mb: int, faults: bool) -> tuple[Any, ...]:
    modality, data, params = job
    start = time.perf_counter()
    try:
        if faults and data.startswith(FAULT_PREFIX):
            _inject_fault(data, memory_mb)
        tensor = adapters[modality].decode(data, **params)
        return (True, tensor.numpy(), time.perf_counter() - start)
    except UnirepError as exc:
        return (False, exc, time.perf_counter() - start)
    except MemoryError:
        error: UnirepError = InputTooLargeError(f"decoding needed more than the {memory_mb} MiB memory limit")
    except Exception:  # the library's own text may carry paths and addresses: it stays out of the answer
        error = UndecodableInputError(f"the {modality} file cannot be decoded (corrupt or unsupported content)")
    return (False, error, time.perf_counter() - start)


def child_main(conn: Connection, adapters: dict[str, Any], memory_mb: int, faults: bool, nice: int) -> None:
    """One decoder process: import everything, cap memory, then decode requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops us in order.
    torch.set_num_threads(1)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    for module in _heavy_imports(adapters):  # imported on first use otherwise: pay that before the first request
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
        conn.send(_decode_one(adapters, job, memory_mb, faults))


class Slot:
    """One decoder process; used by one job at a time."""

    def __init__(self, ctx: Any, adapters: dict[str, Any], memory_mb: int, faults: bool, nice: int = 0) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=child_main, args=(child, adapters, memory_mb, faults, nice), daemon=True, name="unirep-decoder"
        )
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError(f"decoder process did not start within {timeout:.0f} s")
        self.conn.recv()

    def call(self, modality: str, data: bytes, params: dict[str, Any], timeout: float) -> tuple[Any, ...]:
        """Run one job; raises PreprocessTimeoutError or DecoderLostError, after which the slot is dead."""
        try:
            self.conn.send((modality, data, params))
            ready = self.conn.poll(timeout)
        except (OSError, EOFError):  # died before the job reached it (killed while idle)
            raise self._lost() from None
        if not ready:
            self.kill()
            raise PreprocessTimeoutError(
                f"the {modality} decoder ran past its {timeout:g} s limit and was stopped; "
                "check the file, or send a smaller one",
                limit_s=timeout,
            )
        try:
            reply: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            raise self._lost() from None
        return reply

    def _lost(self) -> DecoderLostError:
        self.process.join(1.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            return DecoderLostError(f"signal {sig.name}", sig in INPUT_LIKE_SIGNALS)
        if code is None:
            return DecoderLostError("broken pipe", False)
        return DecoderLostError(f"exit code {code}", code != 0)

    @property
    def alive(self) -> bool:
        return bool(self.process.is_alive())

    @property
    def pid(self) -> int | None:
        pid: int | None = self.process.pid
        return pid

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
