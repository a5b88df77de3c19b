"""Where weights come from: a local file, or a released checkpoint on the Hugging Face hub.

Accepted references:
- a path to a ``.pth``/``.pt``/``.bin``/``.safetensors`` file;
- ``hf://OWNER/REPO/FILE`` (or ``hub:OWNER/REPO/FILE``) for any file on the hub;
- ``unireplknet_a.in1k`` style names (variant + weights tag from the registry), or a bare variant name for its
  default weights, resolved to the official repo ``DingXiaoH/UniRepLKNet``.
Hub files go through ``huggingface_hub`` (its cache, its progress bar, ``HF_HUB_OFFLINE``). Without network the
resolver fails fast with a message saying how to supply the file by path instead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from models.registry import get_model_config
from unirep_errors import CheckpointError, UnknownModelError

_HUB_PREFIXES = ("hf://", "hub:")


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str

    @property
    def ref(self) -> str:
        return f"hf://{self.repo_id}/{self.filename}"


def parse_hub_ref(ref: str) -> HubFile | None:
    """The hub file a reference names, or None when it names none (a plain path)."""
    for prefix in _HUB_PREFIXES:
        if ref.startswith(prefix):
            parts = ref[len(prefix) :].split("/")
            if len(parts) < 3 or not all(parts):
                raise CheckpointError(f"hub reference {ref!r} must look like hf://OWNER/REPO/FILE")
            return HubFile("/".join(parts[:2]), "/".join(parts[2:]))
    name, _, tag = ref.partition(".")
    try:
        cfg = get_model_config(name)
    except UnknownModelError:
        return None
    spec = cfg.weights_spec(tag or None)
    if spec is None:
        raise CheckpointError(f"{name} has no released weights; pass a checkpoint file")
    return HubFile(cfg.hub_repo, spec.filename)


def resolve_weights(ref: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A local file holding the weights ``ref`` names, downloading it into the hub cache when needed."""
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    hub_file = parse_hub_ref(text)
    if hub_file is None:
        raise CheckpointError(f"weights file not found: {text}")
    return download_hub_file(hub_file, cache_dir=cache_dir)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub endpoint: huggingface_hub retries a refused connection for ~25 s."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def download_hub_file(hub_file: HubFile, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    cache = None if cache_dir is None else os.fspath(cache_dir)
    if not _hub_reachable():
        cached = try_to_load_from_cache(hub_file.repo_id, hub_file.filename, cache_dir=cache)
        if isinstance(cached, str):
            return Path(cached)
        raise CheckpointError(_unreachable_message(hub_file, "not in the local cache"))
    try:
        local = hf_hub_download(
            hub_file.repo_id,
            hub_file.filename,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            etag_timeout=5,
        )
    except LocalEntryNotFoundError:
        # Offline (HF_HUB_OFFLINE=1 or no connection) and not in the cache: same advice as any unreachable hub.
        raise CheckpointError(_unreachable_message(hub_file, "not in the local cache")) from None
    except (EntryNotFoundError, RepositoryNotFoundError) as exc:
        raise CheckpointError(f"{hub_file.ref} does not exist on the hub: {exc}") from None
    except Exception as exc:  # offline mode, DNS failure, refused connection, timeout: all mean "not reachable"
        raise CheckpointError(_unreachable_message(hub_file, type(exc).__name__)) from None
    return Path(local)


def _unreachable_message(hub_file: HubFile, reason: str) -> str:
    return (
        f"could not fetch {hub_file.ref} ({reason}); the hub is unreachable or offline mode is on. "
        f"Download {hub_file.filename} from https://huggingface.co/{hub_file.repo_id} on a machine with network "
        "access and pass its path instead (a file path works wherever a weights reference is accepted)."
    )
