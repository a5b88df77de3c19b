"""Every error, including the framework's own (404, 405, validation), leaves in the one envelope."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.http import request_io as io
from service.http.intake import count_refused_by_framework
from unirep_errors import UnirepError

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "input_too_large", 415: "unsupported_media_type"}


def install_error_handlers(app: FastAPI) -> None:
    """Every error, including the framework's own (404, 405, validation), leaves in the one envelope."""

    @app.exception_handler(UnirepError)
    async def _unirep(request: Request, exc: UnirepError) -> Response:
        return io.error_response(exc, io.request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs for the endpoints"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        response = io.envelope(exc.status_code, {"code": code, "message": message}, io.request_id(request))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
        count_refused_by_framework(request, 422)
        return io.envelope(
            422,
            {"code": "validation_error", "message": message, "details": {"errors": problems}},
            io.request_id(request),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return io.envelope(
            500, {"code": "internal_error", "message": "internal error; see the server log"}, io.request_id(request)
        )
