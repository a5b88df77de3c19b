"""The Open Inference Protocol (KServe V2) over gRPC: the standard ``inference.GRPCInferenceService`` on its own
port (``grpc_port``; off unless set), with the same models and semantics as the REST front (``v2_core``).

The message and service classes are the ones ``tritonclient[grpc]`` ships, generated from the protocol's own
``grpc_service.proto``: the wire format is the standard's, with no protoc step here. The health, metadata, infer and
model repository methods are served; the others answer UNIMPLEMENTED (the servicer base class's default).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from service.http import v2_core as core
from service.http.client_identity import ClientIdentity
from service.http.grpc_door import abort, grpc_door
from service.http.intake import Admitted, Caller, Intake
from service.http.v2_grpc_repository import RepositoryMethods
from service.http.v2_request import off_loop
from service.http.v2_tensors import Tensor, element_count, tensor_bytes, tensor_from_raw, tensor_from_values
from service.runtime.serving import ServiceRuntime
from unirep_errors import InputError, UnirepError

log = logging.getLogger(__name__)

INLINE_VALUES = 65_536
"""Typed values converted on the event loop (a few milliseconds); more go to a thread."""
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _param(value: Any) -> Any:
    """A protocol ``InferParameter`` as a Python value."""
    which = value.WhichOneof("parameter_choice")
    return getattr(value, which) if which else None


def _set_param(target: Any, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    else:
        target.string_param = str(value)


def _input(given: Any, raw: bytes | None) -> Tensor:
    params = {k: _param(v) for k, v in given.parameters.items()}
    shape = [int(d) for d in given.shape]
    if raw is not None:
        return tensor_from_raw(given.name, given.datatype, shape, raw, params)
    if given.datatype == "BYTES":
        elements = list(given.contents.bytes_contents)
        if len(elements) != element_count(shape, given.name):
            raise InputError(f"input {given.name!r}: {len(elements)} BYTES elements for shape {shape}")
        return Tensor(given.name, "BYTES", shape, elements, params)
    field = _CONTENTS.get(given.datatype)
    if field is None:
        raise InputError(f"input {given.name!r}: datatype {given.datatype[:40]!r} has no contents field; send raw")
    return tensor_from_values(given.name, given.datatype, shape, getattr(given.contents, field), params)


async def read_inputs(request: Any) -> list[Tensor]:
    """The request's input tensors; converted off the event loop when their typed contents are large (turning
    millions of protobuf values into an array takes seconds)."""
    values = sum(len(getattr(given.contents, field)) for given in request.inputs for field in set(_CONTENTS.values()))
    if values <= INLINE_VALUES:
        return _inputs(request)
    return await off_loop(_inputs, request)


def _inputs(request: Any) -> list[Tensor]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InputError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    return [_input(given, raw[i] if raw else None) for i, given in enumerate(request.inputs)]


class InferenceServicer(RepositoryMethods, pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runtime: ServiceRuntime, auth: Any = None, identity: ClientIdentity | None = None) -> None:
        self.runtime = runtime
        self.auth = auth
        self.identity = identity or ClientIdentity()

    async def _fail(self, context: grpc.aio.ServicerContext, exc: UnirepError) -> None:
        await abort(context, exc)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        meta = core.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        try:
            core.served_for(self.runtime, request.name, request.version)
        except UnirepError as exc:
            await self._fail(context, exc)
        return pb.ModelReadyResponse(ready=self.runtime.ready)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        try:
            served = core.served_for(self.runtime, request.name, request.version)
            meta = core.model_metadata(served, core.loaded_versions(self.runtime, request.name))
        except UnirepError as exc:
            await self._fail(context, exc)
        tensors = {
            key: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta[key]] for key in ("inputs", "outputs")
        }
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"], **tensors
        )

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        intake = Intake(self.runtime, self.auth, self.identity, "grpc_infer", request.model_name)

        def admit(caller: Caller) -> Awaitable[Admitted]:
            return intake.admit(
                caller, lambda: core.served_for(self.runtime, request.model_name, request.model_version)
            )

        answer = await grpc_door(intake, context, admit, lambda admitted: self._infer(request, admitted, context))
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=answer.model_version, id=request.id
        )
        for key, value in answer.parameters.items():
            _set_param(response.parameters[key], value)
        for tensor in answer.outputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(tensor_bytes(tensor))
        return response

    async def _infer(self, request: Any, admitted: Admitted, context: grpc.aio.ServicerContext) -> core.V2Answer:
        inputs = await read_inputs(request)
        requested = [
            core.RequestedOutput(
                out.name,
                core.classification_k(_param(out.parameters["classification"]))
                if "classification" in out.parameters
                else 0,
            )
            for out in request.outputs
        ]
        return await core.infer(
            self.runtime,
            admitted.served,
            inputs,
            requested,
            timeout_ms=admitted.timeout_ms,
            cancelled=lambda: context.cancelled(),
            client=admitted.client,
        )


@contextlib.asynccontextmanager
async def serving(
    runtime: ServiceRuntime, auth: Any = None, identity: ClientIdentity | None = None
) -> AsyncIterator[grpc.aio.Server | None]:
    """Run the gRPC front for the app's lifetime when ``grpc_port`` is set; nothing otherwise."""
    settings = runtime.settings
    if settings.grpc_port is None:
        yield None
        return
    limit = settings.max_body_bytes + 2**20
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", 256 * 2**20)]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(runtime, auth, identity), server)
    address = f"{settings.host}:{settings.grpc_port}"
    server.add_insecure_port(address)
    await server.start()
    log.info("Open Inference Protocol gRPC on %s", address)
    try:
        yield server
    finally:
        await server.stop(grace=5.0)
