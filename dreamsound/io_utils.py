"""Safe file output: atomic writes that never leave a partial file and never touch an input.

Every file dreamsound writes (audio, JSON reports, PNGs, safetensors, downloaded weights) goes
through :func:`atomic_write`: the data is written to a temporary file in the destination folder and
moved over the destination with :func:`os.replace` only once it is complete. A crash, a full disk or
an exception in the writer leaves the destination as it was (absent or the previous version) and
removes the temporary file. ``os.replace`` is atomic on POSIX and Windows when both paths are on the
same file system, which is why the temporary file lives beside the destination and not in ``/tmp``.

This module imports nothing heavy (no numpy, no soundfile), so any module can use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from dreamsound.errors import OutputError

PathLike = str | os.PathLike


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (same resolved path, or same inode).

    The inode comparison catches hard links and case-insensitive file systems, where two
    different spellings reach one file.
    """
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist: they cannot be the same file
        return False


def check_not_input(path: PathLike, inputs: Iterable[PathLike] = ()) -> None:
    """Raise :class:`OutputError` when ``path`` is one of ``inputs`` (dreamsound never overwrites
    the sound it was given)."""
    for source in inputs:
        if source is not None and same_file(path, source):
            raise OutputError(
                f"refusing to write {path}: it is the input file {source}; "
                f"choose another output path"
            )


def _ensure_parent(path: Path) -> None:
    parent = path.parent
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(
            f"cannot write {path}: {parent} (or a folder above it) is a file, not a folder"
        ) from None
    except PermissionError:
        raise OutputError(
            f"cannot write {path}: no permission to create the folder {parent}"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: cannot create {parent} ({exc.strerror})") from None


def _create_temp(path: Path) -> Path:
    """Create an empty, uniquely named temporary file beside ``path`` and return its path.

    ``os.open`` with mode 0o666 lets the process umask decide the final permissions, exactly as
    for a file opened normally (``tempfile.mkstemp`` would force 0o600 on the result).
    """
    for _ in range(100):
        # The leading dot hides it from casual listings; the suffix keeps the extension last so
        # that libraries that pick a format from the name (matplotlib, soundfile) still can.
        temp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except PermissionError:
            raise OutputError(
                f"cannot write {path}: the folder {path.parent} is not writable"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise OutputError(f"cannot write {path}: the disk is full") from None
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None
        os.close(fd)
        return temp
    raise OutputError(f"cannot write {path}: could not create a temporary file in {path.parent}")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def atomic_write(path: PathLike, *, inputs: Iterable[PathLike] = ()) -> Iterator[Path]:
    """Write ``path`` atomically: yield a temporary path to write to, then move it into place.

    Parameters
    ----------
    path : path
        The destination file. Missing parent folders are created.
    inputs : iterable of paths, optional
        Files this output must never replace (the sounds it was made from).

    Yields
    ------
    Path
        An empty temporary file in the destination's folder, with the destination's extension.
        Write the complete content to it (by name; it may be reopened and truncated).

    Raises
    ------
    OutputError
        ``path`` is one of ``inputs``, is a folder, or its folder cannot be created or written.
        Any exception raised inside the ``with`` block propagates unchanged; in every failure
        case the temporary file is removed and ``path`` is left untouched.

    Examples
    --------
    >>> with atomic_write("report.json") as tmp:                       # doctest: +SKIP
    ...     tmp.write_text(json.dumps(report))
    """
    target = Path(path).expanduser()
    check_not_input(target, inputs)
    _ensure_parent(target)
    temp = _create_temp(target)
    try:
        yield temp
        # Flush the data to disk before the rename, so a power cut cannot leave a renamed but
        # empty file (the classic ext4 delayed-allocation surprise).
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            os.replace(temp, target)
        except IsADirectoryError:
            raise OutputError(f"cannot write {target}: it is a folder; give a file name") from None
        except PermissionError:
            raise OutputError(f"cannot write {target}: permission denied") from None
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror}") from None
    except BaseException:
        _remove_quietly(temp)
        raise
