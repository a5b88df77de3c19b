"""What a training run is asked to do (``TrainConfig``) and what it produced (``TrainResult``, ``EvalReport``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unirep_errors import InvalidParameterError

DEFAULT_MODEL = "unireplknet_a"
"""The smallest registered variant: it trains on a laptop CPU, and bigger ones are one flag away."""

RECIPES: dict[str, dict[str, Any]] = {
    "default": {"epochs": 30, "batch_size": 32, "lr": 1e-3},
    "cpu": {"epochs": 10, "batch_size": 16, "lr": 2e-3},
}
"""Named recipes: the fields a recipe sets (explicit flags win). ``cpu`` also trains on each adapter's smaller map
(``small_params``), so that a set of a few hundred examples trains in minutes on two cores; its cost and accuracy on
the benchmark sets are in the README."""
MAX_WORKERS = 8
"""Processes that prepare a run (decoding, the series map search's trials) unless ``--workers`` says more: each
loads its own torch, and more would cost memory on a machine of many cores for work of a few dozen trials or files
a process."""
SELECTIONS = ("best", "last")
HEADS = ("train", "ridge", "train+ridge")
"""``train``: the whole network by gradient steps; ``ridge``: the backbone as initialized (or ``--init``) and the
head solved in closed form (``training.ridge_head``); ``train+ridge``: trained, then the head solved anew in closed
form on the trained features."""


@dataclass
class TrainConfig:
    """One training run. Fields mirror ``unirep train``'s flags; None means "the modality's default"."""

    modality: str
    data: str | Path
    out: str | Path
    val: str | Path | None = None
    val_fraction: float = 0.2
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """Adapter params (e.g. image ``input_size``); unset ones follow the served defaults or the data."""
    epochs: int = 30
    batch_size: int = 32
    min_steps: int = 300
    """At least this many optimizer steps: each epoch repeats passes over a small data set (``passes_per_epoch``)."""
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    mixup: float | None = None
    """Probability that a batch is mixed (None: the adapter's ``training_mixup``, 0.6 for audio as in the
    speech-commands recipe, else 0)."""
    augment: bool = True
    recipe: str = "default"
    """Recorded with the run; the recipe's values are applied by ``TrainConfig.from_recipe`` (and the CLI)."""
    select: str = "best"
    """The model kept: ``best`` validation accuracy (ties: lower validation loss) or the ``last`` epoch's."""
    ema: float = 0.0
    """Decay of the moving average of the weights that is validated and saved (``training.averaging``); 0: none,
    the last step's weights."""
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    """bf16 autocast; None means on CUDA only."""
    channels_last: bool | None = None
    """channels_last memory format; None means on CUDA only."""
    init: str | None = None
    freeze_backbone: bool = False
    head: str | None = None
    """One of ``HEADS``; None: ``train``, unless a time-series run's map search finds the ridge head better."""
    resume: str | Path | None = None
    workers: int | None = None
    """Processes that prepare the run (None: one per CPU, at most 8): they decode the files, and on a CPU run the
    series map search's trials (``training.trial_pool``); 1 does both in the training process."""
    data_parallel: int | None = 1
    """Processes that train on a CPU, each a share of every batch on one thread (``training.data_parallel``); 1: this
    process on torch's threads; None: chosen from the cores (at most 8, shares of at least 8 examples, runs of 100
    steps or more)."""
    cache_dir: str | Path | None = None
    progress: bool = True
    command: str = ""
    """The command line that started the run, recorded in the model file."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_recipe(cls, recipe: str, **fields: Any) -> TrainConfig:
        """A run of the named recipe: its values under the given fields (None means "the recipe's"), and for ``cpu``
        the adapter's smaller map under the given params."""
        if recipe not in RECIPES:
            raise InvalidParameterError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
        given = {k: v for k, v in fields.items() if v is not None}
        params = cls.recipe_params(recipe, given.get("modality", ""), given.pop("params", {}))
        return cls(**{**RECIPES[recipe], **given, "params": params, "recipe": recipe})

    @staticmethod
    def recipe_params(recipe: str, modality: str, params: dict[str, Any]) -> dict[str, Any]:
        """The adapter params a run of ``recipe`` trains on: for ``cpu``, the adapter's smaller map under ``params``
        (which win); for any other recipe, ``params`` as given."""
        if recipe == "cpu":
            from modality_adapters import get_adapter, list_adapters

            if modality in list_adapters():
                return {**get_adapter(modality).small_params, **params}
        return dict(params)

    def check(self) -> None:
        """Refuse values no run can use, before any data is read."""
        problems = []
        from modality_adapters import list_adapters

        if self.modality not in list_adapters():
            problems.append(f"modality must be one of {list_adapters()}, got {self.modality!r}")
        if self.epochs < 1:
            problems.append(f"--epochs must be at least 1, got {self.epochs}")
        if self.min_steps < 0:
            problems.append(f"--min-steps must be 0 or more, got {self.min_steps}")
        if self.batch_size < 2:
            problems.append(f"--batch-size must be at least 2 (BatchNorm needs two examples), got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.drop_path < 1.0:
            problems.append("--label-smoothing and --drop-path must be in [0, 1)")
        if self.select not in SELECTIONS:
            problems.append(f"--select must be one of {SELECTIONS}, got {self.select!r}")
        if self.head is not None and self.head not in HEADS:
            problems.append(f"--head must be one of {HEADS}, got {self.head!r}")
        if self.head == "ridge" and self.resume:
            problems.append("--head ridge solves the head in one go: there is nothing to --resume")
        if not 0.0 <= self.ema < 1.0:
            problems.append(f"--ema is a decay in [0, 1), got {self.ema}")
        if self.data_parallel is not None and self.data_parallel < 1:
            problems.append(f"--data-parallel must be at least 1, got {self.data_parallel}")
        if self.mixup is not None and not 0.0 <= self.mixup <= 1.0:
            problems.append(f"--mixup is a probability in [0, 1], got {self.mixup}")
        if problems:
            raise InvalidParameterError("; ".join(problems))


@dataclass
class TrainResult:
    """Where the outputs went and how good the model is on its validation set."""

    out_dir: Path
    weights: Path
    checkpoint: Path
    labels: list[str]
    val_accuracy: float
    val_macro_f1: float
    deploy_max_rel_diff: float
    epochs_run: int
    num_train: int
    num_val: int
    skipped: list[tuple[str, str]]
    seconds: float
    examples_per_second: float

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(out_dir=str(self.out_dir), weights=str(self.weights), checkpoint=str(self.checkpoint))
        out["skipped"] = [{"source": s, "reason": r} for s, r in self.skipped]
        return out


@dataclass
class EvalReport:
    """``unirep eval``'s answer: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""

    accuracy: float
    macro_f1: float
    num_examples: int
    labels: list[str]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    """Rows: true class, columns: predicted class, in ``labels`` order."""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["skipped"] = [{"source": s, "reason": r} for s, r in self.skipped]
        return out
