"""Runs the map search's trials side by side on a CPU: one process a core, one torch thread each.

A trial trains the run's network for a few dozen steps on small batches of small maps, where each operation is
too short for a second intra-op thread to pay: under the passive wait policy a run sets, two threads on two cores
step slower than one on the CPU recipe's maps and a tenth faster on the default recipe's
(``benchmarks/train_step_threads.py``). The trials themselves are independent (each seeded by its own split), so on
a CPU they fill the cores one process each instead, in a pool of spawned processes started once for the search. A
trial's result depends on its seed and its thread count, not on the order or the process it runs in: the pool gives
the tallies the same trials give one after another on one thread.

On a GPU, in a distributed run (each rank would start its own pool), or with one preparing process asked for
(``--workers 1``, which also decodes in the training process), the trials run in this process one after another.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from training.config import MAX_WORKERS, TrainConfig
from training.distributed import threads_each
from unirep_errors import DatasetError

Score = tuple[int, int, float]
"""(series right, series held out, summed loss) of one trial."""
Job = tuple[Callable[..., Score], tuple[Any, ...]]
"""A trial: a module-level scoring function and its arguments (both sent to a pool process)."""
Runner = Callable[[Sequence[Job]], list[Score]]


def trial_processes(cfg: TrainConfig) -> int:
    """How many processes run the trials: one per CPU up to ``MAX_WORKERS`` (or ``cfg.workers``, never more than
    the cores) for a run on the CPU of one machine, else 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or not _on_cpu(cfg.device):
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(cores, cfg.workers if cfg.workers is not None else MAX_WORKERS))


@contextlib.contextmanager
def trial_runner(processes: int) -> Iterator[Runner]:
    """A function that scores a list of trials in order: in this process when ``processes`` is 1, else in a pool
    of that many spawned processes of ``os.cpu_count() // processes`` torch threads each, shut down on exit."""
    if processes <= 1:
        yield lambda jobs: [score(*args) for score, args in jobs]
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, context, _set_threads, (threads_each(processes),)) as pool:
        yield lambda jobs: _in_pool(pool, jobs)


def _in_pool(pool: concurrent.futures.ProcessPoolExecutor, jobs: Sequence[Job]) -> list[Score]:
    """The trials' scores in order; the first failure is raised at once, with the trials not yet started
    cancelled (a bad param fails every trial the same way)."""
    futures = [pool.submit(score, *args) for score, args in jobs]
    try:
        return [future.result() for future in futures]
    except concurrent.futures.process.BrokenProcessPool:
        raise DatasetError(
            "a process running the map search's trials died (memory ran out?); rerun with --workers 1 to run them "
            "in the training process"
        ) from None
    finally:
        for future in futures:
            future.cancel()


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _on_cpu(device: str) -> bool:
    """Whether ``device`` names the CPU (``auto`` without a GPU); unlike ``training.distributed.pick_device`` it
    does not refuse ``cuda`` on a machine without one: the run's own device check says that."""
    name = device.strip().lower()
    if name != "auto":
        return name == "cpu"
    import torch

    return not torch.cuda.is_available()
