"""The CPU thread plan and the OpenMP policy: decoders + model threads stay within the cores by default, and an
oversubscribing configuration is named (``unirep serve`` prints the warning)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.runtime.cpu_threads import available_cores, configure_openmp, plan_threads
from service.settings import ServiceSettings
from tests.conftest import REPO_ROOT


def test_default_plan_fits_the_cores() -> None:
    for cores in (1, 2, 3, 4, 8, 64):
        settings = ServiceSettings()
        decoders = max(1, min(4, cores // 2))  # what the default gives on a machine with this many cores
        plan = plan_threads(decoders, settings.torch_threads, on_cpu=True, cores=cores)
        assert plan.model_threads >= 1
        assert plan.decoders + plan.model_threads <= max(cores, 2), cores
        if cores >= 2:
            assert not plan.oversubscribed and plan.warning() is None
    assert ServiceSettings().preprocess_workers + plan_threads(
        ServiceSettings().preprocess_workers, None, True
    ).model_threads <= max(2, available_cores())


def test_oversubscription_is_named_on_cpu_only() -> None:
    plan = plan_threads(decoders=2, torch_threads=2, on_cpu=True, cores=2)
    assert plan.oversubscribed
    warning = plan.warning() or ""
    assert "2 decoder processes + 2 model threads exceed the 2 cores" in warning
    assert not plan_threads(decoders=2, torch_threads=8, on_cpu=False, cores=2).oversubscribed


def test_openmp_policy_is_set_unless_the_operator_chose_one() -> None:
    env: dict[str, str] = {}
    assert configure_openmp(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_openmp(chosen) == {}
    assert chosen["OMP_WAIT_POLICY"] == "ACTIVE"


def test_serve_warns_when_the_configuration_oversubscribes() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIREP_", "OMP_"))}
    cores = available_cores()
    code = (
        "import sys; from service.commands.serve import warn_oversubscription;"
        "from service.settings import ServiceSettings;"
        f"warn_oversubscription(ServiceSettings(device='cpu', preprocess_workers={cores}, torch_threads={cores}));"
        "warn_oversubscription(ServiceSettings(device='cpu', preprocess_workers=1, torch_threads=1))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("unirep serve: warning:") == 1
    assert f"exceed the {cores} cores" in result.stderr


WAIT_POLICY_WHEN_TORCH_LOADS = """
import importlib.abc, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Watch())
from service.cli import main
code = main(sys.argv[1:])
print(code, seen)
"""


def _policy_when_torch_loads(*argv: str, policy: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIREP_", "OMP_"))}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "-c", WAIT_POLICY_WHEN_TORCH_LOADS, *argv]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.strip()


def test_train_and_eval_set_the_policy_before_torch_loads(tmp_path: Path) -> None:
    """Training and scoring share the cores with decoder processes and often with a running service: their torch
    threads must not spin either. The policy must be in the environment when torch is first imported."""
    missing = str(tmp_path / "nowhere")
    train = ("train", "timeseries", missing, "--out", str(tmp_path / "out"))
    evaluate = ("eval", "timeseries", missing, "--weights", missing + ".safetensors")
    assert _policy_when_torch_loads(*train) == "2 ['PASSIVE']"
    assert _policy_when_torch_loads(*evaluate).endswith("['PASSIVE']")
    assert _policy_when_torch_loads(*train, policy="ACTIVE") == "2 ['ACTIVE']"
