"""Maps wider than tall (``time_steps``): a long series kept at many steps across the columns, with few rows.

A square map of side ``S`` keeps ``S`` steps of any series; a 16 x 128 map keeps 128 for twice a 32 x 32 map's
pixels. Only the kinds with time across the columns (value image, line plot, scalogram) can be wide.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from modality_adapters import get_adapter
from modality_adapters.timeseries_maps import line_plot, quantile_plot, render, scalogram, value_image
from tests.modality_adapters.test_timeseries_learnability import SIZE, held_out_accuracy
from unirep_errors import InvalidParameterError

WIDE = {"representation": "values+plot+cwt", "image_size": SIZE, "time_steps": 128, "length_mode": "paa"}


def _bytes(x: np.ndarray) -> bytes:
    return json.dumps(np.asarray(x).tolist()).encode()


def test_a_wide_map_has_image_size_rows_and_time_steps_columns() -> None:
    adapter = get_adapter("timeseries")
    series = np.random.default_rng(0).normal(size=(500, 3))
    out = adapter.decode(_bytes(series), **WIDE, num_vars=3)
    assert tuple(out.shape) == adapter.output_shape(**WIDE, num_vars=3) == (1 + 3 + 3, 16, 128)
    assert out.abs().max() <= 1.0
    pooled = adapter.decode(_bytes(series), **WIDE)  # any variable count: per-variable kinds averaged
    assert tuple(pooled.shape) == (3, 16, 128)


def test_rowed_kinds_default_to_square_and_take_any_row_count() -> None:
    x = np.random.default_rng(1).normal(size=(40, 2))
    for kind in (value_image, line_plot, scalogram, quantile_plot):
        np.testing.assert_array_equal(kind(x), kind(x, 40))
        assert kind(x, 8).shape[1:] == (8, 40)
    bands = value_image(x, 8)[0]
    np.testing.assert_allclose(bands[:4], np.tanh(x[:, 0] / 2.0)[None].repeat(4, 0), rtol=1e-6)
    np.testing.assert_allclose(bands[4:], np.tanh(x[:, 1] / 2.0)[None].repeat(4, 0), rtol=1e-6)
    assert render(x, ("values", "plot"), pool_variables=False, rows=8).shape == (3, 8, 40)


def test_the_quantile_plot_keeps_how_long_a_series_spends_at_each_level_and_drops_when() -> None:
    """Two power readings with the same on and off periods in another order map alike; their line plots do not. A
    series that spends more of its time on maps otherwise."""
    rng = np.random.default_rng(2)
    on_off = np.where(np.arange(256) % 64 < 16, 3.0, 0.0) + 0.05 * rng.normal(size=256)  # on a quarter of the time
    shuffled = np.roll(on_off, 37)[::-1]
    longer = np.where(np.arange(256) % 64 < 32, 3.0, 0.0) + 0.05 * rng.normal(size=256)  # on half of the time
    a, b, c = (quantile_plot(x[:, None], 16) for x in (on_off, shuffled, longer))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (1, 16, 256) and a.min() >= -1.0 and a.max() <= 1.0
    assert np.abs(line_plot(on_off[:, None], 16) - line_plot(shuffled[:, None], 16)).max() > 1.0
    assert np.abs(a - c).max() > 1.0
    adapter = get_adapter("timeseries")
    params = {"representation": "quantile+values", "image_size": 16, "time_steps": 256, "num_vars": 1}
    assert tuple(adapter.decode(_bytes(on_off[:, None]), **params).shape) == (2, 16, 256)


@pytest.mark.parametrize(
    "bad",
    [
        {"representation": "values+gasf", "time_steps": 128},
        {"representation": "rp", "time_steps": 128},
        {"representation": "fold", "time_steps": 128},
        {"representation": "values", "time_steps": 2},
        {"representation": "values", "time_steps": 10**6},
        {"representation": "values", "time_steps": 12.5},
    ],
)
def test_pairwise_kinds_and_bad_widths_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError):
        get_adapter("timeseries").decode(_bytes(np.zeros((50, 1)) + np.arange(50)[:, None]), **bad)


def burst(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` series of 1024 steps: noise, and somewhere a burst of 96 steps oscillating with a period of 16 steps
    (class 0) or 32 (class 1). Averaged into 16 spans of 64 steps both bursts vanish; in 128 spans of 8 they are
    two and four columns a period."""
    rng = np.random.default_rng(seed)
    series, labels = [], np.arange(n) % 2
    for label in labels:
        x = 0.3 * rng.normal(size=1024)
        start = int(rng.integers(0, 1024 - 96))
        period = 32 if label else 16
        x[start : start + 96] += 2.0 * np.sin(2 * np.pi * np.arange(96) / period + rng.uniform(0, 2 * np.pi))
        series.append(x[:, None])
    return series, labels


def test_a_wide_map_learns_a_detail_that_a_square_map_of_the_same_rows_averages_away() -> None:
    assert held_out_accuracy({**WIDE, "num_vars": 1}, burst) >= 0.9
    square = {"representation": "values+plot+cwt", "image_size": SIZE, "length_mode": "paa", "num_vars": 1}
    assert held_out_accuracy(square, burst) <= 0.7


def held_axis(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` series of 256 steps x 2 variables, the same kind of motion on both (noise and a random sinusoid);
    the class is the variable that also carries a constant pull of 1 (gravity on the axis that points down, which
    says how a wrist is held). Scaled to itself, each variable loses its constant: both classes look alike."""
    rng = np.random.default_rng(seed)
    series, labels = [], np.arange(n) % 2
    steps = np.arange(256)[:, None]
    for label in labels:
        motion = np.sin(2 * np.pi * steps / rng.uniform(16, 64, size=2) + rng.uniform(0, 2 * np.pi, size=2))
        pull = np.eye(2)[label]
        series.append(motion + 0.3 * rng.normal(size=(256, 2)) + pull)
    return series, labels


def test_a_wide_map_on_the_datas_scale_learns_what_scaling_each_series_erases() -> None:
    """The search's second wide candidate keeps the data's scale: how loud each variable is beside the others."""
    from modality_adapters.timeseries_params import dataset_scale

    wide = {**WIDE, "num_vars": 2}
    scale = dataset_scale(held_axis(96, 0)[0])  # the training series' scale, as the trainer takes it
    assert held_out_accuracy({**wide, "normalize": "dataset", **scale}, held_axis) >= 0.9
    assert held_out_accuracy({**wide, "normalize": "series"}, held_axis) <= 0.7
