"""Where a small net's GPU iteration goes on the host: the fixed costs under every layer call.

    python benchmarks/gpu_overhead.py --gpu 0            # on a machine with an NVIDIA GPU
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_overhead.py --iters 1 --calls 5 --batch 2 \
        --net tiny.yaml --size 16     # smoke run on the simulator, with a net of few channels

LeNet's kernels take microseconds on a modern GPU, so its training speed is set by what the
host does per kernel: numba's launch (argument marshalling), building device-array views, and
CuPy's GEMM call. This script times each of these on their own (host microseconds per call,
the device synchronised at the end of each timed run), then LeNet's training iteration:

- its wall time;
- its kernel launches and GEMM calls, counted;
- the host functions that take its time (cProfile, top entries by own time).

A launch-bound iteration shows as launches x launch cost close to the wall time. The printed
figures are for the issue tracker, not asserted anywhere.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import caffeish  # noqa: F401  (first: it sets the thread-runtime variables before numpy loads)
import numpy as np
from numba import cuda

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


@cuda.jit
def k1(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += 1


@cuda.jit
def k4(a, b, c, d):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += b[i] + c[i] + d[i]


def per_call_us(fn, calls, sync):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) / calls * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--calls", type=int, default=2000, help="calls per micro-benchmark")
    ap.add_argument("--iters", type=int, default=50, help="LeNet iterations timed")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--net", default=str(REPO / "configs/mnist/lenet_train_test.yaml"),
                    help="the net to train (28x28 single-channel input, 10 classes)")
    ap.add_argument("--size", type=int, default=28, help="input height and width")
    args = ap.parse_args()

    from caffeish import backend
    backend.set_mode_gpu(args.gpu)
    be = backend.get_backend()
    from caffeish.backend.cuda import blas, core
    print(f"device: {backend.device_query()['name']}; GEMM: {blas.gemm_engine()}")
    sync = core.synchronize

    arrs = [be.zeros(256, np.float32) for _ in range(4)]
    big = be.zeros((64, 20, 24, 24), np.float32)
    rows = {
        "numba launch, 1 array argument": lambda: k1[1, 256](arrs[0]),
        "numba launch, 4 array arguments": lambda: k4[1, 256](*arrs),
        "caffeish fill (one launch)": lambda: be.fill(arrs[0], 0.0),
        "device-array view, built (reshape)": lambda: big.reshape(64, 20, 576),
        "device-array view, kept (backend.view)": lambda: be.view(big, 64, 20, 576),
    }
    if blas.HAVE_CUPY:
        a = be.zeros((64, 800), np.float32)
        w = be.zeros((500, 800), np.float32)
        o = be.zeros((64, 500), np.float32)
        rows["GEMM 64x800 @ 800x500 (caffeish gemm)"] = \
            lambda: be.gemm(a, w, out=o, trans_b=True)
        rows["GEMM, accumulating (beta=1)"] = \
            lambda: be.gemm(a, w, out=o, trans_b=True, beta=1.0)
    print(f"\n{'host cost per call':<44}{'us':>9}")
    for name, fn in rows.items():
        print(f"{name:<44}{per_call_us(fn, args.calls, sync):9.1f}")

    from train_speed import synthetic_solver
    solver = synthetic_solver(args.net, args.batch, 1, args.size, 10)
    solver.step(3)
    sync()
    launches = collections.Counter()
    gemms = [0]
    real_gemm = be.gemm

    def counting_gemm(*a, **k):
        gemms[0] += 1
        return real_gemm(*a, **k)

    launch_cls = None
    if not core.SIMULATED:   # numba's launch configuration object (absent in the simulator)
        try:
            from numba.cuda.dispatcher import _LaunchConfiguration as launch_cls
        except Exception:
            launch_cls = None
    if launch_cls is not None:
        real_call = launch_cls.__call__

        def counting_call(self, *a):
            launches[getattr(self.dispatcher, "__name__", "kernel")] += 1
            return real_call(self, *a)

        launch_cls.__call__ = counting_call
    be.gemm = counting_gemm
    solver.step(1)
    sync()
    be.gemm = real_gemm
    if launch_cls is not None:
        launch_cls.__call__ = real_call
    t0 = time.perf_counter()
    solver.step(args.iters)
    sync()
    per_iter = (time.perf_counter() - t0) / args.iters
    print(f"\nLeNet training, batch {args.batch}: {per_iter * 1e3:.2f} ms per iteration, "
          f"{args.batch / per_iter:.0f} images/s")
    if launch_cls is not None:
        print(f"numba kernel launches per iteration: {sum(launches.values())} "
              f"({', '.join(f'{k} {v}' for k, v in launches.most_common(6))}, ...)")
    print(f"GEMM calls per iteration: {gemms[0]}")
    prof = cProfile.Profile()
    prof.enable()
    solver.step(max(1, args.iters // 5))
    sync()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
    print("\nhost time by function (cProfile, own time):")
    print("\n".join(line for line in text.getvalue().splitlines()[4:] if line.strip()))


if __name__ == "__main__":
    main()
