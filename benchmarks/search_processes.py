"""How long the series map search takes with its trials in the training process and side by side, one process a
core, and whether both choose alike.

``unirep train`` on a CPU runs the search's trials in a pool of processes of one torch thread each
(``training.trial_pool``) instead of one after another in the training process on every core. Measured here on the
training split of a UCR set that aeon ships, with the recipe named, through the search itself
(``training.series_params.choose_series_params``, the map and head left open as a user leaves them): in the
training process on all cores (as before the pool), in the training process on one thread, and in the pool. The
pool's tallies are compared with the one-thread run's, which they must equal (each trial is seeded and runs on one
thread either way). Modes interleave within a round because this machine's timings drift. Example::

    python benchmarks/search_processes.py --set ItalyPowerDemand --rounds 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as unirep's entry point sets it, before torch loads

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ucr import aeon_data_dir

MODES = ("training process, every core", "training process, one thread", "one process a core")


def search(data: Path, recipe: str, mode: str, scratch: Path) -> tuple[float, str]:
    """(seconds, the search's note without its timing) of one search over ``data`` in ``mode``."""
    import torch

    from training import TrainConfig
    from training.config import DEFAULT_MODEL
    from training.data import discover
    from training.prepare import served_params
    from training.series_params import choose_series_params

    torch.set_num_threads(1 if mode == MODES[1] else os.cpu_count() or 1)
    workers = None if mode == MODES[2] else 1
    cfg = TrainConfig.from_recipe(
        recipe, modality="timeseries", data=str(data), out=str(scratch / "out"), device="cpu", workers=workers
    )
    params = served_params("timeseries", cfg.model or DEFAULT_MODEL, cfg.params, validate=False)
    examples = discover(data, "timeseries")
    start = time.perf_counter()
    choice = choose_series_params(examples, params, cfg, cfg.model or DEFAULT_MODEL)
    return time.perf_counter() - start, re.sub(r"; \d+ s\)$", ")", choice.note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="ItalyPowerDemand", help="a UCR set aeon ships (its training split is searched)")
    ap.add_argument("--recipe", default="cpu")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    data = aeon_data_dir() / args.set / f"{args.set}_TRAIN.ts"
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    notes: dict[str, set[str]] = {mode: set() for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for mode in MODES:
                took, note = search(data, args.recipe, mode, Path(tmp))
                seconds[mode].append(took)
                notes[mode].add(note)
    print(f"map search, {args.set} training split, {args.recipe} recipe, {os.cpu_count()} cores; seconds a search:")
    for mode in MODES:
        print(f"  {mode:30s} " + " ".join(f"{s:7.1f}" for s in seconds[mode]))
    for mode in MODES:
        print(f"{mode}: {' | '.join(sorted(notes[mode]))}")
    print(f"the pool chose as one thread in the training process: {notes[MODES[2]] == notes[MODES[1]]}")
    print(f"training process on every core / pool: {min(seconds[MODES[0]]) / min(seconds[MODES[2]]):.2f} (fastest)")


if __name__ == "__main__":
    main()
