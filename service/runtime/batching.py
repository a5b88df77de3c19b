"""Shape-bucketed dynamic batching with deadlines, bounded queues and cancellation.

No library we know batches by (model, input shape) bucket, so this is ours. Each bucket (one modality's model and
one C x H x W shape) has its own FIFO queue and its own task that forms batches:

- a batch closes when it is full (``max_batch_size``), when the earliest deadline in the queue needs it to start
  now, or when the oldest item has waited ``max_delay_ms`` *and* a device is free to run it at once: while every
  device is busy a partial batch stays open and keeps growing (closing it early would only stage a small batch
  that waits anyway, which kept batches near 6 at concurrency 16 with room for 16);
- an idle device takes the queue at once (latency at concurrency 1 stays the model's own time), unless requests of
  that modality are still being decoded: then it waits for them up to ``max_delay_ms``, so under load batches do
  not split into a small one and the rest;
- it is then handed to the transport, which allows ``prefetch`` staged batches per device (a full batch is staged
  while the current one runs);
- when the batch is taken, items whose client disconnected or whose deadline cannot be met any more are dropped
  (counted in ``unirep_dropped_requests_total``) and never reach the model;
- admission is bounded: a full queue answers 429 with a Retry-After estimated from the bucket's batch latency (the
  429 falls on the client holding the most queued items: a newcomer with fewer takes the place of that client's
  newest item), and a deadline that cannot be met even before queueing answers 504 at once;
- clients are served in turn: when more items wait than a batch holds, the places go to clients in fair turns
  kept across batches, one per client per round at equal weights, in proportion to the clients' weights otherwise
  (an API key may carry a weight; ``bucket.fair_take``), and a full queue's 429 weighs queued items the same way.

A failing item fails alone: the worker reports errors per item (see ``service.runtime.device_worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable

from servable.served import metrics_label
from service.metrics import Metrics
from service.runtime.bucket import BatchPolicy, Bucket, Pending, drop_reason, fair_take, heaviest_other
from service.runtime.fair_queue import Weights, equal
from service.runtime.stage_times import BatchLatency
from service.runtime.transport import Transport
from service.runtime.work import Batch, BatchItem, BatchResult, ItemResult
from unirep_errors import (
    ClientDisconnectedError,
    DeadlineExceededError,
    QueueFullError,
    ServiceUnavailableError,
    UnirepError,
)

log = logging.getLogger(__name__)


class Batcher:
    """Admits items into buckets and feeds formed batches to a ``Transport``."""

    def __init__(
        self,
        transport: Transport,
        metrics: Metrics,
        policies: dict[str, BatchPolicy],
        upstream: Callable[[str], int] | None = None,
        weight_of: Weights = equal,
    ) -> None:
        self.transport = transport
        self.weight_of = weight_of
        """Each client's weight for its share of batch places (``fair_take``) and queue places (``heaviest_other``)."""
        self.upstream = upstream
        """Requests of a modality admitted but not yet queued (being decoded): lets an idle device wait for them."""
        self.metrics = metrics
        self.policies = policies
        self.buckets: dict[tuple[str, tuple[int, ...]], Bucket] = {}
        self._running = False
        self._accepting = True
        self._tasks: set[asyncio.Task[None]] = set()

    def add_bucket(self, modality: str, shape: tuple[int, ...], seeds: dict[int, float] | None = None) -> Bucket:
        """Add (or find) a bucket; ``seeds`` are warm-up batch latencies by batch size."""
        key = (modality, tuple(shape))
        bucket = self.buckets.get(key)
        if bucket is None:
            policy = self.policies[modality]
            bucket = Bucket(modality, tuple(shape), policy, latency=BatchLatency(policy.max_batch_size))
            self.buckets[key] = bucket
            self.metrics.queue_depth.labels(metrics_label(modality), bucket.label).set(0)
            if self._running:
                bucket.task = asyncio.create_task(self._run(bucket), name=f"bucket-{modality}-{bucket.label}")
        for size, seconds in (seeds or {}).items():
            bucket.latency.seed(size, seconds)
        return bucket

    def add_model(self, key: str, policy: BatchPolicy, shape: tuple[int, ...], seeds: dict[int, float]) -> None:
        """A model loaded while serving: its policy and its bucket, running at once."""
        self.policies[key] = policy
        self.add_bucket(key, shape, seeds)

    def holds(self, key: str) -> bool:
        """Whether any item of this model is queued or running."""
        return any(b.queue or b.running for b in self.buckets.values() if b.modality == key)

    async def remove_model(self, key: str) -> None:
        """Stop a drained model's buckets (``holds`` is False: nothing of it is queued or running)."""
        gone = [k for k, b in self.buckets.items() if b.modality == key]
        tasks = [t for t in (self.buckets.pop(k).task for k in gone) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.policies.pop(key, None)

    def estimate(self, modality: str, shape: tuple[int, ...]) -> float:
        """Seconds from admission to result for an item of this bucket now (0 for an unknown bucket)."""
        bucket = self.buckets.get((modality, tuple(shape)))
        return bucket.until_done() if bucket is not None else 0.0

    async def start(self) -> None:
        self._running = True
        for bucket in self.buckets.values():
            if bucket.task is None:
                bucket.task = asyncio.create_task(self._run(bucket), name=f"bucket-{bucket.modality}-{bucket.label}")

    def depth(self) -> int:
        return sum(len(b.queue) for b in self.buckets.values())

    def busy(self) -> bool:
        return self.depth() > 0 or any(b.running for b in self.buckets.values())

    def submit(
        self, item: BatchItem, modality: str, cancelled: Callable[[], bool], client: str = "anonymous"
    ) -> Pending:
        """Admit an item or raise: 503 when stopping, 429 when the bucket is full (to the client with the most queued
        work: this one, or another whose newest item makes room), 504 when the deadline is hopeless."""
        if not self._accepting:
            raise ServiceUnavailableError("the service is draining; retry on another instance", retry_after=1)
        bucket = self.buckets.get((modality, tuple(item.tensor.shape))) or self.add_bucket(
            modality, tuple(item.tensor.shape)
        )
        policy = bucket.policy
        ahead = len(bucket.queue)
        expected = bucket.until_done()
        if ahead >= policy.max_queue_size:
            retry = max(1, math.ceil(expected))
            self.metrics.rejected.labels(metrics_label(modality), "queue_full").inc()
            error = QueueFullError(
                f"the {modality} queue is full ({ahead} waiting); retry after {retry} s",
                retry_after=retry,
                queue_size=policy.max_queue_size,
            )
            victim = heaviest_other(bucket.queue, client, self.weight_of)
            if victim is None:
                raise error
            bucket.queue.remove(victim)
            if not victim.future.done():
                victim.future.set_exception(error)
        now = time.time()
        if item.deadline is not None and now + expected > item.deadline:
            self.metrics.dropped.labels(metrics_label(modality), "deadline").inc()
            raise DeadlineExceededError(
                f"the deadline ({max(0.0, (item.deadline - now) * 1000):.0f} ms left) cannot be met: about "
                f"{expected * 1000:.0f} ms of {modality} work is ahead of it",
                stage="admission",
                estimated_ms=round(expected * 1000, 1),
            )
        pending = Pending(item, cancelled, asyncio.get_running_loop().create_future(), client)
        bucket.queue.append(pending)
        self.metrics.queue_depth.labels(metrics_label(modality), bucket.label).set(len(bucket.queue))
        bucket.changed.set()
        return pending

    async def _run(self, bucket: Bucket) -> None:
        while True:
            try:
                await self._wait_for_batch(bucket)
                await self.transport.reserve()
                items = self._take(bucket)
                if not items:
                    self.transport.release()
                    continue
                bucket.running += 1
                task = asyncio.create_task(self._execute(bucket, items))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not silently stop a bucket
                log.exception("batch formation failed for %s %s", bucket.modality, bucket.label)
                await asyncio.sleep(0.01)

    async def _wait_for_batch(self, bucket: Bucket) -> None:
        """Return when the bucket's queue should be turned into a batch (see the module docstring)."""
        policy = bucket.policy
        while True:
            self._purge(bucket)
            if not bucket.queue:
                bucket.changed.clear()
                await bucket.changed.wait()
                continue
            if len(bucket.queue) >= policy.max_batch_size:
                return
            now = time.time()
            delay_close = bucket.queue[0].item.enqueued_at + policy.max_delay_ms / 1000.0
            deadlines = [p.item.deadline for p in bucket.queue if p.item.deadline is not None]
            deadline_close = min(deadlines) - bucket.latency.at(len(bucket.queue)) if deadlines else math.inf
            if now >= deadline_close:
                return
            if self.transport.idle() and (now >= delay_close or not self._more_coming(bucket)):
                return
            if now >= delay_close and self.transport.can_start_now():
                return
            # Wait for more items, for the delay or deadline, or (past the delay) for a device to come free: a batch
            # closed while every device is busy would only sit staged while later arrivals could have joined it.
            wake_at = deadline_close if now >= delay_close else min(delay_close, deadline_close)
            bucket.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bucket.changed.wait(), None if math.isinf(wake_at) else max(0.0, wake_at - now))

    def _more_coming(self, bucket: Bucket) -> bool:
        """Items of this modality still being decoded upstream, which would join a batch closed a little later."""
        return self.upstream is not None and self.upstream(bucket.modality) > 0

    def _purge(self, bucket: Bucket) -> None:
        """Drop items whose client left or whose deadline can no longer be met; they never reach the model."""
        if not bucket.queue:
            return
        now = time.time()
        keep: deque[Pending] = deque()
        batch_s = bucket.latency.at(len(bucket.queue))
        for pending in bucket.queue:
            error = drop_reason(pending, now, batch_s)
            if error is None:
                keep.append(pending)
            else:
                reason = "disconnected" if isinstance(error, ClientDisconnectedError) else "deadline"
                self.metrics.dropped.labels(metrics_label(bucket.modality), reason).inc()
                if not pending.future.done():
                    pending.future.set_exception(error)
        if len(keep) != len(bucket.queue):
            bucket.queue = keep
            self.metrics.queue_depth.labels(metrics_label(bucket.modality), bucket.label).set(len(keep))

    def _take(self, bucket: Bucket) -> list[Pending]:
        self._purge(bucket)
        items, bucket.queue = fair_take(bucket.queue, bucket.policy.max_batch_size, bucket.shares, self.weight_of)
        self.metrics.queue_depth.labels(metrics_label(bucket.modality), bucket.label).set(len(bucket.queue))
        return items

    async def _execute(self, bucket: Bucket, pendings: list[Pending]) -> None:
        batch = Batch(bucket.modality, bucket.shape, [p.item for p in pendings], bucket.policy.max_batch_size)
        try:
            result = await self.transport.execute(batch)
        except UnirepError as exc:
            for p in pendings:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        except Exception as exc:
            log.exception("batch %s failed in the transport", batch.batch_id)
            for p in pendings:
                if not p.future.done():
                    p.future.set_exception(UnirepError(f"internal error running the batch: {type(exc).__name__}"))
            return
        finally:
            bucket.running -= 1
            for other in self.buckets.values():  # a device came free: waiting partial batches may close now
                other.changed.set()
        self._record(bucket, result)
        by_id = {r.item_id: r for r in result.items}
        for p in pendings:
            item_result = by_id.get(p.item.item_id) or ItemResult(p.item.item_id, error=UnirepError("no result"))
            if p.future.done():
                continue
            if item_result.error is not None:
                p.future.set_exception(item_result.error)
            else:
                p.future.set_result((item_result, result))

    def _record(self, bucket: Bucket, result: BatchResult) -> None:
        if self.transport.runs_models:
            self.metrics.record_batch(metrics_label(bucket.modality), result, bucket.policy.max_batch_size)
        if result.batch_size:
            bucket.latency.observe(result.batch_size, result.inference_s)

    async def stop(self) -> None:
        self._accepting = False
        for bucket in self.buckets.values():
            if bucket.task is not None:
                bucket.task.cancel()
            for p in bucket.queue:
                if not p.future.done():
                    p.future.set_exception(ServiceUnavailableError("the service stopped", retry_after=1))
            bucket.queue.clear()
        await asyncio.gather(*(b.task for b in self.buckets.values() if b.task is not None), return_exceptions=True)
