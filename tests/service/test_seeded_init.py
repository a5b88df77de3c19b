"""Random initialization is deterministic per (seed setting, model, modality), and the model version identifies
the actual weights: equal weights give equal versions in any process, different weights never share one."""

from __future__ import annotations

import subprocess
import sys

import torch

from modality_adapters import get_adapter
from servable.build import build_served_model
from servable.served import ServedModel
from service.settings import ServiceSettings


def build(seed: int = 0, modality: str = "audio", **section: object) -> ServedModel:
    settings = ServiceSettings(**{modality: {"weights": "none", **section}})
    return build_served_model(settings.modality(modality), get_adapter(modality), seed)


def test_same_seed_same_weights_same_version() -> None:
    a, b = build(), build()
    assert a.weights_digest == b.weights_digest and a.version == b.version
    for (name, x), (_, y) in zip(a.module.state_dict().items(), b.module.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_seed_and_modality_change_the_weights_and_the_version() -> None:
    base = build()
    other_seed = build(seed=1)
    assert other_seed.weights_digest != base.weights_digest and other_seed.version != base.version
    other_modality = build(modality="pointcloud")
    assert other_modality.weights_digest != base.weights_digest


def test_building_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build()
    assert torch.equal(torch.rand(3), expected)


def test_another_process_builds_the_same_version() -> None:
    code = "from tests.service.test_seeded_init import build\nprint(build().version)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
    assert out.stdout.strip().splitlines()[-1] == build().version
