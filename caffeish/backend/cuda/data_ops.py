"""Handing data-layer batches to the GPU: the prefetch thread copies each finished batch to the
device through a pinned host buffer on its own CUDA stream, so the copy overlaps the solver's
compute; ``copy_batch`` in the layer's forward is then a device-to-device copy."""
import threading

import numpy as np
from numba import cuda

from . import core

__all__ = ["stage_batch", "copy_batch"]

_local = threading.local()


def _pinned(shape, dtype):
    """This thread's pinned buffer for (shape, dtype) and its stream (a batch and its labels
    each keep their own buffer)."""
    bufs = getattr(_local, "pinned", None)
    if bufs is None:
        bufs = _local.pinned = {}
        _local.stream = cuda.stream()
    key = (tuple(shape), np.dtype(dtype).str)
    if key not in bufs:
        if len(bufs) > 8:  # shapes keep changing (variable-size images): do not hoard
            bufs.clear()
        bufs[key] = cuda.pinned_array(tuple(shape), dtype=dtype)
    return bufs[key], _local.stream


def stage_batch(host: np.ndarray):
    """On the prefetch thread: host batch -> device array (pinned staging, own stream)."""
    host = np.ascontiguousarray(host)
    with cuda.gpus[core.current_device()]:
        pinned, stream = _pinned(host.shape, host.dtype)
        np.copyto(pinned, host)
        dev = cuda.to_device(pinned, stream=stream)
        stream.synchronize()  # the pinned buffer is reused by the next batch
    return dev


def copy_batch(staged, out):
    """Copy a staged batch (device array, or a host array staged in CPU mode) into ``out``."""
    if isinstance(staged, np.ndarray):
        core.copy_to_device(staged.astype(out.dtype, copy=False), out)
    else:
        out.copy_to_device(staged.reshape(tuple(out.shape)) if tuple(staged.shape) !=
                           tuple(out.shape) else staged)
