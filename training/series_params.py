"""A time-series model's params from its training data: variables and length, and the map, chosen by measurement.

Which map a network learns best from depends on the data: per-series normalization suits series whose shape is
the signal and erases the levels that tell, say, vowels apart; padding keeps the timing of series shorter than
the map, where stretching them invents it. So when the run leaves the map open (no ``representation``,
``length_mode`` or ``normalize`` param), a few candidates suited to the data each train briefly on part of the
training split and are scored on the rest of it; the best is the model's map and travels in its params. The
validation and test data are never looked at. Too few examples to hold some out (``MIN_SEARCH_EXAMPLES``) and
the first candidate, the served default, is taken without a search.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training.config import TrainConfig
from training.data import Example, stratified_split
from unirep_errors import DatasetError, InputTooLargeError, UndecodableInputError, UnirepError

SEARCHED = ("representation", "length_mode", "normalize")
"""The params the search chooses; giving any of them explicitly skips it."""
MIN_SEARCH_EXAMPLES = 12
HOLDOUT_FRACTION = 0.25
MIN_HELD = 30
"""A single holdout smaller than this decides by one or two series; below it the search cross-validates."""
FOLDS = 3
MARGIN = 2
"""Held-out series (summed over folds) a candidate must get right beyond the served default's to replace it."""
SEARCH_STEPS = (20, 60)
"""Optimizer steps per candidate: a sixth of the run's planned steps, within these bounds."""


@dataclass
class Choice:
    """The params the search settled on, and a line for the run's notes saying how."""

    params: dict[str, Any]
    note: str


def parse_series(examples: Sequence[Example]) -> dict[int, tuple[np.ndarray, str]]:
    """(T x V values, label) of every example the adapter can parse, by the example's ``id``; the others are left
    for the decoder to report. Keyed so that a split of the examples picks its series without reading them again."""
    from modality_adapters import TimeSeriesAdapter

    adapter, out = TimeSeriesAdapter(), {}
    for example in examples:
        try:
            values, _ = adapter.parse(example.read())
        except (UnirepError, OSError):
            continue
        out[id(example)] = (values, example.label)
    return out


def _pick(parsed: dict[int, tuple[np.ndarray, str]], examples: Sequence[Example]) -> list[tuple[np.ndarray, str]]:
    return [parsed[id(e)] for e in examples if id(e) in parsed]


def infer_series_params(series: Sequence[np.ndarray], params: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Variable count (the most common one) and length (the shortest series for a window, the median for
    resampling), unless the run fixed them."""
    if not series:
        return params
    out = dict(params)
    if "num_vars" not in given:
        out["num_vars"] = Counter(s.shape[1] for s in series).most_common(1)[0][0]
    if "seq_len" not in given:  # a window fits every series; resampling goes to the typical (median) length
        lengths = sorted(s.shape[0] for s in series if s.shape[1] == out["num_vars"])
        fitted = lengths[0] if out.get("length_mode") == "window" else min(lengths[len(lengths) // 2], 512)
        out["seq_len"] = max(2, fitted)
    return out


def candidates(series: Sequence[np.ndarray], image_size: int) -> list[dict[str, Any]]:
    """The maps worth trying on this data, the served default first.

    Beside the default (value image + per-variable Gramian fields and recurrence plot, each series scaled to
    itself): the same maps scaled by the training data (levels and amplitudes kept), and the value image alone
    so scaled. Where series are shorter than the map, the scaled candidates pad rather than stretch them.
    """
    from modality_adapters.timeseries_params import DEFAULT_REPRESENTATION

    short = min(s.shape[0] for s in series) < image_size
    fit = "pad" if short else "resample"
    return [
        {"representation": DEFAULT_REPRESENTATION, "length_mode": "resample", "normalize": "series"},
        {"representation": DEFAULT_REPRESENTATION, "length_mode": fit, "normalize": "dataset"},
        {"representation": "values", "length_mode": fit, "normalize": "dataset"},
    ]


def with_scale(params: dict[str, Any], series: Sequence[np.ndarray]) -> dict[str, Any]:
    """``params`` with the training data's per-variable mean and deviation when they normalize by the data."""
    from modality_adapters.timeseries_params import dataset_scale

    if params.get("normalize") != "dataset" or params.get("data_mean"):
        return params
    return {**params, **dataset_scale([s for s in series if s.shape[1] == params["num_vars"]])}


def choose_series_params(examples: Sequence[Example], params: dict[str, Any], cfg: TrainConfig, variant: str) -> Choice:
    """The run's series params: shape from the data, then the map (searched unless the run named one)."""
    parsed = parse_series(examples)
    series = [values for values, _ in parsed.values()]
    params = infer_series_params(series, params, cfg.params)
    if not series or params.get("representation") == "embedding" or any(k in cfg.params for k in SEARCHED):
        return Choice(with_scale(params, series), "")
    options = candidates(series, int(params.get("image_size", 64)))
    if len(examples) < MIN_SEARCH_EXAMPLES:
        note = f"map: {_describe(options[0])} (too few training series, {len(examples)}, to compare maps)"
        return Choice(with_scale({**params, **options[0]}, series), note)
    try:
        splits = holdouts(examples, cfg.seed)
    except DatasetError:  # a class with one example: nothing to hold out
        return Choice(with_scale({**params, **options[0]}, series), f"map: {_describe(options[0])} (no holdout)")
    steps = _search_steps(cfg, len(splits[0][0]))
    started = time.monotonic()  # measured so that the note says what the search cost
    tallies = [_tally({**params, **option}, splits, parsed, cfg, variant, steps) for option in options]
    best = pick(tallies)
    tried = "; ".join(f"{_describe(o)} {c}/{n}" for o, (c, n, _) in zip(options, tallies, strict=True))
    how = (
        f"{len(splits)} folds: each of the {len(examples)} training series held out once, {steps} steps on the rest"
        if len(splits) > 1
        else f"{steps} steps on {len(splits[0][0])} of the {len(examples)} training series, scored on the other "
        f"{len(splits[0][1])}"
    )
    kept = " (the default: no candidate won by the margin)" if best == 0 and pick(tallies, 1) != 0 else ""
    note = (
        f"map: {_describe(options[best])}{kept}, chosen by holdout accuracy ({how}; right of held out: {tried}; "
        f"{time.monotonic() - started:.0f} s)"
    )
    return Choice(with_scale({**params, **options[best]}, series), note)


def holdouts(examples: Sequence[Example], seed: int) -> list[tuple[list[Example], list[Example]]]:
    """The (fit, held) pairs the candidates are scored on: one stratified holdout of ``HOLDOUT_FRACTION``, or,
    where that would hold out fewer than ``MIN_HELD`` series, ``FOLDS`` stratified folds (each series held out
    once). A class with a single example raises ``DatasetError``: it cannot be both learned and held out."""
    if round(len(examples) * HOLDOUT_FRACTION) >= MIN_HELD:
        return [stratified_split(examples, HOLDOUT_FRACTION, seed)]
    by_class: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_class[example.label].append(example)
    single = sorted(label for label, items in by_class.items() if len(items) < 2)
    if single:
        raise DatasetError(f"class(es) {single} have a single example: nothing to hold out")
    rng = random.Random(seed)
    folds: list[list[Example]] = [[] for _ in range(FOLDS)]
    dealt = 0
    for label in sorted(by_class):  # dealt round the folds class by class: each fold gets its share of every class
        items = list(by_class[label])
        rng.shuffle(items)
        for item in items:
            folds[dealt % FOLDS].append(item)
            dealt += 1
    return [([e for j, fold in enumerate(folds) if j != i for e in fold], folds[i]) for i in range(FOLDS)]


def pick(tallies: Sequence[tuple[int, int, float]], margin: int = MARGIN) -> int:
    """Index of the candidate with the most held-out series right (ties: lower held-out loss, then the earlier one),
    or 0, the served default, unless that candidate gets at least ``margin`` more series right than it."""
    best = max(range(len(tallies)), key=lambda i: (tallies[i][0], -tallies[i][2], -i))
    return best if tallies[best][0] - tallies[0][0] >= margin else 0


def _tally(
    params: dict[str, Any],
    splits: Sequence[tuple[list[Example], list[Example]]],
    parsed: dict[int, tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
    steps: int,
) -> tuple[int, int, float]:
    """(series right, series held out, summed loss) of one candidate over the splits; the training data's scale,
    when the candidate uses one, is each split's fit part's."""
    right, held, loss = 0, 0, 0.0
    for fit_examples, held_examples in splits:
        fit, scored = _pick(parsed, fit_examples), _pick(parsed, held_examples)
        trial = with_scale(params, [s for s, _ in fit])
        c, n, lsum = _score(trial, fit, scored, cfg, variant, steps)
        right, held, loss = right + c, held + n, loss + lsum
    return right, held, loss


def _describe(option: dict[str, Any]) -> str:
    return f"{option['representation']} ({option['normalize']} scale, {option['length_mode']})"


def _search_steps(cfg: TrainConfig, num_train: int) -> int:
    per_epoch = max(1, num_train // cfg.batch_size)
    planned = max(cfg.min_steps, per_epoch * cfg.epochs)
    return max(SEARCH_STEPS[0], min(SEARCH_STEPS[1], planned // 6))


def _score(
    params: dict[str, Any],
    fit: Sequence[tuple[np.ndarray, str]],
    held: Sequence[tuple[np.ndarray, str]],
    cfg: TrainConfig,
    variant: str,
    steps: int,
) -> tuple[int, int, float]:
    """(series right, series scored, summed loss) on ``held`` of the run's network trained ``steps`` steps on
    ``fit`` with the run's recipe."""
    from training.distributed import pick_device
    from training.modeling import build_model
    from training.recipe import make_optimizer, make_scheduler, soft_cross_entropy, soft_targets

    labels = sorted({label for _, label in fit})
    index = {label: i for i, label in enumerate(labels)}
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    x_fit, y_fit = (t.to(device) for t in _encode(fit, params, index))
    x_held, y_held = (t.to(device) for t in _encode(held, params, index))
    if not len(x_fit) or not len(x_held):
        return 0, len(held), float("inf")
    torch.manual_seed(cfg.seed)
    net = build_model("timeseries", variant, x_fit.shape[1], len(labels), params).to(device)
    optimizer = make_optimizer(net, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, steps, max(1, steps // 10))
    order = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(x_fit))
    net.train()
    for _ in range(steps):
        idx = torch.randperm(len(x_fit), generator=order)[:batch].to(device)
        loss = soft_cross_entropy(net(x_fit[idx]), soft_targets(y_fit[idx], len(labels), cfg.label_smoothing))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    with torch.no_grad():
        logits = torch.cat([net(x_held[i : i + 64]) for i in range(0, len(x_held), 64)]).float()
    right = int((logits.argmax(-1) == y_held).sum())
    return right, len(y_held), float(torch.nn.functional.cross_entropy(logits, y_held, reduction="sum"))


def _encode(
    pairs: Sequence[tuple[np.ndarray, str]], params: dict[str, Any], index: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The served maps of the series the model would take (the decoder refuses the others in training too)."""
    from modality_adapters import TimeSeriesAdapter

    adapter = TimeSeriesAdapter()
    maps, targets = [], []
    for values, label in pairs:
        if label not in index:
            continue
        try:
            maps.append(adapter.decode_array(values, **params))
        except (UndecodableInputError, InputTooLargeError):  # a series the decoder refuses; bad params raise
            continue
        targets.append(index[label])
    if not maps:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.stack(maps), torch.tensor(targets)
