"""caffeish plot: parse Caffe's and caffeish's glog logs and metrics files; draw PNG/SVG."""
import builtins
from pathlib import Path

import pytest

from caffeish.errors import DataError
from caffeish.tools import plot
from caffeish.tools.logparse import load_curves, parse_glog, parse_metrics, to_csv

CAFFE_LOG = Path(__file__).resolve().parents[2].parent / "shared" / "caffe_vectors" / \
    "tiny_net_a" / "train.log"

# caffeish's own lines (caffeish/log.py's GlogFormatter, solver.py's wording), with a test.
CAFFEISH_LOG = """\
I1122 23:59:58.000000 41 solver.py:300] Solving tiny
I1122 23:59:58.100000 41 solver.py:280] Iteration 0, Testing net (#0)
I1122 23:59:58.200000 41 solver.py:262]     Test net output #0: accuracy = 0.3
I1122 23:59:58.200100 41 solver.py:262]     Test net output #1: loss = 1.1 (* 1 = 1.1 loss)
I1122 23:59:58.300000 41 solver.py:236] Iteration 0, loss = 1.2
I1122 23:59:58.300100 41 solver.py:262]     Train net output #0: loss = 1.2 (* 1 = 1.2 loss)
I1122 23:59:58.300200 41 solver.py:190] Iteration 0, lr = 0.05
I1123 00:00:01.300000 41 solver.py:236] Iteration 10 (3.3 iter/s, 53 images/s, ETA 3s), loss = 0.7
I1123 00:00:01.300200 41 solver.py:190] Iteration 10, lr = 0.025
I1123 00:00:02.000000 41 solver.py:280] Iteration 20, Testing net (#0)
I1123 00:00:02.100000 41 solver.py:262]     Test net output #0: accuracy = 0.9
I1123 00:00:02.100100 41 solver.py:262]     Test net output #1: loss = 0.2 (* 1 = 0.2 loss)
"""


@pytest.fixture
def caffe_log():
    if not CAFFE_LOG.is_file():
        pytest.skip(f"real Caffe log not present (looked for {CAFFE_LOG})")
    return CAFFE_LOG


def test_real_caffe_log_parses(caffe_log):
    c = load_curves(caffe_log)
    train = c.train
    assert [r.iter for r in train] == list(range(31))
    assert train[0].loss == pytest.approx(2.44272) and train[0].lr == pytest.approx(0.02)
    assert train[29].loss == pytest.approx(1.19951) and train[29].outputs == {"loss": 1.19951}
    assert train[30].loss == pytest.approx(1.17936) and train[30].lr is None
    assert train[0].seconds == pytest.approx(15.069875 - 15.065584, abs=1e-5)
    assert train[30].seconds == pytest.approx(15.127018 - 15.065584, abs=1e-5)
    assert c.test == []


def test_real_caffe_log_renders_a_png(caffe_log, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    out = plot.plot_curves([load_curves(caffe_log)], tmp_path / "curves.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1200, 800)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert len(colors) > 50  # lines, text and axes, not a blank canvas


def test_caffeish_log_with_tests_across_midnight():
    c = parse_glog(CAFFEISH_LOG.splitlines())
    assert [(r.phase, r.iter) for r in c.rows] == [("test", 0), ("train", 0), ("train", 10),
                                                   ("test", 20)]
    t0, tr0, tr10, t20 = c.rows
    assert t0.outputs == {"accuracy": 0.3, "loss": 1.1}
    assert tr10.images_per_s == 53 and tr10.lr == 0.025 and tr10.loss == 0.7
    assert tr10.seconds == pytest.approx(3.3)  # across midnight and the new day
    assert t20.outputs["accuracy"] == 0.9
    csv = to_csv([c]).splitlines()
    assert csv[0] == "phase,net,iter,seconds,lr,loss,images_per_s,output:loss,output:accuracy"
    assert csv[3].startswith("train,0,10,3.3,0.025,0.7,53,")


def test_metrics_jsonl_and_errors(tmp_path):
    lines = ['{"kind": "start", "iter": 0, "time": 100.0}',
             '{"iter": 0, "time": 101.0, "kind": "train", "loss": 2.0, "lr": 0.1}',
             '{"iter": 5, "time": 103.5, "kind": "test", "net": 0, '
             '"outputs": {"accuracy": 0.5, "per_class": [0.1, 0.9]}}']
    c = parse_metrics(lines)
    assert c.train[0].seconds == 1.0 and c.test[0].seconds == 3.5
    assert c.test[0].outputs == {"accuracy": 0.5, "per_class": 0.1, "per_class_1": 0.9}
    with pytest.raises(DataError, match=r"x\.jsonl:2: not a JSON line"):
        parse_metrics(lines[:1] + ["{oops"], "x.jsonl")
    (tmp_path / "empty.log").write_text("nothing here\n")
    with pytest.raises(DataError, match="found no training iterations"):
        load_curves(tmp_path / "empty.log")
    with pytest.raises(DataError, match="no metrics.jsonl, train.log"):
        (tmp_path / "nope").mkdir()
        load_curves(tmp_path / "nope")


def test_svg_output_and_several_sources(tmp_path):
    pytest.importorskip("matplotlib")
    import xml.etree.ElementTree as ET
    (tmp_path / "a.log").write_text(CAFFEISH_LOG)
    (tmp_path / "b.log").write_text(CAFFEISH_LOG.replace("loss = 0.7", "loss = 0.5"))
    out = plot.plot_curves([load_curves(tmp_path / "a.log"), load_curves(tmp_path / "b.log")],
                           tmp_path / "c.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    with pytest.raises(Exception, match="unknown image format 'gif'"):
        plot.plot_curves([load_curves(tmp_path / "a.log")], tmp_path / "c.gif")


def test_missing_matplotlib_gives_the_extra_to_install(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "a.log").write_text(CAFFEISH_LOG)
    with pytest.raises(plot.MatplotlibMissing, match=r"pip install 'caffeish\[plot\]'"):
        plot.plot_curves([load_curves(tmp_path / "a.log")], tmp_path / "c.png")
