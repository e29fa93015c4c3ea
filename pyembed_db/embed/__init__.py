"""Text embeddings with ONNX models: encoder, model registry, item text, queue sync."""

from .encoder import Encoder, EncoderConfig
from .item_text import ItemTextTemplate
from .models import (
    DEFAULT_MODEL,
    LoadedModel,
    ModelInfo,
    activate_model,
    active_model,
    check_query_vector,
    get_model,
    list_models,
    load_active_encoder,
    load_model,
    register_default_model,
    register_exported,
    register_model,
    set_model_status,
)
from .sync import Reembedded, drain, embed_all, embed_step, reembed

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderConfig",
    "ItemTextTemplate",
    "LoadedModel",
    "ModelInfo",
    "Reembedded",
    "activate_model",
    "active_model",
    "check_query_vector",
    "drain",
    "embed_all",
    "embed_step",
    "get_model",
    "list_models",
    "load_active_encoder",
    "load_model",
    "reembed",
    "register_default_model",
    "register_exported",
    "register_model",
    "set_model_status",
]
