"""``caffeish draw``: the net as a Graphviz graph (Caffe's draw_net.py conventions).

Layers are boxes (Convolution red, Pooling orange, InnerProduct purple, in-place layers green,
others blue, as in Caffe's drawing), blobs are grey ellipses, edges carry the blob's shape when
it is known. An in-place layer reads one version of a blob and writes the next, so the graph
stays acyclic; its output edge is dashed and says "in place". DOT text is always available;
SVG/PNG/PDF need Graphviz's ``dot`` program.
"""
from __future__ import annotations

import shutil
import subprocess

from ..config.schema import Msg
from ..errors import CaffeishError, ConfigError, DataError

LAYER_COLORS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
                "InnerProduct": "#CC33FF"}
DEFAULT_LAYER_COLOR = "#6495ED"
IN_PLACE_COLOR = "#90EE90"
BLOB_COLOR = "#E0E0E0"
RENDER_FORMATS = ("svg", "png", "pdf")
GRAPHVIZ_HINT = ("Graphviz's `dot` program is not installed: install the `graphviz` package "
                 "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; conda: "
                 "conda install graphviz), or write DOT text with -o net.dot")


class GraphvizMissing(CaffeishError):
    """Rendering needs the ``dot`` program."""


def _q(s) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pair(p, name, h, w, default=None):
    if h and (p.has(h) or p.has(w)):
        a, b = int(getattr(p, h)), int(getattr(p, w))
        return str(a) if a == b else f"{a}x{b}"
    vals = list(getattr(p, name)) if isinstance(getattr(p, name), list) else \
        ([getattr(p, name)] if p.has(name) else [])
    if not vals:
        return None if default is None else str(default)
    return "x".join(str(int(v)) for v in vals)


def layer_label(lp: Msg) -> str:
    lines = [lp.name, f"({lp.type})"]
    t = lp.type
    if t in ("Convolution", "Deconvolution"):
        p = lp.convolution_param
        k = _pair(p, "kernel_size", "kernel_h", "kernel_w")
        s = _pair(p, "stride", "stride_h", "stride_w", 1)
        pad = _pair(p, "pad", "pad_h", "pad_w", 0)
        lines.append(f"kernel {k}, stride {s}, pad {pad}")
        extra = f", group {p.group}" if p.group != 1 else ""
        lines.append(f"{p.num_output} outputs{extra}")
    elif t == "Pooling":
        from ..config.schema import enum_symbol
        p = lp.pooling_param
        pool = enum_symbol(p.pool, "PoolingParameter.PoolMethod")
        if p.global_pooling:
            lines.append(f"{pool} global")
        else:
            k = _pair(p, "kernel_size", "kernel_h", "kernel_w")
            s = _pair(p, "stride", "stride_h", "stride_w", 1)
            pad = _pair(p, "pad", "pad_h", "pad_w", 0)
            lines.append(f"{pool} kernel {k}, stride {s}, pad {pad}")
    elif t == "InnerProduct":
        lines.append(f"{lp.inner_product_param.num_output} outputs")
    elif t == "LRN":
        lines.append(f"size {lp.lrn_param.local_size}, alpha {lp.lrn_param.alpha:g}, "
                     f"beta {lp.lrn_param.beta:g}")
    elif t == "Dropout":
        lines.append(f"ratio {lp.dropout_param.dropout_ratio:g}")
    if lp.include:
        phases = sorted({r.phase for r in lp.include if r.has("phase")})
        if phases:
            lines.append("phase " + ", ".join(phases))
    return "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in lines)


def _shapes_by_layer(param, phases, stages, level, given):
    """{(layer name, layer type, top index): shape} from the shape pass of each phase."""
    from .inspect import shape_pass
    out, notes = {}, []
    for ph in phases:
        try:
            rows, _, _, _ = shape_pass(param, ph, stages, level, given)
        except (ConfigError, DataError) as e:
            notes.append(f"{ph} shapes unknown: {e}")
            continue
        for r in rows:
            for j, s in enumerate(r.top_shapes):
                out.setdefault((r.name, r.type, j, ph), tuple(s))
                out.setdefault((r.name, r.type, j, None), tuple(s))
    return out, notes


def net_to_dot(param: Msg, phase="ALL", stages=(), level=0, rankdir="LR", shapes=True,
               given=None) -> tuple[str, list[str]]:
    """(DOT text, notes) for ``param``; ``phase`` TRAIN, TEST or ALL (no filtering)."""
    from ..net import _layers_with_inputs, filter_net
    from .inspect import _net_state, shape_str
    phase = phase.upper()
    if phase not in ("TRAIN", "TEST", "ALL"):
        raise ConfigError(f"phase must be TRAIN, TEST or ALL, got {phase!r}")
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ConfigError(f"rankdir must be LR, RL, TB or BT, got {rankdir!r}")
    if phase == "ALL":
        layers = _layers_with_inputs(param)
    else:
        layers = filter_net(param, _net_state(phase, stages, level))
    notes = []
    known = {}
    if shapes:
        known, notes = _shapes_by_layer(param, ["TRAIN", "TEST"] if phase == "ALL" else [phase],
                                        stages, level, given)
    out = [f"digraph {_q(param.name or 'net')} {{",
           f"  rankdir={rankdir};",
           '  node [fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=9];']
    version: dict[str, int] = {}
    shape_of: dict[str, tuple] = {}
    blob_nodes = set()

    def blob_id(name):
        return f"blob:{name}#{version.get(name, 0)}"

    def add_blob(name):
        bid = blob_id(name)
        if bid not in blob_nodes:
            blob_nodes.add(bid)
            out.append(f"  {_q(bid)} [shape=ellipse, style=filled, fillcolor={_q(BLOB_COLOR)}, "
                       f"label={_q(name)}];")
        return bid

    def phase_of(lp):
        ph = {r.phase for r in lp.include if r.has("phase")}
        return next(iter(ph)) if len(ph) == 1 else None

    for i, lp in enumerate(layers):
        lid = f"layer:{i}:{lp.name}"
        in_place = [j < len(lp.bottom) and lp.bottom[j] == t for j, t in enumerate(lp.top)]
        color = IN_PLACE_COLOR if any(in_place) else LAYER_COLORS.get(lp.type,
                                                                        DEFAULT_LAYER_COLOR)
        out.append(f"  {_q(lid)} [shape=box, style=\"filled,rounded\", fillcolor={_q(color)}, "
                   f"label=\"{layer_label(lp)}\"];")
        for b in lp.bottom:
            bid = add_blob(b)
            s = shape_of.get(b)
            lab = f" [label={_q(shape_str(s))}]" if s is not None else ""
            out.append(f"  {_q(bid)} -> {_q(lid)}{lab};")
        ph = phase if phase != "ALL" else phase_of(lp)
        for j, t in enumerate(lp.top):
            s = known.get((lp.name, lp.type, j, ph))
            if s is None:
                s = known.get((lp.name, lp.type, j, None))
            if in_place[j]:
                version[t] = version.get(t, 0) + 1
            bid = add_blob(t)
            attrs = []
            label = shape_str(s) if s is not None else ""
            if in_place[j]:
                label = (label + " " if label else "") + "(in place)"
                attrs.append("style=dashed")
            if label:
                attrs.append(f"label={_q(label)}")
            out.append(f"  {_q(lid)} -> {_q(bid)}{' [' + ', '.join(attrs) + ']' if attrs else ''};")
            if s is not None:
                shape_of[t] = s
    out.append("}")
    return "\n".join(out) + "\n", notes


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render(dot_text: str, path, fmt=None) -> None:
    """Write ``dot_text`` to ``path``: as text for .dot/.gv, rendered by ``dot`` otherwise."""
    path = str(path)
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    fmt = (fmt or ext or "dot").lower()
    if fmt in ("dot", "gv"):
        with open(path, "w") as fh:
            fh.write(dot_text)
        return
    if fmt not in RENDER_FORMATS:
        raise ConfigError(f"{path}: unknown output format '{fmt}'; use .dot, .gv, "
                          f"{', '.join('.' + f for f in RENDER_FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissing(GRAPHVIZ_HINT)
    proc = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text.encode(),
                          capture_output=True)
    if proc.returncode != 0:
        raise CaffeishError(f"dot failed ({proc.returncode}): "
                            f"{proc.stderr.decode(errors='replace').strip()}")
