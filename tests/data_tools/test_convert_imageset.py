"""convert_imageset: real photos -> Caffe LMDBs, checked record by record; Caffe's own output."""
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from caffeish.commands.data_cmds import convert_imageset_main, normalize_gflags
from caffeish.data.datum import datum_to_array, decode_datum
from caffeish.errors import DataError
from data_tools import convert_imageset as conv_mod
from data_tools.convert_imageset import convert_imageset
from caffeish.data.images import decode_image, read_image, resize_linear

from .photos import (PhotoSet, caffe_imageset, datum_pixels, make_photo_set, parse_datum,
                     read_lmdb, reference_resize, write_images)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_set(tmp_path_factory.mktemp("photoset"))


def run(*args):
    result = CliRunner().invoke(convert_imageset_main, [str(a) for a in args])
    return result


def chw(img):
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


# --- records decode back to the source pixels --------------------------------------------------
def test_raw_records_hold_the_source_pixels_in_bgr_chw(photos, tmp_path):
    db = tmp_path / "raw_lmdb"
    r = run("--threads", 2, str(photos.root) + "/", photos.list_file, db)
    assert r.exit_code == 0, r.output
    assert f"wrote {len(photos.entries)} of {len(photos.entries)} images" in r.output
    records = read_lmdb(db)
    assert [k for k, _ in records] == ["%08d_%s" % (i, p) for i, (p, _) in
                                       enumerate(photos.entries)]
    for (key, value), (rel, label) in zip(records, photos.entries):
        d = parse_datum(value)                      # Google's protobuf, not our codec
        assert d.label == label
        assert d.HasField("encoded") and not d.encoded     # Caffe writes encoded: false
        want = photos.expected(rel)
        assert (d.channels, d.height, d.width) == (3,) + want.shape[:2], rel
        np.testing.assert_array_equal(datum_pixels(d), chw(want), err_msg=rel)
    # The colour PNG is exactly the array we saved, channel 0 being blue.
    d = parse_datum(records[0][1])
    np.testing.assert_array_equal(datum_pixels(d)[0], photos.src["colour/astronaut.png"][:, :, 2])


def test_gray_records_use_opencv_gray_conversions(photos, tmp_path):
    db = tmp_path / "gray_lmdb"
    r = run("--gray", "--quiet", photos.root, photos.list_file, db)   # root without '/'
    assert r.exit_code == 0, r.output
    assert r.output == ""
    for (key, value), (rel, label) in zip(read_lmdb(db), photos.entries):
        d = parse_datum(value)
        want = photos.expected(rel, is_color=False)
        assert (d.channels, d.height, d.width) == (1,) + want.shape, rel
        np.testing.assert_array_equal(datum_pixels(d)[0], want, err_msg=rel)


def test_resized_records_match_the_inter_linear_reference(photos, tmp_path):
    db = tmp_path / "resized"
    # 20 x 24 shrinks every photo by non-integer factors (upscaling is tested below).
    r = run("--resize_height", 20, "--resize_width=24", photos.root, photos.list_file, db)
    assert r.exit_code == 0, r.output
    for (key, value), (rel, label) in zip(read_lmdb(db), photos.entries):
        d = parse_datum(value)
        assert (d.channels, d.height, d.width) == (3, 20, 24)
        want = reference_resize(photos.expected(rel), 20, 24)
        np.testing.assert_array_equal(datum_pixels(d), chw(want), err_msg=rel)


def test_upscale_and_exact_halving_match_the_reference(tmp_path):
    arrays = write_images(tmp_path / "im", 3, size=(12, 10))
    lst = PhotoSet.write_list(tmp_path / "l.txt", [(f"img{i}.png", i) for i in range(3)])
    for h, w in ((5, 6), (23, 17)):     # (5, 6) is the 2 x 2 box path, (23, 17) an upscale
        db = tmp_path / f"db{h}"
        convert_imageset(tmp_path / "im", lst, db, resize_height=h, resize_width=w)
        for (_, v), a in zip(read_lmdb(db), arrays):
            np.testing.assert_array_equal(datum_pixels(parse_datum(v)),
                                          chw(reference_resize(a[:, :, ::-1], h, w)))


def test_one_resize_side_alone_keeps_the_size_like_caffe(tmp_path):
    write_images(tmp_path / "im", 1, size=(12, 10))
    lst = PhotoSet.write_list(tmp_path / "l.txt", [("img0.png", 0)])
    err = io.StringIO()
    convert_imageset(tmp_path / "im", lst, tmp_path / "db", resize_height=8, stream=err)
    assert "not resized" in err.getvalue()
    assert parse_datum(read_lmdb(tmp_path / "db")[0][1]).height == 10


# --- an LMDB written by real Caffe --------------------------------------------------------------
def test_same_bytes_as_caffes_convert_imageset(tmp_path):
    d = caffe_imageset()
    db = tmp_path / "ours"
    r = run("--resize_height=32", "--resize_width=32", "--shuffle=false", str(d / "images") + "/",
            d / "list.txt", db)
    assert r.exit_code == 0, r.output
    ours, caffe = read_lmdb(db), read_lmdb(d / "lmdb_raw_32x32")
    assert [k for k, _ in ours] == (d / "lmdb_raw_32x32.keys.txt").read_text().split()
    headers = json.loads((d / "lmdb_raw_32x32.datums.json").read_text())
    pixels = np.load(d / "lmdb_raw_32x32.pixels_uint8_CHW.npy")
    for (k, v), h, px in zip(ours, headers, pixels):
        dd = parse_datum(v)
        assert dd.label == h["label"] and (dd.channels, dd.height, dd.width) == (3, 32, 32)
        assert len(v) == h["value_len"]
        # Decoding (Pillow vs OpenCV's libjpeg/libpng) and resizing (our INTER_LINEAR) agree
        # exactly with Caffe here: measured difference 0 on all 20 images, PNG and JPEG.
        np.testing.assert_array_equal(datum_pixels(dd), px, err_msg=k)
    assert ours == caffe                # every key and value byte-identical


# --- OpenCV itself, when installed -------------------------------------------------------------
def test_decode_and_resize_equal_opencv(photos):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed: skipping "
                              "the direct comparison with cv2.imread / cv2.resize")
    for rel, _ in photos.entries:
        p = str(photos.path(rel))
        for colour, flag in ((True, cv2.IMREAD_COLOR), (False, cv2.IMREAD_GRAYSCALE)):
            want = cv2.imread(p, flag)
            np.testing.assert_array_equal(decode_image(p, colour), want, err_msg=rel)
            np.testing.assert_array_equal(read_image(p, 21, 17, colour),
                                          cv2.resize(want, (17, 21)), err_msg=rel)
    rng = np.random.default_rng(7)
    for t in range(300):
        sh, sw, h, w = (int(v) for v in rng.integers(1, 70, 4))
        if t % 4 == 0:
            sh, sw = 2 * h, 2 * w
        img = rng.integers(0, 256, (sh, sw, 3) if t % 2 else (sh, sw), dtype=np.uint8)
        np.testing.assert_array_equal(resize_linear(img, h, w), cv2.resize(img, (w, h)),
                                      err_msg=f"{sh}x{sw} -> {h}x{w}")


# --- encoded records ----------------------------------------------------------------------------
def test_encoded_keeps_the_original_files(photos, tmp_path):
    db = tmp_path / "enc"
    r = run("--encoded", photos.root, photos.list_file, db)
    assert r.exit_code == 0, r.output
    for (k, v), (rel, label) in zip(read_lmdb(db), photos.entries):
        d = parse_datum(v)
        assert d.encoded and d.label == label
        assert not d.HasField("channels") and not d.HasField("height")
        assert d.data == photos.path(rel).read_bytes()          # the file, byte for byte
        np.testing.assert_array_equal(decode_image(d.data), photos.expected(rel), err_msg=rel)
        if photos.src.get(rel) is not None and photos.src[rel].dtype == np.uint16:
            continue    # the Data layer's decoder (caffeish.data.datum) takes 8-bit images only
        got = datum_to_array(decode_datum(v), force_color=True)
        np.testing.assert_array_equal(got, chw(photos.expected(rel)), err_msg=rel)


def test_encode_type_png_with_resize_is_lossless(photos, tmp_path):
    raw, enc = tmp_path / "raw", tmp_path / "png"
    convert_imageset(photos.root, photos.list_file, raw, resize_height=16, resize_width=16)
    r = run("--encode_type", "png", "--resize_height", 16, "--resize_width", 16,
            photos.root, photos.list_file, enc)
    assert r.exit_code == 0, r.output
    for (k1, v1), (k2, v2) in zip(read_lmdb(raw), read_lmdb(enc)):
        assert k1 == k2
        d = parse_datum(v2)
        assert d.encoded and d.data[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(datum_to_array(decode_datum(v2)), datum_pixels(
            parse_datum(v1)))


def test_gray_encoded_png_like_caffe(photos, tmp_path):
    """The issue's `--gray --encoded --encode_type png`: PNG files needing no resize are copied
    as they are (Caffe's rule, with a note when they are colour); other files are re-encoded
    as one-channel PNGs."""
    db = tmp_path / "digits"
    r = run("--gray", "--encoded", "--encode_type", "png", photos.root, photos.list_file, db)
    assert r.exit_code == 0, r.output
    assert "stored unchanged despite --gray" in r.output
    for (k, v), (rel, label) in zip(read_lmdb(db), photos.entries):
        d = decode_datum(v)
        assert d.encoded and d.data[:4] == b"\x89PNG"
        if rel.endswith(".png"):
            assert d.data == photos.path(rel).read_bytes()
            np.testing.assert_array_equal(decode_image(d.data, is_color=False),
                                          photos.expected(rel, is_color=False))
        else:
            arr = datum_to_array(d)
            assert arr.shape[0] == 1
            np.testing.assert_array_equal(arr[0], photos.expected(rel, is_color=False))


def test_encode_type_jpg_recompresses(photos, tmp_path):
    db = tmp_path / "jpg"
    convert_imageset(photos.root, photos.list_file, db, encode_type="jpg")
    for (k, v), (rel, _) in zip(read_lmdb(db), photos.entries):
        d = decode_datum(v)
        assert d.encoded and d.data[:2] == b"\xff\xd8"
        if rel.endswith((".jpg", ".jpeg")):
            assert d.data == photos.path(rel).read_bytes()
        else:   # quality 95, 4:2:0 chroma on small detailed photos: close, not equal
            diff = np.abs(datum_to_array(d).astype(int) - chw(photos.expected(rel)))
            assert diff.mean() < 8, rel


# --- shuffle, flags ------------------------------------------------------------------------------
def test_shuffle_is_seeded_and_keys_follow_the_new_order(photos, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for db in (a, b):
        r = run("--shuffle", "--seed", 11, "--resize_height", 8, "--resize_width", 8,
                photos.root, photos.list_file, db)
        assert r.exit_code == 0, r.output
        assert "--seed 11" in r.output
    ra, rb = read_lmdb(a), read_lmdb(b)
    assert ra == rb
    paths = [k.split("_", 1)[1] for k, _ in ra]
    assert sorted(paths) == sorted(p for p, _ in photos.entries)
    assert paths != [p for p, _ in photos.entries]
    assert [k[:8] for k, _ in ra] == ["%08d" % i for i in range(len(ra))]
    labels = dict(photos.entries)
    assert [parse_datum(v).label for _, v in ra] == [labels[p] for p in paths]


def test_gflags_spellings():
    bools, values = {"gray", "shuffle"}, {"resize_height", "backend"}
    assert normalize_gflags(["-gray", "--shuffle=false", "-resize_height=5", "--backend", "lmdb",
                             "-nogray", "--gray=TRUE", "x", "-h"], bools, values) == \
        ["--gray", "--noshuffle", "--resize_height=5", "--backend", "lmdb", "--nogray", "--gray",
         "x", "-h"]
    with pytest.raises(Exception, match="true or false"):
        normalize_gflags(["--gray=maybe"], bools, values)


def test_gflags_on_the_command_line(photos, tmp_path):
    db = tmp_path / "g"
    r = run("-resize_height=12", "-resize_width", 10, "--gray=true", "-shuffle=false",
            "-backend=lmdb", photos.root, photos.list_file, db)
    assert r.exit_code == 0, r.output
    d = parse_datum(read_lmdb(db)[0][1])
    assert (d.channels, d.height, d.width) == (1, 12, 10)


def test_progress_lines_and_quiet(tmp_path):
    write_images(tmp_path / "im", 6)
    lst = PhotoSet.write_list(tmp_path / "l.txt", [(f"img{i}.png", i) for i in range(6)])
    err = io.StringIO()
    convert_imageset(tmp_path / "im", lst, tmp_path / "a", stream=err, progress_every_s=0,
                     threads=1)
    lines = err.getvalue().splitlines()
    assert len(lines) == 6 and lines[-1].startswith("convert_imageset: 6/6 images (")
    assert "images/s, ETA 0:00:00)" in lines[-1]
    err = io.StringIO()
    convert_imageset(tmp_path / "im", lst, tmp_path / "b", stream=err, progress_every_s=0,
                     quiet=True)
    assert err.getvalue() == ""


def test_check_size(tmp_path):
    write_images(tmp_path / "im", 2, size=(12, 10))
    Image.new("RGB", (7, 9)).save(tmp_path / "im" / "odd.png")
    lst = PhotoSet.write_list(tmp_path / "l.txt", [("img0.png", 0), ("odd.png", 1),
                                                  ("img1.png", 0)])
    r = run("--check_size", tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 2
    assert "--check_size" in r.output and "odd.png is 3 x 9 x 7" in r.output
    assert "img0.png is 3 x 10 x 12" in r.output
    assert not (tmp_path / "db").exists() and sorted(p.name for p in tmp_path.iterdir()) == \
        ["im", "l.txt"]
    r = run("--check_size", "--resize_height=4", "--resize_width=4", tmp_path / "im", lst,
            tmp_path / "db")
    assert r.exit_code == 0 and len(read_lmdb(tmp_path / "db")) == 3


# --- bad inputs -----------------------------------------------------------------------------------
@pytest.fixture
def with_bad_images(tmp_path):
    arrays = write_images(tmp_path / "im", 3)
    good_jpeg = io.BytesIO()
    Image.fromarray(arrays[0]).resize((64, 64)).save(good_jpeg, "JPEG")
    (tmp_path / "im" / "truncated.jpg").write_bytes(good_jpeg.getvalue()[:400])
    (tmp_path / "im" / "notes.png").write_text("this is a text file, not a PNG\n")
    entries = [("img0.png", 0), ("missing.png", 1), ("img1.png", 1), ("truncated.jpg", 2),
               ("notes.png", 3), ("img2.png", 2)]
    return tmp_path, PhotoSet.write_list(tmp_path / "list.txt", entries), arrays


def test_unreadable_images_are_skipped_counted_and_listed(with_bad_images):
    tmp, lst, arrays = with_bad_images
    r = run(tmp / "im", lst, tmp / "db")
    assert r.exit_code == 1
    warnings = [ln for ln in r.output.splitlines() if ": warning: skipping " in ln]
    assert len(warnings) == 3
    assert "missing.png: no such file" in warnings[0]
    assert "truncated.jpg: cannot decode the image" in warnings[1]
    assert "notes.png: cannot decode the image" in warnings[2]
    assert "wrote 3 of 6 images" in r.output
    assert "3 skipped: missing.png (no such file), truncated.jpg (cannot decode" in r.output
    assert "--skip_bad" in r.output
    records = read_lmdb(tmp / "db")
    # Keys keep the line numbers, so skipped lines leave gaps (as in Caffe).
    assert [k for k, _ in records] == ["00000000_img0.png", "00000002_img1.png",
                                       "00000005_img2.png"]
    for (k, v), a in zip(records, arrays):
        np.testing.assert_array_equal(datum_pixels(parse_datum(v)), chw(a[:, :, ::-1]))
    r = run("--skip_bad", "--overwrite", tmp / "im", lst, tmp / "db")
    assert r.exit_code == 0 and "wrote 3 of 6 images" in r.output


@pytest.mark.parametrize("line, message", [
    ("img0.png", "list.txt:2: 'img0.png' has no label"),
    ("img0.png zero", "list.txt:2: label 'zero' is not an integer"),
    ("img0.png 1.5", "list.txt:2: label '1.5' is not an integer"),
], ids=["no-label", "word-label", "float-label"])
def test_bad_list_lines_stop_before_anything_is_written(tmp_path, line, message):
    write_images(tmp_path / "im", 1)
    lst = tmp_path / "list.txt"
    lst.write_text(f"img0.png 0\n{line}\n")
    r = run(tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 2
    assert r.output.startswith("convert_imageset: error: 1 bad line(s) in list file")
    assert message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "db").exists()


def test_empty_list(tmp_path):
    (tmp_path / "list.txt").write_text("\n  \n")
    r = run(tmp_path, tmp_path / "list.txt", tmp_path / "db")
    assert r.exit_code == 2 and "lists no images" in r.output
    assert not (tmp_path / "db").exists()


def test_paths_with_spaces_split_at_the_last_space(photos, tmp_path):
    rel = "gray/coins photo.jpg"
    lst = PhotoSet.write_list(tmp_path / "l.txt", [(rel, 7)])
    convert_imageset(photos.root, lst, tmp_path / "db")
    (k, v), = read_lmdb(tmp_path / "db")
    assert k == "00000000_gray/coins photo.jpg" and parse_datum(v).label == 7


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    write_images(tmp_path / "im", 2)
    lst = PhotoSet.write_list(tmp_path / "l.txt", [("img0.png", 0), ("img1.png", 1)])
    assert run(tmp_path / "im", lst, tmp_path / "db").exit_code == 0
    before = read_lmdb(tmp_path / "db")
    lst.write_text("img1.png 5\n")
    r = run(tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    assert read_lmdb(tmp_path / "db") == before
    r = run("--overwrite", tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 0
    assert [(k, parse_datum(v).label) for k, v in read_lmdb(tmp_path / "db")] == \
        [("00000000_img1.png", 5)]


def test_nothing_readable_writes_nothing(tmp_path):
    lst = PhotoSet.write_list(tmp_path / "l.txt", [("a.png", 0), ("b.png", 1)])
    r = run(tmp_path, lst, tmp_path / "db")
    assert r.exit_code == 2 and "none of the 2 images" in r.output
    assert not (tmp_path / "db").exists()


def test_unknown_backends_and_encodings_are_errors(tmp_path):
    write_images(tmp_path / "im", 1)
    lst = PhotoSet.write_list(tmp_path / "l.txt", [("img0.png", 0)])
    r = run("--backend", "leveldbx", tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 2
    assert "unknown --backend 'leveldbx'; the backends are lmdb and leveldb" in r.output
    r = run("--encode_type", "xyz", tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 2 and "cannot encode images as 'xyz'" in r.output
    with pytest.raises(DataError, match="root folder"):
        convert_imageset(str(tmp_path / "nope") + "/", lst, tmp_path / "db")


def test_interrupted_run_leaves_no_database(tmp_path, monkeypatch):
    write_images(tmp_path / "im", 8)
    lst = PhotoSet.write_list(tmp_path / "l.txt", [(f"img{i}.png", i) for i in range(8)])
    calls = []
    real = conv_mod.decode_image

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(conv_mod, "decode_image", flaky)
    r = run("--threads", 1, "--quiet", tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 130 and "interrupted" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im", "l.txt"]
