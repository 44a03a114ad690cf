#!/usr/bin/env python
"""Which class programs of one SoundFont play the same recorded samples as another SoundFont.

A cross-soundfont fold only measures generalisation to an *unseen* sample set if the training
soundfonts do not contain the held-out one's recordings. GM soundfonts are often assembled from
one another, so this script checks it: it reads each SoundFont 2 file's sample headers and PCM
data, hashes every sample, follows each preset to the samples it plays (preset -> instrument ->
sample), and reports, for every program a class is rendered with (``render_trainset.CLASS_VOICES``),
how many of its samples are byte-identical to a sample anywhere in each other file::

    python -m scripts.data.soundfont_overlap /usr/share/sounds/sf2/FluidR3_GM.sf2 \\
        /usr/share/sounds/sf2/TimGM6mb.sf2 /usr/share/sounds/sf2/sf_GMbank.sf2 [--json]

Only exact copies are found: a sample that was resampled, trimmed or re-encoded counts as
different. The format facts (RIFF ``sfbk`` with ``sdta/smpl`` and the ``pdta`` records: ``phdr``
38 bytes, ``pbag``/``ibag`` 4, ``pgen``/``igen`` 4, ``inst`` 22, ``shdr`` 46; generator 41 is
``instrument``, 53 is ``sampleID``) are from the SoundFont 2.04 specification.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.data.render_trainset import CLASS_VOICES

GEN_INSTRUMENT = 41
GEN_SAMPLE_ID = 53
RECORD_SIZES = {"phdr": 38, "pbag": 4, "pgen": 4, "inst": 22, "ibag": 4, "igen": 4, "shdr": 46}


def _chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, payload offset, payload size) of the RIFF chunks between two offsets."""
    while start + 8 <= end:
        cid = data[start:start + 4]
        size = struct.unpack_from("<I", data, start + 4)[0]
        yield cid, start + 8, size
        start += 8 + size + (size & 1)  # chunks are padded to an even length


def preset_samples(path: Path) -> dict[tuple[int, int], tuple[str, set[str]]]:
    """``{(bank, program): (preset name, {md5 of each sample's PCM})}`` for one .sf2 file."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ValueError(f"{path} is not a SoundFont 2 file")
    parts: dict[str, bytes] = {}
    for cid, offset, size in _chunks(data, 12, len(data)):
        if cid == b"LIST":
            for sub, sub_offset, sub_size in _chunks(data, offset + 4, offset + size):
                parts[sub.decode("latin1")] = data[sub_offset:sub_offset + sub_size]

    missing = [name for name in (*RECORD_SIZES, "smpl") if name not in parts]
    if missing:
        raise ValueError(f"{path} is truncated or damaged: no {', '.join(missing)} chunk")

    def records(name: str) -> list[bytes]:
        size = RECORD_SIZES[name]
        blob = parts[name]
        return [blob[i:i + size] for i in range(0, len(blob) - size + 1, size)]

    def pairs(name: str) -> list[tuple[int, int]]:
        return [struct.unpack("<HH", r) for r in records(name)]

    phdr = [(r[:20].split(b"\0")[0].decode("latin1"), *struct.unpack("<HHH", r[20:26]))
            for r in records("phdr")]
    pbag, pgen, ibag, igen = pairs("pbag"), pairs("pgen"), pairs("ibag"), pairs("igen")
    inst_bag = [struct.unpack("<H", r[20:22])[0] for r in records("inst")]
    smpl = parts["smpl"]
    sample_hash = []
    for r in records("shdr"):
        start, end = struct.unpack("<II", r[20:28])  # in 16-bit sample frames
        sample_hash.append(hashlib.md5(smpl[2 * start:2 * end]).hexdigest())

    def instrument_samples(index: int) -> set[str]:
        found = set()
        for bag in range(inst_bag[index], inst_bag[index + 1]):
            for op, amount in igen[ibag[bag][0]:ibag[bag + 1][0]]:
                if op == GEN_SAMPLE_ID:
                    found.add(sample_hash[amount])
        return found

    out = {}
    for i in range(len(phdr) - 1):  # the last record is the terminal "EOP"
        name, program, bank, first_bag = phdr[i]
        hashes: set[str] = set()
        for bag in range(first_bag, phdr[i + 1][3]):
            for op, amount in pgen[pbag[bag][0]:pbag[bag + 1][0]]:
                if op == GEN_INSTRUMENT:
                    hashes |= instrument_samples(amount)
        out[(bank, program)] = (name, hashes)
    return out


def overlap_table(paths: Sequence[Path]) -> list[dict]:
    """One row per (soundfont, class program): its sample count and how many of those samples
    each other soundfont also holds."""
    fonts = {p.stem: preset_samples(p) for p in paths}
    everything = {name: set().union(*(h for _, h in presets.values()))
                  for name, presets in fonts.items()}
    rows = []
    for name, presets in fonts.items():
        for code, voices in CLASS_VOICES.items():
            for voice in voices:
                preset_name, hashes = presets.get((0, voice.program), ("(missing)", set()))
                shared = {other: len(hashes & everything[other])
                          for other in fonts if other != name}
                rows.append({"soundfont": name, "class": code, "program": voice.program,
                             "preset": preset_name, "samples": len(hashes), "shared": shared})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("soundfonts", type=Path, nargs="+", help=".sf2 files (two or more)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    if len(args.soundfonts) < 2:
        parser.error("give two or more .sf2 files")
    try:
        rows = overlap_table(args.soundfonts)
    except (OSError, ValueError, IndexError, struct.error) as exc:
        print(f"error: cannot read the soundfonts: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    others = sorted({o for r in rows for o in r["shared"]})
    print(f"{'soundfont':<14}{'class':<6}{'prog':>5}  {'preset':<22}{'samples':>8}  "
          + "  ".join(f"{'in ' + o:>14}" for o in others))
    for r in rows:
        cells = "  ".join(f"{r['shared'].get(o, '-'):>14}" if o != r["soundfont"]
                          else f"{'':>14}" for o in others)
        print(f"{r['soundfont']:<14}{r['class']:<6}{r['program']:>5}  {r['preset'][:21]:<22}"
              f"{r['samples']:>8}  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
