"""The BVLC reference models (CaffeNet, AlexNet, GoogLeNet): Caffe's own prototxts, kept in
models_zoo/<name>/caffe/, import to the committed YAML, export and re-import to the same
structure, and build as nets with every shape inferred (no weights needed)."""
from pathlib import Path

import numpy as np
import pytest

import caffeish
from caffeish.commands.interop import export_yaml, import_prototxt
from caffeish.config.schema import Msg
from caffeish.config.yaml_loader import load_message
from caffeish.errors import ConfigError
from caffeish.io.prototxt import parse_prototxt, parse_prototxt_file
from caffeish.io.upgrade import upgrade_net

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "caffeish" / "models_zoo"
MODELS = ("bvlc_reference_caffenet", "bvlc_alexnet", "bvlc_googlenet")
FILES = [(m, f.stem) for m in MODELS for f in sorted((ZOO / m / "caffe").glob("*.prototxt"))]
KIND = {True: "SolverParameter", False: "NetParameter"}


def _kind(stem):
    return KIND["solver" in stem]


def test_every_reference_file_is_here():
    assert len(FILES) == 10
    for m in MODELS:
        assert (ZOO / m / "caffe" / "deploy.prototxt").is_file()
        assert (ZOO / m / "caffe" / "train_val.prototxt").is_file()


@pytest.mark.parametrize("model,stem", FILES, ids=[f"{m}-{s}" for m, s in FILES])
def test_import_gives_the_committed_yaml(model, stem, tmp_path):
    src = ZOO / model / "caffe" / f"{stem}.prototxt"
    msg, text, _, warnings = import_prototxt(str(src), str(tmp_path / f"{stem}.yaml"))
    committed = load_message(ZOO / model / f"{stem}.yaml", _kind(stem))
    if _kind(stem) == "SolverParameter":
        # the committed solvers point at train_val.yaml beside them (Caffe: from its root)
        assert committed.net == "train_val.yaml"
        msg.set("net", "train_val.yaml")
    assert msg == committed
    assert not warnings, warnings  # every layer type these models use is implemented


@pytest.mark.parametrize("model,stem", FILES, ids=[f"{m}-{s}" for m, s in FILES])
def test_export_and_reimport_same_structure(model, stem, tmp_path):
    kind = _kind(stem)
    original = parse_prototxt_file(ZOO / model / "caffe" / f"{stem}.prototxt", kind)
    yaml_msg, text, _ = export_yaml(str(ZOO / model / f"{stem}.yaml"),
                                    str(tmp_path / f"{stem}.prototxt"))
    again = parse_prototxt(text, kind, f"{stem}.prototxt")
    assert again == yaml_msg
    if kind == "NetParameter":
        assert upgrade_net(again)[0] == upgrade_net(original)[0]
        assert [lp.name for lp in again.layer] == [lp.name for lp in original.layer]
    else:
        again.set("net", original.net)
        assert again == original


def _with_dummy_data(param: Msg, batch: int) -> Msg:
    """train_val with its ImageNet Data layers replaced by DummyData of the cropped shape."""
    p = param.copy()
    layers = []
    for lp in p.layer:
        if lp.type == "Data":
            crop = lp.transform_param.crop_size
            d = Msg("LayerParameter", {
                "name": lp.name, "type": "DummyData", "top": list(lp.top),
                "include": [r.copy() for r in lp.include],
                "dummy_data_param": {"shape": [{"dim": [batch, 3, crop, crop]},
                                               {"dim": [batch]}]}})
            layers.append(d)
        else:
            layers.append(lp)
    p.set("layer", layers)
    return p


def _param_count(net):
    return sum(b.count for blobs in net.params.values() for b in blobs)


# CaffeNet / AlexNet: conv1 34,944 + conv2 307,456 + conv3 885,120 + conv4 663,936
# + conv5 442,624 + fc6 37,752,832 + fc7 16,781,312 + fc8 4,097,000
ALEX_PARAMS = 60_965_224


@pytest.mark.parametrize("model", MODELS)
def test_deploy_builds_with_shapes(model):
    missing = {"LRN", "Concat", "Dropout"} - set(caffeish.layer_type_list())
    if missing:
        pytest.skip(f"layers not implemented yet: {sorted(missing)}")
    net = caffeish.Net(ZOO / model / "deploy.yaml", phase="TEST")
    try:
        assert net.blobs["prob"].shape == (10, 1000)
        if model == "bvlc_googlenet":
            assert net.blobs["data"].shape == (10, 3, 224, 224)
            assert net.blobs["inception_5b/output"].shape == (10, 1024, 7, 7)
            assert net.blobs["pool5/7x7_s1"].shape == (10, 1024, 1, 1)
            assert len([n for n in net.layer_names if n.endswith("/output")]) == 9
        else:
            assert net.blobs["data"].shape == (10, 3, 227, 227)
            assert net.blobs["conv1"].shape == (10, 96, 55, 55)
            assert net.blobs["pool5"].shape == (10, 256, 6, 6)
            assert net.blobs["fc6"].shape == (10, 4096)
            assert _param_count(net) == ALEX_PARAMS
        assert net.outputs == ["prob"]
    finally:
        net.close()


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_train_val_builds_with_shapes(model, phase):
    missing = {"LRN", "Concat", "Dropout", "DummyData"} - set(caffeish.layer_type_list())
    if missing:
        pytest.skip(f"layers not implemented yet: {sorted(missing)}")
    param = _with_dummy_data(load_message(ZOO / model / "train_val.yaml", "NetParameter"), 2)
    net = caffeish.Net(param, phase=phase)
    try:
        loss_tops = {t for names, ws in zip(net.top_name_vecs, net.loss_weights)
                     for t, w in zip(names, ws) if w}
        if model == "bvlc_googlenet":
            # two auxiliary classifiers weighted 0.3, the main one 1
            assert {"loss1/loss1", "loss2/loss2", "loss3/loss3"} <= loss_tops
            assert net.blobs["loss3/classifier"].shape == (2, 1000)
            if phase == "TEST":
                assert "loss3/top-5" in net.outputs
        else:
            assert loss_tops == {"loss"}
            assert net.blobs["fc8"].shape == (2, 1000)
            assert _param_count(net) == ALEX_PARAMS
            assert ("accuracy" in net.outputs) == (phase == "TEST")
        for name, layer in net.layer_dict.items():
            for b in layer.blobs:
                assert np.isfinite(b.data).all(), name
    finally:
        net.close()


def test_prototxt_syntax_error_names_line_and_column(tmp_path):
    src = (ZOO / "bvlc_alexnet" / "caffe" / "deploy.prototxt").read_text().splitlines()
    i = next(k for k, line in enumerate(src) if line.strip() == 'name: "conv2"')
    src[i] = src[i].replace('name: "conv2"', 'name "conv2"')
    bad = tmp_path / "deploy.prototxt"
    bad.write_text("\n".join(src) + "\n")
    col = src[i].index('"conv2"') + 1
    with pytest.raises(ConfigError) as e:
        parse_prototxt_file(bad, "NetParameter")
    assert f"{bad}:{i + 1}:{col}:" in str(e.value)
    assert "expected ':'" in str(e.value)
    with pytest.raises(ConfigError, match=rf":{i + 1}:{col}:"):
        caffeish.Net(str(bad), phase="TEST")
