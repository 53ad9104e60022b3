"""Device arrays, launch geometry and the few ops every layer needs (copy, fill, asum).

Kernels use grid-stride loops, so any launch covers any size: on a GPU the grid is sized to the
array (capped); under numba's simulator (NUMBA_ENABLE_CUDASIM=1, used by CI) a launch is one or
two small blocks so that simulated threads stay cheap.
"""
from __future__ import annotations

import math
import os

import numpy as np
from numba import config, cuda

from ...errors import CaffeishError

__all__ = ["SIMULATED", "SMALL_LAUNCHES", "THREADS", "grid1d", "to_device", "copy_to_device", "to_host", "empty",
           "zeros", "view", "flat", "span", "steps", "fill", "select_device", "current_device", "query_device",
           "synchronize", "is_device_array"]

SIMULATED = bool(config.ENABLE_CUDASIM)
# Under the simulator, launches use few small blocks (each simulated thread is a Python thread).
# CAFFEISH_CUDASIM_GPU_LAUNCHES=1 keeps a real GPU's block sizes and grid caps instead, to check
# under the simulator the code paths a GPU takes (slower).
SMALL_LAUNCHES = SIMULATED and os.environ.get("CAFFEISH_CUDASIM_GPU_LAUNCHES", "") in ("", "0")
if SIMULATED:
    # The simulator runs a block's threads as Python threads that meet at every syncthreads();
    # with the default 5 ms GIL switch interval each barrier costs milliseconds (GEMM 20x slower).
    import sys
    import threading

    sys.setswitchinterval(1e-5)

    def _patch_simulator_shared_arrays():
        """The simulator creates a block's cuda.shared.array on first use with an unguarded
        check-then-create; with threads switching this often, two threads of a block can each
        create their own copy and a reduction reads garbage (seen: 1 GEMM in 300 wrong). Do the
        lookup under a lock, keyed like the simulator by the calling file and line."""
        from numba.core import types as _types
        from numba.cuda.simulator import kernelapi
        from numba.np import numpy_support
        original = kernelapi.FakeCUDAShared.array
        lock = threading.Lock()

        def array(self, shape, dtype, _frame_depth=1):
            """(_frame_depth: how far up the kernel's frame is, for wrappers of this.)"""
            if shape == 0:  # dynamic shared memory: one buffer, no race
                return original(self, shape, dtype)
            if isinstance(dtype, _types.Type):
                dtype = numpy_support.as_dtype(dtype)
            frame = sys._getframe(_frame_depth)
            key = (frame.f_code.co_filename, frame.f_lineno)
            with lock:
                arr = self._allocations.get(key)
                if arr is None:
                    arr = self._allocations[key] = np.empty(shape, dtype)
            return arr

        array._thread_safe = True
        kernelapi.FakeCUDAShared.array = array

    _patch_simulator_shared_arrays()

    def _patch_simulator_module_swap():
        """While a simulated kernel or device function runs, the simulator points the `cuda`
        name in its module's globals at a fake module (syncthreads, threadIdx, ...) and puts the
        real one back when the call returns. A device function is entered by every simulated
        thread of a block: when one thread returns from a device function of another module
        while a second thread is still inside it, the second finds the real numba.cuda, which
        has no syncthreads (seen in CI: "module 'numba.cuda' has no attribute 'syncthreads'").
        Count the calls in progress per module and put the real module back after the last."""
        from contextlib import contextmanager

        from numba.cuda.simulator import kernel, kernelapi
        real = cuda
        lock = threading.Lock()
        active: dict = {}     # id(globals) -> [calls in progress, names swapped]

        @contextmanager
        def swapped_cuda_module(fn, fake_cuda_module):
            globs = fn.__globals__
            key = id(globs)
            with lock:
                entry = active.get(key)
                if entry is None:
                    names = [k for k, v in globs.items() if v is real]
                    entry = active[key] = [0, names]
                    for k in names:
                        globs[k] = fake_cuda_module
                entry[0] += 1
            try:
                yield
            finally:
                with lock:
                    entry[0] -= 1
                    if entry[0] == 0:
                        del active[key]
                        for k in entry[1]:
                            globs[k] = real

        kernelapi.swapped_cuda_module = swapped_cuda_module
        kernel.swapped_cuda_module = swapped_cuda_module

    _patch_simulator_module_swap()
THREADS = 32 if SMALL_LAUNCHES else 256
_MAX_BLOCKS = 2 if SMALL_LAUNCHES else 8192


def grid1d(n: int):
    """(blocks, threads) for a grid-stride kernel over ``n`` items."""
    return max(1, min(_MAX_BLOCKS, math.ceil(max(int(n), 1) / THREADS))), THREADS


def is_device_array(x) -> bool:
    """A numba device array (real or simulated) or any __cuda_array_interface__ object (CuPy)."""
    if isinstance(x, np.ndarray):
        return False
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "copy_to_host")


def to_device(host: np.ndarray):
    return cuda.to_device(np.ascontiguousarray(host))


def copy_to_device(host: np.ndarray, dev):
    dev.copy_to_device(np.ascontiguousarray(host).reshape(dev.shape))


def to_host(dev, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return dev.copy_to_host()
    dev.copy_to_host(out)
    return out


def empty(shape, dtype=np.float32):
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def zeros(shape, dtype=np.float32):
    a = cuda.device_array(shape, dtype=np.dtype(dtype))
    if a.size:
        fill(a, 0)
    return a


def shape_arg(shape) -> tuple:
    """reshape's two spellings, ``f(2, 3)`` and ``f((2, 3))``, as one tuple."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _views_of(dev):
    """The views made of ``dev`` so far (kept on the array: a numba device array view costs
    5-10 us of Python to build, and layers ask for the same views at every iteration)."""
    d = getattr(dev, "__dict__", None)
    if d is None:        # an array type without instance attributes (CuPy): no cache
        return None
    views = d.get("_caffeish_views")
    if views is None:
        views = d["_caffeish_views"] = {}
    return views


def view(dev, *shape):
    """``dev`` (contiguous) seen with ``shape`` (same size, one -1 allowed; () views as one
    element); made once per array and shape."""
    shape = shape_arg(shape)
    if shape == tuple(dev.shape):
        return dev
    views = _views_of(dev)
    v = views.get(shape) if views is not None else None
    if v is None:
        v = dev.reshape(shape if shape else (1,))
        if views is not None:
            views[shape] = v
    return v


def flat(dev):
    return dev if dev.ndim == 1 else view(dev, dev.size)


def steps(dev):
    """[dev[0], dev[1], ...]: the views along the first axis (a recurrent layer's time steps),
    made once per array."""
    views = _views_of(dev)
    v = views.get("steps") if views is not None else None
    if v is None:
        v = [dev[t] for t in range(dev.shape[0])]
        if views is not None:
            views["steps"] = v
    return v


def span(dev, start, stop):
    """``dev[start:stop]`` along the first axis, made once per array and bounds."""
    start, stop = int(start), int(stop)
    if start == 0 and stop >= dev.shape[0]:
        return dev
    views = _views_of(dev)
    key = ("span", start, stop)
    v = views.get(key) if views is not None else None
    if v is None:
        v = dev[start:stop]
        if views is not None:
            views[key] = v
    return v


@cuda.jit(device=True)
def block_sum(buf, tid, v):
    """Sum of v over a block's threads, returned to every thread. buf: a shared array with one
    slot per thread (a power of two long, the block's size); it is free again on return."""
    buf[tid] = v
    cuda.syncthreads()
    s = buf.shape[0] // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    r = buf[0]
    cuda.syncthreads()
    return r


@cuda.jit
def _fill_kernel(x, value):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        x[i] = value


def fill(x, value):
    """x[:] = value."""
    x = flat(x)
    if x.size:
        _fill_kernel[grid1d(x.size)](x, x.dtype.type(value))
    return x


def synchronize():
    cuda.synchronize()


_selected = [0]


def current_device() -> int:
    return _selected[0]


def select_device(device_id: int):
    if SIMULATED:
        _selected[0] = 0
        return
    try:
        import numba_cuda  # noqa: F401
    except ImportError:
        raise CaffeishError(
            "GPU mode needs the numba-cuda package (numba's maintained CUDA target; the copy "
            "built into numba is deprecated and cannot compile some of caffeish's kernels). "
            "Install the GPU extra: pip install 'caffeish[gpu]' (CUDA 12) or "
            "'caffeish[gpu-cu13]' (CUDA 13).") from None
    try:
        available = cuda.is_available()
    except Exception as e:  # driver library present but broken
        available, why = False, str(e)
    else:
        why = ""
    if not available:
        raise CaffeishError(
            "GPU mode was asked for, but no CUDA GPU is usable: numba.cuda found no CUDA driver "
            "(libcuda.so) or no NVIDIA device" + (f" ({why})" if why else "") + ". Check "
            "`nvidia-smi`, install the GPU extra (pip install 'caffeish[gpu]'), or train on the "
            "CPU (solver_mode: CPU, no --gpu).")
    n = len(cuda.gpus)
    if not 0 <= device_id < n:
        raise CaffeishError(f"GPU {device_id} was asked for, but this machine has {n} CUDA "
                            f"device(s) (ids 0..{n - 1}). Use --gpu 0..{n - 1} or device_id.")
    cuda.select_device(device_id)
    from .blas import select_cupy_device
    select_cupy_device(device_id)
    _selected[0] = device_id


def query_device(device_id: int) -> dict:
    """What Caffe's `device_query` prints, as a dict."""
    if SIMULATED:
        return {"id": device_id, "name": "numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)",
                "compute_capability": "simulated", "total_memory_mib": None,
                "free_memory_mib": None, "multiprocessors": None, "driver_version": None,
                "cublas": "none (tiled numba.cuda GEMM)"}
    select_device(device_id)
    dev = cuda.get_current_device()
    free, total = cuda.current_context().get_memory_info()
    try:
        from numba.cuda.cudadrv.driver import driver
        v = driver.get_version()
        drv = f"{v[0]}.{v[1]}" if isinstance(v, tuple) else str(v)
    except Exception:
        drv = "unknown"
    from .blas import HAVE_CUPY
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return {"id": device_id, "name": name,
            "compute_capability": "%d.%d" % dev.compute_capability,
            "total_memory_mib": total // 2**20, "free_memory_mib": free // 2**20,
            "multiprocessors": dev.MULTIPROCESSOR_COUNT, "driver_version": drv,
            "cublas": "CuPy" if HAVE_CUPY else "none (tiled numba.cuda GEMM)"}
