#!/usr/bin/env python
"""Which class presets of two soundfonts play the same recordings, judged by their sound.

``soundfont_overlap.py`` finds byte-identical samples in SoundFont 2 files. A ``.sf3`` file
stores its samples Ogg-coded, so a copied recording no longer matches byte for byte; this script
compares what the presets *play* instead. For every GM program a class is rendered with
(``render_trainset.CLASS_VOICES``) it plays a few single notes across the voice's range through
both soundfonts with fluidsynth (reverb and chorus off, so only the presets sound) and takes the
peak of the normalised cross-correlation of the two notes' first second. The same recording
played by two presets correlates at ~1 even under other envelopes or filters; two recordings of
the same instrument at the same pitch do not (their partials' phases and levels differ).
Measured against FluidR3_GM: MuseScore_General's copied presets have medians of 0.986-1.000
over four notes, and no preset of GeneralUser GS, A320U, TimGM6mb or sf_GMbank, nor MuseScore's
own recordings, exceeds 0.70. A program whose median is at least ``SAME_THRESHOLD`` is reported
as the same recordings::

    python -m scripts.data.preset_likeness /usr/share/sounds/sf2/FluidR3_GM.sf2 \\
        /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 [--classes pia tru] [--json]

Found with it: MuseScore_General's trumpet, flute, saxophones, organs, guitars, electric grand
piano (program 2) and voice "oohs" play FluidR3_GM's recordings, its violin partly (two of four
notes); its pianos (programs 0-1), cello, clarinet and choir "aahs" do not (its cello is
GeneralUser GS's). A copy that was altered -- made mono, filtered hard -- can fall under the
threshold (FluidR3Mono's cello against FluidR3_GM's: 0.67-0.94), so a median well above what
independent recordings of that instrument give (MuseScore's clarinet: 0.68, others' 0.14-0.41)
deserves a closer look (the model card, *Cross-soundfont generalisation*).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.data.render_trainset import (
    CLASS_CODES,
    CLASS_VOICES,
    SAMPLE_RATE,
    MidiWriter,
    find_soundfont,
    midi_file_bytes,
    synth_command,
)

SAME_THRESHOLD = 0.9   # median peak correlation from which two presets count as one recording
NOTE_FRACTIONS = (0.15, 0.4, 0.65, 0.9)  # where in the voice's range the compared notes sit
SLOT_S = 2.0           # each note starts a slot of its own ...
NOTE_S = 1.5           # ... is held this long ...
COMPARED_S = 1.0       # ... and its first second is compared


def peak_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Peak over all lags of the normalised cross-correlation of two signals (0 for silence):
    1 when one is a delayed, scaled copy of the other."""
    energy = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    if energy == 0.0:
        return 0.0
    n = len(a) + len(b)
    spectrum = np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n))
    return float(np.max(np.abs(np.fft.irfft(spectrum, n))) / energy)


def notes_of(program_range: tuple[int, int]) -> list[int]:
    """The MIDI notes compared for a voice sounding from ``low`` to ``high``."""
    low, high = program_range
    return [round(low + f * (high - low)) for f in NOTE_FRACTIONS]


def play(soundfont: Path, notes: Sequence[tuple[int, int]], workdir: Path) -> list[np.ndarray]:
    """Render ``(program, note)`` pairs one per slot through ``soundfont``; the first second of
    each note, mono, at 44.1 kHz."""
    events = []
    for slot, (program, note) in enumerate(notes):
        midi = MidiWriter(slot * SLOT_S)  # times are within the slot
        midi.reset_all()
        midi.program(0.0, 0, program)
        midi.note(0.01, NOTE_S, 0, note, 100)
        events += midi.events
    midi_path, wav_path = workdir / "notes.mid", workdir / "notes.wav"
    midi_path.write_bytes(midi_file_bytes(events))
    # The training renders' own fluidsynth command, with reverb and chorus switched off.
    command = synth_command("fluidsynth", soundfont, midi_path, wav_path, gain=0.5)
    command[1:1] = ["-R", "0", "-C", "0"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not wav_path.is_file():
        raise RuntimeError(f"fluidsynth failed on {soundfont}: {done.stderr.strip()[:200]}")
    audio, _ = sf.read(wav_path, dtype="float64", always_2d=True)
    size = round(COMPARED_S * SAMPLE_RATE)
    mono = np.pad(audio.mean(axis=1), (0, size))  # a short last slot still gives a full second
    starts = [round(slot * SLOT_S * SAMPLE_RATE) for slot in range(len(notes))]
    return [mono[start:start + size] for start in starts]


def compare(first: Path, second: Path, classes: Sequence[str] = CLASS_CODES) -> list[dict]:
    """Per class program: the notes compared, their peak correlations, the median and whether
    the two soundfonts play the same recordings there."""
    pairs = [(code, voice.program, note) for code in classes for voice in CLASS_VOICES[code]
             for note in notes_of((voice.low, voice.high))]
    notes = [(program, note) for _, program, note in pairs]
    with tempfile.TemporaryDirectory(prefix="preset_likeness_") as tmp:
        a = play(first, notes, Path(tmp))
        b = play(second, notes, Path(tmp))
    rows: dict[tuple[str, int], dict] = {}
    for (code, program, note), x, y in zip(pairs, a, b, strict=True):
        row = rows.setdefault((code, program), {"class": code, "program": program,
                                                "notes": [], "correlations": []})
        row["notes"].append(note)
        row["correlations"].append(round(peak_correlation(x, y), 3))
    for row in rows.values():
        row["median"] = statistics.median(row["correlations"])
        row["same_recordings"] = row["median"] >= SAME_THRESHOLD
    return list(rows.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("soundfonts", nargs=2, help="two soundfont names or paths (.sf2 / .sf3)")
    parser.add_argument("--classes", nargs="+", default=list(CLASS_CODES), choices=CLASS_CODES,
                        help="class codes whose programs are compared (default: all 11)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    if shutil.which("fluidsynth") is None:
        print("error: the `fluidsynth` command is not on PATH (apt install fluidsynth)",
              file=sys.stderr)
        return 2
    first, second = (find_soundfont(name) for name in args.soundfonts)
    if ".cfg" in (first.suffix, second.suffix):
        print("error: only SoundFont files (.sf2 / .sf3) can be compared, not a TiMidity++ "
              "patch set", file=sys.stderr)
        return 2
    rows = compare(first, second, args.classes)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{first.name} vs {second.name}: peak correlation of single notes "
          f"(same recordings from a median of {SAME_THRESHOLD})")
    for row in rows:
        verdict = "SAME" if row["same_recordings"] else "different"
        values = " ".join(f"{c:.3f}" for c in row["correlations"])
        print(f"  {row['class']} program {row['program']:3d}: {values}  median "
              f"{row['median']:.3f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
