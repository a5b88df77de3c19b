"""A time-series model's params from its training data: variables and length, and the map, chosen by measurement.

Which map a network learns best from depends on the data: per-series normalization suits series whose shape is
the signal and erases the levels that tell, say, vowels apart; padding keeps the timing of series shorter than
the map, where stretching them invents it. So when the run leaves the map open (no ``representation``,
``length_mode`` or ``normalize`` param), a few candidates suited to the data each train briefly on part of the
training split, augmented as the run augments, and are scored on the rest of it; the best is the model's map and
travels in its params. The validation and test data are never looked at. Too few examples to hold some out
(``MIN_SEARCH_EXAMPLES``) and the first candidate (the served default, or for long series the wide map) is taken
without a search.

When the run leaves its head open too, the same holdouts score each map with the closed-form ridge head on the
untrained network (``training.ridge_head``); it replaces training when it is clearly ahead of the chosen map's
trial (``RIDGE_MARGIN``).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from modality_adapters.timeseries import TimeSeriesAdapter
from modality_adapters.timeseries_params import DEFAULT_REPRESENTATION, dataset_scale
from training.config import TrainConfig
from training.data import Example
from training.series_holdouts import Holdout, dealings, describe_holdouts, holdouts
from training.series_trials import ridge_score, trained_score
from training.trial_pool import Runner, Score, trial_processes, trial_runner
from unirep_errors import DatasetError, UnirepError

SEARCHED = TimeSeriesAdapter.training_choices
"""The params the search chooses (the adapter's training choices); giving any of them explicitly skips it."""
WIDE_REPRESENTATION = "values+plot+cwt"
"""The wide candidate's kinds: the ones with time across the columns (value image, line plot, scalogram)."""
DISTRIBUTION_REPRESENTATION = "quantile"
"""A map for the ridge head only, beside the wide map: each series' values sorted (how long it spends at each level,
whatever the order), for data whose timing is noise, such as an appliance's power switching on and off."""
WIDE_FROM, WIDE_MOST = 4, 8
"""The wide candidate joins for series at least ``WIDE_FROM`` map sides long (median), with one column per step
of the typical series (rounded up to a multiple of ``WIDE_STEP``), at most ``WIDE_MOST`` map sides: 32 x 256 costs
1.4 times a 32 x 32 map's step on a CPU thread."""
WIDE_STEP = 32
"""The wide map's width is a multiple of the network's total stride."""
MIN_SEARCH_EXAMPLES = 12
MARGIN = 2
"""Held-out series (summed over folds) a candidate must get right beyond the first candidate's to replace it, per
dealing of the folds."""
SEARCH_STEPS = (20, 60)
"""Optimizer steps per candidate: a sixth of the run's planned steps, within these bounds."""
RIDGE_MARGIN = 0.10
"""Share of the held-out series the ridge head must get right beyond the chosen trained candidate to replace
training (and never fewer than ``MARGIN``): a trained candidate is scored after a sixth of the run's steps, the
ridge head at its full strength, and the whole run gains on the short trial (2-6 points on dev splits of
training data), so a smaller lead would favour the ridge head unfairly. Those gains were measured on trials without
augmentation, so the comparison uses the chosen map's trial without it: an augmented trial learns more slowly and
understates long series' wide maps most (a whole run 29 points above its augmented trial on one set's folds)."""


@dataclass
class Choice:
    """The params the search settled on, and a line for the run's notes saying how."""

    params: dict[str, Any]
    note: str
    head: str | None = None
    """``ridge`` where the search found the closed-form head better than training; else None (train)."""


def parse_series(examples: Sequence[Example]) -> dict[int, tuple[np.ndarray, str]]:
    """(T x V values, label) of every example the adapter can parse, by the example's ``id``; the others are left
    for the decoder to report. Keyed so that a split of the examples picks its series without reading them again."""
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
    """The maps worth trying on this data: first the one kept unless another wins by ``MARGIN``.

    Beside the served default (value image + per-variable Gramian fields and recurrence plot, each series scaled to
    itself): the same maps scaled by the training data (levels and amplitudes kept), and the value image alone
    so scaled. Where series are shorter than the map, the scaled candidates pad rather than stretch them. Where the
    typical series is ``WIDE_FROM`` map sides long or more, a wide map leads: ``image_size`` rows by up to
    ``WIDE_MOST`` times as many columns of span means, so the network sees the steps a square map averages away. It
    goes first because the search's short trials (a sixth of the run) understate it: on training-split folds of
    every long set tried, fully trained, it was ahead of the square default or level with it. The same wide map on
    the training data's scale follows it: scaling each series to itself erases how loud one variable is beside
    another (on a wrist sensor, how gravity falls across the axes, which says how the arm is held).
    """
    lengths = sorted(s.shape[0] for s in series)
    fit = "pad" if lengths[0] < image_size else "resample"
    options: list[dict[str, Any]] = [
        {"representation": DEFAULT_REPRESENTATION, "length_mode": "resample", "normalize": "series"},
        {"representation": DEFAULT_REPRESENTATION, "length_mode": fit, "normalize": "dataset"},
        {"representation": "values", "length_mode": fit, "normalize": "dataset"},
    ]
    median = lengths[len(lengths) // 2]
    if median >= WIDE_FROM * image_size:
        width = min(WIDE_MOST * image_size, math.ceil(median / WIDE_STEP) * WIDE_STEP)
        wide = {"representation": WIDE_REPRESENTATION, "length_mode": "paa", "time_steps": width}
        options[:0] = [{**wide, "normalize": "series"}, {**wide, "normalize": "dataset"}]
    return options


def ridge_candidates(options: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The maps the ridge head is scored on: the trained candidates ``options``, then, where a wide map is among
    them, each series' sorted values at its width: the share of time spent at each level, for data where when
    something happened is noise (on ACSF1's training folds the ridge head reads it best of all the maps). Only the
    ridge head reads it: trained briefly it was last or nearly last on every long set tried, and its trial made
    the search a third longer."""
    wide = next((o for o in options if o.get("time_steps")), None)
    if wide is None:
        return list(options)
    return [*options, {**wide, "representation": DISTRIBUTION_REPRESENTATION, "normalize": "series"}]


def with_scale(params: dict[str, Any], series: Sequence[np.ndarray]) -> dict[str, Any]:
    """``params`` with the training data's per-variable mean and deviation when they normalize by the data."""
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
    steps = _search_steps(cfg, len(splits[0].fit))
    started = time.monotonic()  # measured so that the note says what the search cost
    with trial_runner(trial_processes(cfg)) as run:
        search = _Search(params, splits, parsed, cfg, variant, run)
        tallies = search.tallies(options, steps, trained_score)
        best = pick(tallies, MARGIN * dealings(splits))
        chosen, head, ridge_note = options[best], None, ""
        if cfg.head is None and not cfg.init and not cfg.freeze_backbone:
            chosen, head, ridge_note = _weigh_ridge_head(search, options, best, tallies[best], steps)
    tried = "; ".join(f"{_describe(o)} {c}/{n}" for o, (c, n, _) in zip(options, tallies, strict=True))
    kept = " (the first candidate: no other won by the margin)" if best == 0 and pick(tallies, 1) != 0 else ""
    note = (
        f"map: {_describe(chosen)}{'' if head else kept}{' with the ridge head' if head else ''}, chosen by holdout "
        f"accuracy ({describe_holdouts(splits, len(examples), steps)}; right of held out: {tried}{ridge_note}; "
        f"{time.monotonic() - started:.0f} s)"
    )
    return Choice(with_scale({**params, **chosen}, series), note, head)


def _weigh_ridge_head(
    search: _Search, options: list[dict[str, Any]], best: int, trial: Score, steps: int
) -> tuple[dict[str, Any], str | None, str]:
    """(map, head, note) once the ridge head on each readout map is weighed against the chosen map's ``trial``:
    the ridge head where clearly ahead, else the chosen map trained."""
    readouts = ridge_candidates(options)
    ridge = search.tallies(readouts, 0, ridge_score)
    r = pick(ridge, margin=0)
    plain = trial
    if search.cfg.augment:  # the margin was measured against a trial without augmentation: the chosen map's, so
        plain = search.tallies([options[best]], steps, trained_score, augment=False)[0]
    clearly = ridge_is_clearly_ahead(plain, ridge[r])
    counts = " / ".join(f"{c}/{n}" for c, n, _ in ridge)
    also = f", then {_describe(readouts[-1])}" if len(readouts) > len(options) else ""
    note = (
        f"; the ridge head, same maps{also}: {counts}, against {plain[0]}/{plain[1]} for the chosen map's trial "
        f"without augmentation" + ("" if clearly else " (training kept)")
    )
    return (readouts[r], "ridge", note) if clearly else (options[best], None, note)


def ridge_is_clearly_ahead(trained: tuple[int, int, float], ridge: tuple[int, int, float]) -> bool:
    """Whether the ridge head's tally beats the best trained candidate's by ``RIDGE_MARGIN`` of the held-out series
    (at least ``MARGIN`` series)."""
    return ridge[0] - trained[0] >= max(MARGIN, math.ceil(RIDGE_MARGIN * trained[1]))


def pick(tallies: Sequence[tuple[int, int, float]], margin: int = MARGIN) -> int:
    """Index of the candidate with the most held-out series right (ties: lower held-out loss, then the earlier one),
    or 0, the first candidate, unless that candidate gets at least ``margin`` more series right than it."""
    best = max(range(len(tallies)), key=lambda i: (tallies[i][0], -tallies[i][2], -i))
    return best if tallies[best][0] - tallies[0][0] >= margin else 0


@dataclass
class _Search:
    """What every trial of one search shares: the run's params, the holdouts, the parsed series, the run's
    config and network, and the function that runs a batch of trials (in this process or a pool)."""

    params: dict[str, Any]
    splits: Sequence[Holdout]
    parsed: dict[int, tuple[np.ndarray, str]]
    cfg: TrainConfig
    variant: str
    run: Runner

    def tallies(
        self, options: Sequence[dict[str, Any]], steps: int, score: Callable[..., Score], augment: bool | None = None
    ) -> list[Score]:
        """(series right, series held out, summed loss) of each candidate over the splits, every trial of every
        candidate in one batch: ``score`` (trained for ``steps``, or ``ridge_score``) on each split, seeded by the
        split; the training data's scale, when a candidate uses one, is each split's fit part's."""
        cfg = self.cfg if augment is None else replace(self.cfg, augment=augment)
        jobs = []
        for option in options:
            for split in self.splits:
                fit, scored = _pick(self.parsed, split.fit), _pick(self.parsed, split.held)
                trial = with_scale({**self.params, **option}, [s for s, _ in fit])
                jobs.append((score, (trial, fit, scored, replace(cfg, seed=split.seed), self.variant, steps)))
        scores, per = self.run(jobs), len(self.splits)
        return [_summed(scores[i * per : (i + 1) * per]) for i in range(len(options))]


def _summed(scores: Sequence[Score]) -> Score:
    return sum(s[0] for s in scores), sum(s[1] for s in scores), sum(s[2] for s in scores)


def _describe(option: dict[str, Any]) -> str:
    wide = f", {option['time_steps']} steps wide" if option.get("time_steps") else ""
    return f"{option['representation']} ({option['normalize']} scale, {option['length_mode']}{wide})"


def _search_steps(cfg: TrainConfig, num_train: int) -> int:
    per_epoch = max(1, num_train // cfg.batch_size)
    planned = max(cfg.min_steps, per_epoch * cfg.epochs)
    return max(SEARCH_STEPS[0], min(SEARCH_STEPS[1], planned // 6))
