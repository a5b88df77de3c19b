"""``/docs`` (Swagger UI) and ``/redoc`` with their JavaScript and CSS served by the service itself, from the
``fastapi-offline`` package's copies, so that the documentation works without internet (FastAPI's defaults load
them from a CDN). The app is created with ``docs_url=None, redoc_url=None`` and includes this router instead."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from service.http.security_headers import docs_policy
from unirep_errors import NotFoundError

ASSETS = Path(fastapi_offline.__file__).with_name("static")
ASSETS_URL = "/docs-assets"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
TITLE = "UniRepLKNet perception service"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return _with_policy(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{TITLE} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return _with_policy(
        get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{TITLE} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """The page with a Content-Security-Policy that allows exactly its own inline scripts (by hash)."""
    html = bytes(page.body).decode()
    hashes = [
        "sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        for code in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    ]
    page.headers["Content-Security-Policy"] = docs_policy(hashes)
    return page


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    path = ASSETS / name
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        raise NotFoundError(f"no documentation asset {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=86400"})
