"""Message schemas: caffe.proto's messages as Python data.

One schema serves three readers and writers: the YAML loader (field names, types, defaults,
enums), the protobuf wire codec (field numbers, wire types) and, later, the prototxt parser.
A message value is a :class:`Msg`: attribute access returns the set value or the proto default.
"""
from __future__ import annotations

import numpy as np

SCALAR_KINDS = {
    "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "float", "double", "bool", "string", "bytes", "enum", "message",
}
INT_KINDS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64"}
FLOAT_KINDS = {"float", "double"}

MESSAGES: dict[str, "MessageDef"] = {}
ENUMS: dict[str, dict[str, int]] = {}


class Field:
    __slots__ = ("name", "number", "kind", "default", "repeated", "type_name", "packed", "doc")

    def __init__(self, name, number, kind, default=None, repeated=False, type_name=None,
                 packed=False, doc=""):
        if kind not in SCALAR_KINDS:
            raise ValueError(f"field {name}: unknown kind {kind}")
        self.name = name
        self.number = number
        self.kind = kind
        self.default = default
        self.repeated = repeated
        self.type_name = type_name  # enum or message name
        self.packed = packed
        self.doc = doc

    @property
    def message_def(self) -> "MessageDef":
        return MESSAGES[self.type_name]

    @property
    def enum_values(self) -> dict[str, int]:
        return ENUMS[self.type_name]

    def default_value(self):
        if self.repeated:
            return []
        if self.kind == "message":
            return Msg(self.message_def)
        if self.default is not None:
            return self.default
        if self.kind in INT_KINDS:
            return 0
        if self.kind in FLOAT_KINDS:
            return 0.0
        if self.kind == "bool":
            return False
        if self.kind == "string":
            return ""
        if self.kind == "bytes":
            return b""
        if self.kind == "enum":
            return next(iter(self.enum_values))
        return None


class MessageDef:
    def __init__(self, name, fields):
        self.name = name
        self.fields: dict[str, Field] = {}
        self.by_number: dict[int, Field] = {}
        for f in fields:
            if f.name in self.fields or f.number in self.by_number:
                raise ValueError(f"message {name}: duplicate field {f.name}/{f.number}")
            self.fields[f.name] = f
            self.by_number[f.number] = f

    def __repr__(self):
        return f"<MessageDef {self.name}>"


def enum_symbol(value, enum_type: str) -> str:
    """An enum value as its symbol: YAML gives names, a binary file may give numbers."""
    if isinstance(value, str):
        return value
    for name, num in ENUMS[enum_type].items():
        if num == value:
            return name
    return str(value)


def message(name, *fields):
    if name in MESSAGES:
        raise ValueError(f"message {name} defined twice")
    md = MessageDef(name, fields)
    MESSAGES[name] = md
    return md


def enum(name, **values):
    if name in ENUMS:
        raise ValueError(f"enum {name} defined twice")
    ENUMS[name] = dict(values)
    return ENUMS[name]


# Short constructors used by the definitions module.
def opt(name, number, kind, default=None, type_name=None, doc=""):
    return Field(name, number, kind, default=default, type_name=type_name, doc=doc)


def rep(name, number, kind, type_name=None, packed=False, doc=""):
    return Field(name, number, kind, repeated=True, type_name=type_name, packed=packed, doc=doc)


def msg_field(name, number, type_name, repeated=False):
    return Field(name, number, "message", repeated=repeated, type_name=type_name)


def enum_field(name, number, type_name, default=None, repeated=False):
    return Field(name, number, "enum", default=default, type_name=type_name, repeated=repeated)


class Msg:
    """A message value. Unset fields read as their proto defaults; ``has`` tells set from unset.

    ``src`` is the (file, line) the message came from, ``lines`` the line of each field, so that
    errors raised long after loading can still point at the YAML.
    """

    __slots__ = ("_def", "_values", "_lines", "_src", "_context")

    def __init__(self, mdef, values=None, src=None, lines=None, context=None):
        if isinstance(mdef, str):
            mdef = MESSAGES[mdef]
        object.__setattr__(self, "_def", mdef)
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_lines", dict(lines or {}))
        object.__setattr__(self, "_src", src)
        object.__setattr__(self, "_context", context)
        for k, v in (values or {}).items():
            self.set(k, v)

    # --- reading -------------------------------------------------------------------------
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        f = self._def.fields.get(name)
        if f is None:
            raise AttributeError(f"{self._def.name} has no field {name!r}")
        if name in self._values:
            return self._values[name]
        return f.default_value()

    def has(self, name) -> bool:
        if name not in self._def.fields:
            raise AttributeError(f"{self._def.name} has no field {name!r}")
        v = self._values.get(name)
        if v is None:
            return False
        if self._def.fields[name].repeated:
            return len(v) > 0
        return True

    def set_fields(self):
        return [n for n in self._def.fields if self.has(n)]

    @property
    def mdef(self) -> MessageDef:
        return self._def

    @property
    def src(self):
        return self._src

    def line(self, name=None):
        if name is not None and name in self._lines:
            return self._lines[name]
        return self._src[1] if self._src else None

    def where(self, name=None) -> str:
        """``file:line`` of this message (or of one of its fields), or '' if unknown."""
        if not self._src:
            return ""
        f, _ = self._src
        ln = self.line(name)
        return f"{f}:{ln}" if ln is not None else str(f)

    # --- writing -------------------------------------------------------------------------
    def set(self, name, value, line=None):
        f = self._def.fields.get(name)
        if f is None:
            raise AttributeError(f"{self._def.name} has no field {name!r}")
        if f.repeated and not isinstance(value, (list, np.ndarray)):
            value = [value]
        if f.kind == "message":
            if f.repeated:
                value = [v if isinstance(v, Msg) else Msg(f.message_def, v) for v in value]
            elif not isinstance(value, Msg):
                value = Msg(f.message_def, value)
        elif f.repeated and isinstance(value, list):
            value = list(value)
        self._values[name] = value
        if line is not None:
            self._lines[name] = line
        return self

    def __setattr__(self, name, value):
        self.set(name, value)

    def mutable(self, name) -> "Msg":
        """The sub-message ``name``, created (and marked set) if it was unset."""
        f = self._def.fields[name]
        if f.kind != "message" or f.repeated:
            raise AttributeError(f"{name} is not a singular message field")
        if name not in self._values:
            self._values[name] = Msg(f.message_def)
        return self._values[name]

    def add(self, name, value=None) -> "Msg":
        """Append to a repeated message field and return the new element."""
        f = self._def.fields[name]
        lst = self._values.setdefault(name, [])
        m = value if isinstance(value, Msg) else Msg(f.message_def, value)
        lst.append(m)
        return m

    def clear(self, name):
        self._values.pop(name, None)

    def copy(self) -> "Msg":
        m = Msg(self._def, src=self._src, lines=self._lines, context=self._context)
        for k, v in self._values.items():
            f = self._def.fields[k]
            if f.kind == "message":
                v = [x.copy() for x in v] if f.repeated else v.copy()
            elif isinstance(v, list):
                v = list(v)
            elif isinstance(v, np.ndarray):
                v = v.copy()
            m._values[k] = v
        return m

    def to_dict(self):
        """Plain Python data (what YAML would hold), set fields only, in schema order."""
        out = {}
        for name, f in self._def.fields.items():
            if not self.has(name):
                continue
            v = self._values[name]
            if f.kind == "message":
                v = [x.to_dict() for x in v] if f.repeated else v.to_dict()
            elif isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, list):
                v = list(v)
            out[name] = v
        return out

    def __eq__(self, other):
        if not isinstance(other, Msg) or other._def is not self._def:
            return NotImplemented
        return _plain_eq(self.to_dict(), other.to_dict())

    def __repr__(self):
        return f"{self._def.name}({self.to_dict()!r})"

    def __str__(self):
        """Protobuf text format, as str() of a protobuf message gives (pycaffe's
        ``str(net_spec.to_proto())`` writes a prototxt)."""
        from ..io.prototxt import to_prototxt
        return to_prototxt(self)


def _plain_eq(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_plain_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_plain_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return np.float32(a) == np.float32(b)
    return a == b
