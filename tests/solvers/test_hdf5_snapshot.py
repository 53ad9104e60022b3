"""snapshot_format: HDF5 — Caffe's .caffemodel.h5 / .solverstate.h5 layout, read back and written,
checked with h5py directly (an independent reader)."""
import sys

import numpy as np
import pytest

import caffeish
from caffeish.errors import CaffeishError, ConfigError, FormatError

from .test_sgd import LINEAR, feed, solver_from

h5py = pytest.importorskip("h5py", reason="snapshot_format HDF5 needs h5py (caffeish[hdf5])")

TWO_LAYERS = """\
net_param:
  name: two
  layer:
    - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [4, 3]}, {dim: [4, 2]}]}}
    - {name: ip1, type: InnerProduct, bottom: x, top: h,
       inner_product_param: {num_output: 5, weight_filler: {type: gaussian, std: 0.3}}}
    - {name: ip2, type: InnerProduct, bottom: h, top: p,
       inner_product_param: {num_output: 2, bias_term: false,
                             weight_filler: {type: gaussian, std: 0.3}}}
    - {name: loss, type: EuclideanLoss, bottom: [p, y], top: loss}
base_lr: 0.1
lr_policy: fixed
momentum: 0.9
max_iter: 100
random_seed: 3
snapshot_after_train: false
snapshot_format: HDF5
"""


def test_layout_is_caffes(tmp_path):
    s = solver_from(TWO_LAYERS + f"snapshot_prefix: {tmp_path}/m\nsnapshot_diff: true\n")
    feed(s)
    s.step(3)
    model, state = s.snapshot()
    assert model == f"{tmp_path}/m_iter_3.caffemodel.h5"
    assert state == f"{tmp_path}/m_iter_3.solverstate.h5"
    with h5py.File(model, "r") as f:
        assert sorted(f.keys()) == ["data", "diff"]
        assert sorted(f["data"].keys()) == ["ip1", "ip2"]   # layers with parameters only
        assert sorted(f["data/ip1"].keys()) == ["0", "1"] and list(f["data/ip2"].keys()) == ["0"]
        for name in ("ip1", "ip2"):
            layer = s.net.layer_dict[name]
            for j, b in enumerate(layer.blobs):
                assert f[f"data/{name}/{j}"].dtype == np.float32
                np.testing.assert_array_equal(f[f"data/{name}/{j}"][()], b.data)
                np.testing.assert_array_equal(f[f"diff/{name}/{j}"][()], b.diff)
        assert f["data/ip1/0"].shape == (5, 3)
    with h5py.File(state, "r") as f:
        assert f["iter"].shape == () and int(f["iter"][()]) == 3
        assert int(f["current_step"][()]) == 0
        assert f["learned_net"][()].decode() == model
        hist = f["history"]
        assert sorted(hist.keys()) == ["0", "1", "2"]   # ip1 weight, ip1 bias, ip2 weight
        for j, h in enumerate(s.history_blobs):
            np.testing.assert_array_equal(hist[str(j)][()], h.data.astype(np.float32))
        assert np.abs(hist["0"][()]).sum() > 0   # momentum history after 3 steps


def test_weights_h5_load_by_layer_name(tmp_path):
    src = solver_from(TWO_LAYERS + f"snapshot_prefix: {tmp_path}/m\n")
    feed(src)
    src.step(2)
    model, _ = src.snapshot()
    dst = solver_from(TWO_LAYERS)
    report = dst.net.copy_from(model)
    assert sorted(report["copied"]) == ["ip1", "ip2"]
    for a, b in zip(src.net.learnable_params, dst.net.learnable_params):
        np.testing.assert_array_equal(a.data, b.data)


def test_reads_a_caffe_written_state(tmp_path):
    """Files laid out as Caffe writes them (H5LT scalar datasets, no caffeish_state): restore
    takes iter, current_step, the weights and the momentum history from them."""
    s = solver_from(TWO_LAYERS)
    shapes = [b.shape for b in s.net.learnable_params]
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=sh).astype(np.float32) for sh in shapes]
    hist = [rng.normal(size=sh).astype(np.float32) for sh in shapes]
    model = tmp_path / "caffe_iter_7.caffemodel.h5"
    with h5py.File(model, "w") as f:
        f.create_dataset("data/ip1/0", data=weights[0])
        f.create_dataset("data/ip1/1", data=weights[1])
        f.create_dataset("data/ip2/0", data=weights[2])
        f.create_dataset("data/unused/0", data=np.zeros(3, np.float32))
    state = tmp_path / "caffe_iter_7.solverstate.h5"
    with h5py.File(state, "w") as f:
        f.create_dataset("iter", data=np.int32(7))
        f.create_dataset("learned_net", data=np.bytes_(b"/elsewhere/caffe_iter_7.caffemodel.h5"))
        f.create_dataset("current_step", data=np.int32(2))
        for j, h in enumerate(hist):
            f.create_dataset(f"history/{j}", data=h)
    s.restore(str(state))   # learned_net's folder is gone: found beside the state file
    assert s.iter == 7 and s.current_step == 2
    for w, p in zip(weights, s.net.learnable_params):
        np.testing.assert_array_equal(p.data, w)
    for h, b in zip(hist, s.history_blobs):
        np.testing.assert_array_equal(b.data, h)


def test_bad_files_say_what_is_wrong(tmp_path):
    s = solver_from(TWO_LAYERS)
    junk = tmp_path / "junk.caffemodel.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(FormatError, match="junk.caffemodel.h5: not a readable HDF5 file"):
        s.net.copy_from(str(junk))
    other = tmp_path / "other.caffemodel.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    with pytest.raises(FormatError, match="no 'data' group"):
        s.net.copy_from(str(other))
    wrong = tmp_path / "wrong.caffemodel.h5"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("data/ip1/0", data=np.zeros((4, 3), np.float32))
        f.create_dataset("data/ip1/1", data=np.zeros(5, np.float32))
    with pytest.raises(caffeish.CaffeishError, match=r"layer 'ip1'.*\(4, 3\).*\(5, 3\)"):
        s.net.copy_from(str(wrong))
    with pytest.raises(CaffeishError, match="solver state not found"):
        s.restore(str(tmp_path / "missing.solverstate.h5"))


def test_without_h5py_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)   # import h5py now raises ImportError
    with pytest.raises(ConfigError, match=r"snapshot_format HDF5 needs the h5py package.*"
                                          r"caffeish\[hdf5\]"):
        solver_from(TWO_LAYERS + f"snapshot_prefix: {tmp_path}/m\nsnapshot: 5\n")
    s = solver_from(LINEAR)
    with pytest.raises(CaffeishError, match=r"x.caffemodel.h5: weights file is an HDF5 file.*"
                                            r"caffeish\[hdf5\]"):
        (tmp_path / "x.caffemodel.h5").write_bytes(b"")
        s.net.copy_from(str(tmp_path / "x.caffemodel.h5"))


def _damaged_copies(path, n, seed):
    """n copies of the file at ``path`` with a few random byte runs overwritten."""
    import random
    rng = random.Random(seed)
    data = path.read_bytes()
    for k in range(n):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(b))
            run = rng.randint(1, 16)
            b[i:i + run] = bytes(rng.randrange(256) for _ in range(run))
        out = path.with_name(f"damaged{k}_{path.name}")
        out.write_bytes(bytes(b))
        yield out


def test_damaged_h5_snapshots_give_caffeish_errors_only(tmp_path):
    """h5py reports damage as OSError, KeyError, RuntimeError, ValueError...: every one must
    reach the user as one CaffeishError naming the file (found by fuzzing, 40 copies each)."""
    s = solver_from(TWO_LAYERS + f"snapshot_prefix: {tmp_path}/m\n")
    feed(s)
    s.step(2)
    model, state = s.snapshot()
    errors = 0
    for kind, path in (("weights", model), ("state", state)):
        for bad in _damaged_copies(tmp_path / path.split("/")[-1], 40, seed=7):
            fresh = solver_from(TWO_LAYERS + f"snapshot_prefix: {tmp_path}/m\n")
            try:
                if kind == "weights":
                    fresh.net.copy_from(str(bad))
                else:
                    fresh.restore(str(bad))
            except CaffeishError as e:
                errors += 1
                assert bad.name in str(e)
    assert errors > 20          # most damage is noticed (some bytes are padding)
