"""Browser security headers on every response the app sends (HTML, JSON, files, errors).

The page and the documentation are served by the service itself and load nothing from elsewhere, so the policy
can be strict: scripts, styles and fetches from this origin only, no framing (clickjacking), no MIME sniffing (an
uploaded file echoed back is never run as a script), no referrer sent to other sites. API answers get the
strictest policy of all (they are data, nothing in them loads anything). A route that needs more (the Swagger UI
page has one inline script, allowed by its hash) sets its own ``Content-Security-Policy`` and keeps it.

A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it only edits the response start, so streamed and
binary bodies pass through untouched. Starlette is imported only by the middleware: the scale-out worker's health
server sends the same headers without loading the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""For HTML: everything from this origin; previews are shown from ``blob:`` URLs."""
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""For everything else (JSON, images, files): loads nothing, framed by nobody."""
COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def docs_policy(script_hashes: list[str]) -> str:
    """The documentation pages' policy: their bundles' injected styles and ReDoc's blob worker, plus the inline
    scripts whose hashes are given (``sha256-...``)."""
    scripts = " ".join(["'self'", *(f"'{h}'" for h in script_hashes)])
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        from starlette.datastructures import MutableHeaders

        self.app = app
        self._headers = MutableHeaders

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = self._headers(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("content-security-policy", PAGE_POLICY if html else DATA_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
