"""What a run says and keeps: the plan line before the first step, every default in ``--help``, the best epoch
(``--select``), the CPU recipe, the labelled confusion matrix, and the log line naming a trained file as trained."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from modality_adapters import get_adapter
from servable.build import build_served_model
from service.cli import build_parser
from service.cli import main as cli_main
from service.settings import ModalitySettings
from tests.training.helpers import SMALL, make_dataset, small_config
from training import TrainConfig, train
from training.metrics import format_report, report
from training.selection import apply_selection, remember_if_best


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("reporting") / "data", "image", per_class=5)


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["train", "eval"])
def test_help_states_every_default(command: str) -> None:
    parser = _subparser(command)
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue  # flags, positionals and required options have no default to state
        help_text = parser._get_formatter()._expand_help(action) if action.help else ""
        assert "(default" in help_text, f"{action.option_strings[0]} hides its default: {help_text!r}"
    assert "(default: best)" in text if command == "train" else "(default: 32)" in text


def test_plan_line_comes_before_training_with_a_measured_estimate(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(small_config("image", data, tmp_path / "out", tmp_path / "cache", epochs=2))
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("training "))
    # 10 images, a quarter held out: 8 to train on in two batches of 4; 2 epochs -> 4 steps on a 3 x 32 x 32 map.
    assert "8 examples, 2 classes, 2 for validation; 4 steps (2 epochs x 2, batch 4)" in line
    assert "map 3x32x32" in line
    measured = re.search(r"about (\d+) s \((\d+\.\d+) s/step measured", line)
    assert measured is not None and float(measured.group(2)) > 0, line
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert line in metrics["notes"]


def test_selection_keeps_the_best_validated_epoch() -> None:
    net = nn.Linear(2, 2)
    best = None
    weights_by_epoch = {}
    for epoch, (acc, loss) in enumerate([(0.5, 1.0), (0.9, 0.6), (0.9, 0.4), (0.7, 0.5)], start=1):
        with torch.no_grad():
            net.weight.fill_(float(epoch))
        weights_by_epoch[epoch] = net.weight.detach().clone()
        best = remember_if_best(best, net, {"epoch": epoch, "val_acc": acc, "val_loss": loss})
    chosen = apply_selection("best", best, net, epochs_run=4)
    assert chosen == {"select": "best", "epoch": 3, "of": 4, "val_acc": 0.9}  # tie on accuracy: lower loss wins
    assert torch.equal(net.weight, weights_by_epoch[3])
    with torch.no_grad():
        net.weight.fill_(4.0)
    assert apply_selection("last", best, net, epochs_run=4)["epoch"] == 4
    assert torch.equal(net.weight, weights_by_epoch[4])


def test_trained_file_holds_the_selected_epoch(data: Path, tmp_path: Path) -> None:
    result = train(small_config("image", data, tmp_path / "out", tmp_path / "cache", epochs=3, select="best"))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    ranked = max(metrics["epochs"], key=lambda e: (e["val_acc"], -e["val_loss"]))
    assert metrics["selected"]["epoch"] == ranked["epoch"]
    assert result.val_accuracy == pytest.approx(ranked["val_acc"])


def test_cpu_recipe_fills_what_was_not_given() -> None:
    cfg = TrainConfig.from_recipe("cpu", modality="audio", data="d", out="o", epochs=None, lr=5e-4, params={})
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.recipe) == (10, 16, 5e-4, "cpu")
    assert cfg.params == get_adapter("audio").small_params
    given = TrainConfig.from_recipe("cpu", modality="audio", data="d", out="o", params={"target_frames": 48})
    assert given.params["target_frames"] == 48 and given.params["num_mel_bins"] == 64
    default = TrainConfig.from_recipe("default", modality="audio", data="d", out="o", batch_size=None)
    assert (default.epochs, default.batch_size, default.params) == (30, 32, {})


def test_recipe_params_are_the_map_a_run_of_the_recipe_trains_on() -> None:
    small = get_adapter("timeseries").small_params
    assert TrainConfig.recipe_params("cpu", "timeseries", {"representation": "values"}) == {
        **small,
        "representation": "values",
    }
    assert TrainConfig.recipe_params("cpu", "timeseries", {"image_size": 16})["image_size"] == 16
    assert TrainConfig.recipe_params("default", "timeseries", {"representation": "values"}) == {
        "representation": "values"
    }
    assert TrainConfig.recipe_params("cpu", "", {"image_size": 16}) == {"image_size": 16}


def test_confusion_matrix_labels_both_axes() -> None:
    text = format_report(report([0, 1, 2, 2], [0, 2, 2, 1], ["yes", "no", "a_very_long_label_name"]))
    lines = text.splitlines()
    start = lines.index("confusion (rows: true class, columns: predicted class)")
    header = lines[start + 1].split()
    assert header[-3:] == ["yes", "no", "a_very_long~"]
    assert lines[start + 4].split() == ["a_very_long_label_name", "0", "1", "1"]


def test_log_names_a_trained_file_as_trained(data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = train(small_config("image", data, tmp_path / "out", tmp_path / "cache"))
    fingerprint = json.loads((tmp_path / "out" / "metrics.json").read_text())["data_fingerprint"]
    with caplog.at_level(logging.INFO):
        build_served_model(ModalitySettings(weights=str(result.weights)).resolve("image"), get_adapter("image"))
    line = next(r.getMessage() for r in caplog.records if "serves weights" in r.getMessage())
    assert "trained by unirep train" in line and fingerprint[:16] in line and "as released" not in line


def test_cli_train_prints_the_plan(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "image", str(data), "--out", str(tmp_path / "out"), "--epochs", "1", "--min-steps", "0"]
    args += ["--batch-size", "4", "--device", "cpu", "--workers", "1", "--cache-dir", str(tmp_path / "cache")]
    args += ["--param", f"input_size={SMALL['image']['input_size']}", "--no-progress", "--recipe", "cpu"]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert re.search(r"^training unireplknet_a on cpu: \d+ examples.*recipe cpu, keeps the best epoch", err, re.M)
