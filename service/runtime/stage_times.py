"""Measured stage times that admission uses to tell, before any work, whether a request's deadline can be met.

Batch latency is kept per batch size (an EWMA per size, seeded by warm-up at size 1 and at the largest size,
updated by every executed batch) and interpolated between the sizes seen: one image alone costs a fraction of a
full batch of 16, so estimating every item at the full batch's latency made an idle server refuse deadlines it
meets easily. Decode time is an EWMA per modality, measured around the decoder pool.

An estimate is only refreshed by work that runs, and a refused request does not run: after a slow spell, tight
deadlines alone would be refused forever on a stale figure. So an estimate not refreshed for ``STALE_S`` counts
as unknown for an idle bucket (the next request runs, and measures).
"""

from __future__ import annotations

import math
import time

EWMA_ALPHA = 0.2
STALE_S = 10.0


class BatchLatency:
    def __init__(self, max_batch_size: int, default_s: float = 0.05) -> None:
        self.max_batch_size = max_batch_size
        self.default_s = default_s
        self.by_size: dict[int, float] = {}
        self.updated = time.monotonic()

    def seed(self, size: int, seconds: float) -> None:
        if seconds > 0:
            self.by_size[max(1, min(size, self.max_batch_size))] = seconds
            self.updated = time.monotonic()

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.updated > STALE_S

    def observe(self, size: int, seconds: float) -> None:
        self.updated = time.monotonic()
        size = max(1, min(size, self.max_batch_size))
        old = self.by_size.get(size)
        self.by_size[size] = seconds if old is None else old + EWMA_ALPHA * (seconds - old)

    def at(self, size: int) -> float:
        """Expected seconds of a batch of ``size``: linear between the nearest measured sizes."""
        size = max(1, min(size, self.max_batch_size))
        if not self.by_size:
            return self.default_s
        if size in self.by_size:
            return self.by_size[size]
        below = [s for s in self.by_size if s < size]
        above = [s for s in self.by_size if s > size]
        if below and above:
            lo, hi = max(below), min(above)
            frac = (size - lo) / (hi - lo)
            return self.by_size[lo] + frac * (self.by_size[hi] - self.by_size[lo])
        nearest = max(below) if below else min(above)
        return self.by_size[nearest] * (size / nearest if below else 1.0)

    def until_done(self, queued: int, running: int, delay_s: float) -> float:
        """Seconds until a new item (behind ``queued`` others and ``running`` batches) has its result."""
        if not queued and not running and self.stale:
            return 0.0
        total = queued + 1
        batches = math.ceil(total / self.max_batch_size)
        last = total - (batches - 1) * self.max_batch_size
        full = self.at(self.max_batch_size)
        estimate = (batches - 1) * full + self.at(last) + running * full
        return estimate + (delay_s if running else 0.0)


class DecodeTimes:
    """EWMA of the wall time of a decode (pipe and process included) per modality; 0 until measured."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.updated: dict[str, float] = {}

    def observe(self, modality: str, seconds: float) -> None:
        old = self.seconds.get(modality)
        self.seconds[modality] = seconds if old is None else old + EWMA_ALPHA * (seconds - old)
        self.updated[modality] = time.monotonic()

    def estimate(self, modality: str) -> float:
        if time.monotonic() - self.updated.get(modality, 0.0) > STALE_S:
            return 0.0
        return self.seconds.get(modality, 0.0)
