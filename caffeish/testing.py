"""The reusable layer harness: build a layer from a dict, run it, check its gradients.

Used by caffeish's own tests and by ``caffeish gradcheck``. Gradient checks follow Caffe's
GradientChecker: objective = 1/2 * sum of squares of every top, central differences, each
element compared as |analytic - numeric| <= threshold * max(|analytic|, |numeric|, 1), elements
within ``kink_range`` of ``kink`` skipped, the layer's RNG re-seeded before every forward.
"""
from __future__ import annotations

import numpy as np

from .blob import Blob
from .config.schema import Msg


def layer_param(spec: dict) -> Msg:
    import caffeish.config  # noqa: F401  (registers caffe.proto's messages)
    spec = dict(spec)
    spec.setdefault("name", spec.get("type", "layer").lower())
    return Msg("LayerParameter", spec)


def make_layer(spec: dict, phase: str = "TRAIN", dtype=np.float64, seed: int = 1701):
    from .layers import layer_class
    lp = layer_param(spec)
    cls = layer_class(lp.type)
    return cls(lp, phase=phase, dtype=dtype, rng=np.random.default_rng(seed))


def blobs_from(arrays, dtype=np.float64, names=None) -> list[Blob]:
    out = []
    for i, a in enumerate(arrays):
        a = np.asarray(a, dtype=dtype)
        b = Blob(a.shape, dtype, name=(names[i] if names else f"b{i}"))
        b.data[...] = a
        out.append(b)
    return out


def setup_layer(layer, bottom: list[Blob], n_tops: int | None = None, in_place: bool = False):
    """Run check_blob_counts + setup + reshape; returns the top blobs."""
    if n_tops is None:
        tops = layer.layer_param.top
        n_tops = len(tops) if tops else (layer.exact_tops or max(layer.min_tops, 1))
    if in_place:
        top = [bottom[0]]
    else:
        top = [Blob((), layer.dtype, name=f"t{i}") for i in range(n_tops)]
    layer.check_blob_counts(bottom, top)
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    return top


def forward_layer(spec: dict, arrays, phase="TRAIN", dtype=np.float64, seed=1701, n_tops=None):
    """Build, set up and run one forward; returns (layer, bottom blobs, top blobs)."""
    layer = make_layer(spec, phase=phase, dtype=dtype, seed=seed)
    bottom = blobs_from(arrays, dtype)
    top = setup_layer(layer, bottom, n_tops)
    layer.forward(bottom, top)
    return layer, bottom, top


def _objective(top):
    return 0.5 * sum(float(np.sum(t.data.astype(np.float64) ** 2)) for t in top)


class GradientCheckFailure(AssertionError):
    pass


def check_gradient(layer, bottom, top, stepsize=1e-3, threshold=1e-4, check_bottom=None,
                   check_params=True, kink=0.0, kink_range=-1.0, seed=1701, top_index=None,
                   max_report=5):
    """Compare the analytic gradient of ``layer`` with central differences.

    check_bottom: None for every bottom, an int for one, or [] for params only.
    top_index: restrict the objective to one top (Caffe's CheckGradient with top_id).
    Returns a dict name -> worst relative error; raises GradientCheckFailure listing the worst
    elements when a comparison fails.
    """
    if check_bottom is None:
        check_idx = list(range(len(bottom)))
    elif isinstance(check_bottom, int):
        check_idx = [check_bottom]
    else:
        check_idx = list(check_bottom)
    tops = top if top_index is None else [top[top_index]]

    def run_forward():
        layer.rng = np.random.default_rng(seed)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
        return _objective(tops)

    # analytic
    run_forward()
    for t in top:
        t.diff[...] = 0
    for t in tops:
        t.diff[...] = t.data
    for p in layer.blobs:
        p.diff[...] = 0
    for b in bottom:
        b.diff[...] = 0
    prop = [i in check_idx for i in range(len(bottom))]
    layer.backward(top, prop, bottom)

    targets = [(f"bottom[{i}]", bottom[i]) for i in check_idx]
    if check_params:
        targets += [(f"param[{j}]", p) for j, p in enumerate(layer.blobs)]
    analytic = {name: b.diff.astype(np.float64).copy() for name, b in targets}

    worst = {}
    failures = []
    for name, blob in targets:
        flat = blob.data.reshape(-1)
        ana = analytic[name].reshape(-1)
        worst[name] = 0.0
        for k in range(flat.size):
            x = flat[k]
            if kink_range >= 0 and kink - kink_range <= abs(x) <= kink + kink_range:
                continue
            flat[k] = x + stepsize
            fp = run_forward()
            flat[k] = x - stepsize
            fm = run_forward()
            flat[k] = x
            num = (fp - fm) / (2 * stepsize)
            scale = max(abs(ana[k]), abs(num), 1.0)
            err = abs(ana[k] - num) / scale
            worst[name] = max(worst[name], err)
            if err > threshold:
                failures.append((err, name, k, ana[k], num))
    run_forward()
    if failures:
        failures.sort(reverse=True)
        lines = [f"  {n}[{k}]: analytic {a:.6g}, numeric {m:.6g}, rel err {e:.3g}"
                 for e, n, k, a, m in failures[:max_report]]
        raise GradientCheckFailure(
            f"{layer.describe()}: {len(failures)} gradient element(s) off by more than "
            f"{threshold:g}:\n" + "\n".join(lines))
    return worst


def check_gradient_spec(spec: dict, arrays, phase="TRAIN", seed=1701, **kw):
    """make_layer + setup + check_gradient in float64."""
    layer = make_layer(spec, phase=phase, dtype=np.float64, seed=seed)
    bottom = blobs_from(arrays, np.float64)
    top = setup_layer(layer, bottom)
    return check_gradient(layer, bottom, top, seed=seed, **kw)


def check_in_place(spec: dict, arrays, phase="TRAIN", seed=1701, rtol=1e-6):
    """An in-place run (top is bottom) gives the same top data and bottom diff as out of place."""
    ref, bottom, top = forward_layer(spec, arrays, phase=phase, seed=seed)
    top[0].diff[...] = np.linspace(-1, 1, top[0].count).reshape(top[0].shape)
    ref.backward(top, [True] * len(bottom), bottom)
    want_top, want_diff = top[0].data.copy(), bottom[0].diff.copy()

    layer = make_layer(spec, phase=phase, seed=seed)
    b2 = blobs_from(arrays, np.float64)
    t2 = setup_layer(layer, b2, in_place=True)
    layer.forward(b2, t2)
    got_top = t2[0].data.copy()
    t2[0].diff[...] = np.linspace(-1, 1, t2[0].count).reshape(t2[0].shape)
    layer.backward(t2, [True] * len(b2), b2)
    np.testing.assert_allclose(got_top, want_top, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(b2[0].diff, want_diff, rtol=rtol, atol=1e-12)


# --- CPU backend vs GPU backend ---------------------------------------------------------------
class BackendMismatch(AssertionError):
    pass


def _run_on(mode, spec, arrays, phase, dtype, seed, n_tops, passes, in_place, propagate_down,
            top_diff_seed):
    from . import backend
    if mode == "gpu":
        backend.set_mode_gpu()
    else:
        backend.set_mode_cpu()
    try:
        layer = make_layer(spec, phase=phase, dtype=dtype, seed=seed)
        bottom = blobs_from(arrays, dtype)
        top = setup_layer(layer, bottom, n_tops, in_place=in_place)
        rng = np.random.default_rng(top_diff_seed)
        prop = [True] * len(bottom) if propagate_down is None else list(propagate_down)
        out = {}
        for p in range(passes):
            layer.reshape(bottom, top)
            layer.forward(bottom, top)
            for i, t in enumerate(top):
                out[f"pass{p} top[{i}].data"] = t.data.astype(np.float64).copy()
            for t in top:
                t.diff[...] = rng.standard_normal(t.shape) if t.count else 0
            for pb in layer.blobs:
                pb.zero_diff()
            layer.backward(top, prop, bottom)
            for i, b in enumerate(bottom):
                if prop[i] and not in_place:
                    out[f"pass{p} bottom[{i}].diff"] = b.diff.astype(np.float64).copy()
            if in_place:
                out[f"pass{p} bottom[0].diff (in place)"] = bottom[0].diff.astype(np.float64).copy()
            for j, pb in enumerate(layer.blobs):
                out[f"pass{p} param[{j}].diff"] = pb.diff.astype(np.float64).copy()
        layer.close()
        return out
    finally:
        backend.set_mode_cpu()


def compare_backends(spec: dict, arrays, phase="TRAIN", dtype=np.float32, seed=1701, n_tops=None,
                     passes=1, in_place=False, propagate_down=None, rtol=1e-4, atol=1e-5,
                     skip=()):
    """Run the same layer forward + backward on the CPU backend and on the GPU backend (real, or
    numba's simulator under NUMBA_ENABLE_CUDASIM=1) and require every top, bottom diff and
    parameter diff to agree. Top diffs are the same random values in both runs. ``passes`` > 1
    repeats forward/backward (catches state kept between iterations). ``skip`` names outputs
    (e.g. ``"pass0 top[1].data"``) not compared. Returns {output name: max abs difference}."""
    kw = dict(spec=spec, arrays=arrays, phase=phase, dtype=dtype, seed=seed, n_tops=n_tops,
              passes=passes, in_place=in_place, propagate_down=propagate_down,
              top_diff_seed=seed + 1)
    want = _run_on("cpu", **kw)
    got = _run_on("gpu", **kw)
    diffs, bad = {}, []
    for name, w in want.items():
        if name in skip:
            continue
        g = got[name]
        if g.shape != w.shape:
            bad.append(f"  {name}: shape {g.shape} on the GPU, {w.shape} on the CPU")
            continue
        d = float(np.max(np.abs(g - w))) if w.size else 0.0
        diffs[name] = d
        if not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
            k = int(np.argmax(np.abs(g - w) - rtol * np.abs(w)))
            bad.append(f"  {name}: max |gpu - cpu| = {d:.3g}; at flat index {k}: gpu "
                       f"{g.reshape(-1)[k]:.7g}, cpu {w.reshape(-1)[k]:.7g}")
    if bad:
        raise BackendMismatch(f"layer {spec.get('type')!r}: the GPU backend differs from the "
                              f"CPU backend:\n" + "\n".join(bad))
    return diffs
