"""Python client for the UniRepLKNet multimodal perception service.

    from unirep_client import Client

    with Client("http://localhost:8000") as client:
        result = client.classify("image", "cat.jpg", top_k=3)
        print(result.top.label, result.top.score, result.weights)

``AsyncClient`` has the same methods as coroutines. Both read ``UNIREP_URL`` and ``UNIREP_API_KEY`` when no
argument is given, retry overload and connection failures with backoff, and raise subclasses of
``UnirepError`` named after the service's error codes. Importing this package pulls in httpx and pydantic only.
"""

from ._async_client import AsyncClient
from ._base import CallOptions
from ._client import Client
from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    MODALITIES,
    VERSION,
    Modality,
)
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    CheckpointError,
    ClientDisconnectedError,
    DeadlineExceededError,
    DecoderCrashedError,
    ForbiddenError,
    InputFileNotFoundError,
    InputTooLargeError,
    InternalServerError,
    InvalidInputError,
    InvalidParameterError,
    ModelError,
    ModelLoadError,
    NotFoundError,
    PreprocessTimeoutError,
    QueueFullError,
    RateLimitedError,
    RequestValidationError,
    ServiceUnavailableError,
    UnauthorizedError,
    UndecodableInputError,
    UnirepError,
    UnknownModalityError,
    UnknownModelError,
    UnsupportedInputTypeError,
    UnsupportedMediaTypeError,
)
from .types import ClassifyResult, EmbedResult, Health, ModelInfo, Prediction, RepositoryEntry, Timings

__version__ = VERSION

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "MAX_RETRY_DELAY",
    "MODALITIES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "BadRequestError",
    "CallOptions",
    "CheckpointError",
    "ClassifyResult",
    "Client",
    "ClientDisconnectedError",
    "DeadlineExceededError",
    "DecoderCrashedError",
    "EmbedResult",
    "ForbiddenError",
    "Health",
    "InputFileNotFoundError",
    "InputTooLargeError",
    "InternalServerError",
    "InvalidInputError",
    "InvalidParameterError",
    "Modality",
    "ModelError",
    "ModelInfo",
    "ModelLoadError",
    "NotFoundError",
    "Prediction",
    "PreprocessTimeoutError",
    "QueueFullError",
    "RateLimitedError",
    "RepositoryEntry",
    "RequestValidationError",
    "ServiceUnavailableError",
    "Timings",
    "UnauthorizedError",
    "UndecodableInputError",
    "UnirepError",
    "UnknownModalityError",
    "UnknownModelError",
    "UnsupportedInputTypeError",
    "UnsupportedMediaTypeError",
    "__version__",
]
