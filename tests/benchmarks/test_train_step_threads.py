"""The thread benchmark times real training steps, each wait policy in its own process."""

from __future__ import annotations

from benchmarks.train_step_threads import measure_policy, step_seconds


def test_a_step_is_timed_on_the_runs_network() -> None:
    assert step_seconds(16, 2, threads=1, steps=1) > 0


def test_each_policy_is_measured_for_every_shape_and_thread_count() -> None:
    measured = measure_policy("PASSIVE", ["16x2"], [1, 2], steps=1)
    assert sorted(measured) == ["16x2 1", "16x2 2"]
    assert all(seconds > 0 for seconds in measured.values())
