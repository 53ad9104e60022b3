"""caffeish: Caffe's way of working, rebuilt in Python."""
__version__ = "0.1.0"

from .backend import set_device, set_mode_cpu, set_mode_gpu  # noqa: E402,F401
from .errors import CaffeishError, ConfigError, DataError, FormatError, ShapeError  # noqa: E402,F401
