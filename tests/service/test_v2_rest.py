"""The Open Inference Protocol (KServe V2) REST front, called by the real ``tritonclient.http`` against a running
``unirep serve``: health, metadata, BYTES files for every modality, FP32 maps, top-k classification, binary and
JSON outputs, errors; answers equal the native routes' for the same input."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from modality_adapters import get_adapter
from service.settings import MODALITIES
from tests.service import media
from tests.service.server import Server, running

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("v2rest"), {}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120.0)
    yield triton
    triton.close()


def file_input(*files: bytes, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("FILE", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=np.object_), binary_data=binary)
    return tensor


def native(server: Server, path: str, name: str, data: bytes) -> dict[str, object]:
    response = httpx.post(f"{server.url}{path}", files={"file": (name, data)}, timeout=120)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "unirep" and "binary_tensor_data" in meta["extensions"]
    for modality in MODALITIES:
        assert client.is_model_ready(modality)
        model = client.get_model_metadata(modality)
        assert model["name"] == modality
        assert {t["name"] for t in model["inputs"]} == {"FILE", "MAP"}
        assert {t["name"]: t["datatype"] for t in model["outputs"]} == {"PROBABILITIES": "FP32", "EMBEDDING": "FP32"}
        assert model["parameters"]["weights_random"] is True
    assert not client.is_model_ready("hologram")


@pytest.mark.parametrize("modality", MODALITIES)
def test_bytes_top_k_equals_native_classify(
    server: Server, client: httpclient.InferenceServerClient, modality: str
) -> None:
    name, data = media.MEDIA[modality](11)
    wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=2)]
    # Text files (the series' JSON) may travel as JSON strings; binary files need the binary extension.
    result = client.infer(modality, [file_input(data, binary=modality != "timeseries")], outputs=wanted)
    rows = result.as_numpy("PROBABILITIES")
    assert rows.shape == (1, 2)
    got = [row.decode().split(":", 2) for row in rows[0]]
    expected = native(server, f"/classify/{modality}?top_k=2", name, data)["predictions"]
    assert isinstance(expected, list)
    assert [int(index) for _, index, _ in got] == [p["index"] for p in expected]
    assert [label for _, _, label in got] == [p["label"] for p in expected]
    np.testing.assert_allclose([float(score) for score, _, _ in got], [p["score"] for p in expected], atol=1e-5)
    assert result.get_response()["parameters"]["weights"] == "random-init"


@pytest.mark.parametrize("binary", [True, False])
def test_probabilities_and_embedding_binary_or_json(
    server: Server, client: httpclient.InferenceServerClient, binary: bool
) -> None:
    name, data = media.jpeg(12)
    wanted = [
        httpclient.InferRequestedOutput("PROBABILITIES", binary_data=binary),
        httpclient.InferRequestedOutput("EMBEDDING", binary_data=binary),
    ]
    result = client.infer("image", [file_input(data)], outputs=wanted)
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert ("binary_data_size" in (outputs["EMBEDDING"].get("parameters") or {})) is binary
    probabilities = result.as_numpy("PROBABILITIES")
    embedding = result.as_numpy("EMBEDDING")
    assert probabilities.shape == (1, 1000) and probabilities.dtype == np.float32
    assert abs(float(probabilities.sum()) - 1.0) < 1e-3
    top = native(server, "/classify/image?top_k=3", name, data)["predictions"]
    assert isinstance(top, list)
    assert list(np.argsort(-probabilities[0])[:3]) == [p["index"] for p in top]
    expected = native(server, "/embed/image", name, data)["embedding"]
    np.testing.assert_allclose(embedding[0], np.asarray(expected, dtype=np.float32), atol=1e-5)


def test_fp32_maps_equal_files(client: httpclient.InferenceServerClient) -> None:
    files = [media.jpeg(seed)[1] for seed in (21, 22, 23)]
    params = client.get_model_metadata("image")["parameters"]["preprocess"]
    maps = np.stack([get_adapter("image").decode(f, **params).numpy() for f in files])
    tensor = httpclient.InferInput("MAP", list(maps.shape), "FP32")
    tensor.set_data_from_numpy(maps)
    wanted = [httpclient.InferRequestedOutput("PROBABILITIES")]
    from_maps = client.infer("image", [tensor], outputs=wanted).as_numpy("PROBABILITIES")
    from_files = client.infer("image", [file_input(*files)], outputs=wanted).as_numpy("PROBABILITIES")
    assert from_maps.shape == from_files.shape == (3, 1000)
    np.testing.assert_allclose(from_maps, from_files, atol=1e-5)
    assert len({int(np.argmax(row)) for row in from_maps}) >= 1


def test_errors_are_protocol_bodies(server: Server, client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("hologram", [file_input(b"x")])
    assert unknown.value.status() == "404"
    with pytest.raises(InferenceServerException) as undecodable:
        client.infer("image", [file_input(b"definitely not a picture")])
    same = httpx.post(f"{server.url}/classify/image", content=b"definitely not a picture")
    assert same.status_code >= 400 and undecodable.value.status() == str(same.status_code)
    assert undecodable.value.message() == same.json()["error"]["message"]
    bad_shape = httpx.post(
        f"{server.url}/v2/models/image/infer",
        json={"inputs": [{"name": "MAP", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [0.0] * 12}]},
    )
    assert bad_shape.status_code == 400
    assert set(bad_shape.json()) == {"error"} and "MAP" in bad_shape.json()["error"]
    garbage = httpx.post(
        f"{server.url}/v2/models/image/infer", content=b"{not json", headers={"Inference-Header-Content-Length": "99"}
    )
    assert garbage.status_code == 400 and "error" in garbage.json()
    assert server.metric("unirep_requests_total", endpoint="v2_infer", status="200") >= 1


def test_a_format_parameter_reaches_the_decoder_as_the_adapter_reads_it(server: Server) -> None:
    points = np.random.default_rng(3).normal(size=(300, 3))
    xyz = "".join(f"{x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in points)

    def infer(fmt: str | None) -> httpx.Response:
        tensor: dict[str, object] = {"name": "FILE", "datatype": "BYTES", "shape": [1], "data": [xyz]}
        if fmt is not None:
            tensor["parameters"] = {"format": fmt}
        body = {"inputs": [tensor], "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 3}}]}
        return httpx.post(f"{server.url}/v2/models/pointcloud/infer", json=body, timeout=120)

    sniffed, told = infer(None), infer("XYZ")
    assert sniffed.status_code == told.status_code == 200, told.text
    top = native(server, "/classify/pointcloud?top_k=3", "cloud.xyz", xyz.encode())["predictions"]
    assert [int(row.split(":")[1]) for row in told.json()["outputs"][0]["data"]] == [p["index"] for p in top]  # type: ignore[index]
    wrong = infer("PLY")  # the hint decides the decoder: these points are no PLY file
    assert wrong.status_code == 422 and "PLY" in wrong.json()["error"]
