"""Live servers shared by the SDK and CLI tests: starting one costs seconds, so each starts once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.live import LiveServer, live_server

HOSTILE_LABELS = ("\x1b[31mred\x1b[0m", "bell\x07\x1b]0;retitled\x07")
"""The time-series labels of the shared server: terminal escape sequences, which the CLI must print escaped."""


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("sdk-live")
    labels = workdir / "hostile-labels.txt"
    labels.write_text("\n".join(HOSTILE_LABELS) + "\n", encoding="utf-8")
    with live_server(workdir, UNIREP_TIMESERIES__LABEL_SET=str(labels)) as live:
        yield live


@pytest.fixture(scope="session")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with a one-slot image queue, batches of one and 300 ms per batch: easy to fill, easy to be late."""
    settings = {
        "UNIREP_DEBUG_INFERENCE_DELAY_MS": "300",
        "UNIREP_IMAGE__MAX_BATCH_SIZE": "1",
        "UNIREP_IMAGE__MAX_QUEUE_SIZE": "1",
        "UNIREP_CACHE_ENABLED": "false",
        "UNIREP_AUDIO__ENABLED": "false",
        "UNIREP_POINTCLOUD__ENABLED": "false",
        "UNIREP_TIMESERIES__ENABLED": "false",
    }
    with live_server(tmp_path_factory.mktemp("sdk-overload"), **settings) as live:
        yield live
