"""The registry and protocol, parametrized over every adapter: names, params, shapes, pickling, spawn, previews."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import subprocess
import sys
from typing import Any

import pytest
import torch
from PIL import Image

from modality_adapters import AdapterLimits, ModalityAdapter, get_adapter, list_adapters
from unirep_errors import InvalidParameterError, NotFoundError

from .conftest import Media

SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "image": {},
    "audio": {},
    "video": {"frame_size": 32},
    "pointcloud": {"num_points": 256, "image_size": 32},
    "timeseries": {"seq_len": 48, "num_vars": 3},
}


def sample(modality: str) -> bytes:
    return {
        "image": lambda: Media.image("JPEG"),
        "audio": lambda: Media.wav(seconds=0.5),
        "video": lambda: Media.video(n=20),
        "pointcloud": lambda: Media.npy(Media.cloud(500)),
        "timeseries": lambda: Media.series_csv(),
    }[modality]()


def test_list_adapters() -> None:
    assert list_adapters() == ["image", "audio", "video", "pointcloud", "timeseries"]


def test_unknown_modality_is_404() -> None:
    with pytest.raises(NotFoundError, match="available: image"):
        get_adapter("smell")


def test_limits_validate() -> None:
    with pytest.raises(ValueError, match="max_points"):
        AdapterLimits(max_points=0)
    with pytest.raises(AttributeError):
        AdapterLimits().max_bytes = 1  # type: ignore[misc]


def test_no_web_imports() -> None:
    """Imports flow models <- modality_adapters <- service: a fresh interpreter proves nothing upstream loads."""
    code = (
        "import sys, modality_adapters as m\n"
        "[a.decode for a in map(m.get_adapter, m.list_adapters())]\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('service', 'fastapi', 'starlette', 'uvicorn'))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("modality", list_adapters())
def test_protocol_params_and_shape(modality) -> None:
    adapter = get_adapter(modality)
    assert isinstance(adapter, ModalityAdapter) and adapter.name == modality
    defaults = adapter.default_params()
    assert defaults and adapter.resolve_params(**defaults) == adapter.resolve_params()
    out = adapter.decode(sample(modality), **SAMPLE_PARAMS[modality])
    assert tuple(out.shape) == adapter.output_shape(**SAMPLE_PARAMS[modality])
    assert out.dtype == torch.float32 and out.is_contiguous() and torch.isfinite(out).all()
    with pytest.raises(InvalidParameterError, match="unknown"):
        adapter.decode(sample(modality), not_a_param=1)


@pytest.mark.parametrize("modality", list_adapters())
def test_training_choices_are_params_of_the_adapter(modality) -> None:
    # A report of a trained model reads these names from the model's params: a name the adapter does not have
    # would be reported as unset, silently.
    adapter = get_adapter(modality)
    assert set(adapter.training_choices) <= set(adapter.default_params())


@pytest.mark.parametrize("modality", list_adapters())
def test_decode_is_deterministic(modality) -> None:
    adapter, data = get_adapter(modality), sample(modality)
    assert torch.equal(adapter.decode(data, **SAMPLE_PARAMS[modality]), adapter.decode(data, **SAMPLE_PARAMS[modality]))


@pytest.mark.parametrize("modality", list_adapters())
def test_preview_is_png(modality) -> None:
    adapter = get_adapter(modality)
    png = adapter.preview(adapter.decode(sample(modality), **SAMPLE_PARAMS[modality]), **_preview_params(modality))
    assert Image.open(io.BytesIO(png)).format == "PNG"


def _preview_params(modality: str) -> dict[str, Any]:
    return {"image": {}, "video": {"frame_size": 32}}.get(modality, {})


@pytest.mark.parametrize("modality", list_adapters())
def test_adapters_pickle_with_their_limits(modality) -> None:
    adapter = get_adapter(modality, AdapterLimits(max_points=123))
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone == adapter and clone.limits.max_points == 123


def _decode_in_child(args: tuple[Any, bytes, dict[str, Any]]) -> tuple[int, ...]:
    adapter, data, params = args
    adapter.prepare()
    torch.set_num_threads(1)
    return tuple(adapter.decode(data, **params).shape)


@pytest.mark.timeout(120)
def test_adapters_run_in_a_spawned_pool() -> None:
    jobs = [(get_adapter(m), sample(m), SAMPLE_PARAMS[m]) for m in list_adapters()]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        shapes = pool.map(_decode_in_child, jobs)
    assert shapes == [adapter.output_shape(**params) for adapter, _, params in jobs]
