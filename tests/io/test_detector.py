"""caffeish.Detector (pycaffe's caffe.Detector): windows cut (with R-CNN context padding)
and scored, checked against the same steps done by hand."""
import numpy as np
import pytest
from PIL import Image

import caffeish
from caffeish.errors import DataError
from caffeish.io import load_image, resize_image

DEPLOY = """\
layer:
  - {name: input, type: Input, top: data, input_param: {shape: {dim: [2, 3, 8, 8]}}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip,
     inner_product_param: {num_output: 3, weight_filler: {type: gaussian, std: 0.1}}}
  - {name: prob, type: Softmax, bottom: ip, top: prob}
"""
MEAN = np.array([0.2, 0.3, 0.4])


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "deploy.yaml").write_text(DEPLOY)
    net = caffeish.Net(str(tmp_path / "deploy.yaml"), caffeish.TEST, seed=4)
    net.save(str(tmp_path / "w.caffemodel"))
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            tmp_path / f"im{i}.png")
    W, b = (p.data.astype(np.float64) for p in net.params["ip"])
    return tmp_path, W, b


def score(crop, W, b, raw_scale=2.0):
    """preprocess by hand (resize to 8x8, HWC -> CHW, RGB -> BGR, raw scale, mean) + the net."""
    x = resize_image(crop, (8, 8)).transpose(2, 0, 1)[::-1] * raw_scale \
        - MEAN[:, None, None]
    z = W @ x.ravel() + b
    e = np.exp(z - z.max())
    return e / e.sum()


def test_windows_without_context_are_plain_crops(setup):
    d, W, b = setup
    det = caffeish.Detector(str(d / "deploy.yaml"), str(d / "w.caffemodel"), mean=MEAN,
                            raw_scale=2.0, channel_swap=(2, 1, 0))
    windows = {d / "im0.png": [(0, 0, 10, 12), (5, 6, 19, 23)],
               d / "im1.png": [(2, 3, 9, 20)]}
    found = det.detect_windows([(str(f), w) for f, w in windows.items()])
    assert len(found) == 3                      # 3 windows, batches of 2 (one padded)
    k = 0
    for f, ws in windows.items():
        im = load_image(f)
        for (y0, x0, y1, x1) in ws:
            assert found[k]["filename"] == str(f)
            assert tuple(found[k]["window"]) == (y0, x0, y1, x1)
            np.testing.assert_allclose(found[k]["prediction"],
                                       score(im[y0:y1, x0:x1], W, b), rtol=1e-4, atol=1e-6)
            k += 1


def test_context_padding_grows_the_box_and_fills_with_the_mean(setup):
    d, W, b = setup
    det = caffeish.Detector(str(d / "deploy.yaml"), str(d / "w.caffemodel"), mean=MEAN,
                            raw_scale=2.0, channel_swap=(2, 1, 0), context_pad=2)
    im = load_image(d / "im0.png")
    # the whole image as the window: grown by 8 / (8 - 4) = 2 around its centre, so about a
    # quarter of the canvas on each side is padding, filled with the mean in image units
    crop = det.crop(im, (0, 0, 19, 23))
    assert crop.shape == (8, 8, 3)
    fill = (MEAN[::-1] / 2.0).astype(np.float32)          # unswapped, divided by raw_scale
    np.testing.assert_allclose(crop[0, 0], fill, rtol=1e-6)
    np.testing.assert_allclose(crop[7, 7], fill, rtol=1e-6)
    # centre: the image, resized into the unpadded part
    # box: centre (10, 12), half sizes (10, 12) -> rows -10..30, cols -12..36; scale 8/41, 8/49
    pad_y, pad_x = round(10 * 8 / 41), round(12 * 8 / 49)
    h, w = round(21 * 8 / 41), round(25 * 8 / 49)
    np.testing.assert_allclose(crop[pad_y:pad_y + h, pad_x:pad_x + w],
                               resize_image(im, (h, w)), rtol=1e-6)
    assert (pad_y, pad_x, h, w) == (2, 2, 4, 4)
    # and the score is the net on that canvas, with the padding at 0 after the mean
    found = det.detect_windows([(str(d / "im0.png"), [(0, 0, 19, 23)])])
    x = crop.transpose(2, 0, 1)[::-1] * 2.0 - MEAN[:, None, None]
    assert np.abs(x[:, 0, 0]).max() < 1e-6
    z = W @ x.ravel() + b
    np.testing.assert_allclose(found[0]["prediction"], np.exp(z) / np.exp(z).sum(), rtol=1e-4)


def test_detector_errors(setup):
    d, _, _ = setup
    det = caffeish.Detector(str(d / "deploy.yaml"), str(d / "w.caffemodel"), context_pad=1)
    with pytest.raises(DataError, match="outside the 20 x 24 image"):
        det.crop(load_image(d / "im0.png"), (30, 30, 40, 40))
    with pytest.raises(DataError, match="leaves no room"):
        det.configure_crop(4)
    with pytest.raises(DataError, match="call detect_windows"):
        det.detect_selective_search([str(d / "im0.png")])
