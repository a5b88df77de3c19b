"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService`` on ``grpc_port``), called by the real
``tritonclient.grpc``: health, metadata, files for every modality, FP32 maps, top-k classification, errors; the
answers equal the native routes' and the REST front's for the same input."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from modality_adapters import get_adapter
from service.settings import MODALITIES
from tests.service import media
from tests.service.server import Server, free_port, running

EXPECTED_CLASSES = {"image": 1000, "audio": 35, "video": 400, "pointcloud": 40, "timeseries": 2}
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    port = free_port()
    with running(tmp_path_factory.mktemp("v2grpc"), {"UNIREP_GRPC_PORT": str(port)}) as srv:
        yield srv, port


@pytest.fixture(scope="module")
def client(served: tuple[Server, int]) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{served[1]}")
    yield triton
    triton.close()


def file_input(*files: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("FILE", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
    return tensor


def test_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "classification" in client.get_server_metadata(as_json=True)["extensions"]
    for modality in MODALITIES:
        assert client.is_model_ready(modality)
        meta = client.get_model_metadata(modality, as_json=True)
        assert [t["name"] for t in meta["outputs"]] == ["PROBABILITIES", "EMBEDDING"]
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("hologram")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("modality", MODALITIES)
def test_files_top_k_equal_native(
    served: tuple[Server, int], client: grpcclient.InferenceServerClient, modality: str
) -> None:
    name, data = media.MEDIA[modality](31)
    wanted = [
        grpcclient.InferRequestedOutput("PROBABILITIES", class_count=3),
        grpcclient.InferRequestedOutput("EMBEDDING"),
    ]
    result = client.infer(modality, [file_input(data)], outputs=wanted)
    rows = [row.decode().split(":", 2) for row in result.as_numpy("PROBABILITIES")[0]]
    assert len(rows) == min(3, EXPECTED_CLASSES[modality])  # a count above the class count returns them all
    with httpx.Client(base_url=served[0].url, timeout=120) as http:
        top = http.post(f"/classify/{modality}?top_k={len(rows)}", files={"file": (name, data)}).json()["predictions"]
        embedding = http.post(f"/embed/{modality}", files={"file": (name, data)}).json()["embedding"]
    assert [int(i) for _, i, _ in rows] == [p["index"] for p in top]
    np.testing.assert_allclose([float(s) for s, _, _ in rows], [p["score"] for p in top], atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("EMBEDDING")[0], embedding, atol=1e-5)


def test_maps_and_batches(served: tuple[Server, int], client: grpcclient.InferenceServerClient) -> None:
    files = [media.jpeg(seed)[1] for seed in (41, 42)]
    # gRPC metadata has no free-form parameters; the REST twin publishes the preprocessing the server runs.
    preprocess = httpx.get(f"{served[0].url}/v2/models/image", timeout=30).json()["parameters"]["preprocess"]
    maps = np.stack([get_adapter("image").decode(f, **preprocess).numpy() for f in files])
    tensor = grpcclient.InferInput("MAP", list(maps.shape), "FP32")
    tensor.set_data_from_numpy(maps)
    wanted = [grpcclient.InferRequestedOutput("PROBABILITIES")]
    from_maps = client.infer("image", [tensor], outputs=wanted).as_numpy("PROBABILITIES")
    from_files = client.infer("image", [file_input(*files)], outputs=wanted).as_numpy("PROBABILITIES")
    assert from_maps.shape == (2, 1000)
    np.testing.assert_allclose(from_maps, from_files, atol=1e-5)
    np.testing.assert_allclose(from_maps.sum(axis=1), 1.0, atol=1e-3)


def test_errors(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as undecodable:
        client.infer("image", [file_input(b"not a picture at all")])
    assert undecodable.value.status() == "StatusCode.INVALID_ARGUMENT"
    bad = grpcclient.InferInput("MAP", [1, 3, 2, 2], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 2, 2), dtype=np.float32))
    with pytest.raises(InferenceServerException) as shape:
        client.infer("image", [bad])
    assert "MAP must be FP32 of shape" in shape.value.message()
