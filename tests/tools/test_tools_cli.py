"""The tool subcommands end to end through click (inspect, draw, plot, doctor, sweep)."""
import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from caffeish.commands.tools_cmds import TOOL_COMMANDS

REPO = Path(__file__).resolve().parents[2]
LENET_DEPLOY = str(REPO / "configs" / "mnist" / "lenet_deploy.yaml")


@pytest.fixture(scope="module")
def group():
    from caffeish import cli
    names = {c.name for c in TOOL_COMMANDS}
    if names <= set(cli.main.commands):
        return cli.main
    return click.Group("caffeish", commands={c.name: c for c in TOOL_COMMANDS})


def run(group, *args):
    return CliRunner().invoke(group, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", ["inspect", "draw", "plot", "doctor", "sweep"])
def test_help_shows_an_example(group, name):
    r = run(group, name, "--help")
    assert r.exit_code == 0 and f"caffeish {name} " in r.output


def test_inspect_table_and_json(group, tiny):
    r = run(group, "inspect", LENET_DEPLOY)
    assert r.exit_code == 0 and "431,080" in r.output and "4,601,270" in r.output
    d = json.loads(run(group, "inspect", LENET_DEPLOY, "--json").output)
    assert d["params"] == 431_080 and d["layers"][1]["name"] == "conv1"
    r = run(group, "inspect", "solver.yaml", "--phase", "train",
            "--set", "layer.conv1.convolution_param.num_output=7")
    assert r.exit_code == 0 and "16x7x8x8" in r.output
    r = run(group, "inspect", LENET_DEPLOY, "--set", "layer.conv1.convolution_param.kernel_sise=3")
    assert r.exit_code == 2 and r.output.startswith("caffeish: error: --set ")
    assert "did you mean 'layer.conv1.convolution_param.kernel_size'" in r.output


def test_draw_dot_and_svg(group, tmp_path):
    r = run(group, "draw", LENET_DEPLOY)
    assert r.exit_code == 0 and r.output.startswith('digraph "LeNet" {')
    r = run(group, "draw", LENET_DEPLOY, "-o", str(tmp_path / "n.dot"), "--rankdir", "TB")
    assert r.exit_code == 0 and "rankdir=TB;" in (tmp_path / "n.dot").read_text()
    if shutil.which("dot"):
        r = run(group, "draw", LENET_DEPLOY, "-o", str(tmp_path / "n.svg"))
        assert r.exit_code == 0 and (tmp_path / "n.svg").read_text().lstrip().startswith("<")


def test_doctor_exit_status(group, tiny):
    r = run(group, "doctor", "solver.yaml")
    assert r.exit_code == 0 and r.output == ""
    (tiny / "solver.yaml").write_text((tiny / "solver.yaml").read_text()
                                      .replace("stepsize: 10\n", ""))
    r = run(group, "doctor", "solver.yaml")
    assert r.exit_code == 1
    assert "solver.yaml:6: D001 lr-policy-fields: lr_policy 'step' needs stepsize" in r.output
    assert "fix: add stepsize:" in r.output and "1 problem(s) found" in r.output


def test_sweep_then_plot_a_run(group, tiny):
    r = run(group, "sweep", "--solver", "solver.yaml", "--set", "base_lr=0.1,0.05",
            "--iters", "5", "--out", "sw")
    assert r.exit_code == 0, r.output
    assert "01_base_lr=0.1" in r.output and "sorted by test/accuracy" in r.output
    r = run(group, "plot", "sw/01_base_lr=0.1", "--csv", "-")
    assert r.exit_code == 0 and r.output.startswith("phase,net,iter,seconds,lr,loss")
    pytest.importorskip("matplotlib")
    r = run(group, "plot", "sw/01_base_lr=0.1", "sw/02_base_lr=0.05", "-o", "both.png")
    assert r.exit_code == 0 and (tiny / "both.png").stat().st_size > 1000
    r = run(group, "plot", "sw/01_base_lr=0.1")
    assert r.exit_code == 0 and (tiny / "sw/01_base_lr=0.1/curves.png").exists()


def test_shell_completion_script():
    from caffeish.cli import main
    r = CliRunner().invoke(main, [], prog_name="caffeish",
                           env={"_CAFFEISH_COMPLETE": "bash_source"})
    assert r.exit_code == 0 and "_caffeish_completion" in r.output
