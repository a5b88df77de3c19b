"""The model repository extension over gRPC (``RepositoryIndex``, ``RepositoryModelLoad``,
``RepositoryModelUnload``), as ``tritonclient.grpc`` calls them: the same repository and admin check as the REST
routes (``service.http.v2_repository``). Mixed into the inference servicer, which supplies ``runtime``, ``auth`` and
``_fail``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from service.http.v2_repository import load_parameters, repository
from service.repository.manager import index_of
from service.runtime.serving import ServiceRuntime
from unirep_errors import UnirepError


def _value(parameter: Any) -> Any:
    which = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, which) if which else None


class RepositoryMethods:
    runtime: ServiceRuntime
    auth: Any
    _fail: Callable[[grpc.aio.ServicerContext, UnirepError], Awaitable[None]]

    async def _admin(self, context: grpc.aio.ServicerContext) -> None:
        if self.auth is not None:
            metadata = dict(context.invocation_metadata() or ())
            await self.auth.authorize_admin(metadata.get("authorization"))

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        try:
            await self._admin(context)
            entries = await index_of(self.runtime, request.ready)
        except UnirepError as exc:
            await self._fail(context, exc)
        models = [pb.RepositoryIndexResponse.ModelIndex(**vars(e)) for e in entries]
        return pb.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        try:
            await self._admin(context)
            params = {key: _value(value) for key, value in request.parameters.items()}
            config, files = load_parameters(params, decode=False)
            await repository(self.runtime).load(request.model_name, config, files or None)
        except UnirepError as exc:
            await self._fail(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        try:
            await self._admin(context)
            await repository(self.runtime).unload(request.model_name)
        except UnirepError as exc:
            await self._fail(context, exc)
        return pb.RepositoryModelUnloadResponse()
