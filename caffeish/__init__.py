"""caffeish: Caffe's way of working, rebuilt in Python.

pycaffe-style API::

    import caffeish
    caffeish.set_mode_cpu()
    net = caffeish.Net("configs/mnist/lenet_deploy.yaml", phase="test", weights="lenet.caffemodel")
    out = net.forward(data=images)          # {"prob": array}
    solver = caffeish.get_solver("configs/mnist/lenet_solver.yaml"); solver.step(100)
"""
__version__ = "0.1.0"

import os as _os

# numba's OpenMP workers spin after each parallel region by default; on a small machine that
# spinning starves the BLAS call that follows (measured here: a 0.4 ms GEMM + 5 us ReLU pair took
# 8 ms). Passive waiting must be chosen before the OpenMP runtime starts, i.e. before any kernel.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The reverse also holds: OpenBLAS's idle threads spin for ~0.1 s after each GEMM, so the numba
# kernel that follows gets one core. Letting them sleep at once took LeNet's training step from
# 23 ms to 16 ms on 2 cores. Read when OpenBLAS loads, i.e. only if numpy is not imported yet.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# OpenBLAS's kernel set for this CPU (AVX2 kernels on AMD Zen 4: see _cpu_env), unless the user
# chose one with OPENBLAS_CORETYPE.
from ._cpu_env import choose_openblas_coretype as _choose  # noqa: E402

_choose()

from .backend import set_device, set_mode_cpu, set_mode_gpu  # noqa: E402,F401
from .blob import Blob  # noqa: E402,F401
from .errors import CaffeishError, ConfigError, DataError, FormatError, ShapeError  # noqa: E402,F401
from .net import Net, set_random_seed  # noqa: E402,F401
from .net_spec import NetSpec  # noqa: E402,F401
from .classifier import Classifier  # noqa: E402,F401
from .detector import Detector  # noqa: E402,F401
from . import io  # noqa: E402,F401  (caffeish.io.Transformer, load_image, ... as caffe.io)
from .solvers import Solver, get_solver  # noqa: E402,F401
from .solvers.adaptive import (AdaDeltaSolver, AdaGradSolver, AdamSolver,  # noqa: E402,F401
                               NesterovSolver, RMSPropSolver)
from .solvers.sgd import SGDSolver  # noqa: E402,F401
from .layers.python_layer import PythonLayer  # noqa: E402,F401

Layer = PythonLayer  # pycaffe users subclass caffe.Layer

TRAIN, TEST = "TRAIN", "TEST"


def layer_type_list():
    from .layers import layer_types
    return layer_types()
