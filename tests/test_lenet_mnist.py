"""The stock LeNet config on real MNIST, shortened: it must learn (the full 10,000-iteration
run reaches >= 99%; its figures are in the README)."""
import shutil
from pathlib import Path

import pytest

import caffeish
from caffeish.config.yaml_loader import load_message

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    pytest.importorskip("numcodecs", reason="real MNIST needs `pip install 'caffeish[mnist]'`")
    from data_tools.mnist import write_mnist_lmdbs
    from caffeish.errors import DataError
    d = tmp_path_factory.mktemp("mnist")
    try:
        write_mnist_lmdbs(d / "data" / "mnist", echo=lambda *a, **k: None)
    except DataError as e:
        pytest.skip(f"real MNIST not available: {e}")
    return d


def test_stock_lenet_learns_real_mnist(mnist_dir, monkeypatch):
    cfg = mnist_dir / "configs"
    shutil.copytree(REPO / "configs" / "mnist", cfg)
    monkeypatch.chdir(mnist_dir)
    param = load_message(cfg / "lenet_solver.yaml", "SolverParameter")
    param.set("max_iter", 300)
    param.set("test_iter", [20])  # 2,000 test images
    param.set("test_interval", 300)
    param.set("test_initialization", False)
    param.set("snapshot", 0)
    param.set("snapshot_after_train", False)
    param.set("display", 50)
    solver = caffeish.get_solver(param)
    try:
        solver.solve()
        acc = [m for m in solver.metrics if m["kind"] == "test"][-1]["outputs"]["accuracy"]
        assert solver.iter == 300
        assert acc >= 0.95, acc
        train_losses = [m["loss"] for m in solver.metrics if m["kind"] == "train"]
        assert train_losses[-1] < train_losses[0] / 4
    finally:
        solver.net.close()
        for n in solver.test_nets:
            n.close()
