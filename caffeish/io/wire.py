"""Protobuf wire-format primitives (varints, tags, length-delimited fields).

Written here so caffeish reads and writes Caffe's files without the protobuf runtime.
Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit.
"""
from __future__ import annotations

import struct

from ..errors import FormatError

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128; negative ints are written as 64-bit two's complement (proto int32/int64)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf, pos: int) -> tuple[int, int]:
    """Read one varint at ``pos``; returns (value, new position)."""
    result = 0
    shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise FormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise FormatError("varint longer than 10 bytes")


def signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def signed32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def zigzag_encode(v: int) -> int:
    return (v << 1) ^ (v >> 63)


def zigzag_decode(v: int) -> int:
    return (v >> 1) ^ -(v & 1)


def tag(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def field_varint(number: int, value: int) -> bytes:
    return tag(number, VARINT) + encode_varint(int(value))


def field_bytes(number: int, payload: bytes) -> bytes:
    return tag(number, LEN) + encode_varint(len(payload)) + bytes(payload)


def field_fixed32(number: int, raw4: bytes) -> bytes:
    return tag(number, FIXED32) + raw4


def field_float(number: int, value: float) -> bytes:
    return tag(number, FIXED32) + struct.pack("<f", value)


def field_double(number: int, value: float) -> bytes:
    return tag(number, FIXED64) + struct.pack("<d", value)


def iter_fields(buf, start: int = 0, end: int | None = None):
    """Yield (field number, wire type, value) for each field in ``buf[start:end]``.

    value is an int for varints, a memoryview slice for fixed32/fixed64/length-delimited.
    Unknown fields are the caller's to skip; this never interprets them.
    """
    mv = memoryview(buf)
    if end is None:
        end = len(mv)
    pos = start
    while pos < end:
        key, pos = decode_varint(mv, pos)
        number, wt = key >> 3, key & 7
        if number == 0:
            raise FormatError(f"invalid field number 0 at byte {pos}")
        if wt == VARINT:
            val, pos = decode_varint(mv, pos)
        elif wt == FIXED64:
            if pos + 8 > end:
                raise FormatError(f"truncated 64-bit field {number}")
            val = mv[pos:pos + 8]
            pos += 8
        elif wt == LEN:
            ln, pos = decode_varint(mv, pos)
            if pos + ln > end:
                raise FormatError(f"field {number} claims {ln} bytes but only {end - pos} remain")
            val = mv[pos:pos + ln]
            pos += ln
        elif wt == FIXED32:
            if pos + 4 > end:
                raise FormatError(f"truncated 32-bit field {number}")
            val = mv[pos:pos + 4]
            pos += 4
        elif wt in (3, 4):
            raise FormatError(f"group wire types are not supported (field {number})")
        else:
            raise FormatError(f"unknown wire type {wt} for field {number}")
        yield number, wt, val
