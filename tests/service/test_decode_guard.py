"""The decoder pool's admission rules on their own: image sizes read from headers, the quarantine, and the
per-client crash and decode-time budgets."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from service.runtime.decode_guard import DecodeGuard, GuardPolicy, image_pixels
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
        guard.admit("someone-else", "abc", "video")
    guard.admit("someone-else", "def", "video")


def test_crash_budget_is_per_client_and_expires() -> None:
    guard = DecodeGuard(GuardPolicy(crash_budget=2, crash_window_s=0.3))
    guard.charge("a", 0.0, crashed=True)
    guard.admit("a", "x", "image")
    guard.charge("a", 0.0, crashed=True)
    with pytest.raises(RateLimitedError):
        guard.admit("a", "x", "image")
    guard.admit("b", "x", "image")
    time.sleep(0.35)
    guard.admit("a", "x", "image")


def test_decode_time_budget_refills_at_the_rate() -> None:
    guard = DecodeGuard(GuardPolicy(decode_rate=1.0, decode_burst_s=0.2))
    guard.charge("a", 0.5)
    with pytest.raises(RateLimitedError) as refused:
        guard.admit("a", "x", "image")
    assert refused.value.details["retry_after"] >= 1
    guard.admit("b", "x", "image")
    time.sleep(0.35)
    guard.admit("a", "x", "image")
