"""The CUDA backend's core: device memory behind Blob, GEMM, reductions, the mode switch.

Runs on numba's CUDA simulator in CI (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 when the
machine has no NVIDIA device) and on the real GPU when there is one."""
import numpy as np
import pytest

import caffeish
from caffeish import backend
from caffeish.blob import Blob
from caffeish.testing import compare_backends

pytestmark = pytest.mark.cuda


@pytest.fixture
def gpu():
    backend.set_mode_gpu()
    from caffeish.backend import cuda
    yield cuda
    backend.set_mode_cpu()


@pytest.mark.parametrize("alpha,beta", [(1.5, 0.5), (1.0, 1.0), (2.0, 1.0)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("batched", [False, True])
def test_gemm_matches_numpy(gpu, ta, tb, batched, alpha, beta):
    rng = np.random.default_rng(0)
    lead = (2,) if batched else ()
    a = rng.standard_normal(lead + (5, 7)).astype(np.float32)   # op(a): 5x7
    b = rng.standard_normal(lead + (7, 6)).astype(np.float32)   # op(b): 7x6
    c0 = rng.standard_normal(lead + (5, 6)).astype(np.float32)
    A = np.ascontiguousarray(np.swapaxes(a, -1, -2)) if ta else a
    B = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if tb else b
    out = gpu.to_device(c0)
    gpu.gemm(gpu.to_device(A), gpu.to_device(B), out=out, trans_a=ta, trans_b=tb,
             alpha=alpha, beta=beta)
    np.testing.assert_allclose(out.copy_to_host(), alpha * (a @ b) + beta * c0, rtol=1e-5,
                               atol=1e-5)
    fresh = gpu.gemm(gpu.to_device(A), gpu.to_device(B), trans_a=ta, trans_b=tb)
    np.testing.assert_allclose(fresh.copy_to_host(), a @ b, rtol=1e-5, atol=1e-5)


def test_gemm_broadcasts_a_2d_operand_over_a_batch(gpu):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 4)).astype(np.float64)
    x = rng.standard_normal((2, 4, 5)).astype(np.float64)
    out = gpu.gemm(gpu.to_device(w), gpu.to_device(x))
    np.testing.assert_allclose(out.copy_to_host(), w @ x, rtol=1e-12)


def test_reductions_and_axpy(gpu):
    x = np.linspace(-2, 3, 301).astype(np.float32)
    y = np.cos(np.arange(301)).astype(np.float32)
    dx, dy = gpu.to_device(x), gpu.to_device(y)
    assert gpu.asum(dx) == pytest.approx(np.abs(x.astype(np.float64)).sum(), rel=1e-6)
    assert gpu.dot(dx, dy) == pytest.approx(float(x.astype(np.float64) @ y), rel=1e-5, abs=1e-5)
    gpu.axpy(2.0, dx, dy)
    gpu.scal(0.5, dy)
    np.testing.assert_allclose(dy.copy_to_host(), 0.5 * (y + 2 * x), rtol=1e-6)
    gpu.fill(dy, 3.0)
    assert (dy.copy_to_host() == 3).all()


def test_blob_syncs_between_host_and_device(gpu):
    b = Blob((2, 3))
    b.data[...] = np.arange(6).reshape(2, 3)
    d = b.dev_data                       # host -> device
    assert b.data_on_device
    gpu.scal(2.0, d)                     # written on the device
    np.testing.assert_array_equal(b.data, 2 * np.arange(6).reshape(2, 3))   # device -> host
    assert not b.data_on_device
    b.data[0, 0] = -1                    # written on the host
    np.testing.assert_array_equal(b.dev_data.copy_to_host().ravel()[:2], [-1, 2])
    gpu.fill(b.dev_diff, 1.0)
    b.zero_diff()                        # zeroed where it lives
    assert b.diff.sum() == 0
    v = Blob((3, 2))
    v.share_data(b)                      # one storage, another shape
    gpu.fill(b.dev_data, 7.0)
    np.testing.assert_array_equal(v.data, np.full((3, 2), 7.0))


def test_set_mode_cpu_brings_device_values_home(gpu):
    b = Blob((4,))
    gpu.fill(b.dev_data, 5.0)
    backend.set_mode_cpu()
    assert backend.get_backend().name == "cpu"
    np.testing.assert_array_equal(b.dev_data, np.full(4, 5.0, np.float32))
    assert isinstance(b.dev_data, np.ndarray)


def test_device_query_describes_the_device():
    info = backend.device_query(0)
    assert {"name", "compute_capability", "total_memory_mib", "driver_version"} <= set(info)


def test_compare_backends_reports_a_mismatch(monkeypatch):
    from caffeish.backend import cuda

    def bad_relu(x, slope, y):
        cuda.fill(y, 0.25)
    monkeypatch.setattr(cuda, "relu_forward", bad_relu)
    with pytest.raises(AssertionError, match=r"pass0 top\[0\].data: max \|gpu - cpu\|"):
        compare_backends({"type": "ReLU"}, [np.linspace(-1, 1, 12).reshape(3, 4)])


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu(slope):
    x = np.linspace(-1, 1, 24).reshape(2, 3, 4)
    compare_backends({"type": "ReLU", "relu_param": {"negative_slope": slope}}, [x], passes=2)
    compare_backends({"type": "ReLU", "relu_param": {"negative_slope": slope}}, [x], in_place=True)


def test_public_api_switch():
    caffeish.set_mode_gpu()
    assert backend.mode() == "GPU" and backend.get_backend().name == "cuda"
    caffeish.set_mode_cpu()
    assert backend.get_backend().name == "cpu"


def test_simulator_module_swap_counts_overlapping_calls():
    """Under the simulator, the `cuda` name in a kernel's module points at the fake module until
    the last of the overlapping calls (simulated threads inside one device function) returns."""
    from numba import config, cuda
    if not config.ENABLE_CUDASIM:
        pytest.skip("a simulator patch (real GPU here)")
    import types

    from numba.cuda.simulator import kernel, kernelapi

    from caffeish.backend.cuda import core  # noqa: F401  (applies the patch)
    swap = kernel.swapped_cuda_module
    assert swap is kernelapi.swapped_cuda_module
    mod = types.ModuleType("m")
    mod.cuda = cuda
    exec("def f():\n    return cuda\n", mod.__dict__)
    fake = object()
    first, second = swap(mod.f, fake), swap(mod.f, fake)
    first.__enter__()
    second.__enter__()
    assert mod.f() is fake
    first.__exit__(None, None, None)
    assert mod.f() is fake          # the second call is still inside
    second.__exit__(None, None, None)
    assert mod.f() is cuda
