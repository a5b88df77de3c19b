"""Training on the CPU of one machine as several processes of one thread each, every process a share of each batch.

On a CPU the recipes' steps are small: under the passive wait policy a second intra-op thread makes a step of the
CPU recipe slower, not faster (``benchmarks/train_step_threads.py``), so one training process leaves the other
cores mostly idle. With ``TrainConfig.data_parallel`` the run is data-parallel instead, as under ``torchrun`` (gloo,
gradients averaged by DistributedDataParallel): the parent prepares the data once (decoding, the series map search
with its own pool), writes it to one file that every process maps read-only, and spawns the processes; rank 0
writes the outputs and its result comes back to the caller. ``benchmarks/train_processes.py`` measures the gain.

The global batch is the run's ``batch_size``, split evenly; each process normalises its own share in BatchNorm (no
synchronised BatchNorm on a CPU), so a run is another draw than one process's, and a share is at least
``MIN_SHARE`` examples when the processes are chosen for the user. One process stays the default because the
published accuracies were measured so. Short runs stay in one process: starting the others costs a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp

from training.config import MAX_WORKERS, TrainConfig, TrainResult
from training.distributed import Dist, teardown, threads_each
from training.prepare import PreparedData
from unirep_errors import InvalidParameterError, UnirepError

MIN_SHARE = 8
"""Examples a process at least, when the count is chosen for the user: BatchNorm's statistics of a smaller share
are noisier than the recipe's batch was measured with."""
MIN_STEPS = 100
"""Steps a run needs before it is spread. On two cores a CPU-recipe step took about 0.34 s in two processes against
0.43 s in one process on one thread and 0.58 s on two (``benchmarks/train_processes.py`` at 96 and 300 steps), and
starting the processes (a torch import each, the group, the data file) costs a few seconds; below 100 steps the gain
is too small to count on."""


def training_processes(cfg: TrainConfig, d: Dist, data: PreparedData, steps: int) -> int:
    """How many processes train: ``cfg.data_parallel`` when it names a count (checked), else (None) one per core up
    to ``MAX_WORKERS`` that splits the batch into equal shares of at least ``MIN_SHARE``; always 1 under
    ``torchrun``, off the CPU, for a ridge head (no steps) or, when chosen here, for fewer than ``MIN_STEPS`` steps."""
    asked = cfg.data_parallel
    if d.enabled or d.device.type != "cpu" or data.head == "ridge" or asked == 1:
        return 1
    if asked is not None:
        if cfg.batch_size % asked or cfg.batch_size // asked < 2:
            raise InvalidParameterError(
                f"--data-parallel {asked} must split --batch-size {cfg.batch_size} into equal shares of at least 2"
            )
        return asked
    if steps < MIN_STEPS:
        return 1
    most = min(os.cpu_count() or 1, MAX_WORKERS, cfg.batch_size // MIN_SHARE)
    return max((p for p in range(1, most + 1) if cfg.batch_size % p == 0), default=1)


def train_in_processes(cfg: TrainConfig, data: PreparedData, processes: int, started: float) -> TrainResult:
    """Train on ``processes`` spawned ranks of ``cfg.batch_size / processes`` examples each; rank 0's result."""
    share = replace(cfg, batch_size=cfg.batch_size // processes)
    with _terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="unirep-train-") as tmp:
        folder = Path(tmp)
        torch.save(data, folder / "data.pt")
        try:
            _run_ranks((share, str(folder), processes, started), processes)
        except (torch_mp.ProcessRaisedException, torch_mp.ProcessExitedException):
            errors = sorted(folder.glob("error-*.pickle"), key=lambda path: path.stat().st_mtime)
            if errors:  # the first failing rank's own UnirepError, for the user's message
                raise _read(errors[0]) from None
            raise
        result = _read(folder / "result.pickle")
    assert isinstance(result, TrainResult)
    return result


def _run_ranks(args: tuple[Any, ...], processes: int) -> None:
    """Start the ranks and wait for them; however the wait ends (a rank's failure, Ctrl-C, SIGTERM), none is left
    running: at exit Python would otherwise wait for ranks that train on."""
    ranks = torch_mp.start_processes(_rank_main, args=args, nprocs=processes, join=False, start_method="spawn")
    assert ranks is not None
    try:
        while not ranks.join():
            pass
    finally:
        for process in ranks.processes:
            if process.is_alive():
                process.terminate()
            process.join()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``docker stop``) ends the run as Ctrl-C does: the ranks stop and the data file is removed,
    instead of leaving both behind (in the main thread only, where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rank_main(rank: int, cfg: TrainConfig, folder: str, world: int, started: float) -> None:
    """One spawned rank: one share of the cores, the group through a file store (no port to pick), the shared data
    mapped from the parent's file, the loop; rank 0 leaves its result in ``folder``, any rank its UnirepError (files,
    not a pipe: a pipe's writer waits for a reader, and the parent reads once the ranks are done)."""
    from training.loop import train_prepared

    torch.set_num_threads(threads_each(world))
    dist.init_process_group("gloo", init_method=f"file://{folder}/group", rank=rank, world_size=world)
    data = torch.load(Path(folder) / "data.pt", mmap=True, weights_only=False)
    d = Dist(rank, world, torch.device("cpu"))
    try:
        result = train_prepared(cfg, d, data, started)
    except UnirepError as exc:  # written before this rank exits, so before the parent stops the others
        _write(Path(folder) / f"error-{rank}.pickle", exc)
        raise
    finally:
        teardown(d)
    if rank == 0:
        _write(Path(folder) / "result.pickle", result)


def _write(path: Path, value: object) -> None:
    """``value`` pickled to ``path``, whole or not at all (written aside, then renamed)."""
    partial = path.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(value))
    partial.replace(path)


def _read(path: Path) -> Any:
    return pickle.loads(path.read_bytes())
