"""caffeish doctor: one planted problem per lint, found with its ID, file:line and a fix;
silence on the stock configs."""
from pathlib import Path

import numpy as np
import pytest

from caffeish.io.formats import write_binaryproto
from caffeish.tools.doctor import diagnose

from .conftest import NET, SOLVER

REPO = Path(__file__).resolve().parents[2]


def only(rep, lint_id):
    found = [f for f in rep.findings if f.id == lint_id]
    others = [f.format() for f in rep.findings if f.id != lint_id]
    assert found, f"{lint_id} not found; got: {others}"
    assert not others, others
    return found


def line_of(path, text):
    for i, ln in enumerate(Path(path).read_text().splitlines(), 1):
        if text in ln:
            return i
    raise AssertionError(f"{text!r} not in {path}")


@pytest.mark.parametrize("policy,fields,missing", [
    ("step", "gamma: 0.1\n", "stepsize"),
    ("poly", "power: 1\n", "max_iter"),
    ("multistep", "gamma: 0.1\n", "stepvalue"),
], ids=["step-no-stepsize", "poly-no-max_iter", "multistep-no-stepvalue"])
def test_d001_lr_policy_fields(tiny, policy, fields, missing):
    body = SOLVER.replace("lr_policy: step\ngamma: 0.5\nstepsize: 10\n",
                          f"lr_policy: {policy}\n{fields}")
    if missing == "max_iter":
        body = body.replace("max_iter: 20\n", "")
    (tiny / "solver.yaml").write_text(body)
    f = only(diagnose("solver.yaml"), "D001")[0]
    assert f.where == f"solver.yaml:{line_of(tiny / 'solver.yaml', 'lr_policy')}"
    assert f"lr_policy '{policy}' needs {missing}" in f.message
    assert missing in f.hint
    assert f.format().startswith(f"solver.yaml:{line_of(tiny / 'solver.yaml', 'lr_policy')}: "
                                 f"D001 lr-policy-fields: ")


def test_d002_learning_rate_overflow_and_growth(tiny):
    (tiny / "solver.yaml").write_text(SOLVER.replace(
        "lr_policy: step\ngamma: 0.5\nstepsize: 10\n", "lr_policy: exp\ngamma: 1.01\n")
        .replace("max_iter: 20", "max_iter: 10000"))
    f = only(diagnose("solver.yaml"), "D002")[0]
    assert f.where == f"solver.yaml:{line_of(tiny / 'solver.yaml', 'gamma')}"
    assert "overflows float32 at iteration 9218" in f.message and "gamma < 1" in f.hint
    (tiny / "solver.yaml").write_text(SOLVER.replace("gamma: 0.5", "gamma: 10")
                                      .replace("max_iter: 20", "max_iter: 30"))
    f = only(diagnose("solver.yaml"), "D002")[0]
    assert "grows from 0.05 to 50 by iteration 30 (1e+03x)" in f.message


def test_d003_test_iter_times_batch_must_cover_the_test_set(tiny):
    (tiny / "solver.yaml").write_text(SOLVER.replace("test_iter: 3", "test_iter: 2"))
    f = only(diagnose("solver.yaml"), "D003")[0]
    assert f.where == f"solver.yaml:{line_of(tiny / 'solver.yaml', 'test_iter')}"
    assert "test_iter 2 x batch_size 20 = 40 covers only 40 of the 60 records" in f.message
    assert f.hint.startswith("test_iter: 3")
    (tiny / "solver.yaml").write_text(SOLVER.replace("test_iter: 3", "test_iter: 4"))
    f = only(diagnose("solver.yaml"), "D003")[0]
    assert "20 are counted twice" in f.message


def test_d004_mean_file_shape(tiny):
    write_binaryproto(np.zeros((1, 1, 12, 12), np.float32), str(tiny / "mean.binaryproto"))
    net = NET.replace("transform_param: {scale: 0.00390625}\n    data_param: {source: "
                      "train_lmdb",
                      "transform_param: {scale: 0.00390625, mean_file: mean.binaryproto}\n"
                      "    data_param: {source: train_lmdb")
    (tiny / "net.yaml").write_text(net)
    f = only(diagnose("solver.yaml"), "D004")[0]
    assert f.where == f"{tiny / 'net.yaml'}:{line_of(tiny / 'net.yaml', 'mean_file')}"
    assert "is 1 x 12 x 12 but the records" in f.message and "1 x 10 x 10" in f.message
    assert "compute_image_mean" in f.hint


def test_d005_crop_larger_than_the_images(tiny):
    (tiny / "net.yaml").write_text(NET.replace("{scale: 0.00390625}\n    data_param: {source: "
                                               "test_lmdb",
                                               "{scale: 0.00390625, crop_size: 12}\n    "
                                               "data_param: {source: test_lmdb"))
    rep = diagnose("net.yaml")
    f = only(rep, "D005")[0]
    assert f.where == f"net.yaml:{line_of(tiny / 'net.yaml', 'crop_size')}"
    assert "crop_size 12 is larger than the 10 x 10 images" in f.message
    assert "crop_size <= 10" in f.hint


def test_d006_labels_outside_num_output(tiny):
    (tiny / "net.yaml").write_text(NET.replace("num_output: 3", "num_output: 2"))
    f = only(diagnose("net.yaml"), "D006")[0]
    assert f.where == f"net.yaml:{line_of(tiny / 'net.yaml', 'num_output: 2')}"
    assert "layer 'ip1' has num_output 2 but" in f.message and "outside [0, 2) (2)" in f.message
    assert "set num_output: 3" in f.hint


def test_d007_layer_with_weights_reaching_no_loss(tiny):
    (tiny / "net.yaml").write_text(NET + "  - {name: side, type: InnerProduct, bottom: pool1, "
                                         "top: side, inner_product_param: {num_output: 5}}\n"
                                         "  - {name: dead, type: Sigmoid, bottom: side, "
                                         "top: dead_out}\n")
    fs = only(diagnose("net.yaml"), "D007")
    assert {f.where for f in fs} == {f"net.yaml:{line_of(tiny / 'net.yaml', 'name: side')}",
                                     f"net.yaml:{line_of(tiny / 'net.yaml', 'name: dead')}"}
    assert any("'side' (InnerProduct) has learnable parameters" in f.message for f in fs)
    # frozen on purpose (lr_mult 0) and read by a metric: no finding
    (tiny / "net.yaml").write_text(NET + "  - {name: side, type: InnerProduct, bottom: pool1, "
                                         "top: side, param: [{lr_mult: 0}, {lr_mult: 0}], "
                                         "inner_product_param: {num_output: 3}}\n"
                                         "  - {name: acc2, type: Accuracy, bottom: [side, "
                                         "label], top: acc2}\n")
    assert diagnose("net.yaml").findings == []


def test_d008_batchnorm_statistics_with_lr_mult(tiny):
    (tiny / "net.yaml").write_text(NET.replace(
        "  - {name: relu1,",
        "  - {name: bn1, type: BatchNorm, bottom: pool1, top: pool1,\n"
        "     param: [{lr_mult: 0}, {lr_mult: 1}, {lr_mult: 0}]}\n  - {name: relu1,"))
    f = only(diagnose("net.yaml"), "D008")[0]
    assert f.where == f"net.yaml:{line_of(tiny / 'net.yaml', 'param: [{lr_mult: 0}, {lr_mult: 1}')}"
    assert "param[1] has lr_mult 1" in f.message and "lr_mult: 0" in f.hint


def test_d000_a_config_that_does_not_load(tiny):
    (tiny / "net.yaml").write_text(NET.replace("kernel_size: 3", "kernal_size: 3"))
    f = only(diagnose("solver.yaml"), "D000")[0]
    assert f.where == f"{tiny / 'net.yaml'}:{line_of(tiny / 'net.yaml', 'kernal_size')}"
    assert "did you mean 'kernel_size'" in f.message


def test_the_tiny_task_is_clean(tiny):
    rep = diagnose("solver.yaml")
    assert rep.findings == [] and rep.format() == ""


@pytest.mark.parametrize("name", ["lenet_solver.yaml", "lenet_train_test.yaml",
                                  "lenet_deploy.yaml"])
def test_silent_on_the_stock_configs(name):
    rep = diagnose(REPO / "configs" / "mnist" / name)
    assert rep.findings == [], rep.format()


def test_missing_data_only_skips_the_data_checks(tiny):
    import shutil
    shutil.rmtree(tiny / "test_lmdb")
    rep = diagnose("solver.yaml")
    assert rep.findings == []
    assert any("test_lmdb" in n and "skipped" in n for n in rep.notes)
    assert "note:" in rep.format(verbose=True)
