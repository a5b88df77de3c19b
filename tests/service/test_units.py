"""Unit tests of the pieces with logic of their own: settings precedence, the precision choice (the CUDA path
decided without a GPU), the LRU cache, label sets, and a device worker running a real batch on the CPU."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from modality_adapters import get_adapter
from servable.build import build_served_model
from servable.config import ModalitySettings
from servable.labels import list_label_sets, load_labels
from service.runtime.cache import MemoryLRUCache, cache_key
from service.runtime.device_worker import DeviceWorker
from service.runtime.devices import choose_precision
from service.runtime.work import Batch, BatchItem
from service.settings import ServiceSettings, parse_overrides
from unirep_errors import ClientDisconnectedError, DeadlineExceededError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("UNIREP_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_cpu_configuration() -> None:
    s = ServiceSettings()
    assert s.port == 8000 and s.device == "auto" and s.cache_enabled
    cfgs = {c.modality: c for c in s.modalities()}
    assert list(cfgs) == ["image", "audio", "video", "pointcloud", "timeseries"]
    assert all(c.model == "unireplknet_a" for c in cfgs.values())
    assert cfgs["image"].weights == "auto" and cfgs["audio"].weights is None
    assert cfgs["audio"].in_chans == 1 and cfgs["timeseries"].in_chans == 1
    assert cfgs["audio"].label_set == "speech-commands-v2" and cfgs["video"].label_set == "kinetics-400"


def test_precedence_flags_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "unirep.toml"
    config.write_text('port = 9001\nlog_level = "warning"\n[audio]\nmax_batch_size = 4\nlabel_set = "audioset-527"\n')
    monkeypatch.setenv("UNIREP_LOG_LEVEL", "error")
    monkeypatch.setenv("UNIREP_AUDIO__MAX_DELAY_MS", "7.5")
    s = ServiceSettings.load(config, **parse_overrides(["audio.max_batch_size=2", "port=9002"]))
    assert s.port == 9002 and s.log_level == "error"
    audio = s.modality("audio")
    # one field from each source; the section keeps its modality defaults for everything else
    assert (audio.max_batch_size, audio.max_delay_ms, audio.label_set) == (2, 7.5, "audioset-527")
    assert audio.in_chans == 1 and audio.multi_label  # AudioSet is multi-label: sigmoid scores


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ServiceSettings(device="tpu")
    with pytest.raises(ValueError):
        ServiceSettings(image={"max_batch_size": 0})
    with pytest.raises(ValueError):
        parse_overrides(["no-equals-sign"])


@pytest.mark.parametrize(
    ("device", "requested", "bf16", "dtype", "channels_last"),
    [
        ("cpu", "auto", False, None, False),
        ("cuda", "auto", True, torch.bfloat16, True),
        ("cuda", "auto", False, torch.float16, True),
        ("cuda", "bf16", False, torch.float16, True),
        ("cuda", "fp32", True, None, True),
        ("cuda", "fp16", True, torch.float16, True),
        ("cpu", "bf16", False, torch.bfloat16, False),
    ],
)
def test_choose_precision(
    device: str, requested: str, bf16: bool, dtype: torch.dtype | None, channels_last: bool
) -> None:
    precision = choose_precision(device, requested, bf16)
    assert precision.autocast_dtype == dtype and precision.channels_last == channels_last


def test_lru_cache_evicts_and_expires() -> None:
    async def scenario() -> None:
        cache = MemoryLRUCache(max_entries=2, ttl_s=None)
        await cache.set("a", {"v": 1})
        await cache.set("b", {"v": 2})
        assert await cache.get("a") == {"v": 1}  # a is now the most recent
        await cache.set("c", {"v": 3})
        assert await cache.get("b") is None and await cache.get("a") == {"v": 1}
        expiring = MemoryLRUCache(max_entries=2, ttl_s=1e-9)
        await expiring.set("x", {"v": 0})
        assert await expiring.get("x") is None

    asyncio.run(scenario())
    base = cache_key("ab" * 32, "image", "classify", {"top_k": 5}, "unireplknet_a@1")
    assert base != cache_key("ab" * 32, "image", "classify", {"top_k": 5}, "unireplknet_a@2")
    assert base != cache_key("ab" * 32, "image", "embed", {"top_k": 5}, "unireplknet_a@1")


@pytest.mark.parametrize(
    ("name", "count", "first"),
    [
        ("imagenet-1k", 1000, "tench"),
        ("speech-commands-v2", 35, "backward"),
        ("audioset-527", 527, "Speech"),
        ("kinetics-400", 400, "abseiling"),
        ("modelnet40", 40, "airplane"),
    ],
)
def test_shipped_label_sets(name: str, count: int, first: str) -> None:
    labels = load_labels(name)
    assert len(labels) == count and labels[0] == first
    assert name in list_label_sets()


def test_worker_runs_a_batch_and_skips_dead_items() -> None:
    settings = ServiceSettings(image={"weights": "none", "params": {"input_size": 32}, "max_batch_size": 4})
    cfg = settings.modality("image")
    served = build_served_model(cfg, get_adapter("image"))
    worker = DeviceWorker(torch.device("cpu"), {"image": served})
    worker.warmup()
    assert ("image", (3, 32, 32)) in worker.latency
    x = torch.randn(3, 3, 32, 32)
    items = [
        BatchItem("a", x[0], "classify", 3, enqueued_at=0.0),
        BatchItem("b", x[1], "embed", 0, enqueued_at=0.0),
        BatchItem("gone", x[2], "classify", 3, enqueued_at=0.0, is_cancelled=lambda: True),
        BatchItem("late", x[2], "classify", 3, enqueued_at=0.0, deadline=1.0),
    ]
    result = worker.execute(Batch("image", (3, 32, 32), items, 4))
    assert result.batch_size == 2 and result.device == "cpu"
    a, b, gone, late = result.items
    assert a.scores is not None and len(a.scores) == 3 and a.scores[0][1] >= a.scores[1][1]
    assert b.embedding is not None and len(b.embedding) == 320
    assert isinstance(gone.error, ClientDisconnectedError) and isinstance(late.error, DeadlineExceededError)
    # the batched result equals the item computed alone
    alone = worker.execute(Batch("image", (3, 32, 32), [BatchItem("a", x[0], "classify", 3, 0.0)], 4))
    assert alone.items[0].scores is not None
    assert [i for i, _ in alone.items[0].scores] == [i for i, _ in a.scores]
    assert alone.items[0].scores[0][1] == pytest.approx(a.scores[0][1], rel=1e-4)


def test_configured_checkpoint_is_loaded_and_named(tmp_path: Path) -> None:
    from models import create_model

    path = tmp_path / "audio_a.pth"
    torch.save({"model": create_model("unireplknet_a", in_chans=1, num_classes=35).state_dict()}, path)
    settings = ServiceSettings(audio={"weights": str(path), "params": {"target_frames": 32}})
    served = build_served_model(settings.modality("audio"), get_adapter("audio"))
    assert served.weights.source == str(path) and not served.weights.is_random
    assert served.num_classes == 35 and served.input_shape == (1, 128, 32)
    random = build_served_model(ServiceSettings().modality("audio"), get_adapter("audio"))
    assert random.weights.is_random and random.version != served.version  # the cache key changes with the weights


def test_timeseries_checkpoint_holds_embedding_and_backbone(tmp_path: Path) -> None:
    from modality_adapters import TimeSeriesEmbedding
    from models import create_model

    params = {"representation": "embedding", "embedding_layout": "reshape", "seq_len": 8, "num_vars": 3, "d_model": 32}
    embedding = TimeSeriesEmbedding(num_vars=3, d_model=32, seq_len=8, n_time_features=4)
    backbone = create_model("unireplknet_a", in_chans=1, num_classes=2)
    state = {f"embedding.{k}": v for k, v in embedding.state_dict().items()}
    state.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    path = tmp_path / "ts.pth"
    torch.save(state, path)
    cfg = ServiceSettings(timeseries={"weights": str(path), "params": params}).modality("timeseries")
    served = build_served_model(cfg, get_adapter("timeseries"))
    assert not served.weights.is_random and served.input_shape == (1, 8, 7)
    x = torch.randn(2, *served.input_shape)
    with torch.inference_mode():
        features = served.module.forward_features(x)  # type: ignore[operator]
        expected = backbone.eval().reparameterize().forward_features(embedding.eval()(x))
    assert torch.allclose(features, expected, atol=1e-4)
    torch.save({k: v for k, v in state.items() if not k.startswith("embedding.")}, path)
    with pytest.raises(Exception, match="embedding"):
        build_served_model(cfg, get_adapter("timeseries"))


@pytest.mark.parametrize(("params", "shape"), [({}, (4, 64, 64)), ({"num_vars": 5, "image_size": 32}, (16, 32, 32))])
def test_timeseries_model_for_any_variable_count(params: dict[str, object], shape: tuple[int, ...]) -> None:
    """The default takes any variable count (value image + pooled maps); a trained-like config takes its own count
    as channels."""
    import json as json_

    import numpy as np

    cfg = ServiceSettings(timeseries={"params": params}).modality("timeseries")
    adapter = get_adapter("timeseries")
    served = build_served_model(cfg, adapter)
    assert served.input_shape == shape
    v = int(params.get("num_vars", 0)) or 9  # type: ignore[call-overload]
    x = adapter.decode(json_.dumps(np.random.default_rng(0).normal(size=(30, v)).tolist()).encode(), **served.params)
    with torch.inference_mode():
        logits = served.module(x.unsqueeze(0))
    assert logits.shape == (1, served.num_classes) and torch.isfinite(logits).all()


def test_background_warm_up_runs_the_cold_batch_sizes_between_batches() -> None:
    """Sizes 1 and the largest before ready (what the estimates need); the others, one per idle moment."""
    cfg = ModalitySettings(params={"input_size": 32}, max_batch_size=4, backend="torch").resolve("image")
    served = build_served_model(cfg, get_adapter("image"))
    worker = DeviceWorker(torch.device("cpu"), {"image": served}, "fp32")
    worker.warmup(background=True)
    assert list(worker.cold) == [("image", 2), ("image", 3)]
    assert ("image", (3, 32, 32)) in worker.latency and ("image", (3, 32, 32)) in worker.latency_one
    assert worker.quiet_for() is not None and worker.warm_next() and list(worker.cold) == [("image", 3)]
    tensor = torch.zeros(3, 32, 32)
    worker.execute(Batch("image", (3, 32, 32), [BatchItem(f"i{n}", tensor, "embed", 0, 0.0) for n in range(3)], 4))
    assert 0.5 < worker.quiet_for() <= 1.0  # just busy: it waits for a quiet second before warming
    assert not worker.warm_next() and not worker.cold  # a batch of 3 ran: size 3 is warm already
    worker.warmup(background=True)
    worker.uninstall("image")  # released before its turn: skipped, not an error
    assert not worker.warm_next() and worker.quiet_for() is None
