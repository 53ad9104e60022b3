"""Image files as Caffe reads them: OpenCV's ``imread`` and ``resize`` semantics, with Pillow.

Caffe's ``ReadImageToCVMat(path, height, width, is_color)`` (used by convert_imageset and the
ImageData layer) is ``cv::imread`` with ``IMREAD_COLOR`` or ``IMREAD_GRAYSCALE``, then
``cv::resize(img, Size(width, height))`` when *both* sizes are positive. This module does the same:

Decoding (Pillow), matching ``cv::imread`` byte for byte where the decoders agree:

- colour: 3 channels in **BGR** order. Gray files are replicated into three channels, alpha is
  dropped (not composited), palettes are expanded, 16-bit samples keep their high byte.
- gray (``is_color=False``): JPEG files give libjpeg's luma channel directly (Pillow's draft
  mode, as OpenCV asks libjpeg for ``JCS_GRAYSCALE``); PNG files use libpng's
  ``png_set_rgb_to_gray(1, 0.299, 0.587)`` integer formula ``(9797 R + 19234 G + 3737 B) >> 15``;
  other formats use OpenCV's ``(4899 R + 9617 G + 1868 B + 8192) >> 14``.
- the EXIF orientation tag is applied (OpenCV >= 3.1 does so unless told otherwise).

Resizing: :func:`resize_linear` is OpenCV's ``INTER_LINEAR`` for 8-bit images, reimplemented
from the algorithm's description: half-pixel centres ``(d + 0.5) * src / dst - 0.5`` computed in
float32, weights rounded to 11-bit fixed point (``INTER_RESIZE_COEF_SCALE`` = 2048), a horizontal
pass into int32 rows, then a vertical pass ``((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16)
+ 2) >> 2``; columns are clamped at the borders, rows are clamped by repeating the edge row with
the unclamped weights. An exact 2x downscale in both directions is, as in OpenCV, a 2 x 2 box
average ``(a + b + c + d + 2) >> 2``. The result equals ``cv2.resize`` exactly (tested against
OpenCV 4 and against an LMDB written by real Caffe). Pillow's own ``Image.resize(BILINEAR)`` is
*not* used: it widens its filter when downscaling (anti-aliasing); on the 20 images of the Caffe
reference LMDB (resized to 32 x 32) it differs from Caffe's pixels by 1.75 levels on average and
54 at most, where this implementation differs by 0.
"""
from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np
from numba import njit

from ..errors import DataError

INTER_RESIZE_COEF_BITS = 11
INTER_RESIZE_COEF_SCALE = 1 << INTER_RESIZE_COEF_BITS

_EXIF_ORIENTATION = 0x0112
_PNG_GRAY = (9797, 19234, 3737)      # libpng rgb_to_gray(0.299, 0.587), 15-bit, truncating
_CV_GRAY = (4899, 9617, 1868)        # OpenCV BGR2GRAY, 14-bit, rounding


# --- decoding ------------------------------------------------------------------------------
def _pillow():
    from PIL import Image
    return Image


def _high_byte(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)


def _to_gray(img, fmt) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "1", "LA", "La"):
        return np.asarray(img.convert("L"), np.uint8)
    if mode.startswith("I"):
        return _high_byte(np.asarray(img))
    if mode == "F":
        raise DataError("32-bit float images are not supported (Datum pixels are 8-bit)")
    rgb = np.asarray(img.convert("RGB"), np.uint8).astype(np.uint32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if fmt == "PNG":
        cr, cg, cb = _PNG_GRAY
        return ((cr * r + cg * g + cb * b) >> 15).astype(np.uint8)
    cr, cg, cb = _CV_GRAY
    return ((cr * r + cg * g + cb * b + 8192) >> 14).astype(np.uint8)


def _to_bgr(img) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I"):
        g = _high_byte(np.asarray(img))
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "F":
        raise DataError("32-bit float images are not supported (Datum pixels are 8-bit)")
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, np.uint8)[:, :, ::-1]


def decode_image(source, is_color: bool = True, name: str | None = None) -> np.ndarray:
    """Decode an image file like ``cv::imread``: H x W x 3 BGR uint8, or H x W when gray.

    source: a path, or the file's bytes. Raises DataError (naming ``name`` or the path) when the
    file is missing, is not an image, or is truncated.
    """
    Image = _pillow()
    from PIL import ImageOps

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or f"<{len(source)} bytes>"
        fp = io.BytesIO(source)
    else:
        label = name or os.fspath(source)
        fp = source
    try:
        img = Image.open(fp)
        fmt = img.format
        if not is_color and fmt == "JPEG" and img.mode == "RGB":
            img.draft("L", img.size)          # libjpeg's luma, as OpenCV decodes gray JPEGs
        img.load()
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{label}: is a directory, not an image") from None
    except PermissionError:
        raise DataError(f"{label}: permission denied") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad files
        msg = str(e) or type(e).__name__
        raise DataError(f"{label}: cannot decode the image: {msg}") from None
    try:
        arr = _to_bgr(img) if is_color else _to_gray(img, fmt)
    except DataError as e:
        raise DataError(f"{label}: {e}") from None
    finally:
        img.close()
    return arr


# --- resizing ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _linear_taps(src: int, dst: int, clamp: bool):
    """Source indices and 11-bit weights for one axis of OpenCV's INTER_LINEAR."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    if clamp:
        low = s < 0
        f[low] = 0
        s[low] = 0
        high = s >= src - 1
        f[high] = 0
        s[high] = src - 1
    one = np.float32(INTER_RESIZE_COEF_SCALE)
    w0 = np.rint((np.float32(1) - f) * one).astype(np.int32)
    w1 = np.rint(f * one).astype(np.int32)
    i0 = np.clip(s, 0, src - 1)
    i1 = np.clip(s + 1, 0, src - 1)
    taps = (i0, i1, w0, w1)
    for t in taps:
        t.setflags(write=False)
    return taps


@njit(cache=True, nogil=True)
def _linear_kernel(src, x0, x1, a0, a1, y0, y1, b0, b1, out):
    """out[y, x, c] = OpenCV's fixed-point bilinear blend of src rows y0/y1, columns x0/x1."""
    height, width, cn = out.shape
    for y in range(height):
        r0 = y0[y]
        r1 = y1[y]
        wb0 = np.int64(b0[y])
        wb1 = np.int64(b1[y])
        for x in range(width):
            c0 = x0[x]
            c1 = x1[x]
            wa0 = np.int64(a0[x])
            wa1 = np.int64(a1[x])
            for c in range(cn):
                h0 = np.int64(src[r0, c0, c]) * wa0 + np.int64(src[r0, c1, c]) * wa1
                h1 = np.int64(src[r1, c0, c]) * wa0 + np.int64(src[r1, c1, c]) * wa1
                v = (((wb0 * (h0 >> 4)) >> 16) + ((wb1 * (h1 >> 4)) >> 16) + 2) >> 2
                out[y, x, c] = min(max(v, 0), 255)


def resize_linear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV ``cv2.resize(img, (width, height))`` (INTER_LINEAR) for uint8 H x W [x C] images."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise DataError(f"resize_linear takes uint8 images, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise DataError(f"resize_linear takes H x W or H x W x C images, got shape {img.shape}")
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise DataError(f"cannot resize to {height} x {width}")
    sh, sw = img.shape[:2]
    if sh == 0 or sw == 0:
        raise DataError(f"cannot resize an empty {sh} x {sw} image")
    if (sh, sw) == (height, width):
        return img.copy()
    a = img if img.ndim == 3 else img[:, :, None]
    if sh == 2 * height and sw == 2 * width:
        # OpenCV switches INTER_LINEAR to its fast INTER_AREA path for an exact halving.
        s = a.astype(np.int32)
        out = ((s[0::2, 0::2] + s[0::2, 1::2] + s[1::2, 0::2] + s[1::2, 1::2] + 2) >> 2
               ).astype(np.uint8)
    else:
        x0, x1, a0, a1 = _linear_taps(sw, width, True)
        y0, y1, b0, b1 = _linear_taps(sh, height, False)
        out = np.empty((height, width, a.shape[2]), np.uint8)
        _linear_kernel(np.ascontiguousarray(a), x0, x1, a0, a1, y0, y1, b0, b1, out)
    return out if img.ndim == 3 else out[:, :, 0]


def read_image(path, height: int = 0, width: int = 0, is_color: bool = True,
               name: str | None = None) -> np.ndarray:
    """Caffe's ReadImageToCVMat: decode, then resize when both ``height`` and ``width`` > 0.

    Returns H x W x 3 (BGR) or H x W (gray) uint8.
    """
    img = decode_image(path, is_color, name)
    if height > 0 and width > 0:
        img = resize_linear(img, height, width)
    return img


def to_chw(img: np.ndarray) -> np.ndarray:
    """H x W [x C] -> C x H x W (contiguous), the layout of a Datum and of a blob."""
    if img.ndim == 2:
        return np.ascontiguousarray(img[None])
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def chw_to_pil(chw: np.ndarray):
    """A C x H x W uint8 array (BGR/BGRA channel order, or gray) as a Pillow image."""
    Image = _pillow()
    c = chw.shape[0]
    if c == 1:
        return Image.fromarray(np.ascontiguousarray(chw[0]), "L")
    if c == 3:
        return Image.fromarray(np.ascontiguousarray(chw[::-1].transpose(1, 2, 0)), "RGB")
    if c == 4:
        return Image.fromarray(np.ascontiguousarray(chw[[2, 1, 0, 3]].transpose(1, 2, 0)), "RGBA")
    raise DataError(f"cannot make an image of {c} channels (1, 3 or 4 needed)")


# --- encoding ------------------------------------------------------------------------------
def pillow_format(ext: str) -> str:
    """The Pillow format name for a file extension ('png', '.JPG', 'jpeg'...)."""
    Image = _pillow()
    Image.init()
    e = "." + ext.lower().lstrip(".")
    fmt = Image.registered_extensions().get(e)
    if fmt is None or fmt not in Image.SAVE:
        known = sorted({k.lstrip(".") for k, v in Image.registered_extensions().items()
                        if v in ("PNG", "JPEG", "BMP", "WEBP", "TIFF")})
        raise DataError(f"cannot encode images as {ext!r}; use one of {', '.join(known)}")
    return fmt


def encode_image(img: np.ndarray, ext: str) -> bytes:
    """H x W x 3 (BGR) or H x W uint8 -> file bytes in the format of ``ext``.

    JPEG uses quality 95 and PNG compression level 1, OpenCV's imencode defaults.
    """
    Image = _pillow()
    fmt = pillow_format(ext)
    if img.ndim == 2:
        pil = Image.fromarray(np.ascontiguousarray(img), "L")
    else:
        pil = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]), "RGB")
    buf = io.BytesIO()
    opts = {"JPEG": {"quality": 95}, "PNG": {"compress_level": 1}}.get(fmt, {})
    pil.save(buf, format=fmt, **opts)
    return buf.getvalue()


def file_extension(path: str) -> str:
    """The lowercased text after the last '.' of ``path`` ('' when there is none)."""
    base = path.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[1].lower() if "." in base else ""


def ext_matches(path: str, encoding: str) -> bool:
    """Caffe's matchExt: the file's extension is ``encoding`` (case-insensitive; jpeg ~ jpg)."""
    ext = file_extension(path)
    enc = encoding.lower().lstrip(".")
    return ext == enc or (enc == "jpg" and ext == "jpeg")


# --- list files ----------------------------------------------------------------------------
def read_text(path, what: str) -> str:
    """A UTF-8 text file's contents; a DataError naming ``what`` and the path otherwise."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} {path} is a directory") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text ({e})") from None
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from None


def parse_list(path) -> list[tuple[str, int]]:
    """Read a Caffe image list: one ``relative/path label`` per line.

    The path is everything before the last run of whitespace (so paths may hold spaces), the
    label an integer. Blank lines are ignored. Raises DataError naming ``file:line`` for a line
    without a label or with a label that is not an integer (listing up to 10 such lines), and for
    a list with no entries.
    """
    path = Path(path)
    text = read_text(path, "list file")
    entries = []
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        parts = stripped.rsplit(None, 1)
        if len(parts) < 2:
            problems.append(f"{path}:{lineno}: {stripped!r} has no label "
                            "(expected 'relative/path label')")
            continue
        name, label = parts
        try:
            value = int(label)
        except ValueError:
            problems.append(f"{path}:{lineno}: label {label!r} is not an integer")
            continue
        if not -2**31 <= value < 2**31:
            problems.append(f"{path}:{lineno}: label {value} does not fit an int32")
            continue
        entries.append((name, value))
    if problems:
        more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"{len(problems)} bad line(s) in list file {path}:\n"
                        + "\n".join(problems[:10]) + more)
    if not entries:
        raise DataError(f"list file {path} lists no images (expected lines "
                        "'relative/path label')")
    return entries


def root_prefix(root) -> str:
    """What Caffe puts before each listed path: ``root_folder`` as given (paths are glued on,
    ``root + path``), with a separator added when ``root`` names an existing directory without
    one (Caffe would otherwise glue 'photos' and 'a.jpg' into 'photosa.jpg')."""
    root = os.fspath(root)
    if root and not root.endswith(("/", os.sep)) and os.path.isdir(root):
        return root + os.sep
    return root


__all__ = ["decode_image", "resize_linear", "read_image", "to_chw", "chw_to_pil",
           "encode_image", "pillow_format", "ext_matches", "file_extension", "parse_list",
           "read_text",
           "root_prefix", "INTER_RESIZE_COEF_SCALE"]
