"""Building the served models and their device workers from the settings: what ``unirep serve`` and the
scale-out stream worker both do before serving (one definition, so the two never drift apart)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from modality_adapters import AdapterLimits, BaseAdapter, get_adapter
from servable.build import build_served_model
from servable.served import ServedModel
from service.metrics import Metrics
from service.runtime.admission import decode_guard
from service.runtime.backends import ExportCache, default_cache_dir
from service.runtime.batching import Batcher
from service.runtime.bucket import BatchPolicy
from service.runtime.cache import MemoryLRUCache, NullCache, ResultCache
from service.runtime.cpu_threads import plan_threads
from service.runtime.decoder_pool import DecoderPool
from service.runtime.device_worker import DeviceWorker
from service.runtime.devices import resolve_devices
from service.runtime.fair_queue import Weights, equal
from service.runtime.transport import Transport
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
    seed = settings.random_seed
    return {cfg.modality: build_served_model(cfg, adapters[cfg.modality], seed) for cfg in settings.modalities()}


def make_device_workers(
    settings: ServiceSettings, served: dict[str, ServedModel], decoders: int | None = None
) -> list[DeviceWorker]:
    """A device worker per configured device, holding every served model (not yet warmed). ``decoders``: decoder
    processes sharing this host's cores (default ``preprocess_workers``; a stream worker runs none)."""
    devices = resolve_devices(settings.device)
    # On a CPU-only host the model gets the cores the decoder processes leave (any backend), unless configured.
    decoders = settings.preprocess_workers if decoders is None else decoders
    plan = plan_threads(decoders, settings.torch_threads, all(d.type == "cpu" for d in devices))
    if plan.on_cpu or settings.torch_threads:
        torch.set_num_threads(plan.model_threads)
    cache_dir = Path(settings.backend_cache_dir) if settings.backend_cache_dir else default_cache_dir()
    cache = ExportCache(cache_dir)
    delay_s = settings.debug_inference_delay_ms / 1000.0
    return [
        DeviceWorker(
            device,
            served,
            settings.precision,
            delay_s,
            warmup_enabled=settings.warmup,
            backend_cache=cache,
            threads=plan.model_threads if device.type == "cpu" else None,
            remeasure_backends=settings.backend_remeasure,
        )
        for device in devices
    ]


def make_decoder_pool(
    settings: ServiceSettings,
    adapters: dict[str, BaseAdapter],
    on_failure: Callable[[str, str], None],
    weight_of: Weights = equal,
) -> DecoderPool:
    """The decoder processes with their limits, spares, heavy-input lane and per-client guard."""
    s = settings
    return DecoderPool(
        adapters,
        s.preprocess_workers,
        s.preprocess_timeout_s,
        s.preprocess_memory_mb,
        fault_injection=s.debug_fault_injection,
        on_failure=on_failure,
        spares=s.preprocess_spares,
        heavy_size=s.heavy_decoders,
        guard=decode_guard(s, weight_of),
    )


def local_cache(settings: ServiceSettings) -> ResultCache:
    """The result cache of a single-process service: an in-memory LRU, or none when caching is off."""
    if not settings.cache_enabled:
        return NullCache()
    return MemoryLRUCache(settings.cache_max_entries, settings.cache_ttl_s)


def make_batcher(
    served: dict[str, ServedModel],
    transport: Transport,
    metrics: Metrics,
    upstream: Callable[[str], int],
    weight_of: Weights = equal,
) -> Batcher:
    """One bucket policy per served model, from its batching settings."""
    policies = {
        m: BatchPolicy(sm.config.max_batch_size, sm.config.max_delay_ms, sm.config.max_queue_size)
        for m, sm in served.items()
    }
    return Batcher(transport, metrics, policies, upstream=upstream, weight_of=weight_of)
