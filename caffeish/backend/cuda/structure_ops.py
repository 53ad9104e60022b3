"""CUDA kernels for the structure layers (twins of ``backend/cpu/structure_ops.py``).

Same names, arguments and array layouts as the CPU module (see its docstring); the arrays are
device arrays. Element-wise ops are grid-stride loops over the output; copies that move blocks
(concat, slice, tile, crop, gather) are gathers: each output element computes where it reads
from, so no two threads write one element. Index arrays may be passed as host numpy arrays
(they are uploaded on each call; layers should keep them in an int64 Blob and pass
``dev_data``); crop shapes and offsets are small host arrays passed to kernels as tuples.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .core import SMALL_LAUNCHES, THREADS, flat, grid1d

__all__ = [
    "blob_copy", "eltwise_scale", "eltwise_sum_init", "eltwise_sum_add",
    "eltwise_prod_init", "eltwise_prod_mul", "eltwise_prod_grad_unstable",
    "eltwise_max_init", "eltwise_max_update", "eltwise_max_backward",
    "concat_copy_in", "concat_copy_out",
    "blob_set", "tile_forward", "tile_backward", "reduce_forward", "reduce_backward",
    "argmax_topk", "argmax_to_top", "argmax_backward", "float_indices", "gather_rows",
    "scatter_add_rows", "gather_sum_rows", "crop_copy_forward", "crop_copy_backward",
]

_MAX_ROW_BLOCKS = 2 if SMALL_LAUNCHES else 65535


def _on_host(a) -> bool:
    # (not core.is_device_array: it uses cuda.is_cuda_array, which the simulator lacks)
    return isinstance(a, (np.ndarray, list, tuple))


def _idx_dev(a):
    """An index array on the device (uploaded when given on the host)."""
    return cuda.to_device(np.ascontiguousarray(a, dtype=np.int64)) if _on_host(a) else a


def _scalar(x, v):
    return x.dtype.type(v)


# --- copy / set -------------------------------------------------------------------------------
@cuda.jit
def _copy_k(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[i]


def blob_copy(x, out):
    """out[i] = x[i]; flat arrays of equal length (x may be a host array: uploaded into out)."""
    out = flat(out)
    if out.size == 0:
        return
    if _on_host(x):
        out.copy_to_device(np.ascontiguousarray(x, dtype=out.dtype).reshape(out.size))
        return
    x = flat(x)
    if x is out:
        return
    if x.dtype == out.dtype:
        out.copy_to_device(x)  # device-to-device memcpy
    else:
        _copy_k[grid1d(out.size)](x, out)


@cuda.jit
def _set_k(value, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = value


def blob_set(value, out):
    """out[i] = value; flat array."""
    out = flat(out)
    if out.size:
        _set_k[grid1d(out.size)](_scalar(out, value), out)


# --- eltwise ----------------------------------------------------------------------------------
@cuda.jit
def _scale_k(a, x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = a * x[i]


def eltwise_scale(a, x, out):
    """out[i] = a * x[i]; flat arrays of equal length."""
    out = flat(out)
    if out.size:
        _scale_k[grid1d(out.size)](_scalar(out, a), flat(x), out)


@cuda.jit
def _sum_init_k(a, x, b, y, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = a * x[i] + b * y[i]


def eltwise_sum_init(a, x, b, y, out):
    """out[i] = a * x[i] + b * y[i]; flat arrays of equal length."""
    out = flat(out)
    if out.size:
        _sum_init_k[grid1d(out.size)](_scalar(out, a), flat(x), _scalar(out, b), flat(y), out)


@cuda.jit
def _sum_add_k(a, x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] += a * x[i]


def eltwise_sum_add(a, x, out):
    """out[i] += a * x[i]; flat arrays of equal length."""
    out = flat(out)
    if out.size:
        _sum_add_k[grid1d(out.size)](_scalar(out, a), flat(x), out)


@cuda.jit
def _prod_init_k(x, y, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = x[i] * y[i]


def eltwise_prod_init(x, y, out):
    """out[i] = x[i] * y[i]; flat arrays of equal length."""
    out = flat(out)
    if out.size:
        _prod_init_k[grid1d(out.size)](flat(x), flat(y), out)


@cuda.jit
def _prod_mul_k(x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] *= x[i]


def eltwise_prod_mul(x, out):
    """out[i] *= x[i]; flat arrays of equal length."""
    out = flat(out)
    if out.size:
        _prod_mul_k[grid1d(out.size)](flat(x), out)


@cuda.jit
def _prod_grad_unstable_k(top_diff, top, x, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = top[i] / x[i] * top_diff[i]


def eltwise_prod_grad_unstable(top_diff, top, x, out):
    """out[i] = top[i] / x[i] * top_diff[i] (inf/nan where x[i] == 0); flat arrays."""
    out = flat(out)
    if out.size:
        _prod_grad_unstable_k[grid1d(out.size)](flat(top_diff), flat(top), flat(x), out)


@cuda.jit
def _max_init_k(x, y, top, mask):
    for i in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        a = x[i]
        b = y[i]
        if a > b:
            top[i] = a
            mask[i] = 0
        else:
            top[i] = b
            mask[i] = 1


def eltwise_max_init(x, y, top, mask):
    """top[i] = max(x[i], y[i]), mask[i] = 0 if x[i] > y[i] else 1 (a tie goes to y); flat."""
    top = flat(top)
    if top.size:
        _max_init_k[grid1d(top.size)](flat(x), flat(y), top, flat(mask))


@cuda.jit
def _max_update_k(x, k, top, mask):
    for i in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        v = x[i]
        if v > top[i]:
            top[i] = v
            mask[i] = k


def eltwise_max_update(x, k, top, mask):
    """where x[i] > top[i] (strictly) top[i] = x[i], mask[i] = k; flat arrays."""
    top = flat(top)
    if top.size:
        mask = flat(mask)
        _max_update_k[grid1d(top.size)](flat(x), mask.dtype.type(k), top, mask)


@cuda.jit
def _max_backward_k(top_diff, mask, k, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = top_diff[i] if mask[i] == k else 0


def eltwise_max_backward(top_diff, mask, k, out):
    """out[i] = top_diff[i] if mask[i] == k else 0; flat arrays of equal length."""
    out = flat(out)
    if out.size:
        mask = flat(mask)
        _max_backward_k[grid1d(out.size)](flat(top_diff), mask, mask.dtype.type(k), out)


# --- concat / slice ---------------------------------------------------------------------------
@cuda.jit
def _concat_in_k(x, inner, top_inner, offset, top):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        o = i // inner
        top[o * top_inner + offset + (i - o * inner)] = x[i]


def concat_copy_in(x, outer, inner, top_inner, offset, top):
    """top[o*top_inner + offset + r] = x[o*inner + r] for o < outer, r < inner."""
    n = int(outer) * int(inner)
    if n:
        _concat_in_k[grid1d(n)](flat(x)[:n], int(inner), int(top_inner), int(offset), flat(top))


@cuda.jit
def _concat_out_k(top, inner, top_inner, offset, x):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        o = i // inner
        x[i] = top[o * top_inner + offset + (i - o * inner)]


def concat_copy_out(top, outer, inner, top_inner, offset, x):
    """x[o*inner + r] = top[o*top_inner + offset + r] for o < outer, r < inner."""
    n = int(outer) * int(inner)
    if n:
        _concat_out_k[grid1d(n)](flat(top), int(inner), int(top_inner), int(offset), flat(x)[:n])


# --- tile -------------------------------------------------------------------------------------
@cuda.jit
def _tile_fwd_k(x, inner, tiles, top):
    row = inner * tiles
    for i in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        o = i // row
        top[i] = x[o * inner + (i - o * row) % inner]


def tile_forward(x, tiles, top):
    """top[o, t*inner + r] = x[o, r] for t < tiles; x (outer, inner), top (outer, tiles*inner)."""
    inner = tuple(x.shape)[1]
    top = flat(top)
    if top.size:
        _tile_fwd_k[grid1d(top.size)](flat(x), inner, int(tiles), top)


@cuda.jit
def _tile_bwd_k(top_diff, inner, tiles, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        o = i // inner
        base = o * inner * tiles + (i - o * inner)
        s = top_diff[base]
        for t in range(1, tiles):
            s += top_diff[base + t * inner]
        dx[i] = s


def tile_backward(top_diff, tiles, dx):
    """dx[o, r] = sum over t < tiles of top_diff[o, t*inner + r]; dx (outer, inner)."""
    inner = tuple(dx.shape)[1]
    dx = flat(dx)
    if dx.size:
        _tile_bwd_k[grid1d(dx.size)](flat(top_diff), inner, int(tiles), dx)


# --- reduction --------------------------------------------------------------------------------
@cuda.jit(device=True)
def _reduce_term(v, op):
    if op == 2:
        return abs(v)
    if op == 3:
        return v * v
    return v


@cuda.jit
def _reduce_rows_thread_k(x, num, dim, op, coeff, top):
    """One thread per row (short rows)."""
    for i in range(cuda.grid(1), num, cuda.gridsize(1)):
        s = 0.0
        base = i * dim
        for j in range(dim):
            s += _reduce_term(np.float64(x[base + j]), op)
        top[i] = coeff * s


@cuda.jit
def _reduce_rows_block_k(x, num, dim, op, coeff, top):
    """One block per row (long rows): strided partial sums, then a shared-memory tree."""
    buf = cuda.shared.array(THREADS, np.float64)
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, num, cuda.gridDim.x):
        s = 0.0
        base = i * dim
        for j in range(tid, dim, cuda.blockDim.x):
            s += _reduce_term(np.float64(x[base + j]), op)
        buf[tid] = s
        cuda.syncthreads()
        h = THREADS // 2
        while h > 0:
            if tid < h:
                buf[tid] += buf[tid + h]
            cuda.syncthreads()
            h //= 2
        if tid == 0:
            top[i] = coeff * buf[0]
        cuda.syncthreads()


def reduce_forward(x, op, coeff, top):
    """top[i] = coeff * reduction of row x[i] (1 SUM / 4 MEAN, 2 ASUM, 3 SUMSQ), float64
    accumulation; x (num, dim), top (num,)."""
    num, dim = tuple(x.shape)
    if num == 0:
        return
    xf, top = flat(x), flat(top)
    coeff = np.float64(coeff)
    if dim >= 32:
        _reduce_rows_block_k[min(num, _MAX_ROW_BLOCKS), THREADS](xf, num, dim, int(op), coeff,
                                                                top)
    else:
        _reduce_rows_thread_k[grid1d(num)](xf, num, dim, int(op), coeff, top)


@cuda.jit
def _reduce_bwd_k(x, top_diff, dim, op, coeff, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        g = coeff * top_diff[i // dim]
        if op == 2:
            v = x[i]
            dx[i] = g if v > 0 else (-g if v < 0 else 0 * g)
        elif op == 3:
            dx[i] = 2 * g * x[i]
        else:
            dx[i] = g


def reduce_backward(x, top_diff, op, coeff, dx):
    """dx[i, j] = coeff * top_diff[i] * (1, sign(x[i, j]), 2*x[i, j] for SUM/MEAN, ASUM,
    SUMSQ); x, dx (num, dim), top_diff (num,)."""
    dim = tuple(dx.shape)[1]
    dx = flat(dx)
    if dx.size:
        _reduce_bwd_k[grid1d(dx.size)](flat(x), flat(top_diff), dim, int(op),
                                       _scalar(dx, coeff), dx)


# --- argmax -----------------------------------------------------------------------------------
@cuda.jit
def _argmax_topk_k(x, dim, inner, top_k, arg, val):
    """One thread per (o, i): insertion of x[o, :, i] into the descending top_k list."""
    n = arg.size // top_k
    for task in range(cuda.grid(1), n, cuda.gridsize(1)):
        o = task // inner
        i = task - o * inner
        xb = o * dim * inner + i
        ob = o * top_k * inner + i
        filled = 0
        for j in range(dim):
            v = x[xb + j * inner]
            if filled == top_k and v < val[ob + (top_k - 1) * inner]:
                continue
            pos = filled if filled < top_k else top_k - 1
            while pos > 0 and v >= val[ob + (pos - 1) * inner]:
                if pos < top_k:
                    arg[ob + pos * inner] = arg[ob + (pos - 1) * inner]
                    val[ob + pos * inner] = val[ob + (pos - 1) * inner]
                pos -= 1
            arg[ob + pos * inner] = j
            val[ob + pos * inner] = v
            if filled < top_k:
                filled += 1


def argmax_topk(x, top_k, arg, val):
    """for each (o, i): the top_k (value, index) pairs of x[o, :, i], descending (ties: larger
    index first); x (outer, dim, inner), arg/val (outer, top_k, inner)."""
    outer, dim, inner = tuple(x.shape)
    n = outer * inner
    if n:
        _argmax_topk_k[grid1d(n)](flat(x), dim, inner, int(top_k), flat(arg), flat(val))


@cuda.jit
def _argmax_to_top_k(arg, val, width, out_max_val, interleave, top):
    for i in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        if interleave:
            o = i // (2 * width)
            r = i - o * 2 * width
            if r < width:
                top[i] = arg[o * width + r]
            else:
                top[i] = val[o * width + r - width]
        elif out_max_val:
            top[i] = val[i]
        else:
            top[i] = arg[i]


def argmax_to_top(arg, val, out_max_val, interleave, top):
    """The ArgMax top from arg (int) and val of shape (outer, width): interleave: top (outer, 2,
    width) = [arg, val] per row; else top (outer, width) = val if out_max_val else arg."""
    outer = tuple(arg.shape)[0]
    top = flat(top)
    if top.size:
        width = arg.size // max(outer, 1)
        _argmax_to_top_k[grid1d(top.size)](flat(arg), flat(val), width, bool(out_max_val),
                                           bool(interleave), top)


@cuda.jit
def _argmax_bwd_k(val_diff, arg, dim, inner, top_k, dx):
    """Gather: each dx[o, j, i] sums val_diff[o, k, i] over the k with arg[o, k, i] == j."""
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        o = e // (dim * inner)
        r = e - o * dim * inner
        j = r // inner
        i = r - j * inner
        s = dx.dtype.type(0)
        b = o * top_k * inner + i
        for k in range(top_k):
            if arg[b + k * inner] == j:
                s += val_diff[b + k * inner]
        dx[e] = s


def argmax_backward(val_diff, arg, dx):
    """dx[o, :, i] = 0, then dx[o, arg[o, k, i], i] += val_diff[o, k, i]; val_diff/arg
    (outer, top_k, inner), dx (outer, dim, inner)."""
    _, dim, inner = tuple(dx.shape)
    top_k = tuple(arg.shape)[1]
    dx = flat(dx)
    if dx.size:
        _argmax_bwd_k[grid1d(dx.size)](flat(val_diff), flat(arg), dim, inner, top_k, dx)


# --- indices, gathers -------------------------------------------------------------------------
@cuda.jit
def _float_indices_k(x, upper, integral, out, first_bad):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if not (v >= 0 and v < upper):
            cuda.atomic.min(first_bad, 0, i)
        else:
            k = int(v)
            if integral and k != v:
                cuda.atomic.min(first_bad, 0, i)
            else:
                out[i] = k


def float_indices(x, upper, integral, out):
    """out[i] = int(x[i]) (truncation) for flat x; returns the first i with x[i] outside
    [0, upper) or (integral) not a whole number, else -1 (one device-to-host copy, like the CPU
    op's return value). The first bad position is found with atomic min: a reduction to one
    integer."""
    x = flat(x)
    n = x.size
    if n == 0:
        return -1
    first_bad = cuda.to_device(np.array([n], np.int64))
    _float_indices_k[grid1d(n)](x, x.dtype.type(upper), bool(integral), flat(out), first_bad)
    pos = int(first_bad.copy_to_host()[0])
    return -1 if pos >= n else pos


@cuda.jit
def _gather_rows_k(x, idx, width, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        m = e // width
        out[e] = x[idx[m] * width + (e - m * width)]


def gather_rows(x, idx, out):
    """out[m, :] = x[idx[m], :]; x (N, D), idx (M,) integer, out (M, D)."""
    width = tuple(out.shape)[1]
    out = flat(out)
    if out.size:
        _gather_rows_k[grid1d(out.size)](flat(x), _idx_dev(idx), width, out)


@cuda.jit
def _scatter_add_rows_k(src, idx, width, out):
    for e in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        m = e // width
        cuda.atomic.add(out, idx[m] * width + (e - m * width), src[e])


def scatter_add_rows(src, idx, accumulate, out):
    """out[idx[m], :] += src[m, :] for every m (repeated indices add up), out zeroed first unless
    accumulate; src (M, D), out (N, D).

    Atomic adds: this op's contract is an unsorted index with repeats and no inverse, so a gather
    would need a device sort or a host round trip (Caffe's Embed backward uses atomicAdd too).
    The summation order of repeated rows is therefore not fixed. Layers that can build the
    inverse index use ``gather_sum_rows`` (race-free, deterministic) instead."""
    width = tuple(out.shape)[1]
    out = flat(out)
    if not accumulate and out.size:
        _set_k[grid1d(out.size)](out.dtype.type(0), out)
    src = flat(src)
    if src.size:
        _scatter_add_rows_k[grid1d(src.size)](src, _idx_dev(idx), width, out)


@cuda.jit
def _gather_sum_rows_k(src, order, starts, width, accumulate, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        r = e // width
        c = e - r * width
        s = out.dtype.type(0)
        for k in range(starts[r], starts[r + 1]):
            s += src[order[k] * width + c]
        if accumulate:
            out[e] += s
        else:
            out[e] = s


def gather_sum_rows(src, order, starts, accumulate, out):
    """out[r, :] (+)= sum of src[order[k], :] for starts[r] <= k < starts[r + 1]: the race-free
    inverse of gather_rows given the inverse index (order: the source rows grouped by
    destination, ascending within a group; starts: (N + 1,) group bounds); src (M, D), out
    (N, D); rows with no source become 0 unless accumulate."""
    width = tuple(out.shape)[1]
    out = flat(out)
    if out.size:
        _gather_sum_rows_k[grid1d(out.size)](flat(src), _idx_dev(order), _idx_dev(starts), width,
                                             bool(accumulate), out)


# --- crop -------------------------------------------------------------------------------------
def _tuple(a):
    if not _on_host(a):
        a = a.copy_to_host()
    return tuple(int(v) for v in np.asarray(a).reshape(-1))


@cuda.jit
def _crop_fwd_k(x, x_shape, offsets, top_shape, top):
    nd = len(top_shape)
    for e in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        rem = e
        src = 0
        stride = 1
        for q in range(nd):
            d = nd - 1 - q
            t = rem % top_shape[d]
            rem //= top_shape[d]
            src += (t + offsets[d]) * stride
            stride *= x_shape[d]
        top[e] = x[src]


def crop_copy_forward(x, x_shape, offsets, top_shape, top):
    """top[idx] = x[idx + offsets] over all N-D indices of top; flat C-order arrays, shapes and
    offsets small host arrays (one entry per axis)."""
    top = flat(top)
    if top.size:
        _crop_fwd_k[grid1d(top.size)](flat(x), _tuple(x_shape), _tuple(offsets),
                                      _tuple(top_shape), top)


@cuda.jit
def _crop_bwd_k(top_diff, top_shape, offsets, x_shape, dx):
    nd = len(x_shape)
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        rem = e
        src = 0
        stride = 1
        inside = True
        for q in range(nd):
            d = nd - 1 - q
            t = rem % x_shape[d] - offsets[d]
            rem //= x_shape[d]
            if t < 0 or t >= top_shape[d]:
                inside = False
            src += t * stride
            stride *= top_shape[d]
        dx[e] = top_diff[src] if inside else 0


def crop_copy_backward(top_diff, top_shape, offsets, x_shape, dx):
    """dx = 0, then dx[idx + offsets] = top_diff[idx] over all N-D indices of top (computed as a
    gather over dx); flat C-order arrays, shapes and offsets small host arrays."""
    dx = flat(dx)
    if dx.size:
        _crop_bwd_k[grid1d(dx.size)](flat(top_diff), _tuple(top_shape), _tuple(offsets),
                                     _tuple(x_shape), dx)
