"""Pretrain a series backbone on generated data, to try as ``unirep train --init`` (a prior, not a model to serve).

Every trained series model starts from random weights, and a few dozen to a few hundred training series are all
it sees. Would a backbone that has first learned generic series features (rhythm, edges, bursts, drift) on a
generated corpus start better? This script makes the corpus and pretrains on it through ``unirep train``'s core;
``benchmarks/ts_dev_split.py --init <out>/checkpoint.pt`` then measures the prior on training-split folds.

The corpus: twelve families of series (sine, square wave with random duty, sawtooth, triangle, sparse spikes,
Gaussian bumps, piecewise-constant levels, chirp up or down, random walk, AR(1), damped sine, two-tone sine), each
slow (2-5 cycles or events) or fast (12-30): 24 classes, told apart by shape and time scale, never by level or
amplitude (random gain, offset, drift and noise on every series), 128-1023 steps long, seeded.

Usage: ``python benchmarks/series_prior.py --out /tmp/prior [--per-class 160] [--epochs 8] [--threads 1]``; the run
is the CPU recipe on the wide map (``values+plot+cwt``, each series' scale, 32 x 256 of span means).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import TrainConfig, train
from training.series_params import WIDE_REPRESENTATION

PRIOR_PARAMS = {
    "representation": WIDE_REPRESENTATION,
    "normalize": "series",
    "length_mode": "paa",
    "time_steps": 256,
    "num_vars": 1,
}
"""The map the prior learns on: the series search's wide candidate for long series."""


def _shapes(t: np.ndarray, period: float, phase: float, rng: np.random.Generator) -> list[Callable[[], np.ndarray]]:
    """The twelve families at one time scale (``period`` steps, ``phase`` radians)."""
    n, cycles = len(t), len(t) / period
    wave = 2 * np.pi * t / period + phase

    def spikes() -> np.ndarray:
        x, k = np.zeros(n), max(2, int(cycles))
        at = rng.choice(n, k, replace=False)
        x[at] = rng.uniform(3, 6, k)
        return np.convolve(x, np.ones(3) / 3, "same")

    def bumps() -> np.ndarray:
        x = np.zeros(n)
        for centre in rng.uniform(0, n, max(2, int(cycles))):
            x += np.exp(-0.5 * ((t - centre) / (period / 8)) ** 2)
        return x

    def levels() -> np.ndarray:
        k = max(2, int(cycles))
        edges = np.sort(rng.choice(np.arange(1, n), k - 1, replace=False))
        return np.repeat(rng.normal(0, 1, k), np.diff(np.concatenate([[0], edges, [n]])))

    def chirp() -> np.ndarray:
        f0, f1 = (2.0, 6.0) if cycles < 8 else (6.0, 40.0)
        if rng.random() < 0.5:
            f0, f1 = f1, f0
        return np.sin(2 * np.pi * (f0 * t / n + (f1 - f0) * t**2 / (2 * n * n)) + phase)

    def walk() -> np.ndarray:
        x = np.cumsum(rng.normal(0, 1, n))
        span = max(3, n // 10)
        return x if cycles < 8 else x - np.convolve(x, np.ones(span) / span, "same")

    def ar1() -> np.ndarray:
        a, e, x = (0.99 if cycles < 8 else -0.7), rng.normal(0, 1, n), np.zeros(n)
        for i in range(1, n):
            x[i] = a * x[i - 1] + e[i]
        return x

    return [
        lambda: np.sin(wave),
        lambda: np.sign(np.sin(wave) + rng.uniform(-0.6, 0.6)),
        lambda: ((t / period + phase) % 1.0) * 2 - 1,
        lambda: 1 - 2 * np.abs(((t / period + phase) % 1.0) * 2 - 1),
        spikes,
        bumps,
        levels,
        chirp,
        walk,
        ar1,
        lambda: np.sin(wave) * np.exp(-t / (n * rng.uniform(0.15, 0.4))),
        lambda: np.sin(wave) + 0.6 * np.sin(2 * np.pi * 3.1 * t / period),
    ]


FAMILIES = 12


def make_series(family: int, fast: bool, rng: np.random.Generator) -> np.ndarray:
    """One series of ``family`` at the slow or fast time scale, with random length, gain, offset, drift and noise."""
    n = int(rng.integers(128, 1024))
    t = np.arange(n, dtype=float)
    period = n / (rng.uniform(12, 30) if fast else rng.uniform(2, 5))
    x = _shapes(t, period, rng.uniform(0, 2 * np.pi), rng)[family]()
    x = x / (x.std() + 1e-8)
    if rng.random() < 0.5:
        x = x + rng.uniform(-1, 1) * t / n * 2
    return x * rng.uniform(0.5, 3) + rng.normal(0, rng.uniform(0.02, 0.3), n) + rng.normal(0, 2)


def write_corpus(root: Path, per_class: int, seed: int = 0) -> int:
    """The corpus as class folders of one-column CSV files; returns the number of series written."""
    rng = np.random.default_rng(seed)
    for family in range(FAMILIES):
        for fast in (False, True):
            folder = root / f"family{family:02d}_speed{int(fast)}"  # 0 slow, 1 fast
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                np.savetxt(folder / f"{i}.csv", make_series(family, fast, rng)[:, None], fmt="%.5f")
    return FAMILIES * 2 * per_class


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for the corpus and the pretrained run")
    ap.add_argument("--per-class", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    count = write_corpus(out / "corpus", args.per_class)
    cfg = TrainConfig.from_recipe(
        "cpu", modality="timeseries", data=str(out / "corpus"), out=str(out / "run"), epochs=args.epochs,
        params=dict(PRIOR_PARAMS), device="cpu", progress=False, workers=1, cache_dir=str(out / "cache"),
        select="last", seed=0,
    )  # fmt: skip
    started = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - started
    print(f"{count} series; pretrained in {seconds:.0f} s; held-out generated series {result.val_accuracy:.3f} right")
    print(f"start a run from it: --init {result.checkpoint}")


if __name__ == "__main__":
    main()
