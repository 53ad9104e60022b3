"""The set_mode switch. Layers call ``self.backend.<op>`` on ``blob.dev_data`` / ``blob.dev_diff``;
the backend owns the arithmetic. ``backend.cpu`` (numpy + numba.njit) and ``backend.cuda``
(numba.cuda kernels, cuBLAS through CuPy when installed) expose the same operation names."""
from __future__ import annotations

import os

from ..errors import CaffeishError

_state = {"mode": "CPU", "device": 0}
_active = []  # [module]: the backend get_backend() returns


def set_mode_cpu():
    """Compute on the CPU. Blobs last written on the GPU come home when next read."""
    from . import cpu
    _state["mode"] = "CPU"
    _active[:] = [cpu]


def _cuda_module():
    try:
        from . import cuda
    except ImportError as e:  # numba without its CUDA target
        raise CaffeishError(
            f"GPU mode needs numba's CUDA target, which failed to import ({e}). "
            f"Install the GPU extra: pip install 'caffeish[gpu]'") from None
    return cuda


def set_mode_gpu(device_id: int | None = None):
    """Compute on an NVIDIA GPU (or numba's CUDA simulator when NUMBA_ENABLE_CUDASIM=1)."""
    if device_id is not None:
        _state["device"] = int(device_id)
    cuda = _cuda_module()
    cuda.select_device(_state["device"])  # raises CaffeishError naming what was looked for
    _state["mode"] = "GPU"
    _active[:] = [cuda]


def set_device(device_id: int):
    """Choose the GPU used by GPU mode (Caffe's ``device_id`` / ``--gpu N``)."""
    _state["device"] = int(device_id)
    if _state["mode"] == "GPU":
        _cuda_module().select_device(_state["device"])


def mode() -> str:
    return _state["mode"]


def device_id() -> int:
    return _state["device"]


def get_backend():
    if not _active:
        set_mode_cpu()
    return _active[0]


def cuda_simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def device_query(device_id: int | None = None) -> dict:
    """Name, memory, compute capability and driver of a GPU (raises CaffeishError when none)."""
    cuda = _cuda_module()
    return cuda.query_device(_state["device"] if device_id is None else int(device_id))
