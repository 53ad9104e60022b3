"""Caffe's Datum record: round trips, byte-level agreement with Google's protobuf and with Caffe."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffeish.data.datum import Datum, datum_to_array, decode_datum, encode_datum
from caffeish.errors import DataError
from caffeish.io.wire import field_varint

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
IMAGESET = SHARED / "caffe_vectors" / "imageset"

RNG = np.random.default_rng(1701)


def _png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


# --- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,label", [
    ((3, 4, 5), 7), ((1, 28, 28), 0), ((4, 1, 1), 2 ** 31 - 1), ((2, 3, 3), -1), ((1, 0, 5), 3),
], ids=["rgb-3x4x5", "gray-28x28", "label-int32-max", "label-negative", "empty"])
def test_raw_roundtrip(shape, label):
    px = RNG.integers(0, 256, shape, dtype=np.uint8)
    d = decode_datum(encode_datum(px, label))
    assert (d.channels, d.height, d.width) == shape
    assert d.label == label and not d.encoded and d.float_data is None
    arr = datum_to_array(d)
    assert arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, px)


def test_two_d_pixels_are_one_channel():
    px = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
    d = decode_datum(encode_datum(px, 1))
    assert d.shape == (1, 6, 7)
    np.testing.assert_array_equal(datum_to_array(d)[0], px)


def test_float_roundtrip():
    fd = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    d = decode_datum(encode_datum(None, 5, float_data=fd))
    assert d.shape == (2, 3, 4) and d.data == b"" and d.label == 5
    arr = datum_to_array(d)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, fd)


def test_float_data_is_written_unpacked_like_caffe():
    raw = encode_datum(None, 0, float_data=np.array([1.5, -2.0], np.float32))
    # label 0, then one (tag 0x35, 4 bytes) per float: proto2 repeated float is not packed
    assert raw == b"\x28\x00" + b"\x35" + np.float32(1.5).tobytes() + b"\x35" \
        + np.float32(-2.0).tobytes()


def test_packed_float_data_is_read():
    vals = np.array([0.25, 3.0, -1.0], np.float32)
    raw = field_varint(1, 3) + field_varint(2, 1) + field_varint(3, 1) + b"\x32\x0c" \
        + vals.tobytes()
    d = decode_datum(raw)
    np.testing.assert_array_equal(datum_to_array(d).ravel(), vals)


def test_unknown_fields_are_skipped():
    px = RNG.integers(0, 256, (1, 2, 2), dtype=np.uint8)
    raw = encode_datum(px, 4) + field_varint(99, 12345)
    d = decode_datum(raw)
    assert d.label == 4
    np.testing.assert_array_equal(datum_to_array(d), px)


def test_encoded_flag_choices():
    px = np.zeros((1, 1, 1), np.uint8)
    assert not encode_datum(px, 0).endswith(b"\x38\x00")
    assert encode_datum(px, 0, encoded=False).endswith(b"\x38\x00")
    raw = encode_datum(None, 2, encoded_bytes=b"PNGDATA")
    assert raw == b"\x22\x07PNGDATA" + b"\x28\x02" + b"\x38\x01"
    d = decode_datum(raw)
    assert d.encoded and d.data == b"PNGDATA" and d.shape == (0, 0, 0)


# --- errors ------------------------------------------------------------------------------------
def test_data_length_mismatch_raises():
    d = Datum(channels=3, height=4, width=4, data=b"\x00" * 47, label=0)
    with pytest.raises(DataError, match=r"47 bytes.*3 x 4 x 4 = 48"):
        datum_to_array(d)


def test_float_length_mismatch_raises():
    d = Datum(channels=1, height=2, width=2, float_data=np.zeros(3, np.float32))
    with pytest.raises(DataError, match="float_data holds 3 values"):
        datum_to_array(d)


def test_no_data_raises():
    with pytest.raises(DataError, match="holds no data"):
        datum_to_array(Datum(channels=1, height=2, width=2))


@pytest.mark.parametrize("raw", [b"\x22\x10abc", b"\x08", b"\x0b\x00"],
                         ids=["overlong-bytes", "truncated-varint", "group-wire-type"])
def test_corrupt_record_raises(raw):
    with pytest.raises(DataError, match="not a Caffe Datum"):
        decode_datum(raw)


def test_pixels_must_be_uint8():
    with pytest.raises(DataError, match="uint8"):
        encode_datum(np.zeros((1, 2, 2), np.float32), 0)


def test_corrupt_encoded_image_raises():
    d = decode_datum(encode_datum(None, 0, encoded_bytes=b"\x89PNG not really"))
    with pytest.raises(DataError, match="cannot decode"):
        datum_to_array(d)


# --- encoded images ------------------------------------------------------------------------------
def test_encoded_png_decodes_to_bgr():
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    d = decode_datum(encode_datum(None, 1, encoded_bytes=_png(rgb)))
    arr = datum_to_array(d)
    assert arr.shape == (3, 5, 7) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr[0], rgb[:, :, 2])   # B
    np.testing.assert_array_equal(arr[1], rgb[:, :, 1])   # G
    np.testing.assert_array_equal(arr[2], rgb[:, :, 0])   # R


def test_encoded_gray_png_native_and_forced():
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    d = decode_datum(encode_datum(None, 0, encoded_bytes=_png(gray)))
    np.testing.assert_array_equal(datum_to_array(d), gray[None])
    col = datum_to_array(d, force_color=True)
    assert col.shape == (3, 4, 6)
    for c in range(3):
        np.testing.assert_array_equal(col[c], gray)


def test_encoded_rgb_force_gray_matches_opencv():
    rgb = RNG.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    png = _png(rgb)
    d = decode_datum(encode_datum(None, 0, encoded_bytes=png))
    # OpenCV decodes a colour PNG as gray through libpng's rgb_to_gray(0.299, 0.587):
    # 15-bit fixed point, truncating: (9797 R + 19234 G + 3737 B) >> 15
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    want = ((9797 * r + 19234 * g + 3737 * b) >> 15).astype(np.uint8)
    np.testing.assert_array_equal(datum_to_array(d, force_gray=True), want[None])
    with pytest.raises(DataError, match="cannot both"):
        datum_to_array(d, force_color=True, force_gray=True)


def test_encoded_rgba_png_keeps_alpha_as_bgra():
    rgba = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    d = decode_datum(encode_datum(None, 0, encoded_bytes=_png(rgba, "RGBA")))
    arr = datum_to_array(d)
    np.testing.assert_array_equal(arr, rgba[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))
    np.testing.assert_array_equal(datum_to_array(d, force_color=True),
                                  rgba[:, :, [2, 1, 0]].transpose(2, 0, 1))


def test_encoded_jpeg_matches_pillow_decode():
    rgb = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    d = decode_datum(encode_datum(None, 0, encoded_bytes=buf.getvalue()))
    want = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(datum_to_array(d), want[:, :, ::-1].transpose(2, 0, 1))


# --- Google's protobuf runtime as the reference ---------------------------------------------------
def _protobuf_datum_class(packed_floats=False):
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="datum_test.proto", package="caffe_test",
                                             syntax="proto2")
    m = fdp.message_type.add(name="Datum")
    F = descriptor_pb2.FieldDescriptorProto
    for name, num, typ, label in [
        ("channels", 1, F.TYPE_INT32, F.LABEL_OPTIONAL),
        ("height", 2, F.TYPE_INT32, F.LABEL_OPTIONAL),
        ("width", 3, F.TYPE_INT32, F.LABEL_OPTIONAL),
        ("data", 4, F.TYPE_BYTES, F.LABEL_OPTIONAL),
        ("label", 5, F.TYPE_INT32, F.LABEL_OPTIONAL),
        ("float_data", 6, F.TYPE_FLOAT, F.LABEL_REPEATED),
        ("encoded", 7, F.TYPE_BOOL, F.LABEL_OPTIONAL),
    ]:
        f = m.field.add(name=name, number=num, type=typ, label=label)
        if name == "float_data" and packed_floats:
            f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("caffe_test.Datum")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def test_our_bytes_parse_in_protobuf():
    PB = _protobuf_datum_class()
    px = RNG.integers(0, 256, (3, 5, 6), dtype=np.uint8)
    m = PB()
    m.ParseFromString(encode_datum(px, -3))
    assert (m.channels, m.height, m.width, m.label) == (3, 5, 6, -3)
    assert m.data == px.tobytes() and not m.HasField("encoded")

    fd = RNG.standard_normal((1, 2, 3)).astype(np.float32)
    m2 = PB()
    m2.ParseFromString(encode_datum(None, 9, float_data=fd))
    np.testing.assert_array_equal(np.array(m2.float_data, np.float32), fd.ravel())
    assert not m2.HasField("data")

    m3 = PB()
    m3.ParseFromString(encode_datum(None, 1, encoded_bytes=b"\xff\xd8jpeg"))
    assert m3.encoded and m3.data == b"\xff\xd8jpeg" and not m3.HasField("channels")


@pytest.mark.parametrize("kind", ["raw", "raw-encoded-false", "float", "encoded"])
def test_protobuf_bytes_equal_ours(kind):
    PB = _protobuf_datum_class()
    m = PB()
    px = RNG.integers(0, 256, (2, 3, 4), dtype=np.uint8)
    fd = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    if kind.startswith("raw"):
        m.channels, m.height, m.width, m.data, m.label = 2, 3, 4, px.tobytes(), 6
        ours = encode_datum(px, 6)
        if kind == "raw-encoded-false":
            m.encoded = False
            ours = encode_datum(px, 6, encoded=False)
    elif kind == "float":
        m.channels, m.height, m.width, m.label = 2, 3, 4, 6
        m.float_data.extend(fd.ravel().tolist())
        ours = encode_datum(None, 6, float_data=fd)
    else:
        m.data, m.label, m.encoded = b"\x89PNGbytes", 6, True
        ours = encode_datum(None, 6, encoded_bytes=b"\x89PNGbytes")
    theirs = m.SerializeToString()
    assert ours == theirs
    d = decode_datum(theirs)
    assert d.label == 6


def test_protobuf_packed_floats_read_by_us():
    PB = _protobuf_datum_class(packed_floats=True)
    fd = RNG.standard_normal((1, 3, 3)).astype(np.float32)
    m = PB(channels=1, height=3, width=3, label=2)
    m.float_data.extend(fd.ravel().tolist())
    raw = m.SerializeToString()
    assert raw[raw.index(b"\x28\x02") + 2] == 0x32   # length-delimited: really packed
    np.testing.assert_array_equal(datum_to_array(decode_datum(raw)), fd)


# --- records written by real Caffe --------------------------------------------------------------
def test_caffe_convert_imageset_records_byte_exact():
    db = IMAGESET / "lmdb_raw_32x32"
    if not db.is_dir():
        pytest.skip(f"Caffe's LMDB not present (looked in {db}); it comes with ../shared")
    import lmdb

    pixels = np.load(IMAGESET / "lmdb_raw_32x32.pixels_uint8_CHW.npy")
    headers = json.loads((IMAGESET / "lmdb_raw_32x32.datums.json").read_text())
    env = lmdb.open(str(db), readonly=True, lock=False)
    with env.begin() as txn:
        records = list(txn.cursor())
    env.close()
    assert len(records) == len(headers) == len(pixels)
    for (key, value), h, px in zip(records, headers, pixels):
        assert key.decode() == h["key"]
        d = decode_datum(value)
        assert (d.channels, d.height, d.width, d.label, d.encoded) == \
            (h["channels"], h["height"], h["width"], h["label"], h["encoded"])
        np.testing.assert_array_equal(datum_to_array(d), px)
        # convert_imageset writes `encoded: false` explicitly; so do we when asked
        assert encode_datum(px, h["label"], encoded=False) == value
