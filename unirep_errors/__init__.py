"""The one error hierarchy of the project.

It lives at the bottom of the import chain (``models`` <- ``modality_adapters`` <- ``service``) so that every
layer raises the same types, and the gateway turns any of them into one JSON envelope without a lookup table:
each class carries its HTTP status and a stable machine-readable ``code``. The client SDK mirrors the codes
(not the classes: it imports none of our packages).
"""

from __future__ import annotations

from typing import Any


class UnirepError(Exception):
    """Root of every error the service reports on purpose; anything else is a bug and answers 500."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error envelope's body: the same shape for every error the service returns."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (preprocessing pool, workers); keep message and details on the way.
        return (_rebuild_error, (type(self), self.message, self.details))


def _rebuild_error(cls: type[UnirepError], message: str, details: dict[str, Any]) -> UnirepError:
    return cls(message, **details)


# --- Model, weights and configuration errors -------------------------------------------------------------


class ModelError(UnirepError):
    """A model cannot be built as asked (unknown variant, bad kernel layout, bad arguments)."""

    status_code = 500
    code = "model_error"


class UnknownModelError(ModelError):
    status_code = 404
    code = "unknown_model"


class CheckpointError(ModelError):
    """A checkpoint does not fit the model it is loaded into, or cannot be read or found."""

    code = "checkpoint_error"


# --- Input errors: the client sent something we will not or cannot decode ----------------------------------


class InputError(UnirepError):
    """Base of errors caused by the request's payload; always a 4xx."""

    status_code = 400
    code = "bad_request"


class UndecodableInputError(InputError):
    """The payload has a supported type but cannot be decoded into a valid map (corrupt, empty, NaN, ...)."""

    status_code = 422
    code = "undecodable_input"


class UnsupportedMediaTypeError(InputError):
    """The payload's format is not one this modality reads."""

    status_code = 415
    code = "unsupported_media_type"


class InputTooLargeError(InputError):
    """The payload exceeds a configured limit (bytes, pixels, seconds, points, series length)."""

    status_code = 413
    code = "input_too_large"


# --- Serving errors ----------------------------------------------------------------------------------------


class NotFoundError(UnirepError):
    status_code = 404
    code = "not_found"


class ModelLoadError(UnirepError):
    """A model (version) could not be loaded from the repository; the versions serving before keep serving."""

    status_code = 400
    code = "model_load_failed"


class ForbiddenError(UnirepError):
    """The credentials are valid but do not allow this (e.g. an inference key managing models)."""

    status_code = 403
    code = "forbidden"


class UnauthorizedError(UnirepError):
    status_code = 401
    code = "unauthorized"


class RateLimitedError(UnirepError):
    """Too many requests for a key; ``retry_after`` (seconds) becomes the Retry-After header."""

    status_code = 429
    code = "rate_limited"


class QueueFullError(UnirepError):
    """The bounded batching queue is full; the client should retry after ``retry_after`` seconds."""

    status_code = 429
    code = "queue_full"


class DeadlineExceededError(UnirepError):
    """The request's deadline passed or cannot be met; the item never reached the model."""

    status_code = 504
    code = "deadline_exceeded"


class PreprocessTimeoutError(UnirepError):
    """The decoder ran past its time limit and was killed; the pool replaced its process."""

    status_code = 504
    code = "preprocess_timeout"


class ServiceUnavailableError(UnirepError):
    """Not ready, draining, or a backend (Redis, workers) is gone; safe to retry."""

    status_code = 503
    code = "service_unavailable"


class DecoderCrashedError(UndecodableInputError):
    """The decoder process died on this payload (a crash in native code, or its memory limit); the pool replaced it."""

    code = "decoder_crashed"


class ClientDisconnectedError(UnirepError):
    """The client went away before its result was ready; the item was dropped before compute (nginx's 499)."""

    status_code = 499
    code = "client_disconnected"


class InvalidParameterError(InputError):
    """A query parameter or header has a value the request cannot use (top_k out of range, bad timeout)."""

    status_code = 422
    code = "invalid_parameter"


# --- Training data errors --------------------------------------------------------------------------------


class DatasetError(InputError):
    """A training or evaluation data set cannot be used as given (empty, one class, unknown labels, bad manifest)."""

    status_code = 422
    code = "bad_dataset"
