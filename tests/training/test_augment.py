"""The adapters' training hooks: the cached form gives back exactly the served input, and augmentation is a
seeded, shape-preserving perturbation that leaves the cache untouched."""

from __future__ import annotations

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
