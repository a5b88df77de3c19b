"""Text helpers of the time-series adapter: numbers and timestamps in CSV/JSON cells, and the ``timeF`` features."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from unirep_errors import UndecodableInputError

__all__ = ["find_stamp_column", "is_number", "maybe_stamp", "parse_stamp", "time_features"]

_TIMESTAMP_NAMES = {"timestamp", "time", "date", "datetime", "ds"}


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def maybe_stamp(cell: str) -> bool:
    try:
        datetime.fromisoformat(cell.strip())
    except ValueError:
        return False
    return True


def find_stamp_column(row: list[str], header: list[str] | None) -> int | None:
    """The timestamp column: one named like a time, or the first whose cell is an ISO date and not a number."""
    if header is not None:
        for j, name in enumerate(header):
            if name.lower() in _TIMESTAMP_NAMES:
                return j
    for j, cell in enumerate(row):
        if not is_number(cell) and maybe_stamp(cell):
            return j
    return None


def parse_stamp(value: Any, what: str) -> datetime:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.strip())  # the common case first
    try:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a time")
        if isinstance(value, int | float):
            if not math.isfinite(value):
                raise ValueError("not finite")
            return datetime.fromtimestamp(float(value), tz=UTC)
        if isinstance(value, str) and is_number(value):
            return parse_stamp(float(value), what)  # a named timestamp column may hold Unix seconds
        if isinstance(value, str):
            return datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError, OSError) as exc:
        raise UndecodableInputError(f"{what} {str(value)[:40]!r} is not a valid time: {exc}") from exc
    raise UndecodableInputError(f"{what} must be an ISO 8601 string or Unix seconds, got {type(value).__name__}")


def time_features(stamps: list[datetime], freq: str) -> np.ndarray:
    """The official ``timeF`` features (Time-Series-Library ``time_features``), each scaled to [-0.5, 0.5]."""
    cols: dict[str, list[float]] = {"s": [], "t": [], "h": [], "dow": [], "dom": [], "doy": []}
    for s in stamps:
        cols["s"].append(s.second / 59.0 - 0.5)
        cols["t"].append(s.minute / 59.0 - 0.5)
        cols["h"].append(s.hour / 23.0 - 0.5)
        cols["dow"].append(s.weekday() / 6.0 - 0.5)
        cols["dom"].append((s.day - 1) / 30.0 - 0.5)
        cols["doy"].append((s.timetuple().tm_yday - 1) / 365.0 - 0.5)
    order = {"s": ["s", "t", "h"], "t": ["t", "h"], "h": ["h"], "d": []}[freq] + ["dow", "dom", "doy"]
    return np.asarray([cols[k] for k in order], dtype=np.float64).T.reshape(len(stamps), len(order))
