"""Physical-model renders for ``scripts/data/render_trainset.py --soundfonts stk``.

A sample set that shares no recording with any soundfont: the instruments of the Synthesis ToolKit
(STK, Cook & Scavone; Debian package ``stk``, MIT-style licence) are physical and FM models, played
here by its ``stk-demo`` program from SKINI scores. Each MIDI stem that the renderer writes is
split by channel; every channel becomes one SKINI score for the STK instrument that stands for its
GM program (bowed string for violin and cello, reed models for clarinet and saxophone, Karplus-
Strong strings for guitars and basses, FM for organs and electric guitars, a formant voice, ...),
with the model's own controls (bow pressure and position, reed stiffness, jet delay, vibrato, FM
operator levels) drawn at random per stem: the timbre variety that sampled instruments get from
different recordings. STK has no acoustic piano, so the class ``pia`` is not rendered.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

# GM program -> the STK instruments that may stand for it (one is drawn per stem).
PROGRAM_INSTRUMENTS: dict[int, tuple[str, ...]] = {
    **{p: ("Rhodey", "Wurley") for p in (0, 1, 2, 4, 5)},   # pianos only as accompaniment
    **{p: ("BeeThree", "PercFlut") for p in (16, 17, 18, 19, 20)},
    **{p: ("Plucked", "StifKarp") for p in (24, 25, 32, 33, 34, 35)},
    **{p: ("HevyMetl",) for p in (26, 27, 28, 29, 30)},
    **{p: ("Bowed",) for p in (40, 42, 48, 49)},
    **{p: ("VoicForm", "FMVoices") for p in (52, 53)},
    56: ("Brass",),
    **{p: ("Saxofony",) for p in (64, 65, 66, 67)},
    71: ("Clarinet", "BlowHole"),
    73: ("Flute",),
}
DRUMS = "Drummer"
UNRENDERED_CLASSES = ("pia",)  # no STK model plays an acoustic piano

_FM = ((2, 0, 100), (4, 0, 100), (11, 20, 70), (1, 0, 40))  # operator gains, LFO speed / depth
# STK controller numbers (SKINI ControlChange) and the range each is drawn from (0-128 scale).
CONTROLS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "Bowed": ((2, 40, 100), (4, 20, 90), (11, 20, 70), (1, 0, 40)),   # pressure, position, vib
    "Clarinet": ((2, 40, 90), (4, 0, 40), (11, 20, 70), (1, 0, 30)),  # reed, noise, vibrato
    "BlowHole": ((2, 40, 90), (4, 0, 40), (11, 0, 60), (1, 0, 30)),   # reed, noise, tonehole
    "Flute": ((2, 40, 90), (4, 0, 50), (11, 20, 70), (1, 0, 40)),     # jet delay, noise, vib
    "Saxofony": ((2, 40, 90), (4, 40, 90), (11, 0, 40), (1, 0, 30)),  # reed, aperture, noise
    "Brass": ((11, 20, 70), (1, 0, 30)),                  # vibrato only: lip/slide move pitch
    "StifKarp": ((4, 10, 100), (11, 40, 110), (1, 0, 60)),            # pickup, sustain, stretch
    "VoicForm": ((4, 0, 39), (2, 100, 128), (11, 20, 70), (1, 0, 40)),  # vowel, voicing, vib
    "FMVoices": ((2, 0, 128), (4, 0, 128), (11, 20, 70), (1, 0, 40)),
    **{name: _FM for name in ("Rhodey", "Wurley", "BeeThree", "PercFlut", "HevyMetl")},
}
POLYPHONY = 8


def channel_notes(events, ticks_per_s: float) -> dict[int, dict]:
    """Split a stem's MIDI events by channel: ``{channel: {"program": p, "notes": [(t_s, kind,
    pitch, velocity)]}}`` with ``kind`` ``"on"`` or ``"off"``; controllers are dropped (STK
    instruments read controller numbers differently from GM synthesisers)."""
    channels: dict[int, dict] = {}
    for event in sorted(events):
        status, channel = event.data[0] & 0xF0, event.data[0] & 0x0F
        entry = channels.setdefault(channel, {"program": 0, "notes": []})
        if status == 0xC0:
            entry["program"] = event.data[1]
        elif status in (0x80, 0x90):
            kind = "on" if status == 0x90 and event.data[2] > 0 else "off"
            entry["notes"].append((event.tick / ticks_per_s, kind, event.data[1], event.data[2]))
    return {c: e for c, e in channels.items() if e["notes"]}


def skini_score(notes, controls: list[tuple[int, int]], end_s: float) -> str:
    """A SKINI score (delta times in seconds): the controller settings, then the notes, then a
    no-op note-off at ``end_s`` so the output runs that long."""
    lines = [f"ControlChange 0.0 1 {number} {value}" for number, value in controls]
    now = 0.0
    for t, kind, pitch, velocity in notes:
        word = "NoteOn" if kind == "on" else "NoteOff"
        lines.append(f"{word} {max(t - now, 0.0):.6f} 1 {pitch} {velocity if kind == 'on' else 64}")
        now = max(now, t)
    lines.append(f"NoteOff {max(end_s - now, 0.0):.6f} 1 0 0")
    return "\n".join(lines) + "\n"


def render_stem(events, rng: np.random.Generator, stk_demo: str, *, sample_rate: int,
                ticks_per_s: float, length_s: float, drum_channel: int) -> np.ndarray:
    """Render one stem (all its channels) with STK; returns ``[samples, 2]`` float32 of
    ``length_s`` seconds (each channel panned at random)."""
    n_out = round(length_s * sample_rate)
    out = np.zeros((n_out, 2), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="dreamsound-stk-") as tmp:
        for channel, entry in channel_notes(events, ticks_per_s).items():
            if channel == drum_channel:
                instrument = DRUMS
            else:
                choices = PROGRAM_INSTRUMENTS.get(entry["program"])
                if choices is None:
                    raise RuntimeError(f"no STK instrument stands for GM program "
                                       f"{entry['program']}")
                instrument = str(rng.choice(choices))
            controls = [(number, int(rng.integers(low, high + 1)))
                        for number, low, high in CONTROLS.get(instrument, ())]
            score, wav = Path(tmp) / f"{channel}.ski", Path(tmp) / f"{channel}.wav"
            score.write_text(skini_score(entry["notes"], controls, length_s))
            done = subprocess.run([stk_demo, instrument, "-n", str(POLYPHONY), "-s",
                                   str(sample_rate), "-ow", str(wav), "-if", str(score)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0 or not wav.is_file():
                raise RuntimeError(f"stk-demo {instrument} failed ({done.returncode}): "
                                   f"{done.stderr.strip()[-300:]}")
            audio, rate = sf.read(wav, dtype="float32")
            assert rate == sample_rate
            audio = audio[:n_out] if audio.ndim == 1 else audio[:n_out].mean(axis=1)
            pan = float(rng.uniform(0.3, 0.7))
            out[:len(audio), 0] += audio * np.sqrt(1 - pan)
            out[:len(audio), 1] += audio * np.sqrt(pan)
    return out
