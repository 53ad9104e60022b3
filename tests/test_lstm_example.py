"""configs/lstm: an LSTM learns the delayed-echo task (data_tools/sequences.py), shortened.

Chance level: with 8 equally likely symbols, a net that cannot remember scores a cross-entropy
of ln 8 = 2.079 and an accuracy of 1/8. Measured with the stock solver (seed 1701): loss 2.079
at iteration 0, test loss 0.65 at iteration 250 and 0.010 at 500 (accuracy 0.999); the full
1000 iterations end at a test loss of 0.003, accuracy 1.0. This run stops at 400 iterations:
last displayed training loss (iteration 350, averaged over 20) 0.11, test loss 0.039, test
accuracy 0.995.
"""
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import load_message

REPO = Path(__file__).resolve().parents[1]
CHANCE = math.log(8)


def test_echo_task_data():
    from data_tools.sequences import echo_task
    arrays = echo_task(3, 50, symbols=4, delay=2, min_len=5, max_len=9,
                       rng=np.random.default_rng(0))
    data, cont, label = arrays["data"], arrays["cont"], arrays["label"]
    assert data.shape == (50, 3, 4) and cont.shape == label.shape == (50, 3)
    np.testing.assert_array_equal(data.sum(axis=2), 1)
    sym = data.argmax(axis=2)
    for n in range(3):
        starts = np.flatnonzero(cont[:, n] == 0)
        assert starts[0] == 0
        lengths = np.diff(np.append(starts, 50))
        assert np.all(lengths[:-1] >= 5) and np.all(lengths <= 9)
        for t in range(50):
            pos = t - starts[starts <= t][-1]
            assert label[t, n] == (sym[t - 2, n] if pos >= 2 else -1)


def test_lstm_example_learns_to_echo(tmp_path, monkeypatch):
    pytest.importorskip("h5py", reason="the LSTM example reads HDF5: "
                                       "pip install 'caffeish[hdf5]'")
    from data_tools.sequences import write_echo_dataset
    write_echo_dataset(tmp_path / "data" / "lstm_echo")
    cfg = tmp_path / "configs"
    shutil.copytree(REPO / "configs" / "lstm", cfg)
    monkeypatch.chdir(tmp_path)
    param = load_message(cfg / "lstm_echo_solver.yaml", "SolverParameter")
    param.set("max_iter", 400)
    param.set("test_interval", 400)
    param.set("display", 50)
    param.set("snapshot", 0)
    param.set("snapshot_after_train", False)
    solver = caffeish.get_solver(param)
    try:
        solver.solve()
        train = [m["loss"] for m in solver.metrics if m["kind"] == "train"]
        tests = [m["outputs"] for m in solver.metrics if m["kind"] == "test"]
        assert solver.iter == 400
        assert train[0] == pytest.approx(CHANCE, abs=0.05)      # starts at chance
        assert tests[0]["loss"] == pytest.approx(CHANCE, abs=0.05)
        assert train[-1] < 0.3, train                             # measured 0.11
        assert tests[-1]["loss"] < 0.3, tests
        assert tests[-1]["accuracy"] > 0.9, tests
    finally:
        solver.net.close()
        for n in solver.test_nets:
            n.close()
