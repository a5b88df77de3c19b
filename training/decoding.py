"""Decoding every example once, through the adapter the service uses, in a process pool, with an on-disk cache.

What is trained is what is served: each file goes through ``get_adapter(modality).decode_for_training`` (the
served ``decode``, or for point clouds the sampled points before projection). Results are cached under a key made
of the file's SHA-256, the modality, the params and a format version, so a second run (or ``--resume``, or
``unirep eval`` on the same files) decodes nothing. A file the adapter refuses is skipped, counted and listed with
its reason; it never stops the run.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.config import MAX_WORKERS
from training.data import Example
from unirep_errors import DatasetError, UnirepError

CACHE_FORMAT = "2"
"""Bumped whenever a training cache form changes (2: audio caches the resampled waveform, not the map)."""
MIN_FILES_PER_WORKER = 32


@dataclass
class DecodedSet:
    """The decoded examples that could be read, in input order, and the ones that could not."""

    tensors: list[torch.Tensor] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    digests: list[tuple[str, str]] = field(default_factory=list)
    """(label, content SHA-256) of every example that could be read, for the data fingerprint."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(source, reason) of every example that could not be decoded."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unirep" / "decoded"


def _cache_path(cache_dir: Path, digest: str, modality: str, params: dict[str, Any], form: str) -> Path:
    blob = json.dumps([CACHE_FORMAT, modality, form, params, digest], sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}.pt"


def _store(path: Path, tensor: torch.Tensor) -> None:
    """Write atomically (temp file + rename), so a killed run never leaves a truncated cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(tensor, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def decode_one(
    modality: str, example: Example, params: dict[str, Any], form: str, cache_dir: str | None
) -> tuple[str, torch.Tensor | None, str | None]:
    """(content digest, tensor, None) or (digest, None, reason). Runs in a pool process: every error is data."""
    from modality_adapters import get_adapter

    try:
        data = example.read()
    except OSError as exc:
        return "unreadable", None, f"cannot read: {exc.strerror or exc}"
    digest = hashlib.sha256(data).hexdigest()
    path = _cache_path(Path(cache_dir), digest, modality, params, form) if cache_dir else None
    if path is not None and path.exists():
        try:
            return digest, torch.load(path, weights_only=True), None
        except Exception:  # a damaged cache entry is decoded again
            path.unlink(missing_ok=True)
    adapter = get_adapter(modality)
    try:
        decode = adapter.decode_for_training if form == "train" else adapter.decode
        tensor = decode(data, **params)
    except UnirepError as exc:
        return digest, None, exc.message
    except Exception as exc:  # a decoder library failing on a hostile file must not stop training
        return digest, None, f"{type(exc).__name__}: {exc}"
    if path is not None:
        _store(path, tensor)
    return digest, tensor, None


def decode_all(
    modality: str,
    examples: Sequence[Example],
    params: dict[str, Any],
    *,
    form: str = "train",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "decoding",
) -> DecodedSet:
    """Decode ``examples`` (``form`` "train": the training cache form; "serve": exactly the served decode)."""
    from tqdm import tqdm

    if workers is None:
        # Starting a process costs seconds (it imports torch): worth it only with dozens of files per process.
        workers = max(1, min(os.cpu_count() or 1, MAX_WORKERS, len(examples) // MIN_FILES_PER_WORKER))
    cache = str(cache_dir) if cache_dir is not None else None
    results: list[tuple[str, torch.Tensor | None, str | None]] = []
    bar = tqdm(total=len(examples), desc=desc, unit="file", disable=not progress, leave=False)
    try:
        if workers <= 1 or len(examples) < 2:
            for example in examples:
                results.append(decode_one(modality, example, params, form, cache))
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(decode_one, modality, e, params, form, cache) for e in examples]
                for example, future in zip(examples, futures, strict=True):
                    try:
                        results.append(future.result())
                    except concurrent.futures.process.BrokenProcessPool:
                        raise DatasetError(
                            f"a decoding process died near {example.source} (a file crashed its decoder library, "
                            "or memory ran out); decoded files are cached, so a rerun resumes where this stopped"
                        ) from None
                    bar.update(1)
    finally:
        bar.close()
    out = DecodedSet()
    for example, (digest, tensor, reason) in zip(examples, results, strict=True):
        if tensor is None:
            out.skipped.append((example.source, reason or "unknown error"))
            continue
        out.tensors.append(tensor)
        out.labels.append(example.label)
        out.digests.append((example.label, digest))
    return out
