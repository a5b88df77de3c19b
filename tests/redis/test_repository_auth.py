"""Managing models needs an admin key: with API keys on, the repository extension (REST and gRPC, through the real
``tritonclient``) answers 401 without a key and 403 to an inference key, and works with a key made by
``unirep keys create --admin``; the model it loads then answers inference keys. The same through a scale-out
gateway, whose repository lives in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.redis.helpers import Proc, RedisServer, launch, running, stop, unirep_cli, wait_ready
from tests.service.media import jpeg
from tests.service.repository_models import version_file, write_image_model
from tests.service.server import IMAGE_ONLY, free_port

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("repository")
    write_image_model(version_file(root, "pets", 1), ("cat", "dog"), seed=1)
    return {
        **IMAGE_ONLY,
        "UNIREP_AUTH_ENABLED": "true",
        "UNIREP_REDIS_NAMESPACE": "repoauth",
        "UNIREP_REDIS_URL": redis_server.url,
        "UNIREP_MODEL_REPOSITORY": str(root),
        "UNIREP_MODEL_CONTROL": "explicit",
        "UNIREP_GRPC_PORT": str(free_port()),
    }


@pytest.fixture(scope="module")
def server(workdir: Path, env: dict[str, str]) -> Iterator[Proc]:
    with running("serve", workdir, env) as proc:
        yield proc


def token(env: dict[str, str], *flags: str) -> str:
    done = unirep_cli("keys", "create", "repo-test", "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["admin"] is ("--admin" in flags)
    return str(created["token"])


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}  # lower case: gRPC metadata keys must be


def test_only_admin_keys_manage_models(server: Proc, env: dict[str, str]) -> None:
    admin, inference = token(env, "--admin"), token(env)
    rest = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=300)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{env['UNIREP_GRPC_PORT']}")
    for headers, status in (({}, "401"), (bearer(inference), "403")):
        with pytest.raises(InferenceServerException) as refused:
            rest.load_model("pets", headers=headers)
        assert f"[{status}]" in str(refused.value) or refused.value.status() == status
        with pytest.raises(InferenceServerException):
            rest.get_model_repository_index(headers=headers)
    with pytest.raises(InferenceServerException) as denied:
        grpc.load_model("pets", headers=bearer(inference))
    assert denied.value.status() == "StatusCode.PERMISSION_DENIED"
    assert server.metric("unirep_auth_rejected_total", reason="forbidden") >= 2

    grpc.load_model("pets", headers=bearer(admin))
    names = {(m.name, m.state) for m in grpc.get_model_repository_index(headers=bearer(admin)).models}
    assert ("pets", "READY") in names
    tensor = httpclient.InferInput("FILE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([jpeg(3)[1]], dtype=np.object_))
    wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=2)]
    result = rest.infer("pets", [tensor], outputs=wanted, headers=bearer(inference))
    assert {row.decode().split(":", 2)[2] for row in result.as_numpy("PROBABILITIES")[0]} == {"cat", "dog"}
    rest.unload_model("pets", headers=bearer(admin))
    rest.close()
    grpc.close()


def test_a_scale_out_gateway_needs_an_admin_key_too(workdir: Path, env: dict[str, str]) -> None:
    """The same check through ``unirep gateway``: the repository in Redis is changed by admin keys alone."""
    scaled = {**env, "UNIREP_REDIS_NAMESPACE": "repoauth-scale", "UNIREP_GRPC_PORT": str(free_port())}
    worker_env = {k: v for k, v in scaled.items() if not k.startswith(("UNIREP_MODEL_", "UNIREP_GRPC"))}
    worker = launch("worker", workdir, worker_env)
    gateway = launch("gateway", workdir, scaled)
    try:
        wait_ready(worker, gateway)
        admin, inference = token(scaled, "--admin"), token(scaled)
        rest = httpclient.InferenceServerClient(gateway.url.removeprefix("http://"), network_timeout=300)
        with pytest.raises(InferenceServerException) as refused:
            rest.load_model("pets", headers=bearer(inference))
        assert "[403]" in str(refused.value) or refused.value.status() == "403"
        with pytest.raises(InferenceServerException):
            rest.get_model_repository_index()
        rest.load_model("pets", headers=bearer(admin))
        entries = {(e["name"], e["state"]) for e in rest.get_model_repository_index(headers=bearer(admin))}
        assert ("pets", "READY") in entries
        tensor = httpclient.InferInput("FILE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([jpeg(3)[1]], dtype=np.object_))
        wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=2)]
        result = rest.infer("pets", [tensor], outputs=wanted, headers=bearer(inference))
        assert {row.decode().split(":", 2)[2] for row in result.as_numpy("PROBABILITIES")[0]} == {"cat", "dog"}
        with pytest.raises(InferenceServerException):
            rest.unload_model("pets", headers=bearer(inference))
        rest.unload_model("pets", headers=bearer(admin))
        rest.close()
    finally:
        stop(gateway)
        stop(worker)
