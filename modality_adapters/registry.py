"""The adapter registry: the one list of modalities. The service mounts a route, a settings section, a decoder
and a metrics label for every name here, so ``register_adapter(MyAdapter)`` is all a new modality needs."""

from __future__ import annotations

from unirep_errors import NotFoundError

from .base import AdapterLimits, BaseAdapter

__all__ = ["adapter_class", "get_adapter", "list_adapters", "register_adapter"]

_REGISTRY: dict[str, type[BaseAdapter]] = {}


def register_adapter(cls: type[BaseAdapter]) -> type[BaseAdapter]:
    """Add a modality (usable as a class decorator); its ``name`` must be a new lowercase identifier.

    A name is also a URL segment, a settings section and an environment prefix, hence the strict spelling.
    Register before the service's settings and app are built.
    """
    name = getattr(cls, "name", "")
    if not (isinstance(name, str) and name.isidentifier() and name.islower() and name.isascii()):
        raise ValueError(f"adapter name must be a lowercase ASCII identifier, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, BaseAdapter)):
        raise TypeError(f"{cls!r} is not a BaseAdapter subclass")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"modality {name!r} is already registered by {known.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def list_adapters() -> list[str]:
    """The modality names, in registration order (the service mounts one route per name)."""
    return list(_REGISTRY)


def adapter_class(name: str) -> type[BaseAdapter]:
    """The registered class for ``name``; unknown names are a 404."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotFoundError(f"unknown modality {name!r}; available: {', '.join(_REGISTRY)}", modality=name) from None


def get_adapter(name: str, limits: AdapterLimits | None = None) -> BaseAdapter:
    """A new adapter for ``name`` enforcing ``limits`` (defaults when None); unknown names are a 404."""
    return adapter_class(name)(limits)
