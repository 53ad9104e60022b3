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
def _cpu_mode():
    import caffeish
    caffeish.set_mode_cpu()
    yield


os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
