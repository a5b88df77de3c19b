"""A batching bucket: one modality's model and one input shape, with its policy, its FIFO of admitted items and
its batch latencies; and the rule that drops a queued item before it reaches the model."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service.runtime.stage_times import BatchLatency
from service.runtime.work import BatchItem, BatchResult, ItemResult
from unirep_errors import ClientDisconnectedError, DeadlineExceededError, UnirepError


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_delay_ms: float
    max_queue_size: int


@dataclass
class Pending:
    """An admitted item waiting for its result; the gateway awaits ``future``."""

    item: BatchItem
    cancelled: Callable[[], bool]
    future: asyncio.Future[tuple[ItemResult, BatchResult]]


@dataclass
class Bucket:
    modality: str
    shape: tuple[int, ...]
    policy: BatchPolicy
    queue: deque[Pending] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    latency: BatchLatency = field(default_factory=lambda: BatchLatency(1))
    """Batch latency per batch size (seeded by warm-up, updated online): drives deadline checks and Retry-After."""
    running: int = 0
    task: asyncio.Task[None] | None = None

    def until_done(self) -> float:
        """Seconds until an item admitted now would have its result."""
        return self.latency.until_done(len(self.queue), self.running, self.policy.max_delay_ms / 1000.0)

    @property
    def label(self) -> str:
        return "x".join(str(s) for s in self.shape)


def drop_reason(pending: Pending, now: float, batch_seconds: float) -> UnirepError | None:
    """Why a queued item must not reach the model (its client left, or its deadline cannot be met), or None."""
    if pending.future.done():
        return ClientDisconnectedError("the request was abandoned")
    if pending.cancelled():
        return ClientDisconnectedError("the client disconnected before its item was computed")
    deadline = pending.item.deadline
    if deadline is not None and now + batch_seconds > deadline:
        return DeadlineExceededError(
            "the request's deadline passed (or could not be met) while it was queued; it never reached the model",
            stage="queue",
        )
    return None
