"""CPU kernels for the structure layers (Split, Concat, Eltwise).

Every kernel works on flat (1-D, C-contiguous) arrays; multi-input operations are built by the
layer from pairwise calls (the first call initialises ``out``, later calls accumulate into it), so
the CUDA twins need no lists of device arrays. Scalars (coefficients) should have the arrays'
dtype. Arrays shorter than ``GRAIN`` elements run on one thread: starting the thread pool costs
more than these memory-bound loops.
"""
from numba import njit, prange

__all__ = [
    "blob_copy", "eltwise_scale", "eltwise_sum_init", "eltwise_sum_add",
    "eltwise_prod_init", "eltwise_prod_mul", "eltwise_prod_grad_unstable",
    "eltwise_max_init", "eltwise_max_update", "eltwise_max_backward",
    "concat_copy_in", "concat_copy_out",
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
