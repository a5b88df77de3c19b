"""Free decoders handed to waiting clients in turn, not first come first served.

Why: with a FIFO, a client that keeps twelve uploads in flight makes a client with one wait behind all twelve. Here
each waiting client has its own line, and a freed decoder goes to the client that has had the least decoding
time so far (start-time fair queueing, the same outcome as deficit round robin with a quantum of decode-seconds).
Clients are weighted equally by default; a client of weight ``w`` (its API key's, see ``ClientWeights``) is
charged ``cost / w``, so while clients wait their shares of decoding time are proportional to their weights. A
client that arrives is placed at the current virtual time, so it gets its turn soon but earns no credit for the
time it was away. Nothing is ever idle while someone waits, so a lone client gets every decoder.

Costs are decoder-seconds: a request is charged its client's typical decode time when it is handed a decoder, and
the difference when the decode ends, so a client of expensive inputs gets fewer of them per turn.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_CLIENTS = 10_000
_SMOOTHING = 0.2
_DEFAULT_COST_S = 0.05

Weights = Callable[[str], float]
"""A client's fair-scheduling weight (1.0 unless its API key carries another)."""


def equal(client: str) -> float:
    return 1.0


class ClientWeights:
    """The weight of each client that sent a request lately (the intake notes it from the client's API key, whose
    record carries it); 1.0 for any other. Bounded: the least recently noted are forgotten (and count as 1.0)."""

    def __init__(self, limit: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self._weights: OrderedDict[str, float] = OrderedDict()

    def note(self, client: str, weight: float) -> None:
        if weight == 1.0:
            self._weights.pop(client, None)
            return
        self._weights[client] = weight
        self._weights.move_to_end(client)
        while len(self._weights) > self.limit:
            self._weights.popitem(last=False)

    def of(self, client: str) -> float:
        return self._weights.get(client, 1.0)


class FairQueue(Generic[T]):
    """``await queue.get(client)`` -> a free item (a decoder), handed out in fair turns; ``put_nowait`` returns it.
    ``weight_of`` gives each client's weight: its turns come in proportion to it."""

    def __init__(self, weight_of: Weights = equal) -> None:
        self.weight_of = weight_of
        self._free: deque[T] = deque()
        self._lines: dict[str, deque[asyncio.Future[T]]] = {}
        self._used: dict[str, float] = {}
        """Virtual time of each client: decode-seconds it has been charged (from when it last arrived)."""
        self._cost: dict[str, float] = {}
        self._clock = 0.0
        self._order = itertools.count()
        self._arrival: dict[str, int] = {}

    def qsize(self) -> int:
        return len(self._free)

    def waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def waiting_of(self, client: str) -> int:
        return len(self._lines.get(client, ()))

    def waiting_clients(self) -> set[str]:
        return {client for client, line in self._lines.items() if line}

    def put_nowait(self, item: T) -> None:
        """A decoder came free: it goes to the next client in turn, or back to the free list."""
        while self._lines:
            client = min(self._lines, key=lambda c: (self._used[c], self._arrival[c]))
            line = self._lines[client]
            future = line.popleft()
            if not line:
                del self._lines[client]
            if not future.done():
                future.set_result(item)
                self._dispatched(client)
                return
        self._free.append(item)

    async def get(self, client: str) -> T:
        if self._free and not self._lines:
            self._arrive(client)
            self._dispatched(client)
            return self._free.popleft()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if client not in self._lines:
            self._arrive(client)
            self._lines[client] = deque()
        self._lines[client].append(future)
        if self._free:  # a free item beside waiting clients (never expected): hand it to whoever's turn it is
            self.put_nowait(self._free.popleft())
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a decoder as it gave up: pass it on
                self.put_nowait(future.result())
            else:
                self._forget(client, future)
            raise

    def settle(self, client: str, seconds: float) -> None:
        """A decode of ``client`` ended after ``seconds``: correct the estimate it was charged."""
        if client not in self._used:
            return
        estimate = self._cost.get(client, _DEFAULT_COST_S)
        self._used[client] += (max(0.0, seconds) - estimate) / self.weight_of(client)
        self._cost[client] = (1 - _SMOOTHING) * estimate + _SMOOTHING * max(0.0, seconds)

    def _arrive(self, client: str) -> None:
        self._used[client] = max(self._used.get(client, self._clock), self._clock)
        self._arrival[client] = next(self._order)
        if len(self._used) > MAX_CLIENTS:
            self._prune()

    def _dispatched(self, client: str) -> None:
        self._clock = max(self._clock, self._used[client])
        self._used[client] += self._cost.get(client, _DEFAULT_COST_S) / self.weight_of(client)

    def _forget(self, client: str, future: asyncio.Future[T]) -> None:
        line = self._lines.get(client)
        if line is not None and future in line:
            line.remove(future)
            if not line:
                del self._lines[client]

    def _prune(self) -> None:
        """Forget clients with nothing waiting whose account is at or behind the clock (as if never seen)."""
        for client in [c for c, used in self._used.items() if c not in self._lines and used <= self._clock]:
            del self._used[client]
            self._arrival.pop(client, None)
            self._cost.pop(client, None)
        if len(self._used) > MAX_CLIENTS:  # still too many: the longest-absent clients go first
            idle = sorted((c for c in self._used if c not in self._lines), key=self._arrival.__getitem__)
            for client in idle[: len(self._used) - MAX_CLIENTS]:
                del self._used[client]
                del self._arrival[client]
                self._cost.pop(client, None)
