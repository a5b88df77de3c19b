"""Parsing and checking of setting values whose form is more than a type: Redis URLs and proxy networks.

Kept beside the settings class so that a malformed value is one line at start (with any password redacted), not a
traceback from the client that would have used it.
"""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any
from urllib.parse import urlsplit

from service.redaction import redacted


def checked_redis_url(value: str | None) -> str | None:
    """``value`` when the Redis client can connect with it (None when unset); a ValueError naming the problem."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{redacted(value)!r} is malformed: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{redacted(value)!r} must start with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{redacted(value)!r} names no host (redis://HOST:6379/0)")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ValueError(f"{redacted(value)!r}: the database after the host must be a number")
    del port
    return value


def networks(value: Any) -> Any:
    """CIDRs from a comma-separated string or a list, host bits allowed; other values are left for pydantic."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [ip_network(str(part).strip(), strict=False) for part in value]
    return value
