"""The model: encoders, adapters, heads, and how a phase's model is saved and loaded."""

from xstilts.modeling.adapter_setup import (
    AdapterRoutes,
    AdapterSetup,
    AdapterSpec,
    Restored,
    attach_adapters,
    use_language,
)
from xstilts.modeling.encoders import (
    ENCODER_DIR,
    build_encoder,
    freeze,
    load_tokenizer,
    pretrained_fingerprint,
    tiny_tokenizer_path,
    weights_fingerprint,
)
from xstilts.modeling.multitask import MultiTaskModel, float32_forward
from xstilts.modeling.saving import (
    HEADS_FILE,
    load_head_as,
    load_heads,
    load_trained_model,
    save_model,
)

__all__ = [
    "ENCODER_DIR",
    "HEADS_FILE",
    "AdapterRoutes",
    "AdapterSetup",
    "AdapterSpec",
    "MultiTaskModel",
    "Restored",
    "attach_adapters",
    "build_encoder",
    "float32_forward",
    "freeze",
    "load_head_as",
    "load_heads",
    "load_tokenizer",
    "load_trained_model",
    "pretrained_fingerprint",
    "save_model",
    "tiny_tokenizer_path",
    "use_language",
    "weights_fingerprint",
]
