"""Long series into small maps: span means (``length_mode="paa"``) instead of picking steps, the line plot that
draws a univariate series instead of repeating it down the rows, and the fold that keeps ``n * n`` steps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modality_adapters import get_adapter
from modality_adapters.timeseries_maps import fold, gasf, line_plot, paa, render, resample
from unirep_errors import InvalidParameterError


def _bytes(x: np.ndarray) -> bytes:
    return json.dumps(np.asarray(x).tolist()).encode()


def test_paa_is_the_mean_of_equal_spans_weighting_split_steps_exactly() -> None:
    x = np.arange(10.0)[:, None]
    np.testing.assert_allclose(paa(x, 5)[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
    # 10 steps into 4 spans of 2.5: the first is steps 0, 1 and half of step 2
    np.testing.assert_allclose(paa(x, 4)[:, 0], [(0 + 1 + 1.0) / 2.5, (1.0 + 3 + 4) / 2.5, 5.8, 8.2])
    y = np.random.default_rng(0).normal(size=(97, 3))
    np.testing.assert_allclose(paa(y, 8).mean(0), y.mean(0), atol=1e-12)  # every step counts, once
    np.testing.assert_allclose(paa(y[:20], 32), resample(y[:20], 32))  # shorter: resampled up


def test_paa_keeps_spikes_that_picking_steps_drops() -> None:
    x = np.zeros((1460, 1))
    x[7::45] = 45.0  # a spike every 45 steps, between the steps linear resampling to 32 reads
    assert (resample(x, 32) < 0.5).sum() >= 28  # most picked steps fall between spikes: a flat line, two blips
    spans = paa(x, 32)[:, 0]  # every span of 45.6 steps holds one spike (two spans hold two)
    assert spans.min() > 0.9 and spans.max() < 2.0


def test_the_adapter_applies_paa_to_long_series_only() -> None:
    adapter = get_adapter("timeseries")
    long = np.cumsum(np.random.default_rng(1).normal(size=(500, 1)), axis=0)
    params = {"representation": "values", "image_size": 16, "length_mode": "paa"}
    cached = adapter.decode_for_training(_bytes(long), **params)[0].numpy()
    span_means = paa(long, 16)
    z = (span_means - span_means.mean(0)) / np.sqrt(span_means.var(0) + 1e-5)
    np.testing.assert_allclose(cached, z, atol=1e-9)
    short = long[:10]
    same = {**params, "length_mode": "resample"}
    np.testing.assert_allclose(adapter.decode(_bytes(short), **params), adapter.decode(_bytes(short), **same))
    assert not np.allclose(adapter.decode(_bytes(long), **params), adapter.decode(_bytes(long), **same))


def test_line_plot_lights_the_row_of_each_steps_value() -> None:
    x = np.asarray([[-3.0], [0.0], [3.0], [0.0]])
    out = line_plot(x)
    assert out.shape == (1, 4, 4) and out.min() >= -1.0 and out.max() <= 1.0
    rows = np.linspace(1.0, -1.0, 4)
    for step, value in enumerate(np.tanh(x[:, 0] / 2.0)):
        lit = int(np.argmin(np.abs(rows - value)))
        assert out[0, lit, step] > 0.5
    assert out[0, 0, 0] < -0.5 and out[0, 3, 2] < -0.5  # far from the line: dark
    two = line_plot(np.random.default_rng(2).normal(size=(8, 2)))
    np.testing.assert_allclose(two[1], line_plot(np.random.default_rng(2).normal(size=(8, 2))[:, 1:])[0])


def test_plot_is_a_per_variable_kind_of_the_adapter() -> None:
    adapter = get_adapter("timeseries")
    x = np.random.default_rng(3).normal(size=(40, 2))
    params = {"representation": "plot+gasf", "image_size": 16, "num_vars": 2}
    assert adapter.decode(_bytes(x), **params).shape == adapter.output_shape(**params) == (4, 16, 16)
    assert adapter.decode(_bytes(x), representation="plot", image_size=16).shape == (1, 16, 16)  # pooled


def test_fold_lays_the_steps_out_n_to_a_row() -> None:
    x = np.random.default_rng(4).normal(size=(16, 2))
    out = fold(x)
    assert out.shape == (2, 4, 4)
    np.testing.assert_allclose(out[1, 2], np.tanh(x[8:12, 1] / 2.0), atol=1e-6)  # row 2: steps 8-11
    np.testing.assert_allclose(out[0, :, 3], np.tanh(x[3::4, 0] / 2.0), atol=1e-6)  # a column: every 4th step
    with pytest.raises(ValueError, match="square"):
        fold(x[:15])


def test_beside_a_fold_the_other_kinds_see_span_means() -> None:
    x = np.random.default_rng(5).normal(size=(64, 1))
    out = render(x, ("fold", "gasf"), pool_variables=False)
    assert out.shape == (2, 8, 8)
    np.testing.assert_allclose(out[0], fold(x)[0])
    np.testing.assert_allclose(out[1], gasf(paa(x, 8))[0])


def test_a_fold_keeps_the_local_shape_of_a_long_series() -> None:
    adapter = get_adapter("timeseries")
    spikes = np.zeros((1000, 1))
    spikes[5::40] = 1.0  # 25 one-step spikes; a 16 x 16 fold keeps each one where it is
    params = {"image_size": 16, "length_mode": "paa", "num_vars": 1}
    assert adapter.output_shape(representation="fold+gasf", **params) == (2, 16, 16)
    folded = adapter.decode(_bytes(spikes), representation="fold", **params)[0].numpy().ravel()
    spans = [(step * 256 // 1000, (step + 1) * 256 // 1000) for step in range(5, 1000, 40)]  # 3.9 steps a span
    assert all(max(folded[a], folded[b]) > 0.5 for a, b in spans)  # each spike lights its span's pixel
    assert (folded > 0.5).sum() <= len(spans) * 2  # and nothing else


@pytest.mark.parametrize(
    "bad",
    [
        {"length_mode": "average"},
        {"representation": "plot+embedding", "num_vars": 1},
        {"representation": "fold", "image_size": 512},  # 262144 steps a variable
    ],
)
def test_invalid_length_modes_and_kinds(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        get_adapter("timeseries").resolve_params(**bad)
