"""Decoder faults against a real server: a crashing input is refused (422) and then quarantined, its sender runs
out of crash budget for that kind of input (429) while its other inputs and a neighbour at another address are
served, decoders killed through no fault of the
input are retried (200) or answered 503 with Retry-After (never 500, never a 'corrupt' 422), and expensive inputs
decode in a niced lane.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service import media
from tests.service.server import IMAGE_ONLY, Server, running

SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_WARMUP": "false",
    "UNIREP_DEBUG_FAULT_INJECTION": "true",
    "UNIREP_CLIENT_CRASH_BUDGET": "3",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("faults"), SETTINGS) as srv:
        yield srv


def client_at(server: Server, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.0.0.0/8 address works on Linux loopback)."""
    return httpx.Client(base_url=server.url, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def post(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post("/classify/image", files={"file": ("x.jpg", data)})


def decoder_pids(server: Server) -> list[int]:
    """The decoder processes: children of the fork server, itself a child of the server."""

    def children(pid: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{pid}/task").glob("*"):  # a child belongs to the thread that started it
            try:
                found += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return found

    return [pid for child in children(server.process.pid) for pid in children(child)]


def test_crashing_input_is_422_then_quarantined_while_neighbours_are_served(server: Server) -> None:
    crash = b"UNIREP-FAULT:crash\nquarantine-me"
    with client_at(server, "127.0.0.2") as attacker, client_at(server, "127.0.0.3") as neighbour:
        with ThreadPoolExecutor(4) as pool:
            good = [pool.submit(post, neighbour, media.jpeg(seed)[1]) for seed in range(6)]
            first = post(attacker, crash)
            assert [f.result().status_code for f in good] == [200] * 6
        assert first.status_code == 422, first.text
        assert first.json()["error"]["code"] == "decoder_crashed"
        lost = server.metric("unirep_preprocess_failures_total", modality="image", reason="crash")
        started = time.monotonic()
        again = post(neighbour, crash)  # the same bytes from anyone: refused without decoding
        assert again.status_code == 422 and again.json()["error"]["details"]["quarantined"] is True
        assert time.monotonic() - started < 1.0
        assert server.metric("unirep_preprocess_failures_total", modality="image", reason="crash") == lost


def test_client_over_its_crash_budget_is_refused_that_kind_of_input_only(server: Server) -> None:
    with client_at(server, "127.0.0.4") as attacker, client_at(server, "127.0.0.5") as neighbour:
        statuses = [post(attacker, b"UNIREP-FAULT:crash\n%d" % i).status_code for i in range(3)]
        assert statuses == [422, 422, 429], statuses  # two crashes per request (one retry); the budget is 3
        refused = post(attacker, b"UNIREP-FAULT:crash\nanother")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["details"]["input_kind"] == "image/other"
        assert post(attacker, media.jpeg(1)[1]).status_code == 200  # its JPEGs are another kind of input
        assert post(neighbour, media.jpeg(1)[1]).status_code == 200
        assert post(neighbour, b"UNIREP-FAULT:crash\nneighbour").status_code == 422  # not its budget


def test_decoder_killed_twice_is_503_with_retry_after(server: Server) -> None:
    with client_at(server, "127.0.0.6") as client:
        response = post(client, b"UNIREP-FAULT:kill\n")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        assert "corrupt" not in response.text
        assert post(client, b"UNIREP-FAULT:kill\n").status_code == 503  # not quarantined: not the input's fault


def test_expensive_inputs_have_a_niced_lane(server: Server) -> None:
    def nice(pid: int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    deadline = time.monotonic() + 30  # 2 decoders + 1 spare, and the heavy lane's 1 + 1 spare
    while len(decoder_pids(server)) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    values = sorted(nice(pid) for pid in decoder_pids(server))
    assert values[0] == 0 and values[-1] == 10, values


def test_decoders_killed_from_outside_do_not_fail_good_requests(server: Server) -> None:
    pids = decoder_pids(server)
    assert len(pids) >= 2, pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    with client_at(server, "127.0.0.7") as client, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda s: post(client, media.jpeg(s)[1]), range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses if r.status_code != 200]
    assert server.metric("unirep_requests_total", status="500") == 0
