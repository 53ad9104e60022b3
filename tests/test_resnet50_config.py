"""configs/resnet50: ResNet-50 in Kaiming He's layout, written by make_resnet50.py with
net_spec; the committed YAML is that script's output and builds the published shapes."""
import importlib.util
from pathlib import Path

import numpy as np

import caffeish

HERE = Path(__file__).resolve().parents[1] / "configs" / "resnet50"


def generator():
    spec = importlib.util.spec_from_file_location("make_resnet50", HERE / "make_resnet50.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_committed_yaml_is_the_generators_output(tmp_path):
    out = generator().write(tmp_path / "r.yaml")
    assert out.read_text() == (HERE / "resnet50_deploy.yaml").read_text()


def test_resnet50_has_the_published_names_shapes_and_parameter_count():
    net = caffeish.Net(str(HERE / "resnet50_deploy.yaml"), caffeish.TEST, seed=1)
    try:
        for name in ("conv1", "bn_conv1", "scale_conv1", "res2a_branch1", "bn2a_branch1",
                     "scale5c_branch2c", "res5c", "fc1000"):
            assert name in net.layer_dict
        shapes = {"pool1": (1, 64, 56, 56), "res2c": (1, 256, 56, 56),
                  "res3d": (1, 512, 28, 28), "res4f": (1, 1024, 14, 14),
                  "res5c": (1, 2048, 7, 7), "pool5": (1, 2048, 1, 1), "prob": (1, 1000)}
        for blob, shape in shapes.items():
            assert net.blobs[blob].shape == shape, blob
        # conv and fc weights, BatchNorm's mean/var/factor, Scale's gamma/beta
        assert sum(b.count for blobs in net.params.values() for b in blobs) == 25_610_205
        rng = np.random.default_rng(0)
        for name, layer in net.layer_dict.items():
            if layer.type == "BatchNorm":
                mean, var, factor = layer.blobs
                mean.data[...] = rng.normal(0, 0.1, mean.shape)
                var.data[...] = rng.uniform(0.5, 1.5, var.shape)
                factor.data[...] = 1
            elif layer.type == "Scale":
                layer.blobs[0].data[...] = 1
        out = net.forward(data=rng.random((1, 3, 224, 224)))
        assert np.isfinite(out["prob"]).all()
        np.testing.assert_allclose(out["prob"].sum(), 1.0, rtol=1e-5)
    finally:
        net.close()
