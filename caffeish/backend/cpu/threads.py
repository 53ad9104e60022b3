"""Who uses the cores on the CPU backend.

numba's parallel kernels (im2col, pooling, element-wise ops) run on numba's threads. Matrix
products run on caffeish's own small worker pool, each worker calling a *single-threaded* BLAS on
its share (a slice of the output, or a block of images for convolutions). BLAS is put in
single-threaded mode once, the first time caffeish multiplies matrices, and left there:
switching OpenBLAS between 1 and N threads around each call, with PyTorch's OpenMP runtime
loaded in the same process, sent about one run in three into a state 25x slower (measured with
benchmarks/compare_torch.py); with OpenBLAS fixed at one thread, never.

The pool has as many workers as numba has threads (``NUMBA_NUM_THREADS``, or the cores).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from numba import get_num_threads

_lock = threading.Lock()
_pool: list = []      # [executor, workers]
_blas_done: list = []


def workers() -> int:
    """Matrix-product workers: numba's thread count, or 1 when the BLAS could not be made
    single-threaded (concurrent multi-threaded BLAS calls oversubscribe the cores)."""
    single_threaded_blas()
    return max(1, int(get_num_threads())) if _blas_done[0] else 1


def single_threaded_blas():
    """Put the BLAS numpy uses in single-threaded mode (once). Records whether it worked."""
    if _blas_done:
        return
    with _lock:
        if _blas_done:
            return
        ok = False
        try:
            import numpy  # noqa: F401  (its BLAS must be loaded for threadpoolctl to see it)
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas")
            if blas.lib_controllers:
                blas.limit(limits=1)
                ok = True
        except Exception:  # pragma: no cover - threadpoolctl missing or unable to see the BLAS
            ok = False
        _blas_done.append(ok)


def _executor(n):
    with _lock:
        if not _pool or _pool[1] != n:
            if _pool:
                _pool[0].shutdown(wait=False)
            _pool[:] = [ThreadPoolExecutor(n, thread_name_prefix="caffeish-blas"), n]
        return _pool[0]


def run_blocks(fn, total: int, n: int | None = None) -> list:
    """fn(lo, hi) for ``n`` (default: workers()) contiguous blocks of range(total), in parallel;
    returns the results in block order. With one block it runs on the calling thread."""
    single_threaded_blas()
    n = max(1, min(n or workers(), total))
    if n == 1:
        return [fn(0, total)]
    bounds = [(total * k // n, total * (k + 1) // n) for k in range(n)]
    return list(_executor(n).map(lambda b: fn(*b), bounds))
