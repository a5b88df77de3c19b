"""``POST /preview/{modality}`` and the web page at ``/``, the page driven in a real headless Chromium (the system's,
through Playwright): a real file of every modality uploaded, its top-k bars and preview rendered, screenshots kept
as test artifacts; an undecodable file shows the service's own message."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.settings import MODALITIES
from tests.service import media
from tests.service.server import Server, running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LIMIT = 2 * 2**20
TOP_K = {"image": 5, "audio": 5, "video": 5, "pointcloud": 5, "timeseries": 2}


def csv_series(seed: int = 0, steps: int = 24) -> tuple[str, bytes]:
    values = np.random.default_rng(seed).normal(size=(steps, 2)).round(4)
    rows = ["time,load,temperature"]
    rows += [f"2024-01-01T{h:02d}:00:00,{a},{b}" for h, (a, b) in enumerate(values)]
    return "series.csv", ("\n".join(rows) + "\n").encode()


UPLOADS = {
    "image": media.jpeg,
    "audio": media.wav,
    "video": media.mp4,
    "pointcloud": media.ply,
    "timeseries": csv_series,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("page"), {"UNIREP_MAX_BODY_BYTES": str(LIMIT)}) as srv:
        yield srv


@pytest.mark.parametrize("modality", MODALITIES)
def test_preview_is_the_png_the_model_sees(server: Server, modality: str) -> None:
    name, data = UPLOADS[modality](5)
    with server.client() as client:
        response = client.post(f"/preview/{modality}", files={"file": (name, data)})
        raw = client.post(f"/preview/{modality}", content=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and min(image.size) >= 32
    if modality != "pointcloud":  # the raw body carries no file name; a PLY is sniffed the same way
        assert raw.status_code == 200 and raw.content == response.content
    with server.client() as client:
        inline = client.post(f"/classify/{modality}?preview=true&top_k=1", files={"file": (name, data)})
    assert inline.status_code == 200, inline.text
    assert base64.b64decode(inline.json()["preview_png"]) == response.content
    assert len(inline.json()["predictions"]) == 1


def test_preview_errors_use_the_envelope(server: Server) -> None:
    with server.client() as client:
        bad = client.post("/preview/image", files={"file": ("x.jpg", b"not an image")})
        unknown = client.post("/preview/hologram", content=b"x")
        big = client.post("/preview/image", files={"file": ("big.jpg", b"x" * (LIMIT + 1))})
    assert bad.status_code in (415, 422) and bad.json()["error"]["message"]
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert big.status_code == 413


def test_page_and_its_files_are_served_locally(server: Server) -> None:
    with server.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for ref in ("/static/page.js", "/static/page.css"):
            assert ref in page.text
            assert client.get(ref).status_code == 200
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
        assert client.get("/static/..%2Fpage.py").status_code == 404


def test_every_response_carries_security_headers(server: Server) -> None:
    with server.client() as client:
        answers = {
            "page": client.get("/"),
            "script": client.get("/static/page.js"),
            "docs": client.get("/docs"),
            "redoc": client.get("/redoc"),
            "models": client.get("/models"),
            "openapi": client.get("/openapi.json"),
            "not found": client.get("/static/nothing.js"),
            "error": client.post("/classify/image", content=b"not an image"),
            "v2": client.get("/v2/models/image"),
        }
    for name, response in answers.items():
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer", name
        assert "frame-ancestors 'none'" in headers["content-security-policy"], name
    assert "script-src 'self';" in answers["page"].headers["content-security-policy"]
    assert answers["models"].headers["content-security-policy"].startswith("default-src 'none'")
    assert "'sha256-" in answers["docs"].headers["content-security-policy"]  # its one inline script, by hash


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no system chromium (apt-get install chromium)")
    with playwright_sync.sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chrome
        chrome.close()


def csp_violations(page: Any) -> list[str]:
    """Console messages in which Chromium reports something the page's Content-Security-Policy blocked."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


def upload(page: Any, name: str, data: bytes) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])


@pytest.mark.parametrize("modality", MODALITIES)
def test_page_classifies_every_modality(server: Server, browser: Any, modality: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    blocked = csp_violations(page)
    page.goto(server.url + "/")
    page.wait_for_selector(f"#modality option[value={modality}]", state="attached")
    name, data = UPLOADS[modality](7)
    upload(page, name, data)
    assert page.input_value("#modality") == modality  # guessed from the file
    page.click("#run")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0", timeout=30_000)
    labels = page.locator("#predictions li .label").all_inner_texts()
    scores = [float(s) for s in page.locator("#predictions li .score").all_inner_texts()]
    assert len(labels) == TOP_K[modality] and scores == sorted(scores, reverse=True)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        native = client.post(f"/classify/{modality}?top_k={TOP_K[modality]}", files={"file": (name, data)}).json()
    assert labels == [f"{p['label']} (#{p['index']})" for p in native["predictions"]]
    assert page.is_visible("#random-warning")  # the test server runs random weights, and the page says so
    assert "random-init" in page.inner_text("#weights")
    assert "inference" in page.inner_text("#timings")
    page.screenshot(path=str(tmp_path / f"page-{modality}.png"), full_page=True)
    assert (tmp_path / f"page-{modality}.png").stat().st_size > 10_000
    bars = page.locator("#predictions li .bar span").evaluate_all("spans => spans.map(s => s.style.width)")
    assert all(width.endswith("%") for width in bars) and len(bars) == TOP_K[modality]
    # The policy is enforced: a script injected into the page does not run.
    injected = "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
    assert page.evaluate(injected + " document.body.appendChild(s); return window.ran === 1; }") is False
    assert len(blocked) == 1, blocked  # that script, and nothing the page itself does
    page.close()


def test_page_shows_the_service_message_for_an_undecodable_file(server: Server, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#modality option[value=image]", state="attached")
    upload(page, "broken.png", b"\x89PNG\r\n\x1a\n this is not really a picture")
    page.keyboard.press("Tab")  # the form is usable from the keyboard
    page.focus("#run")
    page.keyboard.press("Enter")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        native = client.post(
            "/classify/image", files={"file": ("broken.png", b"\x89PNG\r\n\x1a\n this is not really a picture")}
        )
    assert page.inner_text("#error") == native.json()["error"]["message"]
    assert page.is_hidden("#result")
    page.screenshot(path=str(tmp_path / "page-error.png"))
    page.close()


def test_docs_and_redoc_render_from_local_assets(server: Server, browser: Any) -> None:
    with server.client() as client:
        for path in ("/docs", "/redoc"):
            html = client.get(path).text
            assert "cdn" not in html.lower() and "fonts.googleapis" not in html
            for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/redoc.standalone.js"):
                if asset in html:
                    assert client.get(asset).status_code == 200
    page = browser.new_page()
    blocked = csp_violations(page)
    outside: list[str] = []
    # Everything the docs need comes from the service; ReDoc's own "powered by" logo image is the one outside
    # request left (its rendering does not depend on it).
    code = ("script", "stylesheet", "font", "fetch", "xhr", "document")
    page.on(
        "request",
        lambda r: (
            outside.append(r.url)
            if r.resource_type in code and not r.url.startswith((server.url, "blob:", "data:"))
            else None
        ),
    )
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert page.locator(".swagger-ui a[href='/']").count() >= 1  # the docs link to the page
    page.goto(server.url + "/redoc")
    page.wait_for_selector(".redoc-wrap", timeout=30_000)
    page.locator("h2", has_text="Classify one input").first.wait_for(timeout=30_000)
    page.close()
    assert outside == []
    # The documentation works under its Content-Security-Policy, which now also blocks ReDoc's outside logo.
    assert all("Loading the image 'https://cdn.redoc.ly/" in message for message in blocked), blocked
