"""The SDK's exceptions: one root, transport failures, and one class per machine-readable service error code.

The service reports every error as ``{"error": {"code", "message", "details"}}`` with a stable ``code``. The
classes below mirror those codes (the SDK imports nothing from the service, so the mirror is by name) and keep
the service's grouping: input errors under ``BadRequestError``, model errors under ``ModelError``. A code this
SDK does not know yet still maps to a sensible class through the HTTP status, so a newer server never turns a
clear error into a generic one.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "BadRequestError",
    "CheckpointError",
    "ClientDisconnectedError",
    "DeadlineExceededError",
    "DecoderCrashedError",
    "ForbiddenError",
    "InputFileNotFoundError",
    "InputTooLargeError",
    "InternalServerError",
    "InvalidInputError",
    "InvalidParameterError",
    "ModelError",
    "ModelLoadError",
    "NotFoundError",
    "PreprocessTimeoutError",
    "QueueFullError",
    "RateLimitedError",
    "RequestValidationError",
    "ServiceUnavailableError",
    "UnauthorizedError",
    "UndecodableInputError",
    "UnirepError",
    "UnknownModalityError",
    "UnknownModelError",
    "UnsupportedInputTypeError",
    "UnsupportedMediaTypeError",
    "error_class_for",
]


class UnirepError(Exception):
    """Root of everything this SDK raises on purpose; catch it to handle any failure of a call.

    ``status_code`` is the HTTP status the service answered with, and None when there was no answer (the
    connection failed, or the input was refused before anything was sent)."""

    status_code: int | None = None


class InvalidInputError(UnirepError, ValueError):
    """The call's input was refused before any request was sent (an empty payload, a malformed array, timestamps
    without an array). Also a ``ValueError``, as such refusals are in Python."""


class UnknownModalityError(InvalidInputError):
    """Not a modality name (lower-case letters, digits and ``_``): the server may serve any modality it registered."""


class InputFileNotFoundError(InvalidInputError, FileNotFoundError):
    """The path given as input is not a readable file. Also a ``FileNotFoundError``."""


class UnsupportedInputTypeError(InvalidInputError, TypeError):
    """The input's Python type cannot be sent to this modality (say, an array for an image). Also a ``TypeError``."""


class APIConnectionError(UnirepError):
    """No HTTP response came back: refused connection, reset, DNS failure. Retried before it is raised."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APITimeoutError(APIConnectionError):
    """The HTTP attempt ran past its timeout (or the call's deadline) before the server answered."""


class APIStatusError(UnirepError):
    """The service answered with an error status; ``code`` is its machine-readable reason.

    ``retry_after`` is the server's Retry-After in seconds (429 and 503 carry it), ``request_id`` the id the
    service logged the request under (quote it in bug reports).
    """

    status_code: int = 0
    code: str = ""

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.response = response
        self.status_code = response.status_code
        self.code = code or type(self).code or f"http_{response.status_code}"
        self.details: dict[str, Any] = details or {}
        self.retry_after = retry_after
        self.request_id: str | None = response.headers.get("X-Request-Id")

    def __str__(self) -> str:
        return f"{self.status_code} {self.code}: {self.message}"


class InternalServerError(APIStatusError):
    """A bug or unexpected failure on the server (code ``internal_error``)."""

    status_code = 500
    code = "internal_error"


class ModelError(APIStatusError):
    """The configured model cannot be built or run as asked."""

    status_code = 500
    code = "model_error"


class UnknownModelError(ModelError):
    status_code = 404
    code = "unknown_model"


class CheckpointError(ModelError):
    """The server's checkpoint does not fit its model, or cannot be read."""

    code = "checkpoint_error"


class BadRequestError(APIStatusError):
    """The request itself is wrong (parameters, missing file); base of every input error."""

    status_code = 400
    code = "bad_request"


class UndecodableInputError(BadRequestError):
    """The payload has a supported type but is corrupt, empty or non-finite."""

    status_code = 422
    code = "undecodable_input"


class DecoderCrashedError(UndecodableInputError):
    """The server's decoder process died on this payload (native crash or memory limit); only this request failed."""

    code = "decoder_crashed"


class RequestValidationError(BadRequestError):
    """A request the service could not read at all: a parameter of the wrong type, a missing field (code
    ``validation_error``). Unlike ``UndecodableInputError`` it is about the request, not the file in it."""

    status_code = 422
    code = "validation_error"


class InvalidParameterError(BadRequestError):
    """A query parameter or header has a value the server cannot use (``top_k`` out of range, bad deadline)."""

    status_code = 422
    code = "invalid_parameter"


class UnsupportedMediaTypeError(BadRequestError):
    """The payload's format is not one this modality reads."""

    status_code = 415
    code = "unsupported_media_type"


class InputTooLargeError(BadRequestError):
    """The payload exceeds a limit of the server (bytes, pixels, seconds, points, series length)."""

    status_code = 413
    code = "input_too_large"


class NotFoundError(APIStatusError):
    status_code = 404
    code = "not_found"


class UnauthorizedError(APIStatusError):
    """No API key, or one the server does not accept: pass ``api_key=`` or set ``UNIREP_API_KEY``."""

    status_code = 401
    code = "unauthorized"


class ForbiddenError(APIStatusError):
    """The API key is valid but may not do this (managing models needs a key created with ``--admin``)."""

    status_code = 403
    code = "forbidden"


class ModelLoadError(BadRequestError):
    """A model (version) could not be loaded; the versions that served before keep serving. The message says why."""

    status_code = 400
    code = "model_load_failed"


class RateLimitedError(APIStatusError):
    """This API key sent more than its limit; retried after ``retry_after`` before it is raised."""

    status_code = 429
    code = "rate_limited"


class QueueFullError(APIStatusError):
    """The server's batching queue is full (overload, not a quota); retried before it is raised."""

    status_code = 429
    code = "queue_full"


class DeadlineExceededError(APIStatusError):
    """The call's deadline passed, or the server saw it could not be met; the model did not run the item."""

    status_code = 504
    code = "deadline_exceeded"


class PreprocessTimeoutError(APIStatusError):
    """Decoding this payload took longer than the server allows (a pathological or huge file)."""

    status_code = 504
    code = "preprocess_timeout"


class ClientDisconnectedError(APIStatusError):
    """The server saw this client go away and dropped the item (499); reaches a caller only through a proxy."""

    status_code = 499
    code = "client_disconnected"


class ServiceUnavailableError(APIStatusError):
    """Not ready yet, draining, or a backend is gone; retried after ``retry_after`` before it is raised."""

    status_code = 503
    code = "service_unavailable"


def _family(root: type[APIStatusError]) -> list[type[APIStatusError]]:
    """``root``'s subclasses, theirs, and so on."""
    return [cls for sub in root.__subclasses__() for cls in (sub, *_family(sub))]


_BY_CODE = {cls.code: cls for cls in _family(APIStatusError)}
"""Every class above by its code: defining a class maps it, with no list to keep in step."""

# When the code is unknown (a newer server, or a proxy's HTML page), the status still says what kind of failure
# it is. Every 4xx stays under BadRequestError's family except 401, 403, 404 and 429, which mean something else.
_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    413: InputTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UndecodableInputError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
    504: DeadlineExceededError,
}


def error_class_for(status_code: int, code: str | None) -> type[APIStatusError]:
    """The exception class for a response: by the service's code first, then by the HTTP status."""
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if 400 <= status_code < 500:
        return BadRequestError
    if status_code >= 500:
        return InternalServerError
    return APIStatusError
