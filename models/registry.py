"""Registry of UniRepLKNet variants, in the style of timm: a name maps to an architecture and a ``ModelConfig``.

The config is the one place where a model's input contract lives (input size, mean/std, crop, classes, label set,
default weights); the service and the modality adapters read preprocessing constants from it, never from literals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from models.kernels import KernelSizes, default_kernel_sizes
from models.unireplknet import UniRepLKNet
from unirep_errors import UnknownModelError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
HUB_REPO = "DingXiaoH/UniRepLKNet"


@dataclass(frozen=True)
class WeightsSpec:
    """A released checkpoint: hub file name, class count, label set and the resolution it was trained for."""

    tag: str
    filename: str
    num_classes: int
    label_set: str | None
    input_size: int


@dataclass(frozen=True)
class ModelConfig:
    """Everything a caller needs to feed and interpret a variant: its input contract and its weights."""

    name: str
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    kernel_sizes: KernelSizes
    in_chans: int = 3
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    num_classes: int = 1000
    label_set: str | None = "imagenet-1k"
    weights: tuple[WeightsSpec, ...] = field(default_factory=tuple)
    default_weights: str | None = None
    hub_repo: str = HUB_REPO

    def weights_spec(self, tag: str | None = None) -> WeightsSpec | None:
        """The released weights named ``tag`` (the default ones when None); None when the variant has none."""
        tag = tag or self.default_weights
        for spec in self.weights:
            if spec.tag == tag:
                return spec
        if tag is None:
            return None
        known = ", ".join(s.tag for s in self.weights) or "none"
        raise UnknownModelError(f"{self.name} has no released weights tagged {tag!r} (known: {known})")

    def with_weights(self, tag: str) -> ModelConfig:
        """This config adjusted to a released checkpoint's classes, labels and resolution."""
        spec = self.weights_spec(tag)
        assert spec is not None
        return replace(
            self,
            num_classes=spec.num_classes,
            label_set=spec.label_set,
            input_size=(self.in_chans, spec.input_size, spec.input_size),
            default_weights=spec.tag,
        )


def _in1k(variant: str, acc: str) -> WeightsSpec:
    return WeightsSpec("in1k", f"unireplknet_{variant}_in1k_224_acc{acc}.pth", 1000, "imagenet-1k", 224)


def _in22k(variant: str, size: int) -> WeightsSpec:
    # The 21841-class head ships without a label map upstream; we do not invent one.
    return WeightsSpec("in22k", f"unireplknet_{variant}_in22k_pretrain.pth", 21841, None, size)


def _in22k_to_1k(variant: str, acc: str) -> WeightsSpec:
    return WeightsSpec(
        "in22k_to_in1k", f"unireplknet_{variant}_in22k_to_in1k_384_acc{acc}.pth", 1000, "imagenet-1k", 384
    )


def _config(
    variant: str, depths: tuple[int, ...], dims: tuple[int, ...], weights: tuple[WeightsSpec, ...]
) -> ModelConfig:
    default = weights[0] if weights else None
    size = default.input_size if default else 224
    return ModelConfig(
        name=f"unireplknet_{variant}",
        depths=depths,
        dims=dims,
        kernel_sizes=default_kernel_sizes(depths),
        input_size=(3, size, size),
        weights=weights,
        default_weights=default.tag if default else None,
    )


_SMALL = (2, 2, 6, 2)
_DEEP = (3, 3, 27, 3)
_CONFIGS: dict[str, ModelConfig] = {
    cfg.name: cfg
    for cfg in (
        _config("a", _SMALL, (40, 80, 160, 320), (_in1k("a", "77.03"),)),
        _config("f", _SMALL, (48, 96, 192, 384), (_in1k("f", "78.58"),)),
        _config("p", _SMALL, (64, 128, 256, 512), (_in1k("p", "80.23"),)),
        _config("n", (2, 2, 8, 2), (80, 160, 320, 640), (_in1k("n", "81.64"),)),
        _config("t", (3, 3, 18, 3), (80, 160, 320, 640), (_in1k("t", "83.21"),)),
        _config("s", _DEEP, (96, 192, 384, 768), (_in1k("s", "83.91"), _in22k("s", 224), _in22k_to_1k("s", "86.44"))),
        _config("b", _DEEP, (128, 256, 512, 1024), (_in22k_to_1k("b", "87.40"), _in22k("b", 224))),
        _config("l", _DEEP, (192, 384, 768, 1536), (_in22k_to_1k("l", "87.88"), _in22k("l", 192))),
        _config("xl", _DEEP, (256, 512, 1024, 2048), (_in22k_to_1k("xl", "87.96"), _in22k("xl", 192))),
    )
}


def list_models() -> list[str]:
    """Registered variant names, smallest first."""
    return list(_CONFIGS)


def get_model_config(name: str) -> ModelConfig:
    try:
        return _CONFIGS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(_CONFIGS)}") from None


def create_model(
    name: str,
    *,
    in_chans: int | None = None,
    num_classes: int | None = None,
    deploy: bool = False,
    kernel_sizes: Sequence[Sequence[int]] | None = None,
    **kwargs: Any,
) -> UniRepLKNet:
    """Build a registered variant with random weights; arguments left as None take the config's values.

    Load weights with ``models.load_model`` or ``models.load_checkpoint``; building on the meta device
    (``with torch.device("meta"):``) costs no memory, which is how the shape tests check XL.
    """
    cfg = get_model_config(name)
    return UniRepLKNet(
        in_chans=cfg.in_chans if in_chans is None else in_chans,
        num_classes=cfg.num_classes if num_classes is None else num_classes,
        depths=cfg.depths,
        dims=cfg.dims,
        kernel_sizes=cfg.kernel_sizes if kernel_sizes is None else kernel_sizes,
        deploy=deploy,
        **kwargs,
    )
