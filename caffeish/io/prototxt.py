"""Protobuf text format (``.prototxt``) <-> :class:`Msg`, driven by the caffe.proto schema.

The parser follows protobuf's C++ ``TextFormat::Parse``, which is what Caffe reads prototxts
with:

- ``field: value``; sub-messages as ``field { ... }``, ``field: { ... }`` or ``field < ... >``;
  repeated fields by repetition or as ``field: [a, b]`` (``field [{...}, {...}]`` for messages).
- Enums by symbol or by number; bools as true/false/True/False/t/f/1/0; integers in decimal,
  hex (``0x1F``) and, as in C++, octal when written with a leading zero (``017`` is 15).
- Floats as ``1e-4``, ``.5``, ``5.``, ``1.5f``, ``inf``/``infinity``/``nan`` (any case, with an
  optional ``-``); an integer literal is a valid float, a float literal is not a valid integer.
- Strings in double or single quotes with C escapes (``\\n \\t \\" \\' \\\\ \\NNN \\xNN``);
  adjacent literals concatenate (``"a" 'b'`` is ``"ab"``); a literal may not span lines.
- ``#`` comments; ``,`` or ``;`` after a field are optional separators.
- A non-repeated field given twice is an error (Parse forbids singular overwrites), and so is a
  field caffe.proto does not have.

Every message gets ``src=(path, line)`` and the line of each field, so errors raised later (in
Net construction, say) point at the prototxt line. Parse errors are :class:`ConfigError`\\ s as
``path:line:col: [layer 'conv1' (Convolution): ]what (did you mean ...?)``.

The printer writes what Caffe's ``upgrade_net_proto_text`` writes: fields in field-number
order, two-space indents, ``name {`` blocks, strings quoted with C escapes, enums bare, one line
per repeated value, floats in the shortest form that reads back to the same float32.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from ..config.schema import FLOAT_KINDS, INT_KINDS, MESSAGES, MessageDef, Msg
from ..errors import ConfigError, did_you_mean

__all__ = ["parse_prototxt", "parse_prototxt_file", "to_prototxt", "top_level_fields",
           "read_text_file", "format_float"]

_INT_RANGES = {
    "int32": (-(1 << 31), (1 << 31) - 1), "sint32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "sint64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
}
_LAYER_MESSAGES = ("LayerParameter", "V1LayerParameter", "V0LayerParameter")
_TRUE = {"true", "True", "t"}
_FALSE = {"false", "False", "f"}
_FLOAT_WORDS = {"inf": math.inf, "infinity": math.inf, "nan": math.nan}

# --- tokenizer ---------------------------------------------------------------------------
IDENT, INT, FLOAT, STRING, SYMBOL = "identifier", "integer", "float", "string", "symbol"

_TOKEN_RE = re.compile(r"""
    (?P<ws>[ \t\r\n\v\f]+)
  | (?P<comment>\#[^\n]*)
  | (?P<float>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?
             |[0-9]+[eE][+-]?[0-9]+[fF]?
             |[0-9]+[fF])
  | (?P<int>0[xX][0-9a-fA-F]+|[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>["'])
  | (?P<symbol>[{}<>\[\]:,;\-/.])
""", re.VERBOSE)

_SIMPLE_ESCAPES = {
    "n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11,
    "\\": 92, "'": 39, '"': 34, "?": 63,
}


class _Token:
    __slots__ = ("kind", "text", "value", "line", "col")

    def __init__(self, kind, text, value, line, col):
        self.kind = kind
        self.text = text
        self.value = value
        self.line = line
        self.col = col

    def is_sym(self, s):
        return self.kind == SYMBOL and self.text == s

    def __repr__(self):
        return f"<{self.kind} {self.text!r} @{self.line}:{self.col}>"


class _ParseError(Exception):
    def __init__(self, line, col, message):
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message
        self.context = None


def _unescape(body: str, line: int, col: int) -> bytes:
    """The bytes a C-escaped string literal body stands for (protobuf's UnescapeCEscapeString)."""
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            j = body.find("\\", i)
            j = n if j < 0 else j
            out += body[i:j].encode("utf-8")
            i = j
            continue
        if i + 1 >= n:
            raise _ParseError(line, col + i, "string ends with a lone backslash")
        e = body[i + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in "01234567":
            j = i + 1
            while j < n and j < i + 4 and body[j] in "01234567":
                j += 1
            out.append(int(body[i + 1:j], 8) & 0xFF)
            i = j
        elif e in "xX":
            j = i + 2
            while j < n and j < i + 4 and body[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 2:
                raise _ParseError(line, col + i, "\\x escape needs a hex digit")
            out.append(int(body[i + 2:j], 16))
            i = j
        elif e in "uU":
            width = 4 if e == "u" else 8
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
                raise _ParseError(line, col + i, f"\\{e} escape needs {width} hex digits")
            try:
                out += chr(int(digits, 16)).encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                raise _ParseError(line, col + i, f"\\{e}{digits} is not a valid code point") \
                    from None
            i += 2 + width
        else:
            raise _ParseError(line, col + i, f"invalid escape sequence '\\{e}' in string")
    return bytes(out)


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    pos, n = 0, len(text)
    line, line_start = 1, 0
    match = _TOKEN_RE.match
    while pos < n:
        m = match(text, pos)
        col = pos - line_start + 1
        if m is None:
            ch = text[pos]
            raise _ParseError(line, col, f"unexpected character {ch!r}")
        kind = m.lastgroup
        end = m.end()
        if kind == "ws":
            nl = text.count("\n", pos, end)
            if nl:
                line += nl
                line_start = text.rfind("\n", pos, end) + 1
            pos = end
            continue
        if kind == "comment":
            pos = end
            continue
        if kind == "string":
            quote = text[pos]
            j = pos + 1
            while True:
                if j >= n or text[j] == "\n":
                    raise _ParseError(line, col, "string literal is not closed on its line "
                                                 "(string literals cannot cross line boundaries)")
                ch = text[j]
                if ch == "\\":
                    j += 2
                    continue
                if ch == quote:
                    break
                j += 1
            body = text[pos + 1:j]
            tokens.append(_Token(STRING, text[pos:j + 1], _unescape(body, line, col + 1),
                                 line, col))
            pos = j + 1
            continue
        tok_text = text[pos:end]
        if kind in ("int", "float") and end < n and (text[end].isalnum() or text[end] in "_."):
            raise _ParseError(line, col, f"malformed number {text[pos:end + 1]!r}: a number "
                                         f"must be followed by a space or a symbol")
        if kind == "float" and len(tok_text) > 1 and tok_text[0] == "0" and tok_text[1].isdigit():
            raise _ParseError(line, col, f"malformed number {tok_text!r}: a number with a "
                                         f"leading zero is an octal integer")
        if kind == "int":
            tokens.append(_Token(INT, tok_text, None, line, col))
        elif kind == "float":
            tokens.append(_Token(FLOAT, tok_text, None, line, col))
        elif kind == "ident":
            tokens.append(_Token(IDENT, tok_text, tok_text, line, col))
        else:
            if tok_text == "/":
                raise _ParseError(line, col, "unexpected '/': comments in prototxt start "
                                             "with '#'")
            if tok_text == ".":
                raise _ParseError(line, col, "unexpected '.'")
            tokens.append(_Token(SYMBOL, tok_text, tok_text, line, col))
        pos = end
    return tokens


def _parse_int_text(text: str) -> int:
    """An integer literal as C++'s tokenizer reads it: 0x hex, leading-0 octal, decimal."""
    if text[:2] in ("0x", "0X"):
        return int(text[2:], 16)
    if len(text) > 1 and text[0] == "0":
        if any(c in "89" for c in text):
            raise ValueError(text)
        return int(text[1:], 8)
    return int(text, 10)


def _kind_word(field) -> str:
    k = field.kind
    if k in INT_KINDS:
        return f"an integer ({k})"
    if k in FLOAT_KINDS:
        return "a number"
    if k == "bool":
        return "true or false"
    if k in ("string", "bytes"):
        return "a quoted string"
    if k == "enum":
        return "one of " + ", ".join(field.enum_values)
    return k


# --- parser ------------------------------------------------------------------------------
class _Parser:
    def __init__(self, tokens, path):
        self.toks = tokens
        self.i = 0
        self.path = path

    # token helpers
    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self):
        t = self.peek()
        if t is not None:
            self.i += 1
        return t

    def eof_error(self, what):
        return self.error(None, f"expected {what}")

    def error(self, tok, message):
        if tok is None:
            last = self.toks[-1] if self.toks else None
            line = last.line if last else 1
            col = (last.col + len(last.text)) if last else 1
            return _ParseError(line, col, f"unexpected end of file: {message}")
        return _ParseError(tok.line, tok.col, message)

    def try_sym(self, s):
        t = self.peek()
        if t is not None and t.is_sym(s):
            self.i += 1
            return True
        return False

    # messages
    def parse_body(self, mdef: MessageDef, close, open_tok, src_line, owner=None) -> Msg:
        msg = Msg(mdef, src=(self.path, src_line))
        values = {}
        lines = {}
        while True:
            tok = self.peek()
            if tok is None:
                if close is None:
                    break
                raise _ParseError(open_tok.line, open_tok.col,
                                  f"'{open_tok.text}' opened here for '{owner}' is never closed "
                                  f"(missing '{close}' before the end of the file)")
            if close is not None and tok.is_sym(close):
                self.i += 1
                break
            if tok.kind == SYMBOL and tok.text in "}>":
                if close is None:
                    raise self.error(tok, f"unmatched '{tok.text}' at the top level of "
                                          f"{mdef.name}")
                raise self.error(tok, f"expected '{close}' to close '{owner}' (opened with "
                                      f"'{open_tok.text}' on line {open_tok.line}), got "
                                      f"'{tok.text}'")
            if tok.is_sym("["):
                raise self.error(tok, "extension and Any fields ('[...]') are not part of "
                                      "caffe.proto")
            if tok.kind != IDENT:
                raise self.error(tok, f"expected a field name of {mdef.name}, got "
                                      f"{tok.kind} {tok.text!r}")
            self.i += 1
            name = tok.text
            field = mdef.fields.get(name)
            if field is None:
                raise self.error(tok, f"unknown field '{name}' in {mdef.name}"
                                      f"{did_you_mean(name, mdef.fields)}")
            if not field.repeated and name in values:
                raise self.error(tok, f"field '{name}' of {mdef.name} is not repeated but is "
                                      f"given twice (first on line {lines[name]})")
            lines.setdefault(name, tok.line)
            if field.kind == "message":
                self.parse_message_field(field, tok, values)
            else:
                self.parse_scalar_field(field, tok, values)
            if not self.try_sym(","):
                self.try_sym(";")
        for name, v in values.items():
            msg.set(name, v, line=lines[name])
        return msg

    def parse_sub_message(self, field, name_tok):
        open_tok = self.next()
        if open_tok is None:
            raise self.eof_error(f"'{{' to start '{field.name}'")
        if open_tok.is_sym("{"):
            close = "}"
        elif open_tok.is_sym("<"):
            close = ">"
        else:
            raise self.error(open_tok, f"field '{field.name}' is a message "
                                       f"({field.type_name}): expected '{{' after it, got "
                                       f"{open_tok.text!r}")
        start = self.i
        try:
            return self.parse_body(field.message_def, close, open_tok, name_tok.line,
                                   owner=field.name)
        except _ParseError as e:
            if e.context is None and field.type_name in _LAYER_MESSAGES:
                e.context = self.layer_context(start, field.name)
            raise

    def parse_message_field(self, field, name_tok, values):
        had_colon = self.try_sym(":")
        t = self.peek()
        if t is not None and t.is_sym("["):
            self.i += 1
            if not field.repeated:
                raise self.error(t, f"field '{field.name}' is not repeated: a list is not "
                                    f"allowed")
            items = values.setdefault(field.name, [])
            if self.try_sym("]"):
                return
            while True:
                items.append(self.parse_sub_message(field, name_tok))
                if self.try_sym("]"):
                    return
                t = self.peek()
                if not self.try_sym(","):
                    raise self.error(t, f"expected ',' or ']' in the list of "
                                        f"'{field.name}'")
        if t is not None and not (t.is_sym("{") or t.is_sym("<")):
            example = f"{field.name} {{ ... }}"
            raise self.error(t, f"field '{field.name}' is a message ({field.type_name}), not "
                                f"a value: write {example}"
                             if had_colon else
                             f"expected '{{' after '{field.name}' (a {field.type_name} "
                             f"message), got {t.text!r}")
        sub = self.parse_sub_message(field, name_tok)
        if field.repeated:
            values.setdefault(field.name, []).append(sub)
        else:
            values[field.name] = sub

    def parse_scalar_field(self, field, name_tok, values):
        t = self.peek()
        if not self.try_sym(":"):
            if t is not None and (t.is_sym("{") or t.is_sym("<")):
                raise self.error(t, f"field '{field.name}' takes a value, not a message: "
                                    f"write {field.name}: <value>")
            raise self.error(t, f"expected ':' after field '{field.name}'"
                             + (f", got {t.text!r}" if t is not None else ""))
        t = self.peek()
        if t is not None and t.is_sym("["):
            self.i += 1
            if not field.repeated:
                raise self.error(t, f"field '{field.name}' is not repeated: a list is not "
                                    f"allowed")
            items = values.setdefault(field.name, [])
            if self.try_sym("]"):
                return
            while True:
                items.append(self.parse_value(field))
                if self.try_sym("]"):
                    return
                t = self.peek()
                if not self.try_sym(","):
                    raise self.error(t, f"expected ',' or ']' in the list of "
                                        f"'{field.name}'")
        v = self.parse_value(field)
        if field.repeated:
            values.setdefault(field.name, []).append(v)
        else:
            values[field.name] = v

    def parse_value(self, field):
        kind = field.kind
        t = self.peek()
        if t is None:
            raise self.eof_error(f"a value for '{field.name}'")
        if kind in ("string", "bytes"):
            if t.kind != STRING:
                raise self.error(t, f"field '{field.name}' must be a quoted string, got "
                                    f"{t.text!r}" + (f" (write {field.name}: \"{t.text}\")"
                                                     if t.kind == IDENT else ""))
            data = bytearray()
            while t is not None and t.kind == STRING:
                data += t.value
                self.i += 1
                t = self.peek()
            if kind == "bytes":
                return bytes(data)
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error(self.toks[self.i - 1],
                                 f"field '{field.name}' holds bytes that are not valid "
                                 f"UTF-8") from None
        neg = False
        first = t
        if t.is_sym("-"):
            neg = True
            self.i += 1
            t = self.peek()
            if t is None:
                raise self.eof_error(f"a number after '-' for '{field.name}'")
        shown = ("-" if neg else "") + t.text
        if kind in INT_KINDS:
            if t.kind != INT:
                raise self.error(first, f"field '{field.name}' must be {_kind_word(field)}, "
                                        f"got {shown!r}")
            try:
                v = _parse_int_text(t.text)
            except ValueError:
                raise self.error(first, f"invalid integer {shown!r} for '{field.name}' (a "
                                        f"leading 0 means octal)") from None
            v = -v if neg else v
            lo, hi = _INT_RANGES[kind]
            if not lo <= v <= hi:
                raise self.error(first, f"field '{field.name}' = {v} is out of range for "
                                        f"{kind} [{lo}, {hi}]")
            self.i += 1
            return v
        if kind in FLOAT_KINDS:
            if t.kind == INT:
                if t.text[:2] in ("0x", "0X") or (len(t.text) > 1 and t.text[0] == "0"):
                    raise self.error(first, f"field '{field.name}' must be a decimal number, "
                                            f"got {shown!r} (hex and octal are integers only)")
                v = float(t.text)
            elif t.kind == FLOAT:
                v = float(t.text.rstrip("fF"))
            elif t.kind == IDENT and t.text.lower() in _FLOAT_WORDS:
                v = _FLOAT_WORDS[t.text.lower()]
            else:
                raise self.error(first, f"field '{field.name}' must be a number, got "
                                        f"{shown!r}")
            self.i += 1
            return -v if neg else v
        if kind == "bool":
            if not neg and t.kind == IDENT and (t.text in _TRUE or t.text in _FALSE):
                self.i += 1
                return t.text in _TRUE
            if not neg and t.kind == INT and t.text in ("0", "1"):
                self.i += 1
                return t.text == "1"
            raise self.error(first, f"field '{field.name}' must be true or false, got "
                                    f"{shown!r}")
        if kind == "enum":
            symbols = field.enum_values
            if t.kind == IDENT and not neg:
                if t.text in symbols:
                    self.i += 1
                    return t.text
                hint = did_you_mean(t.text, symbols)
                if not hint and t.text.upper() in symbols:
                    hint = f" (did you mean {t.text.upper()!r}?)"
                raise self.error(t, f"bad value '{t.text}' for '{field.name}': "
                                    f"{field.type_name} is one of {', '.join(symbols)}{hint}")
            if t.kind == INT:
                v = _parse_int_text(t.text)
                v = -v if neg else v
                for sym, num in symbols.items():
                    if num == v:
                        self.i += 1
                        return sym
                raise self.error(first, f"{v} is not a value of {field.type_name} (for "
                                        f"'{field.name}'): choose one of "
                                        + ", ".join(f"{s}={n}" for s, n in symbols.items()))
            raise self.error(first, f"field '{field.name}' must be {_kind_word(field)}, got "
                                    f"{shown!r}")
        raise self.error(first, f"field '{field.name}' has unsupported kind {kind}")

    # error context
    def layer_context(self, start, field_name):
        """``layer 'name' (Type)`` from the name/type fields of the block starting at ``start``."""
        found = {}
        depth = 0
        j = start
        toks = self.toks
        while j < len(toks):
            t = toks[j]
            if t.kind == SYMBOL and t.text in "{<[":
                depth += 1
            elif t.kind == SYMBOL and t.text in "}>]":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and t.kind == IDENT and t.text in ("name", "type") \
                    and t.text not in found:
                k = j + 1
                if k < len(toks) and toks[k].is_sym(":"):
                    k += 1
                if k < len(toks) and toks[k].kind in (STRING, IDENT):
                    v = toks[k].value
                    if isinstance(v, bytes):
                        v = v.decode("utf-8", "replace")
                    found[t.text] = v
            j += 1
        return f"{field_name} '{found.get('name', '?')}' ({found.get('type', '?') or '?'})"


def _error(path, e: _ParseError) -> ConfigError:
    ctx = f"{e.context}: " if e.context else ""
    return ConfigError(f"{path}:{e.line}:{e.col}: {ctx}{e.message}")


def _mdef(message_name) -> MessageDef:
    import caffeish.config  # noqa: F401  (registers caffe.proto)
    if isinstance(message_name, MessageDef):
        return message_name
    try:
        return MESSAGES[message_name]
    except KeyError:
        raise ValueError(f"unknown message type {message_name!r}") from None


def parse_prototxt(text: str, message_name: str, path="<string>") -> Msg:
    """Parse protobuf text into a ``message_name`` message (e.g. 'NetParameter').

    No upgrade happens here: a V1 net keeps its ``layers``; see :mod:`caffeish.io.upgrade`.
    """
    mdef = _mdef(message_name)
    path = os.fspath(path)
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason}); is this a binary "
                              f"file such as a .caffemodel?") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        tokens = _tokenize(text)
        return _Parser(tokens, path).parse_body(mdef, None, None, 1)
    except _ParseError as e:
        raise _error(path, e) from None


def read_text_file(path) -> str:
    """A prototxt file's text; ConfigError when it is missing or not UTF-8 text."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a prototxt file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason}); is this a binary "
                          f"file such as a .caffemodel?") from None


def parse_prototxt_file(path, message_name: str) -> Msg:
    """Read a ``.prototxt`` file into a ``message_name`` message (lines point into the file)."""
    return parse_prototxt(read_text_file(path), message_name, os.fspath(path))


def top_level_fields(text: str, path="<string>") -> list[str]:
    """Names of the fields at the top level of a prototxt, in order of first appearance.

    Works without a schema (to tell a net from a solver before parsing).
    """
    try:
        tokens = _tokenize(text)
    except _ParseError as e:
        raise _error(os.fspath(path), e) from None
    names = []
    depth = 0
    for j, t in enumerate(tokens):
        if t.kind == SYMBOL and t.text in "{<[":
            depth += 1
        elif t.kind == SYMBOL and t.text in "}>]":
            depth = max(0, depth - 1)
        elif depth == 0 and t.kind == IDENT and j + 1 < len(tokens):
            nxt = tokens[j + 1]
            if (nxt.is_sym(":") or nxt.is_sym("{") or nxt.is_sym("<")) and t.text not in names:
                prev = tokens[j - 1] if j else None
                if prev is None or not prev.is_sym(":"):
                    names.append(t.text)
    return names


# --- printer -----------------------------------------------------------------------------
def format_float(v, kind="float") -> str:
    """Shortest text that reads back as the same float32 (``kind='float'``) or float64."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if kind == "float":
        with np.errstate(over="ignore"):
            target = np.float32(v)  # what a float field holds (1e39 is inf, as in Caffe)
        if math.isinf(target):
            return "inf" if target > 0 else "-inf"
        for digits in range(6, 10):
            s = "%.*g" % (digits, target)
            if np.float32(float(s)) == target:
                return s
        return "%.9g" % target
    for digits in (15, 17):
        s = "%.*g" % (digits, v)
        if float(s) == v:
            return s
    return repr(v)


_PRINT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "'": "\\'", "\\": "\\\\"}


def _quote(v) -> str:
    out = []
    if isinstance(v, (bytes, bytearray)):
        for b in bytes(v):
            c = chr(b)
            if c in _PRINT_ESCAPES:
                out.append(_PRINT_ESCAPES[c])
            elif 0x20 <= b < 0x7F:
                out.append(c)
            else:
                out.append("\\%03o" % b)
    else:
        for c in v:
            if c in _PRINT_ESCAPES:
                out.append(_PRINT_ESCAPES[c])
            elif ord(c) < 0x20 or ord(c) == 0x7F:
                out.append("\\%03o" % ord(c))
            else:
                out.append(c)
    return '"' + "".join(out) + '"'


def _format_scalar(field, v) -> str:
    k = field.kind
    if k in ("string", "bytes"):
        return _quote(v)
    if k in FLOAT_KINDS:
        return format_float(v, k)
    if k == "bool":
        return "true" if v else "false"
    if k == "enum":
        return str(v)
    return str(int(v))


def _print_msg(msg: Msg, indent: int, out: list, include_blobs: bool):
    pad = "  " * indent
    mdef = msg.mdef
    for field in sorted(mdef.fields.values(), key=lambda f: f.number):
        name = field.name
        if not msg.has(name):
            continue
        if name == "blobs" and not include_blobs and mdef.name in _LAYER_MESSAGES:
            continue
        v = getattr(msg, name)
        items = v if field.repeated else [v]
        if isinstance(items, np.ndarray):
            items = items.tolist()
        if field.kind == "message":
            for sub in items:
                out.append(f"{pad}{name} {{")
                _print_msg(sub, indent + 1, out, include_blobs)
                out.append(f"{pad}}}")
        else:
            for x in items:
                out.append(f"{pad}{name}: {_format_scalar(field, x)}")


def to_prototxt(msg: Msg, include_blobs: bool = False) -> str:
    """Protobuf text of ``msg`` in Caffe's style; layers' ``blobs`` only with ``include_blobs``."""
    out: list[str] = []
    _print_msg(msg, 0, out, include_blobs)
    return "\n".join(out) + ("\n" if out else "")
