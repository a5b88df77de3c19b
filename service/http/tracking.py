"""Request accounting for routes outside the native ones (V2 REST and gRPC, previews): the same in-flight gauge,
request counter and duration histogram as ``/classify``, and the runtime's in-flight count that draining waits on."""

from __future__ import annotations

import time
from typing import Any

from service.runtime.serving import ServiceRuntime
from unirep_errors import UnirepError


class Tracked:
    """Request accounting shared with the native routes: in-flight gauge, request counter and duration."""

    def __init__(self, runtime: ServiceRuntime, modality: str, endpoint: str) -> None:
        self.runtime = runtime
        versions = runtime.table.versions(modality)  # a V2 model name: counted under the modality it takes
        self.modality = next(iter(versions.values())).modality if versions else "unknown"
        self.endpoint = endpoint
        self.status = 500
        self.started = time.perf_counter()

    def __enter__(self) -> Tracked:
        self.runtime.metrics.in_flight.inc()
        self.runtime.in_flight += 1
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, UnirepError):
            self.status = exc.status_code
        elif exc is None and self.status == 500:
            self.status = 200
        metrics = self.runtime.metrics
        metrics.in_flight.dec()
        self.runtime.in_flight -= 1
        metrics.requests.labels(self.modality, self.endpoint, str(self.status)).inc()
        metrics.request_duration.labels(self.modality, self.endpoint).observe(time.perf_counter() - self.started)
