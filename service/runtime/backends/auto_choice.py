"""``auto``: the backend measured fastest for this model on this host, and the choice remembered between starts.

No fixed order is right everywhere: on a small shared CPU host OpenVINO, ONNX Runtime and eager torch trade places
from model to model and from run to run. So at load every candidate the device can run is built (through the
export cache) and checked against the eager model, then timed on the model's warm-up input in interleaved rounds
(A, B, C, then B, C, A, ...: a noisy neighbour slows every candidate alike rather than one of them), and the
lowest median wins; a tie goes to the earlier candidate of the device's list. A candidate that fails to build or
to check is skipped with its reason.

The choice is kept in ``auto-choices.json`` in the export cache directory, keyed by the host (CPU model and count,
threads, device, every candidate library's version) and the model (weights digest, input shape, batch size,
precision), so the next start builds only the remembered backend. A file that does not parse, or an entry that
names another host or model (a copied cache), is ignored and measured afresh; ``remeasure`` forces a measurement.
Two processes writing at once may lose one entry (the file is replaced whole): that model is measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from service.runtime.backends.base import BackendError, BackendSpec, BuildRequest, Runner

log = logging.getLogger(__name__)

REMEMBERED = "auto-choices.json"
FORMAT = 1
TIMING_BATCH = 1
"""The batch timed: a single request's latency, what decides the first answers and light traffic."""
MIN_ROUNDS, MAX_ROUNDS = 3, 15
BUDGET_S = 2.0
"""Rounds continue past ``MIN_ROUNDS`` until this much time was spent timing (per model)."""


def time_interleaved(
    runners: Mapping[str, Runner],
    x: torch.Tensor,
    budget_s: float = BUDGET_S,
    sync: Callable[[], None] = lambda: None,
) -> tuple[dict[str, float], int]:
    """Median seconds per run of each runner on ``x`` over interleaved rounds, and the number of rounds.

    Each runner runs once untimed first (lazy allocations, thread pools starting). ``sync`` waits for the device
    (CUDA runs asynchronously). A round longer than the whole budget ends the timing after ``MIN_ROUNDS``."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        runners[name].run(x)
    sync()
    started, rounds = time.perf_counter(), 0
    while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and time.perf_counter() - started < budget_s):
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            runners[name].run(x)
            sync()
            samples[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}, rounds


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_fingerprint(request: BuildRequest, versions: Mapping[str, str]) -> dict[str, Any]:
    """What decides the ranking on this host: the hardware, the threads, and the libraries (JSON-native values)."""
    device = request.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "threads": request.threads,
        "device": device.type,
        "gpu": gpu,
        "torch": torch.__version__,
        "versions": dict(sorted(versions.items())),
    }


def model_fingerprint(request: BuildRequest) -> dict[str, Any]:
    return {
        "weights": request.weights_digest,
        "input_shape": list(request.input_shape),
        "max_batch_size": request.max_batch_size,
        "precision": str(request.autocast_dtype or "fp32"),
        "channels_last": request.channels_last,
    }


class RememberedChoices:
    """The ``auto-choices.json`` of one export cache directory."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / REMEMBERED

    @staticmethod
    def key(host: dict[str, Any], model: dict[str, Any]) -> str:
        blob = json.dumps({"host": host, "model": model}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def recall(self, host: dict[str, Any], model: dict[str, Any]) -> dict[str, Any] | None:
        """The remembered entry for this host and model, or None (none, unreadable, or made for another)."""
        entry = self._entries().get(self.key(host, model))
        if not isinstance(entry, dict) or not isinstance(entry.get("backend"), str):
            return None
        if entry.get("host") != host or entry.get("model") != model:  # a foreign entry under our key: not ours
            log.warning("remembered backend choice in %s names another host or model: measuring again", self.path)
            return None
        return entry

    def remember(self, host: dict[str, Any], model: dict[str, Any], entry: dict[str, Any]) -> None:
        entries = self._entries()
        entries[self.key(host, model)] = {**entry, "host": host, "model": model}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{REMEMBERED}-", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT, "entries": entries}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only cache: the next start measures again, nothing worse
            log.warning("cannot remember the backend choice in %s: %s", self.path, exc)

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the remembered backend choices in %s (%s): measuring again", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            log.warning("ignoring the remembered backend choices in %s: not our format", self.path)
            return {}
        entries: dict[str, Any] = data["entries"]
        return entries


def _ms(medians: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in medians.items())


def _recalled(entry: dict[str, Any]) -> str:
    medians = entry.get("medians_ms")
    numbers = {n: v for n, v in medians.items() if isinstance(v, int | float)} if isinstance(medians, dict) else {}
    ranked = sorted(numbers.items(), key=lambda kv: kv[1])
    detail = ", ".join(f"{name} {value} ms" for name, value in ranked)
    return f"{entry['backend']}, remembered from the measurement of {entry.get('measured', '?')} (medians {detail})"


def choose_auto(
    request: BuildRequest,
    root: Path,
    candidates: Sequence[str],
    specs: Mapping[str, BackendSpec],
    build: Callable[[str], Runner],
    remeasure: bool = False,
    budget_s: float = BUDGET_S,
) -> tuple[Runner, str, str]:
    """The runner ``auto`` serves, its backend name and the note saying why (remembered, or the medians).

    ``build(name)`` builds and checks one candidate (raising ``BackendError`` when it cannot serve)."""
    where = f"auto on {request.device.type}"
    skipped = [f"{n}: {r}" for n in candidates if (r := specs[n].unavailable_reason(request.device.type))]
    available = [n for n in candidates if specs[n].unavailable_reason(request.device.type) is None]
    if not available:
        raise BackendError(f"no backend can run on {request.device.type}: {'; '.join(skipped)}")
    if len(available) == 1:  # nothing to compare (nor to remember)
        tail = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        return build(available[0]), available[0], f"{where}: {available[0]}, the only candidate installed{tail}"
    host = host_fingerprint(request, {n: specs[n].version() for n in available})
    model = model_fingerprint(request)
    remembered = RememberedChoices(root)
    entry = None if remeasure else remembered.recall(host, model)
    if entry is not None and entry["backend"] in available:
        try:
            return build(entry["backend"]), entry["backend"], f"{where}: {_recalled(entry)}"
        except BackendError as exc:
            log.warning("remembered backend %s no longer serves (%s): measuring again", entry["backend"], exc.message)
    runners: dict[str, Runner] = {}
    for name in available:
        try:
            runners[name] = build(name)
        except BackendError as exc:
            log.warning("%s: skipping %s: %s", where, name, exc.message)
            skipped.append(f"{name}: {exc.message}")
    tail = f" (skipped: {'; '.join(skipped)})" if skipped else ""
    if not runners:
        raise BackendError(f"no backend could serve on {request.device.type}: {'; '.join(skipped)}")
    if len(runners) == 1:
        (name,) = runners
        return runners[name], name, f"{where}: {name}, the only candidate that serves{tail}"
    sync = (lambda: torch.cuda.synchronize(request.device)) if request.device.type == "cuda" else (lambda: None)
    x = torch.zeros((TIMING_BATCH, *request.input_shape))
    medians, rounds = time_interleaved(runners, x, budget_s, sync)
    best = min(runners, key=lambda n: (medians[n], available.index(n)))
    what = "x".join(map(str, request.input_shape))
    log.info(
        "%s for %s: medians %s (%d rounds, batch %d): chose %s", where, what, _ms(medians), rounds, TIMING_BATCH, best
    )
    measured = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    medians_ms = {n: round(s * 1000, 3) for n, s in medians.items()}
    remembered.remember(host, model, {"backend": best, "medians_ms": medians_ms, "measured": measured})
    return runners[best], best, f"{where}: fastest of median {_ms(medians)} over {rounds} rounds{tail}"
