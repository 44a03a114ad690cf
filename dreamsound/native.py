"""C kernels compiled on the user's machine at first use, loaded with ctypes.

A kernel source ships inside the package (``dreamsound/models/yamnet/layers.c``). The first
process that needs it compiles it with the system's C compiler (``$CC``, else ``cc``) for the CPU
it runs on (``-O3 -march=native``) and with OpenMP, so its loops share torch's OpenMP threads;
the library is kept in ``<cache>/kernels/`` (the weights' cache folder, see
:func:`dreamsound.models.weights.cache_dir`) under a name that hashes the source, the compiler's
version, the flags and the CPU's feature flags, so a change to any of them builds anew.

Every failure is quiet and final for the process: no compiler, a compile error (the kernels
need AVX-512 and refuse to build without it), an unwritable cache, or a torch whose OpenMP
runtime is not GNU libgomp (a second OpenMP runtime would start a second thread pool next to
torch's). The caller then uses torch's own operators, which compute the same values.
``DREAMSOUND_KERNELS=0`` turns the kernels off (for comparisons and troubleshooting);
:func:`why_not` says why a kernel did not load.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")
COMPILE_TIMEOUT_S = 120
#: torch's OpenMP runtime, which a kernel built with gcc's ``-fopenmp`` links by this soname.
LIBGOMP = "libgomp.so.1"

_lock = threading.Lock()
_loaded: dict[Path, ctypes.CDLL | None] = {}
_reasons: dict[Path, str] = {}


def kernels_enabled() -> bool:
    """False when ``DREAMSOUND_KERNELS`` is ``0``, ``off``, ``false`` or ``no``."""
    return os.environ.get("DREAMSOUND_KERNELS", "1").strip().lower() not in {"0", "off", "false",
                                                                             "no"}


def load_kernels(source: Path) -> ctypes.CDLL | None:
    """The compiled library of ``source`` (built or taken from the cache), or None.

    Thread-safe; the outcome, success or not, is kept for the life of the process.
    """
    source = Path(source)
    with _lock:
        if source not in _loaded:
            library, reason = _build_and_load(source)
            _loaded[source] = library
            if reason:
                _reasons[source] = reason
                log.debug("native kernels %s not used: %s", source.name, reason)
        return _loaded[source]


def why_not(source: Path) -> str | None:
    """Why ``source``'s kernels did not load (None if they did or were not asked for yet)."""
    return _reasons.get(Path(source))


def _build_and_load(source: Path) -> tuple[ctypes.CDLL | None, str]:
    if not kernels_enabled():
        return None, "turned off by DREAMSOUND_KERNELS"
    if not _process_uses_libgomp():
        return None, f"torch's OpenMP runtime is not {LIBGOMP}"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH"
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        text = source.read_bytes()
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"cannot read the compiler's version or the source: {error}"
    key = hashlib.sha256(b"\0".join([text, version.encode(), " ".join(FLAGS).encode(),
                                     _cpu_flags().encode()])).hexdigest()[:16]
    from dreamsound.models.weights import cache_dir  # late: keeps this module light

    target = cache_dir() / "kernels" / f"{source.stem}-{key}.so"
    if not target.exists():
        reason = _compile(compiler, source, target)
        if reason:
            return None, reason
    try:
        return ctypes.CDLL(str(target)), ""
    except OSError as error:
        return None, f"cannot load {target}: {error}"


def _compile(compiler: str, source: Path, target: Path) -> str:
    """Compile ``source`` into ``target`` (atomically: concurrent processes may race); an
    empty string on success, else the reason."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            built = Path(work) / target.name
            result = subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)],
                                    capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if result.returncode != 0:
                first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
                return f"{Path(compiler).name} failed: {first}"
            os.replace(built, target)
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot build in {target.parent}: {error}"
    return ""


def _process_uses_libgomp() -> bool:
    """True if a library with libgomp's soname is mapped into this process (torch's own, on
    Linux builds with GNU OpenMP), so a kernel linked against that soname shares it."""
    import torch  # noqa: F401  (torch's runtime must be loaded before we look for it)

    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            return any(line.rstrip().endswith("/" + LIBGOMP) for line in maps)
    except OSError:
        return False


def _cpu_flags() -> str:
    """The CPU's feature flags (``/proc/cpuinfo``), part of the cache key: ``-march=native``
    builds for this CPU, and a cache folder may be shared by several machines."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
