"""When a batch closes, in-process: the real batcher, transport and device worker (a small model, with the
inference-delay hook standing in for a bigger one), items submitted directly at chosen moments.

- while the device is busy, a partial batch stays open past ``max_delay_ms`` and keeps growing (it used to close
  and wait staged, splitting the next batch in two);
- an idle device takes the queue at once, unless requests are still being decoded upstream: then it waits up to
  ``max_delay_ms`` for them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from modality_adapters import get_adapter
from servable.build import build_served_model
from servable.served import ServedModel
from service.metrics import Metrics
from service.runtime.batching import Batcher
from service.runtime.bucket import BatchPolicy
from service.runtime.device_worker import DeviceWorker
from service.runtime.transport import LocalTransport
from service.runtime.work import BatchItem, new_id
from service.settings import ServiceSettings


@pytest.fixture(scope="module")
def served() -> ServedModel:
    params = {"representation": "gasf", "seq_len": 16, "image_size": 16, "num_vars": 2}
    settings = ServiceSettings(timeseries={"params": params, "max_batch_size": 16, "backend": "torch"})
    return build_served_model(settings.modality("timeseries"), get_adapter("timeseries"))


async def with_batcher(served: ServedModel, delay_s: float, max_delay_ms: float, upstream: dict[str, int], body):
    metrics = Metrics()
    worker = DeviceWorker(torch.device("cpu"), {"timeseries": served}, "fp32", delay_s, warmup_enabled=False)
    transport = LocalTransport([worker], metrics, prefetch=1)
    await transport.start()
    batcher = Batcher(
        transport,
        metrics,
        {"timeseries": BatchPolicy(16, max_delay_ms, 256)},
        upstream=lambda m: upstream.get(m, 0),
    )
    batcher.add_bucket("timeseries", served.input_shape)
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()
        await transport.stop()


def submit(batcher: Batcher, served: ServedModel):
    item = BatchItem(new_id(), torch.randn(served.input_shape), "classify", 1, time.time())
    return batcher.submit(item, "timeseries", lambda: False).future


def test_a_partial_batch_keeps_growing_while_the_device_is_busy(served: ServedModel) -> None:
    async def body(batcher: Batcher) -> list[int]:
        first = submit(batcher, served)  # the device is idle: runs at once, for 0.4 s
        await asyncio.sleep(0.05)
        early = [submit(batcher, served) for _ in range(3)]
        await asyncio.sleep(0.1)  # far past max_delay_ms, device still busy
        late = [submit(batcher, served) for _ in range(3)]
        results = await asyncio.gather(first, *early, *late)
        return [batch.batch_size for _, batch in results]

    sizes = asyncio.run(with_batcher(served, 0.4, 5.0, {}, body))
    assert sizes[0] == 1
    assert sizes[1:] == [6] * 6, sizes  # one batch of six, not three staged at 5 ms and three more later


@pytest.mark.parametrize(("decoding", "expected"), [(0, [1, 1]), (1, [2, 2])])
def test_an_idle_device_waits_only_for_requests_still_being_decoded(
    served: ServedModel, decoding: int, expected: list[int]
) -> None:
    upstream = {"timeseries": decoding}

    async def body(batcher: Batcher) -> list[int]:
        first = submit(batcher, served)
        await asyncio.sleep(0.05)  # well inside max_delay_ms (0.5 s)
        upstream["timeseries"] = 0
        second = submit(batcher, served)
        results = await asyncio.gather(first, second)
        return [batch.batch_size for _, batch in results]

    assert asyncio.run(with_batcher(served, 0.2, 500.0, upstream, body)) == expected
