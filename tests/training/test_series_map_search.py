"""``unirep train timeseries`` chooses the map on the training split, records it in the model file, and the served
model (``unirep eval``, ``unirep serve``) applies it; an explicit representation skips the choice."""

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
from tests.training.helpers import small_config
from training import evaluate, train
from training.data import Example
from training.series_holdouts import DEALT_TWICE_BELOW, FOLDS, holdouts
from training.series_params import (
    DISTRIBUTION_REPRESENTATION,
    MARGIN,
    WIDE_MOST,
    candidates,
    pick,
    ridge_candidates,
)
from unirep_errors import DatasetError, InvalidParameterError

SMALL = {"image_size": 16}


def level_series(root: Path, per_class: int, seed: int) -> Path:
    """Two classes told apart only by the level of the first variable: per-series scaling erases them, while
    scaling by the training data keeps them. Twelve steps, shorter than the 16-step map."""
    rng = np.random.default_rng(seed)
    for label, level in (("high", 1.5), ("low", -1.5)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            walk = np.cumsum(rng.normal(size=(12, 2)), axis=0) * 0.3
            walk[:, 0] += level
            rows = "\n".join(f"{a:.5f},{b:.5f}" for a, b in walk)
            (root / label / f"{i}.csv").write_text(f"a,b\n{rows}\n")
    return root


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("search")
    data, test = level_series(root / "train", 16, 0), level_series(root / "test", 10, 1)
    cfg = small_config("timeseries", data, root / "out", root / "cache", params=dict(SMALL), epochs=4, min_steps=40)
    result = train(replace(cfg, workers=None))  # as a user runs it: on a CPU, the trials one process a core
    return result.weights, test, json.loads((root / "out" / "metrics.json").read_text())


def test_the_map_is_chosen_on_the_training_split_and_recorded(searched: tuple[Path, Path, dict[str, object]]) -> None:
    weights, _, metrics = searched
    params = metrics["params"]
    assert isinstance(params, dict)
    assert params["normalize"] == "dataset" and len(params["data_mean"]) == 2  # the levels are the signal
    assert params["length_mode"] == "pad"  # 12 steps into a 16-step map
    notes = metrics["notes"]
    assert isinstance(notes, list) and any("chosen by holdout accuracy" in n for n in notes)
    how = f"{FOLDS} folds: each of the 24 training series held out in each of 2 dealings of the folds"
    assert any(how in n for n in notes)  # a holdout of 6 would be noise, one dealing of 24 series a draw
    adapter = get_adapter("timeseries")
    served = build_served_model(ModalitySettings(weights=str(weights)).resolve("timeseries"), adapter)
    assert served.params["normalize"] == "dataset"
    assert list(served.params["data_mean"]) == pytest.approx(params["data_mean"])


def test_the_served_model_applies_the_chosen_map(searched: tuple[Path, Path, dict[str, object]]) -> None:
    weights, test, _ = searched
    report = evaluate("timeseries", test, weights, device="cpu", workers=1)
    assert report.accuracy >= 0.9
    adapter = get_adapter("timeseries")
    served = build_served_model(ModalitySettings(weights=str(weights)).resolve("timeseries"), adapter)
    assert served.module is not None
    data = (test / "high" / "0.csv").read_bytes()
    cached = adapter.decode_for_training(data, **served.params)
    torch.testing.assert_close(adapter.training_input(cached, **served.params), adapter.decode(data, **served.params))


def test_an_explicit_representation_skips_the_search(tmp_path: Path) -> None:
    data = level_series(tmp_path / "train", 16, 0)
    params = {**SMALL, "representation": "values"}
    train(small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", params=params))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["params"]["representation"] == "values" and metrics["params"]["normalize"] == "series"
    assert not any("map:" in n for n in metrics["notes"])


def test_long_series_lead_the_search_with_wide_maps() -> None:
    """Wide maps come first where they join, each series on its own scale and then on the data's: the first candidate
    is kept unless another wins by the margin. The ridge head also reads the sorted values at the same width."""

    def widths(lengths: list[int]) -> list[int]:
        return [c.get("time_steps", 0) for c in candidates([np.zeros((t, 2)) for t in lengths], 32)]

    assert widths([500, 90, 128, 400, 100]) == [128, 128, 0, 0, 0]  # the median series holds four map sides
    assert widths([500, 90, 150, 400, 100]) == [160, 160, 0, 0, 0]  # a column a step, in multiples of 32
    assert widths([5000, 1460] * 3) == [WIDE_MOST * 32] * 2 + [0, 0, 0]  # at most eight map sides
    assert widths([500, 90, 120, 400, 100]) == [0, 0, 0]  # the median is short: a square map keeps most of it
    own, data = candidates([np.zeros((300, 1))] * 3, 16)[:2]
    assert (own["normalize"], data["normalize"]) == ("series", "dataset")
    assert own["length_mode"] == data["length_mode"] == "paa"
    assert get_adapter("timeseries").output_shape(**own, image_size=16)[1:] == (16, WIDE_MOST * 16)


def test_the_ridge_head_also_reads_the_sorted_values_where_a_wide_map_joins() -> None:
    long = candidates([np.zeros((300, 1))] * 3, 16)
    readouts = ridge_candidates(long)
    assert readouts[:-1] == long
    distribution = readouts[-1]
    assert distribution["representation"] == DISTRIBUTION_REPRESENTATION
    assert (distribution["length_mode"], distribution["time_steps"]) == ("paa", WIDE_MOST * 16)
    assert get_adapter("timeseries").output_shape(**distribution, image_size=16, num_vars=1) == (1, 16, WIDE_MOST * 16)
    short = candidates([np.zeros((40, 1))] * 3, 16)
    assert ridge_candidates(short) == short


def test_a_wide_map_trains_and_serves_as_it_was_trained(tmp_path: Path) -> None:
    data = level_series(tmp_path / "train", 12, 0)
    wide = {**SMALL, "representation": "values+plot+cwt", "time_steps": 64, "length_mode": "paa"}
    result = train(small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", params=wide, min_steps=10))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["params"]["time_steps"] == 64 and not any("map:" in n for n in metrics["notes"])
    adapter = get_adapter("timeseries")
    served = build_served_model(ModalitySettings(weights=str(result.weights)).resolve("timeseries"), adapter)
    data_bytes = (data / "high" / "0.csv").read_bytes()
    decoded = adapter.decode(data_bytes, **served.params)
    assert tuple(decoded.shape) == (1 + 2 + 2, 16, 64)
    cached = adapter.decode_for_training(data_bytes, **served.params)
    torch.testing.assert_close(adapter.training_input(cached, **served.params), decoded)


def _examples(per_class: dict[str, int]) -> list[Example]:
    return [Example(label=c, payload=b"[1, 2]", name=f"{c}{i}") for c, n in per_class.items() for i in range(n)]


def test_a_small_training_split_is_cross_validated_every_series_held_out_once() -> None:
    examples = _examples({"a": 40, "b": 20, "c": 12})  # a quarter would be 18 series
    splits = holdouts(examples, seed=0)
    assert len(splits) == FOLDS and {s.seed for s in splits} == {0}
    held = [e for s in splits for e in s.held]
    assert sorted(e.name for e in held) == sorted(e.name for e in examples)  # each exactly once
    for split in splits:
        assert set(split.fit).isdisjoint(split.held) and len(split.fit) + len(split.held) == len(examples)
        assert {e.label for e in split.fit} == {"a", "b", "c"}  # every class still learned in every fold
        counts = {c: sum(e.label == c for e in split.held) for c in "abc"}
        assert counts["a"] in (13, 14) and counts["b"] in (6, 7) and counts["c"] == 4  # stratified
    assert [x.name for x in holdouts(examples, seed=0)[0].held] == [x.name for x in splits[0].held]  # seeded
    assert [x.name for x in holdouts(examples, seed=1)[0].held] != [x.name for x in splits[0].held]


def test_fewer_series_are_dealt_into_folds_twice_each_dealing_with_its_own_seed() -> None:
    examples = _examples({"a": 20, "b": 10, "c": 6})
    splits = holdouts(examples, seed=5)
    assert len(examples) < DEALT_TWICE_BELOW and len(splits) == 2 * FOLDS
    assert [s.seed for s in splits] == [5] * FOLDS + [6] * FOLDS
    for dealing in (splits[:FOLDS], splits[FOLDS:]):
        held = [e.name for s in dealing for e in s.held]
        assert sorted(held) == sorted(e.name for e in examples)  # each series held out once per dealing
    assert [e.name for e in splits[0].held] != [e.name for e in splits[FOLDS].held]  # dealt anew
    assert [e.name for e in splits[FOLDS].held] == [e.name for e in holdouts(examples, seed=6)[0].held]


def test_a_large_training_split_keeps_one_holdout_and_single_examples_cannot_be_held_out() -> None:
    splits = holdouts(_examples({"a": 70, "b": 60}), seed=0)
    assert len(splits) == 1 and len(splits[0].held) == round(0.25 * 70) + round(0.25 * 60)
    with pytest.raises(DatasetError, match="single example"):
        holdouts(_examples({"a": 20, "b": 1}), seed=0)


@pytest.mark.parametrize(
    ("tallies", "chosen"),
    [
        ([(10, 12, 5.0), (11, 12, 1.0), (9, 12, 0.5)], 0),  # one series better: noise, the default stays
        ([(10, 12, 5.0), (11, 12, 1.0), (12, 12, 3.0)], 2),  # two better: replaced
        ([(30, 36, 9.0), (33, 36, 4.0), (33, 36, 2.0)], 2),  # a tie on right answers goes to the lower loss
        ([(33, 36, 9.0), (33, 36, 1.0), (20, 36, 1.0)], 0),
    ],
)
def test_the_default_is_replaced_only_by_the_margin(tallies: list[tuple[int, int, float]], chosen: int) -> None:
    assert MARGIN == 2
    assert pick(tallies) == chosen


@pytest.mark.parametrize(
    "params", [{"image_size": 2}, {"image_size": 2, "representation": "values"}, {"representation": "nope"}]
)
def test_invalid_series_params_are_refused_before_training(tmp_path: Path, params: dict[str, object]) -> None:
    data = level_series(tmp_path / "train", 16, 0)
    with pytest.raises(InvalidParameterError):
        train(small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", params={**SMALL, **params}))
    assert not (tmp_path / "out" / "metrics.json").exists()
