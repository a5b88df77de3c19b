"""Finding the labelled examples of a data set, and holding some of them out for validation.

Three layouts are read: a folder with one subfolder per class (``DATA/<label>/<file>``, the image-folder
convention), a CSV or JSONL manifest of ``path,label`` rows (paths relative to the manifest), and for time
series a UCR/UEA ``.ts`` file whose series are carried in memory. Every problem a user can fix (no classes, one
class, a class too small to split, labels the model never saw) is a ``DatasetError`` naming what to change.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unirep_errors import DatasetError

MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Example:
    """One labelled example: a file, or (for a ``.ts`` data set) an in-memory payload the adapter decodes."""

    label: str
    path: Path | None = None
    payload: bytes | None = None
    name: str = ""

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else self.name

    def read(self) -> bytes:
        if self.payload is not None:
            return self.payload
        assert self.path is not None
        return self.path.read_bytes()


def discover(data: str | Path, modality: str) -> list[Example]:
    """Every example under ``data`` in a stable order; a ``DatasetError`` when nothing usable is there."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(f"data set not found: {path}")
    if path.is_dir():
        examples = _from_folder(path)
    elif path.suffix.lower() == ".csv":
        examples = _from_csv(path)
    elif path.suffix.lower() == ".jsonl":
        examples = _from_jsonl(path)
    elif path.suffix.lower() == ".ts":
        if modality != "timeseries":
            raise DatasetError(f"{path}: a .ts file holds time series; it cannot train the {modality} model")
        examples = _from_ts(path)
    else:
        raise DatasetError(
            f"{path}: DATA must be a folder of class subfolders, a .csv or .jsonl manifest of path,label, "
            "or (time series) a .ts file"
        )
    if not examples:
        raise DatasetError(f"{path} holds no examples: put files in one subfolder per class (DATA/<label>/<file>)")
    return examples


def _from_folder(root: Path) -> list[Example]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root} has no class subfolders: expected DATA/<label>/<file>")
    examples: list[Example] = []
    for folder in classes:
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
        examples.extend(Example(label=folder.name, path=f) for f in files)
    return examples


def _manifest_example(manifest: Path, raw_path: object, raw_label: object, where: str) -> Example:
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise DatasetError(f"{manifest} {where}: missing path")
    if raw_label is None or not str(raw_label).strip():
        raise DatasetError(f"{manifest} {where}: missing label")
    file = Path(raw_path.strip())
    if not file.is_absolute():
        file = manifest.parent / file
    return Example(label=str(raw_label).strip(), path=file)


def _from_csv(manifest: Path) -> list[Example]:
    try:
        rows = list(csv.reader(io.StringIO(manifest.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{manifest} is not a readable CSV manifest: {exc}") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    examples = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise DatasetError(f"{manifest} row {number}: expected path,label, got {row!r}")
        examples.append(_manifest_example(manifest, row[0], row[1], f"row {number}"))
    return examples


def _from_jsonl(manifest: Path) -> list[Example]:
    examples = []
    try:
        lines = manifest.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{manifest} is not UTF-8 text: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{manifest} line {number} is not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DatasetError(f'{manifest} line {number}: expected an object {{"path": ..., "label": ...}}')
        examples.append(_manifest_example(manifest, row.get("path"), row.get("label"), f"line {number}"))
    return examples


def _from_ts(path: Path) -> list[Example]:
    """Each series of a UCR/UEA file as CSV text (T rows of V columns), decoded later by the served adapter."""
    try:
        from training.tsfile import read_ts
    except ImportError:  # pragma: no cover - the reader ships with the package
        raise DatasetError(f"{path}: this installation has no .ts reader; convert the series to CSV files") from None

    series, labels = read_ts(path)
    examples = []
    for i, (values, label) in enumerate(zip(series, labels, strict=True)):
        buf = io.StringIO()
        np.savetxt(buf, np.asarray(values, dtype=np.float64).reshape(len(values), -1), delimiter=",", fmt="%.9g")
        examples.append(Example(label=str(label), payload=buf.getvalue().encode(), name=f"{path}#{i}"))
    return examples


def check_classes(examples: Sequence[Example], what: str = "training data") -> list[str]:
    """The sorted class labels; at least two classes are needed to learn anything."""
    labels = sorted({e.label for e in examples})
    if len(labels) < 2:
        only = f" (only {labels[0]!r})" if labels else ""
        raise DatasetError(f"the {what} has {len(labels)} class{only}; a classifier needs at least two")
    return labels


def stratified_split(
    examples: Sequence[Example], val_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out ``val_fraction`` of each class (at least one example), seeded; each class keeps one to train on."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"the validation fraction must be between 0 and 1, got {val_fraction}")
    by_class: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_class[example.label].append(example)
    small = sorted(label for label, items in by_class.items() if len(items) < 2)
    if small:
        raise DatasetError(
            f"class(es) {small} have a single example: holding one out for validation leaves none to train on; "
            "add examples or pass --val with a separate validation set"
        )
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    for label in sorted(by_class):
        items = list(by_class[label])
        rng.shuffle(items)
        n_val = min(len(items) - 1, max(1, round(val_fraction * len(items))))
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def check_val_labels(train_labels: Sequence[str], val: Sequence[Example]) -> None:
    """Validation labels must be classes the model learns; unknown ones are named."""
    unknown = sorted({e.label for e in val} - set(train_labels))
    if unknown:
        raise DatasetError(
            f"the validation data has class(es) {unknown} that the training data does not have "
            f"(training classes: {list(train_labels)})"
        )


def class_counts(examples: Sequence[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.label for e in examples).items()))


def fingerprint(digests: Sequence[tuple[str, str]]) -> str:
    """A hash of every (label, content SHA-256) pair, order-free, so a model names exactly the data it learned from."""
    digest = hashlib.sha256()
    for label, content in sorted(digests):
        digest.update(f"{label}\0{content}\n".encode())
    return digest.hexdigest()[:16]
