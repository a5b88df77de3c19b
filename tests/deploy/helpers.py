"""What the deployment tests share: the repo's deploy files, and the service's settings as environment names."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pydantic import BaseModel

from service.settings import MODALITIES, ServiceSettings
from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "env.example"
"""Compose variables (.env): secrets, ports, image tag."""
SERVICE_ENV_EXAMPLE = REPO_ROOT / "deploy" / "unirep.env.example"
"""Service settings (unirep.env), the only file the gateway and worker containers read."""
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "unirep.json"
GRAFANA_PROVISIONING = REPO_ROOT / "deploy" / "grafana" / "provisioning"
ENV_PREFIX = "UNIREP_"
MODALITY_PLACEHOLDER = "<MODALITY>"


def settings_env_names() -> set[str]:
    """Every environment name ServiceSettings reads: top-level fields, and ``SECTION__FIELD`` for nested ones.

    Modality sections are listed both per modality and once with the ``<MODALITY>`` placeholder that
    deploy/env.example uses to document the fields every section shares.
    """
    assert ServiceSettings.model_config.get("env_prefix") == ENV_PREFIX
    assert ServiceSettings.model_config.get("env_nested_delimiter") == "__"
    names: set[str] = set()
    for name, field in ServiceSettings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections = [MODALITY_PLACEHOLDER, *(m.upper() for m in MODALITIES)] if name in MODALITIES else [name]
            for section in sections:
                names |= {f"{ENV_PREFIX}{section.upper()}__{sub.upper()}" for sub in annotation.model_fields}
        else:
            names.add(f"{ENV_PREFIX}{name.upper()}")
    return names


def documented_names(text: str) -> dict[str, str]:
    """``NAME=value`` assignments of an env file, commented out (``# NAME=value``) or not."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*(?:<MODALITY>)?[A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def compose_variables(text: str) -> dict[str, str]:
    """Variables interpolated in a compose file, with their operator and text (``:?message``, ``:-default``)."""
    return {m.group(1): m.group(2) or "" for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([:?-][^}]*)?\}", text)}


def parse_duration(text: str) -> float:
    """Seconds in a compose duration such as ``45s``, ``1m30s`` or ``2m``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def compose_tool() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1); None when neither can render a config."""
    import subprocess

    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target
