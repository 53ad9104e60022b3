import os
from pathlib import Path

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
