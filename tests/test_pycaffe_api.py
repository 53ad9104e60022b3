"""The pycaffe-style Python API (get_solver, solver.step/solve/restore, net.forward(start, end),
blobs/params views), NetState stages/levels from the CLI, and debug_info logging."""
import logging
import re

import numpy as np
import pytest
from click.testing import CliRunner

import caffeish
from caffeish.cli import main
from caffeish.config.yaml_loader import parse_message
from caffeish.log import logger

NET = """\
name: api
layer:
  - name: data
    type: DummyData
    top: [x, y]
    dummy_data_param:
      shape: [{dim: [6, 4]}, {dim: [6, 2]}]
      data_filler: [{type: gaussian, std: 1.0}, {type: uniform, min: -1, max: 1}]
    include: {phase: TRAIN}
  - {name: input, type: Input, top: [x, y], input_param: {shape: [{dim: [6, 4]}, {dim: [6, 2]}]},
     include: {phase: TEST}}
  - name: ip1
    type: InnerProduct
    bottom: x
    top: h
    inner_product_param: {num_output: 5, weight_filler: {type: gaussian, std: 0.5},
                          bias_filler: {type: constant, value: 0.1}}
  - {name: relu, type: ReLU, bottom: h, top: h}
  - name: ip2
    type: InnerProduct
    bottom: h
    top: p
    inner_product_param: {num_output: 2, weight_filler: {type: gaussian, std: 0.5}}
  - {name: loss, type: EuclideanLoss, bottom: [p, y], top: loss}
  - name: extra
    type: EuclideanLoss
    bottom: [p, y]
    top: extra
    loss_weight: 0
    include: {stage: big, min_level: 2}
"""

SOLVER = """\
net: net.yaml
test_iter: 2
test_interval: 5
base_lr: 0.05
momentum: 0.9
lr_policy: fixed
display: 5
max_iter: 10
snapshot: 5
snapshot_prefix: snap/api
random_seed: 11
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "solver.yaml").write_text(SOLVER)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_get_solver_step_solve_restore(workdir):
    solver = caffeish.get_solver("solver.yaml")
    assert isinstance(solver, caffeish.Solver) and solver.type == "SGD"
    assert solver.iter == 0
    assert isinstance(solver.net, caffeish.Net) and solver.net.phase == "TRAIN"
    assert len(solver.test_nets) == 1 and solver.test_nets[0].phase == "TEST"
    # the test net reads the train net's weights (same arrays)
    assert solver.test_nets[0].params["ip1"][0] is solver.net.params["ip1"][0]
    w0 = solver.net.params["ip1"][0].data.copy()
    solver.step(3)
    assert solver.iter == 3
    assert not np.array_equal(solver.net.params["ip1"][0].data, w0)
    solver.solve()
    assert solver.iter == 10
    final = [p.data.copy() for p in solver.net.learnable_params]
    assert (workdir / "snap/api_iter_5.solverstate").exists()

    other = caffeish.get_solver("solver.yaml")
    other.restore("snap/api_iter_5.solverstate")
    assert other.iter == 5
    other.step(5)
    for a, b in zip(final, other.net.learnable_params):
        np.testing.assert_array_equal(a, b.data)


def test_net_inputs_outputs_layer_dict_and_partial_forward(workdir):
    net = caffeish.Net("net.yaml", caffeish.TEST, seed=3)
    assert net.inputs == ["x", "y"]
    assert net.outputs == ["loss"]
    assert list(net.layer_dict) == ["input", "ip1", "relu", "ip2", "loss"]  # no stage 'big'
    assert net.layer_dict["ip1"].type == "InnerProduct"
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    full = {k: v.copy() for k, v in net.forward(x=x, y=y).items()}
    W1, b1 = (a.data.astype(np.float64) for a in net.params["ip1"])
    W2 = net.params["ip2"][0].data.astype(np.float64)
    h = np.maximum(x @ W1.T + b1, 0)
    p = h @ W2.T + net.params["ip2"][1].data
    assert full["loss"] == pytest.approx(((p - y) ** 2).sum() / 12, rel=1e-5)

    # forward up to a layer returns that layer's tops; from a layer reuses the blobs before it
    part = net.forward(end="relu")
    assert list(part) == ["h"]
    np.testing.assert_allclose(part["h"], h, rtol=1e-5, atol=1e-6)
    net.blobs["h"].data[...] = 0  # ip2 now sees zeros: p = bias
    out = net.forward(start="ip2", blobs=["p"])
    np.testing.assert_allclose(out["p"], np.broadcast_to(net.params["ip2"][1].data, (6, 2)))
    assert set(out) == {"p", "loss"}

    # blobs/params are views: writing into them changes what the net computes
    net.params["ip2"][0].data[...] = 0
    net.params["ip2"][1].data[...] = 0
    out = net.forward(x=x, y=y)
    assert out["loss"] == pytest.approx((y ** 2).sum() / 12, rel=1e-5)
    assert net.blobs["p"].data.shape == (6, 2) and not net.blobs["p"].data.any()


def test_top_and_bottom_names_blob_ids_and_loss_weights_as_pycaffe(workdir):
    net = caffeish.Net("net.yaml", caffeish.TRAIN, stages=["big"], level=2, seed=3)
    assert net._layer_names == ["data", "y_data_1_split", "ip1", "relu", "ip2", "p_ip2_0_split",
                                "loss", "extra"]
    assert net.top_names == {"data": ["x", "y"],
                             "y_data_1_split": ["y_data_1_split_0", "y_data_1_split_1"],
                             "ip1": ["h"], "relu": ["h"], "ip2": ["p"],
                             "p_ip2_0_split": ["p_ip2_0_split_0", "p_ip2_0_split_1"],
                             "loss": ["loss"], "extra": ["extra"]}
    assert list(net.top_names) == net._layer_names                    # ordered like layers
    assert net.bottom_names["loss"] == ["p_ip2_0_split_0", "y_data_1_split_0"]
    assert net.bottom_names["data"] == [] and net.bottom_names["relu"] == ["h"]
    blobs = net._blob_names
    assert blobs == list(net.blobs)
    assert [blobs[i] for i in net._bottom_ids(6)] == ["p_ip2_0_split_0", "y_data_1_split_0"]
    assert [blobs[i] for i in net._top_ids(5)] == ["p_ip2_0_split_0", "p_ip2_0_split_1"]
    w = net.blob_loss_weights
    assert list(w) == blobs
    assert w["loss"] == 1.0 and w["extra"] == 0.0 and w["p"] == 0.0


def test_add_callback_runs_around_every_iteration(workdir):
    solver = caffeish.get_solver("solver.yaml")
    events = []
    W = solver.net.params["ip1"][0]

    def on_start():
        events.append(("start", solver.iter))

    def on_gradients_ready():
        # the gradients are in, the update not yet applied
        events.append(("ready", solver.iter, bool(np.abs(W.diff).sum() > 0),
                       W.data.copy()))

    solver.add_callback(on_start, on_gradients_ready)
    solver.add_callback(on_start=None, on_gradients_ready=lambda: events.append(("second",)))
    before = W.data.copy()
    solver.step(3)
    kinds = [e[0] for e in events]
    assert kinds == ["start", "ready", "second"] * 3
    assert [e[1] for e in events if e[0] == "start"] == [0, 1, 2]
    ready = [e for e in events if e[0] == "ready"]
    assert all(e[2] for e in ready)
    np.testing.assert_array_equal(ready[0][3], before)               # before the first update
    assert not np.array_equal(ready[1][3], before)
    assert solver.lr == pytest.approx(0.05)                           # lr_policy: fixed
    with pytest.raises(TypeError, match="on_start must be callable"):
        solver.add_callback(3)


def test_forward_all_and_forward_backward_all_batch_any_number_of_items(workdir):
    net = caffeish.Net("net.yaml", caffeish.TEST, seed=3)          # batch size 6
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(14, 4)), rng.normal(size=(14, 2))      # 6 + 6 + 2 (padded)
    out = net.forward_all(blobs=["p"], x=x, y=y)
    assert set(out) == {"p", "loss"}
    W1, b1 = (a.data.astype(np.float64) for a in net.params["ip1"])
    W2, b2 = (a.data.astype(np.float64) for a in net.params["ip2"])
    p = np.maximum(x @ W1.T + b1, 0) @ W2.T + b2
    np.testing.assert_allclose(out["p"], p, rtol=1e-5, atol=1e-6)   # one row per item
    assert out["loss"].shape == (3,)                                # a scalar: one per batch
    assert net.blobs["x"].shape == (6, 4)                           # the batch size is kept

    net = caffeish.Net(parse_message("force_backward: true\n" + NET, "NetParameter", "net.yaml"),
                       "TEST", seed=3)
    outs, diffs = net.forward_backward_all(x=x, y=y)
    np.testing.assert_allclose(outs["loss"], out["loss"], rtol=1e-6)
    # EuclideanLoss: d/dy = -(p - y) / n per batch of n = 6; the padded rows are dropped
    assert diffs["y"].shape == (14, 2)
    np.testing.assert_allclose(diffs["y"], -(p - y) / 6, rtol=1e-4, atol=1e-6)
    with pytest.raises(caffeish.ShapeError, match="differ in length"):
        net.forward_all(x=x, y=y[:3])
    with pytest.raises(caffeish.ConfigError, match="neither inputs"):
        net.forward_backward_all(x=x, z=y)


def test_share_with_and_hdf5_weights(workdir):
    pytest.importorskip("h5py", reason="HDF5 weights need h5py (pip install h5py)")
    train = caffeish.Net("net.yaml", caffeish.TRAIN, seed=1)
    test = caffeish.Net("net.yaml", caffeish.TEST, seed=2)
    test.share_with(train)
    assert test.params["ip1"][0] is train.params["ip1"][0]
    train.params["ip1"][0].data[...] = 0.25
    assert (test.params["ip1"][0].data == 0.25).all()
    train.save_hdf5(str(workdir / "w.weights"))                    # any ending
    other = caffeish.Net("net.yaml", caffeish.TEST, seed=5)
    other.load_hdf5(str(workdir / "w.weights"))
    for name in ("ip1", "ip2"):
        for a, b in zip(other.params[name], train.params[name]):
            np.testing.assert_array_equal(a.data, b.data)


def test_set_random_seed_makes_unseeded_nets_repeat(workdir, monkeypatch):
    import caffeish.net
    monkeypatch.setattr(caffeish.net, "_GLOBAL_SEEDS", None)

    def weights():
        a, b = caffeish.Net("net.yaml", caffeish.TRAIN), caffeish.Net("net.yaml", caffeish.TRAIN)
        return [n.params["ip1"][0].data.copy() for n in (a, b)]

    caffeish.set_random_seed(7)
    first = weights()
    caffeish.set_random_seed(7)
    again = weights()
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(first[0], first[1])        # successive nets get their own seeds
    caffeish.set_random_seed(8)
    assert not np.array_equal(weights()[0], first[0])


def test_forward_and_backward_hooks_see_each_layer(workdir):
    net = caffeish.Net("net.yaml", caffeish.TRAIN, seed=3)
    seen = []
    net.before_forward(lambda i: seen.append(("bf", i, net.blobs["p"].data.copy())))
    net.after_forward(lambda i: seen.append(("af", i)))
    net.before_backward(lambda i: seen.append(("bb", i)))
    net.after_backward(lambda i: seen.append(("ab", i)))
    net.forward_backward()
    n = len(net.layers)
    assert [e[:2] for e in seen] == (
        [x for i in range(n) for x in (("bf", i), ("af", i))]
        + [x for i in reversed(range(n)) for x in (("bb", i), ("ab", i))])
    ip2 = net.layer_names.index("ip2")
    # before ip2 ran, p was still unset; after, the next layer's "before" sees it
    assert not seen[2 * ip2][2].any() and seen[2 * ip2 + 2][2].any()
    with pytest.raises(TypeError, match="function of the layer index"):
        net.before_forward(3)


def test_backward_returns_input_diffs_with_force_backward(workdir):
    text = "force_backward: true\n" + NET
    net = caffeish.Net(parse_message(text, "NetParameter", "net.yaml"), "TEST", seed=3)
    rng = np.random.default_rng(1)
    net.forward(x=rng.normal(size=(6, 4)), y=rng.normal(size=(6, 2)))
    diffs = net.backward(diffs=["h"])
    assert set(diffs) == {"h", "x", "y"}
    p, y = net.blobs["p"].data, net.blobs["y"].data
    np.testing.assert_allclose(diffs["y"], -(p - y) / 6, rtol=1e-5, atol=1e-7)
    assert np.abs(diffs["x"]).sum() > 0


def test_stage_and_level_from_the_cli(workdir):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--solver", "solver.yaml", "--stage", "big", "--level",
                             "2", "--log", "big.log"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    log = (workdir / "big.log").read_text()
    assert "Train net output #1: extra" in log and "Test net output #1: extra" in log
    for args in (["--stage", "big"], ["--level", "3"]):
        r = runner.invoke(main, ["train", "--solver", "solver.yaml", *args, "--log", "small.log"],
                          catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert "extra" not in (workdir / "small.log").read_text()


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def captured():
    h = _Capture()
    old_level = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    yield h.lines
    logger.removeHandler(h)
    logger.setLevel(old_level)


def _value(lines, pattern):
    vals = [float(m.group(1)) for line in lines for m in [re.fullmatch(pattern, line)] if m]
    return vals


def test_solver_debug_info_logs_per_layer_magnitudes_at_display_iterations(workdir, captured):
    text = SOLVER.replace("display: 5", "display: 2\ndebug_info: true").replace(
        "test_interval: 5", "test_interval: 100")
    (workdir / "solver.yaml").write_text(text)
    solver = caffeish.get_solver("solver.yaml")
    w0 = float(np.abs(solver.net.params["ip1"][0].data).mean())
    captured.clear()
    solver.step(3)  # iterations 0, 1, 2: 0 and 2 are display iterations
    lines = captured
    fwd_w = _value(lines, r"    \[Forward\] Layer ip1, param blob 0 data: (\S+)")
    assert len(fwd_w) == 2 and fwd_w[0] == pytest.approx(w0, rel=1e-5)
    tops = _value(lines, r"    \[Forward\] Layer ip1, top blob h data: (\S+)")
    assert len(tops) == 2 and tops[0] > 0
    assert len(_value(lines, r"    \[Forward\] Layer loss, top blob loss data: (\S+)")) == 2
    # backward: bottoms that take a gradient, and params; the data blob x takes none
    assert _value(lines, r"    \[Backward\] Layer ip2, bottom blob h diff: (\S+)")
    assert _value(lines, r"    \[Backward\] Layer ip1, param blob 1 diff: (\S+)")
    assert not [s for s in lines if "bottom blob x diff" in s]
    assert len(_value(lines, r"    \[Backward\] All net params \(data, diff\): L1 norm = "
                             r"\((\S+), \S+\); L2 norm = \(\S+, \S+\)")) == 2
    upd = [re.fullmatch(r"    \[Update\] Layer ip2, param 0 data: (\S+); diff: (\S+)", s)
           for s in lines]
    upd = [m for m in upd if m]
    assert len(upd) == 2 and float(upd[0].group(2)) > 0
    # after the run, the net is quiet again
    captured.clear()
    solver.net.forward()
    assert not [s for s in captured if "[Forward]" in s]


def test_net_debug_info_and_shared_param_update_lines(captured):
    text = """\
debug_info: true
layer:
  - {name: in, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}
  - {name: a, type: InnerProduct, bottom: x, top: a, param: [{name: w}, {lr_mult: 0}],
     inner_product_param: {num_output: 3, weight_filler: {type: constant, value: 0.5}}}
  - {name: b, type: InnerProduct, bottom: a, top: b, param: {name: w},
     inner_product_param: {num_output: 3, bias_term: false}}
  - {name: loss, type: EuclideanLoss, bottom: [b, x], top: loss}
"""
    net = caffeish.Net(parse_message(text, "NetParameter", "n.yaml"), "TRAIN")
    net.forward(x=np.full((2, 3), -2.0))
    assert "    [Forward] Input x data: 2" in captured
    assert "    [Forward] Layer a, top blob a data: 3" in captured  # 3 * 0.5 * 2, abs
    assert "    [Forward] Layer a, param blob w data: 0.5" in captured
    assert "    [Forward] Layer a, param blob 1 data: 0" in captured
    captured.clear()
    net.backward()
    assert any(s.startswith("    [Backward] Layer b, bottom blob a diff: ") for s in captured)
    assert any(s.startswith("    [Backward] Layer a, param blob 0 diff: ") for s in captured)
    assert not any(s.startswith("    [Backward] Layer a, param blob 1 diff") for s in captured)
    captured.clear()
    net.update_debug_info()
    assert captured[0].startswith("    [Update] Layer b, param blob w (owned by layer a, param w) "
                                  "diff: ")
    assert captured[1].startswith("    [Update] Layer a, param w data: 0.5; diff: ")


def test_pycaffe_spellings(tmp_path):
    """Net(model, weights, phase) order, net.reshape(), Blob.reshape(*dims), legacy 4-D accessors,
    and solver classes built from a path."""
    import caffeish
    net_yaml = tmp_path / "n.yaml"
    net_yaml.write_text(
        "layer:\n"
        "  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}\n"
        "  - {name: ip, type: InnerProduct, bottom: x, top: y, inner_product_param: {num_output: 4,"
        " weight_filler: {type: gaussian}}}\n")
    a = caffeish.Net(str(net_yaml), caffeish.TEST)
    a.save(str(tmp_path / "w.caffemodel"))
    b = caffeish.Net(str(net_yaml), str(tmp_path / "w.caffemodel"), caffeish.TEST)
    assert b.phase == "TEST"
    import numpy as np
    np.testing.assert_array_equal(a.params["ip"][0].data, b.params["ip"][0].data)
    b.blobs["x"].reshape(5, 3)
    x = b.blobs["x"]
    assert (x.num, x.channels, x.height, x.width) == (5, 3, 1, 1)  # Caffe's LegacyShape
    b.reshape()
    assert b.blobs["y"].shape == (5, 4)
    (tmp_path / "s.yaml").write_text(f"net: {net_yaml.name}\nbase_lr: 0.1\nlr_policy: fixed\n"
                                     f"type: Adam\n")
    s = caffeish.AdamSolver(str(tmp_path / "s.yaml"))
    assert s.type == "Adam" and s.net.name == ""
