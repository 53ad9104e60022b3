"""Compile every CUDA kernel the GPU tests launched, for a real GPU, without one.

numba's simulator runs kernels as Python, so it accepts code the CUDA compiler rejects (and the
reverse: typing that only fails on the device). This script closes that gap:

1. record the kernels and the argument types the simulated GPU tests actually launched:
       CAFFEISH_RECORD_KERNELS=/tmp/kernels.json python -m pytest -q -m cuda
2. compile each (kernel, argument types) pair to PTX with the real CUDA target:
       python dev/cuda_compile_check.py /tmp/kernels.json [--cc 9.0]

Step 2 needs numba's CUDA compiler libraries (NVVM; numba-cuda also wants NVRTC: install
caffeish[gpu], or point CUDA_HOME / LD_LIBRARY_PATH at a CUDA toolkit), but no GPU or driver.
It exits 1 listing every kernel that fails to compile.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys


def _patch_device(cc):
    """compile_ptx asks the current device for its compute capability (for device functions);
    answer for the target GPU instead of touching a driver."""
    class _Dev:
        compute_capability = cc
    for modname in ("numba.cuda.dispatcher", "numba.cuda.compiler"):
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        if hasattr(mod, "get_current_device"):
            mod.get_current_device = lambda: _Dev()


def _nbtype(desc):
    from numba import types
    kind = desc[0]
    if kind == "array":
        _, dtype, ndim, layout = desc
        import numpy as np
        from numba.np.numpy_support import from_dtype
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout)
    if kind == "scalar":
        return getattr(types, desc[1])
    if kind == "tuple":
        return types.Tuple([_nbtype(d) for d in desc[1]])
    raise ValueError(f"unknown type description {desc!r}")


def _kernel_function(module, qualname, arg_types):
    mod = importlib.import_module(module)
    if "<locals>" not in qualname:
        return getattr(mod, qualname).py_func
    factory = qualname.split(".<locals>")[0]
    make = getattr(mod, factory)
    # factories take the dtype of the arrays they work on (e.g. blas._make_gemm_kernel)
    dtype = next(t.dtype for t in arg_types if hasattr(t, "dtype") and hasattr(t, "ndim"))
    import numpy as np
    return make(np.dtype(str(dtype))).py_func


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", help="the JSON written by CAFFEISH_RECORD_KERNELS")
    ap.add_argument("--cc", default="9.0", help="compute capability to compile for")
    args = ap.parse_args()
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    cc = tuple(int(x) for x in args.cc.split("."))
    _patch_device(cc)
    from numba import cuda, types
    records = json.load(open(args.record))
    failures, ok = [], 0
    for rec in records:
        name = f"{rec['module']}.{rec['qualname']}"
        try:
            sig_types = [_nbtype(d) for d in rec["args"]]
            fn = _kernel_function(rec["module"], rec["qualname"], sig_types)
            cuda.compile_ptx(fn, types.void(*sig_types), cc=cc)
            ok += 1
        except Exception as e:  # report every failure, then exit 1
            first = str(e).strip().splitlines()
            failures.append(f"{name}{tuple(str(t) for t in rec['args'])}: "
                            f"{type(e).__name__}: {first[0] if first else ''}")
    print(f"{ok} of {len(records)} kernel signatures compile for sm_{cc[0]}{cc[1]}")
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
