"""Config composition: _base_ inheritance, merge rules, _delete_, --set overrides, errors."""
import pytest

import caffeish
from caffeish.config.compose import resolve_net, resolve_solver
from caffeish.config.yaml_loader import load_message
from caffeish.errors import ConfigError

BASE_NET = """\
name: base
layer:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 3, 8, 8]}}}
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    convolution_param: {num_output: 4, kernel_size: 3, pad: 1}
  - {name: relu1, type: ReLU, bottom: conv1, top: conv1}
  - name: ip
    type: InnerProduct
    bottom: conv1
    top: ip
    inner_product_param: {num_output: 5}
"""


def names(net):
    return [lp.name for lp in net.layer]


@pytest.fixture
def files(tmp_path):
    def w(name, text):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p
    w("base.yaml", BASE_NET)
    return w


def test_child_changes_one_layer_field_and_keeps_the_rest(files):
    p = files("child.yaml", """\
_base_: base.yaml
name: child
layer:
  - {name: conv1, convolution_param: {num_output: 8}}
""")
    net = load_message(p, "NetParameter")
    assert net.name == "child"
    assert names(net) == ["data", "conv1", "relu1", "ip"]
    conv = net.layer[1].convolution_param
    assert conv.num_output == 8 and list(conv.kernel_size) == [3] and list(conv.pad) == [1]
    assert net.layer[1].type == "Convolution"
    assert caffeish.Net(str(p)).blobs["conv1"].shape == (2, 8, 8, 8)


def test_lists_are_replaced_not_merged(files):
    p = files("child.yaml", """\
_base_: base.yaml
layer:
  - {name: data, input_param: {shape: {dim: [1, 3, 4, 4]}}}
""")
    net = load_message(p, "NetParameter")
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 4, 4]


def test_delete_removes_a_layer_and_new_names_are_appended(files):
    p = files("child.yaml", """\
_base_: base.yaml
layer:
  - {name: relu1, _delete_: true}
  - {name: prob, type: Softmax, bottom: ip, top: prob}
""")
    net = load_message(p, "NetParameter")
    assert names(net) == ["data", "conv1", "ip", "prob"]


def test_delete_in_a_mapping_replaces_instead_of_merging(files):
    p = files("child.yaml", """\
_base_: base.yaml
layer:
  - name: conv1
    convolution_param: {_delete_: true, num_output: 6, kernel_size: 1}
""")
    conv = load_message(p, "NetParameter").layer[1].convolution_param
    assert conv.num_output == 6 and list(conv.kernel_size) == [1] and not conv.has("pad")


def test_delete_with_more_fields_replaces_the_layer_in_place(files):
    p = files("child.yaml", """\
_base_: base.yaml
layer:
  - {name: relu1, _delete_: true, type: Sigmoid, bottom: conv1, top: conv1}
""")
    net = load_message(p, "NetParameter")
    assert names(net) == ["data", "conv1", "relu1", "ip"] and net.layer[2].type == "Sigmoid"


def test_chains_of_bases_and_a_list_of_bases(files):
    files("mid.yaml", "_base_: base.yaml\nlayer:\n  - {name: ip, inner_product_param: "
                      "{num_output: 7}}\n")
    files("extra.yaml", "name: extra\n")
    p = files("top.yaml", "_base_: [mid.yaml, extra.yaml]\nlayer:\n  - {name: conv1, "
                          "convolution_param: {num_output: 2}}\n")
    net = load_message(p, "NetParameter")
    assert net.name == "extra"
    assert net.layer[1].convolution_param.num_output == 2
    assert net.layer[3].inner_product_param.num_output == 7


def test_layers_with_one_name_in_two_phases_merge_by_phase(files):
    files("two.yaml", """\
layer:
  - {name: d, type: Input, top: x, include: {phase: TRAIN}, input_param: {shape: {dim: [4, 2]}}}
  - {name: d, type: Input, top: x, include: {phase: TEST}, input_param: {shape: {dim: [8, 2]}}}
""")
    p = files("c.yaml", """\
_base_: two.yaml
layer:
  - {name: d, include: {phase: TEST}, input_param: {shape: {dim: [9, 2]}}}
""")
    net = load_message(p, "NetParameter")
    assert [list(lp.input_param.shape[0].dim) for lp in net.layer] == [[4, 2], [9, 2]]


def test_base_path_is_relative_to_the_file_and_cycles_are_errors(files, tmp_path):
    files("sub/deep.yaml", "_base_: ../base.yaml\nname: deep\n")
    assert load_message(tmp_path / "sub/deep.yaml", "NetParameter").name == "deep"
    files("a.yaml", "_base_: b.yaml\n")
    files("b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"b\.yaml:1: _base_ cycle: a\.yaml -> b\.yaml -> "
                                          r"a\.yaml"):
        load_message(tmp_path / "a.yaml", "NetParameter")


def test_missing_base_names_the_line_and_where_it_looked(files, tmp_path):
    p = files("c.yaml", "name: x\n_base_: nope.yaml\n")
    with pytest.raises(ConfigError) as ei:
        load_message(p, "NetParameter")
    msg = str(ei.value)
    assert msg.startswith(f"{p}:2: base file 'nope.yaml' not found") and str(tmp_path) in msg


def test_delete_of_an_unknown_layer_suggests_the_closest(files):
    p = files("c.yaml", "_base_: base.yaml\nlayer:\n  - {name: relu, _delete_: true}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: _delete_: no layer named 'relu' in the "
                                          r"base \(did you mean 'relu1'\?\)"):
        load_message(p, "NetParameter")


def test_delete_must_be_a_bool_and_is_rejected_without_a_base(files):
    p = files("c.yaml", "_base_: base.yaml\nlayer:\n  - {name: relu1, _delete_: yes please}\n")
    with pytest.raises(ConfigError, match="_delete_ must be true or false"):
        load_message(p, "NetParameter")
    p = files("d.yaml", BASE_NET.replace("name: base", "name: base\n_delete_: true"))
    with pytest.raises(ConfigError, match="'_delete_' is only allowed"):
        load_message(p, "NetParameter")


def test_errors_point_at_the_file_and_line_the_value_came_from(files, tmp_path):
    files("bad_base.yaml", BASE_NET.replace("num_output: 5", "num_output: five"))
    p = files("c.yaml", "_base_: bad_base.yaml\nname: c\n")
    with pytest.raises(ConfigError) as ei:
        load_message(p, "NetParameter")
    assert str(ei.value).startswith(f"{tmp_path / 'bad_base.yaml'}:14: layer 'ip'")
    p = files("c2.yaml", "_base_: base.yaml\nlayer:\n  - {name: ip, inner_product_param: "
                         "{num_outptu: 5}}\n")
    with pytest.raises(ConfigError) as ei:
        load_message(p, "NetParameter")
    assert str(ei.value).startswith(f"{p}:3: layer 'ip' (InnerProduct): ")
    assert "did you mean 'num_output'" in str(ei.value)
    # messages keep their own file for later (layer-time) errors
    net = load_message(files("c3.yaml", "_base_: base.yaml\n"), "NetParameter")
    assert net.layer[1].where().startswith(str(tmp_path / "base.yaml") + ":")


# --- overrides -----------------------------------------------------------------------------
def test_set_addresses_layers_by_name(files):
    p = files("n.yaml", BASE_NET)
    net = resolve_net(p, ["layer.conv1.convolution_param.num_output=32",
                          "net.layer.ip.inner_product_param.bias_term=false",
                          "layer.relu1.relu_param.negative_slope=0.1",
                          "layer.conv1.param=[{lr_mult: 0}]"])
    assert net.layer[1].convolution_param.num_output == 32
    assert net.layer[1].param[0].lr_mult == 0
    assert net.layer[3].inner_product_param.bias_term is False
    assert net.layer[2].relu_param.negative_slope == pytest.approx(0.1)
    assert names(resolve_net(p, ["layer.relu1._delete_=true"])) == ["data", "conv1", "ip"]


def test_set_errors_name_the_path_and_the_closest_valid_one(files):
    p = files("n.yaml", BASE_NET)
    cases = {
        "layer.conv1.convolution_param.num_ouput=3":
            "did you mean 'layer.conv1.convolution_param.num_output'?",
        "layer.conv2.convolution_param.num_output=3":
            "no layer named 'conv2' (did you mean 'layer.conv1.convolution_param.num_output'?)",
        "layer.conv1.convolution_parm.num_output=3":
            "did you mean 'layer.conv1.convolution_param.num_output'?",
        "layer.conv1.name.x=1": "'layer.conv1.name' is a string field, not a message",
        "layer.conv1.convolution_param.num_output=many": "must be an integer, got 'many'",
        "nonsense": "expected key=value",
    }
    for text, want in cases.items():
        with pytest.raises(ConfigError) as ei:
            resolve_net(p, [text])
        assert want in str(ei.value), (text, str(ei.value))
        if "=" in text:
            assert str(ei.value).startswith(f"--set {text}: "), str(ei.value)


def test_set_phase_qualifier_and_repeated_index(files):
    p = files("two.yaml", """\
layer:
  - {name: d, type: Input, top: x, include: {phase: TRAIN}, input_param: {shape: {dim: [4, 2]}}}
  - {name: d, type: Input, top: x, include: {phase: TEST}, input_param: {shape: {dim: [8, 2]}}}
""")
    net = resolve_net(p, ["layer.d@TEST.input_param.shape[0].dim=[5, 2]"])
    assert [list(lp.input_param.shape[0].dim) for lp in net.layer] == [[4, 2], [5, 2]]
    net = resolve_net(p, ["layer.d.include[0].phase=TEST"])
    assert [lp.include[0].phase for lp in net.layer] == ["TEST", "TEST"]
    with pytest.raises(ConfigError, match=r"index 3 is out of range"):
        resolve_net(p, ["layer.d.input_param.shape[3].dim=[1]"])


def test_solver_overrides_and_embedded_nets(files, tmp_path):
    files("nets/net.yaml", BASE_NET)
    base = files("nets/base_solver.yaml", "net: net.yaml\nbase_lr: 0.1\nlr_policy: fixed\n"
                                          "max_iter: 10\n")
    s = files("solver.yaml", "_base_: nets/base_solver.yaml\nmomentum: 0.9\n")
    p = resolve_solver(s, ["base_lr=0.05", "layer.conv1.convolution_param.num_output=16"])
    assert p.base_lr == pytest.approx(0.05) and p.momentum == pytest.approx(0.9)
    assert not p.has("net") and p.net_param.layer[1].convolution_param.num_output == 16
    # the base's relative net path still points at nets/net.yaml from the child's folder
    assert p.net_param.layer[0].where().startswith(str(tmp_path / "nets" / "net.yaml"))
    with pytest.raises(ConfigError, match=r"--set base_rl=1: unknown field 'base_rl' in "
                                          r"SolverParameter \(did you mean 'base_lr'\?\)"):
        resolve_solver(s, ["base_rl=1"])
    with pytest.raises(ConfigError, match=r"--set base_lr=fast: field 'base_lr' must be a "
                                          r"number"):
        resolve_solver(s, ["base_lr=fast"])
    assert resolve_solver(base).net_param.name == "base"
