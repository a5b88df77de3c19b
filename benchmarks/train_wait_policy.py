"""How long ``unirep train`` takes on a CPU with each OpenMP wait policy, alone and beside one busy process.

``unirep train`` (like ``unirep serve``) sets ``OMP_WAIT_POLICY=PASSIVE`` unless the operator chose a policy. The
trade-off is measured here rather than assumed: an idle torch thread that spins is ready sooner for the next
parallel region, which helps on a machine that does nothing else, and takes a core from anyone else who needs it,
which hurts as soon as something else runs (a service, decoder processes, another run). The busy neighbour is one
Python process in a loop, the simplest stand-in for any of those.

Beside each policy on torch's default threads (one a core), ``--one-thread`` adds both policies with
``OMP_NUM_THREADS=1``: a passive second thread is woken for every parallel operation, which on small maps costs more
than it brings (``benchmarks/train_step_threads.py`` times single steps).

Each run is the real command in its own process (the policy is read when torch loads), on the training split of
a UCR set that aeon ships, with the map named so that no search runs; the rounds interleave the configurations
because this machine's timings drift. Example::

    python benchmarks/train_wait_policy.py --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ucr import aeon_data_dir

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("PASSIVE", "ACTIVE")
COMPANY = ("alone", "beside one busy process")
MAP = ("representation=values+gasf+gadf+rp", "length_mode=resample", "normalize=series")


def train_command(data: Path, out: Path, steps: int) -> list[str]:
    """The CPU recipe for ``steps`` optimizer steps on a named map (no search), trained head, no progress bar."""
    command = [sys.executable, "-m", "service.cli", "train", "timeseries", str(data), "--out", str(out)]
    command += ["--recipe", "cpu", "--epochs", "1", "--min-steps", str(steps), "--head", "train", "--no-progress"]
    command += ["--cache-dir", str(out.parent / "cache")]
    for param in MAP:
        command += ["--param", param]
    return command


@contextlib.contextmanager
def neighbour(busy: bool) -> Iterator[subprocess.Popen[bytes] | None]:
    """One Python process spinning in a loop while the block runs (None when not ``busy``); stopped on exit."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield process
    finally:
        if process is not None:
            process.kill()
            process.wait()


def timed_run(command: list[str], policy: str, busy_neighbour: bool, one_thread: bool = False) -> float:
    """Wall seconds of one training run with ``policy`` in its environment, and ``OMP_NUM_THREADS=1`` with
    ``one_thread`` (startup and decoding included)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update({"OMP_WAIT_POLICY": policy, **({"OMP_NUM_THREADS": "1"} if one_thread else {})})
    with neighbour(busy_neighbour):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="GunPoint", help="a UCR set aeon ships (its training split is used)")
    ap.add_argument("--steps", type=int, default=42, help="optimizer steps a run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one-thread", action="store_true", help="also each policy with OMP_NUM_THREADS=1")
    args = ap.parse_args()
    data = aeon_data_dir() / args.set / f"{args.set}_TRAIN.ts"
    threads = ("default", "one") if args.one_thread else ("default",)
    runs: dict[tuple[str, str, str], list[float]] = {(p, t, c): [] for t in threads for p in POLICIES for c in COMPANY}
    with tempfile.TemporaryDirectory() as tmp:
        command = train_command(data, Path(tmp) / "out", args.steps)
        for _ in range(args.rounds):
            for (policy, thread, company), seconds in runs.items():
                seconds.append(timed_run(command, policy, company != "alone", one_thread=thread == "one"))
    print(f"unirep train, {args.set}, {args.steps} steps, CPU recipe, {os.cpu_count()} cores; wall seconds a run:")
    for (policy, thread, company), seconds in runs.items():
        print(f"  {policy:8s} {thread:7s} threads  {company:24s} " + " ".join(f"{s:6.1f}" for s in seconds))
    median = {key: statistics.median(seconds) for key, seconds in runs.items()}
    for company in COMPANY:
        ratio = median[("ACTIVE", "default", company)] / median[("PASSIVE", "default", company)]
        print(f"ACTIVE / PASSIVE, {company}: {ratio:.2f} (median of {args.rounds})")
        if args.one_thread:
            ratio = median[("PASSIVE", "one", company)] / median[("PASSIVE", "default", company)]
            print(f"PASSIVE, one thread / default threads, {company}: {ratio:.2f} (median of {args.rounds})")


if __name__ == "__main__":
    main()
