"""A tiny LMDB classification task shared by the CLI and tools tests: 3 classes of 10x10 images."""
import numpy as np

from caffeish.data.datum import encode_datum
from caffeish.data.lmdb_io import LMDBWriter


def make_images(n, seed, classes=3):
    """Class k: a bright 3x3 square in one of three places (k mod 3) on a noisy 10x10 image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    imgs = rng.integers(0, 60, (n, 1, 10, 10)).astype(np.uint8)
    for i, k in enumerate(labels):
        k = k % 3
        imgs[i, 0, 1 + 3 * k:4 + 3 * k, 2:5] = 250
    return imgs, labels


def write_lmdb(path, imgs, labels):
    with LMDBWriter(path) as w:
        for i, (im, lab) in enumerate(zip(imgs, labels)):
            w.put(f"{i:08d}", encode_datum(im, int(lab)))
