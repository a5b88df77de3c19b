"""The service's own web page at ``/``: static files shipped in ``service/http/static`` (no build step, nothing
from a CDN), served from the package so that the page works offline. The page calls ``/models``, ``/classify``
and ``/preview`` like any other client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from unirep_errors import NotFoundError

STATIC_DIR = Path(__file__).with_name("static")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    """A file of the page; only plain names from the static folder (no paths)."""
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        raise NotFoundError(f"no static file {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
