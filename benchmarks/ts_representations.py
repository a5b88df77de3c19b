"""Which series -> image map should UniRepLKNet see? Test accuracy of each candidate on UCR/UEA sets.

Candidates: the learned embedding (official row-major reshape, and with time kept as an image axis), Gramian
angular summation/difference fields, recurrence plots, Morlet scalograms, and combinations stacked as channels.
Every candidate gets the same model (UniRepLKNet-A from scratch), recipe and step budget (``benchmarks/ucr.py``),
on the archive's standard train/test split, beside 1-NN Euclidean on the same split. One seed per cell: the
sets are small, so differences of a few points are within noise; read the table for large gaps.

``--holdout`` scores every candidate on 30 % of the TRAIN split instead of the test split, so that maps can be
compared (and defaults chosen) without looking at the test set.

Usage: ``python benchmarks/ts_representations.py [--sets GunPoint,ItalyPowerDemand,BasicMotions] [--steps 300]
[--holdout]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ucr import PUBLISHED_1NN_ED, holdout, load_split, one_nn_euclidean, train_and_test

SIDE = 32
"""Every candidate's image is SIDE x SIDE (the embedding: d_model x seq_len), so they cost the same to train."""
CANDIDATES: dict[str, dict] = {
    "embedding (reshape)": {"representation": "embedding", "embedding_layout": "reshape", "d_model": SIDE},
    "embedding (time axis)": {"representation": "embedding", "embedding_layout": "time_axis", "d_model": SIDE},
    "gasf": {"representation": "gasf"},
    "gadf": {"representation": "gadf"},
    "rp": {"representation": "rp"},
    "cwt": {"representation": "cwt"},
    "gasf+gadf+rp": {"representation": "gasf+gadf+rp"},
    "gasf+gadf+rp+cwt": {"representation": "gasf+gadf+rp+cwt"},
    "gasf+gadf+rp (pad)": {"representation": "gasf+gadf+rp", "length_mode": "pad"},
    "values": {"representation": "values"},
    "values (pad)": {"representation": "values", "length_mode": "pad"},
    "values+jrp": {"representation": "values+jrp"},
    "values+jrp (pad)": {"representation": "values+jrp", "length_mode": "pad"},
    "values+gasf+gadf+rp": {"representation": "values+gasf+gadf+rp"},
    "values+gasf+gadf+rp (pad)": {"representation": "values+gasf+gadf+rp", "length_mode": "pad"},
}
for _name in ("values", "values+jrp", "values+gasf+gadf+rp"):  # the same maps, scaled by the training data
    CANDIDATES[f"{_name} (dataset)"] = {"representation": _name, "normalize": "dataset"}
    CANDIDATES[f"{_name} (dataset, pad)"] = {"representation": _name, "normalize": "dataset", "length_mode": "pad"}
for _params in CANDIDATES.values():
    _params.update({"seq_len": SIDE} if _params["representation"] == "embedding" else {"image_size": SIDE})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="GunPoint,ItalyPowerDemand,BasicMotions")
    ap.add_argument("--only", default="", help="candidate names, comma- or (names with commas) semicolon-separated")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--holdout", action="store_true", help="score on 30 %% of the TRAIN split, never the test split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    wanted = args.only.split(";" if ";" in args.only else ",")
    names = [n for n in CANDIDATES if not args.only or n in wanted]
    rows = []
    for set_name in args.sets.split(","):
        split = holdout(load_split(set_name)) if args.holdout else load_split(set_name)
        nn1 = one_nn_euclidean(split)
        print(f"{set_name}: 1-NN ED {nn1:.3f} (published {PUBLISHED_1NN_ED.get(set_name)})", flush=True)
        for name in names:
            r = train_and_test(split, CANDIDATES[name], steps=args.steps)
            row = {
                "set": set_name,
                "candidate": name,
                "accuracy": r.accuracy,
                "one_nn_ed": nn1,
                "train_s": round(r.train_seconds, 1),
                "input_shape": list(r.input_shape),
            }
            rows.append(row)
            print(
                f"  {name:24s} acc {r.accuracy:.3f}  train {r.train_seconds:6.1f}s  input {r.input_shape}", flush=True
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
