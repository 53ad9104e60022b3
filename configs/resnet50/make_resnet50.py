"""Writes resnet50_deploy.yaml: ResNet-50 in the layout of Kaiming He's deploy prototxt (the one
the Caffe model zoo's ResNet-50 weights go with), built with caffeish.net_spec.

    python configs/resnet50/make_resnet50.py            # rewrites resnet50_deploy.yaml here

Layer and blob names are the published ones (conv1, bn_conv1, scale_conv1, res2a_branch1,
bn2a_branch1, scale2a_branch1, res2a_branch2a, ..., res2a, res2a_relu, ..., pool5, fc1000,
prob), so `--weights ResNet-50-model.caffemodel` copies every layer by name. BatchNorm uses the
stored statistics (use_global_stats) and a Scale layer with bias follows each, in place.
"""
from pathlib import Path

from caffeish.net_spec import NetSpec, layers as L, params as P


def conv_bn_scale(n, conv, bn, scale, bottom, num_output, kernel, stride=1, pad=0):
    """Convolution (no bias) -> BatchNorm -> Scale (bias), the last two in place."""
    n[conv] = L.Convolution(bottom, num_output=num_output, kernel_size=kernel, stride=stride,
                            pad=pad, bias_term=False, weight_filler=dict(type="msra"))
    n[bn] = L.BatchNorm(n[conv], use_global_stats=True, in_place=True)
    n[scale] = L.Scale(n[bn], bias_term=True, in_place=True)
    return n[scale]


def resnet50(batch: int = 1) -> NetSpec:
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 3, 224, 224]))
    x = conv_bn_scale(n, "conv1", "bn_conv1", "scale_conv1", n.data, 64, 7, stride=2, pad=3)
    n.conv1_relu = L.ReLU(x, in_place=True)
    n.pool1 = L.Pooling(n.conv1_relu, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    x = n.pool1
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], 2):
        for b in range(blocks):
            name = f"{stage}{chr(ord('a') + b)}"
            stride = 2 if b == 0 and stage > 2 else 1
            if b == 0:
                shortcut = conv_bn_scale(n, f"res{name}_branch1", f"bn{name}_branch1",
                                         f"scale{name}_branch1", x, 4 * width, 1, stride)
            else:
                shortcut = x
            y = x
            for part, (out, k, s, p) in zip("abc", [(width, 1, stride, 0), (width, 3, 1, 1),
                                                    (4 * width, 1, 1, 0)]):
                y = conv_bn_scale(n, f"res{name}_branch2{part}", f"bn{name}_branch2{part}",
                                  f"scale{name}_branch2{part}", y, out, k, s, p)
                if part != "c":
                    n[f"res{name}_branch2{part}_relu"] = L.ReLU(y, in_place=True)
                    y = n[f"res{name}_branch2{part}_relu"]
            n[f"res{name}"] = L.Eltwise(shortcut, y)
            n[f"res{name}_relu"] = L.ReLU(n[f"res{name}"], in_place=True)
            x = n[f"res{name}_relu"]
    n.pool5 = L.Pooling(x, pool=P.Pooling.AVE, kernel_size=7, stride=1)
    n.fc1000 = L.InnerProduct(n.pool5, num_output=1000, weight_filler=dict(type="xavier"))
    n.prob = L.Softmax(n.fc1000)
    return n


HEADER = ("# ResNet-50 deploy net (Kaiming He's layout and names), written by make_resnet50.py "
          "beside this file.\nname: ResNet-50\n")


def write(path=Path(__file__).with_name("resnet50_deploy.yaml")):
    path.write_text(HEADER + resnet50().to_yaml())
    return path


if __name__ == "__main__":
    print(f"wrote {write()}")
