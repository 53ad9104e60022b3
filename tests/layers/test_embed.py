"""Embed: shapes, naive lookup reference, gradients to weights and bias, index errors."""
import numpy as np
import pytest

from caffeish.errors import ConfigError, DataError, ShapeError
from caffeish.testing import (blobs_from, check_gradient_spec, forward_layer, make_layer,
                              setup_layer)


def embed_spec(name="embed", **p):
    p.setdefault("num_output", 3)
    p.setdefault("input_dim", 5)
    p.setdefault("weight_filler", {"type": "gaussian", "std": 0.5})
    p.setdefault("bias_filler", {"type": "gaussian", "std": 0.5})
    return {"name": name, "type": "Embed", "embed_param": p}


def embed_ref(idx, w, b):
    out = np.zeros(idx.shape + (w.shape[1],))
    for pos in np.ndindex(*idx.shape):
        for n in range(w.shape[1]):
            out[pos + (n,)] = w[int(idx[pos]), n] + (b[n] if b is not None else 0.0)
    return out


def assert_names_layer(excinfo, name):
    msg = str(excinfo.value)
    assert f"layer '{name}' (Embed)" in msg, msg


CASES = {
    "vector-N4": (dict(), np.array([0, 4, 2, 2.0])),
    "sequence-2x3": (dict(num_output=4, input_dim=6), np.array([[5, 0, 1], [1, 1, 3.0]])),
    "3d-2x2x2-nobias": (dict(bias_term=False), np.array([[[0, 1], [2, 3]], [[4, 0], [0, 0.0]]])),
    "scalar-1": (dict(num_output=2, input_dim=1), np.array([0.0])),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_embed_shapes_and_forward(case, dtype):
    p, idx = CASES[case]
    spec = embed_spec(**p)
    layer, bottom, top = forward_layer(spec, [idx], dtype=dtype)
    k, n = spec["embed_param"]["input_dim"], spec["embed_param"]["num_output"]
    bias = spec["embed_param"].get("bias_term", True)
    assert layer.blobs[0].shape == (k, n)
    assert len(layer.blobs) == (2 if bias else 1)
    if bias:
        assert layer.blobs[1].shape == (n,)
    assert top[0].shape == idx.shape + (n,)
    assert top[0].data.dtype == dtype
    want = embed_ref(idx, layer.blobs[0].data.astype(float),
                     layer.blobs[1].data.astype(float) if bias else None)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_embed_gradient_to_params(case):
    p, idx = CASES[case]
    worst = check_gradient_spec(embed_spec(**p), [idx], check_bottom=[])
    want = {"param[0]", "param[1]"} if p.get("bias_term", True) else {"param[0]"}
    assert set(worst) == want


def test_embed_backward_accumulates_repeated_rows():
    idx = np.array([1, 3, 1, 1.0])
    layer, bottom, top = forward_layer(embed_spec(), [idx])
    d = np.random.default_rng(0).standard_normal((4, 3))
    top[0].diff[...] = d
    for b in layer.blobs:
        b.diff[...] = 0
    layer.backward(top, [False], bottom)
    layer.backward(top, [False], bottom)
    want_w = np.zeros((5, 3))
    for i, k in enumerate(idx):
        want_w[int(k)] += 2 * d[i]
    np.testing.assert_allclose(layer.blobs[0].diff, want_w, rtol=1e-14)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * d.sum(axis=0), rtol=1e-14)


def test_embed_indices_get_no_gradient():
    layer, bottom, top = forward_layer(embed_spec(), [np.array([1.0, 2.0])])
    assert not layer.allow_force_backward(0)
    top[0].diff[...] = 1.0
    bottom[0].diff[...] = 8.0
    layer.backward(top, [True], bottom)
    assert np.all(bottom[0].diff == 0)


def test_embed_follows_bottom_reshape():
    layer, bottom, top = forward_layer(embed_spec(), [np.array([1.0, 2.0])])
    bottom[0].reshape((2, 3))
    bottom[0].data[...] = [[0, 1, 2], [3, 4, 0]]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (2, 3, 3)
    np.testing.assert_allclose(top[0].data, embed_ref(bottom[0].data, layer.blobs[0].data,
                                                      layer.blobs[1].data), rtol=1e-14)


@pytest.mark.parametrize("value", [5.0, -1.0, 1.5, np.nan],
                         ids=["too-big", "negative", "fraction", "nan"])
def test_embed_bad_index_is_data_error(value):
    layer = make_layer(embed_spec(name="emb"))
    bottom = blobs_from([np.array([0.0, value, 1.0])])
    top = setup_layer(layer, bottom)
    with pytest.raises(DataError) as e:
        layer.forward(bottom, top)
    assert_names_layer(e, "emb")
    assert "position 1" in str(e.value) and "input_dim = 5" in str(e.value)


@pytest.mark.parametrize("p,words", [
    (dict(num_output=0), "num_output"),
    (dict(input_dim=0), "input_dim"),
], ids=["no-num_output", "no-input_dim"])
def test_embed_config_errors(p, words):
    layer = make_layer(embed_spec(name="emb", **p))
    with pytest.raises(ConfigError) as e:
        setup_layer(layer, blobs_from([np.zeros(2)]))
    assert words in str(e.value)
    assert_names_layer(e, "emb")


def test_embed_missing_num_output():
    layer = make_layer({"name": "emb", "type": "Embed", "embed_param": {"input_dim": 4}})
    with pytest.raises(ConfigError) as e:
        setup_layer(layer, blobs_from([np.zeros(2)]))
    assert_names_layer(e, "emb")


def test_embed_loaded_weights_of_wrong_shape():
    layer = make_layer(embed_spec(name="emb"))
    layer.blobs.append(layer.new_param_blob((3, 5)))
    with pytest.raises(ShapeError) as e:
        setup_layer(layer, blobs_from([np.zeros(2)]))
    assert_names_layer(e, "emb")
