"""The two pictures a training run leaves: the validation confusion matrix and the loss/accuracy curves.

Drawn with Pillow (already a dependency) so that training needs no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

_COLORS = {
    "train_loss": (31, 119, 180),
    "val_loss": (255, 127, 14),
    "train_acc": (44, 160, 44),
    "val_acc": (214, 39, 40),
}


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path) -> None:
    """Rows true, columns predicted; cell shade is the row-normalized count, the count is printed in it."""
    n = len(labels)
    cell = max(24, min(64, 640 // max(n, 1)))
    margin = 12 + 7 * min(24, max(len(str(label)) for label in labels))
    size = (margin + n * cell + 20, margin + n * cell + 40)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((margin, 4), "confusion (rows: true, columns: predicted)", fill="black", font=font)
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        short = str(labels[i])[:24]
        draw.text((4, margin + i * cell + cell // 2 - 5), short, fill="black", font=font)
        draw.text((margin + i * cell + 2, margin - 14), short[: max(1, cell // 7)], fill="black", font=font)
        for j, count in enumerate(row):
            shade = int(255 * (1 - count / total))
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255), outline=(200, 200, 200))
            draw.text((box[0] + 4, box[1] + cell // 2 - 5), str(count), fill="black" if shade > 100 else "white")
    image.save(path, format="PNG")


def curves_png(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss (left) and accuracy (right) per epoch for the training and validation sets."""
    width, height, pad = 360, 260, 36
    image = Image.new("RGB", (2 * width, height + 30), "white")
    draw = ImageDraw.Draw(image)
    panels = (("loss", ("train_loss", "val_loss")), ("accuracy", ("train_acc", "val_acc")))
    for p, (title, keys) in enumerate(panels):
        x0 = p * width
        values = [float(e[k]) for e in history for k in keys if e.get(k) is not None]
        lo, hi = (0.0, 1.0) if title == "accuracy" else (0.0, max(values, default=1.0) or 1.0)
        box = (x0 + pad, 20, x0 + width - 10, height - pad)
        draw.rectangle(box, outline="black")
        draw.text((x0 + pad, 4), f"{title} (y {lo:.2f}..{hi:.2f}) by epoch", fill="black")
        for k_i, key in enumerate(keys):
            points = []
            for i, entry in enumerate(history):
                if entry.get(key) is None:
                    continue
                x = box[0] + (box[2] - box[0]) * (i / max(1, len(history) - 1))
                y = box[3] - (box[3] - box[1]) * ((float(entry[key]) - lo) / (hi - lo))
                points.append((x, y))
            color = _COLORS[key]
            if len(points) > 1:
                draw.line(points, fill=color, width=2)
            for x, y in points:
                draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=color)
            draw.text((x0 + pad + 110 * k_i, height - pad + 8), key, fill=color)
    image.save(path, format="PNG")
