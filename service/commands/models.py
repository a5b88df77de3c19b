"""``unirep models`` (list the variants) and ``unirep convert`` (write a deploy-form safetensors file)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    listing = subparsers.add_parser("models", help="list the registered UniRepLKNet variants")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(func=run_models)

    convert = subparsers.add_parser(
        "convert", help="reparameterize a checkpoint and write its deploy form (safetensors)"
    )
    convert.add_argument("checkpoint", help="train- or deploy-form checkpoint: a path or a hub reference")
    convert.add_argument("--out", required=True, help="output file (.safetensors)")
    convert.add_argument("--model", default=None, help="variant name; inferred from the checkpoint when omitted")
    convert.add_argument("--in-chans", type=int, default=None, help="input channels of the converted model")
    convert.add_argument("--adapt-stem", action="store_true", help="adapt an RGB stem to --in-chans by summing")
    convert.set_defaults(func=run_convert)


def run_models(args: argparse.Namespace) -> int:
    import torch

    from models import create_model, get_model_config, list_models

    rows: list[dict[str, Any]] = []
    for name in list_models():
        cfg = get_model_config(name)
        with torch.device("meta"):
            train = create_model(name)
            deploy = create_model(name, deploy=True)
        rows.append(
            {
                "name": name,
                "params_train": sum(p.numel() for p in train.parameters()),
                "params_deploy": sum(p.numel() for p in deploy.parameters()),
                "input_size": list(cfg.input_size),
                "num_classes": cfg.num_classes,
                "weights": [w.tag for w in cfg.weights],
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'model':<16}{'params (train)':>16}{'params (deploy)':>17}  {'input':<13}{'classes':>8}  weights")
    for row in rows:
        size = "x".join(str(s) for s in row["input_size"])
        print(
            f"{row['name']:<16}{row['params_train'] / 1e6:>15.2f}M{row['params_deploy'] / 1e6:>16.2f}M  "
            f"{size:<13}{row['num_classes']:>8}  {', '.join(row['weights'])}"
        )
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from models import UnirepError, list_models, load_model, read_state_dict, resolve_weights
    from models.checkpoint import detect_form, infer_variant, save_deploy_checkpoint

    if not str(args.out).lower().endswith(".safetensors"):
        # The file is safetensors whatever its name; a .pth name would make torch.load fail on it later.
        print(f"unirep convert: --out must end in .safetensors (got {args.out!r})", file=sys.stderr)
        return 2
    try:
        path = resolve_weights(args.checkpoint)
        state = read_state_dict(path)
        name = args.model or infer_variant(state)
        if name not in list_models():
            print(f"unirep convert: unknown model {name!r}", file=sys.stderr)
            return 2
        model, info = load_model(name, path, in_chans=args.in_chans, adapt_stem=args.adapt_stem)
        metadata = {
            "model": name,
            "source": str(args.checkpoint),
            "source_form": detect_form(state),
            "num_classes": str(info.num_classes),
            "in_chans": str(info.in_chans),
            "notes": "; ".join(info.notes),
        }
        save_deploy_checkpoint(model, args.out, metadata)
    except UnirepError as exc:
        print(f"unirep convert: {exc.message}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {name}, deploy form, {info.num_classes} classes, {info.in_chans} input channels")
    return 0
