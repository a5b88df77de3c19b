"""The data-parallel benchmark runs the real ``unirep train`` in the process counts it names and reads its result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.train_processes import command, configurations, timed_run
from benchmarks.ucr import aeon_data_dir


def test_a_two_process_run_trains_a_model_in_two_processes(tmp_path: Path) -> None:
    data = aeon_data_dir() / "GunPoint" / "GunPoint_TRAIN.ts"
    out = tmp_path / "out"
    seconds, accuracy = timed_run(command(2, data, out, steps=2), one_thread=True, out=out)
    assert seconds > 0 and 0.0 <= accuracy <= 1.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schedule"]["processes"] == 2 and metrics["schedule"]["batch_size"] == 16


def test_every_configuration_keeps_the_global_batch() -> None:
    configs = configurations(4)
    assert [processes for processes, _ in configs.values()] == [1, 1, 4]
    assert [one_thread for _, one_thread in configs.values()] == [False, True, True]
    assert command(1, Path("data.ts"), Path("out"), 2)[-2:] == ["--data-parallel", "1"]


def test_a_run_without_a_result_line_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no validation accuracy"):
        timed_run(["python3", "-c", "print('nothing')"], one_thread=False, out=tmp_path / "out")
