"""The map search's trials train as the run trains: the same augmentation of each batch, seeded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modality_adapters import TimeSeriesAdapter
from tests.training.helpers import small_config
from training.series_trials import ridge_score, trained_score

PARAMS = {"num_vars": 1, "image_size": 16, "seq_len": 16, "representation": "values", "normalize": "series"}


def _series(n: int, seed: int) -> list[tuple[np.ndarray, str]]:
    """Rising and falling ramps with noise: any trial learns them."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1.0, 1.0, 16)
    out = []
    for i in range(n):
        label = "up" if i % 2 else "down"
        values = (ramp if label == "up" else -ramp) + 0.2 * rng.normal(size=16)
        out.append((values[:, None], label))
    return out


def _count_augment(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = TimeSeriesAdapter.augment

    def counted(self: TimeSeriesAdapter, cached: torch.Tensor, generator: torch.Generator, **params: Any) -> Any:
        calls[0] += 1
        return original(self, cached, generator, **params)

    monkeypatch.setattr(TimeSeriesAdapter, "augment", counted)
    return calls


@pytest.mark.parametrize("augment", [True, False])
def test_a_trial_augments_its_batches_exactly_when_the_run_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, augment: bool
) -> None:
    cfg = small_config("timeseries", tmp_path, tmp_path / "out", tmp_path / "cache", augment=augment, seed=3)
    calls = _count_augment(monkeypatch)
    right, held, loss = trained_score(PARAMS, _series(12, 0), _series(8, 1), cfg, "unireplknet_a", steps=5)
    assert held == 8 and 0 <= right <= 8 and np.isfinite(loss)
    assert calls[0] == (5 * cfg.batch_size if augment else 0)


def test_a_trial_is_repeatable_and_the_seed_matters(tmp_path: Path) -> None:
    fit, held = _series(12, 0), _series(10, 1)

    def tally(seed: int) -> tuple[int, int, float]:
        cfg = small_config("timeseries", tmp_path, tmp_path / "out", tmp_path / "cache", seed=seed)
        return trained_score(PARAMS, fit, held, cfg, "unireplknet_a", steps=6)

    assert tally(0) == tally(0)
    assert tally(0)[2] != tally(1)[2]


def test_the_ridge_trial_fits_on_the_unaugmented_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_config("timeseries", tmp_path, tmp_path / "out", tmp_path / "cache", seed=0)
    calls = _count_augment(monkeypatch)
    right, held, _ = ridge_score(PARAMS, _series(16, 0), _series(10, 1), cfg, "unireplknet_a", steps=0)
    assert calls[0] == 0 and held == 10 and right >= 9  # the ramps' direction is plain in the untrained features
