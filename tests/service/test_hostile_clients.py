"""Hostile clients against a real ``unirep serve`` over raw sockets: oversized heads (431), heads and bodies that
stall (408, and counted as 408 on every door), more connections than allowed (503 at accept), malformed requests
(400 in the JSON envelope), and clients that hang up mid-upload (counted as 499, never 5xx, logged without a
traceback).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.service import media
from tests.service.server import IMAGE_ONLY, Server, running

SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_WARMUP": "false",
    "UNIREP_PREPROCESS_WORKERS": "1",
    "UNIREP_MAX_HEADER_BYTES": "8192",
    "UNIREP_HEADER_TIMEOUT_S": "1",
    "UNIREP_BODY_IDLE_TIMEOUT_S": "1",
    "UNIREP_BODY_TIMEOUT_S": "3",
    "UNIREP_MAX_CONNECTIONS": "20",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("hostile"), SETTINGS) as srv:
        yield srv


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes (every refusal here closes): status, headers, body."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _error_code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


def test_oversized_head_in_one_piece_is_431(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        status, headers, body = _read_response(sock)
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert _error_code(body) == "headers_too_large"


def test_unfinished_head_past_the_limit_is_431_before_it_ends(server: Server) -> None:
    with _connect(server) as sock:
        # Past the 8 KiB limit and never terminated, in one send: bytes arriving after the server's close would
        # make the kernel reset the connection and drop the 431 before the client reads it.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 12_000)
        status, _, body = _read_response(sock)
    assert status == 431 and _error_code(body) == "headers_too_large"


def test_client_still_sending_after_the_431_reads_it_without_a_reset(server: Server) -> None:
    """The refusal is written, the server's side is shut (FIN), and late input is drained for a while (a lingering
    close): a client still uploading reads the 431 and is not answered with a reset, which on many TCP stacks
    destroys an answer that has not been read yet."""
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"d" * 12_000)
        status, _, body = _read_response(sock)  # ends at the server's FIN
        for _ in range(3):  # the upload goes on: a closed socket would answer these with a reset
            time.sleep(0.1)
            sock.sendall(b"d" * 16_384)
    assert status == 431 and _error_code(body) == "headers_too_large"


def test_refused_client_cannot_hold_the_socket_by_streaming(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"e" * 12_000)
        started, closed = time.monotonic(), False
        while time.monotonic() - started < 15:
            try:
                sock.sendall(b"e" * 65_536)
            except OSError:  # reset or broken pipe: the server has closed
                closed = True
                break
            time.sleep(0.01)
    assert closed, "the server kept draining a refused connection for 15 s"


def test_head_just_under_the_limit_is_served(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: " + b"c" * 7000 + b"\r\n\r\n")
        status, _, body = _read_response(sock)
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_trickled_head_is_408_after_the_header_timeout(server: Server) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(5):  # a byte every 0.4 s: never idle, never finished
            time.sleep(0.4)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        status, _, body = _read_response(sock)
    assert status == 408 and _error_code(body) == "request_timeout"
    assert 0.8 < time.monotonic() - started < 5.0


def test_idle_connection_without_a_request_is_closed_quietly(server: Server) -> None:
    with _connect(server) as sock:
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed, nothing written


@pytest.mark.parametrize("path", ["/classify/image", "/preview/image", "/v2/models/image/infer"])
def test_stalled_body_is_408_and_counted_as_408_on_every_door(server: Server, path: str) -> None:
    before = server.metric("unirep_requests_total", modality="image", status="408")
    hung_up = server.metric("unirep_requests_total", status="499")
    with _connect(server) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n" % path.encode()
            + b"Content-Length: 50000000\r\n\r\n"
            + b"\xff" * 48_000
        )
        status, _, body = _read_response(sock)
    assert status == 408 and _error_code(body) == "request_timeout"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.metric("unirep_requests_total", status="408") == before:
        time.sleep(0.1)
    assert server.metric("unirep_requests_total", modality="image", status="408") == before + 1
    assert server.metric("unirep_requests_total", status="500") == 0
    assert server.metric("unirep_requests_total", status="499") == hung_up
    assert "Traceback" not in server.log_tail(20_000)


@pytest.mark.parametrize(
    ("path", "door"),
    [("/v2/repository/index", "repository_index"), ("/v2/repository/models/pets/load", "repository_load")],
)
def test_a_stalled_management_body_is_408_and_counted_as_408(server: Server, path: str, door: str) -> None:
    """The repository routes read their body through the front door too: a stalled one is answered 408 by the
    protocol and counted as 408 on its endpoint, not as a hang-up or an error."""
    before = server.metric("unirep_requests_total", endpoint=door, status="408")
    with _connect(server) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path.encode()
            + b'Content-Length: 5000\r\n\r\n{"parameters": {'
        )
        status, _, body = _read_response(sock)
    assert status == 408 and _error_code(body) == "request_timeout"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.metric("unirep_requests_total", endpoint=door, status="408") == before:
        time.sleep(0.1)
    assert server.metric("unirep_requests_total", endpoint=door, status="408") == before + 1
    assert server.metric("unirep_requests_total", endpoint=door, status="499") == 0
    assert server.metric("unirep_requests_total", endpoint=door, status="500") == 0


def test_trickled_body_is_408_at_the_body_deadline(server: Server) -> None:
    """A byte every 0.4 s is never idle for the 1 s idle timeout; the 3 s total deadline ends it."""
    with _connect(server) as sock:
        sock.sendall(
            b"POST /classify/image HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        for _ in range(25):
            time.sleep(0.4)
            try:
                sock.sendall(b"\xff")
            except OSError:
                break
        status, headers, body = _read_response(sock)
    assert status == 408 and "did not arrive within 3 s" in json.loads(body)["error"]["message"]
    assert 2.5 < time.monotonic() - started < 6.0
    assert headers["x-content-type-options"] == "nosniff"


def test_connections_over_the_cap_are_refused_at_accept(server: Server) -> None:
    held = [_connect(server) for _ in range(20)]
    try:
        time.sleep(0.2)
        with _connect(server) as extra:
            status, headers, body = _read_response(extra)
        assert status == 503 and headers["retry-after"] == "1"
        assert _error_code(body) == "service_unavailable"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with _connect(server) as sock:  # the slots come back once those close
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_response(sock)[0] == 200


def test_malformed_request_line_is_400_in_the_envelope(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1 extra\r\n\r\n")
        status, headers, body = _read_response(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert _error_code(body) == "bad_request"


def test_hang_up_mid_upload_is_499_without_a_traceback(server: Server) -> None:
    before = server.metric("unirep_requests_total", status="499")
    _, jpeg = media.jpeg(1)
    with _connect(server) as sock:
        sock.sendall(
            b"POST /classify/image HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(jpeg) + 10_000) + jpeg[:1000]
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.metric("unirep_requests_total", status="499") == before:
        time.sleep(0.1)
    assert server.metric("unirep_requests_total", status="499") == before + 1
    assert server.metric("unirep_requests_total", status="500") == 0
    assert "Traceback" not in server.log_tail(20_000)


def test_known_counters_exist_at_zero_before_any_event(server: Server) -> None:
    samples = server.samples()
    for name, labels in (
        ("unirep_rejected_requests_total", {"modality": "image", "reason": "queue_full"}),
        ("unirep_preprocess_failures_total", {"modality": "image", "reason": "crash"}),
        ("unirep_preprocess_failures_total", {"modality": "image", "reason": "timeout"}),
        ("unirep_dropped_requests_total", {"modality": "image", "reason": "deadline"}),
    ):
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, key
        assert samples[key] == 0


def test_two_file_parts_are_refused(server: Server) -> None:
    _, jpeg = media.jpeg(2)
    with server.client() as client:
        response = client.post("/classify/image", files=[("file", ("a.jpg", jpeg)), ("file", ("b.jpg", b"other"))])
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_parameter"


def test_repeated_query_parameter_is_refused(server: Server) -> None:
    with server.client() as client:
        response = client.post("/classify/image?top_k=3&top_k=50", files={"file": media.jpeg(3)})
    assert response.status_code == 422 and "top_k" in response.json()["error"]["message"]


@pytest.mark.parametrize("value", ["1_000", "1e3", "+500", "1500.5", "0", "-1", "0x10", "99999999999"])
def test_timeout_header_is_a_strict_positive_integer(server: Server, value: str) -> None:
    with server.client() as client:
        response = client.post(
            "/classify/image", files={"file": media.jpeg(4)}, headers={"X-Request-Timeout-Ms": value}
        )
    assert response.status_code == 422, (value, response.text)
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_top_k_above_the_class_count_is_capped_and_says_so(server: Server) -> None:
    with server.client() as client:
        response = client.post("/classify/image?top_k=5000", files={"file": media.jpeg(5)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["top_k"] == len(body["predictions"]) == 100  # max_top_k (ImageNet has 1000 classes)
    assert "capped" in body["note"]
    with server.client() as client:
        plain = client.post("/classify/image?top_k=3", files={"file": media.jpeg(5)}).json()
    assert "note" not in plain and len(plain["predictions"]) == 3
