"""``auto`` on a cold start: the first preferred candidate serves at once and the others are measured after the
service is ready, then the fastest is swapped in between batches and remembered.

A real device worker, transport and small model; two fake backends stand in for the compiled ones: both give the
eager model's outputs (so they pass the start-up check and every answer can be compared with eager), the
preferred one 30 ms slower per run, and the other one's build held back until the test lets it go, so that
"ready before the measurement is done" is shown, not raced.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import torch

from servable.served import ServedModel
from service.metrics import Metrics
from service.runtime import backend_measure
from service.runtime.backends import BuildRequest, ExportCache, Runner, registry
from service.runtime.backends.base import BackendSpec
from service.runtime.backends.torch_backend import TorchRunner
from service.runtime.device_worker import DeviceWorker
from service.runtime.transport import LocalTransport
from service.runtime.work import Batch, BatchItem, new_id
from tests.service.test_backends import request_for, served_model

SLOW_S = 0.03


class EagerAfter(Runner):
    """The eager model's outputs after ``delay`` seconds; ``hold`` (when set) keeps a run inside until released."""

    def __init__(self, name: str, request: BuildRequest, delay: float) -> None:
        self.name, self.eager, self.delay = name, TorchRunner(request), delay
        self.runs = 0
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.runs += 1
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(30)
        time.sleep(self.delay)
        return self.eager.run(x)


class FakeSpec(BackendSpec):
    devices = ("cpu",)

    def __init__(self, name: str, delay: float, release: threading.Event | None = None) -> None:
        self.name, self.delay, self.release = name, delay, release
        self.runners: list[EagerAfter] = []

    def unavailable_reason(self, device_type: str) -> str | None:
        return None

    def version(self) -> str:
        return "1.0"

    def build(self, request: BuildRequest, cache: ExportCache) -> Runner:
        if self.release is not None:
            assert self.release.wait(60), "the test never released the build"
        runner = EagerAfter(self.name, request, self.delay)
        self.runners.append(runner)
        return runner


Fakes = tuple[dict[str, FakeSpec], threading.Event]


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    release = threading.Event()
    table = {"slowpref": FakeSpec("slowpref", SLOW_S), "fastother": FakeSpec("fastother", 0.0, release)}
    monkeypatch.setattr(registry, "SPECS", table)
    monkeypatch.setitem(registry.AUTO_ORDER, "cpu", ("slowpref", "fastother"))
    monkeypatch.setattr(backend_measure, "QUIET_S", 0.05)
    return table, release


def new_worker(served: ServedModel, cache: Path, **kw: object) -> DeviceWorker:
    return DeviceWorker(
        torch.device("cpu"), {"timeseries": served}, "fp32", backend_cache=ExportCache(cache), threads=1, **kw
    )


async def embed(transport: LocalTransport, served: ServedModel, x: torch.Tensor) -> torch.Tensor:
    """One request through the transport, as the batcher sends it; its embedding, checked against eager."""
    batch = Batch("timeseries", served.input_shape, [BatchItem(new_id(), x, "embed", 1, time.time())], 4)
    await transport.reserve()
    result = await transport.execute(batch)
    (item,) = result.items
    assert item.error is None and item.embedding is not None
    return torch.tensor(item.embedding)


def eager_features(served: ServedModel, x: torch.Tensor) -> torch.Tensor:
    return TorchRunner(request_for(served)).run(x.unsqueeze(0))[0][0]


async def wait_for(condition: object, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


def test_a_cold_start_is_ready_before_measuring_then_switches_and_remembers(tmp_path: Path, fakes: Fakes) -> None:
    specs, release = fakes
    served = served_model("timeseries")
    worker = new_worker(served, tmp_path)
    transport = LocalTransport([worker], Metrics())
    inputs = [torch.randn(served.input_shape, generator=torch.Generator().manual_seed(i)) for i in range(40)]
    expected = [eager_features(served, x) for x in inputs]

    async def body() -> list[int]:
        await transport.start()
        assert transport.ready and not worker.measurer.idle()  # ready, and the measurement still to come
        choice = worker.backends["timeseries"]
        assert choice.name == "slowpref" and "measuring fastother in the background" in choice.reason
        assert specs["fastother"].runners == []
        torch.testing.assert_close(await embed(transport, served, inputs[0]), expected[0])
        release.set()
        answered_by_fast: list[int] = []
        sent, end = 0, time.monotonic() + 120
        while len(answered_by_fast) < 3:  # requests all along the measurement and the switch, and after it
            assert time.monotonic() < end, "never switched"
            sent += 1
            i = sent % len(inputs)
            got = await embed(transport, served, inputs[i])
            torch.testing.assert_close(got, expected[i], rtol=1e-5, atol=1e-5)
            if worker.backends["timeseries"].name == "fastother":
                answered_by_fast.append(i)
            await asyncio.sleep(0.06)
        assert sent > 3  # some were answered while the measurement ran
        await wait_for(worker.measurer.idle)
        await transport.stop()
        return answered_by_fast

    answered_by_fast = asyncio.run(body())
    assert worker.backends["timeseries"].name == "fastother" and answered_by_fast
    assert served.backend == "fastother"  # what /models reports
    assert served.backend_note is not None and served.backend_note.startswith("auto on cpu: fastest of median")
    assert "slowpref" in served.backend_note and "fastother" in served.backend_note
    (fast,) = specs["fastother"].runners
    assert worker.runners["timeseries"] is fast and fast.runs > 0

    restarted = new_worker(served_model("timeseries"), tmp_path)  # the next start: the remembered choice
    assert restarted.backends["timeseries"].name == "fastother"
    assert "remembered" in restarted.backends["timeseries"].reason and not restarted.pending
    assert len(specs["slowpref"].runners) == 1 and len(specs["fastother"].runners) == 2


def test_remeasuring_serves_the_remembered_choice_while_measuring_again(tmp_path: Path, fakes: Fakes) -> None:
    specs, release = fakes
    release.set()
    first = new_worker(served_model("timeseries"), tmp_path)
    first.warmup()
    end = time.monotonic() + 60
    while not first.measurer.idle() and time.monotonic() < end:
        time.sleep(0.02)
    first.close()
    again = new_worker(served_model("timeseries"), tmp_path, remeasure_backends=True)
    choice = again.backends["timeseries"]
    assert choice.name == "fastother" and "remembered" in choice.reason and "measuring slowpref" in choice.reason
    assert len(specs["slowpref"].runners) == 1  # the other one is built in the background, not before serving
    again.close()


def test_a_batch_in_flight_finishes_on_its_runner_and_the_next_runs_on_the_new_one(
    tmp_path: Path, fakes: Fakes
) -> None:
    specs, release = fakes
    release.set()
    served = served_model("timeseries")
    worker = new_worker(served, tmp_path, warmup_enabled=False)
    slow = worker.runners["timeseries"]
    assert isinstance(slow, EagerAfter)
    fast = specs["fastother"].build(request_for(served), ExportCache(tmp_path))
    slow.hold, runs = threading.Event(), slow.runs  # the start-up check ran it once
    slow.entered.clear()
    x = torch.randn(served.input_shape)
    batch = Batch("timeseries", served.input_shape, [BatchItem(new_id(), x, "embed", 1, time.time())], 4)
    results = []
    in_flight = threading.Thread(target=lambda: results.append(worker.execute(batch)))
    in_flight.start()
    assert slow.entered.wait(30)
    choice = backend_measure.Choice("fastother", "measured")
    switch = threading.Thread(target=worker.switch_backend, args=("timeseries", served, fast, choice))
    switch.start()
    switch.join(0.3)
    assert switch.is_alive() and worker.runners["timeseries"] is slow  # waits for the batch in flight
    slow.hold.set()
    in_flight.join(30)
    switch.join(30)
    (result,) = results
    assert result.items[0].error is None and slow.runs == runs + 1 and fast.runs == 0  # type: ignore[attr-defined]
    assert worker.runners["timeseries"] is fast and served.backend == "fastother"
    again = worker.execute(Batch("timeseries", served.input_shape, [BatchItem(new_id(), x, "embed", 1, 0.0)], 4))
    assert again.items[0].error is None and fast.runs == 1  # type: ignore[attr-defined]
    torch.testing.assert_close(torch.tensor(again.items[0].embedding), torch.tensor(result.items[0].embedding))
    worker.close()


class BusyDevice:
    """A device worker that is never idle (a batch finished just now, every time it is asked)."""

    device_name = "cpu"

    def quiet_since(self) -> float:
        return time.monotonic()


def test_under_traffic_that_never_pauses_the_measurement_goes_ahead_after_its_patience(tmp_path: Path) -> None:
    """Else a model loaded under steady load would stay on its first backend for as long as the load lasts."""
    measurer = backend_measure.BackgroundMeasurer(BusyDevice(), ExportCache(tmp_path), patience_s=0.3)  # type: ignore[arg-type]
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (measurer.wait_quiet(), done.set()), daemon=True)
    waiter.start()
    assert done.wait(10), "waited for a quiet moment that never comes"
    assert measurer.impatient

    quiet = backend_measure.BackgroundMeasurer(BusyDevice(), ExportCache(tmp_path), patience_s=3600)  # type: ignore[arg-type]
    quiet.worker.quiet_since = lambda: time.monotonic() - 10  # type: ignore[method-assign]
    quiet.wait_quiet()  # idle for 10 s: goes at once, and is not counted as impatient
    assert not quiet.impatient


def test_the_backend_metric_follows_a_switch_on_the_worker_that_switched() -> None:
    """The same follower is wired in ``unirep serve``'s transport and on scale-out stream workers."""
    from service.runtime.transport import follow_backend_switches

    metrics, device = Metrics(), BusyDevice()
    follow_backend_switches(metrics, device)  # type: ignore[arg-type]
    metrics.backend_info.labels("image", "cpu", "torch").set(1)
    device.on_switch("image", "torch", "openvino")  # type: ignore[attr-defined]
    assert metrics.backend_info.labels("image", "cpu", "torch")._value.get() == 0
    assert metrics.backend_info.labels("image", "cpu", "openvino")._value.get() == 1
