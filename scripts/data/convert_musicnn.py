"""Convert musicnn's TensorFlow 1 checkpoint (or an .npz of its variables) to safetensors.

musicnn (Pons & Serra 2019, ISC licence) ships its weights as TF1 "tensor bundle" checkpoints
inside the PyPI wheel ``musicnn-0.1.0``: ``<prefix>.index`` (a LevelDB SSTable of
``BundleEntryProto`` records) and ``<prefix>.data-00000-of-00001`` (the raw tensor bytes). This
script reads them with plain Python (no TensorFlow): every SSTable block's and every read
tensor's *masked CRC32C* is checked, so a damaged file is an error naming what is wrong, never a
silently wrong model. It keeps the 64 model variables (Adam slots and ``beta{1,2}_power`` are the
optimiser's) and writes them, **unchanged**: TensorFlow names (``conv2d/kernel``), TensorFlow
layouts (kernels ``(kh, kw, in, out)``) and float32 values, to a safetensors file that
:mod:`dreamsound.models.musicnn` loads.

Input may also be an ``.npz`` of the variables keyed by TensorFlow name (``np.savez`` of
``{"conv2d/kernel": array, ...}``): that is how the MSD_musicnn weights were handed to us (its
checkpoint is not in ``shared/``). Both inputs give byte-identical outputs for the same weights.

Usage, from the repository root (``python scripts/data/convert_musicnn.py ...`` works too)::

    python -m scripts.data.convert_musicnn ../shared/musicnn/MTT_musicnn/ \
        models/musicnn/model.safetensors --name MTT_musicnn
    python -m scripts.data.convert_musicnn ../shared/musicnn/MSD_musicnn.npz \
        models/musicnn_msd/model.safetensors --name MSD_musicnn

The checkpoint prefix of the wheel's models is the *folder* with a trailing ``/`` (its files are
hidden: ``MTT_musicnn/.index``); a folder given without the slash is read the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Format tag in the safetensors metadata (key ``format``); dreamsound checks it on load.
WEIGHTS_FORMAT = "dreamsound-musicnn"
FORMAT_VERSION = 1
#: The models the wheel has, and the (single) source both checkpoints come from.
MODEL_NAMES = ("MTT_musicnn", "MSD_musicnn")
WHEEL = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"

#: LevelDB table magic number (last 8 bytes of the file, little-endian).
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked CRC32C (4 bytes)
DT_FLOAT = 1
#: Checkpoint entries that are optimiser state, not model variables.
OPTIMISER_ONLY = ("beta1_power", "beta2_power")


class CheckpointError(ValueError):
    """A checkpoint or variables file that cannot be read or fails a check."""


# -------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), with LevelDB/TensorFlow's masking
# -------------------------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ 0x82F63B78 if value & 1 else value >> 1
        table.append(value)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data``: reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF.

    Table-driven, one byte per step: about 2-3 s for the 9.5 MB MTT data file in CPython,
    which is why only the tensors actually read are checked.
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's masked CRC (stored so that a CRC of data holding CRCs is not degenerate)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# -------------------------------------------------------------------------------------------
# Wire formats: varints, protobuf fields, SSTable blocks
# -------------------------------------------------------------------------------------------


def read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    """``(value, next position)`` of the base-128 varint at ``position``."""
    value, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise CheckpointError("truncated varint")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise CheckpointError("varint longer than 64 bits")


def parse_fields(message: bytes) -> dict[int, list[int | bytes]]:
    """Protobuf wire-format fields of ``message``: number -> values in order.

    Varints and fixed-width numbers come back as ints (unsigned), length-delimited fields as
    bytes. Groups (wire types 3/4) are not used by the bundle protos and are an error.
    """
    fields: dict[int, list[int | bytes]] = {}
    position = 0
    while position < len(message):
        key, position = read_varint(message, position)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, position = read_varint(message, position)
        elif wire == 1:
            value = int.from_bytes(message[position:position + 8], "little")
            position += 8
        elif wire == 2:
            length, position = read_varint(message, position)
            value = message[position:position + length]
            position += length
        elif wire == 5:
            value = int.from_bytes(message[position:position + 4], "little")
            position += 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} (field {number})")
        if position > len(message):
            raise CheckpointError(f"truncated protobuf field {number}")
        fields.setdefault(number, []).append(value)
    return fields


def _int(fields: dict[int, list[int | bytes]], number: int, default: int = 0) -> int:
    """A singular integer field's value (the last occurrence wins, as in protobuf)."""
    values = [v for v in fields.get(number, []) if isinstance(v, int)]
    return values[-1] if values else default


def _bytes(fields: dict[int, list[int | bytes]], number: int) -> list[bytes]:
    """Every occurrence of a length-delimited field."""
    return [v for v in fields.get(number, []) if isinstance(v, bytes)]


def read_block_handle(buffer: bytes, position: int) -> tuple[int, int, int]:
    """``(offset, size, next position)`` of a BlockHandle (two varint64s)."""
    offset, position = read_varint(buffer, position)
    size, position = read_varint(buffer, position)
    return offset, size, position


def read_block(table: bytes, offset: int, size: int, what: str) -> bytes:
    """The ``size`` content bytes at ``offset``, after checking the 5-byte trailer.

    The trailer (not counted in ``size``) is the compression type (0: none; the only kind
    checkpoints use) and the masked CRC32C of content + type byte.
    """
    end = offset + size + BLOCK_TRAILER_BYTES
    if end > len(table):
        raise CheckpointError(f"{what}: block at {offset} (+{size}) runs past the end of the "
                              f"file ({len(table)} bytes)")
    content = table[offset:offset + size]
    kind = table[offset + size]
    stored = int.from_bytes(table[offset + size + 1:end], "little")
    actual = mask_crc(crc32c(table[offset:offset + size + 1]))
    if stored != actual:
        raise CheckpointError(f"{what}: block CRC mismatch at offset {offset} (stored "
                              f"{stored:#010x}, computed {actual:#010x}): the .index file is "
                              "damaged")
    if kind != 0:
        raise CheckpointError(f"{what}: compressed block (type {kind}); only uncompressed "
                              "tables are supported")
    return content


def block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(key, value)`` records of one SSTable block, in order (prefix-compressed keys)."""
    if len(block) < 4:
        raise CheckpointError("block too short for its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise CheckpointError("block restart array larger than the block")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    position = 0
    while position < limit:
        shared, position = read_varint(block, position)
        own, position = read_varint(block, position)
        value_length, position = read_varint(block, position)
        if shared > len(key) or position + own + value_length > limit:
            raise CheckpointError("corrupt block entry")
        key = key[:shared] + block[position:position + own]
        position += own
        entries.append((key, block[position:position + value_length]))
        position += value_length
    return entries


def read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of a LevelDB-format SSTable file, in key order."""
    table = path.read_bytes()
    if len(table) < FOOTER_BYTES:
        raise CheckpointError(f"{path}: too short for an SSTable footer ({len(table)} bytes)")
    footer = table[-FOOTER_BYTES:]
    magic = int.from_bytes(footer[-8:], "little")
    if magic != TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (magic {magic:#x})")
    _, _, position = read_block_handle(footer, 0)  # metaindex: empty, unused
    index_offset, index_size, _ = read_block_handle(footer, position)
    index = read_block(table, index_offset, index_size, f"{path.name} index block")
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in block_entries(index):
        offset, size, _ = read_block_handle(handle, 0)
        entries += block_entries(read_block(table, offset, size, f"{path.name} data block"))
    return entries


# -------------------------------------------------------------------------------------------
# Tensor bundle
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's ``BundleEntryProto``: where its bytes are and their checksum.

    Attributes
    ----------
    dtype : int
        TensorFlow ``DataType`` enum (1 = float32).
    shape : tuple of int
        TensorFlow shape; its C-order bytes are stored.
    shard_id, offset, size : int
        Shard number, byte offset into that shard, byte count.
    crc32c : int
        Masked CRC32C of the bytes.
    """

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int

    @classmethod
    def parse(cls, name: str, message: bytes) -> BundleEntry:
        fields = parse_fields(message)
        if 7 in fields:
            raise CheckpointError(f"{name}: partitioned (sliced) tensors are not supported")
        shape_messages = _bytes(fields, 2)
        dims = _bytes(parse_fields(shape_messages[-1]), 2) if shape_messages else []
        shape = tuple(_int(parse_fields(dim), 1) for dim in dims)
        return cls(dtype=_int(fields, 1), shape=shape, shard_id=_int(fields, 3),
                   offset=_int(fields, 4), size=_int(fields, 5), crc32c=_int(fields, 6))


def checkpoint_files(source: str | Path) -> tuple[Path, str]:
    """``(folder, file-name prefix)`` of a checkpoint named by its prefix.

    ``MTT_musicnn/`` (or the folder ``MTT_musicnn``) means the hidden files
    ``MTT_musicnn/.index`` etc.; ``run/model.ckpt`` means ``run/model.ckpt.index`` etc.
    """
    text = str(source)
    path = Path(text)
    if text.endswith(("/", "\\")) or path.is_dir():
        return path, ""
    return path.parent, path.name


def read_bundle_entries(source: str | Path) -> tuple[dict[str, BundleEntry], int]:
    """The entries of a checkpoint's ``.index``: ``({name: entry}, num_shards)``."""
    folder, stem = checkpoint_files(source)
    index = folder / f"{stem}.index"
    if not index.is_file():
        raise CheckpointError(f"no checkpoint index at {index}")
    records = read_table(index)
    if not records or records[0][0] != b"":
        raise CheckpointError(f"{index}: the first key is not the bundle header")
    header = parse_fields(records[0][1])
    num_shards = _int(header, 1, 1)
    if _int(header, 2) != 0:
        raise CheckpointError(f"{index}: big-endian checkpoints are not supported")
    entries = {key.decode("utf-8"): BundleEntry.parse(key.decode("utf-8"), value)
               for key, value in records[1:]}
    return entries, num_shards


def is_model_variable(name: str) -> bool:
    """Model weights and batch-norm statistics, not Adam slots or its power accumulators."""
    return "/Adam" not in name and name not in OPTIMISER_ONLY


def read_checkpoint(source: str | Path, *, names: list[str] | None = None
                    ) -> dict[str, np.ndarray]:
    """Tensors of a TF1 checkpoint as float32 arrays in their TensorFlow shape.

    Parameters
    ----------
    source : str or Path
        The checkpoint prefix (see :func:`checkpoint_files`).
    names : list of str, optional
        Entries to read; default every model variable (:func:`is_model_variable`).

    Raises
    ------
    CheckpointError
        Missing files, a block or tensor CRC mismatch, a non-float32 entry, bytes out of range.
    """
    folder, stem = checkpoint_files(source)
    entries, num_shards = read_bundle_entries(source)
    wanted = sorted(names if names is not None else
                    [n for n in entries if is_model_variable(n)])
    shards: dict[int, bytes] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in wanted:
        if name not in entries:
            raise CheckpointError(f"checkpoint {source} has no entry {name!r}")
        entry = entries[name]
        if entry.dtype != DT_FLOAT:
            raise CheckpointError(f"{name}: dtype enum {entry.dtype}, only float32 (1) is read")
        if entry.shard_id not in shards:
            shard = folder / f"{stem}.data-{entry.shard_id:05d}-of-{num_shards:05d}"
            if not shard.is_file():
                raise CheckpointError(f"checkpoint data file missing: {shard}")
            shards[entry.shard_id] = shard.read_bytes()
        data = shards[entry.shard_id]
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != 4 * count or entry.offset + entry.size > len(data):
            raise CheckpointError(f"{name}: {entry.size} bytes at {entry.offset} do not hold a "
                                  f"float32 tensor of shape {entry.shape} in a {len(data)}-byte "
                                  "shard")
        raw = data[entry.offset:entry.offset + entry.size]
        actual = mask_crc(crc32c(raw))
        if actual != entry.crc32c:
            raise CheckpointError(f"{name}: tensor CRC mismatch (stored {entry.crc32c:#010x}, "
                                  f"computed {actual:#010x}): the checkpoint data is damaged")
        arrays[name] = np.frombuffer(raw, dtype="<f4").reshape(entry.shape).astype(np.float32)
    return arrays


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Model variables from an ``.npz`` keyed by TensorFlow name (optimiser entries dropped)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: np.asarray(archive[name], dtype=np.float32)
                for name in sorted(archive.files) if is_model_variable(name)}


def read_variables(source: str | Path) -> dict[str, np.ndarray]:
    """Model variables from a checkpoint prefix or an ``.npz``, checked against musicnn's."""
    variables = read_npz(source) if str(source).endswith(".npz") else read_checkpoint(source)
    check_variables(variables)
    return variables


def check_variables(variables: dict[str, np.ndarray]) -> None:
    """Raise :class:`CheckpointError` unless these are exactly musicnn's 64 variables (names
    and shapes as :data:`dreamsound.models.musicnn.VARIABLE_SHAPES`), all finite."""
    from dreamsound.errors import WeightsError
    from dreamsound.models.musicnn import check_variables as check_names_and_shapes

    try:
        check_names_and_shapes(variables)
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    bad = [n for n, a in sorted(variables.items()) if not np.isfinite(a).all()]
    if bad:
        raise CheckpointError(f"non-finite values in {bad[:4]}")


def safetensors_bytes(variables: dict[str, np.ndarray], name: str) -> bytes:
    """The safetensors file for ``variables`` (TF names and layouts, float32), with metadata
    naming the model, format and source.

    Written here rather than with ``safetensors.numpy.save``, whose header order (a Rust hash
    map) changes from run to run: this writer sorts the header, so the same weights always give
    the same bytes, and the shipped file's sha256 can be rebuilt and checked. The layout is the
    safetensors format: an 8-byte little-endian header length, the JSON header (padded with
    spaces to a multiple of 8 bytes), then the tensors' little-endian bytes in header order.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"name must be one of {MODEL_NAMES}, got {name!r}")
    metadata = {"format": WEIGHTS_FORMAT, "format_version": str(FORMAT_VERSION),
                "model": name, "source": f"{WHEEL} (sha256 {WHEEL_SHA256}), "
                f"musicnn/{name}/ TF1 checkpoint", "license": "ISC (see LICENSE-musicnn.md)",
                "layout": "TensorFlow names and shapes (conv kernels kh, kw, in, out)"}
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs: list[bytes] = []
    offset = 0
    for key in sorted(variables):
        blob = np.ascontiguousarray(variables[key], dtype="<f4").tobytes()
        header[key] = {"dtype": "F32", "shape": list(variables[key].shape),
                       "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def convert(source: str | Path, output: str | Path, name: str) -> dict[str, np.ndarray]:
    """Read ``source`` (checkpoint prefix or .npz) and write ``output`` (safetensors)."""
    variables = read_variables(source)
    data = safetensors_bytes(variables, name)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(output.name + ".tmp")
    temp.write_bytes(data)
    temp.replace(output)
    return variables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="checkpoint prefix (MTT_musicnn/) or .npz of variables")
    parser.add_argument("output", help="safetensors file to write")
    parser.add_argument("--name", required=True, choices=MODEL_NAMES,
                        help="which musicnn model these weights are (written to the metadata)")
    args = parser.parse_args(argv)
    try:
        variables = convert(args.source, args.output, args.name)
    except (CheckpointError, OSError) as exc:
        print(f"convert_musicnn: {exc}", file=sys.stderr)
        return 1
    count = sum(a.size for a in variables.values())
    print(json.dumps({"output": str(args.output), "variables": len(variables),
                      "parameters": int(count)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
