"""``type: Python`` layers (pycaffe-style user classes) and ``caffeish.layers`` plugins."""
import re
import sys
import textwrap
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import caffeish
from caffeish.cli import main
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import CaffeishError, ConfigError
from caffeish.layers import LAYER_REGISTRY, load_plugins
from caffeish.layers.python_layer import PythonLayer, PythonLayerError
from caffeish.testing import blobs_from, check_gradient, make_layer, setup_layer

# A data layer, a learnable scalar multiply (pycaffe-style subclass with add_blob) and a
# Euclidean loss written without any base class, as Caffe users write them.
USER_LAYERS = '''\
import numpy as np
from caffeish.layers.python_layer import PythonLayer


class LinearData(PythonLayer):
    """x ~ N(0, 1) of shape (batch, 4); y = 3 x."""

    def setup(self, bottom, top):
        params = dict(kv.split("=") for kv in self.param_str.split(";"))
        self.batch = int(params["batch"])
        self.rng = np.random.default_rng(int(params["seed"]))
        if len(bottom) != 0 or len(top) != 2:
            raise Exception("LinearData: no bottoms, two tops")

    def reshape(self, bottom, top):
        top[0].reshape(self.batch, 4)
        top[1].reshape((self.batch, 4))

    def forward(self, bottom, top):
        x = self.rng.normal(size=(self.batch, 4))
        top[0].data[...] = x
        top[1].data[...] = 3.0 * x


class LearnedScale(PythonLayer):
    """top = w * bottom with one learnable scalar w (initial value from param_str)."""

    def setup(self, bottom, top):
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = float(self.param_str or 0.5)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[0] += np.sum(top[0].diff * bottom[0].data)
        if propagate_down[0]:
            bottom[0].diff[...] = self.blobs[0].data[0] * top[0].diff


class EuclideanPy:
    """loss = sum((a - b)^2) / (2 num); no base class (duck typing)."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.d = np.zeros_like(bottom[0].data)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.d[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.d ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if propagate_down[i]:
                sign = 1 if i == 0 else -1
                bottom[i].diff[...] = sign * self.d / bottom[i].num * top[0].diff[0]
'''

NET = """\
name: pynet
layer:
  - name: data
    type: Python
    top: [x, y]
    python_param: {module: MODULE, layer: LinearData, param_str: "batch=8;seed=3"}
  - name: scale
    type: Python
    bottom: x
    top: p
    python_param: {module: MODULE, layer: LearnedScale, param_str: "0.5"}
  - name: loss
    type: Python
    bottom: [p, y]
    top: loss
    loss_weight: 1
    python_param: {module: MODULE, layer: EuclideanPy}
"""

SOLVER = """\
net: net.yaml
base_lr: 0.05
momentum: 0.5
lr_policy: fixed
display: 5
max_iter: 40
snapshot: 40
snapshot_prefix: snap/py
random_seed: 1
"""


@pytest.fixture
def user_dir(tmp_path, request):
    """A folder holding a uniquely named user module and a net using it (module names are cached
    in sys.modules, so each test gets its own)."""
    name = "user_layers_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(USER_LAYERS)
    (tmp_path / "net.yaml").write_text(NET.replace("MODULE", name))
    (tmp_path / "solver.yaml").write_text(SOLVER)
    yield tmp_path, name
    sys.modules.pop(name, None)


def read_losses(log):
    return [float(v) for v in re.findall(r"Iteration \d+(?: \([^)]*\))?, loss = ([\d.e+-]+)", log)]


def test_python_layers_train_from_the_cli(user_dir, monkeypatch):
    tmp, _ = user_dir
    sub = tmp / "elsewhere"
    sub.mkdir()
    monkeypatch.chdir(sub)  # the module is found beside the net file, not via the cwd
    r = CliRunner().invoke(main, ["train", "--solver", str(tmp / "solver.yaml"),
                                  "--log", "train.log"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    losses = read_losses((sub / "train.log").read_text())
    assert len(losses) >= 8
    assert losses[-1] < 0.01 * losses[0], losses
    # the learned scalar is a parameter blob of the caffemodel: w -> 3
    net = caffeish.Net(str(tmp / "net.yaml"), phase="TRAIN",
                       weights=str(sub / "snap/py_iter_40.caffemodel"))
    assert net.params["scale"][0].data[0] == pytest.approx(3.0, abs=0.05)
    assert net.params["scale"][0].data.dtype == np.float32


def test_error_in_user_forward_names_layer_file_and_line(user_dir, monkeypatch):
    tmp, name = user_dir
    src = USER_LAYERS.replace(
        "        top[0].data[...] = self.blobs[0].data[0] * bottom[0].data\n",
        "        raise ValueError('scale went wrong')\n")
    (tmp / f"{name}.py").write_text(src)
    line = src.splitlines().index("        raise ValueError('scale went wrong')") + 1
    monkeypatch.chdir(tmp)
    r = CliRunner().invoke(main, ["train", "--solver", "solver.yaml"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert "layer 'scale' (Python" in r.output
    assert "forward() raised ValueError: scale went wrong" in r.output
    assert f"{name}.py:{line}, in forward" in r.output
    assert re.search(r"net\.yaml:\d+:", r.output)


def test_error_in_user_setup_at_net_construction(user_dir):
    tmp, name = user_dir
    text = (tmp / "net.yaml").read_text().replace("bottom: [p, y]", "bottom: [p]")
    with pytest.raises(PythonLayerError, match=r"layer 'loss' \(Python .*EuclideanPy\): setup\(\) "
                                               r"raised Exception: Need two inputs"):
        caffeish.Net(parse_message(text, "NetParameter", str(tmp / "net.yaml")), phase="TRAIN")


def test_syntax_error_in_user_module_points_at_it(tmp_path):
    (tmp_path / "broken_syntax_mod.py").write_text("import numpy\n\ndef f(:\n    pass\n")
    text = NET.replace("MODULE", "broken_syntax_mod")
    with pytest.raises(PythonLayerError, match=r"(?s)importing module 'broken_syntax_mod' failed: "
                                               r"SyntaxError: .*broken_syntax_mod.py:3"):
        caffeish.Net(parse_message(text, "NetParameter", str(tmp_path / "net.yaml")))
    sys.modules.pop("broken_syntax_mod", None)


def test_missing_module_and_class_suggest_close_names(user_dir):
    tmp, name = user_dir
    text = (tmp / "net.yaml").read_text()
    bad = text.replace(f"module: {name}, layer: LearnedScale", f"module: {name}x, layer: "
                                                                 f"LearnedScale")
    with pytest.raises(ConfigError, match=rf"net.yaml:\d+: layer 'scale' \(Python {name}x."
                                          rf"LearnedScale\): python module '{name}x' not found "
                                          rf"\(did you mean '{name}'\?\)"):
        caffeish.Net(parse_message(bad, "NetParameter", str(tmp / "net.yaml")))
    bad = text.replace("layer: LearnedScale", "layer: LearnedScal")
    with pytest.raises(ConfigError, match=r"(?s)has no class 'LearnedScal' \(did you mean "
                                          r"'LearnedScale'\?\); it defines .*EuclideanPy"):
        caffeish.Net(parse_message(bad, "NetParameter", str(tmp / "net.yaml")))
    bad = text.replace(f"python_param: {{module: {name}, layer: EuclideanPy}}",
                       "python_param: {layer: EuclideanPy}")
    with pytest.raises(ConfigError, match=r"python_param.module is not set"):
        caffeish.Net(parse_message(bad, "NetParameter", str(tmp / "net.yaml")))


def test_python_layer_gradient_check_and_blob_surface(user_dir, monkeypatch):
    tmp, name = user_dir
    monkeypatch.chdir(tmp)  # the harness's specs have no file: the cwd is searched
    rng = np.random.default_rng(0)
    spec = {"type": "Python", "python_param": {"module": name, "layer": "LearnedScale",
                                               "param_str": "1.5"}}
    check_gradient(*_built(spec, [rng.normal(size=(2, 3, 4))]))
    spec = {"type": "Python", "python_param": {"module": name, "layer": "EuclideanPy"}}
    layer, bottom, top = _built(spec, [rng.normal(size=(3, 5)), rng.normal(size=(3, 5))])
    check_gradient(layer, bottom, top)
    layer.forward(bottom, top)
    d = bottom[0].data - bottom[1].data
    assert top[0].data[0] == pytest.approx(np.sum(d ** 2) / 3 / 2)
    # float64 run: the user's blobs follow the net's dtype
    layer, _, _ = _built({"type": "Python", "python_param": {"module": name,
                                                             "layer": "LearnedScale"}},
                         [np.ones((2, 2))])
    assert layer.blobs[0].dtype == np.float64 and layer.py.blobs is layer.blobs
    assert layer.blobs[0].reshape(1, 1).shape == (1, 1)  # pycaffe's reshape(*shape)
    assert layer.py.phase == caffeish.TRAIN and layer.py.param_str == ""


def _built(spec, arrays):
    layer = make_layer(spec)
    bottom = blobs_from(arrays)
    top = setup_layer(layer, bottom, n_tops=1)
    return layer, bottom, top


def test_missing_backward_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "nobwd_mod.py").write_text(textwrap.dedent('''\
        from caffeish.layers.python_layer import PythonLayer

        class Twice(PythonLayer):
            def reshape(self, bottom, top):
                top[0].reshape(*bottom[0].shape)

            def forward(self, bottom, top):
                top[0].data[...] = 2 * bottom[0].data
        '''))
    monkeypatch.chdir(tmp_path)
    layer = make_layer({"type": "Python", "python_param": {"module": "nobwd_mod",
                                                           "layer": "Twice"}})
    bottom = blobs_from([np.ones((2, 3))])
    top = setup_layer(layer, bottom, n_tops=1)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, 2 * np.ones((2, 3)))
    layer.backward(top, [False], bottom)  # nothing needed: fine
    with pytest.raises(ConfigError, match=r"'nobwd_mod.Twice' defines no backward"):
        layer.backward(top, [True], bottom)
    sys.modules.pop("nobwd_mod", None)


def test_test_net_shares_the_python_layers_parameters(user_dir):
    tmp, name = user_dir
    text = SOLVER.replace("net: net.yaml", "net: net.yaml\ntest_iter: 1\ntest_interval: 100")
    (tmp / "solver.yaml").write_text(text)
    s = caffeish.get_solver(str(tmp / "solver.yaml"))
    s.step(5)
    test_layer = s.test_nets[0].layer_dict["scale"]
    train_layer = s.net.layer_dict["scale"]
    assert test_layer.py.blobs[0] is train_layer.py.blobs[0]
    assert test_layer.py.phase == "TEST" and train_layer.py.phase == "TRAIN"
    assert train_layer.blobs[0].data[0] != pytest.approx(0.5)


# --- entry point plugins ------------------------------------------------------------------------
def _fake_distribution(root, entry_points):
    dist = root / "caffeish_fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: caffeish-fake-plugin\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[caffeish.layers]\n" + entry_points)


def test_entry_point_plugins_register_layers_and_broken_ones_warn(tmp_path, monkeypatch):
    (tmp_path / "fake_plugin_mod.py").write_text(textwrap.dedent('''\
        from caffeish.layers import Layer, register_layer

        @register_layer("FakeDoubleViaModule")
        class DoubleA(Layer):
            exact_bottoms = 1
            exact_tops = 1

            def reshape(self, bottom, top):
                top[0].reshape(bottom[0].shape)

            def forward(self, bottom, top):
                top[0].data[...] = 2 * bottom[0].data


        class DoubleB(DoubleA):
            pass
        '''))
    _fake_distribution(tmp_path, "fake_mod = fake_plugin_mod\n"
                                 "FakeDoubleViaClass = fake_plugin_mod:DoubleB\n"
                                 "fake_broken = fake_plugin_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.warns(RuntimeWarning, match=r"layer plugin 'fake_broken' "
                                                r"\(fake_plugin_missing_module\).*could not be "
                                                r"loaded: ModuleNotFoundError"):
            loaded = load_plugins()
        assert {"fake_mod", "FakeDoubleViaClass"} <= set(loaded)
        assert "fake_broken" not in loaded
        net = caffeish.Net(parse_message(
            "layer:\n  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2]}}}\n"
            "  - {name: a, type: FakeDoubleViaModule, bottom: x, top: a}\n"
            "  - {name: b, type: FakeDoubleViaClass, bottom: a, top: b}\n",
            "NetParameter", "plugin.yaml"))
        out = net.forward(x=np.array([1.0, -2.0]))
        np.testing.assert_array_equal(out["b"], [4.0, -8.0])
        with warnings.catch_warnings():  # loading again is harmless (already registered)
            warnings.simplefilter("ignore")
            load_plugins()
    finally:
        LAYER_REGISTRY.pop("FakeDoubleViaModule", None)
        LAYER_REGISTRY.pop("FakeDoubleViaClass", None)
        sys.modules.pop("fake_plugin_mod", None)


def test_python_layer_base_is_the_pycaffe_layer():
    assert PythonLayer.type == "Python"
    layer = PythonLayer()
    assert layer.param_str == "" and layer.phase == "TRAIN" and list(layer.blobs) == []
    assert layer.blobs.add_blob(2, 3).shape == (2, 3) and layer.blobs[0].num == 2
    with pytest.raises(NotImplementedError):
        PythonLayer().forward([], [])
    assert isinstance(PythonLayerError("x"), CaffeishError)
