"""Config composition: ``_base_`` inheritance and ``--set key=value`` overrides, on YAML nodes.

A file may start with ``_base_: other.yaml`` (or a list of files, merged in order); the path is
relative to the file that names it, bases may have bases, and a cycle is an error. The child is
merged into its base:

- mappings merge key by key, recursively; a mapping holding ``_delete_: true`` replaces the
  base's mapping instead of merging into it;
- lists are replaced, except ``layer`` lists, which merge by layer ``name``: a child layer changes
  the base layer(s) of that name (restricted to the child's ``include`` phase when it gives one),
  ``{name: x, _delete_: true}`` removes layer ``x``, a ``_delete_`` layer with more fields
  replaces it whole, and a new name is appended;
- solver paths (``net``, ``train_net``, ``test_net``) of a base in another folder are rewritten
  relative to the child, so they keep pointing at the same files.

Everything happens on PyYAML nodes whose marks carry the file each value came from, so errors
raised while loading the merged tree still name the right ``file:line``.

Overrides (``--set``) address solver fields (``base_lr=0.05``, ``train_state.stage=[fast]``) and
net layers by name (``layer.conv1.convolution_param.num_output=32``, also ``net.layer.conv1...``;
``layer.mnist@TEST.data_param.batch_size=50`` picks the layers of that name included in TEST;
``layer.drop6._delete_=true`` removes a layer). Values are YAML (``[1, 2]``, ``{lr_mult: 0}``).
A bad path is an error naming the path and the closest valid one.
"""
from __future__ import annotations

import copy
import os

import yaml

from ..errors import ConfigError, closest

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
LAYER_KEYS = ("layer", "layers")
SOLVER_PATH_KEYS = ("net", "train_net", "test_net")
NET_SOURCE_FIELDS = ("net", "net_param", "train_net", "train_net_param", "test_net",
                     "test_net_param")
SET_PREFIX = "--set "

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_BOOL = "tag:yaml.org,2002:bool"


# --- reading ---------------------------------------------------------------------------------
def compose_named(text: str, name: str):
    """The YAML node tree of ``text``; every mark's ``name`` is ``name`` (the file)."""
    loader = yaml.SafeLoader(text)
    loader.name = name
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{line}: YAML syntax error: {e.problem or e}"
                          f"{' ' + e.context if e.context else ''}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: YAML error: {e}") from None
    finally:
        loader.dispose()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason}); is this a binary "
                          f"file such as a .caffemodel?") from None


def load_node(path, _stack=()):
    """The node tree of the YAML file ``path`` with its ``_base_`` chain merged in."""
    path = os.fspath(path)
    return compose_with_bases(_read(path), path, _stack)


def compose_with_bases(text: str, path: str = "<string>", _stack=()):
    """Like :func:`load_node` for text already read (bases relative to ``path``'s folder)."""
    node = compose_named(text, path)
    if not isinstance(node, yaml.MappingNode):
        return node
    base_node = None
    for i, (k, v) in enumerate(node.value):
        if isinstance(k, yaml.ScalarNode) and k.value == BASE_KEY:
            base_node = v
            del node.value[i]
            break
    if base_node is None:
        return node
    here = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()
    key = os.path.realpath(path) if not path.startswith("<") else path
    stack = tuple(_stack) + (key,)
    merged = None
    for item in _scalar_list(base_node, "_base_", path):
        bpath = item.value if os.path.isabs(item.value) else os.path.join(here, item.value)
        real = os.path.realpath(bpath)
        if real in stack:
            chain = " -> ".join(os.path.basename(p) for p in stack + (real,))
            raise ConfigError(f"{_loc(item)}: _base_ cycle: {chain}")
        if not os.path.isfile(bpath):
            raise ConfigError(f"{_loc(item)}: base file '{item.value}' not found (looked for "
                              f"{os.path.normpath(bpath)}; _base_ paths are relative to the file "
                              f"that names them)")
        bnode = load_node(bpath, stack)
        if not isinstance(bnode, yaml.MappingNode):
            raise ConfigError(f"{bpath}: a _base_ file must hold a mapping of fields")
        _rebase_solver_paths(bnode, os.path.dirname(os.path.abspath(bpath)), here)
        merged = bnode if merged is None else merge_nodes(merged, bnode)
    return merge_nodes(merged, node)


def _scalar_list(node, what, path):
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for it in items:
        if not isinstance(it, yaml.ScalarNode) or not it.value:
            raise ConfigError(f"{_loc(it)}: {what} must be a file name or a list of file names")
    return items


def _loc(node) -> str:
    m = node.start_mark
    if m.name.startswith(SET_PREFIX):
        return m.name
    return f"{m.name}:{m.line + 1}"


def _rebase_solver_paths(node, base_dir, child_dir):
    if os.path.normpath(base_dir) == os.path.normpath(child_dir):
        return
    for i, (k, v) in enumerate(node.value):
        if not (isinstance(k, yaml.ScalarNode) and k.value in SOLVER_PATH_KEYS):
            continue
        if isinstance(v, yaml.ScalarNode):
            node.value[i] = (k, _rebased(v, base_dir, child_dir))
        elif isinstance(v, yaml.SequenceNode):
            node.value[i] = (k, yaml.SequenceNode(v.tag, [_rebased(x, base_dir, child_dir)
                                                          for x in v.value],
                                                  v.start_mark, v.end_mark, v.flow_style))


def _rebased(v, base_dir, child_dir):
    if not isinstance(v, yaml.ScalarNode) or not v.value or os.path.isabs(v.value):
        return v
    new = os.path.relpath(os.path.join(base_dir, v.value), child_dir)
    return yaml.ScalarNode(v.tag, new, v.start_mark, v.end_mark, v.style)


# --- merging ---------------------------------------------------------------------------------
def _get(mapping, key):
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _delete_flag(mapping):
    """The value of ``_delete_`` in a mapping node (False when absent); checks it is a bool."""
    v = _get(mapping, DELETE_KEY)
    if v is None:
        return False
    value = yaml.constructor.SafeConstructor().construct_object(v, deep=True) \
        if isinstance(v, yaml.ScalarNode) else None
    if not isinstance(value, bool):
        raise ConfigError(f"{_loc(v)}: _delete_ must be true or false, got "
                          f"{getattr(v, 'value', v)!r}")
    return value


def _strip(node):
    """``node`` without ``_delete_`` keys (they have done their work)."""
    if isinstance(node, yaml.MappingNode):
        return yaml.MappingNode(node.tag, [(k, _strip(v)) for k, v in node.value
                                           if not (isinstance(k, yaml.ScalarNode)
                                                   and k.value == DELETE_KEY)],
                                node.start_mark, node.end_mark, node.flow_style)
    if isinstance(node, yaml.SequenceNode):
        return yaml.SequenceNode(node.tag, [_strip(v) for v in node.value], node.start_mark,
                                 node.end_mark, node.flow_style)
    return node


def merge_nodes(base, child):
    """``child`` merged into ``base`` (neither is modified) by the rules of the module doc."""
    if base is None:
        return _strip(child)
    if not (isinstance(base, yaml.MappingNode) and isinstance(child, yaml.MappingNode)):
        return _strip(child)
    if _delete_flag(child):
        return _strip(child)
    out = list(base.value)
    index = {k.value: i for i, (k, _) in enumerate(out) if isinstance(k, yaml.ScalarNode)}
    for k, v in child.value:
        key = k.value if isinstance(k, yaml.ScalarNode) else None
        if key == DELETE_KEY:
            continue
        if key in index:
            i = index[key]
            bv = out[i][1]
            if key in LAYER_KEYS and _is_layer_list(bv) and _is_layer_list(v):
                out[i] = (k, merge_layer_lists(bv, v))
            else:
                out[i] = (k, merge_nodes(bv, v))
        else:
            index[key] = len(out)
            out.append((k, _strip(v)))
    return yaml.MappingNode(child.tag or _MAP, out, child.start_mark, child.end_mark,
                            child.flow_style)


def _is_layer_list(node):
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    return isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and \
        all(isinstance(x, yaml.MappingNode) for x in items)


def _name_of(layer):
    v = _get(layer, "name")
    return v.value if isinstance(v, yaml.ScalarNode) else None


def _phases_of(layer):
    """The phases named by a layer's include rules (empty: no phase restriction)."""
    inc = _get(layer, "include")
    if inc is None:
        return set()
    rules = inc.value if isinstance(inc, yaml.SequenceNode) else [inc]
    out = set()
    for r in rules:
        if isinstance(r, yaml.MappingNode):
            p = _get(r, "phase")
            if isinstance(p, yaml.ScalarNode):
                out.add(p.value)
    return out


def merge_layer_lists(base, child):
    """Layer lists merged by ``name`` (see the module doc)."""
    layers = list(base.value if isinstance(base, yaml.SequenceNode) else [base])
    items = child.value if isinstance(child, yaml.SequenceNode) else [child]
    for item in items:
        name = _name_of(item)
        delete = _delete_flag(item)
        matches = [i for i, lay in enumerate(layers) if name is not None and _name_of(lay) == name]
        phases = _phases_of(item)
        if phases and len(matches) > 1:
            matches = [i for i in matches if not _phases_of(layers[i]) or
                       _phases_of(layers[i]) & phases]
        if not matches:
            if delete:
                names = [n for n in (_name_of(x) for x in layers) if n]
                hint = closest(name or "", names, n=1)
                raise ConfigError(f"{_loc(item)}: _delete_: no layer named {name!r} in the base"
                                  f"{' (did you mean ' + repr(hint[0]) + '?)' if hint else ''}")
            layers.append(_strip(item))
            continue
        only_name = all(isinstance(k, yaml.ScalarNode) and k.value in ("name", DELETE_KEY,
                                                                        "include")
                        for k, _ in item.value)
        for i in sorted(matches, reverse=True):
            if delete and only_name:
                del layers[i]
            else:
                layers[i] = merge_nodes(layers[i], item)
    ref = base if isinstance(base, yaml.SequenceNode) else child
    return yaml.SequenceNode(_SEQ, layers, ref.start_mark, ref.end_mark, False)


# --- overrides -------------------------------------------------------------------------------
class Override:
    """One ``--set key=value``: the dotted key split into steps and the value as a YAML node."""

    def __init__(self, text: str):
        if "=" not in text:
            raise ConfigError(f"--set {text}: expected key=value (e.g. base_lr=0.05 or "
                              f"layer.conv1.convolution_param.num_output=32)")
        self.text = text
        key, value = text.split("=", 1)
        self.key = key.strip()
        if not self.key:
            raise ConfigError(f"--set {text}: the key before '=' is empty")
        self.value_text = value
        self.name = SET_PREFIX + text
        self.value = compose_named(value if value.strip() else "''", self.name)
        if self.value is None:
            self.value = yaml.ScalarNode(_STR, "", *self._marks())

    def _marks(self):
        m = yaml.Mark(self.name, 0, 0, 0, None, None)
        return m, m

    def key_node(self, key):
        return yaml.ScalarNode(_STR, key, *self._marks())

    @property
    def targets_net(self) -> bool:
        k = self.key
        return k.startswith(("layer.", "layers.", "net.", "net_param.")) or k in ("layer",)

    def net_key(self) -> str:
        """The key relative to a NetParameter (``net.`` / ``net_param.`` prefixes removed)."""
        for p in ("net.", "net_param."):
            if self.key.startswith(p):
                return self.key[len(p):]
        return self.key

    def error(self, message) -> ConfigError:
        return ConfigError(f"{self.name}: {message}")


def parse_overrides(texts) -> list[Override]:
    return [t if isinstance(t, Override) else Override(t) for t in texts or ()]


def _split_steps(path: str):
    """'a.b[1].c' -> [('a', None), ('b', 1), ('c', None)]."""
    steps = []
    for part in path.split("."):
        idx = None
        if part.endswith("]") and "[" in part:
            part, _, rest = part.partition("[")
            try:
                idx = int(rest[:-1])
            except ValueError:
                idx = "bad"
        steps.append((part, idx))
    return steps


def _message_def(name):
    import caffeish.config  # noqa: F401
    from .schema import MESSAGES
    return MESSAGES[name]


def _field_hint(ov, done, key, mdef, rest):
    hint = closest(key, mdef.fields, n=1)
    if hint:
        fixed = ".".join(done + [hint[0]] + rest)
        return ov.error(f"unknown field '{key}' in {mdef.name} (did you mean '{fixed}'?)")
    return ov.error(f"unknown field '{key}' in {mdef.name}; its fields are "
                    f"{', '.join(sorted(mdef.fields))}")


def _layer_nodes(net_node):
    lay = _get(net_node, "layer")
    if lay is None:
        return []
    return lay.value if isinstance(lay, yaml.SequenceNode) else [lay]


def apply_override(root, ov: Override, message_name: str, key: str | None = None):
    """Apply ``ov`` to the mapping node ``root`` (a ``message_name``), in place.

    Returns False when ``ov`` addresses a layer this net does not have (so that a solver with
    several nets can try each), True when applied.
    """
    key = ov.key if key is None else key
    mdef = _message_def(message_name)
    if message_name == "NetParameter" and (key.startswith("layer.") or
                                           key.startswith("layers.")):
        return _apply_layer_override(root, ov, key.split(".", 1)[1])
    _apply_path(root, ov, mdef, _split_steps(key), [])
    return True


def _apply_layer_override(net_node, ov, rest):
    layers = _layer_nodes(net_node)
    names = [_name_of(x) for x in layers]
    best = None
    for n in set(filter(None, names)):
        for suffix in ("", "@TRAIN", "@TEST"):
            cand = n + suffix
            if rest == cand or rest.startswith(cand + "."):
                if best is None or len(cand) > len(best[0]):
                    best = (cand, n, suffix[1:] or None)
    if best is None:
        return False
    cand, name, phase = best
    tail = rest[len(cand) + 1:]
    if not tail:
        raise ov.error(f"say which field of layer '{name}' to set, e.g. "
                       f"layer.{name}.<field>=<value> (or layer.{name}._delete_=true)")
    targets = [x for x in layers if _name_of(x) == name and
               (phase is None or not _phases_of(x) or phase in _phases_of(x))]
    if not targets:
        raise ov.error(f"no layer named '{name}' is included in the {phase} phase")
    if tail == DELETE_KEY:
        flag = yaml.constructor.SafeConstructor().construct_object(ov.value, deep=True) \
            if isinstance(ov.value, yaml.ScalarNode) else None
        if not isinstance(flag, bool):
            raise ov.error("_delete_ must be true or false")
        if flag:
            lay = _get(net_node, "layer")
            if isinstance(lay, yaml.SequenceNode):
                lay.value[:] = [x for x in lay.value if not any(x is t for t in targets)]
            else:
                _set_key(net_node, "layer", yaml.SequenceNode(_SEQ, [], lay.start_mark,
                                                               lay.end_mark), ov)
        return True
    mdef = _message_def("LayerParameter")
    for t in targets:
        _apply_path(t, ov, mdef, _split_steps(tail), ["layer", cand])
    return True


def missing_layer_error(ov, net_nodes):
    names = []
    for n in net_nodes:
        names += [x for x in (_name_of(lay) for lay in _layer_nodes(n)) if x]
    rest = ov.net_key().split(".", 1)[1] if "." in ov.net_key() else ""
    want = rest.split(".", 1)[0]
    hint = closest(want, names, n=1)
    if hint:
        fixed = ov.key.replace(want, hint[0], 1)
        return ov.error(f"no layer named '{want}' (did you mean '{fixed}'?)")
    shown = ", ".join(dict.fromkeys(names)) or "none"
    return ov.error(f"no layer named '{want}'; the layers are: {shown}")


def _set_key(mapping, key, value, ov):
    for i, (k, _) in enumerate(mapping.value):
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            mapping.value[i] = (k, value)
            return
    mapping.value.append((ov.key_node(key), value))


def _apply_path(node, ov, mdef, steps, done):
    for n, (key, idx) in enumerate(steps):
        if idx == "bad":
            raise ov.error(f"bad index in '{key}[...]': use a number, e.g. {key}[0]")
        if key == DELETE_KEY or key == BASE_KEY:
            raise ov.error(f"'{key}' cannot be set here")
        field = mdef.fields.get(key)
        rest = [k + (f"[{i}]" if i is not None else "") for k, i in steps[n + 1:]]
        if field is None:
            raise _field_hint(ov, done, key, mdef, rest)
        last = n == len(steps) - 1
        if idx is not None and not field.repeated:
            raise ov.error(f"'{'.'.join(done + [key])}' is not a list; drop the [{idx}]")
        if last:
            if idx is None:
                _set_key(node, key, ov.value, ov)
            else:
                seq = _get(node, key)
                items = seq.value if isinstance(seq, yaml.SequenceNode) else \
                    ([seq] if seq is not None else [])
                if not 0 <= idx < len(items):
                    raise ov.error(f"'{'.'.join(done + [key])}' has {len(items)} entries; "
                                   f"index {idx} is out of range")
                if isinstance(seq, yaml.SequenceNode):
                    seq.value[idx] = ov.value
                else:
                    _set_key(node, key, ov.value, ov)
            return
        if field.kind != "message":
            raise ov.error(f"'{'.'.join(done + [key])}' is a {field.kind} field, not a message;"
                           f" nothing inside it can be set (valid: "
                           f"'{'.'.join(done + [key])}=<value>')")
        child = _get(node, key)
        if field.repeated:
            items = child.value if isinstance(child, yaml.SequenceNode) else \
                ([child] if isinstance(child, yaml.MappingNode) else [])
            if idx is None:
                if len(items) > 1:
                    raise ov.error(f"'{'.'.join(done + [key])}' has {len(items)} entries; say "
                                   f"which, e.g. {'.'.join(done + [key + '[0]'] + rest)}")
                idx = 0
            if idx == len(items) == 0:
                child = yaml.MappingNode(_MAP, [], *ov._marks())
                _set_key(node, key, yaml.SequenceNode(_SEQ, [child], *ov._marks()), ov)
            elif not 0 <= idx < len(items):
                raise ov.error(f"'{'.'.join(done + [key])}' has {len(items)} entries; index "
                               f"{idx} is out of range")
            else:
                child = items[idx]
        elif not isinstance(child, yaml.MappingNode):
            child = yaml.MappingNode(_MAP, [], *ov._marks())
            _set_key(node, key, child, ov)
        node = child
        mdef = field.message_def
        done = done + [key + (f"[{idx}]" if idx is not None and field.repeated and
                              steps[n][1] is not None else "")]


# --- resolved solver and net messages --------------------------------------------------------
def _ctx(path):
    from .yaml_loader import _Ctx
    return _Ctx(os.fspath(path))


def _is_yaml(path) -> bool:
    return not os.fspath(path).endswith((".prototxt", ".pt"))


def resolve_net(path, overrides=()):
    """The NetParameter of ``path`` with its bases and ``overrides`` (net keys) applied."""
    from .yaml_loader import message_from_node
    ovs = parse_overrides(overrides)
    path = os.fspath(path)
    if not _is_yaml(path):
        if ovs:
            raise ConfigError(f"{path}: --set needs a YAML net; convert it first with "
                              f"`caffeish import {path}`")
        from ..net import load_net_param
        return load_net_param(path)
    node = load_node(path)
    if node is None:
        raise ConfigError(f"{path}: the file is empty; expected a NetParameter mapping")
    node = copy.deepcopy(node)
    for ov in ovs:
        if not apply_override(node, ov, "NetParameter", ov.net_key()):
            raise missing_layer_error(ov, [node])
    return message_from_node(node, _message_def("NetParameter"), _ctx(path))


def resolve_solver(path, overrides=()):
    """The SolverParameter of ``path`` with bases and ``overrides``, its nets embedded.

    The net files a solver names (``net``, ``train_net``, ``test_net``) are read (with their own
    bases), the net overrides applied, and the results put in ``net_param`` /
    ``train_net_param`` / ``test_net_param``, so the returned message is the whole, resolved
    configuration of a run.
    """
    from ..solvers.solver import load_solver_param
    from .yaml_loader import message_from_node
    ovs = parse_overrides(overrides)
    path = os.fspath(path)
    if not _is_yaml(path):
        if ovs:
            raise ConfigError(f"{path}: --set needs a YAML solver; convert it first with "
                              f"`caffeish import {path}`")
        param = load_solver_param(path)
        _embed_nets(param, path, [], {})
        return param
    node = load_node(path)
    if node is None:
        raise ConfigError(f"{path}: the file is empty; expected a SolverParameter mapping")
    node = copy.deepcopy(node)
    net_ovs = [ov for ov in ovs if ov.targets_net]
    for ov in ovs:
        if not ov.targets_net:
            apply_override(node, ov, "SolverParameter")
    embedded = {}
    for f in ("net_param", "train_net_param"):
        sub = _get(node, f)
        if isinstance(sub, yaml.MappingNode):
            embedded[f] = [sub]
    sub = _get(node, "test_net_param")
    if sub is not None:
        embedded["test_net_param"] = sub.value if isinstance(sub, yaml.SequenceNode) else [sub]
    param = message_from_node(node, _message_def("SolverParameter"), _ctx(path))
    _embed_nets(param, path, net_ovs, embedded)
    return param


def _embed_nets(param, solver_path, net_ovs, embedded_nodes):
    """Load the solver's net files into *_param fields and apply the net overrides."""
    from .yaml_loader import message_from_node
    base_dir = os.path.dirname(os.path.abspath(solver_path))
    nets = []  # (field, index, node or None, msg or None, file)

    def resolve(p):
        return p if os.path.isabs(p) else os.path.join(base_dir, p)

    for f in ("net", "train_net"):
        if param.has(f):
            p = resolve(getattr(param, f))
            if not os.path.exists(p):
                raise ConfigError(f"{param.where(f)}: solver: net file '{getattr(param, f)}' not "
                                  f"found (looked for {p}; paths are relative to the solver file)")
            nets.append((f + "_param", None, p))
    for i, t in enumerate(param.test_net):
        p = resolve(t)
        if not os.path.exists(p):
            raise ConfigError(f"{param.where('test_net')}: solver: test net file '{t}' not found "
                              f"(looked for {p})")
        nets.append(("test_net_param", i, p))
    loaded = []
    for field, i, p in nets:
        if _is_yaml(p):
            node = load_node(p)
            if node is None:
                raise ConfigError(f"{p}: the file is empty; expected a NetParameter mapping")
            loaded.append((field, i, copy.deepcopy(node), p))
        else:
            loaded.append((field, i, None, p))
    for field, nodes in embedded_nodes.items():
        for i, n in enumerate(nodes):
            loaded.append((field, i if field == "test_net_param" else None, n, None))
    for ov in net_ovs:
        hit = False
        for field, i, node, p in loaded:
            if node is None:
                raise ConfigError(f"{p}: --set needs a YAML net; convert it first with "
                                  f"`caffeish import {p}`")
            hit = apply_override(node, ov, "NetParameter", ov.net_key()) or hit
        if not hit:
            raise missing_layer_error(ov, [n for _, _, n, _ in loaded if n is not None])
    if not net_ovs and not nets:
        return param
    test_msgs = {}
    for field, i, node, p in loaded:
        if p is None:
            # embedded in the solver file: rebuild it only when overrides touched it
            if not net_ovs:
                continue
            msg = message_from_node(node, _message_def("NetParameter"),
                                    _ctx(node.start_mark.name))
        elif node is None:
            from ..net import load_net_param
            msg = load_net_param(p)
        else:
            msg = message_from_node(node, _message_def("NetParameter"), _ctx(p))
        if field == "test_net_param":
            test_msgs[(p is None, i)] = msg
        else:
            param.set(field, msg)
            plain = field[:-len("_param")]
            if param.has(plain):
                param.clear(plain)
    if test_msgs:
        from_files = [m for (emb, _), m in sorted(test_msgs.items()) if not emb]
        from_solver = [m for (emb, _), m in sorted(test_msgs.items()) if emb]
        if not from_solver:
            from_solver = list(param.test_net_param)
        # Caffe's order: test_net_param entries first, then test_net files.
        param.set("test_net_param", from_solver + from_files)
        param.clear("test_net")
    return param
