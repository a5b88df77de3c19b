"""Checkpoint layouts, strictness, explicit departures (head, stem) and weight sources."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import models
from models import CheckpointError, UniRepLKNet
from models.checkpoint import detect_form, infer_variant, read_state_dict
from models.hub import parse_hub_ref
from tests.models.helpers import perturb

NAME = "unireplknet_a"


@pytest.fixture(scope="module")
def source() -> UniRepLKNet:
    """A train-form UniRepLKNet-A with every statistic perturbed, standing in for a released checkpoint."""
    return perturb(models.create_model(NAME), torch.Generator().manual_seed(0))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def _prefixed(prefix: str) -> Callable[[dict[str, torch.Tensor]], Any]:
    return lambda sd: {prefix + k: v for k, v in sd.items()}


LAYOUTS: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {
    "plain": lambda sd: sd,
    "model-wrapper": lambda sd: {"model": sd, "epoch": 300},
    "state_dict-wrapper": lambda sd: {"state_dict": sd, "meta": {"note": "mmdet"}},
    "module-prefix": _prefixed("module."),
    "backbone-prefix": lambda sd: {"state_dict": {"backbone." + k: v for k, v in sd.items()}},
}


def _state(source: UniRepLKNet, form: str) -> dict[str, torch.Tensor]:
    if form == "train":
        return source.state_dict()
    model = models.create_model(NAME)
    model.load_state_dict(source.state_dict())
    return model.eval().reparameterize().state_dict()


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("form", ["train", "deploy"])
def test_every_pth_layout_loads_and_matches(
    tmp_path: Path, source: UniRepLKNet, image: torch.Tensor, layout: str, form: str
) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save(LAYOUTS[layout](_state(source, form)), path)
    loaded, info = models.load_model(NAME, path)
    assert info.form == form and loaded.is_deploy and info.source == str(path)
    assert (_logits(loaded, image) - _logits(source, image)).abs().max().item() < 1e-5


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("form", ["train", "deploy"])
def test_safetensors_loads_and_matches(
    tmp_path: Path, source: UniRepLKNet, image: torch.Tensor, prefix: str, form: str
) -> None:
    path = tmp_path / "ckpt.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in _state(source, form).items()}, str(path))
    loaded, info = models.load_model(NAME, path)
    assert info.form == form and loaded.is_deploy
    assert (_logits(loaded, image) - _logits(source, image)).abs().max().item() < 1e-5


def test_train_form_requested_from_deploy_file_is_refused(tmp_path: Path, source: UniRepLKNet) -> None:
    deployed = models.create_model(NAME)
    deployed.load_state_dict(source.state_dict())
    path = tmp_path / "deploy.pth"
    torch.save(deployed.eval().reparameterize().state_dict(), path)
    assert detect_form(read_state_dict(path)) == "deploy"
    with pytest.raises(CheckpointError, match="deploy-form"):
        models.load_model(NAME, path, deploy=False)


def test_wrong_variant_names_the_first_mismatched_key(tmp_path: Path) -> None:
    path = tmp_path / "f.pth"
    torch.save(models.create_model("unireplknet_f").state_dict(), path)
    assert infer_variant(read_state_dict(path)) == "unireplknet_f"
    with pytest.raises(CheckpointError, match=r"'downsample_layers\.0\.0\.weight'.*\(24, 3, 3, 3\).*\(20, 3, 3, 3\)"):
        models.load_model(NAME, path)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path, source: UniRepLKNet) -> None:
    state = dict(source.state_dict())
    del state["stages.2.3.se.up.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"'stages\.2\.3\.se\.up\.bias': missing"):
        models.load_model(NAME, tmp_path / "missing.pth")
    state = dict(source.state_dict(), **{"stages.0.0.extra": torch.zeros(1)})
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"'stages\.0\.0\.extra': not a parameter"):
        models.load_model(NAME, tmp_path / "extra.pth")


def test_head_of_another_size_needs_explicit_reinit(
    tmp_path: Path, source: UniRepLKNet, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "in1k.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"1000-class head.*10 classes.*reinit_head"):
        models.load_model(NAME, path, num_classes=10)
    with caplog.at_level(logging.WARNING):
        model, info = models.load_model(NAME, path, num_classes=10, reinit_head=True)
    assert model.num_classes == 10 and info.num_classes == 10
    assert any("head re-initialized" in note for note in info.notes)
    assert "dropping its 1000-class head" in caplog.text
    torch.testing.assert_close(model.downsample_layers[0][0].weight, source.downsample_layers[0][0].weight)


def test_rgb_stem_adapted_to_one_channel_only_when_asked(tmp_path: Path, source: UniRepLKNet) -> None:
    path = tmp_path / "rgb.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"3-channel stem.*1 channels.*adapt_stem"):
        models.load_model(NAME, path, in_chans=1)
    mono, info = models.load_model(NAME, path, in_chans=1, adapt_stem=True)
    assert info.in_chans == 1 and any("stem adapted" in note for note in info.notes)
    grey = torch.randn(1, 1, 48, 48, generator=torch.Generator().manual_seed(3))
    # Summing the RGB kernels means a grey image gives exactly what its RGB copy gave the original model.
    assert (_logits(mono, grey) - _logits(source, grey.repeat(1, 3, 1, 1))).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot read checkpoint"),
        (b"not a pickle at all", "cannot read checkpoint"),
        ({"weights": torch.zeros(3)}, "not a UniRepLKNet checkpoint"),
        ({"model": {}}, "holds no state_dict"),
        ([1, 2, 3], "holds no state_dict"),
    ],
)
def test_unreadable_checkpoints_fail_clearly(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        models.load_model(NAME, path)


def test_missing_file_and_random_init() -> None:
    with pytest.raises(CheckpointError, match="not found"):
        models.load_model(NAME, "/nonexistent/weights.pth")
    model, info = models.load_model(NAME, None)
    assert info.is_random and info.source == "random-init" and model.is_deploy


def test_hub_references_parse_to_official_files() -> None:
    assert parse_hub_ref("unireplknet_a").ref == "hf://DingXiaoH/UniRepLKNet/unireplknet_a_in1k_224_acc77.03.pth"
    assert parse_hub_ref("unireplknet_s.in22k").filename == "unireplknet_s_in22k_pretrain.pth"
    assert parse_hub_ref("unireplknet_xl").filename == "unireplknet_xl_in22k_to_in1k_384_acc87.96.pth"
    assert parse_hub_ref("hf://me/repo/sub/file.pth").filename == "sub/file.pth"
    assert parse_hub_ref("weights/model.pth") is None
    with pytest.raises(models.UnknownModelError):
        parse_hub_ref("unireplknet_a.in22k")
    with pytest.raises(CheckpointError):
        parse_hub_ref("hf://only-owner")


def _fake_hub_cache(cache: Path, repo: str, filename: str, payload_from: Path) -> Path:
    """The on-disk layout huggingface_hub itself writes: refs/main names a snapshot holding the file."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    target = folder / "snapshots" / revision / filename
    target.parent.mkdir(parents=True)
    target.write_bytes(payload_from.read_bytes())
    return target


def test_hub_resolver_uses_the_local_cache(tmp_path: Path, source: UniRepLKNet, image: torch.Tensor) -> None:
    local = tmp_path / "a.pth"
    torch.save({"model": source.state_dict()}, local)
    cache = tmp_path / "hub-cache"
    cached = _fake_hub_cache(cache, "DingXiaoH/UniRepLKNet", "unireplknet_a_in1k_224_acc77.03.pth", local)
    assert models.resolve_weights("unireplknet_a.in1k", cache_dir=cache) == cached
    model, info = models.load_model(NAME, "unireplknet_a", cache_dir=cache)
    assert info.source == "unireplknet_a" and info.form == "train"
    assert (_logits(model, image) - _logits(source, image)).abs().max().item() < 1e-5


def test_unreachable_hub_fails_fast_with_instructions(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(CheckpointError, match="pass its path instead"):
        models.load_model("unireplknet_t", "unireplknet_t.in1k", cache_dir=tmp_path)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_missing_or_corrupt_file_of_either_format_is_named(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"weights{suffix}"
    with pytest.raises(CheckpointError, match=f"weights file not found: {re.escape(str(path))}$"):
        models.load_model(NAME, path)
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match=f"^cannot read checkpoint {re.escape(str(path))}: "):
        models.load_model(NAME, path)
