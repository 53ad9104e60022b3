"""LevelDB, Caffe's other database backend: writer, reader and cursor (the LMDB guarantees), the
backend factory and its detection, and convert_imageset / compute_image_mean / Data layer /
training from a LevelDB giving exactly what the same data in an LMDB gives."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import caffeish.config  # noqa: F401
from caffeish.commands.data_cmds import compute_image_mean_main, convert_imageset_main, inspect_cmd
from caffeish.data import leveldb_io
from caffeish.data.datum import encode_datum
from caffeish.data.db import backend_name, db_writer, detect_backend, open_db
from caffeish.data.leveldb_io import LevelDBCursor, LevelDBReader, LevelDBWriter
from caffeish.data.lmdb_io import LMDBReader, LMDBWriter
from caffeish.errors import DataError
from caffeish.testing import make_layer, setup_layer

PLYVEL_MISSING = ("plyvel is not installed (caffeish's LevelDB binding): "
                  "pip install 'caffeish[leveldb]'")


@pytest.fixture
def plyvel():
    return pytest.importorskip("plyvel", reason=PLYVEL_MISSING)


def write_leveldb(path, items, **kw):
    with LevelDBWriter(path, **kw) as w:
        for k, v in items:
            w.put(k, v)
    return path


@pytest.fixture
def small_leveldb(plyvel, tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10, 3, 8, 9), dtype=np.uint8)
    labels = np.arange(10) * 3 % 7
    path = write_leveldb(tmp_path / "db", [("%08d" % i, encode_datum(im, int(labels[i])))
                                           for i, im in enumerate(images)])
    return path, images, labels


def no_hidden_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


# --- LevelDBWriter -------------------------------------------------------------------------------
def test_writer_reader_roundtrip_in_key_order(plyvel, tmp_path):
    keys = ["b", "a", "c", "aa"]
    with LevelDBWriter(tmp_path / "db", commit_every=3) as w:
        for k in keys:
            w.put(k, k.upper().encode())
    assert w.count == 4
    assert (tmp_path / "db" / "CURRENT").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["db"]     # no temporary left behind
    with LevelDBReader(tmp_path / "db") as r:
        assert len(r) == 4
        assert list(r) == [(k.encode(), k.upper().encode()) for k in sorted(keys)]
        assert r.keys() == [b"a", b"aa", b"b", b"c"]
        assert r.get("aa") == b"AA" and r.get(b"zz") is None
        assert "4 records" in repr(r)
    # an independent reader (plyvel itself) sees the same records
    db = plyvel.DB(str(tmp_path / "db"))
    try:
        assert list(db) == [(k.encode(), k.upper().encode()) for k in sorted(keys)]
    finally:
        db.close()


def test_writer_failure_leaves_no_db(plyvel, tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with LevelDBWriter(tmp_path / "db", commit_every=3) as w:
            for i in range(10):
                w.put("%08d" % i, b"x" * 10)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_an_existing_target_and_overwrite_keeps_the_old_db_on_failure(
        plyvel, tmp_path):
    write_leveldb(tmp_path / "db", [("old", b"1")])
    with pytest.raises(DataError, match=r"db already exists.*overwrite"):
        LevelDBWriter(tmp_path / "db")
    with pytest.raises(KeyboardInterrupt):
        with LevelDBWriter(tmp_path / "db", overwrite=True) as w:
            w.put("new", b"2")
            raise KeyboardInterrupt
    with LevelDBReader(tmp_path / "db") as r:
        assert list(r) == [(b"old", b"1")]
    write_leveldb(tmp_path / "db", [("new", b"2")], overwrite=True)
    with LevelDBReader(tmp_path / "db") as r:
        assert list(r) == [(b"new", b"2")]
    assert no_hidden_leftovers(tmp_path)


def test_snappy_compressed_tables_are_read(plyvel, tmp_path):
    """Caffe's LevelDBs hold snappy-compressed table blocks. With a small write buffer the writer
    flushes tables while writing: compressible records take a fraction of their size on disk
    (LevelDB's default compression, as Caffe writes) and read back unchanged."""
    path = tmp_path / "snappy"
    values = [bytes([i % 7]) * 2000 for i in range(300)]
    write_leveldb(path, [(b"%08d" % i, v) for i, v in enumerate(values)],
                  write_buffer_size=1 << 16, commit_every=50)
    tables = list(path.glob("*.ldb"))
    assert tables and sum(t.stat().st_size for t in tables) < sum(map(len, values)) / 5
    with LevelDBReader(path) as r:
        assert len(r) == 300
        assert [v for _, v in r] == values


# --- LevelDBReader / LevelDBCursor ---------------------------------------------------------------
def test_cursor_wraps_around_and_counts_epochs(small_leveldb):
    path, _, _ = small_leveldb
    keys = [b"%08d" % i for i in range(10)]
    with LevelDBReader(path) as r:
        c = r.cursor()
        assert isinstance(c, LevelDBCursor) and len(c) == 10
        got = [c.next()[0] for _ in range(23)]
        assert got == [keys[i % 10] for i in range(23)]
        assert (c.position, c.epochs, c.key) == (3, 2, keys[3])
        assert c.peek()[0] == keys[3] and c.position == 3         # peek does not move
        c.close()


def test_cursor_seek_by_position_and_by_key(small_leveldb):
    path, _, labels = small_leveldb
    with LevelDBReader(path) as r:
        c = r.cursor(position=13)                  # modulo the record count
        assert (c.position, c.key) == (3, b"00000003")
        c.seek(7)
        assert [next(c)[0] for _ in range(4)] == [b"00000007", b"00000008", b"00000009",
                                                   b"00000000"]
        c.seek(6, b"00000006")                     # jump straight to the key
        assert (c.position, c.key) == (6, b"00000006")
        c.seek(1, b"00000008")                     # the key decides where (as LMDBCursor)
        assert (c.position, c.key) == (1, b"00000008")
        c.seek(2, "00000005x")                     # a key no longer there: walk to the position
        assert (c.position, c.key) == (2, b"00000002")
        c.seek(4, b"zzz")                          # past the last key: the same
        assert (c.position, c.key) == (4, b"00000004")
        c.close()
        c2 = r.cursor(5, b"00000005")
        assert c2.next()[0] == b"00000005" and c2.position == 6
        c2.close()


def test_several_readers_of_one_db_in_a_process(small_leveldb, plyvel):
    path, _, _ = small_leveldb
    a = LevelDBReader(path)
    b = LevelDBReader(path)            # LevelDB alone would refuse: its LOCK is held
    ca, cb = a.cursor(), b.cursor(4)
    assert ca.next()[0] == b"00000000" and cb.next()[0] == b"00000004"
    a.close()
    ca.close()
    assert cb.next()[0] == b"00000005" and len(b) == 10 and b.get("00000009") is not None
    cb.close()
    b.close()
    db = plyvel.DB(str(path))          # the last reader closed the database: the lock is free
    db.close()


def test_a_db_open_in_another_process_is_a_clear_error(small_leveldb):
    path, _, _ = small_leveldb
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, plyvel
            db = plyvel.DB({str(path)!r})
            print("open", flush=True)
            sys.stdin.read()
            db.close()""")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(DataError) as e:
            LevelDBReader(path)
        msg = str(e.value)
        assert str(path) in msg and "open in another process" in msg and "LMDB" in msg
    finally:
        holder.communicate("", timeout=30)
    with LevelDBReader(path) as r:     # and nothing was left half-open here
        assert len(r) == 10


def test_not_a_leveldb_names_the_path(plyvel, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=rf"{tmp_path / 'empty'} is not a LevelDB.*no CURRENT"):
        LevelDBReader(tmp_path / "empty")
    with pytest.raises(DataError, match=rf"LevelDB {tmp_path / 'nope'} does not exist"):
        LevelDBReader(tmp_path / "nope")
    with LMDBWriter(tmp_path / "lmdb") as w:
        w.put("a", b"1")
    with pytest.raises(DataError, match=r"is not a LevelDB.*looks like an LMDB"):
        LevelDBReader(tmp_path / "lmdb")
    # and the LMDB reader says what a LevelDB is
    write_leveldb(tmp_path / "ldb", [("a", b"1")])
    with pytest.raises(DataError, match=r"ldb is a LevelDB \(it holds CURRENT\), not an LMDB"):
        LMDBReader(tmp_path / "ldb")


def test_empty_leveldb_has_no_cursor(plyvel, tmp_path):
    write_leveldb(tmp_path / "db", [])
    with LevelDBReader(tmp_path / "db") as r:
        assert len(r) == 0 and list(r) == []
        with pytest.raises(DataError, match="holds no records"):
            r.cursor()


def test_missing_plyvel_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "ldb").mkdir()
    (tmp_path / "ldb" / "CURRENT").write_text("MANIFEST-000002\n")   # looks like a LevelDB
    monkeypatch.setitem(sys.modules, "plyvel", None)                 # import plyvel fails
    hint = r"pip install 'caffeish\[leveldb\]'"
    with pytest.raises(DataError, match=rf"reading the LevelDB {tmp_path / 'ldb'} needs the "
                                        rf"plyvel package.*{hint}"):
        LevelDBReader(tmp_path / "ldb")
    with pytest.raises(DataError, match=rf"reading the LevelDB .*{hint}"):
        open_db(tmp_path / "ldb")
    with pytest.raises(DataError, match=rf"writing the LevelDB {tmp_path / 'new'} .*{hint}"):
        db_writer(tmp_path / "new", "leveldb")
    assert not (tmp_path / "new").exists()
    r = CliRunner().invoke(convert_imageset_main, ["--backend", "leveldb", str(tmp_path) + "/",
                                                   str(tmp_path / "l.txt"), str(tmp_path / "db")])
    assert r.exit_code == 2 and "pip install 'caffeish[leveldb]'" in r.output


# --- the factory ---------------------------------------------------------------------------------
@pytest.mark.parametrize("given,want", [
    ("lmdb", "lmdb"), ("LMDB", "lmdb"), (1, "lmdb"), ("1", "lmdb"), ("leveldb", "leveldb"),
    ("LEVELDB", "leveldb"), ("LevelDB", "leveldb"), (0, "leveldb"), (None, None), ("", None)])
def test_backend_names(given, want):
    assert backend_name(given) == want


@pytest.mark.parametrize("bad", ["rocksdb", 2, True, "level db"])
def test_unknown_backend_lists_the_valid_ones(bad):
    with pytest.raises(DataError, match=r"unknown database backend .*lmdb.*leveldb"):
        backend_name(bad)
    with pytest.raises(DataError, match="unknown database backend"):
        db_writer("/nonexistent/x", bad)


def test_open_db_detects_the_backend_and_refuses_a_mismatch(plyvel, tmp_path):
    with LMDBWriter(tmp_path / "lmdb") as w:
        w.put("k", b"lmdb")
    write_leveldb(tmp_path / "ldb", [("k", b"leveldb")])
    (tmp_path / "neither").mkdir()
    assert detect_backend(tmp_path / "lmdb") == "lmdb"
    assert detect_backend(tmp_path / "lmdb" / "data.mdb") == "lmdb"
    assert detect_backend(tmp_path / "ldb") == "leveldb"
    assert detect_backend(tmp_path / "neither") is None
    for backend in (None, "lmdb", "LMDB", 1):
        with open_db(tmp_path / "lmdb", backend) as r:
            assert isinstance(r, LMDBReader) and r.get("k") == b"lmdb"
    for backend in (None, "leveldb", "LEVELDB", 0):
        with open_db(tmp_path / "ldb", backend) as r:
            assert isinstance(r, LevelDBReader) and r.get("k") == b"leveldb"
    with pytest.raises(DataError, match=r"ldb is a LevelDB \(it holds CURRENT\), but the backend "
                                        r"asked for is lmdb; ask for leveldb"):
        open_db(tmp_path / "ldb", "lmdb")
    with pytest.raises(DataError, match=r"lmdb is an LMDB \(it holds data.mdb\), but the backend "
                                        r"asked for is leveldb; ask for lmdb"):
        open_db(tmp_path / "lmdb", "LEVELDB")
    with pytest.raises(DataError, match=r"neither is neither an LMDB .* nor a LevelDB"):
        open_db(tmp_path / "neither")
    with pytest.raises(DataError, match=r"neither is not a LevelDB"):
        open_db(tmp_path / "neither", "leveldb")
    with pytest.raises(DataError, match=r"database .*missing does not exist"):
        open_db(tmp_path / "missing")
    assert isinstance(db_writer(tmp_path / "w1", "leveldb"), LevelDBWriter)
    assert isinstance(db_writer(tmp_path / "w2", None), LMDBWriter)


# --- convert_imageset, compute_image_mean, inspect, Data layer, training -------------------------
def write_pngs(root, n, seed=0, size=(12, 10)):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / f"img{i}.png")
        entries.append((f"img{i}.png", i % 4))
    lst = root.parent / "list.txt"
    lst.write_text("".join(f"{p} {lab}\n" for p, lab in entries))
    return lst


def convert(*args):
    return CliRunner().invoke(convert_imageset_main, [str(a) for a in args])


@pytest.fixture
def both_dbs(plyvel, tmp_path):
    """The same 7 images converted by the CLI into an LMDB and into a LevelDB."""
    lst = write_pngs(tmp_path / "im", 7)
    for backend in ("lmdb", "leveldb"):
        r = convert("--backend", backend, "--shuffle", "--seed", 3, tmp_path / "im", lst,
                    tmp_path / backend)
        assert r.exit_code == 0, r.output
        assert "wrote 7 of 7 images" in r.output
    return tmp_path / "lmdb", tmp_path / "leveldb"


def test_convert_imageset_leveldb_holds_the_lmdb_records(both_dbs):
    lmdb_path, leveldb_path = both_dbs
    assert detect_backend(leveldb_path) == "leveldb"
    with LMDBReader(lmdb_path) as a, LevelDBReader(leveldb_path) as b:
        want = list(a)
        assert len(want) == 7 and list(b) == want          # same keys, byte-identical Datums
        assert want[0][0].decode().startswith("00000000_img")
    assert no_hidden_leftovers(leveldb_path.parent)
    r = convert("--backend", "LEVELDB", leveldb_path.parent / "im",
                leveldb_path.parent / "list.txt", leveldb_path)
    assert r.exit_code == 2 and "already exists" in r.output


def test_convert_imageset_unknown_backend(tmp_path):
    lst = write_pngs(tmp_path / "im", 1)
    r = convert("--backend", "rocksdb", tmp_path / "im", lst, tmp_path / "db")
    assert r.exit_code == 2
    assert "unknown --backend 'rocksdb'; the backends are lmdb and leveldb" in r.output
    assert not (tmp_path / "db").exists()


def test_compute_image_mean_of_a_leveldb_equals_the_lmdb_mean(both_dbs, tmp_path):
    lmdb_path, leveldb_path = both_dbs
    outs = {}
    for name, args in [("lmdb", [str(lmdb_path)]),
                       ("leveldb", ["--backend", "leveldb", str(leveldb_path)]),
                       ("detected", [str(leveldb_path)]),
                       ("gflags", ["-backend=LEVELDB", str(leveldb_path)])]:
        out = tmp_path / f"{name}.binaryproto"
        r = CliRunner().invoke(compute_image_mean_main, args + [str(out), "--npy",
                                                                str(tmp_path / f"{name}.npy")])
        assert r.exit_code == 0, r.output
        assert "mean of 7 records written to" in r.output
        outs[name] = (out.read_bytes(), np.load(tmp_path / f"{name}.npy"), r.output)
    for name in ("leveldb", "detected", "gflags"):
        assert outs[name][0] == outs["lmdb"][0]
        np.testing.assert_array_equal(outs[name][1], outs["lmdb"][1])
        assert outs[name][2] == outs["lmdb"][2].replace(str(tmp_path / "lmdb."),
                                                        str(tmp_path / f"{name}."))
    r = CliRunner().invoke(compute_image_mean_main, ["--backend", "lmdb", str(leveldb_path)])
    assert r.exit_code == 2
    assert "is a LevelDB (it holds CURRENT), but the backend asked for is lmdb" in r.output


def test_inspect_reads_a_leveldb(both_dbs):
    lmdb_path, leveldb_path = both_dbs
    out = {}
    for p in both_dbs:
        r = CliRunner().invoke(inspect_cmd, [str(p)])
        assert r.exit_code == 0, r.output
        out[p] = r.output.splitlines()
    assert out[leveldb_path][0] == f"LevelDB {leveldb_path}"
    assert out[lmdb_path][0] == f"LMDB {lmdb_path}"
    assert "records: 7" in out[leveldb_path] and "kind: 7 raw" in out[leveldb_path]
    assert out[leveldb_path][1:] == out[lmdb_path][1:]


def data_spec(source, batch_size=3, transform=None, **data_param):
    spec = {"type": "Data", "name": "data", "top": ["data", "label"],
            "data_param": {"source": str(source), "batch_size": batch_size, **data_param}}
    if transform:
        spec["transform_param"] = transform
    return spec


def build(spec, phase="TRAIN", seed=1701):
    layer = make_layer(spec, phase=phase, dtype=np.float32, seed=seed)
    return layer, setup_layer(layer, [], n_tops=len(spec["top"]))


def batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


@pytest.mark.parametrize("backend", [{}, {"backend": "LEVELDB"}, {"backend": 0}],
                         ids=["detected", "LEVELDB", "0"])
def test_data_layer_batches_from_a_leveldb_equal_the_lmdb_ones(both_dbs, backend):
    lmdb_path, leveldb_path = both_dbs
    tf = {"crop_size": 6, "mirror": True, "scale": 0.5, "mean_value": [10, 20, 30]}
    want_layer, want_top = build(data_spec(lmdb_path, 3, tf, rand_skip=5, backend="LMDB"))
    layer, top = build(data_spec(leveldb_path, 3, tf, rand_skip=5, **backend))
    try:
        assert isinstance(layer.reader, LevelDBReader)
        want = batches(want_layer, want_top, 6)             # 18 records from 7: wraps twice
        got = batches(layer, top, 6)
        for (d, lab), (wd, wl) in zip(got, want):
            np.testing.assert_array_equal(d, wd)
            np.testing.assert_array_equal(lab, wl)
        assert layer.get_state() == {**want_layer.get_state(), "source": str(leveldb_path)}
    finally:
        layer.close()
        want_layer.close()


def test_data_layer_exact_resume_from_a_leveldb(both_dbs):
    _, path = both_dbs
    spec = data_spec(path, 3, {"crop_size": 5, "mirror": True})
    layer, top = build(spec, seed=21)
    try:
        batches(layer, top, 4)
        state = layer.get_state()
        assert state["position"] == 12 % 7
        json.dumps(state)
        want = batches(layer, top, 5)
    finally:
        layer.close()
    other, top2 = build(spec, seed=999)
    try:
        other.set_state(state)
        for (d, lab), (wd, wl) in zip(batches(other, top2, 5), want):
            np.testing.assert_array_equal(d, wd)
            np.testing.assert_array_equal(lab, wl)
    finally:
        other.close()


def test_data_layer_backend_mismatch_says_what_it_found(both_dbs):
    lmdb_path, leveldb_path = both_dbs
    with pytest.raises(DataError, match=r"layer 'data' \(Data\).*leveldb is a LevelDB \(it holds "
                                        r"CURRENT\), but the backend asked for is lmdb"):
        build(data_spec(leveldb_path, backend="LMDB"))
    with pytest.raises(DataError, match=r"layer 'data' \(Data\).*lmdb is an LMDB \(it holds "
                                        r"data.mdb\), but the backend asked for is leveldb"):
        build(data_spec(lmdb_path, backend="LEVELDB"))
    with LevelDBReader(leveldb_path) as r:    # a failed setup left nothing open
        assert len(r) == 7


NET = """\
name: tiny
layer:
  - {name: data, type: Data, top: [data, label], include: {phase: TRAIN},
     transform_param: {scale: 0.00390625, crop_size: 8, mirror: true},
     data_param: {source: SOURCE, batch_size: 4BACKEND}}
  - {name: data, type: Data, top: [data, label], include: {phase: TEST},
     transform_param: {scale: 0.00390625, crop_size: 8},
     data_param: {source: SOURCE, batch_size: 7BACKEND}}
  - {name: ip1, type: InnerProduct, bottom: data, top: ip1,
     inner_product_param: {num_output: 4, weight_filler: {type: xavier}}}
  - {name: accuracy, type: Accuracy, bottom: [ip1, label], top: accuracy, include: {phase: TEST}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""

SOLVER = """\
net: NET
test_iter: 1
test_interval: 3
base_lr: 0.05
lr_policy: fixed
momentum: 0.9
max_iter: 6
display: 3
snapshot: 6
snapshot_prefix: snap/PREFIX
random_seed: 5
solver_mode: CPU
"""


def test_training_from_a_leveldb_equals_training_from_the_lmdb(both_dbs, monkeypatch):
    """`caffeish train` with TRAIN and TEST nets reading one LevelDB (two readers in a process):
    the trained weights equal those trained from the same data in an LMDB."""
    from caffeish.cli import main
    from caffeish.io.formats import layer_blobs, read_netparameter

    lmdb_path, leveldb_path = both_dbs
    work = lmdb_path.parent
    monkeypatch.chdir(work)
    weights = {}
    for name, backend in [("lmdb", ", backend: LMDB"), ("leveldb", ", backend: LEVELDB"),
                          ("leveldb_detected", "")]:
        source = "lmdb" if name == "lmdb" else "leveldb"
        (work / f"{name}.yaml").write_text(NET.replace("SOURCE", source)
                                           .replace("BACKEND", backend))
        (work / f"{name}_solver.yaml").write_text(SOLVER.replace("NET", f"{name}.yaml")
                                                  .replace("PREFIX", name))
        r = CliRunner().invoke(main, ["train", "--solver", f"{name}_solver.yaml"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        model = read_netparameter(str(work / f"snap/{name}_iter_6.caffemodel"))
        weights[name] = {n: a for n, _, a in layer_blobs(model) if a}
    assert weights["lmdb"].keys() == {"ip1"}
    for name in ("leveldb", "leveldb_detected"):
        assert weights[name].keys() == weights["lmdb"].keys()
        for a, b in zip(weights[name]["ip1"], weights["lmdb"]["ip1"]):
            np.testing.assert_array_equal(a, b)


def test_leveldb_io_module_imports_without_plyvel():
    # plyvel is imported when a LevelDB is used, so caffeish runs without the extra
    assert "plyvel" not in leveldb_io.__dict__
