"""Finetuning from the zoo (configs/finetune/): LeNet MNIST -> Fashion-MNIST through
`caffeish train --weights zoo:lenet_mnist`, and open_nsfw with a new classifier on photos. Layers
with lr_mult 0 must come out bit-identical; renamed layers start from their fillers."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import caffeish
from caffeish.config.yaml_loader import load_message
from caffeish.io.formats import layer_blobs, read_netparameter

REPO = Path(__file__).resolve().parents[2]
FT = REPO / "configs" / "finetune"
LENET_WEIGHTS = REPO / "caffeish" / "models_zoo" / "lenet_mnist" / "lenet_mnist.caffemodel"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _blobs(path):
    return {name: arrs for name, _, arrs in layer_blobs(read_netparameter(path)) if arrs}


@pytest.fixture(scope="module")
def fashion_workdir(tmp_path_factory):
    """A folder with data/fashion-mnist/{train,test}_lmdb holding the first 1,000 / 500
    Fashion-MNIST images (the real files, from the Debian package dataset-fashion-mnist)."""
    from caffeish.data.lmdb_io import LMDBWriter
    from caffeish.errors import DataError
    from data_tools.mnist import load_idx_dir, mnist_datums
    try:
        data = load_idx_dir(FASHION)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST not available ({e}); apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("fashion")
    for split, n in (("train", 1000), ("test", 500)):
        with LMDBWriter(root / "data" / "fashion-mnist" / f"{split}_lmdb", map_size=1 << 26) as w:
            for k, v in mnist_datums(data[f"{split}_images"][:n], data[f"{split}_labels"][:n]):
                w.put(k, v)
    return root


def test_lenet_finetunes_on_fashion_from_the_zoo(fashion_workdir, monkeypatch):
    from caffeish.cli import main
    monkeypatch.chdir(fashion_workdir)
    cfg = fashion_workdir / "configs"
    cfg.mkdir(exist_ok=True)
    shutil.copy(FT / "fashion_from_lenet_train_test.yaml", cfg)
    solver = (FT / "fashion_from_lenet_solver.yaml").read_text()
    solver = solver.replace("max_iter: 500", "max_iter: 20").replace(
        "test_iter: 100", "test_iter: 3").replace("test_interval: 500", "test_interval: 20")
    (cfg / "solver.yaml").write_text(solver)
    res = CliRunner().invoke(main, ["train", "--solver", str(cfg / "solver.yaml"),
                                    "--weights", "zoo:lenet_mnist"])
    assert res.exit_code == 0, res.output
    after = _blobs(next(fashion_workdir.rglob("fashion_from_lenet_iter_20.caffemodel")))
    before = _blobs(LENET_WEIGHTS)
    # frozen: the bytes of MNIST's conv1 survive 20 iterations untouched
    for a, b in zip(after["conv1"], before["conv1"]):
        assert a.tobytes() == b.tobytes()
    # slow body: copied, then moved a little
    for name in ("conv2", "ip1"):
        w_after, w_before = after[name][0], before[name][0]
        assert not np.array_equal(w_after, w_before)
        assert np.abs(w_after - w_before).max() < 0.05 * np.abs(w_before).max()
    # the renamed classifier was not copied from MNIST's ip2
    assert "ip2" not in after and after["ip2_fashion"][0].shape == before["ip2"][0].shape
    assert not np.allclose(after["ip2_fashion"][0], before["ip2"][0], atol=0.05)
    assert "accuracy = " in res.output


def test_same_net_from_scratch_keeps_its_frozen_filler(fashion_workdir, monkeypatch):
    monkeypatch.chdir(fashion_workdir)
    param = load_message(FT / "fashion_from_lenet_solver.yaml", "SolverParameter")
    for field, value in (("max_iter", 10), ("test_interval", 0), ("snapshot_after_train", False),
                         ("display", 0)):
        param.set(field, value)
    param.clear("test_iter")
    solver = caffeish.get_solver(param)
    try:
        net = solver.net
        frozen = [b.data.copy() for b in net.params["conv1"]]
        moving = net.params["ip2_fashion"][0].data.copy()
        solver.step(10)
        for b, f in zip(net.params["conv1"], frozen):
            assert b.data.tobytes() == f.tobytes()
        assert not np.array_equal(net.params["ip2_fashion"][0].data, moving)
    finally:
        solver.net.close()
        for n in solver.test_nets:
            n.close()


@pytest.mark.slow
def test_open_nsfw_new_classifier_with_frozen_body(tmp_path, monkeypatch):
    skdata = pytest.importorskip("skimage.data", reason="pip install scikit-image (test photos)")
    from caffeish import zoo
    from PIL import Image
    try:
        weights = zoo.resolve("zoo:open_nsfw")
    except zoo.ZooError as e:
        pytest.skip(str(e))
    if {"BatchNorm", "Scale"} - set(caffeish.layer_type_list()):
        pytest.skip("BatchNorm/Scale not implemented yet")
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "data" / "photos"
    photos.mkdir(parents=True)
    lines = []
    for name, label in (("chelsea", 1), ("coffee", 0), ("astronaut", 0), ("rocket", 0)):
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(photos / f"{name}.jpg")
        lines.append(f"{name}.jpg {label}\n")
    (photos / "train.txt").write_text("".join(lines))
    (photos / "val.txt").write_text("".join(lines[:2]))

    net_param = load_message(FT / "open_nsfw_finetune_train_val.yaml", "NetParameter")
    for lp in net_param.layer:
        if lp.type == "ImageData":
            lp.image_data_param.set("batch_size", 2)
    param = load_message(FT / "open_nsfw_finetune_solver.yaml", "SolverParameter")
    param.clear("net")
    param.set("net_param", net_param)
    for field, value in (("max_iter", 2), ("test_iter", [1]), ("test_interval", 2),
                         ("snapshot", 0), ("snapshot_after_train", False), ("display", 1)):
        param.set(field, value)
    solver = caffeish.get_solver(param, weights=[str(weights)])
    try:
        net = solver.net
        copied = _blobs(weights)
        body = [n for n in net.params if n != "fc_photos"]
        assert len(body) == 53 * 3
        for name in body:  # copied by layer name from the training-net caffemodel
            for b, arr in zip(net.params[name], copied[name]):
                assert b.data.tobytes() == arr.reshape(b.shape).tobytes(), name
        head = [b.data.copy() for b in net.params["fc_photos"]]
        solver.solve()
        for name in body:
            for b, arr in zip(net.params[name], copied[name]):
                assert b.data.tobytes() == arr.reshape(b.shape).tobytes(), name
        assert not np.array_equal(net.params["fc_photos"][0].data, head[0])
        assert all(np.isfinite(m["loss"]) for m in solver.metrics if m["kind"] == "train")
    finally:
        solver.net.close()
        for n in solver.test_nets:
            n.close()
