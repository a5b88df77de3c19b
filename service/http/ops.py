"""The service routes: ``/models``, ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from service.http import deps
from service.http.public_text import public_message
from service.http.schemas import Health, ModelInfo, ModelsResponse, Readiness, dump
from service.http.visibility import public_model, sees_paths
from service.metrics import CONTENT_TYPE, Metrics
from service.repository.manager import index_of
from service.runtime.serving import ServiceRuntime

router = APIRouter(tags=["service"])
Runtime = Annotated[ServiceRuntime, Depends(deps.runtime)]


@router.get(
    "/models", response_model=ModelsResponse, summary="Every model and version known, its state, weights and backend"
)
async def list_models(runtime: Runtime, request: Request) -> Response:
    """Every served model, then every other version the model repository knows (LOADING, or UNAVAILABLE with the
    reason); with API keys on, local file paths only for callers that send a valid key."""
    full = await sees_paths(request)
    listed = [m if full else public_model(m) for m in await known_models(runtime)]
    if not full:
        listed = [{**m, "reason": public_message(m["reason"])} if m.get("reason") else m for m in listed]
    return JSONResponse(dump(ModelsResponse(models=[ModelInfo.model_validate(m) for m in listed])))


async def known_models(runtime: ServiceRuntime) -> list[dict[str, Any]]:
    """The routed models' descriptions, each with its index reason if it has one (a failed reload of a serving
    version), then the index entries nothing routes: the version loading, failed, unloaded or never loaded."""
    index = {(e.name, e.version): e for e in await index_of(runtime)}
    out = []
    for desc in runtime.describe_models():
        entry = index.pop((desc["name"], str(desc["model_version"])), None)
        if entry is not None and entry.reason:
            desc["reason"] = entry.reason
        elif entry is not None and entry.state == "LOADING":
            desc["reason"] = "serving while this version is loaded again"
        out.append(desc)
    for entry in index.values():
        row = {"name": entry.name, "model_version": entry.version or None, "state": entry.state}
        out.append({**row, "reason": entry.reason} if entry.reason else row)
    return out


@router.get("/healthz", response_model=Health, summary="Liveness: the process is up and its event loop answers")
async def healthz() -> Response:
    return JSONResponse(dump(Health(status="ok")))


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: every bucket is warm and the service is not draining",
)
async def readyz(runtime: Runtime) -> Response:
    if runtime.ready:
        return JSONResponse(dump(Readiness(status="ready")))
    state = runtime.state if runtime.state != "ready" else "starting"
    reason = runtime.transport.unavailable_reason() if runtime.transport is not None else None
    if runtime.state == "ready" and reason is not None:
        state = "unavailable"
    message = {
        "starting": "loading and warming models",
        "draining": "draining: finishing admitted requests before exit",
        "failed": f"startup failed: {runtime.error}",
        "stopped": "stopped",
        "unavailable": reason,
    }.get(state, state)
    body = Readiness(status=state, error={"code": "service_unavailable", "message": public_message(str(message))})
    return JSONResponse(dump(body), status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def prometheus_metrics(runtime: Runtime, metrics: Annotated[Metrics, Depends(deps.metrics)]) -> Response:
    for worker in getattr(runtime.transport, "device_workers", []):
        stats = worker.memory_stats()
        if stats is not None:
            metrics.gpu_memory_allocated.labels(worker.device_name).set(stats[0])
            metrics.gpu_memory_max_allocated.labels(worker.device_name).set(stats[1])
    return Response(metrics.render(), media_type=CONTENT_TYPE)
