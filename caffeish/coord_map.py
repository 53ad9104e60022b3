"""pycaffe's ``coord_map``: the Crop offsets that line up two tops of a net_spec net (FCN).

Every spatial layer maps the coordinates of its bottom to those of its top by ``y = a u + b``
(per spatial axis):

- Convolution, Pooling, Im2col (stride s, pad p, kernel extent e = dilation (k - 1) + 1): the
  output cell y is centred on input position s y - p + (e - 1) / 2, so a = 1/s, b = (p - (e -
  1)/2) / s;
- Deconvolution: the reverse, a = s, b = (e - 1)/2 - p;
- Crop (offset o): a = 1, b = -o;
- element-wise and channel-wise layers (ReLU, BatchNorm, Scale, Eltwise, Concat on channels,
  Dropout, ...): the identity.

``crop(top_from, top_to)`` follows both tops back (through each layer's first bottom) to the
nearest blob they share, composes the maps, and returns ``L.Crop(top_from, top_to)`` with the
offset that puts each cell of ``top_to`` over the cell of ``top_from`` at the same place in
that shared blob. The two must have the same scale there and the offset must be a whole,
non-negative number of cells; otherwise a ConfigError says which.

    from caffeish.coord_map import crop
    n.upscore = L.Deconvolution(n.score_fr, convolution_param=dict(num_output=21,
                                kernel_size=64, stride=32, bias_term=False))
    n.score = crop(n.upscore, n.data)       # FCN-32s: offset 19
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .net_spec import Top, layers as L

__all__ = ["coord_map", "coord_map_from_to", "crop"]

PASS_THROUGH = {"AbsVal", "BatchNorm", "Bias", "BNLL", "Clip", "Concat", "Dropout", "Eltwise",
                "ELU", "Exp", "Log", "LRN", "MVN", "Power", "PReLU", "ReLU", "Scale",
                "Sigmoid", "Split", "Swish", "TanH", "Threshold"}
_CONV = {"Convolution", "Pooling", "Im2col", "Deconvolution"}


def _geometry(fn):
    """(stride, kernel extent, pad) of a convolution-like layer, as 2-vectors."""
    field = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    p = dict(fn.params.get(field, {}))
    p.update({k: v for k, v in fn.params.items() if not k.endswith("param")})
    legacy = {"kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w"} & set(p)
    if legacy:
        raise ConfigError(f"coord_map: L.{fn.type_name} uses {', '.join(sorted(legacy))}; "
                          "give kernel_size / stride / pad (one value or one per axis)")
    if p.get("global_pooling"):
        raise ConfigError("coord_map: a global pooling has no coordinate map")

    def two(name, default):
        v = np.array(p.get(name, default), dtype=np.float64, ndmin=1)
        return np.repeat(v, 2) if v.size == 1 else v

    if "kernel_size" not in p:
        raise ConfigError(f"coord_map: L.{fn.type_name} has no kernel_size")
    extent = two("dilation", 1) * (two("kernel_size", 1) - 1) + 1
    return two("stride", 1), extent, two("pad", 0)


def coord_map(fn):
    """(a, b) of layer ``fn``: its top's coordinates are a * (its bottom's) + b, per axis."""
    t = fn.type_name
    if t in ("Convolution", "Pooling", "Im2col"):
        s, e, p = _geometry(fn)
        return 1 / s, (p - (e - 1) / 2) / s
    if t == "Deconvolution":
        s, e, p = _geometry(fn)
        return s, (e - 1) / 2 - p
    if t == "Crop":
        cp = fn.params.get("crop_param", {})
        axis = cp.get("axis", fn.params.get("axis", 2))
        if axis != 2:
            raise ConfigError(f"coord_map: a Crop on axis {axis}; only spatial crops (axis 2) "
                              "map coordinates")
        off = np.array(cp.get("offset", fn.params.get("offset", 0)), dtype=np.float64, ndmin=1)
        return np.ones(2), -(np.repeat(off, 2) if off.size == 1 else off)
    if t in PASS_THROUGH:
        return np.ones(2), np.zeros(2)
    raise ConfigError(f"coord_map: no coordinate map for L.{t} (it is neither convolution-like "
                      "nor element-wise)")


def _maps_to(top: Top) -> dict:
    """{ancestor top: (a, b) from the ancestor's coordinates to ``top``'s}, nearest first."""
    out = {top: (np.ones(2), np.zeros(2))}
    a, b = out[top]
    cur = top
    while cur.fn.inputs:
        la, lb = coord_map(cur.fn)
        cur_in = cur.fn.inputs[0]
        a, b = a * la, a * lb + b       # in -> cur (la, lb), then cur -> top (a, b)
        out[cur_in] = (a, b)
        cur = cur_in
    return out


def coord_map_from_to(top_from: Top, top_to: Top):
    """(axis, a, b): the coordinates of ``top_to`` are a * those of ``top_from`` + b."""
    maps_from, maps_to = _maps_to(top_from), _maps_to(top_to)
    shared = next((t for t in maps_from if t in maps_to), None)
    if shared is None:
        raise ConfigError("coord_map: the two tops share no ancestor blob (through first "
                          "bottoms)")
    af, bf = maps_from[shared]
    at, bt = maps_to[shared]
    # u in the shared blob: f = af u + bf, t = at u + bt  =>  t = (at / af) (f - bf) + bt
    a = at / af
    return 1, a, bt - a * bf


def crop(top_from: Top, top_to: Top) -> Top:
    """``L.Crop(top_from, top_to)`` with the offset that aligns their coordinates."""
    _, a, b = coord_map_from_to(top_from, top_to)
    if not np.allclose(a, 1):
        raise ConfigError(f"coord_map: the tops differ in scale ({a.tolist()}): cropping cannot "
                          "line them up (upsample first, e.g. with a Deconvolution)")
    offset = -b
    if (offset < -1e-9).any():
        raise ConfigError(f"coord_map: top_to starts {(-offset).tolist()} cells before "
                          "top_from: a crop cannot pad (swap them or pad the input)")
    if not np.allclose(offset, np.round(offset)):
        raise ConfigError(f"coord_map: the offset {offset.tolist()} is not a whole number of "
                          "cells (odd kernel/stride choices)")
    off = [int(v) for v in np.round(offset)]
    return L.Crop(top_from, top_to, crop_param=dict(axis=2, offset=off if off[0] != off[1]
                                                    else off[:1]))
