"""The baselines a trained series model is measured against, on the archive's split: 1-NN Euclidean, 1-NN DTW
(aeon), ROCKET and MiniRocket (aeon).

Every choice a baseline makes is made on the training split: whether to z-normalize each series (per variable)
is decided by leave-one-out 1-NN accuracy on the training series (z-normalizing helps shape-defined classes and
erases the levels that define others, e.g. JapaneseVowels' cepstral coefficients); the test split is scored once.
Unequal lengths: DTW compares them as they are; Euclidean distance, ROCKET and MiniRocket (which aeon runs on
equal lengths only) see every series resampled to the longest training series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.ucr import Split, common_length, equal_length


def znorm(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [(x - x.mean(0)) / (x.std(0) + 1e-8) for x in xs]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]


def choose_znorm(split: Split) -> bool:
    """True when z-normalized series give the better leave-one-out 1-NN Euclidean accuracy on the training split."""
    length = common_length(split)
    scores = []
    for transform in (lambda xs: list(xs), znorm):
        flat = equal_length(transform(split.train_x), length).reshape(len(split.train_x), -1)
        d = _sq_dists(flat, flat)
        np.fill_diagonal(d, np.inf)
        scores.append(float((split.train_y[d.argmin(1)] == split.train_y).mean()))
    return scores[1] > scores[0]


def _prepared(split: Split, z: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if not z:
        return list(split.train_x), list(split.test_x)
    return znorm(split.train_x), znorm(split.test_x)


def one_nn_ed(split: Split, z: bool) -> float:
    train, test = _prepared(split, z)
    length = common_length(split)
    a = equal_length(train, length).reshape(len(train), -1)
    b = equal_length(test, length).reshape(len(test), -1)
    return float((split.train_y[_sq_dists(a, b).argmin(1)] == split.test_y).mean())


def one_nn_dtw(split: Split, z: bool) -> float:
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    train, test = _prepared(split, z)
    clf = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
    if len({len(x) for x in [*train, *test]}) == 1:
        clf.fit(np.stack([x.T for x in train]), split.train_y)
        return float((clf.predict(np.stack([x.T for x in test])) == split.test_y).mean())
    clf.fit([np.ascontiguousarray(x.T) for x in train], split.train_y)
    return float((clf.predict([np.ascontiguousarray(x.T) for x in test]) == split.test_y).mean())


def _kernels(name: str) -> Callable[[Split], float]:
    def run(split: Split) -> float:
        from aeon.classification.convolution_based import MiniRocketClassifier, RocketClassifier

        cls: Any = RocketClassifier if name == "rocket" else MiniRocketClassifier
        length = common_length(split)
        clf = cls(n_kernels=10000, random_state=0)
        clf.fit(equal_length(split.train_x, length), split.train_y)
        return float((clf.predict(equal_length(split.test_x, length)) == split.test_y).mean())

    return run


rocket, minirocket = _kernels("rocket"), _kernels("minirocket")


def baselines(split: Split) -> dict[str, Any]:
    """Every baseline's test accuracy and seconds, and the normalization chosen on the training split."""
    z = choose_znorm(split)
    out: dict[str, Any] = {"baseline_znorm": z, "unequal_lengths": len({len(x) for x in split.train_x}) > 1}
    runs: dict[str, Callable[[], float]] = {
        "one_nn_ed": lambda: one_nn_ed(split, z),
        "one_nn_dtw": lambda: one_nn_dtw(split, z),
        "rocket": lambda: rocket(split),
        "minirocket": lambda: minirocket(split),
    }
    for name, fn in runs.items():
        start = time.perf_counter()
        try:
            out[name] = fn()
        except ImportError as exc:  # aeon (numba) missing or refusing this numpy
            out[name] = None
            out[f"{name}_error"] = str(exc)[:200]
        out[f"{name}_s"] = round(time.perf_counter() - start, 1)
    return out
