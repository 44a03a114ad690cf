"""Small synthetic signals and measurements for tests (16 kHz)."""

from __future__ import annotations

import math

import numpy as np
import torch

SR = 16000


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> torch.Tensor:
    t = torch.arange(round(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def amplitude_at(signal: torch.Tensor, freq: float) -> float:
    """Hann-windowed whole-signal FFT magnitude at ``freq`` (a sine's level, up to a constant)."""
    s = signal.double().numpy()
    spectrum = np.abs(np.fft.rfft(s * np.hanning(s.size)))
    return float(spectrum[np.argmin(np.abs(np.fft.rfftfreq(s.size, 1 / SR) - freq))])


def band_fraction(signal: torch.Tensor, low: float, high: float) -> float:
    """Share of a signal's energy between ``low`` and ``high`` Hz (whole-signal FFT)."""
    s = signal.double().numpy()
    power = np.abs(np.fft.rfft(s * np.hanning(s.size))) ** 2
    freqs = np.fft.rfftfreq(s.size, 1 / SR)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-30))


def stops_short_by(frames: int, path):
    """A ``soundfile.SoundFile`` that decodes ``frames`` fewer frames of ``path`` than the file
    declares, as libsndfile's Vorbis decoder does on some whole files; other files read as
    usual (``monkeypatch.setattr(soundfile, "SoundFile", stops_short_by(n, path))``)."""
    import soundfile

    class StopsShort(soundfile.SoundFile):
        def read(self, frames_wanted=-1, *args, **kwargs):
            if str(self.name) != str(path):
                return super().read(frames_wanted, *args, **kwargs)
            # Never hand out the last ``frames`` frames: the decoder "stops" before them.
            left = self.frames - frames - self.tell()
            if left <= 0:
                frames_wanted = 0
            elif frames_wanted < 0 or frames_wanted > left:
                frames_wanted = left
            return super().read(frames_wanted, *args, **kwargs)

    return StopsShort
