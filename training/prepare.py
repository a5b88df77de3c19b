"""From a ``TrainConfig`` to decoded training and validation sets: discovery, split, params, decoding, checks."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.data import (
    Example,
    check_classes,
    check_val_labels,
    discover,
    fingerprint,
    stratified_split,
)
from training.decoding import DecodedSet, decode_all, default_cache_dir
from unirep_errors import DatasetError

FILES_SAMPLED = 32
"""Training files an adapter may look at before decoding (``fit_file_params``: a video's clip length)."""


@dataclass
class PreparedData:
    labels: list[str]
    params: dict[str, Any]
    in_chans: int
    train: DecodedSet
    val: DecodedSet
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    """What was decided from the data before training (a time-series model's map, a video's sampling rate), for
    the run's notes."""
    head: str = "train"
    """How the head is made: ``TrainConfig.head``, or where the run left it open the data's choice (a time-series map
    search may find the ridge head better), else ``train``."""

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.train.skipped + self.val.skipped


def served_params(modality: str, model: str, overrides: dict[str, Any], validate: bool = True) -> dict[str, Any]:
    """The adapter params the service would use for this model, the adapter's training choices (``training_params``),
    then the run's overrides (validated, unless the caller fills in what they take from the data first)."""
    from modality_adapters import get_adapter
    from models import get_model_config

    adapter = get_adapter(modality)
    params: dict[str, Any] = dict(adapter.default_params())
    params.update(adapter.model_params(get_model_config(model)))
    params.update(adapter.training_params())
    params.update(overrides)
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    if validate:
        adapter.resolve_params(**params)
    return params


def _split(cfg: TrainConfig) -> tuple[list[Example], list[Example]]:
    examples = discover(cfg.data, cfg.modality)
    if cfg.val is None:
        check_classes(examples)
        return stratified_split(examples, cfg.val_fraction, cfg.seed)
    val = discover(cfg.val, cfg.modality)
    check_val_labels(check_classes(examples), val)
    return examples, val


def _check_decoded(train: DecodedSet, val: DecodedSet, labels: list[str]) -> None:
    if not train.tensors:
        first = "; ".join(f"{s}: {r}" for s, r in train.skipped[:3])
        raise DatasetError(f"none of the {len(train.skipped)} training files could be decoded ({first})")
    lost = sorted(set(labels) - set(train.labels))
    if lost:
        raise DatasetError(f"every training file of class(es) {lost} was unreadable; nothing left to learn them from")
    if not val.tensors:
        raise DatasetError("no validation file could be decoded; pass --val with readable files")


def _sample_files(examples: Sequence[Example]) -> Iterator[bytes]:
    """Up to ``FILES_SAMPLED`` training files spread evenly over the split, each read when it is taken."""
    step = max(1, math.ceil(len(examples) / FILES_SAMPLED))
    return (example.read() for example in examples[::step])


def _say(note: str, notes: list[str], progress: bool) -> None:
    """A choice made from the data (if any): kept for the run's notes and, on a run that shows progress, printed
    before training, so that the run never differs from the served defaults unseen."""
    if note:
        notes.append(note)
        if progress:
            print(note, file=sys.stderr)


def prepare(cfg: TrainConfig, model: str, rank: int = 0) -> PreparedData:
    """Discover, split, decode (rank 0 fills the cache first in a distributed run), and check what is left."""
    from modality_adapters import get_adapter

    train_examples, val_examples = _split(cfg)
    labels = check_classes(train_examples)
    series = cfg.modality == "timeseries"  # its params are checked once the data's scale is in
    params = served_params(cfg.modality, model, cfg.params, validate=not series)
    adapter: Any = get_adapter(cfg.modality)
    progress = cfg.progress and rank == 0
    notes: list[str] = []
    head = None
    if series:  # variables, length and map from the training split (never validation)
        from training.series_params import choose_series_params

        choice = choose_series_params(train_examples, params, cfg, model)
        params, head = choice.params, choice.head
        adapter.resolve_params(**params)
        _say(choice.note, notes, progress)
    fitted = adapter.fit_file_params(_sample_files(train_examples), params, cfg.params)
    chosen = ", ".join(f"{key}={value}" for key, value in fitted.items() if params.get(key) != value)
    params = fitted
    _say(f"chosen from the training files: {chosen}" if chosen else "", notes, progress)
    in_chans = int(adapter.output_shape(**params)[0])
    cache = Path(cfg.cache_dir) if cfg.cache_dir is not None else default_cache_dir()
    kwargs: dict[str, Any] = {"cache_dir": cache, "workers": cfg.workers, "progress": progress}
    train = decode_all(cfg.modality, train_examples, params, desc="decoding train", **kwargs)
    val = decode_all(cfg.modality, val_examples, params, desc="decoding val", **kwargs)
    _check_decoded(train, val, labels)
    params = adapter.fit_training_params(train.tensors, params, cfg.params)
    if rank == 0 and (train.skipped or val.skipped):
        skipped = train.skipped + val.skipped
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for source, reason in skipped[:5]:
            print(f"  {source}: {reason}", file=sys.stderr)
    return PreparedData(
        labels,
        params,
        in_chans,
        train,
        val,
        fingerprint(train.digests + val.digests),
        notes,
        cfg.head or head or "train",
    )
