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


def _bar_clip(frames: int = 4, size: int = 32) -> torch.Tensor:
    """(3, T, H, W): a reddish 3-pixel bar moving right by 4 pixels a frame over the normalized mean (0)."""
    clip = torch.zeros(3, frames, size, size)
    for t in range(frames):
        clip[:, t, :, 9 + 4 * t : 12 + 4 * t] = torch.tensor([1.5, -0.5, 0.2]).view(3, 1, 1)
    return clip


def test_video_augmentation_never_reverses_a_motion() -> None:
    """A bar moving right stays moving right (or still, where temporal jitter repeats an edge frame, or the crop
    loses it): a mirrored clip would show the opposite motion and teach the opposite class."""
    from modality_adapters.video import clip_to_map

    frames, size, g = 4, 32, 2
    clip = _bar_clip(frames, size)
    adapter, xs = get_adapter("video"), torch.arange(size, dtype=torch.float32)
    rightward = 0
    for layout in ("official_reshape", "grid"):
        params = {"num_frames": frames, "frame_size": size, "layout": layout}
        for seed in range(20):
            out = adapter.augment(clip_to_map(clip, layout), torch.Generator().manual_seed(seed), **params)
            back = out.reshape(3, g, size, g, size).permute(0, 1, 3, 2, 4) if layout == "grid" else out
            # Where each frame differs from its background (its median), whatever colours the jitter gave both.
            frames_seen = back.reshape(3, frames, size, size).unbind(1)
            weights = [(f - f.flatten(1).median(1).values.view(3, 1, 1)).abs().sum(0) for f in frames_seen]
            seen = [w for w in weights if w.sum() > 1.0]
            centres = [float((w.sum(0) * xs).sum() / w.sum()) for w in seen]
            assert all(b >= a - 0.5 for a, b in itertools.pairwise(centres)), (layout, seed, centres)
            rightward += len(centres) > 1 and centres[-1] > centres[0] + 1
    assert rightward >= 20


def test_video_motion_channels_keep_the_direction_under_colour_jitter() -> None:
    """The colours are jittered on the clip before the flow is derived: a rightward bar's flow along x stays
    positive (never reversed) whatever hue, contrast or grey the draw gave it."""
    from modality_adapters.video import clip_to_map

    frames, size = 4, 32
    adapter, cached = get_adapter("video"), clip_to_map(_bar_clip(frames, size), "channels")
    params = {"num_frames": frames, "frame_size": size, "layout": "motion"}
    sums = []
    for seed in range(20):
        out = adapter.augment(cached, torch.Generator().manual_seed(seed), **params)
        sums.append(float(out[3 : 3 + frames - 1].sum()))
    assert min(sums) >= -1e-3, sums
    assert sum(v > 1.0 for v in sums) >= 15, sums


def test_colour_jitter_changes_colours_not_outlines() -> None:
    """One colour map for every pixel and frame: the square keeps its pixels and stays apart from the background,
    both change colour, and two draws give two colourings."""
    from modality_adapters.training_augment import colour_jitter

    rgb = torch.full((3, 2, 16, 16), 0.5)
    rgb[:, :, 4:10, 4:10] = torch.tensor([0.8, 0.2, 0.3]).view(3, 1, 1, 1)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:10, 4:10] = True
    squares = []
    for seed in range(6):
        out = colour_jitter(rgb, torch.Generator().manual_seed(seed))
        assert out.shape == rgb.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        torch.testing.assert_close(out[:, 0], out[:, 1])
        square, background = out[:, 0][:, inside], out[:, 0][:, ~inside]
        assert torch.equal(square, square[:, :1].expand_as(square))
        assert torch.equal(background, background[:, :1].expand_as(background))
        assert float((square[:, 0] - background[:, 0]).abs().max()) > 0.02
        squares.append(square[:, 0])
    assert all(float((a - b).abs().max()) > 0.02 for a, b in itertools.pairwise(squares))


def test_video_colour_none_keeps_the_colours() -> None:
    """``colour=none`` (colour is the label) leaves a flat clip flat at its value; the default jitter moves it."""
    from modality_adapters.video import VideoParams

    adapter = get_adapter("video")
    params = {"num_frames": 4, "frame_size": 16, "layout": "channels"}
    flat = torch.full((12, 16, 16), 0.25)
    kept = [adapter.augment(flat, torch.Generator().manual_seed(s), **params, colour="none") for s in range(5)]
    moved = [adapter.augment(flat, torch.Generator().manual_seed(s), **params) for s in range(5)]
    assert all(torch.allclose(k, flat) for k in kept)
    assert sum(not torch.allclose(m, flat, atol=1e-2) for m in moved) >= 4
    with pytest.raises(ValueError, match="colour"):
        VideoParams(colour="sepia")
