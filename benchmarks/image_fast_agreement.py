"""How far the image adapter's ``decode_mode="fast"`` map is from the exact one, and whether a model's top-1 moves.

Photos: ``benchmarks/photos.py`` (scikit-learn's and, with the ``benchmark`` extra, scikit-image's), each saved
as JPEG (quality 90) and decoded both ways, under three conditions. For scale, each condition also compares the
exact maps of the same photo saved at quality 75 and 90: a perturbation every JPEG pipeline already lives with.

- ``native@224``: the photo at its own size, model input 224 (the reduced decode applies only to photos at least
  twice the 256-pixel resize target on both sides, i.e. short side >= 512);
- ``native@112``: the same files, model input 112 (target 128), so that most photos take a 1/2 or 1/4 decode;
- ``enlarged-1080@224``: each photo enlarged (bicubic) to a 1080-pixel short side, model input 224 (1/4 decode);
  enlarged photos are smoother than camera output, so this condition flatters the fast path.

Model: UniRepLKNet-A in deploy form with ``--weights FILE`` (e.g. the official ImageNet checkpoint) or, without
it, random weights from ``--seed``. Random weights have no notion of a class: their top-1 agreement says how
stable an untrained network's arg-max is under the perturbation, not how often an ImageNet prediction changes.

Usage: ``python benchmarks/image_fast_agreement.py [--weights unireplknet_a_in1k_224_acc77.03.pth] [--json out]``
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.photos import enlarged, grey_levels, jpeg_bytes, load_photos
from modality_adapters import get_adapter
from modality_adapters.image import draft_for_target
from models import load_model

CONDITIONS: dict[str, tuple[int, bool]] = {"native@224": (224, False), "native@112": (112, False)}
CONDITIONS["enlarged-1080@224"] = (224, True)


def reduced(data: bytes, input_size: int) -> int:
    """The DCT scale denominator the fast path uses for this file (1 = full size)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    full = image.width
    size = draft_for_target(image, input_size, 0.875)
    return 1 if size is None else round(full / size[0])


def measure(model: torch.nn.Module, pairs: list[tuple[bytes, bytes]], input_size: int, mode: str) -> dict[str, Any]:
    """The exact map of each pair's first file against the ``mode`` map of its second file."""
    adapter = get_adapter("image")
    std = adapter.default_params()["std"]
    diffs, greys, top1, top5, classes, scales = [], [], [], [], set(), []
    for data, other in pairs:
        exact = adapter.decode(data, input_size=input_size)
        fast = adapter.decode(other, input_size=input_size, decode_mode=mode)
        diff = (fast - exact).abs().numpy()
        diffs.append(float(diff.mean()))
        greys.append(grey_levels(diff, std))
        with torch.inference_mode():
            logits = model(torch.stack([exact, fast]))
        order = logits.topk(5, dim=1).indices
        top1.append(bool(order[0, 0] == order[1, 0]))
        top5.append(len(set(order[0].tolist()) & set(order[1].tolist())) / 5)
        classes.add(int(order[0, 0]))
        scales.append(reduced(other, input_size) if mode == "fast" else 1)
    all_grey = np.concatenate([g.ravel() for g in greys])
    return {
        "images": len(pairs),
        "reduced": sum(s > 1 for s in scales),
        "scales": sorted(set(scales)),
        "mean_abs_diff": round(float(np.mean(diffs)), 4),
        "mean_abs_diff_grey_levels": round(float(all_grey.mean()), 2),
        "p99_abs_diff_grey_levels": round(float(np.percentile(all_grey, 99)), 1),
        "top1_agreement": round(float(np.mean(top1)), 3),
        "top5_overlap": round(float(np.mean(top5)), 3),
        "distinct_exact_top1": len(classes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="checkpoint for UniRepLKNet-A (default: random weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    model, info = load_model("unireplknet_a", args.weights)
    photos = load_photos()
    native = [jpeg_bytes(photo) for photo in photos.values()]
    big = [jpeg_bytes(enlarged(photo)) for photo in photos.values()]
    native_q75 = [jpeg_bytes(photo, quality=75) for photo in photos.values()]
    big_q75 = [jpeg_bytes(enlarged(photo), quality=75) for photo in photos.values()]
    weights = info.source if args.weights else f"random (seed {args.seed})"
    print(f"# UniRepLKNet-A, weights: {weights}; {len(photos)} photos: {', '.join(photos)}")
    print(f"{'condition':<19} {'compared':<24} images reduced scales  mean|d|  grey mean", end="")
    print("   p99   top-1   top-5 distinct")
    results = {}
    for label, (input_size, use_big) in CONDITIONS.items():
        files, requality = (big, big_q75) if use_big else (native, native_q75)
        for what, pairs, mode in (
            ("fast vs exact", list(zip(files, files, strict=True)), "fast"),
            ("q75 vs q90, both exact", list(zip(files, requality, strict=True)), "exact"),
        ):
            r = measure(model, pairs, input_size, mode)
            results[f"{label} {what}"] = r
            print_row(label, what, r)
    if args.json:
        args.json.write_text(json.dumps({"weights": weights, "photos": list(photos), "results": results}, indent=2))


def print_row(label: str, what: str, r: dict[str, Any]) -> None:
    scales = "/".join(map(str, r["scales"]))
    print(
        f"{label:<19} {what:<24} {r['images']:>6} {r['reduced']:>7} {scales:<7} {r['mean_abs_diff']:>7.4f} "
        f"{r['mean_abs_diff_grey_levels']:>10.2f} {r['p99_abs_diff_grey_levels']:>5.1f} "
        f"{r['top1_agreement']:>7.3f} {r['top5_overlap']:>7.3f} {r['distinct_exact_top1']:>8}"
    )


if __name__ == "__main__":
    main()
