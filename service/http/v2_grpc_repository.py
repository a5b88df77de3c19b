"""The model repository extension over gRPC (``RepositoryIndex``, ``RepositoryModelLoad``,
``RepositoryModelUnload``), as ``tritonclient.grpc`` calls them: the same repository as the REST routes
(``service.http.v2_repository``), and the same admin passage through the front door (``Intake.admit_admin``: admin
key, client, one counted status on the endpoints ``grpc_repository_*``). Mixed into the inference servicer, which
supplies ``runtime``, ``auth`` and ``identity``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from tritonclient.grpc import service_pb2 as pb

from service.http.client_identity import ClientIdentity
from service.http.grpc_door import grpc_door
from service.http.intake import Intake
from service.http.v2_repository import load_parameters, repository
from service.repository.manager import index_of
from service.runtime.serving import ServiceRuntime

T = TypeVar("T")


def _value(parameter: Any) -> Any:
    which = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, which) if which else None


class RepositoryMethods:
    runtime: ServiceRuntime
    auth: Any
    identity: ClientIdentity

    async def _manage(
        self, context: grpc.aio.ServicerContext, door: str, model: str, act: Callable[[], Awaitable[T]]
    ) -> T:
        intake = Intake(self.runtime, self.auth, self.identity, door, model, inference=False)

        async def work(_body: bytes) -> T:
            return await act()

        return await grpc_door(intake, context, intake.admit_admin, work)

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def act() -> Any:
            entries = await index_of(self.runtime, request.ready)
            models = [pb.RepositoryIndexResponse.ModelIndex(**vars(e)) for e in entries]
            return pb.RepositoryIndexResponse(models=models)

        return await self._manage(context, "grpc_repository_index", "", act)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def act() -> Any:
            params = {key: _value(value) for key, value in request.parameters.items()}
            config, files = load_parameters(params, decode=False)
            await repository(self.runtime).load(request.model_name, config, files or None)
            return pb.RepositoryModelLoadResponse()

        return await self._manage(context, "grpc_repository_load", request.model_name, act)

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        async def act() -> Any:
            await repository(self.runtime).unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._manage(context, "grpc_repository_unload", request.model_name, act)
