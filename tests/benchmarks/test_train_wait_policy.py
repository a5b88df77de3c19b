"""The wait-policy benchmark runs the real ``unirep train`` and stops the busy neighbour it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_one_thread_is_set_for_the_run_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child sees OMP_NUM_THREADS=1 with ``one_thread`` and no thread count otherwise, whatever the parent has."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    probe = "import os, sys; sys.exit(0 if os.environ.get('OMP_NUM_THREADS') == {!r} else 3)"
    assert timed_run([sys.executable, "-c", probe.format("1")], "PASSIVE", False, one_thread=True) > 0
    assert timed_run([sys.executable, "-c", probe.format(None)], "PASSIVE", False) > 0
    with pytest.raises(subprocess.CalledProcessError):
        timed_run([sys.executable, "-c", probe.format("1")], "PASSIVE", False)
