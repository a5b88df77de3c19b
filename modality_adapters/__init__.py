"""Modality adapters: bytes of one request -> the float32 C x H x W map UniRepLKNet sees, plus a preview PNG.

``get_adapter(name, limits)`` returns a fresh adapter for ``image``, ``audio``, ``video``, ``pointcloud`` or
``timeseries``, or any modality added with ``register_adapter`` (the registry is the one list of modalities).
``adapter.decode(data, **params)`` takes the modality's preprocessing params (official defaults
in ``adapter.default_params()``, overridden by the model config) and raises only ``unirep_errors.InputError``
subclasses for bad input. Adapters are plain picklable objects, so the service can run them in spawned processes.
"""

from __future__ import annotations

from .audio import AudioAdapter, AudioParams
from .base import IMAGENET_MEAN, IMAGENET_STD, AdapterLimits, BaseAdapter, ModalityAdapter
from .image import ImageAdapter, ImageParams
from .pointcloud import PointCloudAdapter, PointCloudParams
from .registry import adapter_class, get_adapter, list_adapters, register_adapter
from .serving import AUTO_WEIGHTS, ServingDefaults
from .timeseries import TimeSeriesAdapter, TimeSeriesParams
from .timeseries_embedding import TimeSeriesEmbedding
from .video import VideoAdapter, VideoParams

__all__ = [
    "AUTO_WEIGHTS",
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
    "ServingDefaults",
    "TimeSeriesAdapter",
    "TimeSeriesEmbedding",
    "TimeSeriesParams",
    "VideoAdapter",
    "VideoParams",
    "adapter_class",
    "get_adapter",
    "list_adapters",
    "register_adapter",
]

for _cls in (ImageAdapter, AudioAdapter, VideoAdapter, PointCloudAdapter, TimeSeriesAdapter):
    register_adapter(_cls)
