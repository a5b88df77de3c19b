"""Suite-wide settings: nothing may reach a model hub, and paths to the shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"
