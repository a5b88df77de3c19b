"""UCR/UEA sets from aeon's shipped data folder, the 1-NN Euclidean baseline, and a small from-scratch trainer.

Shared by ``ts_representations.py`` (which series-to-image map is best) and ``train_accuracy.py``. The sets are
read with ``training.tsfile.read_ts`` from the folder aeon installs (found without importing aeon, whose numba
pins numpy); splits are the archive's standard TRAIN/TEST files. Beside them, ``WATCH``: a multivariate sensor set
that seglearn installs, split by subject.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modality_adapters.timeseries import TimeSeriesAdapter, fit_params
from models import create_model
from training.tsfile import fill_missing, read_ts

PUBLISHED_1NN_ED = {"GunPoint": 0.913, "ItalyPowerDemand": 0.955, "BasicMotions": 0.676}
"""Published 1-NN Euclidean test accuracy: UCR archive table (Dau et al. 2019) for the univariate sets, the UEA
archive paper (Bagnall et al. 2018) for BasicMotions. The floor a trained model must clear."""


@dataclass
class Split:
    name: str
    train_x: list[np.ndarray]
    train_y: np.ndarray
    test_x: list[np.ndarray]
    test_y: np.ndarray
    labels: list[str]


def aeon_data_dir() -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("aeon is not installed: pip install aeon (the test extra) to get the UCR/UEA files")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


WATCH = "WatchExercises"
"""A third multivariate set, beside the two aeon ships: seglearn's smartwatch recordings (6 inertial axes at 50 Hz,
947-2618 steps) of 10 subjects doing 7 shoulder exercises, each with both arms (140 series). No standard split
exists; ours tests on people the model never saw: subjects 1-7 train (98 series), subjects 8-10 test (42)."""
WATCH_TEST_SUBJECTS = (8, 9, 10)


def load_watch() -> Split:
    """``WATCH`` from the file seglearn installs (``seglearn.datasets.load_watch``; nothing downloads)."""
    try:
        from seglearn.datasets import load_watch as read_watch
    except ImportError:
        raise SystemExit("seglearn is not installed: pip install seglearn (the test extra) for the watch set") from None
    data = read_watch()
    series = [np.asarray(x, dtype=np.float64) for x in data["X"]]
    labels = [str(v) for v in data["y_labels"]]
    targets = np.asarray(data["y"], dtype=int)
    test = np.isin(np.asarray(data["subject"], dtype=int), WATCH_TEST_SUBJECTS)
    train_i, test_i = np.flatnonzero(~test), np.flatnonzero(test)
    return Split(
        WATCH,
        [series[i] for i in train_i],
        targets[train_i],
        [series[i] for i in test_i],
        targets[test_i],
        labels,
    )


def load_split(name: str) -> Split:
    """An aeon set's standard TRAIN/TEST split, or ``WATCH``'s split by subject."""
    if name == WATCH:
        return load_watch()
    folder = aeon_data_dir() / name
    train_x, train_l = read_ts(folder / f"{name}_TRAIN.ts")
    test_x, test_l = read_ts(folder / f"{name}_TEST.ts")
    labels = sorted(set(train_l))
    index = {label: i for i, label in enumerate(labels)}
    return Split(
        name,
        [fill_missing(x) for x in train_x],
        np.asarray([index[v] for v in train_l]),
        [fill_missing(x) for x in test_x],
        np.asarray([index[v] for v in test_l]),
        labels,
    )


def holdout(split: Split, fraction: float = 0.3, seed: int = 0) -> Split:
    """The training split cut in two (stratified, seeded): a split to compare maps on without touching the test set."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(split.train_y):
        members = rng.permutation(np.flatnonzero(split.train_y == label))
        val.extend(members[: max(1, round(fraction * len(members)))].tolist())
    keep = sorted(set(range(len(split.train_x))) - set(val))
    return Split(
        f"{split.name} (train holdout)",
        [split.train_x[i] for i in keep],
        split.train_y[keep],
        [split.train_x[i] for i in sorted(val)],
        split.train_y[sorted(val)],
        split.labels,
    )


def common_length(split: Split) -> int:
    """The length unequal series are brought to for the baselines that need one: the longest training series."""
    return max(len(x) for x in split.train_x)


def equal_length(xs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """``(N, V, length)``: each series linearly resampled to ``length`` (unchanged when it already has it)."""
    from modality_adapters.timeseries_maps import resample

    return np.stack([resample(x, length).T for x in xs])


def one_nn_euclidean(split: Split) -> float:
    """1-NN with Euclidean distance on the z-normalized series (per variable), the archive's reference baseline.

    Unequal lengths are resampled to the longest training series first (Euclidean distance needs one length).
    """
    length = common_length(split)

    def flat(xs: Sequence[np.ndarray]) -> np.ndarray:
        z = [(x - x.mean(0)) / (x.std(0) + 1e-8) for x in xs]
        return equal_length(z, length).reshape(len(z), -1)

    a, b = flat(split.train_x), flat(split.test_x)
    d = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    return float((split.train_y[d.argmin(1)] == split.test_y).mean())


def write_folder(root: Path, xs: list[np.ndarray], ys: np.ndarray, labels: list[str]) -> Path:
    """One CSV file per series (T rows of V values) under ``root/<label>/``."""
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        folder = root / labels[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / f"{i:05d}.csv", x, delimiter=",", fmt="%.9g")
    return root


def encode_all(xs: Sequence[np.ndarray], params: dict) -> torch.Tensor:
    adapter = TimeSeriesAdapter()
    return torch.stack([adapter.decode_array(x, **params) for x in xs])


@dataclass
class RunResult:
    accuracy: float
    train_seconds: float
    examples_per_second: float
    input_shape: tuple[int, ...]


def train_and_test(split: Split, representation: dict, steps: int = 300, batch: int = 16, seed: int = 0) -> RunResult:
    """UniRepLKNet-A from scratch, one recipe for every map: AdamW, warmup + cosine, label smoothing."""
    torch.manual_seed(seed)
    params = fit_params(split.train_x, **representation)
    adapter = TimeSeriesAdapter()
    xtr, xte = encode_all(split.train_x, params), encode_all(split.test_x, params)
    ytr = torch.as_tensor(split.train_y)
    backbone = create_model(
        "unireplknet_a", in_chans=adapter.resolve_params(**params).backbone_in_chans, num_classes=len(split.labels)
    )
    from modality_adapters.timeseries_embedding import TimeSeriesModel

    model = TimeSeriesModel(adapter.front_end(**params), backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    warm = max(steps // 10, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm)))
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(xtr), (min(batch, len(xtr)),), generator=gen)
        loss = loss_fn(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(xte[i : i + 64]).argmax(1) for i in range(0, len(xte), 64)])
    acc = float((pred.numpy() == split.test_y).mean())
    return RunResult(acc, seconds, steps * min(batch, len(xtr)) / seconds, tuple(xtr.shape[1:]))
