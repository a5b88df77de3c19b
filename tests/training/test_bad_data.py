"""Data sets a user can get wrong: each gives one clear line on stderr and a non-zero exit code, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from tests.training.helpers import image_bytes, make_dataset


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _train(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Path, *extra: str) -> tuple[int, str, str]:
    argv = ["train", "image", str(data), "--out", str(tmp_path / "out"), "--epochs", "1", "--min-steps", "0"]
    argv += ["--batch-size", "4", "--param", "input_size=32", "--device", "cpu", "--workers", "1"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    return _run(capsys, *argv, "--no-progress", *extra)


def _write(root: Path, label: str, count: int, start: int = 0) -> None:
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (root / label / f"{i}.png").write_bytes(image_bytes((40 * i % 255, 90, 160), i))


def test_missing_and_empty_folders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _train(capsys, tmp_path, tmp_path / "nowhere")
    assert code == 2 and "not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _train(capsys, tmp_path, tmp_path / "empty")
    assert code == 2 and "no class subfolders" in err
    (tmp_path / "hollow" / "cats").mkdir(parents=True)
    (tmp_path / "hollow" / "dogs").mkdir()
    code, _, err = _train(capsys, tmp_path, tmp_path / "hollow")
    assert code == 2 and "holds no examples" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_single_class_and_single_example(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _write(tmp_path / "one", "cats", 4)
    code, _, err = _train(capsys, tmp_path, tmp_path / "one")
    assert code == 2 and "1 class" in err and "'cats'" in err and "at least two" in err
    _write(tmp_path / "lonely", "cats", 4)
    _write(tmp_path / "lonely", "dogs", 1)
    code, _, err = _train(capsys, tmp_path, tmp_path / "lonely")
    assert code == 2 and "['dogs']" in err and "single example" in err and "--val" in err


def test_val_with_unknown_classes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _write(tmp_path / "train", "cats", 3)
    _write(tmp_path / "train", "dogs", 3)
    _write(tmp_path / "val", "cats", 1)
    _write(tmp_path / "val", "birds", 1)
    code, _, err = _train(capsys, tmp_path, tmp_path / "train", "--val", str(tmp_path / "val"))
    assert code == 2 and "['birds']" in err and "validation" in err


def test_a_class_whose_files_are_all_unreadable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _write(tmp_path / "data", "cats", 3)
    (tmp_path / "data" / "dogs").mkdir()
    for i in range(3):
        (tmp_path / "data" / "dogs" / f"{i}.png").write_bytes(b"this is not a picture " * (i + 1))
    code, _, err = _train(capsys, tmp_path, tmp_path / "data")
    assert code == 2 and "['dogs']" in err and "unreadable" in err


def test_bad_manifests_and_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\na.png,cats\nb.png\n")
    code, _, err = _train(capsys, tmp_path, tmp_path / "m.csv")
    assert code == 2 and "row 2" in err
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": "cats"}\n{not json\n')
    code, _, err = _train(capsys, tmp_path, tmp_path / "m.jsonl")
    assert code == 2 and "line 2 is not JSON" in err
    (tmp_path / "data.ts").write_text("@problemName x\n")
    code, _, err = _train(capsys, tmp_path, tmp_path / "data.ts")
    assert code == 2 and "cannot train the image model" in err
    (tmp_path / "data.zip").write_bytes(b"PK")
    code, _, err = _train(capsys, tmp_path, tmp_path / "data.zip")
    assert code == 2 and "class subfolders" in err


def test_no_gpu_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _write(tmp_path / "data", "cats", 2)
    _write(tmp_path / "data", "dogs", 2)
    code, _, err = _train(capsys, tmp_path, tmp_path / "data", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err


def test_unreadable_files_mixed_in_are_skipped_and_listed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", "image", per_class=3)
    (data / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (data / "blue" / "notes.txt").write_text("not an image")
    code, out, err = _train(capsys, tmp_path, data, "--json", "--val-fraction", "0.3")
    assert code == 0, err
    result = json.loads(out)
    skipped = {Path(s["source"]).name: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"broken.png", "notes.txt"}
    assert all(reason for reason in skipped.values())
    assert "skipped 2 unreadable file(s)" in err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["skipped"]) == 2


def test_eval_refuses_unknown_classes_and_missing_weights(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _write(tmp_path / "data", "cats", 2)
    code, _, err = _run(capsys, "eval", "image", str(tmp_path / "data"), "--weights", str(tmp_path / "none.pt"))
    assert code == 1 and "not found" in err


def test_unusable_flags_are_refused_before_reading_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _write(tmp_path / "data", "cats", 2)
    _write(tmp_path / "data", "dogs", 2)
    code, _, err = _train(capsys, tmp_path, tmp_path / "data", "--batch-size", "1")
    assert code == 2 and "--batch-size must be at least 2" in err
    code, _, err = _train(capsys, tmp_path, tmp_path / "data", "--param", "colour=1")
    assert code == 2 and "unknown image parameter" in err and "colour" in err
