"""YAML -> schema messages, keeping the line of every field for error messages.

A repeated field accepts a scalar (``bottom: data``) or a list; a repeated message accepts one
mapping or a list of them; enum values are their symbols (``pool: MAX``); floats accept
``1e-4`` (which YAML 1.1 would read as a string).
"""
from __future__ import annotations

import os

import yaml

from ..errors import ConfigError, did_you_mean
from .schema import FLOAT_KINDS, INT_KINDS, MESSAGES, MessageDef, Msg

_INT_RANGES = {
    "int32": (-(1 << 31), (1 << 31) - 1), "sint32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "sint64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
}


class _Ctx:
    def __init__(self, file, context=""):
        self.file = file
        self.context = context

    def error(self, node, message):
        line = node.start_mark.line + 1 if node is not None else None
        file = _node_file(node, self)
        loc = f"{file}:{line}" if line and not file.startswith("--set ") else str(file)
        ctx = f"{self.context}: " if self.context else ""
        return ConfigError(f"{loc}: {ctx}{message}")

    def with_context(self, context):
        return _Ctx(self.file, context)


def _node_file(node, ctx) -> str:
    """The file a node was read from (compose.py names marks after files), else ctx.file."""
    name = getattr(getattr(node, "start_mark", None), "name", None)
    return name if name and not name.startswith("<") else str(ctx.file)


_constructor = yaml.constructor.SafeConstructor()


def _scalar(node):
    return _constructor.construct_object(node, deep=True)


def _type_word(kind):
    if kind in INT_KINDS:
        return "an integer"
    if kind in FLOAT_KINDS:
        return "a number"
    return {"bool": "true or false", "string": "a string", "bytes": "a string"}.get(kind, kind)


def _convert_scalar(field, node, ctx, path):
    if not isinstance(node, yaml.ScalarNode):
        what = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        raise ctx.error(node, f"field '{path}' must be {_type_word(field.kind)}, got {what}")
    value = _scalar(node)
    kind = field.kind
    shown = node.value
    if kind in INT_KINDS:
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(node, f"field '{path}' must be an integer, got {shown!r}")
        lo, hi = _INT_RANGES[kind]
        if not lo <= value <= hi:
            raise ctx.error(node, f"field '{path}' = {value} is out of range for {kind} "
                                  f"[{lo}, {hi}]")
        return value
    if kind in FLOAT_KINDS:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ctx.error(node, f"field '{path}' must be a number, got {shown!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(node, f"field '{path}' must be a number, got {shown!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ctx.error(node, f"field '{path}' must be true or false, got {shown!r}")
        return value
    if kind in ("string", "bytes"):
        if value is None or isinstance(value, (dict, list)):
            raise ctx.error(node, f"field '{path}' must be a string, got {shown!r}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        value = str(value)
        return value.encode() if kind == "bytes" else value
    if kind == "enum":
        symbols = field.enum_values
        if isinstance(value, str) and value in symbols:
            return value
        hint = did_you_mean(str(value), symbols)
        if not hint and isinstance(value, str) and value.upper() in symbols:
            hint = f" (did you mean {value.upper()!r}?)"
        raise ctx.error(node, f"bad value {shown!r} for '{path}'{hint}; "
                              f"choose one of {', '.join(symbols)}")
    raise ctx.error(node, f"field '{path}' has unsupported kind {kind}")


def _layer_context(node):
    name = typ = None
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(v, yaml.ScalarNode):
                if k.value == "name":
                    name = v.value
                elif k.value == "type":
                    typ = v.value
    return f"layer '{name or '?'}' ({typ or '?'})"


def message_from_node(node, mdef: MessageDef, ctx: _Ctx, path_prefix="") -> Msg:
    if not isinstance(node, yaml.MappingNode):
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null") and \
                node.tag.endswith(":null"):
            return Msg(mdef, src=(ctx.file, node.start_mark.line + 1), context=ctx.context)
        raise ctx.error(node, f"'{path_prefix or mdef.name}' must be a mapping of "
                              f"{mdef.name} fields, got {node.value!r}"
                        if isinstance(node, yaml.ScalarNode) else
                        f"'{path_prefix or mdef.name}' must be a mapping, got a list")
    file = _node_file(node, ctx)
    msg = Msg(mdef, src=(file, node.start_mark.line + 1), context=ctx.context)
    seen = {}
    for knode, vnode in node.value:
        key = knode.value
        path = f"{path_prefix}.{key}" if path_prefix else key
        if not isinstance(knode, yaml.ScalarNode):
            raise ctx.error(knode, "mapping keys must be plain field names")
        if key == "_base_" or key == "_delete_":
            raise ctx.error(knode, f"'{key}' is only allowed at the top of a file ('_base_') or"
                                   f" in a file that extends another with _base_ ('_delete_')")
        field = mdef.fields.get(key)
        if field is None:
            raise ctx.error(knode, f"unknown field '{path}'{did_you_mean(key, mdef.fields)}"
                                   f" — {mdef.name} has no such field")
        if key in seen:
            raise ctx.error(knode, f"field '{path}' is given twice (first on line {seen[key]})")
        seen[key] = knode.start_mark.line + 1
        line = knode.start_mark.line + 1 if _node_file(knode, ctx) == file else None
        if field.repeated:
            items = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
            if isinstance(vnode, yaml.ScalarNode) and vnode.tag.endswith(":null"):
                items = []
            values = []
            for i, item in enumerate(items):
                ipath = f"{path}[{i}]" if isinstance(vnode, yaml.SequenceNode) else path
                if field.kind == "message":
                    sub_ctx = ctx
                    if mdef.name == "NetParameter" and key in ("layer", "layers"):
                        sub_ctx = ctx.with_context(_layer_context(item))
                        ipath = ""
                    values.append(message_from_node(item, field.message_def, sub_ctx, ipath))
                else:
                    values.append(_convert_scalar(field, item, ctx, ipath))
            msg.set(key, values, line=line)
        elif field.kind == "message":
            msg.set(key, message_from_node(vnode, field.message_def, ctx, path), line=line)
        else:
            msg.set(key, _convert_scalar(field, vnode, ctx, path), line=line)
    return msg


def compose_file(path):
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason}); is this a binary "
                          f"file such as a .caffemodel?") from None
    return compose_text(text, path)


def compose_text(text, path="<string>"):
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: YAML syntax error: {e.problem or e}"
                          f"{' ' + e.context if e.context else ''}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {e}") from None
    return node


def load_message(path, message_name: str) -> Msg:
    """Read a YAML file into a validated ``message_name`` message (e.g. 'NetParameter')."""
    import caffeish.config  # noqa: F401
    from .compose import load_node
    node = load_node(path)
    if node is None:
        raise ConfigError(f"{path}: the file is empty; expected a {message_name} mapping")
    return message_from_node(node, MESSAGES[message_name], _Ctx(os.fspath(path)))


def parse_message(text: str, message_name: str, path="<string>") -> Msg:
    import caffeish.config  # noqa: F401
    from .compose import compose_with_bases
    node = compose_with_bases(text, path)
    if node is None:
        return Msg(MESSAGES[message_name], src=(path, 1))
    return message_from_node(node, MESSAGES[message_name], _Ctx(path))


def dump_message(msg: Msg) -> str:
    """YAML text of a message (set fields only, schema order): the top level in block style,
    innermost lists and mappings in flow style (``top: [data, label]``)."""
    dumper = yaml.SafeDumper(None, default_flow_style=None, sort_keys=False, width=100)
    node = dumper.represent_data(msg.to_dict())
    node.flow_style = False
    return yaml.serialize(node, Dumper=yaml.SafeDumper, width=100)
