"""Nesterov, AdaGrad, RMSProp, AdaDelta, Adam: hand-computed updates, config errors, history
layout in the .solverstate, and exact resume."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError
from caffeish.io.formats import blob_to_array, read_solverstate
from caffeish.solvers.adaptive import (AdaDeltaSolver, AdaGradSolver, AdamSolver,
                                       NesterovSolver, RMSPropSolver)
from tests.solvers.test_sgd import RANDOM_NET_PARAM

NET = """\
net_param:
  name: linreg
  layer:
    - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [4, 3]}, {dim: [4, 2]}]}}
    - name: ip
      type: InnerProduct
      bottom: x
      top: p
      param: [{lr_mult: 1, decay_mult: 1}, {lr_mult: 2, decay_mult: 0}]
      inner_product_param: {num_output: 2, weight_filler: {type: gaussian, std: 0.3},
                            bias_filler: {type: constant, value: 0.1}}
    - {name: loss, type: EuclideanLoss, bottom: [p, y], top: loss}
lr_policy: fixed
weight_decay: 0.01
max_iter: 100
random_seed: 3
snapshot_after_train: false
"""

# solver type -> (extra solver fields, hyper-parameters for the reference)
CONFIGS = {
    "Nesterov": ("base_lr: 0.05\nmomentum: 0.9\n", {"lr": 0.05, "momentum": 0.9}),
    "AdaGrad": ("base_lr: 0.1\ndelta: 1e-6\n", {"lr": 0.1, "delta": 1e-6}),
    "RMSProp": ("base_lr: 0.01\nrms_decay: 0.95\ndelta: 1e-6\n",
                {"lr": 0.01, "rms_decay": 0.95, "delta": 1e-6}),
    "AdaDelta": ("base_lr: 1.0\nmomentum: 0.95\ndelta: 1e-6\n",
                 {"lr": 1.0, "momentum": 0.95, "delta": 1e-6}),
    "Adam": ("base_lr: 0.01\nmomentum: 0.9\nmomentum2: 0.999\ndelta: 1e-8\n",
             {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
}
CLASSES = {"Nesterov": NesterovSolver, "AdaGrad": AdaGradSolver, "RMSProp": RMSPropSolver,
           "AdaDelta": AdaDeltaSolver, "Adam": AdamSolver}


def solver_from(text, **kw):
    return caffeish.get_solver(parse_message(text, "SolverParameter", "solver.yaml"), **kw)


def make(kind, extra=""):
    return solver_from(NET + f"type: {kind}\n" + CONFIGS[kind][0] + extra)


def feed(solver, seed=0):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["y"].data[...] = Y
    return X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)


def grads(W, b, X, Y, wd):
    """dL/dW (+ weight decay) and dL/db of L = 1/(2N) |X W^T + b - Y|^2."""
    d = X @ W.T + b - Y
    return (d.T @ X) / X.shape[0] + wd * W, d.sum(0) / X.shape[0]


def reference(kind, W, b, X, Y, steps, hp, wd=0.01):
    """The update rule written out in float64: returns weights and the history sets."""
    params = [W.astype(np.float64), b.astype(np.float64)]
    lr_mult = [1.0, 2.0]
    h1 = [np.zeros_like(p) for p in params]
    h2 = [np.zeros_like(p) for p in params]
    for it in range(steps):
        g = grads(params[0], params[1], X, Y, wd)
        for k in range(2):
            rate = hp["lr"] * lr_mult[k]
            if kind == "Nesterov":
                old = h1[k].copy()
                h1[k] = hp["momentum"] * h1[k] + rate * g[k]
                upd = (1 + hp["momentum"]) * h1[k] - hp["momentum"] * old
            elif kind == "AdaGrad":
                h1[k] = h1[k] + g[k] ** 2
                upd = rate * g[k] / (np.sqrt(h1[k]) + hp["delta"])
            elif kind == "RMSProp":
                r = hp["rms_decay"]
                h1[k] = r * h1[k] + (1 - r) * g[k] ** 2
                upd = rate * g[k] / (np.sqrt(h1[k]) + hp["delta"])
            elif kind == "AdaDelta":
                m, dl = hp["momentum"], hp["delta"]
                h1[k] = m * h1[k] + (1 - m) * g[k] ** 2
                u = g[k] * np.sqrt((h2[k] + dl) / (h1[k] + dl))
                h2[k] = m * h2[k] + (1 - m) * u ** 2
                upd = rate * u
            elif kind == "Adam":
                b1, b2 = hp["beta1"], hp["beta2"]
                h1[k] = b1 * h1[k] + (1 - b1) * g[k]
                h2[k] = b2 * h2[k] + (1 - b2) * g[k] ** 2
                t = it + 1
                corr = np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                upd = rate * corr * h1[k] / (np.sqrt(h2[k]) + hp["eps"])
            params[k] = params[k] - upd
    return params, h1, h2


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_updates_match_hand_computation(kind):
    s = make(kind)
    assert type(s) is CLASSES[kind] and s.type == kind
    X, Y = feed(s)
    W0 = s.net.params["ip"][0].data.copy()
    b0 = s.net.params["ip"][1].data.copy()
    s.step(6)
    (W, b), h1, h2 = reference(kind, W0, b0, X, Y, 6, CONFIGS[kind][1])
    np.testing.assert_allclose(s.net.params["ip"][0].data, W, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(s.net.params["ip"][1].data, b, rtol=1e-4, atol=2e-6)
    assert not np.allclose(W, W0, atol=1e-3)  # the steps really moved the weights
    n = len(s.net.learnable_params)
    assert len(s.history) == n * s.n_history_sets
    np.testing.assert_allclose(s.history[0], h1[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(s.history[1], h1[1], rtol=1e-4, atol=1e-7)
    if s.n_history_sets == 2:
        np.testing.assert_allclose(s.history[n], h2[0], rtol=1e-3, atol=1e-9)
        np.testing.assert_allclose(s.history[n + 1], h2[1], rtol=1e-3, atol=1e-9)
    assert s.net.params["ip"][0].data.dtype == np.float32
    assert all(h.dtype == np.float32 for h in s.history)


def test_adam_without_weight_decay_first_step_is_lr_times_sign():
    """Adam's first step is ~ local_rate * sign(grad) whatever the gradient's size."""
    s = solver_from(NET.replace("weight_decay: 0.01", "weight_decay: 0") + "type: Adam\n" +
                    CONFIGS["Adam"][0])
    X, Y = feed(s)
    W0 = s.net.params["ip"][0].data.astype(np.float64)
    b0 = s.net.params["ip"][1].data.astype(np.float64)
    gW, gb = grads(W0, b0, X, Y, 0.0)
    s.step(1)
    np.testing.assert_allclose(W0 - s.net.params["ip"][0].data, 0.01 * np.sign(gW), rtol=1e-4)
    np.testing.assert_allclose(b0 - s.net.params["ip"][1].data, 0.02 * np.sign(gb), rtol=1e-4)


def test_legacy_solver_type_enum_selects_the_rule():
    s = solver_from(NET + "solver_type: ADAM\nbase_lr: 0.01\n")
    assert isinstance(s, AdamSolver)
    s = solver_from(NET + "solver_type: NESTEROV\nbase_lr: 0.01\nmomentum: 0.9\n")
    assert isinstance(s, NesterovSolver)


@pytest.mark.parametrize("kind,extra,match", [
    ("AdaGrad", "momentum: 0.9\n", r"solver.yaml:\d+: solver \(AdaGrad\): momentum cannot be "
                                   r"used with AdaGrad"),
    ("RMSProp", "momentum: 0.5\n", r"solver.yaml:\d+: solver \(RMSProp\): momentum cannot be "
                                   r"used with RMSProp"),
    ("RMSProp", "", r"solver.yaml:\d+: solver \(RMSProp\): rms_decay should lie between 0 and 1"),
    ("Adam", "", r"solver.yaml:\d+: solver \(Adam\): momentum \(beta1\) must lie in \[0, 1\)"),
    ("Adam", "", r"solver.yaml:\d+: solver \(Adam\): momentum2 \(beta2\) must lie in \[0, 1\)"),
], ids=["adagrad-momentum", "rmsprop-momentum", "rmsprop-decay", "adam-beta1", "adam-beta2"])
def test_invalid_combinations_name_the_solver_line(kind, extra, match):
    text = CONFIGS[kind][0] + extra
    if "rms_decay" in match:
        text = text.replace("rms_decay: 0.95", "rms_decay: 1.0")
    if "beta1" in match:
        text = text.replace("momentum: 0.9\n", "momentum: 1.0\n")
    if "beta2" in match:
        text = text.replace("momentum2: 0.999", "momentum2: 1.5")
    with pytest.raises(ConfigError, match=match):
        solver_from(NET + f"type: {kind}\n" + text)


def test_unknown_solver_type_suggests():
    with pytest.raises(ConfigError, match=r"unknown solver type 'Adamm' \(did you mean 'Adam'"):
        solver_from(NET + "type: Adamm\nbase_lr: 0.1\n")


RANDOM_NET = RANDOM_NET_PARAM + """\
lr_policy: step
gamma: 0.5
stepsize: 7
weight_decay: 0.001
max_iter: 16
snapshot: 8
random_seed: 42
"""


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_resume_equals_uninterrupted_run(kind, tmp_path):
    text = RANDOM_NET + f"type: {kind}\n" + CONFIGS[kind][0] + f"snapshot_prefix: {tmp_path}/r\n"
    full = solver_from(text)
    full.solve()
    want = [p.data.copy() for p in full.net.learnable_params]
    want_hist = [h.copy() for h in full.history]

    state = read_solverstate(str(tmp_path / "r_iter_8.solverstate"))
    n = len(full.net.learnable_params)
    assert len(state.history) == n * full.n_history_sets
    assert [tuple(blob_to_array(b).shape) for b in state.history[:n]] == \
        [p.shape for p in full.net.learnable_params]

    resumed = solver_from(text)
    resumed.solve(resume_file=str(tmp_path / "r_iter_8.solverstate"))
    assert resumed.iter == 16
    for w, p in zip(want, resumed.net.learnable_params):
        np.testing.assert_array_equal(p.data, w)
    for w, h in zip(want_hist, resumed.history):
        np.testing.assert_array_equal(h, w)


def test_restoring_a_state_of_another_solver_type_is_an_error(tmp_path):
    text = RANDOM_NET + "type: Nesterov\n" + CONFIGS["Nesterov"][0] + \
        f"snapshot_prefix: {tmp_path}/r\n"
    s = solver_from(text.replace("max_iter: 16", "max_iter: 8"))
    s.solve()
    adam = solver_from(RANDOM_NET + "type: Adam\n" + CONFIGS["Adam"][0] +
                       f"snapshot_prefix: {tmp_path}/a\n")
    with pytest.raises(caffeish.CaffeishError, match=r"holds 4 history blobs but this Adam "
                                                     r"solver's net needs 8"):
        adam.restore(str(tmp_path / "r_iter_8.solverstate"))
