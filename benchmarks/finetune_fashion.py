"""Finetuning vs training from scratch on Fashion-MNIST, for the same short budget.

Runs configs/finetune/fashion_from_lenet_solver.yaml three ways and prints the test accuracy on
all 10,000 Fashion-MNIST test images after ``--iters`` iterations:

1. finetune: the net initialised from zoo:lenet_mnist (conv1 frozen, conv2/ip1 at lr_mult 0.1,
   ip2_fashion new);
2. the same net from scratch (same lr_mults, every layer from its filler);
3. the stock LeNet (configs/mnist, every lr_mult 1) from scratch.

    caffeish data fashion-mnist data/fashion-mnist
    python benchmarks/finetune_fashion.py --iters 500
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _with_data(net_param, data_dir):
    p = net_param.copy()
    for lp in p.layer:
        if lp.type == "Data":
            split = "train" if lp.include and lp.include[0].phase == "TRAIN" else "test"
            lp.mutable("data_param").set("source", str(Path(data_dir) / f"{split}_lmdb"))
    return p


def run(net_param, iters, weights, seed):
    import caffeish
    from caffeish.solvers.solver import load_solver_param
    param = load_solver_param(REPO / "configs" / "finetune" / "fashion_from_lenet_solver.yaml")
    param.clear("net")
    param.set("net_param", net_param)
    param.set("max_iter", iters)
    param.set("test_interval", iters)
    param.set("display", max(iters // 5, 1))
    param.set("snapshot_after_train", False)
    param.set("random_seed", seed)
    t0 = time.perf_counter()
    solver = caffeish.get_solver(param, weights=[weights] if weights else None)
    try:
        solver.solve()
        test = [m for m in solver.metrics if m["kind"] == "test"][-1]["outputs"]
    finally:
        solver.net.close()
        for n in solver.test_nets:
            n.close()
    return test["accuracy"], test["loss"], time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--data", default="data/fashion-mnist",
                    help="LMDBs from `caffeish data fashion-mnist DIR`")
    ap.add_argument("--seed", type=int, default=1701)
    args = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    from caffeish.config.yaml_loader import load_message
    from caffeish.log import setup_logging
    import logging
    setup_logging(level=logging.WARNING)
    ft = _with_data(load_message(REPO / "configs" / "finetune" /
                                 "fashion_from_lenet_train_test.yaml", "NetParameter"), args.data)
    stock = _with_data(load_message(REPO / "configs" / "mnist" / "lenet_train_test.yaml",
                                    "NetParameter"), args.data)
    rows = [("finetune from zoo:lenet_mnist", ft, "zoo:lenet_mnist"),
            ("same net from scratch", ft, None),
            ("stock LeNet from scratch (all lr_mult 1)", stock, None)]
    print(f"Fashion-MNIST, {args.iters} iterations x 64 images, seed {args.seed}; test accuracy "
          f"on the 10,000 test images")
    for label, net, weights in rows:
        acc, loss, secs = run(net, args.iters, weights, args.seed)
        print(f"  {label:<42} accuracy {acc:.4f}  loss {loss:.4f}  ({secs:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
