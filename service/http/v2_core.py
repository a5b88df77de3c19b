"""The Open Inference Protocol (KServe V2) model behind both fronts: one V2 model per served modality, named after
it, answering through the same ``ServiceRuntime`` path as ``/classify`` and ``/embed`` (cache, decoder pool,
batcher, workers, limits, metrics).

Inputs (exactly one): ``FILE``, BYTES ``[N]``, the raw files (decoded server-side by the modality's adapter; N
files form N items of the same batch), or ``MAP``, FP32 ``[N, C, H, W]``, maps already preprocessed to the served
input shape. Outputs: ``PROBABILITIES``, FP32 ``[N, num_classes]`` (softmax, or sigmoid for multi-label sets), or
with the classification extension (``parameters: {"classification": k}``) BYTES ``[N, k]`` of
``"score:index:label"``; and ``EMBEDDING``, FP32 ``[N, dim]``. Without requested outputs both are returned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modality_adapters import adapter_class, list_adapters
from servable.served import ServedModel
from service.http.v2_tensors import Tensor
from service.runtime.outcome import Outcome
from service.runtime.serving import ServiceRuntime
from unirep_errors import InputError

FILE_INPUT = "FILE"
MAP_INPUT = "MAP"
PROBABILITIES = "PROBABILITIES"
EMBEDDING = "EMBEDDING"
OUTPUTS = (PROBABILITIES, EMBEDDING)
MODEL_VERSION = "1"
MAX_ITEMS = 64
SERVER_NAME = "unirep"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["classification", "binary_tensor_data"]


@dataclass
class RequestedOutput:
    name: str
    classification: int = 0
    binary: bool | None = None


@dataclass
class V2Answer:
    outputs: list[Tensor]
    parameters: dict[str, Any]
    model_version: str = MODEL_VERSION
    """The version that answered."""


def served_for(runtime: ServiceRuntime, model: str, version: str | None) -> ServedModel:
    """The loaded model a V2 name (and optional version; the highest without) refers to; 404 otherwise."""
    if not runtime.table.versions(model) and model in list_adapters():
        runtime.served_model(model)  # a modality's default model: the service's 404 / 503 with its message
    return runtime.table.resolve(model, version)


def model_metadata(served: ServedModel, versions: list[str] | None = None) -> dict[str, Any]:
    """A model's V2 metadata; ``versions``: every loaded version of its name (default: its own)."""
    return {
        "name": served.model_name,
        "versions": versions or [served.model_version],
        "platform": "pytorch",
        "inputs": [
            {"name": FILE_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": MAP_INPUT, "datatype": "FP32", "shape": [-1, *served.input_shape]},
        ],
        "outputs": [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, served.num_classes]},
            {"name": EMBEDDING, "datatype": "FP32", "shape": [-1, served.embedding_dim]},
        ],
        "parameters": {
            "modality": served.modality,
            "model": served.name,
            "weights": served.weights.source,
            "weights_random": served.weights.is_random,
            "label_set": served.config.label_set,
            "multi_label": served.config.multi_label,
            "preprocess": served.params,
        },
    }


def loaded_versions(runtime: ServiceRuntime, name: str) -> list[str]:
    return [str(v) for v in sorted(runtime.table.versions(name))]


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}


def parse_outputs(raw: list[RequestedOutput]) -> list[RequestedOutput]:
    if not raw:
        return [RequestedOutput(name) for name in OUTPUTS]
    seen: set[str] = set()
    for out in raw:
        if out.name not in OUTPUTS:
            raise InputError(f"unknown output {out.name!r}; the outputs are {', '.join(OUTPUTS)}")
        if out.name in seen:
            raise InputError(f"output {out.name!r} is requested twice")
        if out.classification and out.name != PROBABILITIES:
            raise InputError(f"the classification extension applies to {PROBABILITIES}, not {out.name}")
        seen.add(out.name)
    return raw


def classification_k(value: Any) -> int:
    """The extension's ``classification`` parameter: a positive count (0 / absent: the plain tensor)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"the classification parameter must be a positive integer, got {value!r}")
    return value


def _items(served: ServedModel, inputs: list[Tensor]) -> tuple[list[bytes], list[torch.Tensor | None]]:
    """Per-item cache identities and, for MAP, the maps; validates names, datatypes and shapes."""
    if len(inputs) != 1:
        raise InputError(f"send exactly one input, {FILE_INPUT} (BYTES) or {MAP_INPUT} (FP32); got {len(inputs)}")
    tensor = inputs[0]
    if tensor.name == FILE_INPUT:
        if tensor.datatype != "BYTES" or len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ([], [1]):
            raise InputError(
                f"{FILE_INPUT} must be BYTES of shape [N] (or [N, 1]); got {tensor.datatype} {tensor.shape}"
            )
        files: list[bytes] = list(tensor.data)
        _check_count(len(files))
        return files, [None] * len(files)
    if tensor.name == MAP_INPUT:
        want = list(served.input_shape)
        if tensor.datatype != "FP32" or len(tensor.shape) != len(want) + 1 or tensor.shape[1:] != want:
            raise InputError(f"{MAP_INPUT} must be FP32 of shape [N, {', '.join(map(str, want))}]; got {tensor.shape}")
        array = np.asarray(tensor.data, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InputError(f"{MAP_INPUT} contains NaN or infinite values")
        _check_count(array.shape[0])
        maps = [torch.from_numpy(np.array(a, dtype=np.float32)) for a in array]
        return [b"MAP:" + a.tobytes() for a in array], list(maps)
    raise InputError(f"unknown input {tensor.name!r}; the inputs are {FILE_INPUT} (BYTES) and {MAP_INPUT} (FP32)")


def _check_count(n: int) -> None:
    if not 1 <= n <= MAX_ITEMS:
        raise InputError(f"a request holds 1 to {MAX_ITEMS} items; got {n}")


async def infer(
    runtime: ServiceRuntime,
    served: ServedModel,
    inputs: list[Tensor],
    requested: list[RequestedOutput],
    *,
    timeout_ms: float | None,
    cancelled: Callable[[], bool] = lambda: False,
    client: str = "anonymous",
) -> V2Answer:
    """Run every item of the request for every task its outputs need (concurrently, so they batch together); the
    request was admitted by the front door (``service.http.intake``), which named its ``client``."""
    outputs = parse_outputs(requested)
    identities, maps = _items(served, inputs)
    hints = _hints(inputs[0], served.modality)
    # As Triton does, a classification count above the class count returns every class, best first.
    jobs = [
        ("embed", 0) if out.name == EMBEDDING else ("classify", min(out.classification, served.num_classes))
        for out in outputs
    ]
    calls = [
        runtime.infer(
            served.key,
            "embed" if task == "embed" else "classify",
            data,
            top_k=k or None,
            timeout_ms=timeout_ms,
            cancelled=cancelled,
            hints=hints,
            decoded_map=tensor,
            all_classes=task == "classify" and not k,
            client=client,
        )
        for task, k in jobs
        for data, tensor in zip(identities, maps, strict=True)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    outcomes: list[Outcome] = [r for r in results if isinstance(r, Outcome)]
    n = len(identities)
    tensors = [_output(served, out, outcomes[i * n : (i + 1) * n]) for i, out in enumerate(outputs)]
    return V2Answer(tensors, _parameters(served, outcomes), served.model_version)


def _hints(tensor: Tensor, modality: str) -> dict[str, Any]:
    """Decoder params from the input's ``format`` parameter, a file extension: the adapter reads it as it reads an
    upload's file name (e.g. a point cloud's ``ply``); a modality whose decoder sniffs every format ignores it."""
    fmt = tensor.parameters.get("format")
    if isinstance(fmt, str) and fmt:
        return adapter_class(modality).request_hints(f"input.{fmt.lower()}", "")
    return {}


def _output(served: ServedModel, out: RequestedOutput, outcomes: list[Outcome]) -> Tensor:
    n = len(outcomes)
    if out.name == EMBEDDING:
        array = np.asarray([o.result["embedding"] for o in outcomes], dtype=np.float32)
        return Tensor(EMBEDDING, "FP32", [n, served.embedding_dim], array.reshape(n, -1))
    if out.classification:
        rows = [f"{p['score']:f}:{p['index']}:{p['label']}".encode() for o in outcomes for p in o.result["predictions"]]
        return Tensor(PROBABILITIES, "BYTES", [n, len(rows) // max(n, 1)], rows)
    array = np.zeros((n, served.num_classes), dtype=np.float32)
    for row, o in enumerate(outcomes):
        for p in o.result["predictions"]:
            array[row, p["index"]] = p["score"]
    return Tensor(PROBABILITIES, "FP32", [n, served.num_classes], array)


def _parameters(served: ServedModel, outcomes: list[Outcome]) -> dict[str, Any]:
    """Response-level parameters: which weights answered, and the request's timings (max over its items)."""
    return {
        "model": served.name,
        "weights": served.weights.source,
        "weights_random": served.weights.is_random,
        "queue_ms": round(max(o.queue_ms for o in outcomes), 3),
        "preprocess_ms": round(max(o.preprocess_ms for o in outcomes), 3),
        "inference_ms": round(max(o.inference_ms for o in outcomes), 3),
        "batch_size": max(o.batch_size for o in outcomes),
        "cache": "hit" if all(o.cache_hit for o in outcomes) else "miss",
    }


def grpc_front(runtime: ServiceRuntime, auth: Any = None, identity: Any = None) -> AbstractAsyncContextManager[Any]:
    """The gRPC front for the app's lifetime when ``grpc_port`` is set (grpcio is imported only then)."""
    if runtime.settings.grpc_port is None:
        return contextlib.nullcontext()
    from service.http.v2_grpc import serving

    return serving(runtime, auth, identity)
