"""WindowData: Caffe's R-CNN window sampler. Every batch item is checked against an independent
rendering (OpenCV, written from Caffe's WindowDataLayer::load_batch) of the window it must be."""
import math

import numpy as np
import pytest
from PIL import Image

from caffeish.errors import ConfigError, DataError
from caffeish.layers.window_data import parse_window_file
from caffeish.testing import make_layer, setup_layer

cv2 = pytest.importorskip("cv2", reason="OpenCV is the reference for the window warping "
                                        "(pip install opencv-python-headless)")

# (height, width) of the three images
SIZES = [(40, 50), (30, 30), (24, 36)]
# per image: (class, overlap, x1, y1, x2, y2)
WINDOWS = [
    [(1, 0.9, 5, 4, 30, 25), (2, 0.7, 0, 0, 49, 39), (0, 0.1, 10, 10, 20, 35),
     (3, 0.3, 2, 2, 12, 12)],                                   # 0.3: background (class 0)
    [(2, 0.6, 3, 8, 20, 29), (0, 0.0, 0, 0, 9, 9), (1, 0.2, 15, 1, 29, 14),
     (1, 0.8, 0, 2, 0, 20)],                    # slivers on the edge: the grown box's warp
    [(3, 0.5, 20, 10, 35, 23), (0, 0.25, 1, 1, 7, 18), (0, 0.05, 2, 0, 20, 0)],  # overshoots
]


def write_window_file(tmp_path, windows=WINDOWS, sizes=SIZES, gray=False, root=True):
    rng = np.random.default_rng(11)
    imgs = tmp_path / "imgs"
    imgs.mkdir(exist_ok=True)
    lines, pixels = [], []
    for i, ((h, w), wins) in enumerate(zip(sizes, windows)):
        if gray:
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
            Image.fromarray(a).save(imgs / f"im{i}.png")
            pixels.append(a[:, :, None])
        else:
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(a).save(imgs / f"im{i}.png")
            pixels.append(np.ascontiguousarray(a[:, :, ::-1]))          # BGR
        path = f"im{i}.png" if root else str(imgs / f"im{i}.png")
        lines += ["# %d" % i, path, str(1 if gray else 3), str(h), str(w), str(len(wins))]
        lines += [" ".join(str(v) for v in win) for win in wins]
    f = tmp_path / "windows.txt"
    f.write_text("\n".join(lines) + "\n")
    return f, imgs, pixels


def spec(f, imgs, batch_size=8, transform=None, **param):
    tp = {"crop_size": 12}
    tp.update(transform or {})
    return {"type": "WindowData", "name": "data", "top": ["data", "label"],
            "transform_param": tp,
            "window_data_param": {"source": str(f), "root_folder": str(imgs) + "/",
                                  "batch_size": batch_size, **param}}


def build(s, phase="TRAIN", seed=1701, dtype=np.float32):
    layer = make_layer(s, phase=phase, dtype=dtype, seed=seed)
    top = setup_layer(layer, [], n_tops=2)
    return layer, top


def batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


# --- the reference: Caffe's load_batch, step by step, with OpenCV ------------------------------
def c_round(v):
    return int(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))


def reference(img, box, crop, context_pad=0, square=False, mirror=False, mean=None,
              mean_values=None, scale=1.0):
    """One C x crop x crop item as Caffe's WindowDataLayer writes it (float32 arithmetic)."""
    f32 = np.float32
    x1, y1, x2, y2 = box
    rows, cols = img.shape[:2]
    size_w = size_h = crop
    pad_w = pad_h = 0
    if context_pad > 0 or square:
        cs = f32(crop) / f32(crop - 2 * context_pad)
        hh, hw = f32((y2 - y1 + 1) / 2.0), f32((x2 - x1 + 1) / 2.0)
        cx, cy = f32(x1) + hw, f32(y1) + hh
        if square:
            if hh > hw:
                hw = hh
            else:
                hh = hw
        x1, x2 = c_round(cx - hw * cs), c_round(cx + hw * cs)
        y1, y2 = c_round(cy - hh * cs), c_round(cy + hh * cs)
        uh, uw = y2 - y1 + 1, x2 - x1 + 1
        px1, py1 = max(0, -x1), max(0, -y1)
        px2, py2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
        x1 += px1
        x2 -= px2
        y1 += py1
        y2 -= py2
        sx, sy = f32(crop) / f32(uw), f32(crop) / f32(uh)
        size_w = c_round(f32(x2 - x1 + 1) * sx)
        size_h = c_round(f32(y2 - y1 + 1) * sy)
        px1, px2, py1 = c_round(f32(px1) * sx), c_round(f32(px2) * sx), c_round(f32(py1) * sy)
        pad_h = py1
        pad_w = px2 if mirror else px1
        if pad_h + size_h > crop:
            size_h = crop - pad_h
        if pad_w + size_w > crop:
            size_w = crop - pad_w
    roi = np.ascontiguousarray(img[y1:y2 + 1, x1:x2 + 1])
    warped = cv2.resize(roi, (size_w, size_h), interpolation=cv2.INTER_LINEAR)
    if warped.ndim == 2:
        warped = warped[:, :, None]
    if mirror:
        warped = warped[:, ::-1]
    c = img.shape[2]
    out = np.zeros((c, crop, crop), np.float32)
    mean_off = (mean.shape[2] - crop) // 2 if mean is not None else 0
    for h in range(warped.shape[0]):
        for w in range(warped.shape[1]):
            for ch in range(c):
                pixel = f32(warped[h, w, ch])
                if mean is not None:
                    m = f32(mean[ch, h + mean_off + pad_h, w + mean_off + pad_w])
                    v = (pixel - m) * f32(scale)
                elif mean_values is not None:
                    v = (pixel - f32(mean_values[ch])) * f32(scale)
                else:
                    v = pixel * f32(scale)
                out[ch, h + pad_h, w + pad_w] = v
    return out


def candidates(pixels, group, crop, mirror, **kw):
    """Every rendering a batch item of ``group`` (fg or bg) may be: (array, label, key)."""
    out = []
    for i, wins in enumerate(WINDOWS):
        for (label, ov, *box) in wins:
            fg = ov >= 0.5
            if fg != (group == "fg"):
                continue
            for flip in ((False, True) if mirror else (False,)):
                out.append((reference(pixels[i], box, crop, mirror=flip, **kw),
                            label if fg else 0, (i, tuple(box), flip)))
    return out


def match(item, cands):
    hits = [c for c in cands if np.array_equal(item, c[0])]
    assert hits, "batch item matches no window of its group"
    return hits[0]


# --- the window file ----------------------------------------------------------------------------
def test_parse_window_file(tmp_path):
    f, imgs, _ = write_window_file(tmp_path)
    wf = parse_window_file(f, str(imgs) + "/")
    assert [im.path for im in wf.images] == [f"{imgs}/im{i}.png" for i in range(3)]
    assert [(w.image, w.label, w.x1, w.y1, w.x2, w.y2) for w in wf.foreground] == [
        (0, 1, 5, 4, 30, 25), (0, 2, 0, 0, 49, 39), (1, 2, 3, 8, 20, 29), (1, 1, 0, 2, 0, 20),
        (2, 3, 20, 10, 35, 23)]
    assert [(w.image, w.label, w.overlap) for w in wf.background] == [
        (0, 0, 0.0), (0, 0, 0.0), (1, 0, 0.0), (1, 0, 0.0), (2, 0, 0.0), (2, 0, 0.0)]
    assert wf.dropped == 0
    assert wf.label_counts == {0: 6, 1: 2, 2: 2, 3: 1}
    assert wf.foreground[2].line == 17                            # file lines, for errors


def test_thresholds_move_windows_between_sets(tmp_path):
    f, imgs, _ = write_window_file(tmp_path)
    wf = parse_window_file(f, "", fg_threshold=0.3, bg_threshold=0.15)
    assert len(wf.foreground) == 6 and len(wf.background) == 3 and wf.dropped == 2
    assert sorted(w.label for w in wf.foreground) == [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("# 0\na.png\n3\n10\n10\n1\n1 0.9 0 0 5 5\n# 2\nb.png\n3 10 10 0\n", "index 2, expected 1"),
    ("# 0\na.png\n3\n10\n10\n1\n0 0.9 0 0 5 5\n", ":7: a foreground window"),
    ("# 0\na.png\n3\n10\n10\n1\n1 0.9 0 0 10 5\n", ":7: window (0, 0) - (10, 5)"),
    ("# 0\na.png\n3\n10\n10\n1\n1 0.9 6 0 5 5\n", "x1 <= x2"),
    ("# 0\na.png\n3\n10\n10\n2\n1 0.9 0 0 5 5\n", "the file ends where the window's class"),
    ("# 0\na.png\n3\n10\nten\n0\n", ":5: width 'ten' is not an integer"),
    ("# 0\na.png\n3\n10\n10\n1\n1 high 0 0 5 5\n", "overlap 'high' is not a number"),
    ("0\na.png\n", ":1: expected '#'"),
    ("# 0\na.png\n4\n10\n10\n0\n", "has 4 channels"),
    ("# 0\na.png\n3\n10\n10\n0\n# 1\nb.png\n1\n10\n10\n0\n", "every image of a window file"),
], ids=["empty", "order", "fg-class-0", "outside", "x2<x1", "truncated", "not-int", "not-float",
        "no-hash", "channels", "mixed-channels"])
def test_window_file_errors_name_file_and_line(tmp_path, text, message):
    f = tmp_path / "w.txt"
    f.write_text(text)
    with pytest.raises(DataError, match="w.txt") as e:
        parse_window_file(f)
    assert message in str(e.value)


# --- batches --------------------------------------------------------------------------------------
def check_batch(data, labels, pixels, crop, num_fg, mirror=False, **kw):
    bg = candidates(pixels, "bg", crop, mirror, **kw)
    fg = candidates(pixels, "fg", crop, mirror, **kw)
    keys = []
    for i in range(len(labels)):
        arr, label, key = match(data[i], fg if i >= len(labels) - num_fg else bg)
        assert labels[i] == label
        keys.append(key)
    return keys


def test_warp_batches_match_the_reference_and_cover_every_window(tmp_path):
    f, imgs, pixels = write_window_file(tmp_path)
    s = spec(f, imgs, batch_size=8, transform={"mirror": True, "mean_value": [10, 20, 30],
                                               "scale": 0.5})
    layer, top = build(s)
    try:
        assert [t.shape for t in top] == [(8, 3, 12, 12), (8,)]
        seen = set()
        for data, labels in batches(layer, top, 6):
            assert list(labels[:6]) == [0] * 6 and all(labels[6:] > 0)    # int(8 * .25) = 2 fg
            seen.update(check_batch(data, labels, pixels, 12, 2, mirror=True,
                                    mean_values=[10, 20, 30], scale=0.5))
    finally:
        layer.close()
    # 5 fg and 6 bg windows, each with and without the flip: 22 renderings in 48 draws
    assert len({k for k in seen if k[2]}) >= 4 and len({k for k in seen if not k[2]}) >= 4
    assert len({k[:2] for k in seen}) >= 7


@pytest.mark.parametrize("mode,context_pad", [("warp", 2), ("square", 0), ("square", 3)])
def test_context_padding_and_square_crops_match_the_reference(tmp_path, mode, context_pad):
    """Grown boxes hang over the image's edges (the whole-image window of image 0, the corner
    windows): the clipped part becomes zero padding, mirrored with the window."""
    f, imgs, pixels = write_window_file(tmp_path)
    s = spec(f, imgs, batch_size=10, transform={"mirror": True, "crop_size": 16},
             context_pad=context_pad, crop_mode=mode, fg_fraction=0.5)
    layer, top = build(s, phase="TEST")
    try:
        keys = []
        for data, labels in batches(layer, top, 4):
            keys += check_batch(data, labels, pixels, 16, 5, mirror=True,
                                context_pad=context_pad, square=(mode == "square"))
            assert (data == 0).any()                  # padding stays 0
    finally:
        layer.close()
    assert len(set(keys)) >= 8


@pytest.mark.parametrize("mode,context_pad,crop", [("warp", 0, 12), ("warp", 2, 16),
                                                    ("square", 0, 16), ("square", 3, 16),
                                                    ("warp", 5, 11)])
def test_every_window_and_flip_renders_as_the_reference(tmp_path, mode, context_pad, crop):
    """Each window of the file, flipped and not, rendered directly (no sampling)."""
    f, imgs, pixels = write_window_file(tmp_path)
    s = spec(f, imgs, transform={"crop_size": crop, "mean_value": [3], "scale": 2.0},
             context_pad=context_pad, crop_mode=mode)
    layer, top = build(s)
    try:
        src = layer._source
        wf = layer.window_file
        for w in wf.foreground + wf.background:
            box = (w.x1, w.y1, w.x2, w.y2)
            for flip in (False, True):
                out = np.zeros((3, crop, crop), np.float32)
                src.render(w, flip, out)
                np.testing.assert_array_equal(
                    out, reference(pixels[w.image], box, crop, context_pad, mode == "square",
                                   flip, mean_values=[3, 3, 3], scale=2.0),
                    err_msg=f"window {box} of image {w.image}, flip {flip}")
    finally:
        layer.close()


def test_mean_file_is_centred_and_shifted_with_the_padding(tmp_path):
    from caffeish.io.formats import write_binaryproto
    f, imgs, pixels = write_window_file(tmp_path)
    mean = np.random.default_rng(3).uniform(0, 255, (1, 3, 15, 15)).astype(np.float32)
    write_binaryproto(mean, tmp_path / "mean.binaryproto")
    s = spec(f, imgs, batch_size=6, transform={"mean_file": str(tmp_path / "mean.binaryproto"),
                                               "crop_size": 12, "mirror": True},
             context_pad=2, scale=0.25)               # legacy window_data_param.scale
    layer, top = build(s)
    try:
        for data, labels in batches(layer, top, 3):
            check_batch(data, labels, pixels, 12, 1, mirror=True, context_pad=2,
                        mean=mean[0], scale=0.25)
    finally:
        layer.close()


def test_gray_images_and_float64(tmp_path):
    f, imgs, pixels = write_window_file(tmp_path, gray=True)
    layer, top = build(spec(f, imgs, batch_size=4), dtype=np.float64)
    try:
        assert top[0].shape == (4, 1, 12, 12) and top[0].data.dtype == np.float64
        data, labels = batches(layer, top, 1)[0]
        check_batch(data, labels, pixels, 12, 1)
    finally:
        layer.close()


def test_fg_fraction_one_needs_no_background(tmp_path):
    wins = [[(1, 0.9, 0, 0, 9, 9)], [(2, 0.8, 2, 2, 20, 20)], [(1, 0.7, 1, 1, 5, 5)]]
    f, imgs, pixels = write_window_file(tmp_path, windows=wins)
    layer, top = build(spec(f, imgs, batch_size=5, fg_fraction=1.0))
    try:
        data, labels = batches(layer, top, 1)[0]
        assert set(labels) <= {1, 2}
    finally:
        layer.close()


def test_cache_images_gives_the_same_batches(tmp_path):
    f, imgs, _ = write_window_file(tmp_path)
    runs = []
    for cache in (False, True):
        layer, top = build(spec(f, imgs, transform={"mirror": True}, cache_images=cache))
        try:
            runs.append(batches(layer, top, 3))
        finally:
            layer.close()
    for (a, la), (b, lb) in zip(*runs):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_cached_images_are_read_once_at_setup(tmp_path):
    f, imgs, pixels = write_window_file(tmp_path)
    layer, top = build(spec(f, imgs, cache_images=True, transform={"mirror": True}))
    try:
        for p in imgs.iterdir():
            p.unlink()
        data, labels = batches(layer, top, 2)[1]
        check_batch(data, labels, pixels, 12, 2, mirror=True)
    finally:
        layer.close()


def test_exact_resume(tmp_path):
    f, imgs, _ = write_window_file(tmp_path)
    s = spec(f, imgs, transform={"mirror": True})
    layer, top = build(s)
    try:
        batches(layer, top, 2)
        state = layer.get_state()
        expected = batches(layer, top, 2)
    finally:
        layer.close()
    assert state["position"] == 2 and state["source"] == str(f)
    other, top2 = build(s, seed=99)                   # another seed: only the state decides
    try:
        other.set_state(state)
        for (a, la), (b, lb) in zip(expected, batches(other, top2, 2)):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(la, lb)
    finally:
        other.close()


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("change,exc,message", [
    ({"transform_param": {}, "window_data_param": {"source": "{f}", "batch_size": 4}},
     ConfigError, "needs transform_param.crop_size"),
    ({"window_data_param": {"batch_size": 4}}, ConfigError, "source is not set"),
    ({"window_data_param": {"batch_size": 0, "source": "{f}"}}, ConfigError,
     "batch_size must be positive"),
    ({"window_data_param": {"source": "{f}", "batch_size": 4, "crop_mode": "circle"}},
     ConfigError, "crop_mode 'circle'"),
    ({"window_data_param": {"source": "{f}", "batch_size": 4, "context_pad": 6}},
     ConfigError, "context_pad 6 leaves no room"),
    ({"window_data_param": {"source": "{f}", "batch_size": 4, "fg_fraction": 1.5}},
     ConfigError, "fg_fraction must be in"),
    ({"window_data_param": {"source": "nowhere.txt", "batch_size": 4}}, DataError,
     "window file 'nowhere.txt' not found"),
    ({"window_data_param": {"source": "{f}", "batch_size": 4, "fg_threshold": 0.95}},
     DataError, "no foreground windows (overlap >= fg_threshold 0.95)"),
    ({"window_data_param": {"source": "{f}", "batch_size": 4}}, DataError,
     "3 image(s) of the window file not found"),
    ({"window_data_param": {"source": "{f}", "batch_size": 4, "root_folder": "{imgs}/"},
      "transform_param": {"crop_size": 12, "mean_value": [1, 2]}}, ConfigError,
     "either 1 mean_value or as many as channels (3)"),
], ids=["no-crop", "no-source", "batch", "crop-mode", "context-pad", "fg-fraction", "missing",
        "no-fg", "images-missing", "mean-values"])
def test_configuration_errors_name_the_layer(tmp_path, change, exc, message):
    f, imgs, _ = write_window_file(tmp_path)
    s = {"type": "WindowData", "name": "wd", "top": ["data", "label"],
         "transform_param": {"crop_size": 12}}
    for k, v in change.items():
        s[k] = {kk: (vv.format(f=f, imgs=imgs) if isinstance(vv, str) else vv)
                for kk, vv in v.items()}
    with pytest.raises(exc) as e:
        build(s)
    assert "layer 'wd' (WindowData)" in str(e.value)
    assert message in str(e.value)


def test_mean_file_too_small_for_the_crop(tmp_path):
    from caffeish.io.formats import write_binaryproto
    f, imgs, _ = write_window_file(tmp_path)
    write_binaryproto(np.zeros((1, 3, 10, 10), np.float32), tmp_path / "m.binaryproto")
    with pytest.raises(DataError, match="needs 3 channels and at least 12 x 12"):
        build(spec(f, imgs, transform={"mean_file": str(tmp_path / "m.binaryproto")}))


def test_an_image_smaller_than_its_window_is_an_error_naming_the_line(tmp_path):
    f, imgs, _ = write_window_file(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / "im0.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / "im1.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / "im2.png")
    layer, top = build(spec(f, imgs))
    try:
        with pytest.raises(DataError, match=r"windows.txt:\d+: window .* lies outside image"):
            layer.forward([], top)
    finally:
        layer.close()


# --- from the CLI -------------------------------------------------------------------------------
WD_NET = """\
name: rcnn-tiny
layer:
  - name: data
    type: WindowData
    top: [data, label]
    transform_param: {crop_size: 12, mirror: true, mean_value: [104, 117, 123]}
    window_data_param: {source: windows.txt, root_folder: imgs, batch_size: 8,
                        fg_fraction: 0.5, context_pad: 2, scale: 0.0078125}
  - {name: conv, type: Convolution, bottom: data, top: conv,
     convolution_param: {num_output: 4, kernel_size: 3, weight_filler: {type: xavier}}}
  - {name: relu, type: ReLU, bottom: conv, top: conv}
  - {name: ip, type: InnerProduct, bottom: conv, top: ip,
     inner_product_param: {num_output: 4, weight_filler: {type: xavier}}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""

WD_SOLVER = """\
net: net.yaml
base_lr: 0.01
momentum: 0.9
lr_policy: fixed
display: 2
max_iter: 8
snapshot: 4
snapshot_prefix: snap/wd
random_seed: 3
"""


def test_train_and_resume_from_the_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from caffeish.cli import main
    from caffeish.io.formats import layer_blobs, read_netparameter

    write_window_file(tmp_path)                    # windows.txt names images under imgs/
    (tmp_path / "net.yaml").write_text(WD_NET)
    (tmp_path / "solver.yaml").write_text(WD_SOLVER)
    monkeypatch.chdir(tmp_path)

    def weights(path):
        return {n: a for n, _, a in layer_blobs(read_netparameter(str(path))) if a}

    r = CliRunner().invoke(main, ["train", "--solver", "solver.yaml"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "snap/wd_iter_8.caffemodel").exists()
    want = weights(tmp_path / "snap/wd_iter_8.caffemodel")
    (tmp_path / "snap/wd_iter_8.caffemodel").unlink()
    r = CliRunner().invoke(main, ["train", "--solver", "solver.yaml", "--snapshot",
                                  "snap/wd_iter_4.solverstate"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    got = weights(tmp_path / "snap/wd_iter_8.caffemodel")
    for k in want:                                  # the resumed run saw the same windows
        for a, b in zip(want[k], got[k]):
            np.testing.assert_array_equal(a, b)


def test_a_bad_window_file_is_one_message_from_the_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from caffeish.cli import main

    f, _, _ = write_window_file(tmp_path)
    f.write_text(f.read_text().replace("# 1", "# 4"))
    (tmp_path / "net.yaml").write_text(WD_NET)
    (tmp_path / "solver.yaml").write_text(WD_SOLVER)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["train", "--solver", "solver.yaml"])
    assert r.exit_code == 2
    assert "windows.txt:11: image index 4, expected 1" in r.output
    assert "Traceback" not in r.output


@pytest.mark.cuda
def test_gpu_mode_gives_the_cpu_batches(tmp_path):
    """Batches are staged to the device on the prefetch thread; the tops equal the CPU run."""
    from caffeish import backend

    f, imgs, _ = write_window_file(tmp_path)
    s = spec(f, imgs, batch_size=4, transform={"mirror": True})
    layer, top = build(s)
    try:
        want = batches(layer, top, 2)
    finally:
        layer.close()
    backend.set_mode_gpu()
    try:
        layer, top = build(s)
        try:
            got = batches(layer, top, 2)
        finally:
            layer.close()
    finally:
        backend.set_mode_cpu()
    for (a, la), (b, lb) in zip(want, got):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
