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
    if _skinny_ok(a, b, out, m, k, n):
        _skinny_abt(a, b.T, out, out.dtype.type(alpha), out.dtype.type(beta))
        return out
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


# a few rows against a big transposed matrix (InnerProduct forward at a small batch: CaffeNet's
# fc6 at batch 10 is 10 x 9216 against 4096 x 9216): BLAS packs the whole weight matrix on every
# call, which a streaming kernel does not need. Measured here (fc6, 2 threads): 8.6 ms against
# 14-19 ms for OpenBLAS split either way, up to 16 rows; from about 32 rows BLAS wins.
_SKINNY_ROWS = 16
_SKINNY_MIN_ELEMS = 1 << 18


def _skinny_ok(a, b, out, m, k, n):
    return (a.ndim == 2 and b.ndim == 2 and out.ndim == 2 and m <= _SKINNY_ROWS
            and n * k >= _SKINNY_MIN_ELEMS and b.T.flags.c_contiguous
            and a.flags.c_contiguous and out.flags.c_contiguous
            and a.dtype == b.dtype == out.dtype and out.dtype in (np.float32, np.float64))


# reassociation lets the k loops vectorize; no flags that assume finite values (NaNs must reach
# the loss, where the user sees them)
@njit(parallel=True, fastmath={"reassoc", "contract"}, cache=True)
def _skinny_abt(a, bt, out, alpha, beta):
    """out = alpha * a @ bt.T + beta * out for a (M, K) with few rows and bt (N, K): each task
    takes 4 rows of bt and dots them with 2 rows of a at a time (8 sums in registers), so bt
    streams from memory once and a stays in cache."""
    m, kk = a.shape
    n = bt.shape[0]
    zero = out.dtype.type(0)
    for q in prange((n + 3) // 4):
        o = q * 4
        if o + 4 <= n:
            r = 0
            while r < m:
                if r + 2 <= m:
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    t0 = zero
                    t1 = zero
                    t2 = zero
                    t3 = zero
                    for k in range(kk):
                        xa = a[r, k]
                        xb = a[r + 1, k]
                        w0 = bt[o, k]
                        w1 = bt[o + 1, k]
                        w2 = bt[o + 2, k]
                        w3 = bt[o + 3, k]
                        s0 += w0 * xa
                        s1 += w1 * xa
                        s2 += w2 * xa
                        s3 += w3 * xa
                        t0 += w0 * xb
                        t1 += w1 * xb
                        t2 += w2 * xb
                        t3 += w3 * xb
                    _skinny_store(out, r, o, s0, s1, s2, s3, alpha, beta)
                    _skinny_store(out, r + 1, o, t0, t1, t2, t3, alpha, beta)
                    r += 2
                else:
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    for k in range(kk):
                        xa = a[r, k]
                        s0 += bt[o, k] * xa
                        s1 += bt[o + 1, k] * xa
                        s2 += bt[o + 2, k] * xa
                        s3 += bt[o + 3, k] * xa
                    _skinny_store(out, r, o, s0, s1, s2, s3, alpha, beta)
                    r += 1
        else:
            for oo in range(o, n):
                for r in range(m):
                    s = zero
                    for k in range(kk):
                        s += bt[oo, k] * a[r, k]
                    out[r, oo] = alpha * s + (beta * out[r, oo] if beta != 0 else zero)


@njit(cache=True, inline="always")
def _skinny_store(out, r, o, s0, s1, s2, s3, alpha, beta):
    if beta != 0:
        out[r, o] = alpha * s0 + beta * out[r, o]
        out[r, o + 1] = alpha * s1 + beta * out[r, o + 1]
        out[r, o + 2] = alpha * s2 + beta * out[r, o + 2]
        out[r, o + 3] = alpha * s3 + beta * out[r, o + 3]
    else:
        out[r, o] = alpha * s0
        out[r, o + 1] = alpha * s1
        out[r, o + 2] = alpha * s2
        out[r, o + 3] = alpha * s3


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
