"""``caffeish import`` (prototxt -> YAML, upgraded) and ``caffeish export`` (YAML -> prototxt).

Both are plain click commands; the ``caffeish`` group in cli.py adds them. A CaffeishError
becomes a click error: the message, no traceback, exit status 2.
"""
from __future__ import annotations

import functools
import os

import click

from ..errors import CaffeishError, ConfigError

__all__ = ["import_cmd", "export_cmd", "detect_kind", "import_prototxt", "export_yaml",
           "yaml_text"]

_KINDS = {"net": "NetParameter", "solver": "SolverParameter"}
_NET_PATH_FIELDS = ("net", "train_net", "test_net")


class CommandError(click.ClickException):
    """A CaffeishError reported by a command: printed as 'Error: <message>', exit status 2."""

    exit_code = 2


def _caffeish_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CaffeishError as e:
            raise CommandError(str(e)) from None
        except OSError as e:
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            raise CommandError(f"{where}{e.strerror or e}") from None

    return wrapper


# --- which message a file holds ----------------------------------------------------------
def _only_fields():
    import caffeish.config  # noqa: F401
    from ..config.schema import MESSAGES
    net = set(MESSAGES["NetParameter"].fields)
    solver = set(MESSAGES["SolverParameter"].fields)
    return net - solver, solver - net


def detect_kind(field_names, path="<string>") -> str:
    """'NetParameter' or 'SolverParameter' from a file's top-level field names.

    A field only NetParameter has (layer, layers, input, name, ...) means a net; one only
    SolverParameter has (base_lr, lr_policy, net, train_net, ...) means a solver.
    """
    net_only, solver_only = _only_fields()
    names = list(field_names)
    as_net = [n for n in names if n in net_only]
    as_solver = [n for n in names if n in solver_only]
    if as_net and not as_solver:
        return "NetParameter"
    if as_solver and not as_net:
        return "SolverParameter"
    if as_net and as_solver:
        raise ConfigError(f"{path}: cannot tell whether this is a net or a solver: it has net "
                          f"fields ({', '.join(as_net)}) and solver fields "
                          f"({', '.join(as_solver)}); pass --kind net or --kind solver")
    shown = ", ".join(names) if names else "no fields"
    raise ConfigError(f"{path}: cannot tell whether this is a net or a solver (top-level: "
                      f"{shown}); pass --kind net or --kind solver")


# --- writing -----------------------------------------------------------------------------
def _default_output(source, suffix):
    root, ext = os.path.splitext(source)
    out = root + suffix
    if os.path.abspath(out) == os.path.abspath(source):
        out = source + suffix
    return out


def _write_text(path, text, force):
    if path == "-":
        click.echo(text, nl=False)
        return
    if os.path.lexists(path) and not force:
        raise ConfigError(f"{path}: already exists; pass --force to overwrite it")
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _rel(path, start):
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive on Windows
        return os.path.abspath(path)


def _rewrite_net_paths(solver, source, output, old_ext, new_ext, verb, caffe_cwd_rule):
    """Point a solver's net/train_net/test_net at the converted files; notes say what to run.

    A relative net path keeps its place relative to the solver: ``solver.prototxt`` beside
    ``train.prototxt`` converted to ``out/solver.yaml`` names ``train.yaml``, to be converted
    to ``out/train.yaml``.

    ``caffe_cwd_rule``: the paths were written for Caffe, which resolves them against the
    working directory, while caffeish resolves them against the solver file.
    """
    notes = []
    src_dir = os.path.dirname(os.path.abspath(source))
    out_dir = src_dir if output == "-" else os.path.dirname(os.path.abspath(output))
    for field in _NET_PATH_FIELDS:
        if not solver.has(field):
            continue
        repeated = solver.mdef.fields[field].repeated
        values = list(getattr(solver, field)) if repeated else [getattr(solver, field)]
        new_values = []
        for i, value in enumerate(values):
            label = f"{field}[{i}]" if repeated else field
            if not value.endswith(old_ext):
                new_values.append(value)
                continue
            if os.path.isabs(value):
                candidates = [value]
            elif caffe_cwd_rule:
                candidates = [os.path.join(src_dir, value), os.path.abspath(value)]
            else:
                candidates = [os.path.join(src_dir, value)]
            found = next((c for c in candidates if os.path.isfile(c)), candidates[0])
            if os.path.isabs(value):
                target = new = found[:-len(old_ext)] + new_ext
            else:  # keep the net where it was relative to the solver
                new = _rel(found, src_dir)[:-len(old_ext)] + new_ext
                target = os.path.normpath(os.path.join(out_dir, new))
            new_values.append(new)
            where = solver.where(field)
            cmd = (f"caffeish {verb} {_rel(found, os.getcwd())} -o "
                   f"{_rel(target, os.getcwd())}")
            exists = os.path.isfile(found)
            note = (f"{where + ': ' if where else ''}solver {label}: '{value}' -> '{new}'; "
                    f"{verb} that net too: {cmd}")
            if not exists:
                note += f" ({found} was not found)"
            elif caffe_cwd_rule and found != candidates[0]:
                note += " (Caffe read this path from the working directory; caffeish reads " \
                        "solver paths relative to the solver file)"
            notes.append(note)
        solver.set(field, new_values if repeated else new_values[0], line=solver.line(field))
    return notes


# --- import ------------------------------------------------------------------------------
def _layer_report(net, label=""):
    from ..io.upgrade import unknown_layer_types
    missing = unknown_layer_types(net)
    if not missing:
        return []
    path = net.src[0] if net.src else None
    kinds = sorted({t for _, t, _ in missing})
    head = (f"warning: {label}{len(missing)} layer{'s' if len(missing) > 1 else ''} of "
            f"type{'s' if len(kinds) > 1 else ''} {', '.join(kinds)} "
            f"{'are' if len(missing) > 1 else 'is'} not implemented in caffeish yet; the "
            f"file converts, but a Net using {'them' if len(missing) > 1 else 'it'} will not "
            f"build:")
    lines = [head]
    for name, typ, line in missing:
        loc = f"{path}:{line}: " if path and line else ""
        lines.append(f"  {loc}layer '{name}' ({typ})")
    return lines


def yaml_text(msg) -> str:
    from ..config.yaml_loader import dump_message
    return dump_message(msg)


def import_prototxt(source, output, kind=None):
    """Parse, upgrade and convert a prototxt: ``(message, yaml text, notes, warnings)``."""
    from ..io.prototxt import read_text_file, parse_prototxt, top_level_fields
    from ..io.upgrade import upgrade_net, upgrade_solver
    text = read_text_file(source)
    message_name = _KINDS[kind] if kind else detect_kind(top_level_fields(text, source), source)
    msg = parse_prototxt(text, message_name, source)
    warnings = []
    if message_name == "NetParameter":
        msg, notes = upgrade_net(msg)
        warnings += _layer_report(msg)
    else:
        msg, notes = upgrade_solver(msg)
        notes += _rewrite_net_paths(msg, source, output, ".prototxt", ".yaml", "import",
                                    caffe_cwd_rule=True)
        for f in ("net_param", "train_net_param"):
            if msg.has(f):
                warnings += _layer_report(getattr(msg, f), f"{f}: ")
        for i, tn in enumerate(msg.test_net_param):
            warnings += _layer_report(tn, f"test_net_param[{i}]: ")
    header = (f"# {message_name} imported from {os.path.basename(source)} by "
              f"`caffeish import`.\n")
    return msg, header + yaml_text(msg), notes, warnings


@click.command("import")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None, metavar="FILE.yaml",
              help="Where to write the YAML ('-' for stdout). Default: SOURCE with .yaml.")
@click.option("--kind", type=click.Choice(sorted(_KINDS)), default=None,
              help="Read SOURCE as a net or a solver (default: tell from its fields).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@_caffeish_errors
def import_cmd(source, output, kind, force):
    """Convert a Caffe prototxt (net or solver) to caffeish YAML.

    Legacy formats are upgraded as Caffe's upgrade_net_proto_text does: V1 'layers', old
    data-transform fields, 'input' fields, old BatchNorm params, solver_type. Layer types
    caffeish does not implement yet are listed, all at once, with their lines.

    \b
    caffeish import deploy.prototxt -o deploy.yaml
    caffeish import solver.prototxt -o solver.yaml
    """
    output = output or _default_output(source, ".yaml")
    if output != "-" and os.path.lexists(output) and not force:
        raise ConfigError(f"{output}: already exists; pass --force to overwrite it")
    msg, text, notes, warnings = import_prototxt(source, output, kind)
    _write_text(output, text, force)
    for n in notes:
        click.echo(f"note: {n}", err=True)
    for w in warnings:
        click.echo(w, err=True)
    if output != "-":
        what = f", {len(msg.layer)} layers" if msg.mdef.name == "NetParameter" else ""
        click.echo(f"wrote {output} ({msg.mdef.name}{what})", err=True)


# --- export ------------------------------------------------------------------------------
def _yaml_top_keys(source):
    import yaml

    from ..config.yaml_loader import compose_file
    node = compose_file(source)
    if node is None:
        raise ConfigError(f"{source}: the file is empty")
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{source}: expected a mapping of NetParameter or SolverParameter "
                          f"fields at the top level")
    return [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]


def export_yaml(source, output, kind=None, include_blobs=False):
    """Load a YAML net or solver and print it as prototxt: ``(message, text, notes)``."""
    from ..config.yaml_loader import load_message
    from ..io.prototxt import to_prototxt
    message_name = _KINDS[kind] if kind else detect_kind(_yaml_top_keys(source), source)
    msg = load_message(source, message_name)
    notes = []
    if message_name == "SolverParameter":
        msg = msg.copy()
        for ext in (".yaml", ".yml"):
            notes += _rewrite_net_paths(msg, source, output, ext, ".prototxt", "export",
                                        caffe_cwd_rule=False)
        if notes:
            notes.append("Caffe resolves a solver's net paths from the working directory; "
                         "run caffe from the folder the paths are relative to")
    return msg, to_prototxt(msg, include_blobs=include_blobs), notes


@click.command("export")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None, metavar="FILE.prototxt",
              help="Where to write the prototxt ('-' for stdout). Default: SOURCE with "
                   ".prototxt.")
@click.option("--kind", type=click.Choice(sorted(_KINDS)), default=None,
              help="Read SOURCE as a net or a solver (default: tell from its fields).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@_caffeish_errors
def export_cmd(source, output, kind, force):
    """Convert a caffeish YAML net or solver to a Caffe prototxt.

    \b
    caffeish export deploy.yaml -o deploy.prototxt
    """
    output = output or _default_output(source, ".prototxt")
    if output != "-" and os.path.lexists(output) and not force:
        raise ConfigError(f"{output}: already exists; pass --force to overwrite it")
    msg, text, notes = export_yaml(source, output, kind)
    _write_text(output, text, force)
    for n in notes:
        click.echo(f"note: {n}", err=True)
    if output != "-":
        click.echo(f"wrote {output} ({msg.mdef.name})", err=True)
