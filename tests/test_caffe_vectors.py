"""A net trained by real Caffe (../shared/caffe_vectors/tiny_net_a): its prototxt and
caffemodel load here and every blob of a TEST forward equals what Caffe computed."""
import numpy as np
import pytest

import caffeish


@pytest.fixture
def tiny(shared_vectors):
    return shared_vectors / "tiny_net_a"


def test_every_blob_matches_caffe(tiny):
    net = caffeish.Net(str(tiny / "deploy.prototxt"), phase="TEST",
                       weights=str(tiny / "tiny_a_iter_30.caffemodel"))
    x = np.load(tiny / "input.npy")
    # conv1 is overwritten by the in-place ReLU, so check it before that layer runs
    net.forward(end="conv1", data=x)
    np.testing.assert_allclose(net.blobs["conv1"].data,
                               np.load(tiny / "expected_conv1__before_relu1.npy"),
                               rtol=1e-5, atol=1e-6)
    net.forward(data=x)
    checked = []
    for blob in ("data", "conv1", "pool1", "conv2", "pool2", "ip1", "prob"):
        want = np.load(tiny / f"expected_{blob}.npy")
        np.testing.assert_allclose(net.blobs[blob].data, want, rtol=1e-5, atol=1e-6,
                                   err_msg=f"blob {blob}")
        checked.append(blob)
    assert len(checked) == 7


def test_params_equal_caffes_arrays(tiny):
    net = caffeish.Net(str(tiny / "deploy.prototxt"), phase="TEST",
                       weights=str(tiny / "tiny_a_iter_30.caffemodel"))
    for layer in ("conv1", "conv2", "ip1"):
        for i in range(2):
            np.testing.assert_array_equal(net.params[layer][i].data,
                                          np.load(tiny / f"param_{layer}_{i}.npy"))


def test_caffe_solverstate_history_loads_into_our_solver(tiny, tmp_path):
    """Caffe's .solverstate (no caffeish extras) restores iter, weights and momentum history."""
    import shutil
    for f in ("tiny_a_iter_30.caffemodel", "tiny_a_iter_30.solverstate"):
        shutil.copy(tiny / f, tmp_path / f)
    shutil.copy(tiny / "deploy.prototxt", tmp_path / "net.prototxt")
    from caffeish.config.yaml_loader import parse_message
    solver = caffeish.get_solver(parse_message(
        "net: net.prototxt\nbase_lr: 0.02\nlr_policy: fixed\nmomentum: 0.9\nmax_iter: 30\n",
        "SolverParameter", str(tmp_path / "solver.yaml")))
    solver.restore(str(tmp_path / "tiny_a_iter_30.solverstate"))
    assert solver.iter == 30
    np.testing.assert_array_equal(solver.net.params["ip1"][0].data,
                                  np.load(tiny / "param_ip1_0.npy"))
    assert any(np.abs(h).sum() > 0 for h in solver.history)
