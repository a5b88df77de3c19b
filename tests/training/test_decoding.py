"""Decoding once: a pool of processes gives what inline decoding gives, the cache is filled and reused, and a
file the adapter refuses is reported, not raised."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.training.helpers import SMALL, make_dataset
from training.data import Example, discover
from training.decoding import decode_all


def test_pool_matches_inline_and_the_cache_is_reused(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", "image", per_class=2)
    (data / "red" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    examples = discover(data, "image")
    params = SMALL["image"]
    inline = decode_all("image", examples, params, cache_dir=None, workers=1, progress=False)
    cache = tmp_path / "cache"
    pooled = decode_all("image", examples, params, cache_dir=cache, workers=2, progress=False)
    assert pooled.labels == inline.labels == ["blue", "blue", "red", "red"]
    for a, b in zip(pooled.tensors, inline.tensors, strict=True):
        assert a.shape == (3, 32, 32)
        torch.testing.assert_close(a, b)
    assert [Path(s).name for s, _ in pooled.skipped] == ["bad.png"] and pooled.skipped[0][1]
    entries = sorted(cache.rglob("*.pt"))
    assert len(entries) == 4
    stamps = [p.stat().st_mtime_ns for p in entries]
    again = decode_all("image", examples, params, cache_dir=cache, workers=1, progress=False)
    assert [p.stat().st_mtime_ns for p in sorted(cache.rglob("*.pt"))] == stamps
    assert pooled.digests == again.digests
    other = decode_all("image", examples[:1], {**params, "input_size": 16}, cache_dir=cache, workers=1)
    assert other.tensors[0].shape == (3, 16, 16) and len(list(cache.rglob("*.pt"))) == 5


def test_unreadable_paths_and_in_memory_payloads(tmp_path: Path) -> None:
    examples = [
        Example(label="a", path=tmp_path / "missing.csv"),
        Example(label="b", payload=b"x,y\n1,2\n3,4\n5,6\n", name="memory#0"),
    ]
    out = decode_all(
        "timeseries",
        examples,
        {"representation": "embedding", "num_vars": 2, "seq_len": 3, "d_model": 8},
        workers=1,
        progress=False,
    )
    assert out.labels == ["b"] and out.tensors[0].shape == (1, 3, 6)
    assert out.skipped[0][0].endswith("missing.csv") and "cannot read" in out.skipped[0][1]
