"""FastAPI dependencies: what a route needs from the app (runtime, metrics, settings, API-key check)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from service.metrics import Metrics
from service.runtime.serving import ServiceRuntime
from service.settings import ServiceSettings


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def metrics(request: Request) -> Metrics:
    m: Metrics = request.app.state.metrics
    return m


def settings(request: Request) -> ServiceSettings:
    s: ServiceSettings = request.app.state.settings
    return s


def auth(request: Request) -> Any:
    """The API-key checker (``service.scaleout.api_keys``) when keys are enabled, else None."""
    return getattr(request.app.state, "auth", None)
