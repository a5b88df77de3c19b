"""Suite-wide settings: nothing may reach a model hub, and paths to the shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
SHARED_REFERENCE = Path(os.environ.get("REFERENCE_DATA_DIR") or REPO_ROOT.parent / "shared" / "reference")
"""Outputs of the official implementation that the model tests compare against; not part of the repository
(it sits beside the checkout in CI). Elsewhere, point ``REFERENCE_DATA_DIR`` at a copy, or those tests skip."""


def pytest_report_header() -> str:
    """Said at the top of every run, so that a clone without the reference data knows why tests skip."""
    if SHARED_REFERENCE.is_dir():
        return f"reference data: {SHARED_REFERENCE}"
    return (
        f"reference data: NOT FOUND at {SHARED_REFERENCE}; the tests comparing against the official "
        "implementation will skip (set REFERENCE_DATA_DIR to a copy of shared/reference to run them)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Torch in pytest's own process runs one intra-op thread, set before each test's fixtures (a module's shared
    training run among them). Its networks here are tiny (16-32 pixel maps, batches of four) and share two cores
    with the servers the tests start, so it waits passively; then a second thread makes each step about twice as
    slow, not faster: every small operation waits for a sleeping thread to wake
    (``benchmarks/train_step_threads.py``: 16 x 16 maps, batches of four). Services started by the tests choose
    their own threads."""
    import torch

    torch.set_num_threads(1)
