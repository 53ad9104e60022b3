"""ImageData: batches straight from image files named in a list, like Caffe's ImageDataLayer."""
import json

import numpy as np
import pytest
from PIL import Image

from caffeish.errors import ConfigError, DataError
from caffeish.testing import make_layer, setup_layer
from tests.data_tools.photos import caffe_imageset, reference_resize

N = 7


@pytest.fixture
def image_dir(tmp_path):
    """N colour PNGs of 10 x 12 (H x W) with labels 10..16, and their list file."""
    rng = np.random.default_rng(5)
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    arrays, lines = [], []
    for i in range(N):
        a = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
        rel = f"sub/im {i}.png" if i == 3 else f"im{i}.png"        # one path with a space
        Image.fromarray(a).save(root / rel)
        arrays.append(a[:, :, ::-1].transpose(2, 0, 1))           # BGR, C x H x W
        lines.append(f"{rel} {10 + i}\n")
    lst = tmp_path / "list.txt"
    lst.write_text("".join(lines))
    return root, lst, np.stack(arrays), np.arange(10, 10 + N)


def spec(lst, root, batch_size=3, transform=None, **param):
    s = {"type": "ImageData", "name": "data", "top": ["data", "label"],
         "image_data_param": {"source": str(lst), "root_folder": str(root) + "/",
                              "batch_size": batch_size, **param}}
    if transform:
        s["transform_param"] = transform
    return s


def build(s, phase="TRAIN", seed=1701):
    layer = make_layer(s, phase=phase, dtype=np.float32, seed=seed)
    top = setup_layer(layer, [], n_tops=2)
    return layer, top


def batches(layer, top, n):
    out = []
    for _ in range(n):
        layer.forward([], top)
        out.append((top[0].data.copy(), top[1].data.copy()))
    return out


def test_list_order_with_wraparound(image_dir):
    root, lst, images, labels = image_dir
    layer, top = build(spec(lst, root, 3))
    try:
        assert [t.shape for t in top] == [(3, 3, 10, 12), (3,)]
        for b, (data, lab) in enumerate(batches(layer, top, 4)):     # 12 items from 7: wraps
            idx = [(3 * b + i) % N for i in range(3)]
            np.testing.assert_array_equal(data, images[idx].astype(np.float32))
            np.testing.assert_array_equal(lab, labels[idx])
    finally:
        layer.close()


def test_resize_gray_and_transform(image_dir):
    root, lst, images, labels = image_dir
    s = spec(lst, root, 2, {"scale": 0.5, "mean_value": [100], "crop_size": 6},
             new_height=9, new_width=8, is_color=False)
    layer, top = build(s, phase="TEST")
    try:
        assert top[0].shape == (2, 1, 6, 6)
        data, lab = batches(layer, top, 1)[0]
        for i in range(2):
            rgb = images[i][::-1].transpose(1, 2, 0).astype(np.int64)
            gray = ((9797 * rgb[..., 0] + 19234 * rgb[..., 1] + 3737 * rgb[..., 2]) >> 15)
            small = reference_resize(gray.astype(np.uint8), 9, 8)
            crop = small[1:7, 1:7].astype(np.float32)          # TEST: centre crop
            np.testing.assert_array_equal(data[i, 0], (crop - 100) * np.float32(0.5))
        np.testing.assert_array_equal(lab, labels[:2])
    finally:
        layer.close()


def test_shuffle_permutes_each_epoch_and_follows_the_seed(image_dir):
    root, lst, images, labels = image_dir
    s = spec(lst, root, N, shuffle=True)
    layer, top = build(s, seed=3)
    again, top2 = build(s, seed=3)
    try:
        epochs = [lab.astype(int).tolist() for _, lab in batches(layer, top, 3)]
        for e in epochs:
            assert sorted(e) == labels.tolist()
        assert epochs[0] != labels.tolist() and epochs[0] != epochs[1]
        got = batches(again, top2, 3)
        assert [lab.astype(int).tolist() for _, lab in got] == epochs
        for data, lab in got:                  # each image still travels with its own label
            np.testing.assert_array_equal(data, images[lab.astype(int) - 10].astype(np.float32))
    finally:
        layer.close()
        again.close()


def test_rand_skip_starts_inside_the_list(image_dir):
    root, lst, images, labels = image_dir
    starts = set()
    for seed in range(6):
        layer, top = build(spec(lst, root, 1, rand_skip=N), seed=seed)
        try:
            got = [int(lab[0]) - 10 for _, lab in batches(layer, top, N + 1)]
        finally:
            layer.close()
        k = got[0]
        assert got == [(k + i) % N for i in range(N + 1)]      # then on in list order
        starts.add(k)
    assert len(starts) > 1


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_exact_resume(image_dir, shuffle):
    root, lst, images, labels = image_dir
    s = spec(lst, root, 3, {"mirror": True, "crop_size": 8}, shuffle=shuffle)
    layer, top = build(s, seed=21)
    try:
        batches(layer, top, 2)
        state = json.loads(json.dumps(layer.get_state()))     # as a snapshot stores it
        want = batches(layer, top, 4)                          # crosses an epoch boundary
    finally:
        layer.close()
    other, top2 = build(s, seed=99)
    try:
        other.set_state(state)
        got = batches(other, top2, 4)
        for (d1, l1), (d2, l2) in zip(want, got):
            np.testing.assert_array_equal(d1, d2)
            np.testing.assert_array_equal(l1, l2)
    finally:
        other.close()


def test_root_folder_without_slash_and_relative_to_the_list(image_dir, monkeypatch):
    root, lst, images, labels = image_dir
    monkeypatch.chdir(root.parent)
    s = spec("list.txt", "imgs", 2)
    s["image_data_param"]["root_folder"] = "imgs"
    layer, top = build(s)
    try:
        data, lab = batches(layer, top, 1)[0]
        np.testing.assert_array_equal(data, images[:2].astype(np.float32))
    finally:
        layer.close()


def test_caffe_imageset_through_image_data():
    d = caffe_imageset()
    pixels = np.load(d / "lmdb_raw_32x32.pixels_uint8_CHW.npy")
    labels = [h["label"] for h in json.loads((d / "lmdb_raw_32x32.datums.json").read_text())]
    layer, top = build(spec(d / "list.txt", d / "images", 10, new_height=32, new_width=32))
    try:
        got = batches(layer, top, 2)
        np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), pixels)
        np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), labels)
    finally:
        layer.close()


# --- errors ---------------------------------------------------------------------------------------
def test_missing_image_is_a_data_error_naming_it(image_dir):
    root, lst, images, labels = image_dir
    (root / "im1.png").unlink()
    layer, top = build(spec(lst, root, 3))
    try:
        with pytest.raises(DataError, match=r"layer 'data' \(ImageData\).*'im1.png' \(label 11\)"
                           r".*no such file"):
            batches(layer, top, 1)
    finally:
        layer.close()


def test_first_image_unreadable_fails_at_setup(image_dir):
    root, lst, images, labels = image_dir
    (root / "im0.png").write_text("not an image")
    with pytest.raises(DataError, match="'im0.png'.*cannot decode"):
        build(spec(lst, root, 3))


def test_mixed_sizes_in_a_batch(image_dir):
    root, lst, images, labels = image_dir
    Image.new("RGB", (5, 5)).save(root / "im1.png")
    layer, top = build(spec(lst, root, 3))
    try:
        with pytest.raises(DataError, match="'im1.png' is 3 x 5 x 5 but 'im0.png'.*new_height"):
            batches(layer, top, 1)
    finally:
        layer.close()


def test_config_errors(image_dir, tmp_path):
    root, lst, images, labels = image_dir
    with pytest.raises(ConfigError, match="new_height and new_width must be set together"):
        build(spec(lst, root, 2, new_height=5))
    with pytest.raises(DataError, match="image list .*nope.txt.* not found"):
        build(spec(tmp_path / "nope.txt", root, 2))
    with pytest.raises(ConfigError, match="source is not set"):
        build({"type": "ImageData", "name": "d", "top": ["d", "l"],
               "image_data_param": {"batch_size": 2}})
    (tmp_path / "bad.txt").write_text("im0.png 0\nim1.png one\n")
    with pytest.raises(DataError, match="bad.txt:2: label 'one' is not an integer"):
        build(spec(tmp_path / "bad.txt", root, 2))


def test_net_reads_images_beside_its_yaml(image_dir, tmp_path, monkeypatch):
    """A net file naming `list.txt` and `imgs/` finds them next to itself from any directory."""
    from caffeish.net import Net

    root, lst, images, labels = image_dir
    net_file = tmp_path / "net.yaml"
    net_file.write_text("""\
name: images
layer:
  - name: data
    type: ImageData
    top: [data, label]
    transform_param: {scale: 0.00390625}
    image_data_param: {source: list.txt, root_folder: imgs/, batch_size: 4}
  - name: ip
    type: InnerProduct
    bottom: data
    top: ip
    inner_product_param: {num_output: 17, weight_filler: {type: xavier}}
  - name: loss
    type: SoftmaxWithLoss
    bottom: [ip, label]
    top: loss
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    net = Net(str(net_file), phase="TRAIN", seed=1)
    try:
        net.forward()
        np.testing.assert_allclose(net.blobs["data"].data,
                                   images[:4].astype(np.float32) * np.float32(0.00390625))
        np.testing.assert_array_equal(net.blobs["label"].data, labels[:4])
        assert np.isfinite(net.blobs["loss"].data).all()
    finally:
        net.close()
