"""The generated benchmark sets are the same files every time their seed is the same: a figure measured on them
can be repeated, and two configs compared on them see the same clips. Runs on them read every frame of a clip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

import benchmarks.generated_data as gen
from benchmarks.generated_dev import train_params
from modality_adapters import get_adapter


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.mp4"))}


def test_generated_clips_repeat_byte_for_byte(tmp_path: Path) -> None:
    made = []
    for k in range(3):
        gen.make_motion_videos(tmp_path / str(k), train_per_class=3, test_per_class=1, seed=12)
        made.append(_digests(tmp_path / str(k)))
    assert len(made[0]) == 4 * len(gen.MOTIONS)
    for other in made[1:]:
        differing = [name for name in made[0] if made[0][name] != other[name]]
        assert not differing, f"the same seed encoded differently: {differing}"


def test_another_seed_makes_other_clips(tmp_path: Path) -> None:
    gen.make_motion_videos(tmp_path / "a", train_per_class=1, test_per_class=1, seed=12)
    gen.make_motion_videos(tmp_path / "b", train_per_class=1, test_per_class=1, seed=13)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert all(a[name] != b[name] for name in a)


def test_the_data_params_read_every_frame_of_a_generated_clip(tmp_path: Path) -> None:
    gen.make_motion_videos(tmp_path, train_per_class=1, test_per_class=0, seed=12)
    data = (tmp_path / "train" / "right" / "0.mp4").read_bytes()
    params = {**gen.DATA_PARAMS["video"], "frame_size": 32, "layout": "channels"}
    frames = get_adapter("video").decode(data, **params).reshape(16, 3, 32, 32)
    repeated = [k for k in range(15) if torch.equal(frames[k], frames[k + 1])]
    assert not repeated, f"frames read twice: {repeated}"  # the served sampling_rate of 4 reads the last one 12 times


def test_dev_runs_train_with_the_data_params_under_their_own() -> None:
    assert train_params("motion", []) == gen.DATA_PARAMS["video"]
    assert train_params("appearance", ["frame_size=64", "sampling_rate=2"]) == {
        **gen.DATA_PARAMS["video"],
        "frame_size": 64,
        "sampling_rate": 2,
    }
    assert train_params("shapes", ["splat=0"]) == {"splat": 0}
