"""A trained file is a complete configuration: ``unirep serve`` with only its weights set answers with its labels,
``GET /models`` shows where it came from, and a setting that contradicts the file stops startup with a reason."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modality_adapters import get_adapter
from servable.build import build_served_model
from service.settings import ModalitySettings
from tests.service import server as live
from tests.training.helpers import CLASSES, SMALL, make_dataset, small_config
from training import TrainResult, train
from unirep_errors import CheckpointError, ModelError

ONLY = {f"UNIREP_{m.upper()}__ENABLED": "false" for m in CLASSES}
BASE = {"UNIREP_LOG_LEVEL": "info", "UNIREP_PREPROCESS_WORKERS": "1", "UNIREP_CACHE_ENABLED": "false"}


@contextlib.contextmanager
def serving(workdir: Path, env: dict[str, str]) -> Iterator[live.Server]:
    """``unirep serve`` with exactly ``env`` (not the service tests' small defaults: the file sets the params)."""
    srv = live.start(workdir, env, base={})
    try:
        yield srv
    finally:
        live.stop(srv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, TrainResult]]:
    root = tmp_path_factory.mktemp("trained")
    out = {}
    for modality in ("image", "audio", "video"):
        data = make_dataset(root / f"{modality}-data", modality)
        # video in the frames-as-channels layout: the file's params and its 12-channel stem must travel together
        extra = {"params": {**SMALL[modality], "layout": "channels"}} if modality == "video" else {}
        config = small_config(modality, data, root / f"{modality}-out", root / "cache", **extra)
        out[modality] = (data, train(config))
    return out


def test_serve_answers_with_the_trained_labels(trained: dict[str, tuple[Path, TrainResult]], tmp_path: Path) -> None:
    env = {**ONLY}
    for modality, (_, result) in trained.items():
        env[f"UNIREP_{modality.upper()}__ENABLED"] = "true"
        env[f"UNIREP_{modality.upper()}__WEIGHTS"] = str(result.weights)
    with serving(tmp_path, {**BASE, **env}) as srv, srv.client() as client:
        for modality, (data, result) in trained.items():
            label = result.labels[0]
            sample = next((data / label).iterdir())
            response = client.post(f"/classify/{modality}", files={"file": (sample.name, sample.read_bytes())})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["weights"] == str(result.weights)
            assert {p["label"] for p in body["predictions"]} <= set(result.labels)
            assert body["predictions"][0]["label"] in result.labels
        models = {m["modality"]: m for m in client.get("/models").json()["models"]}
    for modality, (_, result) in trained.items():
        described = models[modality]
        assert described["num_classes"] == len(result.labels)
        assert described["label_set"] is None
        provenance = described["provenance"]
        assert provenance["trained_by"] == "unirep train"
        assert provenance["validation"]["accuracy"] == pytest.approx(result.val_accuracy)
        assert len(provenance["data_fingerprint"]) == 16


def test_contradicting_settings_stop_startup(trained: dict[str, tuple[Path, TrainResult]], tmp_path: Path) -> None:
    weights = str(trained["image"][1].weights)
    env = {**BASE, **ONLY, "UNIREP_IMAGE__ENABLED": "true", "UNIREP_IMAGE__WEIGHTS": weights}
    env["UNIREP_IMAGE__PARAMS"] = json.dumps({"input_size": 64})
    with pytest.raises(RuntimeError) as excinfo:
        live.start(tmp_path, env, base={})
    message = str(excinfo.value)
    assert "contradict" in message and "params.input_size is 64" in message and "32" in message


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ({"model": "unireplknet_f"}, "model is 'unireplknet_f'"),
        ({"label_set": "imagenet-1k"}, "carries its own 2 labels"),
        ({"num_classes": 5}, "num_classes is 5"),
        ({"in_chans": 1}, "in_chans is 1"),
        ({"multi_label": True}, "multi_label is True"),
    ],
)
def test_each_contradiction_is_named(
    trained: dict[str, tuple[Path, TrainResult]], setting: dict[str, object], fragment: str
) -> None:
    cfg = ModalitySettings(weights=str(trained["image"][1].weights), **setting).resolve("image")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError) as excinfo:
        build_served_model(cfg, get_adapter("image"))
    assert fragment in excinfo.value.message


def test_agreeing_settings_and_wrong_modality(trained: dict[str, tuple[Path, TrainResult]]) -> None:
    weights = str(trained["image"][1].weights)
    agreeing = ModalitySettings(weights=weights, model="unireplknet_a", params={"input_size": 32}, num_classes=2)
    served = build_served_model(agreeing.resolve("image"), get_adapter("image"))
    assert list(served.labels) == trained["image"][1].labels
    with pytest.raises(CheckpointError, match="trained for image, not audio"):
        build_served_model(ModalitySettings(weights=weights).resolve("audio"), get_adapter("audio"))


def test_other_weights_have_no_provenance() -> None:
    served = build_served_model(ModalitySettings(weights="none").resolve("pointcloud"), get_adapter("pointcloud"))
    assert served.provenance is None and served.weights.is_random
    assert len(served.labels) == 40


def test_map_channels_set_the_model_channels(trained: dict[str, tuple[Path, TrainResult]]) -> None:
    video = build_served_model(
        ModalitySettings(weights=str(trained["video"][1].weights)).resolve("video"), get_adapter("video")
    )
    assert video.input_shape == (12, 16, 16) and video.weights.in_chans == 12
    params = {**SMALL["video"], "layout": "channels"}
    random = build_served_model(ModalitySettings(weights="none", params=params).resolve("video"), get_adapter("video"))
    assert random.input_shape[0] == 12 and random.weights.in_chans == 12  # no in_chans setting needed
    with pytest.raises(ModelError, match="in_chans is 3, but the video params make 12-channel maps"):
        build_served_model(
            ModalitySettings(weights="none", params=params, in_chans=3).resolve("video"), get_adapter("video")
        )
