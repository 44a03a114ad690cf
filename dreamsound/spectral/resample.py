"""Differentiable resampling: one sound heard by models at different rates.

An ensemble dreams one waveform; each model hears it at its own rate (YAMNet at 16 kHz, the
instrument CNN at 22.05 kHz, musicnn at 16 kHz, irmas-pons at 12 kHz), through this resampler,
so gradients from every model reach the shared samples. The band-limited FFT method (as
``scipy.signal.resample``): the spectrum is cut (down) or zero-extended (up) at the new Nyquist
frequency. It treats the signal as periodic, which only touches the first and last few
milliseconds; soxr (:func:`dreamsound.audio.resample`) remains the resampler for files.
"""

from __future__ import annotations

import torch


def resampled_length(n: int, orig_rate: int, target_rate: int) -> int:
    """Samples after resampling ``n`` samples from ``orig_rate`` to ``target_rate`` Hz."""
    return max(1, round(n * target_rate / orig_rate))


def resample_fft(waveform: torch.Tensor, orig_rate: int, target_rate: int, *,
                 length: int | None = None) -> torch.Tensor:
    """Band-limited resampling of ``[..., n]`` from ``orig_rate`` to ``target_rate`` Hz.

    Parameters
    ----------
    waveform : Tensor [..., n]
    orig_rate, target_rate : int
        Hz.
    length : int, optional
        Output samples (default :func:`resampled_length`): with a length other than the rate
        ratio's, the result is also a change of speed (pitch and tempo together).

    Returns
    -------
    Tensor [..., length]
        Differentiable with respect to ``waveform``; the input itself when nothing changes.
    """
    n = waveform.shape[-1]
    out = resampled_length(n, orig_rate, target_rate) if length is None else int(length)
    if out == n:
        return waveform
    spectrum = torch.fft.rfft(waveform, dim=-1)
    bins = out // 2 + 1
    if bins <= spectrum.shape[-1]:
        spectrum = spectrum[..., :bins]
    else:
        spectrum = torch.nn.functional.pad(spectrum, (0, bins - spectrum.shape[-1]))
    # irfft's 1/out normalisation against rfft's n: keep the amplitude.
    return torch.fft.irfft(spectrum, n=out, dim=-1) * (out / n)
