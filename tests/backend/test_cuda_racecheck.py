"""The simulator's race detector (tests/cudasim_racecheck.py) catches the races a GPU would show
and passes race-free kernels; then the backend's kernels run under it."""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("the race detector instruments numba's CUDA simulator", allow_module_level=True)

from numba import cuda  # noqa: E402

from tests import cudasim_racecheck as rc  # noqa: E402


@cuda.jit
def _scatter_add(x, out):
    i = cuda.grid(1)
    if i < x.size:
        out[i % out.size] += x[i]


@cuda.jit
def _scatter_atomic(x, out):
    i = cuda.grid(1)
    if i < x.size:
        cuda.atomic.add(out, i % out.size, x[i])


@cuda.jit
def _gather(x, out):
    # each out element sums its own inputs: no two threads write one element
    j = cuda.grid(1)
    if j < out.size:
        s = 0.0
        for i in range(j, x.size, out.size):
            s += x[i]
        out[j] = s


@cuda.jit
def _shift_in_place(x):
    # reads the neighbour that another thread overwrites: a race across threads and blocks
    i = cuda.grid(1)
    if i + 1 < x.size:
        x[i] = x[i + 1]


@cuda.jit
def _block_sum(x, out, sync):
    buf = cuda.shared.array(8, np.float32)
    t = cuda.threadIdx.x
    buf[t] = x[cuda.grid(1)]
    if sync:
        cuda.syncthreads()
    if t == 0:
        s = 0.0
        for k in range(8):
            s += buf[k]
        out[cuda.blockIdx.x] = s


def _run(kernel, blocks, threads, *args):
    with rc.checking():
        kernel[blocks, threads](*args)


def test_scatter_across_threads_is_a_race():
    x = cuda.to_device(np.ones(16, np.float32))
    out = cuda.to_device(np.zeros(4, np.float32))
    with pytest.raises(rc.RaceError) as e:
        _run(_scatter_add, 2, 8, x, out)
    msg = str(e.value)
    assert "_scatter_add" in msg and "argument `out`" in msg


def test_atomic_scatter_and_gather_are_not_races():
    x = cuda.to_device(np.arange(16, dtype=np.float32))
    out = cuda.to_device(np.zeros(4, np.float32))
    _run(_scatter_atomic, 2, 8, x, out)
    np.testing.assert_array_equal(out.copy_to_host(), np.arange(16).reshape(4, 4).sum(0))
    out2 = cuda.to_device(np.zeros(4, np.float32))
    _run(_gather, 1, 4, x, out2)
    np.testing.assert_array_equal(out2.copy_to_host(), out.copy_to_host())


def test_read_of_a_neighbours_write_is_a_race():
    x = cuda.to_device(np.arange(16, dtype=np.float32))
    with pytest.raises(rc.RaceError, match="argument `x`"):
        _run(_shift_in_place, 2, 8, x)


def test_shared_memory_needs_a_barrier():
    x = cuda.to_device(np.ones(16, np.float32))
    out = cuda.to_device(np.zeros(2, np.float32))
    with pytest.raises(rc.RaceError, match="no syncthreads"):
        _run(_block_sum, 2, 8, x, out, False)
    _run(_block_sum, 2, 8, x, out, True)      # each block has its own buffer: no race
    np.testing.assert_array_equal(out.copy_to_host(), [8, 8])


def test_unchecked_launches_are_left_alone(monkeypatch):
    x = cuda.to_device(np.ones(16, np.float32))
    out = cuda.to_device(np.zeros(4, np.float32))
    rc.install()
    monkeypatch.setattr(rc, "_enabled", 0)    # even under CAFFEISH_CUDASIM_RACECHECK=1
    _scatter_add[2, 8](x, out)                # outside checking(): runs as before
    assert out.copy_to_host().sum() > 0
