"""LSTM, RNN and LSTMUnit on the GPU backend give the CPU backend's tops, bottom diffs and
parameter diffs (tiny T = 3, N = 2 shapes: the simulator runs every thread in Python)."""
import numpy as np
import pytest

from caffeish import backend
from caffeish.testing import blobs_from, compare_backends, make_layer, setup_layer

pytestmark = pytest.mark.cuda

T, N = 3, 2


def gauss(shape, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, shape)


def rec_spec(kind, num_output=3, expose_hidden=None):
    p = {"num_output": num_output, "weight_filler": {"type": "gaussian", "std": 0.5},
         "bias_filler": {"type": "gaussian", "std": 0.5}}
    if expose_hidden is not None:
        p["expose_hidden"] = expose_hidden
    return {"type": kind, "recurrent_param": p}


def cont(starts=((0, 0), (0, 1), (2, 1))):
    """1 everywhere but at the (t, n) pairs in ``starts`` (a sequence starts there)."""
    c = np.ones((T, N))
    for t, n in starts:
        c[t, n] = 0
    return c


CASES = {
    # two passes: the second forward starts from the h_T / c_T the first one left (cont[0, 0] = 1)
    "carry-state": ([gauss((T, N, 4), 1), cont(((0, 1), (2, 1)))], None, 2),
    "cont-resets": ([gauss((T, N, 2, 2), 1), cont()], None, 1),
    "static": ([gauss((T, N, 3), 1), cont(((0, 1),)), gauss((N, 2, 2), 2)], None, 2),
}


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("case", list(CASES))
def test_recurrent(kind, case):
    arrays, _, passes = CASES[case]
    compare_backends(rec_spec(kind), arrays, passes=passes)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("static", [False, True], ids=["plain", "static"])
def test_recurrent_expose_hidden(kind, static):
    k = 2 if kind == "LSTM" else 1
    arrays = [gauss((T, N, 3), 1), cont(((2, 0),))] + ([gauss((N, 2), 2)] if static else []) + \
        [gauss((1, N, 2), 3 + j) for j in range(k)]
    compare_backends(rec_spec(kind, num_output=2, expose_hidden=True), arrays, n_tops=1 + k)


def test_lstm_float64():
    compare_backends(rec_spec("LSTM", num_output=2), [gauss((T, N, 2), 1), cont()],
                     dtype=np.float64, rtol=1e-10, atol=1e-12)


def test_lstm_backward_without_input_diff():
    compare_backends(rec_spec("LSTM", num_output=2), [gauss((T, N, 2), 1), cont()],
                     propagate_down=[False, False])


def test_hidden_state_reset_and_stream_change_on_gpu():
    """reset() zeroes the carried state on the device; a smaller N keeps the first streams'."""
    x, c = gauss((T, N, 2), 1), np.ones((T, N))
    outs = {}
    for mode in ("cpu", "gpu"):
        (backend.set_mode_gpu if mode == "gpu" else backend.set_mode_cpu)()
        try:
            layer = make_layer(rec_spec("LSTM", num_output=2), dtype=np.float32)
            bottom = blobs_from([x, c], np.float32)
            top = setup_layer(layer, bottom)
            layer.forward(bottom, top)
            layer.forward(bottom, top)
            got = [top[0].data.copy()]
            layer.reset()
            layer.forward(bottom, top)
            got.append(top[0].data.copy())
            small = blobs_from([x[:, :1], c[:, :1]], np.float32)
            layer.reshape(small, top)
            layer.forward(small, top)
            got.append(top[0].data.copy())
            got += [np.asarray(h) for h in layer.get_state()["hidden"]]
            outs[mode] = got
        finally:
            backend.set_mode_cpu()
    for g, w in zip(outs["gpu"], outs["cpu"]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def unit_arrays(n=3, d=2, cont=(1, 0, 1)):
    return [gauss((1, n, d), 0), gauss((1, n, 4 * d), 1), np.array([cont], dtype=float)]


@pytest.mark.parametrize("prop", [None, [True, False, False], [False, True, False]],
                         ids=["all", "c_prev-only", "x-only"])
def test_lstm_unit(prop):
    compare_backends({"type": "LSTMUnit"}, unit_arrays(), propagate_down=prop)


def test_lstm_unit_fractional_cont():
    compare_backends({"type": "LSTMUnit"}, unit_arrays(n=2, d=3, cont=(0.5, 1)), passes=2)


def test_recurrent_ops_match_cpu():
    from caffeish.backend import cpu, cuda
    n, d = 3, 5
    c_prev, x = gauss((n, d), 0).astype(np.float32), gauss((n, 4 * d), 1).astype(np.float32)
    cn = np.array([1, 0, 0.5], np.float32)
    dc, dh = gauss((n, d), 2).astype(np.float32), gauss((n, d), 3).astype(np.float32)
    want = [np.zeros((n, d), np.float32) for _ in range(3)] + [np.zeros((n, 4 * d), np.float32)]
    cpu.lstm_unit_forward(c_prev, x, cn, want[0], want[1])
    cpu.lstm_unit_backward(c_prev, x, cn, want[0], dc, dh, want[2], want[3])
    acc = dh.copy()
    cpu.cont_scale(dc, cn, acc, True)
    backend.set_mode_gpu()
    try:
        dv = [cuda.to_device(a) for a in (c_prev, x, cn, dc, dh)]
        got = [cuda.zeros((n, d)) for _ in range(3)] + [cuda.zeros((n, 4 * d))]
        cuda.lstm_unit_forward(dv[0], dv[1], dv[2], got[0], got[1])
        cuda.lstm_unit_backward(dv[0], dv[1], dv[2], got[0], dv[3], dv[4], got[2], got[3])
        cuda.cont_scale(dv[3], dv[2], dv[4], True)
        for g, w in zip(got + [dv[4]], want + [acc]):
            np.testing.assert_allclose(g.copy_to_host(), w, rtol=1e-5, atol=1e-6)
    finally:
        backend.set_mode_cpu()
