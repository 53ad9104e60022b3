"""A tiny LMDB classification task (3 classes of 10x10 images) with a net and a solver."""
import pytest

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
test_interval: 10
base_lr: 0.05
momentum: 0.9
lr_policy: step
gamma: 0.5
stepsize: 10
display: 5
max_iter: 20
snapshot_prefix: snap/tiny
random_seed: 5
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A folder with train_lmdb (96 records), test_lmdb (60), net.yaml, solver.yaml; cwd."""
    write_lmdb(tmp_path / "train_lmdb", *make_images(96, 1))
    write_lmdb(tmp_path / "test_lmdb", *make_images(60, 2))
    (tmp_path / "net.yaml").write_text(NET)
    (tmp_path / "solver.yaml").write_text(SOLVER)
    monkeypatch.chdir(tmp_path)
    return tmp_path
