"""A synthetic sequence task for recurrent nets: echo a symbol after a delay, as HDF5 files.

``python -m data_tools.sequences DIR`` writes ``DIR/train.h5``, ``DIR/test.h5`` and the list
files ``train_h5_list.txt`` / ``test_h5_list.txt`` that an HDF5Data layer reads (needs h5py:
``pip install 'caffeish[hdf5]'``).

The task: N independent streams, each a run of sequences of random length; every step shows
one of K symbols (one-hot), drawn uniformly. The target at position p of a sequence is the
symbol shown at position p - delay; the first ``delay`` positions of each sequence have no
target (label -1, for ``loss_param.ignore_label: -1``). A net that cannot remember does no
better than chance, a cross-entropy of ln(K). The layout is Caffe's for recurrent nets: every
dataset is time-major, so HDF5Data with ``batch_size: T`` hands out T consecutive steps of all
streams::

    data   (steps, N, K)  float32 one-hot symbols
    cont   (steps, N)     0 at the first step of each sequence, else 1
    label  (steps, N)     the delayed symbol, or -1

Sequences run on across batch boundaries (the LSTM carries its state from one forward to the
next) and ``steps`` is a multiple of T so that a wrap-around starts new sequences in every
stream.
"""
from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np

from caffeish.errors import DataError

IGNORE = -1


def echo_task(num_streams: int, steps: int, symbols: int, delay: int, min_len: int,
              max_len: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The arrays (data, cont, label) of the delayed-echo task, time-major (see module doc)."""
    if not 1 <= min_len <= max_len:
        raise DataError(f"sequence lengths need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if symbols < 2 or delay < 0 or steps < 1 or num_streams < 1:
        raise DataError("need symbols >= 2, delay >= 0, steps >= 1 and num_streams >= 1")
    sym = rng.integers(0, symbols, size=(steps, num_streams))
    cont = np.ones((steps, num_streams), np.float32)
    label = np.full((steps, num_streams), IGNORE, np.float32)
    for n in range(num_streams):
        t = 0
        while t < steps:
            length = int(rng.integers(min_len, max_len + 1))
            end = min(t + length, steps)
            cont[t, n] = 0
            if end - t > delay:
                label[t + delay:end, n] = sym[t:end - delay, n]
            t = end
    data = np.zeros((steps, num_streams, symbols), np.float32)
    np.put_along_axis(data, sym[..., None], 1.0, axis=2)
    return {"data": data, "cont": cont, "label": label}


def chance_loss(symbols: int) -> float:
    """Cross-entropy of a uniform guess over ``symbols`` classes: ln(symbols)."""
    return math.log(symbols)


def write_hdf5(path, arrays: dict[str, np.ndarray]) -> None:
    try:
        import h5py
    except ImportError:
        raise DataError("writing HDF5 files needs h5py: pip install 'caffeish[hdf5]'") from None
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a)


def write_echo_dataset(out_dir, num_streams=16, train_steps=2000, test_steps=400, symbols=8,
                       delay=3, min_len=10, max_len=30, seed=1701) -> dict[str, Path]:
    """Write train.h5 / test.h5 and their list files under ``out_dir``; returns the list paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lists = {}
    for split, steps in (("train", train_steps), ("test", test_steps)):
        arrays = echo_task(num_streams, steps, symbols, delay, min_len, max_len, rng)
        write_hdf5(out / f"{split}.h5", arrays)
        lst = out / f"{split}_h5_list.txt"
        lst.write_text(f"{split}.h5\n")
        lists[split] = lst
    return lists


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--streams", default=16, show_default=True, help="Independent streams (N).")
@click.option("--train-steps", default=2000, show_default=True,
              help="Time steps per stream in train.h5 (a multiple of the net's batch_size).")
@click.option("--test-steps", default=400, show_default=True, help="Time steps in test.h5.")
@click.option("--symbols", default=8, show_default=True, help="Alphabet size K.")
@click.option("--delay", default=3, show_default=True, help="Steps between a symbol and its echo.")
@click.option("--min-len", default=10, show_default=True, help="Shortest sequence.")
@click.option("--max-len", default=30, show_default=True, help="Longest sequence.")
@click.option("--seed", default=1701, show_default=True)
def main(out_dir, streams, train_steps, test_steps, symbols, delay, min_len, max_len, seed):
    """Write the delayed-echo sequence task to OUT_DIR as HDF5 (for configs/lstm)."""
    try:
        lists = write_echo_dataset(out_dir, streams, train_steps, test_steps, symbols, delay,
                                   min_len, max_len, seed)
    except DataError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {lists['train']} and {lists['test']}; chance loss ln({symbols}) = "
               f"{chance_loss(symbols):.4f}")


if __name__ == "__main__":
    main()
