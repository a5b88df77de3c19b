"""The 1-D FCN baseline of the dev split: it learns what tells generated series apart, from any number of variables
and unequal lengths, and a seed gives the same figure twice."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ts_fcn import fcn
from benchmarks.ucr import Split


def _waves(rng: np.random.Generator, per_class: int, variables: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Class 0 a fast wave, class 1 a slow one, each at a random phase and length (56-72 steps) under noise."""
    series, targets = [], []
    for label, period in enumerate((6.0, 18.0)):
        for _ in range(per_class):
            steps = np.arange(int(rng.integers(56, 73)))[:, None]
            phase = rng.uniform(0, 2 * np.pi, variables)[None, :]
            series.append(
                np.sin(2 * np.pi * steps / period + phase) + rng.normal(scale=0.3, size=(len(steps), variables))
            )
            targets.append(label)
    return series, np.array(targets)


def _split(variables: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    train_x, train_y = _waves(rng, 12, variables)
    test_x, test_y = _waves(rng, 10, variables)
    return Split("waves", train_x, train_y, test_x, test_y, ["fast", "slow"])


@pytest.mark.parametrize("variables", [1, 3])
def test_the_fcn_tells_generated_waves_apart(variables: int) -> None:
    assert fcn(_split(variables), epochs=30) >= 0.9


def test_the_fcn_scores_the_held_out_labels_not_its_own() -> None:
    split = _split(1)
    swapped = Split(split.name, split.train_x, split.train_y, split.test_x, 1 - split.test_y, split.labels)
    assert fcn(swapped, epochs=30) <= 0.1


def test_one_seed_gives_one_figure() -> None:
    split = _split(1, seed=3)
    assert fcn(split, epochs=5, seed=1) == fcn(split, epochs=5, seed=1)
