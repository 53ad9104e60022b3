"""Layer base class and the layer registry."""
from __future__ import annotations

import numpy as np

from ..backend import get_backend
from ..blob import Blob
from ..errors import ConfigError, ShapeError, did_you_mean

LAYER_REGISTRY: dict[str, type] = {}


def register_layer(type_name: str):
    """Class decorator: make ``type_name`` (Caffe's type string) build this class."""

    def deco(cls):
        if type_name in LAYER_REGISTRY:
            raise ValueError(f"layer type {type_name!r} registered twice "
                             f"({LAYER_REGISTRY[type_name].__module__} and {cls.__module__})")
        cls.type = type_name
        LAYER_REGISTRY[type_name] = cls
        return cls

    return deco


def layer_class(type_name: str, where: str = "", context: str = "") -> type:
    from . import load_all
    load_all()
    cls = LAYER_REGISTRY.get(type_name)
    if cls is None:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{context}unknown layer type {type_name!r}"
                          f"{did_you_mean(type_name, LAYER_REGISTRY)}. "
                          f"Registered types: {', '.join(sorted(LAYER_REGISTRY))}.")
    return cls


def layer_types() -> list[str]:
    from . import load_all
    load_all()
    return sorted(LAYER_REGISTRY)


class Layer:
    """The setup / reshape / forward / backward contract.

    Class attributes declare the contract: bottom/top counts, whether the layer may run in place,
    whether it is a loss (loss_weight 1 on top[0] by default) and which ``*_param`` it reads.
    ``backward`` *overwrites* bottom diffs and *accumulates* parameter diffs.
    """

    type: str = "?"
    exact_bottoms: int | None = None
    min_bottoms: int = 0
    max_bottoms: int | None = None
    exact_tops: int | None = None
    min_tops: int = 0
    max_tops: int | None = None
    in_place_ok: bool = False
    is_loss: bool = False
    param_field: str | None = None

    def __init__(self, layer_param, phase: str = "TRAIN", dtype=np.float32, rng=None):
        self.layer_param = layer_param
        self.name = layer_param.name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.blobs: list[Blob] = []
        self.rng = rng if rng is not None else np.random.default_rng()
        self.param = getattr(layer_param, self.param_field) if self.param_field else None

    # --- helpers for subclasses ------------------------------------------------------------
    @property
    def backend(self):
        return get_backend()

    def describe(self) -> str:
        return f"layer '{self.name}' ({self.type})"

    def where(self, field=None) -> str:
        lp = self.layer_param
        if field and self.param_field and lp.has(self.param_field):
            w = getattr(lp, self.param_field).where(field)
            if w:
                return w
        return lp.where()

    def _msg(self, message, field=None):
        w = self.where(field)
        return f"{w + ': ' if w else ''}{self.describe()}: {message}"

    def shape_error(self, message, field=None) -> ShapeError:
        return ShapeError(self._msg(message, field))

    def config_error(self, message, field=None) -> ConfigError:
        return ConfigError(self._msg(message, field))

    def new_param_blob(self, shape, filler=None) -> Blob:
        """A parameter blob of ``shape`` filled by the FillerParameter ``filler``."""
        from ..fillers import fill
        b = Blob(shape, self.dtype, name=f"{self.name}[{len(self.blobs)}]")
        if filler is not None:
            try:
                fill(b.data, filler, self.rng)
            except ConfigError as e:
                raise self.config_error(str(e)) from None
        return b

    def check_blob_counts(self, bottom, top):
        def check(kind, n, exact, lo, hi):
            if exact is not None and n != exact:
                raise self.config_error(f"takes exactly {exact} {kind} blob(s), got {n}")
            if n < lo:
                raise self.config_error(f"takes at least {lo} {kind} blob(s), got {n}")
            if hi is not None and n > hi:
                raise self.config_error(f"takes at most {hi} {kind} blob(s), got {n}")
        check("bottom", len(bottom), self.exact_bottoms, self.min_bottoms, self.max_bottoms)
        check("top", len(top), self.exact_tops, self.min_tops, self.max_tops)

    # --- the contract ------------------------------------------------------------------------
    def setup(self, bottom: list[Blob], top: list[Blob]):
        """Read ``self.param``, create ``self.blobs``. Called once, before the first reshape."""

    def reshape(self, bottom: list[Blob], top: list[Blob]):
        """Set top shapes from bottom shapes (a pure function of shapes)."""
        raise NotImplementedError

    def forward(self, bottom: list[Blob], top: list[Blob]):
        raise NotImplementedError

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]):
        """Default: no gradient (data layers, Accuracy...)."""

    def allow_force_backward(self, bottom_index: int) -> bool:
        return True

    def needs_backward_always(self) -> bool:
        return False

    # RNG / cursor state that must travel with a snapshot for an exact resume.
    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def set_state(self, state: dict):
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]

    def close(self):
        """Release threads and files (data layers)."""
