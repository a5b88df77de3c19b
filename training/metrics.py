"""Classification metrics from predictions: confusion matrix, accuracy, macro-F1 and per-class figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.config import EvalReport


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def report(
    targets: Sequence[int],
    predictions: Sequence[int],
    labels: Sequence[str],
    skipped: list[tuple[str, str]] | None = None,
) -> EvalReport:
    """Accuracy, macro-F1 over the classes present in targets or predictions, precision/recall/F1 per class."""
    matrix = confusion_matrix(targets, predictions, len(labels))
    total = int(matrix.sum())
    correct = int(np.trace(matrix))
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, label in enumerate(labels):
        tp = float(matrix[i, i])
        predicted = float(matrix[:, i].sum())
        actual = float(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
        if actual or predicted:
            f1s.append(f1)
    return EvalReport(
        accuracy=correct / total if total else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        num_examples=total,
        labels=list(labels),
        per_class=per_class,
        confusion=matrix.tolist(),
        skipped=list(skipped or []),
    )


def format_report(rep: EvalReport) -> str:
    """The human-readable form ``unirep eval`` prints."""
    lines = [f"accuracy {rep.accuracy:.4f}  macro-F1 {rep.macro_f1:.4f}  on {rep.num_examples} examples"]
    width = max(16, *(len(label) for label in rep.labels))
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for label, row in rep.per_class.items():
        figures = f"{row['precision']:>9.3f}  {row['recall']:>6.3f}  {row['f1']:>5.3f}  {int(row['support']):>7}"
        lines.append(f"{label:<{width}}  {figures}")
    lines.extend(_confusion_lines(rep, width))
    if rep.skipped:
        lines.append(f"skipped {len(rep.skipped)} unreadable file(s):")
        lines.extend(f"  {source}: {reason}" for source, reason in rep.skipped[:5])
    return "\n".join(lines)


CONFUSION_COLUMN_WIDTH = 12
"""Column labels longer than this are cut (with a trailing ``~``) so the matrix stays one line per class."""


def _confusion_lines(rep: EvalReport, width: int) -> list[str]:
    """The confusion matrix with both axes labelled: true classes down the left, predicted classes across the top."""
    col = max(5, min(CONFUSION_COLUMN_WIDTH, max(len(label) for label in rep.labels)))

    def head(label: str) -> str:
        return label if len(label) <= col else label[: col - 1] + "~"

    lines = ["confusion (rows: true class, columns: predicted class)"]
    corner = "true / predicted"
    lines.append(f"{corner:<{width}}  " + " ".join(f"{head(label):>{col}}" for label in rep.labels))
    for label, counts in zip(rep.labels, rep.confusion, strict=True):
        lines.append(f"{label:<{width}}  " + " ".join(f"{v:>{col}}" for v in counts))
    return lines
