"""Layer registry and the layer families (one module per family)."""
from .base import LAYER_REGISTRY, Layer, layer_class, layer_types, register_layer  # noqa: F401

_FAMILIES = ("vision", "neuron", "common", "structure", "loss", "data")
_loaded = []


def load_all():
    """Import every family module so its layers register (idempotent)."""
    if _loaded:
        return
    import importlib
    for fam in _FAMILIES:
        importlib.import_module(f"{__name__}.{fam}")
    _loaded.append(True)
