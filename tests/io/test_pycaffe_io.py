"""caffeish.io as pycaffe's caffe.io (load_image, resize_image, oversample, Transformer, array
<-> BlobProto / Datum) and caffeish.Classifier, against scikit-image, protobuf and plain loops."""
import numpy as np
import pytest
from PIL import Image

import caffeish
from caffeish.errors import DataError
from caffeish.io import (Transformer, array_to_blobproto, array_to_datum, blobproto_to_array,
                         datum_to_array, load_image, oversample, resize_image)


@pytest.fixture
def rgb(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "c.png")
    return tmp_path / "c.png", a


def test_load_image_colour_gray_alpha_and_16_bit(tmp_path, rgb):
    path, a = rgb
    img = load_image(path)
    assert img.dtype == np.float32 and img.shape == (9, 11, 3)
    np.testing.assert_allclose(img, a / 255.0, rtol=1e-6)                # RGB, [0, 1]
    gray = load_image(path, color=False)
    assert gray.shape == (9, 11, 1)
    np.testing.assert_allclose(gray[:, :, 0], (a / 255.0) @ [0.2125, 0.7154, 0.0721], rtol=1e-5)
    g = a[:, :, 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    np.testing.assert_allclose(load_image(tmp_path / "g.png"),
                               np.repeat(g[:, :, None] / 255.0, 3, axis=2), rtol=1e-6)
    rgba = np.dstack([a, np.full((9, 11), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_allclose(load_image(tmp_path / "a.png"), a / 255.0, rtol=1e-6)
    deep = (np.arange(9 * 11, dtype=np.uint16).reshape(9, 11) * 601)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_allclose(load_image(tmp_path / "d.png", color=False)[:, :, 0],
                               deep / 65535.0, rtol=1e-6)
    with pytest.raises(DataError, match="no such image file"):
        load_image(tmp_path / "missing.png")


@pytest.mark.parametrize("dims", [(20, 31), (4, 5), (9, 3)], ids=["up", "down", "mixed"])
def test_resize_image_is_bilinear_with_replicated_edges(dims):
    transform = pytest.importorskip("skimage.transform", reason="scikit-image is the reference")
    im = np.random.default_rng(1).uniform(-2, 3, (9, 11, 5)).astype(np.float32)
    want = transform.resize(im.astype(np.float64), dims, order=1, mode="edge",
                            anti_aliasing=False)
    got = resize_image(im, dims)
    assert got.dtype == np.float32 and got.shape == dims + (5,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_resize_image_nearest():
    im = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    got = resize_image(im, (6, 2), interp_order=0)
    # centres: rows (i + .5) / 2 - .5 -> 0, 0, 1, 1, 2, 2; columns (j + .5) * 2 - .5 -> 0.5, 2.5
    rows, cols = [0, 0, 1, 1, 2, 2], [1, 3]
    np.testing.assert_array_equal(got[:, :, 0], im[:, :, 0][np.ix_(rows, cols)])
    with pytest.raises(DataError, match="interp_order 3"):
        resize_image(im, (2, 2), interp_order=3)


def test_oversample_is_corners_centre_and_their_mirrors():
    ims = [np.random.default_rng(s).random((7, 8, 2)).astype(np.float32) for s in range(2)]
    out = oversample(ims, (4, 5))
    assert out.shape == (20, 4, 5, 2)
    for n, im in enumerate(ims):
        starts = [(0, 0), (0, 3), (3, 0), (3, 3), (1, 1)]          # centre: int(3.5 - 2), int(4 - 2.5)
        for k, (i, j) in enumerate(starts):
            crop = im[i:i + 4, j:j + 5]
            np.testing.assert_array_equal(out[10 * n + k], crop)
            np.testing.assert_array_equal(out[10 * n + 5 + k], crop[:, ::-1])


def test_transformer_preprocess_and_deprocess():
    t = Transformer({"data": (1, 3, 6, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([104.0, 117.0, 123.0]))
    t.set_input_scale("data", 0.5)
    im = np.random.default_rng(2).random((6, 5, 3)).astype(np.float32)
    x = t.preprocess("data", im)
    want = (im.transpose(2, 0, 1)[::-1] * 255 - np.array([104, 117, 123])[:, None, None]) * 0.5
    assert x.shape == (3, 6, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(t.deprocess("data", x[None]), im, rtol=1e-5, atol=1e-6)
    # an image of another size is resized first
    big = resize_image(im, (12, 10))
    np.testing.assert_allclose(t.preprocess("data", big), t.preprocess("data",
                               resize_image(big, (6, 5))), rtol=1e-6)


def test_transformer_mean_image_is_resized_and_errors_are_clear():
    t = Transformer({"data": (1, 2, 4, 4)})
    mean = np.random.default_rng(3).random((2, 8, 8)).astype(np.float32)
    t.set_mean("data", mean)
    np.testing.assert_allclose(t.mean["data"],
                               resize_image(mean.transpose(1, 2, 0), (4, 4)).transpose(2, 0, 1))
    with pytest.raises(DataError, match="mean has 3 channels but input 'data' has 2"):
        t.set_mean("data", np.zeros(3))
    with pytest.raises(DataError, match="channel swap .* has 3 channels"):
        t.set_channel_swap("data", (2, 1, 0))
    with pytest.raises(DataError, match="'label' is not one of the Transformer's inputs"):
        t.set_raw_scale("label", 255)


def test_blobproto_and_datum_conversions():
    from tests.data_tools.photos import parse_datum
    a = np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32)
    d = a * 2
    blob = array_to_blobproto(a, d)
    np.testing.assert_array_equal(blobproto_to_array(blob), a)
    np.testing.assert_array_equal(blobproto_to_array(blob, return_diff=True), d)
    px = np.random.default_rng(5).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    raw = array_to_datum(px, label=7)
    pb = parse_datum(raw)                             # protobuf: an independent reading
    assert (pb.channels, pb.height, pb.width, pb.label) == (3, 4, 5, 7)
    assert pb.data == px.tobytes() and len(pb.float_data) == 0
    np.testing.assert_array_equal(datum_to_array(raw), px)
    fl = array_to_datum(a)
    assert list(parse_datum(fl).float_data) == pytest.approx(a.ravel().tolist())
    np.testing.assert_array_equal(datum_to_array(fl), a)
    with pytest.raises(DataError, match="C x H x W"):
        array_to_datum(np.zeros((2, 2)))


DEPLOY = """\
layer:
  - {name: input, type: Input, top: data, input_param: {shape: {dim: [10, 3, 4, 4]}}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip,
     inner_product_param: {num_output: 3, weight_filler: {type: gaussian, std: 0.1}}}
  - {name: prob, type: Softmax, bottom: ip, top: prob}
"""


@pytest.mark.parametrize("over", [True, False], ids=["10-crop", "centre"])
def test_classifier_predict_matches_the_steps_done_by_hand(tmp_path, over):
    (tmp_path / "deploy.yaml").write_text(DEPLOY)
    net = caffeish.Net(str(tmp_path / "deploy.yaml"), caffeish.TEST, seed=3)
    net.save(str(tmp_path / "w.caffemodel"))
    W, b = (p.data.astype(np.float64) for p in net.params["ip"])
    clf = caffeish.Classifier(str(tmp_path / "deploy.yaml"), str(tmp_path / "w.caffemodel"),
                              image_dims=(6, 6), mean=np.array([0.2, 0.3, 0.4]),
                              raw_scale=2.0, channel_swap=(2, 1, 0))
    rng = np.random.default_rng(6)
    images = [rng.random((9, 7, 3)).astype(np.float32) for _ in range(3)]
    got = clf.predict(images, oversample=over)
    assert got.shape == (3, 3)
    for n, im in enumerate(images):
        small = resize_image(im, (6, 6))
        starts = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]
        crops = [small[i:i + 4, j:j + 4] for i, j in starts]
        crops = crops + [c[:, ::-1] for c in crops] if over else [crops[4]]
        probs = []
        for c in crops:
            x = c.transpose(2, 0, 1)[::-1] * 2.0 - np.array([0.2, 0.3, 0.4])[:, None, None]
            z = W @ x.ravel() + b
            e = np.exp(z - z.max())
            probs.append(e / e.sum())
        np.testing.assert_allclose(got[n], np.mean(probs, axis=0), rtol=1e-4, atol=1e-6)
