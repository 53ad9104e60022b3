"""One exception family. The CLI prints ``str(err)`` and exits 2; ``--debug`` shows the traceback."""


class CaffeishError(Exception):
    """Base of every error caffeish raises on purpose."""


class ConfigError(CaffeishError):
    """A net or solver description is wrong (unknown field, bad type, missing bottom...)."""


class ShapeError(CaffeishError):
    """Blob shapes do not fit together (raised from a layer's reshape or a weight copy)."""


class AllocationError(ShapeError):
    """A blob or buffer is too big to allocate (usually a size typo: kernel_size, num_output)."""


def size_text(nbytes: int) -> str:
    """``1.5 GiB``-style text for a byte count."""
    v = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if v < 1024 or unit == "PiB":
            return f"{v:.0f} {unit}" if unit == "bytes" else f"{v:.3g} {unit}"
        v /= 1024
    return f"{v:.3g} PiB"


def is_allocation_failure(e: BaseException) -> bool:
    """numpy's ways of saying an array cannot be made that big."""
    if isinstance(e, MemoryError):
        return True
    msg = str(e)
    return isinstance(e, ValueError) and ("array is too big" in msg
                                          or "Maximum allowed dimension" in msg
                                          or "maximum supported dimension" in msg)


class DataError(CaffeishError):
    """Input data is missing or malformed (LMDB records, images, IDX files)."""


class FormatError(CaffeishError):
    """A binary file (caffemodel, solverstate, binaryproto) cannot be decoded."""


def closest(word, candidates, n=3):
    """The candidates most similar to ``word``, best first (for 'did you mean' hints)."""
    import difflib

    cands = list(candidates)
    out = difflib.get_close_matches(word, cands, n=n, cutoff=0.6)
    if not out:
        low = {c.lower(): c for c in cands}
        out = [low[m] for m in difflib.get_close_matches(word.lower(), list(low), n=n, cutoff=0.6)]
    return out


def did_you_mean(word, candidates):
    m = closest(word, candidates, n=1)
    if not m:
        return ""
    return " (did you mean " + " or ".join(repr(x) for x in m) + "?)"
