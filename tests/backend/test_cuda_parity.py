"""One switch, two twins: every CPU op has a CUDA twin of the same name (and the reverse), and no
layer looks at which backend is active."""
import inspect
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.cuda

# device plumbing that only means something on the GPU
CUDA_ONLY = {"SIMULATED", "SMALL_LAUNCHES", "THREADS", "grid1d", "copy_to_device", "select_device",
             "current_device", "query_device", "is_device_array", "HAVE_CUPY", "gemm_engine"}


def _ops(mod):
    return {n for n in dir(mod) if not n.startswith("_") and n != "name"
            and (callable(getattr(mod, n)) or n.isupper())
            and not inspect.ismodule(getattr(mod, n))}


def _exported(pkg):
    names = set()
    for sub in vars(pkg).values():
        if inspect.ismodule(sub) and sub.__name__.startswith(pkg.__name__ + "."):
            names |= set(getattr(sub, "__all__", ()))
    return names


def test_every_cpu_op_has_a_cuda_twin_and_back():
    from caffeish.backend import cpu, cuda
    cpu_ops, cuda_ops = _exported(cpu), _exported(cuda)
    missing = sorted(cpu_ops - cuda_ops)
    extra = sorted(cuda_ops - cpu_ops - CUDA_ONLY)
    assert not missing, f"CPU ops without a CUDA twin: {missing}"
    assert not extra, f"CUDA ops without a CPU twin: {extra}"


def test_twins_take_the_same_arguments():
    from caffeish.backend import cpu, cuda
    bad = []
    for n in sorted(_exported(cpu) & _exported(cuda)):
        a, b = getattr(cpu, n), getattr(cuda, n)
        if not (callable(a) and callable(b)):
            continue
        try:
            sa = inspect.signature(getattr(a, "py_func", a)).parameters
            sb = inspect.signature(getattr(b, "py_func", b)).parameters
        except (TypeError, ValueError):
            continue
        # same arity; parameters with defaults (passed by keyword) also share their names
        pa = [k if v.default is not inspect.Parameter.empty else "_" for k, v in sa.items()]
        pb = [k if v.default is not inspect.Parameter.empty else "_" for k, v in sb.items()]
        if pa != pb:
            bad.append(f"{n}: cpu{tuple(pa)} vs cuda{tuple(pb)}")
    assert not bad, "twins with different parameters:\n" + "\n".join(bad)


def test_no_layer_branches_on_the_device():
    layers = Path(__file__).resolve().parents[2] / "caffeish" / "layers"
    pat = re.compile(r"backend\.name|\.mode\(\)|set_mode_|\bcuda\b|is_device_array|SIMULATED")
    hits = [f"{p.name}:{i}: {line.strip()}" for p in sorted(layers.glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if pat.search(line) and not line.lstrip().startswith("#")]
    assert not hits, "layer code that looks at the device:\n" + "\n".join(hits)
