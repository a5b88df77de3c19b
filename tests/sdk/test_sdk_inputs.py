"""What the SDK sends for each kind of input: files and bytes as multipart, arrays as the contract's JSON."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import unirep_client as uc
from PIL import Image
from unirep_client._inputs import encode_input, sniff_content_type

EMBED_BODY = {"modality": "x", "model": "m", "weights": "w", "embedding": [3.0, 4.0], "dim": 2}


def capture(modality: str, data: object, **kwargs: object) -> httpx.Request:
    """Send ``data`` through a real Client to a transport that records the request and answers an embedding."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={**EMBED_BODY, "modality": modality})

    with uc.Client("http://svc.test", http_client=httpx.Client(transport=httpx.MockTransport(answer))) as client:
        result = client.embed(modality, data, **kwargs)  # type: ignore[arg-type]
    assert result.dim == 2 and result.modality == modality
    (request,) = seen
    assert request.url.path == f"/embed/{modality}"
    return request


def test_a_path_is_uploaded_as_multipart_field_file_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    request = capture("audio", path)
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    body = request.read()
    assert b'name="file"; filename="clip.wav"' in body and b"WAVEfmt " in body


def test_a_pil_image_is_sent_losslessly_as_png() -> None:
    image = Image.new("RGB", (7, 5), (10, 200, 30))
    body = capture("image", image).read()
    assert b'filename="image.png"' in body and b"Content-Type: image/png" in body
    png = body[body.index(b"\x89PNG") :]
    decoded = Image.open(io.BytesIO(png))
    assert decoded.size == (7, 5) and decoded.getpixel((3, 2)) == (10, 200, 30)


@pytest.mark.parametrize("points", [np.arange(12, dtype=np.float32).reshape(4, 3), [[0, 1, 2], (3, 4, 5)]])
def test_point_arrays_go_as_json_points(points: object) -> None:
    request = capture("pointcloud", points)
    sent = json.loads(request.read())
    assert list(sent) == ["points"] and all(len(p) == 3 for p in sent["points"])


def test_series_with_timestamps_go_as_json_with_iso_strings() -> None:
    start = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)
    stamps = [start + dt.timedelta(minutes=i) for i in range(3)]
    sent = json.loads(capture("timeseries", np.ones((3, 2)), timestamps=stamps).read())
    assert sent["data"] == [[1.0, 1.0]] * 3
    assert sent["timestamps"][0] == "2024-01-01T12:00:00+00:00"
    numpy_stamps = np.array(["2024-01-01T00:00", "2024-01-01T00:01", "2024-01-01T00:02"], dtype="datetime64[ns]")
    sent = json.loads(capture("timeseries", [1.0, 2.0, 3.0], timestamps=numpy_stamps).read())
    assert sent["data"] == [[1.0], [2.0], [3.0]]  # a 1-D series is one variable
    assert sent["timestamps"][1].startswith("2024-01-01T00:01:00")


@pytest.mark.parametrize(
    ("modality", "data", "kwargs", "error"),
    [
        ("pointcloud", [[1, 2]], {}, uc.InvalidInputError),
        ("pointcloud", [], {}, uc.InvalidInputError),
        ("timeseries", [[1, 2], [3]], {}, uc.InvalidInputError),
        ("timeseries", [[1], [2]], {"timestamps": ["2024-01-01"]}, uc.InvalidInputError),
        ("image", [[1, 2, 3]], {}, uc.UnsupportedInputTypeError),
        ("audio", b"", {}, uc.InvalidInputError),
        ("video", "/no/such/file.mp4", {}, uc.InputFileNotFoundError),
        ("image", b"x", {"timestamps": ["t"]}, uc.InvalidInputError),
        ("Smell/../x", b"x", {}, uc.UnknownModalityError),
        ("", b"x", {}, uc.UnknownModalityError),
    ],
)
def test_bad_inputs_are_refused_before_any_request(modality: str, data: object, kwargs: dict, error: type) -> None:
    with pytest.raises(error) as info:
        encode_input(modality, data, **kwargs)
    # One root for everything the SDK raises, no HTTP status (nothing was sent), and the builtin kind kept.
    assert isinstance(info.value, uc.UnirepError) and info.value.status_code is None
    assert isinstance(info.value, ValueError)
    builtin = {uc.UnsupportedInputTypeError: TypeError, uc.InputFileNotFoundError: FileNotFoundError}
    assert isinstance(info.value, builtin.get(error, ValueError))


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"RIFF\0\0\0\0WAVE", "audio/wav"),
        (b"\0\0\0\x18ftypmp42", "video/mp4"),
        (b"\x93NUMPY\x01\x00", "application/x-npy"),
        (b"hello", "application/octet-stream"),
    ],
)
def test_bytes_get_a_content_type_from_their_magic(head: bytes, content_type: str) -> None:
    assert sniff_content_type(head + b"\0" * 16)[0] == content_type


def test_a_modality_the_server_registered_takes_files_and_bytes() -> None:
    """Modalities are the server's to define (``unirep serve --adapters``): any name goes out as a file upload."""
    payload = encode_input("depth", b"\x00\x01\x02\x03")
    assert payload.files is not None and payload.files["file"][1] == b"\x00\x01\x02\x03"
    with pytest.raises(TypeError):
        encode_input("depth", [[1.0]])
