"""LMDB writer/reader, DataTransformer, and the Input / DummyData / Data layers."""
import io
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import caffeish.config  # noqa: F401
from caffeish.config.schema import Msg
from caffeish.data.datum import datum_to_array, decode_datum, encode_datum
from caffeish.data.lmdb_io import LMDBReader, LMDBWriter
from caffeish.data.transformer import DataTransformer
from caffeish.errors import ConfigError, DataError
from caffeish.io.wire import field_bytes, field_varint
from caffeish.testing import make_layer, setup_layer

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
IMAGESET = SHARED / "caffe_vectors" / "imageset"


def write_db(path, images, labels=None, **kw):
    with LMDBWriter(path, **kw) as w:
        for i, im in enumerate(images):
            w.put("%08d" % i, encode_datum(im, int(labels[i]) if labels is not None else i))
    return path


@pytest.fixture
def small_db(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10, 3, 8, 9), dtype=np.uint8)
    labels = np.arange(10) * 3 % 7
    return write_db(tmp_path / "db", images, labels), images, labels


def write_binaryproto_mean(path, mean):
    """A legacy 4-D BlobProto as compute_image_mean writes it (num 1, packed float data)."""
    c, h, w = mean.shape
    raw = (field_varint(1, 1) + field_varint(2, c) + field_varint(3, h) + field_varint(4, w)
           + field_bytes(5, mean.astype("<f4").tobytes()))
    Path(path).write_bytes(raw)
    return path


# --- LMDBWriter ----------------------------------------------------------------------------------
def test_writer_reader_roundtrip_in_key_order(tmp_path):
    keys = ["b", "a", "c", "aa"]
    with LMDBWriter(tmp_path / "db") as w:
        for k in keys:
            w.put(k, k.upper().encode())
    assert w.count == 4
    r = LMDBReader(tmp_path / "db")
    assert len(r) == 4
    assert list(r) == [(k.encode(), k.upper().encode()) for k in sorted(keys)]
    assert r.keys() == [b"a", b"aa", b"b", b"c"]
    assert r.get("aa") == b"AA" and r.get("zz") is None
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["data.mdb"]
    assert [p.name for p in tmp_path.iterdir()] == ["db"]   # no temporary left behind
    r.close()


def test_writer_failure_leaves_no_db(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with LMDBWriter(tmp_path / "db", commit_every=3) as w:
            for i in range(10):
                w.put("%08d" % i, b"x" * 10)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_keeps_the_old_db_on_overwrite(tmp_path):
    write_db(tmp_path / "db", [np.zeros((1, 2, 2), np.uint8)])
    with pytest.raises(KeyboardInterrupt):
        with LMDBWriter(tmp_path / "db", overwrite=True) as w:
            w.put("x", b"new")
            raise KeyboardInterrupt
    with LMDBReader(tmp_path / "db") as r:
        assert r.keys() == [b"00000000"]
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_writer_refuses_existing_unless_overwrite(tmp_path):
    write_db(tmp_path / "db", [np.zeros((1, 2, 2), np.uint8)] * 3)
    with pytest.raises(DataError, match="already exists.*overwrite"):
        LMDBWriter(tmp_path / "db")
    with LMDBWriter(tmp_path / "db", overwrite=True) as w:
        w.put("only", b"1")
    with LMDBReader(tmp_path / "db") as r:
        assert list(r) == [(b"only", b"1")]
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_writer_grows_a_full_map(tmp_path):
    values = [bytes([i % 256]) * 3000 for i in range(300)]   # ~900 kB into a 64 kB map
    w = LMDBWriter(tmp_path / "db", map_size=64 * 1024, commit_every=50)
    with w:
        for i, v in enumerate(values):
            w.put("%08d" % i, v)
    assert w.map_size > 64 * 1024
    with LMDBReader(tmp_path / "db") as r:
        assert len(r) == 300
        assert [v for _, v in r] == values


# --- LMDBReader -----------------------------------------------------------------------------------
def test_reader_missing_path_says_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        LMDBReader(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)
    assert "caffeish data mnist" in str(e.value) and "convert_imageset" in str(e.value)


def test_reader_rejects_non_lmdb(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an LMDB"):
        LMDBReader(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"not a database" * 1000)
    with pytest.raises(DataError, match="junk.*not a readable LMDB"):
        LMDBReader(tmp_path / "junk")


def test_cursor_wraps_around_and_logs(small_db, caplog):
    path, _, labels = small_db
    with LMDBReader(path) as r:
        c = r.cursor()
        with caplog.at_level(logging.INFO, logger="caffeish.data"):
            got = [decode_datum(c.next()[1]).label for _ in range(23)]
        assert got == [int(labels[i % 10]) for i in range(23)]
        assert c.position == 3 and c.epochs == 2
        assert caplog.text.count("Restarting data prefetching from start") == 2
        c.close()


@pytest.mark.parametrize("use_key", [True, False], ids=["by-key", "by-position"])
def test_cursor_seek(small_db, use_key):
    path, _, _ = small_db
    with LMDBReader(path) as r:
        c = r.cursor()
        for _ in range(7):
            c.next()
        pos, key = c.position, c.key
        want = [c.next()[0] for _ in range(6)]
        c2 = r.cursor(pos, key if use_key else None)
        assert c2.position == 7 and c2.key == b"00000007"
        assert [c2.next()[0] for _ in range(6)] == want
        c2.seek(13)   # positions wrap
        assert c2.key == b"00000003"
        c.close()
        c2.close()


def test_cursor_seek_with_stale_key_walks(small_db):
    path, _, _ = small_db
    with LMDBReader(path) as r:
        c = r.cursor(4, b"no-such-key")
        assert c.key == b"00000004" and c.position == 4
        c.close()


def test_concurrent_readers_without_lock_file(small_db):
    path, images, _ = small_db
    results = {}

    def read(i):
        with LMDBReader(path) as r:
            results[i] = [datum_to_array(decode_datum(v)).copy() for _, v in r]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    held = LMDBReader(path)   # a reader held open the whole time
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(held) == 10
    held.close()
    for i in range(4):
        np.testing.assert_array_equal(np.stack(results[i]), images)
    assert not (path / "lock.mdb").exists()


def test_reads_caffes_lmdb():
    db = IMAGESET / "lmdb_raw_32x32"
    if not db.is_dir():
        pytest.skip(f"Caffe's LMDB not present (looked in {db}); it comes with ../shared")
    keys = (IMAGESET / "lmdb_raw_32x32.keys.txt").read_text().split()
    pixels = np.load(IMAGESET / "lmdb_raw_32x32.pixels_uint8_CHW.npy")
    labels = [h["label"] for h in json.loads((IMAGESET / "lmdb_raw_32x32.datums.json").read_text())]
    with LMDBReader(db) as r:
        assert len(r) == len(keys)
        got = list(r)
        assert [k.decode() for k, _ in got] == keys
        for (_, v), px, lab in zip(got, pixels, labels):
            d = decode_datum(v)
            assert d.label == lab
            np.testing.assert_array_equal(datum_to_array(d), px)
        c = r.cursor(len(keys) - 1)
        assert c.next()[0].decode() == keys[-1] and c.next()[0].decode() == keys[0]
        c.close()


# --- DataTransformer ------------------------------------------------------------------------------
def naive_transform(x, scale=1.0, mean=None, mean_values=None, crop=0, phase="TRAIN",
                    mirror=False, rng=None, dtype=np.float32):
    """Caffe's DataTransformer::Transform written as loops over every element."""
    n, c, h, w = x.shape
    flips = rng.integers(0, 2, n).astype(bool) if mirror else np.zeros(n, bool)
    if crop and phase == "TRAIN":
        hoffs, woffs = rng.integers(0, h - crop + 1, n), rng.integers(0, w - crop + 1, n)
    elif crop:
        hoffs, woffs = [(h - crop) // 2] * n, [(w - crop) // 2] * n
    else:
        hoffs, woffs = [0] * n, [0] * n
    oh, ow = (crop, crop) if crop else (h, w)
    if mean_values is not None and len(mean_values) == 1:
        mean_values = list(mean_values) * c
    out = np.zeros((n, c, oh, ow), dtype)
    s = dtype(scale)
    for i in range(n):
        for ch in range(c):
            for y in range(oh):
                for xx in range(ow):
                    v = dtype(x[i, ch, hoffs[i] + y, woffs[i] + xx])
                    if mean is not None:
                        v = v - dtype(mean[ch, hoffs[i] + y, woffs[i] + xx])
                    elif mean_values is not None:
                        v = v - dtype(mean_values[ch])
                    tx = ow - 1 - xx if flips[i] else xx
                    out[i, ch, y, tx] = v * s
    return out, flips, np.asarray(hoffs), np.asarray(woffs)


BATCH = np.random.default_rng(11).integers(0, 256, (6, 3, 7, 8), dtype=np.uint8)
MEAN = np.random.default_rng(12).uniform(0, 255, (3, 7, 8)).astype(np.float32)

TRANSFORM_CASES = {
    "identity": dict(),
    "scale": dict(scale=0.00390625),
    "mean1-scale": dict(mean_value=[127.5], scale=0.0078125),
    "mean3": dict(mean_value=[104.0, 117.0, 123.0]),
    "meanfile": dict(mean_file=True),
    "meanfile-crop5-test": dict(mean_file=True, crop_size=5),
    "meanfile-crop5-train": dict(mean_file=True, crop_size=5, scale=0.5),
    "crop4-test": dict(crop_size=4),
    "crop4-train-mirror": dict(crop_size=4, mirror=True),
    "mirror-test": dict(mirror=True),
    "crop7-train": dict(crop_size=7),
}


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("case", list(TRANSFORM_CASES))
def test_transformer_matches_naive(case, phase, tmp_path):
    pytest.importorskip("caffeish.io.formats")
    cfg = dict(TRANSFORM_CASES[case])
    mean = None
    if cfg.pop("mean_file", False):
        cfg["mean_file"] = str(write_binaryproto_mean(tmp_path / "mean.binaryproto", MEAN))
        mean = MEAN
    tf = DataTransformer(Msg("TransformationParameter", cfg), phase, np.random.default_rng(5))
    got = tf.transform_batch(BATCH)
    want, flips, hoffs, woffs = naive_transform(
        BATCH, cfg.get("scale", 1.0), mean, cfg.get("mean_value"), cfg.get("crop_size", 0), phase,
        cfg.get("mirror", False), np.random.default_rng(5))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_transformer_random_crop_and_mirror_vary():
    tf = DataTransformer({"crop_size": 3, "mirror": True}, "TRAIN", np.random.default_rng(0))
    flips, hoff, woff = tf.draw(64, 6, 6)
    assert 10 < flips.sum() < 54
    assert set(hoff) == set(range(4)) and set(woff) == set(range(4))
    test_tf = DataTransformer({"crop_size": 3, "mirror": True}, "TEST", np.random.default_rng(0))
    flips, hoff, woff = test_tf.draw(64, 6, 6)
    assert 10 < flips.sum() < 54            # Caffe mirrors at TEST too
    assert set(hoff) == {1} and set(woff) == {1}


def test_transformer_float_input_and_float64():
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    tf = DataTransformer({"mean_value": [0.5, -0.5], "scale": 2.0}, "TEST")
    got = tf.transform_batch(x, dtype=np.float64)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, (x - np.array([0.5, -0.5]).reshape(1, 2, 1, 1)) * 2.0)


def test_transformer_rng_state_roundtrip():
    tf = DataTransformer({"crop_size": 4, "mirror": True}, "TRAIN", np.random.default_rng(9))
    st = tf.get_state()
    a = tf.transform_batch(BATCH)
    tf.set_state(st)
    np.testing.assert_array_equal(tf.transform_batch(BATCH), a)


def test_transformer_errors(tmp_path):
    pytest.importorskip("caffeish.io.formats")
    mean_path = write_binaryproto_mean(tmp_path / "m.binaryproto", MEAN)
    with pytest.raises(ConfigError, match="mean_file and mean_value"):
        DataTransformer({"mean_file": str(mean_path), "mean_value": [1.0]})
    with pytest.raises(DataError, match="crop_size 9 is larger than the 7 x 8"):
        DataTransformer({"crop_size": 9}).transform_batch(BATCH)
    with pytest.raises(DataError, match="either 1 mean_value or as many as channels"):
        DataTransformer({"mean_value": [1.0, 2.0]}).transform_batch(BATCH)
    with pytest.raises(DataError, match="mean_file .* is 3 x 7 x 8 but the records are 3 x 6 x 8"):
        DataTransformer({"mean_file": str(mean_path)}).transform_batch(BATCH[:, :, :6])
    with pytest.raises(DataError, match="mean_file 'missing.binaryproto' not found"):
        DataTransformer({"mean_file": "missing.binaryproto"})


def test_transformer_mean_file_found_beside_net(tmp_path, monkeypatch):
    pytest.importorskip("caffeish.io.formats")
    (tmp_path / "net").mkdir()
    write_binaryproto_mean(tmp_path / "net" / "mean.binaryproto", MEAN)
    monkeypatch.chdir(tmp_path)
    tf = DataTransformer({"mean_file": "mean.binaryproto"}, "TEST", search_dirs=[tmp_path / "net"])
    np.testing.assert_array_equal(tf.transform_batch(BATCH), BATCH.astype(np.float32) - MEAN)


# --- Input and DummyData --------------------------------------------------------------------------
@pytest.mark.parametrize("shapes,n_top,want", [
    ([[2, 3, 4, 5]], 1, [(2, 3, 4, 5)]),
    ([[2, 3]], 2, [(2, 3), (2, 3)]),
    ([[1, 3, 8, 8], [1]], 2, [(1, 3, 8, 8), (1,)]),
], ids=["one-top", "one-shape-two-tops", "shape-per-top"])
def test_input_shapes(shapes, n_top, want):
    layer = make_layer({"type": "Input", "top": [f"t{i}" for i in range(n_top)],
                        "input_param": {"shape": [{"dim": s} for s in shapes]}})
    top = setup_layer(layer, [])
    assert [t.shape for t in top] == want
    top[0].data[...] = 7.0
    top[0].reshape((1, 1))                 # the user may reshape; reshape() keeps it
    layer.reshape([], top)
    layer.forward([], top)
    assert top[0].shape == (1, 1)


def test_input_bad_shape_count():
    layer = make_layer({"type": "Input", "name": "inp", "top": ["a", "b", "c"],
                        "input_param": {"shape": [{"dim": [1]}, {"dim": [2]}]}})
    with pytest.raises(ConfigError, match=r"layer 'inp' \(Input\).*once per top"):
        setup_layer(layer, [])


def test_dummydata_default_is_constant_zero():
    layer = make_layer({"type": "DummyData", "top": ["a", "b"],
                        "dummy_data_param": {"shape": [{"dim": [2, 3]}, {"dim": [4]}]}})
    top = setup_layer(layer, [])
    assert [t.shape for t in top] == [(2, 3), (4,)]
    layer.forward([], top)
    assert all((t.data == 0).all() for t in top)


def test_dummydata_constant_once_random_every_forward():
    layer = make_layer({"type": "DummyData", "top": ["c", "g"], "dummy_data_param": {
        "shape": [{"dim": [3, 4]}],
        "data_filler": [{"type": "constant", "value": 2.5}, {"type": "gaussian", "std": 1.0}]}})
    top = setup_layer(layer, [])
    assert (top[0].data == 2.5).all()
    top[0].data[0, 0] = -1.0                   # constant tops are not refilled (Caffe's refill_)
    g0 = top[1].data.copy()
    layer.forward([], top)
    assert top[0].data[0, 0] == -1.0
    assert not np.array_equal(top[1].data, g0)
    g1 = top[1].data.copy()
    layer.forward([], top)
    assert not np.array_equal(top[1].data, g1)


def test_dummydata_one_filler_for_all_tops_and_legacy_dims():
    layer = make_layer({"type": "DummyData", "top": ["a", "b"], "dummy_data_param": {
        "num": [2], "channels": [3, 1], "height": [4], "width": [5],
        "data_filler": [{"type": "uniform", "min": 1.0, "max": 2.0}]}})
    top = setup_layer(layer, [])
    assert [t.shape for t in top] == [(2, 3, 4, 5), (2, 1, 4, 5)]
    layer.forward([], top)
    for t in top:
        assert ((t.data >= 1.0) & (t.data <= 2.0)).all() and t.data.std() > 0


@pytest.mark.parametrize("param,match", [
    ({"shape": [{"dim": [1]}], "data_filler": [{}, {}, {}]}, "data fillers must be 0, 1"),
    ({"shape": [{"dim": [1]}], "num": [1], "channels": [1], "height": [1], "width": [1]},
     "both shape and legacy"),
    ({"num": [1, 2, 3], "channels": [1], "height": [1], "width": [1]}, "'num' once"),
    ({}, "'shape' once"),
    ({"shape": [{"dim": [2]}], "data_filler": [{"type": "gausian"}]}, "unknown filler type"),
], ids=["filler-count", "shape-and-legacy", "legacy-count", "no-shape", "bad-filler"])
def test_dummydata_errors(param, match):
    layer = make_layer({"type": "DummyData", "name": "dd", "top": ["a", "b"],
                        "dummy_data_param": param})
    with pytest.raises(ConfigError, match=match) as e:
        setup_layer(layer, [])
    assert "layer 'dd' (DummyData)" in str(e.value)


# --- the Data layer -------------------------------------------------------------------------------
def data_spec(source, batch_size=4, transform=None, **data_param):
    spec = {"type": "Data", "name": "data", "top": ["data", "label"],
            "data_param": {"source": str(source), "batch_size": batch_size, **data_param}}
    if transform:
        spec["transform_param"] = transform
    return spec


def run_batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


def build(spec, phase="TRAIN", seed=1701, dtype=np.float32):
    layer = make_layer(spec, phase=phase, dtype=dtype, seed=seed)
    top = setup_layer(layer, [], n_tops=len(spec["top"]))
    return layer, top


def test_data_layer_batches_in_order_with_wraparound(small_db):
    path, images, labels = small_db
    layer, top = build(data_spec(path, 4, {"scale": 0.00390625}))
    try:
        assert [t.shape for t in top] == [(4, 3, 8, 9), (4,)]
        batches = run_batches(layer, top, 4)     # 16 records from 10: wraps once
        for b, (data, lab) in enumerate(batches):
            idx = [(4 * b + i) % 10 for i in range(4)]
            np.testing.assert_array_equal(lab, labels[idx].astype(np.float32))
            np.testing.assert_array_equal(data, images[idx].astype(np.float32)
                                          * np.float32(0.00390625))
    finally:
        layer.close()


def test_data_layer_transform_matches_naive(small_db):
    path, images, _ = small_db
    cfg = {"crop_size": 5, "mirror": True, "mean_value": [10, 20, 30], "scale": 0.5}
    layer, top = build(data_spec(path, 5, cfg), seed=4)
    try:
        (d0, _), (d1, _) = run_batches(layer, top, 2)
        trng = np.random.default_rng(np.random.default_rng(4).integers(0, 2**63))
        want0 = naive_transform(images[:5], 0.5, None, [10, 20, 30], 5, "TRAIN", True, trng)[0]
        want1 = naive_transform(images[5:], 0.5, None, [10, 20, 30], 5, "TRAIN", True, trng)[0]
        np.testing.assert_array_equal(d0, want0)
        np.testing.assert_array_equal(d1, want1)
    finally:
        layer.close()


@pytest.mark.parametrize("prefetch", [4, 1, 0], ids=["prefetch4", "prefetch1", "sync"])
def test_data_layer_exact_resume(small_db, prefetch):
    path, _, _ = small_db
    spec = data_spec(path, 3, {"crop_size": 5, "mirror": True}, prefetch=prefetch)
    layer, top = build(spec, seed=21)
    try:
        run_batches(layer, top, 5)
        state = layer.get_state()
        assert state["position"] == 15 % 10
        json.dumps(state)                         # plain data: can travel in a snapshot
        want = run_batches(layer, top, 6)
    finally:
        layer.close()

    other, top2 = build(spec, seed=999)           # different seed: the state decides
    try:
        other.set_state(state)
        got = run_batches(other, top2, 6)
        for (d, lab), (wd, wl) in zip(got, want):
            np.testing.assert_array_equal(d, wd)
            np.testing.assert_array_equal(lab, wl)
        other.set_state(state)                    # rewinding a running layer works too
        again = run_batches(other, top2, 6)
        for (d, _), (wd, _) in zip(again, want):
            np.testing.assert_array_equal(d, wd)
    finally:
        other.close()


def test_data_layer_same_seed_same_batches_regardless_of_prefetch(small_db):
    path, _, _ = small_db
    outs = []
    for prefetch in (0, 3):
        layer, top = build(data_spec(path, 4, {"crop_size": 6, "mirror": True},
                                     prefetch=prefetch), seed=8)
        outs.append(run_batches(layer, top, 4))
        layer.close()
    for (a, la), (b, lb) in zip(*outs):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_data_layer_test_phase_centre_crop(small_db):
    path, images, labels = small_db
    layer, top = build(data_spec(path, 10, {"crop_size": 4}), phase="TEST")
    try:
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data, images[:, :, 2:6, 2:6].astype(np.float32))
    finally:
        layer.close()


def test_data_layer_rand_skip(small_db):
    path, _, labels = small_db
    firsts = set()
    for seed in range(12):
        layer, top = build(data_spec(path, 1, rand_skip=7), seed=seed)
        layer.forward([], top)
        skip = int(np.random.default_rng(seed).integers(0, 7))
        assert top[1].data[0] == labels[skip]
        firsts.add(skip)
        layer.close()
    assert len(firsts) > 1


def test_data_layer_single_top_and_float64(small_db):
    path, images, _ = small_db
    spec = data_spec(path, 2)
    spec["top"] = ["data"]
    layer, top = build(spec, dtype=np.float64)
    try:
        assert len(top) == 1 and top[0].shape == (2, 3, 8, 9)
        layer.forward([], top)
        assert top[0].data.dtype == np.float64
        np.testing.assert_array_equal(top[0].data, images[:2])
    finally:
        layer.close()


def test_data_layer_encoded_records(tmp_path):
    rng = np.random.default_rng(0)
    rgbs = rng.integers(0, 256, (3, 5, 6, 3), dtype=np.uint8)
    with LMDBWriter(tmp_path / "enc") as w:
        for i, rgb in enumerate(rgbs):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="PNG")
            w.put("%08d" % i, encode_datum(None, i, encoded_bytes=buf.getvalue()))
    layer, top = build(data_spec(tmp_path / "enc", 3))
    try:
        assert top[0].shape == (3, 3, 5, 6)
        layer.forward([], top)
        np.testing.assert_array_equal(top[0].data, rgbs[..., ::-1].transpose(0, 3, 1, 2))
    finally:
        layer.close()


def test_data_layer_varying_shapes_in_a_batch(tmp_path):
    ims = [np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4), np.uint8),
           np.zeros((1, 5, 4), np.uint8)]
    write_db(tmp_path / "mixed", ims)
    layer, top = build(data_spec(tmp_path / "mixed", 3))
    try:
        with pytest.raises(DataError,
                           match=r"record '00000002'.* 1 x 5 x 4 .*'00000000'.*1 x 4 x 4"):
            layer.forward([], top)
    finally:
        layer.close()


def test_data_layer_source_relative_to_cwd_then_net_file(tmp_path, monkeypatch, small_db):
    path, _, labels = small_db
    net_dir = tmp_path / "nets"
    net_dir.mkdir()
    (net_dir / "train.yaml").write_text("# the net file\n")
    path.rename(net_dir / "beside_net")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def layer_from_file(source):
        spec = data_spec(source, 2)
        lp = Msg("LayerParameter", spec, src=(str(net_dir / "train.yaml"), 3))
        from caffeish.layers import layer_class
        layer = layer_class("Data")(lp, phase="TRAIN", dtype=np.float32,
                                    rng=np.random.default_rng(0))
        return layer, setup_layer(layer, [], n_tops=2)

    layer, top = layer_from_file("beside_net")
    layer.forward([], top)
    np.testing.assert_array_equal(top[1].data, labels[:2])
    assert Path(layer.source) == net_dir / "beside_net"
    layer.close()

    write_db(work / "beside_net", [np.zeros((1, 2, 2), np.uint8)], [9])   # cwd wins
    layer, top = layer_from_file("beside_net")
    layer.forward([], top)
    assert top[1].data.tolist() == [9, 9]
    layer.close()

    with pytest.raises(DataError) as e:
        layer_from_file("missing_lmdb")
    msg = str(e.value)
    assert str(work / "missing_lmdb") in msg and str(net_dir / "missing_lmdb") in msg
    assert "train.yaml:3" in msg and "layer 'data' (Data)" in msg
    assert "caffeish data mnist" in msg


def test_data_layer_backend(small_db):
    path, _, _ = small_db
    # LevelDB is read too (tests/data/test_leveldb.py); an LMDB is not one
    with pytest.raises(DataError, match=r"layer 'data' \(Data\).*is an LMDB \(it holds data.mdb\), "
                                        r"but the backend asked for is leveldb"):
        build(data_spec(path, 2, backend="LEVELDB"))
    for backend in ({"backend": "LMDB"}, {"backend": 1}, {}):     # unset: detected
        layer, top = build(data_spec(path, 2, **backend))
        assert isinstance(layer.reader, LMDBReader)
        layer.close()


@pytest.mark.parametrize("param,err,match", [
    ({"batch_size": 0}, ConfigError, "batch_size must be positive"),
    ({"source": ""}, ConfigError, "source is not set"),
], ids=["batch0", "no-source"])
def test_data_layer_bad_params(small_db, param, err, match):
    path, _, _ = small_db
    spec = data_spec(path, 2)
    spec["data_param"].update(param)
    with pytest.raises(err, match=match):
        build(spec)


def test_data_layer_crop_larger_than_records(small_db):
    path, _, _ = small_db
    with pytest.raises(DataError,
                       match=r"layer 'data' \(Data\).*crop_size 9 is larger than the 8 x 9"):
        build(data_spec(path, 2, {"crop_size": 9}))


def test_data_layer_close_stops_prefetching(small_db):
    path, _, _ = small_db
    layer, top = build(data_spec(path, 2))
    layer.forward([], top)
    pf = layer._prefetcher
    assert pf.running
    layer.close()
    assert not pf.running


def test_data_layer_reads_caffes_lmdb():
    db = IMAGESET / "lmdb_raw_32x32"
    if not db.is_dir():
        pytest.skip(f"Caffe's LMDB not present (looked in {db}); it comes with ../shared")
    pixels = np.load(IMAGESET / "lmdb_raw_32x32.pixels_uint8_CHW.npy")
    labels = [h["label"] for h in json.loads((IMAGESET / "lmdb_raw_32x32.datums.json").read_text())]
    layer, top = build(data_spec(db, 8, {"mean_value": [104, 117, 123]}), phase="TEST")
    try:
        batches = run_batches(layer, top, 3)
        data = np.concatenate([b[0] for b in batches])[:20]
        lab = np.concatenate([b[1] for b in batches])[:20]
        np.testing.assert_array_equal(lab, labels)
        np.testing.assert_array_equal(
            data, pixels.astype(np.float32) - np.float32([104, 117, 123]).reshape(1, 3, 1, 1))
    finally:
        layer.close()


def test_train_and_test_layers_share_one_db(small_db):
    path, _, labels = small_db
    train, ttop = build(data_spec(path, 3))
    test, etop = build(data_spec(path, 5), phase="TEST")
    try:
        train.forward([], ttop)
        test.forward([], etop)
        train.forward([], ttop)
        np.testing.assert_array_equal(ttop[1].data, labels[3:6])
        np.testing.assert_array_equal(etop[1].data, labels[:5])
    finally:
        train.close()
        test.close()
    with LMDBReader(path) as r:       # the shared Environment was released and reopens
        assert len(r) == 10
