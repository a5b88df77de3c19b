"""A device worker: deploy-form copies of every served model on one device, running batches synchronously.

It is transport-agnostic on purpose: ``LocalTransport`` calls ``execute`` from a thread, and a Redis Streams
worker process calls the same method on batches it read from a stream. On CUDA the worker uses channels_last and
bf16 autocast (fp16 where bf16 is unsupported): ``devices.choose_precision``. Every (model, shape) bucket is run
at every batch size during ``warmup`` (cuDNN picks its algorithms per shape), and the measured latencies seed the
batcher's deadline estimates.

A model on ``auto`` with no remembered backend serves its first preferred candidate at once; the others are
measured once it is warm, in the background, and the fastest swapped in between batches: the worker's side of that
(device lock, idle tracking, pending measurements, the switch) is ``backend_measure.BackgroundSwitching``.

One bad item never fails its batch-mates: if a batch raises, its items are retried one by one and only the
items that fail again get an error.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import deque

import torch
from torch import nn

from servable.served import ServedModel
from service.runtime.backend_measure import BackgroundSwitching, Pending
from service.runtime.backends import BuildRequest, Choice, ExportCache, Runner, start_runner, weights_digest
from service.runtime.devices import choose_precision
from service.runtime.work import Batch, BatchItem, BatchResult, ItemResult
from unirep_errors import ClientDisconnectedError, DeadlineExceededError, UnirepError

log = logging.getLogger(__name__)

WARM_QUIET_S = 1.0
"""Idle time after which a device warms one cold batch size (a request arriving meanwhile waits for that one)."""


class DeviceWorker(BackgroundSwitching):
    """Every served model, on one device, in deploy form and eval mode."""

    def __init__(
        self,
        device: torch.device,
        models: dict[str, ServedModel],
        precision: str = "auto",
        inference_delay_s: float = 0.0,
        warmup_enabled: bool = True,
        backend_cache: ExportCache | None = None,
        threads: int | None = None,
        remeasure_backends: bool = False,
    ) -> None:
        self.device = device
        self.device_name = str(device)
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.precision = choose_precision(device.type, precision, bf16)
        self.served: dict[str, ServedModel] = {}
        self.modules: dict[str, nn.Module] = {}
        self.runners: dict[str, Runner] = {}
        self.backends: dict[str, Choice] = {}
        self.cache = backend_cache or ExportCache(None)
        self.threads = threads
        self.remeasure_backends = remeasure_backends
        """``auto``: measure the candidates even where a choice is remembered."""
        self.start_background(self.cache)
        for key, served in models.items():
            self.install(key, served)
        self.inference_delay_s = inference_delay_s
        self.warmup_enabled = warmup_enabled
        self.latency: dict[tuple[str, tuple[int, ...]], float] = {}
        """Warm-up latency of a full batch per bucket (seconds): seeds the batcher's estimates."""
        self.cold: deque[tuple[str, int]] = deque()
        """(serving key, batch size) not run yet: warmed one at a time, between batches (``warm_next``)."""
        self.ran: set[tuple[str, int]] = set()
        """(serving key, batch size) a real batch ran: warm already."""
        self.latency_one: dict[tuple[str, tuple[int, ...]], float] = {}
        """Warm-up latency of a batch of one per bucket: with ``latency``, the two ends of the estimate."""
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def install(self, key: str, served: ServedModel) -> None:
        """Place a model on this device under ``key``: its module, and its backend (a compiled view of the module,
        built or loaded from the export cache and checked against it). Other keys keep serving meanwhile."""
        if served.module is None:
            raise ValueError(f"{key} is served elsewhere (no module here): a device worker needs the model")
        module = served.module if self.device.type == "cpu" else copy.deepcopy(served.module)
        module = module.to(self.device).eval()
        if self.precision.channels_last:
            module = module.to(memory_format=torch.channels_last)
        request = self._request(served, module)
        started = start_runner(served.config.backend, request, self.cache, self.remeasure_backends)
        choice = Choice(started.name, started.note)
        log.info("[%s] backend %s on %s (%s)", served.modality, choice.name, self.device_name, choice.reason)
        if started.pending is not None:
            self.pending[key] = Pending(key, served, request, started)
        self.modules[key], self.runners[key], self.backends[key] = module, started.runner, choice
        self.served[key] = served  # last: a model is visible to warm-up and batches only once it is complete

    def uninstall(self, key: str) -> None:
        """Release a model no batch uses any more (its bucket has drained)."""
        for table in (self.served, self.modules, self.runners, self.backends, self.pending):
            table.pop(key, None)
        for latencies in (self.latency, self.latency_one):
            for bucket in [b for b in latencies if b[0] == key]:
                del latencies[bucket]

    def _request(self, served: ServedModel, module: nn.Module) -> BuildRequest:
        return BuildRequest(
            module=module,
            input_shape=served.input_shape,
            device=self.device,
            max_batch_size=served.config.max_batch_size,
            threads=self.threads,
            cache_dir=self.cache.root,
            weights_digest=weights_digest(module),
            autocast_dtype=self.precision.autocast_dtype,
            channels_last=self.precision.channels_last,
        )

    def warmup(self, background: bool = False) -> None:
        """Run every bucket at every batch size 1..max_batch_size once, before the worker reports ready (with
        ``background``, sizes 1 and the largest before, the others later: ``warm_next``)."""
        with self.warming_all():
            for key in list(self.served):
                self.warm(key, background)

    def warm(self, key: str, background: bool = False) -> None:
        """Run one model's bucket at every batch size (or 1 without warm-up) and measure its batch latencies.

        ``background``: only batch sizes 1 and the largest now (what the latency estimates need), the others queued
        in ``cold`` for ``warm_next``, which the device's own thread runs when no batch waits: the model answers
        seconds sooner, and a batch of a cold size runs at worst once more slowly."""
        served = self.served[key]
        shape = served.input_shape
        every = list(range(1, served.config.max_batch_size + 1)) if self.warmup_enabled else [1]
        sizes = sorted({1, every[-1]}) if background else every
        for size in sizes:
            self._forward(key, torch.zeros((size, *shape)))
        self.cold.extend((key, size) for size in every if size not in sizes)
        # The estimate that seeds the batcher: best of 3 at the largest size, so one-time initialization and the
        # decoder processes starting beside us do not inflate it.
        largest = self._best_of(3, key, shape, sizes[-1])
        self.latency[(key, tuple(shape))] = largest
        self.latency_one[(key, tuple(shape))] = self._best_of(3, key, shape, 1) if sizes[-1] > 1 else largest
        log.info(
            "warmed %s %s on %s (batch sizes 1..%d, %s, %s): %.1f ms at the largest",
            key,
            "x".join(map(str, shape)),
            self.device_name,
            max(sizes),
            self.backends[key].name,
            self.precision.name,
            largest * 1000,
        )
        self.last_active = time.monotonic()
        self.measure_later(key)

    def quiet_for(self) -> float | None:
        """Seconds until the device has been idle ``WARM_QUIET_S`` and may warm a cold size (0: now); None when
        nothing is cold. Under traffic it never warms: the batches themselves run (and so warm) the sizes."""
        if not self.cold:
            return None
        return max(0.0, self.last_active + WARM_QUIET_S - time.monotonic())

    def warm_next(self) -> bool:
        """Run one cold (model, batch size) once; False when every one is warm. Called between batches."""
        while self.cold:
            key, size = self.cold.popleft()
            served = self.served.get(key)
            if served is None or (key, size) in self.ran:
                continue  # released meanwhile, or a batch of that size already ran
            try:
                self._forward(key, torch.zeros((size, *served.input_shape)))
            except Exception:  # released while running: nothing is left to warm for it
                log.debug("background warm-up of %s at batch size %d skipped", key, size, exc_info=True)
            if not self.cold:
                log.info("every batch size of every model is warm on %s", self.device_name)
            return True
        return False

    def _best_of(self, runs: int, key: str, shape: tuple[int, ...], size: int) -> float:
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            self._forward(key, torch.zeros((size, *shape)))
            self._sync()
            timings.append(time.perf_counter() - start)
        return min(timings)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def _forward(self, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.device_lock:
            features, logits = self.runners[modality].run(x)
        served = self.served[modality]
        scores = torch.sigmoid(logits.float()) if served.config.multi_label else torch.softmax(logits.float(), -1)
        return features.float(), scores

    def execute(self, batch: Batch) -> BatchResult:
        """Run a batch: skip dead items, stack, forward once, postprocess each item (errors per item)."""
        with self.running_batch():
            return self._execute(batch)

    def _execute(self, batch: Batch) -> BatchResult:
        started = time.time()
        t0 = time.perf_counter()
        results: dict[str, ItemResult] = {}
        live: list[BatchItem] = []
        for item in batch.items:
            if item.is_cancelled is not None and item.is_cancelled():
                results[item.item_id] = ItemResult(item.item_id, error=ClientDisconnectedError("client disconnected"))
            elif item.deadline is not None and started > item.deadline:
                results[item.item_id] = ItemResult(
                    item.item_id, error=DeadlineExceededError("deadline passed before compute", stage="worker")
                )
            else:
                live.append(item)
        if live:
            if self.inference_delay_s:
                time.sleep(self.inference_delay_s)
            try:
                outputs = self._run(batch.modality, live)
            except Exception:
                log.exception("batch of %d %s items failed; retrying them one by one", len(live), batch.modality)
                outputs = {}
                for item in live:
                    try:
                        outputs.update(self._run(batch.modality, [item]))
                    except UnirepError as exc:
                        outputs[item.item_id] = ItemResult(item.item_id, error=exc)
                    except Exception as exc:
                        outputs[item.item_id] = ItemResult(
                            item.item_id, error=UnirepError(f"the model failed on this item: {type(exc).__name__}")
                        )
            results.update(outputs)
        self._sync()
        return BatchResult(
            batch_id=batch.batch_id,
            device=self.device_name,
            started_at=started,
            inference_s=time.perf_counter() - t0,
            batch_size=len(live),
            items=[results[item.item_id] for item in batch.items],
        )

    def _run(self, modality: str, items: list[BatchItem]) -> dict[str, ItemResult]:
        x = torch.stack([item.tensor for item in items])
        self.ran.add((modality, len(items)))
        if self.device.type == "cuda":
            x = x.pin_memory()
        features, scores = self._forward(modality, x)
        kmax = max((item.top_k for item in items if item.task == "classify"), default=0)
        top_values: list[list[float]] = []
        top_indices: list[list[int]] = []
        if kmax:
            values, indices = torch.topk(scores, min(kmax, scores.shape[-1]), dim=-1)
            top_values, top_indices = values.cpu().tolist(), indices.cpu().tolist()
        features_cpu = features.cpu() if any(item.task == "embed" for item in items) else None
        out: dict[str, ItemResult] = {}
        for i, item in enumerate(items):
            if item.task == "classify":
                k = item.top_k
                out[item.item_id] = ItemResult(
                    item.item_id, scores=list(zip(top_indices[i][:k], top_values[i][:k], strict=True))
                )
            else:
                assert features_cpu is not None
                out[item.item_id] = ItemResult(item.item_id, embedding=features_cpu[i].tolist())
        return out

    def memory_stats(self) -> tuple[int, int] | None:
        """(allocated, peak allocated) bytes on a CUDA device; None on CPU."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.memory_allocated(self.device), torch.cuda.max_memory_allocated(self.device)
