"""Structure layers: Split, Concat, Eltwise, Flatten, Reshape, Slice, Tile, Reduction, ArgMax,
Silence, Filter, BatchReindex, Parameter.

None of them may run in place. Split, Flatten and Reshape (and Concat with a single bottom, Slice
with a single top, Parameter) move no data: their tops share the bottom's (or the parameter's)
data array, as in Caffe, so writing into such a top writes into the bottom.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_backend
from ..blob import Blob
from ..config.schema import enum_symbol
from ..errors import DataError, ShapeError
from .base import Layer, register_layer


def _shape_str(shape) -> str:
    return "(" + " ".join(str(int(s)) for s in shape) + ")"


def _flat(a: np.ndarray) -> np.ndarray:
    return get_backend().flat(a)


def _share_view(top, src, shape=None):
    """Make ``top`` a view of ``src``'s data with ``shape`` (default: src's shape), no copy. The
    storage is shared on both devices; call again whenever ``src``'s storage may have changed."""
    top.reshape(src.shape if shape is None else shape)
    top.share_data(src)


def _index_blob(blob, values):
    """``blob`` (int64) resized to and filled with the host index array ``values``."""
    if blob is None:
        blob = Blob((0,), np.int64)
    blob.reshape(values.shape)
    blob.data[...] = values
    return blob


def _inverse_index(idx, n):
    """(order, starts) for gather_sum_rows: the positions m of ``idx`` grouped by idx[m] in
    [0, n), ascending within a group, and the (n + 1,) group bounds."""
    order = np.argsort(idx, kind="stable").astype(np.int64)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(idx, minlength=n), out=starts[1:])
    return order, starts


@register_layer("Split")
class SplitLayer(Layer):
    """Copies its bottom to every top; inserted by the net when a blob feeds several layers.

    Forward: every top shares the bottom's data array (no copy); each top keeps its own diff.
    Backward: bottom diff = sum of the top diffs. Shapes: bottom (any) -> each top the same.
    """

    exact_bottoms = 1
    min_tops = 1

    def reshape(self, bottom, top):
        for t in top:
            if t is bottom[0]:
                raise self.config_error("cannot run in place (a top is its bottom)")
            _share_view(t, bottom[0])

    def forward(self, bottom, top):
        for t in top:
            _share_view(t, bottom[0])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        out = _flat(bottom[0].dev_diff)
        if len(top) == 1:
            be.blob_copy(_flat(top[0].dev_diff), out)
            return
        one = self.dtype.type(1)
        be.eltwise_sum_init(one, _flat(top[0].dev_diff), one, _flat(top[1].dev_diff), out)
        for t in top[2:]:
            be.eltwise_sum_add(one, _flat(t.dev_diff), out)


@register_layer("Concat")
class ConcatLayer(Layer):
    """Joins its bottoms along one axis.

    concat_param.axis (default 1, negative counts from the end) or the legacy concat_dim (used
    when set; setting both is an error, as in Caffe). All bottoms must have the same shape except
    on that axis; top shape = bottom[0]'s with the axis sizes summed. Backward slices the top diff
    back onto each bottom that propagates. With a single bottom the top shares its data.
    """

    min_bottoms = 1
    exact_tops = 1
    param_field = "concat_param"

    def setup(self, bottom, top):
        p = self.param
        if p.has("axis") and p.has("concat_dim"):
            raise self.config_error("set either axis or concat_dim (deprecated), not both",
                                    "concat_dim")

    def _axis(self, blob) -> int:
        p = self.param
        n = blob.num_axes
        if p.has("concat_dim"):
            axis = int(p.concat_dim)
            if axis >= n:
                raise self.config_error(f"concat_dim {axis} is out of range for bottom[0] "
                                        f"{_shape_str(blob.shape)} ({n} axes)", "concat_dim")
            return axis
        axis = int(p.axis)
        if not -n <= axis < n:
            raise self.config_error(f"axis {axis} is out of range for bottom[0] "
                                    f"{_shape_str(blob.shape)} ({n} axes)", "axis")
        return axis % n

    def reshape(self, bottom, top):
        b0 = bottom[0]
        if top[0] is b0:
            raise self.config_error("cannot run in place")
        axis = self._axis(b0)
        self.concat_axis = axis
        shape = list(b0.shape)
        for i in range(1, len(bottom)):
            b = bottom[i]
            if b.num_axes != b0.num_axes:
                raise self.shape_error(
                    f"bottom[{i}] {_shape_str(b.shape)} has {b.num_axes} axes but bottom[0] "
                    f"{_shape_str(b0.shape)} has {b0.num_axes}; all bottoms need the same "
                    f"number of axes")
            for j in range(b0.num_axes):
                if j != axis and b.shape[j] != b0.shape[j]:
                    raise self.shape_error(
                        f"bottom[{i}] {_shape_str(b.shape)} does not match bottom[0] "
                        f"{_shape_str(b0.shape)} at axis {j}; all bottoms must have the same "
                        f"shape except at the concat axis {axis}")
            shape[axis] += b.shape[axis]
        if len(bottom) == 1:
            _share_view(top[0], b0)
        else:
            top[0].reshape(shape)

    def forward(self, bottom, top):
        if len(bottom) == 1:
            _share_view(top[0], bottom[0])
            return
        axis = self.concat_axis
        outer = bottom[0].count_range(0, axis)
        top_inner = top[0].count_range(axis)
        out = _flat(top[0].dev_data)
        offset = 0
        for b in bottom:
            inner = b.count_range(axis)
            self.backend.concat_copy_in(_flat(b.dev_data), outer, inner, top_inner, offset, out)
            offset += inner

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            if propagate_down[0]:
                bottom[0].share_diff(top[0])
            return
        axis = self.concat_axis
        outer = bottom[0].count_range(0, axis)
        top_inner = top[0].count_range(axis)
        tdiff = _flat(top[0].dev_diff)
        offset = 0
        for b, prop in zip(bottom, propagate_down):
            inner = b.count_range(axis)
            if prop:
                self.backend.concat_copy_out(tdiff, outer, inner, top_inner, offset,
                                             _flat(b.dev_diff))
            offset += inner


@register_layer("Eltwise")
class EltwiseLayer(Layer):
    """Element-wise combination of >= 2 bottoms of one shape; top has that shape.

    SUM (default): top = sum_i coeff_i * bottom_i (coeff: one per bottom, default all 1).
    PROD: top = prod_i bottom_i; d bottom_i = top_diff * prod_{j != i} bottom_j, computed by
    multiplying the other bottoms when stable_prod_grad (default), else as top_diff*top/bottom_i
    (inf/nan where bottom_i == 0).
    MAX: top = max_i bottom_i, keeping the index of the winning bottom per element; the gradient
    goes to that bottom only. Ties go to the first bottom holding the max (Caffe's CPU code gives
    a tie between bottoms 0 and 1 to bottom 1; gradients at exact ties are a measure-zero case).
    coeff is only accepted with SUM.
    """

    min_bottoms = 2
    exact_tops = 1
    param_field = "eltwise_param"

    def setup(self, bottom, top):
        p = self.param
        self.op = p.operation
        coeff = [float(c) for c in p.coeff]
        if coeff and self.op != "SUM":
            raise self.config_error(f"coeff is only allowed with operation SUM, not {self.op}",
                                    "coeff")
        if coeff and len(coeff) != len(bottom):
            raise self.config_error(f"takes one coeff per bottom: {len(bottom)} bottoms but "
                                    f"{len(coeff)} coeff value(s)", "coeff")
        self.coeffs = [self.dtype.type(c) for c in (coeff or [1.0] * len(bottom))]
        self.stable_prod_grad = bool(p.stable_prod_grad)
        self._mask = None  # MAX: index of the winning bottom per element (int32 Blob)

    @property
    def max_idx(self):
        """The MAX mask on the host (None before the first reshape or for SUM/PROD)."""
        return None if self._mask is None else self._mask.data_readonly()

    def reshape(self, bottom, top):
        b0 = bottom[0]
        if top[0] is b0:
            raise self.config_error("cannot run in place")
        for i in range(1, len(bottom)):
            if bottom[i].shape != b0.shape:
                raise self.shape_error(
                    f"bottom[{i}] has shape {_shape_str(bottom[i].shape)} but bottom[0] has "
                    f"{_shape_str(b0.shape)}; all bottoms must have the same shape")
        top[0].reshape(b0.shape)
        if self.op == "MAX":
            if self._mask is None:
                self._mask = Blob(b0.shape, np.int32)
            self._mask.reshape(b0.shape)

    def forward(self, bottom, top):
        be = self.backend
        xs = [_flat(b.dev_data) for b in bottom]
        out = _flat(top[0].dev_data)
        if self.op == "SUM":
            c = self.coeffs
            be.eltwise_sum_init(c[0], xs[0], c[1], xs[1], out)
            for k in range(2, len(xs)):
                be.eltwise_sum_add(c[k], xs[k], out)
        elif self.op == "PROD":
            be.eltwise_prod_init(xs[0], xs[1], out)
            for k in range(2, len(xs)):
                be.eltwise_prod_mul(xs[k], out)
        else:
            mask = _flat(self._mask.dev_data)
            be.eltwise_max_init(xs[0], xs[1], out, mask)
            for k in range(2, len(xs)):
                be.eltwise_max_update(xs[k], k, out, mask)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        tdiff = _flat(top[0].dev_diff)
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            out = _flat(b.dev_diff)
            if self.op == "SUM":
                c = self.coeffs[i]
                if c == 1:
                    be.blob_copy(tdiff, out)
                else:
                    be.eltwise_scale(c, tdiff, out)
            elif self.op == "PROD":
                if self.stable_prod_grad:
                    others = [_flat(o.dev_data) for j, o in enumerate(bottom) if j != i]
                    if len(others) == 1:
                        be.eltwise_prod_init(others[0], tdiff, out)
                    else:
                        be.eltwise_prod_init(others[0], others[1], out)
                        for o in others[2:]:
                            be.eltwise_prod_mul(o, out)
                        be.eltwise_prod_mul(tdiff, out)
                else:
                    be.eltwise_prod_grad_unstable(tdiff, _flat(top[0].dev_data),
                                                  _flat(b.dev_data), out)
            else:
                be.eltwise_max_backward(tdiff, _flat(self._mask.dev_data), i, out)


class _ViewLayer(Layer):
    """A layer whose top is the bottom's data under another shape (``top_shape``); backward hands
    the top diff to the bottom without copying."""

    exact_bottoms = 1
    exact_tops = 1

    def top_shape(self, b):
        raise NotImplementedError

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise self.config_error("cannot run in place")
        self._shape = self.top_shape(bottom[0])
        _share_view(top[0], bottom[0], self._shape)

    def forward(self, bottom, top):
        _share_view(top[0], bottom[0], self._shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].share_diff(top[0])


@register_layer("Flatten")
class FlattenLayer(_ViewLayer):
    """Collapses axes [axis, end_axis] (flatten_param, defaults 1 and -1) into one.

    (N, C, H, W) -> (N, C*H*W) by default. The top shares the bottom's data (no copy); backward
    hands the top diff to the bottom without copying. As in Caffe, end_axis == axis - 1 inserts an
    axis of size 1.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "flatten_param"

    def _canonical(self, axis, blob, field):
        n = blob.num_axes
        if not -n <= axis < n:
            raise self.config_error(f"{field} {axis} is out of range for bottom "
                                    f"{_shape_str(blob.shape)} ({n} axes)", field)
        return axis % n

    def top_shape(self, b):
        start = self._canonical(int(self.param.axis), b, "axis")
        end = self._canonical(int(self.param.end_axis), b, "end_axis")
        if end + 1 < start:
            raise self.config_error(f"end_axis ({self.param.end_axis} -> {end}) comes before "
                                    f"axis ({self.param.axis} -> {start}) for bottom "
                                    f"{_shape_str(b.shape)}", "end_axis")
        s = b.shape
        return s[:start] + (b.count_range(start, end + 1),) + s[end + 1:]


@register_layer("Reshape")
class ReshapeLayer(_ViewLayer):
    """Gives the bottom a new shape without copying (the top shares its data).

    reshape_param.shape.dim: 0 copies the bottom dimension at the same position (counted from
    ``axis``), -1 (at most one) is inferred from the count. axis (default 0; negative: -1 begins
    after the last axis) and num_axes (default -1: all remaining) pick the range of bottom axes
    that the new dims replace; the others are kept. The count must not change.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "reshape_param"

    def setup(self, bottom, top):
        dims = [int(d) for d in self.param.shape.dim]
        self.dims = dims
        self.copy_axes = []
        self.inferred_axis = -1
        self.constant_count = 1
        for i, d in enumerate(dims):
            if d == 0:
                self.copy_axes.append(i)
            elif d == -1:
                if self.inferred_axis != -1:
                    raise self.config_error(
                        f"new shape {_shape_str(dims)} contains more than one -1; at most one "
                        f"dimension may be inferred", "shape")
                self.inferred_axis = i
            elif d < -1:
                raise self.config_error(f"new shape {_shape_str(dims)} has dimension {d}; "
                                        f"dims must be >= 0, or -1 to infer one", "shape")
            else:
                self.constant_count *= d
        if int(self.param.num_axes) < -1:
            raise self.config_error(f"num_axes must be >= 0, or -1 for all remaining axes; "
                                    f"got {self.param.num_axes}", "num_axes")

    def top_shape(self, b):
        p = self.param
        n = b.num_axes
        in_axis = int(p.axis)
        start = in_axis if in_axis >= 0 else n + in_axis + 1
        if not 0 <= start <= n:
            raise self.config_error(f"axis {in_axis} is out of range for bottom "
                                    f"{_shape_str(b.shape)} ({n} axes)", "axis")
        num_axes = int(p.num_axes)
        end = n if num_axes == -1 else start + num_axes
        if end > n:
            raise self.config_error(f"axis + num_axes = {start} + {num_axes} is beyond the "
                                    f"{n} axes of bottom {_shape_str(b.shape)}", "num_axes")
        new = list(self.dims)
        for c in self.copy_axes:
            if start + c >= n:
                raise self.shape_error(
                    f"new shape {_shape_str(self.dims)} has a 0 at position {c} but bottom "
                    f"{_shape_str(b.shape)} has no axis {start + c} to copy", "shape")
            new[c] = b.shape[start + c]
        if self.inferred_axis >= 0:
            explicit = self.constant_count * b.count_range(0, start) * b.count_range(end)
            for c in self.copy_axes:
                explicit *= new[c]
            if explicit == 0 or b.count % explicit != 0:
                raise self.shape_error(
                    f"cannot infer the -1 in {_shape_str(self.dims)}: bottom "
                    f"{_shape_str(b.shape)} count {b.count} is not divisible by the product of "
                    f"the other dimensions ({explicit})", "shape")
            new[self.inferred_axis] = b.count // explicit
        shape = tuple(b.shape[:start]) + tuple(new) + tuple(b.shape[end:])
        count = int(np.prod(shape)) if shape else 1
        if count != b.count:
            raise self.shape_error(
                f"bottom shape {_shape_str(b.shape)} ({b.count} elements) cannot be reshaped "
                f"to {_shape_str(shape)} ({count} elements)", "shape")
        return shape


def _canonical(layer, blob, axis, field):
    try:
        return blob.canonical_axis(int(axis))
    except ShapeError as e:
        raise layer.config_error(f"bad {field}: {e}", field) from None


def _index_error(layer, name, values, pos, upper, what):
    v = values.reshape(-1)[pos]
    return DataError(layer._msg(f"{what} {v!r} at position {pos} of bottom '{name}' is not an "
                                f"integer in [0, {upper})"))


@register_layer("Slice")
class SliceLayer(Layer):
    """Cuts its bottom along one axis into several tops (the inverse of Concat).

    slice_param.axis (default 1, negative counts from the end) or the legacy slice_dim (used when
    set; both set is an error). slice_point (repeated, strictly increasing, one fewer than the
    tops) gives the cut positions; without it the axis is split into equal parts (the number of
    tops must divide it). Backward writes each top's diff back into its block of the bottom diff.
    With a single top, the top shares the bottom's data.
    """

    exact_bottoms = 1
    min_tops = 1
    param_field = "slice_param"

    def setup(self, bottom, top):
        p = self.param
        if p.has("axis") and p.has("slice_dim"):
            raise self.config_error("set either axis or slice_dim (deprecated), not both",
                                    "slice_dim")
        self.points = [int(v) for v in p.slice_point]

    def reshape(self, bottom, top):
        b = bottom[0]
        if any(t is b for t in top):
            raise self.config_error("cannot run in place")
        p = self.param
        n = b.num_axes
        if p.has("slice_dim"):
            axis = int(p.slice_dim)
            if axis >= n:
                raise self.config_error(f"slice_dim {axis} is out of range for bottom "
                                        f"{_shape_str(b.shape)} ({n} axes)", "slice_dim")
        else:
            axis = _canonical(self, b, p.axis, "axis")
        self.axis = axis
        size = b.shape[axis]
        if self.points:
            if len(self.points) != len(top) - 1:
                raise self.config_error(
                    f"{len(self.points)} slice_point(s) for {len(top)} tops; give one fewer "
                    f"slice_point than tops", "slice_point")
            if len(top) > size:
                raise self.shape_error(f"{len(top)} tops cannot slice axis {axis} of bottom "
                                       f"{_shape_str(b.shape)} (size {size})", "slice_point")
            sizes, prev = [], 0
            for pt in self.points:
                if pt <= prev:
                    raise self.config_error(f"slice_point {self.points} must be strictly "
                                            f"increasing and positive", "slice_point")
                sizes.append(pt - prev)
                prev = pt
            if prev > size:
                raise self.shape_error(f"slice_point {self.points} goes beyond axis {axis} of "
                                       f"bottom {_shape_str(b.shape)} (size {size})",
                                       "slice_point")
            sizes.append(size - prev)
        else:
            if size % len(top):
                raise self.shape_error(
                    f"number of top blobs ({len(top)}) should evenly divide the slice axis "
                    f"{axis} of bottom {_shape_str(b.shape)} (size {size})")
            sizes = [size // len(top)] * len(top)
        self.sizes = sizes
        if len(top) == 1:
            _share_view(top[0], b)
            return
        for t, sz in zip(top, sizes):
            shape = list(b.shape)
            shape[axis] = sz
            t.reshape(shape)

    def forward(self, bottom, top):
        b = bottom[0]
        if len(top) == 1:
            _share_view(top[0], b)
            return
        outer = b.count_range(0, self.axis)
        inner_b = b.count_range(self.axis)
        src = _flat(b.dev_data)
        offset = 0
        for t in top:
            inner = t.count_range(self.axis)
            self.backend.concat_copy_out(src, outer, inner, inner_b, offset, _flat(t.dev_data))
            offset += inner

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        b = bottom[0]
        if len(top) == 1:
            b.share_diff(top[0])
            return
        outer = b.count_range(0, self.axis)
        inner_b = b.count_range(self.axis)
        out = _flat(b.dev_diff)
        offset = 0
        for t in top:
            inner = t.count_range(self.axis)
            self.backend.concat_copy_in(_flat(t.dev_diff), outer, inner, inner_b, offset, out)
            offset += inner


@register_layer("Tile")
class TileLayer(Layer):
    """Repeats the bottom ``tiles`` times along ``axis`` (tile_param; axis default 1).

    Top shape: bottom's with ``shape[axis] *= tiles``; the whole block from ``axis`` on is
    repeated, so (N, C) tiled 2x on axis 1 gives rows ``[x, x]``. Backward sums the copies.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "tile_param"

    def setup(self, bottom, top):
        p = self.param
        if not p.has("tiles"):
            raise self.config_error("tile_param.tiles (the number of copies) must be given",
                                    "tiles")
        self.tiles = int(p.tiles)
        if self.tiles <= 0:
            raise self.config_error(f"number of tiles must be positive, got {self.tiles}",
                                    "tiles")

    def reshape(self, bottom, top):
        b = bottom[0]
        if top[0] is b:
            raise self.config_error("cannot run in place")
        axis = _canonical(self, b, self.param.axis, "axis")
        shape = list(b.shape)
        shape[axis] *= self.tiles
        top[0].reshape(shape)
        self.outer = b.count_range(0, axis)
        self.inner = b.count_range(axis)

    def forward(self, bottom, top):
        self.backend.tile_forward(bottom[0].dev_data_as(self.outer, self.inner), self.tiles,
                                  top[0].dev_data_as(self.outer, self.tiles * self.inner))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.backend.tile_backward(
                top[0].dev_diff_as(self.outer, self.tiles * self.inner), self.tiles,
                bottom[0].dev_diff_as(self.outer, self.inner))


_REDUCTION_OPS = {"SUM": 1, "ASUM": 2, "SUMSQ": 3, "MEAN": 4}


@register_layer("Reduction")
class ReductionLayer(Layer):
    """Reduces every axis from ``axis`` on to one number: top shape = bottom.shape[:axis].

    reduction_param: operation SUM (default) / ASUM (sum of |x|) / SUMSQ (sum of x^2) / MEAN,
    axis (default 0: the whole blob to a scalar of shape ()), coeff (default 1) scales the
    result. Gradients: SUM coeff, MEAN coeff/count, ASUM coeff*sign(x) (0 at 0), SUMSQ
    2*coeff*x, each times the top diff.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "reduction_param"

    def setup(self, bottom, top):
        name = enum_symbol(self.param.operation, "ReductionParameter.ReductionOp")
        if name not in _REDUCTION_OPS:
            raise self.config_error(f"unknown reduction operation {name!r}", "operation")
        self.op = _REDUCTION_OPS[name]

    def reshape(self, bottom, top):
        b = bottom[0]
        if top[0] is b:
            raise self.config_error("cannot run in place")
        axis = _canonical(self, b, self.param.axis, "axis")
        top[0].reshape(b.shape[:axis])
        self.num = b.count_range(0, axis)
        self.dim = b.count_range(axis)
        coeff = float(self.param.coeff)
        if self.op == 4:
            coeff /= self.dim
        self.coeff = coeff

    def forward(self, bottom, top):
        self.backend.reduce_forward(bottom[0].dev_data_as(self.num, self.dim), self.op,
                                    self.coeff, top[0].dev_data_as(self.num))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            self.backend.reduce_backward(bottom[0].dev_data_as(self.num, self.dim),
                                         top[0].dev_diff_as(self.num), self.op, self.coeff,
                                         bottom[0].dev_diff_as(self.num, self.dim))


@register_layer("ArgMax")
class ArgMaxLayer(Layer):
    """The indices (and optionally values) of the top_k largest entries.

    argmax_param: top_k (default 1), out_max_val (default false), axis (unset by default).
    Without axis, each item's entries after the first axis are searched as one flat vector; the
    top has max(num_axes, 3) axes: ``(N, 1, top_k, 1...)`` of indices, or with out_max_val
    ``(N, 2, top_k, 1...)`` holding the indices then the values. With axis, the search runs along
    that axis and the top is the bottom's shape with ``shape[axis] = top_k``, holding the values
    when out_max_val, else the indices. Order: descending (value, index) pairs, so ties list the
    larger index first (Caffe's partial_sort with std::greater). Indices are written as floats.

    Caffe has no backward here. This one gives the exact gradient: zero through indices, the
    top diff routed to the chosen entries through values.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "argmax_param"

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        p = self.param
        self.top_k = int(p.top_k)
        self.out_max_val = bool(p.out_max_val)
        self.has_axis = p.has("axis")
        if self.top_k < 1:
            raise self.config_error(f"top_k must not be less than 1, got {self.top_k}", "top_k")

    def reshape(self, bottom, top):
        b = bottom[0]
        if top[0] is b:
            raise self.config_error("cannot run in place")
        if b.num_axes < 1:
            raise self.shape_error("bottom must have at least one axis")
        if self.has_axis:
            axis = _canonical(self, b, self.param.axis, "axis")
            dim = b.shape[axis]
            if self.top_k > dim:
                raise self.config_error(
                    f"top_k ({self.top_k}) must be less than or equal to the dimension of axis "
                    f"{axis} ({dim}) of bottom {_shape_str(b.shape)}", "top_k")
            self.outer, self.dim, self.inner = b.count_range(0, axis), dim, b.count_range(axis + 1)
            shape = list(b.shape)
            shape[axis] = self.top_k
        else:
            dim = b.count_range(1)
            if self.top_k > dim:
                raise self.config_error(
                    f"top_k ({self.top_k}) must be less than or equal to the flattened size "
                    f"per item ({dim}) of bottom {_shape_str(b.shape)}", "top_k")
            self.outer, self.dim, self.inner = b.shape[0], dim, 1
            shape = [1] * max(b.num_axes, 3)
            shape[0] = b.shape[0]
            shape[2] = self.top_k
            if self.out_max_val:
                shape[1] = 2
        top[0].reshape(shape)
        ashape = (self.outer, self.top_k, self.inner)
        if getattr(self, "_arg", None) is None:
            self._arg = Blob(ashape, np.int64)     # chosen indices per (outer, k, inner)
            self._val = Blob(ashape, self.dtype)   # their values; the diff is scratch
        self._arg.reshape(ashape)
        self._val.reshape(ashape)

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].dev_data_as(self.outer, self.dim, self.inner)
        arg, val = self._arg.dev_data, self._val.dev_data
        be.argmax_topk(x, self.top_k, arg, val)
        width = self.top_k * self.inner
        be.argmax_to_top(be.view(arg, self.outer, width), be.view(val, self.outer, width),
                         self.out_max_val, self.out_max_val and not self.has_axis,
                         _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        dx = bottom[0].dev_diff_as(self.outer, self.dim, self.inner)
        if not self.out_max_val:
            be.blob_set(self.dtype.type(0), _flat(dx))
            return
        ashape = (self.outer, self.top_k, self.inner)
        if self.has_axis:
            dval = top[0].dev_diff_as(ashape)
        else:  # top (outer, 2, top_k): the value diffs are the second half of each row
            dval = self._val.dev_diff
            be.concat_copy_out(_flat(top[0].dev_diff), self.outer, self.top_k,
                               2 * self.top_k, self.top_k, _flat(dval))
        be.argmax_backward(dval, self._arg.dev_data, dx)


@register_layer("Silence")
class SilenceLayer(Layer):
    """Swallows its bottoms (no tops), so unused outputs are not reported as net outputs.

    Backward writes zeros into the diff of every bottom that needs one.
    """

    min_bottoms = 1
    exact_tops = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for b, prop in zip(bottom, propagate_down):
            if prop:
                self.backend.blob_set(self.dtype.type(0), _flat(b.dev_diff))


@register_layer("Filter")
class FilterLayer(Layer):
    """Keeps the items (first-axis entries) whose selector is non-zero.

    Bottoms: the blobs to filter, then the selector (last): shape (N,) or (N, 1, ...), every
    axis but the first of size 1; every other bottom needs the same N. One top per filtered
    bottom: ``top_t = bottom_t[selected]`` in order, shape (number selected, ...). As in Caffe,
    the reshape at setup time (before any data) gives the tops all N items; later reshapes read
    the selector (on the host, as Caffe), so a selector with no non-zero entry gives empty tops.
    Backward routes the top diffs back (a gather over an inverse index) and writes zeros for
    dropped items. The selector gets no gradient (zeros when
    asked; Caffe refuses).
    """

    min_bottoms = 2
    min_tops = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != getattr(self, "_selector_index", -1)

    def setup(self, bottom, top):
        if len(top) != len(bottom) - 1:
            raise self.config_error(f"needs one top per filtered bottom: {len(bottom) - 1} "
                                    f"data bottom(s) (the last bottom is the selector) but "
                                    f"{len(top)} top(s)")
        self._selector_index = len(bottom) - 1
        self._first = True

    def reshape(self, bottom, top):
        sel = bottom[-1]
        if sel.num_axes < 1 or any(d != 1 for d in sel.shape[1:]):
            raise self.shape_error(f"selector blob dimensions must be singletons (1), except "
                                   f"the first; got selector shape {_shape_str(sel.shape)}")
        n = sel.shape[0]
        for i, b in enumerate(bottom[:-1]):
            if b is top[i]:
                raise self.config_error("cannot run in place")
            if b.num_axes < 1 or b.shape[0] != n:
                raise self.shape_error(
                    f"each bottom should have the same 0th dimension as the selector blob: "
                    f"bottom[{i}] {_shape_str(b.shape)}, selector {_shape_str(sel.shape)}")
        if self._first:
            idx = np.arange(n, dtype=np.int64)
            self._first = False
        else:  # the selector is read on the host, as Caffe does
            idx = np.flatnonzero(sel.data_readonly().reshape(n)).astype(np.int64)
        self._idx = idx
        # the kept items (forward gather) and their inverse (backward gather)
        self._idx_blob = _index_blob(getattr(self, "_idx_blob", None), idx)
        order, starts = _inverse_index(idx, n)
        self._order = _index_blob(getattr(self, "_order", None), order)
        self._starts = _index_blob(getattr(self, "_starts", None), starts)
        for b, t in zip(bottom[:-1], top):
            t.reshape((len(idx),) + tuple(b.shape[1:]))

    def forward(self, bottom, top):
        idx = self._idx_blob.dev_data
        for b, t in zip(bottom[:-1], top):
            width = b.count_range(1)
            self.backend.gather_rows(b.dev_data_as(b.shape[0], width), idx,
                                     t.dev_data_as(len(self._idx), width))

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        for i, (b, t) in enumerate(zip(bottom[:-1], top)):
            if not propagate_down[i]:
                continue
            width = b.count_range(1)
            be.gather_sum_rows(t.dev_diff_as(len(self._idx), width), self._order.dev_data,
                               self._starts.dev_data, False,
                               b.dev_diff_as(b.shape[0], width))
        if propagate_down[-1]:
            be.blob_set(self.dtype.type(0), _flat(bottom[-1].dev_diff))


@register_layer("BatchReindex")
class BatchReindexLayer(Layer):
    """Gathers items of bottom[0] by the indices in bottom[1]: ``top[i] = bottom0[perm[i]]``.

    bottom[1] is 1-D (M,) with float indices in [0, N) (truncated to integers as Caffe's
    static_cast does; an index out of range is a DataError). Top shape ``(M,) + bottom0.shape[1:]``;
    indices may repeat or skip items. Backward accumulates: ``d bottom0[j] = sum of top_diff[i]
    over i with perm[i] == j``. The indices get no gradient (zeros when asked; Caffe refuses).
    """

    exact_bottoms = 2
    exact_tops = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        b0, b1 = bottom
        if top[0] is b0:
            raise self.config_error("cannot run in place")
        if b1.num_axes != 1:
            raise self.shape_error(f"the index bottom must be 1-D, got shape "
                                   f"{_shape_str(b1.shape)}")
        if b0.num_axes < 1:
            raise self.shape_error("bottom[0] must have at least one axis")
        top[0].reshape((b1.shape[0],) + tuple(b0.shape[1:]))
        self.width = b0.count_range(1)

    def forward(self, bottom, top):
        b0, b1 = bottom
        n = b0.shape[0]
        # the (small) index bottom is read on the host, as Caffe does: validation, and the
        # inverse index that makes backward a race-free gather
        v = _flat(b1.data_readonly())
        ok = (v >= 0) & (v < n)
        if not ok.all():
            names = list(self.layer_param.bottom) or ["bottom[0]", "bottom[1]"]
            raise _index_error(self, names[-1], v, int(np.argmin(ok)), n, "index")
        idx = v.astype(np.int64)
        self._idx_blob = _index_blob(getattr(self, "_idx_blob", None), idx)
        order, starts = _inverse_index(idx, n)
        self._order = _index_blob(getattr(self, "_order", None), order)
        self._starts = _index_blob(getattr(self, "_starts", None), starts)
        self.backend.gather_rows(b0.dev_data_as(n, self.width), self._idx_blob.dev_data,
                                 top[0].dev_data_as(len(idx), self.width))

    def backward(self, top, propagate_down, bottom):
        b0, b1 = bottom
        if propagate_down[0]:
            self.backend.gather_sum_rows(top[0].dev_diff_as(self._idx_blob.count,
                                                                 self.width),
                                         self._order.dev_data, self._starts.dev_data, False,
                                         b0.dev_diff_as(b0.shape[0], self.width))
        if propagate_down[1]:
            self.backend.blob_set(self.dtype.type(0), _flat(b1.dev_diff))


@register_layer("Parameter")
class ParameterLayer(Layer):
    """Exposes one learned blob of shape parameter_param.shape as its top (no bottoms).

    The top shares the parameter's data; backward adds the top diff into the parameter diff.
    The blob starts at zero (Caffe has no filler here); load it from weights or let it learn.
    """

    exact_bottoms = 0
    exact_tops = 1
    param_field = "parameter_param"

    def setup(self, bottom, top):
        dims = [int(d) for d in self.param.shape.dim]
        if any(d < 0 for d in dims):
            raise self.config_error(f"parameter_param.shape {_shape_str(dims)} has a negative "
                                    f"dimension", "shape")
        if self.blobs:
            if tuple(self.blobs[0].shape) != tuple(dims):
                raise self.shape_error(f"incorrect parameter shape: expected "
                                       f"{_shape_str(dims)}, got "
                                       f"{_shape_str(self.blobs[0].shape)}")
            return
        self.blobs.append(self.new_param_blob(dims))

    def reshape(self, bottom, top):
        _share_view(top[0], self.blobs[0])

    def forward(self, bottom, top):
        _share_view(top[0], self.blobs[0])

    def backward(self, top, propagate_down, bottom):
        self.backend.axpy(1.0, top[0].dev_diff, self.blobs[0].dev_diff)
