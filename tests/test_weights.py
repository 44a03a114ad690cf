"""The weights resolver: lookup order, checksums, downloads from a local HTTP server, errors.

Downloads are tested against ``http.server`` on 127.0.0.1 (an ephemeral port) serving the real
``../shared/yamnet/yamnet.h5``; nothing here touches the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dreamsound.errors import WeightsError
from dreamsound.models import weights
from dreamsound.models.weights import (
    WeightsFile,
    cache_dir,
    cached_path,
    fetch_weights,
    find_weights,
    resolve_weights,
    resolve_weights_files,
    sha256_file,
)

#: Digest of ../shared/yamnet/yamnet.h5 (see ../shared/yamnet/README.md).
SHARED_H5_SHA256 = "0928474eaaf709ce0fe0e995d77ed883d3f5e8da833fba806c3f6a0e1a0f118e"
WRONG_SHA256 = "ab" * 32


class _Server:
    """A threaded HTTP server on 127.0.0.1 serving one folder; counts the requests."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path.startswith("/short/"):  # promise more bytes than are sent
                    self.send_response(200)
                    self.send_header("Content-Length", "5000")
                    self.end_headers()
                    self.wfile.write(b"x" * 100)
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(shared: Path) -> Iterator[_Server]:
    """Serves ../shared, so ``/yamnet/yamnet.h5`` is the real weights file."""
    srv = _Server(shared)
    yield srv
    srv.close()


@pytest.fixture
def online(monkeypatch) -> None:
    """The autouse fixture sets DREAMSOUND_OFFLINE=1; download tests lift it."""
    monkeypatch.delenv("DREAMSOUND_OFFLINE", raising=False)
    monkeypatch.delenv("DREAMSOUND_DOWNLOAD_BASE", raising=False)


def make_spec(base: str = "http://127.0.0.1:9", **changes) -> WeightsFile:
    spec = WeightsFile(model="yamnet", filename="yamnet.h5", url=f"{base}/yamnet/yamnet.h5",
                       sha256=SHARED_H5_SHA256, source="test fixture (YAMNet)",
                       env_var="DREAMSOUND_TEST_WEIGHTS")
    return replace(spec, **changes)


def cache_files() -> list[Path]:
    root = cache_dir()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- places -----------------------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DREAMSOUND_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DREAMSOUND_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "dreamsound"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dreamsound"
    monkeypatch.setenv("DREAMSOUND_CACHE", str(tmp_path / "c"))
    assert cached_path(make_spec()) == tmp_path / "c" / "yamnet" / "yamnet.h5"


def test_sha256_file(yamnet_h5: Path, tmp_path: Path) -> None:
    assert sha256_file(yamnet_h5) == SHARED_H5_SHA256
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    assert sha256_file(small) == hashlib.sha256(b"abc").hexdigest()


# -- explicit path and environment variable ---------------------------------------------------


def test_explicit_path_is_used_without_checksum(tmp_path: Path) -> None:
    own = tmp_path / "my_converted.h5"
    own.write_bytes(b"my own weights")  # not the registry's file: still the user's choice
    assert resolve_weights(make_spec(), own) == own
    assert resolve_weights(make_spec(), str(own)) == own


def test_explicit_path_missing_folder_or_empty(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found") as exc:
        resolve_weights(make_spec(), tmp_path / "nope.h5")
    assert str(tmp_path / "nope.h5") in str(exc.value) and "--weights" in str(exc.value)
    with pytest.raises(WeightsError, match="folder"):
        resolve_weights(make_spec(), tmp_path)
    (tmp_path / "empty.h5").touch()
    with pytest.raises(WeightsError, match="empty"):
        resolve_weights(make_spec(), tmp_path / "empty.h5")


def test_env_var_path(monkeypatch, yamnet_h5: Path, tmp_path: Path) -> None:
    spec = make_spec()
    monkeypatch.setenv(spec.env_var, str(yamnet_h5))
    assert resolve_weights(spec) == yamnet_h5
    assert find_weights(spec) == yamnet_h5
    # An explicit path wins over the environment.
    own = tmp_path / "own.h5"
    own.write_bytes(b"x")
    assert resolve_weights(spec, own) == own
    monkeypatch.setenv(spec.env_var, str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsError, match=r"\$DREAMSOUND_TEST_WEIGHTS") as exc:
        resolve_weights(spec)
    assert str(tmp_path / "missing.h5") in str(exc.value)
    assert find_weights(spec) is None


# -- offline ----------------------------------------------------------------------------------


def test_offline_message_says_what_to_do() -> None:
    spec = make_spec()
    with pytest.raises(WeightsError) as exc:
        resolve_weights(spec)
    message = str(exc.value)
    assert "\n" not in message
    for part in ("yamnet.h5", spec.url, SHARED_H5_SHA256, str(cached_path(spec)),
                 "$DREAMSOUND_TEST_WEIGHTS", "dreamsound models fetch yamnet", "--weights PATH",
                 "DREAMSOUND_OFFLINE=1", spec.source):
        assert part in message, part
    assert cache_files() == []


def test_offline_also_stops_fetch() -> None:
    with pytest.raises(WeightsError, match="DREAMSOUND_OFFLINE=1"):
        fetch_weights(make_spec())


def test_no_download_when_asked_not_to(online) -> None:
    with pytest.raises(WeightsError, match="not in the cache") as exc:
        resolve_weights(make_spec(), download=False)
    assert "dreamsound models fetch yamnet" in str(exc.value)


def test_find_weights_never_downloads(online, server: _Server) -> None:
    spec = make_spec(server.base)
    assert find_weights(spec) is None
    assert server.requests == []


# -- downloads --------------------------------------------------------------------------------


def test_download_with_progress_and_checksum(online, server: _Server, yamnet_h5: Path) -> None:
    spec = make_spec(server.base)
    calls: list[tuple[int, int | None]] = []
    path = resolve_weights(spec, progress=lambda done, total: calls.append((done, total)))
    size = yamnet_h5.stat().st_size
    assert path == cached_path(spec)
    assert sha256_file(path) == SHARED_H5_SHA256
    assert cache_files() == [path]  # no temp file, no sidecar (the digest is known)
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    assert len(calls) > 2  # streamed in blocks, not one read
    assert find_weights(spec) == path
    # Later loads use the cache (checked again) and do not touch the network.
    assert resolve_weights(spec) == path
    assert fetch_weights(spec) == path
    assert server.requests == ["/yamnet/yamnet.h5"]
    fetch_weights(spec, force=True)
    assert len(server.requests) == 2


def test_checksum_mismatch_keeps_nothing(online, server: _Server) -> None:
    spec = make_spec(server.base, sha256=WRONG_SHA256)
    with pytest.raises(WeightsError) as exc:
        resolve_weights(spec)
    message = str(exc.value)
    assert SHARED_H5_SHA256 in message and WRONG_SHA256 in message and "\n" not in message
    assert "nothing was saved" in message
    assert cache_files() == []


@pytest.mark.parametrize("path", ["/yamnet/missing.h5", "/short/yamnet.h5"])
def test_server_errors_keep_nothing(online, server: _Server, path: str) -> None:
    spec = make_spec(url=server.base + path)
    with pytest.raises(WeightsError) as exc:
        fetch_weights(spec)
    message = str(exc.value)
    assert "download from" in message and server.base + path in message
    assert ("HTTP 404" in message) if "missing" in path else ("closed after" in message)
    assert str(cached_path(spec)) in message and "--weights PATH" in message
    assert cache_files() == []


def test_connection_refused(online) -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = make_spec(f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsError, match="refused") as exc:
        resolve_weights(spec)
    assert "\n" not in str(exc.value)
    assert cache_files() == []


def test_server_that_never_answers(online, monkeypatch) -> None:
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT_S", 0.3)
    with socket.socket() as sock:  # accepts connections (backlog) but never replies
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        spec = make_spec(f"http://127.0.0.1:{sock.getsockname()[1]}")
        with pytest.raises(WeightsError, match=r"no answer within 0\.3 s"):
            resolve_weights(spec)
    assert cache_files() == []


def test_download_base_mirror(online, server: _Server, monkeypatch) -> None:
    monkeypatch.setenv("DREAMSOUND_DOWNLOAD_BASE", server.base + "/")
    spec = make_spec(url="https://example.invalid/never-used.h5")
    assert sha256_file(fetch_weights(spec)) == SHARED_H5_SHA256
    assert server.requests == ["/yamnet/yamnet.h5"]  # <base>/<model>/<filename>


def test_url_keyword_overrides(online, server: _Server) -> None:
    spec = make_spec(url=None)
    path = fetch_weights(spec, url=server.base + "/yamnet/yamnet.h5")
    assert path == cached_path(spec)


def test_no_url_and_nothing_found() -> None:
    spec = make_spec(url=None)
    with pytest.raises(WeightsError, match="not installed") as exc:
        resolve_weights(spec)
    assert "models fetch" not in str(exc.value) and "--weights PATH" in str(exc.value)


# -- the cache --------------------------------------------------------------------------------


def test_corrupt_cached_file(online, server: _Server) -> None:
    spec = make_spec(server.base)
    target = cached_path(spec)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a download")
    with pytest.raises(WeightsError) as exc:
        resolve_weights(spec)
    message = str(exc.value)
    assert hashlib.sha256(b"half a download").hexdigest() in message
    assert SHARED_H5_SHA256 in message and "dreamsound models fetch yamnet" in message
    assert server.requests == []  # an error, not a silent re-download
    # `models fetch` replaces the corrupt file.
    assert sha256_file(fetch_weights(spec)) == SHARED_H5_SHA256
    assert resolve_weights(spec) == target


def test_cached_file_changed_after_first_check(online, server: _Server) -> None:
    spec = make_spec(server.base)
    path = resolve_weights(spec)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip one byte: same size, new mtime
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="fail their checksum"):
        resolve_weights(spec)


def test_trust_on_first_download(online, server: _Server) -> None:
    spec = make_spec(server.base, sha256=None)
    path = resolve_weights(spec)
    sidecar = path.with_name("yamnet.h5.sha256")
    assert sidecar.read_text().split()[0] == SHARED_H5_SHA256
    assert resolve_weights(spec) == path
    path.write_bytes(b"tampered")
    with pytest.raises(WeightsError, match="recorded at its first download") as exc:
        resolve_weights(spec)
    assert SHARED_H5_SHA256 in str(exc.value)


def test_cached_file_without_any_digest_is_accepted(tmp_path: Path) -> None:
    spec = make_spec(sha256=None)
    target = cached_path(spec)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"put here by hand")
    assert resolve_weights(spec) == target


# -- packaged weights -------------------------------------------------------------------------


def test_packaged_file_is_found_and_checked() -> None:
    from importlib.resources import files

    shipped = Path(str(files(weights.SHIPPED_PACKAGE).joinpath("__init__.py")))
    assert shipped.is_file()
    digest = sha256_file(shipped)
    spec = make_spec(packaged="__init__.py", sha256=digest, url=None)
    assert resolve_weights(spec) == shipped
    assert find_weights(spec) == shipped
    with pytest.raises(WeightsError, match="reinstall") as exc:
        resolve_weights(replace(spec, sha256=WRONG_SHA256))
    assert digest in str(exc.value)
    missing = make_spec(packaged="nowhere/none.safetensors", url=None)
    assert find_weights(missing) is None


def test_shipped_weights_are_found_from_a_source_checkout(tmp_path: Path) -> None:
    # Ray's workers put the driver's working folder first on sys.path, so a job started inside
    # the checkout imports the checkout's dreamsound, which has no dreamsound/shipped_models (the
    # wheel maps models/ there). The shipped weights must still be found, and checked.
    repo = Path(__file__).resolve().parents[1]
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import dreamsound\n"
        "from dreamsound.models import weights\n"
        "from dreamsound.models.instrument import WEIGHTS\n"
        "print(dreamsound.__file__)\n"
        "print(weights.resolve_weights(WEIGHTS))\n"
        "weights.SHIPPED_PACKAGE = 'dreamsound.not_a_package'\n"
        "print(weights.resolve_weights(WEIGHTS))\n"
    )
    env = {**os.environ, "DREAMSOUND_OFFLINE": "1", "DREAMSOUND_CACHE": str(tmp_path)}
    env.pop("DREAMSOUND_INSTRUMENT_WEIGHTS", None)
    done = subprocess.run([sys.executable, "-c", probe, str(repo)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported, found, found_without_package = done.stdout.splitlines()
    assert Path(imported).is_relative_to(repo)
    shipped = repo / "models" / "instrument_cnn" / "model.safetensors"
    assert Path(found).samefile(shipped)
    assert Path(found_without_package).samefile(shipped)


# -- several files per model (irmas-pons: Keras weights + the training mean) -------------------

PONS_NAMES = ("singlelayer.hdf5", "singlelayer_mean.npy")


def _pons_files() -> tuple[WeightsFile, ...]:
    from dreamsound.models.pons import PONS_MEAN, PONS_WEIGHTS

    return PONS_WEIGHTS, PONS_MEAN


@pytest.fixture
def pons_server(shared: Path, tmp_path: Path, monkeypatch) -> Iterator[_Server]:
    """Serves copies of ../shared/pons's two files in the cache layout, as a download base."""
    served = tmp_path / "served" / "irmas-pons"
    served.mkdir(parents=True)
    for name in PONS_NAMES:
        if not (shared / "pons" / name).is_file():
            pytest.skip(f"../shared/pons/{name} is not available")
        shutil.copyfile(shared / "pons" / name, served / name)
    srv = _Server(served.parent)
    monkeypatch.delenv("DREAMSOUND_OFFLINE", raising=False)
    monkeypatch.setenv("DREAMSOUND_DOWNLOAD_BASE", srv.base)
    yield srv
    srv.close()


def test_several_files_offline_names_every_file() -> None:
    files = _pons_files()
    with pytest.raises(WeightsError) as exc:
        resolve_weights_files(files)
    message = str(exc.value)
    assert "\n" not in message and message.count("DREAMSOUND_OFFLINE=1") == 2
    for spec in files:
        for part in (spec.filename, spec.url, spec.sha256, str(cached_path(spec)),
                     f"${spec.env_var}", spec.source):
            assert part in message, part
    assert "dreamsound models fetch irmas-pons" in message
    with pytest.raises(WeightsError, match=r"singlelayer_mean\.npy"):
        fetch_weights(files)
    assert cache_files() == []


def test_fetch_several_files(pons_server: _Server) -> None:
    files = _pons_files()
    assert find_weights(files) is None
    calls: list[tuple[int, int | None]] = []
    folder = fetch_weights(files, progress=lambda done, total: calls.append((done, total)))
    assert folder == cache_dir() / "irmas-pons"
    assert cache_files() == sorted(folder / name for name in PONS_NAMES)
    for spec in files:
        assert sha256_file(cached_path(spec)) == spec.sha256
    total = sum(spec.size for spec in files)
    assert calls[-1] == (total, total)  # one bar for both files
    assert all(total_ == total for _, total_ in calls)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    assert find_weights(files) == cached_path(files[0])
    assert resolve_weights_files(files) == tuple(cached_path(spec) for spec in files)
    assert fetch_weights(files) == folder  # cached and checked: no new request
    assert sorted(pons_server.requests) == [f"/irmas-pons/{name}" for name in PONS_NAMES]


def test_find_several_files_needs_all_of_them(pons_server: _Server) -> None:
    files = _pons_files()
    fetch_weights(files[1])
    assert find_weights(files[1]) == cached_path(files[1])
    assert find_weights(files) is None


@pytest.mark.parametrize("corrupt", [("singlelayer_mean.npy",), PONS_NAMES])
def test_fetch_several_with_a_wrong_file_keeps_nothing_bad(
        pons_server: _Server, tmp_path: Path, corrupt: tuple[str, ...]) -> None:
    files = _pons_files()
    for name in corrupt:
        served = tmp_path / "served" / "irmas-pons" / name
        data = bytearray(served.read_bytes())
        data[-1] ^= 0xFF  # same size, another digest
        served.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as exc:
        fetch_weights(files)
    message = str(exc.value)
    assert "\n" not in message and message.count("nothing was saved") == len(corrupt)
    for spec in files:
        assert (spec.sha256 in message) == (spec.filename in corrupt)
    good = [cached_path(spec) for spec in files if spec.filename not in corrupt]
    assert cache_files() == good  # no temp file, no bad file; a good one stays (it passed)


def test_weights_option_for_several_files(shared: Path, tmp_path: Path) -> None:
    files = _pons_files()
    pons_dir = shared / "pons"
    folder = tmp_path / "by-hand"
    folder.mkdir()
    official = files[0].url.rsplit("/", 1)[-1]  # saved by hand under the URL's name
    shutil.copyfile(pons_dir / "singlelayer.hdf5", folder / official)
    shutil.copyfile(pons_dir / "singlelayer_mean.npy", folder / "singlelayer_mean.npy")
    expected = (folder / official, folder / "singlelayer_mean.npy")
    assert resolve_weights_files(files, folder) == expected
    assert resolve_weights_files(files, folder / official) == expected
    (folder / "singlelayer_mean.npy").unlink()
    with pytest.raises(WeightsError) as exc:
        resolve_weights_files(files, folder)
    message = str(exc.value)
    assert str(folder / "singlelayer_mean.npy") in message and files[1].url in message
    assert files[0].filename not in message  # only the missing file is named
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights_files(files, tmp_path / "nowhere")


def test_models_command_lists_and_fetches_several_files(pons_server: _Server) -> None:
    from typer.testing import CliRunner

    from dreamsound.cli import app

    runner = CliRunner()

    def present() -> bool:
        result = runner.invoke(app, ["models", "--json"])
        assert result.exit_code == 0, result.output
        return next(r for r in json.loads(result.output) if r["name"] == "irmas-pons")["present"]

    assert not present()
    result = runner.invoke(app, ["models", "fetch", "irmas-pons", "--quiet"])
    assert result.exit_code == 0, result.output
    assert str(cache_dir() / "irmas-pons") in result.output.replace("\n", "")
    assert present()
    assert len(pons_server.requests) == 2
