"""`caffeish import` / `caffeish export`, invoked through click's CliRunner."""
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import caffeish.config  # noqa: F401
from caffeish.commands.interop import export_cmd, import_cmd
from caffeish.config.yaml_loader import load_message
from caffeish.io.prototxt import parse_prototxt, parse_prototxt_file
from caffeish.io.upgrade import upgrade_net

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY = SHARED / "caffe_vectors" / "tiny_net_a"

DEPLOY = '''name: "Small"
input: "data"
input_shape { dim: 1 dim: 1 dim: 8 dim: 8 }
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
'''

V1_NET = '''name: "Old"
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
         blobs_lr: 1 blobs_lr: 2 convolution_param { num_output: 2 kernel_size: 1 } }
'''

SOLVER = '''# the usual Caffe solver
net: "train_val.prototxt"
test_iter: 10
test_interval: 100
base_lr: 0.01
lr_policy: "step"
stepsize: 1000
gamma: 0.1
solver_type: NESTEROV
momentum: 0.9
snapshot_prefix: "snap/small"
solver_mode: CPU
'''


@pytest.fixture
def runner():
    return CliRunner()


def _write(path, text):
    path.write_text(text)
    return path


def test_import_net(runner, tmp_path):
    src = _write(tmp_path / "deploy.prototxt", DEPLOY)
    out = tmp_path / "deploy.yaml"
    res = runner.invoke(import_cmd, [str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out} (NetParameter, 3 layers)" in res.output
    assert "converted the legacy input fields into an Input layer" in res.output
    loaded = load_message(out, "NetParameter")
    expected, _ = upgrade_net(parse_prototxt_file(src, "NetParameter"))
    assert loaded == expected
    assert [lp.type for lp in loaded.layer] == ["Input", "Convolution", "ReLU"]
    assert out.read_text().startswith("# NetParameter imported from deploy.prototxt")
    assert not list(tmp_path.glob("*.tmp-*"))


def test_import_default_output_and_stdout(runner, tmp_path):
    src = _write(tmp_path / "deploy.prototxt", DEPLOY)
    res = runner.invoke(import_cmd, [str(src)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "deploy.yaml").is_file()
    res = runner.invoke(import_cmd, [str(src), "-o", "-"])
    assert res.exit_code == 0
    assert "name: Small" in res.stdout and "type: Input" in res.stdout


def test_import_reports_every_unsupported_layer(runner, tmp_path):
    text = '''name: "Mixed"
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" }
layer { name: "x1" type: "MadeUpLayerOne" bottom: "conv" top: "x1" }
layer {
  name: "x2"
  type: "MadeUpLayerTwo"
}
layer { name: "x3" type: "MadeUpLayerOne" }
'''
    src = _write(tmp_path / "mixed.prototxt", text)
    out = tmp_path / "mixed.yaml"
    res = runner.invoke(import_cmd, [str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: 3 layers of types MadeUpLayerOne, MadeUpLayerTwo are not implemented" \
        in res.output
    assert f"  {src}:3: layer 'x1' (MadeUpLayerOne)" in res.output
    assert f"  {src}:6: layer 'x2' (MadeUpLayerTwo)" in res.output
    assert f"  {src}:8: layer 'x3' (MadeUpLayerOne)" in res.output
    assert out.is_file()


def test_import_v1_net_upgrades(runner, tmp_path):
    src = _write(tmp_path / "v1.prototxt", V1_NET)
    out = tmp_path / "v1.yaml"
    res = runner.invoke(import_cmd, [str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "upgraded 1 V1 'layers' entry to 'layer'" in res.output
    net = load_message(out, "NetParameter")
    assert not net.layers
    assert net.layer[0].type == "Convolution"
    assert [p.lr_mult for p in net.layer[0].param] == [1.0, 2.0]


def test_import_solver(runner, tmp_path):
    src = _write(tmp_path / "solver.prototxt", SOLVER)
    _write(tmp_path / "train_val.prototxt", DEPLOY)
    out = tmp_path / "solver.yaml"
    res = runner.invoke(import_cmd, [str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "replaced the deprecated 'solver_type: NESTEROV' with 'type: \"Nesterov\"'" \
        in res.output
    assert "solver net: 'train_val.prototxt' -> 'train_val.yaml'; import that net too: " \
           "caffeish import" in res.output
    s = load_message(out, "SolverParameter")
    assert s.net == "train_val.yaml"
    assert s.type == "Nesterov" and not s.has("solver_type")
    assert (s.base_lr, s.stepsize, s.test_iter, s.solver_mode) == (0.01, 1000, [10], "CPU")
    text = out.read_text()
    assert text.splitlines()[1] == "net: train_val.yaml"  # block style, not one {...} line


def test_import_solver_with_caffe_cwd_relative_net_path(runner, tmp_path, monkeypatch):
    """Caffe reads `net:` from the working directory; caffeish from the solver's folder."""
    models = tmp_path / "models" / "small"
    models.mkdir(parents=True)
    src = _write(models / "solver.prototxt",
                 SOLVER.replace('"train_val.prototxt"', '"models/small/train_val.prototxt"'))
    _write(models / "train_val.prototxt", DEPLOY)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(import_cmd, ["models/small/solver.prototxt", "--kind", "solver"])
    assert res.exit_code == 0, res.output
    s = load_message(models / "solver.yaml", "SolverParameter")
    assert s.net == "train_val.yaml"
    assert "caffeish import models/small/train_val.prototxt -o models/small/train_val.yaml" \
        in res.output
    assert "Caffe read this path from the working directory" in res.output
    assert src.is_file()


def test_import_tiny_net_a(runner, tmp_path):
    if not TINY.is_dir():
        pytest.skip(f"{TINY} not present: ../shared/caffe_vectors holds files real Caffe wrote")
    for name in ("deploy", "train", "solver"):
        res = runner.invoke(import_cmd, [str(TINY / f"{name}.prototxt"), "-o",
                                         str(tmp_path / f"{name}.yaml")])
        assert res.exit_code == 0, res.output
    # the solver's net goes beside the new solver, as it was beside the old one
    assert f"caffeish import {os.path.relpath(TINY / 'train.prototxt')} -o " \
           f"{os.path.relpath(tmp_path / 'train.yaml')}" in res.output
    kinds = {"deploy": "NetParameter", "train": "NetParameter", "solver": "SolverParameter"}
    for name, kind in kinds.items():
        loaded = load_message(tmp_path / f"{name}.yaml", kind)
        original = parse_prototxt_file(TINY / f"{name}.prototxt", kind)
        if name == "solver":
            assert loaded.net == "train.yaml"
            original.set("net", "train.yaml")
        assert loaded == original


def test_export_net_and_round_trip(runner, tmp_path):
    src = _write(tmp_path / "deploy.prototxt", DEPLOY)
    yml = tmp_path / "deploy.yaml"
    assert runner.invoke(import_cmd, [str(src), "-o", str(yml)]).exit_code == 0
    out = tmp_path / "back.prototxt"
    res = runner.invoke(export_cmd, [str(yml), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out} (NetParameter)" in res.output
    text = out.read_text()
    assert text.startswith('name: "Small"\nlayer {\n  name: "input"\n  type: "Input"\n')
    back = parse_prototxt(text, "NetParameter")
    assert back == load_message(yml, "NetParameter")
    res = runner.invoke(export_cmd, [str(yml), "-o", "-"])
    assert res.exit_code == 0 and res.stdout == text


def test_export_solver_rewrites_net_paths(runner, tmp_path):
    yml = _write(tmp_path / "solver.yaml", "net: lenet.yaml\nbase_lr: 0.01\nmax_iter: 10\n"
                                           "lr_policy: fixed\ntype: Adam\n")
    res = runner.invoke(export_cmd, [str(yml)])
    assert res.exit_code == 0, res.output
    s = parse_prototxt_file(tmp_path / "solver.prototxt", "SolverParameter")
    assert (s.net, s.type, s.max_iter) == ("lenet.prototxt", "Adam", 10)
    assert "export that net too" in res.output


def test_refuse_overwrite_unless_forced(runner, tmp_path):
    src = _write(tmp_path / "deploy.prototxt", DEPLOY)
    out = _write(tmp_path / "deploy.yaml", "keep me\n")
    res = runner.invoke(import_cmd, [str(src), "-o", str(out)])
    assert res.exit_code == 2
    assert f"{out}: already exists; pass --force to overwrite it" in res.output
    assert out.read_text() == "keep me\n"
    res = runner.invoke(import_cmd, [str(src), "-o", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert "type: Convolution" in out.read_text()

    proto = _write(tmp_path / "x.prototxt", "keep\n")
    res = runner.invoke(export_cmd, [str(out), "-o", str(proto)])
    assert res.exit_code == 2 and "already exists" in res.output
    assert proto.read_text() == "keep\n"


def test_import_errors(runner, tmp_path):
    bad = _write(tmp_path / "bad.prototxt", 'name: "n"\nlayer {\n  name: "c"\n  type: '
                                            '"Convolution"\n  convolution_param { kernal_size: '
                                            '3 }\n}\n')
    res = runner.invoke(import_cmd, [str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:5:23: layer 'c' (Convolution): unknown field 'kernal_size' in " \
           f"ConvolutionParameter (did you mean 'kernel_size'?)" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "bad.yaml").exists()

    vague = _write(tmp_path / "vague.prototxt", 'debug_info: true\n')
    res = runner.invoke(import_cmd, [str(vague)])
    assert res.exit_code == 2 and "cannot tell whether this is a net or a solver" in res.output
    res = runner.invoke(import_cmd, [str(vague), "--kind", "solver"])
    assert res.exit_code == 0, res.output
    assert load_message(tmp_path / "vague.yaml", "SolverParameter").debug_info is True

    res = runner.invoke(import_cmd, [str(tmp_path / "missing.prototxt")])
    assert res.exit_code == 2 and "file not found" in res.output

    v0 = _write(tmp_path / "v0.prototxt", 'layers { layer { name: "c" type: "conv" } }\n')
    res = runner.invoke(import_cmd, [str(v0)])
    assert res.exit_code == 2 and "V0 nets are not supported" in res.output
