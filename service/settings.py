"""The service's one settings class: built once (flags > ``UNIREP_`` env vars > TOML file > defaults), then passed
into ``service.http.app.create_app``. Nothing else in the service reads the environment.

Each modality has its own section (``[image]``, ``[audio]``, ... in TOML; ``UNIREP_IMAGE__MAX_BATCH_SIZE=8`` in the
environment). The sections are made from the adapter registry (``modality_adapters.list_adapters``): one per
registered modality, added to the class the first time settings are built, so this module imports no torch until
then. Section fields default to None meaning "this modality's default" (the adapter's ``serving`` defaults), so
that overriding one field of a section from any source never resets the others to another modality's values.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from servable.config import ModalityConfig, ModalitySettings
from service.settings_values import checked_redis_url, networks


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
    grpc_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve the Open Inference Protocol over gRPC on this port (off: None)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    device: str = Field(
        default="auto", description="'auto' (every visible CUDA GPU, else CPU), 'cpu', 'cuda', 'cuda:0,cuda:1'"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 (fp16 without bf16 support) autocast on CUDA, fp32 on CPU"
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="intra-op threads of a CPU worker, any backend (default: the cores the decoders leave free)",
    )
    backend_cache_dir: str | None = Field(
        default=None, description="exported graphs kept between starts (default: ~/.cache/unirep/backends)"
    )
    backend_remeasure: bool = Field(default=False, description="auto: time the candidates again (not the remembered)")
    prefetch_batches: int = Field(default=1, ge=0, le=8, description="batches staged per device while one runs")
    warmup: bool = Field(
        default=True,
        description="warm every bucket at batch sizes 1 and max before ready, the other sizes while idle (false: 1)",
    )
    random_seed: int = Field(
        default=0, ge=0, description="seed of random initialization (mixed with each model's name and modality)"
    )

    max_body_bytes: int = Field(default=64 * 2**20, ge=1, description="largest request body, enforced while reading")
    default_timeout_ms: float | None = Field(
        default=30_000.0, gt=0, description="deadline of a request without X-Request-Timeout-Ms (None: no deadline)"
    )
    max_top_k: int = Field(default=100, ge=1)

    # Bounds enforced by the HTTP protocol before the app (and auth) sees a request: service.http.guarded_protocol.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="largest request head; larger is 431")
    header_timeout_s: float = Field(default=10.0, gt=0, description="a request head must arrive within this (408)")
    body_idle_timeout_s: float = Field(
        default=10.0, gt=0, description="a body that sends no byte this long while awaited is refused (408)"
    )
    body_timeout_s: float = Field(
        default=120.0, gt=0, description="a whole request body must arrive within this after its head (408)"
    )
    max_connections: int = Field(default=1024, ge=1, description="open connections; one more is refused with 503")
    keep_alive_timeout_s: int = Field(default=5, ge=1, description="an idle keep-alive connection is closed after")
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="CIDRs of the proxies in front (e.g. 10.0.0.0/8,127.0.0.1/32); from them, the client is the "
        "right-most untrusted address of forwarded_header. Empty: forwarded headers are ignored",
    )
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for",
        description="the header the trusted proxies append the client's address to (X-Forwarded-For, or RFC 7239)",
    )

    # Half the cores (at most 4): on a CPU-only host the model's threads take the other half.
    preprocess_workers: int = Field(default_factory=lambda: max(1, min(4, (os.cpu_count() or 1) // 2)), ge=1, le=64)
    preprocess_timeout_s: float = Field(
        default=20.0, gt=0, description="per-item decode time limit; the process is killed"
    )
    preprocess_memory_mb: int = Field(default=2048, ge=64, description="address space a decoder may add (RLIMIT_AS)")
    limits: LimitsSettings = LimitsSettings()
    preprocess_spares: int = Field(default=1, ge=0, le=8, description="started spare decoders per lane")
    heavy_decoders: int = Field(default=1, ge=1, le=16, description="niced decoders for expensive inputs")
    heavy_image_pixels: int = Field(default=16_000_000, ge=1, description="images above go to the heavy lane")
    heavy_input_bytes: int = Field(default=16 * 2**20, ge=1, description="inputs above go to the heavy lane")
    client_crash_budget: int = Field(default=3, ge=1, description="decoder crashes a client may cause per window")
    client_crash_window_s: float = Field(default=60.0, gt=0)
    client_decode_rate: float | None = Field(
        default=None,
        gt=0,
        description="decoder-seconds per second a client (API key, else address) may use; unset: half the decoders",
    )
    client_decode_burst_s: float = Field(default=10.0, gt=0, description="decoder-seconds a client may use at once")

    cache_enabled: bool = True
    cache_max_entries: int = Field(default=4096, ge=1)
    cache_ttl_s: float | None = Field(default=3600.0, gt=0)

    # Redis: shared cache, API keys and rate limits, scale-out (`unirep gateway` / `unirep worker`).
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
    # The model repository: named models and versions beside the modality sections' default models.
    model_repository: str | None = Field(
        default=None, description="a model repository folder: NAME/N/model.safetensors (+ NAME/config.toml)"
    )
    model_control: Literal["none", "explicit", "poll"] = Field(
        default="none",
        description="none: load the repository at start; explicit: load_models at start, then the API; "
        "poll: load it at start and rescan every repository_poll_s",
    )
    load_models: list[str] = Field(
        default_factory=list, description="with explicit model control, the models to load at start ('*': all)"
    )
    repository_poll_s: float = Field(default=15.0, gt=0, description="with poll model control, the rescan interval")

    debug_fault_injection: bool = Field(
        default=False,
        description="test hook: payloads starting with UNIREP-FAULT:hang|crash|kill|oom|slow misbehave in the decoder",
    )
    debug_inference_delay_ms: float = Field(default=0.0, ge=0, description="test hook: sleep this long in every batch")

    def __init__(self, **values: Any) -> None:
        add_modality_sections(type(self))
        super().__init__(**values)

    def __getattr__(self, name: str) -> Any:
        # Modality sections are fields added at run time; this keeps attribute access to them typed as Any.
        return super().__getattr__(name)  # type: ignore[misc]

    @model_validator(mode="after")
    def _check_redis(self) -> ServiceSettings:
        if self.auth_enabled and not self.redis_url:
            raise ValueError("auth_enabled needs redis_url: API keys and rate limits live in Redis")
        return self

    @model_validator(mode="after")
    def _check_repository(self) -> ServiceSettings:
        if self.model_control != "none" and not self.model_repository:
            raise ValueError(f"model_control {self.model_control!r} needs model_repository (--model-repository DIR)")
        if self.load_models and self.model_control != "explicit":
            raise ValueError("load_models (--load-model) applies to model_control 'explicit' only")
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        """A URL the Redis client can connect with, checked here so a typo is one line at start, not a traceback."""
        return checked_redis_url(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        """A comma-separated string (the environment's form) or a list; host bits are allowed (10.1.2.3/8)."""
        return networks(value)

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
        add_modality_sections(cls)
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
        return [cfg for cfg in (self.modality(m) for m in modality_names()) if cfg.enabled]

    def adapter_limits(self) -> dict[str, Any]:
        return {k: v for k, v in self.limits.model_dump().items() if v is not None}


def modality_names() -> tuple[str, ...]:
    """The registered modalities, in the adapter registry's order (imports the adapters, hence torch)."""
    from modality_adapters import list_adapters

    return tuple(list_adapters())


def add_modality_sections(cls: type[ServiceSettings]) -> None:
    """Give ``cls`` a ``ModalitySettings`` field per registered modality it lacks (e.g. one registered late)."""
    missing = [name for name in modality_names() if name not in cls.__pydantic_fields__]
    if not missing:
        return
    for name in missing:
        cls.__pydantic_fields__[name] = FieldInfo.from_annotated_attribute(ModalitySettings, ModalitySettings())
    cls.model_rebuild(force=True)


def __getattr__(name: str) -> Any:
    """``MODALITIES`` is computed from the adapter registry when asked for (not at import: no torch then)."""
    if name == "MODALITIES":
        add_modality_sections(ServiceSettings)
        return modality_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
