"""A batching bucket: one modality's model and one input shape, with its policy, its FIFO of admitted items and
its batch latencies; and the rule that drops a queued item before it reaches the model."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service.runtime.fair_queue import MAX_CLIENTS, Weights, equal
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


@dataclass
class Shares:
    """Start-time fair queueing of a bucket's batch places, kept across batches: each client's account is the
    places it was given, each divided by its weight; the next place goes to the smallest account. A client that
    (re)appears starts at the clock (the account of the last place given), so it earns no credit for being away;
    equal weights give one place per client per round."""

    used: dict[str, float] = field(default_factory=dict)
    clock: float = 0.0

    def start(self, client: str) -> float:
        return max(self.used.get(client, self.clock), self.clock)

    def give(self, client: str, weight: float) -> None:
        start = self.start(client)
        self.clock = start
        self.used[client] = start + 1.0 / weight

    def forget_idle(self, queued: set[str]) -> None:
        """Drop the accounts that are as if never seen: no item queued, and not ahead of the clock; past
        ``MAX_CLIENTS`` accounts, every account without a queued item (bounded memory)."""
        crowded = len(self.used) > MAX_CLIENTS
        for client in [c for c, used in self.used.items() if c not in queued and (crowded or used <= self.clock)]:
            del self.used[client]


def fair_take(
    queue: deque[Pending], n: int, shares: Shares | None = None, weight_of: Weights = equal
) -> tuple[list[Pending], deque[Pending]]:
    """``n`` items for the next batch, in fair turns (``Shares``; ties go to the client with the oldest item), and
    the rest in their order: a client with many queued items cannot fill every batch while another waits, and
    clients' shares of the places follow their weights."""
    shares = shares if shares is not None else Shares()
    lines: dict[str, deque[Pending]] = {}
    for pending in queue:
        lines.setdefault(pending.client, deque()).append(pending)
    order = {client: i for i, client in enumerate(lines)}
    chosen: list[Pending] = []
    while len(chosen) < n and lines:
        client = min(lines, key=lambda c: (shares.start(c), order[c]))
        chosen.append(lines[client].popleft())
        shares.give(client, weight_of(client))
        if not lines[client]:
            del lines[client]
    shares.forget_idle(set(lines))
    taken = {id(p) for p in chosen}
    return chosen, deque(p for p in queue if id(p) not in taken)


def heaviest_other(queue: deque[Pending], client: str, weight_of: Weights = equal) -> Pending | None:
    """When the queue is full: the newest item of the client with the most queued work for its weight, if that
    client would still hold more than ``client`` (for their weights) after trading one item; None when ``client``
    is (one of) the heaviest itself."""
    counts: dict[str, int] = {}
    for pending in queue:
        counts[pending.client] = counts.get(pending.client, 0) + 1
    if not counts:
        return None
    heaviest = max(counts, key=lambda c: counts[c] / weight_of(c))
    if (counts[heaviest] - 1) / weight_of(heaviest) < (counts.get(client, 0) + 1) / weight_of(client):
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
    shares: Shares = field(default_factory=Shares)
    """The clients' accounts of batch places (``fair_take``)."""

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
