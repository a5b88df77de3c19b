"""The adapters' training hooks: the cached form gives back exactly the served input, and augmentation is a
seeded, shape-preserving perturbation that leaves the cache untouched."""

from __future__ import annotations

import itertools

import pytest
import torch

from modality_adapters import get_adapter
from tests.training.helpers import CLASSES, SMALL

MODALITIES = list(CLASSES)


def _params(modality: str) -> dict[str, object]:
    # Training takes a series model's variables and window from the data; here they are fixed to the samples'.
    extra = {"num_vars": 2, "seq_len": 20} if modality == "timeseries" else {}
    return {**SMALL[modality], **extra}


def _sample(modality: str) -> bytes:
    make = next(iter(CLASSES[modality][1].values()))
    return make(3)


@pytest.mark.parametrize("modality", MODALITIES)
def test_cached_form_gives_the_served_input(modality: str) -> None:
    adapter, params, data = get_adapter(modality), _params(modality), _sample(modality)
    cached = adapter.decode_for_training(data, **params)
    torch.testing.assert_close(adapter.training_input(cached, **params), adapter.decode(data, **params))


@pytest.mark.parametrize("modality", MODALITIES)
def test_augment_is_seeded_shape_preserving_and_not_in_place(modality: str) -> None:
    adapter, params, data = get_adapter(modality), _params(modality), _sample(modality)
    cached = adapter.decode_for_training(data, **params)
    before = cached.clone()
    plain = adapter.training_input(cached, **params)
    outs = [adapter.augment(cached, torch.Generator().manual_seed(seed), **params) for seed in (1, 1, 2, 3, 4)]
    torch.testing.assert_close(cached, before)
    assert all(o.shape == plain.shape and torch.isfinite(o).all() for o in outs)
    torch.testing.assert_close(outs[0], outs[1])
    assert any(not torch.equal(o, plain) for o in outs[2:])


def test_video_augmentation_never_reverses_a_motion() -> None:
    """A bar moving right stays moving right (or still, where temporal jitter repeats an edge frame, or the crop
    loses it): a mirrored clip would show the opposite motion and teach the opposite class."""
    from modality_adapters.video import clip_to_map

    frames, size, g = 4, 32, 2
    clip = torch.zeros(3, frames, size, size)
    for t in range(frames):
        clip[:, t, :, 9 + 4 * t : 12 + 4 * t] = 1.0
    adapter, xs = get_adapter("video"), torch.arange(size, dtype=torch.float32)
    rightward = 0
    for layout in ("official_reshape", "grid"):
        params = {"num_frames": frames, "frame_size": size, "layout": layout}
        for seed in range(20):
            out = adapter.augment(clip_to_map(clip, layout), torch.Generator().manual_seed(seed), **params)
            back = out.reshape(3, g, size, g, size).permute(0, 1, 3, 2, 4) if layout == "grid" else out
            seen = [f for f in back.reshape(3, frames, size, size)[0] if f.sum() > 1.0]
            centres = [float((f.sum(0) * xs).sum() / f.sum()) for f in seen]
            assert all(b >= a - 0.5 for a, b in itertools.pairwise(centres)), (layout, seed, centres)
            rightward += len(centres) > 1 and centres[-1] > centres[0] + 1
    assert rightward >= 20
