"""The 1-D FCN baseline of the dev split: it learns what tells generated series apart, from any number of variables
and unequal lengths, and a seed gives the same figure twice."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.ts_fcn import fcn, map_fcn
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


WIDE_MAP = {"representation": "values+plot", "length_mode": "paa", "time_steps": 32, "image_size": 8}
"""A small map with time across its 32 columns, as the wide map of long series has."""


@pytest.mark.parametrize("variables", [1, 3])
def test_the_map_fcn_reads_the_waves_off_a_map_that_keeps_them(variables: int) -> None:
    assert map_fcn(_split(variables), WIDE_MAP, epochs=30) >= 0.9


def test_the_map_fcn_stays_near_chance_on_a_map_without_the_signal() -> None:
    """A fast and a slow sine spend the same share of their time at each level: their sorted values (the quantile
    map) look alike, so the FCN reading that map must not tell them apart."""
    assert map_fcn(_split(1), {**WIDE_MAP, "representation": "quantile"}, epochs=30) <= 0.75


@pytest.mark.parametrize("representation", ["values+gasf+gadf+rp", "embedding"])
def test_the_map_fcn_refuses_a_map_whose_columns_are_not_steps(representation: str) -> None:
    with pytest.raises(ValueError, match="time across the columns"):
        map_fcn(_split(1), {**WIDE_MAP, "representation": representation, "time_steps": 0}, epochs=1)
