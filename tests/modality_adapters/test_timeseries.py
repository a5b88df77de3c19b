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

P = {"seq_len": 48, "num_vars": 3}


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
    flat = adapter.decode(json.dumps(list(range(48))).encode(), seq_len=48, num_vars=1)
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
        adapter.decode(media.series_csv())
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
    x = adapter.decode(media.series_csv(t=60, v=11), seq_len=48, num_vars=11)
    assert adapter.embedding_shape() == (1, 192, 192)
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
