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

With ``--sass`` each PTX is also assembled into machine code by ``ptxas -v`` (from a CUDA
toolkit, or the pip package nvidia-cuda-nvcc-cu12; ``--ptxas PATH`` picks one), as the driver
does when it loads a module. That catches what only the assembler rejects, and reports each
kernel's registers, spills and shared memory: a launch fails on the GPU ("too many resources
requested") when threads per block x registers per thread passes 64K, so the script fails any
kernel whose registers leave less than ``--threads`` (default 256, the backend's block size)
threads per block, and any kernel whose static shared memory passes 48 KiB.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


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


def _find_ptxas(given):
    if given:
        return given
    try:
        import nvidia.cuda_nvcc  # the pip wheel of CUDA's compiler tools
        for root in nvidia.cuda_nvcc.__path__:
            cand = os.path.join(root, "bin", "ptxas")
            if os.path.exists(cand):
                return cand
    except ImportError:
        pass
    return shutil.which("ptxas")


_USAGE = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def assemble(ptxas, ptx, cc, threads):
    """ptxas -v the PTX; returns (problems, resources line)."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        run = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", src, "-o",
                              os.path.join(d, "k.cubin")], capture_output=True, text=True)
    log = run.stdout + run.stderr
    if run.returncode:
        return [f"ptxas failed: {log.strip().splitlines()[-1] if log.strip() else run.returncode}"], ""
    regs = max((int(m) for m in _USAGE.findall(log)), default=0)
    smem = max((int(m) for m in _SMEM.findall(log)), default=0)
    spill = max((int(a) + int(b) for a, b in _SPILL.findall(log)), default=0)
    problems = []
    # registers are allocated per warp in units of 256
    per_warp = -(-regs * 32 // 256) * 256
    if per_warp and (65536 // per_warp) * 32 < threads:
        problems.append(f"{regs} registers per thread leave fewer than {threads} threads per block")
    if smem > 48 * 1024:
        problems.append(f"{smem} bytes of static shared memory (more than 48 KiB)")
    return problems, f"{regs} registers, {smem} B shared, {spill} B spilled"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", help="the JSON written by CAFFEISH_RECORD_KERNELS")
    ap.add_argument("--cc", default="9.0", help="compute capability to compile for")
    ap.add_argument("--sass", action="store_true",
                    help="also assemble each kernel with ptxas and check its resources")
    ap.add_argument("--ptxas", help="the ptxas to use (default: nvidia-cuda-nvcc's, then PATH)")
    ap.add_argument("--threads", type=int, default=256,
                    help="threads per block the kernels must be able to launch with")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each kernel's resources")
    args = ap.parse_args()
    ptxas = _find_ptxas(args.ptxas) if args.sass else None
    if args.sass and not ptxas:
        sys.exit("--sass: no ptxas found; install nvidia-cuda-nvcc-cu12 or pass --ptxas PATH")
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
            ptx, _ = cuda.compile_ptx(fn, types.void(*sig_types), cc=cc)
            if ptxas:
                problems, usage = assemble(ptxas, ptx, cc, args.threads)
                if problems:
                    raise RuntimeError("; ".join(problems))
                if args.verbose:
                    print(f"{name}: {usage}")
            ok += 1
        except Exception as e:  # report every failure, then exit 1
            first = str(e).strip().splitlines()
            failures.append(f"{name}{tuple(str(t) for t in rec['args'])}: "
                            f"{type(e).__name__}: {first[0] if first else ''}")
    what = "compile and assemble" if ptxas else "compile"
    print(f"{ok} of {len(records)} kernel signatures {what} for sm_{cc[0]}{cc[1]}")
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
