"""``auto`` measures: the candidates are timed by the real interleaved timing code (fakes that sleep known times
stand in for backends), the fastest wins, a candidate that cannot serve is skipped with its reason, and the choice
is remembered per host and model so the next load builds only that backend; a damaged or foreign remembered file
is ignored. One real small model ends, through ``build_runner("auto")``, on a backend that matches eager."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from service.runtime.backends import SPECS, BackendError, BuildRequest, ExportCache, Runner, build_runner
from service.runtime.backends.auto_choice import choose_auto, start_auto
from service.runtime.backends.base import BackendSpec
from service.runtime.backends.remembered import REMEMBERED
from service.runtime.backends.torch_backend import TorchRunner
from tests.service.test_backends import request_for, served_model

SPEEDS = {"slow": 0.012, "fast": 0.002, "middle": 0.006}
"""Seconds per run of each fake backend: far enough apart that a loaded host does not reorder them."""


class SleepRunner(Runner):
    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self.runs = 0

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.runs += 1
        time.sleep(self.seconds)
        return x, x


class FakeSpec(BackendSpec):
    devices = ("cpu",)

    def __init__(self, name: str, installed: bool = True, version: str = "1.0") -> None:
        self.name, self.installed, self._version = name, installed, version

    def unavailable_reason(self, device_type: str) -> str | None:
        return None if self.installed else f"{self.name} is not installed"

    def version(self) -> str:
        return self._version

    def build(self, request: BuildRequest, cache: ExportCache) -> Runner:
        raise AssertionError("the tests build through their own counting builder")


class Builder:
    """Builds fake runners, counting builds per backend; names in ``failing`` fail their check."""

    def __init__(self, failing: dict[str, str] | None = None) -> None:
        self.built: Counter[str] = Counter()
        self.failing = failing or {}

    def __call__(self, name: str) -> Runner:
        self.built[name] += 1
        if name in self.failing:
            raise BackendError(self.failing[name])
        return SleepRunner(name, SPEEDS[name])


def request(digest: str = "w1") -> BuildRequest:
    return BuildRequest(torch.nn.Identity(), (3, 8, 8), torch.device("cpu"), 4, 1, None, digest)


def specs(**versions: str) -> dict[str, BackendSpec]:
    return {name: FakeSpec(name, version=versions.get(name, "1.0")) for name in SPEEDS}


def choose(root: Path, builder: Builder, **kw: object) -> tuple[Runner, str, str]:
    spec_table = kw.pop("specs", None) or specs()
    return choose_auto(
        kw.pop("request", None) or request(),  # type: ignore[arg-type]
        root,
        list(SPEEDS),
        spec_table,  # type: ignore[arg-type]
        builder,
        budget_s=0.2,
        **kw,  # type: ignore[arg-type]
    )


def test_the_fastest_candidate_wins_and_the_medians_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    builder = Builder()
    with caplog.at_level(logging.INFO, logger="service.runtime.backends.auto_choice"):
        runner, name, note = choose(tmp_path, builder)
    assert name == "fast" and runner.name == "fast"
    assert builder.built == Counter(slow=1, fast=1, middle=1)
    (line,) = [r.getMessage() for r in caplog.records if "chose" in r.getMessage()]
    assert line.endswith("chose fast") and all(f"{n} " in line for n in SPEEDS)
    assert "fastest of median" in note and all(n in note for n in SPEEDS)
    measured = {n: float(line.split(f"{n} ")[1].split(" ms")[0]) for n in SPEEDS}
    assert measured["fast"] < measured["middle"] < measured["slow"]
    assert measured["slow"] >= SPEEDS["slow"] * 1000  # a sleep never returns early: the timing is real


def test_a_candidate_that_fails_its_check_or_is_not_installed_is_skipped_with_its_reason(tmp_path: Path) -> None:
    builder = Builder(failing={"fast": "backend fast disagrees with the eager deploy form"})
    table = {**specs(), "slow": FakeSpec("slow", installed=False)}
    runner, name, note = choose(tmp_path, builder, specs=table)
    assert name == "middle" and runner.name == "middle"
    assert "fast: backend fast disagrees with the eager deploy form" in note
    assert "slow: slow is not installed" in note
    assert "slow" not in builder.built


def test_when_no_candidate_serves_the_load_fails_with_every_reason(tmp_path: Path) -> None:
    builder = Builder(failing={n: f"{n} broke" for n in SPEEDS})
    with pytest.raises(BackendError, match=r"slow broke.*fast broke.*middle broke"):
        choose(tmp_path, builder)


def test_the_remembered_choice_is_reused_without_measuring(tmp_path: Path) -> None:
    choose(tmp_path, Builder())
    saved = json.loads((tmp_path / REMEMBERED).read_text())
    (entry,) = saved["entries"].values()
    assert entry["backend"] == "fast" and set(entry["medians_ms"]) == set(SPEEDS)

    again = Builder()
    runner, name, note = choose(tmp_path, again)
    assert (name, runner.name) == ("fast", "fast")
    assert again.built == Counter(fast=1)  # only the remembered backend was built: nothing measured
    assert runner.runs == 0 and "remembered" in note  # type: ignore[attr-defined]

    forced = Builder()
    choose(tmp_path, forced, remeasure=True)
    assert forced.built == Counter(slow=1, fast=1, middle=1)


def test_another_model_or_library_version_is_measured_not_recalled(tmp_path: Path) -> None:
    choose(tmp_path, Builder())
    other_weights, upgraded = Builder(), Builder()
    choose(tmp_path, other_weights, request=request("w2"))
    choose(tmp_path, upgraded, specs=specs(middle="2.0"))
    assert other_weights.built == upgraded.built == Counter(slow=1, fast=1, middle=1)
    assert len(json.loads((tmp_path / REMEMBERED).read_text())["entries"]) == 3


@pytest.mark.parametrize(
    "damage",
    ["{ not json", '["a", "list"]', '{"format": 99, "entries": {}}', '{"format": 1, "entries": []}', "\x00\xff"],
)
def test_a_corrupted_remembered_file_is_ignored_and_rewritten(tmp_path: Path, damage: str) -> None:
    (tmp_path / REMEMBERED).write_text(damage)
    builder = Builder()
    _, name, _ = choose(tmp_path, builder)
    assert name == "fast" and builder.built == Counter(slow=1, fast=1, middle=1)
    assert json.loads((tmp_path / REMEMBERED).read_text())["format"] == 1


WRITER = """
import sys, time
from pathlib import Path
from service.runtime.backends.remembered import RememberedChoices
root, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
while not (root / "go").exists():
    time.sleep(0.001)
choices = RememberedChoices(root)
for i in range(count):
    choices.remember({"host": "h"}, {"model": f"{name}-{i}"}, {"backend": "eager"})
"""


def test_processes_remembering_at_once_keep_every_entry(tmp_path: Path) -> None:
    """Replicas sharing an export cache remember their choices into one file at the same moment: none is lost."""
    writers, count = 4, 25
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"p{k}", str(count)]) for k in range(writers)
    ]
    time.sleep(1.0)  # let every writer import and wait for the start
    (tmp_path / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    entries = json.loads((tmp_path / REMEMBERED).read_text())["entries"]
    assert sorted(e["model"]["model"] for e in entries.values()) == sorted(
        f"p{k}-{i}" for k in range(writers) for i in range(count)
    )
    assert not list(tmp_path.glob(f".{REMEMBERED}-*"))  # no half-written file left behind


def test_a_foreign_entry_under_our_key_is_ignored(tmp_path: Path) -> None:
    """A file copied from another host, edited to name this key: its host and model must match too."""
    choose(tmp_path, Builder())
    saved = json.loads((tmp_path / REMEMBERED).read_text())
    (key,) = saved["entries"]
    saved["entries"][key]["host"]["cpus"] = 4096
    saved["entries"][key]["backend"] = "slow"
    (tmp_path / REMEMBERED).write_text(json.dumps(saved))
    builder = Builder()
    _, name, _ = choose(tmp_path, builder)
    assert name == "fast" and builder.built == Counter(slow=1, fast=1, middle=1)


def test_a_remembered_backend_that_no_longer_serves_is_measured_again(tmp_path: Path) -> None:
    choose(tmp_path, Builder())
    builder = Builder(failing={"fast": "graph rejected"})
    _, name, note = choose(tmp_path, builder)
    assert name == "middle" and builder.built == Counter(fast=2, slow=1, middle=1)
    assert "fast: graph rejected" in note


def test_auto_on_a_real_small_model_serves_a_backend_matching_eager_and_remembers_it(tmp_path: Path) -> None:
    served = served_model("image")
    req = request_for(served)
    first = ExportCache(tmp_path)
    runner, choice = build_runner("auto", req, first)
    installed = [n for n in ("openvino", "onnxruntime", "torch") if SPECS[n].unavailable_reason("cpu") is None]
    assert choice.name in installed and runner.name == choice.name
    if len(installed) > 1:
        assert "fastest of median" in choice.reason and all(n in choice.reason for n in installed)
    x = torch.randn(3, *req.input_shape, generator=torch.Generator().manual_seed(1))
    features, logits = runner.run(x)
    ref_features, ref_logits = TorchRunner(req).run(x)
    torch.testing.assert_close(features, ref_features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)

    restarted = ExportCache(tmp_path)
    again, second = build_runner("auto", req, restarted)
    assert second.name == choice.name and restarted.builds == 0
    if len(installed) > 1:
        assert "remembered" in second.reason
        assert restarted.hits == (0 if choice.name == "torch" else 1)  # the chosen graph alone was loaded
    torch.testing.assert_close(again.run(x)[1], ref_logits, rtol=1e-4, atol=1e-4)


def test_a_start_without_a_remembered_choice_builds_only_the_first_preferred_candidate(tmp_path: Path) -> None:
    """The service is ready sooner: the others are left to measure in the background (test_backend_background)."""
    builder = Builder()
    started = start_auto(request(), tmp_path, list(SPEEDS), specs(), builder)  # type: ignore[arg-type]
    assert started.name == "slow" and builder.built == Counter(slow=1)
    assert started.to_measure() == ["fast", "middle"] and "measuring fast, middle in the background" in started.note
    assert not (tmp_path / REMEMBERED).exists()  # nothing measured, nothing remembered yet

    failing = Builder(failing={"slow": "slow disagrees"})
    started = start_auto(request(), tmp_path, list(SPEEDS), specs(), failing)  # type: ignore[arg-type]
    assert started.name == "fast" and started.to_measure() == ["middle"] and "slow: slow disagrees" in started.note

    choose(tmp_path, Builder())  # measured once: remembered
    again = Builder()
    started = start_auto(request(), tmp_path, list(SPEEDS), specs(), again)  # type: ignore[arg-type]
    assert (started.name, started.pending) == ("fast", None) and again.built == Counter(fast=1)
    assert "remembered" in started.note


def test_a_cold_start_serves_the_quick_to_build_candidate_and_measures_the_preferred_ones(tmp_path: Path) -> None:
    """The service's cold start serves eager (``serve_cold``: no export to wait for); the preferred candidates are
    measured in the background; once a choice is remembered, it is served instead, whatever ``serve_cold`` says."""
    builder = Builder()
    started = start_auto(request(), tmp_path, list(SPEEDS), specs(), builder, serve_cold="middle")  # type: ignore[arg-type]
    assert started.name == "middle" and builder.built == Counter(middle=1)
    assert started.to_measure() == ["slow", "fast"] and "at once" in started.note

    broken = Builder(failing={"middle": "middle disagrees"})
    started = start_auto(request(), tmp_path, list(SPEEDS), specs(), broken, serve_cold="middle")  # type: ignore[arg-type]
    assert started.name == "slow" and "middle: middle disagrees" in started.note

    choose(tmp_path, Builder())
    again = Builder()
    started = start_auto(request(), tmp_path, list(SPEEDS), specs(), again, serve_cold="middle")  # type: ignore[arg-type]
    assert (started.name, started.pending) == ("fast", None) and again.built == Counter(fast=1)
