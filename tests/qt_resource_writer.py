"""A minimal writer of Qt binary resource files (``.rcc``), to test the reader without Qt."""

from __future__ import annotations

import struct
import zlib


def write_qt_resources(files: dict[str, bytes], *, version: int = 2,
                       compress: tuple[str, ...] = ()) -> bytes:
    """An rcc holding ``files`` (``"/folder/name": bytes``); paths in ``compress`` are stored
    zlib-compressed. Folders are laid out breadth first, each folder's children consecutive."""
    tree: dict = {}
    for path, data in files.items():
        *folders, name = path.strip("/").split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = (path, data)
    names, body, nodes = b"", b"", []
    name_offsets: dict[str, int] = {}

    def name_offset(name: str) -> int:
        nonlocal names
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names += struct.pack(">HI", len(encoded) // 2, 0) + encoded
        return name_offsets[name]

    queue = [("", tree)]
    next_index = 1
    while queue:
        name, entry = queue.pop(0)
        offset = name_offset(name) if name else 0
        if isinstance(entry, dict):
            children = sorted(entry.items())
            nodes.append(struct.pack(">IHII", offset, 2, len(children), next_index))
            next_index += len(children)
            queue.extend(children)
        else:
            path, data = entry
            flags = 0
            if path in compress:
                data, flags = struct.pack(">I", len(data)) + zlib.compress(data), 1
            nodes.append(struct.pack(">IHHHI", offset, flags, 0, 0, len(body)))
            body += struct.pack(">I", len(data)) + data
    if version >= 2:
        nodes = [node + bytes(8) for node in nodes]  # a modification time
    header_size = 24 if version >= 3 else 20
    tree_bytes = b"".join(nodes)
    tree_at, body_at = header_size, header_size + len(tree_bytes)
    names_at = body_at + len(body)
    header = struct.pack(">4sIIII", b"qres", version, tree_at, body_at, names_at)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree_bytes + body + names
