"""What a file that should be sound holds instead, found from its bytes before any decoder runs.

Two checks, each returning a description of the problem (or None): :func:`iff_truncation` (a
WAV/AIFF file cut short, which libsndfile would quietly read as a shorter sound) and
:func:`text_instead_of_sound` (a text file under a sound file's name -- notes, a web page saved
by a failed download, a Git LFS pointer left by a clone without LFS -- which the decoders would
reject with their own, misleading words, and libmpg123 with notes on stderr).
"""

from __future__ import annotations

import struct
from pathlib import Path

#: Bytes read to tell text from sound: enough for any header, little enough to be instant.
SNIFF_BYTES = 4096

#: Share of printable characters above which decoded bytes count as text.
PRINTABLE_SHARE = 0.95

#: Text files recognised by how they begin (lower-cased, leading blanks dropped).
KNOWN_TEXT = (
    ("version https://git-lfs.github.com/spec/",
     "a Git LFS pointer, not the sound itself (fetch it with `git lfs pull`)"),
    ("<!doctype html", "a web page (HTML), not sound: perhaps a failed download"),
    ("<html", "a web page (HTML), not sound: perhaps a failed download"),
)


def text_instead_of_sound(path: Path) -> str | None:
    """What a file holds when its first :data:`SNIFF_BYTES` are text (UTF-8, no NUL byte, at
    least :data:`PRINTABLE_SHARE` printable), or None for anything else. Every sound container
    and every MPEG frame header has a NUL or a byte that is not UTF-8 in its first bytes, so
    no sound file is taken for text."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head or b"\0" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Only a character cut in two by the end of the sniffed bytes is forgiven.
        if len(head) < SNIFF_BYTES or exc.start < len(head) - 3:
            return None
        text = head[:exc.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\t\r\n" for c in text)
    if not text or printable < PRINTABLE_SHARE * len(text):
        return None
    opening = text.lstrip("\ufeff \t\r\n")
    for prefix, what in KNOWN_TEXT:
        if opening.lower().startswith(prefix):
            return what
    first_line = opening.splitlines()[0] if opening else ""
    preview = first_line[:40] + ("..." if len(first_line) > 40 else "")
    return f"text, not sound (it begins {preview!r})" if preview else "only blank text, not sound"


def iff_truncation(path: Path) -> str | None:
    """Compare an IFF-style header's declared audio size with the bytes the file really holds.

    libsndfile quietly reads whatever is there when a WAV/AIFF file was cut short (an interrupted
    copy or download), which would let a damaged file pass as a shorter sound. The header says how
    many bytes of audio to expect, so check it ourselves.

    Handles RIFF/RIFX WAVE (``data`` chunk; sizes little/big endian) and FORM AIFF/AIFC (``SSND``
    chunk, big endian). Returns a description of the damage, or None when the file is whole or is
    not one of these formats. A declared size of 0 or 0xFFFFFFFF is the placeholder streaming
    writers leave when they cannot seek back, not damage.
    """
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12:
            return None
        magic, form = head[:4], head[8:12]
        if magic == b"RIFF" and form == b"WAVE":
            endian, audio_chunk = "<", b"data"
        elif magic == b"RIFX" and form == b"WAVE":
            endian, audio_chunk = ">", b"data"
        elif magic == b"FORM" and form in (b"AIFF", b"AIFC"):
            endian, audio_chunk = ">", b"SSND"
        else:
            return None
        offset = 12
        while offset + 8 <= file_size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", handle.read(8))
            body = offset + 8
            if chunk_id == audio_chunk:
                if chunk_size in (0, 0xFFFFFFFF):
                    return None
                held = file_size - body
                if chunk_size > held:
                    missing = 100.0 * (chunk_size - held) / chunk_size
                    return (f"truncated: the header declares {chunk_size} bytes of audio but the "
                            f"file holds {held} ({missing:.3g}% missing)")
                return None
            # Chunks are padded to an even size (RIFF and IFF-85 alike).
            offset = body + chunk_size + (chunk_size & 1)
        if offset > file_size:
            return "truncated: the file ends inside its header, before any audio"
        return None
