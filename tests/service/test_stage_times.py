"""Deadline estimates from measured stage times: a batch of one is estimated at its own cost, not at the cost of
a full batch, estimates interpolate between measured sizes and follow what batches actually take."""

from __future__ import annotations

import pytest

from service.runtime import stage_times
from service.runtime.stage_times import BatchLatency, DecodeTimes


def test_idle_estimate_is_the_single_item_latency_not_the_full_batch() -> None:
    latency = BatchLatency(16)
    latency.seed(1, 0.035)
    latency.seed(16, 0.95)
    assert latency.until_done(queued=0, running=0, delay_s=0.005) == pytest.approx(0.035)


def test_interpolates_between_measured_sizes() -> None:
    latency = BatchLatency(16)
    latency.seed(1, 0.010)
    latency.seed(16, 0.160)
    assert latency.at(6) == pytest.approx(0.060)
    assert latency.at(100) == pytest.approx(0.160)  # clamped to the largest batch


def test_queue_and_running_batches_add_up() -> None:
    latency = BatchLatency(4)
    latency.seed(1, 0.010)
    latency.seed(4, 0.040)
    # 9 queued + the new one: two full batches then a batch of 2; one full batch running; plus the batching delay
    expected = 2 * 0.040 + latency.at(2) + 0.040 + 0.005
    assert latency.until_done(queued=9, running=1, delay_s=0.005) == pytest.approx(expected)


def test_observations_move_the_estimate() -> None:
    latency = BatchLatency(8)
    latency.seed(1, 0.010)
    for _ in range(30):
        latency.observe(1, 0.050)
    assert latency.at(1) == pytest.approx(0.050, rel=0.05)
    assert BatchLatency(8, default_s=0.07).at(3) == 0.07  # nothing measured yet


def test_decode_times_start_at_zero_and_follow_measurements() -> None:
    times = DecodeTimes()
    assert times.estimate("image") == 0.0
    times.observe("image", 0.02)
    assert times.estimate("image") == pytest.approx(0.02)
    times.observe("image", 0.12)
    assert 0.02 < times.estimate("image") < 0.12


def test_a_stale_estimate_lets_an_idle_bucket_measure_again(monkeypatch: pytest.MonkeyPatch) -> None:
    latency = BatchLatency(4)
    latency.seed(1, 0.5)  # measured during a slow spell
    times = DecodeTimes()
    times.observe("image", 0.3)
    assert latency.until_done(0, 0, 0.0) == pytest.approx(0.5) and times.estimate("image") == pytest.approx(0.3)
    monkeypatch.setattr(stage_times, "STALE_S", -1.0)  # as if nothing had run for longer than STALE_S
    assert latency.until_done(0, 0, 0.0) == 0.0 and times.estimate("image") == 0.0
    assert latency.until_done(queued=2, running=0, delay_s=0.0) > 0  # a busy bucket keeps its estimate
