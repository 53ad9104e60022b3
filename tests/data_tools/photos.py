"""Helpers shared by the data-tool tests: real photos from scikit-image turned into a small image
folder of several kinds, expected decodings written from the known source arrays, an
independent protobuf reader (Google's runtime) for Datum and BlobProto, and a scalar reference
of OpenCV's INTER_LINEAR resize."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
IMAGESET = SHARED / "caffe_vectors" / "imageset"


def skimage_data_dir() -> Path:
    skd = pytest.importorskip("skimage.data", reason="scikit-image is not installed (its sample "
                              "photos are the test images): pip install scikit-image")
    return Path(skd.__file__).resolve().parent


def caffe_imageset() -> Path:
    if not (IMAGESET / "lmdb_raw_32x32").is_dir():
        pytest.skip(f"Caffe's convert_imageset output is not present (looked in {IMAGESET}); "
                    "it comes with ../shared")
    return IMAGESET


def _small(img: Image.Image, size) -> Image.Image:
    return img.resize(size, Image.LANCZOS)


class PhotoSet:
    """A folder of real photos in several formats, a list file, and what each should decode to.

    entries: [(relative path, label)]; src[path]: the pixels written (RGB / RGBA / L / uint16
    arrays) for lossless files, None for JPEGs (their decoded pixels are the reference).
    """

    def __init__(self, root: Path, entries, src):
        self.root = root
        self.entries = entries
        self.src = src
        self.list_file = root.parent / "list.txt"
        self.write_list(self.list_file, entries)

    @staticmethod
    def write_list(path, entries):
        Path(path).write_text("".join(f"{p} {lab}\n" for p, lab in entries))
        return path

    def path(self, rel) -> Path:
        return self.root / rel

    def expected(self, rel, is_color=True) -> np.ndarray:
        """H x W x 3 BGR (colour) or H x W (gray) uint8, as cv::imread gives."""
        src = self.src.get(rel)
        if src is None:                       # JPEG: libjpeg's output is the reference
            im = Image.open(self.path(rel))
            if not is_color and im.mode == "RGB":
                im.draft("L", im.size)        # libjpeg's luma channel (OpenCV's gray decode)
            im = im.convert("RGB" if is_color else "L")
            a = np.asarray(im)
            return a[:, :, ::-1].copy() if is_color else a.copy()
        if src.dtype == np.uint16:
            src = (src >> 8).astype(np.uint8)
        if src.ndim == 2:
            return np.repeat(src[:, :, None], 3, 2) if is_color else src
        rgb = src[:, :, :3].astype(np.int64)
        if is_color:
            return rgb[:, :, ::-1].astype(np.uint8)
        # libpng png_set_rgb_to_gray(1, 0.299, 0.587): 15-bit coefficients, truncated.
        return ((9797 * rgb[..., 0] + 19234 * rgb[..., 1] + 3737 * rgb[..., 2]) >> 15
                ).astype(np.uint8)


def make_photo_set(tmp_path: Path) -> PhotoSet:
    d = skimage_data_dir()
    root = tmp_path / "photos"
    for sub in ("colour", "gray", "rgba"):
        (root / sub).mkdir(parents=True)
    src = {}
    entries = []

    def add(rel, label, img: Image.Image | None, keep=None, **save):
        if img is not None:
            img.save(root / rel, **save)
        entries.append((rel, label))
        src[rel] = keep

    astro = _small(Image.open(d / "astronaut.png"), (64, 48))
    add("colour/astronaut.png", 0, astro, np.asarray(astro))
    add("colour/coffee.jpg", 1, _small(Image.open(d / "coffee.png"), (57, 38)), None, quality=90)
    pal = _small(Image.open(d / "chelsea.png"), (45, 30)).quantize(64)
    add("colour/chelsea_palette.png", 2, pal, np.asarray(pal.convert("RGB")))
    cam = _small(Image.open(d / "camera.png"), (40, 40))
    add("gray/camera.png", 3, cam, np.asarray(cam))
    add("gray/coins photo.jpg", 4, _small(Image.open(d / "coins.png"), (38, 30)), None,
        quality=85)
    moon = np.asarray(_small(Image.open(d / "moon.png"), (33, 35))).astype(np.uint16) * 257 + 3
    add("gray/moon16.png", 3, Image.fromarray(moon), moon)
    horse = _small(Image.open(d / "horse.png"), (40, 33))
    add("rgba/horse.png", 2, horse, np.asarray(horse))
    shutil.copy(d / "rocket.jpg", root / "rocket.jpg")            # a real camera JPEG, 640 x 427
    add("rocket.jpg", 1, None)
    return PhotoSet(root, entries, src)


def write_images(root: Path, n: int, size=(12, 10), seed=0, fmt="png") -> list:
    """n random colour images (W x H = size) named img<i>.<fmt>; returns the RGB arrays."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(n):
        a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(a).save(root / f"img{i}.{fmt}")
        arrays.append(a)
    return arrays


# --- OpenCV INTER_LINEAR, one output pixel at a time ---------------------------------------------
def reference_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv::resize INTER_LINEAR for uint8, written per pixel from the algorithm's description:
    source coordinate (d + 0.5) * src / dst - 0.5 in float32, 11-bit weights, horizontal pass to
    integers, vertical pass with >> 4, mulhi (>> 16), + 2, >> 2. Columns clamp (weight moved to
    the edge), rows repeat the edge row; an exact halving of both sides is a 2 x 2 average."""
    a = img if img.ndim == 3 else img[:, :, None]
    sh, sw, cn = a.shape
    out = np.zeros((height, width, cn), np.uint8)
    if (sh, sw) == (height, width):
        return img.copy()
    if sh == 2 * height and sw == 2 * width:
        for y in range(height):
            for x in range(width):
                for c in range(cn):
                    s = (int(a[2 * y, 2 * x, c]) + int(a[2 * y, 2 * x + 1, c])
                         + int(a[2 * y + 1, 2 * x, c]) + int(a[2 * y + 1, 2 * x + 1, c]))
                    out[y, x, c] = (s + 2) >> 2
        return out if img.ndim == 3 else out[:, :, 0]

    def coord(d, src, dst):
        f = np.float32((d + 0.5) * (1.0 / (dst / src)) - 0.5)
        s = math.floor(f)
        return s, np.float32(f - np.float32(s))

    def weights(f):
        return (int(np.rint(np.float32(np.float32(1) - f) * np.float32(2048))),
                int(np.rint(f * np.float32(2048))))

    cols = []
    for x in range(width):
        sx, fx = coord(x, sw, width)
        if sx < 0:
            sx, fx = 0, np.float32(0)
        if sx >= sw - 1:
            sx, fx = sw - 1, np.float32(0)
        cols.append((sx, min(sx + 1, sw - 1)) + weights(fx))
    for y in range(height):
        sy, fy = coord(y, sh, height)
        b0, b1 = weights(fy)
        r0, r1 = min(max(sy, 0), sh - 1), min(max(sy + 1, 0), sh - 1)
        for x, (x0, x1, a0, a1) in enumerate(cols):
            for c in range(cn):
                h0 = int(a[r0, x0, c]) * a0 + int(a[r0, x1, c]) * a1
                h1 = int(a[r1, x0, c]) * a0 + int(a[r1, x1, c]) * a1
                v = (((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16) + 2) >> 2
                out[y, x, c] = min(max(v, 0), 255)
    return out if img.ndim == 3 else out[:, :, 0]


# --- Google's protobuf runtime, for an independent reading of our records and mean files ----------
_PB = {}


def pb_classes():
    """(Datum, BlobProto) message classes built from descriptors with Google's protobuf."""
    if _PB:
        return _PB["Datum"], _PB["BlobProto"]
    pytest.importorskip("google.protobuf", reason="protobuf is not installed: skipping the "
                        "independent protobuf reading of records")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="caffeish_data_tools_test.proto",
                                             package="caffetest", syntax="proto2")
    O, R = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def msg(name, *fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, packed in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if packed:
                f.options.packed = True
        return m

    msg("Datum", ("channels", 1, F.TYPE_INT32, O, False), ("height", 2, F.TYPE_INT32, O, False),
        ("width", 3, F.TYPE_INT32, O, False), ("data", 4, F.TYPE_BYTES, O, False),
        ("label", 5, F.TYPE_INT32, O, False), ("float_data", 6, F.TYPE_FLOAT, R, False),
        ("encoded", 7, F.TYPE_BOOL, O, False))
    m = msg("BlobShape", ("dim", 1, F.TYPE_INT64, R, True))
    b = msg("BlobProto", ("num", 1, F.TYPE_INT32, O, False),
            ("channels", 2, F.TYPE_INT32, O, False), ("height", 3, F.TYPE_INT32, O, False),
            ("width", 4, F.TYPE_INT32, O, False), ("data", 5, F.TYPE_FLOAT, R, True),
            ("diff", 6, F.TYPE_FLOAT, R, True))
    f = b.field.add(name="shape", number=7, type=F.TYPE_MESSAGE, label=O)
    f.type_name = ".caffetest.BlobShape"
    del m
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    for name in ("Datum", "BlobProto"):
        _PB[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffetest.{name}"))
    return _PB["Datum"], _PB["BlobProto"]


def parse_datum(value: bytes):
    Datum, _ = pb_classes()
    d = Datum()
    d.ParseFromString(value)
    return d


def datum_pixels(d) -> np.ndarray:
    """C x H x W uint8 from a raw protobuf Datum."""
    return np.frombuffer(d.data, np.uint8).reshape(d.channels, d.height, d.width)


def read_lmdb(path) -> list:
    """[(key str, value bytes)] in key order, read with py-lmdb directly."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [(k.decode(), bytes(v)) for k, v in txn.cursor()]
    finally:
        env.close()
