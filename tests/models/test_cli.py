"""``unirep models`` and ``unirep convert``, run as a user runs them: the installed console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

import models
from tests.models.helpers import perturb


def _unirep(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_models_lists_every_variant() -> None:
    table = _unirep("models")
    assert table.returncode == 0
    assert "unireplknet_xl" in table.stdout and "388.69M" in table.stdout and "3x384x384" in table.stdout
    rows = [json.loads(line) for line in _unirep("models", "--json").stdout.splitlines()]
    assert [r["name"] for r in rows] == models.list_models()
    assert rows[0]["params_train"] == 4649060 and rows[0]["params_deploy"] == 4437300


def test_convert_writes_a_deploy_checkpoint_that_serves_the_same_logits(tmp_path: Path) -> None:
    source = perturb(models.create_model("unireplknet_a"), torch.Generator().manual_seed(5))
    ckpt = tmp_path / "train.pth"
    torch.save({"model": {"module." + k: v for k, v in source.state_dict().items()}}, ckpt)
    out = tmp_path / "a_deploy.safetensors"
    result = _unirep("convert", str(ckpt), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "unireplknet_a, deploy form" in result.stdout
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        metadata = f.metadata()
    assert metadata["model"] == "unireplknet_a" and metadata["source_form"] == "train"
    loaded, info = models.load_model("unireplknet_a", out)
    assert info.form == "deploy"
    x = torch.randn(1, 3, 96, 64)
    with torch.inference_mode():
        assert (loaded(x) - source(x)).abs().max().item() < 1e-5


def test_convert_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    result = _unirep("convert", str(bad), "--out", str(tmp_path / "x.safetensors"))
    assert result.returncode == 1
    assert "cannot read checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_convert_refuses_an_out_name_that_is_not_safetensors(tmp_path: Path) -> None:
    ckpt = tmp_path / "in.pth"
    torch.save(models.create_model("unireplknet_a").state_dict(), ckpt)
    result = _unirep("convert", str(ckpt), "--out", str(tmp_path / "a.pth"))
    assert result.returncode == 2 and ".safetensors" in result.stderr
    assert not (tmp_path / "a.pth").exists()


def test_hub_download_fails_fast_when_the_hub_is_unreachable(tmp_path: Path) -> None:
    """Online mode against a closed port: the resolver gives up quickly and says how to pass a file."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{closed_port}", HF_HOME=str(tmp_path))
    started = time.monotonic()
    result = _unirep("convert", "unireplknet_a.in1k", "--out", str(tmp_path / "x.safetensors"), env=env)
    assert result.returncode == 1
    assert "pass its path instead" in result.stderr and "unireplknet_a_in1k_224_acc77.03.pth" in result.stderr
    assert time.monotonic() - started < 20
