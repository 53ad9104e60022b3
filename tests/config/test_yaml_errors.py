"""Broken configs fail before any computation with file:line, layer and a fix."""
import pytest

import caffeish
from caffeish.errors import ConfigError

GOOD = """\
name: tiny
layer:
  - name: data
    type: Input
    top: data
    input_param: {shape: {dim: [2, 3]}}
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    inner_product_param: {num_output: 4}
"""


def error_of(write_yaml, text, name="net.yaml"):
    p = write_yaml(name, text)
    with pytest.raises(ConfigError) as ei:
        caffeish.Net(str(p), phase="TEST")
    return str(ei.value), str(p)


def test_good_config_builds(write_yaml):
    net = caffeish.Net(str(write_yaml("net.yaml", GOOD)), phase="TEST")
    assert net.blobs["ip"].shape == (2, 4)


def test_typo_in_field_names_line_layer_and_fix(write_yaml):
    msg, path = error_of(write_yaml, GOOD.replace("num_output: 4", "num_outptu: 4"))
    assert msg.startswith(f"{path}:11: layer 'ip' (InnerProduct): ")
    assert "unknown field" in msg and "num_outptu" in msg
    assert "did you mean 'num_output'?" in msg


def test_kernal_size_example_from_the_issue(write_yaml):
    text = GOOD + """\
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    convolution_param: {num_output: 2, kernal_size: 3}
"""
    msg, path = error_of(write_yaml, text)
    assert msg.startswith(f"{path}:16: layer 'conv1' (Convolution): ")
    assert "'convolution_param.kernal_size'" in msg and "(did you mean 'kernel_size'?)" in msg


def test_wrong_type(write_yaml):
    msg, path = error_of(write_yaml, GOOD.replace("num_output: 4", "num_output: four"))
    assert f"{path}:11:" in msg and "must be an integer" in msg and "'four'" in msg


def test_bad_enum_value(write_yaml):
    text = GOOD + """\
  - name: pool
    type: Pooling
    bottom: data
    top: pool
    pooling_param: {pool: MAXIMUM, kernel_size: 2}
"""
    msg, path = error_of(write_yaml, text)
    assert f"{path}:16: layer 'pool' (Pooling)" in msg
    assert "MAXIMUM" in msg and "MAX, AVE, STOCHASTIC" in msg


def test_unknown_layer_types_listed_together(write_yaml):
    text = GOOD.replace("type: InnerProduct", "type: InnerProdcut") + """\
  - {name: act, type: Relu, bottom: ip, top: act}
"""
    msg, path = error_of(write_yaml, text)
    assert f"{path}:8: layer 'ip': unknown type 'InnerProdcut' (did you mean 'InnerProduct'?)" in msg
    assert f"{path}:12: layer 'act': unknown type 'Relu' (did you mean 'ReLU'?)" in msg


def test_missing_bottom(write_yaml):
    msg, path = error_of(write_yaml, GOOD.replace("bottom: data", "bottom: dta"))
    assert f"{path}:9: layer 'ip' (InnerProduct): unknown bottom blob 'dta'" in msg
    assert "did you mean 'data'?" in msg


def test_duplicate_top(write_yaml):
    text = GOOD + """\
  - {name: ip2, type: InnerProduct, bottom: data, top: ip, inner_product_param: {num_output: 2}}
"""
    msg, path = error_of(write_yaml, text)
    assert f"{path}:12: layer 'ip2' (InnerProduct): top blob 'ip' is already produced by layer 'ip'" in msg


def test_duplicate_layer_name(write_yaml):
    text = GOOD + """\
  - {name: ip, type: ReLU, bottom: ip, top: r}
"""
    msg, _ = error_of(write_yaml, text)
    assert "layer name 'ip' is used twice" in msg


def test_in_place_not_allowed(write_yaml):
    text = GOOD.replace("top: ip\n", "top: data\n")
    msg, _ = error_of(write_yaml, text)
    assert "cannot run in place" in msg


def test_field_given_twice(write_yaml):
    msg, path = error_of(write_yaml, GOOD.replace("    top: ip\n", "    top: ip\n    top: ip2\n"))
    assert f"{path}:11: layer 'ip' (InnerProduct): field 'top' is given twice" in msg


def test_yaml_syntax_error_names_line(write_yaml):
    msg, path = error_of(write_yaml, GOOD + "  - name: [oops\n")
    assert msg.startswith(f"{path}:") and "YAML syntax error" in msg


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        caffeish.Net("nope.yaml")


def test_binary_file_is_not_yaml(tmp_path):
    p = tmp_path / "w.caffemodel"
    p.write_bytes(b"\x0a\x05LeNet\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        caffeish.Net(str(p))


def test_float_fields_accept_yaml11_exponents(write_yaml):
    from caffeish.config.yaml_loader import load_message
    p = write_yaml("s.yaml", "base_lr: 1e-2\nweight_decay: 5e-4\nlr_policy: fixed\n")
    s = load_message(p, "SolverParameter")
    assert s.base_lr == pytest.approx(0.01) and s.weight_decay == pytest.approx(5e-4)


def test_shape_mismatch_is_a_shape_error_naming_the_layer(write_yaml):
    # conv with a kernel larger than the input
    text = GOOD + """\
  - name: conv
    type: Convolution
    bottom: data
    top: conv
    convolution_param: {num_output: 2, kernel_size: 5}
"""
    p = write_yaml("net.yaml", text)
    with pytest.raises(caffeish.CaffeishError) as ei:
        caffeish.Net(str(p))
    assert "conv" in str(ei.value)
