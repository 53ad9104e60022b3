"""Net: a DAG of layers built from a NetParameter for one phase (Caffe's Net::Init)."""
from __future__ import annotations

import os
from collections import OrderedDict, defaultdict

import numpy as np

from .blob import Blob
from .config.schema import Msg
from .errors import AllocationError, ConfigError, ShapeError, is_allocation_failure
from .log import logger

PHASES = ("TRAIN", "TEST")


def load_net_param(source) -> Msg:
    """A NetParameter from a YAML path (or an existing Msg)."""
    if isinstance(source, Msg):
        return source
    from .config.yaml_loader import load_message
    path = os.fspath(source)
    if path.endswith((".prototxt", ".pt")):
        from .io.prototxt import parse_prototxt_file
        from .io.upgrade import upgrade_net
        return upgrade_net(parse_prototxt_file(path, "NetParameter"))[0]
    return load_message(path, "NetParameter")


def state_meets_rule(state: Msg, rule: Msg) -> bool:
    if rule.has("phase") and rule.phase != state.phase:
        return False
    if rule.has("min_level") and state.level < rule.min_level:
        return False
    if rule.has("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(lp: Msg, state: Msg) -> bool:
    if lp.include and lp.exclude:
        raise ConfigError(f"{lp.where()}: layer '{lp.name}' ({lp.type}): give either include or "
                          f"exclude rules, not both")
    if lp.include:
        return any(state_meets_rule(state, r) for r in lp.include)
    return not any(state_meets_rule(state, r) for r in lp.exclude)


def filter_net(param: Msg, state: Msg) -> list[Msg]:
    return [lp for lp in _layers_with_inputs(param) if layer_included(lp, state)]


def _layers_with_inputs(param: Msg) -> list[Msg]:
    """Upgrade the legacy ``input`` / ``input_shape`` / ``input_dim`` fields to an Input layer."""
    layers = list(param.layer)
    if param.layers and not param.layer:
        raise ConfigError(f"{param.where('layers')}: this net uses Caffe's legacy V1 'layers' "
                          f"field; run `caffeish import` on the original prototxt to upgrade it")
    if not param.input:
        return layers
    names = list(param.input)
    shapes = []
    if param.input_shape:
        if len(param.input_shape) != len(names):
            raise ConfigError(f"{param.where('input_shape')}: {len(names)} inputs but "
                              f"{len(param.input_shape)} input_shape entries")
        shapes = [list(s.dim) for s in param.input_shape]
    elif param.input_dim:
        dims = list(param.input_dim)
        if len(dims) != 4 * len(names):
            raise ConfigError(f"{param.where('input_dim')}: input_dim needs 4 values per input "
                              f"({4 * len(names)}), got {len(dims)}")
        shapes = [dims[4 * i:4 * i + 4] for i in range(len(names))]
    else:
        raise ConfigError(f"{param.where('input')}: 'input' needs input_shape or input_dim")
    inp = Msg("LayerParameter", {"name": "input", "type": "Input", "top": names,
                                 "input_param": {"shape": [{"dim": s} for s in shapes]}},
              src=param.src)
    return [inp] + layers


def _default_loss_weights(lp: Msg, cls) -> list[float]:
    ntop = len(lp.top)
    if lp.loss_weight:
        if len(lp.loss_weight) != ntop:
            raise ConfigError(f"{lp.where('loss_weight')}: layer '{lp.name}' ({lp.type}): "
                              f"loss_weight must have one value per top ({ntop}), got "
                              f"{len(lp.loss_weight)}")
        return [float(w) for w in lp.loss_weight]
    return [1.0 if (cls.is_loss and j == 0) else 0.0 for j in range(ntop)]


def insert_splits(layers: list[Msg], loss_weights: list[list[float]]):
    """Caffe's InsertSplits: a top read by several bottoms goes through a Split layer.
    The graph must have passed Net._check_graph (every bottom produced earlier)."""
    last_top = {}
    consumers = defaultdict(list)
    for i, lp in enumerate(layers):
        for j, b in enumerate(lp.bottom):
            consumers[last_top[b]].append((i, j))
        for j, t in enumerate(lp.top):
            last_top[t] = (i, j)
    out_layers, out_weights = [], []
    rename = {}
    for i, lp in enumerate(layers):
        lp = lp.copy()
        weights = list(loss_weights[i])
        bottoms = list(lp.bottom)
        for j in range(len(bottoms)):
            if (i, j) in rename:
                bottoms[j] = rename[(i, j)]
        if lp.bottom:
            lp.set("bottom", bottoms)
        out_layers.append(lp)
        out_weights.append(weights)
        for j, t in enumerate(lp.top):
            cons = consumers.get((i, j), [])
            has_loss = weights[j] != 0
            n = len(cons) + (1 if has_loss else 0)
            if n <= 1:
                continue
            base = f"{t}_{lp.name}_{j}_split"
            tops = [f"{base}_{k}" for k in range(n)]
            split = Msg("LayerParameter", {"name": base, "type": "Split", "bottom": [t],
                                           "top": tops}, src=lp.src)
            split_w = [0.0] * n
            if has_loss:
                split_w[0] = weights[j]
                weights[j] = 0.0
            for k, c in enumerate(cons):
                rename[c] = tops[k + (1 if has_loss else 0)]
            out_layers.append(split)
            out_weights.append(split_w)
    return out_layers, out_weights


def _bottom_hint(name, known):
    from .errors import did_you_mean
    hint = did_you_mean(name, known)
    if not hint and not known:
        return " (the net has no data or Input layer before it for this phase)"
    return hint


def _abs_mean(a) -> float:
    return float(np.abs(a).sum()) / a.size if a.size else 0.0


def _no_memory(e: BaseException) -> str:
    return (f"cannot allocate its buffers ({e}); check its sizes (input shape, num_output, "
            "kernel_size, stride, batch_size)")


_GLOBAL_SEEDS: np.random.Generator | None = None


def set_random_seed(seed: int) -> None:
    """pycaffe's ``caffe.set_random_seed``: nets built afterwards without a seed of their own
    (``seed=None``; solvers whose ``random_seed`` is unset) draw their fillers, dropout masks and
    data-layer randomness from seeds taken in turn from this one, so a script repeats exactly."""
    global _GLOBAL_SEEDS
    seed = int(seed)
    _GLOBAL_SEEDS = np.random.default_rng(seed)
    np.random.seed(seed % 2**32)


def _unpad(arr, pad: int) -> np.ndarray:
    """A copy of one batch's rows without the ``pad`` padding rows; a scalar (a loss) becomes one
    entry per batch."""
    arr = np.array(arr, copy=True)
    if arr.ndim == 0:
        return arr[None]
    return arr[:len(arr) - pad] if pad else arr


class Net:
    """A net for one phase. ``blobs`` and ``params`` are name-ordered dicts of Blobs (pycaffe's)."""

    def __init__(self, source, phase="TEST", weights=None, stages=(), level=0,
                 dtype=np.float32, seed=None, state: Msg | None = None, verbose=False):
        import caffeish.config  # noqa: F401
        from .layers import layer_class
        if isinstance(phase, str) and phase.upper() not in PHASES and weights in PHASES + (0, 1):
            phase, weights = weights, phase  # pycaffe's Net(model, weights, phase) order
        phase = phase.upper() if isinstance(phase, str) else PHASES[int(phase)]
        if phase not in PHASES:
            raise ConfigError(f"phase must be TRAIN or TEST, got {phase!r}")
        self.param = load_net_param(source)
        self.file = self.param.src[0] if self.param.src else None
        self.name = self.param.name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        if state is None:
            state = Msg("NetState", {"phase": phase, "level": level, "stage": list(stages)})
        else:
            state = state.copy()
            state.set("phase", phase)
        self.state = state
        seed_base = None if seed is None or seed < 0 else int(seed)
        if seed_base is None and _GLOBAL_SEEDS is not None:
            seed_base = int(_GLOBAL_SEEDS.integers(0, 2**31))

        selected = filter_net(self.param, state)
        if not selected:
            raise ConfigError(f"{self.file or 'net'}: no layer is included in the {phase} phase"
                              f"{' with stages ' + ','.join(state.stage) if state.stage else ''}")
        # 1. types, all unknown ones at once
        unknown, classes = [], []
        from .layers.base import LAYER_REGISTRY
        for lp in selected:
            if not lp.has("type"):
                raise ConfigError(f"{lp.where()}: layer '{lp.name or '?'}' has no 'type'")
            try:
                classes.append(layer_class(lp.type))
            except ConfigError:
                unknown.append(lp)
                classes.append(None)
        if unknown:
            from .errors import did_you_mean
            lines = [f"  {lp.where('type')}: layer '{lp.name}': unknown type '{lp.type}'"
                     f"{did_you_mean(lp.type, LAYER_REGISTRY)}" for lp in unknown]
            raise ConfigError("unknown layer type(s):\n" + "\n".join(lines) +
                              f"\nRegistered types: {', '.join(sorted(LAYER_REGISTRY))}")
        weights_per_layer = [_default_loss_weights(lp, cls) for lp, cls in zip(selected, classes)]
        # 2. graph checks (names, tops), then splits
        self._check_graph(selected)
        layer_params, loss_weights = insert_splits(selected, weights_per_layer)

        # 3. build
        self.layers = []
        self.layer_names = []
        self.blobs: "OrderedDict[str, Blob]" = OrderedDict()
        self.bottom_vecs, self.top_vecs = [], []
        self.bottom_name_vecs, self.top_name_vecs = [], []
        self.loss_weights = []
        self._inputs = []
        produced_by = {}
        for idx, (lp, lw) in enumerate(zip(layer_params, loss_weights)):
            cls = layer_class(lp.type)
            rng = np.random.default_rng(None if seed_base is None else [seed_base, idx])
            layer = cls(lp, phase=phase, dtype=self.dtype, rng=rng)
            bottom = [self.blobs[b] for b in lp.bottom]
            top = []
            for j, t in enumerate(lp.top):
                if j < len(lp.bottom) and lp.bottom[j] == t:
                    if not cls.in_place_ok:
                        raise ConfigError(f"{lp.where('top')}: layer '{lp.name}' ({lp.type}) "
                                          f"cannot run in place (top '{t}' = bottom '{t}'); give "
                                          f"the top its own name")
                    top.append(self.blobs[t])
                else:
                    b = Blob((), self.dtype, name=t)
                    self.blobs[t] = b
                    top.append(b)
                    produced_by[t] = idx
                    if lp.type == "Input":
                        self._inputs.append(t)
            layer.check_blob_counts(bottom, top)
            try:
                layer.setup(bottom, top)
                layer.reshape(bottom, top)
            except Exception as e:
                if not (isinstance(e, AllocationError) or is_allocation_failure(e)):
                    raise
                raise AllocationError(f"{lp.where()}: layer '{lp.name}' ({lp.type}): "
                                      f"{e if isinstance(e, AllocationError) else _no_memory(e)}"
                                      ) from None
            self.layers.append(layer)
            self.layer_names.append(lp.name)
            self.bottom_vecs.append(bottom)
            self.top_vecs.append(top)
            self.bottom_name_vecs.append(list(lp.bottom))
            self.top_name_vecs.append(list(lp.top))
            self.loss_weights.append(lw)
            if verbose:
                for t in top:
                    logger.info(f"Top shape: {t.name} {t.shape_string}")
        self.layer_dict = OrderedDict(zip(self.layer_names, self.layers))
        # Caffe's available_blobs: a top stays an output until a later layer reads it (an
        # in-place layer reads and re-produces it, so its last writer's top counts)
        available = {}
        for bnames, tnames in zip(self.bottom_name_vecs, self.top_name_vecs):
            for b in bnames:
                available.pop(b, None)
            for t in tnames:
                available[t] = True
        self._outputs = [n for n in self.blobs if n in available]
        self._setup_params()
        self._setup_backward()
        self.debug_info = bool(self.param.debug_info)
        self._hooks = {"before_forward": [], "after_forward": [], "before_backward": [],
                       "after_backward": []}
        if verbose:
            mem = sum(b.count for b in self.blobs.values()) * self.dtype.itemsize
            logger.info(f"Network initialization done ({phase}); memory required for data: "
                        f"{mem} bytes")
        if weights:
            self.copy_from(weights)

    # --- construction helpers -------------------------------------------------------------------
    def _check_graph(self, layers):
        names = {}
        available = {}
        for lp in layers:
            ctx = f"layer '{lp.name}' ({lp.type})"
            if lp.name in names and lp.name:
                raise ConfigError(f"{lp.where('name')}: {ctx}: layer name '{lp.name}' is used twice "
                                  f"(first at {names[lp.name]}); layer names must be unique because "
                                  f"weights are matched by name")
            names[lp.name] = lp.where("name")
            for b in lp.bottom:
                if b not in available:
                    raise ConfigError(f"{lp.where('bottom')}: {ctx}: unknown bottom blob '{b}' — "
                                      f"no earlier layer produces it{_bottom_hint(b, available)}")
            for j, t in enumerate(lp.top):
                in_place = j < len(lp.bottom) and lp.bottom[j] == t
                if t in available and not in_place:
                    raise ConfigError(f"{lp.where('top')}: {ctx}: top blob '{t}' is already produced"
                                      f" by layer '{available[t]}'; give it another name (only "
                                      f"in-place layers may reuse their bottom's name)")
                if list(lp.top).count(t) > 1:
                    raise ConfigError(f"{lp.where('top')}: {ctx}: top '{t}' listed twice")
                available[t] = lp.name
            if lp.propagate_down and len(lp.propagate_down) != len(lp.bottom):
                raise ConfigError(f"{lp.where('propagate_down')}: {ctx}: propagate_down needs one "
                                  f"value per bottom ({len(lp.bottom)})")

    def _setup_params(self):
        self.params: "OrderedDict[str, list[Blob]]" = OrderedDict()
        self.learnable_params: list[Blob] = []
        self.param_specs = []  # (lr_mult, decay_mult) per learnable param
        self.param_owner_names = []
        owners = {}
        for layer in self.layers:
            lp = layer.layer_param
            specs = list(lp.param)
            if len(specs) > len(layer.blobs):
                raise ConfigError(f"{lp.where('param')}: layer '{lp.name}' ({lp.type}): "
                                  f"{len(specs)} 'param' entries but the layer has only "
                                  f"{len(layer.blobs)} parameter blob(s)")
            for j in range(len(layer.blobs)):
                spec = specs[j] if j < len(specs) else Msg("ParamSpec")
                blob = layer.blobs[j]
                if spec.name and spec.name in owners:
                    owner_blob, owner_layer = owners[spec.name]
                    if spec.share_mode == "PERMISSIVE":
                        ok = owner_blob.count == blob.count
                    else:
                        ok = owner_blob.shape == blob.shape
                    if not ok:
                        raise ShapeError(f"{lp.where('param')}: layer '{lp.name}' ({lp.type}): "
                                         f"shared parameter '{spec.name}' has shape "
                                         f"{blob.shape} here but {owner_blob.shape} in layer "
                                         f"'{owner_layer}'")
                    if owner_blob.shape != blob.shape:
                        view = Blob((), self.dtype)
                        view.reshape(blob.shape)
                        view.share_data(owner_blob)
                        view.share_diff(owner_blob)
                        layer.blobs[j] = view
                    else:
                        layer.blobs[j] = owner_blob
                    continue
                if spec.name:
                    owners[spec.name] = (blob, lp.name)
                self.learnable_params.append(blob)
                self.param_specs.append((float(spec.lr_mult), float(spec.decay_mult)))
                self.param_owner_names.append(f"{lp.name}[{j}]")
            if layer.blobs:
                self.params[lp.name] = layer.blobs

    def _setup_backward(self):
        force = bool(self.param.force_backward)
        blob_need = {}
        self.layer_need_backward = []
        self.bottom_need_backward = []
        lr_of = {id(b): spec[0] for b, spec in zip(self.learnable_params, self.param_specs)}
        for i, layer in enumerate(self.layers):
            lp = layer.layer_param
            need = any(lr_of.get(id(b), 0.0) != 0 for b in layer.blobs)
            bneed = []
            for j, name in enumerate(self.bottom_name_vecs[i]):
                n = blob_need.get(name, False) or (force and layer.allow_force_backward(j))
                if lp.propagate_down:
                    n = bool(lp.propagate_down[j])
                bneed.append(n)
                need = need or n
            if layer.needs_backward_always():
                need = True
            self.layer_need_backward.append(need)
            self.bottom_need_backward.append(bneed)
            for j, name in enumerate(self.top_name_vecs[i]):
                blob_need[name] = need
        # Only layers that contribute to a loss need backward (Caffe's blobs_under_loss).
        under_loss = set()
        for i in reversed(range(len(self.layers))):
            contributes = any(w != 0 for w in self.loss_weights[i]) or \
                any(t in under_loss for t in self.top_name_vecs[i])
            if not contributes and not force:
                self.layer_need_backward[i] = False
                self.bottom_need_backward[i] = [False] * len(self.bottom_name_vecs[i])
            if contributes:
                under_loss.update(self.bottom_name_vecs[i])

    # --- pycaffe-style API -------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[str]:
        return list(self._outputs)

    @property
    def top_names(self) -> "OrderedDict[str, list[str]]":
        """pycaffe's: layer name -> the names of its top blobs (``top_name_vecs`` by index)."""
        return OrderedDict((n, list(t)) for n, t in zip(self.layer_names, self.top_name_vecs))

    @property
    def bottom_names(self) -> "OrderedDict[str, list[str]]":
        """pycaffe's: layer name -> the names of its bottom blobs."""
        return OrderedDict((n, list(b)) for n, b in zip(self.layer_names, self.bottom_name_vecs))

    @property
    def blob_loss_weights(self) -> "OrderedDict[str, float]":
        """pycaffe's: blob name -> its weight in the loss (0 for blobs that are not losses)."""
        weights = OrderedDict((name, 0.0) for name in self.blobs)
        for names, ws in zip(self.top_name_vecs, self.loss_weights):
            for name, w in zip(names, ws):
                if w:
                    weights[name] = float(w)
        return weights

    @property
    def _layer_names(self) -> list[str]:
        return list(self.layer_names)

    @property
    def _blob_names(self) -> list[str]:
        return list(self.blobs)

    def _blob_ids(self, names) -> list[int]:
        index = {name: k for k, name in enumerate(self.blobs)}
        return [index[n] for n in names]

    def _top_ids(self, i: int) -> list[int]:
        """Indices into ``_blob_names`` of layer ``i``'s tops (pycaffe's)."""
        return self._blob_ids(self.top_name_vecs[i])

    def _bottom_ids(self, i: int) -> list[int]:
        return self._blob_ids(self.bottom_name_vecs[i])

    # pycaffe's per-layer hooks: fn(i) runs before/after layer i's forward or backward
    def _add_hook(self, kind, fn):
        if not callable(fn):
            raise TypeError(f"{kind}: give a function of the layer index, got "
                            f"{type(fn).__name__}")
        self._hooks[kind].append(fn)

    def before_forward(self, fn):
        self._add_hook("before_forward", fn)

    def after_forward(self, fn):
        self._add_hook("after_forward", fn)

    def before_backward(self, fn):
        self._add_hook("before_backward", fn)

    def after_backward(self, fn):
        self._add_hook("after_backward", fn)

    def _layer_index(self, name, default):
        if name is None:
            return default
        if name not in self.layer_dict:
            from .errors import did_you_mean
            raise ConfigError(f"no layer named {name!r} in net '{self.name}'"
                              f"{did_you_mean(name, self.layer_dict)}")
        return self.layer_names.index(name)

    def reshape(self):
        """Re-run every layer's reshape (after changing an input blob's shape), as pycaffe."""
        for layer, bottom, top in zip(self.layers, self.bottom_vecs, self.top_vecs):
            layer.reshape(bottom, top)

    def set_input_arrays(self, data, labels):
        """Hand arrays to the net's first layer, which must be MemoryData (pycaffe's rule)."""
        first = self.layers[0]
        if first.type != "MemoryData":
            raise ConfigError(f"set_input_arrays needs a MemoryData first layer; net "
                              f"'{self.name}' starts with '{self.layer_names[0]}' ({first.type})")
        first.set_input_arrays(data, labels)

    def forward(self, start=None, end=None, blobs=None, **inputs):
        """Run forward and return {output name: array}; keyword args fill input blobs."""
        for name, value in inputs.items():
            if name not in self.blobs:
                raise ConfigError(f"forward(): net '{self.name}' has no blob named {name!r}; "
                                  f"its inputs are {self.inputs}")
            value = np.asarray(value)
            if self.blobs[name].shape != value.shape:
                self.blobs[name].reshape(value.shape)
            self.blobs[name].data[...] = value
        lo = self._layer_index(start, 0)
        hi = self._layer_index(end, len(self.layers) - 1)
        loss = self._forward_range(lo, hi)
        self.last_loss = loss
        names = list(blobs or []) + (self.outputs if end is None else self.top_name_vecs[hi])
        return {n: self.blobs[n].data for n in dict.fromkeys(names)}

    def _forward_range(self, lo, hi):
        loss = 0.0
        if self.debug_info:
            for name in self._inputs:
                logger.info(f"    [Forward] Input {name} data: "
                            f"{_abs_mean(self.blobs[name].data_readonly()):g}")
        before, after = self._hooks["before_forward"], self._hooks["after_forward"]
        for i in range(lo, hi + 1):
            for fn in before:
                fn(i)
            layer, bottom, top = self.layers[i], self.bottom_vecs[i], self.top_vecs[i]
            layer.reshape(bottom, top)
            layer.forward(bottom, top)
            if self.debug_info:
                self._forward_debug_info(i)
            for fn in after:
                fn(i)
            for t, w in zip(top, self.loss_weights[i]):
                if w:
                    loss += w * float(t.data_readonly().sum())
        return loss

    def forward_loss(self) -> float:
        loss = self._forward_range(0, len(self.layers) - 1)
        self.last_loss = loss
        return loss

    def backward(self, start=None, end=None, diffs=None):
        """Backpropagate from the loss tops; returns {bottom/input blob: diff} like pycaffe."""
        hi = self._layer_index(start, len(self.layers) - 1)
        lo = self._layer_index(end, 0)
        before, after = self._hooks["before_backward"], self._hooks["after_backward"]
        for i in range(hi, lo - 1, -1):
            for fn in before:
                fn(i)
            for t, w in zip(self.top_vecs[i], self.loss_weights[i]):
                if w:
                    t.diff[...] = w
            if self.layer_need_backward[i]:
                self.layers[i].backward(self.top_vecs[i], self.bottom_need_backward[i],
                                        self.bottom_vecs[i])
                if self.debug_info:
                    self._backward_debug_info(i)
            for fn in after:
                fn(i)
        if self.debug_info and start is None and end is None:
            self._params_debug_info()
        names = list(diffs or []) + self.inputs
        return {n: self.blobs[n].diff for n in dict.fromkeys(names)}

    def forward_backward(self) -> float:
        loss = self.forward_loss()
        self.backward()
        return loss

    # --- pycaffe's whole-dataset helpers ----------------------------------------------------------
    def _batches(self, arrays: dict):
        """Split {input name: N x ... array} into the net's batch size (the first input blob's
        num); the last batch is padded with zeros. Yields (batch dict, padding)."""
        if not arrays:
            raise ConfigError("forward_all(): pass the inputs as keyword arrays, e.g. "
                              f"forward_all({(self.inputs or ['data'])[0]}=images)")
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"forward_all(): the inputs differ in length: {sizes}")
        n = next(iter(sizes.values()))
        first = next(iter(arrays))
        if first not in self.blobs:
            raise ConfigError(f"forward_all(): net '{self.name}' has no blob named {first!r}; "
                              f"its inputs are {self.inputs}")
        bs = self.blobs[first].shape[0] if self.blobs[first].shape else n
        bs = max(int(bs), 1)
        for lo in range(0, n, bs):
            batch = {k: v[lo:lo + bs] for k, v in arrays.items()}
            pad = bs - len(batch[first])
            if pad:
                batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
                         for k, v in batch.items()}
            yield batch, pad

    def forward_all(self, blobs=None, **inputs):
        """pycaffe's forward_all: run any number of items through the net in batches of its
        batch size; returns {output (and ``blobs``) name: array with one row per item}."""
        outs: dict = {}
        for batch, pad in self._batches(inputs):
            res = self.forward(blobs=blobs, **batch)
            for name, arr in res.items():
                outs.setdefault(name, []).append(_unpad(arr, pad))
        return {k: np.concatenate(v) for k, v in outs.items()}

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """pycaffe's forward_backward_all: keyword arrays fill the inputs (forward) and the
        output diffs (backward); returns ({output: array}, {input or ``diffs`` name: diff})."""
        ins = {k: v for k, v in kwargs.items() if k in self.inputs}
        out_diffs = {k: v for k, v in kwargs.items() if k in self.outputs and k not in ins}
        unknown = set(kwargs) - set(ins) - set(out_diffs)
        if unknown:
            raise ConfigError(f"forward_backward_all(): {sorted(unknown)} are neither inputs "
                              f"{self.inputs} nor outputs {self.outputs} of net '{self.name}'")
        outs: dict = {}
        grads: dict = {}
        for batch, pad in self._batches({**out_diffs, **ins}):
            res = self.forward(blobs=blobs, **{k: v for k, v in batch.items() if k in ins})
            for k in out_diffs:
                self.blobs[k].diff[...] = batch[k]
            res = {k: _unpad(v, pad) for k, v in res.items()}
            for name, arr in self.backward(diffs=diffs).items():
                grads.setdefault(name, []).append(_unpad(arr, pad))
            for name, arr in res.items():
                outs.setdefault(name, []).append(arr)
        return ({k: np.concatenate(v) for k, v in outs.items()},
                {k: np.concatenate(v) for k, v in grads.items()})

    def clear_param_diffs(self):
        for p in self.learnable_params:
            p.zero_diff()  # where the diff lives: no device round trip in GPU mode

    def share_weights_from(self, other: "Net"):
        """Use ``other``'s parameter blobs for same-named layers (Caffe's ShareTrainedLayersWith)."""
        for name, layer in self.layer_dict.items():
            src = other.layer_dict.get(name)
            if src is None or not layer.blobs:
                continue
            if len(src.blobs) != len(layer.blobs):
                raise ShapeError(f"layer '{name}': {len(layer.blobs)} parameter blobs here but "
                                 f"{len(src.blobs)} in the {other.phase} net")
            for j, (mine, theirs) in enumerate(zip(layer.blobs, src.blobs)):
                if mine.shape != theirs.shape:
                    raise ShapeError(f"layer '{name}' blob {j}: shape {mine.shape} in the "
                                     f"{self.phase} net but {theirs.shape} in the {other.phase} net")
                layer.blobs[j] = theirs
            self.params[name] = layer.blobs

    share_with = share_weights_from          # pycaffe's name

    def copy_from(self, path_or_param, log=True):
        """Copy weights by layer name from a .caffemodel (Caffe's CopyTrainedLayersFrom)."""
        from .weights import copy_weights
        return copy_weights(self, path_or_param, log=log)

    def save(self, path):
        from .weights import save_caffemodel
        save_caffemodel(self, path)

    def save_hdf5(self, path):
        """Caffe's HDF5 weights (data/<layer>/<j>); needs h5py."""
        from .io.hdf5_snapshot import save_net_hdf5
        save_net_hdf5(self, path)

    def load_hdf5(self, path):
        """Copy weights by layer name from Caffe's HDF5 weights, whatever the file's ending."""
        from .weights import copy_weights
        return copy_weights(self, path, hdf5=True)

    # --- debug_info: Caffe's per-layer magnitudes (mean absolute value) in the log ---------------
    def _param_display_name(self, i, j):
        specs = self.layers[i].layer_param.param
        return specs[j].name if j < len(specs) and specs[j].name else str(j)

    def _forward_debug_info(self, i):
        name = self.layer_names[i]
        for blob_name, t in zip(self.top_name_vecs[i], self.top_vecs[i]):
            logger.info(f"    [Forward] Layer {name}, top blob {blob_name} data: "
                        f"{_abs_mean(t.data_readonly()):g}")
        for j, b in enumerate(self.layers[i].blobs):
            logger.info(f"    [Forward] Layer {name}, param blob {self._param_display_name(i, j)}"
                        f" data: {_abs_mean(b.data_readonly()):g}")

    def _backward_debug_info(self, i):
        name = self.layer_names[i]
        for j, (blob_name, b) in enumerate(zip(self.bottom_name_vecs[i], self.bottom_vecs[i])):
            if self.bottom_need_backward[i][j]:
                logger.info(f"    [Backward] Layer {name}, bottom blob {blob_name} diff: "
                            f"{_abs_mean(b.diff_readonly()):g}")
        specs = self.layers[i].layer_param.param
        for j, b in enumerate(self.layers[i].blobs):
            if (specs[j].lr_mult if j < len(specs) else 1.0) != 0:
                logger.info(f"    [Backward] Layer {name}, param blob {j} diff: "
                            f"{_abs_mean(b.diff_readonly()):g}")

    def _params_debug_info(self):
        ps = self.learnable_params
        l1 = (sum(float(np.abs(p.data_readonly()).sum()) for p in ps),
              sum(float(np.abs(p.diff_readonly()).sum()) for p in ps))
        l2 = (np.sqrt(sum(float(np.square(p.data_readonly(), dtype=np.float64).sum()) for p in ps)),
              np.sqrt(sum(float(np.square(p.diff_readonly(), dtype=np.float64).sum()) for p in ps)))
        logger.info(f"    [Backward] All net params (data, diff): L1 norm = ({l1[0]:g}, "
                    f"{l1[1]:g}); L2 norm = ({l2[0]:g}, {l2[1]:g})")

    def update_debug_info(self):
        """Caffe's [Update] lines, logged by the solver once the update values are in the diffs:
        shared parameters first (diff only), then each owned parameter's data and diff."""
        learnable = {id(b) for b in self.learnable_params}
        owner, shared, owned = {}, [], []
        for i, layer in enumerate(self.layers):
            for j, b in enumerate(layer.blobs):
                if id(b) not in learnable:
                    continue
                if id(b) in owner:
                    shared.append((i, j, b))
                else:
                    owner[id(b)] = (i, j)
                    owned.append((i, j, b))
        for i, j, b in shared:
            oi, oj = owner[id(b)]
            logger.info(f"    [Update] Layer {self.layer_names[i]}, param blob "
                        f"{self._param_display_name(i, j)} (owned by layer {self.layer_names[oi]}, "
                        f"param {self._param_display_name(oi, oj)}) diff: "
                        f"{_abs_mean(b.diff_readonly()):g}")
        for i, j, b in owned:
            logger.info(f"    [Update] Layer {self.layer_names[i]}, param "
                        f"{self._param_display_name(i, j)} data: "
                        f"{_abs_mean(b.data_readonly()):g}; diff: "
                        f"{_abs_mean(b.diff_readonly()):g}")

    def first_nonfinite(self):
        """(layer name, blob name) of the first top holding NaN or inf, or None."""
        for i, layer in enumerate(self.layers):
            for t in self.top_vecs[i]:
                if not np.all(np.isfinite(t.data_readonly())):
                    return self.layer_names[i], t.name
        return None

    def close(self):
        for layer in self.layers:
            layer.close()

    def get_state(self) -> dict:
        return {name: layer.get_state() for name, layer in self.layer_dict.items()}

    def set_state(self, state: dict):
        for name, st in state.items():
            if name in self.layer_dict:
                self.layer_dict[name].set_state(st)

    def __repr__(self):
        return f"<Net '{self.name}' {self.phase}: {len(self.layers)} layers>"
