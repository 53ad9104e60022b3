"""Layer registry and the layer families (one module per family, each imported on first use)."""
from .base import LAYER_REGISTRY, Layer, layer_class, layer_types, register_layer  # noqa: F401

_loaded = []


def load_all():
    """Import every family module of this package so its layers register (idempotent)."""
    if _loaded:
        return
    _loaded.append(True)
    import importlib
    import pkgutil
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if mod != "base" and not mod.startswith("_"):
            importlib.import_module(f"{__name__}.{mod}")
