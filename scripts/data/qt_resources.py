"""Read the files packed into a Qt binary resource file (``.rcc``), without Qt.

Some Debian data packages keep their sounds inside such files (GCompris, for one: its
instrument recordings are in ``instruments.rcc``); ``real_devset`` reads them from there.

The format (Qt's ``rcc`` tool writes it; versions 1 to 3), all integers big-endian:

* a header: ``b"qres"``, the format version, then the offsets of the tree, the data and the
  names sections (and, from version 3, a flags word);
* the tree: one fixed-size node per file or folder (14 bytes in version 1, 22 from version 2,
  which adds a modification time), node 0 being the root folder. A node starts with the offset
  of its name and a flags word (``DIRECTORY`` 2; ``COMPRESSED`` 1 = zlib behind a 4-byte
  uncompressed size; ``COMPRESSED_ZSTD`` 4). A folder then holds its child count and the index
  of its first child (children are consecutive); a file holds a country and a language code
  and the offset of its data;
* the data section: each file as a 4-byte length followed by its bytes;
* the names section: each name as a 2-byte length (in UTF-16 code units), a 4-byte hash and
  the name in UTF-16BE.
"""

from __future__ import annotations

import struct
import zlib

DIRECTORY = 0x02
COMPRESSED = 0x01
COMPRESSED_ZSTD = 0x04


class ResourceError(ValueError):
    """Not a Qt resource file, or a damaged one."""


def read_qt_resources(data: bytes) -> dict[str, bytes]:
    """Every file of a Qt binary resource, keyed by its path (``"/folder/name.ogg"``), its
    bytes uncompressed.

    Raises
    ------
    ResourceError
        Not a Qt resource, an unknown version, offsets outside the data, or a compression this
        reader does not know (zstd without the ``zstandard`` package).
    """
    if data[:4] != b"qres":
        raise ResourceError("not a Qt resource file (no 'qres' magic)")
    try:
        version, tree, body, names = struct.unpack_from(">IIII", data, 4)
    except struct.error:
        raise ResourceError("the Qt resource header is cut short") from None
    if not 1 <= version <= 3:
        raise ResourceError(f"Qt resource format version {version} is not known")
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # the length, then a 4-byte hash
        return data[start:start + 2 * length].decode("utf-16-be")

    def content(flags: int, offset: int) -> bytes:
        (length,) = struct.unpack_from(">I", data, body + offset)
        blob = data[body + offset + 4:body + offset + 4 + length]
        if len(blob) != length:
            raise ResourceError("a file's data runs past the end of the resource")
        if flags & COMPRESSED:
            return zlib.decompress(blob[4:])
        if flags & COMPRESSED_ZSTD:
            try:
                import zstandard
            except ImportError:
                raise ResourceError("a file is zstd-compressed: install zstandard") from None
            return zstandard.ZstdDecompressor().decompress(blob)
        return blob

    files: dict[str, bytes] = {}
    pending = [(0, "")]
    try:
        while pending:
            index, folder = pending.pop()
            node = tree + index * node_size
            name_offset, flags = struct.unpack_from(">IH", data, node)
            path = folder if index == 0 else f"{folder}/{name_at(name_offset)}"
            if flags & DIRECTORY:
                count, first = struct.unpack_from(">II", data, node + 6)
                pending.extend((child, path) for child in range(first, first + count))
            else:
                (offset,) = struct.unpack_from(">I", data, node + 10)
                files[path] = content(flags, offset)
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise ResourceError(f"a damaged Qt resource file ({exc})") from None
    return files
