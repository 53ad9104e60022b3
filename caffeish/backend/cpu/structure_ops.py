"""CPU kernels for the structure layers (Split, Concat, Eltwise, Slice, Tile, Reduction, ArgMax,
Filter, BatchReindex, Embed, Crop, Silence).

Kernels work on flat (1-D, C-contiguous) arrays or on C-contiguous 2-D/3-D views whose layout
each docstring gives ((outer, inner), (rows, width), (outer, dim, inner)); N-D crops take their
shapes and offsets as int64 arrays. Multi-input operations are built by the layer from pairwise
calls (the first call initialises ``out``, later calls accumulate into it), so the CUDA twins need
no lists of device arrays. Index arrays are int64. Scalars (coefficients) should have the arrays'
dtype. Arrays shorter than ``GRAIN`` elements run on one thread: starting the thread pool costs
more than these memory-bound loops.
"""
import numpy as np
from numba import njit, prange

__all__ = [
    "blob_copy", "eltwise_scale", "eltwise_sum_init", "eltwise_sum_add",
    "eltwise_prod_init", "eltwise_prod_mul", "eltwise_prod_grad_unstable",
    "eltwise_max_init", "eltwise_max_update", "eltwise_max_backward",
    "concat_copy_in", "concat_copy_out",
    "blob_set", "tile_forward", "tile_backward", "reduce_forward", "reduce_backward",
    "argmax_topk", "argmax_to_top", "argmax_backward", "float_indices", "gather_rows",
    "scatter_add_rows", "gather_sum_rows", "crop_copy_forward", "crop_copy_backward",
]

GRAIN = 32768


@njit(parallel=True, cache=True, error_model="numpy")
def blob_copy(x, out):
    """out[i] = x[i]; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = x[i]
    else:
        for i in prange(n):
            out[i] = x[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_scale(a, x, out):
    """out[i] = a * x[i]; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = a * x[i]
    else:
        for i in prange(n):
            out[i] = a * x[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_sum_init(a, x, b, y, out):
    """out[i] = a * x[i] + b * y[i]; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = a * x[i] + b * y[i]
    else:
        for i in prange(n):
            out[i] = a * x[i] + b * y[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_sum_add(a, x, out):
    """out[i] += a * x[i]; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] += a * x[i]
    else:
        for i in prange(n):
            out[i] += a * x[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_prod_init(x, y, out):
    """out[i] = x[i] * y[i]; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = x[i] * y[i]
    else:
        for i in prange(n):
            out[i] = x[i] * y[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_prod_mul(x, out):
    """out[i] *= x[i]; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] *= x[i]
    else:
        for i in prange(n):
            out[i] *= x[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_prod_grad_unstable(top_diff, top, x, out):
    """out[i] = top[i] / x[i] * top_diff[i] (inf/nan where x[i] == 0); flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = top[i] / x[i] * top_diff[i]
    else:
        for i in prange(n):
            out[i] = top[i] / x[i] * top_diff[i]


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_max_init(x, y, top, mask):
    """top[i] = max(x[i], y[i]), mask[i] = 0 if x[i] > y[i] else 1 (a tie goes to y, as in Caffe); flat arrays."""
    n = top.size
    if n < GRAIN:
        for i in range(n):
            if x[i] > y[i]:
                top[i] = x[i]
                mask[i] = 0
            else:
                top[i] = y[i]
                mask[i] = 1
    else:
        for i in prange(n):
            if x[i] > y[i]:
                top[i] = x[i]
                mask[i] = 0
            else:
                top[i] = y[i]
                mask[i] = 1


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_max_update(x, k, top, mask):
    """where x[i] > top[i] (strictly: a tie keeps the earlier bottom) top[i] = x[i], mask[i] = k; flat arrays."""
    n = top.size
    if n < GRAIN:
        for i in range(n):
            if x[i] > top[i]:
                top[i] = x[i]
                mask[i] = k
    else:
        for i in prange(n):
            if x[i] > top[i]:
                top[i] = x[i]
                mask[i] = k


@njit(parallel=True, cache=True, error_model="numpy")
def eltwise_max_backward(top_diff, mask, k, out):
    """out[i] = top_diff[i] if mask[i] == k else 0; flat arrays of equal length."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = top_diff[i] if mask[i] == k else 0
    else:
        for i in prange(n):
            out[i] = top_diff[i] if mask[i] == k else 0


@njit(parallel=True, cache=True, error_model="numpy")
def concat_copy_in(x, outer, inner, top_inner, offset, top):
    """top[o*top_inner + offset + r] = x[o*inner + r] for o < outer, r < inner (one bottom's block of a concat)."""
    if outer == 1 or outer * inner < GRAIN:
        for o in range(outer):
            d = o * top_inner + offset
            top[d:d + inner] = x[o * inner:(o + 1) * inner]
    else:
        for o in prange(outer):
            d = o * top_inner + offset
            top[d:d + inner] = x[o * inner:(o + 1) * inner]


@njit(parallel=True, cache=True, error_model="numpy")
def concat_copy_out(top, outer, inner, top_inner, offset, x):
    """x[o*inner + r] = top[o*top_inner + offset + r] for o < outer, r < inner (one bottom's block of a concat)."""
    if outer == 1 or outer * inner < GRAIN:
        for o in range(outer):
            s = o * top_inner + offset
            x[o * inner:(o + 1) * inner] = top[s:s + inner]
    else:
        for o in prange(outer):
            s = o * top_inner + offset
            x[o * inner:(o + 1) * inner] = top[s:s + inner]


@njit(parallel=True, cache=True, error_model="numpy")
def blob_set(value, out):
    """out[i] = value; flat array."""
    n = out.size
    if n < GRAIN:
        for i in range(n):
            out[i] = value
    else:
        for i in prange(n):
            out[i] = value


@njit(parallel=True, cache=True, error_model="numpy")
def tile_forward(x, tiles, top):
    """top[o, t*inner + r] = x[o, r] for t < tiles; x (outer, inner), top (outer, tiles*inner)."""
    outer, inner = x.shape
    if outer * inner * tiles < GRAIN:
        for o in range(outer):
            for t in range(tiles):
                top[o, t * inner:(t + 1) * inner] = x[o]
    else:
        for task in prange(outer * tiles):
            o = task // tiles
            t = task - o * tiles
            top[o, t * inner:(t + 1) * inner] = x[o]


@njit(parallel=True, cache=True, error_model="numpy")
def tile_backward(top_diff, tiles, dx):
    """dx[o, r] = sum over t < tiles of top_diff[o, t*inner + r]; top_diff (outer, tiles*inner), dx (outer, inner)."""
    outer, inner = dx.shape
    for o in prange(outer):
        for r in range(inner):
            dx[o, r] = top_diff[o, r]
        for t in range(1, tiles):
            base = t * inner
            for r in range(inner):
                dx[o, r] += top_diff[o, base + r]


@njit(parallel=True, cache=True, error_model="numpy")
def reduce_forward(x, op, coeff, top):
    """top[i] = coeff * reduction of row x[i] (op 1 SUM and 4 MEAN: sum, 2 ASUM: sum |x|, 3 SUMSQ: sum x^2), float64 accumulation; x (num, dim), top (num,)."""
    num, dim = x.shape
    for i in prange(num):
        s = 0.0
        if op == 2:
            for j in range(dim):
                s += abs(x[i, j])
        elif op == 3:
            for j in range(dim):
                s += x[i, j] * x[i, j]
        else:
            for j in range(dim):
                s += x[i, j]
        top[i] = coeff * s


@njit(parallel=True, cache=True, error_model="numpy")
def reduce_backward(x, top_diff, op, coeff, dx):
    """dx[i, j] = coeff * top_diff[i] * (1 for op 1/4, sign(x[i, j]) for op 2, 2*x[i, j] for op 3); x, dx (num, dim), top_diff (num,)."""
    num, dim = dx.shape
    for i in prange(num):
        g = coeff * top_diff[i]
        if op == 2:
            for j in range(dim):
                v = x[i, j]
                dx[i, j] = g if v > 0 else (-g if v < 0 else 0 * g)
        elif op == 3:
            g2 = 2 * g
            for j in range(dim):
                dx[i, j] = g2 * x[i, j]
        else:
            for j in range(dim):
                dx[i, j] = g


@njit(parallel=True, cache=True, error_model="numpy")
def argmax_topk(x, top_k, arg, val):
    """for each (o, i): the top_k (value, index) pairs of x[o, :, i] in descending pair order (ties: larger index first, as std::greater on pairs); arg[o, k, i] = index, val[o, k, i] = value; x (outer, dim, inner), arg/val (outer, top_k, inner)."""
    outer, dim, inner = x.shape
    for task in prange(outer * inner):
        o = task // inner
        i = task - o * inner
        filled = 0
        for j in range(dim):
            v = x[o, j, i]
            if filled == top_k and v < val[o, top_k - 1, i]:
                continue
            pos = filled if filled < top_k else top_k - 1
            while pos > 0 and v >= val[o, pos - 1, i]:
                if pos < top_k:
                    arg[o, pos, i] = arg[o, pos - 1, i]
                    val[o, pos, i] = val[o, pos - 1, i]
                pos -= 1
            arg[o, pos, i] = j
            val[o, pos, i] = v
            if filled < top_k:
                filled += 1


@njit(cache=True, error_model="numpy")
def argmax_to_top(arg, val, out_max_val, interleave, top):
    """The ArgMax top from arg (int) and val of shape (outer, width): interleave: top (outer, 2, width) = [arg, val] per row; else top (outer, width) = val if out_max_val else arg; top flat."""
    outer = arg.shape[0]
    width = arg.size // max(outer, 1)
    a = arg.reshape(arg.size)
    v = val.reshape(val.size)
    if interleave:
        for o in range(outer):
            for j in range(width):
                top[2 * o * width + j] = a[o * width + j]
                top[(2 * o + 1) * width + j] = v[o * width + j]
    elif out_max_val:
        for i in range(top.size):
            top[i] = v[i]
    else:
        for i in range(top.size):
            top[i] = a[i]


@njit(parallel=True, cache=True, error_model="numpy")
def argmax_backward(val_diff, arg, dx):
    """dx[o, :, i] = 0, then dx[o, arg[o, k, i], i] += val_diff[o, k, i]; val_diff/arg (outer, top_k, inner), dx (outer, dim, inner)."""
    outer, dim, inner = dx.shape
    top_k = arg.shape[1]
    for task in prange(outer * inner):
        o = task // inner
        i = task - o * inner
        for j in range(dim):
            dx[o, j, i] = 0
        for k in range(top_k):
            dx[o, arg[o, k, i], i] += val_diff[o, k, i]


@njit(cache=True, error_model="numpy")
def float_indices(x, upper, integral, out):
    """out[i] = int(x[i]) (truncation) for flat x; returns the first i with x[i] outside [0, upper) or (integral) not a whole number, else -1."""
    for i in range(x.size):
        v = x[i]
        if not (v >= 0 and v < upper):
            return i
        k = int(v)
        if integral and k != v:
            return i
        out[i] = k
    return -1


@njit(parallel=True, cache=True, error_model="numpy")
def gather_rows(x, idx, out):
    """out[m, :] = x[idx[m], :]; x (N, D), idx (M,) integer, out (M, D)."""
    rows = idx.size
    width = out.shape[1]
    for m in prange(rows):
        r = idx[m]
        for c in range(width):
            out[m, c] = x[r, c]


@njit(parallel=True, cache=True, error_model="numpy")
def scatter_add_rows(src, idx, accumulate, out):
    """out[idx[m], :] += src[m, :] for every m (repeated indices add up), out zeroed first unless accumulate; src (M, D), out (N, D); parallel over column blocks (race-free)."""
    rows = idx.size
    width = out.shape[1]
    block = 256
    nblocks = (width + block - 1) // block
    if not accumulate:
        for b in prange(nblocks):
            c1 = min(width, (b + 1) * block)
            for r in range(out.shape[0]):
                for c in range(b * block, c1):
                    out[r, c] = 0
    for b in prange(nblocks):
        c0 = b * block
        c1 = min(width, c0 + block)
        for m in range(rows):
            r = idx[m]
            for c in range(c0, c1):
                out[r, c] += src[m, c]


@njit(parallel=True, cache=True, error_model="numpy")
def gather_sum_rows(src, order, starts, accumulate, out):
    """out[r, :] (+)= sum of src[order[k], :] for starts[r] <= k < starts[r + 1] (the inverse of gather_rows given the inverse index: source rows grouped by destination, ascending in a group; starts (N + 1,)); src (M, D), out (N, D); rows with no source become 0 unless accumulate."""
    rows, width = out.shape
    for r in prange(rows):
        if not accumulate:
            for c in range(width):
                out[r, c] = 0
        for k in range(starts[r], starts[r + 1]):
            m = order[k]
            for c in range(width):
                out[r, c] += src[m, c]


@njit(cache=True)
def _crop_src_offset(row, top_shape, src_shape, offsets):
    """Flat offset in the source of the first element of top row ``row`` (all axes but the last)."""
    nd = top_shape.size
    off = 0
    stride = 1
    rem = row
    for d in range(nd - 1, -1, -1):
        if d == nd - 1:
            off += offsets[d]
        else:
            t = rem % top_shape[d]
            rem //= top_shape[d]
            off += (t + offsets[d]) * stride
        stride *= src_shape[d]
    return off


@njit(parallel=True, cache=True, error_model="numpy")
def crop_copy_forward(x, x_shape, offsets, top_shape, top):
    """top[idx] = x[idx + offsets] over all N-D indices of top; x, top flat C-order, shapes and offsets int64 arrays (one per axis)."""
    nd = top_shape.size
    last = np.int64(top_shape[nd - 1])
    rows = np.int64(0)
    if last > 0:
        rows = top.size // last
    for row in prange(rows):
        r = np.int64(row)
        s = _crop_src_offset(r, top_shape, x_shape, offsets)
        d = r * last
        for k in range(last):
            top[d + k] = x[s + k]


@njit(parallel=True, cache=True, error_model="numpy")
def crop_copy_backward(top_diff, top_shape, offsets, x_shape, dx):
    """dx = 0, then dx[idx + offsets] = top_diff[idx] over all N-D indices of top; flat C-order arrays, shapes and offsets int64 arrays."""
    n = dx.size
    if n < GRAIN:
        for i in range(n):
            dx[i] = 0
    else:
        for i in prange(n):
            dx[i] = 0
    nd = top_shape.size
    last = np.int64(top_shape[nd - 1])
    rows = np.int64(0)
    if last > 0:
        rows = top_diff.size // last
    for row in prange(rows):
        r = np.int64(row)
        s = _crop_src_offset(r, top_shape, x_shape, offsets)
        d = r * last
        for k in range(last):
            dx[s + k] = top_diff[d + k]
