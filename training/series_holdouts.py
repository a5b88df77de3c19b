"""The training series the map search scores its candidates on: a holdout, or stratified folds dealt once or twice.

Kept apart from the search's decisions (``series_params``): this only deals series out, seeded, and says how.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from training.data import Example, stratified_split
from unirep_errors import DatasetError

HOLDOUT_FRACTION = 0.25
MIN_HELD = 30
"""A single holdout smaller than this decides by one or two series; below it the search cross-validates."""
FOLDS = 3
DEALT_TWICE_BELOW = 60
"""Fewer training series than this and the folds are dealt twice (the second time with the next seed, for the
folds, the trials' initialization and their batches): on 36 series one dealing's trials ranked the maps, and the
ridge head against training, differently from seed to seed, and the run's test score followed the draw (116
against 140 and 144 of 175 on ArrowHead's test split, three seeds). Two dealings double the search's cost where it
is smallest."""


@dataclass
class Holdout:
    """Series to train a trial on, series to score it on, and the seed of the trial (its dealing's)."""

    fit: list[Example]
    held: list[Example]
    seed: int


def holdouts(examples: Sequence[Example], seed: int) -> list[Holdout]:
    """The holdouts the candidates are scored on: one stratified holdout of ``HOLDOUT_FRACTION``, or, where that
    would hold out fewer than ``MIN_HELD`` series, ``FOLDS`` stratified folds (each series held out once), dealt
    a second time with the next seed below ``DEALT_TWICE_BELOW`` series. A class with a single example raises
    ``DatasetError``: it cannot be both learned and held out."""
    if round(len(examples) * HOLDOUT_FRACTION) >= MIN_HELD:
        fit, held = stratified_split(examples, HOLDOUT_FRACTION, seed)
        return [Holdout(fit, held, seed)]
    by_class: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_class[example.label].append(example)
    single = sorted(label for label, items in by_class.items() if len(items) < 2)
    if single:
        raise DatasetError(f"class(es) {single} have a single example: nothing to hold out")
    count = 2 if len(examples) < DEALT_TWICE_BELOW else 1
    return [split for round_seed in range(seed, seed + count) for split in _folds(by_class, round_seed)]


def _folds(by_class: dict[str, list[Example]], seed: int) -> list[Holdout]:
    """``FOLDS`` stratified folds, dealt round the folds class by class: each fold gets its share of every class."""
    rng = random.Random(seed)
    folds: list[list[Example]] = [[] for _ in range(FOLDS)]
    dealt = 0
    for label in sorted(by_class):
        items = list(by_class[label])
        rng.shuffle(items)
        for item in items:
            folds[dealt % FOLDS].append(item)
            dealt += 1
    return [Holdout([e for j, fold in enumerate(folds) if j != i for e in fold], folds[i], seed) for i in range(FOLDS)]


def dealings(splits: Sequence[Holdout]) -> int:
    """How many times the folds were dealt (one seed a dealing): the margins count per dealing."""
    return len({split.seed for split in splits})


def describe_holdouts(splits: Sequence[Holdout], examples: int, steps: int) -> str:
    """How the candidates were scored, for the run's note."""
    if len(splits) == 1:
        fit, held = len(splits[0].fit), len(splits[0].held)
        return f"{steps} steps on {fit} of the {examples} training series, scored on the other {held}"
    count = dealings(splits)
    times = "once" if count == 1 else f"in each of {count} dealings of the folds"
    return f"{FOLDS} folds: each of the {examples} training series held out {times}, {steps} steps on the rest"
