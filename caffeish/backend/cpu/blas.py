"""Matrix products on the CPU: numpy's BLAS, single-threaded, with big products split across
caffeish's worker pool (see threads.py)."""
import numpy as np
from numba import njit, prange

from .threads import run_blocks, workers

__all__ = ["gemm", "gemv", "axpy", "asum", "dot", "scal"]

# below this many multiply-adds a product runs on the calling thread (pool overhead ~20 us)
_PARALLEL_MACS = 1 << 19


def _product(a, b, out, alpha, beta):
    """out = alpha * a @ b + beta * out on the calling thread (a, b, out 2-D or 3-D views)."""
    if beta == 0.0:
        np.matmul(a, b, out=out)
        if alpha != 1.0:
            out *= alpha
        return
    r = np.matmul(a, b)
    if beta != 1.0:
        out *= beta
    if alpha != 1.0:
        r *= alpha
    out += r


def gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out; op transposes the last two axes when asked.
    2-D, or batched 3-D with a 2-D operand broadcast. Returns out (allocated when None)."""
    nw = workers()  # (also puts the BLAS in single-threaded mode, once)
    if trans_a:
        a = np.swapaxes(a, -1, -2)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.empty(shape, np.result_type(a, b))
        beta = 0.0
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = out.size // max(m * n, 1)
    if nw < 2 or batch * m * n * k < _PARALLEL_MACS:
        _product(a, b, out, alpha, beta)
        return out
    if out.ndim == 3 and batch >= nw:            # split the batch (groups)
        a3 = a if a.ndim == 3 else None
        b3 = b if b.ndim == 3 else None

        def part(lo, hi):
            _product(a3[lo:hi] if a3 is not None else a, b3[lo:hi] if b3 is not None else b,
                     out[lo:hi], alpha, beta)
        run_blocks(part, batch, nw)
        return out
    if out.ndim == 3:                            # few large groups: one after the other
        for g in range(batch):
            gemm(a[g] if a.ndim == 3 else a, b[g] if b.ndim == 3 else b, out=out[g],
                 alpha=alpha, beta=beta)
        return out
    if m >= n:                                   # split the rows of the output

        def rows(lo, hi):
            _product(a[lo:hi], b, out[lo:hi], alpha, beta)
        run_blocks(rows, m, nw)
    else:                                        # split its columns

        def cols(lo, hi):
            _product(a, b[:, lo:hi], out[:, lo:hi], alpha, beta)
        run_blocks(cols, n, nw)
    return out


def gemv(a, x, out=None, trans=False, alpha=1.0, beta=0.0):
    return gemm(a, x, out=out, trans_a=trans, alpha=alpha, beta=beta)


@njit(parallel=True, cache=True)
def _axpy_kernel(alpha, x, y):
    if y.size < 32768:  # one thread: starting the pool costs more
        for i in range(y.size):
            y[i] = y[i] + alpha * x[i]
    else:
        for i in prange(y.size):
            y[i] = y[i] + alpha * x[i]


def axpy(alpha, x, y):
    """y += alpha * x (one pass, no temporary, in y's dtype)"""
    if y.size < 256 or not (x.flags.c_contiguous and y.flags.c_contiguous):
        if alpha == 1.0:
            y += x
        else:
            y += alpha * x
        return y
    _axpy_kernel(y.dtype.type(alpha), x.reshape(-1), y.reshape(-1))
    return y


def asum(x) -> float:
    return float(np.abs(x).sum())


def dot(x, y) -> float:
    return float(np.dot(x.ravel(), y.ravel()))


def scal(alpha, x):
    x *= alpha
    return x
