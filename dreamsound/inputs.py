"""One loader for everything a command accepts as a sound: a file, an array, or a generated start.

``classify``, ``dream``, ``sonify`` and ``evaluate`` all call :func:`load_input`, so a sound
means the same thing everywhere: a file is decoded, mixed to mono and resampled to the model's
rate; an array is checked and resampled from the rate given; ``"noise:3s"``, ``"silence:2s"`` and
``"sine:440:2s"`` are generated at the model's rate (seeded).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamsound.errors import AudioError

_SECONDS = r"(\d+(?:\.\d*)?|\.\d+)(ms|s)?"
_START_RE = re.compile(rf"^(noise|silence|sine:(\d+(?:\.\d*)?))\s*:\s*{_SECONDS}$", re.IGNORECASE)

#: RMS of the ``noise:`` start and peak of the ``sine:`` start (linear, full scale = 1).
NOISE_RMS = 0.05
SINE_PEAK = 0.25
#: Longest generated start, seconds.
MAX_START_SECONDS = 600.0


def parse_start(spec: str) -> tuple[str, float, float | None] | None:
    """Parse a generated start ``"noise:3s"``, ``"silence:2s"``, ``"sine:440:2s"``.

    Returns ``(kind, seconds, frequency_hz or None)``, or None when ``spec`` is not one (then it
    is a file name). A bare number is seconds; ``ms`` is accepted (``noise:500ms``).
    """
    match = _START_RE.match(str(spec).strip())
    if match is None:
        return None
    head, frequency, amount, unit = match.groups()
    seconds = float(amount) / (1000.0 if (unit or "s").lower() == "ms" else 1.0)
    kind = head.split(":")[0].lower()
    return kind, seconds, float(frequency) if frequency is not None else None


def is_generated(spec: str | Path) -> bool:
    """True when ``spec`` names a generated start and no file of that name exists."""
    return parse_start(str(spec)) is not None and not Path(str(spec)).expanduser().exists()


def generate_start(spec: str, *, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A generated start waveform: white noise (RMS 0.05), digital silence, or a sine (peak 0.25).

    Parameters
    ----------
    spec : str
        ``"noise:DUR"``, ``"silence:DUR"`` or ``"sine:FREQ_HZ:DUR"``; DUR like ``3s``, ``500ms``.
    sample_rate : int
        Hz.
    seed : int
        Seeds the noise.

    Returns
    -------
    ndarray float32 [round(seconds * sample_rate)]
    """
    parsed = parse_start(spec)
    if parsed is None:
        raise AudioError(f"{spec!r} is not a generated start; use noise:3s, silence:2s or "
                         "sine:440:2s")
    kind, seconds, frequency = parsed
    n = round(seconds * sample_rate)
    if n <= 0 or seconds > MAX_START_SECONDS:
        raise AudioError(f"{spec}: the length must be between 1 sample and "
                         f"{MAX_START_SECONDS:g} s")
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return (NOISE_RMS * rng.standard_normal(n)).astype(np.float32)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if frequency is None or not 0 < frequency < sample_rate / 2:
        raise AudioError(f"{spec}: the sine frequency must be between 0 and {sample_rate / 2:g} "
                         "Hz (the model's Nyquist frequency)")
    t = np.arange(n) / sample_rate
    return (SINE_PEAK * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@dataclass(frozen=True)
class LoadedInput:
    """A sound ready for a model.

    Attributes
    ----------
    waveform : ndarray float32 [n]
        Mono, at the model's rate.
    label : str
        The file path as given, the generated spec (``"noise:3s"``), or ``"array"``.
    path : Path or None
        The file, when the sound came from one (outputs must never overwrite it).
    """

    waveform: np.ndarray
    label: str
    path: Path | None


def load_input(audio: str | Path | Any, *, sample_rate: int, input_rate: int | None = None,
               seed: int = 0, allow_silence: bool = True,
               max_seconds: float | None = None) -> LoadedInput:
    """Any accepted sound as a mono float32 waveform at ``sample_rate`` Hz.

    Parameters
    ----------
    audio : path, str, ndarray or Tensor [n]
        A sound file; a generated start; or a mono waveform at ``input_rate`` Hz.
    sample_rate : int
        The model's rate, Hz.
    input_rate : int, optional
        Rate of an array input (default: ``sample_rate``).
    seed : int
        Seeds a generated noise start.
    allow_silence : bool
        Accept digital silence (the spectrogram domain can dream from it; classification cannot
        say anything about it).
    max_seconds : float, optional
        Refuse longer files (None: no limit).
    """
    from dreamsound.audio import load_audio, resample, validate_waveform

    if isinstance(audio, np.ndarray) or hasattr(audio, "detach"):
        wave = validate_waveform(audio, what="input waveform", allow_silence=allow_silence)
        if wave.ndim != 1:
            raise AudioError(f"input waveform: expected mono [n], got shape {wave.shape}")
        if input_rate is not None and input_rate != sample_rate:
            wave = resample(wave, input_rate, sample_rate, what="input waveform")
        return LoadedInput(wave, "array", None)
    text = str(audio)
    if is_generated(text):
        return LoadedInput(generate_start(text, sample_rate=sample_rate, seed=seed), text, None)
    path = Path(text).expanduser()
    wave = load_audio(path, sample_rate=sample_rate, allow_silence=allow_silence,
                      max_seconds=max_seconds)
    return LoadedInput(wave, str(path), path)


def match_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Loop or trim ``wave`` to ``n`` samples."""
    if wave.shape[0] >= n:
        return wave[:n]
    return np.tile(wave, math.ceil(n / wave.shape[0]))[:n]
