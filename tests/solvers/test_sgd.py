"""SGD solver: lr policies, hand-computed updates, iter_size, clipping, L1/L2, exact resume."""
import math

import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError
from caffeish.solvers.lr_policy import learning_rate

LINEAR = """\
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
base_lr: 0.1
lr_policy: fixed
momentum: 0.9
weight_decay: 0.01
max_iter: 100
random_seed: 3
snapshot_after_train: false
"""


def solver_from(text, **kw):
    return caffeish.get_solver(parse_message(text, "SolverParameter", "solver.yaml"), **kw)


def feed(solver, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(4, 3))
    Y = rng.normal(size=(4, 2))
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["y"].data[...] = Y
    return X.astype(np.float32), Y.astype(np.float32)


def reference_sgd(W, b, X, Y, steps, lr, momentum, wd, reg="L2", clip=-1.0, iter_size=1):
    W, b = W.astype(np.float64), b.astype(np.float64)
    hW, hb = np.zeros_like(W), np.zeros_like(b)
    N = X.shape[0]
    for _ in range(steps):
        d = X @ W.T + b - Y
        gW = iter_size * (d.T @ X) / N
        gb = iter_size * d.sum(0) / N
        if clip >= 0:
            norm = math.sqrt((gW ** 2).sum() + (gb ** 2).sum())
            if norm > clip:
                gW, gb = gW * clip / norm, gb * clip / norm
        gW, gb = gW / iter_size, gb / iter_size
        gW = gW + (wd * W if reg == "L2" else wd * np.sign(W))
        hW = momentum * hW + lr * gW
        hb = momentum * hb + 2 * lr * gb
        W, b = W - hW, b - hb
    return W, b


@pytest.mark.parametrize("variant", ["l2", "l1", "clip", "iter_size"])
def test_sgd_updates_match_hand_computation(variant):
    text = LINEAR
    kw = {}
    if variant == "l1":
        text += "regularization_type: L1\n"
        kw["reg"] = "L1"
    if variant == "clip":
        text += "clip_gradients: 0.05\n"
        kw["clip"] = 0.05
    if variant == "iter_size":
        text += "iter_size: 3\n"
        kw["iter_size"] = 3
    s = solver_from(text)
    X, Y = feed(s)
    W0 = s.net.params["ip"][0].data.copy()
    b0 = s.net.params["ip"][1].data.copy()
    s.step(5)
    W, b = reference_sgd(W0, b0, X, Y, 5, 0.1, 0.9, 0.01, **kw)
    np.testing.assert_allclose(s.net.params["ip"][0].data, W, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(s.net.params["ip"][1].data, b, rtol=2e-5, atol=1e-6)
    assert s.iter == 5


@pytest.mark.parametrize("policy,extra,formula", [
    ("fixed", {}, lambda it: 0.01),
    ("step", {"gamma": 0.5, "stepsize": 3}, lambda it: 0.01 * 0.5 ** (it // 3)),
    ("exp", {"gamma": 0.9}, lambda it: 0.01 * 0.9 ** it),
    ("inv", {"gamma": 1e-4, "power": 0.75}, lambda it: 0.01 * (1 + 1e-4 * it) ** -0.75),
    ("multistep", {"gamma": 0.1, "stepvalue": [2, 5]},
     lambda it: 0.01 * 0.1 ** ((it >= 2) + (it >= 5))),
    ("poly", {"power": 2.0, "max_iter": 10}, lambda it: 0.01 * (1 - it / 10) ** 2),
    ("sigmoid", {"gamma": -0.5, "stepsize": 4},
     lambda it: 0.01 / (1 + math.exp(0.5 * (it - 4)))),
])
def test_lr_policies(policy, extra, formula):
    from caffeish.config.schema import Msg
    import caffeish.config  # noqa: F401
    p = Msg("SolverParameter", {"base_lr": 0.01, "lr_policy": policy, **extra})
    step = 0
    for it in range(10):
        rate, step = learning_rate(p, it, step)
        assert rate == pytest.approx(formula(it), rel=1e-12)


@pytest.mark.parametrize("extra,it,match", [
    ({"lr_policy": "inv", "gamma": -1.0, "power": 0.75}, 1,
     "lr_policy 'inv' gives the learning rate inf at iteration 1 \\(base_lr 0.01, gamma -1.0, "
     "power 0.75\\)"),
    ({"lr_policy": "poly", "power": 0.5, "max_iter": 10}, 12, "'poly' gives the learning rate"),
    ({"lr_policy": "exp", "gamma": 1e10}, 40, "'exp' gives the learning rate inf"),
], ids=["inv-zero", "poly-past-max_iter", "exp-overflow"])
def test_a_rate_that_is_not_finite_is_an_error(extra, it, match):
    from caffeish.config.schema import Msg
    p = Msg("SolverParameter", {"base_lr": 0.01, **extra})
    with pytest.raises(ConfigError, match=match):
        learning_rate(p, it, 0)


def test_sigmoid_far_past_its_step_is_zero_not_an_overflow():
    from caffeish.config.schema import Msg
    p = Msg("SolverParameter", {"base_lr": 0.01, "lr_policy": "sigmoid", "gamma": -1.0,
                                "stepsize": 1})
    assert learning_rate(p, 5000, 0)[0] == 0.0


@pytest.mark.parametrize("text,match", [
    ("base_lr: 0.1\nlr_policy: step\n", "lr_policy 'step' needs gamma, stepsize"),
    ("base_lr: 0.1\nlr_policy: poly\npower: 1\n", "lr_policy 'poly' needs max_iter"),
    ("base_lr: 0.1\nlr_policy: multistep\ngamma: 0.1\n", "needs stepvalue"),
    ("base_lr: 0.1\nlr_policy: stepp\n", "unknown lr_policy 'stepp' \\(did you mean 'step'\\?\\)"),
    ("lr_policy: fixed\n", "base_lr is not set"),
    ("base_lr: 0.1\nlr_policy: fixed\nsnapshot: 10\n", "snapshot_prefix is not"),
])
def test_solver_config_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        solver_from(LINEAR.split("base_lr")[0] + text)


def test_solver_net_path_is_relative_to_the_solver_file(tmp_path, monkeypatch):
    sub = tmp_path / "cfg"
    sub.mkdir()
    net_text = LINEAR.split("base_lr")[0].replace("net_param:\n", "")
    net_text = "\n".join(line[2:] for line in net_text.splitlines()) + "\n"
    (sub / "net.yaml").write_text(net_text)
    (sub / "solver.yaml").write_text("net: net.yaml\nbase_lr: 0.1\nlr_policy: fixed\n")
    monkeypatch.chdir(tmp_path)
    s = caffeish.get_solver(str(sub / "solver.yaml"))
    assert s.net.name == "linreg"
    (sub / "solver.yaml").write_text("net: missing.yaml\nbase_lr: 0.1\nlr_policy: fixed\n")
    with pytest.raises(ConfigError, match=r"solver.yaml:1: solver: net file 'missing.yaml' not found"):
        caffeish.get_solver(str(sub / "solver.yaml"))


RANDOM_NET_PARAM = """\
net_param:
  name: noisy
  layer:
    - name: data
      type: DummyData
      top: [x, y]
      dummy_data_param:
        shape: [{dim: [8, 6]}, {dim: [8, 3]}]
        data_filler: [{type: gaussian, std: 1.0}, {type: uniform, min: -1, max: 1}]
    - {name: ip1, type: InnerProduct, bottom: x, top: h, inner_product_param: {num_output: 16,
       weight_filler: {type: xavier}}}
    - {name: relu, type: ReLU, bottom: h, top: h}
    - {name: drop, type: Dropout, bottom: h, top: h, dropout_param: {dropout_ratio: 0.3}}
    - {name: ip2, type: InnerProduct, bottom: h, top: p, inner_product_param: {num_output: 3,
       weight_filler: {type: xavier}}}
    - {name: loss, type: EuclideanLoss, bottom: [p, y], top: loss}
"""

RANDOM_NET = RANDOM_NET_PARAM + """\
base_lr: 0.05
lr_policy: multistep
gamma: 0.5
stepvalue: [4, 13]
momentum: 0.9
weight_decay: 0.001
max_iter: 20
snapshot: 10
random_seed: 42
display: 5
"""


@pytest.mark.parametrize("fmt", ["BINARYPROTO", "HDF5"])
def test_resume_from_snapshot_equals_uninterrupted_run(tmp_path, fmt):
    ext = ""
    if fmt == "HDF5":
        pytest.importorskip("h5py", reason="snapshot_format HDF5 needs h5py (caffeish[hdf5])")
        ext = ".h5"
    text = RANDOM_NET + f"snapshot_prefix: {tmp_path}/run\nsnapshot_format: {fmt}\n"
    full = solver_from(text)
    full.solve()
    want = [p.data.copy() for p in full.net.learnable_params]
    assert (tmp_path / f"run_iter_10.solverstate{ext}").exists()
    assert (tmp_path / f"run_iter_20.caffemodel{ext}").exists()
    assert not list(tmp_path.glob("*.tmp-*"))

    resumed = solver_from(text)
    resumed.solve(resume_file=str(tmp_path / f"run_iter_10.solverstate{ext}"))
    assert resumed.iter == 20 and resumed.current_step == full.current_step
    for w, p in zip(want, resumed.net.learnable_params):
        np.testing.assert_array_equal(p.data, w)

    # the resumed run really started from iteration 10's weights, not from scratch
    fresh = solver_from(text.replace("max_iter: 20", "max_iter: 10").replace(
        f"{tmp_path}/run", f"{tmp_path}/other"))
    fresh.solve()
    assert not np.array_equal(fresh.net.learnable_params[0].data, want[0])


def test_nan_loss_stops_with_the_layer_name():
    s = solver_from(LINEAR.replace("base_lr: 0.1", "base_lr: 1e30"))
    feed(s)
    with pytest.raises(caffeish.CaffeishError, match="loss is (nan|inf).*Lower base_lr"):
        s.step(20)


def test_snapshot_diff(tmp_path):
    from caffeish.io.formats import read_netparameter
    s = solver_from(LINEAR + f"snapshot_prefix: {tmp_path}/s\nsnapshot_diff: true\n")
    feed(s)
    s.step(1)
    model, _ = s.snapshot()
    assert model.endswith("s_iter_1.caffemodel")
    ip = [lp for lp in read_netparameter(model).layer if lp.name == "ip"][0]
    assert ip.blobs[0].diff.size == 6  # the gradients travel with snapshot_diff
    np.testing.assert_array_equal(np.asarray(ip.blobs[0].diff),
                                  s.net.layer_dict["ip"].blobs[0].diff.ravel())


def test_a_64_bit_random_seed_is_accepted_and_repeats():
    """random_seed is an int64 in caffe.proto; numpy's legacy seed takes 32 bits."""
    text = LINEAR.split("base_lr")[0] + "base_lr: 0.1\nlr_policy: fixed\nrandom_seed: 1000000000000\n"
    a, b = solver_from(text), solver_from(text)
    np.testing.assert_array_equal(a.net.params["ip"][0].data, b.net.params["ip"][0].data)


@pytest.mark.parametrize("damage", [b"{not json", b"\xff\xfe", b'{"global_rng": [1, [1e400]]}'],
                         ids=["json", "utf-8", "rng"])
def test_a_damaged_caffeish_state_is_one_clear_error(tmp_path, damage):
    from caffeish.errors import CaffeishError
    from caffeish.io.formats import read_solverstate, write_solverstate
    text = LINEAR + f"snapshot_prefix: {tmp_path}/lin\n"
    s = solver_from(text)
    feed(s)
    s.step(2)
    s.snapshot()
    path = tmp_path / "lin_iter_2.solverstate"
    st = read_solverstate(str(path))
    st.set("caffeish_state", damage)
    write_solverstate(st, str(path))
    with pytest.raises(CaffeishError, match=r"lin_iter_2.solverstate: its caffeish state .* is "
                                            r"damaged .*--weights .*lin_iter_2.caffemodel"):
        solver_from(text).restore(str(path))
