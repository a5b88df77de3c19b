"""Compare series maps and training choices on the TRAIN split only: dev-train / dev-val carved from it.

The UCR/UEA test splits are for reporting a settled model once; ideas are compared here instead. Each set's
training split is cut in two (stratified, seeded: ``benchmarks.ucr.holdout``), the two parts are written as class
folders of CSV files, and ``unirep train``'s core (``training.train``, the named recipe, the adapter's
augmentation, the step floor) trains on dev-train with the config's params and reports dev-val accuracy per
epoch. A config that leaves the map open (``search``) lets the trainer choose, as a real run would. Beside it,
1-NN Euclidean on the same dev split, for scale (z-normalized or not as leave-one-out on dev-train decides, as the
test table's baseline does: always z-normalizing understates it where levels carry the class, e.g. JapaneseVowels),
and with ``--minirocket`` MiniRocket and with ``--fcn`` a small 1-D convolutional network trained from scratch
(``benchmarks.ts_fcn``) on the same fold: how far the training split lets a model go. ``--map-fcn`` trains the same
network along the columns of each config's map (``ts_fcn.map_fcn``): whether the map carries the signal, apart from
how well UniRepLKNet reads it; ``--no-train`` reports that and the baselines without training UniRepLKNet.

Usage: ``python benchmarks/ts_dev_split.py --sets ArrowHead,ACSF1 --configs default,default_paa [--min-steps 200]
[--threads 1] [--folds 3 [--only-folds 1,2]] [--seeds 0,1,2] [--lr LR] [--mixup P] [--drop-path R] [--refit-ridge]
[--init CHECKPOINT] [--minirocket] [--fcn [EPOCHS]] [--map-fcn [EPOCHS] [--no-train]] [--json out.json]``. Config names:
see ``CONFIGS`` (``--configs ""``: the baselines alone); any adapter param can be added with ``--param name=value``.

Seeds: one training seed moves a fold's dev-val tally by several series (OSULeaf, 67 held out: 58, 53 and 53 for
seeds 0-2 of one config), as much as most differences between maps. ``--seeds`` trains every config once per seed
and adds a row per config and fold with the seeds' mean and the tally of their averaged class probabilities (the
seeds as one ensemble), so that a comparison can be read against the spread it carries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ts_baselines import choose_znorm, minirocket, one_nn_ed
from benchmarks.ts_fcn import fcn, map_fcn
from benchmarks.ucr import Split, holdout, load_split, write_folder
from training import TrainConfig, train
from training.scoring import model_outputs
from training.series_params import WIDE_REPRESENTATION

MAPS = "values+gasf+gadf+rp"
EMBED = {
    "representation": "embedding",
    "embedding_layout": "time_axis",
    "normalize": "series",
    "length_mode": "resample",
}
WIDE = {"representation": WIDE_REPRESENTATION, "normalize": "series", "length_mode": "paa", "time_steps": 128}
CONFIGS: dict[str, dict[str, Any]] = {
    "search": {},
    "default": {"representation": MAPS, "normalize": "series", "length_mode": "resample"},
    "default_paa": {"representation": MAPS, "normalize": "series", "length_mode": "paa"},
    "default64": {"representation": MAPS, "normalize": "series", "length_mode": "resample", "image_size": 64},
    "default_paa64": {"representation": MAPS, "normalize": "series", "length_mode": "paa", "image_size": 64},
    "plot_paa": {"representation": "plot+gasf+gadf+rp", "normalize": "series", "length_mode": "paa"},
    "values_plot_paa": {"representation": "values+plot+gasf+gadf+rp", "normalize": "series", "length_mode": "paa"},
    "values_dataset": {"representation": "values", "normalize": "dataset", "length_mode": "resample"},
    "default_dataset_paa": {"representation": MAPS, "normalize": "dataset", "length_mode": "paa"},
    "fold_paa": {"representation": "fold", "normalize": "series", "length_mode": "paa"},
    "fold_maps_paa": {"representation": "fold+gasf+gadf+rp", "normalize": "series", "length_mode": "paa"},
    "wide_paa": WIDE,
    "wide_dataset_paa": {**WIDE, "normalize": "dataset"},
    "embed": EMBED,
    "embed_dataset": {**EMBED, "normalize": "dataset"},
}
"""Named param sets (``search``: leave the map to the trainer's choice)."""


def dev_splits(split: Split, folds: int, fraction: float, seed: int) -> list[Split]:
    """One stratified holdout of the training split (``folds`` 1), or ``folds`` stratified folds of it, each
    training series held out once: on a 36-series split a single holdout is 11 series and decides by one."""
    if folds <= 1:
        return [holdout(split, fraction, seed)]
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(split.train_x), dtype=int)
    dealt = 0
    for label in np.unique(split.train_y):
        for i in rng.permutation(np.flatnonzero(split.train_y == label)):
            fold_of[i], dealt = dealt % folds, dealt + 1
    out = []
    for k in range(folds):
        fit, val = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        out.append(Split(f"{split.name} (train fold {k})", [split.train_x[i] for i in fit], split.train_y[fit],
                         [split.train_x[i] for i in val], split.train_y[val], split.labels))  # fmt: skip
    return out


def dev_run(root: Path, name: str, config: dict[str, Any], args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train on ``root/fit`` with ``config``, validating on ``root/val`` every epoch (nothing is picked on it)."""
    out = run_folder(root, name, seed)
    cfg = TrainConfig.from_recipe(
        args.recipe, modality="timeseries", data=str(root / "fit"), val=str(root / "val"), out=str(out),
        min_steps=args.min_steps, lr=args.lr, params=config, device="cpu", progress=False, workers=1,
        cache_dir=str(root / "cache"), augment=not args.no_augment, select="last", seed=seed, ema=args.ema,
        mixup=args.mixup, drop_path=args.drop_path, init=args.init, head=args.head,
    )  # fmt: skip
    started = time.perf_counter()
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    accs = [round(e["val_acc"], 3) for e in metrics["epochs"]]
    chosen = {k: metrics["params"].get(k) for k in ("representation", "normalize", "length_mode", "image_size")}
    row = {
        "seed": seed, "dev_val_last": accs[-1], "dev_val_last3": round(float(np.mean(accs[-3:])), 3), "per_epoch": accs,
        "chosen": chosen, "notes": metrics["notes"], "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    if "val_acc_last_step" in metrics["epochs"][-1]:  # --ema: the last step's network beside the average
        row["last_step_per_epoch"] = [round(e["val_acc_last_step"], 3) for e in metrics["epochs"]]
        row["last_step_last"] = row["last_step_per_epoch"][-1]
    if args.refit_ridge:
        row["ridge_refit"] = ridge_refit(root, out, metrics["params"], args)
    return row


def run_folder(root: Path, config: str, seed: int) -> Path:
    return root / "runs" / f"{config}_seed{seed}"


def val_probabilities(model_file: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of the saved model (run as ``unirep eval`` runs it) on ``root/val``, and the targets."""
    out = model_outputs("timeseries", root / "val", model_file, device="cpu", workers=1, cache_dir=root / "cache")
    return out.logits.softmax(-1).numpy(), np.array(out.targets)


def seeds_summary(rows: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    """The seeds' mean last-epoch accuracy and spread, and the accuracy of their averaged probabilities."""
    last = [row["dev_val_last"] for row in rows]
    models = [run_folder(root, row["config"], row["seed"]) / "model.safetensors" for row in rows]
    probabilities = [val_probabilities(model, root) for model in models]
    labels = probabilities[0][1]
    ensemble = np.mean([p for p, _ in probabilities], axis=0).argmax(1)
    return {
        "seeds": [row["seed"] for row in rows], "dev_val_last_per_seed": last,
        "dev_val_last_mean": round(float(np.mean(last)), 3), "dev_val_last_spread": round(max(last) - min(last), 3),
        "dev_val_ensemble": round(float((ensemble == labels).mean()), 3),
    }  # fmt: skip


def ridge_refit(root: Path, trained: Path, params: dict[str, Any], args: argparse.Namespace) -> float:
    """Dev-val accuracy of the trained backbone with its head solved anew by ridge regression on the (un-augmented)
    dev-train features: ``unirep train --init <the run's checkpoint> --head ridge`` with the run's params. The same
    network read out two ways, so the comparison with the trained head carries no seed noise."""
    out = trained.parent / f"{trained.name}_ridge"
    cfg = TrainConfig.from_recipe(
        args.recipe, modality="timeseries", data=str(root / "fit"), val=str(root / "val"), out=str(out),
        params=params, device="cpu", progress=False, workers=1, cache_dir=str(root / "cache"), select="last",
        seed=args.seeds[0], init=str(trained / "checkpoint.pt"), head="ridge",
    )  # fmt: skip
    train(cfg)
    return round(json.loads((out / "metrics.json").read_text())["epochs"][-1]["val_acc"], 3)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    extra = {k: json.loads(v) if v[:1].isdigit() else v for k, _, v in (p.partition("=") for p in args.param)}
    rows: list[dict[str, Any]] = []
    for name in args.sets.split(","):
        for k, dev in enumerate(dev_splits(load_split(name), args.folds, args.fraction, args.split_seed)):
            if not args.only_folds or str(k) in args.only_folds.split(","):
                run_fold(dev, {"set": name, "fold": k}, extra, args, rows)


def run_fold(
    dev: Split, base: dict[str, Any], extra: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]
) -> None:
    """The baselines on one dev split, then each config's map FCN and UniRepLKNet runs, a row reported for each."""
    base = {**base, "dev_fit": len(dev.train_x), "dev_val": len(dev.test_x)}
    base["one_nn_ed"] = round(one_nn_ed(dev, choose_znorm(dev)), 3)
    if args.minirocket:
        base["minirocket"] = round(minirocket(dev), 3)
    if args.fcn:
        base["fcn"] = round(fcn(dev, epochs=args.fcn, seed=args.seeds[0]), 3)
    configs = [c for c in args.configs.split(",") if c]
    for config in configs if args.map_fcn else []:
        params = TrainConfig.recipe_params(args.recipe, "timeseries", {**CONFIGS[config], **extra})
        report(
            rows,
            {**base, "config": config, "map_fcn": round(map_fcn(dev, params, args.map_fcn, args.seeds[0]), 3)},
            args.json,
        )
    if not configs or args.no_train:  # --configs "" or --no-train: no UniRepLKNet run
        if not configs or not args.map_fcn:
            report(rows, base, args.json)
        return
    with tempfile.TemporaryDirectory(prefix="ts_dev_") as tmp:
        root = Path(tmp)
        write_folder(root / "fit", dev.train_x, dev.train_y, dev.labels)
        write_folder(root / "val", dev.test_x, dev.test_y, dev.labels)
        for config in configs:
            runs = []
            params = {**CONFIGS[config], **extra}
            for seed in args.seeds:
                runs.append({**base, "config": config, **dev_run(root, config, params, args, seed)})
                report(rows, runs[-1], args.json)
            if len(runs) > 1:
                report(rows, {**base, "config": config, **seeds_summary(runs, root)}, args.json)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="ArrowHead,ItalyPowerDemand,Covid3Month_disc,OSULeaf,ACSF1")
    ap.add_argument("--configs", default="default,default_paa", help='comma-separated CONFIGS ("": baselines only)')
    ap.add_argument("--param", action="append", default=[], help="name=value added to every config")
    ap.add_argument("--fraction", type=float, default=0.3, help="share of each class held out as dev-val")
    ap.add_argument("--folds", type=int, default=1, help="k > 1: k folds of the training split, each held out once")
    ap.add_argument("--only-folds", default="", help="comma-separated fold indices to run (default: all)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (several: a summary row)")
    ap.add_argument("--recipe", default="cpu")
    ap.add_argument("--min-steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=None, help="as unirep train --lr (default: the recipe's)")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--ema", type=float, default=None, help="as unirep train --ema (default: its)")
    ap.add_argument("--mixup", type=float, default=None, help="as unirep train --mixup (default: the adapter's)")
    ap.add_argument("--drop-path", type=float, default=None, help="as unirep train --drop-path (default: its)")
    ap.add_argument("--minirocket", action="store_true", help="also MiniRocket (aeon) on each fold, for scale")
    ap.add_argument(
        "--fcn", type=int, nargs="?", const=100, default=0, help="also a 1-D FCN, EPOCHS (100) on each fold"
    )
    ap.add_argument(
        "--map-fcn", type=int, nargs="?", const=100, default=0, help="also the FCN along each config's map, EPOCHS"
    )
    ap.add_argument("--no-train", action="store_true", help="do not train UniRepLKNet (baselines, --map-fcn only)")
    ap.add_argument("--init", default=None, help="as unirep train --init: start from this checkpoint")
    ap.add_argument("--head", default=None, help="as unirep train --head (default: train)")
    ap.add_argument("--refit-ridge", action="store_true", help="also read the trained backbone out by a ridge head")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    args.seeds = [int(v) for v in args.seeds.split(",")]
    if args.map_fcn and "search" in args.configs.split(","):
        ap.error("--map-fcn reads a named map; 'search' names none (the trainer picks it)")
    return args


def report(rows: list[dict[str, Any]], row: dict[str, Any], json_path: str) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
