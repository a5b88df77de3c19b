"""Serving clients in turn: free decoders go to the client with the least decoding so far (a lone client gets
them all), and a batch takes one item per client per round; a full queue's 429 falls on the heaviest client. With
weights (an API key's), the turns, the batch places, the 429 and the decode-time backstop follow them."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from service.runtime.bucket import Pending, Shares, fair_take, heaviest_other
from service.runtime.decode_guard import DecodeGuard, GuardPolicy
from service.runtime.fair_queue import MAX_CLIENTS, ClientWeights, FairQueue
from unirep_errors import RateLimitedError


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


async def _weighted_order(arrivals: list[str], weights: dict[str, float], seconds: float = 0.01) -> list[str]:
    """Clients in the order they get the one decoder, when ``arrivals`` all wait at once, weighted."""
    queue: FairQueue[int] = FairQueue(lambda client: weights.get(client, 1.0))
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
        await asyncio.sleep(0)
    queue.put_nowait(0)
    await asyncio.gather(*tasks)
    return served


def test_decoder_turns_follow_the_clients_weights() -> None:
    """Weight 3 against weight 1, both waiting throughout: three turns to one, in every stretch of the order."""
    served = asyncio.run(_weighted_order(["light"] * 20 + ["heavy"] * 60, {"heavy": 3.0}))
    for start in range(0, 80, 8):
        window = served[start : start + 8]
        assert window.count("heavy") == 6, (start, served)


def test_a_weighted_client_is_charged_its_cost_divided_by_its_weight() -> None:
    async def scenario() -> list[str]:
        queue: FairQueue[int] = FairQueue(lambda c: 4.0 if c == "w4" else 1.0)
        queue.put_nowait(0)
        slot = await queue.get("w4")
        queue.settle("w4", 0.4)  # 0.4 decoder-seconds at weight 4 is 0.1 of virtual time
        waiting = [asyncio.create_task(queue.get(c)) for c in ("w1", "w4")]
        await asyncio.sleep(0)
        queue.put_nowait(slot)
        first = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        done = next(iter(first[0]))
        order = ["w1" if done is waiting[0] else "w4"]
        for task in waiting:
            task.cancel()
        return order

    # w4 used 0.1 of virtual time, w1 arrives at the clock (0.0): w1 goes first even though both wait
    assert asyncio.run(scenario()) == ["w1"]


def test_batch_places_follow_the_clients_weights_across_batches() -> None:
    """Batches of 2 (smaller than one round at weights 3 and 1): the accounts carry over, so over 4 batches the
    weight-3 client gets 6 places and the weight-1 client 2, never 4 each."""
    queue = deque([_pending(c, i) for i in range(12) for c in ("light", "heavy")])
    shares = Shares()
    taken: list[str] = []
    for _ in range(4):
        chosen, queue = fair_take(queue, 2, shares, {"heavy": 3.0, "light": 1.0}.__getitem__)
        taken += [p.client for p in chosen]
    assert taken.count("heavy") == 6 and taken.count("light") == 2, taken
    equal_shares = Shares()
    queue = deque([_pending(c, i) for i in range(12) for c in ("light", "heavy")])
    even: list[str] = []
    for _ in range(4):
        chosen, queue = fair_take(queue, 2, equal_shares)
        even += [p.client for p in chosen]
    assert even.count("heavy") == 4, even


def test_a_returning_client_earns_no_credit_for_its_absence() -> None:
    shares = Shares()
    queue = deque([_pending("a", i) for i in range(10)])
    _, rest = fair_take(queue, 8, shares)  # "a" alone: 8 places
    rest.extend(_pending("b", 100 + i) for i in range(10))
    chosen, _ = fair_take(rest, 4, shares)
    assert [p.client for p in chosen].count("a") == 2, [p.client for p in chosen]  # "b" starts at the clock


def test_idle_accounts_are_bounded() -> None:
    shares = Shares()
    for i in range(MAX_CLIENTS + 50):
        fair_take(deque([_pending(f"c{i}", i)]), 1, shares)
    assert len(shares.used) <= MAX_CLIENTS + 1


def test_a_full_queue_weighs_queued_items_by_the_clients_weights() -> None:
    queue = deque([_pending("gold", i) for i in range(4)] + [_pending("plain", 10 + i) for i in range(3)])
    weights = {"gold": 3.0}
    victim = heaviest_other(queue, "newcomer", lambda c: weights.get(c, 1.0))
    assert victim is not None and victim.client == "plain" and victim.item == 12  # 3 items at weight 1 > 4 at 3
    unweighted = heaviest_other(queue, "newcomer")
    assert unweighted is not None and unweighted.client == "gold"


def test_client_weights_default_to_one_and_are_bounded() -> None:
    weights = ClientWeights(limit=2)
    weights.note("a", 3.0)
    weights.note("b", 0.5)
    assert (weights.of("a"), weights.of("b"), weights.of("other")) == (3.0, 0.5, 1.0)
    weights.note("c", 2.0)  # over the limit: the least recently noted is forgotten
    assert (weights.of("a"), weights.of("c")) == (1.0, 2.0)
    weights.note("c", 1.0)
    assert weights.of("c") == 1.0


def test_the_decode_time_backstop_scales_with_the_weight() -> None:
    guard = DecodeGuard(GuardPolicy(decode_rate=1.0, decode_burst_s=1.0), lambda c: 4.0 if c == "gold" else 1.0)
    for client in ("gold", "plain"):
        guard.charge(client, 2.0)  # 2 decoder-seconds: past a 1 s burst, within a 4 s one
    guard.admit_client("gold", contended=True)
    with pytest.raises(RateLimitedError):
        guard.admit_client("plain", contended=True)
