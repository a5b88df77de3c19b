"""Error text as a client may see it: decoder libraries put object reprs with heap addresses, their build paths,
timestamps and exception class names into their messages, which say nothing useful to a user and something
about the server to an attacker. Every error message and string detail passes through ``public_message`` on its
way into the envelope; the full text stays in the server's debug log where it was raised.
"""

from __future__ import annotations

import re
from typing import Any

_REPLACEMENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"<[^<>]{0,200}? at 0x[0-9a-fA-F]+>"), "the upload"),  # <_io.BytesIO object at 0x7f...>
    (re.compile(r"\b0x[0-9a-fA-F]{8,}\b"), "an address"),
    (re.compile(r"\[?\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?\s*"), ""),  # 2026-11-30 05:59:26.1
    (re.compile(r"\[\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]\s*"), ""),  # [05:59:26]
    (re.compile(r"(?<![\w/.])(?:/[\w.+~-]+){2,}(?::\d+)*:?"), ""),  # /build/src/video_reader.cc:83:
    (re.compile(r"\b(?:[A-Z][a-zA-Z]+(?:Error|Exception|Warning)|error)\s*:\s+"), ""),  # "OverflowError: "
    (re.compile(r"\b(?:redis|rediss|unix)://\S+"), "the configured Redis"),
)


def public_message(text: str) -> str:
    out = text
    for pattern, replacement in _REPLACEMENTS:
        out = pattern.sub(replacement, out)
    out = re.sub(r"\s{2,}", " ", out).strip(" :")
    return out or "the request failed"


def public_details(details: dict[str, Any]) -> dict[str, Any]:
    return {k: public_message(v) if isinstance(v, str) else v for k, v in details.items()}
