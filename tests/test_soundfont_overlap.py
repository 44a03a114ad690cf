"""scripts/data/soundfont_overlap.py: finding the recorded samples two SoundFonts share."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from scripts.data import soundfont_overlap as overlap

SF2_DIR = Path("/usr/share/sounds/sf2")


def _chunk(cid: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return cid + struct.pack("<I", len(payload)) + payload + pad


def _name(text: str) -> bytes:
    return text.encode().ljust(20, b"\0")


def write_sf2(path: Path, presets: list[tuple[str, int, int]], samples: list[np.ndarray]) -> None:
    """A minimal SoundFont 2 file: preset i (name, program, sample index) plays instrument i,
    which plays one sample. Built from the SoundFont 2.04 record layouts."""
    pcm = b""
    shdr = b""
    for i, data in enumerate(samples):
        start = len(pcm) // 2
        pcm += data.astype("<i2").tobytes() + b"\0" * 92  # 46 zero frames after each sample
        end = start + len(data)
        shdr += _name(f"s{i}") + struct.pack("<IIIIIBbHH", start, end, start, end, 44100, 60,
                                             0, 0, 1)
    shdr += _name("EOS") + bytes(26)
    phdr = pbag = pgen = inst = ibag = igen = b""
    for i, (name, program, sample) in enumerate(presets):
        phdr += _name(name) + struct.pack("<HHHIII", program, 0, i, 0, 0, 0)
        pbag += struct.pack("<HH", i, 0)
        pgen += struct.pack("<HH", 41, i)           # instrument i
        inst += _name(f"inst{i}") + struct.pack("<H", i)
        ibag += struct.pack("<HH", i, 0)
        igen += struct.pack("<HH", 53, sample)      # sampleID
    n = len(presets)
    phdr += _name("EOP") + struct.pack("<HHHIII", 0, 0, n, 0, 0, 0)
    pbag += struct.pack("<HH", n, 0)
    pgen += bytes(4)
    inst += _name("EOI") + struct.pack("<H", n)
    ibag += struct.pack("<HH", n, 0)
    igen += bytes(4)
    pdta = b"pdta" + b"".join(_chunk(c, d) for c, d in [
        (b"phdr", phdr), (b"pbag", pbag), (b"pmod", bytes(10)), (b"pgen", pgen),
        (b"inst", inst), (b"ibag", ibag), (b"imod", bytes(10)), (b"igen", igen), (b"shdr", shdr)])
    body = (b"sfbk" + _chunk(b"LIST", b"INFO" + _chunk(b"ifil", struct.pack("<HH", 2, 1)))
            + _chunk(b"LIST", b"sdta" + _chunk(b"smpl", pcm)) + _chunk(b"LIST", pdta))
    path.write_bytes(_chunk(b"RIFF", body))


def test_shared_samples_are_found_per_program(tmp_path):
    rng = np.random.default_rng(0)
    x, y, z = (rng.integers(-3000, 3000, 500) for _ in range(3))
    write_sf2(tmp_path / "A.sf2", [("Violin", 40, 0), ("Cello", 42, 1)], [x, y])
    # B holds A's violin recording, but plays it as its cello; its violin is its own.
    write_sf2(tmp_path / "B.sf2", [("Violin", 40, 1), ("Cello", 42, 0)], [x, z])

    presets = overlap.preset_samples(tmp_path / "A.sf2")
    assert presets[(0, 40)][0] == "Violin" and len(presets[(0, 40)][1]) == 1

    rows = {(r["soundfont"], r["program"]): r
            for r in overlap.overlap_table([tmp_path / "A.sf2", tmp_path / "B.sf2"])}
    assert rows[("A", 40)]["shared"] == {"B": 1}
    assert rows[("A", 42)]["shared"] == {"B": 0}
    assert rows[("B", 40)]["shared"] == {"A": 0}
    assert rows[("B", 42)]["shared"] == {"A": 1}
    assert rows[("A", 71)]["preset"] == "(missing)" and rows[("A", 71)]["samples"] == 0


def test_not_a_soundfont_is_one_line_exit_2(tmp_path, capsys):
    bogus = tmp_path / "x.sf2"
    bogus.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    write_sf2(tmp_path / "ok.sf2", [("Violin", 40, 0)], [np.arange(100)])
    assert overlap.main([str(bogus), str(tmp_path / "ok.sf2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a SoundFont 2 file" in err and "\n" not in err
    truncated = tmp_path / "truncated.sf2"
    truncated.write_bytes((tmp_path / "ok.sf2").read_bytes()[:200])
    assert overlap.main([str(truncated), str(tmp_path / "ok.sf2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "truncated or damaged" in err and "\n" not in err


@pytest.mark.skipif(not all((SF2_DIR / f).is_file() for f in
                            ("FluidR3_GM.sf2", "TimGM6mb.sf2", "sf_GMbank.sf2")),
                    reason="the Debian GM soundfonts are not installed (fluid-soundfont-gm, "
                           "timgm6mb-soundfont, csound-soundfont)")
def test_debian_soundfonts():
    """The facts the model card's cross-soundfont section rests on: FluidR3_GM shares no sample
    with the other two, while TimGM6mb and sf_GMbank share their violin, cello and clarinet."""
    rows = overlap.overlap_table([SF2_DIR / "FluidR3_GM.sf2", SF2_DIR / "TimGM6mb.sf2",
                                  SF2_DIR / "sf_GMbank.sf2"])
    fluid = [r for r in rows if r["soundfont"] == "FluidR3_GM"]
    assert fluid and all(r["samples"] > 0 and not any(r["shared"].values()) for r in fluid)
    tim = {r["program"]: r for r in rows if r["soundfont"] == "TimGM6mb"}
    for program in (40, 42, 71):
        assert tim[program]["shared"]["sf_GMbank"] == tim[program]["samples"] > 0


GENERALUSER = Path("/usr/share/minuet/soundfonts/GeneralUser-v1.47.sf2")  # Debian minuet-data
A320U = SF2_DIR / "A320U.sf2"                                              # Debian denemo-data


@pytest.mark.skipif(not all(p.is_file() for p in (GENERALUSER, A320U, SF2_DIR / "FluidR3_GM.sf2")),
                    reason="GeneralUser GS (minuet-data), A320U (denemo-data) or FluidR3_GM "
                           "(fluid-soundfont-gm) is not installed")
def test_generaluser_and_a320u_are_independent_of_fluidr3():
    """Why the model card may train on these two for the FluidR3_GM fold: neither shares a single
    class sample with FluidR3_GM, and they share almost nothing with each other."""
    rows = overlap.overlap_table([SF2_DIR / "FluidR3_GM.sf2", GENERALUSER, A320U])
    for font in ("GeneralUser-v1.47", "A320U"):
        mine = [r for r in rows if r["soundfont"] == font]
        assert len(mine) == 26 and all(r["samples"] > 0 for r in mine)
        assert not any(r["shared"]["FluidR3_GM"] for r in mine)
    a320u = {r["program"]: r["shared"]["GeneralUser-v1.47"] for r in rows
             if r["soundfont"] == "A320U"}
    # One jazz-guitar sample and three choir samples, nothing else.
    assert {p: n for p, n in a320u.items() if n} == {26: 1, 52: 3}
