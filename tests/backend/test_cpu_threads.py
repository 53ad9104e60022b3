"""The CPU backend's threading: numpy's BLAS single-threaded, products split across workers,
and the image-parallel convolution equal to the batched one."""
import numpy as np
import pytest
from numba import get_num_threads

from caffeish.backend import cpu
from caffeish.backend.conv_common import batched_backward, batched_forward
from caffeish.backend.cpu import conv_ops, threads


def test_blas_is_single_threaded_and_workers_follow_numba():
    from threadpoolctl import threadpool_info
    assert threads.workers() == max(1, get_num_threads())
    # numpy's own BLAS (another library's copy, e.g. scipy's, loaded later is not caffeish's)
    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    assert blas and all(i["num_threads"] == 1 for i in blas)


def test_without_a_controllable_blas_products_run_on_one_worker(monkeypatch):
    monkeypatch.setattr(threads, "_blas_done", [False])
    assert threads.workers() == 1


@pytest.mark.parametrize("shape", [(300, 200, 150), (20, 700, 600), (2, 3, 4)])
def test_split_gemm_matches_numpy(shape):
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m)).astype(np.float32)    # used transposed
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = rng.standard_normal((m, n)).astype(np.float32)
    want = 0.5 * out + 2.0 * (a.T @ b)
    cpu.gemm(a, b, out=out, trans_a=True, alpha=2.0, beta=0.5)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("group", [1, 2])
def test_image_parallel_convolution_equals_the_batched_path(group, monkeypatch):
    monkeypatch.setattr(conv_ops, "workers", lambda: 2)   # the image-parallel path on any machine
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 4, 9, 8))
    w = rng.standard_normal((group, 6 // group, (4 // group) * 9)) if group > 1 else \
        rng.standard_normal((6, 4 * 9))
    bias = rng.standard_normal(6)
    geom = (3, 3, 2, 1, 1, 0, 1, 1, 5, 6)          # kernel 3x3, stride (2,1), pad (1,0)
    _compare_with_batched(x, w, bias, geom, 1e-10)


@pytest.mark.parametrize("col_bytes", [1, 1 << 20])
def test_padded_column_rows_give_the_same_convolution(col_bytes, monkeypatch):
    """32x16 outputs in float32: rows of 2 KB, which conv_ops pads; one image per GEMM
    (col_bytes=1) and several."""
    monkeypatch.setattr(conv_ops, "workers", lambda: 2)
    monkeypatch.setattr(conv_ops, "_COL_BYTES", col_bytes)
    assert conv_ops._row_stride(512, 4) == 528 and conv_ops._row_stride(500, 4) == 500
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 32, 16)).astype(np.float32)
    w = rng.standard_normal((4, 3 * 9)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    geom = (3, 3, 1, 1, 1, 1, 1, 1, 32, 16)
    _compare_with_batched(x, w, bias, geom, 1e-5)


def _compare_with_batched(x, w, bias, geom, tol):
    n, c = x.shape[:2]
    n_out = bias.size
    ohw = geom[8] * geom[9]
    krows = c * geom[0] * geom[1]
    col = np.empty(krows * n * ohw, x.dtype)
    res = np.empty(n_out * n * ohw, x.dtype)
    y1 = np.empty((n, n_out, geom[8], geom[9]), x.dtype)
    y2 = np.empty_like(y1)
    cpu.conv_forward(x, w, bias, True, geom, col, res, y1)
    batched_forward(cpu, x, w, bias, True, geom, col, res, y2)
    np.testing.assert_allclose(y1, y2, rtol=tol, atol=tol)
    dy = np.random.default_rng(3).standard_normal(y1.shape).astype(x.dtype)
    wd1, wd2 = np.zeros_like(w), np.zeros_like(w)
    bd1, bd2 = np.zeros_like(bias), np.zeros_like(bias)
    dx1, dx2 = np.empty_like(x), np.empty_like(x)
    cpu.conv_backward(x, w, dy, wd1, bd1, dx1, geom, col, res, False)
    batched_backward(cpu, x, w, dy, wd2, bd2, dx2, geom, col, res, False)
    for a, b in ((wd1, wd2), (bd1, bd2), (dx1, dx2)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(10, 2048, 1030), (1, 600, 500), (3, 1000, 1001), (16, 513, 517)])
def test_few_rows_against_a_transposed_matrix_take_the_streaming_kernel(m, k, n, dtype):
    """InnerProduct forward at a small batch (a @ W.T with W (N, K)): cpu.gemm's streaming
    kernel, checked against float64 numpy, with alpha / beta and odd sizes (4-column and
    2-row remainders)."""
    from caffeish.backend.cpu import blas
    rng = np.random.default_rng(4)
    a = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    out0 = rng.standard_normal((m, n)).astype(dtype)
    assert blas._skinny_ok(a, w.T, out0, m, k, n)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for alpha, beta in ((1.0, 0.0), (2.0, 0.5)):
        want = alpha * (a.astype(np.float64) @ w.T.astype(np.float64)) + beta * out0
        got = out0.copy()
        cpu.gemm(a, w, out=got, trans_b=True, alpha=alpha, beta=beta)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    a[0, 5] = np.nan                      # NaNs reach the output (no finite-math assumptions)
    got = cpu.gemm(a, w, out=np.empty((m, n), dtype), trans_b=True)
    assert np.isnan(got[0]).all() and (m == 1 or np.isfinite(got[1:]).all())
