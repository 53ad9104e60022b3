"""``caffeish gradcheck``: a layer from a net or from a spec, user Python layers, failures."""
import re
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from caffeish.commands.gradcheck import gradcheck_cmd

NET = """\
name: small
layer:
  - {name: data, type: Input, top: [x, label], input_param: {shape: [{dim: [2, 2, 5, 5]},
                                                                      {dim: [2]}]}}
  - name: conv1
    type: Convolution
    bottom: x
    top: c
    convolution_param: {num_output: 3, kernel_size: 3, pad: 1,
                        weight_filler: {type: gaussian, std: 0.3},
                        bias_filler: {type: gaussian, std: 0.3}}
  - {name: relu1, type: ReLU, bottom: c, top: c}
  - name: ip
    type: InnerProduct
    bottom: c
    top: score
    inner_product_param: {num_output: 4, weight_filler: {type: xavier},
                          bias_filler: {type: constant, value: 0.1}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [score, label], top: loss}
"""

USER_LAYERS = '''\
import numpy as np
from caffeish.layers.python_layer import PythonLayer


class Cube(PythonLayer):
    """top = bottom^3 * w, w a learnable per-channel scale."""

    def setup(self, bottom, top):
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = np.linspace(0.5, 1.5, bottom[0].channels)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data ** 3 * self.blobs[0].data[None, :, None, None]

    def backward(self, top, propagate_down, bottom):
        w = self.blobs[0].data[None, :, None, None]
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data ** 3).sum(axis=(0, 2, 3))
        if propagate_down[0]:
            bottom[0].diff[...] = FACTOR * 3 * bottom[0].data ** 2 * w * top[0].diff
'''


def run(*args):
    return CliRunner().invoke(gradcheck_cmd, [str(a) for a in args])


def rows(output):
    """{'bottom[0]': (error, 'PASS'), ...} from the report."""
    return {m.group(1): (float(m.group(2)), m.group(3)) for m in re.finditer(
        r"^  (\w+\[\d+\]).*worst relative error (\S+)\s+(PASS|FAIL)$", output, re.M)}


@pytest.mark.parametrize("layer,expect", [
    ("conv1", {"bottom[0]", "param[0]", "param[1]"}),
    ("ip", {"bottom[0]", "param[0]", "param[1]"}),
    ("loss", {"bottom[0]"}),  # the labels take no gradient
], ids=["conv", "ip", "loss-skips-labels"])
def test_layer_of_a_net_passes(tmp_path, layer, expect):
    (tmp_path / "net.yaml").write_text(NET)
    np.save(tmp_path / "labels.npy", np.array([1.0, 3.0]))
    r = run("--model", tmp_path / "net.yaml", "--layer", layer, "--input",
            f"label={tmp_path / 'labels.npy'}")
    assert r.exit_code == 0, r.output
    got = rows(r.output)
    assert set(got) == expect
    assert all(v[1] == "PASS" and v[0] < 1e-6 for v in got.values()), r.output
    assert f"layer '{layer}'" in r.output and r.output.rstrip().endswith("PASS")


def test_in_place_layer_is_checked_on_its_input(tmp_path):
    (tmp_path / "net.yaml").write_text(NET)
    r = run("--model", tmp_path / "net.yaml", "--layer", "relu1", "--kink", 0,
            "--kink-range", 1e-2)
    assert r.exit_code == 0, r.output
    assert rows(r.output)["bottom[0]"][1] == "PASS"


def test_spec_with_shape():
    r = run("--spec", r"type: ReLU\nrelu_param: {negative_slope: 0.1}", "--shape", "2,3,4,4")
    assert r.exit_code == 0, r.output
    assert "layer 'relu' (ReLU)" in r.output and "2x3x4x4" in r.output
    assert rows(r.output)["bottom[0]"][1] == "PASS"


def test_spec_with_labels_from_a_file(tmp_path):
    np.save(tmp_path / "l.npy", np.array([0.0, 4.0, 2.0, 1.0]))
    r = run("--spec", "{type: SoftmaxWithLoss}", "--shape", "4,5", "--input",
            f"1={tmp_path / 'l.npy'}")
    assert r.exit_code == 0, r.output
    assert set(rows(r.output)) == {"bottom[0]"}


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    name = "gc_user_" + re.sub(r"\W", "_", request.node.name)

    def write(factor):
        (tmp_path / f"{name}.py").write_text(USER_LAYERS.replace("FACTOR", str(factor)))
        sys.modules.pop(name, None)
        return name
    monkeypatch.chdir(tmp_path)
    yield write
    sys.modules.pop(name, None)


def test_user_python_layer_passes(user_module):
    name = user_module(1)
    r = run("--spec", f"{{type: Python, python_param: {{module: {name}, layer: Cube}}}}",
            "--shape", "2,3,2,2")
    assert r.exit_code == 0, r.output
    got = rows(r.output)
    assert set(got) == {"bottom[0]", "param[0]"} and got["param[0]"][1] == "PASS"


def test_wrong_backward_fails_with_exit_1(user_module, tmp_path):
    name = user_module(1.1)
    (tmp_path / "net.yaml").write_text(textwrap.dedent(f"""\
        layer:
          - {{name: in, type: Input, top: x, input_param: {{shape: {{dim: [2, 3, 2, 2]}}}}}}
          - {{name: cube, type: Python, bottom: x, top: y,
             python_param: {{module: {name}, layer: Cube}}}}
        """))
    r = run("--model", tmp_path / "net.yaml", "--layer", "cube")
    assert r.exit_code == 1, r.output
    got = rows(r.output)
    assert got["bottom[0]"][1] == "FAIL" and got["bottom[0]"][0] > 1e-2
    assert got["param[0]"][1] == "PASS"
    assert "FAIL: 1 of 2 blob(s) above the threshold" in r.output


@pytest.mark.parametrize("args,code,match", [
    (["--layer", "ip"], 2, r"give either --model NET --layer NAME, or --spec"),
    (["--model", "NET", "--layer", "ipp"], 2, r"no layer named 'ipp' in the TRAIN net \(did you "
                                             r"mean 'ip'\?\)"),
    (["--model", "NET", "--layer", "data"], 2, r"nothing to check"),
    (["--spec", "{type: ReLUU}", "--shape", "2"], 2, r"unknown layer type 'ReLUU' \(did you mean "
                                                    r"'ReLU'\?\)"),
    (["--spec", "{type: ReLU}", "--shape", "2,a"], 2, r"--shape '2,a': give comma-separated"),
    (["--model", "NET", "--layer", "ip", "--input", "nope=x.npy"], 2, r"file 'x.npy' not found"),
], ids=["no-source", "unknown-layer", "data-layer", "unknown-type", "bad-shape", "missing-input"])
def test_usage_and_config_errors(tmp_path, args, code, match):
    (tmp_path / "net.yaml").write_text(NET)
    r = run(*[str(tmp_path / "net.yaml") if a == "NET" else a for a in args])
    assert r.exit_code == code, r.output
    assert re.search(match, r.output), r.output
    assert "Traceback" not in r.output
