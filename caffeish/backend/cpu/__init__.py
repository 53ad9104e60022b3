"""CPU backend: numpy + numba.njit kernels. Every op here has the same name in the CUDA backend."""
from .core import *  # noqa: F401,F403
from .blas import *  # noqa: F401,F403
from .vision import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .structure_ops import *  # noqa: F401,F403
from .solver_ops import *  # noqa: F401,F403
from .norm_ops import *  # noqa: F401,F403
from .recurrent_ops import *  # noqa: F401,F403
from .loss_ops import *  # noqa: F401,F403
from .data_ops import *  # noqa: F401,F403
from .conv_ops import *  # noqa: F401,F403

name = "cpu"
