"""Time convert_imageset on 10,000 small images and print images/s.

    python benchmarks/convert_imageset_bench.py [--n 10000] [--size 40] [--keep DIR]

The images are crops of scikit-image's sample photos when scikit-image is installed (smooth
gradients with noise otherwise), half PNG and half JPEG, ``size`` x ``size`` pixels. Each
configuration converts the same folder into a fresh LMDB: raw records at the original size,
resized to 32 x 32 (OpenCV INTER_LINEAR), and ``--encoded`` (the files copied), each with one
decoding thread and with the default. Figures are machine-dependent; nothing here is asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def source_photos():
    try:
        import skimage.data as skd
    except ImportError:
        return None
    d = Path(skd.__file__).parent
    return [np.asarray(Image.open(d / n).convert("RGB")) for n in
            ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]


def make_images(root: Path, n: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    photos = source_photos()
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        if photos:
            p = photos[i % len(photos)]
            y = int(rng.integers(0, p.shape[0] - size))
            x = int(rng.integers(0, p.shape[1] - size))
            a = p[y:y + size, x:x + size]
        else:
            base = (yy * rng.uniform(1, 4) + xx * rng.uniform(1, 4))[:, :, None] + \
                rng.integers(0, 255, 3)
            a = np.clip(base + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        name = f"{i // 1000:02d}/img{i:05d}." + ("png" if i % 2 else "jpg")
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(a).save(root / name, **({"quality": 90} if i % 2 == 0 else {}))
        lines.append(f"{name} {i % 10}\n")
    lst = root.parent / "list.txt"
    lst.write_text("".join(lines))
    return lst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--keep", default=None, help="Work in this folder and keep it.")
    args = ap.parse_args()

    from data_tools.convert_imageset import convert_imageset

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="convbench-"))
    try:
        t = time.perf_counter()
        lst = make_images(work / "images", args.n, args.size)
        print(f"made {args.n} images of {args.size} x {args.size} (half PNG, half JPEG) in "
              f"{time.perf_counter() - t:.1f} s; {os.cpu_count()} CPUs")
        configs = [("raw, original size", {}),
                   ("raw, resize 32 x 32", {"resize_height": 32, "resize_width": 32}),
                   ("--encoded (files copied)", {"encoded": True})]
        for label, kw in configs:
            for threads in (1, None):
                db = work / "db"
                if db.exists():
                    shutil.rmtree(db)
                r = convert_imageset(work / "images", lst, db, threads=threads, **kw)
                size_mb = (db / "data.mdb").stat().st_size / 1e6
                th = "1 thread" if threads == 1 else "default threads"
                print(f"{label:28s} {th:16s} {r.written:6d} images in {r.seconds:6.2f} s = "
                      f"{r.rate:8.0f} images/s   ({size_mb:.1f} MB)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
