"""How long ``unirep train`` takes on a CPU as one process or as several data-parallel processes of one thread each.

On a CPU the CPU recipe's steps (batch 16 of 32 x 32 maps) are too small for a second intra-op thread to pay under the
passive wait policy (``benchmarks/train_step_threads.py``), so one training process leaves the other cores mostly
idle. ``unirep train --data-parallel P`` runs the steps in ``P`` processes of one thread each that share every batch
and average their gradients (``training.data_parallel``). This script measures whether that pays, for the whole
command (startup, decoding and the processes' start included), against the same run as one process
(``--data-parallel 1``) on torch's default threads and on one thread.

The global batch and the step count are the same in every configuration. The runs differ in the BatchNorm
statistics of the training form (each process normalises its own share), so the validation accuracy of each run is
printed beside its time. The rounds interleave the configurations because this machine's timings drift. Example::

    python benchmarks/train_processes.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_wait_policy import train_command
from benchmarks.ucr import aeon_data_dir

REPO = Path(__file__).resolve().parents[1]
BATCH = 16
"""The CPU recipe's batch: the global batch of every configuration."""


def command(processes: int, data: Path, out: Path, steps: int) -> list[str]:
    """The wait-policy benchmark's command (the CPU recipe for ``steps`` steps on a named map, no search) at the
    global batch, scoring the last epoch, in ``processes`` data-parallel processes (1: the command's own)."""
    extra = ["--batch-size", str(BATCH), "--select", "last", "--data-parallel", str(processes)]
    return [*train_command(data, out, steps), *extra]


def timed_run(cmd: list[str], one_thread: bool, out: Path) -> tuple[float, float]:
    """Wall seconds of one run (``OMP_NUM_THREADS=1`` with ``one_thread``, the passive wait policy as
    ``unirep train`` sets it) and the validation accuracy it reports."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update({"OMP_WAIT_POLICY": "PASSIVE", **({"OMP_NUM_THREADS": "1"} if one_thread else {})})
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    match = re.search(r"validation accuracy ([0-9.]+)", done.stdout + done.stderr)
    if match is None:
        raise RuntimeError(f"no validation accuracy in the run's output:\n{done.stdout}\n{done.stderr}")
    return seconds, float(match.group(1))


def configurations(processes: int) -> dict[str, tuple[int, bool]]:
    """Name -> (processes, one thread each)."""
    return {
        "1 process, torch's threads": (1, False),
        "1 process, 1 thread": (1, True),
        f"{processes} processes, 1 thread each": (processes, True),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="GunPoint", help="a UCR set aeon ships (its training split is used)")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps a run (the CPU recipe's least)")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="data-parallel processes")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.processes < 2 or BATCH % args.processes:
        ap.error(f"--processes must be at least 2 and divide the batch of {BATCH}")
    data = aeon_data_dir() / args.set / f"{args.set}_TRAIN.ts"
    configs = configurations(args.processes)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for _ in range(args.rounds):
            for name, (processes, one_thread) in configs.items():
                cmd = command(processes, data, out, args.steps)
                runs[name].append(timed_run(cmd, one_thread, out))
    print(f"unirep train, {args.set}, {args.steps} steps, CPU recipe, global batch {BATCH}, {os.cpu_count()} cores")
    for name, results in runs.items():
        cells = "  ".join(f"{s:6.1f} s (val {acc:.3f})" for s, acc in results)
        print(f"  {name:28s} {cells}")
    median = {name: statistics.median(s for s, _ in results) for name, results in runs.items()}
    parallel = f"{args.processes} processes, 1 thread each"
    for name in list(configs)[:2]:
        print(f"{parallel} / {name}: {median[parallel] / median[name]:.2f} (median of {args.rounds})")


if __name__ == "__main__":
    main()
