"""Resume, head-only training, the bf16/channels_last path on CPU, ``unirep eval --json``, and two-process DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.trained import read_trained_info
from service.cli import main
from tests.conftest import REPO_ROOT
from tests.training.helpers import make_dataset, small_config
from training import train
from training.modeling import build_model
from unirep_errors import CheckpointError


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("lifecycle") / "data", "image", per_class=5)


def test_resume_continues_where_it_stopped(data: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = train(small_config("image", data, out, cache, epochs=1, drop_path=0.0))
    state_after_one = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state_after_one["epoch"] == 1 and state_after_one["optimizer"]["state"]
    resumed = train(small_config("image", data, out, cache, epochs=2, resume=str(out), drop_path=0.0))
    assert first.epochs_run == 1 and resumed.epochs_run == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][0] == state_after_one["history"][0]
    assert any("resumed" in note for note in metrics["notes"])
    final = torch.load(out / "checkpoint.pt", weights_only=False)
    assert final["epoch"] == 2
    steps = [s["step"] for s in final["optimizer"]["state"].values()]
    first_steps = [s["step"] for s in state_after_one["optimizer"]["state"].values()]
    assert all(float(a) == 2 * float(b) for a, b in zip(steps, first_steps, strict=True))


def test_min_steps_repeats_passes_and_is_recorded(data: Path, tmp_path: Path) -> None:
    # 10 images, a quarter held out: 8 to train on, two batches of 4 per pass; 11 steps over 2 epochs need 3 passes.
    out = tmp_path / "out"
    result = train(small_config("image", data, out, tmp_path / "cache", epochs=2, min_steps=11))
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["steps"] for e in metrics["epochs"]] == [6, 6]
    expected = {
        "epochs": 2,
        "batch_size": 4,
        "processes": 1,
        "min_steps": 11,
        "passes_per_epoch": 3,
        "optimizer_steps": 12,
    }
    assert metrics["schedule"] == expected
    info = read_trained_info(result.weights)
    assert info is not None and info.metrics["schedule"] == expected
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert all(float(s["step"]) == 12 for s in state["optimizer"]["state"].values())


def test_resume_refuses_another_run(data: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    train(small_config("image", data, out, cache))
    with pytest.raises(Exception, match="trained with variant"):
        train(small_config("image", data, tmp_path / "other", cache, model="unireplknet_f", resume=str(out)))


@pytest.mark.parametrize("content", [None, b"", b"not a pickle at all"])
def test_resume_from_a_missing_or_unreadable_checkpoint_names_it(
    data: Path, tmp_path: Path, content: bytes | None
) -> None:
    bad = tmp_path / "checkpoint.pt"
    if content is not None:
        bad.write_bytes(content)
    reason = "weights file not found" if content is None else "cannot read checkpoint"
    with pytest.raises(CheckpointError, match=f"^--resume: {reason}:? {re.escape(str(bad))}"):
        train(small_config("image", data, tmp_path / "out", tmp_path / "cache", resume=str(bad)))


def test_freeze_backbone_trains_only_the_head(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = train(small_config("image", data, out, tmp_path / "cache", freeze_backbone=True, seed=3))
    torch.manual_seed(3)
    initial = build_model("image", "unireplknet_a", 3, 2, {}).state_dict()
    trained = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    changed = sorted(k for k in initial if not torch.equal(initial[k], trained[k]))
    assert changed == ["head.bias", "head.weight"]
    assert result.deploy_max_rel_diff <= 1e-4


def test_bf16_autocast_and_channels_last_path_on_cpu(data: Path, tmp_path: Path) -> None:
    cfg = small_config("image", data, tmp_path / "out", tmp_path / "cache", amp=True, channels_last=True)
    result = train(cfg)
    assert result.deploy_max_rel_diff <= 1e-4  # the check runs the saved file in float32
    assert all(
        torch.isfinite(torch.tensor(e["train_loss"]))
        for e in json.loads((tmp_path / "out" / "metrics.json").read_text())["epochs"]
    )


def test_eval_json(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = train(small_config("image", data, tmp_path / "out", tmp_path / "cache"))
    code = main(
        [
            "eval",
            "image",
            str(data),
            "--weights",
            str(result.weights),
            "--json",
            "--device",
            "cpu",
            "--workers",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["labels"] == ["blue", "red"] and report["num_examples"] == 10
    assert sum(map(sum, report["confusion"])) == 10
    correct = sum(report["confusion"][i][i] for i in range(2))
    assert report["accuracy"] == pytest.approx(correct / 10)
    assert set(report["per_class"]["red"]) == {"precision", "recall", "f1", "support"}
    assert 0.0 <= report["macro_f1"] <= 1.0
    code = main(
        [
            "eval",
            "image",
            str(data),
            "--weights",
            str(result.weights),
            "--device",
            "cpu",
            "--workers",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == 0 and "macro-F1" in capsys.readouterr().out


def test_two_process_ddp_on_cpu(data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "service.cli",
        "train",
        "image",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--epochs",
        "1",
        "--min-steps",
        "0",
        "--batch-size",
        "2",
        "--param",
        "input_size=32",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--json",
        "--val-fraction",
        "0.2",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    result = json.loads(lines[0])
    assert result["num_train"] == 8 and result["deploy_max_rel_diff"] <= 1e-4
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["epochs"][0]["examples_per_second"] > 0


def test_init_starts_from_given_weights(data: Path, tmp_path: Path) -> None:
    """``--init`` with a train-form checkpoint of another class count: backbone loaded, head re-initialized."""
    from models import create_model

    torch.manual_seed(11)
    source = create_model("unireplknet_a", in_chans=3, num_classes=7)
    torch.save({"model": source.state_dict()}, tmp_path / "pretrained.pth")
    cfg = small_config("image", data, tmp_path / "out", tmp_path / "cache", freeze_backbone=True)
    cfg.init = str(tmp_path / "pretrained.pth")
    train(cfg)
    trained = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=False)["model"]
    expected = source.state_dict()
    assert all(torch.equal(trained[k], expected[k]) for k in expected if not k.startswith("head."))
    assert trained["head.weight"].shape == (2, expected["head.weight"].shape[1])
