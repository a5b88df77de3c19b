"""The service's one settings class: built once (flags > ``UNIREP_`` env vars > TOML file > defaults), then passed
into ``service.http.app.create_app``. Nothing else in the service reads the environment.

Each modality has its own section (``[image]``, ``[audio]``, ... in TOML; ``UNIREP_IMAGE__MAX_BATCH_SIZE=8`` in the
environment). Section fields default to None meaning "this modality's default" (see ``MODALITY_DEFAULTS``), so that
overriding one field of a section from any source never resets the others to another modality's values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MODALITIES: tuple[str, ...] = ("image", "audio", "video", "pointcloud", "timeseries")
AUTO_WEIGHTS = "auto"
"""Weights value meaning: the variant's released ImageNet checkpoint from the hub when reachable, else random init."""

MODALITY_DEFAULTS: dict[str, dict[str, Any]] = {
    # The embedded default: UniRepLKNet-A everywhere, CPU-friendly batch sizes, official preprocessing constants.
    "image": {"label_set": "imagenet-1k", "in_chans": 3, "weights": AUTO_WEIGHTS, "max_batch_size": 16},
    "audio": {"label_set": "speech-commands-v2", "in_chans": 1, "weights": None, "max_batch_size": 16},
    "video": {"label_set": "kinetics-400", "in_chans": 3, "weights": None, "max_batch_size": 4, "max_delay_ms": 10.0},
    "pointcloud": {"label_set": "modelnet40", "in_chans": 3, "weights": None, "max_batch_size": 16},
    # No standard label set exists for series classification; bring a checkpoint and its labels file.
    "timeseries": {"label_set": None, "num_classes": 2, "in_chans": 1, "weights": None, "max_batch_size": 16},
}
_COMMON_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "model": "unireplknet_a",
    "num_classes": None,
    "params": {},
    "adapt_stem": False,
    "reinit_head": False,
    "multi_label": None,
    "max_batch_size": 16,
    "max_delay_ms": 5.0,
    "max_queue_size": 256,
}


class ModalitySettings(BaseModel):
    """One modality's model section; None means "the modality's default" (resolved by ``resolve``)."""

    enabled: bool | None = None
    model: str | None = Field(default=None, description="UniRepLKNet variant, e.g. unireplknet_a .. unireplknet_xl")
    weights: str | None = Field(
        default=None,
        description="checkpoint path or hub ref; 'auto' = released ImageNet weights if reachable; 'none' = random",
    )
    label_set: str | None = Field(
        default=None, description="shipped label set name or a path to a labels .txt (one a line)"
    )
    num_classes: int | None = Field(default=None, ge=1, description="head size when there is no label set")
    in_chans: int | None = Field(default=None, ge=1)
    params: dict[str, Any] | None = Field(default=None, description="preprocessing params for the modality adapter")
    adapt_stem: bool | None = Field(
        default=None, description="sum an RGB checkpoint's stem over channels for 1-channel input"
    )
    reinit_head: bool | None = Field(
        default=None, description="drop a checkpoint head of another size (it needs training)"
    )
    multi_label: bool | None = Field(
        default=None, description="sigmoid scores instead of softmax (AudioSet is multi-label)"
    )
    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_delay_ms: float | None = Field(default=None, ge=0.0, le=10_000.0)
    max_queue_size: int | None = Field(default=None, ge=1)

    def resolve(self, modality: str) -> ModalityConfig:
        values = {**_COMMON_DEFAULTS, **MODALITY_DEFAULTS[modality]}
        values.update({k: v for k, v in self.model_dump().items() if v is not None})
        weights = values["weights"]
        if isinstance(weights, str) and weights.strip().lower() in ("", "none", "random", "random-init"):
            weights = None
        label_set = values["label_set"]
        if isinstance(label_set, str) and label_set.strip().lower() in ("", "none"):
            label_set = None
        multi_label = values["multi_label"]
        if multi_label is None:
            multi_label = label_set == "audioset-527"
        return ModalityConfig(
            modality=modality,
            enabled=bool(values["enabled"]),
            model=values["model"],
            weights=weights,
            label_set=label_set,
            num_classes=values["num_classes"],
            in_chans=int(values["in_chans"]),
            params=dict(values["params"]),
            adapt_stem=bool(values["adapt_stem"]),
            reinit_head=bool(values["reinit_head"]),
            multi_label=bool(multi_label),
            max_batch_size=int(values["max_batch_size"]),
            max_delay_ms=float(values["max_delay_ms"]),
            max_queue_size=int(values["max_queue_size"]),
            explicit=frozenset(k for k, v in self.model_dump().items() if v is not None),
        )


@dataclass(frozen=True)
class ModalityConfig:
    """A modality section with every default filled in: what the runtime builds from."""

    modality: str
    enabled: bool
    model: str
    weights: str | None
    label_set: str | None
    num_classes: int | None
    in_chans: int
    params: dict[str, Any] = field(default_factory=dict)
    adapt_stem: bool = False
    reinit_head: bool = False
    multi_label: bool = False
    max_batch_size: int = 16
    max_delay_ms: float = 5.0
    max_queue_size: int = 256
    explicit: frozenset[str] = frozenset()
    """The fields this section set itself (not defaults): a trained model file may be contradicted only by these."""


class LimitsSettings(BaseModel):
    """Decoder limits (see ``modality_adapters.AdapterLimits``); None keeps the adapter's default."""

    max_pixels: int | None = Field(default=None, ge=1)
    max_audio_seconds: float | None = Field(default=None, gt=0)
    max_video_seconds: float | None = Field(default=None, gt=0)
    max_video_width: int | None = Field(default=None, ge=1)
    max_video_height: int | None = Field(default=None, ge=1)
    max_points: int | None = Field(default=None, ge=1)
    max_series_length: int | None = Field(default=None, ge=1)
    max_series_variables: int | None = Field(default=None, ge=1)


class ServiceSettings(BaseSettings):
    """Every knob of ``unirep serve``. Env: ``UNIREP_<FIELD>``, sections ``UNIREP_<SECTION>__<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="UNIREP_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    device: str = Field(
        default="auto", description="'auto' (every visible CUDA GPU, else CPU), 'cpu', 'cuda', 'cuda:0,cuda:1'"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 (fp16 without bf16 support) autocast on CUDA, fp32 on CPU"
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="intra-op threads of a CPU worker (torch default)"
    )
    prefetch_batches: int = Field(default=1, ge=0, le=8, description="batches staged per device while one runs")
    warmup: bool = Field(default=True, description="run every bucket at every batch size before reporting ready")

    max_body_bytes: int = Field(default=64 * 2**20, ge=1, description="largest request body, enforced while reading")
    default_timeout_ms: float | None = Field(
        default=30_000.0, gt=0, description="deadline of a request without X-Request-Timeout-Ms (None: no deadline)"
    )
    max_top_k: int = Field(default=100, ge=1)

    preprocess_workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1, le=64)
    preprocess_timeout_s: float = Field(
        default=20.0, gt=0, description="per-item decode time limit; the process is killed"
    )
    preprocess_memory_mb: int = Field(default=2048, ge=64, description="address space a decoder may add (RLIMIT_AS)")
    limits: LimitsSettings = LimitsSettings()

    cache_enabled: bool = True
    cache_max_entries: int = Field(default=4096, ge=1)
    cache_ttl_s: float | None = Field(default=3600.0, gt=0)

    # Redis (issue 5): shared cache, API keys and rate limits, scale-out (`unirep gateway` / `unirep worker`).
    redis_url: str | None = Field(
        default=None,
        description="redis://[:password@]host:6379/0; enables the shared result cache, API keys and scale-out",
    )
    redis_namespace: str = Field(default="unirep", min_length=1, description="prefix of every key the service writes")
    redis_timeout_s: float = Field(default=1.0, gt=0, description="connect and command timeout of Redis calls")
    redis_retry_s: float = Field(
        default=2.0, ge=0, description="after a Redis failure, bypass it this long before trying again"
    )
    auth_enabled: bool = Field(default=False, description="require a Bearer API key (`unirep keys create`)")
    rate_limit_per_minute: float | None = Field(
        default=600.0, gt=0, description="default per-key request rate (keys may set their own); None: unlimited"
    )
    rate_limit_burst: int = Field(default=20, ge=1, description="requests a key may send at once above its rate")
    stream_claim_idle_ms: float = Field(
        default=10_000.0, gt=0, description="a batch held this long by a silent (dead) worker is reclaimed"
    )
    stream_read_count: int = Field(
        default=4, ge=1, le=256, description="batches a worker reads at once (XREADGROUP COUNT), merged up to max"
    )
    worker_ttl_s: float = Field(default=5.0, gt=0, description="a worker without a heartbeat this long is dead")

    drain_timeout_s: float = Field(default=30.0, ge=0, description="how long SIGTERM waits for admitted requests")

    debug_fault_injection: bool = Field(
        default=False,
        description="test hook: payloads starting with UNIREP-FAULT:hang|crash|oom misbehave in the decoder",
    )
    debug_inference_delay_ms: float = Field(default=0.0, ge=0, description="test hook: sleep this long in every batch")

    image: ModalitySettings = ModalitySettings()
    audio: ModalitySettings = ModalitySettings()
    video: ModalitySettings = ModalitySettings()
    pointcloud: ModalitySettings = ModalitySettings()
    timeseries: ModalitySettings = ModalitySettings()

    @model_validator(mode="after")
    def _check_redis(self) -> ServiceSettings:
        if self.auth_enabled and not self.redis_url:
            raise ValueError("auth_enabled needs redis_url: API keys and rate limits live in Redis")
        return self

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        for part in value.split(","):
            if part not in ("auto", "cpu", "cuda") and not (part.startswith("cuda:") and part[5:].isdigit()):
                raise ValueError(f"device {part!r} is not 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init kwargs) beat the environment, which beats the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> ServiceSettings:
        """Build the settings once: ``config_file`` (or ``$UNIREP_CONFIG``) is a TOML file; overrides are flags."""
        path = config_file or os.environ.get("UNIREP_CONFIG")
        if not path:
            return cls(**overrides)
        if not Path(path).is_file():
            raise FileNotFoundError(f"settings file not found: {path}")
        bound = type(cls.__name__, (cls,), {"model_config": {**cls.model_config, "toml_file": str(path)}})
        return bound(**overrides)

    def modality(self, name: str) -> ModalityConfig:
        section: ModalitySettings = getattr(self, name)
        return section.resolve(name)

    def modalities(self) -> list[ModalityConfig]:
        """The enabled modalities' resolved sections, in the canonical order."""
        return [cfg for cfg in (self.modality(m) for m in MODALITIES) if cfg.enabled]

    def adapter_limits(self) -> dict[str, Any]:
        return {k: v for k, v in self.limits.model_dump().items() if v is not None}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["image.max_batch_size=8", "port=9000"]`` -> nested dict; values are JSON when they parse as JSON."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out
