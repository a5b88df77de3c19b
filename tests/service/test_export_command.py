"""``unirep export``: the written files hold the served model (same weights, same input shape) and load outside
the service; a format this machine cannot build fails with the reason and a non-zero status."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import create_model, load_model
from service.cli import main

SIZE = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ckpt") / "image_a.pth"
    torch.save(create_model("unireplknet_a").state_dict(), path)
    return path


def settings_flags(checkpoint: Path) -> list[str]:
    return ["--set", f"image.weights={checkpoint}", "--set", f"image.params={json.dumps({'input_size': SIZE})}"]


def eager_logits(checkpoint: Path, x: torch.Tensor) -> np.ndarray:
    model, _ = load_model("unireplknet_a", str(checkpoint), deploy=True)
    with torch.inference_mode():
        out: np.ndarray = model(x).numpy()
    return out


def test_onnx_export_runs_in_onnxruntime_like_the_served_model(checkpoint: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "nested" / "image.onnx"
    assert main(["export", "image", "--format", "onnx", "-o", str(out), *settings_flags(checkpoint)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["features", "logits"]
    x = torch.randn(3, 3, SIZE, SIZE)
    (logits,) = session.run(["logits"], {"input": x.numpy()})
    expected = eager_logits(checkpoint, x)
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


def test_random_weights_are_exported_with_the_served_seed(tmp_path: Path) -> None:
    """Random weights are seeded by ``random_seed``: the export is the model ``unirep serve`` builds with that seed."""
    ort = pytest.importorskip("onnxruntime")
    from modality_adapters import get_adapter
    from servable.build import build_served_model
    from service.settings import ServiceSettings

    x = torch.randn(2, 3, SIZE, SIZE)
    logits = {}
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}.onnx"
        flags = ["--set", "image.weights=none", "--set", f"image.params={json.dumps({'input_size': SIZE})}"]
        assert (
            main(["export", "image", "--format", "onnx", "-o", str(out), *flags, "--set", f"random_seed={seed}"]) == 0
        )
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        (logits[seed],) = session.run(["logits"], {"input": x.numpy()})
    settings = ServiceSettings(random_seed=1, image={"weights": "none", "params": {"input_size": SIZE}})
    served = build_served_model(settings.modality("image"), get_adapter("image"), settings.random_seed)
    assert served.module is not None
    with torch.inference_mode():
        expected = served.module(x).numpy()
    assert np.abs(logits[1] - expected).max() <= 1e-4 * np.abs(expected).max()
    assert np.abs(logits[0] - expected).max() > 1e-2 * np.abs(expected).max()  # seed 0 is another model


def test_openvino_export_writes_an_ir_pair(checkpoint: Path, tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    out = tmp_path / "ir"
    assert main(["export", "image", "--format", "openvino", "-o", str(out), *settings_flags(checkpoint)]) == 0
    assert (out / "model.xml").is_file() and (out / "model.bin").stat().st_size > 1_000_000
    compiled = ov.Core().compile_model(str(out / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(2, 3, SIZE, SIZE)
    logits = compiled(x.numpy())["logits"]
    expected = eager_logits(checkpoint, x)
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_tensorrt_export_without_a_gpu_says_why(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", "image", "--format", "tensorrt", "-o", str(tmp_path / "trt"), *settings_flags(checkpoint)])
    assert code == 1
    assert "no CUDA device is visible" in capsys.readouterr().err
    assert not (tmp_path / "trt").exists()


def test_unknown_modality_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "smell", "--format", "onnx", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "unknown modality" in capsys.readouterr().err
