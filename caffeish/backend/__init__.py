"""The set_mode switch. Layers call ``self.backend.<op>``; the backend owns the arithmetic."""
from __future__ import annotations

from ..errors import CaffeishError

_state = {"mode": "CPU", "device": 0}


def set_mode_cpu():
    _state["mode"] = "CPU"


def set_mode_gpu():
    raise CaffeishError(
        "GPU mode is not available yet: caffeish's CUDA backend has not been built. "
        "Train on the CPU (solver_mode: CPU, or leave out --gpu).")


def set_device(device_id: int):
    _state["device"] = int(device_id)


def mode() -> str:
    return _state["mode"]


def get_backend():
    from . import cpu
    return cpu
