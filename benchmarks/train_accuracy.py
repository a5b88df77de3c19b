"""Does ``unirep train`` learn? Test accuracy of trained UniRepLKNet beside a simple baseline on the same split.

Sets: the UCR/UEA classification sets aeon ships (standard splits; ``UCR_SETS``, multivariate first) and a
smartwatch exercise set tested on unseen subjects (``OTHER_SERIES_SETS``) beside 1-NN Euclidean, 1-NN DTW, ROCKET
and MiniRocket (``benchmarks/ts_baselines.py``: every choice they make, and the series model's map, made on the
training split); spoken words
synthesized with espeak-ng, tested on unseen voices, beside 1-NN on MFCC statistics; generated point-cloud shapes
in any pose (``shapes``) and upright (``shapes_upright``) beside 1-NN on D2 shape-distribution histograms;
generated videos told apart only by motion (``motion``) or only by the object's look (``appearance``) beside
1-NN on frame-difference statistics (``benchmarks/generated_data.py``). The trained model never sees the test
split: training uses the train split (no epoch is selected on the test split; it is only reported), then
``training.evaluate`` scores the saved deploy-form file on the test split.

Usage: ``python benchmarks/train_accuracy.py [--only GunPoint,words] [--epochs 10] [--min-steps 300] [--json out.json]
[--param pointcloud.pose=as_given ...]`` (``--param`` sets an adapter param of the trained model, for comparing maps;
unset ones are what ``unirep train`` uses). ``--seed N`` trains with another seed (as ``unirep train --seed``): one
seed moves a small set's test figure by a series or a clip, so a figure near a goal is read over several.
"""

from __future__ import annotations

import argparse
import copy
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

from benchmarks import generated_data as gen
from benchmarks.ts_baselines import baselines
from benchmarks.ucr import PUBLISHED_1NN_ED, WATCH, aeon_data_dir, load_split, write_folder
from modality_adapters import get_adapter
from training import TrainConfig, evaluate, train

UCR_SETS = (
    "JapaneseVowels",
    "BasicMotions",
    "GunPoint",
    "ItalyPowerDemand",
    "UnitTest",
    "ArrowHead",
    "PickupGestureWiimoteZ",
    "Covid3Month_disc",
    "OSULeaf",
    "ACSF1",
)
"""Every classification set aeon ships, in the order they are run: the two multivariate ones (the only ones aeon
ships) and the short or unequal-length ones first, the long univariate ones last. Their mean is the one compared
with MiniRocket's."""
OTHER_SERIES_SETS = (WATCH,)
"""Series sets from elsewhere (``benchmarks.ucr.WATCH``: smartwatch exercises, tested on unseen subjects), with the
same baselines; not in the UCR/UEA mean."""
GENERATED_SETS = ("words", "shapes", "shapes_upright", "motion", "appearance")
DATA_PARAMS = copy.deepcopy(gen.DATA_PARAMS)
"""The generated data's own params (``generated_data.DATA_PARAMS``), which ``--param`` extends for this run."""


def one_nn(train_f: np.ndarray, train_y: list[str], test_f: np.ndarray, test_y: list[str], p: int = 2) -> float:
    mu, sd = train_f.mean(0), train_f.std(0) + 1e-8
    a, b = (train_f - mu) / sd, (test_f - mu) / sd
    d = np.abs(b[:, None, :] - a[None, :, :]) ** p
    pred = np.asarray(train_y)[d.sum(-1).argmin(1)]
    return float((pred == np.asarray(test_y)).mean())


def mfcc_stats(path: Path) -> np.ndarray:
    import soundfile as sf
    import torchaudio

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    x = torch.from_numpy(wav.mean(1))[None]
    x = torchaudio.functional.resample(x, sr, 16000)
    m = torchaudio.compliance.kaldi.mfcc(x, sample_frequency=16000, num_ceps=13).numpy()
    return np.concatenate([m.mean(0), m.std(0)])


def d2_histogram(points: np.ndarray, rng: np.random.Generator, pairs: int = 4000, bins: int = 32) -> np.ndarray:
    i, j = rng.integers(0, len(points), (2, pairs))
    d = np.linalg.norm(points[i] - points[j], axis=1)
    hist, _ = np.histogram(d / (d.max() + 1e-12), bins=bins, range=(0, 1))
    return hist / pairs


def frame_diff_stats(frames: np.ndarray) -> np.ndarray:
    """Mean |difference| on a 4 x 4 grid, and the mean shift of the motion-energy centroid and its spread."""
    gray = frames.astype(np.float64).mean(-1)
    diff = np.abs(np.diff(gray, axis=0))  # (T-1, H, W)
    t, h, w = diff.shape
    grid = diff.reshape(t, 4, h // 4, 4, w // 4).mean((0, 2, 4)).ravel()
    yy, xx = np.mgrid[0:h, 0:w]
    mass = diff.sum((1, 2)) + 1e-8
    cx, cy = (diff * xx).sum((1, 2)) / mass, (diff * yy).sum((1, 2)) / mass
    spread = np.sqrt((diff * ((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2)).sum((1, 2)) / mass)
    motion = [np.diff(cx).mean(), np.diff(cy).mean(), np.diff(spread).mean(), diff.mean()]
    return np.concatenate([grid, motion])


def run_model(modality: str, train_data: Path, test_data: Path, out: Path, args: argparse.Namespace) -> dict:
    # The test split is passed as --val only to report it per epoch; --select last, so no epoch is chosen on it.
    cfg = TrainConfig.from_recipe(
        args.recipe, modality=modality, data=str(train_data), val=str(test_data), out=str(out), epochs=args.epochs,
        min_steps=args.min_steps, batch_size=args.batch_size, lr=args.lr, params=DATA_PARAMS.get(modality, {}),
        device="cpu", progress=False, workers=args.workers, cache_dir=str(out / "cache"), augment=not args.no_augment,
        select="last", head=args.head, ema=args.ema, seed=args.seed, data_parallel=args.data_parallel,
    )  # fmt: skip
    result = train(cfg)
    report = evaluate(modality, str(test_data), str(result.weights), device="cpu", workers=1, cache_dir=out / "cache")
    metrics = json.loads((out / "metrics.json").read_text())
    chosen = {k: metrics["params"].get(k) for k in get_adapter(modality).training_choices}
    return {
        "recipe": args.recipe, "seed": args.seed, "train_params": cfg.params, "notes": metrics["notes"],
        "chosen_params": chosen or None,
        "accuracy": report.accuracy, "macro_f1": report.macro_f1, "train_s": round(result.seconds, 1),
        "examples_per_s": round(result.examples_per_second, 1), "num_train": result.num_train,
        "num_test": report.num_examples, "deploy_max_rel_diff": result.deploy_max_rel_diff,
        "optimizer_steps": metrics["schedule"]["optimizer_steps"],
        "processes": metrics["schedule"]["processes"],
        "head": "ridge" if any(n.startswith("head solved by ridge") for n in metrics["notes"]) else "train",
        "test_acc_by_epoch": [round(e["val_acc"], 3) for e in metrics["epochs"]],
        "loadavg_after": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def ucr_row(name: str, work: Path, args: argparse.Namespace) -> dict:
    split = load_split(name)
    row: dict[str, Any] = {"set": name, "variables": split.train_x[0].shape[1], "classes": len(split.labels)}
    lengths = [len(x) for x in split.train_x]
    row.update(length_min=min(lengths), length_max=max(lengths), published_1nn_ed=PUBLISHED_1NN_ED.get(name))
    row.update(baselines(split) if not args.skip_baselines else {})
    row["baseline"], row["baseline_accuracy"] = "1-NN Euclidean", row.get("one_nn_ed")
    if name in UCR_SETS:
        folder = aeon_data_dir() / name
        train_data, test_data = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    else:  # not a .ts pair: class folders of CSV files, as a user would hand them to unirep train
        train_data = write_folder(work / f"{name}_data" / "train", split.train_x, split.train_y, split.labels)
        test_data = write_folder(work / f"{name}_data" / "test", split.test_x, split.test_y, split.labels)
    row.update(run_model("timeseries", train_data, test_data, work / name, args))
    return row


def generated_data(name: str, root: Path) -> tuple[dict, str, str]:
    """The set's files under ``root``, its raw splits, the baseline's name and the modality."""
    if name == "words":
        return gen.make_spoken_words(root), "1-NN on MFCC mean+std", "audio"
    if name in ("shapes", "shapes_upright"):
        pose = "upright" if name == "shapes_upright" else "arbitrary"
        return gen.make_shapes(root, pose=pose), "1-NN on D2 histograms", "pointcloud"
    make = gen.make_appearance_videos if name == "appearance" else gen.make_motion_videos
    return make(root), "1-NN on frame-difference statistics", "video"


def generated_row(name: str, work: Path, args: argparse.Namespace) -> dict:
    root = work / name
    rng = np.random.default_rng(0)
    data, baseline, modality = generated_data(name, root)
    features = {"audio": mfcc_stats, "pointcloud": lambda p: d2_histogram(p, rng), "video": frame_diff_stats}
    feats = {s: np.stack([features[modality](x) for x, _ in data[s]]) for s in data}
    labels = {s: [label for _, label in data[s]] for s in data}
    acc = one_nn(feats["train"], labels["train"], feats["test"], labels["test"], p=1 if modality == "pointcloud" else 2)
    row = {"set": name, "baseline": baseline, "baseline_accuracy": acc}
    row.update(run_model(modality, root / "train", root / "test", root / "run", args))
    return row


def set_params(assignments: list[str]) -> None:
    """``modality.name=value`` (value read as JSON when it parses, else as text) into ``DATA_PARAMS``."""
    for item in assignments:
        key, _, value = item.partition("=")
        modality, _, name = key.partition(".")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        DATA_PARAMS.setdefault(modality, {})[name] = parsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join([*UCR_SETS, *OTHER_SERIES_SETS, *GENERATED_SETS]))
    ap.add_argument("--recipe", default="cpu", help="as unirep train --recipe: cpu (minutes a set) or default")
    ap.add_argument("--epochs", type=int, default=None, help="as unirep train --epochs (default: the recipe's)")
    ap.add_argument("--min-steps", type=int, default=TrainConfig.min_steps, help="as unirep train --min-steps")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    ap.add_argument("--no-augment", action="store_true", help="train without the modality's augmentations")
    ap.add_argument("--head", default=None, choices=("train", "ridge"), help="as unirep train --head (default: its)")
    ap.add_argument("--ema", type=float, default=None, help="as unirep train --ema (default: its)")
    ap.add_argument("--skip-baselines", action="store_true", help="UCR/UEA sets: the trained model only")
    ap.add_argument("--seed", type=int, default=TrainConfig.seed, help="as unirep train --seed: one run's draw")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--workers", type=int, default=1, help="as unirep train --workers (default 1: decoding and trials in-process)"
    )
    ap.add_argument(
        "--data-parallel",
        type=int,
        default=1,
        help="as unirep train --data-parallel (default 1: one training process, as every figure before 2026-12-08)",
    )
    ap.add_argument("--param", action="append", default=[], help="modality.name=value: an adapter param to train with")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    set_params(args.param)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rows = []
    with tempfile.TemporaryDirectory(prefix="train_accuracy_") as tmp:
        for name in args.only.split(","):
            start, load = time.perf_counter(), os.getloadavg()[0]
            series = name in UCR_SETS or name in OTHER_SERIES_SETS
            row = ucr_row(name, Path(tmp), args) if series else generated_row(name, Path(tmp), args)
            row["wall_s"], row["loadavg_before"] = round(time.perf_counter() - start, 1), round(load, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
