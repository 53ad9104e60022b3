"""caffeish data inspect: counts, shapes, labels, bad records, and --dump."""
import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from caffeish.commands.data_cmds import inspect_cmd
from caffeish.data.datum import encode_datum
from caffeish.data.inspect import dump_images, inspect_db
from caffeish.data.lmdb_io import LMDBWriter
from caffeish.io.wire import field_bytes, field_varint
from data_tools.convert_imageset import convert_imageset

from .photos import datum_pixels, make_photo_set, parse_datum, read_lmdb


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_set(tmp_path_factory.mktemp("inspect"))


def test_raw_db_report(photos, tmp_path):
    db = tmp_path / "raw"
    convert_imageset(photos.root, photos.list_file, db, resize_height=16, resize_width=12)
    rep = inspect_db(db, samples=3)
    n = len(photos.entries)
    assert (rep.count, rep.raw, rep.encoded, rep.float_records) == (n, n, 0, 0)
    assert dict(rep.shapes) == {(3, 16, 12): n} and dict(rep.channels) == {3: n}
    want_labels = {}
    for _, lab in photos.entries:
        want_labels[lab] = want_labels.get(lab, 0) + 1
    assert dict(rep.labels) == want_labels
    assert [k.decode() for k in rep.sample_keys] == \
        ["%08d_%s" % (i, p) for i, (p, _) in enumerate(photos.entries[:3])]
    assert rep.bad == []
    r = CliRunner().invoke(inspect_cmd, [str(db), "--keys", "2"])
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert f"records: {n}" in out and f"kind: {n} raw" in out
    assert f"shapes (C x H x W): 3 x 16 x 12 ({n})" in out
    assert f"channels: 3 ({n})" in out
    assert f"labels: {len(want_labels)} distinct, 0 .. 4" in out
    assert f"  3: {want_labels[3]}" in out
    assert out[-2] == "sample keys: 00000000_colour/astronaut.png, 00000001_colour/coffee.jpg"
    assert out[-1] == "unreadable records: none"


def test_encoded_db_shapes_from_headers(photos, tmp_path):
    db = tmp_path / "enc"
    convert_imageset(photos.root, photos.list_file, db, encoded=True)
    rep = inspect_db(db)
    assert rep.encoded == len(photos.entries) and rep.raw == 0
    # the 16-bit PNG (stored as it is, as Caffe would) decodes like OpenCV: 8-bit colour
    assert rep.bad == []
    # native channel counts: gray files 1, the RGBA horse 4, colour 3
    want = {}
    for rel, _ in photos.entries:
        im = Image.open(photos.path(rel))
        c = {"L": 1, "RGBA": 4}.get(im.mode, 3)
        shape = (c, im.size[1], im.size[0])
        want[shape] = want.get(shape, 0) + 1
    assert dict(rep.shapes) == want
    r = CliRunner().invoke(inspect_cmd, [str(db)])
    assert r.exit_code == 0
    assert "encoded formats: PNG (5), JPEG (3) [headers only; --verify decodes" in r.output


def _jpeg(arr, quality=90):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def broken_db(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (3, 6, 5), dtype=np.uint8)
    jpeg = _jpeg(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    with LMDBWriter(tmp_path / "db") as w:
        w.put("a_good", encode_datum(good, 1))
        w.put("b_garbage", b"\xff\xff\xff\xff\x0f")
        # channels x height x width says 3 x 6 x 5 = 90 but only 80 bytes follow
        w.put("c_short", field_varint(1, 3) + field_varint(2, 6) + field_varint(3, 5)
              + field_bytes(4, good.tobytes()[:80]) + field_varint(5, 2))
        w.put("d_truncated_jpeg", encode_datum(None, 3, encoded_bytes=jpeg[:len(jpeg) // 2]))
        w.put("e_not_an_image", encode_datum(None, 4, encoded_bytes=b"hello, not an image"))
    return tmp_path / "db", good


def test_bad_records_are_listed(broken_db):
    db, _ = broken_db
    rep = inspect_db(db)
    assert rep.count == 5
    bad = {b.key.decode(): b.reason for b in rep.bad}
    assert set(bad) == {"b_garbage", "c_short", "e_not_an_image"}
    assert "not a Caffe Datum" in bad["b_garbage"]
    assert "holds 80 bytes" in bad["c_short"]
    assert "cannot read the encoded image" in bad["e_not_an_image"]
    rep = inspect_db(db, verify=True)               # decoding finds the truncated JPEG too
    assert {b.key.decode() for b in rep.bad} == {"b_garbage", "c_short", "d_truncated_jpeg",
                                                 "e_not_an_image"}
    r = CliRunner().invoke(inspect_cmd, [str(db), "--verify"])
    assert r.exit_code == 1
    assert "unreadable records: 4" in r.output and "  d_truncated_jpeg: " in r.output


def test_dump_writes_viewable_pngs(photos, tmp_path):
    db = tmp_path / "raw"
    convert_imageset(photos.root, photos.list_file, db, resize_height=16, resize_width=12,
                     gray=False)
    out = tmp_path / "peek"
    r = CliRunner().invoke(inspect_cmd, [str(db), "--dump", "3", str(out)])
    assert r.exit_code == 0, r.output
    assert "wrote 3 PNG file(s)" in r.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["00000_label0_00000000_colour_astronaut_png.png",
                                       "00001_label1_00000001_colour_coffee_jpg.png",
                                       "00002_label2_00000002_colour_chelsea_palette_png.png"]
    for f, (_, v) in zip(files, read_lmdb(db)):
        im = Image.open(f)
        assert im.mode == "RGB"
        # the PNG shows the image the right way round: RGB = the record's BGR reversed
        np.testing.assert_array_equal(np.asarray(im).transpose(2, 0, 1),
                                      datum_pixels(parse_datum(v))[::-1])


def test_dump_gray_and_float_records(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (1, 4, 5), dtype=np.uint8)
    feats = rng.normal(size=(1, 3, 3)).astype(np.float32)
    with LMDBWriter(tmp_path / "db") as w:
        w.put("g", encode_datum(gray, 0))
        w.put("h", encode_datum(None, 1, float_data=feats))
        w.put("i", encode_datum(rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), 2))
    files, notes = dump_images(tmp_path / "db", 10, tmp_path / "out")
    assert [f.name for f in files] == ["00000_label0_g.png", "00001_label1_h.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])), gray[0])
    f = np.asarray(Image.open(files[1])).astype(int)
    assert f.min() == 0 and f.max() == 255
    assert np.argmax(f) == np.argmax(feats[0]) and np.argmin(f) == np.argmin(feats[0])
    assert any("float_data scaled" in n for n in notes)
    assert any(n.startswith("i: not written: 2 channels") for n in notes)
