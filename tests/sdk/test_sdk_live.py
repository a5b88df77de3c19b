"""The SDK against a real ``unirep serve`` process: every endpoint, typed results, error codes, retries, deadlines."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import unirep_client as uc
from PIL import Image

from tests.sdk.live import LiveServer, metric_value, png, write_wav

SERIES_VARS = 11  # the time-series adapter's default variable count (the paper's weather data)


def test_health_ready_and_models(server: LiveServer) -> None:
    with uc.Client(server.url) as client:
        assert client.health().status == "ok"
        assert client.ready() is True
        models = {m.modality: m for m in client.models()}
    assert set(models) == {"image", "audio", "pointcloud", "timeseries"}
    image = models["image"]
    assert image.model == "unireplknet_a" and image.weights == "random-init" and image.weights_random is True
    assert image.num_classes == 1000 and image.input_shape == [3, 224, 224] and image.max_batch_size
    assert image.embedding_dim == 320  # type: ignore[attr-defined]  # a field newer than the SDK, kept


def test_every_modality_classifies_and_embeds_through_the_sync_client(server: LiveServer, tmp_path: Path) -> None:
    image_path = tmp_path / "photo.png"
    image_path.write_bytes(png(1))
    inputs: dict[uc.Modality, object] = {
        "image": image_path,
        "audio": write_wav(tmp_path / "tone.wav"),
        "pointcloud": np.random.default_rng(0).normal(size=(300, 3)),
        "timeseries": np.random.default_rng(1).normal(size=(64, SERIES_VARS)).tolist(),
    }
    with uc.Client(server.url) as client:
        for modality, data in inputs.items():
            result = client.classify(modality, data, top_k=2)
            assert result.modality == modality and result.weights == "random-init"
            assert len(result.predictions) == 2 and result.predictions[0].score >= result.predictions[1].score
            assert result.request_id and result.timings.total_ms is not None and result.batch_size
            embedding = client.embed(modality, data)
            assert embedding.dim == len(embedding.embedding) == 320


def test_typed_helpers_accept_pil_images_bytes_and_timestamps(server: LiveServer) -> None:
    start = np.datetime64("2024-01-01T00:00")
    stamps = [start + np.timedelta64(i, "h") for i in range(48)]
    with uc.Client(server.url) as client:
        from_pil = client.classify("image", Image.open(io.BytesIO(png(2))), top_k=1)
        from_bytes = client.classify("image", png(2), top_k=1)
        assert from_pil.top is not None and from_bytes.top is not None
        assert from_pil.top.index == from_bytes.top.index  # PNG is lossless: the same pixels either way
        series = client.classify("timeseries", np.ones((48, SERIES_VARS)), timestamps=stamps)
        assert series.modality == "timeseries" and series.predictions
        assert client.embed("pointcloud", [[0.0, 0.0, float(i)] for i in range(50)]).dim == 320


def test_the_async_client_serves_concurrent_calls(server: LiveServer) -> None:
    async def go() -> list[uc.ClassifyResult]:
        async with uc.AsyncClient(server.url) as client:
            return await asyncio.gather(*(client.classify("image", png(10 + i), top_k=3) for i in range(8)))

    results = asyncio.run(go())
    assert len({r.request_id for r in results}) == 8
    assert all(len(r.predictions) == 3 for r in results)


def test_top_k_above_the_class_count_is_capped_and_the_note_reaches_the_sdk(server: LiveServer) -> None:
    with uc.Client(server.url, max_retries=0) as client:
        result = client.classify("image", png(3), top_k=5000)
    assert 0 < len(result.predictions) < 5000
    assert "capped" in str(result.model_dump().get("note", ""))


@pytest.mark.parametrize(
    ("modality", "payload", "top_k", "error", "code"),
    [
        ("image", b"\xff\xd8\xff this is not a jpeg", None, uc.BadRequestError, None),
        ("image", b"plain text, no image", None, uc.UnsupportedMediaTypeError, "unsupported_media_type"),
        ("video", b"\x00\x00\x00\x18ftypmp42", None, uc.NotFoundError, "not_found"),
    ],
)
def test_service_errors_arrive_as_their_sdk_classes(
    server: LiveServer, modality: uc.Modality, payload: object, top_k: int | None, error: type, code: str | None
) -> None:
    data = png(3) if payload == "png" else payload
    with uc.Client(server.url, max_retries=0) as client, pytest.raises(error) as info:
        client.classify(modality, data, top_k=top_k)
    assert 400 <= info.value.status_code < 500 and info.value.message
    assert code is None or info.value.code == code
    assert info.value.request_id


def test_a_request_the_service_cannot_read_is_a_validation_error(server: LiveServer) -> None:
    """``validation_error`` (a parameter of the wrong type) has its own class, not the undecodable file's."""
    with uc.Client(server.url, max_retries=0) as client, pytest.raises(uc.RequestValidationError) as info:
        client.classify("image", png(4), top_k="three")  # type: ignore[arg-type]  # as an untyped caller might
    assert info.value.status_code == 422 and info.value.code == "validation_error"
    assert not isinstance(info.value, uc.UndecodableInputError) and "top_k" in info.value.message


def test_a_missing_file_and_an_unknown_modality_are_sdk_errors(server: LiveServer, tmp_path: Path) -> None:
    with uc.Client(server.url, max_retries=0) as client:
        with pytest.raises(uc.InputFileNotFoundError) as missing:
            client.classify("image", tmp_path / "nowhere.png")
        with pytest.raises(uc.UnknownModalityError) as unknown:  # not a modality name: refused before sending
            client.embed("Smell!", b"x")
        with pytest.raises(uc.NotFoundError) as unregistered:  # a name the server may or may not serve: it decides
            client.embed("smell", b"x")
        with pytest.raises(uc.NotFoundError) as disabled:  # a modality this server does not serve
            client.classify("video", b"\x00\x00\x00\x18ftypmp42")
    assert missing.value.status_code is None and unknown.value.status_code is None
    assert disabled.value.status_code == unregistered.value.status_code == 404
    assert "smell" in unregistered.value.message
    assert all(isinstance(e.value, uc.UnirepError) for e in (missing, unknown, unregistered, disabled))


def test_a_full_queue_answers_429_and_the_sdk_retries_until_served(overloaded: LiveServer) -> None:
    async def burst(max_retries: int, first_seed: int) -> list[uc.ClassifyResult | BaseException]:
        async with uc.AsyncClient(overloaded.url, max_retries=max_retries) as client:
            calls = (client.classify("image", png(first_seed + i), top_k=1) for i in range(6))
            return await asyncio.gather(*calls, return_exceptions=True)

    refused = [r for r in asyncio.run(burst(0, 100)) if isinstance(r, BaseException)]
    assert refused, "six concurrent requests into a one-slot queue must overflow it"
    for exc in refused:
        assert isinstance(exc, uc.QueueFullError) and exc.status_code == 429
        assert exc.retry_after is not None and exc.retry_after >= 1

    rejected_before = metric_value(overloaded.metrics(), "unirep_rejected_requests_total", reason="queue_full")
    results = asyncio.run(burst(6, 200))
    assert all(isinstance(r, uc.ClassifyResult) for r in results), results
    rejected_after = metric_value(overloaded.metrics(), "unirep_rejected_requests_total", reason="queue_full")
    assert rejected_after > rejected_before, "every call succeeded only because refused attempts were retried"


def test_a_deadline_that_expires_raises_deadline_exceeded_without_retrying(overloaded: LiveServer) -> None:
    before = metric_value(overloaded.metrics(), "unirep_requests_total", status="504")
    with uc.Client(overloaded.url, max_retries=3) as client, pytest.raises(uc.DeadlineExceededError) as info:
        client.classify("image", png(300), deadline=0.1)  # each batch takes 300 ms on this server
    assert info.value.status_code == 504 and info.value.code == "deadline_exceeded"
    after = metric_value(overloaded.metrics(), "unirep_requests_total", status="504")
    assert after - before == 1  # a 504 is final: the budget is spent, so the SDK did not try again


def test_unreachable_service_raises_connection_error_after_retries() -> None:
    from tests.service.server import free_port

    with uc.Client(f"http://127.0.0.1:{free_port()}", max_retries=1) as client, pytest.raises(uc.APIConnectionError):
        client.health()
