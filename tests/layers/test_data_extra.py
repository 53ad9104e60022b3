"""MemoryData, HDF5Data and HDF5Output: shapes, batches against a naive reading of the inputs,
wrap-around, shuffling, exact resume, Caffe's own HDF5 file, and errors that name the layer."""
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from caffeish.errors import ConfigError, DataError, ShapeError
from caffeish.testing import blobs_from, forward_layer, make_layer, setup_layer

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TINY = SHARED / "caffe_vectors" / "tiny_net_a"


def h5py_or_skip():
    return pytest.importorskip("h5py", reason="the HDF5 layers need h5py: "
                                              "pip install 'caffeish[hdf5]'")


def json_roundtrip(state):
    from caffeish.solvers.solver import _from_json, _json_default
    return _from_json(json.loads(json.dumps(state, default=_json_default)))


# --- MemoryData --------------------------------------------------------------------------------
def mem_spec(batch_size=2, channels=1, height=2, width=3, name=None, **extra):
    spec = {"type": "MemoryData", "top": ["data", "label"],
            "memory_data_param": {"batch_size": batch_size, "channels": channels,
                                  "height": height, "width": width}}
    if name:
        spec["name"] = name
    spec.update(extra)
    return spec


def mem_layer(spec, dtype=np.float64):
    layer = make_layer(spec, dtype=dtype)
    top = setup_layer(layer, [])
    return layer, top


@pytest.mark.parametrize("bs,c,h,w", [(2, 1, 2, 3), (5, 3, 1, 1), (1, 2, 4, 4)],
                         ids=["b2c1h2w3", "b5c3", "b1c2h4w4"])
def test_memory_data_shapes(bs, c, h, w):
    _, top = mem_layer(mem_spec(bs, c, h, w))
    assert top[0].shape == (bs, c, h, w)
    assert top[1].shape == (bs,)


@pytest.mark.parametrize("label_shape", [(6,), (6, 1, 1, 1)], ids=["labels-1d", "labels-4d"])
def test_memory_data_batches_wrap(label_shape):
    layer, top = mem_layer(mem_spec(batch_size=2))
    data = np.arange(6 * 6, dtype=np.float64).reshape(6, 1, 2, 3)
    labels = np.arange(6, dtype=np.float64).reshape(label_shape) + 10
    layer.set_input_arrays(data, labels)
    for k in range(5):                                   # rows 0-1, 2-3, 4-5, 0-1, 2-3
        layer.forward([], top)
        start = (2 * k) % 6
        np.testing.assert_array_equal(top[0].data, data[start:start + 2])
        np.testing.assert_array_equal(top[1].data, labels.reshape(6)[start:start + 2])


def test_memory_data_reads_the_callers_array_without_copy():
    layer, top = mem_layer(mem_spec(batch_size=1, height=1, width=1), dtype=np.float32)
    data = np.zeros((2, 1, 1, 1), np.float32)
    layer.set_input_arrays(data, np.zeros(2, np.float32))
    data[1] = 7.0                                        # written after set_input_arrays
    layer.forward([], top)
    layer.forward([], top)
    assert top[0].data.ravel()[0] == 7.0


def test_memory_data_new_arrays_restart_at_row_zero_and_state_resumes():
    layer, top = mem_layer(mem_spec(batch_size=1, height=1, width=1))
    data = np.arange(4.0).reshape(4, 1, 1, 1)
    layer.set_input_arrays(data, np.arange(4.0))
    layer.forward([], top)
    state = json_roundtrip(layer.get_state())
    layer.forward([], top)
    assert top[1].data[0] == 1
    layer.set_input_arrays(data * 2, np.arange(4.0))
    layer.forward([], top)
    assert top[0].data.ravel()[0] == 0
    layer.set_state(state)
    layer.forward([], top)
    assert top[0].data.ravel()[0] == 2.0                 # row 1 of the new arrays


def test_memory_data_in_a_net():
    import caffeish
    from caffeish.config.yaml_loader import parse_message
    text = """
name: mem
layer:
  - {name: input, type: MemoryData, top: [data, label],
     memory_data_param: {batch_size: 4, channels: 2, height: 1, width: 1}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip,
     inner_product_param: {num_output: 3, weight_filler: {type: constant, value: 0.1}}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""
    net = caffeish.Net(parse_message(text, "NetParameter", "mem.yaml"), phase="TRAIN")
    data = np.arange(16, dtype=np.float32).reshape(8, 2, 1, 1)
    net.layers[0].set_input_arrays(data, np.array([0, 1, 2, 0, 1, 2, 0, 1], np.float32))
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[:4])
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [1, 2, 0, 1])
    # constant weights: every class gets the same score, loss = ln 3
    assert net.blobs["loss"].data.item() == pytest.approx(np.log(3), rel=1e-6)


def test_memory_data_transform_param_warns():
    from caffeish.log import logger
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        layer, top = mem_layer(mem_spec(name="mem", transform_param={"scale": 0.5}))
    finally:
        logger.removeHandler(handler)
    assert any("mem" in r.getMessage() and "transform_param is ignored" in r.getMessage()
               for r in records)
    data = np.ones((2, 1, 2, 3))
    layer.set_input_arrays(data, np.zeros(2))
    layer.forward([], top)
    np.testing.assert_array_equal(top[0].data, data)     # not scaled, as in Caffe


@pytest.mark.parametrize("param", [dict(batch_size=0), dict(channels=0), dict(width=0)],
                         ids=["batch0", "channels0", "width0"])
def test_memory_data_bad_params(param):
    spec = mem_spec(name="mem")
    spec["memory_data_param"].update(param)
    with pytest.raises(ConfigError, match="mem.*must be specified and positive"):
        mem_layer(spec)


@pytest.mark.parametrize("data_shape,label_shape,msg", [
    ((4, 1, 2, 2), (4,), "n x 1 x 2 x 3"),
    ((4, 6), (4,), "n x 1 x 2 x 3"),
    ((4, 1, 2, 3), (4, 2), "labels"),
    ((4, 1, 2, 3), (3,), "same first dimension"),
    ((3, 1, 2, 3), (3,), "multiple of batch_size"),
    ((0, 1, 2, 3), (0,), "multiple of batch_size"),
], ids=["chw", "2d", "labels-2d", "n-mismatch", "not-multiple", "empty"])
def test_memory_data_bad_arrays(data_shape, label_shape, msg):
    layer, _ = mem_layer(mem_spec(name="mem"))
    with pytest.raises(ShapeError, match=f"mem.*{msg}"):
        layer.set_input_arrays(np.zeros(data_shape), np.zeros(label_shape))


def test_memory_data_forward_before_arrays():
    layer, top = mem_layer(mem_spec(name="mem"))
    with pytest.raises(DataError, match="mem.*set_input_arrays"):
        layer.forward([], top)


# --- HDF5Data ------------------------------------------------------------------------------------
def write_h5(path, **arrays):
    h5py = h5py_or_skip()
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)


@pytest.fixture
def h5_files(tmp_path):
    """Two files (5 and 3 rows): data (r, 2, 3) float32, label (r,) int32, listed by relative
    name in lists/files.txt with the files beside the list."""
    h5py_or_skip()
    d = tmp_path / "lists"
    d.mkdir()
    rows = {"a.h5": 5, "b.h5": 3}
    start = 0
    contents = {}
    for name, r in rows.items():
        data = np.arange(start * 6, (start + r) * 6, dtype=np.float32).reshape(r, 2, 3)
        label = np.arange(start, start + r, dtype=np.int32)
        write_h5(d / name, data=data, label=label)
        contents[name] = (data, label)
        start += r
    (d / "files.txt").write_text("a.h5\n  b.h5\n")
    return d / "files.txt", contents


def h5_spec(source, batch_size=3, shuffle=None, name=None, tops=("data", "label")):
    p = {"source": str(source), "batch_size": batch_size}
    if shuffle is not None:
        p["shuffle"] = shuffle
    spec = {"type": "HDF5Data", "top": list(tops), "hdf5_data_param": p}
    if name:
        spec["name"] = name
    return spec


def run_batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append([t.data.copy() for t in top])
    return out


def test_hdf5_data_shapes(h5_files):
    lst, _ = h5_files
    layer = make_layer(h5_spec(lst, batch_size=4))
    top = setup_layer(layer, [])
    assert [t.shape for t in top] == [(4, 2, 3), (4,)]
    one = make_layer(h5_spec(lst, batch_size=2, tops=("label",)))
    assert [t.shape for t in setup_layer(one, [])] == [(2,)]


@pytest.mark.parametrize("bs", [1, 3, 5, 8, 11], ids=["b1", "b3", "b5", "b8", "b11"])
def test_hdf5_data_reads_rows_in_order_across_files(h5_files, bs):
    lst, contents = h5_files
    all_data = np.concatenate([contents["a.h5"][0], contents["b.h5"][0]])
    all_label = np.concatenate([contents["a.h5"][1], contents["b.h5"][1]])
    layer = make_layer(h5_spec(lst, batch_size=bs))
    top = setup_layer(layer, [])
    for k, (d, lab) in enumerate(run_batches(layer, top, 4)):
        idx = [(k * bs + i) % 8 for i in range(bs)]
        np.testing.assert_array_equal(d, all_data[idx])
        np.testing.assert_array_equal(lab, all_label[idx].astype(np.float64))


def test_hdf5_data_shuffle_visits_each_row_once_per_pass(h5_files):
    lst, _ = h5_files
    layer = make_layer(h5_spec(lst, batch_size=4, shuffle=True))
    top = setup_layer(layer, [])
    labels = np.concatenate([b[1] for b in run_batches(layer, top, 8)])
    passes = labels.reshape(4, 8)
    for p in passes:
        assert sorted(p.tolist()) == list(range(8))
        # each file's rows come together: a's rows 0-4 and b's rows 5-7 form contiguous runs
        first_file = p[:5] if p[0] < 5 else p[:3]
        assert len(set(first_file < 5)) == 1
    assert len({tuple(p) for p in passes}) > 1           # the order is drawn again
    again = make_layer(h5_spec(lst, batch_size=4, shuffle=True))
    top2 = setup_layer(again, [])
    np.testing.assert_array_equal(
        np.concatenate([b[1] for b in run_batches(again, top2, 8)]), labels)  # same seed


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_hdf5_data_exact_resume(h5_files, shuffle):
    lst, _ = h5_files
    layer = make_layer(h5_spec(lst, batch_size=3, shuffle=shuffle))
    top = setup_layer(layer, [])
    run_batches(layer, top, 3)
    state = json_roundtrip(layer.get_state())
    want = run_batches(layer, top, 6)
    fresh = make_layer(h5_spec(lst, batch_size=3, shuffle=shuffle), seed=99)
    top2 = setup_layer(fresh, [])
    fresh.set_state(state)
    got = run_batches(fresh, top2, 6)
    for w, g in zip(want, got):
        for a, b in zip(w, g):
            np.testing.assert_array_equal(a, b)


def test_hdf5_data_path_lookup(tmp_path, monkeypatch):
    """The list is found beside the net file; a name in it is looked up in the current
    directory first (Caffe), then beside the list."""
    h5py_or_skip()
    net_dir, cwd = tmp_path / "net", tmp_path / "cwd"
    net_dir.mkdir()
    cwd.mkdir()
    write_h5(net_dir / "x.h5", data=np.full((2, 1), 1.0))
    write_h5(net_dir / "y.h5", data=np.full((2, 1), 2.0))
    write_h5(cwd / "y.h5", data=np.full((2, 1), 3.0))
    (net_dir / "list.txt").write_text("x.h5 y.h5")
    (net_dir / "net.yaml").write_text(
        "name: n\nlayer:\n  - {name: d, type: HDF5Data, top: data,\n"
        "     hdf5_data_param: {source: list.txt, batch_size: 4}}\n")
    monkeypatch.chdir(cwd)
    import caffeish
    net = caffeish.Net(str(net_dir / "net.yaml"), phase="TRAIN")
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data.ravel(), [1, 1, 3, 3])


def test_hdf5_data_reads_caffes_file_in_caffes_order():
    """tiny_net_a/train.prototxt trained in Caffe from train.h5 (64 rows, batch 16, no shuffle):
    the batches are rows 16k mod 64 on, and with the weights of iteration 29 (the iteration-30
    snapshot plus its momentum history, W_29 = W_30 + V_30 for Caffe's SGD) the net gives the
    loss Caffe logged at iteration 29."""
    h5py = h5py_or_skip()
    if not TINY.is_dir():
        pytest.skip(f"Caffe's reference files are not here ({TINY})")
    import caffeish
    from caffeish.io.formats import blob_to_array, read_solverstate
    with h5py.File(TINY / "train.h5", "r") as f:
        rows, labels = f["data"][()], f["label"][()]
    net = caffeish.Net(str(TINY / "train.prototxt"), phase="TRAIN")
    try:
        net.copy_from(str(TINY / "tiny_a_iter_30.caffemodel"), log=False)
        history = [blob_to_array(b) for b in read_solverstate(TINY / "tiny_a_iter_30.solverstate")
                   .history]
        for p, v in zip(net.learnable_params, history):
            p.data[...] = p.data + v.reshape(p.shape)
        for it in range(30):
            loss = net.forward_loss()
            start = (16 * it) % 64
            np.testing.assert_array_equal(net.blobs["data"].data, rows[start:start + 16])
            np.testing.assert_array_equal(net.blobs["label"].data, labels[start:start + 16])
    finally:
        net.close()
    logged = dict(line.split() for line in (TINY / "losses.txt").read_text().splitlines())
    assert loss == pytest.approx(float(logged["29"]), abs=2e-5)


def test_hdf5_data_errors(h5_files, tmp_path):
    lst, _ = h5_files
    d = lst.parent
    cases = [
        (h5_spec(lst, tops=("data", "missing"), name="h5"), DataError, "h5.*no dataset 'missing'"),
        (h5_spec(tmp_path / "nope.txt", name="h5"), DataError, "h5.*nope.txt.*not found"),
        (h5_spec(lst, batch_size=0, name="h5"), ConfigError, "h5.*batch_size must be positive"),
        (dict(h5_spec(lst, name="h5"), transform_param={"scale": 2.0}), ConfigError,
         "h5.*does not transform"),
        ({"type": "HDF5Data", "name": "h5", "top": ["data"]}, ConfigError, "h5.*source"),
    ]
    (d / "gone.txt").write_text("a.h5 missing.h5\n")
    cases.append((h5_spec(d / "gone.txt", name="h5"), DataError, "h5.*'missing.h5'.*not found"))
    (d / "empty.txt").write_text("\n")
    cases.append((h5_spec(d / "empty.txt", name="h5"), DataError, "h5.*lists no HDF5 files"))
    write_h5(d / "rows.h5", data=np.zeros((3, 2)), label=np.zeros(4))
    (d / "rows.txt").write_text("rows.h5")
    cases.append((h5_spec(d / "rows.txt", name="h5"), DataError, "h5.*same first dimension"))
    h5py = h5py_or_skip()
    with h5py.File(d / "str.h5", "w") as f:
        f.create_dataset("data", data=np.array([b"ab", b"cd"]))
    (d / "str.txt").write_text("str.h5")
    cases.append((h5_spec(d / "str.txt", name="h5", tops=("data",)), DataError,
                  "h5.*only float and integer"))
    write_h5(d / "c.h5", data=np.zeros((2, 2, 2)), label=np.zeros(2))
    (d / "mixed.txt").write_text("a.h5 c.h5")
    for spec, err, msg in cases:
        with pytest.raises(err, match=msg):
            setup_layer(make_layer(spec), [])
    layer = make_layer(h5_spec(d / "mixed.txt", batch_size=6, name="h5"))
    top = setup_layer(layer, [])
    with pytest.raises(DataError, match="h5.*c.h5.*differ"):
        layer.forward([], top)


def test_hdf5_layers_without_h5py(h5_files, monkeypatch, tmp_path):
    lst, _ = h5_files
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ConfigError, match=r"h5.*HDF5Data.*pip install 'caffeish\[hdf5\]'"):
        setup_layer(make_layer(h5_spec(lst, name="h5")), [])
    out = {"type": "HDF5Output", "name": "dump",
           "hdf5_output_param": {"file_name": str(tmp_path / "o.h5")}}
    with pytest.raises(ConfigError, match=r"dump.*HDF5Output.*pip install 'caffeish\[hdf5\]'"):
        setup_layer(make_layer(out), blobs_from([np.zeros((2, 3)), np.zeros(2)]), n_tops=0)


# --- HDF5Output ----------------------------------------------------------------------------------
def out_spec(path, name="dump"):
    return {"type": "HDF5Output", "name": name, "hdf5_output_param": {"file_name": str(path)}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_hdf5_output_writes_legacy_4d_datasets_and_appends(tmp_path, dtype):
    h5py = h5py_or_skip()
    path = tmp_path / "out.h5"
    layer = make_layer(out_spec(path), dtype=dtype)
    data = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    bottom = blobs_from([data, [5, 6]], dtype=dtype)
    top = setup_layer(layer, bottom, n_tops=0)
    assert top == []
    layer.forward(bottom, top)
    with h5py.File(path, "r") as f:                       # readable while the layer is open
        assert f["data"].shape == (2, 3, 4, 1) and f["label"].shape == (2, 1, 1, 1)
        assert f["data"].dtype == dtype
        np.testing.assert_array_equal(f["data"][()].reshape(2, 3, 4), data)
    bottom[0].data[...] += 100
    bottom[1].data[...] = [7, 8]
    layer.forward(bottom, top)
    layer.close()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data"][()].reshape(4, 3, 4),
                                      np.concatenate([data, data + 100]))
        np.testing.assert_array_equal(f["label"][()].ravel(), [5, 6, 7, 8])


def test_hdf5_output_file_reads_back_through_hdf5_data(tmp_path):
    h5py_or_skip()
    path = tmp_path / "out.h5"
    layer = make_layer(out_spec(path))
    data = np.random.default_rng(0).normal(size=(3, 2, 2, 2))
    bottom = blobs_from([data, [0, 1, 2]])
    layer.forward(bottom, setup_layer(layer, bottom, n_tops=0))
    layer.close()
    (tmp_path / "list.txt").write_text(str(path))
    _, _, top = forward_layer(h5_spec(tmp_path / "list.txt", batch_size=3), [])
    np.testing.assert_array_equal(top[0].data, data)
    np.testing.assert_array_equal(top[1].data.ravel(), [0, 1, 2])


def test_hdf5_output_errors(tmp_path):
    h5py_or_skip()
    with pytest.raises(ConfigError, match="dump.*file_name is not set"):
        setup_layer(make_layer({"type": "HDF5Output", "name": "dump"}),
                    blobs_from([np.zeros((2, 3)), np.zeros(2)]), n_tops=0)
    with pytest.raises(DataError, match="dump.*failed to create"):
        setup_layer(make_layer(out_spec(tmp_path / "no" / "such" / "dir.h5")),
                    blobs_from([np.zeros((2, 3)), np.zeros(2)]), n_tops=0)
    with pytest.raises(ShapeError, match="dump.*same batch size"):
        setup_layer(make_layer(out_spec(tmp_path / "a.h5")),
                    blobs_from([np.zeros((2, 3)), np.zeros(3)]), n_tops=0)
    with pytest.raises(ShapeError, match="dump.*more than 4 axes"):
        setup_layer(make_layer(out_spec(tmp_path / "b.h5")),
                    blobs_from([np.zeros((2, 1, 1, 1, 1)), np.zeros(2)]), n_tops=0)
    layer = make_layer(out_spec(tmp_path / "c.h5"))
    bottom = blobs_from([np.zeros((2, 3)), np.zeros(2)])
    top = setup_layer(layer, bottom, n_tops=0)
    layer.forward(bottom, top)
    other = blobs_from([np.zeros((2, 4)), np.zeros(2)])
    layer.reshape(other, top)
    with pytest.raises(ShapeError, match="dump.*holds rows of shape"):
        layer.forward(other, top)
    layer.close()
    with pytest.raises(ConfigError, match="dump.*exactly 2 bottom"):
        setup_layer(make_layer(out_spec(tmp_path / "d.h5")), blobs_from([np.zeros(2)]),
                    n_tops=0)


def test_hdf5_data_damaged_files_give_data_errors_only(h5_files, tmp_path):
    """h5py reports a damaged file as OSError, KeyError, RuntimeError...: each must be one
    DataError naming the file (found by fuzzing; 40 damaged copies)."""
    import random
    lst, _ = h5_files
    rng = random.Random(3)
    good = (lst.parent / "a.h5").read_bytes()
    noticed = 0
    for k in range(40):
        b = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(b))
            run = rng.randint(1, 16)
            b[i:i + run] = bytes(rng.randrange(256) for _ in range(run))
        bad = tmp_path / f"bad{k}.h5"
        bad.write_bytes(bytes(b))
        listing = tmp_path / f"list{k}.txt"
        listing.write_text(f"{bad}\n")
        try:
            layer = make_layer(h5_spec(listing, batch_size=2), dtype=np.float32)
            top = setup_layer(layer, [], n_tops=2)
            run_batches(layer, top, 3)
        except DataError as e:
            noticed += 1
            assert bad.name in str(e)
    assert noticed > 10
