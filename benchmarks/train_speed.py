"""Training speed of a caffeish net from its YAML, on synthetic data (images/s).

    python benchmarks/train_speed.py                      # LeNet, batch 64
    python benchmarks/train_speed.py --net configs/mnist/lenet_train_test.yaml --iters 200

The net's TRAIN-phase data layer is replaced by an Input layer of the same shape, filled once
with random pixels and labels, so the figure is the engine's (forward + backward + SGD update),
not the disk's. Median of --repeats timed runs after a warm-up (numba compiles then).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import caffeish  # noqa: F401  (first: it sets the thread-runtime variables before numpy loads)
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def synthetic_solver(net_path, batch, channels, size, classes):
    from caffeish.config.schema import Msg
    from caffeish.config.yaml_loader import load_message
    net = load_message(net_path, "NetParameter")
    layers = []
    for lp in net.layer:
        if lp.type in ("Data", "ImageData") and any(r.phase == "TRAIN" for r in lp.include):
            inp = Msg("LayerParameter", {
                "name": lp.name, "type": "Input", "top": list(lp.top),
                "input_param": {"shape": [{"dim": [batch, channels, size, size]},
                                          {"dim": [batch]}][:len(lp.top)]}})
            layers.append(inp)
        elif lp.type in ("Data", "ImageData"):
            continue
        else:
            layers.append(lp)
    net.set("layer", layers)
    solver = caffeish.get_solver(Msg("SolverParameter", {
        "net_param": net, "base_lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
        "lr_policy": "fixed", "max_iter": 10 ** 9, "random_seed": 1}))
    rng = np.random.default_rng(0)
    data_name = layers[0].top[0]
    solver.net.blobs[data_name].data[...] = rng.random(solver.net.blobs[data_name].shape)
    if len(layers[0].top) > 1:
        solver.net.blobs[layers[0].top[1]].data[...] = rng.integers(0, classes, batch)
    return solver


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--net", default=str(REPO / "configs/mnist/lenet_train_test.yaml"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from caffeish.log import setup_logging
    import logging
    setup_logging(level=logging.WARNING)
    solver = synthetic_solver(args.net, args.batch, args.channels, args.size, args.classes)
    solver.step(5)  # warm-up: numba compiles (or loads its cache)
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        solver.step(args.iters)
        rates.append(args.iters * args.batch / (time.perf_counter() - t0))
    med = statistics.median(rates)
    print(f"{Path(args.net).name}: batch {args.batch}, {args.iters} iterations x "
          f"{args.repeats}: median {med:.0f} images/s ({1000 * args.batch / med:.2f} ms/step); "
          f"runs {', '.join(f'{r:.0f}' for r in rates)}")


if __name__ == "__main__":
    main()
