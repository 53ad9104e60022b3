"""caffeish draw: DOT text always, SVG when Graphviz's dot is installed."""
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from caffeish.config.yaml_loader import parse_message
from caffeish.errors import CaffeishError
from caffeish.tools import draw
from caffeish.tools.inspect import load_net_for_tools

REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "configs" / "mnist" / "lenet_train_test.yaml"

ID = r'"(?:[^"\\]|\\.)*"'
STATEMENT = re.compile(rf"^\s*(?:{ID}(?:\s*->\s*{ID})?\s*(?:\[(?:[^\]\"]|{ID})*\])?;"
                       rf"|rankdir=\w+;|(?:node|edge)\s*\[[^\]]*\];)$")


def parse_dot(text):
    """A strict reading of the DOT subset draw writes: every line a statement; returns
    (node ids with attributes, edges)."""
    lines = text.strip().splitlines()
    assert re.match(rf"^digraph {ID} \{{$", lines[0]) and lines[-1] == "}"
    nodes, edges = {}, []
    for ln in lines[1:-1]:
        assert STATEMENT.match(ln), ln
        m = re.match(rf"^\s*({ID})\s*->\s*({ID})", ln)
        if m:
            edges.append((m.group(1)[1:-1], m.group(2)[1:-1], ln))
            continue
        m = re.match(rf"^\s*({ID})\s*\[(.*)\];$", ln)
        if m:
            nodes[m.group(1)[1:-1]] = m.group(2)
    for a, b, _ in edges:
        assert a in nodes and b in nodes, (a, b)
    return nodes, edges


def test_dot_names_every_layer_with_shapes_and_in_place_edges():
    net = load_net_for_tools(LENET)
    text, notes = draw.net_to_dot(net, "TRAIN", given={"data": (1, 28, 28)})
    nodes, edges = parse_dot(text)
    layers = [lp.name for lp in net.layer if not lp.include or lp.include[0].phase == "TRAIN"]
    for name in layers:
        assert any(k.startswith("layer:") and k.endswith(":" + name) for k in nodes), name
    assert 'label="conv1\\n(Convolution)\\nkernel 5, stride 1, pad 0\\n20 outputs"' in text
    conv_out = [ln for a, b, ln in edges if a.endswith(":conv1") and b.startswith("blob:conv1")]
    assert conv_out and 'label="64x20x24x24"' in conv_out[0]
    relu = [ln for a, b, ln in edges if a.endswith(":relu1")]
    assert relu and "style=dashed" in relu[0] and "(in place)" in relu[0]
    # the in-place write makes a second version of blob ip1, so the graph has no cycle
    assert "blob:ip1#0" in nodes and "blob:ip1#1" in nodes
    assert "accuracy" not in text  # TEST-only layer


def test_phase_all_draws_both_data_layers_and_dot_accepts_it():
    net = load_net_for_tools(LENET)
    text, _ = draw.net_to_dot(net, "ALL", shapes=False)
    nodes, _ = parse_dot(text)
    assert sum(1 for k in nodes if k.endswith(":mnist")) == 2
    assert "phase TEST" in text and "accuracy" in text
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-Tcanon"], input=text.encode(), capture_output=True)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_render_names_every_layer(tmp_path):
    net = load_net_for_tools(REPO / "configs" / "mnist" / "lenet_deploy.yaml")
    text, _ = draw.net_to_dot(net, "TEST")
    out = tmp_path / "lenet.svg"
    draw.render(text, out)
    root = ET.parse(out).getroot()
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for lp in net.layer:
        assert lp.name in texts
    draw.render(text, tmp_path / "lenet.png")
    from PIL import Image
    with Image.open(tmp_path / "lenet.png") as im:
        assert im.size[0] > 200


def test_missing_dot_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    with pytest.raises(draw.GraphvizMissing, match="apt-get install graphviz"):
        draw.render("digraph x {}", tmp_path / "x.svg")
    draw.render("digraph x {}\n", tmp_path / "x.dot")  # DOT text needs no Graphviz
    assert (tmp_path / "x.dot").read_text() == "digraph x {}\n"
    with pytest.raises(CaffeishError, match="unknown output format 'jpeg'"):
        draw.render("digraph x {}", tmp_path / "x.jpeg")


def test_names_with_quotes_are_escaped():
    net = parse_message('layer:\n  - {name: \'in "x"\', type: Input, top: \'a\\b\', '
                        'input_param: {shape: {dim: [1, 2]}}}\n', "NetParameter", "q.yaml")
    text, _ = draw.net_to_dot(net, "TEST")
    nodes, _ = parse_dot(text)
    assert any('in \\"x\\"' in k for k in nodes)
