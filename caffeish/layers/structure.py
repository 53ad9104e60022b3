"""Structure layers: Split, Concat, Eltwise, Flatten, Reshape.

None of them may run in place. Split, Flatten and Reshape (and Concat with a single bottom) move
no data: their tops share the bottom's data array, as in Caffe, so writing into such a top writes
into the bottom.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, register_layer


def _shape_str(shape) -> str:
    return "(" + " ".join(str(int(s)) for s in shape) + ")"


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def _adopt_view(top, array, shape):
    """Make ``top`` a view of ``array`` with ``shape`` (no copy)."""
    top.set_data_array(array.reshape(shape))


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
            t.set_data_array(bottom[0].data)

    def forward(self, bottom, top):
        for t in top:
            t.set_data_array(bottom[0].data)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        out = _flat(bottom[0].diff)
        if len(top) == 1:
            be.blob_copy(_flat(top[0].diff), out)
            return
        one = self.dtype.type(1)
        be.eltwise_sum_init(one, _flat(top[0].diff), one, _flat(top[1].diff), out)
        for t in top[2:]:
            be.eltwise_sum_add(one, _flat(t.diff), out)


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
            top[0].set_data_array(b0.data)
        else:
            top[0].reshape(shape)

    def forward(self, bottom, top):
        if len(bottom) == 1:
            top[0].set_data_array(bottom[0].data)
            return
        axis = self.concat_axis
        outer = bottom[0].count_range(0, axis)
        top_inner = top[0].count_range(axis)
        out = _flat(top[0].data)
        offset = 0
        for b in bottom:
            inner = b.count_range(axis)
            self.backend.concat_copy_in(_flat(b.data), outer, inner, top_inner, offset, out)
            offset += inner

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 1:
            if propagate_down[0]:
                bottom[0].share_diff(top[0])
            return
        axis = self.concat_axis
        outer = bottom[0].count_range(0, axis)
        top_inner = top[0].count_range(axis)
        tdiff = _flat(top[0].diff)
        offset = 0
        for b, prop in zip(bottom, propagate_down):
            inner = b.count_range(axis)
            if prop:
                self.backend.concat_copy_out(tdiff, outer, inner, top_inner, offset,
                                             _flat(b.diff))
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
        self.max_idx = None

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
        if self.op == "MAX" and (self.max_idx is None or self.max_idx.shape != b0.shape):
            self.max_idx = np.zeros(b0.shape, np.int32)

    def forward(self, bottom, top):
        be = self.backend
        xs = [_flat(b.data) for b in bottom]
        out = _flat(top[0].data)
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
            mask = _flat(self.max_idx)
            be.eltwise_max_init(xs[0], xs[1], out, mask)
            for k in range(2, len(xs)):
                be.eltwise_max_update(xs[k], k, out, mask)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        tdiff = _flat(top[0].diff)
        for i, b in enumerate(bottom):
            if not propagate_down[i]:
                continue
            out = _flat(b.diff)
            if self.op == "SUM":
                c = self.coeffs[i]
                if c == 1:
                    be.blob_copy(tdiff, out)
                else:
                    be.eltwise_scale(c, tdiff, out)
            elif self.op == "PROD":
                if self.stable_prod_grad:
                    others = [_flat(o.data) for j, o in enumerate(bottom) if j != i]
                    if len(others) == 1:
                        be.eltwise_prod_init(others[0], tdiff, out)
                    else:
                        be.eltwise_prod_init(others[0], others[1], out)
                        for o in others[2:]:
                            be.eltwise_prod_mul(o, out)
                        be.eltwise_prod_mul(tdiff, out)
                else:
                    be.eltwise_prod_grad_unstable(tdiff, _flat(top[0].data), _flat(b.data), out)
            else:
                be.eltwise_max_backward(tdiff, _flat(self.max_idx), i, out)


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
        _adopt_view(top[0], bottom[0].data, self._shape)

    def forward(self, bottom, top):
        _adopt_view(top[0], bottom[0].data, self._shape)

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
