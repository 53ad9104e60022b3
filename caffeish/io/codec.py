"""Schema-driven protobuf (proto2) codec: :class:`Msg` <-> wire bytes, byte-compatible with Caffe.

- Fields are written in field-number order, as protobuf's C++ serializer does, so a message
  round-tripped through Caffe and through caffeish gives the same bytes.
- Repeated scalars are written packed when the schema says so, and read in either form.
- Repeated float/double fields declared packed (BlobProto.data, diff, double_data, double_diff)
  and ``Datum.float_data`` decode into a writable little-endian-native ndarray (float32/float64);
  other repeated scalars decode into lists. Unpacked float runs (old caffemodels: one tag per
  value) are converted in bulk with numpy.
- Enums decode to their symbol; a number the enum lacks is kept as an int. Encoding takes either.
- Unknown field numbers are skipped by wire type. A known field with the wrong wire type, a
  truncated field or bad UTF-8 raises :class:`FormatError` naming the field path and byte offset.
"""
from __future__ import annotations

import struct

import numpy as np

from ..config import schema as _schema
from ..config.schema import Field, MessageDef, Msg
from ..errors import FormatError
from .wire import FIXED32, FIXED64, LEN, VARINT, encode_varint, zigzag_decode, zigzag_encode

__all__ = ["encode", "decode", "is_array_field"]

_VARINT_KINDS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum"}
_WIRE = {k: VARINT for k in _VARINT_KINDS}
_WIRE.update(float=FIXED32, double=FIXED64, string=LEN, bytes=LEN, message=LEN)
_NP = {"float": np.dtype("<f4"), "double": np.dtype("<f8")}
_EXTRA_ARRAY_FIELDS = {("Datum", "float_data")}

_sorted_cache: dict[int, tuple[MessageDef, list[Field]]] = {}


def _sorted_fields(mdef: MessageDef) -> list[Field]:
    hit = _sorted_cache.get(id(mdef))
    if hit is None or hit[0] is not mdef:
        hit = (mdef, sorted(mdef.fields.values(), key=lambda f: f.number))
        _sorted_cache[id(mdef)] = hit
    return hit[1]


def is_array_field(mdef: MessageDef, f: Field) -> bool:
    """True when the repeated float/double field ``f`` decodes to an ndarray rather than a list."""
    return (f.repeated and f.kind in _NP
            and (f.packed or (mdef.name, f.name) in _EXTRA_ARRAY_FIELDS))


def _resolve(message_name_or_def) -> MessageDef:
    if isinstance(message_name_or_def, MessageDef):
        return message_name_or_def
    try:
        return _schema.MESSAGES[message_name_or_def]
    except KeyError:
        raise FormatError(f"unknown message type {message_name_or_def!r}") from None


# =========================================================================================
# encoding
# =========================================================================================
def encode(msg: Msg) -> bytes:
    """Serialize ``msg`` (set fields only, in field-number order) to protobuf wire bytes."""
    out = bytearray()
    _encode_into(msg, out, msg.mdef.name)
    return bytes(out)


def _key(number: int, wt: int) -> bytes:
    return encode_varint((number << 3) | wt)


def _varint_of(f: Field, v, path: str) -> int:
    k = f.kind
    if k == "enum":
        if isinstance(v, str):
            try:
                return f.enum_values[v]
            except KeyError:
                raise FormatError(f"{path}: {v!r} is not a value of enum {f.type_name}") from None
        return int(v)
    if k == "bool":
        return 1 if v else 0
    v = int(v)
    if k in ("sint32", "sint64"):
        return zigzag_encode(v)
    if k in ("uint32", "uint64") and v < 0:
        raise FormatError(f"{path}: negative value {v} for {k} field")
    if k == "int32" and not -(1 << 31) <= v < (1 << 31):
        raise FormatError(f"{path}: {v} out of int32 range")
    return v


def _scalar_payload(f: Field, v, path: str) -> bytes:
    k = f.kind
    if k == "float":
        return struct.pack("<f", v)
    if k == "double":
        return struct.pack("<d", v)
    if k == "string":
        b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        return encode_varint(len(b)) + b
    if k == "bytes":
        b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        return encode_varint(len(b)) + b
    return encode_varint(_varint_of(f, v, path))


def _encode_into(msg: Msg, out: bytearray, path: str) -> None:
    values = msg._values
    for f in _sorted_fields(msg.mdef):
        v = values.get(f.name)
        if v is None:
            continue
        fpath = f"{path}.{f.name}"
        if f.kind == "message":
            if f.repeated:
                key = _key(f.number, LEN)
                for i, sub in enumerate(v):
                    body = bytearray()
                    _encode_into(sub, body, f"{fpath}[{i}]")
                    out += key
                    out += encode_varint(len(body))
                    out += body
            else:
                body = bytearray()
                _encode_into(v, body, fpath)
                out += _key(f.number, LEN)
                out += encode_varint(len(body))
                out += body
            continue
        if not f.repeated:
            out += _key(f.number, _WIRE[f.kind])
            out += _scalar_payload(f, v, fpath)
            continue
        if len(v) == 0:
            continue
        if f.kind in _NP:
            arr = np.asarray(v, dtype=_NP[f.kind]).ravel()
            if f.packed:
                raw = arr.tobytes()
                out += _key(f.number, LEN)
                out += encode_varint(len(raw))
                out += raw
            else:
                key = np.frombuffer(_key(f.number, _WIRE[f.kind]), np.uint8)
                rec = np.empty((arr.size, key.size + arr.itemsize), np.uint8)
                rec[:, :key.size] = key
                rec[:, key.size:] = arr.view(np.uint8).reshape(arr.size, arr.itemsize)
                out += rec.tobytes()
        elif f.packed and f.kind in _VARINT_KINDS:
            raw = b"".join(encode_varint(_varint_of(f, x, fpath)) for x in v)
            out += _key(f.number, LEN)
            out += encode_varint(len(raw))
            out += raw
        else:
            key = _key(f.number, _WIRE[f.kind])
            for x in v:
                out += key
                out += _scalar_payload(f, x, fpath)


# =========================================================================================
# decoding
# =========================================================================================
def decode(data, message_name_or_def) -> Msg:
    """Parse protobuf wire bytes into a :class:`Msg` of the given message type."""
    mdef = _resolve(message_name_or_def)
    mv = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else memoryview(data)
    msg = Msg(mdef)
    _decode_into(msg, mv, 0, len(mv), mdef.name)
    return msg


def _varint(mv, pos: int, end: int, path: str, what: str) -> tuple[int, int]:
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise FormatError(f"{path}: truncated {what} at byte {start}")
        b = mv[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise FormatError(f"{path}: {what} longer than 10 bytes at byte {start}")


_enum_rev: dict[str, tuple[dict, dict]] = {}


def _enum_symbols(type_name: str) -> dict[int, str]:
    values = _schema.ENUMS[type_name]
    hit = _enum_rev.get(type_name)
    if hit is None or hit[0] is not values:
        rev: dict[int, str] = {}
        for sym, num in values.items():
            rev.setdefault(num, sym)
        hit = _enum_rev[type_name] = (values, rev)
    return hit[1]


def _int_of(f: Field, raw: int):
    k = f.kind
    if k == "int32" or k == "enum":
        raw &= 0xFFFFFFFF
        v = raw - (1 << 32) if raw >= 1 << 31 else raw
        if k == "enum":
            return _enum_symbols(f.type_name).get(v, v)
        return v
    if k == "int64":
        raw &= 0xFFFFFFFFFFFFFFFF
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if k == "uint32":
        return raw & 0xFFFFFFFF
    if k == "uint64":
        return raw & 0xFFFFFFFFFFFFFFFF
    if k == "bool":
        return raw != 0
    if k == "sint32":
        return zigzag_decode(raw & 0xFFFFFFFF)
    if k == "sint64":
        return zigzag_decode(raw & 0xFFFFFFFFFFFFFFFF)
    raise AssertionError(k)


def _fixed_run(mv, start: int, keylen: int, end: int, dt: np.dtype) -> tuple[np.ndarray, int]:
    """Read consecutive same-tag fixed-width records starting at ``start`` (the tag's first byte)."""
    stride = keylen + dt.itemsize
    total = (end - start) // stride
    buf = np.frombuffer(mv, np.uint8, count=end - start, offset=start)
    key = buf[:keylen].copy()
    n = 0
    chunk = 16
    while n < total:
        m = min(chunk, total - n)
        rows = buf[n * stride:(n + m) * stride].reshape(m, stride)
        ok = (rows[:, :keylen] == key).all(axis=1)
        if ok.all():
            n += m
            chunk *= 4
            continue
        n += int(np.argmin(ok))
        break
    vals = buf[:n * stride].reshape(n, stride)[:, keylen:].copy().view(dt).ravel()
    return vals, start + n * stride


def _decode_into(msg: Msg, mv, pos: int, end: int, path: str) -> None:
    mdef = msg.mdef
    by_number = mdef.by_number
    values = msg._values
    chunks: dict[str, list] = {}
    while pos < end:
        tag_start = pos
        key, pos = _varint(mv, pos, end, path, "field tag")
        number, wt = key >> 3, key & 7
        if number == 0:
            raise FormatError(f"{path}: invalid field number 0 at byte {tag_start}")
        if wt > 5:
            raise FormatError(f"{path}: invalid wire type {wt} at byte {tag_start}")
        f = by_number.get(number)
        if f is None:
            pos = _skip(mv, pos, end, wt, number, tag_start, path)
            continue
        fpath = f"{path}.{f.name}"
        expected = _WIRE[f.kind]
        if wt == LEN and f.repeated and expected != LEN:
            ln, pos = _varint(mv, pos, end, fpath, "length")
            if pos + ln > end:
                raise FormatError(f"{fpath}: packed field claims {ln} bytes but only "
                                  f"{end - pos} remain (byte {tag_start})")
            if f.kind in _NP:
                dt = _NP[f.kind]
                if ln % dt.itemsize:
                    raise FormatError(f"{fpath}: packed {f.kind} payload of {ln} bytes is not a "
                                      f"multiple of {dt.itemsize} (byte {tag_start})")
                arr = np.frombuffer(mv, dt, count=ln // dt.itemsize, offset=pos).copy()
                chunks.setdefault(f.name, []).append(arr)
            else:
                lst = chunks.setdefault(f.name, [])
                p, stop = pos, pos + ln
                while p < stop:
                    raw, p = _varint(mv, p, stop, fpath, "packed varint")
                    lst.append(_int_of(f, raw))
            pos += ln
            continue
        if wt != expected:
            raise FormatError(f"{fpath}: wire type {wt} where {f.kind} expects {expected} "
                              f"(byte {tag_start})")
        if wt == VARINT:
            raw, pos = _varint(mv, pos, end, fpath, "varint")
            v = _int_of(f, raw)
            if f.repeated:
                chunks.setdefault(f.name, []).append(v)
            else:
                values[f.name] = v
        elif wt == FIXED32 or wt == FIXED64:
            dt = _NP[f.kind]
            if f.repeated:
                arr, pos = _fixed_run(mv, tag_start, pos - tag_start, end, dt)
                if arr.size == 0:
                    raise FormatError(f"{fpath}: truncated {f.kind} at byte {tag_start}")
                chunks.setdefault(f.name, []).append(arr)
            else:
                if pos + dt.itemsize > end:
                    raise FormatError(f"{fpath}: truncated {f.kind} at byte {tag_start}")
                values[f.name] = struct.unpack_from("<f" if wt == FIXED32 else "<d", mv, pos)[0]
                pos += dt.itemsize
        else:  # LEN: string, bytes, message
            ln, pos = _varint(mv, pos, end, fpath, "length")
            if pos + ln > end:
                raise FormatError(f"{fpath}: field claims {ln} bytes but only {end - pos} remain "
                                  f"(byte {tag_start})")
            if f.kind == "message":
                if f.repeated:
                    lst = values.get(f.name)
                    if lst is None:
                        lst = values[f.name] = []
                    sub = Msg(f.message_def)
                    _decode_into(sub, mv, pos, pos + ln, f"{fpath}[{len(lst)}]")
                    lst.append(sub)
                else:
                    sub = values.get(f.name)
                    if sub is None:
                        sub = values[f.name] = Msg(f.message_def)
                    _decode_into(sub, mv, pos, pos + ln, fpath)
            else:
                raw = bytes(mv[pos:pos + ln])
                if f.kind == "string":
                    try:
                        v = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise FormatError(f"{fpath}: invalid UTF-8 in string at byte {pos}: "
                                          f"{e.reason}") from None
                else:
                    v = raw
                if f.repeated:
                    chunks.setdefault(f.name, []).append(v)
                else:
                    values[f.name] = v
            pos += ln
    if pos != end:
        raise FormatError(f"{path}: field overruns its message end at byte {end}")
    for name, parts in chunks.items():
        f = mdef.fields[name]
        if f.kind in _NP:
            prev = values.get(name)
            if prev is not None and len(prev):
                parts = [np.asarray(prev, _NP[f.kind])] + parts
            arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
            values[name] = arr if is_array_field(mdef, f) else arr.tolist()
        else:
            prev = values.get(name)
            values[name] = (list(prev) if prev else []) + parts


def _skip(mv, pos: int, end: int, wt: int, number: int, tag_start: int, path: str) -> int:
    what = f"{path}: unknown field {number}"
    if wt == VARINT:
        _, pos = _varint(mv, pos, end, what, "varint")
        return pos
    if wt == FIXED64:
        pos += 8
    elif wt == FIXED32:
        pos += 4
    elif wt == LEN:
        ln, pos = _varint(mv, pos, end, what, "length")
        pos += ln
    elif wt in (3, 4):
        raise FormatError(f"{what}: group wire type {wt} is not supported (byte {tag_start})")
    else:
        raise FormatError(f"{what}: invalid wire type {wt} at byte {tag_start}")
    if pos > end:
        raise FormatError(f"{what}: truncated (byte {tag_start})")
    return pos
