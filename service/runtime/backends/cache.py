"""The on-disk cache of exported graphs, so that a restart does not export and compile again.

An entry is a directory named by a key over everything that decides its content: the weights (a digest of every
tensor of the deploy form), the input shape, the batch range, the backend and its library version, torch's version
(the exporter) and a format number of ours. It is written into a temporary directory and renamed into place, so a
crash never leaves half an entry under a valid name, and it carries a manifest with its key and the sha256 of
each file: an entry whose files are missing or altered, or whose manifest names another key (a folder copied or
renamed), is deleted and rebuilt. One that checks out but that the backend then fails to load, or whose graph
disagrees with the eager model, is moved aside (``.rejected-KEY``, kept for a post-mortem, the previous one of the
same key replaced) and rebuilt once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unirep" / "backends"


def weights_digest(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, shapes, dtypes, bytes) of the deploy form."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def entry_key(**parts: object) -> str:
    blob = json.dumps({"format": FORMAT_VERSION, "torch": torch.__version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _valid(entry: Path) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
        if manifest["key"] != entry.name:
            log.warning("export cache entry %s holds the manifest of %r", entry, manifest["key"])
            return False
        return bool(files) and all(_file_digest(entry / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


class ExportCache:
    """Entries under ``root`` (None: a fresh temporary directory per process, nothing reused)."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="unirep-backends-")) if root is None else Path(root)
        if root is None:  # loaded runners keep no file open: the directory goes with this object
            weakref.finalize(self, shutil.rmtree, self.root, True)
        self.hits = 0
        self.builds = 0

    def get_or_build(self, key: str, build: Callable[[Path], None], description: str) -> Path:
        """The entry's directory: reused when its manifest checks out, else (re)built by ``build(tmpdir)``."""
        entry = self.root / key
        if entry.is_dir():
            if _valid(entry):
                self.hits += 1
                log.info("export cache hit for %s: %s", description, entry)
                return entry
            log.warning("export cache entry %s for %s is corrupted or incomplete: rebuilding it", entry, description)
            self.discard(entry)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            build(tmp)
            files = {p.name: _file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / MANIFEST).write_text(json.dumps({"key": key, "what": description, "files": files}, indent=1))
            try:
                tmp.rename(entry)
            except OSError:  # another process built the same entry meanwhile: theirs is as good as ours
                if not _valid(entry):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.builds += 1
        log.info("exported %s into %s", description, entry)
        return entry

    def discard(self, entry: Path) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(entry)

    def set_aside(self, entry: Path, reason: str) -> None:
        """Move a rejected entry out of the way (its files kept for a post-mortem) so the next lookup rebuilds it."""
        aside = entry.with_name(f".rejected-{entry.name}")
        self.discard(aside)
        try:
            entry.rename(aside)
            (aside / "REJECTED").write_text(reason + "\n")
            log.warning("export cache entry %s moved aside to %s: %s", entry, aside, reason)
        except OSError:  # another process moved it already, or the disk refuses: make sure it is gone
            self.discard(entry)
