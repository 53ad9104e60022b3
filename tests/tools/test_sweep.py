"""caffeish sweep: grid expansion, run directories per point, the ranked table."""
import csv
import json

import pytest

from caffeish.errors import ConfigError
from caffeish.tools.sweep import expand_grid, run_sweep, split_values


def test_values_split_on_top_level_commas_only():
    assert split_values("0.1,0.01, 1e-3") == ["0.1", "0.01", "1e-3"]
    assert split_values("[1, 2],[3]") == ["[1, 2]", "[3]"]
    assert split_values("{lr_mult: 0, decay_mult: 0},'a,b'") == ["{lr_mult: 0, decay_mult: 0}",
                                                                 "'a,b'"]


def test_grid_is_the_product_of_the_axes():
    keys, runs = expand_grid(["base_lr=0.1,0.01", "momentum=0.9", "weight_decay=0,5e-4"])
    assert keys == ["base_lr", "weight_decay"]
    assert runs == [["base_lr=0.1", "momentum=0.9", "weight_decay=0"],
                    ["base_lr=0.1", "momentum=0.9", "weight_decay=5e-4"],
                    ["base_lr=0.01", "momentum=0.9", "weight_decay=0"],
                    ["base_lr=0.01", "momentum=0.9", "weight_decay=5e-4"]]
    with pytest.raises(ConfigError, match="expected key=value"):
        expand_grid(["base_lr"])
    with pytest.raises(ConfigError, match="empty value"):
        expand_grid(["base_lr=0.1,"])


def test_sweep_runs_each_point_and_ranks_by_accuracy(tiny):
    lines = []
    res = run_sweep("solver.yaml", ["base_lr=0.0,0.1", "layer.conv1.convolution_param."
                                                       "num_output=2"],
                    iters=10, out_dir="sw", echo=lines.append)
    assert [r.name for r in res.runs] == ["01_base_lr=0.0", "02_base_lr=0.1"]
    assert res.sort_by == "test/accuracy" and not res.ascending
    for r in res.runs:
        assert (r.run_dir / "metrics.jsonl").exists() and r.summary["status"] == "done"
        assert r.summary["iter"] == 10
        assert (r.run_dir / "tiny_iter_10.caffemodel").exists()  # snapshots stay in the run
        assert "num_output: 2" in (r.run_dir / "net.yaml").read_text()
    best, worst = res.ordered()
    assert best.summary["test/accuracy"] >= worst.summary["test/accuracy"]
    assert best.name == "02_base_lr=0.1"  # lr 0 cannot learn
    table = res.format().splitlines()
    assert table[0].split()[:4] == ["run", "base_lr", "status", "iter"]
    assert table[2].startswith("02_base_lr=0.1") and "sorted by test/accuracy" in table[-1]
    with open(tiny / "sw" / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["base_lr"] for r in rows] == ["0.1", "0.0"]
    data = json.loads((tiny / "sw" / "sweep.json").read_text())
    assert data["sort_by"] == "test/accuracy" and len(data["runs"]) == 2
    assert lines[0].startswith("sweep: 2 run(s) of solver.yaml into sw")


def test_sweep_in_parallel_processes_and_failed_runs(tiny):
    res = run_sweep("solver.yaml", ["base_lr=0.1", "layer.ip1.inner_product_param.num_output="
                                                   "3,0"],
                    iters=5, jobs=2, out_dir="par", sort_by="loss", echo=lambda s: None)
    ok, bad = sorted(res.runs, key=lambda r: r.name)
    assert ok.summary["status"] == "done" and "test/loss" in ok.summary
    assert bad.summary["status"] == "failed" and "num_output" in bad.error
    assert res.sort_by == "test/loss" and res.ascending
    assert res.ordered()[0] is ok
