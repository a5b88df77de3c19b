"""Time-series maps that keep every variable: the value image, the joint recurrence plot, padding short series,
and scaling by the training data; and the maps old model files name still render as they did."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modality_adapters import get_adapter
from modality_adapters.timeseries_maps import joint_recurrence, recurrence, value_image
from unirep_errors import InvalidParameterError


def _bytes(x: np.ndarray) -> bytes:
    return json.dumps(np.asarray(x).tolist()).encode()


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)


def test_value_image_lays_variables_out_as_bands_of_rows() -> None:
    x = np.random.default_rng(0).normal(size=(8, 2))
    out = get_adapter("timeseries").decode(_bytes(x), representation="values", image_size=8)
    assert out.shape == (1, 8, 8)
    z = np.tanh(_z(x) / 2.0)
    np.testing.assert_allclose(out[0, :4].numpy(), np.repeat(z[None, :, 0], 4, 0), atol=1e-6)  # variable 0
    np.testing.assert_allclose(out[0, 4:].numpy(), np.repeat(z[None, :, 1], 4, 0), atol=1e-6)  # variable 1


def test_value_image_with_more_variables_than_rows_averages_neighbours() -> None:
    x = np.random.default_rng(1).normal(size=(4, 8))
    out = value_image(x)
    assert out.shape == (1, 4, 4)
    np.testing.assert_allclose(out[0], np.tanh(x.reshape(4, 4, 2).mean(-1).T / 2.0), atol=1e-6)


def test_joint_recurrence_is_the_distance_between_states() -> None:
    x = np.random.default_rng(2).normal(size=(6, 3))
    dist = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    np.testing.assert_allclose(joint_recurrence(x)[0], 2 * dist / dist.max() - 1, atol=1e-5)
    np.testing.assert_allclose(joint_recurrence(x[:, :1]), recurrence(x[:, :1]), atol=1e-5)  # one variable: the RP


@pytest.mark.parametrize("v", [1, 3, 200])
def test_joint_maps_take_any_variable_count_in_fixed_channels(v: int) -> None:
    adapter = get_adapter("timeseries")
    params = {"representation": "values+jrp+gasf", "image_size": 16}
    out = adapter.decode(_bytes(np.random.default_rng(v).normal(size=(30, v))), **params)
    assert out.shape == adapter.output_shape(**params) == (3, 16, 16)
    assert adapter.output_shape(**params, num_vars=v) == (2 + v, 16, 16)  # gasf per variable, joint maps once


def test_pad_keeps_the_steps_of_a_short_series_and_resamples_a_long_one() -> None:
    adapter = get_adapter("timeseries")
    params = {"representation": "values", "image_size": 16, "length_mode": "pad"}
    short = np.random.default_rng(3).normal(size=(7, 2))
    out = adapter.decode(_bytes(short), **params)[0].numpy()
    np.testing.assert_allclose(out[0, :7], np.tanh(_z(short)[:, 0] / 2.0), atol=1e-6)  # step for step
    np.testing.assert_allclose(out[:, 7:], 0.0)  # then the padding
    stretched = adapter.decode(_bytes(short), **{**params, "length_mode": "resample"})[0].numpy()
    assert not np.allclose(stretched[0, 7:], 0.0)
    long = np.random.default_rng(4).normal(size=(40, 2))
    torch.testing.assert_close(
        adapter.decode(_bytes(long), **params), adapter.decode(_bytes(long), **{**params, "length_mode": "resample"})
    )
    with pytest.raises(InvalidParameterError, match="pad"):
        adapter.resolve_params(representation="embedding", num_vars=2, length_mode="pad")


def test_dataset_normalization_keeps_levels_that_series_normalization_removes() -> None:
    adapter = get_adapter("timeseries")
    base = np.random.default_rng(5).normal(size=(20, 2))
    shifted = base + np.array([3.0, 0.0])
    scale = {"normalize": "dataset", "num_vars": 2, "data_mean": [1.0, 0.0], "data_std": [2.0, 1.0]}
    params = {"representation": "values", "image_size": 20}
    torch.testing.assert_close(adapter.decode(_bytes(base), **params), adapter.decode(_bytes(shifted), **params))
    low, high = (adapter.decode(_bytes(x), **params, **scale)[0].numpy() for x in (base, shifted))
    np.testing.assert_allclose(low[0], np.tanh((base[:, 0] - 1.0) / 2.0 / 2.0), atol=1e-6)
    assert (high[:10] > low[:10]).all() and np.allclose(high[10:], low[10:])  # variable 0 moved up, 1 did not
    p = adapter.resolve_params(**params, **scale)
    assert p.data_mean == (1.0, 0.0) and json.loads(json.dumps(p.as_dict()))["data_std"] == [2.0, 1.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"normalize": "dataset", "num_vars": 2},
        {"normalize": "dataset", "num_vars": 0, "data_mean": [0.0], "data_std": [1.0]},
        {"normalize": "dataset", "num_vars": 2, "data_mean": [0.0, 1.0], "data_std": [1.0, 0.0]},
        {"normalize": "dataset", "num_vars": 1, "data_mean": ["x"], "data_std": [1.0]},
        {"normalize": "global"},
        {"length_mode": "stretch"},
    ],
)
def test_invalid_normalization_params(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        get_adapter("timeseries").resolve_params(**bad)


def test_params_of_a_model_file_written_before_the_joint_maps_render_as_before() -> None:
    """A trained file carries every param it was trained with; the fields added since take values that change
    nothing, so its maps are the per-variable (or pooled) Gramian fields and recurrence plots they always were."""
    adapter = get_adapter("timeseries")
    old = {"representation": "gasf+gadf+rp", "num_vars": 0, "seq_len": 64, "length_mode": "resample"}
    old |= {"image_size": 64, "d_model": 64, "embedding_layout": "time_axis", "freq": "h", "preset": ""}
    x = np.random.default_rng(6).normal(size=(50, 3))
    out = adapter.decode(_bytes(x), **old)
    assert out.shape == (3, 64, 64)
    per_variable = adapter.decode(_bytes(x), **{**old, "num_vars": 3})
    assert per_variable.shape == (9, 64, 64)
    torch.testing.assert_close(out, per_variable.reshape(3, 3, 64, 64).mean(1))
