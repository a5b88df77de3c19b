"""One modality's settings section: what may be set (``ModalitySettings``, every field None meaning "this
modality's default") and what the runtime builds from (``ModalityConfig``, every default filled in from the
adapter's ``serving`` defaults). ``service.settings`` adds one section per registered modality."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from servable.labels import is_multi_label

__all__ = ["ModalityConfig", "ModalitySettings", "modality_defaults"]

_COMMON_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "model": "unireplknet_a",
    "params": {},
    "adapt_stem": False,
    "reinit_head": False,
    "multi_label": None,
    "max_queue_size": 256,
    "backend": "auto",
}


def modality_defaults(modality: str) -> dict[str, Any]:
    """A section's defaults: the common ones, then the adapter's own ``serving`` defaults. The adapters (and so
    torch) are imported on first use, so that reading settings (the CLI's arguments, ``--help``) stays light."""
    from modality_adapters import adapter_class

    return {**_COMMON_DEFAULTS, **asdict(adapter_class(modality).serving)}


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
    backend: Literal["auto", "torch", "cudagraphs", "openvino", "onnxruntime", "tensorrt"] | None = Field(
        default=None, description="inference backend; auto: openvino > onnxruntime > torch on CPU, tensorrt on CUDA"
    )

    def resolve(self, modality: str) -> ModalityConfig:
        values = modality_defaults(modality)
        values.update({k: v for k, v in self.model_dump().items() if v is not None})
        weights = values["weights"]
        if isinstance(weights, str) and weights.strip().lower() in ("", "none", "random", "random-init"):
            weights = None
        label_set = values["label_set"]
        if isinstance(label_set, str) and label_set.strip().lower() in ("", "none"):
            label_set = None
        multi_label = values["multi_label"]
        if multi_label is None:
            multi_label = is_multi_label(label_set)
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
            backend=str(values["backend"]),
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
    backend: str = "auto"
