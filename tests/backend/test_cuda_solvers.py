"""Solvers on the GPU backend: every update rule, weight decay, clipping and iter_size give the
same weights and history as on the CPU; snapshots and resume work from GPU mode."""
import numpy as np
import pytest

import caffeish
from caffeish import backend
from caffeish.config.yaml_loader import parse_message

pytestmark = pytest.mark.cuda

NET = """\
net_param:
  name: tiny
  layer:
    - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [4, 3]}, {dim: [4, 2]}]}}
    - name: ip1
      type: InnerProduct
      bottom: x
      top: h
      param: [{lr_mult: 1, decay_mult: 1}, {lr_mult: 2, decay_mult: 0}]
      inner_product_param: {num_output: 5, weight_filler: {type: gaussian, std: 0.5},
                            bias_filler: {type: constant, value: 0.1}}
    - {name: relu, type: ReLU, bottom: h, top: h}
    - name: ip2
      type: InnerProduct
      bottom: h
      top: p
      param: [{lr_mult: 0.5, decay_mult: 2}, {lr_mult: 1, decay_mult: 0}]
      inner_product_param: {num_output: 2, weight_filler: {type: gaussian, std: 0.5}}
    - {name: loss, type: EuclideanLoss, bottom: [p, y], top: loss}
lr_policy: step
gamma: 0.5
stepsize: 2
max_iter: 100
random_seed: 7
snapshot_after_train: false
"""

VARIANTS = {
    "sgd-momentum-l2": "type: SGD\nbase_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.01\n",
    "sgd-l1": "type: SGD\nbase_lr: 0.1\nmomentum: 0.5\nweight_decay: 0.05\n"
              "regularization_type: L1\n",
    "sgd-clip": "type: SGD\nbase_lr: 0.2\nmomentum: 0.9\nclip_gradients: 0.1\n",
    "sgd-iter-size-2": "type: SGD\nbase_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.01\n"
                       "iter_size: 2\n",
    "nesterov": "type: Nesterov\nbase_lr: 0.05\nmomentum: 0.9\nweight_decay: 0.01\n",
    "adagrad": "type: AdaGrad\nbase_lr: 0.1\ndelta: 1e-6\nweight_decay: 0.01\n",
    "rmsprop": "type: RMSProp\nbase_lr: 0.01\nrms_decay: 0.95\ndelta: 1e-6\n"
               "weight_decay: 0.01\nregularization_type: L1\n",
    "adadelta": "type: AdaDelta\nbase_lr: 1.0\nmomentum: 0.95\ndelta: 1e-6\n"
                "clip_gradients: 0.5\n",
    "adam": "type: Adam\nbase_lr: 0.01\nmomentum: 0.9\nmomentum2: 0.999\ndelta: 1e-8\n"
            "weight_decay: 0.01\niter_size: 2\n",
}


def make_solver(text):
    s = caffeish.get_solver(parse_message(text, "SolverParameter", "solver.yaml"))
    rng = np.random.default_rng(0)
    s.net.blobs["x"].data[...] = rng.normal(size=(4, 3))
    s.net.blobs["y"].data[...] = rng.normal(size=(4, 2))
    return s


def train(text, mode, iters=4):
    """Weights and history (host copies) after ``iters`` steps in ``mode``."""
    if mode == "gpu":
        backend.set_mode_gpu()
    try:
        s = make_solver(text)
        s.step(iters)
        on_device = [h.data_on_device for h in s.history_blobs]
        return ([p.data.astype(np.float64) for p in s.net.learnable_params],
                [h.astype(np.float64) for h in s.history], on_device)
    finally:
        backend.set_mode_cpu()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_solver_gpu_matches_cpu(variant):
    text = NET + VARIANTS[variant]
    w_cpu, h_cpu, _ = train(text, "cpu")
    w_gpu, h_gpu, on_device = train(text, "gpu")
    assert all(on_device), "the history should be updated on the device in GPU mode"
    for j, (g, c) in enumerate(zip(w_gpu, w_cpu)):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-6, err_msg=f"param {j}")
    for j, (g, c) in enumerate(zip(h_gpu, h_cpu)):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-6, err_msg=f"history {j}")
    assert any(np.abs(h).sum() > 0 for h in h_gpu)


def test_gpu_snapshot_resumes_on_gpu_and_on_cpu(tmp_path):
    text = NET + VARIANTS["adam"].replace("iter_size: 2\n", "") + \
        f"snapshot: 2\nsnapshot_prefix: {tmp_path}/run\n"
    backend.set_mode_gpu()
    try:
        full = make_solver(text)
        full.step(4)
        want = [p.data.copy() for p in full.net.learnable_params]
        resumed = make_solver(text)
        resumed.restore(str(tmp_path / "run_iter_2.solverstate"))
        assert resumed.iter == 2
        resumed.step(2)
        for w, p in zip(want, resumed.net.learnable_params):
            np.testing.assert_allclose(p.data, w, rtol=1e-6, atol=1e-7)
    finally:
        backend.set_mode_cpu()
    on_cpu = make_solver(text)   # a GPU snapshot continues on the CPU
    on_cpu.restore(str(tmp_path / "run_iter_2.solverstate"))
    on_cpu.step(2)
    for w, p in zip(want, on_cpu.net.learnable_params):
        np.testing.assert_allclose(p.data, w, rtol=1e-4, atol=1e-6)


def test_solver_ops_match_cpu():
    """Each update kernel on its own, on float32 arrays with an odd length."""
    from caffeish.backend import cpu, cuda
    rng = np.random.default_rng(3)
    n = 37
    g = rng.normal(size=n).astype(np.float32)
    w = rng.normal(size=n).astype(np.float32)
    w[3] = 0
    hs = [np.abs(rng.normal(size=n)).astype(np.float32) for _ in range(2)]
    f = np.float32
    calls = {
        "sgd_update": (1, (f(0.9), f(0.1))),
        "nesterov_update": (1, (f(0.9), f(0.1))),
        "adagrad_update": (1, (f(1e-6), f(0.1))),
        "rmsprop_update": (1, (f(0.95), f(1e-6), f(0.01))),
        "adadelta_update": (2, (f(0.95), f(1e-6), f(1.0))),
        "adam_update": (2, (f(0.9), f(0.999), f(1e-8), f(0.003))),
        "l2_regularize": (0, (w, f(0.01))),
        "l1_regularize": (0, (w, f(0.01))),
    }
    backend.set_mode_gpu()
    try:
        for name, (k, args) in calls.items():
            want = [g.copy()] + [h.copy() for h in hs[:k]]
            getattr(cpu, name)(*want, *args)
            got = [cuda.to_device(a) for a in [g] + hs[:k]]
            dargs = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
            getattr(cuda, name)(*got, *dargs)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a.copy_to_host(), b, rtol=1e-5, atol=1e-7,
                                           err_msg=name)
        assert cuda.sumsq(cuda.to_device(g)) == pytest.approx(cpu.sumsq(g), rel=1e-5)
    finally:
        backend.set_mode_cpu()


@pytest.mark.parametrize("variant", ["sgd-momentum-l2", "adadelta"])
def test_one_solver_switching_between_gpu_and_cpu_matches_the_cpu(variant):
    """set_mode_cpu / set_mode_gpu between steps of one solver: the packed parameters and
    history follow to wherever the next step runs, and the run ends where a CPU run does."""
    text = NET + VARIANTS[variant]
    w_cpu, h_cpu, _ = train(text, "cpu", iters=6)
    backend.set_mode_gpu()
    try:
        s = make_solver(text)
        s.step(2)
        backend.set_mode_cpu()
        s.step(2)
        backend.set_mode_gpu()
        s.step(2)
        assert all(h.data_on_device for h in s.history_blobs)
    finally:
        backend.set_mode_cpu()
    for j, (p, c) in enumerate(zip(s.net.learnable_params, w_cpu)):
        np.testing.assert_allclose(p.data, c, rtol=1e-4, atol=1e-6, err_msg=f"param {j}")
    for j, (h, c) in enumerate(zip(s.history, h_cpu)):
        np.testing.assert_allclose(h, c, rtol=1e-4, atol=1e-6, err_msg=f"history {j}")
