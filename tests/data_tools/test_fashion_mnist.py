"""caffeish data fashion-mnist: IDX files (the Debian package or --from) -> two LMDBs."""
import gzip

import numpy as np
import pytest
from click.testing import CliRunner

from caffeish.data.datum import datum_to_array, decode_datum
from caffeish.data.lmdb_io import LMDBReader
from data_tools import fashion_mnist
from data_tools.mnist import IDX_FILES, write_idx

from .photos import parse_datum, read_lmdb

DEBIAN = fashion_mnist.DEBIAN_DIR


def cmd():
    from caffeish.commands.data_cmds import fashion_mnist_cmd
    return fashion_mnist_cmd


def read_gz_idx(path, header):
    return np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=header)


@pytest.mark.skipif(not DEBIAN.is_dir(), reason=f"{DEBIAN} is absent: the real Fashion-MNIST "
                    "comes from the Debian package (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    r = CliRunner().invoke(cmd(), [str(tmp_path / "fm")])
    assert r.exit_code == 0, r.output
    assert "60000 records of 1 x 28 x 28" in r.output and "10000 records" in r.output
    assert (tmp_path / "fm" / "labels.txt").read_text().splitlines() == [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
        "Bag", "Ankle boot"]
    images = read_gz_idx(DEBIAN / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    for split, n in (("train", 60000), ("test", 10000)):
        with LMDBReader(tmp_path / "fm" / f"{split}_lmdb") as db:
            assert len(db) == n
            labels = [decode_datum(v).label for _, v in db]
        # Fashion-MNIST is balanced: 6000 / 1000 images of each of the 10 classes.
        assert np.bincount(labels).tolist() == [n // 10] * 10
        if split == "train":
            assert labels[:10] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    with LMDBReader(tmp_path / "fm" / "train_lmdb") as db:
        for i in (0, 1, 59999):
            v = db.get("%08d" % i)
            d = parse_datum(v)
            assert (d.channels, d.height, d.width) == (1, 28, 28)
            np.testing.assert_array_equal(datum_to_array(decode_datum(v))[0], images[i])
    r = CliRunner().invoke(cmd(), [str(tmp_path / "fm")])      # already there: kept
    assert r.exit_code == 0 and "already holds 60000 records" in r.output


def test_from_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    data = {"train_images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
            "train_labels": rng.integers(0, 10, 12, dtype=np.uint8),
            "test_images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
            "test_labels": rng.integers(0, 10, 4, dtype=np.uint8)}
    src = tmp_path / "idx"
    src.mkdir()
    for k, stem in IDX_FILES.items():
        write_idx(src / (stem + ".gz"), data[k])
    r = CliRunner().invoke(cmd(), [str(tmp_path / "out"), "--from", str(src)])
    assert r.exit_code == 0, r.output
    recs = read_lmdb(tmp_path / "out" / "train_lmdb")
    assert [k for k, _ in recs] == ["%08d" % i for i in range(12)]
    for (k, v), img, lab in zip(recs, data["train_images"], data["train_labels"]):
        d = parse_datum(v)
        assert d.label == lab
        np.testing.assert_array_equal(np.frombuffer(d.data, np.uint8).reshape(28, 28), img)
    assert len(read_lmdb(tmp_path / "out" / "test_lmdb")) == 4


def test_missing_files_say_where_to_get_them(tmp_path, monkeypatch):
    (tmp_path / "partial").mkdir()
    write_idx(tmp_path / "partial" / "train-images-idx3-ubyte",
              np.zeros((1, 28, 28), np.uint8))
    r = CliRunner().invoke(cmd(), [str(tmp_path / "out"), "--from", str(tmp_path / "partial")])
    assert r.exit_code == 2
    assert "lacks the Fashion-MNIST file(s) train-labels-idx1-ubyte, t10k-images-idx3-ubyte" \
        in r.output
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-such-dir")
    r = CliRunner().invoke(cmd(), [str(tmp_path / "out")])
    assert r.exit_code == 2 and "apt-get install dataset-fashion-mnist" in r.output
    assert not (tmp_path / "out").exists()
