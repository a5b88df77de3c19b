"""The decoder pool's admission rules on their own: image sizes and container formats read from headers, the
quarantine, the per-client crash budget scoped to the kind of input, and the decode-time backstop."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from modality_adapters.image_header import image_pixels
from service.runtime.decode_guard import DecodeGuard, GuardPolicy, input_kind, upload_kind
from unirep_errors import DecoderCrashedError, RateLimitedError


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_image_pixels_from_the_header(fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((37, 53, 3), dtype=np.uint8)).save(buf, format=fmt)
    assert image_pixels(buf.getvalue()) == 37 * 53


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xe0\x00", b"RIFF1234WEBP", b"\x89PNG\r\n\x1a\n"])
def test_image_pixels_of_truncated_or_unknown_headers_is_none(data: bytes) -> None:
    assert image_pixels(data) is None


def test_huge_png_is_heavy_and_a_small_one_is_not() -> None:
    guard = DecodeGuard(GuardPolicy(heavy_pixels=1_000_000, heavy_bytes=10_000))
    big, small = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.zeros((2000, 1000), dtype=np.uint8)).save(big, format="PNG")  # compresses to a few KB
    Image.fromarray(np.zeros((100, 100), dtype=np.uint8)).save(small, format="PNG")
    assert len(big.getvalue()) < 10_000
    assert guard.is_heavy("image", big.getvalue())
    assert not guard.is_heavy("image", small.getvalue())
    assert guard.is_heavy("video", b"x" * 10_001) and not guard.is_heavy("video", b"x" * 100)


def test_quarantine_refuses_the_digest_for_everyone() -> None:
    guard = DecodeGuard(GuardPolicy())
    guard.quarantine("abc", "signal SIGSEGV")
    with pytest.raises(DecoderCrashedError):
        guard.admit("someone-else", "abc", "video/avi")
    guard.admit("someone-else", "def", "video/avi")


def test_crash_budget_is_per_client_and_kind_of_input_and_expires() -> None:
    guard = DecodeGuard(GuardPolicy(crash_budget=2, crash_window_s=0.3))
    guard.charge("a", 0.0, crashed_kind="video/avi")
    guard.admit("a", "x", "video/avi")
    guard.charge("a", 0.0, crashed_kind="video/avi")
    with pytest.raises(RateLimitedError) as refused:
        guard.admit("a", "x", "video/avi")
    assert refused.value.details["input_kind"] == "video/avi"
    guard.admit("a", "y", "video/mp4")  # the same client's other inputs are not refused
    guard.admit("a", "y", "image/jpeg")
    guard.admit("b", "x", "video/avi")  # nor another client's
    time.sleep(0.35)
    guard.admit("a", "x", "video/avi")


@pytest.mark.parametrize(
    ("modality", "data", "kind"),
    [
        ("video", b"RIFF\x00\x00\x00\x00AVI LIST", "video/avi"),
        ("video", b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
        ("audio", b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
        ("image", b"\xff\xd8\xff\xe0", "image/jpeg"),
        ("pointcloud", b"ply\nformat ascii", "pointcloud/ply"),
        ("timeseries", b"  [[1, 2]]", "timeseries/json"),
        ("image", b"UNIREP-FAULT:crash", "image/other"),
    ],
)
def test_input_kind_from_the_container_signature(modality: str, data: bytes, kind: str) -> None:
    assert input_kind(modality, data) == kind


def test_decode_time_backstop_binds_only_while_others_wait() -> None:
    guard = DecodeGuard(GuardPolicy(decode_rate=1.0, decode_burst_s=0.2))
    guard.charge("a", 0.5)
    guard.admit("a", "x", "image/jpeg", contended=False)  # alone: never refused for decode time
    with pytest.raises(RateLimitedError) as refused:
        guard.admit("a", "x", "image/jpeg", contended=True)
    assert refused.value.details["retry_after"] >= 1
    guard.admit("b", "x", "image/jpeg", contended=True)
    time.sleep(0.35)
    guard.admit("a", "x", "image/jpeg", contended=True)


def test_upload_kind_from_the_first_bytes_of_a_raw_or_multipart_body() -> None:
    avi = b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 32
    assert upload_kind("video", avi, "video/x-msvideo") == "video/avi"
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.avi"\r\nContent-Type: x\r\n\r\n'
    assert upload_kind("video", part + avi, "multipart/form-data; boundary=b") == "video/avi"
    other_first = part.replace(b'name="file"', b'name="note"')
    assert upload_kind("video", other_first + avi, "multipart/form-data; boundary=b") is None
    assert upload_kind("video", part[:40], "multipart/form-data; boundary=b") is None  # headers not yet complete
