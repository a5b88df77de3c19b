"""What the decoder pool checks before it spends a decoder on an input: the crash quarantine, per-client budgets
of crashes and of decode time, and the cost class of the input (so that expensive ones run in their own lane).

Why per client (API key, else the peer address) and not per request: an attacker's every request is a new request.
Budgets are token buckets kept for the most recently seen clients only (bounded memory). The cost of an image is
read from its header (PNG, GIF, BMP and JPEG dimensions are at fixed or easily scanned places; nothing is
decoded here); other inputs are costed by size.
"""

from __future__ import annotations

import math
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from unirep_errors import DecoderCrashedError, RateLimitedError

MAX_CLIENTS = 10_000
MAX_QUARANTINE = 4096


@dataclass(frozen=True)
class GuardPolicy:
    crash_budget: int = 3
    """Decoder crashes a client may cause per ``crash_window_s`` before its decodes are refused (429)."""
    crash_window_s: float = 60.0
    decode_rate: float = 1.0
    """Decoder-seconds per second a client may use on average (1.0: one decoder, continuously)."""
    decode_burst_s: float = 10.0
    heavy_pixels: int = 16_000_000
    heavy_bytes: int = 16 * 2**20


def image_pixels(data: bytes) -> int | None:
    """Width x height from an image header, or None when the format is not one we can read without decoding."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width) * int(height)
    if data[:4] == b"GIF8" and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width) * int(height)
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)) * abs(int(height))
    if data[:2] == b"\xff\xd8":
        return _jpeg_pixels(data)
    return None


def _jpeg_pixels(data: bytes) -> int | None:
    pos = 2
    for _ in range(256):  # markers before the frame header; a hostile file cannot make this loop long
        if pos + 9 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width) * int(height)
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + int(length)
    return None


class _Bucket:
    def __init__(self, capacity: float, now: float) -> None:
        self.tokens = capacity
        self.updated = now
        self.crashes: list[float] = []


class DecodeGuard:
    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._quarantine: OrderedDict[str, str] = OrderedDict()

    def _bucket(self, client: str) -> _Bucket:
        now = time.monotonic()
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = _Bucket(self.policy.decode_burst_s, now)
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
            elapsed = now - bucket.updated
            bucket.tokens = min(self.policy.decode_burst_s, bucket.tokens + elapsed * self.policy.decode_rate)
            bucket.updated = now
        bucket.crashes = [t for t in bucket.crashes if now - t < self.policy.crash_window_s]
        return bucket

    def admit(self, client: str, digest: str, modality: str) -> None:
        """Raise when this input or this client may not use a decoder now (checked before any decoding)."""
        why = self._quarantine.get(digest)
        if why is not None:
            raise DecoderCrashedError(
                f"this exact {modality} file crashed the decoder before ({why}); it is refused without decoding",
                quarantined=True,
            )
        self.admit_client(client)

    def admit_client(self, client: str) -> None:
        """The budget part of ``admit``: cheap enough to run before the request's body is even read."""
        bucket = self._bucket(client)
        if len(bucket.crashes) >= self.policy.crash_budget:
            retry = max(1, math.ceil(bucket.crashes[0] + self.policy.crash_window_s - time.monotonic()))
            raise RateLimitedError(
                f"this client's files crashed {len(bucket.crashes)} decoders recently; retry after {retry} s",
                retry_after=retry,
            )
        if bucket.tokens < 0:
            retry = max(1, math.ceil(-bucket.tokens / self.policy.decode_rate))
            raise RateLimitedError(
                f"this client used more than its share of decoding time; retry after {retry} s", retry_after=retry
            )

    def charge(self, client: str, seconds: float, crashed: bool = False) -> None:
        bucket = self._bucket(client)
        bucket.tokens -= max(0.0, seconds)
        if crashed:
            bucket.crashes.append(time.monotonic())

    def quarantine(self, digest: str, why: str) -> None:
        self._quarantine[digest] = why
        while len(self._quarantine) > MAX_QUARANTINE:
            self._quarantine.popitem(last=False)

    def is_heavy(self, modality: str, data: bytes) -> bool:
        """Inputs whose decode is expected to be expensive: many pixels, or a large file."""
        if len(data) > self.policy.heavy_bytes:
            return True
        if modality == "image":
            pixels = image_pixels(data)
            return pixels is not None and pixels > self.policy.heavy_pixels
        return False
