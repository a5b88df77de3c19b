"""The wire format of the Streams transport: batches to workers, results back to gateways.

A stream entry has two fields: ``meta``, a small JSON header (ids, tasks, deadlines, routing, errors), and one
binary field with the tensors as raw little-endian float32 (the stacked N x C x H x W batch; on the way back the
N x D embeddings of embed items). JSON would make an image item 5-10x larger and cost a parse per float; raw bytes
cost one copy on each side. Scores (top-k index/score pairs) are few and stay in the header.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

import unirep_errors as errors
from service.runtime.work import Batch, BatchItem, BatchResult, ItemResult
from unirep_errors import UnirepError

FORMAT_VERSION = 1
_ERRORS: dict[str, type[UnirepError]] = {}


def _collect(cls: type[UnirepError]) -> None:
    _ERRORS.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(errors.UnirepError)


@dataclass
class BatchRequest:
    """A batch as a worker reads it, with the routing the reply needs."""

    batch: Batch
    version: str
    """``ServedModel.version`` the gateway expects: a worker serving another version refuses the batch."""
    reply_to: str
    """The asking gateway's reply stream."""
    sent_at: float


def encode_batch(batch: Batch, version: str, reply_to: str) -> dict[bytes, bytes]:
    x = torch.stack([item.tensor for item in batch.items]).to(torch.float32).contiguous()
    meta = {
        "v": FORMAT_VERSION,
        "batch_id": batch.batch_id,
        "modality": batch.modality,
        "shape": list(batch.shape),
        "max_batch_size": batch.max_batch_size,
        "version": version,
        "reply_to": reply_to,
        "sent_at": time.time(),
        "items": [[i.item_id, i.task, i.top_k, i.enqueued_at, i.deadline] for i in batch.items],
    }
    return {b"meta": json.dumps(meta, separators=(",", ":")).encode(), b"x": _to_bytes(x)}


def decode_batch(fields: dict[bytes, bytes]) -> BatchRequest:
    meta = json.loads(fields[b"meta"])
    if meta.get("v") != FORMAT_VERSION:
        raise ValueError(f"stream entry format {meta.get('v')} is not {FORMAT_VERSION}: gateway and worker differ")
    shape = tuple(int(s) for s in meta["shape"])
    rows = meta["items"]
    x = _from_bytes(fields[b"x"]).reshape(len(rows), *shape)
    items = [
        BatchItem(item_id, x[i], task, int(top_k), float(enq), None if dl is None else float(dl))
        for i, (item_id, task, top_k, enq, dl) in enumerate(rows)
    ]
    batch = Batch(meta["modality"], shape, items, int(meta["max_batch_size"]), batch_id=meta["batch_id"])
    return BatchRequest(batch, meta["version"], meta["reply_to"], float(meta["sent_at"]))


def encode_result(result: BatchResult, worker_id: str) -> dict[bytes, bytes]:
    rows: list[dict[str, Any]] = []
    embeddings: list[list[float]] = []
    for item in result.items:
        row: dict[str, Any] = {"id": item.item_id}
        if item.error is not None:
            row["error"] = {"code": item.error.code, "message": item.error.message, "details": item.error.details}
        elif item.embedding is not None:
            row["emb"] = len(embeddings)
            embeddings.append(item.embedding)
        else:
            row["scores"] = item.scores or []
        rows.append(row)
    meta = {
        "v": FORMAT_VERSION,
        "batch_id": result.batch_id,
        "device": result.device,
        "worker": worker_id,
        "started_at": result.started_at,
        "inference_s": result.inference_s,
        "batch_size": result.batch_size,
        "items": rows,
    }
    fields = {b"meta": json.dumps(meta, separators=(",", ":"), default=str).encode()}
    if embeddings:
        fields[b"emb"] = _to_bytes(torch.tensor(embeddings, dtype=torch.float32))
    return fields


def encode_failure(batch_id: str, error: UnirepError, worker_id: str, item_ids: list[str]) -> dict[bytes, bytes]:
    """A reply failing every item of a batch the worker could not run at all (version mismatch, bad entry)."""
    items = [ItemResult(i, error=error) for i in item_ids]
    return encode_result(BatchResult(batch_id, worker_id, time.time(), 0.0, 0, items), worker_id)


def decode_result(fields: dict[bytes, bytes]) -> tuple[BatchResult, str]:
    """The result and the id of the worker that produced it."""
    meta = json.loads(fields[b"meta"])
    emb: torch.Tensor | None = None
    if b"emb" in fields:
        count = sum(1 for r in meta["items"] if "emb" in r)
        emb = _from_bytes(fields[b"emb"]).reshape(count, -1)
    items: list[ItemResult] = []
    for row in meta["items"]:
        if "error" in row:
            err = row["error"]
            cls = _ERRORS.get(err["code"], UnirepError)
            items.append(ItemResult(row["id"], error=cls(err["message"], **(err.get("details") or {}))))
        elif "emb" in row:
            assert emb is not None
            items.append(ItemResult(row["id"], embedding=emb[int(row["emb"])].tolist()))
        else:
            items.append(ItemResult(row["id"], scores=[(int(i), float(s)) for i, s in row["scores"]]))
    result = BatchResult(
        meta["batch_id"],
        meta["device"],
        float(meta["started_at"]),
        float(meta["inference_s"]),
        int(meta["batch_size"]),
        items,
    )
    return result, str(meta.get("worker", ""))


def pack_requests(
    requests: list[tuple[str, bytes, BatchRequest]], max_batch_size: dict[str, int]
) -> list[list[tuple[str, bytes, BatchRequest]]]:
    """Batches of one bucket (as read by a stream worker, with their stream and entry id) packed whole into forward
    passes of at most the model's ``max_batch_size``: gateways form batches, a stream worker only packs them."""
    buckets: dict[tuple[str, tuple[int, ...]], list[list[tuple[str, bytes, BatchRequest]]]] = defaultdict(list)
    for entry in requests:
        batch = entry[2].batch
        groups = buckets[(batch.modality, tuple(batch.shape))]
        limit = max_batch_size[batch.modality]
        if groups and sum(len(e[2].batch.items) for e in groups[-1]) + len(batch.items) <= limit:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    return [group for groups in buckets.values() for group in groups]


def _to_bytes(x: torch.Tensor) -> bytes:
    data = x.contiguous().numpy().tobytes()
    if sys.byteorder != "little":  # pragma: no cover - every supported host is little-endian
        data = x.contiguous().numpy().byteswap().tobytes()
    return data


def _from_bytes(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.float32)
