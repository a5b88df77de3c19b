"""API keys and rate limits with two real gateways sharing one Redis, keys managed by the real ``unirep keys`` CLI.

401 without a valid key (and with ``WWW-Authenticate``), 429 with ``Retry-After`` past a key's limit counted
across both gateways, revocation effective at once everywhere, and probes and metrics open without a key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.redis.helpers import Proc, RedisServer, launch, stop, unirep_cli, wait_ready
from tests.service.media import jpeg
from tests.service.server import IMAGE_ONLY

SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_AUTH_ENABLED": "true",
    "UNIREP_RATE_LIMIT_PER_MINUTE": "6000",
    "UNIREP_REDIS_NAMESPACE": "authsuite",
}


@pytest.fixture(scope="module")
def checkpoint(workdir: Path) -> Path:
    """The image weights, from a local path that anonymous callers must not learn."""
    import torch

    from models import create_model

    path = workdir / "private-models" / "team-a" / "image.pth"
    path.parent.mkdir(parents=True)
    torch.save(create_model("unireplknet_a").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, checkpoint: Path) -> dict[str, str]:
    return {**SETTINGS, "UNIREP_REDIS_URL": redis_server.url, "UNIREP_IMAGE__WEIGHTS": str(checkpoint)}


@pytest.fixture(scope="module")
def gateways(workdir: Path, env: dict[str, str]) -> Iterator[list[Proc]]:
    procs = [launch("serve", workdir, env) for _ in range(2)]
    try:
        wait_ready(*procs)
        yield procs
    finally:
        for proc in procs:
            stop(proc)


def create_key(env: dict[str, str], name: str, *flags: str) -> dict[str, object]:
    done = unirep_cli("keys", "create", name, "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    created: dict[str, object] = json.loads(done.stdout)
    return created


def post(proc: Proc, token: str | None, seed: int = 0) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    _, data = jpeg(seed=seed)
    return httpx.post(f"{proc.url}/classify/image", files={"file": ("p.jpg", data)}, headers=headers, timeout=60)


def test_requests_without_a_valid_key_get_401(gateways: list[Proc]) -> None:
    for proc in gateways:
        for token in (None, "urk_made-up"):
            response = post(proc, token)
            assert response.status_code == 401, response.text
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] == "unauthorized"
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(f"{proc.url}{path}", timeout=10).status_code == 200
    assert gateways[0].metric("unirep_auth_rejected_total", reason="missing") >= 1
    assert gateways[0].metric("unirep_requests_total", status="401") >= 2


def test_a_created_key_works_on_every_gateway_and_is_listed_without_its_token(
    gateways: list[Proc], env: dict[str, str], redis_server: RedisServer
) -> None:
    created = create_key(env, "team-a")
    token = str(created["token"])
    assert token.startswith("urk_")
    for proc in gateways:
        assert post(proc, token).status_code == 200
    listing = unirep_cli("keys", "list", env=env)
    assert listing.returncode == 0 and created["id"] in listing.stdout and "team-a" in listing.stdout
    assert token not in listing.stdout
    dump = b"".join(redis_server.client().dump(k) or b"" for k in redis_server.client().scan_iter("authsuite:*"))
    assert token[4:].encode() not in dump  # only the hash is stored


def test_the_open_inference_protocol_and_previews_need_the_key_too(gateways: list[Proc], env: dict[str, str]) -> None:
    """The V2 route (through the real tritonclient) and /preview guard the model exactly as /classify does."""
    httpclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    token = str(create_key(env, "v2-user")["token"])
    _, data = jpeg(seed=7)
    url = gateways[0].url.removeprefix("http://")
    with httpclient.InferenceServerClient(url) as client:
        tensor = httpclient.InferInput("FILE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([data], dtype=np.object_))
        wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=1)]
        with pytest.raises(InferenceServerException) as refused:
            client.infer("image", [tensor], outputs=wanted)
        assert refused.value.status() == "401"
        answer = client.infer("image", [tensor], outputs=wanted, headers={"Authorization": f"Bearer {token}"})
        assert answer.as_numpy("PROBABILITIES").shape == (1, 1)
        assert client.is_server_ready()  # health stays open without a key
    preview = f"{gateways[0].url}/preview/image"
    assert httpx.post(preview, files={"file": ("p.jpg", data)}, timeout=60).status_code == 401
    keyed = {"Authorization": f"Bearer {token}"}
    shown = httpx.post(preview, files={"file": ("p.jpg", data)}, headers=keyed, timeout=60)
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")


def test_weights_paths_are_shown_to_key_holders_only(
    gateways: list[Proc], env: dict[str, str], checkpoint: Path
) -> None:
    token = str(create_key(env, "paths")["token"])
    url = gateways[0].url
    keyed = {"Authorization": f"Bearer {token}"}
    anonymous = httpx.get(f"{url}/models", timeout=10)
    holder = httpx.get(f"{url}/models", headers=keyed, timeout=10)
    assert anonymous.status_code == holder.status_code == 200
    (anon_image,) = [m for m in anonymous.json()["models"] if m["modality"] == "image"]
    (full_image,) = [m for m in holder.json()["models"] if m["modality"] == "image"]
    assert full_image["weights"] == str(checkpoint) and anon_image["weights"] == "image.pth"
    assert "private-models" not in anonymous.text and anon_image["model"] == full_image["model"]
    v2_anonymous = httpx.get(f"{url}/v2/models/image", timeout=10)
    v2_holder = httpx.get(f"{url}/v2/models/image", headers=keyed, timeout=10)
    assert v2_anonymous.json()["parameters"]["weights"] == "image.pth" and "private-models" not in v2_anonymous.text
    assert v2_holder.json()["parameters"]["weights"] == str(checkpoint)
    made_up = {"Authorization": "Bearer urk_made-up"}
    assert httpx.get(f"{url}/models", headers=made_up, timeout=10).status_code == 401
    assert httpx.get(f"{url}/v2/models/image", headers=made_up, timeout=10).status_code == 401


def test_a_keys_rate_limit_is_shared_by_both_gateways(gateways: list[Proc], env: dict[str, str]) -> None:
    token = str(create_key(env, "limited", "--rate-per-minute", "6", "--burst", "3")["token"])
    statuses = [post(gateways[i % 2], token, seed=i).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = post(gateways[1], token)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10  # one request per 10 s at 6/min
    other = str(create_key(env, "unaffected")["token"])
    assert post(gateways[1], other).status_code == 200  # limits are per key


def test_a_keys_rate_limit_counts_on_every_door(gateways: list[Proc], env: dict[str, str]) -> None:
    """/preview and the V2 route spend the same per-key budget as /classify: no door is a way around it."""
    token = str(create_key(env, "every-door", "--rate-per-minute", "6", "--burst", "3")["token"])
    keyed = {"Authorization": f"Bearer {token}"}
    _, data = jpeg(seed=11)
    v2_body = {"inputs": [{"name": "FILE", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    statuses = [
        httpx.post(f"{gateways[0].url}/preview/image", files={"file": ("p.jpg", data)}, headers=keyed, timeout=60),
        httpx.post(f"{gateways[1].url}/v2/models/image/infer", json=v2_body, headers=keyed, timeout=60),
        post(gateways[0], token, seed=12),
        httpx.post(f"{gateways[1].url}/preview/image", files={"file": ("p.jpg", data)}, headers=keyed, timeout=60),
        httpx.post(f"{gateways[0].url}/v2/models/image/infer", json=v2_body, headers=keyed, timeout=60),
    ]
    assert [r.status_code for r in statuses][3:] == [429, 429], [r.status_code for r in statuses]
    assert 200 in {statuses[0].status_code, statuses[2].status_code}


def test_a_revoked_key_is_refused_at_once_everywhere(gateways: list[Proc], env: dict[str, str]) -> None:
    created = create_key(env, "short-lived")
    token = str(created["token"])
    assert post(gateways[0], token).status_code == 200
    done = unirep_cli("keys", "revoke", str(created["id"]), env=env)
    assert done.returncode == 0, done.stderr
    assert [post(proc, token).status_code for proc in gateways] == [401, 401]
    assert unirep_cli("keys", "revoke", str(created["id"]), env=env).returncode == 1


def test_keys_fail_closed_when_redis_is_gone(
    gateways: list[Proc], env: dict[str, str], redis_server: RedisServer
) -> None:
    token = str(create_key(env, "during-outage")["token"])
    redis_server.stop()
    try:
        response = post(gateways[0], token)
        assert response.status_code == 503 and "Redis" in response.json()["error"]["message"]
        assert response.headers["Retry-After"]
    finally:
        redis_server.start()
