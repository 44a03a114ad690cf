#!/usr/bin/env python
"""Render an IRMAS-layout instrument data set from General MIDI soundfonts.

The real IRMAS data (Bosch, Janer, Fuhrmann & Herrera 2012) cannot be downloaded here and may not
be redistributed, so dreamsound's default instrument model is trained on clips this script renders:
generated MIDI phrases played by the ``fluidsynth`` command-line synthesiser through the GM
soundfonts that Debian packages (``fluid-soundfont-gm`` -> FluidR3_GM.sf2, ``timgm6mb-soundfont`` ->
TimGM6mb.sf2, ``csound-soundfont`` -> sf_GMbank.sf2).

Output (the IRMAS training layout, so ``dreamsound train`` reads it like the real thing)::

    OUT/<cls>/<soundfont>-<solo|mix>-<nnnn>__[<cls>][<dru|nod>][<genre>]<nnnn>__1.wav
    OUT/manifest.csv      one row per clip: class, soundfont, solo/mix, programs, SNR, seed

Each clip is 3 s, 44.1 kHz, 16-bit stereo, like IRMAS's training excerpts. A share of the clips
(``--mix-share``) are "predominant instrument" mixtures: the class's phrase plus a quieter
accompaniment in the same key and tempo (chords on another instrument, bass, GM drums on
channel 10, sometimes a counter-melody) mixed 2-10 dB below it, as IRMAS excerpts are.

How it works, and why it is fast: all the stems of a batch of clips go into *one* MIDI file, each
in its own 5.6 s slot (4.4 s of music, then a gap that lets release and reverb tails die; every
slot starts with All Sound Off and Reset All Controllers on every channel), so one ``fluidsynth``
process (which loads the soundfont once) renders ~32 stems. The float output is cut into slots;
a 3 s window starting 0.4-1.2 s into the music becomes the clip (IRMAS excerpts start mid-phrase).
Mixtures are mixed here, at a chosen signal-to-accompaniment ratio, then peak-normalised to a random
level and quantised to 16 bits (without dither, so the bytes are reproducible).

Determinism: each clip's MIDI comes from a random generator seeded by (seed, soundfont, class,
index), so the same options give the same MIDI and -- fluidsynth being sample-deterministic -- the
same wav files, whatever ``--workers`` is.

A fourth, independent sample set: ``--soundfonts freepats`` renders through the GUS patches of
Debian's ``freepats`` package with the ``timidity`` (TiMidity++) synthesiser instead (programs the
set lacks are played by a patch of the same family, see ``PATCH_FALLBACKS``). TiMidity++ is not
guaranteed sample-deterministic: a full re-render of a 2,200-clip set came out byte-identical, but
in one earlier check the flute clips differed between runs, about 28 dB below the clip.

A sample set with no recordings at all: ``--soundfonts stk`` plays the same MIDI through the
physical and FM models of STK, the Synthesis ToolKit (Debian's ``stk`` package, its ``stk-demo``
program; see ``scripts/data/stk_source.py``). It has no acoustic piano, so ``pia`` is skipped; its
plucked strings and breath noise are seeded from the clock, so re-renders differ slightly.

Two more independent GM soundfonts come with Debian inside other programs' data packages:
GeneralUser GS 1.47 (``minuet-data``, found as ``--soundfonts GeneralUser-v1.47``) and A320U
(``denemo-data``, ``--soundfonts A320U``). Neither shares a sample with FluidR3_GM.
Any other SoundFont 2 file can be given by path (``--soundfonts path/to/Font.sf2``); the model
card measures with one more, Merlin Silver, that way. ``scripts/data/soundfont_overlap.py`` tells
whether a new soundfont shares samples with the others (GM soundfonts often do).

Examples
--------
Training set for one soundfont (the shipped model used all three; see its MODEL_CARD.md)::

    python -m scripts.data.render_trainset --soundfonts FluidR3_GM --per-class 200 --seed 0 \\
        --mix-share 0.4 --workers 2 --out work_data/render/train/fluidr3gm

Held-out test clips (another seed), about half solo and half mixtures::

    python -m scripts.data.render_trainset --soundfonts TimGM6mb --per-class 40 --seed 1000 \\
        --mix-share 0.5 --workers 2 --out work_data/render/test/timgm6mb
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import soundfile as sf

if __package__ in (None, ""):  # run as a file, not with -m: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.data import stk_source

log = logging.getLogger("render_trainset")

# Where Debian puts SoundFonts: most in sounds/sf2; GeneralUser GS (package minuet-data) in
# minuet's own folder.
SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/minuet/soundfonts"))
TIMIDITY_DIR = Path("/etc/timidity")  # patch-set configurations (freepats.cfg)
DEFAULT_SOUNDFONTS = ("FluidR3_GM", "TimGM6mb", "sf_GMbank")
# --soundfonts stk: STK's physical models (scripts/data/stk_source.py), no soundfont
STK = Path("stk")

SAMPLE_RATE = 44100  # IRMAS excerpts are 44.1 kHz, 16-bit stereo
CLIP_S = 3.0
MUSIC_S = 4.4        # music written per stem; the clip window starts 0.4-1.2 s into it
SLOT_S = 5.6         # music + 1.2 s for release and reverb tails
TICKS_PER_BEAT = 480
MIDI_TEMPO_US = 500_000  # fixed 120 bpm in the file: 1 tick = 1/960 s; musical tempo is ours
TICKS_PER_S = TICKS_PER_BEAT * 1_000_000 / MIDI_TEMPO_US
STEMS_PER_BATCH = 32
DRUM_CHANNEL = 9      # GM percussion is MIDI channel 10

CLASS_CODES = ("cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi")
GENRES_WITH_DRUMS = ("pop_roc", "jaz_blu", "cou_fol", "lat_sou")

# --- the instruments ---------------------------------------------------------------------------
# GM programs per class (0-based) with the sounding MIDI range each program is written in. Ranges
# follow the instruments' real compasses, trimmed at the extremes that players rarely use.


@dataclass(frozen=True)
class Voice:
    program: int
    low: int
    high: int
    weight: float = 1.0


CLASS_VOICES: dict[str, tuple[Voice, ...]] = {
    "cel": (Voice(42, 36, 76),),                                   # C2-E5
    "cla": (Voice(71, 50, 89),),                                   # D3-F6
    "flu": (Voice(73, 60, 96),),                                   # C4-C7
    "gac": (Voice(24, 40, 79), Voice(25, 40, 79)),                 # nylon, steel: E2-G5
    "gel": (Voice(26, 40, 84), Voice(27, 40, 84), Voice(28, 40, 76),
            Voice(29, 40, 84), Voice(30, 40, 84)),                 # jazz, clean, muted, od, dist
    "org": (Voice(16, 36, 88), Voice(17, 36, 88), Voice(18, 36, 88),
            Voice(19, 36, 88), Voice(20, 36, 88, 0.6)),            # drawbar .. church, reed
    "pia": (Voice(0, 33, 100, 2.0), Voice(1, 33, 100), Voice(2, 33, 100, 0.7)),
    "sax": (Voice(64, 56, 87), Voice(65, 49, 81, 1.5), Voice(66, 44, 76, 1.5),
            Voice(67, 36, 69, 0.7)),                               # soprano, alto, tenor, bari
    "tru": (Voice(56, 54, 82),),                                   # F#3-Bb5
    "vio": (Voice(40, 55, 93),),                                   # G3-A6
    "voi": (Voice(52, 48, 77, 1.5), Voice(53, 48, 77)),            # choir aahs, voice oohs
}
POLYPHONIC = {"pia", "gac", "gel", "org"}
# Sustained instruments get vibrato (modulation wheel) and expression swells.
SUSTAINED = {"cel", "cla", "flu", "org", "sax", "tru", "vio", "voi"}

# Accompaniment instruments: the class voices plus strings, electric piano and basses.
STRINGS = (Voice(48, 48, 84), Voice(49, 48, 84))
EPIANO = (Voice(4, 40, 84), Voice(5, 40, 84))
BASSES = (Voice(32, 28, 52), Voice(33, 28, 55), Voice(34, 28, 55), Voice(35, 28, 52))

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
MELODY_SCALES = {"major": ("major", "major", "mixolydian", "major_pentatonic"),
                 "minor": ("minor", "minor", "dorian", "harmonic_minor", "minor_pentatonic",
                           "blues")}
# Chord progressions as scale degrees (0 = tonic) of the mode's diatonic triads.
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0), (1, 4, 0, 0), (0, 3, 0, 4),
                (5, 3, 0, 4), (0, 0, 3, 4), (0, 4, 3, 3), (3, 4, 0, 5))


# --- MIDI --------------------------------------------------------------------------------------
@dataclass(order=True)
class MidiEvent:
    """One channel or meta event at an absolute tick; ``order`` breaks ties at equal ticks
    (resets, then controllers/programs, then note-offs before note-ons, so a re-struck pitch
    is not cut by its own previous note-off)."""

    tick: int
    order: int
    data: bytes = field(compare=False)


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, high bit = more follows)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def midi_file_bytes(events: Sequence[MidiEvent]) -> bytes:
    """A format-0 Standard MIDI File holding ``events`` (sorted here), 480 ticks per beat."""
    track = io.BytesIO()
    tempo = MIDI_TEMPO_US.to_bytes(3, "big")
    track.write(_vlq(0) + bytes([0xFF, 0x51, 0x03]) + tempo)
    last = 0
    for event in sorted(events):
        track.write(_vlq(event.tick - last) + event.data)
        last = event.tick
    track.write(_vlq(0) + bytes([0xFF, 0x2F, 0x00]))  # end of track
    body = track.getvalue()
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(body)) + body


class MidiWriter:
    """Collects events in seconds for one stem, placed at a slot offset in the batch file."""

    def __init__(self, offset_s: float):
        self.offset_s = offset_s
        self.events: list[MidiEvent] = []

    def _tick(self, t: float) -> int:
        return round((self.offset_s + max(0.0, t)) * TICKS_PER_S)

    def control(self, t: float, channel: int, number: int, value: int, order: int = 1) -> None:
        self.events.append(MidiEvent(self._tick(t), order,
                                     bytes([0xB0 | channel, number, int(np.clip(value, 0, 127))])))

    def program(self, t: float, channel: int, program: int) -> None:
        self.events.append(MidiEvent(self._tick(t), 1, bytes([0xC0 | channel, program])))

    def note(self, start: float, duration: float, channel: int, pitch: int, velocity: int) -> None:
        if not 0 <= pitch <= 127 or start >= MUSIC_S:
            return
        end = min(start + max(duration, 0.03), MUSIC_S)
        velocity = int(np.clip(velocity, 1, 127))
        on, off = bytes([0x90 | channel, pitch, velocity]), bytes([0x80 | channel, pitch, 0])
        self.events.append(MidiEvent(self._tick(start), 3, on))
        self.events.append(MidiEvent(self._tick(end), 2, off))

    def reset_all(self) -> None:
        """All Sound Off + Reset All Controllers on every channel at the slot start."""
        for channel in range(16):
            self.control(0.0, channel, 120, 0, order=0)
            self.control(0.0, channel, 121, 0, order=0)


# --- music ---------------------------------------------------------------------------------------
@dataclass
class Song:
    """The shared musical context of a clip: key, mode, tempo, harmony."""

    tonic: int            # pitch class 0-11
    mode: str             # "major" / "minor"
    melody_scale: str
    bpm: float
    beats_per_bar: int
    chords: list[tuple[float, list[int]]]  # (start in s, triad pitch classes, root first)

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    def chord_at(self, t: float) -> list[int]:
        current = self.chords[0][1]
        for start, pcs in self.chords:
            if start <= t + 1e-6:
                current = pcs
        return current

    def scale_pitches(self, low: int, high: int, scale: str | None = None) -> list[int]:
        steps = SCALES[scale or self.melody_scale]
        return [p for p in range(low, high + 1) if (p - self.tonic) % 12 in steps]


def make_song(rng: np.random.Generator) -> Song:
    mode = "major" if rng.random() < 0.55 else "minor"
    beats_per_bar = 3 if rng.random() < 0.15 else 4
    bpm = float(rng.uniform(62, 168))
    scale = SCALES[mode]
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    # Slow songs change chord every bar, fast ones every bar too but bars are short: the harmony
    # moves 1-4 times in the 4.4 s written.
    bar = beats_per_bar * 60.0 / bpm
    chords = []
    for i in range(int(np.ceil(MUSIC_S / bar)) + 1):
        degree = progression[i % len(progression)]
        triad = [scale[(degree + k) % 7] for k in (0, 2, 4)]
        chords.append((i * bar, triad))
    tonic = int(rng.integers(12))
    chords = [(t, [(pc + tonic) % 12 for pc in pcs]) for t, pcs in chords]
    melody_scale = str(rng.choice(MELODY_SCALES[mode]))
    return Song(tonic, mode, melody_scale, bpm, beats_per_bar, chords)


def pick_voice(rng: np.random.Generator, voices: Sequence[Voice]) -> Voice:
    weights = np.array([v.weight for v in voices], dtype=float)
    return voices[int(rng.choice(len(voices), p=weights / weights.sum()))]


def setup_channel(midi: MidiWriter, rng: np.random.Generator, channel: int, program: int, *,
                  pan_spread: int = 20, sustained: bool = False) -> None:
    """Program, volume, pan, reverb and chorus sends (and vibrato for sustained sounds)."""
    if channel != DRUM_CHANNEL:
        midi.control(0.0, channel, 0, 0)        # bank 0: General MIDI melodic bank
        midi.program(0.0, channel, program)
    midi.control(0.0, channel, 7, 100)
    midi.control(0.0, channel, 10, 64 + int(rng.integers(-pan_spread, pan_spread + 1)))
    midi.control(0.0, channel, 91, int(rng.integers(0, 90)))   # reverb send
    midi.control(0.0, channel, 93, int(rng.integers(0, 50)))   # chorus send
    midi.control(0.0, channel, 11, 127)
    if sustained:
        # Modulation wheel = vibrato depth in the GM soundfonts' default modulators.
        midi.control(0.0, channel, 1, int(rng.choice([0, 0, 20, 40, 60, 80])))


def expression_swells(midi: MidiWriter, rng: np.random.Generator, channel: int) -> None:
    """Slow expression (CC11) curves: crescendo/decrescendo variety for sustained instruments."""
    if rng.random() < 0.5:
        return
    points = np.sort(rng.uniform(0, MUSIC_S, size=int(rng.integers(2, 5))))
    level = rng.uniform(70, 127)
    for start, end in zip(np.r_[0.0, points], np.r_[points, MUSIC_S]):
        target = rng.uniform(60, 127)
        for t in np.arange(start, end, 0.08):
            value = level + (target - level) * (t - start) / max(end - start, 1e-3)
            midi.control(float(t), channel, 11, int(value))
        level = target


def articulation(rng: np.random.Generator) -> tuple[str, float]:
    """Name and duration factor (sounding fraction of the written value)."""
    name = str(rng.choice(["legato", "normal", "normal", "staccato"], p=[0.3, 0.25, 0.25, 0.2]))
    factor = {"legato": rng.uniform(0.95, 1.05), "normal": rng.uniform(0.75, 0.9),
              "staccato": rng.uniform(0.3, 0.55)}[name]
    return name, float(factor)


def melody(midi: MidiWriter, rng: np.random.Generator, song: Song, channel: int, low: int,
           high: int, *, velocity: float, density: float = 1.0, start: float = 0.0) -> None:
    """A monophonic line: a random walk over the scale inside a 1-1.5 octave window of the range,
    leaning to chord tones on beats, with rhythm, dynamics and articulation variety."""
    width = int(rng.integers(12, 19))
    centre = int(rng.integers(low + width // 2, max(low + width // 2 + 1, high - width // 2 + 1)))
    pitches = song.scale_pitches(max(low, centre - width // 2), min(high, centre + width // 2))
    if len(pitches) < 3:
        pitches = song.scale_pitches(low, high)
    _, factor = articulation(rng)
    values = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    slow = song.bpm < 90
    weights = (np.array([0.1, 0.35, 0.1, 0.3, 0.05, 0.08, 0.02]) if slow else
               np.array([0.2, 0.4, 0.05, 0.2, 0.05, 0.08, 0.02]))
    weights[:2] *= density   # density > 1: more short notes; < 1: more long ones
    weights[-3:] /= density
    weights /= weights.sum()
    index = int(rng.integers(len(pitches)))
    t = start
    contour_rate = rng.uniform(-8, 8)  # dB-ish velocity drift per second: phrase dynamics
    rest_p = rng.uniform(0.0, 0.12)
    while t < MUSIC_S:
        value = float(rng.choice(values, p=weights)) * song.beat
        if rng.random() < rest_p and t > start:
            t += value
            continue
        step = int(rng.choice([-4, -3, -2, -1, 0, 1, 2, 3, 4],
                              p=[0.03, 0.05, 0.15, 0.24, 0.06, 0.24, 0.15, 0.05, 0.03]))
        index = int(np.clip(index + step, 0, len(pitches) - 1))
        if abs(t / song.beat - round(t / song.beat)) < 1e-3 and rng.random() < 0.5:
            chord = song.chord_at(t)  # lean to a chord tone on the beat
            near = [i for i, p in enumerate(pitches) if p % 12 in chord]
            if near:
                index = min(near, key=lambda i: abs(i - index))
        vel = velocity + contour_rate * t + rng.normal(0, 7)
        if abs((t / song.beat) % song.beats_per_bar) < 1e-3:
            vel += 8  # downbeat accent
        midi.note(t, value * factor, channel, pitches[index], int(vel))
        t += value


def voicing(chord: list[int], low: int, high: int, n_notes: int, rng: np.random.Generator,
            *, bass: bool = True) -> list[int]:
    """``n_notes`` chord tones stacked upwards from a random register inside [low, high]."""
    root = chord[0]
    base = int(rng.integers(low, max(low + 1, high - 14)))
    notes = []
    if bass:
        notes.append(base + (root - base) % 12)
    p = notes[0] + 1 if notes else base
    while len(notes) < n_notes and p <= high:
        if p % 12 in chord:
            notes.append(p)
            p += int(rng.integers(2, 5))
        else:
            p += 1
    return notes or [base + (root - base) % 12]


def block_chords(midi: MidiWriter, rng: np.random.Generator, song: Song, channel: int, low: int,
                 high: int, *, velocity: float, n_notes: tuple[int, int] = (3, 5),
                 pedal: bool = False) -> None:
    """Chords re-struck on a rhythm pattern (whole/half/quarter/syncopated)."""
    pattern = [[0.0], [0.0, 2.0], [0.0, 1.0, 2.0, 3.0], [0.0, 1.5, 3.0], [0.0, 2.5],
               [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]][int(rng.integers(6))]
    _, factor = articulation(rng)
    bar = song.beats_per_bar * song.beat
    t_bar = 0.0
    while t_bar < MUSIC_S:
        chord = song.chord_at(t_bar)
        notes = voicing(chord, low, high, int(rng.integers(*n_notes)), rng)
        hits = [b for b in pattern if b < song.beats_per_bar]
        for i, b in enumerate(hits):
            t = t_bar + b * song.beat
            nxt = hits[i + 1] if i + 1 < len(hits) else song.beats_per_bar
            dur = (nxt - b) * song.beat * factor
            vel = velocity + rng.normal(0, 6) + (6 if b == 0 else 0)
            for n in notes:
                midi.note(t + rng.uniform(0, 0.012), dur, channel, n, int(vel + rng.normal(0, 4)))
        if pedal:
            midi.control(t_bar + 0.05, channel, 64, 127)
            midi.control(t_bar + bar - 0.03, channel, 64, 0)
        t_bar += bar


def arpeggio(midi: MidiWriter, rng: np.random.Generator, song: Song, channel: int, low: int,
             high: int, *, velocity: float, pedal: bool = False) -> None:
    """Broken chords (piano left hand, finger-picked guitar)."""
    subdivision = float(rng.choice([0.5, 0.5, 0.25, 1 / 3])) if song.bpm < 130 else 0.5
    shape = str(rng.choice(["up", "updown", "alberti", "random"]))
    bar = song.beats_per_bar * song.beat
    t = 0.0
    step = 0
    chord: list[int] = []
    notes: list[int] = []
    while t < MUSIC_S:
        if song.chord_at(t) != chord:  # new voicing at each chord change
            chord = song.chord_at(t)
            notes = voicing(chord, low, high, int(rng.integers(3, 6)), rng)
        if shape == "up":
            pitch = notes[step % len(notes)]
        elif shape == "updown":
            cycle = notes + notes[-2:0:-1]
            pitch = cycle[step % len(cycle)]
        elif shape == "alberti":
            order = [0, len(notes) - 1, min(1, len(notes) - 1), len(notes) - 1]
            pitch = notes[order[step % 4]]
        else:
            pitch = notes[int(rng.integers(len(notes)))]
        ring = subdivision * song.beat * float(rng.uniform(1.0, 3.0))  # let notes ring over
        midi.note(t, ring, channel, pitch, int(velocity + rng.normal(0, 7)))
        step += 1
        t += subdivision * song.beat
    if pedal:
        for t_bar in np.arange(0.0, MUSIC_S, bar):
            midi.control(float(t_bar) + 0.05, channel, 64, 127)
            midi.control(float(t_bar + bar) - 0.03, channel, 64, 0)


def strum(midi: MidiWriter, rng: np.random.Generator, song: Song, channel: int, low: int,
          high: int, *, velocity: float, power: bool = False) -> None:
    """Guitar strumming: 4-6 note voicings (or power chords) spread 5-30 ms, down/up strokes."""
    pattern = [[(0, "d"), (1, "d"), (2, "d"), (3, "d")],
               [(0, "d"), (1, "d"), (1.5, "u"), (2.5, "u"), (3, "d"), (3.5, "u")],
               [(0, "d"), (0.5, "u"), (1, "d"), (1.5, "u"), (2, "d"), (2.5, "u"), (3, "d"),
                (3.5, "u")],
               [(0, "d"), (2, "d")],
               [(0, "d"), (1.5, "d"), (3, "d")]][int(rng.integers(5))]
    mute = rng.random() < 0.3  # palm-muted: short notes
    bar = song.beats_per_bar * song.beat
    t_bar = 0.0
    while t_bar < MUSIC_S:
        chord = song.chord_at(t_bar)
        if power:
            root = low + (chord[0] - low) % 12  # lowest root in range: low .. low + 11
            notes = [n for n in (root, root + 7, root + 12) if n <= high]
        else:
            notes = voicing(chord, low, min(high, low + 26), int(rng.integers(4, 7)), rng)
        hits = [(b, d) for b, d in pattern if b < song.beats_per_bar]
        spread = rng.uniform(0.005, 0.03)
        for i, (b, direction) in enumerate(hits):
            t = t_bar + b * song.beat
            nxt = hits[i + 1][0] if i + 1 < len(hits) else song.beats_per_bar
            dur = (nxt - b) * song.beat * (0.35 if mute else 0.98)
            order = notes if direction == "d" else notes[::-1]
            vel = velocity + rng.normal(0, 6) - (10 if direction == "u" else 0)
            for k, n in enumerate(order):
                midi.note(t + k * spread, dur, channel, n, int(vel + rng.normal(0, 4)))
        t_bar += bar


def riff(midi: MidiWriter, rng: np.random.Generator, song: Song, channel: int, low: int,
         high: int, *, velocity: float) -> None:
    """A repeated one-bar single-note figure in the low register (rock/funk guitar, bass-like)."""
    scale = song.scale_pitches(low, min(high, low + 17), "minor_pentatonic"
                               if song.mode == "minor" else "major_pentatonic")
    cell = [int(rng.integers(len(scale))) for _ in range(int(rng.choice([4, 6, 8])))]
    sub = 0.5 if song.bpm > 80 else 0.25
    t, k = 0.0, 0
    while t < MUSIC_S:
        if rng.random() > 0.1:
            midi.note(t, sub * song.beat * 0.6, channel, scale[cell[k % len(cell)]],
                      int(velocity + rng.normal(0, 6)))
        t += sub * song.beat
        k += 1


def bass_line(midi: MidiWriter, rng: np.random.Generator, song: Song, channel: int,
              voice: Voice, *, velocity: float) -> None:
    """Roots and fifths on the beats (walking-ish at times)."""
    style = str(rng.choice(["roots", "root_fifth", "eighths", "walk"]))
    sub = 0.5 if style == "eighths" else 1.0
    t, k = 0.0, 0
    while t < MUSIC_S:
        chord = song.chord_at(t)
        root = voice.low + (chord[0] - voice.low) % 12
        if style == "root_fifth" and k % 2:
            pitch = root + 7
        elif style == "walk":
            pitch = song.scale_pitches(root, root + 9)[k % 4] if k % 4 else root
        else:
            pitch = root
        midi.note(t, sub * song.beat * 0.9, channel, min(pitch, voice.high),
                  int(velocity + rng.normal(0, 6)))
        t += sub * song.beat
        k += 1


def drums(midi: MidiWriter, rng: np.random.Generator, song: Song, *, velocity: float) -> str:
    """A GM drum groove on channel 10; returns its style name."""
    style = str(rng.choice(["rock", "pop", "jazz", "latin", "shuffle"]))
    beats = song.beats_per_bar
    t_beat = 0.0
    n_beats = int(np.ceil(MUSIC_S / song.beat))
    for b in range(n_beats):
        t = t_beat
        pos = b % beats
        swing = 2 / 3 if style in ("jazz", "shuffle") else 0.5
        if style in ("rock", "pop", "shuffle"):
            if pos in (0, 2):
                midi.note(t, 0.1, DRUM_CHANNEL, 36, int(velocity + 10 + rng.normal(0, 5)))
            if style == "pop" and pos == 2:
                midi.note(t + 0.5 * song.beat, 0.1, DRUM_CHANNEL, 36,
                          int(velocity + rng.normal(0, 5)))
            if pos in (1, 3):
                midi.note(t, 0.1, DRUM_CHANNEL, 38, int(velocity + 5 + rng.normal(0, 5)))
            hat = 46 if rng.random() < 0.05 else 42
            midi.note(t, 0.05, DRUM_CHANNEL, hat, int(velocity - 10 + rng.normal(0, 5)))
            midi.note(t + swing * song.beat, 0.05, DRUM_CHANNEL, 42,
                      int(velocity - 18 + rng.normal(0, 5)))
        elif style == "jazz":
            midi.note(t, 0.2, DRUM_CHANNEL, 51, int(velocity - 5 + rng.normal(0, 5)))
            if pos % 2:
                midi.note(t + swing * song.beat, 0.1, DRUM_CHANNEL, 51,
                          int(velocity - 15 + rng.normal(0, 5)))
                midi.note(t, 0.05, DRUM_CHANNEL, 44, int(velocity - 15 + rng.normal(0, 5)))
            if rng.random() < 0.2:
                midi.note(t, 0.1, DRUM_CHANNEL, 38, int(velocity - 20 + rng.normal(0, 5)))
        else:  # latin: clave-ish rim clicks, congas, shaker
            midi.note(t, 0.05, DRUM_CHANNEL, 70, int(velocity - 15 + rng.normal(0, 5)))
            midi.note(t + 0.5 * song.beat, 0.05, DRUM_CHANNEL, 70,
                      int(velocity - 20 + rng.normal(0, 5)))
            if pos in (0, 2):
                midi.note(t, 0.1, DRUM_CHANNEL, 36, int(velocity + rng.normal(0, 5)))
            midi.note(t + 0.5 * song.beat * (pos % 2), 0.1, DRUM_CHANNEL,
                      int(rng.choice([62, 63, 64])), int(velocity - 5 + rng.normal(0, 5)))
            if pos == 1:
                midi.note(t, 0.05, DRUM_CHANNEL, 37, int(velocity - 10 + rng.normal(0, 5)))
        if pos == 0 and b > 0 and rng.random() < 0.15:
            midi.note(t, 0.5, DRUM_CHANNEL, 49, int(velocity + rng.normal(0, 5)))
        t_beat += song.beat
    return style


def instrument_part(midi: MidiWriter, rng: np.random.Generator, song: Song, code: str,
                    voice: Voice, channel: int, *, velocity: float, lead: bool,
                    line_only: bool = False) -> str:
    """Play class ``code`` on ``channel``; returns the style used. ``lead``: the part is the
    predominant (or solo) one, so polyphonic instruments may also carry the melody.
    ``line_only``: a polyphonic instrument plays a single melodic line, nothing else (how a
    phrase built from one-note samples sounds)."""
    setup_channel(midi, rng, channel, voice.program, sustained=code in SUSTAINED,
                  pan_spread=20 if lead else 50)
    if code in SUSTAINED and code != "org":
        expression_swells(midi, rng, channel)
    low, high = voice.low, voice.high
    if line_only and code in POLYPHONIC:
        melody(midi, rng, song, channel, max(low, 48), high, velocity=velocity,
               density=float(rng.uniform(0.6, 1.6)))
        return "line"
    if code not in POLYPHONIC:
        melody(midi, rng, song, channel, low, high, velocity=velocity,
               density=float(rng.uniform(0.6, 1.6)))
        return "melody"
    if code == "pia":
        style = str(rng.choice(["melody+chords", "melody+arpeggio", "chords", "arpeggio"],
                               p=[0.35, 0.25, 0.2, 0.2] if lead else [0.0, 0.0, 0.5, 0.5]))
        pedal = rng.random() < 0.6
        split = int(rng.integers(55, 62))
        if style.startswith("melody"):
            melody(midi, rng, song, channel, split + 2, min(high, split + 30),
                   velocity=velocity + 6, density=float(rng.uniform(0.8, 1.6)))
            accomp_range = (max(low, split - 24), split)
        else:
            accomp_range = (max(low, 36), min(high, 84))
        if style.endswith("chords"):
            block_chords(midi, rng, song, channel, *accomp_range, velocity=velocity - 8,
                         pedal=pedal)
        else:
            arpeggio(midi, rng, song, channel, *accomp_range, velocity=velocity - 6, pedal=pedal)
        return style
    if code == "gac":
        style = str(rng.choice(["strum", "fingerpick", "melody"],
                               p=[0.45, 0.35, 0.2] if lead else [0.6, 0.4, 0.0]))
        if style == "strum":
            strum(midi, rng, song, channel, low, high, velocity=velocity)
        elif style == "fingerpick":
            arpeggio(midi, rng, song, channel, low, min(high, low + 28), velocity=velocity)
        else:
            melody(midi, rng, song, channel, low + 12, high, velocity=velocity)
        return style
    if code == "gel":
        if voice.program in (29, 30):  # overdrive / distortion
            style = str(rng.choice(["power", "lead", "riff"], p=[0.45, 0.35, 0.2] if lead
                                   else [0.6, 0.0, 0.4]))
        elif voice.program == 28:      # muted
            style = str(rng.choice(["riff", "strum"]))
        else:                          # jazz / clean
            style = str(rng.choice(["chords", "strum", "arpeggio", "lead"],
                                   p=[0.25, 0.25, 0.2, 0.3] if lead else [0.35, 0.35, 0.3, 0]))
        if style == "power":
            strum(midi, rng, song, channel, low, low + 24, velocity=velocity, power=True)
        elif style == "lead":
            melody(midi, rng, song, channel, low + 12, high, velocity=velocity,
                   density=float(rng.uniform(0.8, 1.8)))
        elif style == "riff":
            riff(midi, rng, song, channel, low, high, velocity=velocity)
        elif style == "strum":
            strum(midi, rng, song, channel, low, high, velocity=velocity)
        elif style == "arpeggio":
            arpeggio(midi, rng, song, channel, low + 5, min(high, low + 30), velocity=velocity)
        else:
            block_chords(midi, rng, song, channel, low + 5, min(high, low + 28),
                         velocity=velocity, n_notes=(3, 5))
        return style
    # organ
    style = str(rng.choice(["chords+melody", "chords", "rhythm"], p=[0.45, 0.35, 0.2]
                           if lead else [0.0, 0.6, 0.4]))
    if style == "chords+melody":
        melody(midi, rng, song, channel, 62, min(high, 88), velocity=velocity,
               density=float(rng.uniform(0.6, 1.4)))
        block_chords(midi, rng, song, channel, 43, 62, velocity=velocity - 8)
    elif style == "chords":
        block_chords(midi, rng, song, channel, max(low, 45), min(high, 79), velocity=velocity,
                     n_notes=(3, 6))
    else:
        strum(midi, rng, song, channel, 48, 74, velocity=velocity)
    return style


# --- clips ---------------------------------------------------------------------------------------
@dataclass
class ClipPlan:
    """Everything needed to render one clip (all of it drawn from the clip's own RNG)."""

    index: int
    code: str
    soundfont: str
    kind: str                   # "solo" or "mix"
    seed: int
    target_events: list[MidiEvent]
    accomp_events: list[MidiEvent] | None
    program: int
    style: str
    accompaniment: str
    drums: bool
    genre: str
    crop_s: float
    snr_db: float | None
    peak_dbfs: float

    @property
    def filename(self) -> str:
        tag_drums = "dru" if self.drums else "nod"
        return (f"{self.soundfont}-{self.kind}-{self.index:04d}__[{self.code}][{tag_drums}]"
                f"[{self.genre}]{self.index:04d}__1.wav")


def soundfont_key(path: Path) -> str:
    """Short stable name of a soundfont: ``FluidR3_GM.sf2`` -> ``fluidr3gm``."""
    return "".join(ch for ch in path.stem.lower() if ch.isalnum())


def clip_rng(seed: int, soundfont: str, code: str, index: int) -> np.random.Generator:
    """The clip's own generator: independent of how many clips or workers there are."""
    key = [seed, zlib.crc32(soundfont.encode()), CLASS_CODES.index(code), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def lead_voices(code: str, programs: Collection[int] | None = None) -> tuple[Voice, ...]:
    """The voices a clip of class ``code`` may lead with: all of them, or those whose GM program
    is in ``programs`` (for a sample set whose other presets copy another set's recordings)."""
    voices = CLASS_VOICES[code]
    return voices if programs is None else tuple(v for v in voices if v.program in programs)


def plan_clip(seed: int, soundfont: str, code: str, index: int, mix_share: float,
              line_share: float = 0.0, programs: Collection[int] | None = None) -> ClipPlan:
    """One clip's plan; ``programs`` restricts the labelled lead's GM programs (the
    accompaniment is not restricted: it carries no label)."""
    rng = clip_rng(seed, soundfont, code, index)
    song = make_song(rng)
    kind = "mix" if rng.random() < mix_share else "solo"
    voice = pick_voice(rng, lead_voices(code, programs))
    target = MidiWriter(0.0)
    target.reset_all()
    # Drawn only when asked for, so sets rendered without it keep their bytes.
    line_only = line_share > 0 and code in POLYPHONIC and rng.random() < line_share
    style = instrument_part(target, rng, song, code, voice, 0,
                            velocity=float(rng.uniform(60, 110)), lead=True,
                            line_only=line_only)
    accomp_events = None
    accompaniment = ""
    has_drums = False
    snr_db = None
    if kind == "mix":
        accomp = MidiWriter(0.0)
        accomp.reset_all()
        parts = []
        # A chordal or second instrument from another class (or strings / e-piano) ...
        others = [c for c in CLASS_CODES if c != code]
        pool = rng.choice(["class", "class", "strings", "epiano"])
        if pool == "class":
            other = str(rng.choice([c for c in others if c in POLYPHONIC]
                                   if rng.random() < 0.7 else others))
            other_voice = pick_voice(rng, CLASS_VOICES[other])
            instrument_part(accomp, rng, song, other, other_voice, 1,
                            velocity=float(rng.uniform(50, 90)), lead=False)
            parts.append(f"{other}:{other_voice.program}")
        else:
            v = pick_voice(rng, STRINGS if pool == "strings" else EPIANO)
            setup_channel(accomp, rng, 1, v.program, pan_spread=50)
            block_chords(accomp, rng, song, 1, v.low, v.high, velocity=float(rng.uniform(50, 85)))
            parts.append(f"{pool}:{v.program}")
        # ... plus bass, drums, or a quiet counter-melody.
        if rng.random() < 0.6:
            v = pick_voice(rng, BASSES)
            setup_channel(accomp, rng, 2, v.program, pan_spread=5)
            bass_line(accomp, rng, song, 2, v, velocity=float(rng.uniform(60, 95)))
            parts.append(f"bass:{v.program}")
        if rng.random() < 0.5:
            setup_channel(accomp, rng, DRUM_CHANNEL, 0, pan_spread=0)
            parts.append("drums:" + drums(accomp, rng, song, velocity=float(rng.uniform(60, 100))))
            has_drums = True
        if rng.random() < 0.2:
            other = str(rng.choice([c for c in others if c not in POLYPHONIC]))
            v = pick_voice(rng, CLASS_VOICES[other])
            setup_channel(accomp, rng, 3, v.program, pan_spread=50, sustained=True)
            melody(accomp, rng, song, 3, v.low, v.high, velocity=float(rng.uniform(40, 70)),
                   density=0.6)
            parts.append(f"{other}:{v.program}")
        accomp_events = accomp.events
        accompaniment = "+".join(parts)
        snr_db = float(rng.uniform(2.0, 10.0))
    genre = (str(rng.choice(GENRES_WITH_DRUMS)) if has_drums else
             str(rng.choice(["cla", "cla", "cou_fol", "jaz_blu", "pop_roc"])))
    return ClipPlan(index=index, code=code, soundfont=soundfont, kind=kind, seed=seed,
                    target_events=target.events, accomp_events=accomp_events,
                    program=voice.program, style=style, accompaniment=accompaniment,
                    drums=has_drums, genre=genre, crop_s=float(rng.uniform(0.4, 1.2)),
                    snr_db=snr_db, peak_dbfs=float(rng.uniform(-12.0, -1.0)))


def shifted(events: list[MidiEvent], offset_s: float) -> list[MidiEvent]:
    ticks = round(offset_s * TICKS_PER_S)
    return [MidiEvent(e.tick + ticks, e.order, e.data) for e in events]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def to_pcm16(stereo: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Peak-normalise to ``peak_dbfs`` and quantise to int16 (round, no dither: reproducible)."""
    peak = float(np.max(np.abs(stereo))) or 1.0
    scaled = stereo * (10 ** (peak_dbfs / 20) / peak)
    return np.clip(np.round(scaled * 32767.0), -32768, 32767).astype(np.int16)


# A GUS patch set (TiMidity++ configuration) lacks some GM programs; these stand in (same family).
PATCH_FALLBACKS = {1: 0, 2: 0, 17: 16, 18: 16, 20: 19, 49: 48, 52: 53}


@functools.cache  # read once per process, not once per batch
def timidity_config(source: Path) -> str:
    """A TiMidity++ configuration: ``source`` plus bank-0 entries for the programs it lacks,
    taken from their :data:`PATCH_FALLBACKS` (TiMidity++ would otherwise play them silently)."""
    patches: dict[int, str] = {}
    section = None
    for line in source.read_text().splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[0] in ("bank", "drumset"):
            section = (words[0], words[1])
        elif len(words) >= 2 and section == ("bank", "0") and words[0].isdigit():
            patches[int(words[0])] = " ".join(words[1:])
    lines = [f"source {source}", "bank 0"]
    for program, stand_in in sorted(PATCH_FALLBACKS.items()):
        if program not in patches and stand_in in patches:
            lines.append(f"{program} {patches[stand_in]}")
    return "\n".join(lines) + "\n"


def synth_command(synth: str, soundfont: Path, midi_path: Path, wav_path: Path, gain: float
                  ) -> list[str]:
    """The command that renders ``midi_path`` to a 44.1 kHz stereo wav: fluidsynth for a
    SoundFont, TiMidity++ for a patch-set configuration (``.cfg``)."""
    if soundfont.suffix == ".cfg":
        # --preserve-silence: the slots are found by time, so leading silence must stay.
        return [synth, "-c", str(soundfont), "--preserve-silence",
                "-Ow", "--output-24bit", "--output-stereo", "-s", str(SAMPLE_RATE),
                "-A", str(round(gain * 100)), "-o", str(wav_path), str(midi_path)]
    return [synth, "-ni", "-q", "-F", str(wav_path), "-T", "wav", "-O", "float",
            "-r", str(SAMPLE_RATE), "-g", str(gain), "-o", "synth.cpu-cores=1",
            str(soundfont), str(midi_path)]


def render_batch(plans: list[ClipPlan], soundfont: Path, out_dir: Path, synth: str,
                 gain: float) -> list[dict]:
    """Render a batch of clips with one synthesiser process (``synth``: the fluidsynth or
    timidity executable); write the wavs; return manifest rows."""
    events: list[MidiEvent] = []
    slots: list[tuple[int, int | None]] = []
    n_slot = 0
    for plan in plans:
        events += shifted(plan.target_events, n_slot * SLOT_S)
        target_slot = n_slot
        n_slot += 1
        accomp_slot = None
        if plan.accomp_events is not None:
            events += shifted(plan.accomp_events, n_slot * SLOT_S)
            accomp_slot = n_slot
            n_slot += 1
        slots.append((target_slot, accomp_slot))
    # A final reset slot so the last stem's tail is inside the file too.
    last = MidiWriter(n_slot * SLOT_S)
    last.reset_all()
    events += last.events
    with tempfile.TemporaryDirectory(prefix="dreamsound-render-") as tmp:
        midi_path, wav_path = Path(tmp) / "batch.mid", Path(tmp) / "batch.wav"
        midi_path.write_bytes(midi_file_bytes(events))
        if soundfont.suffix == ".cfg":
            # The patch set plus stand-ins for the programs it lacks.
            patches = Path(tmp) / "patches.cfg"
            patches.write_text(timidity_config(soundfont))
            soundfont = patches
        cmd = synth_command(synth, soundfont, midi_path, wav_path, gain)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav_path.is_file():
            raise RuntimeError(f"{Path(synth).name} failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    return [write_clip(plan, audio, None if accomp_slot is None else audio, out_dir,
                       target_at=target_slot * SLOT_S,
                       accomp_at=0.0 if accomp_slot is None else accomp_slot * SLOT_S)
            for plan, (target_slot, accomp_slot) in zip(plans, slots)]


def render_batch_stk(plans: list[ClipPlan], out_dir: Path, stk_demo: str) -> list[dict]:
    """Render a batch of clips with STK's physical models (``scripts/data/stk_source.py``)."""
    kwargs = {"sample_rate": SAMPLE_RATE, "ticks_per_s": TICKS_PER_S, "length_s": SLOT_S,
              "drum_channel": DRUM_CHANNEL}
    rows = []
    for plan in plans:
        # The instrument choice and its controls come from the clip's own generator too.
        rng = clip_rng(plan.seed + 1, plan.soundfont, plan.code, plan.index)
        target = stk_source.render_stem(plan.target_events, rng, stk_demo, **kwargs)
        accomp = (None if plan.accomp_events is None else
                  stk_source.render_stem(plan.accomp_events, rng, stk_demo, **kwargs))
        rows.append(write_clip(plan, target, accomp, out_dir))
    return rows


def write_clip(plan: ClipPlan, target: np.ndarray, accomp: np.ndarray | None, out_dir: Path,
               *, target_at: float = 0.0, accomp_at: float = 0.0) -> dict:
    """Cut the clip window out of the stems (``[samples, 2]`` audio in which the target and the
    accompaniment stems start at ``target_at`` / ``accomp_at`` seconds), mix the accompaniment in
    at the planned ratio, write the wav; return its manifest row."""
    n_clip = round(CLIP_S * SAMPLE_RATE)

    def cut(audio: np.ndarray, at: float) -> np.ndarray:
        start = round((at + plan.crop_s) * SAMPLE_RATE)
        piece = audio[start:start + n_clip]
        return np.pad(piece, ((0, n_clip - len(piece)), (0, 0)))

    mix = cut(target, target_at)
    if _rms(mix) < 1e-5:
        raise RuntimeError(f"silent stem for {plan.filename} ({plan.soundfont} program "
                           f"{plan.program}): the soundfont may lack it")
    if accomp is not None and plan.snr_db is not None:
        part = cut(accomp, accomp_at)
        part *= _rms(mix) / _rms(part) * 10 ** (-plan.snr_db / 20)
        mix = mix + part
    path = out_dir / plan.code / plan.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name("." + path.name + ".tmp")
    sf.write(temp, to_pcm16(mix, plan.peak_dbfs), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(temp, path)
    return {"file": f"{plan.code}/{plan.filename}", "class": plan.code,
            "soundfont": plan.soundfont, "kind": plan.kind, "program": plan.program,
            "style": plan.style, "accompaniment": plan.accompaniment,
            "snr_db": "" if plan.snr_db is None else f"{plan.snr_db:.2f}",
            "drums": int(plan.drums), "genre": plan.genre, "seed": plan.seed,
            "index": plan.index}


def find_soundfont(name: str) -> Path:
    """A SoundFont by name or path, or a TiMidity++ patch set: ``freepats`` (Debian's
    ``freepats`` package) or a ``.cfg`` path."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    candidates = [folder / file for folder in SOUNDFONT_DIRS for file in (name, f"{name}.sf2")]
    for candidate in (*candidates, TIMIDITY_DIR / f"{name}.cfg"):
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(folder) for folder in (*SOUNDFONT_DIRS, TIMIDITY_DIR))
    fail(f"soundfont {name!r} not found (looked in {looked}); install "
         "fluid-soundfont-gm, timgm6mb-soundfont and csound-soundfont (freepats: timidity and "
         "freepats), or give a path")


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def render(out: Path, *, soundfonts: Sequence[str], per_class: int, seed: int, mix_share: float,
           workers: int, classes: Sequence[str] = CLASS_CODES, gain: float = 0.5,
           line_share: float = 0.0, programs: Collection[int] | None = None,
           progress: bool = True) -> list[dict]:
    """Render ``per_class`` clips of every class through every soundfont into ``out``;
    ``line_share``: the share of piano, guitar and organ leads that play one melodic line;
    ``programs``: lead only with these GM programs (classes left without one are skipped)."""
    classes = [c for c in classes if lead_voices(c, programs)]
    if not classes:
        fail("none of the classes asked for has a lead voice among --programs")
    fonts = [STK if s == "stk" else find_soundfont(s) for s in soundfonts]
    synths = {}
    for font in fonts:
        name, package = (("stk-demo", "stk") if font == STK else
                         ("timidity", "timidity") if font.suffix == ".cfg" else
                         ("fluidsynth", "fluidsynth"))
        synths[font] = shutil.which(name)
        if synths[font] is None:
            fail(f"the `{name}` command is not on PATH (apt install {package})")
    jobs = []
    for font in fonts:
        key = "stk" if font == STK else soundfont_key(font)
        for code in classes:
            if font == STK and code in stk_source.UNRENDERED_CLASSES:
                continue
            plans = [plan_clip(seed, key, code, i, mix_share, line_share, programs)
                     for i in range(per_class)]
            stems = 0
            batch: list[ClipPlan] = []
            for plan in plans:
                batch.append(plan)
                stems += 1 if plan.accomp_events is None else 2
                if stems >= STEMS_PER_BATCH:
                    jobs.append((batch, font))
                    batch, stems = [], 0
            if batch:
                jobs.append((batch, font))
    if not jobs:
        fail(f"nothing to render: STK has no model for {', '.join(stk_source.UNRENDERED_CLASSES)}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.perf_counter()
    total = sum(len(b) for b, _ in jobs)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(render_batch_stk, batch, out, synths[font]) if font == STK else
                   pool.submit(render_batch, batch, font, out, synths[font], gain)
                   for batch, font in jobs]
        for future in as_completed(futures):
            rows += future.result()
            if progress:
                print(f"\r{len(rows)}/{total} clips, {time.perf_counter() - started:.0f} s",
                      end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    rows.sort(key=lambda r: r["file"])
    write_manifest(out, rows)
    return rows


def write_manifest(out: Path, rows: list[dict]) -> None:
    """``manifest.csv``: merged with rows already there (other soundfonts rendered earlier)."""
    path = out / "manifest.csv"
    existing: dict[str, dict] = {}
    if path.is_file():
        with open(path, newline="") as handle:
            existing = {r["file"]: r for r in csv.DictReader(handle)}
    for row in rows:
        existing[row["file"]] = {k: str(v) for k, v in row.items()}
    fields = ["file", "class", "soundfont", "kind", "program", "style", "accompaniment",
              "snr_db", "drums", "genre", "seed", "index"]
    temp = path.with_name(".manifest.csv.tmp")
    with open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for key in sorted(existing):
            writer.writerow(existing[key])
    os.replace(temp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (IRMAS layout)")
    parser.add_argument("--soundfonts", nargs="+", default=list(DEFAULT_SOUNDFONTS),
                        help="soundfont names (looked up in "
                        f"{' and '.join(str(d) for d in SOUNDFONT_DIRS)}), `freepats`, `stk`, "
                        f"or paths (default: {' '.join(DEFAULT_SOUNDFONTS)})")
    parser.add_argument("--per-class", type=int, default=200,
                        help="clips per class and soundfont (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--mix-share", type=float, default=0.4,
                        help="share of predominant-instrument mixtures (default 0.4)")
    parser.add_argument("--classes", nargs="+", default=list(CLASS_CODES), choices=CLASS_CODES,
                        help="class codes to render (default: all 11)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel synthesiser processes (default: CPU count)")
    parser.add_argument("--gain", type=float, default=0.5,
                        help="synthesiser gain (default 0.5; timidity: -A 100 x gain)")
    parser.add_argument("--line-share", type=float, default=0.0,
                        help="share of piano, guitar and organ leads that play a single melodic "
                        "line, as phrases cut from one-note samples do (default 0)")
    parser.add_argument("--programs", type=int, nargs="+", metavar="PROGRAM",
                        help="lead only with these GM programs (0-based), for a sample set whose "
                        "other presets play another set's recordings (default: every program)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    if (args.per_class < 1 or not 0.0 <= args.mix_share <= 1.0
            or not 0.0 <= args.line_share <= 1.0):
        parser.error("--per-class must be >= 1, --mix-share and --line-share in [0, 1]")
    if args.programs is not None and not all(0 <= p <= 127 for p in args.programs):
        parser.error("--programs are General MIDI programs, 0-127")
    started = time.perf_counter()
    rows = render(args.out, soundfonts=args.soundfonts, per_class=args.per_class, seed=args.seed,
                  mix_share=args.mix_share, workers=args.workers, classes=args.classes,
                  gain=args.gain, line_share=args.line_share, programs=args.programs,
                  progress=not args.quiet)
    n_mix = sum(r["kind"] == "mix" for r in rows)
    print(f"rendered {len(rows)} clips ({len(rows) - n_mix} solo, {n_mix} mixtures) into "
          f"{args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
