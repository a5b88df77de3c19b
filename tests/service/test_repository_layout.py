"""The repository on disk and the routing table, without a server: folder layout, config.toml, version policies,
files sent in a load request (only a model folder's own files, never a path outside it), and name resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import LoadedWeights
from servable.config import ModalitySettings
from servable.served import ServedModel
from service.repository.layout import ModelFolderConfig, VersionPolicy, read_folder, scan, write_files
from service.runtime.model_table import ModelTable
from unirep_errors import InputError, NotFoundError


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({}, [7]),
        ({"latest": {"num_versions": 2}}, [3, 7]),
        ({"all": {}}, [1, 3, 7]),
        ({"specific": {"versions": [3, 1]}}, [1, 3]),
    ],
)
def test_version_policies_select_like_triton(policy: dict[str, object], expected: list[int]) -> None:
    assert VersionPolicy.model_validate(policy).select([3, 1, 7]) == expected


def test_a_policy_names_one_kind_and_configs_refuse_unknown_keys() -> None:
    with pytest.raises(InputError, match="one of latest, all or specific"):
        ModelFolderConfig.parse({"version_policy": {"all": {}, "latest": {}}}, "test")
    with pytest.raises(InputError, match="max_batch"):
        ModelFolderConfig.parse({"max_batch": 4}, "test")
    section = ModelFolderConfig.parse({"max_batch_size": 4, "backend": "torch"}, "test").section()
    assert section == {"max_batch_size": 4, "backend": "torch"}


def test_a_folder_reads_versions_and_config(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for version in ("1", "2", "latest", "0"):
        (root / "pets" / version).mkdir(parents=True)
    (root / "pets" / "config.toml").write_text("max_delay_ms = 2.5\n[version_policy.all]\n")
    (root / ".hidden").mkdir()
    (root / "README.txt").write_text("not a model")
    assert list(scan(root)) == ["pets"]
    folder = read_folder(root / "pets", "pets")
    assert sorted(folder.versions) == [1, 2]
    assert folder.config.max_delay_ms == 2.5 and folder.config.version_policy.kind() == "all"
    override = read_folder(root / "pets", "pets", {"max_batch_size": 2})
    assert override.config.max_delay_ms is None and override.config.max_batch_size == 2
    (root / "pets" / "config.toml").write_text("max_delay_ms = [")
    with pytest.raises(InputError, match=r"config\.toml"):
        read_folder(root / "pets", "pets")


@pytest.mark.parametrize(
    "path", ["../1/model.safetensors", "/etc/passwd", "1/../../x", "1/other.bin", "model.safetensors", "a/b/c"]
)
def test_request_files_stay_inside_the_model_folder(tmp_path: Path, path: str) -> None:
    with pytest.raises(InputError):
        write_files(tmp_path / "m", {path: b"x"})
    assert not any(tmp_path.rglob("*"))


def test_request_files_form_a_model_folder(tmp_path: Path) -> None:
    write_files(tmp_path / "m", {"2/model.safetensors": b"weights", "config.toml": b"max_batch_size = 2\n"})
    folder = read_folder(tmp_path / "m", "m")
    assert folder.versions == {2: tmp_path / "m" / "2" / "model.safetensors"}
    assert folder.config.max_batch_size == 2


def _served(name: str | None, version: int | None) -> ServedModel:
    cfg = ModalitySettings().resolve("image")
    served = ServedModel(cfg, None, LoadedWeights(None, None, 2, 3), ("a", "b"), {}, (3, 8, 8), 4)
    served.repository_name, served.repository_version = name, version
    return served


def test_the_table_routes_names_versions_and_replacements() -> None:
    table = ModelTable()
    default, one, two = _served(None, None), _served("pets", 1), _served("pets", 2)
    for served in (default, one, two):
        assert table.route(served) is None
    assert table.resolve("image") is default
    assert table.resolve("pets") is two and table.resolve("pets", "1") is one
    newer_one = _served("pets", 1)
    assert table.route(newer_one) is one  # the replaced one, to be released once drained
    assert table.withdraw("pets", 2) is two and table.resolve("pets") is newer_one
    with pytest.raises(NotFoundError, match="no version '2'"):
        table.resolve("pets", "2")
    with pytest.raises(NotFoundError, match="no version 'x'"):
        table.resolve("pets", "x")
    table.withdraw("pets", 1)
    with pytest.raises(NotFoundError, match="no model 'pets'"):
        table.resolve("pets")


def test_a_missing_specific_version_still_has_a_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    folder = read_folder(tmp_path / "m", "m", {"version_policy": {"specific": {"versions": [5]}}})
    assert folder.config.version_policy.select(list(folder.versions)) == [5]
    assert folder.fingerprint(5)[1] is None


def test_settings_refuse_model_control_without_a_repository() -> None:
    from pydantic import ValidationError

    from service.settings import ServiceSettings

    with pytest.raises(ValidationError, match="needs model_repository"):
        ServiceSettings(model_control="poll")
    with pytest.raises(ValidationError, match="explicit' only"):
        ServiceSettings(model_repository="/tmp", load_models=["pets"])
    settings = ServiceSettings(model_repository="/tmp", model_control="explicit", load_models=["*"])
    assert settings.load_models == ["*"]
