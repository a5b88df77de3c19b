"""Property: for any small configuration, the reparameterized model computes what the train form computes."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import UniRepLKNet
from tests.models.helpers import perturb

KERNELS = [0, 3, 5, 7, 9, 11, 13, 15, 17]


@st.composite
def configs(draw: st.DrawFn) -> dict[str, object]:
    depths = [draw(st.integers(1, 2)) for _ in range(4)]
    base = draw(st.sampled_from([4, 8, 12]))
    return {
        "in_chans": draw(st.integers(1, 4)),
        "num_classes": draw(st.integers(1, 9)),
        "depths": depths,
        "dims": [base, base * 2, base * 3, base * 4],
        "kernel_sizes": [[draw(st.sampled_from(KERNELS)) for _ in range(d)] for d in depths],
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=configs(),
    height=st.integers(17, 70),
    width=st.integers(17, 70),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
    channels_last=st.booleans(),
)
def test_deploy_form_equals_train_form(
    config: dict[str, object], height: int, width: int, batch: int, seed: int, channels_last: bool
) -> None:
    generator = torch.Generator().manual_seed(seed)
    model = perturb(UniRepLKNet(**config), generator)  # type: ignore[arg-type]
    x = torch.randn(batch, int(config["in_chans"]), height, width, generator=generator)  # type: ignore[call-overload]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        # Pooled features are layer-normed (unit scale), so 1e-5 there is a strict, meaningful tolerance.
        expected = model.forward_features(x)
        expected_logits = model.head(expected)
        model.reparameterize()
        fast = model.forward_features(x)
        model.set_fast_forward(False)
        plain = model.forward_features(x)
        logits = model.head(fast)
    assert model.is_deploy
    assert expected.abs().max().item() > 0.1
    assert (fast - expected).abs().max().item() < 1e-5
    assert (plain - expected).abs().max().item() < 1e-5
    assert (logits - expected_logits).abs().max().item() < 1e-5


def test_reparameterize_keeps_device_and_dtype() -> None:
    """New fused modules land where the model lives: the logic a CUDA model relies on, checked on meta and float64."""
    with torch.device("meta"):
        model = UniRepLKNet(
            in_chans=3,
            num_classes=5,
            depths=(1, 1, 2, 1),
            dims=(8, 16, 24, 32),
            kernel_sizes=((3,), (13,), (17, 5), (0,)),
        )
    model.eval().reparameterize()
    assert model.is_deploy
    assert {p.device.type for p in model.parameters()} == {"meta"}

    generator = torch.Generator().manual_seed(7)
    model = perturb(
        UniRepLKNet(
            in_chans=2,
            num_classes=5,
            depths=(1, 1, 2, 1),
            dims=(8, 16, 24, 32),
            kernel_sizes=((3,), (13,), (17, 5), (0,)),
        ),
        generator,
    ).double()
    x = torch.randn(2, 2, 45, 37, generator=generator, dtype=torch.float64)
    with torch.inference_mode():
        expected = model.forward_features(x)
        model.reparameterize()
        got = model.forward_features(x)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert (got - expected).abs().max().item() < 1e-10


def test_fast_forward_under_bf16_autocast_tracks_the_official_forward() -> None:
    """The low-precision path the CUDA workers take (autocast), exercised with CPU autocast."""
    generator = torch.Generator().manual_seed(11)
    model = perturb(
        UniRepLKNet(
            in_chans=3,
            num_classes=5,
            depths=(1, 1, 2, 1),
            dims=(16, 32, 48, 64),
            kernel_sizes=((3,), (13,), (13, 3), (7,)),
        ),
        generator,
    ).reparameterize()
    x = torch.randn(3, 3, 96, 80, generator=generator)
    with torch.inference_mode():
        reference = model.forward_features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model.forward_features(x)
            model.set_fast_forward(False)
            official = model.forward_features(x)
    assert (fast.float() - official.float()).abs().max().item() < 0.1
    assert (fast.float() - reference).abs().max().item() < 0.1
