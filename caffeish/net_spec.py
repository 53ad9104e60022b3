"""pycaffe's ``net_spec``: build a NetParameter in Python, then save it as YAML or prototxt.

::

    from caffeish.net_spec import NetSpec, layers as L, params as P

    n = NetSpec()
    n.data, n.label = L.Data(batch_size=64, backend=P.Data.LMDB, source="mnist/train_lmdb",
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    n.loss = L.SoftmaxWithLoss(n.relu1, n.label)
    open("net.yaml", "w").write(n.to_yaml())       # or str(n.to_proto()) for a prototxt

``L.<Type>(*bottoms, **fields)``: the bottoms are tops made earlier; ``ntop`` (default 1) says how
many tops the layer has (0: none, as for Silence), ``in_place=True`` makes the tops the bottoms.
A keyword goes to the layer's own parameter message (``convolution_param`` for Convolution and
Deconvolution) when that message has the field, else to LayerParameter (``param``, ``include``,
``loss_weight``, ``propagate_down``, ... and any ``*_param`` given whole). Sub-messages are
dicts, repeated fields lists (or one value). ``P.<Type>.<VALUE>`` names an enum value of the
type's parameter message (``P.Pooling.MAX``, ``P.Data.LMDB``).

Layers are named after their first top as the NetSpec names it (``n.conv1 = ...`` makes layer and
top ``conv1``); unnamed tops and layers get ``<Type><k>`` names, as pycaffe gives them. The
result is checked like a YAML net: an unknown field or a bad enum value is a ConfigError naming
the layer and the field.
"""
from __future__ import annotations

import re
from collections import Counter, OrderedDict

import numpy as np

from .config.schema import ENUMS, MESSAGES, Msg
from .errors import ConfigError, did_you_mean

__all__ = ["NetSpec", "Top", "layers", "params", "to_proto"]


def _param_field(type_name: str) -> str | None:
    """The LayerParameter field holding ``type_name``'s parameters, or None."""
    from .layers import LAYER_REGISTRY, load_all
    load_all()
    cls = LAYER_REGISTRY.get(type_name)
    if cls is not None and cls.param_field:
        return cls.param_field
    for name, f in MESSAGES["LayerParameter"].fields.items():
        if f.kind == "message" and f.type_name == f"{type_name}Parameter":
            return name
    return None


def _plain(value):
    """Python data YAML can hold: numpy scalars and arrays, tuples, Msgs made plain."""
    if isinstance(value, Msg):
        return value.to_dict()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class Top:
    """One output of a layer (``Function``) made by ``L.<Type>(...)``."""

    def __init__(self, fn: "Function", n: int):
        self.fn = fn
        self.n = n

    def to_proto(self) -> Msg:
        """A NetParameter of this top's layer and every layer it depends on."""
        return to_proto(self)

    def __repr__(self):
        return f"<Top {self.n} of L.{self.fn.type_name}>"


class Function:
    """A layer made by ``L.<Type>(*bottoms, **fields)``: its inputs, fields and tops."""

    def __init__(self, type_name: str, inputs, params: dict):
        self.type_name = type_name
        for i, x in enumerate(inputs):
            if not isinstance(x, Top):
                raise TypeError(f"L.{type_name}: bottom {i} is {type(x).__name__} {x!r}, not a "
                                "top; pass the bottoms (tops made by earlier L.<Type> calls) "
                                "first, then keyword fields")
        self.inputs = tuple(inputs)
        params = dict(params)
        self.ntop = int(params.pop("ntop", 1))
        self.in_place = bool(params.pop("in_place", False))
        if self.ntop < 0:
            raise ConfigError(f"L.{type_name}: ntop must be >= 0, got {self.ntop}")
        if self.in_place and len(self.inputs) < self.ntop:
            raise ConfigError(f"L.{type_name}: in_place needs a bottom for each of its "
                              f"{self.ntop} top(s), got {len(self.inputs)}")
        self.params = params
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _name(self, names: dict, autonames: Counter) -> str:
        if self not in names:
            if self.ntop > 0:
                names[self] = _top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _layer(self, names: dict, autonames: Counter, built: dict) -> dict:
        # a bottom is the blob its layer writes: an in-place layer's top is its bottom's blob
        bottoms = [built[t.fn]["top"][t.n] for t in self.inputs]
        tops = bottoms[:self.ntop] if self.in_place else \
            [_top_name(t, names, autonames) for t in self.tops]
        layer = {"name": self._name(names, autonames), "type": self.type_name}
        if bottoms:
            layer["bottom"] = bottoms
        if tops:
            layer["top"] = tops
        lp_fields = MESSAGES["LayerParameter"].fields
        pfield = _param_field(self.type_name)
        pdef = MESSAGES[lp_fields[pfield].type_name] if pfield else None
        for k, v in self.params.items():
            if k.endswith("param") or (k in lp_fields and (pdef is None or k not in pdef.fields)):
                target = layer
            elif pdef is not None and k in pdef.fields:
                target = layer.setdefault(pfield, {})
            else:
                known = list(lp_fields) + (list(pdef.fields) if pdef else [])
                where = f"{pdef.name} or LayerParameter" if pdef else "LayerParameter"
                raise ConfigError(f"L.{self.type_name} (layer '{layer['name']}'): {k!r} is not a "
                                  f"field of {where}{did_you_mean(k, known)}")
            if k in target and isinstance(target[k], dict) and isinstance(v, dict):
                target[k].update(_plain(v))
            else:
                target[k] = _plain(v)
        return layer


def _top_name(top: Top, names: dict, autonames: Counter) -> str:
    if top not in names:
        autonames[top.fn.type_name] += 1
        names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
    return names[top]


def _collect(top: Top, out: "OrderedDict[Function, None]"):
    """Layers in dependency order (each after the layers of its bottoms)."""
    stack = [(top.fn, False)]
    while stack:
        fn, done = stack.pop()
        if fn in out:
            continue
        if done:
            out[fn] = None
            continue
        stack.append((fn, True))
        for t in reversed(fn.inputs):
            if t.fn not in out:
                stack.append((t.fn, False))


def _build(tops, names: dict) -> Msg:
    from .config.yaml_loader import parse_message
    import yaml

    fns: "OrderedDict[Function, None]" = OrderedDict()
    for t in tops:
        _collect(t, fns)
    autonames: Counter = Counter()
    built: dict = {}
    for fn in fns:
        built[fn] = fn._layer(names, autonames, built)
    text = yaml.safe_dump({"layer": list(built.values())}, sort_keys=False,
                          default_flow_style=None)
    try:
        return parse_message(text, "NetParameter", "<NetSpec>")
    except ConfigError as e:
        raise ConfigError(re.sub(r"^<NetSpec>:\d+: ", "NetSpec: ", str(e))) from None


def to_proto(*tops: Top) -> Msg:
    """pycaffe's ``to_proto``: a NetParameter of the layers ``tops`` need (auto-named)."""
    return _build(tops, {})


class NetSpec:
    """Tops by name: ``n.conv1 = L.Convolution(...)``; ``to_proto()`` names layers after them."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        if not isinstance(value, Top):
            raise TypeError(f"NetSpec.{name}: assign a top made by L.<Type>(...), got "
                            f"{type(value).__name__}")
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"NetSpec has no top {name!r}"
                                 f"{did_you_mean(name, self.tops)}") from None

    __setitem__ = __setattr__

    def __getitem__(self, name):
        return self.__getattr__(name)

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops)

    def to_proto(self) -> Msg:
        """The NetParameter of every named top and the layers behind them."""
        names = {top: name for name, top in self.tops.items()}
        return _build(list(self.tops.values()), names)

    def to_yaml(self) -> str:
        from .config.yaml_loader import dump_message
        return dump_message(self.to_proto())

    def to_prototxt(self) -> str:
        from .io.prototxt import to_prototxt
        return to_prototxt(self.to_proto())


class _Layers:
    """``L.<Type>(*bottoms, **fields)`` for any layer type."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def make(*args, **kwargs):
            fn = Function(type_name, args, kwargs)
            if fn.ntop == 0:
                return fn
            return fn.tops[0] if fn.ntop == 1 else fn.tops

        make.__name__ = type_name
        return make


class _EnumValues:
    def __init__(self, type_name: str):
        self._type = type_name
        prefix = f"{type_name}Parameter."
        self._values = {sym: sym for enum, vals in ENUMS.items() if enum.startswith(prefix)
                        for sym in vals}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._values:
            raise AttributeError(f"P.{self._type} has no value {name!r}"
                                 f"{did_you_mean(name, self._values)}; its values are "
                                 f"{', '.join(self._values) or 'none'}")
        return self._values[name]


class _Params:
    """``P.<Type>.<VALUE>``: an enum value of ``<Type>Parameter`` (e.g. ``P.Pooling.MAX``)."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        return _EnumValues(type_name)


layers = _Layers()
params = _Params()
