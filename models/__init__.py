"""UniRepLKNet for serving: the faithful network, its variant registry, reparameterization and weight loading."""

from models.checkpoint import LoadedWeights, load_checkpoint, load_model, read_state_dict
from models.hub import resolve_weights
from models.registry import ModelConfig, WeightsSpec, create_model, get_model_config, list_models
from models.unireplknet import UniRepLKNet, UniRepLKNetBlock, reparameterize
from unirep_errors import CheckpointError, ModelError, UnirepError, UnknownModelError

__all__ = [
    "CheckpointError",
    "LoadedWeights",
    "ModelConfig",
    "ModelError",
    "UniRepLKNet",
    "UniRepLKNetBlock",
    "UnirepError",
    "UnknownModelError",
    "WeightsSpec",
    "create_model",
    "get_model_config",
    "list_models",
    "load_checkpoint",
    "load_model",
    "read_state_dict",
    "reparameterize",
    "resolve_weights",
]
