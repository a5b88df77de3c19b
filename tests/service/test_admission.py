"""Deadline admission: a request is refused before any work when measured stage times say its deadline cannot be
met, and a map that arrived preprocessed (the V2 protocol's tensors) is charged the batch time only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from service.runtime.admission import check_feasible
from service.runtime.stage_times import DecodeTimes
from unirep_errors import DeadlineExceededError


@dataclass
class Served:
    modality: str = "image"
    input_shape: tuple[int, ...] = (3, 64, 64)
    key: str = "image"
    """The batcher's name for the loaded model (a default model's is its modality)."""


class Pool:
    """The decoder pool's estimate: every decoder busy, the new job waits for one decode."""

    def wait_estimate(self, decode_s: float, client: str | None = None) -> float:
        return decode_s


class Batcher:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def estimate(self, modality: str, shape: tuple[int, ...]) -> float:
        return self.seconds


def _check(decoding: bool, left_s: float, decode_s: float = 0.2, batch_s: float = 0.05) -> Metrics:
    times = DecodeTimes()
    times.observe("image", decode_s)
    metrics = Metrics(CollectorRegistry())
    served: Any = Served()
    pool: Any = Pool()
    batcher: Any = Batcher(batch_s)
    check_feasible(served, time.monotonic() + left_s, times, pool, batcher, metrics, decoding=decoding)
    return metrics


def test_a_deadline_shorter_than_decode_wait_and_batch_is_refused_before_decoding() -> None:
    with pytest.raises(DeadlineExceededError) as caught:
        _check(decoding=True, left_s=0.3)  # 0.2 wait + 0.2 decode + 0.05 batch
    assert "decoding" in str(caught.value) and caught.value.details["stage"] == "admission"
    _check(decoding=True, left_s=1.0)  # enough time: admitted


def test_a_preprocessed_map_is_charged_the_batch_time_only() -> None:
    _check(decoding=False, left_s=0.3)  # would be refused if it were charged decoding
    with pytest.raises(DeadlineExceededError) as caught:
        _check(decoding=False, left_s=0.01)
    assert "decoding" not in str(caught.value)
