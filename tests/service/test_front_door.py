"""The front door against a real server, through real sockets from distinct loopback addresses and through a
trusted proxy (127.0.0.9, which sends ``X-Forwarded-For``): who the client is, crash containment scoped to the
client and the kind of input (also from a shared address and behind the proxy), decoders shared in turn between
a heavy and a light client, a lone client never refused for decode time, and every door counting the status its
caller saw.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.service import media
from tests.service.server import IMAGE_ONLY, Server, free_port, running

PROXY = "127.0.0.9"
SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_WARMUP": "false",
    "UNIREP_DEBUG_FAULT_INJECTION": "true",
    "UNIREP_PREPROCESS_WORKERS": "1",
    "UNIREP_CLIENT_CRASH_BUDGET": "3",
    # A tiny decode-time budget: were it a cap rather than a backstop, a lone client would be refused at once.
    "UNIREP_CLIENT_DECODE_RATE": "0.05",
    "UNIREP_CLIENT_DECODE_BURST_S": "0.1",
    "UNIREP_TRUSTED_PROXIES": f"{PROXY}/32,127.0.0.1/32",
}
CRASH = b"UNIREP-FAULT:crash\n"
SLOW = b"UNIREP-FAULT:slow\n"
"""0.3 s of decoding, then 415 (not an image)."""
grpcclient = pytest.importorskip("tritonclient.grpc")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    port = free_port()
    with running(tmp_path_factory.mktemp("front"), {**SETTINGS, "UNIREP_GRPC_PORT": str(port)}) as srv:
        yield srv, port


@pytest.fixture(scope="module")
def server(served: tuple[Server, int]) -> Server:
    return served[0]


def client_at(server: Server, address: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def post(client: httpx.Client, data: bytes, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/classify/image", files={"file": ("x.bin", data)}, headers=headers)


def exhaust_crash_budget(client: httpx.Client, tag: str, forwarded_for: str | None = None) -> list[int]:
    """Crashing uploads (all different) until the sender is refused: 422, 422, then 429 (budget 3, one retry)."""
    return [post(client, CRASH + b"%s-%d" % (tag.encode(), i), forwarded_for).status_code for i in range(3)]


def test_crashes_from_a_shared_address_refuse_only_that_kind_of_input(server: Server) -> None:
    """Attackers and honest users behind one address are one client: the crashing kind is refused, JPEGs are not."""
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def honest(client: httpx.Client, seed: int) -> None:
        while not stop.is_set():
            statuses[post(client, media.jpeg(seed)[1]).status_code] += 1

    with client_at(server, "127.0.0.20") as attacker, client_at(server, "127.0.0.20") as neighbour:
        with ThreadPoolExecutor(2) as pool:
            loops = [pool.submit(honest, neighbour, seed) for seed in (1, 2)]
            assert exhaust_crash_budget(attacker, "shared") == [422, 422, 429]
            refused = [post(attacker, CRASH + b"shared-more-%d" % i).status_code for i in range(5)]
            stop.set()
            for loop in loops:
                loop.result()
        assert refused == [429] * 5
        assert statuses[200] >= 2 and set(statuses) == {200}, statuses  # no 429 for the good uploads
        assert post(neighbour, media.jpeg(3)[1]).status_code == 200  # and after the attack


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(server: Server) -> None:
    with client_at(server, PROXY) as proxy:
        assert exhaust_crash_budget(proxy, "proxied", "198.51.100.66") == [422, 422, 429]
        assert post(proxy, CRASH + b"again", "198.51.100.66").status_code == 429
        # Another user behind the same proxy: its good uploads and even its own bad one are its own business.
        assert post(proxy, media.jpeg(4)[1], "198.51.100.77").status_code == 200
        assert post(proxy, CRASH + b"victim", "198.51.100.77").status_code == 422
        # The attacker itself still gets its JPEGs classified: only the kind that crashed is refused.
        assert post(proxy, media.jpeg(5)[1], "198.51.100.66").status_code == 200
        # A forged left-most entry does not make the attacker someone else: the proxy appended the real one.
        assert post(proxy, CRASH + b"forged", "203.0.113.1, 198.51.100.66").status_code == 429


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(server: Server) -> None:
    with client_at(server, "127.0.0.10") as direct:
        assert exhaust_crash_budget(direct, "direct", "198.51.100.1") == [422, 422, 429]
        assert post(direct, CRASH + b"spoofed", "198.51.100.2").status_code == 429  # still the peer 127.0.0.10


def test_a_refused_kind_of_upload_is_refused_on_its_first_bytes(server: Server) -> None:
    """Over its crash budget, a client's next upload of that kind is answered 429 from the body's first bytes: the
    remaining 5 MB are never awaited (a refusal that waited for the body would end in a 408 here)."""
    with client_at(server, "127.0.0.11") as client:
        assert exhaust_crash_budget(client, "early") == [422, 422, 429]
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10, source_address=("127.0.0.11", 0)) as sock:
        head = b"POST /classify/image HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        sock.sendall(head + b"Content-Length: 5000000\r\n\r\n" + CRASH + b"x" * 2048)
        sock.settimeout(5)  # well under the 10 s a stalled body waits for its 408
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 429"), reply[:200]


def test_grpc_reads_the_forwarded_client_from_its_metadata(served: tuple[Server, int]) -> None:
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{served[1]}")  # 127.0.0.1 is a trusted proxy here

    def call(data: bytes, who: str) -> str:
        tensor = grpcclient.InferInput("FILE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([data], dtype=np.object_))
        try:
            triton.infer("image", [tensor], headers={"x-forwarded-for": who})
        except Exception as exc:
            return str(exc.status())  # type: ignore[attr-defined]
        return "OK"

    try:
        outcomes = [call(CRASH + b"grpc-%d" % i, "198.51.100.90") for i in range(3)]
        assert outcomes[-1] == "StatusCode.RESOURCE_EXHAUSTED", outcomes
        assert call(CRASH + b"grpc-other", "198.51.100.91") == "StatusCode.INVALID_ARGUMENT"
        assert call(media.jpeg(6)[1], "198.51.100.90") == "OK"
    finally:
        triton.close()


def test_a_light_client_is_served_beside_a_heavy_one(server: Server) -> None:
    """One decoder; a heavy client queues 10 slow decodes (0.3 s each), then a light one sends a JPEG: the light
    one is answered before most of the heavy backlog (first come first served would put it after all 10)."""
    finished: list[tuple[str, int]] = []
    lock = threading.Lock()

    def send(client: httpx.Client, data: bytes, name: str) -> int:
        status = post(client, data).status_code
        with lock:
            finished.append((name, status))
        return status

    with (
        client_at(server, "127.0.0.30") as heavy,
        client_at(server, "127.0.0.31") as light,
        ThreadPoolExecutor(11) as pool,
    ):
        backlog = [pool.submit(send, heavy, SLOW + b"%d" % i, "heavy") for i in range(10)]
        deadline = time.monotonic() + 10
        while server.metric("unirep_in_flight_requests") < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        light_status = pool.submit(send, light, media.jpeg(7)[1], "light").result()
        heavy_statuses = [f.result() for f in backlog]
    assert light_status == 200
    # Heavy uploads decoded before the light one: those that were refused (429, the decode-time backstop, which
    # binds once the light client waits) took no decoder and do not count.
    decoded_before = [s for name, s in finished[: finished.index(("light", 200))] if name == "heavy" and s == 415]
    assert len(decoded_before) <= 3, finished
    assert set(heavy_statuses) <= {415, 429}, heavy_statuses


def test_a_lone_client_is_never_refused_for_decode_time(server: Server) -> None:
    with client_at(server, "127.0.0.32") as lone, ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: post(lone, SLOW + b"lone-%d" % i).status_code, range(12)))
    assert statuses == [415] * 12  # decoded (0.3 s each, then not an image); 3.6 s against a 0.1 s burst: no 429


def _door_statuses(server: Server, door: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for (name, labels), value in server.samples().items():
        table = dict(labels)
        if name == "unirep_requests_total" and table.get("endpoint") == door:
            out[table["status"]] += int(value)
    return out


def test_every_door_counts_the_status_its_caller_saw(served: tuple[Server, int]) -> None:
    server, port = served
    jpeg = media.jpeg(8)[1]
    v2_body = {"inputs": [{"name": "FILE", "datatype": "BYTES", "shape": [1], "data": ["not an image"]}]}
    calls = {
        "classify": [
            lambda c: c.post("/classify/image", files={"file": ("a.jpg", jpeg)}),
            lambda c: c.post("/classify/image", files={"file": ("a.jpg", b"not an image")}),
            lambda c: c.post("/classify/image?top_k=3&top_k=4", files={"file": ("a.jpg", jpeg)}),
            lambda c: c.post("/classify/hologram", files={"file": ("a.jpg", jpeg)}),
            lambda c: c.post("/classify/image?top_k=0", files={"file": ("a.jpg", jpeg)}),  # refused by FastAPI
        ],
        "embed": [lambda c: c.post("/embed/image", files={"file": ("a.jpg", jpeg)})],
        "preview": [
            lambda c: c.post("/preview/image", files={"file": ("a.jpg", jpeg)}),
            lambda c: c.post("/preview/image", files={"file": ("a.jpg", b"not an image")}),
        ],
        "v2_infer": [
            lambda c: c.post("/v2/models/image/infer", json=v2_body),
            lambda c: c.post(
                "/v2/models/image/infer", content=b"{not json", headers={"Content-Type": "application/json"}
            ),
            lambda c: c.post("/v2/models/image/versions/7/infer", json=v2_body),
        ],
    }
    with client_at(server, "127.0.0.40") as client:
        for door, requests in calls.items():
            before = _door_statuses(server, door)
            seen = Counter(str(call(client).status_code) for call in requests)
            after = _door_statuses(server, door)
            assert after - before == seen, (door, seen, after - before)
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        before = _door_statuses(server, "grpc_infer")
        tensor = grpcclient.InferInput("FILE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
        triton.infer("image", [tensor])
        bad = grpcclient.InferInput("FILE", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
        with pytest.raises(Exception, match="INVALID_ARGUMENT"):
            triton.infer("image", [bad])
        counted = _door_statuses(server, "grpc_infer") - before
        assert counted["200"] == 1 and sum(counted.values()) == 2
        assert [s for s in counted if s != "200"] in (["400"], ["413"], ["415"], ["422"]), counted
    finally:
        triton.close()
