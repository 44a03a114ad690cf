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
