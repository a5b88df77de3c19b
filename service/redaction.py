"""Secrets out of what operators see: URLs in log lines and the settings ``--print-settings`` prints.

Import-light on purpose (no Redis client, no torch): the CLI prints settings before anything heavy loads.
"""

from __future__ import annotations

import json
from typing import Any

_SECRET_PARAMS = ("password", "passwd", "pass", "username", "user", "auth", "token", "secret", "key")
_SECRET_FIELDS = ("password", "passwd", "secret", "token", "api_key", "credential")
HIDDEN = "***"


def redacted(url: str) -> str:
    """The URL for operators' log lines: no user name, no password, no credential in the query string.

    Handles ``redis://user:pw@host``, ``redis://:pw@host``, ``rediss://``, ``unix:///path?password=pw&db=0``
    and malformed URLs (anything after an ``@`` in the authority is kept, anything before it is dropped).
    Responses never carry even this: they say "Redis" and nothing about where it is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest, qsep, query = rest.partition("?")
    query = query.partition("#")[0]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = HIDDEN + "@" + authority.rsplit("@", 1)[1]
    params = []
    for pair in query.split("&") if query else []:
        name, eq, _value = pair.partition("=")
        secret = any(word in name.lower() for word in _SECRET_PARAMS)
        params.append(f"{name}={HIDDEN}" if secret and eq else pair)
    out = f"{scheme}{sep}{authority}{slash}{path}"
    return out + (qsep + "&".join(params) if qsep else "")


def redacted_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Settings (``model_dump(mode="json")``) with every URL's credentials and every secret-named field hidden."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict):
            out[name] = redacted_settings(value)
        elif isinstance(value, str) and value and any(word in name.lower() for word in _SECRET_FIELDS):
            out[name] = HIDDEN
        elif isinstance(value, str) and "://" in value:
            out[name] = redacted(value)
        else:
            out[name] = value
    return out


def settings_json(values: dict[str, Any]) -> str:
    return json.dumps(redacted_settings(values), indent=2)
