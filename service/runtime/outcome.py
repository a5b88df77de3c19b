"""What one answered request produces, shared by every protocol that serves it (native routes, Open Inference
Protocol): the result part of the answer and the stage timings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servable.served import ServedModel
from service.runtime.work import ItemResult


@dataclass
class Outcome:
    """One answered request: the JSON body's result part and the timings (milliseconds)."""

    result: dict[str, Any]
    preprocess_ms: float = 0.0
    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 0
    cache_hit: bool = False


def result_body(served: ServedModel, item: ItemResult) -> dict[str, Any]:
    """Labelled top-k predictions for a classification, the vector and its size for an embedding."""
    if item.scores is not None:
        return {"predictions": [{"label": served.labels[i], "index": i, "score": score} for i, score in item.scores]}
    embedding = item.embedding or []
    return {"embedding": embedding, "dim": len(embedding)}
