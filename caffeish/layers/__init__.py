"""Layer registry and the layer families (one module per family, each imported on first use).

Installed packages add native layers through the ``caffeish.layers`` entry point group, e.g. in
their pyproject.toml::

    [project.entry-points."caffeish.layers"]
    my_layers = "my_package.layers"              # a module: its @register_layer classes register
    MyType = "my_package.layers:MyLayer"          # a Layer subclass: registered as 'MyType'
    setup = "my_package.layers:register_all"     # a function: called with no arguments
"""
from .base import LAYER_REGISTRY, Layer, layer_class, layer_types, register_layer  # noqa: F401

PLUGIN_GROUP = "caffeish.layers"

_loaded = []


def load_all():
    """Import every family module of this package so its layers register, then the installed
    ``caffeish.layers`` plugins (idempotent)."""
    if _loaded:
        return
    _loaded.append(True)
    import importlib
    import pkgutil
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if mod != "base" and not mod.startswith("_"):
            importlib.import_module(f"{__name__}.{mod}")
    load_plugins()


def load_plugins() -> list[str]:
    """Load the ``caffeish.layers`` entry points; returns the names loaded. A plugin that fails
    to import or register gives a warning naming it, never an exception."""
    import types
    import warnings
    from importlib.metadata import entry_points

    from ..log import logger

    def warn(ep, err):
        msg = (f"caffeish: layer plugin '{ep.name}' ({ep.value}) from entry point group "
               f"'{PLUGIN_GROUP}' could not be loaded: {type(err).__name__}: {err}")
        logger.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    loaded, seen = [], set()
    for ep in entry_points(group=PLUGIN_GROUP):
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        try:
            obj = ep.load()
            if isinstance(obj, type) and issubclass(obj, Layer):
                if LAYER_REGISTRY.get(getattr(obj, "type", None)) is not obj:
                    register_layer(ep.name)(obj)
            elif isinstance(obj, type):
                raise TypeError(f"{obj.__name__} is not a subclass of caffeish.layers.Layer")
            elif callable(obj) and not isinstance(obj, types.ModuleType):
                obj()
        except Exception as e:  # noqa: BLE001  (a broken plugin must not stop caffeish)
            warn(ep, e)
            continue
        loaded.append(ep.name)
    return loaded
