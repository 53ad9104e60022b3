"""The protobuf wire codec: round trips, and byte-level agreement with Google's protobuf runtime."""
import struct

import numpy as np
import pytest

import caffeish.config  # noqa: F401
from caffeish.config.schema import Msg
from caffeish.errors import FormatError
from caffeish.io.codec import decode, encode
from caffeish.io.wire import encode_varint


def roundtrip(m):
    return decode(encode(m), m.mdef.name)


def test_nested_roundtrip():
    m = Msg("NetParameter", {
        "name": "net",
        "state": {"phase": "TRAIN", "level": 3, "stage": ["a", "b"]},
        "layer": [
            {"name": "conv1", "type": "Convolution", "bottom": ["data"], "top": ["conv1"],
             "param": [{"lr_mult": 1.0}, {"lr_mult": 2.0, "decay_mult": 0.0}],
             "include": [{"phase": "TEST", "stage": ["deploy"]}],
             "convolution_param": {"num_output": 8, "kernel_size": [5], "pad": [1, 2],
                                   "weight_filler": {"type": "xavier"}}},
            {"name": "loss", "type": "SoftmaxWithLoss", "loss_weight": [1.0, 0.5],
             "propagate_down": [True, False], "loss_param": {"normalization": "BATCH_SIZE"}},
        ],
    })
    d = roundtrip(m)
    assert d == m
    assert d.layer[0].convolution_param.weight_filler.type == "xavier"
    assert d.layer[1].propagate_down == [True, False]


def test_negative_ints_are_ten_byte_varints():
    m = Msg("FillerParameter", {"sparse": -1})
    raw = encode(m)
    assert raw == b"\x38" + b"\xff" * 9 + b"\x01"
    assert decode(raw, "FillerParameter").sparse == -1
    s = Msg("SolverParameter", {"random_seed": -(2 ** 40), "test_iter": [-3, 7]})
    assert roundtrip(s) == s


def test_int_kinds_truncate_like_protobuf():
    # an int32 field read from a 64-bit varint keeps the low 32 bits, signed
    raw = b"\x38" + encode_varint((1 << 32) + 5)
    assert decode(raw, "FillerParameter").sparse == 5


def test_packed_float_roundtrip_is_ndarray():
    data = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    m = Msg("BlobProto", {"shape": {"dim": [10, 100]}, "data": data,
                          "double_data": np.arange(3, dtype=np.float64)})
    d = roundtrip(m)
    assert isinstance(d.data, np.ndarray) and d.data.dtype == np.float32
    assert d.data.flags.writeable
    np.testing.assert_array_equal(d.data, data)
    assert d.double_data.dtype == np.float64
    assert list(d.shape.dim) == [10, 100]
    # packed: tag 5/LEN once, then 4000 bytes
    assert encode(Msg("BlobProto", {"data": data})) == b"\x2a" + encode_varint(4000) + data.tobytes()


def test_unpacked_float_read_in_bulk():
    vals = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    raw = b"".join(b"\x2d" + struct.pack("<f", v) for v in vals)  # data = 5, wire type 5
    raw += b"\x08\x02"  # num = 2 after the run
    d = decode(raw, "BlobProto")
    np.testing.assert_array_equal(d.data, vals)
    assert d.num == 2


def test_unpacked_and_packed_mixed_and_datum_float_data():
    raw = b"\x2d" + struct.pack("<f", 1.5) + b"\x2a\x04" + struct.pack("<f", 2.5) + b"\x2d" + struct.pack("<f", 3.5)
    np.testing.assert_array_equal(decode(raw, "BlobProto").data, [1.5, 2.5, 3.5])
    m = Msg("Datum", {"float_data": np.array([1, 2, 3], np.float32), "label": 4})
    raw = encode(m)
    assert raw.count(b"\x35") == 3  # Datum.float_data is not packed: one tag per value
    d = decode(raw, "Datum")
    np.testing.assert_array_equal(d.float_data, [1, 2, 3])
    assert d.label == 4


def test_packed_varints_read_for_any_repeated_scalar():
    payload = encode_varint(3) + encode_varint(5) + encode_varint(300)
    raw = b"\x22" + encode_varint(len(payload)) + payload  # ConvolutionParameter.kernel_size = 4
    assert decode(raw, "ConvolutionParameter").kernel_size == [3, 5, 300]
    m = Msg("BlobShape", {"dim": [1, 3, 224, 224]})
    assert encode(m) == b"\x0a\x06\x01\x03\xe0\x01\xe0\x01"
    assert decode(b"\x08\x01\x08\x03", "BlobShape").dim == [1, 3]  # unpacked form accepted


def test_enums():
    m = Msg("PoolingParameter", {"pool": "AVE", "round_mode": "FLOOR"})
    d = roundtrip(m)
    assert d.pool == "AVE" and d.round_mode == "FLOOR"
    assert decode(b"\x08\x09", "PoolingParameter").pool == 9  # unknown number kept as int
    assert encode(Msg("PoolingParameter", {"pool": 9})) == b"\x08\x09"
    with pytest.raises(FormatError, match="not a value of enum"):
        encode(Msg("PoolingParameter", {"pool": "MEDIAN"}))


def test_unicode_strings_and_bytes():
    m = Msg("LayerParameter", {"name": "größe-层-🚀", "top": ["ä", ""]})
    assert roundtrip(m) == m
    d = Msg("Datum", {"data": bytes(range(256)), "encoded": True})
    assert roundtrip(d).data == bytes(range(256))


def test_fields_written_in_number_order():
    m = Msg("LayerParameter", {"convolution_param": {"num_output": 1}, "name": "x", "phase": "TEST"})
    raw = encode(m)
    assert raw.startswith(b"\x0a\x01x\x50\x01")  # name (1), then phase (10), then 106


def test_unknown_fields_skipped():
    unknown = (b"\xf8\x45" + encode_varint(7)            # field 1111 varint (bn_param-like)
               + b"\xfa\x45\x03abc"                      # 1111 length-delimited
               + b"\xf9\x45" + b"\0" * 8                  # 1111 fixed64
               + b"\xfd\x45" + b"\0" * 4)                 # 1111 fixed32
    raw = unknown + encode(Msg("LayerParameter", {"name": "n"}))
    assert decode(raw, "LayerParameter").name == "n"


def test_singular_message_merges():
    raw = b"\x32\x02\x10\x05" + b"\x32\x04\x1a\x02ab"  # NetParameter.state twice
    d = decode(raw, "NetParameter")
    assert d.state.level == 5 and d.state.stage == ["ab"]


@pytest.mark.parametrize("raw,match", [
    (b"\x0a\x05ab", r"NetParameter\.name: field claims 5 bytes"),
    (b"\x08", r"NetParameter\.name: wire type 0"),
    (b"\xa2\x06\x03\x0a\x05x", r"NetParameter\.layer\[0\]\.name: field claims 5 bytes"),
    (b"\x0f", r"invalid wire type 7 at byte 0"),
    (b"\x0a\x02\xff\xfe", "invalid UTF-8"),
    (b"\xff", "truncated field tag at byte 0"),
])
def test_errors(raw, match):
    with pytest.raises(FormatError, match=match):
        decode(raw, "NetParameter")


def test_error_reports_byte_offset():
    raw = encode(Msg("NetParameter", {"name": "abc"})) + b"\x2a\x04\x01"  # blob-like junk
    with pytest.raises(FormatError, match="byte 5"):
        decode(raw, "NetParameter")


# ---------------------------------------------------------------------------------------
# independent check against Google's protobuf runtime
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pb():
    pytest.importorskip("google.protobuf", reason="protobuf package not installed: "
                        "skipping the cross-check against Google's protobuf runtime")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_min.proto", package="caffe", syntax="proto2")
    ph = fdp.enum_type.add(name="Phase")
    ph.value.add(name="TRAIN", number=0)
    ph.value.add(name="TEST", number=1)

    def msg(name, *fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, extra in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if extra.get("type_name"):
                f.type_name = extra["type_name"]
            if extra.get("packed"):
                f.options.packed = True
            if "default" in extra:
                f.default_value = extra["default"]
        return m

    O, R = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("BlobShape", ("dim", 1, F.TYPE_INT64, R, {"packed": True}))
    msg("BlobProto",
        ("shape", 7, F.TYPE_MESSAGE, O, {"type_name": ".caffe.BlobShape"}),
        ("data", 5, F.TYPE_FLOAT, R, {"packed": True}),
        ("diff", 6, F.TYPE_FLOAT, R, {"packed": True}),
        ("double_data", 8, F.TYPE_DOUBLE, R, {"packed": True}),
        ("double_diff", 9, F.TYPE_DOUBLE, R, {"packed": True}),
        ("num", 1, F.TYPE_INT32, O, {}), ("channels", 2, F.TYPE_INT32, O, {}),
        ("height", 3, F.TYPE_INT32, O, {}), ("width", 4, F.TYPE_INT32, O, {}))
    ps = msg("ParamSpec", ("name", 1, F.TYPE_STRING, O, {}),
             ("share_mode", 2, F.TYPE_ENUM, O, {"type_name": ".caffe.ParamSpec.DimCheckMode"}),
             ("lr_mult", 3, F.TYPE_FLOAT, O, {"default": "1"}),
             ("decay_mult", 4, F.TYPE_FLOAT, O, {"default": "1"}))
    dc = ps.enum_type.add(name="DimCheckMode")
    dc.value.add(name="STRICT", number=0)
    dc.value.add(name="PERMISSIVE", number=1)
    msg("FillerParameter", ("type", 1, F.TYPE_STRING, O, {"default": "constant"}),
        ("value", 2, F.TYPE_FLOAT, O, {}), ("sparse", 7, F.TYPE_INT32, O, {"default": "-1"}))
    msg("InnerProductParameter", ("num_output", 1, F.TYPE_UINT32, O, {}),
        ("weight_filler", 3, F.TYPE_MESSAGE, O, {"type_name": ".caffe.FillerParameter"}),
        ("axis", 5, F.TYPE_INT32, O, {"default": "1"}))
    msg("LayerParameter",
        ("name", 1, F.TYPE_STRING, O, {}), ("type", 2, F.TYPE_STRING, O, {}),
        ("bottom", 3, F.TYPE_STRING, R, {}), ("top", 4, F.TYPE_STRING, R, {}),
        ("loss_weight", 5, F.TYPE_FLOAT, R, {}),
        ("param", 6, F.TYPE_MESSAGE, R, {"type_name": ".caffe.ParamSpec"}),
        ("blobs", 7, F.TYPE_MESSAGE, R, {"type_name": ".caffe.BlobProto"}),
        ("phase", 10, F.TYPE_ENUM, O, {"type_name": ".caffe.Phase"}),
        ("inner_product_param", 117, F.TYPE_MESSAGE, O, {"type_name": ".caffe.InnerProductParameter"}))
    msg("NetParameter", ("name", 1, F.TYPE_STRING, O, {}),
        ("input_dim", 4, F.TYPE_INT32, R, {}),
        ("force_backward", 5, F.TYPE_BOOL, O, {}),
        ("layer", 100, F.TYPE_MESSAGE, R, {"type_name": ".caffe.LayerParameter"}))
    msg("Datum", ("channels", 1, F.TYPE_INT32, O, {}), ("data", 4, F.TYPE_BYTES, O, {}),
        ("label", 5, F.TYPE_INT32, O, {}), ("float_data", 6, F.TYPE_FLOAT, R, {}),
        ("encoded", 7, F.TYPE_BOOL, O, {}))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe." + n))
            for n in ("NetParameter", "BlobProto", "Datum", "LayerParameter")}


def _sample_net():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    return Msg("NetParameter", {
        "name": "x-网", "input_dim": [1, -3, 28], "force_backward": True,
        "layer": [
            {"name": "ip", "type": "InnerProduct", "bottom": ["data"], "top": ["ip"],
             "phase": "TEST", "loss_weight": [0.5],
             "param": [{"name": "shared", "lr_mult": 1.0, "share_mode": "PERMISSIVE"},
                       {"lr_mult": 2.0, "decay_mult": 0.0}],
             "blobs": [{"shape": {"dim": [4, 6]}, "data": w.ravel()},
                       {"shape": {"dim": [4]}, "data": np.arange(4, dtype=np.float32),
                        "diff": np.ones(4, np.float32)},
                       {"num": 1, "channels": 1, "height": 1, "width": 2,
                        "double_data": np.array([1e-300, -2.0])}],
             "inner_product_param": {"num_output": 4, "axis": -1,
                                     "weight_filler": {"type": "gaussian", "sparse": -7}}},
            {"name": "empty"},
        ],
    })


def test_our_bytes_parse_in_protobuf(pb):
    m = _sample_net()
    ours = encode(m)
    theirs = pb["NetParameter"]()
    theirs.ParseFromString(ours)
    assert theirs.SerializeToString() == ours  # same bytes, field for field
    assert theirs.name == "x-网" and list(theirs.input_dim) == [1, -3, 28]
    ip = theirs.layer[0]
    assert ip.phase == 1 and list(ip.bottom) == ["data"] and list(ip.loss_weight) == [0.5]
    assert ip.param[0].name == "shared" and ip.param[0].share_mode == 1
    assert ip.param[1].lr_mult == 2.0 and ip.param[1].decay_mult == 0.0
    np.testing.assert_array_equal(np.array(ip.blobs[0].data, np.float32), m.layer[0].blobs[0].data)
    assert list(ip.blobs[0].shape.dim) == [4, 6]
    assert list(ip.blobs[1].diff) == [1, 1, 1, 1]
    assert list(ip.blobs[2].double_data) == [1e-300, -2.0] and ip.blobs[2].width == 2
    assert ip.inner_product_param.axis == -1
    assert ip.inner_product_param.weight_filler.sparse == -7
    assert theirs.layer[1].name == "empty" and not theirs.layer[1].HasField("phase")


def test_protobuf_bytes_parse_in_ours(pb):
    t = pb["NetParameter"]()
    t.name = "pb"
    t.input_dim.extend([2, -1])
    lay = t.layer.add(name="fc", type="InnerProduct", phase=0)
    lay.top.append("fc")
    lay.param.add(lr_mult=3.0)
    b = lay.blobs.add()
    b.shape.dim.extend([2, 3])
    b.data.extend([0.5, -1.25, 3.0, 4.0, 5.0, 6.0])
    lay.inner_product_param.weight_filler.sparse = -2
    lay.inner_product_param.num_output = 2
    raw = t.SerializeToString()
    d = decode(raw, "NetParameter")
    assert encode(d) == raw
    assert d.name == "pb" and d.input_dim == [2, -1]
    fc = d.layer[0]
    assert fc.phase == "TRAIN" and fc.has("phase") and fc.top == ["fc"]
    assert fc.param[0].lr_mult == 3.0 and fc.param[0].decay_mult == 1.0
    np.testing.assert_array_equal(fc.blobs[0].data, [0.5, -1.25, 3.0, 4.0, 5.0, 6.0])
    assert fc.blobs[0].shape.dim == [2, 3]
    assert fc.inner_product_param.weight_filler.sparse == -2
    assert fc.inner_product_param.weight_filler.type == "constant"


def test_unpacked_float_data_matches_protobuf(pb):
    t = pb["Datum"](channels=1, label=-5, encoded=False, data=b"\x00\xff")
    t.float_data.extend([1.0, -2.0, 0.25])
    raw = t.SerializeToString()
    d = decode(raw, "Datum")
    assert d.label == -5 and d.data == b"\x00\xff" and d.encoded is False
    np.testing.assert_array_equal(d.float_data, [1.0, -2.0, 0.25])
    assert encode(d) == raw
