"""The `caffeish` command end to end on a small synthetic LMDB: train, resume, finetune, test,
time, and the one-message errors."""
import re

import numpy as np
import pytest
from click.testing import CliRunner

from caffeish.cli import main
from tests.tiny_task import make_images, write_lmdb

NET = """\
name: tiny
layer:
  - name: data
    type: Data
    top: [data, label]
    include: {phase: TRAIN}
    transform_param: {scale: 0.00390625}
    data_param: {source: train_lmdb, batch_size: 16, backend: LMDB}
  - name: data
    type: Data
    top: [data, label]
    include: {phase: TEST}
    transform_param: {scale: 0.00390625}
    data_param: {source: test_lmdb, batch_size: 20, backend: LMDB}
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    convolution_param: {num_output: 4, kernel_size: 3, weight_filler: {type: xavier}}
  - {name: pool1, type: Pooling, bottom: conv1, top: pool1,
     pooling_param: {pool: MAX, kernel_size: 2, stride: 2}}
  - {name: relu1, type: ReLU, bottom: pool1, top: pool1}
  - {name: drop1, type: Dropout, bottom: pool1, top: pool1, dropout_param: {dropout_ratio: 0.2}}
  - name: ip1
    type: InnerProduct
    bottom: pool1
    top: ip1
    inner_product_param: {num_output: 3, weight_filler: {type: xavier}}
  - {name: accuracy, type: Accuracy, bottom: [ip1, label], top: accuracy, include: {phase: TEST}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip1, label], top: loss}
"""

SOLVER = """\
net: net.yaml
test_iter: 3
test_interval: 20
base_lr: 0.05
momentum: 0.9
weight_decay: 0.0005
lr_policy: step
gamma: 0.5
stepsize: 25
display: 10
max_iter: 40
snapshot: 20
snapshot_prefix: snap/tiny
random_seed: 5
solver_mode: CPU
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    write_lmdb(tmp_path / "train_lmdb", *make_images(96, 1))
    write_lmdb(tmp_path / "test_lmdb", *make_images(60, 2))
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "solver.yaml").write_text(SOLVER)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def weights_of(path):
    from caffeish.io.formats import layer_blobs, read_netparameter
    return {name: arrays for name, _, arrays in layer_blobs(read_netparameter(str(path))) if arrays}


def test_train_logs_tests_and_snapshots(workdir):
    r = run("train", "--solver", "solver.yaml", "--log", "train.log")
    assert r.exit_code == 0, r.output
    log = (workdir / "train.log").read_text()
    assert re.search(r"Iteration 10 \([\d.]+ iter/s, \d+ images/s, ETA \S+\), loss = [\d.e-]+", log)
    assert "Iteration 0, lr = 0.05" in log and "Iteration 30, lr = 0.025" in log
    acc = [float(a) for a in re.findall(r"Test net output #0: accuracy = ([\d.]+)", log)]
    assert len(acc) == 3  # iterations 0, 20, 40
    assert acc[-1] >= 0.9, acc
    for it in (20, 40):
        assert (workdir / f"snap/tiny_iter_{it}.caffemodel").exists()
        assert (workdir / f"snap/tiny_iter_{it}.solverstate").exists()
    assert "Optimization Done." in log

    # resume from 20 ends where the uninterrupted run ended
    want = weights_of(workdir / "snap/tiny_iter_40.caffemodel")
    (workdir / "snap/tiny_iter_40.caffemodel").unlink()
    r = run("train", "--solver", "solver.yaml", "--snapshot", "snap/tiny_iter_20.solverstate")
    assert r.exit_code == 0, r.output
    got = weights_of(workdir / "snap/tiny_iter_40.caffemodel")
    assert want.keys() == got.keys()
    for k in want:
        for a, b in zip(want[k], got[k]):
            np.testing.assert_array_equal(a, b)

    # test: accuracy from the trained weights
    r = run("test", "--model", "net.yaml", "--weights", "snap/tiny_iter_40.caffemodel",
            "--iterations", "3")
    assert r.exit_code == 0, r.output
    m = re.search(r"^accuracy = ([\d.]+)$", r.output, re.M)
    assert m and float(m.group(1)) == pytest.approx(acc[-1], abs=1e-6)

    # time: a per-layer table
    r = run("time", "--model", "net.yaml", "--iterations", "2")
    assert r.exit_code == 0, r.output
    assert "conv1" in r.output and "Average Forward-Backward" in r.output


def test_hdf5_snapshots_resume_and_test_from_the_cli(workdir):
    h5py = pytest.importorskip("h5py", reason="snapshot_format HDF5 needs h5py (caffeish[hdf5])")
    solver = (workdir / "solver.yaml").read_text() + "snapshot_format: HDF5\n"
    (workdir / "solver.yaml").write_text(solver)
    assert run("train", "--solver", "solver.yaml").exit_code == 0
    assert not (workdir / "snap/tiny_iter_40.caffemodel").exists()
    with h5py.File(workdir / "snap/tiny_iter_40.caffemodel.h5", "r") as f:
        want = {k: [f[f"data/{k}/{j}"][()] for j in range(len(f[f"data/{k}"]))]
                for k in f["data"]}
    assert {"conv1", "ip1"} <= want.keys()
    r = run("train", "--solver", "solver.yaml", "--snapshot", "snap/tiny_iter_20.solverstate.h5")
    assert r.exit_code == 0, r.output
    with h5py.File(workdir / "snap/tiny_iter_40.caffemodel.h5", "r") as f:
        for k, arrays in want.items():
            for j, a in enumerate(arrays):
                np.testing.assert_array_equal(f[f"data/{k}/{j}"][()], a)
    r = run("test", "--model", "net.yaml", "--weights", "snap/tiny_iter_40.caffemodel.h5",
            "--iterations", "3")
    assert r.exit_code == 0, r.output
    assert float(re.search(r"^accuracy = ([\d.]+)$", r.output, re.M).group(1)) >= 0.9


def test_finetune_copies_by_name_and_reinitialises_renamed_layers(workdir):
    assert run("train", "--solver", "solver.yaml").exit_code == 0
    ft_net = NET.replace("name: ip1", "name: ip1_new").replace("num_output: 3", "num_output: 3")
    (workdir / "ft_net.yaml").write_text(ft_net)
    (workdir / "ft_solver.yaml").write_text(
        SOLVER.replace("net: net.yaml", "net: ft_net.yaml").replace("max_iter: 40", "max_iter: 1")
        .replace("snap/tiny", "snap/ft").replace("test_interval: 20", "test_interval: 0"))
    r = run("train", "--solver", "ft_solver.yaml", "--weights", "snap/tiny_iter_40.caffemodel",
            "--log", "ft.log")
    assert r.exit_code == 0, r.output
    log = (workdir / "ft.log").read_text()
    assert "1 layer(s) copied (conv1)" in log
    assert "in the file but not in the net (ip1)" in log
    assert "left at their fillers (ip1_new)" in log

    # same name, different shape: an error naming the layer and both shapes
    (workdir / "bad_net.yaml").write_text(NET.replace("num_output: 4", "num_output: 5"))
    (workdir / "bad_solver.yaml").write_text(SOLVER.replace("net: net.yaml", "net: bad_net.yaml"))
    r = run("train", "--solver", "bad_solver.yaml", "--weights", "snap/tiny_iter_40.caffemodel")
    assert r.exit_code == 2
    assert "layer 'conv1' (Convolution) blob 0: the file has shape (4, 1, 3, 3) but the net " \
           "expects (5, 1, 3, 3)" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args,message", [
    (["train", "--solver", "solver.yaml", "--gpu", "x"], "--gpu 'x': give a GPU id"),
    (["train", "--solver", "solver.yaml", "--weights", "a.caffemodel", "--snapshot", "b"],
     "give either --snapshot (resume) or --weights (finetune), not both"),
    (["train", "--solver", "missing.yaml"], "missing.yaml: file not found"),
    (["train", "--solver", "solver.yaml", "--weights", "nope.caffemodel"],
     "nope.caffemodel: weights file not found"),
    (["test", "--model", "net.yaml", "--weights", "net.yaml"], "net.yaml"),
])
def test_errors_are_one_message_and_exit_2(workdir, args, message):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_config_error_from_cli_names_file_line_and_layer(workdir):
    (workdir / "net.yaml").write_text(NET.replace("kernel_size: 3,", "kernal_size: 3,"))
    r = run("train", "--solver", "solver.yaml")
    assert r.exit_code == 2
    assert re.search(r"net.yaml:19: layer 'conv1' \(Convolution\): unknown field "
                     r"'convolution_param.kernal_size' \(did you mean 'kernel_size'\?\)", r.output)


def test_missing_lmdb_says_what_to_do(workdir):
    (workdir / "net.yaml").write_text(NET.replace("source: train_lmdb", "source: nowhere_lmdb"))
    r = run("train", "--solver", "solver.yaml")
    assert r.exit_code == 2
    assert "nowhere_lmdb" in r.output and "Traceback" not in r.output


def test_debug_shows_the_traceback(workdir):
    r = CliRunner().invoke(main, ["train", "--solver", "missing.yaml", "--debug"])
    assert r.exit_code != 0 and r.exception is not None


def test_threads_option_sets_the_compute_threads(workdir):
    import numba
    before = numba.get_num_threads()
    try:
        r = run("time", "--model", "net.yaml", "--iterations", "1", "--threads", "1")
        assert r.exit_code == 0, r.output
        assert numba.get_num_threads() == 1
        limit = numba.config.NUMBA_NUM_THREADS
        bad = run("time", "--model", "net.yaml", "--threads", str(limit + 1))
        assert bad.exit_code == 2 and f"--threads {limit + 1}: give 1 to {limit}" in bad.output
    finally:
        numba.set_num_threads(before)


def test_an_unwritable_snapshot_prefix_is_one_message(workdir):
    (workdir / "blocker").write_text("a file, not a folder")
    r = run("train", "--solver", "solver.yaml", "--set", "snapshot_prefix=blocker/snap/tiny")
    assert r.exit_code == 2
    assert "cannot write the run directory" in r.output and "--run-dir" in r.output
    r = run("train", "--solver", "solver.yaml", "--set", "snapshot_prefix=blocker/snap/tiny",
            "--run-dir", str(workdir / "rd"))
    assert r.exit_code == 2
    assert "cannot create the snapshot folder blocker/snap" in r.output
    assert "Iteration 10" not in r.output            # before any training
    assert "Traceback" not in r.output
