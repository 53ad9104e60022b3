"""Handing data-layer batches to the net (twins of ``backend/cuda/data_ops.py``)."""
import numpy as np

__all__ = ["stage_batch", "copy_batch", "release_batch"]


def stage_batch(host: np.ndarray):
    """Called on the prefetch thread: prepare a finished host batch for the compute device.
    On the CPU there is nothing to do."""
    return host


def copy_batch(staged, out):
    """Copy a staged batch (a host array, or a device array staged in GPU mode) into ``out``."""
    if not isinstance(staged, np.ndarray):
        staged = staged.copy_to_host()
    np.copyto(out, staged.reshape(out.shape), casting="unsafe")


def release_batch(staged):
    """Nothing to hand back on the CPU (the GPU twin recycles staged device buffers)."""
