"""Matrix products on the GPU: cuBLAS through CuPy when CuPy is installed (zero-copy through
``__cuda_array_interface__``), otherwise a shared-memory tiled numba.cuda GEMM. Same names and
arguments as ``backend.cpu.blas``."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .core import SIMULATED, SMALL_LAUNCHES, block_sum, flat, grid1d, view

__all__ = ["gemm", "gemv", "axpy", "asum", "dot", "scal", "HAVE_CUPY", "gemm_engine"]

try:  # pragma: no cover - needs a GPU and CuPy
    if SIMULATED:
        raise ImportError("the simulator's arrays are host arrays")
    import cupy as _cp
    HAVE_CUPY = True
except Exception:  # ImportError, or a CuPy that cannot find its CUDA libraries
    _cp = None
    HAVE_CUPY = False

TILE = 4 if SMALL_LAUNCHES else 16


def gemm_engine() -> str:
    return "cuBLAS (CuPy)" if HAVE_CUPY else "tiled numba.cuda GEMM"


def _cupy_of(dev, trans=False):  # pragma: no cover - needs a GPU and CuPy
    """A CuPy array over ``dev``'s memory (no copy; its last two axes swapped when ``trans``),
    made once per device array and kept on it, as building one costs tens of microseconds per
    GEMM operand. It does not refer back to ``dev`` (its memory is UnownedMemory without an
    owner), so ``dev`` owning it makes no reference cycle that would hold device memory until a
    garbage collection; ``dev`` keeps the memory alive as long as the view is reachable."""
    d = getattr(dev, "__dict__", None)
    key = "_caffeish_cupy_t" if trans else "_caffeish_cupy"
    hit = d.get(key) if d is not None else None
    if hit is not None:
        return hit
    base = d.get("_caffeish_cupy") if d is not None else None
    if base is None:
        iface = dev.__cuda_array_interface__
        if d is None or iface.get("strides") is not None or not dev.size:
            base = _cp.asarray(dev)     # not cached: it refers to dev
        else:
            dtype = np.dtype(iface["typestr"])
            try:
                mem = _cp.cuda.UnownedMemory(iface["data"][0], dev.size * dtype.itemsize, None)
                base = _cp.ndarray(tuple(iface["shape"]), dtype, _cp.cuda.MemoryPointer(mem, 0))
            except Exception:       # a CuPy that wants an owner: the plain, uncached view
                return _cp.asarray(dev).swapaxes(-1, -2) if trans else _cp.asarray(dev)
            d["_caffeish_cupy"] = base
    hit = base.swapaxes(-1, -2) if trans else base
    if d is not None and "_caffeish_cupy" in d:
        d[key] = hit
    return hit


def select_cupy_device(device_id: int):  # pragma: no cover - needs a GPU and CuPy
    """Make CuPy's current device numba's, so cuBLAS runs where the arrays live (--gpu 1)."""
    if HAVE_CUPY:
        _cp.cuda.Device(int(device_id)).use()


def _make_gemm_kernel(dtype):
    nbtype = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64}[np.dtype(dtype)]

    @cuda.jit
    def kernel(a, b, c, ta, tb, alpha, beta, m, n, k):
        # each block walks output tiles (batch, tile row, tile col) in a block-stride loop
        sa = cuda.shared.array((TILE, TILE), nbtype)
        sb = cuda.shared.array((TILE, TILE), nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tiles_n = (n + TILE - 1) // TILE
        tiles_m = (m + TILE - 1) // TILE
        per_batch = tiles_m * tiles_n
        for tile in range(cuda.blockIdx.x, per_batch * c.shape[0], cuda.gridDim.x):
            z = tile // per_batch
            r = tile - z * per_batch
            row = (r // tiles_n) * TILE + ty
            col = (r % tiles_n) * TILE + tx
            ia = z if a.shape[0] > 1 else 0
            ib = z if b.shape[0] > 1 else 0
            acc = nbtype(0)
            for k0 in range(0, k, TILE):
                kk = k0 + tx
                if row < m and kk < k:
                    sa[ty, tx] = a[ia, kk, row] if ta else a[ia, row, kk]
                else:
                    sa[ty, tx] = 0
                kk = k0 + ty
                if col < n and kk < k:
                    sb[ty, tx] = b[ib, col, kk] if tb else b[ib, kk, col]
                else:
                    sb[ty, tx] = 0
                cuda.syncthreads()
                for t in range(TILE):
                    acc += sa[ty, t] * sb[t, tx]
                cuda.syncthreads()
            if row < m and col < n:
                if beta == 0:
                    c[z, row, col] = alpha * acc
                else:
                    c[z, row, col] = alpha * acc + beta * c[z, row, col]

    return kernel


_KERNELS: dict = {}


def _as3(x):
    return x if x.ndim == 3 else view(x, (1,) + tuple(x.shape))


def gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out for 2-D or batched 3-D (G, r, c) operands;
    a 2-D operand is broadcast over the other's batch. Returns ``out`` (allocated if None)."""
    sa, sb = tuple(a.shape), tuple(b.shape)  # (the simulator's shapes index only forwards)
    m = sa[-1] if trans_a else sa[-2]
    k = sa[-2] if trans_a else sa[-1]
    kb = sb[-1] if trans_b else sb[-2]
    n = sb[-2] if trans_b else sb[-1]
    if k != kb:
        raise ValueError(f"gemm: inner dimensions differ ({a.shape} x {b.shape}, "
                         f"trans_a={trans_a}, trans_b={trans_b})")
    batch = max(sa[0] if a.ndim == 3 else 1, sb[0] if b.ndim == 3 else 1)
    oshape = (batch, m, n) if (a.ndim == 3 or b.ndim == 3) else (m, n)
    if out is None:
        out = cuda.device_array(oshape, dtype=a.dtype)
        beta = 0.0
    if HAVE_CUPY:  # pragma: no cover - needs a GPU and CuPy
        ca, cb, co = _cupy_of(a, trans_a), _cupy_of(b, trans_b), _cupy_of(view(out, oshape))
        if beta == 0.0 and alpha == 1.0:
            _cp.matmul(ca, cb, out=co)
        else:
            r = _cp.matmul(ca, cb)
            if beta == 0.0:
                _cp.multiply(r, alpha, out=co)
            else:   # accumulating (beta 1: gradients) skips a scaling launch
                if beta != 1.0:
                    co *= beta
                co += alpha * r if alpha != 1.0 else r
        return out
    o3 = _as3(view(out, oshape))
    key = np.dtype(out.dtype)
    if key not in _KERNELS:
        _KERNELS[key] = _make_gemm_kernel(key)
    tiles = math.ceil(n / TILE) * math.ceil(m / TILE) * batch
    blocks = min(tiles, 1 if SMALL_LAUNCHES else 65535)
    if m and n:
        _KERNELS[key][blocks, (TILE, TILE)](_as3(a), _as3(b), o3, bool(trans_a), bool(trans_b),
                                            out.dtype.type(alpha), out.dtype.type(beta), m, n, k)
    return out


def gemv(a, x, out=None, trans=False, alpha=1.0, beta=0.0):
    return gemm(a, x, out=out, trans_a=trans, alpha=alpha, beta=beta)


@cuda.jit
def _axpy_kernel(alpha, x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] += alpha * x[i]


def axpy(alpha, x, y):
    """y += alpha * x (same size; contiguous)."""
    yf = flat(y)
    if yf.size:
        _axpy_kernel[grid1d(yf.size)](yf.dtype.type(alpha), flat(x), yf)
    return y


@cuda.jit
def _scal_kernel(alpha, x):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        x[i] *= alpha


def scal(alpha, x):
    xf = flat(x)
    if xf.size:
        _scal_kernel[grid1d(xf.size)](xf.dtype.type(alpha), xf)
    return x


_RED_THREADS = 32 if SMALL_LAUNCHES else 256


@cuda.jit
def _asum_dot_kernel(x, y, use_y, partial):
    """partial[block] = sum over a grid-stride slice of |x| (use_y=0) or x*y (use_y=1)."""
    buf = cuda.shared.array(_RED_THREADS, np.float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        if use_y:
            acc += x[i] * y[i]
        else:
            acc += abs(x[i])
    total = block_sum(buf, tid, acc)
    if tid == 0:
        partial[cuda.blockIdx.x] = total


def _reduce(x, y, use_y):
    x = flat(x)
    if x.size == 0:
        return 0.0
    blocks = max(1, min(grid1d(x.size)[0], 1024))
    partial = cuda.device_array(blocks, np.float64)
    _asum_dot_kernel[blocks, _RED_THREADS](x, flat(y) if y is not None else x, use_y, partial)
    return float(partial.copy_to_host().sum())


def asum(x) -> float:
    """sum |x| (accumulated in float64)."""
    return _reduce(x, None, 0)


def dot(x, y) -> float:
    return _reduce(x, y, 1)
