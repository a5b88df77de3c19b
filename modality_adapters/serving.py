"""What the service needs to know about a modality besides decoding: its serving defaults and request hints.

These live beside the adapter (as class attributes of ``BaseAdapter``) so that one file describes a modality
whole; the service's settings sections, decoder pool, routes and docs read them from the adapter registry.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AUTO_WEIGHTS", "ServingDefaults"]

AUTO_WEIGHTS = "auto"
"""Weights value meaning: the variant's released ImageNet checkpoint from the hub when reachable, else random init."""


@dataclass(frozen=True)
class ServingDefaults:
    """A modality's settings-section defaults; every field can be overridden in the service's settings."""

    label_set: str | None = None
    """Shipped label set name (``servable/labels/<name>.txt``) or None (then ``num_classes`` generic labels)."""
    num_classes: int | None = None
    in_chans: int = 3
    """Channels of the adapter's output (the model's stem)."""
    weights: str | None = None
    """None: random initialization until a checkpoint is configured; ``AUTO_WEIGHTS``: the released one."""
    max_batch_size: int = 16
    max_delay_ms: float = 5.0
