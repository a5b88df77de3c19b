"""The ``near`` map: a series' nearness to prototype series the model stores, drawn the same in training and serving."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modality_adapters import get_adapter
from modality_adapters.timeseries_maps import nearness
from unirep_errors import InvalidParameterError


def _bytes(x: np.ndarray) -> bytes:
    return json.dumps(np.asarray(x).tolist()).encode()


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)


def test_nearness_is_one_minus_the_rms_distance_to_each_prototype_in_order() -> None:
    rng = np.random.default_rng(0)
    x, protos = rng.normal(size=(4, 2)), rng.normal(size=(5, 4, 2))
    out = nearness(x, protos)
    assert out.shape == (1, 4, 4)
    want = np.clip(1 - np.sqrt(((protos - x) ** 2).mean(axis=(1, 2))), -1, 1)
    np.testing.assert_allclose(out.ravel()[:5], want, atol=1e-6)
    assert not out.ravel()[5:].any()  # no prototype there
    assert nearness(protos[2], protos).ravel()[2] == pytest.approx(1.0)  # a prototype is nearest itself


def test_the_adapter_draws_near_against_the_prototypes_in_its_params() -> None:
    adapter = get_adapter("timeseries")
    rng = np.random.default_rng(1)
    series = [rng.normal(size=(30, 1)) for _ in range(3)]
    fitted = [adapter.fitted(s, image_size=8, num_vars=1) for s in series]
    np.testing.assert_allclose(
        fitted[0], _z(np.interp(np.linspace(0, 1, 8), np.linspace(0, 1, 30), series[0][:, 0]))[:, None]
    )
    params = {"representation": "values+near", "image_size": 8, "num_vars": 1}
    params["prototypes"] = [f.ravel().tolist() for f in fitted]
    assert adapter.output_shape(**params) == (2, 8, 8)
    out = adapter.decode(_bytes(series[1]), **params)
    assert out[1].flatten()[1] == pytest.approx(1.0, abs=1e-5) and out[1].flatten()[0] < 0.9
    cached = adapter.decode_for_training(_bytes(series[1]), **params)
    np.testing.assert_allclose(adapter.training_input(cached, **params), out)  # training sees what serving sees
    json_params = json.loads(json.dumps(params))  # as a model file carries them
    np.testing.assert_allclose(adapter.decode(_bytes(series[1]), **json_params), out)


@pytest.mark.parametrize(
    "bad",
    [
        {"representation": "near", "num_vars": 1},  # no prototypes
        {"representation": "near", "num_vars": 0, "prototypes": [[0.0] * 8]},  # any variable count
        {"representation": "near", "num_vars": 1, "prototypes": [[0.0] * 7]},  # wrong length
        {"representation": "near", "num_vars": 1, "prototypes": [[0.0] * 4] * 17, "image_size": 4},  # > 4 x 4
        {"representation": "near", "num_vars": 1, "prototypes": [[float("nan")] * 8]},
        {"representation": "near", "num_vars": 1, "prototypes": "not a list"},
    ],
)
def test_invalid_prototypes(bad: dict[str, object]) -> None:
    params = {"image_size": 8, **bad}
    with pytest.raises(InvalidParameterError):
        get_adapter("timeseries").resolve_params(**params)
