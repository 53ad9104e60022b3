"""Fashion-MNIST -> two LMDBs of Caffe Datum records (``caffeish data fashion-mnist DIR``).

Fashion-MNIST (Zalando, MIT) has MNIST's exact format: 60,000 training and 10,000 test 28 x 28
gray images in the same four IDX files, with 10 clothing classes instead of digits. The output is
the same as ``caffeish data mnist``: ``DIR/train_lmdb`` and ``DIR/test_lmdb`` with keys ``%08d``
in file order and Datum records of 1 x 28 x 28 raw pixels, plus ``DIR/labels.txt`` with the class
names, one per line in label order.

The files come from ``--from DIR`` (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, plain or ``.gz``, as in the dataset's
GitHub repository), by default from the Debian/Ubuntu package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``).
"""
from __future__ import annotations

from pathlib import Path

from caffeish.errors import DataError

from .mnist import IDX_FILES, _find_idx, write_mnist_lmdbs

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
INSTALL_HINT = ("install the Debian/Ubuntu package with `sudo apt-get install "
                "dataset-fashion-mnist`, or download the four .gz files from "
                "https://github.com/zalandoresearch/fashion-mnist (data/fashion) and pass "
                "--from DIR")


def find_source(from_dir=None) -> Path:
    """The directory holding the four Fashion-MNIST IDX files (checked, not yet read)."""
    d = Path(from_dir) if from_dir is not None else DEBIAN_DIR
    if not d.is_dir():
        if from_dir is None:
            raise DataError(f"Fashion-MNIST not found: {d} does not exist; {INSTALL_HINT}")
        raise DataError(f"--from {d}: not a directory (expected the four Fashion-MNIST IDX "
                        "files)")
    missing = [stem for stem in IDX_FILES.values() if _find_idx(d, stem) is None]
    if missing:
        raise DataError(f"{d} lacks the Fashion-MNIST file(s) {', '.join(missing)} (plain or "
                        f".gz); {INSTALL_HINT}")
    return d


def write_fashion_mnist_lmdbs(out_dir, from_dir=None, overwrite: bool = False,
                              echo=print) -> dict:
    """Write ``out_dir/train_lmdb``, ``out_dir/test_lmdb`` and ``out_dir/labels.txt``.

    Returns {'train': 60000, 'test': 10000} (the record counts). Existing LMDBs are handled as
    by ``caffeish data mnist`` (kept when complete, else an error unless ``overwrite``).
    """
    src = find_source(from_dir)
    counts = write_mnist_lmdbs(out_dir, from_dir=src, overwrite=overwrite, echo=echo)
    labels = Path(out_dir) / "labels.txt"
    labels.write_text("".join(c + "\n" for c in CLASSES))
    echo(f"wrote {labels}: the {len(CLASSES)} class names in label order")
    return counts


__all__ = ["write_fashion_mnist_lmdbs", "find_source", "CLASSES", "DEBIAN_DIR"]
