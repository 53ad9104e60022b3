"""Host-side work per GPU training iteration, the part of a small net's step time that the
kernels' speed cannot hide: which kernels one iteration launches, and that it builds no device
array views once warm (a numba view costs 5-10 us of Python each; a toy LeNet iteration built
174 before views were kept, and launched 66 kernels before the packed update)."""
import collections

import numpy as np
import pytest

import caffeish
from caffeish import backend
from caffeish.config.yaml_loader import parse_message

pytestmark = pytest.mark.cuda

TOY_LENET = """\
net_param:
  name: toy_lenet
  layer:
    - {name: data, type: Input, top: [data, label],
       input_param: {shape: [{dim: [2, 1, 12, 12]}, {dim: [2]}]}}
    - {name: conv1, type: Convolution, bottom: data, top: conv1,
       param: [{lr_mult: 1}, {lr_mult: 2}],
       convolution_param: {num_output: 3, kernel_size: 5, weight_filler: {type: xavier}}}
    - {name: pool1, type: Pooling, bottom: conv1, top: pool1,
       pooling_param: {pool: MAX, kernel_size: 2, stride: 2}}
    - {name: conv2, type: Convolution, bottom: pool1, top: conv2,
       param: [{lr_mult: 1}, {lr_mult: 2}],
       convolution_param: {num_output: 3, kernel_size: 3, weight_filler: {type: xavier}}}
    - {name: ip1, type: InnerProduct, bottom: conv2, top: ip1,
       param: [{lr_mult: 1}, {lr_mult: 2}],
       inner_product_param: {num_output: 5, weight_filler: {type: xavier}}}
    - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
    - {name: ip2, type: InnerProduct, bottom: ip1, top: ip2,
       param: [{lr_mult: 1}, {lr_mult: 2}],
       inner_product_param: {num_output: 4, weight_filler: {type: xavier}}}
    - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: fixed
max_iter: 100
random_seed: 1
snapshot_after_train: false
"""


@pytest.fixture
def gpu_solver():
    backend.set_mode_gpu()
    try:
        s = caffeish.get_solver(parse_message(TOY_LENET, "SolverParameter", "solver.yaml"))
        rng = np.random.default_rng(0)
        s.net.blobs["data"].data[...] = rng.random((2, 1, 12, 12))
        s.net.blobs["label"].data[...] = [1, 3]
        s.step(2)     # warm: views, scratch buffers and packed parameters made
        yield s
    finally:
        backend.set_mode_cpu()


def _count(monkeypatch, cls, attr, name_of):
    counts = collections.Counter()
    original = getattr(cls, attr)

    def counting(self, *a, **k):
        name = name_of(self)
        if name:
            counts[name] += 1
        return original(self, *a, **k)

    monkeypatch.setattr(cls, attr, counting)
    return counts


def test_a_warm_iteration_builds_no_device_array_views(gpu_solver, monkeypatch):
    from caffeish.backend.cuda import core
    if core.SIMULATED:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as cls
    else:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as cls
    made = _count(monkeypatch, cls, "__init__", lambda self: "array")
    before = [p.data_readonly().copy() for p in gpu_solver.net.learnable_params]
    gpu_solver.step(1)
    assert made["array"] == 0
    assert any(not np.array_equal(b, p.data)
               for b, p in zip(before, gpu_solver.net.learnable_params))


def test_one_fill_and_one_update_launch_for_all_parameters(gpu_solver, monkeypatch):
    from caffeish.backend.cuda import core
    if not core.SIMULATED:
        pytest.skip("counts launches through the simulator's kernel objects")
    from numba.cuda.simulator import kernel as simk
    launches = _count(monkeypatch, simk.FakeCUDAKernel, "__call__",
                      lambda self: None if self._device else self.fn.__qualname__)
    gpu_solver.step(1)
    assert launches["_fill_kernel"] == 1          # every gradient cleared at once
    assert sum(v for k, v in launches.items() if "_make_fused_kernel" in k) == 1
    for per_parameter in ("_sgd_k", "_l2_k", "_axpy_kernel", "_first_bad_label_k"):
        assert launches[per_parameter] == 0, per_parameter
    assert sum(launches.values()) <= 36, launches


def test_staged_batches_reuse_their_device_buffers():
    """A buffer handed back by copy_batch is the next stage_batch's (no allocation per batch);
    buffers still held are never handed out twice; values are right either way."""
    backend.set_mode_gpu()
    try:
        be = backend.get_backend()
        rng = np.random.default_rng(2)
        out = be.zeros((3, 4), np.float32)
        a, b, c = (rng.random((3, 4)).astype(np.float32) for _ in range(3))
        sa = be.stage_batch(a)
        sb = be.stage_batch(b)          # sa is still held: a buffer of its own
        assert sb is not sa
        be.copy_batch(sa, out)
        np.testing.assert_array_equal(be.to_host(out), a)
        sc = be.stage_batch(c)          # reuses sa's buffer, after its copy
        assert sc is sa
        be.copy_batch(sb, out)
        np.testing.assert_array_equal(be.to_host(out), b)
        be.copy_batch(sc, out)
        np.testing.assert_array_equal(be.to_host(out), c)
        be.release_batch(np.zeros(3))   # host arrays: nothing to hand back
        labels = be.stage_batch(np.arange(3.0))
        be.release_batch(labels)        # a part no top reads goes back too
        assert be.stage_batch(np.arange(3.0) + 1) is labels
    finally:
        backend.set_mode_cpu()


def test_data_layer_training_allocates_nothing_once_warm(tmp_path, monkeypatch):
    from numba import cuda as nbcuda

    from tests.tiny_task import make_images, write_lmdb
    write_lmdb(tmp_path / "train_lmdb", *make_images(24, 1))
    net = TOY_LENET.replace(
        """    - {name: data, type: Input, top: [data, label],
       input_param: {shape: [{dim: [2, 1, 12, 12]}, {dim: [2]}]}}""",
        f"""    - {{name: data, type: Data, top: [data, label],
       transform_param: {{scale: 0.00390625}},
       data_param: {{source: "{tmp_path / 'train_lmdb'}", batch_size: 2, backend: LMDB}}}}""")
    backend.set_mode_gpu()
    try:
        s = caffeish.get_solver(parse_message(net, "SolverParameter", "solver.yaml"))
        s.step(6)
        allocs = collections.Counter()
        real = nbcuda.device_array
        monkeypatch.setattr(nbcuda, "device_array",
                            lambda *a, **k: (allocs.update(["device_array"]), real(*a, **k))[1])
        s.step(3)
        assert allocs["device_array"] == 0
    finally:
        backend.set_mode_cpu()
