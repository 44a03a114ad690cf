"""Keep freed memory for reuse, so that a dream step does not page-fault on its own buffers.

Every step of a dream allocates and frees the same activation- and gradient-sized buffers (up to
~8 MB each for YAMNet on 10 s of audio). glibc's malloc gives blocks over its mmap threshold back
to the kernel on ``free`` and trims the top of its heap when more than its trim threshold is
free there; its dynamic thresholds (raised after the first free of a mapped block) settle
differently from one process to the next. In 6 of 11 processes a YAMNet step (from the log-mel
of 10 s) went on taking 2,700-5,700 minor page faults, each buffer's pages zeroed again by the
kernel: 41-45 ms, against 35-39 ms in the others. With fixed thresholds (below) no process
faulted more than 42 times a step (scratch A/B, 2 threads, 2-core Sapphire Rapids VM; the
main job's figures are in docs/performance.md).

The price: up to :data:`TRIM_THRESHOLD_BYTES` of freed memory stays with the process after a
peak instead of going back to the system (the peak itself is unchanged). Only glibc is touched;
elsewhere (macOS, musl) this does nothing, and a user's own ``MALLOC_*`` or ``GLIBC_TUNABLES``
settings are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: Blocks up to this size come from the heap, not from a fresh mapping (glibc's own ceiling for
#: its dynamic threshold on 64-bit systems, so every glibc accepts it).
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Free memory at the top of the heap beyond this goes back to the system. For YAMNet's step on
#: 10 s, 16 MiB still let one process of three fault ~1,100 times a step, 64 and 256 MiB at most
#: 42; 256 leaves room for larger steps (ensembles, musicnn, longer segments).
TRIM_THRESHOLD_BYTES = 256 * 2**20

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "GLIBC_TUNABLES")
_applied: list[bool] = []


def reuse_freed_memory() -> bool:
    """Fix glibc's trim and mmap thresholds for this process (once; later calls do nothing).

    Returns
    -------
    bool
        Whether the thresholds are now set (False off glibc, when the user set their own, or
        when glibc refused them).
    """
    if _applied:
        return _applied[0]
    _applied.append(_apply())
    return _applied[0]


def _apply() -> bool:
    if not _glibc() or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols, glibc's among them
        # The mmap threshold first: setting either turns glibc's dynamic thresholds off.
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD_BYTES)) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD_BYTES)) == 1)
    except (OSError, AttributeError) as exc:
        log.debug("malloc thresholds left as they are: %s", exc)
        return False
    log.debug("malloc thresholds: mmap %d B, trim %d B (%s)", MMAP_THRESHOLD_BYTES,
              TRIM_THRESHOLD_BYTES, "set" if ok else "refused")
    return ok


def _glibc() -> bool:
    """Whether this process runs on glibc (a constant lookup, unlike ``platform.libc_ver``,
    which reads the interpreter's binary)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name here
        return False
