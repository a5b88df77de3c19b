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
    client: str = "anonymous"


def fair_take(queue: deque[Pending], n: int) -> tuple[list[Pending], deque[Pending]]:
    """``n`` items for the next batch, one per client in turn (clients in the order of their oldest item), and the
    rest in their order: a client with many queued items cannot fill every batch while another waits."""
    if len(queue) <= n:
        return list(queue), deque()
    lines: dict[str, deque[Pending]] = {}
    for pending in queue:
        lines.setdefault(pending.client, deque()).append(pending)
    chosen: list[Pending] = []
    while len(chosen) < n:
        for line in lines.values():
            if line and len(chosen) < n:
                chosen.append(line.popleft())
    taken = {id(p) for p in chosen}
    return chosen, deque(p for p in queue if id(p) not in taken)


def heaviest_other(queue: deque[Pending], client: str) -> Pending | None:
    """When the queue is full: the newest item of the client with the most queued work, if that client would still
    hold more than ``client`` after trading one item; None when ``client`` is (one of) the heaviest itself."""
    counts: dict[str, int] = {}
    for pending in queue:
        counts[pending.client] = counts.get(pending.client, 0) + 1
    if not counts:
        return None
    heaviest = max(counts, key=counts.__getitem__)
    if counts[heaviest] < counts.get(client, 0) + 2:
        return None
    return next(p for p in reversed(queue) if p.client == heaviest)


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
