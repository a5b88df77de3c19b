"""Building the served models and their device workers from the settings: what ``unirep serve`` and the
scale-out stream worker both do before serving (one definition, so the two never drift apart)."""

from __future__ import annotations

from typing import Any

import torch

from modality_adapters import AdapterLimits, BaseAdapter, get_adapter
from service.runtime.device_worker import DeviceWorker, resolve_devices
from service.runtime.served import ServedModel, build_served_model
from service.settings import ServiceSettings


def make_adapters(settings: ServiceSettings) -> dict[str, BaseAdapter]:
    """One adapter per enabled modality, under the settings' decoder limits."""
    limits = AdapterLimits(max_bytes=settings.max_body_bytes, **settings.adapter_limits())
    configs = settings.modalities()
    if not configs:
        raise ValueError("every modality is disabled; enable at least one")
    return {cfg.modality: get_adapter(cfg.modality, limits) for cfg in configs}


def build_models(settings: ServiceSettings, adapters: dict[str, Any]) -> dict[str, ServedModel]:
    """Load every enabled modality's model (blocking: run it in an executor from async code)."""
    return {cfg.modality: build_served_model(cfg, adapters[cfg.modality]) for cfg in settings.modalities()}


def make_device_workers(settings: ServiceSettings, served: dict[str, ServedModel]) -> list[DeviceWorker]:
    """A device worker per configured device, holding every served model (not yet warmed)."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    delay_s = settings.debug_inference_delay_ms / 1000.0
    return [
        DeviceWorker(device, served, settings.precision, delay_s, warmup_enabled=settings.warmup)
        for device in resolve_devices(settings.device)
    ]
