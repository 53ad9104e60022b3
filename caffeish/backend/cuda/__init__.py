"""CUDA backend: numba.cuda kernels (grid-stride loops), cuBLAS through CuPy when installed.

Every operation has the same name and arguments as in ``backend.cpu``; the arrays are device
arrays instead of numpy arrays. Each ``*_ops.py`` module in this package is imported here and
its ``__all__`` exported, so a family of kernels is one file.
"""
import importlib
import pkgutil

from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .blas import *  # noqa: F401,F403
from .blas import __all__ as _blas_all

name = "cuda"
__all__ = list(_core_all) + list(_blas_all)

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _m.name.endswith("_ops"):
        _mod = importlib.import_module(f"{__name__}.{_m.name}")
        for _n in _mod.__all__:
            globals()[_n] = getattr(_mod, _n)
        __all__ += list(_mod.__all__)
