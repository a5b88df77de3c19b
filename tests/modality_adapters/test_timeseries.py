"""Time-series adapter and embedding: parsing variants, normalization, time features, shapes and reshape math."""

from __future__ import annotations

import io
import json
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image

from modality_adapters import AdapterLimits, TimeSeriesEmbedding, get_adapter
from modality_adapters.timeseries import time_features
from modality_adapters.timeseries_embedding import embedding_map_size
from unirep_errors import InputTooLargeError, UndecodableInputError

P = {"representation": "embedding", "seq_len": 48, "num_vars": 3, "length_mode": "window"}


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("stamps", [True, False])
@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_csv_variants(media, header, stamps, sep) -> None:
    out = get_adapter("timeseries").decode(media.series_csv(header=header, stamps=stamps, sep=sep), **P)
    assert out.shape == (1, 48, 3 + 4) and out.dtype == torch.float32
    marks = out[0, :, 3:]
    assert bool((marks != 0).any()) == stamps


def test_csv_and_json_agree(media) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3))
    csv = "\n".join(",".join(repr(float(v)) for v in row) for row in values).encode()
    adapter = get_adapter("timeseries")
    torch.testing.assert_close(adapter.decode(csv, **P), adapter.decode(json.dumps(values.tolist()).encode(), **P))


def test_normalization_is_per_variable_over_the_last_window() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(60, 3)) * [1, 10, 100] + [0, 5, -50]
    out = get_adapter("timeseries").decode(json.dumps(values.tolist()).encode(), **P)[0, :, :3].double()
    window = values[-48:]
    expected = (window - window.mean(0)) / np.sqrt(window.var(0) + 1e-5)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_univariate_json_and_object_with_timestamps(media) -> None:
    adapter = get_adapter("timeseries")
    flat = adapter.decode(json.dumps(list(range(48))).encode(), **{**P, "num_vars": 1})
    assert flat.shape == (1, 48, 5)
    obj = adapter.decode(media.series_json(stamps=True), **P)
    assert obj.shape == (1, 48, 7) and (obj[0, :, 3:] != 0).any()


def test_time_features_match_the_official_definition() -> None:
    stamp = datetime(2024, 3, 5, 17, 42, 9)  # a Tuesday, day 65 of the year
    hour = time_features([stamp], "h")[0]
    np.testing.assert_allclose(hour, [17 / 23 - 0.5, 1 / 6 - 0.5, 4 / 30 - 0.5, 64 / 365 - 0.5])
    assert time_features([stamp], "t").shape == (1, 5) and time_features([stamp], "d").shape == (1, 3)
    np.testing.assert_allclose(time_features([stamp], "s")[0, :2], [9 / 59 - 0.5, 42 / 59 - 0.5])


def test_actionable_errors(media) -> None:
    adapter = get_adapter("timeseries")
    with pytest.raises(UndecodableInputError, match="3 variable\\(s\\); this model expects 11"):
        adapter.decode(media.series_csv(), preset="corrformer")
    with pytest.raises(UndecodableInputError, match="20 time step\\(s\\); this model needs at least 48"):
        adapter.decode(media.series_csv(t=20), **P)
    with pytest.raises(InputTooLargeError):
        get_adapter("timeseries", AdapterLimits(max_series_length=30)).decode(media.series_csv(), **P)


@pytest.mark.parametrize(("seq_len", "d_model", "hw"), [(48, 768, (192, 192)), (96, 96, (96, 96)), (24, 100, (48, 50))])
def test_embedding_map_size(seq_len, d_model, hw) -> None:
    assert embedding_map_size(seq_len, d_model) == hw


def test_embedding_official_shapes_and_reshape_arithmetic(media) -> None:
    torch.manual_seed(0)
    adapter = get_adapter("timeseries")
    x = adapter.decode(media.series_csv(t=60, v=11), preset="corrformer")
    assert adapter.embedding_shape(preset="corrformer") == (1, 192, 192)
    emb = TimeSeriesEmbedding(num_vars=11, d_model=768, seq_len=48).eval()
    batch = torch.stack([x, x * 0.5])
    out = emb(batch)
    assert out.shape == (2, 1, 192, 192)
    # Reference: conv over time with circular padding + linear time features, then row-major (T, d) -> (H, W).
    values, marks = batch[:, 0, :, :11], batch[:, 0, :, 11:]
    padded = torch.cat([values[:, -1:], values, values[:, :1]], dim=1).transpose(1, 2)
    conv = torch.nn.functional.conv1d(padded, emb.value_embedding.tokenConv.weight).transpose(1, 2)
    ref = conv + marks @ emb.temporal_embedding.embed.weight.T
    torch.testing.assert_close(out, ref.reshape(2, 1, 192, 192), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[0, 0].reshape(48, 768)[5], emb.embed(batch)[0, 5])  # row-major layout
    names = set(emb.state_dict())
    assert names == {"value_embedding.tokenConv.weight", "temporal_embedding.embed.weight"}


def test_embedding_rejects_wrong_shapes() -> None:
    emb = TimeSeriesEmbedding(num_vars=3, d_model=16, seq_len=8)
    assert emb(torch.zeros(1, 1, 8, 7)).shape == (1, 1, *embedding_map_size(8, 16))
    with pytest.raises(ValueError, match="expects"):
        emb(torch.zeros(1, 1, 8, 6))
    with pytest.raises(ValueError, match="must equal"):
        TimeSeriesEmbedding(num_vars=3, d_model=16, seq_len=8, height=10, width=10)


def test_preview(media) -> None:
    adapter = get_adapter("timeseries")
    png = adapter.preview(adapter.decode(media.series_csv(), **P))
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert Image.open(io.BytesIO(adapter.preview(torch.randn(1, 192, 192)))).size == (192, 192)


# --- any number of variables, any length: the weight-free maps, the params a trained model carries ----------------


def _series(t: int, v: int, seed: int = 0) -> bytes:
    return json.dumps(np.random.default_rng(seed).normal(size=(t, v)).round(5).tolist()).encode()


@pytest.mark.parametrize("v", [1, 2, 7, 40])
@pytest.mark.parametrize("t", [2, 3, 100, 5000])
def test_default_takes_any_variables_and_length(t: int, v: int) -> None:
    adapter = get_adapter("timeseries")
    out = adapter.decode(_series(t, v))
    # The value image of all variables, then gasf, gadf and rp averaged over variables.
    assert out.shape == adapter.output_shape() == (4, 64, 64)
    assert torch.isfinite(out).all() and out.abs().max() <= 1.0 + 1e-6


def test_pooled_maps_are_the_mean_of_per_variable_maps() -> None:
    adapter = get_adapter("timeseries")
    data = _series(50, 4)
    pooled = adapter.decode(data)
    per_var = adapter.decode(data, num_vars=4)
    assert per_var.shape == (13, 64, 64)  # kind-major: the value image, 4 gasf maps, then 4 gadf, then 4 rp
    torch.testing.assert_close(pooled[0], per_var[0])  # the value image is the same at any variable count
    torch.testing.assert_close(pooled[1:], per_var[1:].reshape(3, 4, 64, 64).mean(1))


def test_maps_match_their_definitions() -> None:
    x = np.array([0.0, 1.0, 3.0, 2.0, -1.0])
    adapter = get_adapter("timeseries")
    out = adapter.decode(json.dumps(x.tolist()).encode(), representation="gasf+gadf+rp", image_size=5)
    z = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    phi = np.arccos(2 * (z - z.min()) / (z.max() - z.min()) - 1)
    gasf = np.cos(phi[:, None] + phi[None, :])
    gadf = np.sin(phi[:, None] - phi[None, :])
    dist = np.abs(z[:, None] - z[None, :])
    np.testing.assert_allclose(out[0].numpy(), gasf, atol=1e-5)
    np.testing.assert_allclose(out[1].numpy(), gadf, atol=1e-5)
    np.testing.assert_allclose(out[2].numpy(), 2 * dist / dist.max() - 1, atol=1e-5)


def test_scalogram_peaks_at_the_scale_of_the_period() -> None:
    """A Morlet wavelet at scale s resonates with period 2 pi s / w0: the strongest row moves with the period."""
    from modality_adapters.timeseries_maps import MORLET_W0

    n = 64
    scales = np.geomspace(1.0, n / 2, n)
    for period in (4.0, 16.0):
        x = np.sin(2 * np.pi * np.arange(n) / period)
        out = get_adapter("timeseries").decode(json.dumps(x.tolist()).encode(), representation="cwt")[0].numpy()
        peak_row = int(out[:, n // 4 : 3 * n // 4].mean(1).argmax())
        assert abs(np.log(scales[peak_row] / (MORLET_W0 * period / (2 * np.pi)))) < 0.25


def test_resample_and_window_modes() -> None:
    adapter = get_adapter("timeseries")
    ramp = np.linspace(0, 1, 200)
    slow = adapter.decode(json.dumps(ramp.tolist()).encode(), representation="gasf", image_size=16)
    short = adapter.decode(json.dumps(ramp[::20].tolist()).encode(), representation="gasf", image_size=16)
    torch.testing.assert_close(slow, short, atol=1e-5, rtol=0)  # a ramp resampled is the same ramp
    tail = np.concatenate([np.zeros(100), ramp[:50]])
    windowed = adapter.decode(
        json.dumps(tail.tolist()).encode(), representation="gasf", image_size=16, length_mode="window", seq_len=50
    )
    torch.testing.assert_close(windowed, slow, atol=1e-5, rtol=0)  # only the last 50 steps count
    with pytest.raises(UndecodableInputError, match="needs at least 60 time steps \\(it reads the last 60\\)"):
        adapter.decode(_series(59, 1), length_mode="window", seq_len=60)


def test_a_series_that_does_not_fit_a_trained_model_names_what_it_expects() -> None:
    adapter = get_adapter("timeseries")
    trained = {"num_vars": 6, "seq_len": 100, "length_mode": "window"}
    with pytest.raises(UndecodableInputError) as info:
        adapter.decode(_series(120, 3), **trained)
    assert info.value.status_code == 422
    assert "3 variable(s); this model expects 6" in info.value.message and "last 100" in info.value.message
    assert adapter.decode(_series(120, 6), **trained).shape == (19, 64, 64)  # values + 3 kinds x 6 variables


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"[[1.0, NaN], [2.0, 3.0]]", "NaN or infinite"),
        (b'{"values": [[1, 2], [3, Infinity]]}', "NaN or infinite"),
        (b"[[1.0, 2.0]]", "1 time step(s); this model needs at least 2"),
        (b"[5]", "1 time step(s)"),
        (b"1,2\n3\n4,5\n", "has 1 fields; expected 2"),
        (b"[[1, 2], [3]]", "same, non-zero length"),
        (b"[[]]", "same, non-zero length"),
    ],
)
def test_hostile_series(payload: bytes, fragment: str) -> None:
    with pytest.raises(UndecodableInputError) as info:
        get_adapter("timeseries").decode(payload)
    assert fragment in info.value.message


def test_too_many_variables_and_constant_series() -> None:
    with pytest.raises(InputTooLargeError, match="5 variables; the limit is 4"):
        get_adapter("timeseries", AdapterLimits(max_series_variables=4)).decode(_series(10, 5))
    flat = get_adapter("timeseries").decode(b"[[3, 1], [3, 2], [3, 3]]", representation="gasf+gadf+rp+cwt")
    assert torch.isfinite(flat).all()  # a constant variable has no range: no division by zero


def test_presets_and_invalid_params() -> None:
    from unirep_errors import InvalidParameterError

    adapter = get_adapter("timeseries")
    assert adapter.output_shape(preset="corrformer") == (1, 48, 15)
    assert adapter.output_shape(preset="corrformer", num_vars=2, seq_len=96) == (1, 96, 6)  # explicit wins
    for bad in (
        {"preset": "informer"},
        {"representation": "gasf+spectrogram"},
        {"representation": "embedding+gasf", "num_vars": 2},
        {"representation": "embedding"},  # the learned embedding needs a fixed variable count
        {"length_mode": "stretch"},
        {"num_vars": -1},
        {"image_size": 2},
    ):
        with pytest.raises(InvalidParameterError):
            adapter.resolve_params(**bad)


def test_fit_params_from_data() -> None:
    from modality_adapters.timeseries import fit_params

    series = [np.zeros((n, 3)) for n in (30, 40, 90)]
    fitted = fit_params(series)
    assert fitted["num_vars"] == 3 and fitted["seq_len"] == 40 and fitted["representation"] == "values+gasf+gadf+rp"
    assert fit_params(series, length_mode="window")["seq_len"] == 30
    assert fit_params([np.zeros((5000, 1))])["seq_len"] == 512
    assert fit_params(series, representation="embedding")["d_model"] == 64
    assert get_adapter("timeseries").output_shape(**fitted) == (10, 64, 64)
    with pytest.raises(ValueError, match="different numbers of variables"):
        fit_params([np.zeros((5, 2)), np.zeros((5, 3))])


def test_decode_array_equals_decode() -> None:
    adapter = get_adapter("timeseries")
    x = np.random.default_rng(3).normal(size=(37, 2))
    for params in ({}, {"num_vars": 2, "representation": "embedding"}):
        torch.testing.assert_close(adapter.decode_array(x, **params), adapter.decode(_series_bytes(x), **params))
    with pytest.raises(UndecodableInputError, match="non-empty T x V"):
        adapter.decode_array(np.zeros((0, 2)))


def test_training_array_is_what_training_decodes_from_the_file() -> None:
    """The map search trains its trials from series in memory; they must be the training cache's series."""
    adapter = get_adapter("timeseries")
    x = np.random.default_rng(4).normal(size=(20, 2))
    params = {"num_vars": 2, "image_size": 16, "length_mode": "pad", "normalize": "dataset"}
    params |= {"data_mean": [0.5, -1.0], "data_std": [2.0, 3.0]}
    for given in (params, {**params, "length_mode": "resample", "normalize": "series"}):
        cached = adapter.training_array(x, **given)
        torch.testing.assert_close(cached, adapter.decode_for_training(_series_bytes(x), **given))
        torch.testing.assert_close(adapter.training_input(cached, **given), adapter.decode_array(x, **given))
    torch.testing.assert_close(adapter.training_array(x[:, 0]), adapter.training_array(x[:, :1]))
    with pytest.raises(UndecodableInputError, match="non-empty T x V"):
        adapter.training_array(np.zeros((0, 2)))


def _series_bytes(x: np.ndarray) -> bytes:
    return json.dumps(x.tolist()).encode()


def test_front_ends() -> None:
    adapter = get_adapter("timeseries")
    assert isinstance(adapter.front_end(), torch.nn.Identity)
    params = {"representation": "embedding", "num_vars": 2, "seq_len": 20, "d_model": 8}
    emb = adapter.front_end(**params).eval()
    x = adapter.decode(_series(30, 2), **params).unsqueeze(0)
    out = emb(x)
    assert out.shape == (1, *adapter.embedding_shape(**params)) == (1, 1, 8, 20)  # features x time
    torch.testing.assert_close(out[0, 0], emb.embed(x)[0].T)
