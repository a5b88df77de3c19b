"""The wait-policy benchmark runs the real ``unirep train`` and stops the busy neighbour it starts."""

from __future__ import annotations

from pathlib import Path

from benchmarks.train_wait_policy import neighbour, timed_run, train_command
from benchmarks.ucr import aeon_data_dir


def test_a_timed_run_trains_a_model(tmp_path: Path) -> None:
    data = aeon_data_dir() / "GunPoint" / "GunPoint_TRAIN.ts"
    seconds = timed_run(train_command(data, tmp_path / "out", steps=2), "PASSIVE", busy_neighbour=False)
    assert seconds > 0
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_the_busy_neighbour_runs_only_inside_its_block() -> None:
    with neighbour(busy=True) as process:
        assert process is not None and process.poll() is None
    assert process.poll() is not None
    with neighbour(busy=False) as nothing:
        assert nothing is None
