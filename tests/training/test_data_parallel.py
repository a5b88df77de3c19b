"""Training on a CPU in data-parallel processes of one thread each: how many, a real two-process run, and errors.

The run goes through ``unirep train`` as a user types it; the model file it writes is served and scored as any
other (``unirep eval`` agrees with the served model), and a rank's own error reaches the user as itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from service.cli import main
from service.commands.train import _processes
from tests.conftest import REPO_ROOT
from tests.training.helpers import make_dataset, small_config
from training import TrainConfig, train
from training.data_parallel import MIN_STEPS, training_processes
from training.distributed import Dist
from training.prepare import PreparedData
from unirep_errors import CheckpointError, InvalidParameterError

CPU = Dist(0, 1, torch.device("cpu"))


def _data(head: str = "train") -> PreparedData:
    from training.decoding import DecodedSet

    return PreparedData(["a", "b"], {}, 1, DecodedSet(), DecodedSet(), "fingerprint", head=head)


def _cfg(tmp_path: Path, **overrides: object) -> TrainConfig:
    return small_config("timeseries", tmp_path, tmp_path / "out", tmp_path / "cache", **overrides)


@pytest.mark.parametrize(
    ("cores", "batch", "expected"),
    [(2, 16, 2), (4, 16, 2), (8, 32, 4), (3, 24, 3), (3, 16, 2), (16, 64, 8), (2, 8, 1), (1, 16, 1)],
)
def test_chosen_count_splits_the_batch_in_shares_of_eight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int, batch: int, expected: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    cfg = _cfg(tmp_path, batch_size=batch, data_parallel=None)
    assert training_processes(cfg, CPU, _data(), MIN_STEPS) == expected


def test_one_process_where_spreading_cannot_pay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    cfg = _cfg(tmp_path, batch_size=16, data_parallel=None)
    assert training_processes(cfg, CPU, _data(), MIN_STEPS - 1) == 1  # a short run
    assert training_processes(cfg, CPU, _data("ridge"), 1000) == 1  # no steps at all
    assert training_processes(cfg, Dist(1, 2, torch.device("cpu")), _data(), 1000) == 1
    assert training_processes(cfg, Dist(0, 1, torch.device("cuda")), _data(), 1000) == 1
    assert training_processes(_cfg(tmp_path, batch_size=16), CPU, _data(), 1000) == 1  # the default: one process


def test_asked_count_is_taken_or_refused(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, batch_size=4, data_parallel=2)
    assert training_processes(cfg, CPU, _data(), 1) == 2  # asked: even a short run
    with pytest.raises(InvalidParameterError, match="equal shares of at least 2"):
        training_processes(_cfg(tmp_path, batch_size=6, data_parallel=4), CPU, _data(), 1)
    with pytest.raises(InvalidParameterError, match="--data-parallel must be at least 1"):
        _cfg(tmp_path, data_parallel=0).check()


def test_two_processes_train_a_model_that_serves_as_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path / "data", "timeseries", per_class=6)
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["--cache-dir", str(cache), "--no-progress", "--workers", "1"]
    args = ["train", "timeseries", str(data), "--out", str(out), "--epochs", "2", "--min-steps", "0"]
    args += ["--batch-size", "4", "--data-parallel", "2", "--param", "image_size=16", "--val-fraction", "0.25"]
    assert main([*args, *common, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["schedule"]["processes"] == 2 and metrics["schedule"]["batch_size"] == 4
    assert any("batch 4 in 2 processes of 2" in note for note in metrics["notes"])
    assert result["num_train"] == 8 and result["deploy_max_rel_diff"] <= 1e-4
    assert main(["eval", "timeseries", str(data), "--weights", result["weights"], *common, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_examples"] == 12 and 0.0 <= report["accuracy"] <= 1.0


def test_a_ranks_own_error_reaches_the_caller(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", "timeseries", per_class=4)
    missing = tmp_path / "nowhere" / "checkpoint.pt"
    cfg = small_config("timeseries", data, tmp_path / "out", tmp_path / "cache", data_parallel=2, resume=missing)
    with pytest.raises(CheckpointError, match="nowhere"):
        train(cfg)


def test_the_flag_takes_a_count_or_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _processes("auto") is None and _processes(" AUTO ") is None and _processes("3") == 3
    with pytest.raises(SystemExit) as refused:
        main(["train", "timeseries", str(tmp_path), "--out", str(tmp_path / "out"), "--data-parallel", "many"])
    assert refused.value.code == 2 and "number of processes or auto" in capsys.readouterr().err


def test_sigterm_stops_every_rank_and_removes_the_data_file(tmp_path: Path) -> None:
    """``kill`` (or ``docker stop``) ends a data-parallel run as Ctrl-C does: no rank trains on, no file is left."""
    data = make_dataset(tmp_path / "data", "timeseries", per_class=6)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "service.cli", "train", "timeseries", str(data), "--out", str(tmp_path / "out")]
    command += ["--epochs", "1", "--min-steps", "100000", "--batch-size", "4", "--data-parallel", "2", "--workers", "1"]
    command += ["--param", "image_size=16", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    env = {**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None
    plan = run.stderr.readline()
    while plan and "in 2 processes of 2" not in plan:
        plan = run.stderr.readline()
    ranks = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    assert "in 2 processes of 2" in plan and len(ranks) >= 2  # the two ranks (and multiprocessing's tracker)
    assert list(scratch.glob("unirep-train-*/data.pt"))
    run.send_signal(signal.SIGTERM)
    _, rest = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted; continue with --resume" in rest
    assert not list(scratch.glob("unirep-train-*"))
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)
