"""``unirep classify`` / ``unirep embed`` as a user runs them: a subprocess against a real server, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import unirep_client

from service.commands import client as cli_client
from tests.conftest import REPO_ROOT
from tests.sdk.live import LiveServer, png, write_wav


def unirep(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def images(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png(500 + i))
        paths.append(str(path))
    return paths


def test_cli_modalities_match_the_sdk() -> None:
    assert cli_client.MODALITIES == unirep_client.MODALITIES


def test_classify_json_lines_report_each_file_and_fail_the_run_on_a_bad_one(server: LiveServer, tmp_path: Path) -> None:
    good = images(tmp_path, 5)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    missing = str(tmp_path / "missing.png")
    run = unirep(
        "classify", "image", *good, str(bad), missing, "--url", server.url, "--json", "--top-k", "3",
        "--concurrency", "4",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    by_file = {line["file"]: line for line in lines}
    assert set(by_file) == {*good, str(bad), missing}
    for path in good:
        result = by_file[path]["result"]
        assert by_file[path]["ok"] is True and len(result["predictions"]) == 3
        assert result["model"] == "unireplknet_a" and result["weights"] == "random-init"
    assert by_file[str(bad)]["ok"] is False and by_file[str(bad)]["error"]["status"] in (415, 422)
    assert by_file[missing]["error"] == {
        "status": None,
        "code": "InputFileNotFoundError",
        "message": f"no such file: {missing}",
    }
    assert f"error: {bad}:" in run.stderr and f"error: {missing}:" in run.stderr
    assert "7 file(s): 5 ok, 2 failed" in run.stderr


def test_classify_table_lists_files_in_order_with_ranked_labels(server: LiveServer, tmp_path: Path) -> None:
    files = images(tmp_path, 3)
    run = unirep("classify", "image", *files, "--url", server.url, "--top-k", "2")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["FILE", "RANK", "SCORE", "LABEL"]
    assert len(lines) == 1 + 3 * 2
    first_rows = [line for line in lines[1:] if not line.startswith(" ")]
    assert [row.split()[0] for row in first_rows] == [f[-40:] if len(f) <= 40 else "..." + f[-37:] for f in files]
    assert "3 file(s): 3 ok, 0 failed; served by unireplknet_a (weights: random-init)" in run.stderr


def test_embed_reads_url_from_the_environment_and_prints_vectors(server: LiveServer, tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.npy"
    np.save(cloud, np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32))
    wav = write_wav(tmp_path / "tone.wav")
    env = {**os.environ, "UNIREP_URL": server.url}
    run = unirep("embed", "pointcloud", str(cloud), env=env)
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split()[:2] == ["FILE", "DIM"] and row.split()[1] == "320"
    run = unirep("embed", "audio", str(wav), "--json", env=env)
    (line,) = [json.loads(x) for x in run.stdout.splitlines()]
    assert run.returncode == 0 and line["ok"] and line["result"]["dim"] == len(line["result"]["embedding"]) == 320


def test_unreachable_server_fails_every_file_with_its_reason(tmp_path: Path) -> None:
    from tests.service.server import free_port

    files = images(tmp_path, 2)
    run = unirep("classify", "image", *files, "--url", f"http://127.0.0.1:{free_port()}", "--max-retries", "0")
    assert run.returncode == 1
    assert run.stdout.count("FAILED") == 2 and "APIConnectionError" in run.stdout
    assert "2 file(s): 0 ok, 2 failed" in run.stderr


def run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run ``unirep`` with stderr on a pseudo-terminal (as a user sees it, progress bar included)."""
    import fcntl
    import pty
    import struct
    import termios

    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=child
    )
    os.close(child)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    stdout = process.stdout.read().decode() if process.stdout else ""
    code = process.wait(timeout=300)
    os.close(main)
    return code, stdout, b"".join(chunks).decode(errors="replace")


def test_a_directory_is_walked_recursively_with_the_progress_bar(server: LiveServer, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "2024" / "june").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    files = [root / "a.png", root / "2024" / "b.png", root / "2024" / "june" / "c.png"]
    for seed, path in enumerate(files):
        path.write_bytes(png(700 + seed))
    (root / ".DS_Store").write_bytes(b"finder junk")
    (root / ".thumbnails" / "a.png").write_bytes(b"hidden")
    code, stdout, stderr = run_on_a_terminal("classify", "image", str(root), "--url", server.url, "--json")
    assert code == 0, stderr
    sent = [json.loads(line)["file"] for line in stdout.splitlines()]
    assert sorted(sent) == sorted(str(f) for f in files)
    assert "3/3" in stderr and "100%" in stderr  # tqdm's bar, drawn because stderr is a terminal
    assert "3 file(s): 3 ok, 0 failed" in stderr


def test_an_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    run = unirep("classify", "image", str(tmp_path), "--url", "http://127.0.0.1:9")
    assert run.returncode == 2 and "no files to send" in run.stderr


def test_labels_with_terminal_escapes_are_printed_escaped(server: LiveServer, tmp_path: Path) -> None:
    """The shared server's time-series labels hold ESC and BEL sequences (see conftest)."""
    series = tmp_path / "series.json"
    series.write_text(json.dumps(np.random.default_rng(2).normal(size=(32, 11)).tolist()))
    run = unirep("classify", "timeseries", str(series), "--url", server.url, "--top-k", "2")
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout and "\x07" not in run.stdout
    assert "\\x1b[31mred\\x1b[0m" in run.stdout and "bell\\x07\\x1b]0;retitled\\x07" in run.stdout
    raw = unirep("classify", "timeseries", str(series), "--url", server.url, "--top-k", "2", "--json")
    labels = {p["label"] for p in json.loads(raw.stdout)["result"]["predictions"]}
    assert labels == {"\x1b[31mred\x1b[0m", "bell\x07\x1b]0;retitled\x07"}  # JSON carries them exactly
