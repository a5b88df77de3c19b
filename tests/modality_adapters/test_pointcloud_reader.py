"""Point-cloud reading never trusts a reader that reported an error: an ASCII PLY of ``inf`` values is refused
every time (open3d returns uninitialised memory for it), declared and read counts must agree, and non-finite
points in formats that carry them faithfully are dropped, with all-non-finite refused."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from modality_adapters import get_adapter
from unirep_errors import UndecodableInputError

SMALL = {"num_points": 64, "image_size": 32}
HEAD = "ply\nformat {fmt} 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"


def ascii_ply(rows: list[str], declared: int | None = None) -> bytes:
    n = len(rows) if declared is None else declared
    return (HEAD.format(fmt="ascii", n=n) + "".join(f"{r}\n" for r in rows)).encode()


def binary_ply(points: np.ndarray) -> bytes:
    body = b"".join(struct.pack("<fff", *row) for row in points)
    return HEAD.format(fmt="binary_little_endian", n=len(points)).encode() + body


def test_all_inf_ascii_ply_is_refused_every_time() -> None:
    data = ascii_ply([f"inf {i} 1" for i in range(50)])
    adapter = get_adapter("pointcloud")
    for _ in range(3):
        with pytest.raises(UndecodableInputError, match="reader reported an error"):
            adapter.decode(data, format="ply", **SMALL)


def test_all_inf_ascii_ply_is_refused_in_a_fresh_process_too() -> None:
    code = (
        "from modality_adapters import get_adapter\n"
        "from tests.modality_adapters.test_pointcloud_reader import ascii_ply\n"
        "from unirep_errors import UndecodableInputError\n"
        "try:\n"
        "    get_adapter('pointcloud').decode(ascii_ply([f'inf {i} 1' for i in range(50)]), num_points=64)\n"
        "except UndecodableInputError:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "refused", out.stderr[-2000:]


def test_one_bad_value_in_an_ascii_ply_refuses_the_file() -> None:
    rows = [f"{i} {i % 7} {i % 3}" for i in range(60)]
    rows[45] = "inf 1 1"
    with pytest.raises(UndecodableInputError):
        get_adapter("pointcloud").decode(ascii_ply(rows), format="ply", **SMALL)


def test_declared_count_above_what_can_be_read_is_refused() -> None:
    rows = [f"{i}.000000 {i % 7}.000000 {i % 3}.000000" for i in range(40)]
    with pytest.raises(
        UndecodableInputError
    ):  # 60 declared, 40 present (the body is long enough to pass the size check)
        get_adapter("pointcloud").decode(ascii_ply(rows, declared=60), format="ply", **SMALL)


def test_good_ascii_ply_still_reads() -> None:
    rng = np.random.default_rng(0)
    rows = [" ".join(f"{v:.5f}" for v in row) for row in rng.normal(size=(80, 3))]
    assert tuple(get_adapter("pointcloud").decode(ascii_ply(rows), format="ply", **SMALL).shape) == (3, 32, 32)


def test_non_finite_points_in_binary_ply_are_dropped_and_all_non_finite_is_refused() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(size=(100, 3)).astype(np.float32)
    dirty = np.r_[points, np.full((7, 3), np.inf, dtype=np.float32)]
    adapter = get_adapter("pointcloud")
    clean = adapter.decode(binary_ply(points), format="ply", **SMALL)
    assert np.array_equal(adapter.decode(binary_ply(dirty), format="ply", **SMALL).numpy(), clean.numpy())
    for _ in range(2):
        with pytest.raises(UndecodableInputError, match="0 finite points"):
            adapter.decode(binary_ply(np.full((20, 3), np.nan, dtype=np.float32)), format="ply", **SMALL)
