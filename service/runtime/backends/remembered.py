"""Where ``auto`` keeps its choices: ``auto-choices.json`` in the export cache directory, keyed by the host (CPU
model and count, threads, device, every candidate library's version) and the model (weights digest, input shape,
batch size, precision).

A file that does not parse, or an entry that names another host or model (a copied cache), is ignored and the
model measured afresh. Several processes (a pool's workers, replicas sharing a volume) remember choices into
the same file: each read-modify-write holds an exclusive ``flock`` on a lock file beside it, and the file is replaced
whole (written aside, then renamed), so a reader never sees half a file and no writer drops another's entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from service.runtime.backends.base import BuildRequest

log = logging.getLogger(__name__)

REMEMBERED = "auto-choices.json"
LOCK = ".auto-choices.lock"
FORMAT = 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_fingerprint(request: BuildRequest, versions: Mapping[str, str]) -> dict[str, Any]:
    """What decides the ranking on this host: the hardware, the threads, and the libraries (JSON-native values)."""
    device = request.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "threads": request.threads,
        "device": device.type,
        "gpu": gpu,
        "torch": torch.__version__,
        "versions": dict(sorted(versions.items())),
    }


def model_fingerprint(request: BuildRequest) -> dict[str, Any]:
    return {
        "weights": request.weights_digest,
        "input_shape": list(request.input_shape),
        "max_batch_size": request.max_batch_size,
        "precision": str(request.autocast_dtype or "fp32"),
        "channels_last": request.channels_last,
    }


class RememberedChoices:
    """The ``auto-choices.json`` of one export cache directory."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / REMEMBERED

    @staticmethod
    def key(host: dict[str, Any], model: dict[str, Any]) -> str:
        blob = json.dumps({"host": host, "model": model}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def recall(self, host: dict[str, Any], model: dict[str, Any]) -> dict[str, Any] | None:
        """The remembered entry for this host and model, or None (none, unreadable, or made for another)."""
        entry = self._entries().get(self.key(host, model))
        if not isinstance(entry, dict) or not isinstance(entry.get("backend"), str):
            return None
        if entry.get("host") != host or entry.get("model") != model:  # a foreign entry under our key: not ours
            log.warning("remembered backend choice in %s names another host or model: measuring again", self.path)
            return None
        return entry

    def remember(self, host: dict[str, Any], model: dict[str, Any], entry: dict[str, Any]) -> None:
        """Add (or replace) this host and model's entry, keeping every other process's entries."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():  # read, add, replace as one step against the other writers
                entries = self._entries()
                entries[self.key(host, model)] = {**entry, "host": host, "model": model}
                self._replace({"format": FORMAT, "entries": entries})
        except OSError as exc:  # a read-only cache: the next start measures again, nothing worse
            log.warning("cannot remember the backend choice in %s: %s", self.path, exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.parent / LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            yield

    def _replace(self, content: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{REMEMBERED}-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(content, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the remembered backend choices in %s (%s): measuring again", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            log.warning("ignoring the remembered backend choices in %s: not our format", self.path)
            return {}
        entries: dict[str, Any] = data["entries"]
        return entries
