"""``caffeish inspect``: one row per layer (shapes, parameters, FLOPs, activation bytes) and totals.

Everything comes from shapes (:mod:`caffeish.tools.shapes`), nothing is allocated: a data layer's
shape comes from the first record of its source when that is present, else from what the layer
declares (``crop_size``, ``new_height``/``new_width``, a mean file, ``mean_value`` count), else from
``--shape NAME=C,H,W``; the report says which. A layer type without a shape rule is sized by
its registered class on unfilled blobs (its FLOPs are then unknown and say so).

Activation bytes are the float32 values of the tops a layer creates (an in-place layer creates
none); the per-batch activation memory is their sum at TEST and twice that at TRAIN (data and
diffs). FLOPs per image are the batch FLOPs divided by the batch size (the first axis of the
first data top). Shared parameters (``param { name: ... }``) are counted once.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config.schema import Msg
from ..errors import ConfigError, DataError, did_you_mean
from .shapes import RULES, LayerShapes, count

ITEMSIZE = 4  # float32
_FILE_DATA = ("Data", "ImageData", "HDF5Data", "WindowData")


@dataclass
class LayerRow:
    name: str
    type: str
    bottoms: list
    tops: list
    bottom_shapes: list
    top_shapes: list
    param_shapes: list
    params: int
    shared_params: int
    flops: int | None
    flops_per_image: float | None
    activation_bytes: int
    in_place: bool
    note: str = ""


@dataclass
class NetReport:
    name: str
    phase: str
    file: str
    batch_size: int
    rows: list
    params: int
    flops_per_batch: int
    flops_per_image: float
    unknown_flops: list
    activation_bytes: dict            # phase -> bytes per batch
    notes: list = field(default_factory=list)

    @property
    def param_bytes(self) -> int:
        return self.params * ITEMSIZE

    def to_dict(self) -> dict:
        d = asdict(self)
        d["param_bytes"] = self.param_bytes
        for r in d["rows"]:
            r["bottom_shapes"] = [list(s) for s in r["bottom_shapes"]]
            r["top_shapes"] = [list(s) for s in r["top_shapes"]]
            r["param_shapes"] = [list(s) for s in r["param_shapes"]]
        d["layers"] = d.pop("rows")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        head = ["layer", "type", "bottom -> top", "params", "FLOPs/img", "act. bytes", "in place"]
        lines = []
        for r in self.rows:
            b = ", ".join(shape_str(s) for s in r.bottom_shapes)
            t = ", ".join(shape_str(s) for s in r.top_shapes)
            shapes = f"{b} -> {t}" if b else f"-> {t}"
            params = f"{r.params:,}" + (f" (+{r.shared_params:,} shared)"
                                        if r.shared_params else "")
            flops = "?" if r.flops is None else human(r.flops_per_image)
            lines.append([r.name, r.type, shapes, params, flops, human_bytes(r.activation_bytes),
                          "yes" if r.in_place else ""])
        widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h)
                  for i, h in enumerate(head)]
        right = {3, 4, 5}

        def fmt(row):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        out = [f"{self.name or 'net'} ({self.phase}, batch {self.batch_size}) from {self.file}",
               fmt(head), fmt(["-" * w for w in widths])]
        out += [fmt(x) for x in lines]
        out.append("")
        out.append(f"parameters:        {self.params:,} ({human_bytes(self.param_bytes)})")
        unk = (f" (not counting {len(self.unknown_flops)} layer(s) without a FLOP rule: "
               f"{', '.join(self.unknown_flops)})" if self.unknown_flops else "")
        out.append(f"FLOPs per image:   {human(self.flops_per_image)} "
                   f"({int(round(self.flops_per_image)):,}){unk}")
        for ph in ("TRAIN", "TEST"):
            if ph in self.activation_bytes:
                what = "data + diffs" if ph == "TRAIN" else "data"
                out.append(f"activations {ph:<5}  {human_bytes(self.activation_bytes[ph])} per "
                           f"batch ({what})")
        for n in self.notes:
            out.append(f"note: {n}")
        return "\n".join(out)


def shape_str(shape) -> str:
    return "x".join(str(s) for s in shape) if len(shape) else "scalar"


def human(x) -> str:
    if x is None:
        return "?"
    x = float(x)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def human_bytes(n) -> str:
    n = float(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


# --- data shapes --------------------------------------------------------------------------------
def parse_shape_options(items) -> dict:
    """``["data=3,227,227", "label=10"]`` -> {name: tuple}."""
    out = {}
    for it in items or ():
        name, sep, dims = it.partition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            shape = ()
        if not sep or not name or not shape:
            raise ConfigError(f"--shape {it}: expected BLOB=DIMS, e.g. data=3,227,227 or "
                              f"data=10,3,227,227")
        out[name.strip()] = shape
    return out


class ShapeContext:
    """Where data layers get their shapes: the first record, declared sizes or --shape."""

    def __init__(self, net_file=None, given=None):
        self.net_dir = Path(net_file).resolve().parent if net_file and \
            not str(net_file).startswith("<") else None
        self.given = dict(given or {})
        self.data_notes: dict[str, str] = {}
        self.used_given: set[str] = set()

    def _dirs(self, lp):
        d = []
        if lp.src and lp.src[0] and not str(lp.src[0]).startswith("<"):
            d.append(Path(lp.src[0]).resolve().parent)
        if self.net_dir is not None and self.net_dir not in d:
            d.append(self.net_dir)
        return d

    def resolve(self, lp, path):
        from ..data.transformer import resolve_path
        return resolve_path(path, self._dirs(lp))[0]

    def data_shapes(self, lp) -> list:
        tops = list(lp.top)
        batch, item, note = self._item_shape(lp)
        shapes = []
        for j, t in enumerate(tops):
            if t in self.given:
                g = self.given[t]
                self.used_given.add(t)
                shapes.append(((batch,) + g) if batch and len(g) == (3 if j == 0 else 0) else g)
                note = "shape from --shape"
            elif j == 0:
                if item is None:
                    raise ConfigError(
                        f"{lp.where()}: layer '{lp.name}' ({lp.type}): {note}; give the record "
                        f"shape with --shape {t}=C,H,W (or N,C,H,W)")
                shapes.append((batch,) + tuple(item))
            else:
                shapes.append(self._extra_top(lp, j, batch))
        self.data_notes[lp.name] = note
        return shapes

    def _extra_top(self, lp, j, batch):
        if lp.type == "HDF5Data":
            shp = self._hdf5_shapes(lp)
            if shp and lp.top[j] in shp:
                return (batch,) + shp[lp.top[j]]
        return (batch,)

    def _transform(self, lp, legacy):
        tp = lp.transform_param
        moved = [n for n in ("scale", "mean_file", "crop_size", "mirror") if legacy.has(n)]
        if moved:
            tp = tp.copy()
            for n in moved:
                tp.set(n, getattr(legacy, n))
        return tp

    @staticmethod
    def _crop(tp, chw):
        c, h, w = chw
        crop = int(tp.crop_size)
        if crop:
            return (c, crop, crop)
        return (c, h, w)

    def _declared(self, lp, tp, what):
        """(C, H, W) from a mean file, mean_value and crop_size when the data is not there."""
        from ..data.transformer import load_mean_file
        if tp.mean_file:
            found = self.resolve(lp, tp.mean_file)
            if found is not None:
                try:
                    m = load_mean_file(found)
                    return self._crop(tp, m.shape), f"{what}; shape from mean_file {found}"
                except DataError:
                    pass
        c = None
        if tp.force_gray:
            c = 1
        elif tp.force_color:
            c = 3
        elif len(tp.mean_value) > 1:
            c = len(tp.mean_value)
        if tp.crop_size and c is not None:
            return (c, int(tp.crop_size), int(tp.crop_size)), \
                f"{what}; shape from crop_size and the channel count of mean_value/force_*"
        return None, f"{what}, and crop_size/mean_file do not give its full shape"

    def _item_shape(self, lp):
        t = lp.type
        if t == "Data":
            p = lp.data_param
            tp = self._transform(lp, p)
            batch = int(p.batch_size)
            found = self.resolve(lp, p.source) if p.source else None
            if found is None:
                item, note = self._declared(lp, tp, f"data source {p.source!r} not found")
                return batch, item, note
            try:
                return batch, self._crop(tp, self._db_first(found, tp, p)), \
                    f"shape from the first record of {found}"
            except DataError as e:
                item, note = self._declared(lp, tp, f"cannot read {found} ({e})")
                return batch, item, note
        if t == "ImageData":
            p = lp.image_data_param
            tp = self._transform(lp, p)
            batch = int(p.batch_size)
            c = 3 if p.is_color else 1
            if p.new_height and p.new_width:
                return batch, self._crop(tp, (c, int(p.new_height), int(p.new_width))), \
                    "shape from new_height/new_width"
            hw = self._first_image_size(lp, p)
            if hw is not None:
                return batch, self._crop(tp, (c,) + hw), "shape from the first listed image"
            if tp.crop_size:
                return batch, (c, int(tp.crop_size), int(tp.crop_size)), \
                    f"image list {p.source!r} not readable; shape from crop_size"
            return batch, None, f"image list {p.source!r} not readable and no new_height/" \
                                f"new_width or crop_size"
        if t == "WindowData":
            p = lp.window_data_param
            crop = int(lp.transform_param.crop_size or p.crop_size)
            if crop:
                return int(p.batch_size), (3, crop, crop), "shape from crop_size"
            return int(p.batch_size), None, "WindowData needs crop_size"
        if t == "HDF5Data":
            batch = int(lp.hdf5_data_param.batch_size)
            shp = self._hdf5_shapes(lp)
            if shp and lp.top and lp.top[0] in shp:
                return batch, shp[lp.top[0]], "shape from the first HDF5 file"
            return batch, None, "HDF5 source not readable (needs h5py and the files)"
        return 1, None, f"no shape rule for {t}"

    def _db_first(self, path, tp, p):
        from ..data.datum import datum_to_array, decode_datum
        from ..data.db import backend_name, open_db
        with open_db(path, backend_name(p.backend) if p.has("backend") else None) as r:
            for _, value in r:
                arr = datum_to_array(decode_datum(value), bool(tp.force_color),
                                     bool(tp.force_gray))
                if arr.ndim != 3:
                    raise DataError("first record is not C x H x W")
                return tuple(int(x) for x in arr.shape)
        raise DataError("the database is empty")

    def _first_image_size(self, lp, p):
        found = self.resolve(lp, p.source) if p.source else None
        if found is None:
            return None
        try:
            with open(found) as fh:
                line = next((ln.strip() for ln in fh if ln.strip()), None)
            if not line:
                return None
            rel = line.rsplit(" ", 1)[0] if " " in line else line
            img = Path(p.root_folder + rel) if p.root_folder else Path(rel)
            if not img.is_absolute() and not img.exists():
                for d in self._dirs(lp):
                    if (d / img).exists():
                        img = d / img
                        break
            from PIL import Image
            with Image.open(img) as im:
                w, h = im.size
            return (h, w)
        except Exception:  # an unreadable list or image only means: shape unknown here
            return None

    def _hdf5_shapes(self, lp):
        p = lp.hdf5_data_param
        found = self.resolve(lp, p.source) if p.source else None
        if found is None:
            return None
        try:
            import h5py
            with open(found) as fh:
                first = next((ln.strip() for ln in fh if ln.strip()), None)
            h5 = Path(first)
            if not h5.is_absolute() and not h5.exists():
                h5 = Path(found).parent / first
            with h5py.File(h5, "r") as f:
                return {t: tuple(int(x) for x in f[t].shape[1:]) for t in lp.top if t in f}
        except Exception:  # h5py missing or unreadable file: shape unknown here
            return None


# --- the pass ----------------------------------------------------------------------------------
def _via_layer_class(lp, bottoms, phase):
    """Size a layer that has no shape rule with its registered class on unfilled blobs."""
    from ..blob import Blob
    from ..layers import layer_class
    cls = layer_class(lp.type)
    layer = cls(lp, phase=phase, dtype=np.float32, rng=np.random.default_rng(0))

    def new_param_blob(shape, filler=None):
        return Blob(shape, np.float32, name=f"{lp.name}[{len(layer.blobs)}]")
    layer.new_param_blob = new_param_blob
    bottom = [Blob(s, np.float32) for s in bottoms]
    top = []
    for j, t in enumerate(lp.top):
        if j < len(lp.bottom) and lp.bottom[j] == t:
            top.append(bottom[j])
        else:
            top.append(Blob((), np.float32, name=t))
    try:
        layer.check_blob_counts(bottom, top)
        layer.setup(bottom, top)
        layer.reshape(bottom, top)
        return LayerShapes([tuple(t.shape) for t in top], [tuple(b.shape) for b in layer.blobs],
                           None, "sized by its layer class (no FLOP rule)")
    finally:
        layer.close()


def _check_counts(lp, n_bottoms, phase):
    """The layer class's bottom/top counts (the shape rules assume them)."""
    from ..layers.base import LAYER_REGISTRY, layer_types
    layer_types()
    cls = LAYER_REGISTRY.get(lp.type)
    if cls is not None:
        cls(lp, phase=phase).check_blob_counts([None] * n_bottoms, [None] * len(lp.top))


def layer_shapes(lp, bottoms, phase, ctx) -> LayerShapes:
    fn = RULES.get(lp.type)
    if fn is not None:
        _check_counts(lp, len(bottoms), phase)
        res = fn(lp, bottoms, phase, ctx)
    else:
        from ..layers.base import LAYER_REGISTRY, layer_types
        layer_types()
        if lp.type not in LAYER_REGISTRY:
            known = set(RULES) | set(LAYER_REGISTRY)
            raise ConfigError(f"{lp.where('type')}: layer '{lp.name}': unknown type "
                              f"'{lp.type}'{did_you_mean(lp.type, known)}")
        res = _via_layer_class(lp, bottoms, phase)
    if len(res.tops) != len(lp.top) and lp.top:
        res.tops = (list(res.tops) + [res.tops[-1]] * len(lp.top))[:len(lp.top)]
    return res


def _net_state(phase, stages, level):
    return Msg("NetState", {"phase": phase, "level": level, "stage": list(stages)})


def shape_pass(param: Msg, phase="TEST", stages=(), level=0, given=None, ctx=None):
    """(rows, blob shapes, batch size) of ``param`` in ``phase``."""
    from ..net import filter_net
    ctx = ctx or ShapeContext(param.src[0] if param.src else None, given)
    layers = filter_net(param, _net_state(phase, stages, level))
    if not layers:
        raise ConfigError(f"{param.where() or 'net'}: no layer is included in the {phase} phase")
    shapes: dict[str, tuple] = {}
    owners: dict[str, str] = {}
    rows = []
    batch = None
    for lp in layers:
        for b in lp.bottom:
            if b not in shapes:
                raise ConfigError(f"{lp.where('bottom')}: layer '{lp.name}' ({lp.type}): unknown "
                                  f"bottom blob '{b}' — no earlier layer produces it"
                                  f"{did_you_mean(b, shapes)}")
        bottoms = [shapes[b] for b in lp.bottom]
        res = layer_shapes(lp, bottoms, phase, ctx)
        own = shared = 0
        specs = list(lp.param)
        for j, ps in enumerate(res.params):
            pname = specs[j].name if j < len(specs) and specs[j].name else None
            if pname and pname in owners:
                shared += count(ps)
                continue
            if pname:
                owners[pname] = lp.name
            own += count(ps)
        act = 0
        in_place = False
        for j, (t, s) in enumerate(zip(lp.top, res.tops)):
            if j < len(lp.bottom) and lp.bottom[j] == t:
                in_place = True
            else:
                act += count(s) * ITEMSIZE
            shapes[t] = tuple(s)
        if not lp.bottom and ctx.given and lp.type not in _FILE_DATA:
            for j, t in enumerate(lp.top):
                if t in ctx.given:
                    g = ctx.given[t]
                    ctx.used_given.add(t)
                    cur = res.tops[j]
                    res.tops[j] = (cur[0],) + g if len(g) + 1 == len(cur) else g
        if batch is None and not lp.bottom and res.tops and len(res.tops[0]):
            batch = int(res.tops[0][0])
        rows.append(LayerRow(lp.name, lp.type, list(lp.bottom), list(lp.top),
                             [tuple(b) for b in bottoms], [tuple(t) for t in res.tops],
                             [tuple(p) for p in res.params], own, shared, res.flops, None, act,
                             in_place, res.note))
    batch = batch or 1
    for r in rows:
        r.flops_per_image = None if r.flops is None else r.flops / batch
    return rows, shapes, batch, ctx


def inspect_net(param: Msg, phase="TEST", stages=(), level=0, given=None) -> NetReport:
    """The inspect report of a NetParameter for ``phase`` (totals for both phases)."""
    phase = phase.upper()
    rows, _, batch, ctx = shape_pass(param, phase, stages, level, given)
    act = {phase: sum(r.activation_bytes for r in rows) * (2 if phase == "TRAIN" else 1)}
    other = "TEST" if phase == "TRAIN" else "TRAIN"
    notes = []
    try:
        orows, _, _, _ = shape_pass(param, other, stages, level, given,
                                    ShapeContext(param.src[0] if param.src else None, given))
        act[other] = sum(r.activation_bytes for r in orows) * (2 if other == "TRAIN" else 1)
    except (ConfigError, DataError) as e:
        notes.append(f"{other} phase not sized: {e}")
    for r in rows:
        if r.note and r.type in ("Data", "ImageData", "HDF5Data", "WindowData") or \
                (r.note and r.flops is None):
            notes.append(f"layer '{r.name}': {r.note}")
    unused = set(given or {}) - ctx.used_given
    if unused:
        notes.append(f"--shape for blob(s) not produced by a data layer ignored: "
                     f"{', '.join(sorted(unused))}")
    total = sum(r.flops for r in rows if r.flops is not None)
    return NetReport(
        name=param.name, phase=phase, file=str(param.src[0]) if param.src else "<net>",
        batch_size=batch, rows=rows, params=sum(r.params for r in rows),
        flops_per_batch=int(total), flops_per_image=total / batch,
        unknown_flops=[r.name for r in rows if r.flops is None], activation_bytes=act,
        notes=notes)


# --- loading a net (or the net of a solver) ---------------------------------------------------
SOLVER_ONLY = ("net", "train_net", "test_net", "net_param", "train_net_param",
               "test_net_param", "base_lr", "lr_policy", "max_iter", "solver_mode")


def file_kind(path) -> str:
    """'solver' or 'net' from a config file's top-level keys (bases merged)."""
    path = os.fspath(path)
    if path.endswith((".prototxt", ".pt")):
        text = Path(path).read_text(errors="replace")
        import re
        keys = set(re.findall(r"^\s*([A-Za-z_]+)\s*[:{]", text, re.M))
        return "solver" if keys & {"base_lr", "lr_policy", "train_net", "max_iter"} and \
            not keys & {"layer", "layers"} else "net"
    from ..config.compose import load_node
    import yaml
    node = load_node(path)
    if isinstance(node, yaml.MappingNode):
        keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        if keys & {"layer", "layers", "input"}:
            return "net"
        if keys & set(SOLVER_ONLY):
            return "solver"
    return "net"


def load_net_for_tools(path, phase="TEST", overrides=()) -> Msg:
    """The NetParameter a tool works on: the net file itself, or the net its solver names."""
    from ..config.compose import resolve_net, resolve_solver
    if file_kind(path) == "solver":
        sp = resolve_solver(path, overrides)
        if phase.upper() == "TEST" and sp.test_net_param:
            return sp.test_net_param[0]
        for f in ("net_param", "train_net_param"):
            if sp.has(f):
                return getattr(sp, f)
        raise ConfigError(f"{path}: the solver names no net")
    return resolve_net(path, overrides)
