"""A UCR/UEA ``.ts`` file as DATA: its series train a time-series model; a broken header is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.cli import main
from tests.training.helpers import small_config

pytest.importorskip("training.tsfile")

HEADER = "@problemName toy\n@timeStamps false\n@univariate false\n@dimensions 2\n@equalLength true\n"
HEADER += "@seriesLength 20\n@classLabel true smooth square\n@data\n"


def _case(kind: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    t = np.arange(20) / 4.0 + rng.uniform(0, 3)
    dims = [np.sin(t), np.cos(t)]
    if kind == "square":
        dims = [np.sign(d) for d in dims]
    return ":".join(",".join(f"{v + 0.05 * rng.normal():.4f}" for v in d) for d in dims) + f":{kind}\n"


def test_a_ts_file_trains_a_series_model(tmp_path: Path) -> None:
    from training import train

    path = tmp_path / "toy_TRAIN.ts"
    path.write_text(HEADER + "".join(_case(k, i) for k in ("smooth", "square") for i in range(4)))
    result = train(small_config("timeseries", path, tmp_path / "out", tmp_path / "cache"))
    assert result.labels == ["smooth", "square"] and result.num_train + result.num_val == 8
    assert result.deploy_max_rel_diff <= 1e-4


def test_a_broken_ts_header_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.ts"
    path.write_text("@problemName toy\n@classLabel true a b\n1,2,3:a\n")
    code = main(["train", "timeseries", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "@data" in err
