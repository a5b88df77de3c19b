"""``AsyncClient``: the asyncio twin of ``Client``, method for method; policy lives in ``_base``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack

import httpx

from ._base import BaseClient, CallOptions, CallPlan
from ._constants import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, Modality
from ._inputs import Payload, encode_input
from ._repository import INDEX_PATH, index_entries, load_payload, model_path
from .errors import APIConnectionError, APIStatusError
from .types import ClassifyResult, EmbedResult, Health, ModelInfo, RepositoryEntry

__all__ = ["AsyncClient"]


class AsyncClient(BaseClient):
    """An asyncio client of the service; share one instance across tasks (it pools connections).

    Args:
        base_url: the service's root URL; ``UNIREP_URL`` when omitted, else ``http://127.0.0.1:8000``.
        api_key: sent as a Bearer token; ``UNIREP_API_KEY`` when omitted.
        timeout: default seconds for one HTTP attempt.
        max_retries: retries after connection errors, 429, 502 and 503 (0 disables them).
        headers: extra headers sent with every request.
        http_client: an ``httpx.AsyncClient`` to use (proxies, TLS, transports); the caller then owns its lifetime.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, headers=headers)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(follow_redirects=False)

    def with_options(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncClient:
        """A copy with some settings changed, sharing this client's connection pool (close the original last)."""
        options = self._options(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries, headers=headers
        )
        return AsyncClient(**options, http_client=self._http)

    async def close(self) -> None:
        """Close the connection pool (only when this client created it)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- generic endpoints ------------------------------------------------------------------------------

    async def classify(
        self,
        modality: Modality,
        data: Any,
        *,
        top_k: int | None = None,
        timestamps: Sequence[Any] | None = None,
        model: str | None = None,
        version: str | int | None = None,
        **options: Unpack[CallOptions],
    ) -> ClassifyResult:
        """Classify one input of ``modality``.

        ``data`` is what the modality takes: image: a path, encoded bytes (JPEG, PNG, ...) or a PIL image; audio:
        a path or the bytes of a WAV, FLAC, OGG or MP3; video: a path or the bytes of an MP4, WebM, AVI, ...;
        pointcloud: a file (PLY, PCD, OFF, OBJ, XYZ, NPY) or an N x 3 array or nested list; timeseries: a file
        (CSV, NPY) or a T x V array, with optional ISO/datetime ``timestamps``.

        ``top_k`` labels come back, most likely first; None leaves it to the server (5, at most the class count).
        ``model`` (and ``version``) pick a loaded model of that modality (``models()``); None: its default model.
        """
        payload = await _encode(modality, data, timestamps)
        response = await self._send(
            "POST",
            f"/classify/{modality}",
            payload=payload,
            params={"top_k": top_k, "model": model, "version": version},
            **options,
        )
        return self._parse(ClassifyResult, response)

    async def embed(
        self,
        modality: Modality,
        data: Any,
        *,
        timestamps: Sequence[Any] | None = None,
        model: str | None = None,
        version: str | int | None = None,
        **options: Unpack[CallOptions],
    ) -> EmbedResult:
        """The embedding (pooled features before the classifier) of one input of ``modality``."""
        payload = await _encode(modality, data, timestamps)
        response = await self._send(
            "POST", f"/embed/{modality}", payload=payload, params={"model": model, "version": version}, **options
        )
        return self._parse(EmbedResult, response)

    async def models(self, **options: Unpack[CallOptions]) -> list[ModelInfo]:
        """Every loaded model and version (each modality's default model, and the repository's), with its state,
        weights and batching settings."""
        response = await self._send("GET", "/models", **options)
        return [ModelInfo.model_validate(item) for item in response.json()["models"]]

    async def repository_index(self, *, ready: bool = False, **options: Unpack[CallOptions]) -> list[RepositoryEntry]:
        """Every model and version of the model repository with its state (and why it is not ready)."""
        response = await self._send("POST", INDEX_PATH, payload=Payload(json={"ready": ready}), **options)
        return index_entries(response.json())

    async def load_model(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        files: Mapping[str, bytes] | None = None,
        **options: Unpack[CallOptions],
    ) -> None:
        """Load or reload model ``name`` (an admin key when keys are on); returns once it serves. ``config``
        overrides its ``config.toml`` (batching, backend, version_policy); ``files`` (``{"1/model.safetensors":
        data}``) are the model's folder, sent in the request. Raises ``ModelLoadError``-like errors naming why."""
        await self._send("POST", model_path(name, "load"), payload=load_payload(config, files), **options)

    async def unload_model(self, name: str, **options: Unpack[CallOptions]) -> None:
        """Stop serving model ``name`` (its admitted requests are still answered)."""
        await self._send("POST", model_path(name, "unload"), payload=Payload(json={}), **options)

    async def health(self, **options: Unpack[CallOptions]) -> Health:
        """Liveness: raises when the process cannot be reached (after retries)."""
        return self._parse(Health, await self._send("GET", "/healthz", **options))

    async def ready(self, **options: Unpack[CallOptions]) -> bool:
        """Readiness without retries: False while the service warms up or drains (503), True once it serves."""
        options.setdefault("max_retries", 0)
        response = await self._send("GET", "/readyz", accept=(503,), **options)
        return response.status_code == 200

    # --- the request loop -------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        payload: Payload | None = None,
        params: Mapping[str, Any] | None = None,
        accept: tuple[int, ...] = (),
        **options: Unpack[CallOptions],
    ) -> httpx.Response:
        """Send with the shared retry policy; return a success (or an ``accept``ed status) or raise."""
        plan: CallPlan = self._plan(**options)
        attempt = 0
        while True:
            request = self._http.build_request(
                method, self._url(path), **self._request_kwargs(plan, payload=payload, params=params)
            )
            error: APIStatusError | APIConnectionError
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                error = self._connection_error(exc, plan)
                error.__cause__ = exc
            else:
                if response.is_success or response.status_code in accept:
                    return response
                error = self._status_error(response)
            delay = self._delay_before_retry(plan, attempt, error)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1


async def _encode(modality: str, data: Any, timestamps: Sequence[Any] | None) -> Payload:
    """Encode off the event loop when it means reading a file, which may be large or on a slow disk."""
    if isinstance(data, str | os.PathLike):
        return await asyncio.to_thread(encode_input, modality, data, timestamps=timestamps)
    return encode_input(modality, data, timestamps=timestamps)
