"""How much can a ridge head read out of UniRepLKNet-A's *untrained* features? Dev folds of the training splits.

ROCKET and MiniRocket are random convolutions, pooled, and a ridge classifier; the closed-form head
(``--head ridge``) is the same idea on the network's own random features, but it reads only what the served head
reads: the normed global average of the last stage (320 numbers for UniRepLKNet-A). This script asks whether a
richer readout of the same untrained network (every stage's channels, pooled by mean and max, or by mean and the
share of positive values, MiniRocket's pooling) would close the gap to a trained network or to 1-NN. Nothing is
trained, so a set takes seconds; every number is on folds of the **training** split (test splits untouched).

Usage: ``python benchmarks/ts_readouts.py --sets ArrowHead,OSULeaf [--folds 3] [--image-size 32]
[--layer-scales 1e-6,1.0]``. Prints one JSON line per set: dev-val series right, summed over the folds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ts_baselines import choose_znorm, one_nn_ed
from benchmarks.ts_dev_split import dev_splits
from benchmarks.ucr import encode_all, load_split
from models.registry import create_model

ALPHAS = np.logspace(-3, 4, 15)
MAP = {"representation": "values+gasf+gadf+rp", "normalize": "series", "length_mode": "paa"}


def maps(xs: list[np.ndarray], num_vars: int, image_size: int) -> torch.Tensor:
    return encode_all(xs, {**MAP, "image_size": image_size, "num_vars": num_vars})


def readouts(net: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """``served``: what the head reads (``forward_features``); ``stages_mean_max`` and ``stages_mean_ppv``: every
    stage's output pooled two ways, concatenated (1200 numbers for UniRepLKNet-A)."""
    out: dict[str, list[torch.Tensor]] = {"served": [], "stages_mean_max": [], "stages_mean_ppv": []}
    with torch.no_grad():
        for start in range(0, len(x), 64):
            h = x[start : start + 64]
            mean_max, mean_ppv = [], []
            for downsample, stage in zip(net.downsample_layers, net.stages, strict=True):  # type: ignore[arg-type]
                h = stage(downsample(h))
                mean = h.mean((-2, -1))
                mean_max += [mean, h.amax((-2, -1))]
                mean_ppv += [mean, (h > 0).float().mean((-2, -1))]
            out["served"].append(net.norm(h.mean((-2, -1))))  # type: ignore[operator]
            out["stages_mean_max"].append(torch.cat(mean_max, 1))
            out["stages_mean_ppv"].append(torch.cat(mean_ppv, 1))
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def ridge_right(train_f: np.ndarray, train_y: np.ndarray, val_f: np.ndarray, val_y: np.ndarray, scale: bool) -> int:
    """Validation series right for a ridge classifier (penalty by leave-one-out error), features standardized
    (on the training part) or not."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)) if scale else RidgeCV(alphas=ALPHAS)
    targets = -np.ones((len(train_y), int(train_y.max()) + 1))
    targets[np.arange(len(train_y)), train_y] = 1.0
    model.fit(train_f, targets)
    return int((model.predict(val_f).argmax(1) == val_y).sum())


def score_set(name: str, args: argparse.Namespace) -> dict[str, int]:
    split = load_split(name)
    num_vars = split.train_x[0].shape[1]
    tally: dict[str, int] = {"series": 0, "one_nn_ed": 0}
    for fold in dev_splits(split, args.folds, 0.3, args.split_seed):
        tally["series"] += len(fold.test_y)
        tally["one_nn_ed"] += round(one_nn_ed(fold, choose_znorm(fold)) * len(fold.test_y))
        x_fit = maps(fold.train_x, num_vars, args.image_size)
        x_val = maps(fold.test_x, num_vars, args.image_size)
        for layer_scale in args.layer_scales:
            torch.manual_seed(args.seed)
            net = create_model(
                "unireplknet_a", in_chans=x_fit.shape[1], num_classes=2, layer_scale_init_value=layer_scale
            ).eval()
            fit, val = readouts(net, x_fit), readouts(net, x_val)
            for kind in fit:
                for scale in (False, True):
                    key = f"ls{layer_scale:g}/{kind}/{'standardized' if scale else 'raw'}"
                    right = ridge_right(fit[kind], fold.train_y, val[kind], fold.test_y, scale)
                    tally[key] = tally.get(key, 0) + right
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", required=True, help="comma-separated aeon set names")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="the network's initialization")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--layer-scales", default="1e-6,1.0", help="layer scale at initialization, comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    args.layer_scales = [float(v) for v in args.layer_scales.split(",")]
    torch.set_num_threads(args.threads)
    for name in args.sets.split(","):
        started = time.perf_counter()
        tally = score_set(name, args)
        print(json.dumps({"set": name, **tally, "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
