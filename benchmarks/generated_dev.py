"""Compare training choices on DEV data: the generated video clips and point-cloud shapes made again with other seeds.

``benchmarks/train_accuracy.py`` reports the generated sets (``motion`` seed 0, ``appearance`` seed 1, ``shapes``
and ``shapes_upright`` seed 0) once a choice is settled; choices are made here instead, on fresh train and test
splits from the same generators (``DEV_SEEDS``), through ``unirep train``'s core (``training.train``, the named
recipe, the adapter's augmentation, the step floor, the data's own params ``DATA_PARAMS``). Prints the held-out
and training accuracy per epoch and the seconds.

Usage: ``python benchmarks/generated_dev.py --set appearance|motion|shapes|shapes_upright [--param frame_size=64]
[--param splat=0] [--recipe default] [--seed 1] [--epochs 40] [--train-per-class 64] [--data-seed 13]
[--threads 1] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks.generated_data as gen
from training import TrainConfig, train

DEV_SEEDS = {"appearance": 11, "motion": 12, "shapes": 21, "shapes_upright": 22}
"""Data seeds of the dev sets (the benchmark's are 1 for appearance, 0 for the others)."""
MODALITIES = {"appearance": "video", "motion": "video", "shapes": "pointcloud", "shapes_upright": "pointcloud"}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _make(name: str, root: Path, train_per_class: int | None, seed: int) -> None:
    """The named set's train and test splits under ``root`` (its own clips or clouds per class unless given)."""
    per_class = {} if train_per_class is None else {"train_per_class": train_per_class}
    if name in ("shapes", "shapes_upright"):
        gen.make_shapes(root, seed=seed, pose="upright" if name == "shapes_upright" else "arbitrary", **per_class)
    else:
        make = gen.make_appearance_videos if name == "appearance" else gen.make_motion_videos
        make(root, seed=seed, **per_class)


def train_params(set_name: str, assignments: list[str]) -> dict[str, Any]:
    """The adapter params of a dev run: the generated data's own (``DATA_PARAMS``), then the run's ``name=value``s
    (values read as JSON where they parse)."""
    given = {k: _value(v) for k, v in (item.split("=", 1) for item in assignments)}
    return {**gen.DATA_PARAMS.get(MODALITIES[set_name], {}), **given}


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    seed = args.data_seed if args.data_seed is not None else DEV_SEEDS[args.set]
    _make(args.set, root / "data", args.train_per_class, seed)
    params = train_params(args.set, args.param)
    cfg = TrainConfig.from_recipe(
        args.recipe,
        modality=MODALITIES[args.set],
        data=str(root / "data" / "train"),
        val=str(root / "data" / "test"),
        out=str(root / "run"),
        params=params,
        device="cpu",
        progress=False,
        workers=1,
        select="last",
        seed=args.seed,
        epochs=args.epochs,
    )
    start = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - start
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    return {
        "set": args.set,
        "data_seed": seed,
        "train_seed": args.seed,
        "params": cfg.params,
        "trained_with": metrics["params"],
        "test_acc_by_epoch": [round(e["val_acc"], 3) for e in metrics["epochs"]],
        "train_acc_by_epoch": [round(e["train_acc"], 2) for e in metrics["epochs"]],
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(DEV_SEEDS), required=True)
    parser.add_argument("--param", action="append", default=[], help="adapter param name=value (repeatable)")
    parser.add_argument("--recipe", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--data-seed", type=int, default=None, help="generator seed (default: the set's dev seed)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--train-per-class", type=int, default=None, help="default: the generator's (16 clips, 24 clouds)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
