"""The model repository on disk, in Triton's layout, and a model's serving configuration.

::

    DIR/
      NAME/
        config.toml          optional: batching, backend, version policy (``ModelFolderConfig``)
        1/model.safetensors  version 1: a file written by ``unirep train`` (modality, labels, params inside)
        2/model.safetensors

Version folders are positive integers; other entries are ignored, as Triton does. The version policy picks which
versions are served: ``{latest = {num_versions = K}}`` (the default, K = 1), ``{all = {}}`` or
``{specific = {versions = [1, 3]}}``; the same keys, as JSON, form a load request's ``config`` override.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unirep_errors import InputError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.toml"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Latest(_Strict):
    num_versions: int = Field(default=1, ge=1)


class Specific(_Strict):
    versions: list[int] = Field(min_length=1)


class VersionPolicy(_Strict):
    """Exactly one of ``latest``, ``all`` or ``specific`` (Triton's ``version_policy``); none means latest 1."""

    latest: Latest | None = None
    all: dict[str, Any] | None = None
    specific: Specific | None = None

    def kind(self) -> Literal["latest", "all", "specific"]:
        given = [k for k in ("latest", "all", "specific") if getattr(self, k) is not None]
        if len(given) > 1:
            raise InputError(f"version_policy takes one of latest, all or specific; got {', '.join(given)}")
        return given[0] if given else "latest"  # type: ignore[return-value]

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve, in ascending order, among the ones the repository has."""
        kind = self.kind()
        ordered = sorted(available)
        if kind == "all":
            return ordered
        if kind == "specific":
            assert self.specific is not None
            return sorted(set(self.specific.versions))
        count = self.latest.num_versions if self.latest is not None else 1
        return ordered[-count:]


class ModelFolderConfig(_Strict):
    """A model's ``config.toml`` (or a load's ``config`` override): batching, backend and version policy.
    Unset fields keep the defaults of the model's modality section."""

    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0)
    max_queue_size: int | None = Field(default=None, ge=1)
    backend: Literal["auto", "torch", "cudagraphs", "openvino", "onnxruntime", "tensorrt"] | None = None
    version_policy: VersionPolicy = VersionPolicy()

    def section(self) -> dict[str, Any]:
        """The fields a modality settings section takes (the version policy is the repository's own)."""
        return self.model_dump(exclude={"version_policy"}, exclude_none=True)

    @classmethod
    def parse(cls, values: dict[str, Any], origin: str) -> ModelFolderConfig:
        try:
            config = cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InputError(f"{origin}: {problems}") from None
        config.version_policy.kind()  # one policy only
        return config


@dataclass
class ModelFolder:
    """One model as the repository holds it: its versions' files and its configuration."""

    name: str
    path: Path
    versions: dict[int, Path] = field(default_factory=dict)
    config: ModelFolderConfig = field(default_factory=ModelFolderConfig)

    def fingerprint(self, version: int) -> tuple[Any, ...]:
        """What identifies a version's content cheaply (file size and time, and the serving settings of the config,
        not its version policy): a change reloads it."""
        path = self.versions.get(version, self.path / str(version) / MODEL_FILE)
        stat = path.stat() if path.is_file() else None
        state = (stat.st_size, stat.st_mtime_ns) if stat is not None else None
        return (str(path), state, json.dumps(self.config.section(), sort_keys=True))


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InputError(f"model name {name!r}: letters, digits, '_', '.' and '-', starting with a letter or digit")
    return name


def read_folder(path: Path, name: str, override: dict[str, Any] | None = None) -> ModelFolder:
    """A model folder's versions and configuration (``override`` replaces ``config.toml``, as in Triton)."""
    folder = ModelFolder(check_name(name), path)
    if override is not None:
        folder.config = ModelFolderConfig.parse(override, f"the config of {name}")
    elif (path / CONFIG_FILE).is_file():
        try:
            values = tomllib.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path / CONFIG_FILE}: {exc}") from None
        folder.config = ModelFolderConfig.parse(values, str(path / CONFIG_FILE))
    for entry in path.iterdir() if path.is_dir() else ():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0:
            folder.versions[int(entry.name)] = entry / MODEL_FILE
    return folder


def scan(root: Path) -> dict[str, Path]:
    """The model folders of a repository, by name (entries whose names are not valid model names are skipped)."""
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and NAME_PATTERN.match(p.name)}


def write_files(target: Path, files: dict[str, bytes]) -> None:
    """A load request's files (``"1/model.safetensors"``, ``"config.toml"``) as a model folder under ``target``."""
    for relative, content in files.items():
        parts = Path(relative).parts
        if not parts or Path(relative).is_absolute() or any(p in ("..", ".", "") for p in parts):
            raise InputError(f"file {relative!r}: give a path inside the model folder, e.g. 1/{MODEL_FILE}")
        allowed = parts == (CONFIG_FILE,) or (len(parts) == 2 and parts[0].isdigit() and parts[1] == MODEL_FILE)
        if not allowed:
            raise InputError(f"file {relative!r}: a model folder holds {CONFIG_FILE} and N/{MODEL_FILE} only")
        destination = target.joinpath(*parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(content)
