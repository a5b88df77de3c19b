"""The dev-split comparison without training UniRepLKNet: the baselines and the FCN on a named map, one row each,
the map being the one the named recipe trains on."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pytest

from benchmarks.ts_dev_split import parse_args, run_fold
from tests.benchmarks.test_ts_fcn import _split


def _args(monkeypatch: pytest.MonkeyPatch, *argv: str) -> argparse.Namespace:
    monkeypatch.setattr(sys, "argv", ["ts_dev_split.py", *argv])
    return parse_args()


def test_map_fcn_without_training_reports_one_row_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args(monkeypatch, "--configs", "wide_paa", "--map-fcn", "30", "--no-train", "--param", "time_steps=32")
    rows: list[dict[str, Any]] = []
    run_fold(_split(1), {"set": "waves", "fold": 0}, {"time_steps": 32}, args, rows)
    assert len(rows) == 1
    row = rows[0]
    assert row["config"] == "wide_paa" and row["dev_fit"] == 24 and row["dev_val"] == 20
    assert row["map_fcn"] >= 0.9
    assert "dev_val_last" not in row  # nothing trained


def test_map_fcn_refuses_the_search_config(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        _args(monkeypatch, "--configs", "search", "--map-fcn")
