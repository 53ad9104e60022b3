"""Handing data-layer batches to the GPU: the prefetch thread copies each finished batch to the
device through a pinned host buffer on its own CUDA stream, so the copy overlaps the solver's
compute; ``copy_batch`` in the layer's forward is then a device-to-device copy.

The device buffers are recycled: ``copy_batch`` (or ``release_batch`` for a batch part nobody
reads) hands the staged buffer back once its copy is queued, and the next ``stage_batch`` of
that shape reuses it. Allocating one per batch cost a cuMemAlloc each, and numba's deferred
frees, which synchronise the device, every few iterations. A returned buffer carries an event
recorded on the default stream after its copy; the prefetch stream waits for that event on the
device before uploading into the buffer again, so the host never blocks and the order holds
whatever the streams' defaults (also with per-thread default streams)."""
import threading

import numpy as np
from numba import cuda

from . import core

__all__ = ["stage_batch", "copy_batch", "release_batch"]

_local = threading.local()
_POOL_PER_SHAPE = 8          # free buffers kept per (device, shape, dtype)
_pool: dict = {}
_pool_lock = threading.Lock()


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


def _pool_key(shape, dtype):
    return core.current_device(), tuple(int(s) for s in shape), np.dtype(dtype).str


def _take(shape, dtype):
    with _pool_lock:
        free = _pool.get(_pool_key(shape, dtype))
        if free:
            return free.pop()
    return cuda.device_array(tuple(shape), dtype=np.dtype(dtype))


def _event():
    return cuda.event() if core.SIMULATED else cuda.event(timing=False)


def release_batch(staged):
    """Hand a staged batch's device buffer back for reuse (after its last copy is queued)."""
    if isinstance(staged, np.ndarray) or not core.is_device_array(staged):
        return
    done = getattr(staged, "_caffeish_done", None)
    if done is None:
        done = staged._caffeish_done = _event()
    done.record()          # on the default stream, after the copy out of the buffer
    with _pool_lock:
        free = _pool.setdefault(_pool_key(staged.shape, staged.dtype), [])
        if len(free) < _POOL_PER_SHAPE and not any(b is staged for b in free):
            free.append(staged)


def stage_batch(host: np.ndarray):
    """On the prefetch thread: host batch -> device array (pinned staging, own stream)."""
    host = np.ascontiguousarray(host)
    with cuda.gpus[core.current_device()]:
        pinned, stream = _pinned(host.shape, host.dtype)
        np.copyto(pinned, host)
        dev = _take(host.shape, host.dtype)
        done = getattr(dev, "_caffeish_done", None)
        if done is not None:
            done.wait(stream)     # the last copy out of this recycled buffer comes first
        dev.copy_to_device(pinned, stream=stream)
        stream.synchronize()  # the pinned buffer is reused by the next batch
    return dev


def copy_batch(staged, out):
    """Copy a staged batch (device array, or a host array staged in CPU mode) into ``out``; a
    device buffer goes back to the pool."""
    if isinstance(staged, np.ndarray):
        core.copy_to_device(staged.astype(out.dtype, copy=False), out)
        return
    out.copy_to_device(core.view(staged, tuple(out.shape)))
    release_batch(staged)
