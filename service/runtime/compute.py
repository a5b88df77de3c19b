"""A request on its way through the runtime once its model is chosen (``answer``): the result cache, or an identical
request already computing it, else a computation (``compute``): decoded in the pool (unless the map came
preprocessed), batched into the model's bucket (its serving key: each loaded version has its own), run on a device
worker, and postprocessed with that model's labels.

Kept apart from ``serving.ServiceRuntime``, which owns the components this path walks through."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from servable.served import ServedModel
from service.runtime.admission import check_feasible, resolve_top_k, with_cap_note
from service.runtime.cache import cache_key
from service.runtime.decoder_pool import Decoded
from service.runtime.outcome import Outcome, result_body
from service.runtime.work import BatchItem, Task, new_id
from unirep_errors import UndecodableInputError

if TYPE_CHECKING:
    from service.runtime.serving import ServiceRuntime


@dataclasses.dataclass(frozen=True)
class Job:
    """What one cache miss computes from: the upload (hashed once), its client, and the optional shortcuts."""

    data: bytes
    digest: str
    client: str
    decoded_map: torch.Tensor | None
    on_decoded: Callable[[torch.Tensor], None] | None


async def compute(
    runtime: ServiceRuntime,
    served: ServedModel,
    task: Task,
    job: Job,
    k: int,
    params: dict[str, Any],
    deadline_wall: float | None,
    deadline_mono: float | None,
    cancelled: Callable[[], bool],
) -> Outcome:
    """A cache miss: decode in the pool (unless the map came preprocessed), batch, run on a worker, postprocess."""
    modality, key = served.modality, served.key
    assert runtime.pool is not None and runtime.batcher is not None
    preprocessed = job.decoded_map is not None
    times = runtime.decode_times
    check_feasible(
        served, deadline_mono, times, runtime.pool, runtime.batcher, runtime.metrics, not preprocessed, job.client
    )
    t0 = time.perf_counter()
    runtime.decoding[key] = runtime.decoding.get(key, 0) + 1
    try:
        decoded = Decoded(job.decoded_map, 0.0) if job.decoded_map is not None else None
        if decoded is None:
            decoded = await runtime.pool.decode(
                modality, job.data, params, deadline=deadline_mono, client=job.client, digest=job.digest
            )
    except Exception as exc:
        if getattr(exc, "code", "") == "deadline_exceeded":
            runtime.metrics.dropped.labels(modality, "deadline").inc()
        raise
    finally:
        runtime.decoding[key] -= 1
    preprocess_s = time.perf_counter() - t0
    if not preprocessed:  # a preprocessed map took no decoding: it must not pull the decode estimate down
        runtime.decode_times.observe(modality, preprocess_s)
    runtime.metrics.preprocess_duration.labels(modality).observe(preprocess_s)
    if tuple(decoded.tensor.shape) != served.input_shape:
        raise UndecodableInputError(
            f"decoded {modality} map has shape {tuple(decoded.tensor.shape)}; the model takes {served.input_shape}"
        )
    if job.on_decoded is not None:
        job.on_decoded(decoded.tensor)
    item = BatchItem(new_id(), decoded.tensor, task, k, time.time(), deadline_wall, cancelled)
    pending = runtime.batcher.submit(item, key, cancelled, client=job.client)
    item_result, batch_result = await pending.future
    queue_s = max(0.0, batch_result.started_at - item.enqueued_at)
    runtime.metrics.queue_duration.labels(modality).observe(queue_s)
    return Outcome(
        result_body(served, item_result),
        preprocess_ms=preprocess_s * 1000.0,
        queue_ms=queue_s * 1000.0,
        inference_ms=batch_result.inference_s * 1000.0,
        batch_size=batch_result.batch_size,
    )


async def answer(
    runtime: ServiceRuntime,
    served: ServedModel,
    task: Task,
    top_k: int | None,
    timeout_ms: float | None,
    cancelled: Callable[[], bool],
    hints: dict[str, Any] | None,
    job: Job,
    all_classes: bool,
) -> Outcome:
    """``ServiceRuntime.infer`` once the model is chosen: the cache (keyed on that model's version), else computed."""
    modality, data = served.modality, job.data
    k = (
        (served.num_classes if all_classes else resolve_top_k(served, top_k, runtime.settings.max_top_k))
        if task == "classify"
        else 0
    )
    if not data:
        raise UndecodableInputError(
            f"the request has no {modality} payload: send it as multipart field 'file' or as the raw body"
        )
    timeout_ms = timeout_ms if timeout_ms is not None else runtime.settings.default_timeout_ms
    deadline_wall = time.time() + timeout_ms / 1000.0 if timeout_ms is not None else None
    deadline_mono = time.monotonic() + timeout_ms / 1000.0 if timeout_ms is not None else None
    params = {**served.params, **(hints or {})}
    digest = hashlib.sha256(data).hexdigest()
    key = cache_key(digest, modality, task, {"top_k": k, **(hints or {})}, served.version)
    # Cached, or being computed by an identical request (here or, with Redis, on another gateway): wait for it.
    async with runtime.flights.lead(key, deadline_mono) as lease:
        if lease.result is not None:
            runtime.metrics.cache_hits.labels(modality).inc()
            if lease.coalesced:
                runtime.metrics.cache_coalesced.labels(modality).inc()
            return Outcome(with_cap_note(lease.result, top_k, k), cache_hit=True)
        runtime.metrics.cache_misses.labels(modality).inc()
        job = dataclasses.replace(job, digest=digest)
        outcome = await compute(runtime, served, task, job, k, params, deadline_wall, deadline_mono, cancelled)
        await lease.publish(outcome.result)
    return dataclasses.replace(outcome, result=with_cap_note(outcome.result, top_k, k))
