"""One repository version, from its file to a ``ServedModel``: shared by ``unirep serve`` (the repository manager)
and scale-out (stream workers build it; gateways describe it from the same file and the workers' announcement).

A version file is one written by ``unirep train``: it names its modality, labels and params. The folder's config
(``ModelFolderConfig.section``) sets batching and backend on top of that modality's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.trained import read_trained_info
from servable.build import build_served_model
from servable.config import ModalityConfig, ModalitySettings
from servable.served import ServedModel
from service.repository.layout import MODEL_FILE
from unirep_errors import ModelLoadError


def version_config(path: Path, section: dict[str, Any], adapters: dict[str, Any]) -> ModalityConfig:
    """The modality settings of one version file; ``ModelLoadError`` (or the file's own error) naming why not."""
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist: a version folder holds {MODEL_FILE}")
    info = read_trained_info(path)
    if info is None:
        raise ModelLoadError(f"{path} is not a model file written by `unirep train` (it does not say its modality)")
    if info.modality not in adapters:
        raise ModelLoadError(f"{path} is a {info.modality} model, and {info.modality} is not enabled here")
    return ModalitySettings(weights=str(path), **section).resolve(info.modality)


def build_version(
    path: Path, name: str, version: int, section: dict[str, Any], adapters: dict[str, Any], seed: int, key: str
) -> ServedModel:
    """Blocking: the served model (module included) of one version, known to the runtime by ``key``."""
    cfg = version_config(path, section, adapters)
    served = build_served_model(cfg, adapters[cfg.modality], seed)
    served.repository_name, served.repository_version = name, version
    served.serving_key = key
    return served
