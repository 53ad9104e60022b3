"""compute_image_mean: the mean of the decoded records, written as a Caffe BlobProto."""
import numpy as np
import pytest
from click.testing import CliRunner

from caffeish.commands.data_cmds import compute_image_mean_main
from caffeish.data.datum import encode_datum
from caffeish.data.lmdb_io import LMDBWriter
from caffeish.errors import DataError
from caffeish.testing import make_layer, setup_layer
from data_tools.compute_image_mean import compute_image_mean, compute_mean
from data_tools.convert_imageset import convert_imageset

from .photos import PhotoSet, datum_pixels, make_photo_set, parse_datum, pb_classes, read_lmdb, \
    write_images


@pytest.fixture(scope="module")
def photo_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mean")
    photos = make_photo_set(tmp)
    db = tmp / "raw_lmdb"
    convert_imageset(photos.root, photos.list_file, db, resize_height=20, resize_width=24)
    return photos, db


def numpy_mean(db) -> np.ndarray:
    """The mean of the records as read with Google's protobuf and numpy (float64)."""
    stack = np.stack([datum_pixels(parse_datum(v)) for _, v in read_lmdb(db)]).astype(np.float64)
    return stack.mean(axis=0)


def read_blobproto(path):
    _, BlobProto = pb_classes()
    b = BlobProto()
    b.ParseFromString(path.read_bytes())
    return b


def test_mean_file_equals_numpy_mean_and_is_a_caffe_blobproto(photo_db, tmp_path):
    photos, db = photo_db
    out, npy = tmp_path / "mean.binaryproto", tmp_path / "mean.npy"
    r = CliRunner().invoke(compute_image_mean_main, [str(db), str(out), "--npy", str(npy)])
    assert r.exit_code == 0, r.output
    want = numpy_mean(db)
    b = read_blobproto(out)
    assert (b.num, b.channels, b.height, b.width) == (1, 3, 20, 24)
    assert not b.HasField("shape")          # legacy 4-D fields, as Caffe's tool writes
    got = np.asarray(b.data, np.float32).reshape(3, 20, 24)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(np.load(npy), got)
    assert np.load(npy).dtype == np.float32 and np.load(npy).shape == (3, 20, 24)
    lines = r.output.splitlines()
    assert "Number of channels: 3" in lines
    for c in range(3):
        assert f"mean_value channel [{c}]: {want[c].mean():.6g}" in lines
    assert f"mean of {len(photos.entries)} records written to" in r.output


def test_encoded_records_give_the_same_mean(photo_db, tmp_path):
    photos, raw_db = photo_db
    enc = tmp_path / "enc"
    convert_imageset(photos.root, photos.list_file, enc, resize_height=20, resize_width=24,
                     encode_type="png")
    assert parse_datum(read_lmdb(enc)[0][1]).encoded
    np.testing.assert_array_equal(compute_mean(enc).mean, compute_mean(raw_db).mean)


def test_gflags_backend_and_leveldb(photo_db, tmp_path):
    _, db = photo_db
    r = CliRunner().invoke(compute_image_mean_main, ["-backend=lmdb", str(db), "--quiet"])
    assert r.exit_code == 0 and r.output == ""
    # LevelDBs are read too (tests/data/test_leveldb.py), but this DB is an LMDB
    r = CliRunner().invoke(compute_image_mean_main, ["--backend", "leveldb", str(db)])
    assert r.exit_code == 2
    assert "is an LMDB (it holds data.mdb), but the backend asked for is leveldb" in r.output
    r = CliRunner().invoke(compute_image_mean_main, ["--backend", "rocksdb", str(db)])
    assert r.exit_code == 2 and "the backends are lmdb and leveldb" in r.output


def test_float_data_records(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(5, 2, 3, 4)).astype(np.float32)
    with LMDBWriter(tmp_path / "f") as w:
        for i, f in enumerate(feats):
            w.put("%08d" % i, encode_datum(None, i, float_data=f))
    res = compute_image_mean(tmp_path / "f", tmp_path / "m.binaryproto")
    assert res.count == 5
    np.testing.assert_allclose(res.mean, feats.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)
    b = read_blobproto(tmp_path / "m.binaryproto")
    assert (b.num, b.channels, b.height, b.width) == (1, 2, 3, 4)


def test_records_of_different_sizes_are_an_error_naming_the_key(tmp_path):
    write_images(tmp_path / "im", 1, size=(12, 10))
    write_images(tmp_path / "im2", 1, size=(8, 8))
    (tmp_path / "im" / "small.png").write_bytes((tmp_path / "im2" / "img0.png").read_bytes())
    lst = PhotoSet.write_list(tmp_path / "l.txt", [("img0.png", 0), ("small.png", 1)])
    convert_imageset(tmp_path / "im", lst, tmp_path / "db")
    r = CliRunner().invoke(compute_image_mean_main, [str(tmp_path / "db"),
                                                     str(tmp_path / "m.binaryproto")])
    assert r.exit_code == 2
    assert "record '00000001_small.png' is 3 x 8 x 8" in r.output
    assert "'00000000_img0.png' is 3 x 10 x 12" in r.output
    assert not (tmp_path / "m.binaryproto").exists()


def test_empty_and_missing_db(tmp_path):
    with LMDBWriter(tmp_path / "empty"):
        pass
    with pytest.raises(DataError, match="holds no records"):
        compute_mean(tmp_path / "empty")
    r = CliRunner().invoke(compute_image_mean_main, [str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_data_layer_subtracts_the_computed_mean(photo_db, tmp_path):
    _, db = photo_db
    mean_file = tmp_path / "mean.binaryproto"
    compute_image_mean(db, mean_file)
    spec = {"type": "Data", "name": "data", "top": ["data", "label"],
            "data_param": {"source": str(db), "batch_size": 4, "backend": "LMDB"},
            "transform_param": {"mean_file": str(mean_file)}}
    px = np.stack([datum_pixels(parse_datum(v)) for _, v in read_lmdb(db)[:4]])
    mean = np.asarray(read_blobproto(mean_file).data, np.float32).reshape(3, 20, 24)
    layer = make_layer(spec, phase="TEST", dtype=np.float32)
    top = setup_layer(layer, [], 2)
    try:
        layer.forward([], top)
        np.testing.assert_allclose(top[0].data, px.astype(np.float32) - mean, atol=1e-5)
    finally:
        layer.close()
