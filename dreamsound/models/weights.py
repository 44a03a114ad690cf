"""Resolve model weights files: one resolver that every model loads through.

Where a weights file is looked for, in order (:func:`resolve_weights`):

1. an explicit path (``--weights PATH`` / ``load_model(..., weights=PATH)``);
2. the environment variable named by the spec (e.g. ``$DREAMSOUND_YAMNET_WEIGHTS``);
3. the file shipped inside the package (``dreamsound.shipped_models/<dir>/<file>``, the repository's
   top-level ``models/`` folder);
4. the user cache: ``$DREAMSOUND_CACHE``, else ``$XDG_CACHE_HOME/dreamsound``, else
   ``~/.cache/dreamsound``; the file lives at ``<cache>/<model>/<filename>``;
5. a download from the spec's URL into that cache (never when ``DREAMSOUND_OFFLINE=1``).

If none gives a file, :class:`~dreamsound.errors.WeightsError` says, in one line, which file is
needed, where it comes from, its sha256, the exact path to put it at, the environment variable, and
the commands that fix it (``dreamsound models fetch MODEL`` or ``--weights PATH``).

Checksums. Files from the cache, from a download or from the package are checked against the
spec's SHA-256 on every load (a corrupt or tampered file is an error showing both digests; digests
are memoised per process by path, size and mtime, so repeated loads do not re-read the file).
When a spec has no known digest, the first successful download records its digest in a sidecar
``<file>.sha256`` ("trust on first download") and later loads are checked against that. Explicit
and environment-variable paths are the user's own files (their own or converted weights): they are
not checksummed; the model loader validates their layout and shapes.

Mirrors and tests: ``$DREAMSOUND_DOWNLOAD_BASE`` replaces the download URL with
``<base>/<model>/<filename>`` (the cache layout, so a copy of a cache folder served over HTTP is a
mirror); the ``url=`` keyword of :func:`fetch_weights` / :func:`resolve_weights` overrides both.

Models with several files. A model may need more than one file (``irmas-pons``: Keras weights and
the training-set mean). Its registry entry is then a tuple of :class:`WeightsFile` (see
:data:`WeightsFiles`); each file is resolved, checked and downloaded on its own, exactly as above.
:func:`find_weights` and :func:`fetch_weights` take such a tuple too (so ``dreamsound models`` and
``models fetch`` need no special case), and :func:`resolve_weights_files` resolves all of them,
naming *every* missing file in its one-line error. ``--weights PATH`` then names a folder holding
the files (under their registry names, or the names in their download URLs), or the first file
with the others beside it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dreamsound.errors import OutputError, WeightsError
from dreamsound.io_utils import atomic_write

log = logging.getLogger(__name__)

#: ``progress(done_bytes, total_bytes)``; ``total_bytes`` is None when the server does not say.
ProgressCallback = Callable[[int, "int | None"], None]

#: Package that holds the weights shipped with dreamsound (the repository's ``models/`` folder).
SHIPPED_PACKAGE = "dreamsound.shipped_models"

#: Seconds to wait for the server to answer (and between received blocks).
DOWNLOAD_TIMEOUT_S = 60.0

_CHUNK_BYTES = 1 << 20
_SIDECAR_SUFFIX = ".sha256"
_TRUE = {"1", "true", "yes", "on"}

__all__ = [
    "WeightsFile",
    "WeightsFiles",
    "cache_dir",
    "cached_path",
    "download_url",
    "fetch_weights",
    "find_weights",
    "is_offline",
    "resolve_weights",
    "resolve_weights_files",
    "sha256_file",
    "weights_files",
]


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file in the registry.

    Attributes
    ----------
    model : str
        Registry name of the model it belongs to.
    filename : str
        File name in the cache (``yamnet.h5``).
    url : str or None
        Official download address (None: ships with the package, see ``packaged``).
    sha256 : str or None
        Expected SHA-256 hex digest of the file. None: trust the first download (see module doc).
    source : str
        One line saying where the file comes from (shown in errors and ``dreamsound models``).
    env_var : str
        Environment variable that may point at the file.
    packaged : str or None
        ``"<dir>/<file>"`` inside ``dreamsound.shipped_models`` when it ships with the package.
    size : int or None
        Expected size in bytes, when known: the progress total when the server sends no
        ``Content-Length``, and a quick check before hashing.
    """

    model: str
    filename: str
    url: str | None
    sha256: str | None
    source: str
    env_var: str
    packaged: str | None = None
    size: int | None = None


#: What a model's registry entry names: one file, or a tuple of files that are all needed.
WeightsFiles = WeightsFile | tuple[WeightsFile, ...]


def weights_files(weights: WeightsFiles | None) -> tuple[WeightsFile, ...]:
    """The files of a registry entry as a tuple (empty for a model that needs none)."""
    if weights is None:
        return ()
    return (weights,) if isinstance(weights, WeightsFile) else tuple(weights)


# --------------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The user cache folder: ``$DREAMSOUND_CACHE``, ``$XDG_CACHE_HOME/dreamsound`` or
    ``~/.cache/dreamsound`` (not created here)."""
    explicit = os.environ.get("DREAMSOUND_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dreamsound"


def cached_path(spec: WeightsFile) -> Path:
    """Where ``spec``'s file lives in the cache: ``<cache_dir>/<model>/<filename>``."""
    return cache_dir() / spec.model / spec.filename


def is_offline() -> bool:
    """True when ``$DREAMSOUND_OFFLINE`` is set to 1/true/yes/on: no download is ever tried."""
    return os.environ.get("DREAMSOUND_OFFLINE", "").strip().lower() in _TRUE


def download_url(spec: WeightsFile, url: str | None = None) -> str | None:
    """The address to download from: ``url``, else ``$DREAMSOUND_DOWNLOAD_BASE/<model>/<file>``,
    else ``spec.url``."""
    if url:
        return url
    base = os.environ.get("DREAMSOUND_DOWNLOAD_BASE")
    if base:
        return f"{base.rstrip('/')}/{spec.model}/{spec.filename}"
    return spec.url


def _shipped_root() -> Path | None:
    """The folder that holds the shipped weights, or None when there is none."""
    from importlib.resources import files

    try:
        return Path(str(files(SHIPPED_PACKAGE)))
    except ImportError:
        # dreamsound was imported from a source checkout, which has no dreamsound/shipped_models
        # (the wheel maps models/ there). Ray does this to its workers: it puts the driver's
        # working folder first on their sys.path, so a job started inside a checkout imports
        # the checkout's dreamsound even when a regular install sits in site-packages.
        checkout = Path(__file__).resolve().parents[2] / "models"
        return checkout if (checkout / "__init__.py").is_file() else None


def _packaged_path(spec: WeightsFile) -> Path | None:
    if not spec.packaged:
        return None
    root = _shipped_root()
    if root is None:
        return None
    # Regular and editable installs keep package data as plain files; a zipped install would
    # need extraction, which we do not support (weights are too big to copy on every load).
    path = root.joinpath(*spec.packaged.split("/"))
    return path if path.is_file() else None


def _user_path(path: Path, *, given: str) -> Path:
    """Check a path the user named (explicit or env var); the loader checks its content."""
    if not path.exists():
        raise WeightsError(f"weights file not found: {path} ({given})")
    if path.is_dir():
        raise WeightsError(f"weights path is a folder, not a file: {path} ({given})")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file is empty (0 bytes): {path} ({given})")
    return path


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------

_digest_memo: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _memo_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digest_memo:
        _digest_memo[key] = sha256_file(path)
    return _digest_memo[key]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def _expected_digest(spec: WeightsFile, path: Path) -> tuple[str | None, str]:
    """The digest ``path`` must have and where that expectation comes from."""
    if spec.sha256:
        return spec.sha256.lower(), "the registry"
    sidecar = _sidecar(path)
    if sidecar.is_file():
        recorded = sidecar.read_text(encoding="ascii", errors="replace").split()
        if recorded:
            return recorded[0].lower(), f"{sidecar.name}, recorded at its first download"
    return None, ""


def _verify(spec: WeightsFile, path: Path, *, fix: str) -> None:
    expected, origin = _expected_digest(spec, path)
    if expected is None:
        log.info("%s: no known sha256 to check it against", path)
        return
    actual = _memo_sha256(path)
    if actual != expected:
        raise WeightsError(
            f"{spec.model} weights {path} fail their checksum: sha256 {actual}, expected "
            f"{expected} (from {origin}); the file is corrupt or not the official one: {fix}"
        )


# --------------------------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------------------------


def find_weights(spec: WeightsFiles) -> Path | None:
    """The file :func:`resolve_weights` would use without downloading, or None (no checks).

    Looks at the environment variable, the package and the cache, in that order; only tests
    that a file exists (no checksum), so listing models stays instant and never raises. For a
    tuple of files: the first file's path when *every* file is found, else None (a model is
    only usable with all of them).
    """
    if not isinstance(spec, WeightsFile):
        found = [find_weights(one) for one in spec]
        return found[0] if found and all(p is not None for p in found) else None
    env = os.environ.get(spec.env_var) if spec.env_var else None
    if env:
        path = Path(env).expanduser()
        return path if path.is_file() else None
    packaged = _packaged_path(spec)
    if packaged is not None:
        return packaged
    cached = cached_path(spec)
    return cached if cached.is_file() else None


def _missing_message(spec: WeightsFile, why: str, url: str | None, *,
                     target: Path | None = None) -> str:
    """One line: what is missing, why, where it comes from and where to put it (default: the
    cache)."""
    target = target if target is not None else cached_path(spec)
    where = f"{spec.source}, {url}" if url else spec.source
    digest = f" (sha256 {spec.sha256})" if spec.sha256 else ""
    env = f", or point ${spec.env_var} at it" if spec.env_var else ""
    fetch = f"run `dreamsound models fetch {spec.model}`, " if url else ""
    return (f"{spec.model} weights {spec.filename} not found ({why}); it comes from {where}"
            f"{digest}: {fetch}or put the file at {target}{env}, or pass --weights PATH")


def resolve_weights(spec: WeightsFile, explicit: str | Path | None = None, *,
                    download: bool = True, progress: ProgressCallback | None = None,
                    url: str | None = None) -> Path:
    """Return a usable path for ``spec``: explicit path -> env var -> package -> cache -> download.

    Parameters
    ----------
    spec : WeightsFile
        The registry entry of the file.
    explicit : path, optional
        A file the user named (``--weights``). Used as is: not checksummed.
    download : bool, optional
        Download into the cache when no file is found (default True). Never happens when
        ``$DREAMSOUND_OFFLINE`` is set.
    progress : callable, optional
        ``progress(done_bytes, total_bytes_or_None)`` during a download.
    url : str, optional
        Download from here instead of the registry's URL (a mirror).

    Returns
    -------
    Path
        An existing file; cache, package and downloaded files have passed their checksum.

    Raises
    ------
    WeightsError
        The named file is missing, a checksum fails, or no file can be found or downloaded; the
        message says exactly what to fetch and where to put it.
    """
    if explicit is not None:
        return _user_path(Path(explicit).expanduser(), given="given with --weights")
    env = os.environ.get(spec.env_var) if spec.env_var else None
    if env:
        return _user_path(Path(env).expanduser(), given=f"from ${spec.env_var}")
    fetch_fix = (f"delete it and run `dreamsound models fetch {spec.model}`, or pass "
                 f"--weights PATH")
    packaged = _packaged_path(spec)
    if packaged is not None:
        _verify(spec, packaged, fix="reinstall dreamsound-ml, or pass --weights PATH")
        return packaged
    cached = cached_path(spec)
    if cached.is_file():
        _verify(spec, cached, fix=fetch_fix)
        return cached
    source = download_url(spec, url)
    if not source:
        raise WeightsError(_missing_message(spec, "it is not installed", None))
    if is_offline():
        raise WeightsError(_missing_message(spec, "downloads are off: DREAMSOUND_OFFLINE=1",
                                            source))
    if not download:
        raise WeightsError(_missing_message(spec, "not in the cache", source))
    return _download(spec, source, cached, progress)


def fetch_weights(spec: WeightsFiles, *, force: bool = False,
                  progress: ProgressCallback | None = None, url: str | None = None) -> Path:
    """Download ``spec``'s file into the cache (``dreamsound models fetch``) and return its path.

    A cached file that passes its checksum is kept unless ``force``; a corrupt one is downloaded
    again. ``$DREAMSOUND_OFFLINE`` still wins: the error then says where to put the file by hand.

    Parameters
    ----------
    spec : WeightsFile or tuple of WeightsFile
        One file, or every file of a model that needs several: each is fetched (and checked)
        on its own, the progress counts their bytes together, and the path returned is the
        cache folder that holds them (what ``--weights`` takes for such a model). Files that
        fail are named together in one error; the others stay cached (they passed their check).
    force : bool, optional
        Download even when a good cached copy exists.
    progress : callable, optional
        ``progress(done_bytes, total_bytes_or_None)``.
    url : str, optional
        Download from here instead of the registry's URL (a mirror).

    Raises
    ------
    WeightsError
        No URL, offline, the download failed, or the checksum does not match (nothing is left in
        the cache then).
    """
    if not isinstance(spec, WeightsFile):
        return _fetch_several(tuple(spec), force=force, progress=progress, url=url)
    cached = cached_path(spec)
    if cached.is_file() and not force:
        try:
            _verify(spec, cached, fix="downloading it again")
            return cached
        except WeightsError as exc:
            log.warning("%s; downloading it again", exc)
    source = download_url(spec, url)
    if not source:
        raise WeightsError(_missing_message(spec, "it has no download address", None))
    if is_offline():
        raise WeightsError(_missing_message(spec, "downloads are off: DREAMSOUND_OFFLINE=1",
                                            source))
    return _download(spec, source, cached, progress)


def _fetch_several(files: tuple[WeightsFile, ...], *, force: bool,
                   progress: ProgressCallback | None, url: str | None) -> Path:
    """:func:`fetch_weights` for several files; returns the folder holding them."""
    if not files:
        raise ValueError("fetch_weights needs at least one WeightsFile")
    if url is not None and len(files) > 1:
        raise ValueError("url= names one file; several files come from their registry URLs "
                         "(or $DREAMSOUND_DOWNLOAD_BASE)")
    sizes = [f.size for f in files]
    grand_total = sum(sizes) if all(s is not None for s in sizes) else None  # type: ignore[misc]
    paths: list[Path] = []
    errors: list[str] = []
    offset = 0
    for one, size in zip(files, sizes, strict=True):
        def report(done: int, total: int | None, _offset: int = offset) -> None:
            # One bar for the whole model: bytes of the files before this one count as done.
            if progress is not None:
                progress(_offset + done, grand_total if grand_total is not None else total)
        try:
            paths.append(fetch_weights(one, force=force, progress=report, url=url))
        except WeightsError as exc:
            errors.append(str(exc))
        offset += size or 0
    if errors:
        raise WeightsError("; ".join(errors))
    folders = {p.parent for p in paths}
    return folders.pop() if len(folders) == 1 else paths[0]


def _named_paths(files: tuple[WeightsFile, ...], explicit: Path) -> tuple[Path, ...]:
    """Where each of several files is when the user names ``explicit`` (``--weights``).

    A folder holds every file, under its registry name or, failing that, the name in its download
    URL (a file saved by hand from the official address keeps that name). A file is the first
    one; the others are beside it, named as in a folder.
    """
    folder = explicit if explicit.is_dir() else explicit.parent
    located: list[Path] = []
    for index, one in enumerate(files):
        if index == 0 and not explicit.is_dir():
            located.append(explicit)
            continue
        names = [one.filename]
        if one.url:
            names.append(one.url.rstrip("/").rsplit("/", 1)[-1])
        candidates = [folder / name for name in names]
        located.append(next((c for c in candidates if c.is_file()), candidates[0]))
    return tuple(located)


def resolve_weights_files(files: Sequence[WeightsFile], explicit: str | Path | None = None, *,
                          download: bool = True,
                          progress: ProgressCallback | None = None) -> tuple[Path, ...]:
    """:func:`resolve_weights` for every file of a model that needs several.

    Parameters
    ----------
    files : sequence of WeightsFile
        The model's registry entries, main file first.
    explicit : path, optional
        ``--weights``: a folder holding every file, or the first file with the others beside it
        (see the module docstring). Such files are the user's own: not checksummed.
    download, progress
        As for :func:`resolve_weights` (progress restarts with each file).

    Returns
    -------
    tuple of Path
        One existing file per entry, in order.

    Raises
    ------
    WeightsError
        One line naming *every* file that is missing or fails its checksum, each with its
        source, URL, sha256 and where to put it.
    """
    files = tuple(files)
    if explicit is not None:
        given = Path(explicit).expanduser()
        if not given.exists():
            raise WeightsError(f"weights path not found: {given} (given with --weights)")
        named = _named_paths(files, given)
    else:
        named = (None,) * len(files)
    paths: list[Path] = []
    errors: list[str] = []
    for one, path in zip(files, named, strict=True):
        try:
            if path is not None and not path.exists():
                raise WeightsError(_missing_message(
                    one, f"--weights {given} has no {path.name}", download_url(one),
                    target=path))
            paths.append(resolve_weights(one, path, download=download, progress=progress))
        except WeightsError as exc:
            errors.append(str(exc))
    if errors:
        raise WeightsError("; ".join(errors))
    return tuple(paths)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _download(spec: WeightsFile, source: str, target: Path,
              progress: ProgressCallback | None) -> Path:
    """Stream ``source`` into a temp file beside ``target``; rename only after the checksum."""
    def failed(why: str) -> WeightsError:
        return WeightsError(_missing_message(spec, f"download from {source} failed: {why}",
                                             source))

    log.info("downloading %s weights from %s to %s", spec.model, source, target)
    request = urllib.request.Request(source, headers={"User-Agent": "dreamsound-ml"})
    expected, origin = _expected_digest(spec, target)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                atomic_write(target) as temp:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else spec.size
            done = 0
            if progress is not None:
                progress(0, total)
            with open(temp, "wb") as out:
                while block := response.read(_CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            if length and length.isdigit() and done != int(length):
                raise failed(f"the connection closed after {done} of {length} bytes")
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                # Raised inside atomic_write, so the temp file is removed and no file is cached.
                undo = ("" if spec.sha256 else
                        f"; if the file changed upstream on purpose, delete {_sidecar(target)}")
                raise WeightsError(
                    f"downloaded {spec.model} weights from {source} fail their checksum: sha256 "
                    f"{actual}, expected {expected} (from {origin}); nothing was saved (a proxy "
                    f"or mirror may serve a different file; download it yourself and pass "
                    f"--weights PATH){undo}"
                )
    except WeightsError:
        raise
    except OutputError as exc:
        raise failed(f"cannot write the cache: {exc}") from None
    except urllib.error.HTTPError as exc:
        raise failed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise failed(f"no answer within {DOWNLOAD_TIMEOUT_S:g} s") from None
        text = (reason.strerror or str(reason)) if isinstance(reason, OSError) else str(reason)
        raise failed(text or str(exc)) from None
    except TimeoutError:
        raise failed(f"no answer within {DOWNLOAD_TIMEOUT_S:g} s") from None
    except http.client.IncompleteRead as exc:
        raise failed(f"the connection closed after {len(exc.partial)} bytes of a block") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, bad URL, ...
        raise failed(str(exc) or type(exc).__name__) from None
    if not spec.sha256 and expected is None:
        # Trust on first download: pin what we got so that later loads detect any change.
        with atomic_write(_sidecar(target)) as temp:
            temp.write_text(f"{actual}  {spec.filename}\n", encoding="ascii")
        log.warning("%s: no official sha256 is known; recorded %s in %s and will check it on "
                    "every load", target, actual, _sidecar(target).name)
    elif spec.sha256:
        # Remove a stale sidecar from an earlier trust-on-first-download of the same file.
        _sidecar(target).unlink(missing_ok=True)
    _digest_memo[(str(target.resolve()), target.stat().st_size, target.stat().st_mtime_ns)] = actual
    log.info("saved %s (sha256 %s)", target, actual)
    return target
