"""``--head ridge``: the backbone as its seed made it, the head solved in closed form; and the time-series map search
choosing it only when it is clearly ahead of training on held-out training series."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from modality_adapters import get_adapter
from servable.build import build_served_model
from service.settings import ModalitySettings
from tests.training.helpers import make_dataset, small_config
from training import evaluate, series_params, train
from training.config import TrainConfig
from training.data import discover
from training.modeling import build_model
from training.series_holdouts import FOLDS
from training.series_params import choose_series_params, ridge_is_clearly_ahead
from unirep_errors import InvalidParameterError

SMALL = {"image_size": 16}
PERIODS = (3.0, 5.0, 8.0, 13.0, 21.0, 34.0)


def periodic_series(root: Path, per_class: int, seed: int, classes: int = 4) -> Path:
    """Classes told apart by the period of a noisy wave of random phase and amplitude (48 steps, one variable)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(48)
    for period in PERIODS[:classes]:
        folder = root / f"p{int(period)}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            wave = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * steps / period + rng.uniform(0, 2 * np.pi))
            values = wave + 0.2 * rng.normal(size=steps.shape)
            (folder / f"{i}.csv").write_text("\n".join(f"{v:.5f}" for v in values) + "\n")
    return root


@pytest.fixture(scope="module")
def ridge_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("ridge")
    data, test = periodic_series(root / "train", 10, 0), periodic_series(root / "test", 8, 1)
    params = {**SMALL, "representation": "values+gasf+gadf+rp"}
    cfg = small_config("timeseries", data, root / "out", root / "cache", params=params, head="ridge", seed=5)
    train(cfg)
    return cfg, test, json.loads((root / "out" / "metrics.json").read_text())


def test_the_ridge_head_makes_no_training_step_and_keeps_the_seeded_backbone(
    ridge_run: tuple[TrainConfig, Path, dict[str, object]],
) -> None:
    cfg, _, metrics = ridge_run
    schedule = metrics["schedule"]
    assert isinstance(schedule, dict) and schedule["optimizer_steps"] == 0
    notes = metrics["notes"]
    assert isinstance(notes, list) and any("ridge regression on the features of" in n for n in notes)
    served = build_served_model(
        ModalitySettings(weights=str(Path(cfg.out) / "model.safetensors")).resolve("timeseries"),
        get_adapter("timeseries"),
    )
    assert served.module is not None
    torch.manual_seed(cfg.seed)  # the network the run started from: same seed, same shape
    fresh = build_model("timeseries", "unireplknet_a", 4, 4, served.params)
    state = served.module.state_dict()
    stem = next(k for k in state if k.endswith("downsample_layers.0.0.weight"))
    torch.testing.assert_close(state[stem], fresh.state_dict()[stem])  # the backbone was not trained
    head = next(k for k in state if k.endswith("head.weight"))
    assert not torch.allclose(state[head], fresh.state_dict()[head])  # the head was solved


def test_the_ridge_head_classifies_unseen_series_and_serves_as_evaluated(
    ridge_run: tuple[TrainConfig, Path, dict[str, object]],
) -> None:
    cfg, test, metrics = ridge_run
    deploy = metrics["deploy_check"]
    assert isinstance(deploy, dict) and deploy["passed"]
    report = evaluate("timeseries", test, Path(cfg.out) / "model.safetensors", device="cpu", workers=1)
    assert report.accuracy >= 0.75  # 32 series of 4 periods from 30 training ones; an unfitted head: chance (0.25)


def test_the_search_scores_the_ridge_head_and_keeps_training_where_it_is_not_clearly_ahead(tmp_path: Path) -> None:
    """Six periods, six series each: here 20 trial steps of training come close to the solved head (34 against 36
    of 60 held-out series, the folds dealt twice), short of its margin, so the run trains; the note says both."""
    data = periodic_series(tmp_path / "train", 6, 2, classes=6)
    cfg = small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", params=dict(SMALL), val_fraction=0.2)
    train(replace(cfg, workers=None))  # as a user runs it: on a CPU, the trials one process a core
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    choice = next(n for n in metrics["notes"] if n.startswith("map: "))
    assert "the ridge head, same maps:" in choice and "(training kept)" in choice
    assert metrics["schedule"]["optimizer_steps"] > 0


@pytest.mark.parametrize("named", [{"head": "train"}, {"head": "ridge"}, {"freeze_backbone": True}])
def test_a_run_that_names_its_head_is_not_second_guessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: dict[str, object]
) -> None:
    """The maps are still searched, by trials (faked here), but the ridge head is never scored against training."""

    def trained(params: dict, fit: list, held: list, cfg: TrainConfig, variant: str, steps: int) -> tuple:
        return len(held) // 2, len(held), 0.0

    def ridge(*args: object) -> tuple:
        raise AssertionError("the ridge head was scored for a run that named its head")

    monkeypatch.setattr(series_params, "trained_score", trained)
    monkeypatch.setattr(series_params, "ridge_score", ridge)
    data = periodic_series(tmp_path / "train", 6, 0)
    cfg = small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", params=dict(SMALL), **named)
    choice = choose_series_params(discover(data, "timeseries"), dict(SMALL), cfg, "unireplknet_a")
    assert "chosen by holdout accuracy" in choice.note and "ridge" not in choice.note and choice.head is None


@pytest.mark.parametrize("augment", [True, False])
def test_the_ridge_head_is_weighed_against_the_chosen_maps_trial_without_augmentation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, augment: bool
) -> None:
    """Trials score the maps as the run trains (augmented), but the ridge head's margin was measured against trials
    without augmentation, which learn faster in a short trial: that trial is the one it must beat, run once more for
    the chosen map only. Scores faked: a trial without augmentation gets every held-out series right, an augmented
    one half of them, the ridge head four fifths."""
    runs: list[bool] = []

    def trained(params: dict, fit: list, held: list, cfg: TrainConfig, variant: str, steps: int) -> tuple:
        runs.append(cfg.augment)
        return (len(held) // 2 if cfg.augment else len(held)), len(held), 0.0

    def ridge(params: dict, fit: list, held: list, cfg: TrainConfig, variant: str, steps: int) -> tuple:
        return int(0.8 * len(held)), len(held), 0.0

    monkeypatch.setattr(series_params, "trained_score", trained)
    monkeypatch.setattr(series_params, "ridge_score", ridge)
    data = periodic_series(tmp_path / "train", 6, 0)
    cfg = small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", params=dict(SMALL), augment=augment)
    choice = choose_series_params(discover(data, "timeseries"), dict(SMALL), cfg, "unireplknet_a")
    assert choice.head is None and "against 48/48 for the chosen map's trial without augmentation" in choice.note
    trials = 2 * FOLDS  # 24 series: three folds, dealt twice
    searched = 3 * trials  # three candidates (series shorter than two map sides)
    if augment:  # the search's trials augmented (24 of 48 each: ridge 36 would be clearly ahead of them)
        assert runs == [True] * searched + [False] * trials
    else:  # a run without augmentation: its own trials are the ones to beat, nothing runs twice
        assert runs == [False] * searched


@pytest.mark.parametrize(
    ("trained", "ridge", "chosen"),
    [
        ((39, 100, 0.0), (51, 100, 0.0), True),  # 12 of 100 ahead: beyond 10 %
        ((39, 100, 0.0), (48, 100, 0.0), False),  # 9 of 100: within what the whole run gains on a short trial
        ((43, 50, 0.0), (48, 50, 0.0), True),  # 5 of 50
        ((43, 50, 0.0), (47, 50, 0.0), False),
        ((10, 12, 0.0), (12, 12, 0.0), True),  # 2 of 12: the floor of two series
        ((10, 12, 0.0), (11, 12, 0.0), False),
    ],
)
def test_the_ridge_head_must_be_clearly_ahead(
    trained: tuple[int, int, float], ridge: tuple[int, int, float], chosen: bool
) -> None:
    assert ridge_is_clearly_ahead(trained, ridge) is chosen


def test_bad_head_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="--head must be one of"):
        small_config("timeseries", tmp_path, tmp_path / "o", tmp_path / "c", head="lasso").check()
    with pytest.raises(InvalidParameterError, match="nothing to --resume"):
        small_config("timeseries", tmp_path, tmp_path / "o", tmp_path / "c", head="ridge", resume=tmp_path).check()


def test_the_ridge_head_works_for_any_modality_through_the_cli(tmp_path: Path) -> None:
    """``unirep train image ... --head ridge``: the images' features in batches, no step, and a file that serves
    as it was evaluated (the deploy check)."""
    from service.cli import main as cli

    data = make_dataset(tmp_path / "data", "image", per_class=6)
    out = tmp_path / "out"
    argv = ["train", "image", str(data), "--out", str(out), "--head", "ridge", "--param", "input_size=32"]
    assert cli([*argv, "--device", "cpu", "--workers", "1", "--cache-dir", str(tmp_path / "c"), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schedule"]["optimizer_steps"] == 0 and metrics["deploy_check"]["passed"]
    assert any("ridge regression on the features of" in n for n in metrics["notes"])
