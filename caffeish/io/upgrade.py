"""Caffe's proto upgrades (``upgrade_proto.cpp``) on :class:`Msg` values.

:func:`upgrade_net` is ``UpgradeNetAsNeeded``: legacy data-transform fields of V1 data layers
move into ``transform_param``; V1 ``layers`` become V2 ``layer`` (type enum -> type string,
``blobs_lr``/``weight_decay``/``param``/``blob_share_mode`` -> ``param`` specs); the legacy
``input`` + ``input_shape``/``input_dim`` fields become an ``Input`` layer at the front; a
BatchNorm layer with the three old ``param`` specs loses them. V0 nets (``layers { layer {...}
}``) are refused. :func:`upgrade_solver` is ``UpgradeSolverAsNeeded``: ``solver_type`` enum ->
``type`` string. Both return ``(upgraded copy, notes)``; ``notes`` says what changed, one line
per change, for the import command to print.

Source lines survive: an upgraded layer keeps the ``src`` and field lines of the V1 layer.
"""
from __future__ import annotations

from ..config.caffe_proto import LAYER_PARAMS, V1_LAYER_PARAMS, V1_TYPE_TO_V2
from ..config.schema import Msg
from ..errors import ConfigError

__all__ = ["upgrade_net", "upgrade_solver", "unknown_layer_types", "net_needs_upgrade",
           "SOLVER_TYPE_NAMES"]

# SolverParameter.SolverType -> SolverParameter.type (UpgradeSolverType).
SOLVER_TYPE_NAMES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                     "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}

# V1 layer types whose *_param carries the deprecated transform fields.
_DATA_TRANSFORM = {"DATA": "data_param", "IMAGE_DATA": "image_data_param",
                   "WINDOW_DATA": "window_data_param"}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# V1 *_param fields copied to the V2 field of the same name (transform/loss included).
_COPIED_PARAMS = [f for f in V1_LAYER_PARAMS if f in LAYER_PARAMS or
                  f in ("transform_param", "loss_param")]


def _loc(msg: Msg, field=None) -> str:
    w = msg.where(field)
    return f"{w}: " if w else ""


def _v1_name(v1: Msg) -> str:
    return f"layer '{v1.name}' ({v1.type})" if v1.has("name") else f"layer ({v1.type})"


def net_needs_upgrade(net: Msg) -> bool:
    """True when :func:`upgrade_net` would change ``net``."""
    if net.layers or net.input:
        return True
    return any(lp.type == "BatchNorm" and len(lp.param) == 3 for lp in net.layer)


# --- V1 -> V2 ----------------------------------------------------------------------------
def _upgrade_data_transform(v1: Msg, notes: list) -> Msg:
    """UpgradeNetDataTransformation for one V1 layer (returns the layer, changed in place)."""
    pname = _DATA_TRANSFORM.get(v1.type)
    if pname is None or not v1.has(pname):
        return v1
    p = getattr(v1, pname)
    moved = [f for f in _TRANSFORM_FIELDS if p.has(f)]
    if not moved:
        return v1
    had = v1.has("transform_param")
    tp = v1.transform_param.copy() if had else Msg("TransformationParameter", src=p.src)
    for f in moved:
        tp.set(f, getattr(p, f), line=p.line(f))
        p.clear(f)
    v1.set("transform_param", tp, line=v1.line("transform_param" if had else pname))
    notes.append(f"{_loc(v1, pname)}{_v1_name(v1)}: moved the deprecated {pname} field"
                 f"{'s' if len(moved) > 1 else ''} {', '.join(moved)} into transform_param")
    return v1


def _refuse_v0(v1: Msg) -> None:
    if v1.has("layer"):
        name = v1.name if v1.has("name") else v1.layer.name
        raise ConfigError(f"{_loc(v1, 'layer')}layer '{name}': this is a V0 layer "
                          f"(layers {{ layer {{ ... }} }}), Caffe's format before 2014; V0 "
                          f"nets are not supported. Upgrade the file with Caffe's "
                          f"upgrade_net_proto_text first")


def _upgrade_v1_layer(v1: Msg) -> Msg:
    """UpgradeV1LayerParameter: one V1LayerParameter as a LayerParameter."""
    _refuse_v0(v1)
    t = v1.type
    if isinstance(t, int) or t not in V1_TYPE_TO_V2:
        raise ConfigError(f"{_loc(v1, 'type')}layer '{v1.name}': unknown V1 layer type {t!r}")
    lp = Msg("LayerParameter", src=v1.src)

    def put(name, value, src_field):
        lp.set(name, value, line=v1.line(src_field))

    if v1.has("name"):
        put("name", v1.name, "name")
    if v1.has("type"):
        put("type", V1_TYPE_TO_V2[t], "type")
    if v1.bottom:
        put("bottom", list(v1.bottom), "bottom")
    if v1.top:
        put("top", list(v1.top), "top")
    for rule in ("include", "exclude"):
        if getattr(v1, rule):
            put(rule, [r.copy() for r in getattr(v1, rule)], rule)

    spec_fields = [f for f in ("param", "blob_share_mode", "blobs_lr", "weight_decay")
                   if v1.has(f)]
    spec_lines = [v1.line(f) for f in spec_fields if v1.line(f) is not None]
    spec_line = min(spec_lines) if spec_lines else None
    specs: list[Msg] = []

    def spec(i, src_field):
        while len(specs) <= i:
            specs.append(Msg("ParamSpec", src=(v1.src[0], v1.line(src_field)) if v1.src
                             else None))
        return specs[i]

    for i, name in enumerate(v1.param):
        spec(i, "param").set("name", name)
    for i, mode in enumerate(v1.blob_share_mode):
        if isinstance(mode, int):
            raise ConfigError(f"{_loc(v1, 'blob_share_mode')}{_v1_name(v1)}: unknown "
                              f"blob_share_mode {mode}")
        spec(i, "blob_share_mode").set("share_mode", mode)
    for i, lr in enumerate(v1.blobs_lr):
        spec(i, "blobs_lr").set("lr_mult", float(lr))
    for i, decay in enumerate(v1.weight_decay):
        spec(i, "weight_decay").set("decay_mult", float(decay))
    if specs:
        lp.set("param", specs, line=spec_line)
    if v1.loss_weight:
        put("loss_weight", [float(w) for w in v1.loss_weight], "loss_weight")
    if v1.blobs:
        put("blobs", [b.copy() for b in v1.blobs], "blobs")
    for fname in _COPIED_PARAMS:
        if v1.has(fname):
            put(fname, getattr(v1, fname).copy(), fname)
    return lp


def _upgrade_v1_net(net: Msg, notes: list) -> None:
    if net.layer:
        raise ConfigError(f"{_loc(net, 'layers')}the net has both 'layer' (current format) and "
                          f"'layers' (V1 format) entries; Caffe refuses such a file too. Write "
                          f"every layer as layer {{ type: \"Convolution\" ... }}")
    v2 = []
    for v1 in net.layers:
        v1 = _upgrade_data_transform(v1.copy(), notes)
        v2.append(_upgrade_v1_layer(v1))
    line = net.line("layers")
    net.clear("layers")
    net.set("layer", v2, line=line)
    notes.append(f"{_loc(net, 'layer')}upgraded {len(v2)} V1 'layers' entr"
                 f"{'y' if len(v2) == 1 else 'ies'} to 'layer' (type enums -> type strings, "
                 f"blobs_lr/weight_decay -> param {{ lr_mult decay_mult }})")


def _warn_v2_transform_fields(net: Msg, notes: list) -> None:
    """Caffe moves the deprecated transform fields only for V1 layers; V2 layers keep them and
    Caffe's data layers then ignore them. Say so rather than silently change the meaning."""
    for lp in net.layer:
        for pname in ("data_param", "image_data_param", "window_data_param"):
            if not lp.has(pname):
                continue
            p = getattr(lp, pname)
            stale = [f for f in _TRANSFORM_FIELDS if p.has(f)]
            if stale:
                notes.append(f"{_loc(lp, pname)}warning: layer '{lp.name}' ({lp.type}): "
                             f"{pname} sets the deprecated {', '.join(stale)}; Caffe ignores "
                             f"these in 'layer' entries: move them into transform_param")


def _upgrade_input(net: Msg, notes: list) -> None:
    """UpgradeNetInput: the ``input`` fields become an Input layer at the front."""
    names = list(net.input)
    line = net.line("input")
    if net.input_shape:
        if len(net.input_shape) != len(names):
            raise ConfigError(f"{_loc(net, 'input_shape')}{len(names)} inputs but "
                              f"{len(net.input_shape)} input_shape entries")
        shapes = [s.copy() for s in net.input_shape]
    elif net.input_dim:
        dims = list(net.input_dim)
        if len(dims) != 4 * len(names):
            raise ConfigError(f"{_loc(net, 'input_dim')}input_dim needs 4 values per input "
                              f"({4 * len(names)} for {len(names)} inputs), got {len(dims)}")
        shapes = [Msg("BlobShape", {"dim": dims[4 * i:4 * i + 4]}) for i in range(len(names))]
    else:
        shapes = None
    for f in ("input", "input_shape", "input_dim"):
        net.clear(f)
    if shapes is None:
        notes.append(f"{_loc(net)}dropped the 'input' field{'s' if len(names) > 1 else ''} "
                     f"{', '.join(names)}: no input_shape or input_dim gives their shapes "
                     f"(a legacy caffemodel)")
        return
    src = (net.src[0], line) if net.src and line else net.src
    inp = Msg("LayerParameter", src=src)
    inp.set("name", "input", line=line)
    inp.set("type", "Input", line=line)
    inp.set("top", names, line=line)
    inp.set("input_param", Msg("InputParameter", {"shape": shapes}, src=src), line=line)
    layers = [inp] + list(net.layer)
    net.set("layer", layers, line=net.line("layer") if len(layers) > 1 else line)
    shown = "; ".join(f"{n} {list(s.dim)}" for n, s in zip(names, shapes))
    notes.append(f"{_loc(inp)}converted the legacy input fields into an Input layer "
                 f"'input' ({shown})")


def _upgrade_batch_norm(net: Msg, notes: list) -> None:
    """UpgradeNetBatchNorm: BatchNorm layers with the three old param specs lose them (the
    layer fixes lr_mult 0 for its statistics itself)."""
    for lp in net.layer:
        if lp.type == "BatchNorm" and len(lp.param) == 3:
            notes.append(f"{_loc(lp, 'param')}layer '{lp.name}' (BatchNorm): removed its 3 "
                         f"param specs (BatchNorm's mean, variance and scale factor are not "
                         f"learned; Caffe's upgrade drops these specs)")
            lp.clear("param")


def upgrade_net(net: Msg) -> tuple[Msg, list[str]]:
    """Caffe's UpgradeNetAsNeeded on a NetParameter: ``(upgraded copy, notes)``."""
    if net.mdef.name != "NetParameter":
        raise TypeError(f"upgrade_net needs a NetParameter, got {net.mdef.name}")
    net = net.copy()
    notes: list[str] = []
    for v1 in net.layers:
        _refuse_v0(v1)
    if net.layers:
        _upgrade_v1_net(net, notes)
    _warn_v2_transform_fields(net, notes)
    if net.input:
        _upgrade_input(net, notes)
    elif net.input_shape or net.input_dim:
        which = "input_shape" if net.input_shape else "input_dim"
        raise ConfigError(f"{_loc(net, which)}{which} is given without 'input' names")
    _upgrade_batch_norm(net, notes)
    return net, notes


def upgrade_solver(solver: Msg) -> tuple[Msg, list[str]]:
    """Caffe's UpgradeSolverAsNeeded: ``solver_type: ADAM`` -> ``type: "Adam"``. Inline nets
    (net_param, train_net_param, test_net_param) are upgraded with :func:`upgrade_net`."""
    if solver.mdef.name != "SolverParameter":
        raise TypeError(f"upgrade_solver needs a SolverParameter, got {solver.mdef.name}")
    solver = solver.copy()
    notes: list[str] = []
    if solver.has("solver_type"):
        if solver.has("type"):
            raise ConfigError(f"{_loc(solver, 'solver_type')}solver: the old solver_type field "
                              f"(enum) and the new type field (string) cannot both be given")
        old = solver.solver_type
        if old not in SOLVER_TYPE_NAMES:
            raise ConfigError(f"{_loc(solver, 'solver_type')}solver: unknown solver_type {old}")
        solver.set("type", SOLVER_TYPE_NAMES[old], line=solver.line("solver_type"))
        solver.clear("solver_type")
        notes.append(f"{_loc(solver, 'type')}solver: replaced the deprecated "
                     f"'solver_type: {old}' with 'type: \"{SOLVER_TYPE_NAMES[old]}\"'")
    for f in ("net_param", "train_net_param"):
        if solver.has(f):
            up, sub = upgrade_net(getattr(solver, f))
            solver.set(f, up, line=solver.line(f))
            notes += [f"{f}: {n}" for n in sub]
    if solver.test_net_param:
        ups = []
        for i, tn in enumerate(solver.test_net_param):
            up, sub = upgrade_net(tn)
            ups.append(up)
            notes += [f"test_net_param[{i}]: {n}" for n in sub]
        solver.set("test_net_param", ups, line=solver.line("test_net_param"))
    return solver, notes


def unknown_layer_types(netparam: Msg) -> list[tuple[str, str, int | None]]:
    """``[(layer name, type, line)]`` for every layer whose type caffeish does not implement.

    V1 layers are judged by their V2 type name. The line is None for nets without a source.
    """
    from ..layers import layer_types  # lazily: importing the layers pulls in numba
    known = set(layer_types())
    out = []
    for lp in netparam.layer:
        if lp.type not in known:
            out.append((lp.name, lp.type, lp.line("type")))
    for v1 in netparam.layers:
        t = V1_TYPE_TO_V2.get(v1.type, str(v1.type)) if not isinstance(v1.type, int) \
            else str(v1.type)
        if t not in known:
            out.append((v1.name, t, v1.line("type")))
    return out
