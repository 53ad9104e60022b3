"""The packed parameters (caffeish.param_buffers) and the one-pass update over them: the same
weights, gradients and history, bit for bit, as the per-parameter path, for every rule and
option; blobs stay usable (writes, shared views, reshapes)."""
import numpy as np
import pytest

import caffeish
from caffeish import backend
from caffeish.backend import cpu
from caffeish.blob import SyncedSlice
from caffeish.config.yaml_loader import parse_message
from caffeish.param_buffers import ParamBuffers
from caffeish.solvers.sgd import SGDSolver
from caffeish.solvers.solver import SOLVER_TYPES, solver_type_name

NET = """\
net_param:
  name: packed
  layer:
    - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [4, 4]}, {dim: [4, 2]}]}}
    - name: ip1
      type: InnerProduct
      bottom: x
      top: h
      param: [{lr_mult: 1, decay_mult: 1, name: w1}, {lr_mult: 2, decay_mult: 0}]
      inner_product_param: {num_output: 6, weight_filler: {type: gaussian, std: 0.4},
                            bias_filler: {type: constant, value: 0.1}}
    - {name: relu, type: ReLU, bottom: h, top: h}
    - name: ip_shared
      type: InnerProduct
      bottom: h
      top: h2
      param: [{name: w1, share_mode: PERMISSIVE}, {lr_mult: 0}]
      inner_product_param: {num_output: 4, axis: 1, weight_filler: {type: gaussian, std: 0.4},
                            bias_filler: {type: constant, value: 0.2}}
    - name: ip2
      type: InnerProduct
      bottom: h2
      top: p
      param: [{lr_mult: 0.5, decay_mult: 2}, {lr_mult: 1, decay_mult: 0}]
      inner_product_param: {num_output: 2, weight_filler: {type: gaussian, std: 0.5}}
    - {name: loss, type: EuclideanLoss, bottom: [p, y], top: loss}
lr_policy: step
gamma: 0.5
stepsize: 2
max_iter: 100
random_seed: 11
snapshot_after_train: false
"""

RULES = {
    "SGD": "type: SGD\nbase_lr: 0.1\nmomentum: 0.9\n",
    "Nesterov": "type: Nesterov\nbase_lr: 0.05\nmomentum: 0.9\n",
    "AdaGrad": "type: AdaGrad\nbase_lr: 0.1\ndelta: 1e-6\n",
    "RMSProp": "type: RMSProp\nbase_lr: 0.01\nrms_decay: 0.95\ndelta: 1e-6\n",
    "AdaDelta": "type: AdaDelta\nbase_lr: 1.0\nmomentum: 0.95\ndelta: 1e-6\n",
    "Adam": "type: Adam\nbase_lr: 0.01\nmomentum: 0.9\nmomentum2: 0.999\ndelta: 1e-8\n",
}
OPTIONS = {
    "l2": "weight_decay: 0.01\n",
    "l1": "weight_decay: 0.05\nregularization_type: L1\n",
    "iter2-clip": "weight_decay: 0.01\niter_size: 2\nclip_gradients: 0.05\n",
}


def make(text, fused=True):
    param = parse_message(NET + text, "SolverParameter", "solver.yaml")
    if fused:
        s = caffeish.get_solver(param)
    else:   # the per-parameter path, on blobs of their own
        cls = SOLVER_TYPES[solver_type_name(param)]
        s = type("Unpacked", (cls,), {"fused_rule": None, "_packing_refused": True})(param)
    rng = np.random.default_rng(0)
    s.net.blobs["x"].data[...] = rng.normal(size=(4, 4))
    s.net.blobs["y"].data[...] = rng.normal(size=(4, 2))
    return s


def state(s, diffs=True):
    return ([p.data.copy() for p in s.net.learnable_params]
            + ([p.diff.copy() for p in s.net.learnable_params] if diffs else [])
            + [h.data.copy() for h in s.history_blobs])


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("rule", list(RULES))
def test_fused_update_equals_the_per_parameter_path(rule, option, monkeypatch):
    monkeypatch.setattr(cpu, "FUSED_CHUNK", 5)   # several chunks per parameter
    text = RULES[rule] + OPTIONS[option]
    fused, plain = make(text), make(text, fused=False)
    calls = []
    real = cpu.fused_update
    monkeypatch.setattr(cpu, "fused_update", lambda *a: (calls.append(1), real(*a)))
    for _ in range(4):
        fused.step(1)
        plain.step(1)
        assert_same(state(fused), state(plain))
    assert len(calls) == 4
    assert plain._packed is None and fused.param_buffers() is not None


def test_parameters_are_slices_of_one_buffer_and_shared_views_follow():
    s = make(RULES["SGD"] + OPTIONS["l2"])
    s.step(1)
    pb = s.param_buffers()
    params = s.net.learnable_params
    assert pb.total == sum(p.count for p in params)
    for p in params:
        assert isinstance(p.data_storage, SyncedSlice) and p.data_storage.parent is pb.data
        assert p.diff_storage.parent is pb.diff
    owner = s.net.params["ip1"][0]
    view = s.net.params["ip_shared"][0]       # PERMISSIVE: same count, another shape
    assert view is not owner and view.shape != owner.shape
    assert view.data_storage is owner.data_storage
    np.testing.assert_array_equal(view.data.reshape(-1), owner.data.reshape(-1))
    lo, hi = pb.offsets[0], pb.offsets[1]
    np.testing.assert_array_equal(pb.data.host()[lo:hi], owner.data.reshape(-1))


def test_arrays_held_from_before_training_see_the_updates():
    """pycaffe scripts keep `w = solver.net.params[...][0].data` and read it after steps."""
    s = make(RULES["SGD"] + OPTIONS["l2"])
    w = s.net.params["ip2"][0].data
    d = s.net.params["ip2"][0].diff
    first = w.copy()
    s.step(2)
    assert not np.array_equal(w, first)
    np.testing.assert_array_equal(w, s.net.params["ip2"][0].data)
    np.testing.assert_array_equal(d, s.net.params["ip2"][0].diff)


def test_writes_into_a_parameter_between_steps_are_used():
    text = RULES["SGD"] + OPTIONS["l2"]
    fused, plain = make(text), make(text, fused=False)
    for s in (fused, plain):
        s.step(2)
        s.net.params["ip2"][0].data[...] = 0.25
        s.net.params["ip1"][1].diff[...] = 7.0   # cleared at the next iteration's start
        s.history_blobs[0].data[...] *= 0.5
        s.step(2)
    assert_same(state(fused), state(plain))
    assert not np.all(fused.net.params["ip2"][0].data == 0.25)


def test_a_blob_given_new_storage_is_packed_again():
    text = RULES["Adam"] + OPTIONS["l2"]
    fused, plain = make(text), make(text, fused=False)
    fused.step(1)
    plain.step(1)
    first = fused.param_buffers()
    for s in (fused, plain):
        w = s.net.params["ip2"][0]
        w.set_data_array(w.data.copy() * 0.5)   # the blob leaves the buffer
    assert not first.intact()
    fused.step(2)
    plain.step(2)
    assert fused.param_buffers() is not first and fused.param_buffers().intact()
    assert_same(state(fused), state(plain))


def test_a_subclass_with_its_own_update_takes_the_per_parameter_path(monkeypatch):
    class Halved(SGDSolver):
        def compute_update_value(self, i, rate):
            super().compute_update_value(i, rate * 0.5)

    param = parse_message(NET + RULES["SGD"], "SolverParameter", "solver.yaml")
    s = Halved(param)
    assert s._fused_rule() is None
    ref = make("type: SGD\nbase_lr: 0.05\nmomentum: 0.9\n")
    s.net.blobs["x"].data[...] = ref.net.blobs["x"].data
    s.net.blobs["y"].data[...] = ref.net.blobs["y"].data
    monkeypatch.setattr(cpu, "fused_update", lambda *a: pytest.fail("fused path taken"))
    monkeypatch.setattr(ref, "fused_rule", None)
    s.step(3)
    ref.step(3)
    for a, b in zip(s.net.learnable_params, ref.net.learnable_params):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-6)


def test_buffers_refuse_mixed_dtypes():
    a = caffeish.Blob((3,), np.float32)
    b = caffeish.Blob((2,), np.float64)
    with pytest.raises(ValueError, match="dtypes"):
        ParamBuffers([a, b], [(1, 1), (1, 1)], [[caffeish.Blob((3,)), caffeish.Blob((2,))]], [])


@pytest.mark.cuda
@pytest.mark.parametrize("rule", list(RULES))
def test_fused_update_on_the_gpu_equals_the_cpu(rule, monkeypatch):
    """The CUDA kernel against the CPU one on the same packed arrays (several chunks, L2 and
    L1, iter_size scaling)."""
    from caffeish.backend import cuda
    monkeypatch.setattr(cuda, "FUSED_CHUNK", 6)
    monkeypatch.setattr(cpu, "FUSED_CHUNK", 6)
    rng = np.random.default_rng(5)
    sizes = [13, 4, 9]
    blobs = [caffeish.Blob((n,)) for n in sizes]
    for b in blobs:
        b.data[...] = rng.normal(size=b.count)
        b.data[0] = 0.0
        b.diff[...] = rng.normal(size=b.count)
    hist = [[caffeish.Blob((n,)) for n in sizes] for _ in range(2)]
    for hs in hist:
        for h in hs:
            h.data[...] = np.abs(rng.normal(size=h.count))
    pb = ParamBuffers(blobs, [(1, 1), (2, 0), (0.5, 2)], hist, [])
    code = cpu.FUSED_RULES[rule]
    for l1 in (False, True):
        want = [a.copy() for a in pb.arrays(cpu)]
        cpu.fused_update(code, *want, *pb.meta(cpu), 0.01, 0.02, l1, 0.5, 0.9, 0.999, 1e-6,
                         0.3)
        backend.set_mode_gpu()
        try:
            be = backend.get_backend()
            got = [be.to_device(a) for a in pb.arrays(cpu)]
            be.fused_update(code, *got, *pb.meta(be), 0.01, 0.02, l1, 0.5, 0.9, 0.999, 1e-6,
                            0.3)
            for g, w in zip(got, want):
                np.testing.assert_allclose(be.to_host(g), w, rtol=2e-6, atol=1e-7,
                                           err_msg=f"{rule} l1={l1}")
        finally:
            backend.set_mode_cpu()


@pytest.mark.parametrize("seed", range(4))
def test_random_sessions_match_an_unpacked_solver(seed, tmp_path):
    """Random interleavings of what scripts do between steps (writes into weights, diffs and
    history, a blob given new storage, snapshot and restore into a new solver) leave the packed
    solver bit for bit where an unpacked one is."""
    rng = np.random.default_rng(seed)
    rule = list(RULES)[seed % len(RULES)]
    text = RULES[rule] + list(OPTIONS.values())[seed % len(OPTIONS)] + \
        f"snapshot_prefix: {tmp_path}/s{seed}\n"
    fused, plain = make(text), make(text, fused=False)
    for _ in range(8):
        action = rng.integers(5)
        k = int(rng.integers(len(fused.net.learnable_params)))
        if action == 0:
            n = int(rng.integers(1, 3))
            fused.step(n)
            plain.step(n)
        elif action == 1:
            v = float(rng.normal())
            for s in (fused, plain):
                s.net.learnable_params[k].data[...] += v
        elif action == 2:
            j = int(rng.integers(len(fused.history_blobs)))
            for s in (fused, plain):
                s.history_blobs[j].data[...] *= 0.5
        elif action == 3:
            for s in (fused, plain):
                p = s.net.learnable_params[k]
                p.set_data_array(p.data.copy())
        else:
            _, state_path = fused.snapshot()
            resumed = make(text)
            resumed.restore(state_path)
            assert_same(state(resumed, diffs=False), state(fused, diffs=False))
            fused = resumed
        assert_same(state(fused, diffs=action == 0), state(plain, diffs=action == 0))
