"""Render ``examples/loop.wav``: a 4-bar, 8-second loop the project composes and renders itself.

The phrase (D minor, 120 bpm, 4/4) is written here note by note as a Standard MIDI File and
rendered by the ``fluidsynth`` command-line program with the FluidR3 General MIDI soundfont
(Debian package ``fluid-soundfont-gm``). It has a piano, an acoustic bass, a flute melody and
light drums, and no violin: ``dreamsound dream examples/loop.wav --target violin`` then has
something to add.

The reverb tail that rings past bar 4 is folded back onto the start, so the file loops without a
click. The result is mono, 22,050 Hz, 16-bit, peak -6 dBFS.

Usage::

    python -m scripts.data.render_loop                 # writes examples/loop.wav
    python -m scripts.data.render_loop --out /tmp/x.wav --soundfont /path/to/other.sf2
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 22050
BPM = 120
TICKS_PER_BEAT = 480
BEATS_PER_BAR = 4
BARS = 4
PEAK_DBFS = -6.0

NOTE_NUMBERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

#: General MIDI programs (0-based) and channels of the parts. Channel 10 (index 9) is drums.
PARTS = {"piano": (0, 0), "bass": (32, 1), "flute": (73, 2)}
DRUM_CHANNEL = 9
KICK, SNARE, CLOSED_HAT = 36, 38, 42


def note_number(name: str) -> int:
    """MIDI note number of a name like ``"A4"``, ``"Bb3"``, ``"F#5"`` (C4 = 60)."""
    letter, rest = name[0], name[1:]
    shift = 0
    while rest and rest[0] in "#b":
        shift += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    return 12 * (int(rest) + 1) + NOTE_NUMBERS[letter] + shift


def phrase() -> list[tuple[float, float, int, int, int]]:
    """The loop as ``(start_beat, length_beats, channel, note, velocity)`` events."""
    events: list[tuple[float, float, int, int, int]] = []
    # Piano: one seventh chord per bar, struck on beats 1 and 3 (half notes).
    chords = [["D3", "F3", "A3", "C4"], ["Bb2", "D3", "F3", "A3"],
              ["G2", "Bb2", "D3", "F3"], ["A2", "C#3", "E3", "G3"]]
    _, piano = PARTS["piano"]
    for bar, chord in enumerate(chords):
        for beat in (0.0, 2.0):
            for name in chord:
                events.append((bar * 4 + beat, 1.9, piano, note_number(name), 62))
    # Bass: root on 1, fifth on 3, a passing note on 4.
    roots = [("D2", "A2", "C3"), ("Bb1", "F2", "A2"), ("G1", "D2", "F2"), ("A1", "E2", "G2")]
    _, bass = PARTS["bass"]
    for bar, (root, fifth, passing) in enumerate(roots):
        events += [(bar * 4 + 0.0, 1.8, bass, note_number(root), 90),
                   (bar * 4 + 2.0, 0.9, bass, note_number(fifth), 80),
                   (bar * 4 + 3.0, 0.9, bass, note_number(passing), 75)]
    # Flute melody: (beat within the loop, length in beats, note).
    melody = [(0.0, 1.0, "A4"), (1.0, 0.5, "F4"), (1.5, 0.5, "G4"), (2.0, 1.0, "A4"),
              (3.0, 1.0, "C5"), (4.0, 2.0, "D5"), (6.0, 1.0, "C5"), (7.0, 1.0, "A4"),
              (8.0, 1.0, "Bb4"), (9.0, 0.5, "A4"), (9.5, 0.5, "G4"), (10.0, 1.0, "F4"),
              (11.0, 1.0, "G4"), (12.0, 1.0, "E4"), (13.0, 1.0, "G4"), (14.0, 2.0, "A4")]
    _, flute = PARTS["flute"]
    events += [(start, length * 0.95, flute, note_number(name), 84)
               for start, length, name in melody]
    # Drums: kick on 1 and 3, snare on 2 and 4, closed hi-hat on every eighth, all soft.
    for beat in range(BARS * BEATS_PER_BAR):
        drum = KICK if beat % 2 == 0 else SNARE
        events.append((float(beat), 0.25, DRUM_CHANNEL, drum, 70))
        for half in (0.0, 0.5):
            events.append((beat + half, 0.25, DRUM_CHANNEL, CLOSED_HAT, 40))
    return events


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(events: list[tuple[float, float, int, int, int]]) -> bytes:
    """A format-0 Standard MIDI File holding ``events`` at :data:`BPM`."""
    timed: list[tuple[int, int, bytes]] = []  # (tick, order, message); note-offs sort first
    for program, channel in PARTS.values():
        timed.append((0, 0, bytes([0xC0 | channel, program])))
    for start, length, channel, note, velocity in events:
        on = round(start * TICKS_PER_BEAT)
        off = round((start + length) * TICKS_PER_BEAT)
        timed.append((on, 2, bytes([0x90 | channel, note, velocity])))
        timed.append((off, 1, bytes([0x80 | channel, note, 0])))
    timed.sort(key=lambda item: (item[0], item[1]))
    tempo = 60_000_000 // BPM  # microseconds per beat
    track = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big")
    track += b"\x00\xff\x58\x04\x04\x02\x18\x08"  # 4/4
    now = 0
    for tick, _, message in timed:
        track += _vlq(tick - now) + message
        now = tick
    track += b"\x00\xff\x2f\x00"  # end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def render(soundfont: Path, out: Path) -> None:
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        sys.exit("fluidsynth is not on PATH (Debian/Ubuntu: apt install fluidsynth)")
    if not soundfont.is_file():
        sys.exit(f"soundfont {soundfont} not found (Debian/Ubuntu: apt install fluid-soundfont-gm)")
    with tempfile.TemporaryDirectory(prefix="dreamsound-loop-") as tmp:
        midi = Path(tmp) / "loop.mid"
        midi.write_bytes(midi_bytes(phrase()))
        wav = Path(tmp) / "loop.wav"
        subprocess.run([fluidsynth, "-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE),
                        "-F", str(wav), str(soundfont), str(midi)], check=True)
        stereo, rate = sf.read(wav, dtype="float64", always_2d=True)
    if rate != SAMPLE_RATE:
        sys.exit(f"fluidsynth wrote {rate} Hz, expected {SAMPLE_RATE}")
    mono = stereo.mean(axis=1)
    loop_samples = round(BARS * BEATS_PER_BAR * 60.0 / BPM * SAMPLE_RATE)
    loop = np.zeros(loop_samples)
    head = mono[:loop_samples]
    loop[:len(head)] = head
    # Fold the tail (notes ringing past the last bar) onto the start: seamless when looped.
    tail = mono[loop_samples:loop_samples * 2]
    loop[:len(tail)] += tail
    loop *= 10.0 ** (PEAK_DBFS / 20.0) / np.max(np.abs(loop))

    sys.path.insert(0, str(REPO))
    from dreamsound.audio import save_audio  # atomic write

    save_audio(out, loop.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {out} ({loop_samples / SAMPLE_RATE:.2f} s, {SAMPLE_RATE} Hz mono)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "examples" / "loop.wav")
    parser.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT)
    args = parser.parse_args()
    render(args.soundfont, args.out)


if __name__ == "__main__":
    main()
