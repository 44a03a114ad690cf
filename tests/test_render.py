"""scripts/data/render_trainset.py: MIDI writing, clip plans, and a tiny real render."""

from __future__ import annotations

import csv
import hashlib
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dreamsound.data.irmas import IRMAS_CODES, parse_training_name, read_training_set
from scripts.data import render_trainset as render
from scripts.data import stk_source as stk

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "data" / "render_trainset.py"  # run as a file, as documented
FONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


@pytest.mark.parametrize(("value", "encoded"), [
    # Examples from the Standard MIDI File specification.
    (0x00, "00"), (0x40, "40"), (0x7F, "7F"), (0x80, "8100"), (0x2000, "C000"),
    (0x3FFF, "FF7F"), (0x4000, "818000"), (0x1FFFFF, "FFFF7F"), (0x200000, "81808000"),
    (0x0FFFFFFF, "FFFFFF7F"),
])
def test_variable_length_quantity(value, encoded):
    assert render._vlq(value) == bytes.fromhex(encoded)


def test_midi_file_structure():
    writer = render.MidiWriter(0.5)
    writer.program(0.0, 0, 40)
    writer.note(0.0, 1.0, 0, 60, 100)
    writer.note(1.0, 0.5, 0, 60, 90)   # re-struck: its note-on must follow the note-off
    data = render.midi_file_bytes(writer.events)
    assert data[:4] == b"MThd"
    assert struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, render.TICKS_PER_BEAT)
    assert data[14:18] == b"MTrk"
    assert struct.unpack(">I", data[18:22])[0] == len(data) - 22
    assert data.endswith(bytes([0x00, 0xFF, 0x2F, 0x00]))
    ordered = sorted(writer.events)
    kinds = [(e.tick, e.data[0] & 0xF0) for e in ordered]
    ticks_per_s = render.TICKS_PER_S
    assert kinds[0] == (round(0.5 * ticks_per_s), 0xC0)
    at_one = [k for t, k in kinds if t == round(1.5 * ticks_per_s)]
    assert at_one == [0x80, 0x90]


def test_plans_are_deterministic_and_in_range():
    a = render.plan_clip(7, "timgm6mb", "vio", 3, 0.4)
    b = render.plan_clip(7, "timgm6mb", "vio", 3, 0.4)
    c = render.plan_clip(8, "timgm6mb", "vio", 3, 0.4)
    assert render.midi_file_bytes(a.target_events) == render.midi_file_bytes(b.target_events)
    assert render.midi_file_bytes(a.target_events) != render.midi_file_bytes(c.target_events)
    for code in IRMAS_CODES:
        for index in range(6):
            plan = render.plan_clip(0, "fluidr3gm", code, index, 0.5)
            voices = {v.program: v for v in render.CLASS_VOICES[code]}
            assert plan.program in voices
            voice = voices[plan.program]
            pitches = [e.data[1] for e in plan.target_events if e.data[0] & 0xF0 == 0x90]
            assert pitches, f"{code} plan {index} plays no note"
            assert voice.low <= min(pitches) and max(pitches) <= voice.high, (code, plan.style)
            assert (plan.kind == "mix") == (plan.accomp_events is not None)
            tags = parse_training_name(plan.filename)
            assert tags.instrument == code and tags.drums == plan.drums


def test_plans_cover_articulations_and_mixtures():
    plans = [render.plan_clip(0, "fluidr3gm", code, i, 0.4) for code in IRMAS_CODES
             for i in range(20)]
    share = np.mean([p.kind == "mix" for p in plans])
    assert 0.3 < share < 0.5
    assert any(p.drums for p in plans)
    assert len({p.style for p in plans if p.code == "pia"}) >= 3
    assert {round(p.snr_db) for p in plans if p.snr_db is not None} <= set(range(2, 11))


def test_line_share_makes_polyphonic_leads_play_one_line_and_leaves_other_plans_alone():
    def notes(plan) -> list[tuple[int, int]]:
        return [(e.tick, e.data[1]) for e in plan.target_events if e.data[0] & 0xF0 == 0x90]

    for code in IRMAS_CODES:
        for index in range(8):
            plain = render.plan_clip(0, "fluidr3gm", code, index, 0.4)
            assert plain.style != "line"
            if code not in render.POLYPHONIC:  # the share draws nothing for them: same bytes
                same = render.plan_clip(0, "fluidr3gm", code, index, 0.4, line_share=1.0)
                assert (render.midi_file_bytes(same.target_events)
                        == render.midi_file_bytes(plain.target_events))
                continue
            line = render.plan_clip(0, "fluidr3gm", code, index, 0.4, line_share=1.0)
            assert line.style == "line"
            onsets = [tick for tick, _ in notes(line)]
            assert len(onsets) == len(set(onsets)), f"{code}: two notes start together"
    shares = [render.plan_clip(0, "timgm6mb", "pia", i, 0.4, line_share=0.5).style == "line"
              for i in range(60)]
    assert 0.3 < np.mean(shares) < 0.7


def _render(out: Path, seed: int, per_class: int, classes: list[str]) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--soundfonts", str(FONT),
                    "--per-class", str(per_class), "--seed", str(seed), "--mix-share", "0.5",
                    "--classes", *classes, "--workers", "2", "--quiet"], check=True, timeout=120)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.wav"))}


@pytest.mark.skipif(shutil.which("fluidsynth") is None,
                    reason="the `fluidsynth` program is not on PATH (apt install fluidsynth)")
@pytest.mark.skipif(not FONT.is_file(), reason=f"{FONT} missing (apt install timgm6mb-soundfont)")
def test_tiny_render(tmp_path):
    out = tmp_path / "set"
    _render(out, seed=5, per_class=1, classes=["vio", "pia"])
    excerpts = read_training_set(out)
    assert sorted(e.label for e in excerpts) == ["pia", "vio"]
    for excerpt in excerpts:
        info = sf.info(excerpt.path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == \
            (44100, 2, "PCM_16", 3 * 44100)
        audio, _ = sf.read(excerpt.path)
        assert 0.05 < np.abs(audio).max() <= 0.9  # normalised to -12..-1 dBFS, never clipped
    with open(out / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["class"] for r in rows) == ["pia", "vio"]
    assert {r["soundfont"] for r in rows} == {"timgm6mb"}
    assert {r["kind"] for r in rows} <= {"solo", "mix"}
    # Same seed, same bytes; another seed, other clips.
    again = tmp_path / "again"
    _render(again, seed=5, per_class=1, classes=["vio", "pia"])
    assert _digests(again) == _digests(out)
    other = tmp_path / "other"
    _render(other, seed=6, per_class=1, classes=["vio", "pia"])
    assert set(_digests(other).values()).isdisjoint(_digests(out).values())


def test_timidity_config_fills_missing_programs(tmp_path):
    source = tmp_path / "set.cfg"
    source.write_text("dir /somewhere\n\ndrumset 0\n 17 Drum_000/kick.pat\n\nbank 0\n\n"
                      " 0\tTone_000/000_Piano.pat amp=120\n16 Tone_000/016_Organ.pat # hammond\n"
                      "19 Tone_000/019_Church.pat\n")
    lines = render.timidity_config(source).splitlines()
    assert lines[:2] == [f"source {source}", "bank 0"]
    entries = {int(line.split()[0]): " ".join(line.split()[1:]) for line in lines[2:]}
    # Missing organ programs borrow the set's own organs; piano 1-2 its piano; drum-set
    # entries never count as bank-0 programs; programs with no stand-in stay out.
    assert entries == {1: "Tone_000/000_Piano.pat amp=120", 2: "Tone_000/000_Piano.pat amp=120",
                       17: "Tone_000/016_Organ.pat", 18: "Tone_000/016_Organ.pat",
                       20: "Tone_000/019_Church.pat"}


FREEPATS = Path("/etc/timidity/freepats.cfg")


@pytest.mark.skipif(shutil.which("timidity") is None or not FREEPATS.is_file(),
                    reason="needs `timidity` and Debian's freepats (apt install timidity freepats)")
def test_tiny_render_through_freepats(tmp_path):
    out = tmp_path / "freepats"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--soundfonts", "freepats",
                    "--per-class", "1", "--seed", "3", "--mix-share", "0.0", "--classes", "org",
                    "cel", "--workers", "2", "--quiet"], check=True, timeout=120)
    excerpts = read_training_set(out)
    assert sorted(e.label for e in excerpts) == ["cel", "org"]
    for excerpt in excerpts:
        assert excerpt.path.name.startswith("freepats-solo-")
        audio, rate = sf.read(excerpt.path)
        assert (rate, audio.shape) == (44100, (3 * 44100, 2))
        # Sound from the first to the last second: the slots were found where they were written.
        assert np.abs(audio[:22050]).max() > 1e-3 and np.abs(audio[-22050:]).max() > 1e-3


def test_unknown_soundfont_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "set"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--soundfonts",
                           "NoSuchFont", "--per-class", "1", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: soundfont 'NoSuchFont' not found")
    assert not out.exists()


def test_stk_scores_from_midi_stems():
    writer = render.MidiWriter(0.0)
    writer.reset_all()
    render.setup_channel(writer, np.random.default_rng(0), 0, 42)       # cello
    writer.note(0.5, 1.0, 0, 48, 100)
    writer.note(1.5, 0.5, 0, 48, 90)                                     # re-struck
    render.setup_channel(writer, np.random.default_rng(0), render.DRUM_CHANNEL, 0)
    writer.note(0.0, 0.1, render.DRUM_CHANNEL, 36, 110)
    channels = stk.channel_notes(writer.events, render.TICKS_PER_S)
    assert sorted(channels) == [0, render.DRUM_CHANNEL]   # controllers alone make no channel
    assert channels[0]["program"] == 42
    assert channels[0]["notes"] == [(0.5, "on", 48, 100), (1.5, "off", 48, 0),
                                    (1.5, "on", 48, 90), (2.0, "off", 48, 0)]
    score = stk.skini_score(channels[0]["notes"], [(2, 70)], end_s=5.6).splitlines()
    # Delta times in seconds; the note-off comes before the re-strike at the same time; a
    # final no-op note-off makes the output last to the end of the slot.
    assert score == ["ControlChange 0.0 1 2 70", "NoteOn 0.500000 1 48 100",
                     "NoteOff 1.000000 1 48 64", "NoteOn 0.000000 1 48 90",
                     "NoteOff 0.500000 1 48 64", "NoteOff 3.600000 1 0 0"]
    # Every program the renderer plays for a class STK renders has an STK instrument.
    for code, voices in render.CLASS_VOICES.items():
        if code not in stk.UNRENDERED_CLASSES:
            assert all(v.program in stk.PROGRAM_INSTRUMENTS for v in voices), code
    for voices in (render.STRINGS, render.EPIANO, render.BASSES):
        assert all(v.program in stk.PROGRAM_INSTRUMENTS for v in voices)


@pytest.mark.skipif(shutil.which("stk-demo") is None,
                    reason="needs STK's `stk-demo` program (apt install stk)")
def test_tiny_render_through_stk(tmp_path):
    def run(out: Path) -> None:
        subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--soundfonts", "stk",
                        "--per-class", "2", "--seed", "4", "--mix-share", "0.5", "--classes",
                        "cel", "gac", "pia", "--workers", "2", "--quiet"], check=True, timeout=120)

    out = tmp_path / "stk"
    run(out)
    excerpts = read_training_set(out)
    # STK has no acoustic piano: that class is left out, the others are rendered.
    assert sorted(e.label for e in excerpts) == ["cel", "cel", "gac", "gac"]
    for excerpt in excerpts:
        assert excerpt.path.name.startswith("stk-")
        audio, rate = sf.read(excerpt.path)
        assert (rate, audio.shape) == (44100, (3 * 44100, 2))
        assert 0.05 < np.abs(audio).max() <= 0.9
    # The plan (notes, instruments, controls) is deterministic by seed; STK's noise generators
    # seed themselves from the clock, so plucked strings and breath noise differ a little
    # between runs (and so does the peak the clip is normalised to): the same clips, at about
    # the same level, not the same bytes.
    again = tmp_path / "again"
    run(again)
    assert (out / "manifest.csv").read_text() == (again / "manifest.csv").read_text()
    for name in _digests(out):
        first, second = sf.read(out / name)[0], sf.read(again / name)[0]
        assert abs(20 * np.log10(np.std(first) / np.std(second))) < 3.0, name


def test_stk_with_only_piano_is_one_line_exit_2_and_writes_nothing(tmp_path):
    if shutil.which("stk-demo") is None:
        pytest.skip("needs STK's `stk-demo` program (apt install stk)")
    out = tmp_path / "set"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--soundfonts", "stk",
                           "--classes", "pia", "--per-class", "1", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: nothing to render: STK has no model for pia"
    assert not out.exists()
