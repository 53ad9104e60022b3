"""RNN, LSTM and LSTMUnit: Caffe's blob layout, naive per-timestep references, cont resets,
static input, expose_hidden, the hidden state carried between forwards, gradients, errors."""
import json
import logging
import math

import numpy as np
import pytest

from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient, check_gradient_spec, forward_layer,
                              make_layer, setup_layer)

STEP, THRESH = 1e-3, 1e-3


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def rec_spec(kind, num_output=3, expose_hidden=None, debug_info=None, name=None):
    p = {"num_output": num_output,
         "weight_filler": {"type": "gaussian", "std": 0.5},
         "bias_filler": {"type": "gaussian", "std": 0.5}}
    if expose_hidden is not None:
        p["expose_hidden"] = expose_hidden
    if debug_info is not None:
        p["debug_info"] = debug_info
    spec = {"type": kind, "recurrent_param": p}
    if name:
        spec["name"] = name
    return spec


def conts(T, N, starts=()):
    """cont = 1 everywhere except 0 at t = 0 and at the (t, n) pairs in ``starts``."""
    c = np.ones((T, N))
    c[0] = 0
    for t, n in starts:
        c[t, n] = 0
    return c


# --- naive references: one scalar at a time ------------------------------------------------------
def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def matvec(w, v):
    return [sum(w[r, k] * v[k] for k in range(len(v))) for r in range(w.shape[0])]


def lstm_ref(x, cont, params, xs=None, h0=None, c0=None):
    """Caffe's unrolled LSTM, stream by stream and step by step. Returns h (T,N,H), h_T, c_T."""
    T, N = cont.shape
    w_xc, b_c = params[0], params[1]
    w_s = params[2] if xs is not None else None
    w_hc = params[-1]
    H = w_hc.shape[1]
    out = np.zeros((T, N, H))
    hT, cT = np.zeros((N, H)), np.zeros((N, H))
    for n in range(N):
        h = list(h0[n]) if h0 is not None else [0.0] * H
        c = list(c0[n]) if c0 is not None else [0.0] * H
        static = matvec(w_s, xs[n].ravel()) if xs is not None else [0.0] * (4 * H)
        for t in range(T):
            k = cont[t, n]
            hx = matvec(w_xc, x[t, n].ravel())
            hh = matvec(w_hc, [k * v for v in h])
            a = [hx[j] + b_c[j] + hh[j] + static[j] for j in range(4 * H)]
            new_c, new_h = [], []
            for d in range(H):
                i = sigmoid(a[d])
                f = 0.0 if k == 0 else k * sigmoid(a[H + d])
                o = sigmoid(a[2 * H + d])
                g = math.tanh(a[3 * H + d])
                cv = f * c[d] + i * g
                new_c.append(cv)
                new_h.append(o * math.tanh(cv))
            c, h = new_c, new_h
            out[t, n] = h
        hT[n], cT[n] = h, c
    return out, hT, cT


def rnn_ref(x, cont, params, xs=None, h0=None):
    """Caffe's unrolled RNN, stream by stream and step by step. Returns o (T,N,H) and h_T."""
    T, N = cont.shape
    w_xh, b_h = params[0], params[1]
    w_s = params[2] if xs is not None else None
    w_hh, w_ho, b_o = params[-3], params[-2], params[-1]
    H = w_hh.shape[0]
    out = np.zeros((T, N, H))
    hT = np.zeros((N, H))
    for n in range(N):
        h = list(h0[n]) if h0 is not None else [0.0] * H
        static = matvec(w_s, xs[n].ravel()) if xs is not None else [0.0] * H
        for t in range(T):
            k = cont[t, n]
            hx = matvec(w_xh, x[t, n].ravel())
            hh = matvec(w_hh, [k * v for v in h])
            h = [math.tanh(hx[j] + b_h[j] + hh[j] + static[j]) for j in range(H)]
            oo = matvec(w_ho, h)
            out[t, n] = [math.tanh(oo[j] + b_o[j]) for j in range(H)]
        hT[n] = h
    return out, hT


def lstm_unit_ref(c_prev, x, cont):
    _, N, D = c_prev.shape
    c, h = np.zeros_like(c_prev), np.zeros_like(c_prev)
    for n in range(N):
        k = cont[0, n]
        for d in range(D):
            i = sigmoid(x[0, n, d])
            f = 0.0 if k == 0 else k * sigmoid(x[0, n, D + d])
            o = sigmoid(x[0, n, 2 * D + d])
            g = math.tanh(x[0, n, 3 * D + d])
            c[0, n, d] = f * c_prev[0, n, d] + i * g
            h[0, n, d] = o * math.tanh(c[0, n, d])
    return c, h


def params_of(layer):
    return [b.data.copy() for b in layer.blobs]


# --- parameter blobs: Caffe's number, order and shapes -------------------------------------------
@pytest.mark.parametrize("kind,x_shape,static,want", [
    ("LSTM", (4, 2, 5), None, [(12, 5), (12,), (12, 3)]),
    ("LSTM", (4, 2, 2, 3), (2, 7), [(12, 6), (12,), (12, 7), (12, 3)]),
    ("RNN", (4, 2, 5), None, [(3, 5), (3,), (3, 3), (3, 3), (3,)]),
    ("RNN", (4, 2, 5), (2, 2, 2), [(3, 5), (3,), (3, 4), (3, 3), (3, 3), (3,)]),
], ids=["lstm", "lstm-static-4d", "rnn", "rnn-static"])
def test_recurrent_blob_shapes(kind, x_shape, static, want):
    arrays = [np.zeros(x_shape), np.zeros(x_shape[:2])] + ([np.zeros(static)] if static else [])
    layer = make_layer(rec_spec(kind))
    top = setup_layer(layer, blobs_from(arrays))
    assert [b.shape for b in layer.blobs] == want
    assert top[0].shape == x_shape[:2] + (3,)


@pytest.mark.parametrize("kind,tops", [("LSTM", [(5, 2, 3), (1, 2, 3), (1, 2, 3)]),
                                       ("RNN", [(5, 2, 3), (1, 2, 3)])], ids=["lstm", "rnn"])
def test_expose_hidden_shapes(kind, tops):
    k = len(tops) - 1
    arrays = [np.zeros((5, 2, 4)), np.zeros((5, 2))] + [np.zeros((1, 2, 3))] * k
    layer = make_layer(rec_spec(kind, expose_hidden=True))
    top = setup_layer(layer, blobs_from(arrays), n_tops=1 + k)
    assert [t.shape for t in top] == tops


def test_fillers_follow_recurrent_param():
    spec = {"type": "LSTM", "recurrent_param": {"num_output": 2,
                                                "weight_filler": {"type": "constant", "value": 0.5},
                                                "bias_filler": {"type": "constant", "value": -1}}}
    layer = make_layer(spec)
    setup_layer(layer, blobs_from([np.zeros((2, 1, 3)), np.zeros((2, 1))]))
    assert np.all(layer.blobs[0].data == 0.5) and np.all(layer.blobs[2].data == 0.5)
    assert np.all(layer.blobs[1].data == -1)


# --- forward against the naive references --------------------------------------------------------
FWD_CONFIGS = [
    ("basic", (4, 2, 3), [], None),
    ("cont-resets", (5, 3, 2), [(2, 0), (3, 1), (4, 2), (1, 2)], None),
    ("static", (4, 2, 3), [(2, 1)], (2, 4)),
    ("x-4d", (3, 2, 2, 2), [(1, 0)], None),
    ("static-3d", (3, 2, 2), [], (2, 2, 3)),
]


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("cfg,x_shape,starts,static", FWD_CONFIGS,
                         ids=[c[0] for c in FWD_CONFIGS])
def test_recurrent_forward_matches_reference(kind, cfg, x_shape, starts, static):
    x = gauss(x_shape, 1)
    cont = conts(x_shape[0], x_shape[1], starts)
    arrays = [x, cont] + ([gauss(static, 2)] if static else [])
    layer, bottom, top = forward_layer(rec_spec(kind), arrays)
    xs = arrays[2] if static else None
    ref = (lstm_ref if kind == "LSTM" else rnn_ref)(x, cont, params_of(layer), xs=xs)
    np.testing.assert_allclose(top[0].data, ref[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_hidden_state_carries_to_next_forward(kind):
    """Without expose_hidden, h_0 (and c_0) of a forward are the h_T (c_T) of the previous one;
    cont = 1 at t = 0 lets them in, cont = 0 shuts them out."""
    x1, x2 = gauss((3, 2, 2), 1), gauss((3, 2, 2), 2)
    cont1 = conts(3, 2)
    cont2 = np.ones((3, 2))
    cont2[0, 1] = 0
    layer, bottom, top = forward_layer(rec_spec(kind), [x1, cont1])
    ref = lstm_ref if kind == "LSTM" else rnn_ref
    r1 = ref(x1, cont1, params_of(layer))
    bottom[0].data[...] = x2
    bottom[1].data[...] = cont2
    layer.forward(bottom, top)
    if kind == "LSTM":
        r2 = lstm_ref(x2, cont2, params_of(layer), h0=r1[1], c0=r1[2])
    else:
        r2 = rnn_ref(x2, cont2, params_of(layer), h0=r1[1])
    np.testing.assert_allclose(top[0].data, r2[0], rtol=1e-10, atol=1e-12)
    layer.reset()
    layer.forward(bottom, top)
    r3 = ref(x2, cont2, params_of(layer))
    np.testing.assert_allclose(top[0].data, r3[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_expose_hidden_forward(kind):
    T, N, H = 4, 2, 3
    x, cont = gauss((T, N, 2), 1), conts(T, N, [(2, 1)])
    cont[0, 0] = 1                                        # stream 0 continues from h_0
    xs = gauss((N, 3), 5)
    states = [gauss((1, N, H), 3), gauss((1, N, H), 4)][:2 if kind == "LSTM" else 1]
    layer, bottom, top = forward_layer(rec_spec(kind, expose_hidden=True),
                                       [x, cont, xs] + states, n_tops=1 + len(states))
    if kind == "LSTM":
        out, hT, cT = lstm_ref(x, cont, params_of(layer), xs=xs, h0=states[0][0],
                               c0=states[1][0])
        np.testing.assert_allclose(top[2].data[0], cT, rtol=1e-10, atol=1e-12)
    else:
        out, hT = rnn_ref(x, cont, params_of(layer), xs=xs, h0=states[0][0])
    np.testing.assert_allclose(top[0].data, out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(top[1].data[0], hT, rtol=1e-10, atol=1e-12)
    layer.forward(bottom, top)                            # exposed: no carry-over
    np.testing.assert_allclose(top[0].data, out, rtol=1e-10, atol=1e-12)


def test_lstm_float32_close_to_float64():
    x, cont = gauss((4, 3, 5), 1), conts(4, 3, [(2, 2)])
    _, _, t64 = forward_layer(rec_spec("LSTM", 4), [x, cont], dtype=np.float64)
    _, _, t32 = forward_layer(rec_spec("LSTM", 4), [x, cont], dtype=np.float32)
    assert t32[0].data.dtype == np.float32
    np.testing.assert_allclose(t32[0].data, t64[0].data, rtol=1e-4, atol=1e-5)


def test_stream_count_change_follows_caffe_blob_reshape():
    """N shrinks: the first streams keep their state; N grows: the state starts from zeros."""
    x, cont = gauss((2, 3, 2), 1), np.ones((2, 3))
    layer, bottom, top = forward_layer(rec_spec("LSTM"), [x, cont])
    r1 = lstm_ref(x, cont, params_of(layer))
    small = blobs_from([x[:, :2], cont[:, :2]])
    t2 = setup_layer(make_layer(rec_spec("LSTM")), small)   # a top of the right kind
    layer.reshape(small, t2)
    layer.forward(small, t2)
    r2 = lstm_ref(x[:, :2], cont[:, :2], params_of(layer), h0=r1[1][:2], c0=r1[2][:2])
    np.testing.assert_allclose(t2[0].data, r2[0], rtol=1e-10, atol=1e-12)
    big = blobs_from([gauss((2, 4, 2), 3), np.ones((2, 4))])
    layer.reshape(big, t2)
    layer.forward(big, t2)
    r3 = lstm_ref(big[0].data, big[1].data, params_of(layer))
    np.testing.assert_allclose(t2[0].data, r3[0], rtol=1e-10, atol=1e-12)


def test_hidden_state_travels_with_get_state():
    from caffeish.solvers.solver import _from_json, _json_default
    x, cont = gauss((3, 2, 2), 1), np.ones((3, 2))
    layer, bottom, top = forward_layer(rec_spec("LSTM"), [x, cont], dtype=np.float32)
    state = _from_json(json.loads(json.dumps(layer.get_state(), default=_json_default)))
    layer.forward(bottom, top)
    want = top[0].data.copy()
    other, b2, t2 = forward_layer(rec_spec("LSTM"), [gauss((3, 2, 2), 9), cont],
                                  dtype=np.float32)
    other.set_state(state)
    b2[0].data[...] = x
    other.forward(b2, t2)
    np.testing.assert_array_equal(t2[0].data, want)


def test_debug_info_logs_internal_blobs():
    from caffeish.log import logger
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        layer, bottom, top = forward_layer(rec_spec("LSTM", debug_info=True, name="lstm9"),
                                           [gauss((2, 1, 2)), conts(2, 1)])
        top[0].diff[...] = 1
        layer.backward(top, [True, False], bottom)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    msgs = [r.getMessage() for r in records]
    assert any("[Forward] Layer lstm9" in m and "c_2 data" in m for m in msgs)
    assert any("[Backward] Layer lstm9" in m and "param blob 2 diff" in m for m in msgs)


# --- gradients -----------------------------------------------------------------------------------
GRAD_CONFIGS = [
    ("basic", (3, 2, 2), [], None),
    ("cont-resets", (4, 2, 2), [(2, 0), (1, 1)], None),
    ("static", (3, 2, 2), [(2, 1)], (2, 3)),
]


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("cfg,x_shape,starts,static", GRAD_CONFIGS,
                         ids=[c[0] for c in GRAD_CONFIGS])
def test_recurrent_gradient(kind, cfg, x_shape, starts, static):
    """x, x_static and every parameter (cont takes no gradient; cont = 0 at t = 0 makes each
    forward independent of the state the previous one left)."""
    arrays = [gauss(x_shape, 1), conts(x_shape[0], x_shape[1], starts)]
    check = [0]
    if static:
        arrays.append(gauss(static, 2))
        check.append(2)
    check_gradient_spec(rec_spec(kind), arrays, check_bottom=check, stepsize=STEP,
                        threshold=THRESH)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_expose_hidden_gradient(kind):
    """With exposed h_0 / c_0 flowing into t = 1 (cont = 1 there), x, x_static and the params
    are checked against the objective on the output top (Caffe ignores the h_T / c_T diffs)."""
    T, N, H = 3, 2, 2
    cont = np.ones((T, N))
    cont[2, 0] = 0
    k = 2 if kind == "LSTM" else 1
    arrays = [gauss((T, N, 2), 1), cont, gauss((N, 2), 2)] + \
        [gauss((1, N, H), 3 + j) for j in range(k)]
    layer = make_layer(rec_spec(kind, num_output=H, expose_hidden=True))
    bottom = blobs_from(arrays)
    top = setup_layer(layer, bottom, n_tops=1 + k)
    check_gradient(layer, bottom, top, stepsize=STEP, threshold=THRESH, check_bottom=[0, 2],
                   top_index=0)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_gradient_stops_at_the_batch_like_caffe(kind):
    """Caffe's RecurrentLayer shares only the data of h_0 / c_0 and h_T / c_T with the unrolled
    net: the exposed initial states get no gradient and the h_T / c_T top diffs change nothing."""
    T, N, H = 3, 2, 2
    k = 2 if kind == "LSTM" else 1
    arrays = [gauss((T, N, 2), 1), np.ones((T, N))] + [gauss((1, N, H), 3 + j) for j in range(k)]
    layer, bottom, top = forward_layer(rec_spec(kind, num_output=H, expose_hidden=True), arrays,
                                       n_tops=1 + k)
    top[0].diff[...] = gauss(top[0].shape, 7)
    for b in bottom:
        b.diff[...] = 5.0
    layer.backward(top, [True, True] + [True] * k, bottom)
    dx = bottom[0].diff.copy()
    dparams = [b.diff.copy() for b in layer.blobs]
    for j in range(k):
        assert np.all(bottom[2 + j].diff == 0)
    assert np.all(bottom[1].diff == 0)
    for t in top[1:]:
        t.diff[...] = 100.0
    for b in layer.blobs:
        b.diff[...] = 0
    layer.backward(top, [True, False] + [False] * k, bottom)
    np.testing.assert_array_equal(bottom[0].diff, dx)
    for b, d in zip(layer.blobs, dparams):
        np.testing.assert_array_equal(b.diff, d)


def test_param_diffs_accumulate():
    layer, bottom, top = forward_layer(rec_spec("LSTM"), [gauss((2, 2, 2), 1), conts(2, 2)])
    top[0].diff[...] = 1
    layer.backward(top, [True, False], bottom)
    once = [b.diff.copy() for b in layer.blobs]
    layer.backward(top, [True, False], bottom)
    for b, d in zip(layer.blobs, once):
        np.testing.assert_allclose(b.diff, 2 * d, rtol=1e-12)


def test_allow_force_backward_excludes_cont():
    for kind in ("LSTM", "RNN", "LSTMUnit"):
        layer = make_layer(rec_spec(kind) if kind != "LSTMUnit" else {"type": "LSTMUnit"})
        cont_index = 2 if kind == "LSTMUnit" else 1
        assert not layer.allow_force_backward(cont_index)
        assert layer.allow_force_backward(0)


# --- LSTMUnit ------------------------------------------------------------------------------------
def unit_arrays(N=3, D=2, cont=(1, 0, 1), seed=0):
    return [gauss((1, N, D), seed), gauss((1, N, 4 * D), seed + 1),
            np.array([cont], dtype=float)]


@pytest.mark.parametrize("N,D", [(1, 1), (3, 2), (2, 5)], ids=["n1d1", "n3d2", "n2d5"])
def test_lstm_unit_shapes(N, D):
    layer = make_layer({"type": "LSTMUnit"})
    top = setup_layer(layer, blobs_from(unit_arrays(N, D, cont=[1] * N)))
    assert [t.shape for t in top] == [(1, N, D), (1, N, D)]
    assert layer.blobs == []


@pytest.mark.parametrize("cont", [(1, 0, 1), (0.5, 1, 0)], ids=["binary", "fractional"])
def test_lstm_unit_forward(cont):
    arrays = unit_arrays(cont=cont)
    _, _, top = forward_layer({"type": "LSTMUnit"}, arrays)
    c, h = lstm_unit_ref(*arrays)
    np.testing.assert_allclose(top[0].data, c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(top[1].data, h, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cont", [(1, 0, 1), (1, 1, 1), (0, 0, 0)], ids=["mixed", "ones", "zeros"])
def test_lstm_unit_gradient(cont):
    check_gradient_spec({"type": "LSTMUnit"}, unit_arrays(cont=cont), check_bottom=[0, 1],
                        stepsize=STEP, threshold=THRESH)


def test_lstm_unit_cont_diff_zeroed_and_skipped_bottoms_untouched():
    layer, bottom, top = forward_layer({"type": "LSTMUnit"}, unit_arrays())
    for t in top:
        t.diff[...] = 1
    for b in bottom:
        b.diff[...] = 7
    layer.backward(top, [False, True, True], bottom)
    assert np.all(bottom[0].diff == 7)
    assert np.all(bottom[2].diff == 0)
    assert not np.all(bottom[1].diff == 7)


# --- in a net ------------------------------------------------------------------------------------
def test_lstm_in_a_net_trains_one_step():
    import caffeish
    from caffeish.config.yaml_loader import parse_message
    text = """
name: tiny
layer:
  - {name: x, type: Input, top: [x, cont, label],
     input_param: {shape: [{dim: [3, 2, 4]}, {dim: [3, 2]}, {dim: [3, 2]}]}}
  - name: lstm
    type: LSTM
    bottom: [x, cont]
    top: h
    recurrent_param: {num_output: 5, weight_filler: {type: gaussian, std: 0.3}}
  - {name: ip, type: InnerProduct, bottom: h, top: s,
     inner_product_param: {num_output: 3, axis: 2, weight_filler: {type: gaussian, std: 0.3}}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [s, label], top: loss, softmax_param: {axis: 2}}
"""
    net = caffeish.Net(parse_message(text, "NetParameter", "tiny.yaml"), phase="TRAIN")
    assert [b.shape for b in net.params["lstm"]] == [(20, 4), (20,), (20, 5)]
    net.blobs["x"].data[...] = gauss((3, 2, 4), 1)
    net.blobs["cont"].data[...] = conts(3, 2)
    net.blobs["label"].data[...] = [[0, 1], [2, 0], [1, 1]]
    net.forward_backward()
    assert np.abs(net.params["lstm"][0].diff).sum() > 0
    assert np.abs(net.params["lstm"][2].diff).sum() > 0


# --- errors --------------------------------------------------------------------------------------
def test_num_output_required():
    layer = make_layer({"type": "LSTM", "name": "seq"})
    with pytest.raises(ConfigError, match=r"seq.*num_output"):
        setup_layer(layer, blobs_from([np.zeros((2, 1, 3)), np.zeros((2, 1))]))


@pytest.mark.parametrize("kind,expose,n_bottom,n_top", [
    ("LSTM", False, 1, 1), ("LSTM", False, 4, 1), ("LSTM", True, 3, 3), ("LSTM", True, 4, 1),
    ("RNN", False, 2, 2), ("RNN", True, 5, 2),
], ids=["lstm-1b", "lstm-4b", "lstm-exposed-3b", "lstm-exposed-1t", "rnn-2t", "rnn-exposed-5b"])
def test_bad_blob_counts(kind, expose, n_bottom, n_top):
    layer = make_layer(rec_spec(kind, expose_hidden=expose, name="rec"))
    shapes = [(2, 1, 3), (2, 1), (1, 3), (1, 1, 3), (1, 1, 3)][:n_bottom]
    with pytest.raises(ConfigError, match=rf"rec.*({kind}).*blob"):
        setup_layer(layer, blobs_from([np.zeros(s) for s in shapes]), n_tops=n_top)


@pytest.mark.parametrize("shapes,msg", [
    ([(2, 1, 3), (2, 2)], "cont"),
    ([(2, 1, 3), (2, 1, 1)], "cont"),
    ([(6,), (6,)], "at least 2 axes"),
    ([(2, 1, 3), (2, 1), (3, 4)], "x_static"),
], ids=["cont-n", "cont-3d", "x-1d", "static-n"])
def test_bad_shapes_at_setup(shapes, msg):
    layer = make_layer(rec_spec("LSTM", name="seq"))
    with pytest.raises(ShapeError, match=rf"seq.*{msg}"):
        setup_layer(layer, blobs_from([np.zeros(s) for s in shapes]))


def test_bad_shapes_at_reshape():
    layer = make_layer(rec_spec("RNN", name="seq"))
    bottom = blobs_from([np.zeros((3, 2, 4)), np.zeros((3, 2))])
    top = setup_layer(layer, bottom)
    with pytest.raises(ShapeError, match="seq.*timesteps changed"):
        layer.reshape(blobs_from([np.zeros((4, 2, 4)), np.zeros((4, 2))]), top)
    with pytest.raises(ShapeError, match="seq.*input size incompatible"):
        layer.reshape(blobs_from([np.zeros((3, 2, 5)), np.zeros((3, 2))]), top)


def test_bad_exposed_state_shape():
    layer = make_layer(rec_spec("LSTM", expose_hidden=True, name="seq"))
    arrays = [np.zeros((2, 2, 3)), np.zeros((2, 2)), np.zeros((1, 2, 3)), np.zeros((1, 3, 3))]
    with pytest.raises(ShapeError, match=r"seq.*c_0.*\(1, 2, 3\)"):
        setup_layer(layer, blobs_from(arrays), n_tops=3)


@pytest.mark.parametrize("shapes,msg", [
    ([(1, 2, 3), (1, 2, 11), (1, 2)], "4 \\* D = 12"),
    ([(1, 2, 3), (1, 2, 12), (1, 3)], "cont"),
    ([(2, 2, 3), (1, 2, 12), (1, 2)], "c_prev"),
    ([(1, 2, 3), (1, 2, 12), (1, 2, 1)], "cont"),
], ids=["gates", "cont-n", "two-steps", "cont-3d"])
def test_lstm_unit_bad_shapes(shapes, msg):
    layer = make_layer({"type": "LSTMUnit", "name": "cell"})
    with pytest.raises(ShapeError, match=rf"cell.*{msg}"):
        setup_layer(layer, blobs_from([np.zeros(s) for s in shapes]))
