"""extract_features: Caffe's tool that stores a trained net's blobs, item by item, as float Datums
in LMDB or LevelDB. Records are read back with Google's protobuf (an independent reader)."""
import numpy as np
import pytest
from click.testing import CliRunner

import caffeish
from caffeish.commands.data_cmds import extract_features_main
from tests.data_tools.photos import parse_datum, read_lmdb
from tests.tiny_task import make_images, write_lmdb

NET = """\
name: feat
layer:
  - name: data
    type: Data
    top: [data, label]
    transform_param: {scale: 0.00390625}
    data_param: {source: images_lmdb, batch_size: 4}
  - {name: conv1, type: Convolution, bottom: data, top: conv1,
     convolution_param: {num_output: 2, kernel_size: 3, stride: 2,
                         weight_filler: {type: gaussian, std: 0.3}}}
  - {name: ip1, type: InnerProduct, bottom: conv1, top: ip1,
     inner_product_param: {num_output: 5, weight_filler: {type: gaussian, std: 0.3}}}
  - {name: prob, type: Softmax, bottom: ip1, top: prob}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    imgs, labels = make_images(10, 3)
    write_lmdb(tmp_path / "images_lmdb", imgs, labels)
    (tmp_path / "net.yaml").write_text(NET)
    monkeypatch.chdir(tmp_path)
    net = caffeish.Net("net.yaml", caffeish.TEST, seed=4)
    net.save("trained.caffemodel")
    net.close()
    return tmp_path


def expected(batches):
    """The blobs of ``batches`` forward passes of the trained net (the data wraps: 10 images)."""
    net = caffeish.Net("net.yaml", caffeish.TEST, weights="trained.caffemodel")
    out = {"conv1": [], "ip1": []}
    try:
        for _ in range(batches):
            net.forward()
            for k in out:
                out[k].append(net.blobs[k].data.copy())
    finally:
        net.close()
    return {k: np.concatenate(v) for k, v in out.items()}


def run(*args):
    return CliRunner().invoke(extract_features_main, list(args))


def test_blobs_become_float_datums_under_ten_digit_keys(workdir):
    r = run("trained.caffemodel", "net.yaml", "ip1,conv1", "ip1_lmdb,conv1_lmdb", "3", "lmdb")
    assert r.exit_code == 0, r.output
    assert "ip1: 12 records written to ip1_lmdb" in r.output
    want = expected(3)
    for blob, (c, h, w) in (("ip1", (5, 1, 1)), ("conv1", (2, 4, 4))):
        recs = read_lmdb(workdir / f"{blob}_lmdb")
        assert [k for k, _ in recs] == [f"{i:010d}" for i in range(12)]
        for i, (_, value) in enumerate(recs):
            d = parse_datum(value)
            assert (d.channels, d.height, d.width) == (c, h, w)     # legacy 4-D shape
            assert d.data == b"" and d.label == 0
            np.testing.assert_array_equal(np.asarray(d.float_data, np.float32),
                                          want[blob][i].ravel())


def test_leveldb_and_gflags_spellings(workdir):
    pytest.importorskip("plyvel", reason="LevelDB needs plyvel (pip install 'caffeish[leveldb]')")
    from caffeish.data.db import open_db
    r = run("trained.caffemodel", "net.yaml", "ip1", "ip1_leveldb", "2", "leveldb", "CPU",
            "-nooverwrite")
    assert r.exit_code == 0, r.output
    want = expected(2)["ip1"]
    with open_db(workdir / "ip1_leveldb") as db:
        recs = list(db)
    assert len(recs) == 8
    for i, (k, v) in enumerate(recs):
        assert k == f"{i:010d}".encode()
        np.testing.assert_array_equal(np.asarray(parse_datum(v).float_data, np.float32),
                                      want[i].ravel())


@pytest.mark.parametrize("args,message", [
    (("ip1,prob", "a_lmdb", "1"), "2 blob name(s) (ip1, prob) but 1 database name(s)"),
    (("ip2", "a_lmdb", "1"), "net 'feat' has no blob 'ip2' (did you mean 'ip1'?)"),
    (("ip1,prob", "a_lmdb,a_lmdb", "1"), "repeat"),
    (("ip1", "a_lmdb", "0"), "num_mini_batches must be at least 1"),
    (("ip1", "a_lmdb", "1", "rocksdb"), "unknown database backend 'rocksdb'"),
    (("ip1", "images_lmdb", "1"), "images_lmdb already exists"),
], ids=["counts", "unknown-blob", "same-db", "batches", "backend", "exists"])
def test_errors_are_one_line_and_write_nothing(workdir, args, message):
    r = run("trained.caffemodel", "net.yaml", *args)
    assert r.exit_code == 2
    errors = [line for line in r.output.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("extract_features: error: ")
    assert message in errors[0]
    assert "Traceback" not in r.output
    assert not (workdir / "a_lmdb").exists()


def test_a_failure_midway_leaves_no_database(workdir, monkeypatch):
    import caffeish.net
    calls = []
    real = caffeish.net.Net.forward

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise caffeish.DataError("the disk went away")
        return real(self, *a, **k)

    monkeypatch.setattr(caffeish.net.Net, "forward", failing)
    r = run("trained.caffemodel", "net.yaml", "ip1", "ip1_lmdb", "3")
    assert r.exit_code == 2 and "the disk went away" in r.output
    assert not (workdir / "ip1_lmdb").exists()
    assert not [p for p in workdir.iterdir() if "ip1_lmdb" in p.name]   # no partial directory
