"""Prometheus and Grafana configuration against the real thing.

promtool validates the Prometheus config and rules; a real ``unirep serve`` is scraped to prove that every metric
the dashboard and the alerts name is exported; and a real Prometheus, started from the repo's own config with
only its targets pointed at loopback, scrapes that gateway and evaluates every dashboard query.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import unirep_client as uc
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.helpers import DASHBOARD, GRAFANA_PROVISIONING, PROMETHEUS_DIR
from tests.sdk.live import LiveServer, live_server, png
from tests.service.server import free_port

METRIC = re.compile(r"\bunirep_[a-z0-9_]+\b")
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def alert_queries() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def family(sample_name: str) -> str:
    for suffix in SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def as_instant_query(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus's API takes it."""
    return expr.replace("$__rate_interval", "1m").replace('=~"$modality"', '=~".*"')


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real service that has answered a few requests (so labelled series exist, not just their HELP lines)."""
    with live_server(tmp_path_factory.mktemp("monitoring")) as server:
        with uc.Client(server.url) as client:
            for seed in range(3):
                client.classify("image", png(seed), top_k=1)
            client.classify("image", png(0), top_k=1)  # a cache hit
            with contextlib.suppress(uc.UnirepError):
                client.classify("image", b"not an image", max_retries=0)
        yield server


@pytest.fixture(scope="module")
def exported(gateway: LiveServer) -> set[str]:
    return {f.name for f in text_string_to_metric_families(gateway.metrics())}


def test_promtool_accepts_the_config_and_its_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/setup.sh installs the Debian package prometheus"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_dashboard_and_alert_query_names_an_exported_metric(exported: set[str]) -> None:
    for expr in dashboard_queries() + alert_queries():
        names = METRIC.findall(expr)
        assert names or "up{" in expr, f"query names no service metric: {expr}"
        for name in names:
            assert family(name) in exported, f"{name} (in {expr!r}) is not exported by the service"


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    queries = "\n".join(dashboard_queries())
    for needle in (
        "sum by (modality, status) (rate(unirep_requests_total",  # request rate by modality and status
        "histogram_quantile(0.99, sum by (le, modality) (rate(unirep_request_duration_seconds_bucket",
        "unirep_queue_depth",
        "unirep_batch_size_bucket",
        "unirep_cache_hits_total",
        "unirep_cache_misses_total",
        "unirep_gpu_memory_allocated_bytes",
        "unirep_worker_ready",
    ):
        assert needle in queries, needle
    for stage in ("preprocess", "queue", "inference"):  # the README promises p50/p95/p99 per stage
        for quantile in ("0.5", "0.95", "0.99"):
            needle = (
                f"histogram_quantile({quantile}, sum by (le, modality) (rate(unirep_{stage}_duration_seconds_bucket"
            )
            assert needle in queries, needle


def test_dashboard_uses_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "unirep.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


@contextlib.contextmanager
def prometheus(workdir: Path, gateway: LiveServer) -> Iterator[str]:
    """The repo's Prometheus config, unchanged except for addresses: targets on loopback, a 1 s scrape interval."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: scripts/setup.sh installs the Debian package prometheus"
    config_dir = workdir / "config"
    shutil.copytree(PROMETHEUS_DIR, config_dir)
    config: dict[str, Any] = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    port = free_port()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["unirep-gateway"]["static_configs"][0]["targets"] = [f"127.0.0.1:{gateway.port}"]
    jobs["prometheus"]["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            last = check()
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_gateway_and_answers_every_dashboard_query(
    gateway: LiveServer, tmp_path: Path
) -> None:
    with prometheus(tmp_path, gateway) as url:

        def gateway_target() -> dict[str, Any] | None:
            targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            for target in targets:
                if target["labels"]["job"] == "unirep-gateway" and target["health"] == "up":
                    return dict(target)
            return None

        target = wait_for(gateway_target, 60, "the gateway target to be up")
        assert target["scrapeUrl"] == f"{gateway.url}/metrics" and target["labels"]["role"] == "gateway"

        def ready_value() -> float | None:
            result = httpx.get(f"{url}/api/v1/query", params={"query": "unirep_ready"}, timeout=5).json()
            return float(result["data"]["result"][0]["value"][1]) if result["data"]["result"] else None

        assert wait_for(ready_value, 30, "unirep_ready in Prometheus") == 1.0

        def requests_seen() -> bool:
            query = 'sum(unirep_requests_total{endpoint="classify"})'
            result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= 4

        wait_for(requests_seen, 30, "the test's requests in Prometheus")
        for expr in dashboard_queries():
            if expr.startswith("label_values("):
                metric, label = re.match(r"label_values\((\w+),\s*(\w+)\)", expr).groups()  # type: ignore[union-attr]
                answer = httpx.get(f"{url}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=5).json()
                assert "image" in answer["data"], answer
                continue
            answer = httpx.get(f"{url}/api/v1/query", params={"query": as_instant_query(expr)}, timeout=5).json()
            assert answer["status"] == "success", (expr, answer)
