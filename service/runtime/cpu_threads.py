"""How many cores the model may use on a CPU host, and the OpenMP policy that keeps shared cores usable.

The decoder processes, the event loop and the model's intra-op threads share the same cores. With OpenMP's
default (active) wait policy an idle torch thread spins for a while after each parallel region, and whenever
another process needs that core the next region waits for a descheduled spinner: we measured 2-thread torch 5-10x
slower beside busy decoders, and start-to-ready four times longer. ``OMP_WAIT_POLICY=PASSIVE`` (set before torch
loads) removes that, and the thread plan keeps decoders + model threads within the cores by default. On a machine
that does nothing else spinning is faster (about a quarter for training: ``benchmarks/train_wait_policy.py``), so an
operator's own policy, ``ACTIVE`` included, is kept. ``unirep``'s entry point sets it for every command.

Nothing here imports torch: ``configure_openmp`` must run before torch is first imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_openmp(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the OpenMP wait policy unless the operator chose one; returns what was set (inherited by children)."""
    env = os.environ if environ is None else environ
    applied = {}
    for key, value in OPENMP_DEFAULTS.items():
        if key not in env:
            env[key] = value
            applied[key] = value
    return applied


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPlan:
    cores: int
    decoders: int
    model_threads: int
    on_cpu: bool

    @property
    def oversubscribed(self) -> bool:
        """More busy threads than cores: only a CPU model competes with the decoders for them."""
        return self.on_cpu and self.decoders + self.model_threads > self.cores

    def warning(self) -> str | None:
        if not self.oversubscribed:
            return None
        return (
            f"{self.decoders} decoder processes + {self.model_threads} model threads exceed the {self.cores} cores: "
            "under load they slow each other down; lower preprocess_workers or torch_threads "
            f"(e.g. preprocess_workers={max(1, self.cores // 2)}, torch_threads={max(1, self.cores - self.cores // 2)})"
        )


def plan_threads(decoders: int, torch_threads: int | None, on_cpu: bool, cores: int | None = None) -> ThreadPlan:
    """Model threads: as configured, else the cores the decoders leave (at least one)."""
    cores = available_cores() if cores is None else cores
    threads = torch_threads if torch_threads else max(1, cores - decoders)
    return ThreadPlan(cores, decoders, threads, on_cpu)
