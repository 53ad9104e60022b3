"""Run directories: resolved configs, metrics.jsonl, the log; numbering, resume, progress bar."""
import io
import json

import pytest

from caffeish.config.yaml_loader import load_message
from caffeish.tools.logparse import load_curves
from caffeish.tools.progress import BarStream, ProgressBar
from caffeish.tools.rundir import default_run_dir, pick_run_dir, run_training


def read_jsonl(path):
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def test_train_writes_a_run_directory_that_plots(tiny):
    run = run_training("solver.yaml", ["base_lr=0.1", "layer.conv1.convolution_param."
                                                      "num_output=6"], progress=False,
                       stream=io.StringIO())
    d = tiny / "snap" / "runs" / "tiny"
    assert run.path == d
    assert {p.name for p in d.iterdir()} >= {"solver.yaml", "net.yaml", "metrics.jsonl",
                                             "train.log", "run.json"}
    solver = load_message(d / "solver.yaml", "SolverParameter")
    assert solver.net == "net.yaml" and solver.base_lr == pytest.approx(0.1)
    net = load_message(d / "net.yaml", "NetParameter")
    conv1 = next(lp for lp in net.layer if lp.name == "conv1")
    assert conv1.convolution_param.num_output == 6
    assert str(tiny / "train_lmdb") in (d / "net.yaml").read_text()  # absolute data paths

    recs = read_jsonl(d / "metrics.jsonl")
    assert recs[0]["kind"] == "start"
    train = [r for r in recs if r["kind"] == "train"]
    test = [r for r in recs if r["kind"] == "test"]
    assert [r["iter"] for r in train] == [0, 5, 10, 15]
    assert [r["lr"] for r in train] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert all(r["loss"] > 0 and "time" in r for r in train)
    assert train[1]["images_per_s"] > 0
    assert [r["iter"] for r in test] == [0, 10, 20]
    assert 0 <= test[-1]["outputs"]["accuracy"] <= 1

    log = (d / "train.log").read_text()
    assert "Iteration 10, Testing net (#0)" in log and "Optimization Done." in log
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "done" and info["overrides"][0] == "base_lr=0.1"
    s = run.summary()
    assert s["iter"] == 20 and "test/accuracy" in s and s["status"] == "done"

    # the same run read back from the log and from the metrics agree
    from_log = load_curves(d / "train.log")
    from_metrics = load_curves(d)
    assert [r.iter for r in from_log.test] == [r.iter for r in from_metrics.test] == [0, 10, 20]
    assert [r.outputs["accuracy"] for r in from_log.test] == pytest.approx(
        [r.outputs["accuracy"] for r in from_metrics.test], abs=1e-5)
    pytest.importorskip("matplotlib")
    from PIL import Image

    from caffeish.tools.plot import plot_curves
    out = plot_curves([from_metrics], d / "curves.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 500

    # the resolved configs run again as they are
    again = run_training(str(d / "solver.yaml"), run_dir=tiny / "again", progress=False,
                         stream=io.StringIO())
    assert again.summary()["iter"] == 20


def test_new_runs_never_overwrite_and_resume_continues_the_latest(tiny):
    (tiny / "solver.yaml").write_text((tiny / "solver.yaml").read_text() + "snapshot: 10\n")
    r1 = run_training("solver.yaml", ["max_iter=10"], progress=False, stream=io.StringIO())
    r2 = run_training("solver.yaml", ["max_iter=10"], progress=False, stream=io.StringIO())
    assert r1.path.name == "tiny" and r2.path.name == "tiny-2"
    r3 = run_training("solver.yaml", [], snapshot="snap/tiny_iter_10.solverstate",
                      progress=False, stream=io.StringIO())
    assert r3.path == r2.path and r3.resumed
    recs = read_jsonl(r2.path / "metrics.jsonl")
    starts = [r for r in recs if r["kind"] == "start"]
    assert [s["iter"] for s in starts] == [0, 10]
    assert [r["iter"] for r in recs if r["kind"] == "train"] == [0, 5, 10, 15]
    assert (r2.path / "solver.resumed.yaml").exists()  # max_iter differs from the first part


def test_default_run_dir_and_numbering(tmp_path):
    from caffeish.config.schema import Msg
    p = Msg("SolverParameter", {"snapshot_prefix": "out/models/lenet"})
    assert str(default_run_dir(p)) == "out/models/runs/lenet"
    assert str(default_run_dir(Msg("SolverParameter"), "conf/s.yaml")) == "runs/s"
    base = tmp_path / "runs" / "x"
    assert pick_run_dir(base) == base
    base.mkdir(parents=True)
    assert pick_run_dir(base) == base  # an empty folder is not a run yet
    (base / "run.json").write_text("{}")
    assert pick_run_dir(base).name == "x-2"
    assert pick_run_dir(base, resume=True) == base


def test_failed_run_records_its_status(tiny):
    with pytest.raises(Exception):
        run_training("solver.yaml", ["layer.ip1.inner_product_param.num_output=0"],
                     progress=False, stream=io.StringIO())
    info = json.loads((tiny / "snap" / "runs" / "tiny" / "run.json").read_text())
    assert info["status"].startswith("failed: ConfigError: ") and "num_output" in info["status"]


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_keeps_log_lines_above_it():
    s = FakeTTY()
    bar_stream = BarStream(s)
    bar = ProgressBar(bar_stream, max_iter=100, width=10, every=0)

    class S:
        iter = 0
        smoothed_loss = 2.5
    bar.on_gradients_ready(S)
    S.iter = 49
    bar._t0 -= 1.0  # pretend 49 iterations took a second
    bar.on_gradients_ready(S)
    bar_stream.write("I0101 00:00:00.000000 1 solver.py:1] Iteration 50, loss = 2.5\n")
    bar.close()
    out = s.getvalue()
    assert "[#####.....] 50/100" in out and "ETA" in out and "loss 2.5" in out
    line = "I0101 00:00:00.000000 1 solver.py:1] Iteration 50, loss = 2.5\n"
    at = out.index(line)
    assert out[at - 4:at] == "\r\x1b[K"  # the bar is cleared before the log line...
    assert out[at + len(line):].startswith("[#####.....] 50/100")  # ...and drawn again below
    assert out.endswith("\r\x1b[K")


def test_train_on_a_terminal_shows_the_bar(tiny):
    tty = FakeTTY()
    run_training("solver.yaml", ["max_iter=10"], stream=tty)
    out = tty.getvalue()
    assert "10/10" in out and "\r\x1b[K" in out and "Iteration 5" in out
