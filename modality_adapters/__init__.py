"""Modality adapters: bytes of one request -> the float32 C x H x W map UniRepLKNet sees, plus a preview PNG.

``get_adapter(name, limits)`` returns a fresh adapter for ``image``, ``audio``, ``video``, ``pointcloud`` or
``timeseries``; ``adapter.decode(data, **params)`` takes the modality's preprocessing params (official defaults
in ``adapter.default_params()``, overridden by the model config) and raises only ``unirep_errors.InputError``
subclasses for bad input. Adapters are plain picklable objects, so the service can run them in spawned processes.
"""

from __future__ import annotations

from unirep_errors import NotFoundError

from .audio import AudioAdapter, AudioParams
from .base import IMAGENET_MEAN, IMAGENET_STD, AdapterLimits, BaseAdapter, ModalityAdapter
from .image import ImageAdapter, ImageParams
from .pointcloud import PointCloudAdapter, PointCloudParams
from .timeseries import TimeSeriesAdapter, TimeSeriesParams
from .timeseries_embedding import TimeSeriesEmbedding
from .video import VideoAdapter, VideoParams

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AdapterLimits",
    "AudioAdapter",
    "AudioParams",
    "BaseAdapter",
    "ImageAdapter",
    "ImageParams",
    "ModalityAdapter",
    "PointCloudAdapter",
    "PointCloudParams",
    "TimeSeriesAdapter",
    "TimeSeriesEmbedding",
    "TimeSeriesParams",
    "VideoAdapter",
    "VideoParams",
    "get_adapter",
    "list_adapters",
]

_REGISTRY: dict[str, type[BaseAdapter]] = {
    cls.name: cls for cls in (ImageAdapter, AudioAdapter, VideoAdapter, PointCloudAdapter, TimeSeriesAdapter)
}


def list_adapters() -> list[str]:
    """The modality names, in a stable order (the service mounts one route per name)."""
    return list(_REGISTRY)


def get_adapter(name: str, limits: AdapterLimits | None = None) -> BaseAdapter:
    """A new adapter for ``name`` enforcing ``limits`` (defaults when None); unknown names are a 404."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise NotFoundError(f"unknown modality {name!r}; available: {', '.join(_REGISTRY)}", modality=name) from None
    return cls(limits)
