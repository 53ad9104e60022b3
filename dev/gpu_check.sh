#!/usr/bin/env bash
# Issue 7's checks on a real GPU, in one run of the device machine (a task gets 15 minutes of
# device time, all tries together). Prepare here first:
#     bash dev/gpu_wheels.sh          # wheels the device image lacks -> .whl/
# then run there with carry [".whl"] and a timeout of about 540 s:
#     bash dev/gpu_check.sh
# Logs go to $OUT (device.txt, cuda_tests.log, bench.log, overhead.log, suite.log).
# Steps, most important first, each with its own time limit (a hang costs one step, not the
# run):
#   1. the GPU tests on the real device (CAFFEISH_TEST_GPU=real, marker cuda)
#   2. benchmarks/compare_torch.py --gpu 0: LeNet and CIFAR10-quick training, CaffeNet
#      forward, each against PyTorch on the same GPU (issue 7's target: within 2x)
#   3. benchmarks/gpu_overhead.py: the host cost of a launch, a view, a GEMM call, and where
#      LeNet's iteration spends its host time (what to cut if step 2 misses the target)
#   4. the whole suite, with whatever time is left
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/caffeish_gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
# the console scripts (caffeish, convert_imageset, ...) for the tests that run them
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    || echo "note: no editable install; the package is used from PYTHONPATH"
{
    nvidia-smi || true
    python3 -c "import sys, numpy, numba, numba.cuda as c; print(sys.version); print('numpy', numpy.__version__, 'numba', numba.__version__, 'cuda available', c.is_available())"
    python3 -c "import cupy; print('cupy', cupy.__version__)" || true
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" || true
    python3 -m caffeish.cli device-query --gpu 0 || true
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
echo "== 1. GPU tests (real device)"
CAFFEISH_TEST_GPU=real timeout 240 python3 -m pytest -q -p no:cacheprovider -m cuda -x \
    2>&1 | tee "$OUT/cuda_tests.log" | tail -25
echo "== 2. GPU benchmark against PyTorch"
timeout 180 python3 benchmarks/compare_torch.py --gpu 0 --nets lenet,cifar10_quick,caffenet \
    --repeats 5 2>&1 | tee "$OUT/bench.log" | tail -20
echo "== 3. host overhead per launch, view and GEMM; LeNet's host time"
timeout 45 python3 benchmarks/gpu_overhead.py --gpu 0 --iters 50 \
    2>&1 | tee "$OUT/overhead.log" | tail -40
echo "== 4. whole suite (GPU present)"
CAFFEISH_TEST_GPU=real timeout 60 python3 -m pytest -q -p no:cacheprovider -x \
    2>&1 | tee "$OUT/suite.log" | tail -15
