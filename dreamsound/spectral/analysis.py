"""The forward STFT in torch: the periodic Hann window, framing and the complex spectrum.

Everything here is differentiable with respect to the waveform, works on any leading batch shape
``[..., n]`` and runs on whatever device its inputs live on. Both the front-end
(:mod:`dreamsound.spectral.frontend`) and the inversion (:mod:`dreamsound.spectral.inversion`)
build on it, so it imports neither.

Conventions (shared by every model front-end):

* frames start at sample 0 (no centring) and the window is ``win_length`` samples long, zero-padded
  at the *end* to ``n_fft`` before the FFT (TensorFlow's ``tf.signal.stft`` convention; note that
  ``torch.stft`` would centre a short window inside ``n_fft`` instead, which shifts every frame);
* the window is a *periodic* Hann window;
* the spectrogram is a **magnitude** (not power) spectrogram.
"""

from __future__ import annotations

import torch


def hann_window(length: int, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Periodic Hann window of ``length`` samples (``tf.signal.hann_window(periodic=True)``)."""
    return torch.hann_window(length, periodic=True, dtype=dtype, device=device)


def frame_signal(waveform: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Cut ``[..., n]`` into overlapping frames ``[..., T, frame_length]`` starting at sample 0.

    ``T = 1 + (n - frame_length) // hop_length``; trailing samples that do not fill a frame are
    dropped (TensorFlow's ``pad_end=False``).
    """
    if waveform.shape[-1] < frame_length:
        raise ValueError(f"need at least {frame_length} samples, got {waveform.shape[-1]}")
    return waveform.unfold(-1, frame_length, hop_length)


def stft(waveform: torch.Tensor, *, n_fft: int, win_length: int, hop_length: int,
         window: torch.Tensor | None = None) -> torch.Tensor:
    """Complex STFT ``[..., T, n_fft // 2 + 1]`` of ``[..., n]`` (frames x bins, no centring)."""
    if window is None:
        window = hann_window(win_length, dtype=waveform.dtype, device=waveform.device)
    frames = frame_signal(waveform, win_length, hop_length) * window
    return torch.fft.rfft(frames, n=n_fft, dim=-1)
