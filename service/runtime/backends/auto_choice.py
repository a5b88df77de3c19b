"""``auto``: the backend measured fastest for this model on this host, and the choice remembered between starts.

A service starts with ``start_auto``: the remembered choice when there is one; otherwise (or to measure again) the
device's first preferred candidate that builds and checks serves at once, and the measurement of the others is
left to the device worker, after the service is ready (``service.runtime.backend_measure``, through ``measure``).
``choose_auto`` measures before returning (tools, and the tests of the timing itself).

No fixed order is right everywhere: on a small shared CPU host OpenVINO, ONNX Runtime and eager torch trade places
from model to model and from run to run. So every candidate the device can run is built (through the
export cache) and checked against the eager model, then timed on the model's warm-up input in interleaved rounds
(A, B, C, then B, C, A, ...: a noisy neighbour slows every candidate alike rather than one of them), and the
lowest median wins; a tie goes to the earlier candidate of the device's list. A candidate that fails to build or
to check is skipped with its reason.

The choice is kept per host and model in the export cache directory (``remembered``), so the next start builds
only the remembered backend; ``remeasure`` forces a measurement.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from service.runtime.backends.base import BackendError, BackendSpec, BuildRequest, Runner
from service.runtime.backends.remembered import RememberedChoices, host_fingerprint, model_fingerprint

log = logging.getLogger(__name__)

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
    gate: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> tuple[dict[str, float], int]:
    """Median seconds per run of each runner on ``x`` over interleaved rounds, and the number of rounds.

    Each runner runs once untimed first (lazy allocations, thread pools starting). ``sync`` waits for the device
    (CUDA runs asynchronously). A round longer than the whole budget ends the timing after ``MIN_ROUNDS``. Every
    run happens inside ``gate()`` (a measurement beside a serving device waits there for a quiet moment and holds
    the device meanwhile; the waiting is not timed)."""
    names = list(runners)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        with gate():
            runners[name].run(x)
            sync()
    started, rounds = time.perf_counter(), 0
    while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and time.perf_counter() - started < budget_s):
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            with gate():
                t0 = time.perf_counter()
                runners[name].run(x)
                sync()
                samples[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}, rounds


def _ms(medians: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in medians.items())


def _recalled(entry: dict[str, Any]) -> str:
    medians = entry.get("medians_ms")
    numbers = {n: v for n, v in medians.items() if isinstance(v, int | float)} if isinstance(medians, dict) else {}
    ranked = sorted(numbers.items(), key=lambda kv: kv[1])
    detail = ", ".join(f"{name} {value} ms" for name, value in ranked)
    return f"{entry['backend']}, remembered from the measurement of {entry.get('measured', '?')} (medians {detail})"


@dataclass
class Survey:
    """What ``auto`` knows before building anything: the candidates installed, and what was remembered."""

    where: str
    available: list[str]
    skipped: list[str]
    host: dict[str, Any]
    model: dict[str, Any]
    remembered: RememberedChoices
    entry: dict[str, Any] | None
    """The remembered choice for this host and model (None: none, or not among the installed candidates)."""
    failed: list[str] = field(default_factory=list)
    """Candidates that did not build or check, with their reasons: never measured."""

    def tail(self) -> str:
        skipped = self.skipped + self.failed
        return f" (skipped: {'; '.join(skipped)})" if skipped else ""


def survey(request: BuildRequest, root: Path, candidates: Sequence[str], specs: Mapping[str, BackendSpec]) -> Survey:
    where = f"auto on {request.device.type}"
    skipped = [f"{n}: {r}" for n in candidates if (r := specs[n].unavailable_reason(request.device.type))]
    available = [n for n in candidates if specs[n].unavailable_reason(request.device.type) is None]
    if not available:
        raise BackendError(f"no backend can run on {request.device.type}: {'; '.join(skipped)}")
    remembered, host, model, entry = RememberedChoices(root), {}, {}, None
    if len(available) > 1:  # one candidate: nothing to compare nor remember (nor to ask the device about)
        host = host_fingerprint(request, {n: specs[n].version() for n in available})
        model = model_fingerprint(request)
        entry = remembered.recall(host, model)
    if entry is not None and entry["backend"] not in available:
        entry = None
    return Survey(where, available, skipped, host, model, remembered, entry)


def measure(
    known: Survey,
    request: BuildRequest,
    runners: Mapping[str, Runner],
    budget_s: float = BUDGET_S,
    gate: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> tuple[str, str]:
    """Time ``runners`` (two or more), remember the fastest; its name and the note with the medians."""
    sync = (lambda: torch.cuda.synchronize(request.device)) if request.device.type == "cuda" else (lambda: None)
    x = torch.zeros((TIMING_BATCH, *request.input_shape))
    medians, rounds = time_interleaved(runners, x, budget_s, sync, gate)
    best = min(runners, key=lambda n: (medians[n], known.available.index(n)))
    what = "x".join(map(str, request.input_shape))
    log.info(
        "%s for %s: medians %s (%d rounds, batch %d): chose %s",
        known.where,
        what,
        _ms(medians),
        rounds,
        TIMING_BATCH,
        best,
    )
    measured = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    medians_ms = {n: round(s * 1000, 3) for n, s in medians.items()}
    known.remembered.remember(
        known.host, known.model, {"backend": best, "medians_ms": medians_ms, "measured": measured}
    )
    return best, f"{known.where}: fastest of median {_ms(medians)} over {rounds} rounds{known.tail()}"


def _build_or_skip(known: Survey, name: str, build: Callable[[str], Runner]) -> Runner | None:
    try:
        return build(name)
    except BackendError as exc:
        log.warning("%s: skipping %s: %s", known.where, name, exc.message)
        known.failed.append(f"{name}: {exc.message}")
        return None


def choose_auto(
    request: BuildRequest,
    root: Path,
    candidates: Sequence[str],
    specs: Mapping[str, BackendSpec],
    build: Callable[[str], Runner],
    remeasure: bool = False,
    budget_s: float = BUDGET_S,
) -> tuple[Runner, str, str]:
    """The runner ``auto`` serves, its backend name and the note saying why (remembered, or the medians), measured
    before it returns. ``build(name)`` builds and checks one candidate (raising ``BackendError`` when it cannot)."""
    known = survey(request, root, candidates, specs)
    if len(known.available) == 1:  # nothing to compare (nor to remember)
        (name,) = known.available
        return build(name), name, f"{known.where}: {name}, the only candidate installed{known.tail()}"
    if known.entry is not None and not remeasure:
        try:
            return build(known.entry["backend"]), known.entry["backend"], f"{known.where}: {_recalled(known.entry)}"
        except BackendError as exc:
            log.warning(
                "remembered backend %s no longer serves (%s): measuring again", known.entry["backend"], exc.message
            )
    runners = {
        n: r for n in known.available if n not in _names(known.failed) and (r := _build_or_skip(known, n, build))
    }
    if not runners:
        raise BackendError(
            f"no backend could serve on {request.device.type}: {'; '.join(known.skipped + known.failed)}"
        )
    if len(runners) == 1:
        ((name, runner),) = runners.items()
        return runner, name, f"{known.where}: {name}, the only candidate that serves{known.tail()}"
    best, note = measure(known, request, runners, budget_s)
    return runners[best], best, note


def _names(reasons: Sequence[str]) -> set[str]:
    return {reason.split(":", 1)[0] for reason in reasons}


@dataclass
class AutoStart:
    runner: Runner
    name: str
    note: str
    pending: Survey | None
    """Set when the other candidates are still to be measured (``to_measure``), after the service is ready."""

    def to_measure(self) -> list[str]:
        """The candidates to build and time beside the one serving (the failed ones excluded)."""
        if self.pending is None:
            return []
        failed = _names(self.pending.failed)
        return [n for n in self.pending.available if n != self.name and n not in failed]


def start_auto(
    request: BuildRequest,
    root: Path,
    candidates: Sequence[str],
    specs: Mapping[str, BackendSpec],
    build: Callable[[str], Runner],
    remeasure: bool = False,
    serve_cold: str | None = None,
) -> AutoStart:
    """What ``auto`` serves at once: the remembered choice (nothing measured), or, with none or with ``remeasure``,
    the remembered choice or else ``serve_cold`` (a candidate that is quick to build: eager needs no export) or
    the device's first preferred candidate that builds and checks, with the other candidates left to measure
    (``AutoStart.pending``). Only the backend served is built here."""
    known = survey(request, root, candidates, specs)
    if len(known.available) == 1:
        (name,) = known.available
        return AutoStart(build(name), name, f"{known.where}: {name}, the only candidate installed{known.tail()}", None)
    if known.entry is not None:
        first = [known.entry["backend"]]
    else:
        first = [serve_cold] if serve_cold in known.available else []
    for name in first + [n for n in known.available if n not in first]:
        runner = _build_or_skip(known, name, build)
        if runner is None:
            continue
        if known.entry is not None and name == known.entry["backend"]:
            note = f"{known.where}: {_recalled(known.entry)}"
            if not remeasure:
                return AutoStart(runner, name, note, None)
        elif name == serve_cold:
            note = f"{known.where}: {name} at once (no export to wait for)"
        else:
            note = f"{known.where}: {name}, the first preferred candidate that serves"
        started = AutoStart(runner, name, note, known)
        others = started.to_measure()
        if not others:
            started.note, started.pending = f"{known.where}: {name}, the only candidate that serves{known.tail()}", None
            return started
        started.note += f"; measuring {', '.join(others)} in the background{known.tail()}"
        return started
    raise BackendError(f"no backend could serve on {request.device.type}: {'; '.join(known.skipped + known.failed)}")
