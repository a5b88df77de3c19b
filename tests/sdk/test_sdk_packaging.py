"""The SDK stands alone: it imports no server code or heavy library, and its wheel carries only itself."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SDK_ROOT = REPO_ROOT / "sdk"
FORBIDDEN = ("torch", "fastapi", "redis", "numpy", "PIL", "models", "modality_adapters", "service", "uvicorn")


def test_import_in_a_fresh_interpreter_leaves_heavy_and_server_modules_out() -> None:
    code = (
        "import json, sys\n"
        "import unirep_client\n"
        "from unirep_client import AsyncClient, Client\n"
        "Client('http://127.0.0.1:9').close()\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(FORBIDDEN)!r}))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SDK_ROOT, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_sdk_source_imports_only_stdlib_httpx_and_pydantic() -> None:
    allowed = {"httpx", "pydantic", "__future__"} | set(sys.stdlib_module_names)
    for path in sorted((SDK_ROOT / "unirep_client").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


@pytest.mark.slow
def test_wheel_builds_from_sdk_alone_and_imports_outside_the_repo(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=SDK_ROOT,
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("unirep_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        archive.extractall(tmp_path / "site")
    assert all(n.startswith(("unirep_client/", "unirep_client-")) for n in names)
    assert "unirep_client/py.typed" in names
    requires = sorted(
        line.split(":", 1)[1].split(">")[0].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    )
    assert requires == ["httpx", "pydantic"]
    code = "import sys, unirep_client; print(unirep_client.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); {code}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip().startswith(str(tmp_path / "site"))
