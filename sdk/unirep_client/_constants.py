"""Defaults of the SDK, named once so that docs, tests and callers agree on them."""

from __future__ import annotations

import re
from typing import Final, Literal

VERSION: Final = "0.1.0"

BASE_URL_ENV: Final = "UNIREP_URL"
API_KEY_ENV: Final = "UNIREP_API_KEY"
DEFAULT_BASE_URL: Final = "http://127.0.0.1:8000"

DEFAULT_TIMEOUT: Final = 60.0
"""Seconds for one HTTP attempt. Long enough for a cold CPU server decoding a video; a deadline can be shorter."""
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_MAX_RETRIES: Final = 2

INITIAL_RETRY_DELAY: Final = 0.5
MAX_RETRY_DELAY: Final = 8.0
RETRY_JITTER: Final = 0.25
"""Fraction of the backoff removed at random, so that clients rejected together do not come back together."""
MAX_RETRY_AFTER: Final = 60.0
"""A server asking us to wait longer than this is treated as 'do not retry': the caller should decide."""
RETRY_STATUSES: Final = frozenset({429, 502, 503})
"""Overload (429), a proxy whose upstream restarts (502), not ready or draining (503). Never 504: the deadline
is gone, and a retry would spend the same budget again."""

DEADLINE_HEADER: Final = "X-Request-Timeout-Ms"
DEADLINE_GRACE: Final = 1.0
"""Seconds the HTTP timeout outlives a deadline, so the server's 504 (with its reason) arrives before we give up."""

KnownModality = Literal["image", "audio", "video", "pointcloud", "timeseries"]
Modality = KnownModality | str
"""A modality the server serves: the five built-in ones, or any a server registers (``unirep serve --adapters``)."""
MODALITIES: Final[tuple[KnownModality, ...]] = ("image", "audio", "video", "pointcloud", "timeseries")
"""The built-in modalities; a server may serve more (``Client.models()`` lists them)."""
MODALITY_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
