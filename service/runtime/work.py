"""The units of work that cross the batcher -> transport -> worker boundary.

They are plain dataclasses of tensors, strings and numbers so that a remote transport (Redis Streams)
can serialize them: the one field that cannot cross a process, ``BatchItem.is_cancelled``, is a local-only
courtesy that lets an in-process worker skip an item whose client left while its batch was staged; remote
transports drop it and rely on the batcher's check when the batch was formed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from unirep_errors import UnirepError

Task = Literal["classify", "embed"]


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class BatchItem:
    item_id: str
    tensor: torch.Tensor
    """The decoded C x H x W map, float32 on CPU."""
    task: Task
    top_k: int
    enqueued_at: float
    """Wall-clock time (``time.time()``) the item entered its bucket queue; queue time is measured from it."""
    deadline: float | None = None
    """Wall-clock instant after which the result is useless (the worker skips the item)."""
    is_cancelled: Callable[[], bool] | None = field(default=None, repr=False, compare=False)


@dataclass
class Batch:
    """Items of one bucket: same model (modality), same input shape, stacked by the worker."""

    modality: str
    shape: tuple[int, ...]
    items: list[BatchItem]
    max_batch_size: int
    batch_id: str = field(default_factory=new_id)


@dataclass
class ItemResult:
    item_id: str
    scores: list[tuple[int, float]] | None = None
    """(class index, score) pairs, best first, for classify items."""
    embedding: list[float] | None = None
    """The pooled, normed features, for embed items."""
    error: UnirepError | None = None
    """Set when this item (alone) failed; its batch-mates are unaffected."""


@dataclass
class BatchResult:
    batch_id: str
    device: str
    started_at: float
    """Wall-clock time compute started (end of the items' queue time)."""
    inference_s: float
    """Stack + copy + forward + postprocess of the whole batch."""
    batch_size: int
    """Items that actually ran (after skipping cancelled or expired ones)."""
    items: list[ItemResult]
