"""Serving clients in turn: free decoders go to the client with the least decoding so far (a lone client gets
them all), and a batch takes one item per client per round; a full queue's 429 falls on the heaviest client."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from service.runtime.bucket import Pending, fair_take, heaviest_other
from service.runtime.fair_queue import FairQueue


async def _order(arrivals: list[str], decoders: int = 1, seconds: float = 0.01) -> list[str]:
    """Clients in the order they get a decoder, when ``arrivals`` all wait at once for ``decoders`` decoders."""
    queue: FairQueue[int] = FairQueue()
    served: list[str] = []

    async def job(client: str) -> None:
        slot = await queue.get(client)
        served.append(client)
        await asyncio.sleep(0)
        queue.settle(client, seconds)
        queue.put_nowait(slot)

    tasks = []
    for client in arrivals:
        tasks.append(asyncio.create_task(job(client)))
        await asyncio.sleep(0)  # arrival order is the list's
    for slot in range(decoders):
        queue.put_nowait(slot)
    await asyncio.gather(*tasks)
    return served


def test_a_light_client_is_served_next_not_after_the_heavy_clients_backlog() -> None:
    served = asyncio.run(_order(["heavy"] * 12 + ["light"]))
    assert served.index("light") <= 1, served


def test_clients_alternate_while_both_wait() -> None:
    served = asyncio.run(_order(["a"] * 4 + ["b"] * 4))
    assert served == ["a", "b", "a", "b", "a", "b", "a", "b"]


def test_a_lone_client_gets_every_free_decoder_at_once() -> None:
    async def scenario() -> list[int]:
        queue: FairQueue[int] = FairQueue()
        for slot in range(3):
            queue.put_nowait(slot)
        return [await queue.get("only") for _ in range(3)]

    assert sorted(asyncio.run(scenario())) == [0, 1, 2]


def test_a_client_that_gives_up_passes_its_turn_on() -> None:
    async def scenario() -> int:
        queue: FairQueue[int] = FairQueue()
        quitter = asyncio.create_task(queue.get("quitter"))
        patient = asyncio.create_task(queue.get("patient"))
        await asyncio.sleep(0)
        quitter.cancel()
        queue.put_nowait(7)
        return await asyncio.wait_for(patient, 1.0)

    assert asyncio.run(scenario()) == 7


def _pending(client: str, n: int) -> Pending:
    item: Any = n
    future: Any = None
    return Pending(item, lambda: False, future, client)


def test_a_batch_takes_one_item_per_client_per_round() -> None:
    queue = deque([_pending("heavy", i) for i in range(6)] + [_pending("light", 9)])
    chosen, rest = fair_take(queue, 2)
    assert [(p.client, p.item) for p in chosen] == [("heavy", 0), ("light", 9)]
    assert [p.item for p in rest] == [1, 2, 3, 4, 5]


def test_a_full_queue_refuses_the_heaviest_client() -> None:
    queue = deque([_pending("heavy", i) for i in range(3)])
    victim = heaviest_other(queue, "light")
    assert victim is not None and victim.client == "heavy" and victim.item == 2  # its newest makes room
    assert heaviest_other(queue, "heavy") is None  # the heaviest itself is refused
    even = deque([_pending("a", 0), _pending("a", 1), _pending("b", 2)])
    assert heaviest_other(even, "b") is None  # trading would not make it fairer
