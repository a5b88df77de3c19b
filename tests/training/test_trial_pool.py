"""The map search's trials run side by side on a CPU, one process a core, and score exactly as they do one after
another in the training process; a process that dies is a clear error, not a hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.training.helpers import small_config
from tests.training.test_series_trials import PARAMS, _series
from training.config import MAX_WORKERS
from training.series_trials import ridge_score, trained_score
from training.trial_pool import Job, trial_processes, trial_runner
from unirep_errors import DatasetError, InvalidParameterError


def _jobs(tmp_path: Path) -> list[Job]:
    fit, held = _series(12, 0), _series(10, 1)
    jobs: list[Job] = []
    for seed in (0, 1):
        cfg = small_config("timeseries", tmp_path, tmp_path / "out", tmp_path / "cache", seed=seed)
        jobs.append((trained_score, (PARAMS, fit, held, cfg, "unireplknet_a", 8)))
        jobs.append((ridge_score, (PARAMS, fit, held, cfg, "unireplknet_a", 0)))
    return jobs


def test_trials_in_a_pool_score_as_they_do_in_this_process(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    with trial_runner(1) as run:  # one thread here (the suite's setting), as each pool process has
        here = run(jobs)
    with trial_runner(2) as run:
        pooled = run(jobs)
    assert pooled == here  # exactly: seeded trials on one thread each
    assert [held for _, held, _ in here] == [10] * 4
    assert len({(right, loss) for right, _, loss in here}) == 4  # the seeds and the heads tell the trials apart


def test_a_process_that_dies_is_reported_with_a_way_round(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--workers 1"), trial_runner(2) as run:
        run([(os._exit, (3,))])


def test_a_trial_that_refuses_its_params_raises_the_same_error_through_the_pool(tmp_path: Path) -> None:
    cfg = small_config("timeseries", tmp_path, tmp_path / "out", tmp_path / "cache")
    bad = {**PARAMS, "image_size": 2}
    job: Job = (trained_score, (bad, _series(12, 0), _series(4, 1), cfg, "unireplknet_a", 8))
    with pytest.raises(InvalidParameterError), trial_runner(2) as run:
        run([job] * 6)


def test_trials_use_the_cores_of_a_cpu_run_on_one_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cores = os.cpu_count() or 1

    def processes(**overrides: object) -> int:
        values = {"workers": None, **overrides}
        return trial_processes(small_config("timeseries", tmp_path, tmp_path / "o", tmp_path / "c", **values))

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert processes() == min(cores, MAX_WORKERS)
    assert processes(workers=1) == 1
    assert processes(workers=cores + 8) == cores
    assert processes(device="cuda") == processes(device="cuda:1") == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a large machine: no more processes than the cap
    assert processes() == MAX_WORKERS and processes(workers=16) == 16
    monkeypatch.setenv("WORLD_SIZE", "2")  # each rank of a distributed run would start its own pool
    assert processes() == 1
