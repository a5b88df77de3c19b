"""Inference backends: every CPU backend against the eager deploy form for every modality's model, the export
cache (reuse, corruption), the start-up check, and the choice of backend (including the GPU-only ones' logic).

Models are the served ones at the small input sizes the end-to-end tests use, built through the same code as
``unirep serve`` (``build_served_model``), with random weights.
"""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path

import pytest
import torch

from modality_adapters import get_adapter
from servable.build import build_served_model
from servable.served import ServedModel
from service.runtime.backends import (
    AUTO_ORDER,
    BACKEND_NAMES,
    SPECS,
    BackendError,
    BuildRequest,
    ExportCache,
    build_runner,
    check_against_eager,
    onnx_export,
    relative_error,
    resolve_backend,
    weights_digest,
)
from service.runtime.backends.onnxruntime_backend import OnnxRuntimeSpec
from service.runtime.backends.tensorrt_backend import unavailable_reason as tensorrt_unavailable
from service.runtime.backends.torch_backend import TorchRunner
from service.settings import MODALITIES, ModalitySettings, ServiceSettings
from tests.service.server import SMALL

CPU_BACKENDS = [name for name in ("openvino", "onnxruntime") if SPECS[name].unavailable_reason("cpu") is None]
HAS_CUDA = torch.cuda.is_available()
TENSORRT_MISSING = SPECS["tensorrt"].unavailable_reason("cuda")


def served_model(modality: str, max_batch: int = 4) -> ServedModel:
    params = json.loads(SMALL.get(f"UNIREP_{modality.upper()}__PARAMS", "{}"))
    settings = ServiceSettings(**{modality: {"weights": "none", "params": params, "max_batch_size": max_batch}})
    cfg = settings.modality(modality)
    torch.manual_seed(0)
    return build_served_model(cfg, get_adapter(cfg.modality))


def request_for(served: ServedModel, device: str = "cpu", cache_root: Path | None = None) -> BuildRequest:
    return BuildRequest(
        module=served.module,
        input_shape=served.input_shape,
        device=torch.device(device),
        max_batch_size=served.config.max_batch_size,
        threads=1,
        cache_dir=cache_root,
        weights_digest=weights_digest(served.module),
    )


@pytest.fixture(scope="module")
def models() -> dict[str, ServedModel]:
    return {m: served_model(m) for m in MODALITIES}


@pytest.mark.skipif(not CPU_BACKENDS, reason="neither openvino nor onnxruntime is installed")
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("modality", MODALITIES)
def test_cpu_backend_matches_eager_for_every_modality(
    models: dict[str, ServedModel], modality: str, backend: str, tmp_path: Path
) -> None:
    served = models[modality]
    request = request_for(served)
    runner, choice = build_runner(backend, request, ExportCache(tmp_path))
    assert choice.name == backend and runner.name == backend
    eager = TorchRunner(request)
    x = torch.randn((3, *served.input_shape), generator=torch.Generator().manual_seed(7))
    for batch in (x[:1], x):  # one graph, several batch sizes
        features, logits = runner.run(batch)
        ref_features, ref_logits = eager.run(batch)
        assert features.shape == ref_features.shape and logits.shape == ref_logits.shape
        assert relative_error(logits, ref_logits) <= 1e-4
        assert relative_error(features, ref_features) <= 1e-4
        k = min(5, logits.shape[-1])
        assert torch.equal(logits.topk(k).indices, ref_logits.topk(k).indices)


@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="openvino is not installed")
def test_export_cache_is_reused_across_restarts_and_a_corrupted_entry_is_rebuilt(
    models: dict[str, ServedModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = models["image"]
    request = request_for(served, cache_root=tmp_path)
    first = ExportCache(tmp_path)
    build_runner("openvino", request, first)
    assert (first.builds, first.hits) == (2, 0)  # the shared ONNX export, and the IR converted from it
    (entry,) = [p for p in tmp_path.iterdir() if (p / "model.bin").is_file()]
    exported_at = (entry / "model.bin").stat().st_mtime_ns

    restarted = ExportCache(tmp_path)  # a new process would see exactly this directory
    build_runner("openvino", request, restarted)
    assert (restarted.builds, restarted.hits) == (0, 1)
    assert (entry / "model.bin").stat().st_mtime_ns == exported_at

    weights = entry / "model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a disk that filled up mid-write
    caplog.set_level("WARNING")
    after = ExportCache(tmp_path)
    runner, _ = build_runner("openvino", request, after)
    assert (after.builds, after.hits) == (1, 1)  # the IR converted again from the cached ONNX export
    assert "corrupted" in caplog.text
    assert check_against_eager(runner, request) <= 1e-4


@pytest.mark.skipif(len(CPU_BACKENDS) < 2, reason="needs both openvino and onnxruntime")
@pytest.mark.parametrize("order", [("openvino", "onnxruntime"), ("onnxruntime", "openvino")])
def test_openvino_and_onnxruntime_share_one_onnx_export(
    models: dict[str, ServedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: tuple[str, str]
) -> None:
    """A cold start builds both: the model is traced to ONNX once, and each backend is still checked on its own."""
    exports: list[Path] = []
    real_export = onnx_export.export_onnx

    def counting(module: torch.nn.Module, shape: tuple[int, ...], path: Path, dynamic_batch: bool = True) -> Path:
        exports.append(path)
        return real_export(module, shape, path, dynamic_batch)

    monkeypatch.setattr(onnx_export, "export_onnx", counting)
    request = request_for(models["audio"], cache_root=tmp_path)
    cache = ExportCache(tmp_path)
    first, _ = build_runner(order[0], request, cache)
    assert len(exports) == 1
    second, _ = build_runner(order[1], request, cache)
    assert len(exports) == 1 and cache.hits == 1  # the second found the first's export
    for runner in (first, second):
        assert runner.name in order and check_against_eager(runner, request) <= 1e-4
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2  # the ONNX graph and the OpenVINO IR

    restarted = ExportCache(tmp_path)
    build_runner(order[1], request, restarted)
    assert len(exports) == 1 and (restarted.builds, restarted.hits) == (0, 1)


@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime is not installed")
def test_an_entry_whose_manifest_matches_but_does_not_load_is_exported_again(
    models: dict[str, ServedModel], tmp_path: Path
) -> None:
    served = models["timeseries"]
    request = request_for(served, cache_root=tmp_path)
    build_runner("onnxruntime", request, ExportCache(tmp_path))
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / "model.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = hashlib.sha256(b"not an onnx graph").hexdigest()
    (entry / "manifest.json").write_text(json.dumps(manifest))
    cache = ExportCache(tmp_path)
    runner, _ = build_runner("onnxruntime", request, cache)
    assert cache.builds == 1
    assert (entry / "model.onnx").stat().st_size > 1000
    assert check_against_eager(runner, request) <= 1e-4


def zero_onnx(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(path))
    for init in graph.graph.initializer:
        init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 0, init.name))
    onnx.save(graph, str(path))


def zero_graph(entry: Path) -> None:
    """Zero every weight of the entry's ONNX graph and update its manifest: it checks out, loads, and is wrong."""
    path = entry / "model.onnx"
    zero_onnx(path)
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (entry / "manifest.json").write_text(json.dumps(manifest))


class ZeroingOnnx(OnnxRuntimeSpec):
    """An exporter that writes a zeroed graph every time (a broken onnx or torch.onnx release, say)."""

    def write(self, request: BuildRequest, directory: Path, cache: ExportCache) -> None:
        super().write(request, directory, cache)
        zero_onnx(directory / "model.onnx")


@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime is not installed")
def test_a_cached_graph_that_fails_the_check_is_moved_aside_and_rebuilt(
    models: dict[str, ServedModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = request_for(models["timeseries"], cache_root=tmp_path)
    build_runner("onnxruntime", request, ExportCache(tmp_path))
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    zero_graph(entry)
    cache = ExportCache(tmp_path)
    runner, _ = build_runner("onnxruntime", request, cache)
    assert (cache.hits, cache.builds) == (1, 1)
    assert check_against_eager(runner, request) <= 1e-4
    aside = tmp_path / f".rejected-{entry.name}"
    assert "disagrees with the eager deploy form" in (aside / "REJECTED").read_text()

    zero_graph(entry)  # and this time the exporter itself is broken: the second failure stops the start
    monkeypatch.setitem(SPECS, "onnxruntime", ZeroingOnnx())
    again = ExportCache(tmp_path)
    with pytest.raises(BackendError, match="disagrees with the eager deploy form"):
        build_runner("onnxruntime", request, again)
    assert (again.hits, again.builds) == (1, 1)
    assert not entry.exists()  # nothing wrong is left for the next start to load


@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime is not installed")
def test_an_entry_under_another_key_is_not_loaded(models: dict[str, ServedModel], tmp_path: Path) -> None:
    """A folder copied or renamed in the cache is not taken for the model its name says."""
    audio, series = request_for(models["audio"], cache_root=tmp_path), request_for(models["timeseries"])
    build_runner("onnxruntime", audio, ExportCache(tmp_path))
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    series_key = SPECS["onnxruntime"].cache_key(series)  # type: ignore[attr-defined]
    entry.rename(tmp_path / series_key)
    cache = ExportCache(tmp_path)
    build_runner("onnxruntime", series, cache)
    assert (cache.hits, cache.builds) == (0, 1)
    assert json.loads((tmp_path / series_key / "manifest.json").read_text())["key"] == series_key


@pytest.mark.skipif("onnxruntime" not in CPU_BACKENDS, reason="onnxruntime is not installed")
def test_a_backend_that_disagrees_with_eager_refuses_to_serve(models: dict[str, ServedModel], tmp_path: Path) -> None:
    served = models["audio"]
    runner, _ = build_runner("onnxruntime", request_for(served), ExportCache(tmp_path))
    other = served_model("audio")
    with torch.no_grad():
        other.module.head.weight.mul_(1.01)  # type: ignore[union-attr, operator]
    with pytest.raises(BackendError, match="disagrees with the eager deploy form"):
        check_against_eager(runner, request_for(other))


def test_weights_digest_follows_the_weights(models: dict[str, ServedModel]) -> None:
    module = models["video"].module
    before = weights_digest(module)
    assert weights_digest(module) == before
    with torch.no_grad():
        module.head.bias.add_(1.0)  # type: ignore[union-attr, operator]
    try:
        assert weights_digest(module) != before
    finally:
        with torch.no_grad():
            module.head.bias.sub_(1.0)  # type: ignore[union-attr, operator]


def test_settings_accept_exactly_the_registered_backends() -> None:
    annotation = ModalitySettings.model_fields["backend"].annotation
    (literal,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    assert set(typing.get_args(literal)) == set(BACKEND_NAMES)
    assert ServiceSettings().modality("image").backend == "auto"
    with pytest.raises(ValueError):
        ServiceSettings(image={"backend": "tvm"})


def test_auto_is_decided_by_measuring_and_an_explicit_name_is_requested() -> None:
    assert resolve_backend("auto", "cpu").name == "auto"  # build_runner measures (test_backend_auto)
    assert resolve_backend(" Torch ", "cpu").reason == "requested"
    assert AUTO_ORDER["cpu"] == ("openvino", "onnxruntime", "torch")


@pytest.mark.skipif(HAS_CUDA, reason="checks the choice on a machine without a GPU")
def test_gpu_only_backends_are_refused_on_cpu_and_auto_on_cuda_says_why_it_skipped_them(tmp_path: Path) -> None:
    for name in ("tensorrt", "cudagraphs"):
        with pytest.raises(BackendError, match=f"backend '{name}' cannot run on cpu"):
            resolve_backend(name, "cpu")
    for name in ("openvino", "onnxruntime"):
        with pytest.raises(BackendError, match="CPU only"):
            resolve_backend(name, "cuda")
    served = served_model("timeseries")
    _, choice = build_runner("auto", request_for(served, "cuda"), ExportCache(tmp_path))
    assert choice.name == "torch" and "the only candidate installed" in choice.reason
    assert "tensorrt:" in choice.reason and "cudagraphs:" in choice.reason
    with pytest.raises(BackendError, match="unknown backend"):
        resolve_backend("tvm", "cpu")


def test_tensorrt_availability_decision() -> None:
    assert tensorrt_unavailable("cpu", True, True) == "TensorRT runs on CUDA GPUs only"
    assert tensorrt_unavailable("cuda", False, True) == "no CUDA device is visible"
    assert "not installed" in (tensorrt_unavailable("cuda", True, False) or "")
    assert tensorrt_unavailable("cuda", True, True) is None


@pytest.mark.skipif(not HAS_CUDA, reason="CUDA graphs need a CUDA GPU (none on this machine)")
def test_cuda_graphs_replay_matches_eager(models: dict[str, ServedModel], tmp_path: Path) -> None:
    served = models["image"]
    module = served.module.to("cuda")
    request = BuildRequest(module, served.input_shape, torch.device("cuda"), 4, None, tmp_path, weights_digest(module))
    runner, choice = build_runner("cudagraphs", request, ExportCache(tmp_path))
    assert choice.name == "cudagraphs"
    x = torch.randn((3, *served.input_shape))
    assert relative_error(runner.run(x)[1], TorchRunner(request).run(x)[1]) <= 1e-4
    served.module.to("cpu")


@pytest.mark.skipif(TENSORRT_MISSING is not None, reason=f"tensorrt: {TENSORRT_MISSING}")
def test_tensorrt_engine_matches_eager_and_is_cached(models: dict[str, ServedModel], tmp_path: Path) -> None:
    served = models["image"]
    module = served.module.to("cuda")
    request = BuildRequest(module, served.input_shape, torch.device("cuda"), 4, None, tmp_path, weights_digest(module))
    build_runner("tensorrt", request, ExportCache(tmp_path))
    cache = ExportCache(tmp_path)
    runner, _ = build_runner("tensorrt", request, cache)
    assert cache.hits == 1
    x = torch.randn((3, *served.input_shape))
    assert relative_error(runner.run(x)[1], TorchRunner(request).run(x)[1]) <= 1e-4
    served.module.to("cpu")
