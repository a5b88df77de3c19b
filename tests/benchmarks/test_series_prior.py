"""The generated corpus of the series prior: repeatable, 24 classes, told apart by shape and time scale only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.series_prior import FAMILIES, make_series, write_corpus


def test_the_corpus_is_the_same_bytes_every_time_it_is_made(tmp_path: Path) -> None:
    assert write_corpus(tmp_path / "a", 3) == FAMILIES * 2 * 3
    write_corpus(tmp_path / "b", 3)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").glob("*/*.csv"))
    assert len(files) == 72 and len({f.parent for f in files}) == 24
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    lengths = [len(np.loadtxt(tmp_path / "a" / f)) for f in files]
    assert min(lengths) >= 128 and max(lengths) < 1024


def _dominant_cycles(x: np.ndarray) -> int:
    t = np.arange(len(x))
    residual = x - np.polyval(np.polyfit(t, x, 1), t)  # the random drift removed
    return int(np.abs(np.fft.rfft(residual))[1:].argmax()) + 1


def test_slow_and_fast_sines_differ_in_time_scale_and_not_in_level() -> None:
    rng = np.random.default_rng(5)
    slow = [make_series(0, False, rng) for _ in range(20)]
    fast = [make_series(0, True, rng) for _ in range(20)]
    assert max(_dominant_cycles(x) for x in slow) <= 6 and min(_dominant_cycles(x) for x in fast) >= 11
    slow_levels, fast_levels = [x.mean() for x in slow], [x.mean() for x in fast]
    assert min(slow_levels) < np.median(fast_levels) < max(slow_levels)  # the level says nothing of the class
