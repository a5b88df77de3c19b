"""docker-compose.yml and deploy/env.example, checked without a Docker engine.

Compose renders the file (``config`` needs no engine), and the rendered services are checked against what the
stack needs (GPU workers that scale, healthchecks, start order on health, a drain-safe stop) and against the
service itself: every ``UNIREP_*`` variable is a field of the settings class, and the commands exist in the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from service.cli import build_parser
from service.settings import ServiceSettings
from tests.deploy.helpers import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ENV_PREFIX,
    MODALITY_PLACEHOLDER,
    SERVICE_ENV_EXAMPLE,
    compose_tool,
    compose_variables,
    documented_names,
    parse_duration,
    settings_env_names,
)

EXPECTED_SERVICES = {"redis", "gateway", "worker", "prometheus", "grafana"}
SECRETS = {"REDIS_PASSWORD": "test-redis-secret", "GRAFANA_ADMIN_PASSWORD": "test-grafana-secret"}


def render(tmp_path: Path, *args: str, secrets: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``compose config`` on a copy of the file with a .env made from deploy/env.example plus ``secrets``."""
    tool = compose_tool()
    if tool is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (scripts/setup.sh installs one)")
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name, value in (secrets or {}).items():
        lines = [f"{name}={value}" if line == f"{name}=" else line for line in lines]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    shutil.copy(SERVICE_ENV_EXAMPLE, tmp_path / "unirep.env")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(ENV_PREFIX)}
    return subprocess.run(
        [*tool, "-f", "docker-compose.yml", *args, "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = render(tmp_path_factory.mktemp("compose"), secrets=SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = rendered["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_renders_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED_SERVICES


def test_missing_secrets_stop_compose_with_a_message(tmp_path: Path) -> None:
    result = render(tmp_path)
    assert result.returncode != 0
    assert any(name in result.stderr for name in SECRETS), result.stderr
    raw = compose_variables(COMPOSE_FILE.read_text())
    for name in SECRETS:
        assert raw[name].startswith(":?"), f"{name} must be required as ${{{name}:?...}}"


def test_every_service_has_a_healthcheck_and_starts_after_its_dependencies_are_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"} or condition.get("condition") == "service_healthy", (
                f"{name} starts before {dependency} is healthy"
            )
    assert set(services["gateway"]["depends_on"]) == {"redis"}
    assert set(services["worker"]["depends_on"]) == {"redis"}
    assert set(services["prometheus"]["depends_on"]) == {"gateway"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}


def test_workers_reserve_gpus_and_can_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "container_name" not in worker  # a fixed name allows one replica only
    assert "ports" not in worker, "published ports collide as soon as --scale worker=2"
    assert "profiles" not in worker, "the workers are part of the default stack"


def test_the_gateway_holds_no_model_and_reserves_no_gpu(services: dict[str, dict[str, Any]]) -> None:
    gateway = services["gateway"]
    assert "deploy" not in gateway or "reservations" not in gateway["deploy"].get("resources", {})
    assert "container_name" not in gateway


@pytest.mark.parametrize("name", ["gateway", "worker"])
def test_stop_grace_period_outlasts_the_drain_timeout(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    drain = float(environment(service).get(f"{ENV_PREFIX}DRAIN_TIMEOUT_S", ServiceSettings().drain_timeout_s))
    assert parse_duration(service["stop_grace_period"]) > drain


def test_ports_and_healthchecks_agree_with_the_service_settings(services: dict[str, dict[str, Any]]) -> None:
    gateway = services["gateway"]
    port = environment(gateway)[f"{ENV_PREFIX}PORT"]
    assert environment(gateway)[f"{ENV_PREFIX}HOST"] == "0.0.0.0"  # reachable through the published port
    (published,) = gateway["ports"]
    assert str(published["target"]) == port and str(published["published"]) == "8000"
    for name in ("gateway", "worker"):
        assert f"127.0.0.1:{port}/healthz" in " ".join(services[name]["healthcheck"]["test"])
    assert {str(p["target"]) for p in services["prometheus"]["ports"]} == {"9090"}
    assert {str(p["target"]) for p in services["grafana"]["ports"]} == {"3000"}


def test_every_unirep_variable_in_compose_is_a_settings_field(services: dict[str, dict[str, Any]]) -> None:
    fields = settings_env_names()
    for name, service in services.items():
        for variable in environment(service):
            if variable.startswith(ENV_PREFIX):
                assert variable in fields, f"{name} sets {variable}, which ServiceSettings does not read"
    pinned = {k: v for k, v in environment(services["gateway"]).items() if k.startswith(ENV_PREFIX)}
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            patch.delenv(key)
        for key, value in pinned.items():
            patch.setenv(key, value)
        settings = ServiceSettings()
    assert settings.host == "0.0.0.0" and str(settings.port) == pinned[f"{ENV_PREFIX}PORT"]


def test_service_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    """The stack is the scale-out topology: ``unirep gateway`` (HTTP, no model) and ``unirep worker`` (models)."""
    assert services["gateway"]["command"] == ["unirep", "gateway"]
    assert services["worker"]["command"] == ["unirep", "worker"]
    for name in ("gateway", "worker"):
        assert callable(build_parser().parse_args(services[name]["command"][1:]).func)


def test_monitoring_mounts_point_at_files_in_the_repo() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name in ("prometheus", "grafana"):
        binds = [v.split(":")[0] for v in raw["services"][name]["volumes"] if v.startswith("./")]
        assert binds, f"{name} mounts no configuration from the repo"
        for source in binds:
            assert (COMPOSE_FILE.parent / source).is_dir(), source


# --- deploy/env.example and deploy/unirep.env.example -------------------------------------------------------------


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    fields = settings_env_names()
    documented = {name for name in documented_names(SERVICE_ENV_EXAMPLE.read_text()) if name.startswith(ENV_PREFIX)}
    source = (Path(__file__).resolve().parents[2] / "service" / "settings.py").read_text()
    unknown = {name for name in documented - fields if name not in source}  # UNIREP_CONFIG is read by load()
    assert not unknown, f"unirep.env.example documents variables ServiceSettings does not read: {sorted(unknown)}"
    required = {name for name in fields if MODALITY_PLACEHOLDER in name or "__" not in name or "LIMITS__" in name}
    missing = required - documented
    assert not missing, f"settings missing from deploy/unirep.env.example: {sorted(missing)}"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        name: value
        for name, value in documented_names(SERVICE_ENV_EXAMPLE.read_text()).items()
        if name.startswith(ENV_PREFIX) and value and MODALITY_PLACEHOLDER not in name and name != "UNIREP_CONFIG"
    }
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    try:
        settings = ServiceSettings()
    except ValidationError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"deploy/unirep.env.example holds values the service rejects:\n{exc}")
    assert settings.image.max_batch_size == int(values["UNIREP_IMAGE__MAX_BATCH_SIZE"])


def test_every_compose_variable_is_documented_in_env_example() -> None:
    documented = documented_names(ENV_EXAMPLE.read_text())
    for name in compose_variables(COMPOSE_FILE.read_text()):
        assert name in documented, f"docker-compose.yml uses ${{{name}}} but deploy/env.example does not mention it"
    for name in SECRETS:
        assert documented[name] == "", f"{name} must ship empty in env.example, so compose refuses to start"


def test_secrets_reach_only_the_services_that_use_them(services: dict[str, dict[str, Any]]) -> None:
    """.env is compose's, not a container's: the Grafana password is Grafana's, the Redis one Redis's (and inside
    the Redis URL of the services that connect to it); the service settings file holds no secret at all."""
    for name, service in services.items():
        env = environment(service)
        assert "GRAFANA_ADMIN_PASSWORD" not in env and "REDIS_PASSWORD" not in env, name
        values = " ".join(env.values())
        if name != "grafana":
            assert SECRETS["GRAFANA_ADMIN_PASSWORD"] not in values, name
        if name not in ("redis", "gateway", "worker"):
            assert SECRETS["REDIS_PASSWORD"] not in values, name
    assert not any(name in ENV_EXAMPLE.read_text() for name in ("UNIREP_IMAGE", "UNIREP_REDIS_URL="))
    service_names = documented_names(SERVICE_ENV_EXAMPLE.read_text())
    assert not any(n in service_names for n in SECRETS)
