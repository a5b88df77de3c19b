"""``unirep train`` (labelled data -> a served model file) and ``unirep eval`` (a model file scored on data).

Both are thin: flags become a ``training.TrainConfig`` or ``training.evaluate`` call; torch loads only inside the
handlers. A problem with the data or the weights is one line on stderr and exit code 2 (data) or 1 (weights,
model), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

RECIPES = ("default", "cpu")
HEADS = ("train", "ridge", "train+ridge")
RECIPE_HELP = (
    "default: 30 epochs, batch 32, lr 1e-3 on the served map; cpu: 10 epochs, batch 16, lr 2e-3 on a smaller map "
    "(minutes on two cores, see README); explicit flags and --param win over either"
)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default: the value, or what it means when the help already says it
    (``(default: ...)``), so that ``--help`` alone tells what a run will do. Flags (store_true) say nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "(default" in text
            or action.required
            or action.default is argparse.SUPPRESS
            or action.nargs == 0
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE as JSON when it parses (numbers, lists), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _processes(text: str) -> int | None:
    """``--data-parallel``: a count, or ``auto`` (None: chosen from the cores)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got {text!r}") from None


def add_parser(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on your labelled data (see README: Train your own)",
        formatter_class=DefaultsHelpFormatter,
    )
    train.add_argument("modality", help="the modality to train, e.g. audio")
    train.add_argument("data", help="folder of class subfolders, a .csv/.jsonl manifest of path,label, or a .ts file")
    train.add_argument("--val", default=None, help="validation data (same forms) (default: hold out --val-fraction)")
    train.add_argument("--val-fraction", type=float, default=0.2, help="stratified, seeded held-out fraction")
    train.add_argument("--out", required=True, help="output folder (model.safetensors, metrics.json, ...)")
    train.add_argument("--model", default=None, help="variant; see `unirep models` (default: unireplknet_a)")
    train.add_argument("--recipe", choices=RECIPES, default="default", help=RECIPE_HELP)
    train.add_argument(
        "--epochs", type=int, default=None, help="passes over the data (default: the recipe's, 30 or 10)"
    )
    train.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="examples a step, shared by --data-parallel's processes; under torchrun, a process's "
        "(default: the recipe's, 32 or 16)",
    )
    train.add_argument(
        "--min-steps", type=int, default=300, help="at least this many optimizer steps (small sets repeat passes)"
    )
    train.add_argument(
        "--lr", type=float, default=None, help="peak AdamW learning rate (default: the recipe's, 1e-3 or 2e-3)"
    )
    train.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    train.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay")
    train.add_argument("--label-smoothing", type=float, default=0.1, help="soft targets")
    train.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate")
    train.add_argument(
        "--select",
        choices=("best", "last"),
        default="best",
        help="the model kept: best validation accuracy (ties: lower loss) or the last epoch's",
    )
    train.add_argument(
        "--ema",
        type=float,
        default=None,
        help="decay of the moving average of the weights that is validated and saved; 0: the last step's weights "
        "(default: 0)",
    )
    train.add_argument(
        "--mixup", type=float, default=None, help="batch mixup probability (default: 0.6 for audio, else 0)"
    )
    train.add_argument("--no-augment", action="store_true", help="train without the modality's augmentations")
    train.add_argument("--seed", type=int, default=0, help="split, initialisation, order and augmentation")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on CUDA only)"
    )
    train.add_argument(
        "--init",
        default=None,
        help="start from these weights, stem adapted and a new head (default: random initialisation)",
    )
    train.add_argument("--freeze-backbone", action="store_true", help="train only the head (fast on a CPU)")
    train.add_argument(
        "--head",
        choices=HEADS,
        default=None,
        help="train: the whole network by gradient steps; ridge: keep the backbone as initialized (or --init) and "
        "solve the head in closed form on its features (seconds; strong on a few dozen examples); train+ridge: "
        "train, then solve the head anew on the trained features (default: train, unless a time-series map search "
        "finds the ridge head clearly better on held-out training series)",
    )
    train.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        help="continue from a checkpoint.pt (default without the flag: start afresh; with it alone: --out's)",
    )
    train.add_argument(
        "--param",
        dest="params",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adapter param (repeatable), e.g. image_size=64; unset ones follow the recipe, the data and the service",
    )
    train.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that decode the files and, on a CPU, run the series map search's trials (default: one per CPU, "
        "at most 8)",
    )
    train.add_argument(
        "--data-parallel",
        type=_processes,
        default=1,
        metavar="N|auto",
        help="processes that train on a CPU, each a share of every batch on one thread (two cores: 1.6x faster); "
        "auto: one a core, at most 8, shares of at least 8 examples, runs of 100 steps or more; 1: this process",
    )
    train.add_argument("--cache-dir", default=None, help="decoded-example cache (default: ~/.cache/unirep/decoded)")
    train.add_argument("--json", action="store_true", help="print the result as one JSON object")
    train.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    train.set_defaults(func=run_train)

    ev = subparsers.add_parser(
        "eval",
        help="score a model file on labelled data (accuracy, macro-F1, confusion)",
        formatter_class=DefaultsHelpFormatter,
    )
    ev.add_argument("modality", help="the modality the model serves")
    ev.add_argument("data", help="same forms as for unirep train")
    ev.add_argument("--weights", required=True, help="model file (e.g. DIR/model.safetensors from unirep train)")
    ev.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ev.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per CPU)")
    ev.add_argument("--cache-dir", default=None, help="decoded-example cache (default: ~/.cache/unirep/decoded)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=run_eval)


def _fail(command: str, exc: Exception) -> int:
    from unirep_errors import InputError

    message = getattr(exc, "message", str(exc))
    print(f"unirep {command}: {message}", file=sys.stderr)
    return 2 if isinstance(exc, InputError) else 1


def _config(args: argparse.Namespace) -> Any:
    from training import TrainConfig

    resume = None if args.resume is None else (args.resume or args.out)
    argv = getattr(args, "argv", None) or sys.argv[1:]
    return TrainConfig.from_recipe(
        args.recipe,
        modality=args.modality,
        data=args.data,
        out=args.out,
        val=args.val,
        val_fraction=args.val_fraction,
        model=args.model,
        params=dict(args.params),
        epochs=args.epochs,
        batch_size=args.batch_size,
        min_steps=args.min_steps,
        lr=args.lr,
        select=args.select,
        ema=args.ema,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        drop_path=args.drop_path,
        mixup=args.mixup,
        augment=not args.no_augment,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        init=args.init,
        freeze_backbone=args.freeze_backbone,
        head=args.head,
        resume=resume,
        workers=args.workers,
        data_parallel=args.data_parallel,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        command=shlex.join(["unirep", *argv]),
    )


def run_train(args: argparse.Namespace) -> int:
    from training import train
    from unirep_errors import UnirepError

    try:
        result = train(_config(args))
    except UnirepError as exc:
        return _fail("train", exc)
    except OSError as exc:  # e.g. the output folder cannot be written
        return _fail("train", UnirepError(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")))
    except KeyboardInterrupt:
        print("unirep train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the run
        return 0
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(
        f"wrote {result.weights}: {len(result.labels)} classes, validation accuracy {result.val_accuracy:.4f}, "
        f"macro-F1 {result.val_macro_f1:.4f} on {result.num_val} examples "
        f"(trained on {result.num_train}; deploy check {result.deploy_max_rel_diff:.2e})"
    )
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s); see {result.out_dir / 'metrics.json'}")
    print(f"serve it: unirep serve --set {args.modality}.weights={result.weights}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from training import evaluate
    from training.metrics import format_report
    from unirep_errors import UnirepError

    try:
        rep = evaluate(
            args.modality,
            args.data,
            args.weights,
            batch_size=args.batch_size,
            device=args.device,
            workers=args.workers,
            cache_dir=args.cache_dir,
            progress=not args.no_progress and not args.json,
        )
    except UnirepError as exc:
        return _fail("eval", exc)
    print(json.dumps(rep.to_dict()) if args.json else format_report(rep))
    return 0
