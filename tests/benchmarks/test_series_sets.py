"""The benchmark's series sets: the smartwatch set beside aeon's is split by subject, and reaches the trainer as
class folders of CSV files that read back to the same series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from seglearn.datasets import load_watch

from benchmarks.ucr import WATCH, WATCH_TEST_SUBJECTS, load_split, write_folder


def test_the_watch_set_tests_on_subjects_it_never_trained_on() -> None:
    split = load_split(WATCH)
    raw = load_watch()
    assert (len(split.train_x), len(split.test_x)) == (98, 42)
    assert split.labels == list(raw["y_labels"]) and len(split.labels) == 7
    assert all(x.ndim == 2 and x.shape[1] == 6 for x in [*split.train_x, *split.test_x])
    assert np.bincount(split.train_y).tolist() == [14] * 7 and np.bincount(split.test_y).tolist() == [6] * 7
    subject_of = {id(x): s for x, s in zip(raw["X"], raw["subject"], strict=True)}
    by_bytes = {np.asarray(x, dtype=np.float64).tobytes(): subject_of[id(x)] for x in raw["X"]}
    train_subjects = {by_bytes[x.tobytes()] for x in split.train_x}
    test_subjects = {by_bytes[x.tobytes()] for x in split.test_x}
    assert test_subjects == set(WATCH_TEST_SUBJECTS) and not train_subjects & test_subjects


def test_the_written_folders_hold_every_series_under_its_label(tmp_path: Path) -> None:
    split = load_split(WATCH)
    root = write_folder(tmp_path / "test", split.test_x, split.test_y, split.labels)
    files = sorted(root.glob("*/*.csv"))
    assert len(files) == 42 and {f.parent.name for f in files} == set(split.labels)
    first = np.loadtxt(root / split.labels[int(split.test_y[0])] / "00000.csv", delimiter=",")
    assert first.shape == split.test_x[0].shape and np.allclose(first, split.test_x[0], rtol=1e-8)
