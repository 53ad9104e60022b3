import json
import os
from pathlib import Path

# GPU-backend tests (marker `cuda`) run on numba's CUDA simulator unless this machine has an
# NVIDIA device; set before numba is imported. CAFFEISH_TEST_GPU=real forces the real GPU.
if (os.environ.get("CAFFEISH_TEST_GPU") != "real" and "NUMBA_ENABLE_CUDASIM" not in os.environ
        and not os.path.exists("/dev/nvidiactl")):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_vectors():
    d = SHARED / "caffe_vectors"
    if not d.is_dir():
        pytest.skip(f"../shared/caffe_vectors not present (looked in {d}); "
                    f"these checks need files written by real Caffe")
    return d


@pytest.fixture
def write_yaml(tmp_path):
    def w(name, text):
        p = tmp_path / name
        p.write_text(text)
        return p
    return w


@pytest.fixture(autouse=True)
def _cpu_mode_and_plain_logging():
    """Each test starts in CPU mode, with caffeish's logger propagating to the root (caplog)
    however an earlier test's `caffeish train` set it up."""
    import logging

    import caffeish
    from caffeish.log import logger
    caffeish.set_mode_cpu()
    yield
    caffeish.set_mode_cpu()
    for h in list(logger.handlers):
        if getattr(h, "_caffeish", False):
            logger.removeHandler(h)
            h.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))


# --- dev/cuda_compile_check.py, step 1: record each simulated kernel launch's argument types --
_RECORD = os.environ.get("CAFFEISH_RECORD_KERNELS")
_recorded: dict = {}


def _describe(arg):
    import numpy as np
    from numba import typeof, types
    ary = getattr(arg, "_ary", None)          # the simulator's device arrays wrap a numpy array
    if isinstance(arg, np.ndarray) or ary is not None:
        a = arg if ary is None else ary
        layout = "C" if a.flags.c_contiguous else ("F" if a.flags.f_contiguous else "A")
        return ["array", a.dtype.str, a.ndim, layout]
    if isinstance(arg, tuple):
        return ["tuple", [_describe(x) for x in arg]]
    t = typeof(arg)
    if isinstance(t, types.Boolean):
        return ["scalar", "boolean"]
    return ["scalar", str(t)]


def pytest_sessionstart(session):
    # every simulated kernel launch is checked for data races (tests/cudasim_racecheck.py);
    # CAFFEISH_CUDASIM_RACECHECK=0 turns that off (the GPU tests then take about 2/3 the time)
    if (os.environ.get("CAFFEISH_CUDASIM_RACECHECK", "1") != "0"
            and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"):
        from tests import cudasim_racecheck
        cudasim_racecheck.enable()
    if not _RECORD or os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return
    from numba.cuda.simulator import kernel as simk
    call = simk.FakeCUDAKernel.__call__

    def recording_call(self, *args):
        if not self._device and self.fn.__module__.startswith("caffeish."):
            fn = self.fn
            desc = [_describe(a) for a in args]
            key = json.dumps([fn.__module__, fn.__qualname__, desc])
            _recorded[key] = {"module": fn.__module__, "qualname": fn.__qualname__, "args": desc}
        return call(self, *args)
    simk.FakeCUDAKernel.__call__ = recording_call


def pytest_sessionfinish(session, exitstatus):
    if _RECORD and _recorded:
        with open(_RECORD, "w") as fh:
            json.dump(sorted(_recorded.values(), key=lambda r: (r["module"], r["qualname"])), fh,
                      indent=1)
