"""caffeish: Caffe's way of working, rebuilt in Python.

pycaffe-style API::

    import caffeish
    caffeish.set_mode_cpu()
    net = caffeish.Net("configs/mnist/lenet_deploy.yaml", phase="test", weights="lenet.caffemodel")
    out = net.forward(data=images)          # {"prob": array}
    solver = caffeish.get_solver("configs/mnist/lenet_solver.yaml"); solver.step(100)
"""
__version__ = "0.1.0"

from .backend import set_device, set_mode_cpu, set_mode_gpu  # noqa: E402,F401
from .blob import Blob  # noqa: E402,F401
from .errors import CaffeishError, ConfigError, DataError, FormatError, ShapeError  # noqa: E402,F401
from .net import Net  # noqa: E402,F401
from .solvers import Solver, get_solver  # noqa: E402,F401

TRAIN, TEST = "TRAIN", "TEST"


def layer_type_list():
    from .layers import layer_types
    return layer_types()
