"""What the runtime decides about a request before spending work on it, kept apart from the request path:
the decoder pool's guard policy from the settings, the batcher's latency seeds from warm-up, the deadline
feasibility check (measured decode time, decoder wait and batch time against the time left), and the note on a
capped ``top_k``.
"""

from __future__ import annotations

import time
from typing import Any

from servable.served import ServedModel
from service.metrics import Metrics
from service.runtime.batching import Batcher
from service.runtime.decode_guard import DecodeGuard, GuardPolicy
from service.runtime.decoder_pool import DecoderPool
from service.runtime.fair_queue import Weights, equal
from service.runtime.stage_times import DecodeTimes
from service.settings import ServiceSettings
from unirep_errors import DeadlineExceededError, InvalidParameterError


def decode_guard(s: ServiceSettings, weight_of: Weights = equal) -> DecodeGuard:
    """Per-client budgets and the heavy-input threshold; the decode rate defaults to half the decoders (times the
    client's weight: a client entitled to a larger share of the decoders has a larger backstop)."""
    return DecodeGuard(
        GuardPolicy(
            crash_budget=s.client_crash_budget,
            crash_window_s=s.client_crash_window_s,
            decode_rate=s.client_decode_rate or max(1.0, 0.5 * s.preprocess_workers),
            decode_burst_s=s.client_decode_burst_s,
            heavy_pixels=s.heavy_image_pixels,
            heavy_bytes=s.heavy_input_bytes,
        ),
        weight_of,
    )


def latency_seeds(served: ServedModel, device_workers: list[Any], warmup: bool) -> dict[int, float]:
    """Warm-up batch latencies by batch size (1 and the largest; only 1 when warm-up ran at size 1 alone)."""
    key = (served.key, served.input_shape)
    largest = max((w.latency.get(key, 0.0) for w in device_workers), default=0.0)
    if not warmup:
        return {1: largest}
    one = max((getattr(w, "latency_one", {}).get(key, 0.0) for w in device_workers), default=0.0)
    return {served.config.max_batch_size: largest, 1: one}


def check_feasible(
    served: ServedModel,
    deadline: float | None,
    decode_times: DecodeTimes,
    pool: DecoderPool | None,
    batcher: Batcher | None,
    metrics: Metrics,
    decoding: bool = True,
    client: str | None = None,
) -> None:
    """Refuse (504) before decoding when measured decode, wait and batch times say the deadline cannot be met.

    ``decoding`` is False for a map that arrived preprocessed (the V2 protocol's tensors): it is charged the batch
    time only, since it never queues for a decoder. With ``client``, the wait is its place in the fair order.
    """
    if deadline is None or batcher is None:
        return
    modality = served.modality
    decode_s = decode_times.estimate(modality) if decoding else 0.0
    waiting_s = pool.wait_estimate(decode_s, client) if pool is not None and decoding else 0.0
    expected = waiting_s + decode_s + batcher.estimate(served.key, served.input_shape)
    left = deadline - time.monotonic()
    if expected > left:
        metrics.dropped.labels(modality, "deadline").inc()
        stages = "decoding and the" if decoding else "the"
        raise DeadlineExceededError(
            f"the deadline ({max(0.0, left) * 1000:.0f} ms left) cannot be met: {stages} {modality} "
            f"work ahead of it take about {expected * 1000:.0f} ms; nothing was decoded",
            stage="admission",
            estimated_ms=round(expected * 1000, 1),
        )


def with_cap_note(result: dict[str, Any], asked: int | None, k: int) -> dict[str, Any]:
    """The result, plus ``top_k`` and a note when more predictions were asked for than the model answers."""
    if asked is None or not k or asked <= k:
        return result
    note = f"top_k={asked} was capped to {k}, the most this model answers (its class count, or max_top_k)"
    return {**result, "top_k": k, "note": note}


def resolve_top_k(served: ServedModel, top_k: int | None, max_top_k: int) -> int:
    """How many predictions to return: 5 by default; more than the classes is capped (and the answer says so)."""
    limit = min(served.num_classes, max_top_k)
    if top_k is None:
        return min(5, limit)
    if top_k < 1:
        raise InvalidParameterError(f"top_k must be between 1 and {limit} for {served.modality}", top_k=top_k)
    return min(top_k, limit)
